"""The cost arithmetic beneath the study: how many runs a study has, the reference machine's
rates, a chunk's seconds and a study's price once its chunks are known.

It imports nothing above the study's settings, so :class:`~polarnet.experiments.config.Study`
checks its limits with :func:`reference_estimate` while
:mod:`~polarnet.experiments.cost` (the estimator, which plans, calibrates and knows the
workers) prices the same way on top of it. How the numbers are made:
:mod:`polarnet.experiments.cost`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conditions import Condition
    from .config import Study

__all__ = ["count_runs", "reset_rules", "engine_path", "chunk_seconds", "even_chunks", "price", "reference_estimate"]

# fixed costs, seconds (reference machine): a command's start and its closing report; a worker
# pool's start (spawn + imports, the workers in parallel) and exit; an image dataset read
START_S, REPORT_S, SPAWN_S, STOP_S, DATA_S = 2.0, 1.5, 3.0, 2.0, 2.5
# storing a run and each of its epochs (the driver's SQLite transaction per chunk)
STORE_RUN_S, STORE_EPOCH_S = 2e-4, 1.5e-5

# XOR ensemble, per worker of one thread: a chunk's setup, a run's setup (model, template,
# align), an ensemble step (Python and dispatch, whatever the members), a member's step (plus
# per hidden unit) and a validation sample of a member (plus per hidden unit)
XOR = dict(chunk=0.05, run=2e-3, step=1.5e-3, member_step=12e-6, member_step_h=0.3e-6, val=45e-9, val_h=0.4e-9)
# XOR runs one at a time (vectorize = false, or a rule the ensemble lacks): per run and per step
XOR_SINGLE = dict(run=0.02, step=4e-4, val=2e-7)

# image models, per worker of one thread, at a reference input size: ms per image for a training
# step and for evaluation, one run at a time and (where measured) per member-image in the
# stacked ensemble; the LeNet ensemble's rates follow the full fmnist-split-transfer preset's
# 654 s on 2 workers (benchmarks/bench_split_transfer.py)
_IMAGE_MS = {"alexnet": (8.8, 2.4, 64), "zfnet": (12.6, 4.4, 64), "lenet": (0.16, 0.1, 28)}
_IMAGE_MS_STACKED = {"lenet": (0.0834, 0.0125, 28)}
# seconds a run of a large model costs whatever its images: once per run (building, initialising
# and aligning 61 M weights), per training step (Adam and Freeze-SGD over every weight) and per
# epoch; AlexNet measured 6.2 s, 1.1 s and 0.8 s with one thread; small models have none worth counting
_IMAGE_RUN_S = {"alexnet": (6.2, 1.1, 0.8), "zfnet": (6.0, 1.1, 0.9), "lenet": (0.0, 0.0, 0.0)}
# an image ensemble's epoch (its checkpoint, bookkeeping) and a chunk's setup
IMAGE_EPOCH_S, IMAGE_CHUNK_S = 0.05, 0.2


def engine_path(study: Study, engine: str | None = None) -> str:
    """The engine path a study's runs take, as the rates are kept: ``xor``, ``xor-single``,
    ``stacked:<model>`` or ``single:<model>``. ``engine`` (``"stacked"`` or ``"single"``)
    overrides the study's ``vectorize``.

    Example:
        >>> from .config import load_study
        >>> engine_path(load_study("xor5d")), engine_path(load_study("xor5d"), "single")
        ('xor', 'xor-single')
    """
    if engine not in (None, "stacked", "single"):
        raise ValueError(f"engine={engine!r}: choose 'stacked', 'single' or None (what the study would use)")
    stacked = study.vectorize if engine is None else engine == "stacked"
    if study.dataset == "xor":
        return "xor" if stacked else "xor-single"
    model = study.model if study.model in _IMAGE_MS else "alexnet"  # unknown models count as AlexNet
    return f"stacked:{model}" if stacked and model in _IMAGE_MS_STACKED else f"single:{model}"


def chunk_seconds(study: Study, path: str, hidden: int, members: dict[int, int], epochs: int | None = None) -> float:
    """Reference seconds one worker takes for one chunk: ``members`` maps a training-set size to
    how many of the chunk's runs have it. One run at a time (``single`` paths) is a chunk of one.

    Example:
        >>> from .config import load_study
        >>> s = load_study("xor5d", ["trials=1", "epochs=1", "sizes=[8]", "conditions=['fluid_rand']"])
        >>> round(chunk_seconds(s, "xor", 64, {8: 1}) * 1e3, 2)  # 50 + 2 + 1.5 ms, a member-step (0.03 ms), 1000 val (0.07 ms)
        53.6
    """
    epochs = study.epochs if epochs is None else epochs
    B = study.batch_size
    M = sum(members.values())
    member_steps = sum(k * math.ceil(n / B) for n, k in members.items())
    if path == "xor":
        c = XOR
        S = max(math.ceil(n / min(B, max(members))) for n in members)
        epoch = c["step"] * S + member_steps * (c["member_step"] + c["member_step_h"] * hidden) \
            + M * study.val_size * (c["val"] + c["val_h"] * hidden)
        return c["chunk"] + M * c["run"] + epochs * epoch
    if path == "xor-single":
        c = XOR_SINGLE
        return M * c["run"] + epochs * (member_steps * c["step"] + M * study.val_size * c["val"] * max(1.0, hidden / 64))
    kind, model = path.split(":")
    train_ms, eval_ms, size = (_IMAGE_MS_STACKED if kind == "stacked" else _IMAGE_MS)[model]
    native = 32 if study.dataset == "cifar10" else 28
    scale = ((study.input_size or native) / size) ** 2
    images = sum(n * k for n, k in members.items()) * epochs
    evals = M * (epochs + 2) * study.val_size
    start, step, epoch_s = _IMAGE_RUN_S[model]
    overhead = IMAGE_CHUNK_S + epochs * IMAGE_EPOCH_S if kind == "stacked" else 0.0
    return (images * train_ms + evals * eval_ms) * scale / 1e3 + M * (start + epoch_s * epochs) \
        + epochs * member_steps * step + overhead


def reset_rules(study: Study, condition: Condition) -> list[str]:
    """The reset rules a condition runs with (one run each): "none" when fluid or when its learner never resets
    (all but ``freeze_sgd``), its own rule, or the study's axis."""
    if not condition.frozen or condition.learner != "freeze_sgd":
        return ["none"]
    return [condition.reset] if condition.reset else list(study.resets)


def count_runs(study: Study) -> int:
    """``len(plan(study))``, computed without building the plan (a study may ask for 10^20 runs).

    Example:
        >>> from .config import load_study
        >>> count_runs(load_study("xor5d-reset"))  # (4 + 4 + 1) condition×reset × 11 sizes × 50 trials
        4950
    """
    pairs = sum(len(reset_rules(study, study.condition(name))) for name in study.conditions)
    return pairs * len(study.sizes) * len(study.hidden) * study.trials


def even_chunks(study: Study, path: str, workers: int) -> list[tuple[int, dict[int, int]]]:
    """The study's chunks as (hidden, {size: runs}) without planning it: each hidden size (or
    image cell) split evenly over the workers; one at a time, a run's cost times its count.

    Example:
        >>> from .config import load_study
        >>> even_chunks(load_study("xor5d", ["sizes=[8, 16]", "hidden=[4]"]), "xor", 2)[0]
        (4, {8: 75, 16: 75})
    """
    runs = count_runs(study)
    per_size = runs // (len(study.sizes) * len(study.hidden))  # runs of one size and hidden
    pieces = max(1, workers)
    if path == "xor":  # one ensemble per hidden size and trial range: every size in each
        return [(h, {n: max(1, per_size // pieces) for n in study.sizes}) for h in study.hidden for _ in range(pieces)]
    if path.startswith("single") or path == "xor-single":
        return [(h, {n: per_size}) for h in study.hidden for n in study.sizes]  # a run's cost × its count
    return [(h, {n: max(1, per_size // pieces)}) for h in study.hidden for n in study.sizes for _ in range(pieces)]


def _makespan(costs: Sequence[float], workers: int) -> float:
    """Wall time of chunks handed in order to the first idle of ``workers`` workers."""
    if len(costs) > 10_000:  # many small chunks: the load is even
        return sum(costs) / workers
    free = [0.0] * max(1, min(workers, len(costs)))
    for c in costs:
        i = free.index(min(free))
        free[i] += c
    return max(free, default=0.0)


def price(study: Study, path: str, chunks: list[tuple[int, dict[int, int]]], workers: int, rates: dict[str, Any],
          even: bool) -> dict[str, Any]:
    """Runs, training steps and seconds of a study whose chunks are known, at ``rates`` (a
    machine's calibration; ``{}`` for the reference machine): what
    :func:`~polarnet.experiments.cost.estimate_cost` returns. ``even``: the chunks are even
    shares (:func:`even_chunks`), so training is their sum over the workers, not a schedule.

    Example:
        >>> from .config import load_study
        >>> s = load_study("xor5d")
        >>> price(s, "xor", even_chunks(s, "xor", 2), 2, {}, even=True)["runs"]
        1650
    """
    runs = count_runs(study)
    per_size = runs // (len(study.sizes) * len(study.hidden))
    steps = per_size * len(study.hidden) * study.epochs * sum(math.ceil(n / study.batch_size) for n in study.sizes)
    ratio = rates.get(path)
    costs = [chunk_seconds(study, path, h, m) * (ratio or 1.0) for h, m in chunks]
    training = sum(costs) / workers if even else _makespan(costs, workers)
    pool = workers > 1 and len(chunks) > 1
    image = study.dataset != "xor"
    overhead = {"start": rates.get("start", START_S), "report": REPORT_S,
                "workers": (rates.get("spawn", SPAWN_S) + rates.get("stop", STOP_S)) if pool else 0.0,
                "data": rates.get(f"data:{study.dataset}", DATA_S) * (2 if pool else 1) if image else 0.0,
                "store": runs * (STORE_RUN_S + STORE_EPOCH_S * study.epochs)}
    return {"runs": runs, "steps": steps, "seconds": training + sum(overhead.values()), "training": training,
            "overhead": overhead, "rough": ratio is None, "path": path}


def reference_estimate(study: Study, workers: int = 2) -> dict[str, Any]:
    """:func:`price` of the study on the reference machine, unplanned (even chunks): what the
    study limits check, before the settings are known to be valid and whatever machine checks.

    Example:
        >>> from .config import load_study
        >>> cost = reference_estimate(load_study("xor5d"))
        >>> cost["runs"], cost["rough"], round(cost["seconds"])
        (1650, True, 30)
    """
    path = engine_path(study)
    return price(study, path, even_chunks(study, path, workers), workers, {}, even=True)


