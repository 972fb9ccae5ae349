"""Train one run as a plain PyTorch user would: an ``nn.Module``, ``torch.optim.Adam``,
and :func:`polarnet.freeze`. The reference the vectorised ensemble must match, and the path
for models the ensemble doesn't cover (image studies).

Data are held as tensors on the device; batches are indexed there and turned into model
input by the dataset's preparation (for images: normalise, repeat gray, resize).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..dynamics import SignTracker, fluid_spin_swap
from ..freeze import freeze
from ..init import align
from ..models import get_model
from .conditions import MAGNITUDES, POLARITIES
from .datasets import Data, load_data, task_correct, task_loss
from .plan import RunSpec
from ..layers import select
from .results import EpochRecord, RunResult, magnitude_quantiles

__all__ = ["prepare_model", "train_run", "run_data"]


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
    was_training = model.training
    model.eval()
    loss = correct = 0.0
    for start in range(0, len(x), batch):
        out = model(data.inputs(x[start : start + batch]))
        loss += task_loss(data.task, out, y[start : start + batch]).sum().item()
        correct += task_correct(data.task, out, y[start : start + batch]).sum().item()
    model.train(was_training)
    return loss / len(x), correct / len(x)


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
    study, condition = spec.study, spec.condition
    data = run_data(spec)
    x, y = data.x[: spec.n_train].to(device), data.y[: spec.n_train].to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    eval_batch = max(study.batch_size, 256)
    model, template = prepare_model(spec)
    memory = torch.channels_last if study.channels_last else torch.preserve_format
    model.to(device, memory_format=memory)
    model.train()
    # mixed precision: bf16 autocast on the CPU; fp16 with a gradient scaler on CUDA (a skipped
    # step never calls optimizer.step(), so Freeze-SGD's hook only runs after real updates)
    device_type = torch.device(device).type
    amp_dtype = torch.float16 if device_type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device_type, enabled=study.amp and device_type == "cuda")
    result = RunResult(spec.key, "done", device=str(device))
    result.acc_before_align = _evaluate(model, data, x_val, y_val, eval_batch)[1]
    if template is not None:
        align(model, template)
    result.acc_after_align = _evaluate(model, data, x_val, y_val, eval_batch)[1]
    result.extra["init_magnitudes"] = {name: magnitude_quantiles(model.get_parameter(name)[None])[0]
                                       for name in select(model, "all")}

    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr, eps=study.adam_eps)
    handle = None
    if condition.frozen and template is not None:
        handle = freeze(model, template, optimizer, spec.reset, study.eps, align=False, seed=spec.reset_seed)
    swaps = torch.Generator().manual_seed(spec.template_seed)
    tracker = SignTracker(model)
    order = torch.Generator().manual_seed(spec.order_seed)
    for epoch in range(1, study.epochs + 1):
        tick = time.perf_counter()
        # accumulated on the device: no host sync per step
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.float64, device=device)
        resets = 0
        for batch in torch.randperm(spec.n_train, generator=order).split(study.batch_size):
            batch = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            inputs = data.inputs(x[batch])
            with torch.autocast(device_type, dtype=amp_dtype, enabled=study.amp):
                out = model(inputs.to(memory_format=memory) if inputs.dim() == 4 else inputs)
                losses = task_loss(data.task, out.float() if study.amp else out, y[batch])
            scaler.scale(losses.mean()).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += losses.detach().sum().double()
            correct += task_correct(data.task, out.detach(), y[batch]).sum().double()
            if handle is not None:
                resets += sum(handle.last_resets.values())
        if condition.swap and template is not None:  # Fluid SPIN: a new pattern with the same proportions
            fluid_spin_swap(model, template, condition.swap, mode=condition.swap_mode, generator=swaps)
        val_loss, val_acc = _evaluate(model, data, x_val, y_val, eval_batch)
        train_loss = loss_sum.item() / spec.n_train
        result.epochs.append(EpochRecord(epoch, train_loss, correct.item() / spec.n_train, val_loss, val_acc, resets,
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
