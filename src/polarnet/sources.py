"""Load source weights: state-dict files (``.pt``, ``.pth``, ``.safetensors``) or
torchvision weights names such as ``AlexNet_Weights.IMAGENET1K_V1``.

A torchvision name downloads through torch hub, or reads the hub cache
(``$TORCH_HOME/hub/checkpoints``) when the file is already there, so it works offline
once the file has been placed in the cache.

Only regular files are read: a directory, FIFO or device raises :class:`SourceError` at
once. A file is recognised by its first bytes, not its name: safetensors (an 8-byte header
length, then ``{``) loads with safetensors, anything else that may be a ``torch.save`` file
(zip or pickle) with ``torch.load(weights_only=True)``. Files that are certainly not weights
(a polarnet template ``.plt``, a proportions or other JSON file, text, an empty file, NumPy
or gzip data) are refused in one line that says what the file is and what to pass instead;
so is a file torch can't read, without torch's advice to retry with ``weights_only=False``
(unsafe, and polarnet never does it). Complex and sparse tensors can't be sign-constrained
weights; they are left out of the returned state dict with a warning that names them.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import urllib.error
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["load_state_dict", "SourceError", "sniff"]

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


_WEIGHTS = "pass a weights file: torch.save(model.state_dict(), PATH) (.pt/.pth) or a .safetensors file"
_SNIFF = 4096  # bytes read to recognise a file


def _is_text(head: bytes) -> bool:
    import codecs

    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 32 and c not in "\t\n\r\f" for c in text)


def sniff(head: bytes, size: int) -> str:
    """What a file is, from its first bytes (``head``) and its ``size``.

    Returns one of ``"empty"``, ``"template"`` (a polarnet ``.plt``), ``"proportions"``
    (a polarnet proportions JSON), ``"json"``, ``"safetensors"``, ``"zip"`` and ``"pickle"``
    (what ``torch.save`` writes), ``"numpy"``, ``"gzip"``, ``"text"`` or ``"unknown"``.

    Example:
        >>> sniff(b"PLRTMPL\\n\\x01\\x00", 100), sniff(b'{"format": "polarnet-proportions"}', 34)
        ('template', 'proportions')
        >>> sniff(b"root:x:0:0:root:/root:/bin/bash\\n", 32), sniff(b"PK\\x03\\x04", 4000)
        ('text', 'zip')
    """
    if size == 0 or not head:
        return "empty"
    if head.startswith(b"PLRTMPL\n"):
        return "template"
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8:
            return "safetensors"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(b"\x93NUMPY"):
        return "numpy"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if _is_text(head):
        start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        if start in (b"{", b"["):
            return "proportions" if b'"polarnet-proportions"' in head else "json"
        return "text"
    return "unknown"


def _refusal(path: Path, kind: str, head: bytes) -> str | None:
    """The one-line error for a file that is certainly not weights, else ``None``."""
    if kind == "empty":
        return f"{path}: is empty (0 bytes), not a weights file; {_WEIGHTS}"
    if kind == "template":
        return (f"{path}: is a polarnet template file (.plt): it carries signs only, not weights; use it as a study "
                f"source directly (named *.plt) or read it with `polarnet template info`, or {_WEIGHTS}")
    if kind == "proportions":
        return (f"{path}: is a polarnet proportions file (JSON): it carries per-layer sign proportions only, not "
                f"weights; use it as a condition's `proportions` file, or {_WEIGHTS}")
    if kind == "json":
        return f"{path}: is a JSON file, not weights; {_WEIGHTS}"
    if kind == "numpy":
        return f"{path}: is a NumPy array file (.npy), not a state dict; {_WEIGHTS}"
    if kind == "gzip":
        return f"{path}: is gzip-compressed; decompress it (gunzip) and pass the file inside"
    if kind == "text":
        first = head.decode("utf-8", "replace").strip().splitlines()[0][:40] if head.strip() else ""
        return f"{path}: cannot read weights: it is a text file (it starts {first!r}), not weights; {_WEIGHTS}"
    return None


def _torch_problem(e: Exception) -> str:
    """torch's message for an unreadable file, cut to its point: never its advice to retry with
    ``weights_only=False`` (unsafe; polarnet does not unpickle arbitrary objects)."""
    text = str(e)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (f"it holds Python objects besides tensors ({found.group(1)}), which polarnet does not unpickle "
                f"because unpickling can run code; from a copy you trust, save only the weights: "
                f"torch.save(checkpoint['state_dict'], 'weights.pt')")
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln]
    detail = lines[0] if lines else ""
    detail = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", detail)
    detail = detail.split(". ")[0].rstrip(".")
    if len(detail) > 120:
        detail = detail[:117] + "…"
    return f"damaged, or not a PyTorch or safetensors weights file ({type(e).__name__}{': ' + detail if detail else ''})"


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
        SourceError: no source given; the file is missing, unreadable or not a regular file
            (a directory, FIFO, device); it is not weights (a template, JSON or text file,
            see :func:`sniff`) or holds other Python objects; or the weights can't be
            downloaded. Always one line that names the file and what to pass instead.

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "w.pt")
        >>> torch.save(torch.nn.Linear(2, 1).state_dict(), f)
        >>> sorted(load_state_dict(f))
        ['bias', 'weight']
    """
    if source is None or (isinstance(source, str) and not source.strip()):
        raise SourceError(f"no source given ({source!r}); pass a weights file (.pt/.pth/.safetensors) or a "
                          f"torchvision weights name like 'AlexNet_Weights.IMAGENET1K_V1'")
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
        return _read_file(path)
    text = str(source)
    if _WEIGHTS_NAME.match(text):
        return _torchvision_weights(text, progress)
    raise SourceError(
        f"{text!r} is neither an existing file (.pt, .pth, .safetensors) nor a torchvision weights name "
        f"like 'AlexNet_Weights.IMAGENET1K_V1'"
    )


def _read_file(path: Path) -> dict[str, Tensor]:
    try:  # non-blocking, and checked again: the path may have become a FIFO since the stat
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            head = os.read(fd, _SNIFF) if stat.S_ISREG(st.st_mode) else None
        finally:
            os.close(fd)
    except OSError as e:
        raise SourceError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    if head is None:
        raise SourceError(f"{path}: is not a regular file, not a weights file; give a .pt/.pth/.safetensors file")
    size = st.st_size
    kind = sniff(head, size)
    refusal = _refusal(path, kind, head)
    if refusal:
        raise SourceError(refusal)
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            return _unwrap(load_file(str(path), device="cpu"), str(path))
        with open(path, "rb") as f:  # a file object: torch picks no loader by the name's suffix
            return _unwrap(torch.load(f, map_location="cpu", weights_only=True), str(path))
    except SourceError:
        raise
    except Exception as e:  # torch and safetensors raise many kinds for a bad file
        if kind == "unknown":
            what = (f"not a PyTorch (torch.save) or safetensors weights file (it starts with bytes "
                    f"{head[:8].hex(' ')}); {_WEIGHTS}")
        elif kind == "safetensors":
            what = f"a damaged safetensors file ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
        else:
            what = _torch_problem(e)
        raise SourceError(f"{path}: cannot read weights: {what}") from None


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
