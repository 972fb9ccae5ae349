"""Train one run as a plain PyTorch user would: an ``nn.Module``, ``torch.optim.Adam``,
and :func:`polarnet.freeze`. The reference the vectorised ensemble must match, and the path
for models the ensemble doesn't cover (image studies).

Data are held as tensors on the device; batches are indexed there and turned into model
input by the dataset's preparation (for images: normalise, repeat gray, resize).

Given a ``checkpoint`` file, :func:`train_run` saves after finished epochs everything it needs
to go on, and a later call with the same file continues from the epoch after the saved one
with the numbers an uninterrupted run gives, bit for bit.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..dynamics import SignTracker, fluid_spin_swap
from ..freeze import FreezeHandle, freeze
from ..init import align
from ..learners import LEARNERS
from ..models import get_model
from .checkpoint import Checkpoint
from .conditions import MAGNITUDES, POLARITIES
from .datasets import Data, load_data, task_correct, task_loss
from .plan import RunSpec, derive_seed
from ..layers import select
from ..template import PolarityTemplate
from .results import EpochRecord, RunResult, magnitude_quantiles

__all__ = ["prepare_model", "train_run", "run_data", "checkpoint_file", "cudnn_benchmark"]

#: bumped whenever what a checkpoint holds changes; a file of another version is ignored
CHECKPOINT_FORMAT = 2  # 2: the freeze state is FreezeHandle.state_dict()


def run_data(spec: RunSpec) -> Data:
    """The run's data: the study's pool (sized by its largest training set) and validation set."""
    return load_data(spec.study, max(spec.study.sizes), spec.data_seed, spec.val_seed)


def prepare_model(spec: RunSpec):
    """Build, initialise and template a run's model; returns ``(model, template or None)``.

    The model is not yet aligned; every condition of a trial gets the same magnitudes.
    """
    study, condition = spec.study, spec.condition
    data = run_data(spec)
    kwargs = dict(data.model_kwargs, **({"hidden": spec.hidden} if data.hidden_axis else {}))
    model = get_model(study.model, **kwargs).to(getattr(torch, study.dtype))
    MAGNITUDES.get(condition.magnitudes)(condition, model, study, spec.init_seed)
    template = POLARITIES.get(condition.polarity)(condition, model, study, spec.template_seed)
    return model, template


@torch.no_grad()
def _evaluate(model: nn.Module, data: Data, x: Tensor, y: Tensor, batch: int) -> tuple[float, float]:
    with parametrize.cached():  # a reparametrized weight (W = T ⊙ f(V)) is computed once, not per batch
        return _evaluate_batches(model, data, x, y, batch)


def _evaluate_batches(model: nn.Module, data: Data, x: Tensor, y: Tensor, batch: int) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=x.device)  # summed on the device: one read at the end
    correct = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, len(x), batch):
        out = model(data.inputs(x[start : start + batch]))
        loss += task_loss(data.task, out, y[start : start + batch]).sum().double()
        correct += task_correct(data.task, out, y[start : start + batch]).sum().double()
    model.train(was_training)
    return loss.item() / len(x), correct.item() / len(x)


def checkpoint_file(directory: str | os.PathLike[str], key: str) -> Path:
    """Where the checkpoint of the run ``key`` lives in a folder of checkpoints.

    Example:
        >>> checkpoint_file("study/checkpoints", "0123abcd").as_posix()
        'study/checkpoints/0123abcd.pt'
    """
    return Path(directory) / f"{key}.pt"


@dataclass
class _Training:
    """Everything a run's training loop carries from one epoch to the next."""

    model: nn.Module
    template: PolarityTemplate | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    handle: FreezeHandle | None
    tracker: SignTracker
    order: torch.Generator  # batch order
    swaps: torch.Generator  # Fluid-SPIN swaps
    result: RunResult
    epoch: int = 0  # epochs finished
    seconds: float = 0.0  # spent in earlier, interrupted calls


def _start(spec: RunSpec, data: Data, device: str | torch.device, x_val: Tensor, y_val: Tensor, eval_batch: int,
           memory: torch.memory_format, evaluate: bool = True) -> _Training:
    """Build the model, align it, and make the optimizer, the freeze hook and the generators.

    ``evaluate=False`` skips the accuracies before and after alignment (a checkpoint has them).
    """
    study, condition = spec.study, spec.condition
    model, template = prepare_model(spec)
    model.to(device, memory_format=memory)
    model.train()
    # mixed precision is bf16 autocast on every device: bf16 has float32's range, so no gradient
    # scaler (whose overflow check reads the GPU back every step) is needed; the scaler stays,
    # disabled, so checkpoints keep their format
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=False)
    result = RunResult(spec.key, "done", device=str(device))
    amp, channels_last = study.fast_paths(device)
    result.extra["amp"], result.extra["channels_last"] = amp, channels_last  # what "auto" became here
    if evaluate:
        result.acc_before_align = _evaluate(model, data, x_val, y_val, eval_batch)[1]
    if template is not None:
        align(model, template)
    if evaluate:
        result.acc_after_align = _evaluate(model, data, x_val, y_val, eval_batch)[1]
        result.extra["init_magnitudes"] = {name: magnitude_quantiles(model.get_parameter(name)[None])[0]
                                           for name in select(model, "all")}
    frozen = condition.frozen and template is not None
    learner = LEARNERS.get(condition.learner if frozen else "freeze_sgd")
    optimizer = learner.optimizer(model, template if frozen else None, spec.lr, study.adam_eps)
    handle = None
    if frozen:
        assert template is not None
        if learner.name == "freeze_sgd":
            handle = freeze(model, template, optimizer, spec.reset, study.eps, align=False, seed=spec.reset_seed)
        else:
            handle = freeze(model, template, optimizer, learner=learner.name, align=False)
        result.extra["constrained"] = template.numel()  # weights under the template
    return _Training(model, template, optimizer, scaler, handle, SignTracker(model),
                     torch.Generator().manual_seed(spec.order_seed), torch.Generator().manual_seed(spec.template_seed),
                     result)


@contextmanager
def cudnn_benchmark(on: bool) -> Iterator[None]:
    """Let cuDNN time its kernels and keep the fastest (its choice may differ between
    processes, so such runs repeat to rounding, not bit for bit); restored afterwards. The
    one-run trainer and the image ensemble both train under it.

    Example:
        >>> before = torch.backends.cudnn.benchmark
        >>> with cudnn_benchmark(True):
        ...     torch.backends.cudnn.benchmark
        True
        >>> torch.backends.cudnn.benchmark == before
        True
    """
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before or on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _seed_global(spec: RunSpec, device: torch.device) -> None:
    """Seed torch's global generator (the CPU's, and the run's GPU's), which dropout draws
    from; the seed is shared by the conditions of a trial."""
    seed = derive_seed(spec.study.seed, "dropout", spec.trial, spec.n_train, spec.hidden)
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(_cuda_index(device)):
            torch.cuda.manual_seed(seed)


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def _state(spec: RunSpec, t: _Training, device: torch.device, seconds: float) -> dict[str, Any]:
    """Everything needed to go on after ``t.epoch`` epochs."""
    state: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT, "key": spec.key, "epoch": t.epoch, "seconds": seconds,
        "model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(), "scaler": t.scaler.state_dict(),
        "order": t.order.get_state(), "swaps": t.swaps.get_state(), "rng": torch.get_rng_state(),
        "template": dict(t.template) if t.template is not None else None,
        "tracker": {name: signs.cpu() for name, signs in t.tracker.last.items()},
        "freeze": t.handle.state_dict() if t.handle is not None else None,
        "epochs": [asdict(e) for e in t.result.epochs],
        "acc_before_align": t.result.acc_before_align, "acc_after_align": t.result.acc_after_align,
        "extra": {k: v for k, v in t.result.extra.items() if k != "weights"},
    }
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(_cuda_index(device))
    return state


def _check(state: dict[str, Any], spec: RunSpec) -> None:
    """Raise ``ValueError`` unless ``state`` is a checkpoint of this run's format, run and epochs."""
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}")
    if state.get("key") != spec.key:
        raise ValueError(f"it belongs to run {state.get('key')!r}")
    if not 0 < int(state["epoch"]) <= spec.study.epochs:
        raise ValueError(f"epoch {state['epoch']} is not one of this run's {spec.study.epochs}")


def _restore(t: _Training, state: dict[str, Any], device: torch.device) -> None:
    """Put a checkpoint's state into freshly built training objects (raises if it doesn't fit)."""
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scaler.load_state_dict(state["scaler"])
    t.order.set_state(state["order"])
    t.swaps.set_state(state["swaps"])
    if t.template is not None:
        saved = state["template"]
        if saved is None or set(saved) != set(t.template):
            raise ValueError("the template's layers differ")
        for name, signs in saved.items():  # a Fluid-SPIN swap changes the template
            t.template[name] = signs
    if set(state["tracker"]) != set(t.tracker.last):
        raise ValueError("the sign tracker's layers differ")
    t.tracker.last = {name: signs.to(t.tracker.last[name].device) for name, signs in state["tracker"].items()}
    if t.handle is not None:  # the step keys the seeded resets; reparam's exact V
        t.handle.load_state_dict(state["freeze"])
    torch.set_rng_state(state["rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], _cuda_index(device))
    t.result.epochs = [EpochRecord(**e) for e in state["epochs"]]
    t.result.acc_before_align, t.result.acc_after_align = state["acc_before_align"], state["acc_after_align"]
    t.result.extra.update(state["extra"])
    t.epoch, t.seconds = int(state["epoch"]), float(state["seconds"])


def train_run(spec: RunSpec, device: str | torch.device = "cpu", keep_weights: bool = False,
              on_epoch: Callable[[float], None] | None = None, checkpoint: str | os.PathLike[str] | None = None,
              *, checkpoint_overhead: float = 0.1) -> RunResult:
    """Train one run end to end and return its per-epoch record.

    Args:
        spec: the run.
        device: where to train.
        keep_weights: put the final ``state_dict`` (on the CPU) in ``result.extra["weights"]``.
        on_epoch: called with ``1 / epochs`` after every epoch (progress reporting).
        checkpoint: a file. After finished epochs (see ``checkpoint_overhead``) the whole
            training state (weights, Adam, the gradient scaler, the batch-order, swap and dropout
            generators, the template, the sign tracker, the reset counter and the records so far)
            is written there atomically; if the file already holds this run's state, training
            continues from the epoch after it and gives exactly the numbers of an uninterrupted
            run. An unreadable or foreign file is ignored with a warning. The file is left in
            place: delete it once the result is safe.
        checkpoint_overhead: the share of training time that writing checkpoints may take. The
            first epoch is always saved; a later one when the epochs since the last write took at
            least ``1 / checkpoint_overhead`` times as long as writing it (with small models:
            every epoch). ``float("inf")``: after every epoch but the last.

    Returns:
        A :class:`RunResult`; for frozen runs ``extra["constrained"]`` is the number of
        weights under the template.

    Example:
        >>> from .config import load_study
        >>> from .plan import plan
        >>> run = plan(load_study("xor5d", ["trials=1", "epochs=2", "sizes=[8]"]))[0]
        >>> result = train_run(run)
        >>> result.status, len(result.epochs)
        ('done', 2)
    """
    start = time.perf_counter()
    study = spec.study
    device = torch.device(device)
    data = run_data(spec)
    x, y = data.x[: spec.n_train].to(device), data.y[: spec.n_train].to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    eval_batch = max(study.batch_size, 256)
    amp, channels_last = study.fast_paths(device)
    memory = torch.channels_last if channels_last else torch.preserve_format
    saver = Checkpoint(checkpoint, checkpoint_overhead) if checkpoint is not None else None
    saved = saver.read(lambda state: _check(state, spec), f"run {spec.key}") if saver is not None else None
    # dropout draws from torch's global generator: seed it per run (leaving the caller's as it was)
    cuda = [_cuda_index(device)] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), cudnn_benchmark(device.type == "cuda" and (amp or channels_last)):
        _seed_global(spec, device)
        t = _start(spec, data, device, x_val, y_val, eval_batch, memory, evaluate=saved is None)
        if saved is not None:
            try:
                _restore(t, saved, device)
            except Exception as e:
                warnings.warn(f"checkpoint {checkpoint} does not fit run {spec.key} ({type(e).__name__}: {e}); "
                              f"training it from the start", RuntimeWarning, stacklevel=2)
                _seed_global(spec, device)
                t = _start(spec, data, device, x_val, y_val, eval_batch, memory)
        _train(spec, t, data, x, y, x_val, y_val, eval_batch, memory, device, on_epoch, saver, start)
    result = t.result
    if t.handle is not None:
        t.handle.remove()
    if keep_weights:
        result.extra["weights"] = {k: v.detach().cpu().clone() for k, v in t.model.state_dict().items()}
    result.seconds = t.seconds + time.perf_counter() - start
    return result


def _train(spec: RunSpec, t: _Training, data: Data, x: Tensor, y: Tensor, x_val: Tensor, y_val: Tensor,
           eval_batch: int, memory: torch.memory_format, device: torch.device,
           on_epoch: Callable[[float], None] | None, checkpoints: Checkpoint | None, start: float) -> None:
    """The epochs after ``t.epoch``."""
    study, condition = spec.study, spec.condition
    model, template, optimizer, scaler, handle, result = t.model, t.template, t.optimizer, t.scaler, t.handle, t.result
    amp, _ = study.fast_paths(device)
    for epoch in range(t.epoch + 1, study.epochs + 1):
        tick = time.perf_counter()
        # accumulated on the device: no host sync per step
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.float64, device=device)
        resets_before = handle.total_resets if handle is not None else 0  # one sync per epoch, not per step
        # the epoch's order goes to the device once: no copy (or wait) inside the step
        for batch in torch.randperm(spec.n_train, generator=t.order).to(device).split(study.batch_size):
            optimizer.zero_grad(set_to_none=True)
            inputs = data.inputs(x[batch])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(inputs.to(memory_format=memory) if inputs.dim() == 4 else inputs)
                losses = task_loss(data.task, out.float() if amp else out, y[batch])
            scaler.scale(losses.mean()).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += losses.detach().sum().double()
            correct += task_correct(data.task, out.detach(), y[batch]).sum().double()
        resets = handle.total_resets - resets_before if handle is not None else 0
        if condition.swap and template is not None:  # Fluid SPIN: a new pattern with the same proportions
            fluid_spin_swap(model, template, condition.swap, mode=condition.swap_mode, generator=t.swaps)
        val_loss, val_acc = _evaluate(model, data, x_val, y_val, eval_batch)
        train_loss = loss_sum.item() / spec.n_train
        result.epochs.append(EpochRecord(epoch, train_loss, correct.item() / spec.n_train, val_loss, val_acc, resets,
                                         t.tracker.update(), time.perf_counter() - tick))
        t.epoch = epoch
        finite = math.isfinite(train_loss) and math.isfinite(val_loss)
        if checkpoints is not None and finite:
            checkpoints.after_epoch(lambda: _state(spec, t, device, t.seconds + time.perf_counter() - start),
                                    last=epoch >= study.epochs)
        if on_epoch is not None:
            on_epoch(1 / study.epochs)
        if not finite:
            result.status, result.reason = "failed", f"non-finite loss at epoch {epoch}"
            break
