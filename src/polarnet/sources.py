"""Load source weights: state-dict files (``.pt``, ``.pth``, ``.safetensors``) or
torchvision weights names such as ``AlexNet_Weights.IMAGENET1K_V1``.

A torchvision name downloads through torch hub, or reads the hub cache
(``$TORCH_HOME/hub/checkpoints``) when the file is already there, so it works offline
once the file has been placed in the cache.

Only regular files are read: a directory, FIFO or device raises :class:`SourceError` at
once. Complex and sparse tensors can't be sign-constrained weights; they are left out of
the returned state dict with a warning that names them.
"""

from __future__ import annotations

import os
import re
import stat
import urllib.error
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["load_state_dict", "SourceError"]

_WEIGHTS_NAME = re.compile(r"^[A-Za-z0-9_]+_Weights\.[A-Za-z0-9_]+$")


class SourceError(ValueError):
    """A source of weights could not be found or read."""


def _unwrap(obj: object, where: str) -> dict[str, Tensor]:
    for key in ("state_dict", "model_state_dict", "model"):  # common checkpoint wrappers
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not any(isinstance(v, Tensor) for v in obj.values()):
        raise SourceError(f"{where}: holds no state dict (a mapping of names to tensors); save model.state_dict() instead")
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    odd = [f"{k!r} ({'complex' if v.is_complex() else v.layout})" for k, v in tensors.items()
           if v.is_complex() or v.layout != torch.strided]
    if odd:
        warnings.warn(f"{where}: left out {len(odd)} tensor(s) that can't carry weight signs: {', '.join(odd[:8])}"
                      f"{' …' if len(odd) > 8 else ''}", stacklevel=3)
        tensors = {k: v for k, v in tensors.items() if not (v.is_complex() or v.layout != torch.strided)}
        if not tensors:
            raise SourceError(f"{where}: holds only complex or sparse tensors, no real dense weights")
    return tensors


def load_state_dict(source: str | os.PathLike[str], *, progress: bool = True) -> dict[str, Tensor]:
    """Read weights from a file or a torchvision weights name, on the CPU.

    Args:
        source: a ``.pt``/``.pth``/``.bin``/``.ckpt`` (``torch.save`` of a state dict or of a
            checkpoint dict holding ``state_dict``/``model``), a ``.safetensors`` file, or a
            torchvision weights name like ``AlexNet_Weights.IMAGENET1K_V1``.
        progress: show torch hub's download progress bar.

    Returns:
        ``{name: tensor}``; complex and sparse tensors are left out with a warning.

    Raises:
        SourceError: the file is missing, unreadable or not a regular file (a directory,
            FIFO, device), or the weights can't be downloaded.

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "w.pt")
        >>> torch.save(torch.nn.Linear(2, 1).state_dict(), f)
        >>> sorted(load_state_dict(f))
        ['bias', 'weight']
    """
    path = Path(source)
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, or not a path at all: maybe a weights name
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise SourceError(f"{path}: is {kind}, not a weights file; give a .pt/.pth/.safetensors file")
    if mode is not None:
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return _unwrap(load_file(str(path), device="cpu"), str(path))
            return _unwrap(torch.load(path, map_location="cpu", weights_only=True), str(path))
        except SourceError:
            raise
        except Exception as e:  # torch and safetensors raise many kinds for a bad file
            raise SourceError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from None
    text = str(source)
    if _WEIGHTS_NAME.match(text):
        return _torchvision_weights(text, progress)
    raise SourceError(
        f"{text!r} is neither an existing file (.pt, .pth, .safetensors) nor a torchvision weights name "
        f"like 'AlexNet_Weights.IMAGENET1K_V1'"
    )


def _torchvision_weights(name: str, progress: bool) -> dict[str, Tensor]:
    from torchvision.models import get_weight

    try:
        weights = get_weight(name)
    except (ValueError, KeyError, AttributeError) as e:
        raise SourceError(f"unknown torchvision weights {name!r} ({e})") from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    try:
        return _unwrap(weights.get_state_dict(progress=progress), name)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        raise SourceError(
            f"cannot download {name} from {weights.url} ({type(e).__name__}: {e}). Without internet, put the "
            f"file at {cached} (the torch hub cache; set TORCH_HOME to move it) or pass a state-dict file instead (in a study: --set source=FILE)"
        ) from None
