"""Load source weights: state-dict files (``.pt``, ``.pth``, ``.safetensors``) or
torchvision weights names such as ``AlexNet_Weights.IMAGENET1K_V1``.

A torchvision name downloads through torch hub, or reads the hub cache
(``$TORCH_HOME/hub/checkpoints``) when the file is already there, so it works offline
once the file has been placed in the cache.
"""

from __future__ import annotations

import os
import re
import urllib.error
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
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}


def load_state_dict(source: str | os.PathLike[str], *, progress: bool = True) -> dict[str, Tensor]:
    """Read weights from a file or a torchvision weights name, on the CPU.

    Args:
        source: a ``.pt``/``.pth``/``.bin``/``.ckpt`` (``torch.save`` of a state dict or of a
            checkpoint dict holding ``state_dict``/``model``), a ``.safetensors`` file, or a
            torchvision weights name like ``AlexNet_Weights.IMAGENET1K_V1``.
        progress: show torch hub's download progress bar.

    Raises:
        SourceError: the file is missing or unreadable, or the weights can't be downloaded.

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "w.pt")
        >>> torch.save(torch.nn.Linear(2, 1).state_dict(), f)
        >>> sorted(load_state_dict(f))
        ['bias', 'weight']
    """
    path = Path(source)
    if path.is_file():
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
