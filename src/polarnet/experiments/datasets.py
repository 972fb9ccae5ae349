"""What the engine trains on: a dataset gives a training pool, a validation set and its task.

The training set of size ``n`` is the first ``n`` samples of the pool (nested across sizes,
identical across conditions of a trial); validation is the same for every run of a study.
Image pools are ordered class-stratified (``subset = "stratified"``, so every prefix is
balanced) or as stored (``subset = "first"``, as the reference code did). Images stay uint8
at their native size; :class:`ImagePrep` turns a batch into the model's input on the device
(normalise, repeat a gray channel, resize), so no per-batch decoding or collation happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from ..data.images import IMAGE_DATASETS, load_images, stratified_order
from ..data.xor import xor_pool
from ..registry import Registry

__all__ = ["Data", "ImagePrep", "DATASET_LOADERS", "load_data", "model_kwargs", "binary_loss", "binary_correct", "task_loss",
           "task_correct"]


def binary_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample binary cross-entropy on logits (the reference's sigmoid + BCE)."""
    return F.binary_cross_entropy_with_logits(logits, y, reduction="none")


def binary_correct(logits: Tensor, y: Tensor) -> Tensor:
    """1 where the thresholded logit matches the label."""
    return ((logits > 0) == (y > 0.5)).to(logits.dtype)


def task_loss(task: str, output: Tensor, y: Tensor) -> Tensor:
    """Per-sample loss: binary (one logit) or multiclass (cross-entropy)."""
    if task == "binary":
        return binary_loss(output.squeeze(-1), y)
    return F.cross_entropy(output, y, reduction="none")


def task_correct(task: str, output: Tensor, y: Tensor) -> Tensor:
    """Per-sample 1/0 for a right/wrong prediction."""
    if task == "binary":
        return binary_correct(output.squeeze(-1), y)
    return (output.argmax(-1) == y).to(output.dtype)


@dataclass(frozen=True)
class ImagePrep:
    """uint8 images → normalised float model input, on whatever device the batch is on."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int
    size: int
    dtype: str = "float32"

    def __call__(self, images: Tensor) -> Tensor:
        x = images.to(getattr(torch, self.dtype)).div_(255.0)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = (x - mean) / std
        if x.shape[1] != self.channels:
            if x.shape[1] != 1:
                raise ValueError(f"cannot turn {x.shape[1]}-channel images into {self.channels} channels")
            x = x.expand(-1, self.channels, -1, -1)
        if self.size and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x.contiguous()


@dataclass(frozen=True)
class Data:
    """A training pool and a validation set (on the CPU), with how to use them."""

    x: Tensor
    y: Tensor
    x_val: Tensor
    y_val: Tensor
    task: str = "binary"  # or "multiclass"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    hidden_axis: bool = True  # the model takes the study's ``hidden`` axis
    prep: ImagePrep | None = None

    def inputs(self, x: Tensor) -> Tensor:
        """A batch as the model takes it."""
        return self.prep(x) if self.prep is not None else x

    @property
    def num_classes(self) -> int:
        """How many classes the task has: 2 for a binary task (XOR, or a user's dataset with
        ``task = "binary"``), else the model's ``num_classes``, else the distinct labels.

        Example:
            >>> y = torch.tensor([0, 1, 2, 4])
            >>> Data(y, y, y, y, "multiclass").num_classes, Data(y, y, y, y, "binary").num_classes
            (4, 2)
        """
        if self.task == "binary":
            return 2
        if "num_classes" in self.model_kwargs:
            return int(self.model_kwargs["num_classes"])
        return int(torch.unique(torch.cat([self.y, self.y_val])).numel())


DATASET_LOADERS: Registry = Registry("dataset")


def model_kwargs(study: Any, hidden: int | None = None) -> dict[str, Any] | None:
    """What a study's model is built with (``get_model(study.model, **kwargs)``), known without
    loading the data: XOR gives ``in_features`` (and ``hidden``, the study's hidden axis, when
    given); an image dataset ``num_classes`` and ``in_channels``, and ``head`` when the study
    sets it (``head = "extend"``; the default, ``"replace"``, is the models' own, so a model
    without the option is built as before). ``None`` for a dataset registered elsewhere, whose
    loader alone knows.

    The loaders put the same arguments (less ``hidden``) in :attr:`Data.model_kwargs`.

    Example:
        >>> from .config import Study
        >>> model_kwargs(Study(dims=7), hidden=16)
        {'in_features': 7, 'hidden': 16}
        >>> model_kwargs(Study(dataset="cifar10", classes=(3, 5)), hidden=16)
        {'num_classes': 2, 'in_channels': 3}
        >>> model_kwargs(Study(dataset="cifar10", model="alexnet", head="extend"))
        {'num_classes': 10, 'in_channels': 3, 'head': 'extend'}
    """
    if study.dataset == "xor":
        return {"in_features": study.dims, **({"hidden": hidden} if hidden is not None else {})}
    if study.dataset in IMAGE_DATASETS:
        classes = len(study.classes) if study.classes else IMAGE_DATASETS[study.dataset].num_classes
        kwargs: dict[str, Any] = {"num_classes": classes, "in_channels": study.in_channels}
        if study.head != "replace":
            kwargs["head"] = study.head
        return kwargs
    return None


@DATASET_LOADERS.register("xor")
def _xor(study: Any, pool_size: int, train_seed: int, val_seed: int) -> Data:
    dtype = getattr(torch, study.dtype)
    x, y = xor_pool(pool_size, study.dims, train_seed, dtype=dtype)
    x_val, y_val = xor_pool(study.val_size, study.dims, val_seed, dtype=dtype)
    return Data(x, y, x_val, y_val, "binary", model_kwargs(study) or {})


def _images(name: str):
    spec = IMAGE_DATASETS[name]

    def load(study: Any, pool_size: int, train_seed: int, val_seed: int) -> Data:
        x, y = load_images(name, True, study.data_root, study.download)
        x_val, y_val = load_images(name, False, study.data_root, study.download)
        if study.classes:
            keep = list(study.classes)
            x, y = _only(x, y, keep)
            x_val, y_val = _only(x_val, y_val, keep)
        order = stratified_order(y, train_seed) if study.subset == "stratified" else torch.arange(len(y))
        if pool_size > len(order):
            raise ValueError(f"{name}: a training set of {pool_size} asked for, the data has {len(order)}")
        order = order[:pool_size]
        val_order = stratified_order(y_val, val_seed)[: study.val_size]
        prep = ImagePrep(spec.mean, spec.std, study.in_channels, study.input_size, study.dtype)
        return Data(x[order], y[order], x_val[val_order], y_val[val_order], "multiclass",
                    model_kwargs(study) or {}, hidden_axis=False, prep=prep)

    return load


def _only(x: Tensor, y: Tensor, classes: list[int]) -> tuple[Tensor, Tensor]:
    """Keep some classes, relabelled 0..k-1 in the order given."""
    mapping = torch.full((int(y.max()) + 1,), -1, dtype=torch.int64)
    mapping[torch.tensor(classes)] = torch.arange(len(classes))
    keep = mapping[y] >= 0
    return x[keep], mapping[y[keep]]


for _name in IMAGE_DATASETS:
    DATASET_LOADERS.register(_name)(_images(_name))

_CACHE: dict[tuple, Data] = {}


def load_data(study: Any, pool_size: int, train_seed: int, val_seed: int) -> Data:
    """Load (and cache per process) a study's pool and validation set.

    The cache is keyed by what shapes the data; the model's arguments (:func:`model_kwargs`)
    are the study's own, so two studies that share data but not a model setting (``head``)
    share the tensors and still build their own models.

    Example:
        >>> from .config import load_study
        >>> d = load_data(load_study("xor5d", ["val_size=100"]), 64, 0, 1)
        >>> d.x.shape, d.x_val.shape, d.task
        (torch.Size([64, 5]), torch.Size([100, 5]), 'binary')
    """
    key = (study.dataset, study.dims, study.val_size, study.dtype, study.subset, tuple(study.classes),
           study.in_channels, study.input_size, str(study.data_root), pool_size, train_seed, val_seed)
    if key not in _CACHE:
        if len(_CACHE) >= 8:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = DATASET_LOADERS.resolve(study.dataset)(study, pool_size, train_seed, val_seed)
    data, kwargs = _CACHE[key], model_kwargs(study)
    return data if kwargs is None or kwargs == data.model_kwargs else replace(data, model_kwargs=kwargs)
