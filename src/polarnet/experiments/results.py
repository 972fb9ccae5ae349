"""What a trainer returns for one run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["EpochRecord", "RunResult", "QUANTILES", "magnitude_quantiles"]

#: the quantile levels recorded for |w| of every weight layer at initialisation (Wang Fig. C.6)
QUANTILES = tuple(i / 20 for i in range(21))
_MAX_SAMPLE = 1 << 20


def magnitude_quantiles(weights: "Tensor") -> list[list[float]]:
    """Quantiles (at :data:`QUANTILES`) of ``|w|`` for each row of a ``(members, n)`` tensor.

    Layers above 2^20 weights are subsampled with a fixed stride (torch.quantile's input limit).

    Example:
        >>> import torch
        >>> magnitude_quantiles(torch.tensor([[-2.0, 1.0, 0.0, 3.0, -4.0]]))[0][:3]
        [0.0, 0.2, 0.4]
    """
    import torch

    flat = weights.detach().abs().flatten(1).to(torch.float64)
    if flat.shape[1] > _MAX_SAMPLE:
        flat = flat[:, :: -(-flat.shape[1] // _MAX_SAMPLE)]
    levels = torch.tensor(QUANTILES, dtype=torch.float64, device=flat.device)
    return torch.quantile(flat, levels, dim=1).T.cpu().tolist()


@dataclass
class EpochRecord:
    """Metrics of one epoch (1-based). ``resets`` counts Freeze-SGD resets during the epoch;
    ``sign_changes`` is the per-layer fraction of weights whose sign differs from the end of
    the previous epoch (from the start, for epoch 1); ``wall`` is the epoch's wall time in s
    (for an ensemble, the time of the whole ensemble's epoch)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    resets: int
    sign_changes: dict[str, float]
    wall: float


@dataclass
class RunResult:
    """A finished or failed run. ``engine`` is the engine that trained it (a key of
    :data:`polarnet.experiments.engines.ENGINES`: ``stacked``, ``vmap`` or ``single``)."""

    key: str
    status: str  # "done" | "failed"
    reason: str | None = None
    acc_before_align: float | None = None
    acc_after_align: float | None = None
    epochs: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)
    engine: str = "single"
