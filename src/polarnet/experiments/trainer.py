"""Train one run as a plain PyTorch user would: an ``nn.Module``, ``torch.optim.Adam``,
and :func:`polarnet.freeze`. The reference the vectorised ensemble must match, and the path
for models the ensemble doesn't cover.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..dynamics import SignTracker
from ..freeze import freeze
from ..init import align
from ..models import get_model
from .conditions import MAGNITUDES, POLARITIES
from .datasets import Data, binary_correct, binary_loss, load_data
from .plan import RunSpec
from .results import EpochRecord, RunResult

__all__ = ["prepare_model", "train_run", "run_data"]


def run_data(spec: RunSpec) -> Data:
    """The run's data: the study's pool (sized by its largest training set) and validation set."""
    study = spec.study
    return load_data(study.dataset, max(study.sizes), study.val_size, study.dims, spec.data_seed, spec.val_seed, study.dtype)


def prepare_model(spec: RunSpec):
    """Build, initialise and template a run's model; returns ``(model, template or None)``.

    The model is not yet aligned; every condition of a trial gets the same magnitudes.
    """
    study, condition = spec.study, spec.condition
    model = get_model(study.model, in_features=study.dims, hidden=spec.hidden).to(getattr(torch, study.dtype))
    MAGNITUDES.get(condition.magnitudes)(condition, model, study, spec.init_seed)
    template = POLARITIES.get(condition.polarity)(condition, model, study, spec.template_seed)
    return model, template


@torch.no_grad()
def _evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    logits = model(x).squeeze(-1)
    return binary_loss(logits, y).mean().item(), binary_correct(logits, y).mean().item()


def train_run(spec: RunSpec, device: str | torch.device = "cpu", keep_weights: bool = False,
              on_epoch: Callable[[float], None] | None = None) -> RunResult:
    """Train one run end to end and return its per-epoch record.

    With ``keep_weights``, the final ``state_dict`` (on the CPU) is in ``result.extra["weights"]``;
    ``on_epoch(1 / epochs)`` is called after every epoch (progress reporting).

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
    data = run_data(spec)
    x, y = data.x[: spec.n_train].to(device), data.y[: spec.n_train].to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    model, template = prepare_model(spec)
    model.to(device)
    result = RunResult(spec.key, "done", device=str(device))
    result.acc_before_align = _evaluate(model, x_val, y_val)[1]
    if template is not None:
        align(model, template)
    result.acc_after_align = _evaluate(model, x_val, y_val)[1]

    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr, eps=study.adam_eps)
    handle = None
    if spec.condition.frozen and template is not None:
        handle = freeze(model, template, optimizer, spec.reset, study.eps, align=False, seed=spec.reset_seed)
    tracker = SignTracker(model)
    order = torch.Generator().manual_seed(spec.order_seed)
    for epoch in range(1, study.epochs + 1):
        tick = time.perf_counter()
        loss_sum = correct = 0.0
        resets = 0
        for batch in torch.randperm(spec.n_train, generator=order).split(study.batch_size):
            batch = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            logits = model(x[batch]).squeeze(-1)
            losses = binary_loss(logits, y[batch])
            losses.mean().backward()
            optimizer.step()
            loss_sum += losses.detach().sum().item()
            correct += binary_correct(logits.detach(), y[batch]).sum().item()
            if handle is not None:
                resets += sum(handle.last_resets.values())
        val_loss, val_acc = _evaluate(model, x_val, y_val)
        train_loss = loss_sum / spec.n_train
        result.epochs.append(EpochRecord(epoch, train_loss, correct / spec.n_train, val_loss, val_acc, resets,
                                         tracker.update(), time.perf_counter() - tick))
        if on_epoch is not None:
            on_epoch(1 / study.epochs)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            result.status, result.reason = "failed", f"non-finite loss at epoch {epoch}"
            break
    if handle is not None:
        handle.remove()
    if keep_weights:
        result.extra["weights"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    result.seconds = time.perf_counter() - start
    return result
