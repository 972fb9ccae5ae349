"""What the engine trains on: a dataset gives a training pool, a validation set and its task.

The training set of size ``n`` is the first ``n`` samples of the pool (nested across sizes,
identical across conditions of a trial); validation is the same for every run of a study.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor
from torch.nn import functional as F

from ..data.xor import xor_pool
from ..registry import Registry

__all__ = ["Data", "DATASET_LOADERS", "load_data", "binary_loss", "binary_correct"]


@dataclass(frozen=True)
class Data:
    """A training pool and a validation set, on the CPU."""

    x: Tensor
    y: Tensor
    x_val: Tensor
    y_val: Tensor


def binary_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample binary cross-entropy on logits (the reference's sigmoid + BCE)."""
    return F.binary_cross_entropy_with_logits(logits, y, reduction="none")


def binary_correct(logits: Tensor, y: Tensor) -> Tensor:
    """1 where the thresholded logit matches the label."""
    return ((logits > 0) == (y > 0.5)).to(logits.dtype)


DATASET_LOADERS: Registry = Registry("dataset")


@DATASET_LOADERS.register("xor")
def _xor(pool_size: int, val_size: int, dims: int, train_seed: int, val_seed: int, dtype: torch.dtype) -> Data:
    x, y = xor_pool(pool_size, dims, train_seed, dtype=dtype)
    x_val, y_val = xor_pool(val_size, dims, val_seed, dtype=dtype)
    return Data(x, y, x_val, y_val)


@lru_cache(maxsize=16)
def load_data(name: str, pool_size: int, val_size: int, dims: int, train_seed: int, val_seed: int, dtype: str) -> Data:
    """Load (and cache per process) a dataset's pool and validation set.

    Example:
        >>> d = load_data("xor", 64, 100, 5, 0, 1, "float32")
        >>> d.x.shape, d.x_val.shape
        (torch.Size([64, 5]), torch.Size([100, 5]))
    """
    return DATASET_LOADERS.get(name)(pool_size, val_size, dims, train_seed, val_seed, getattr(torch, dtype))
