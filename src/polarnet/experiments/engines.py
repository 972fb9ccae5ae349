"""Which engine trains a chunk of runs: decided once per study cell, announced, recorded per run.

A study with ``vectorize = true`` trains each chunk of runs on the fastest engine that can take
its model, and falls back by itself; no run fails because an engine refused its model:

* ``stacked``: a vectorised ensemble, layer by layer (the XOR ensemble, or the image ensemble's
  :class:`~polarnet.experiments.stacked.StackedProgram`);
* ``vmap``: the image ensemble with the model run whole under ``torch.func.vmap`` of
  ``functional_call``, for a model ``torch.fx`` can't trace (data-dependent control flow);
* ``single``: one run at a time (:func:`~polarnet.experiments.trainer.train_run`): a chunk of
  one run, ``vectorize = false``, a reset rule or learner the ensembles don't implement, or a
  model the image ensemble refuses (its forward reads a layer's weight itself, as a conv that
  calls ``F.conv2d(x, self.weight)`` does).

For an image cell the choice comes from a probe: two members of the model stacked, one
training step and one evaluation on a two-image batch. Whatever the probe raises makes the
cell train one run at a time, for the reason it gives. The probe is made once per
architecture and device in a process (the sweep's driver, to announce the choice in one line,
and each worker). Each run's :attr:`~polarnet.experiments.results.RunResult.engine` says the
engine that trained it, and the store keeps it (``runs.engine``).
"""

from __future__ import annotations

import copy
import json
import sys
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple, TextIO

import torch
from torch.func import stack_module_state

from ..data.images import IMAGE_DATASETS
from ..models import get_model, resolve_model
from .datasets import model_kwargs
from .ensemble import supports
from .image_ensemble import supports_images
from .plan import RunSpec
from .stacked import SHARED, Act, StackedProgram

__all__ = ["ENGINES", "Engine", "chunk_engine", "engine_line", "announce_engines"]

#: the engines a run can be trained by, as the store records them, and how the sweep's line says so
ENGINES = {"stacked": "in stacked ensembles", "vmap": "in ensembles under torch.func.vmap",
           "single": "one at a time"}
_PROBED: dict[tuple, Engine] = {}


class Engine(NamedTuple):
    """The engine of a chunk (a key of :data:`ENGINES`) and, where it is not the one the study
    asked for, why."""

    name: str
    reason: str = ""


def chunk_engine(specs: Sequence[RunSpec], device: str | torch.device = "cpu") -> Engine:
    """The engine :func:`~polarnet.experiments.executors.compute_chunk` trains ``specs`` with.

    Example:
        >>> from .config import load_study
        >>> from .plan import plan
        >>> runs = plan(load_study("xor5d", ["trials=1", "sizes=[8]"]))
        >>> chunk_engine(runs), chunk_engine(runs[:1])
        (Engine(name='stacked', reason=''), Engine(name='single', reason=''))
    """
    first = specs[0]
    if len(specs) < 2 or not first.study.vectorize:
        return Engine("single")
    if supports(first):
        return Engine("stacked")
    if not supports_images(first):
        return Engine("single")
    return _image_engine(first, torch.device(device))


def _image_engine(spec: RunSpec, device: torch.device) -> Engine:
    study = spec.study
    kwargs = model_kwargs(study) or {}
    try:
        factory = resolve_model(study.model)
    except Exception as e:  # the runs will say so, each: not the engine's business
        return Engine("single", f"the model {study.model!r} can't be resolved ({e})")
    key = (factory, json.dumps(kwargs, sort_keys=True, default=str), study.dtype, study.in_channels,
           study.input_size, study.dataset, str(device), study.fast_paths(device))
    if key not in _PROBED:
        _PROBED[key] = _probe(spec, device)
    return _PROBED[key]


def _probe(spec: RunSpec, device: torch.device) -> Engine:
    """Build the stacked program of two members and run a training step and an evaluation."""
    study = spec.study
    dtype = getattr(torch, study.dtype)
    amp, channels_last = study.fast_paths(device)
    size = study.input_size or IMAGE_DATASETS[study.dataset].size
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):  # the caller's generators stay as they were
            model = get_model(study.model, **(model_kwargs(study) or {})).to(device=device, dtype=dtype)
            program = StackedProgram(copy.deepcopy(model), torch.channels_last,
                                     torch.channels_last if channels_last else torch.contiguous_format)
            params, buffers = stack_module_state([model, copy.deepcopy(model)])
            leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
            # two images: BatchNorm in training needs more than one value per channel
            x = torch.zeros(2, study.in_channels, size, size, dtype=dtype, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = program(leaves, {k: v.clone() for k, v in buffers.items()}, Act(x, SHARED), True)
            out.float().sum().backward()
            with torch.no_grad():
                program({k: v.detach() for k, v in leaves.items()}, buffers, Act(x, SHARED), False)
    except Exception as e:  # whatever the ensemble refuses, the runs train one at a time
        return Engine("single", str(e).splitlines()[0] if str(e) else type(e).__name__)
    if not program.traced:
        return Engine("vmap", "torch.fx can't trace the model's forward")
    return Engine("stacked")


def engine_line(chunks: Sequence[Sequence[RunSpec]], device: str | torch.device = "cpu") -> str:
    """One line: how many runs each engine trains and, where the model made an engine change, why.

    Example:
        >>> from .config import load_study
        >>> from .plan import plan
        >>> runs = plan(load_study("xor5d", ["trials=2", "sizes=[8]"]))
        >>> engine_line([runs])
        'engine: 6 runs in stacked ensembles'
        >>> engine_line([[r] for r in runs])
        'engine: 6 runs one at a time'
    """
    return _tally(chunks, device)[0]


def _tally(chunks: Sequence[Sequence[RunSpec]], device: str | torch.device) -> tuple[str, bool]:
    """:func:`engine_line`, and whether an engine refused a model (runs fell back to one at a time)."""
    counts: Counter[str] = Counter()
    reasons: dict[str, None] = {}
    refused = False
    for chunk in chunks:
        engine = chunk_engine(chunk, device)
        counts[engine.name] += len(chunk)
        if engine.reason:
            reasons[engine.reason] = None
            refused = refused or engine.name == "single"
    parts = [f"{counts[name]} runs {words}" for name, words in ENGINES.items() if counts[name]]
    line = "engine: " + (", ".join(parts) if parts else "no runs")
    return line + (" — " + "; ".join(reasons) if reasons else ""), refused


def announce_engines(chunks: Sequence[Sequence[RunSpec]], device: str | torch.device, verbose: bool,
                     stream: TextIO | None = None) -> str:
    """Write :func:`engine_line` to ``stream`` (stderr): with ``verbose``, always; otherwise only
    when runs fall back to one at a time because an engine refused the model. Returns the line.

    Example:
        >>> import io
        >>> from .config import load_study
        >>> from .plan import plan
        >>> out = io.StringIO()
        >>> announce_engines([plan(load_study("xor5d", ["trials=1", "sizes=[8]"]))], "cpu", False, out)
        'engine: 3 runs in stacked ensembles'
        >>> out.getvalue()
        ''
    """
    line, refused = _tally(chunks, device)
    if verbose or refused:
        print(line, file=stream if stream is not None else sys.stderr, flush=True)
    return line
