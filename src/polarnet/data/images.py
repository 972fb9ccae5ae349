"""Image datasets (Fashion-MNIST, MNIST, CIFAR-10) through torchvision's dataset classes.

Where the files are looked for, in order: ``data_root`` (``--data-root``), ``$POLARNET_DATA``,
the user cache (``$XDG_CACHE_HOME/polarnet/data``, else ``~/.cache/polarnet/data``), then the
install location of a Debian package (``dataset-fashion-mnist`` puts gzipped IDX files in
``/usr/share/datasets/fashion-mnist``; they are unpacked into torchvision's layout in the user
cache on first use). ``download=True`` lets torchvision download into the first of these
folders when online. Missing data is an error that lists where polarnet looked and how to get
the data.

Images come back whole, as uint8 tensors ``(N, C, H, W)`` with int64 labels, so a study can
hold them on its device and index batches there.
"""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["ImageDataset", "IMAGE_DATASETS", "DataError", "search_roots", "find_root", "load_images",
           "stratified_order"]


class DataError(FileNotFoundError):
    """A dataset is missing or unreadable; the message says where polarnet looked."""


@dataclass(frozen=True)
class ImageDataset:
    """What polarnet knows about one image dataset."""

    name: str
    torchvision_class: str
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    debian_package: str | None = None
    debian_dir: str | None = None
    train_counts: tuple[int, ...] = ()  # images per class in the training split (class 0, 1, …)
    test_counts: tuple[int, ...] = ()  # and in the test split

    @property
    def num_classes(self) -> int:
        """How many classes the dataset has."""
        return len(self.train_counts)

    def split_size(self, train: bool, classes: tuple[int, ...] | list[int] = ()) -> int:
        """Images in the training (or test) split, counting only ``classes`` when given.

        Known without reading the data, so a study's sizes are checked before it runs.

        Raises:
            ValueError: a class index the dataset doesn't have.

        Example:
            >>> IMAGE_DATASETS["fashion_mnist"].split_size(True), IMAGE_DATASETS["cifar10"].split_size(False, [3, 5])
            (60000, 2000)
        """
        counts = self.train_counts if train else self.test_counts
        unknown = [c for c in classes if not 0 <= c < len(counts)]
        if unknown:
            raise ValueError(f"{self.name}: no class {unknown[0]}; classes are 0..{len(counts) - 1}")
        return sum(counts[c] for c in classes) if classes else sum(counts)

    def folder(self, root: Path) -> Path:
        """Where torchvision keeps this dataset's files under ``root``."""
        if self.torchvision_class == "CIFAR10":
            return root / "cifar-10-batches-py"
        return root / self.torchvision_class / "raw"

    def files(self) -> list[str]:
        """The files torchvision reads."""
        if self.torchvision_class == "CIFAR10":
            return [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
        return [f"{p}-{k}-idx{d}-ubyte" for p in ("train", "t10k") for k, d in (("images", 3), ("labels", 1))]


IMAGE_DATASETS = {
    "fashion_mnist": ImageDataset("fashion_mnist", "FashionMNIST", 1, 28, (0.2860,), (0.3530,),
                                  "dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist",
                                  train_counts=(6000,) * 10, test_counts=(1000,) * 10),
    # MNIST's classes are not balanced: 60,000 training and 10,000 test images in all
    "mnist": ImageDataset("mnist", "MNIST", 1, 28, (0.1307,), (0.3081,),
                          train_counts=(5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
                          test_counts=(980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)),
    "cifar10": ImageDataset("cifar10", "CIFAR10", 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                            train_counts=(5000,) * 10, test_counts=(1000,) * 10),
}


def _dataset(name: str) -> ImageDataset:
    try:
        return IMAGE_DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown image dataset {name!r}; choose one of {sorted(IMAGE_DATASETS)}") from None


def user_cache() -> Path:
    """``$XDG_CACHE_HOME/polarnet/data`` or ``~/.cache/polarnet/data``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "polarnet" / "data"


def search_roots(data_root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched, in order: ``data_root``, ``$POLARNET_DATA``, the user cache.

    Example:
        >>> search_roots("/data")[0]
        PosixPath('/data')
    """
    roots = [Path(data_root)] if data_root else []
    if os.environ.get("POLARNET_DATA"):
        roots.append(Path(os.environ["POLARNET_DATA"]))
    roots.append(user_cache())
    return roots


def _complete(spec: ImageDataset, root: Path) -> bool:
    return all((spec.folder(root) / f).is_file() for f in spec.files())


def _unpack_debian(spec: ImageDataset, debian_dir: Path, into: Path) -> bool:
    """Gunzip a Debian package's IDX files into torchvision's layout (atomically per file)."""
    sources = [debian_dir / (f + ".gz") for f in spec.files()]
    if not all(s.is_file() for s in sources):
        return False
    target = spec.folder(into)
    target.mkdir(parents=True, exist_ok=True)
    for source in sources:
        destination = target / source.name[:-3]
        if destination.is_file():
            continue
        partial = destination.with_name(destination.name + ".partial")
        try:
            with gzip.open(source, "rb") as fin, open(partial, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        except (OSError, EOFError) as e:
            partial.unlink(missing_ok=True)
            raise DataError(f"{source}: cannot unpack ({e}); reinstall the package: apt-get install --reinstall "
                            f"{spec.debian_package}") from None
        os.replace(partial, destination)
    return True


def find_root(name: str, data_root: str | os.PathLike[str] | None = None, download: bool = False,
              debian_dir: str | os.PathLike[str] | None = None) -> Path:
    """The root folder to hand to torchvision for dataset ``name``.

    Raises:
        DataError: the data is nowhere; the message lists the folders searched and how to get it.
    """
    spec = _dataset(name)
    roots = search_roots(data_root)
    for root in roots:
        if _complete(spec, root):
            return root
    debian = Path(debian_dir) if debian_dir else Path(spec.debian_dir) if spec.debian_dir else None
    if debian is not None and _unpack_debian(spec, debian, roots[-1]):
        return roots[-1]
    if download:
        return roots[0]
    looked = "\n  ".join(str(spec.folder(r)) for r in roots)
    if debian is not None:
        looked += f"\n  {debian} (Debian package {spec.debian_package})"
    hint = f"apt-get install {spec.debian_package}, or " if spec.debian_package else ""
    raise DataError(
        f"{name}: data not found. Looked in:\n  {looked}\nTo get it: {hint}run with --download when online, or put "
        f"torchvision's files ({', '.join(spec.files()[:2])}, …) in {spec.folder(roots[0])}, set POLARNET_DATA, or point a study at them with --set data_root=DIR."
    )


def load_images(name: str, train: bool, data_root: str | os.PathLike[str] | None = None, download: bool = False,
                verify_checksums: bool = True, debian_dir: str | os.PathLike[str] | None = None) -> tuple[Tensor, Tensor]:
    """Load a whole split as ``(uint8 images (N, C, H, W), int64 labels (N,))``.

    Args:
        name: ``fashion_mnist``, ``mnist`` or ``cifar10``.
        train: the training split, else the test split.
        data_root, download, debian_dir: see :func:`find_root`.
        verify_checksums: check CIFAR-10's published MD5 sums (torchvision's own check).

    Raises:
        DataError: missing data, or a file that is truncated or corrupted (named).
    """
    import torchvision.datasets as tvd

    spec = _dataset(name)
    root = find_root(name, data_root, download, debian_dir)
    cls = getattr(tvd, spec.torchvision_class)
    if not verify_checksums and spec.torchvision_class == "CIFAR10":
        cls = _unverified_cifar(cls, spec)
    try:
        dataset = cls(str(root), train=train, download=download)
    except Exception as e:  # torchvision raises RuntimeError, ValueError, pickle errors… for a bad file
        raise DataError(f"{name}: cannot read {spec.folder(root)} ({type(e).__name__}: {e}); the files are truncated or "
                        f"corrupted — delete them and fetch them again") from None
    data = dataset.data
    images = torch.as_tensor(np.asarray(data))
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64)
    if len(images) != len(labels):
        raise DataError(f"{name}: {len(images)} images but {len(labels)} labels in {spec.folder(root)}")
    return images.contiguous(), labels


def _unverified_cifar(cls: type, spec: ImageDataset) -> type:
    """torchvision's CIFAR10 without its MD5 checks (for files of the right format but other content)."""
    import pickle

    def load_meta(self) -> None:
        with open(spec.folder(Path(self.root)) / "batches.meta", "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")["label_names"]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    return type("CIFAR10Unverified", (cls,), {"_check_integrity": lambda self: _complete(spec, Path(self.root)),
                                              "_load_meta": load_meta})


def stratified_order(labels: Tensor, seed: int = 0) -> Tensor:
    """An order of the samples whose every prefix is as class-balanced as possible.

    Classes take turns (in a random order each round); within a class, samples come in a
    random order. So the first ``n`` samples are stratified (class counts differ by at most
    one, while every class still has samples) and smaller training sets are prefixes of larger
    ones: nested.

    Example:
        >>> order = stratified_order(torch.tensor([0, 0, 0, 1, 1, 1]), seed=0)
        >>> sorted(torch.tensor([0, 0, 0, 1, 1, 1])[order[:4]].tolist())
        [0, 0, 1, 1]
    """
    g = torch.Generator().manual_seed(int(seed))
    classes = labels.unique()
    queues = [(labels == c).nonzero().squeeze(1) for c in classes]
    queues = [q[torch.randperm(len(q), generator=g)] for q in queues]
    rounds = max(len(q) for q in queues)
    order = []
    for r in range(rounds):
        for k in torch.randperm(len(queues), generator=g).tolist():
            if r < len(queues[k]):
                order.append(int(queues[k][r]))
    return torch.tensor(order, dtype=torch.int64)
