"""``polarnet pretrain``: train a source model with polarnet itself, so a whole polarity-
transfer study runs offline (e.g. pretrain on Fashion-MNIST classes 0–4, transfer to 5–9)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TextIO

import torch

from ..data.images import IMAGE_DATASETS
from ..fileformat import atomic_write
from .config import Study
from .executors import resolve_device
from .checks import check_study
from .plan import plan
from .trainer import train_run

__all__ = ["pretrain", "PretrainFailed"]


class PretrainFailed(RuntimeError):
    """Training the source model did not finish (e.g. its loss became NaN)."""


def pretrain(dataset: str, output: str | os.PathLike[str], *, arch: str = "lenet", classes: tuple[int, ...] = (),
             n_train: int = 6000, epochs: int = 5, batch_size: int = 100, lr: float = 1e-3, input_size: int = 0,
             in_channels: int | None = None, seed: int = 0, device: str = "auto", data_root: str | None = None,
             download: bool = False, progress: TextIO | None = None) -> dict[str, float]:
    """Train ``arch`` on ``dataset`` (optionally only some ``classes``) and save its state dict.

    The training set is the first ``n_train`` images of the class-stratified order; validation
    uses up to 10,000 test images of the same classes.

    With ``progress`` (a text stream such as ``sys.stderr``), a line is written after every
    epoch: ``pretrain: epoch 2/5, 12 s``.

    Returns:
        ``{"val_acc": …, "val_loss": …, "n_train": …}`` of the last epoch.

    Raises:
        ValueError: bad settings (checked before any data is read or anything trained).
        PretrainFailed: training did not finish; nothing is written.
    """
    if dataset not in IMAGE_DATASETS:
        raise ValueError(f"pretrain: unknown image dataset {dataset!r}; choose one of {sorted(IMAGE_DATASETS)}")
    channels = in_channels if in_channels is not None else IMAGE_DATASETS[dataset].channels
    val_size = min(10000, IMAGE_DATASETS[dataset].split_size(False, tuple(classes)))  # the classes' test images
    study = Study(name=f"pretrain-{dataset}", dataset=dataset, model=arch, conditions=("fluid_rand",), sizes=(n_train,),
                  trials=1, epochs=epochs, batch_size=batch_size, lr=lr, val_size=val_size, seed=seed, classes=tuple(classes),
                  in_channels=channels, input_size=input_size, init_linear="glorot_uniform", init_bias="zeros",
                  data_root=data_root, download=download, vectorize=False).validate()
    check_study(study)  # an architecture that can't take the data fails here, not after loading it
    result = train_run(plan(study)[0], resolve_device(device), keep_weights=True,
                       on_epoch=_EpochLines(epochs, progress) if progress is not None else None)
    if result.status != "done":
        raise PretrainFailed(f"pretraining {arch} on {dataset} failed: {result.reason}; try a lower --lr (now {lr:g})")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, lambda f: torch.save(result.extra["weights"], f), "state-dict file", ValueError)
    last = result.epochs[-1]
    return {"val_acc": last.val_acc, "val_loss": last.val_loss, "n_train": n_train}


class _EpochLines:
    """``on_epoch`` callback of :func:`train_run` that writes one line per finished epoch."""

    def __init__(self, epochs: int, stream: TextIO) -> None:
        self.epochs, self.stream, self.done, self.start = epochs, stream, 0, time.monotonic()

    def __call__(self, fraction: float) -> None:
        self.done += 1
        self.stream.write(f"pretrain: epoch {self.done}/{self.epochs}, {time.monotonic() - self.start:.0f} s\n")
        self.stream.flush()
