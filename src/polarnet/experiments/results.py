"""What a trainer returns for one run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["EpochRecord", "RunResult"]


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
    """A finished or failed run."""

    key: str
    status: str  # "done" | "failed"
    reason: str | None = None
    acc_before_align: float | None = None
    acc_after_align: float | None = None
    epochs: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)
