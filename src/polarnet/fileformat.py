"""The template file format (``.plt``): at most 2 bits per weight, checksummed.

Layout, all integers little-endian::

    magic     8 bytes   b"PLRTMPL\\n"
    version   uint16    1
    hlen      uint32    length of the header
    header    hlen      UTF-8 JSON: {"layers": [{"name", "shape", "bits", "nbytes"}...], "meta": {...}}
    payload   Σ nbytes  the layers, in header order
    sha256    32 bytes  over every byte before it

A layer with no zeros takes 1 bit per weight (bit set = negative). A layer with zeros
takes 2 bits per weight, as two bit planes of ``ceil(n/8)`` bytes each: first "nonzero",
then "negative". Bits are packed most significant first (``numpy.packbits``), in the
row-major order of the layer's shape, and the last byte of a plane is zero-padded.

Every version keeps this envelope: the magic, the version field, and a trailing SHA-256
of every byte before it. So the checksum is verified first: a file that fails it is
truncated or corrupted (even when its version field reads "newer": that field may be the
damaged byte), and only a file that passes it and carries a newer version is refused as
newer. A checksummed file is then checked for consistency before anything is decoded:
unique layer names, ``nbytes`` equal to what ``shape`` and ``bits`` imply, the layers'
sizes adding up to the payload, zero padding bits. Only regular files are read, and never
more bytes than the file holds. Every problem raises :class:`TemplateFileError`.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import math
import os
import stat
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor

__all__ = ["TemplateFileError", "FORMAT_VERSION", "write_signs", "read_signs", "encode", "decode", "as_signs"]

MAGIC = b"PLRTMPL\n"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sHI")
_DIGEST = 32


class TemplateFileError(ValueError):
    """A template file is truncated, corrupted, of a newer version, not a template file, not a
    regular file, or cannot be written where asked (e.g. the target is a directory)."""


def read_regular_file(path: str | os.PathLike[str], what: str = "file", error: type[Exception] = TemplateFileError) -> bytes:
    """The bytes of a regular file, read without blocking and never past its size.

    A directory, FIFO, socket or device (``/dev/zero``) raises ``error`` at once instead of
    an ``IsADirectoryError`` traceback, a hang or reading until memory runs out. A missing
    file raises :class:`FileNotFoundError`; another OS error (e.g. permissions) raises ``error``.

    Args:
        path: the file.
        what: how messages call it ("template file", "proportions file").
        error: the exception class to raise (a ``ValueError`` subclass).

    Example:
        >>> import tempfile
        >>> read_regular_file(tempfile.mkdtemp(), "template file")
        Traceback (most recent call last):
        ...
        polarnet.fileformat.TemplateFileError: ...: is a directory, not a template file
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO must not wait for a writer
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what}") from None
    except IsADirectoryError:  # some systems refuse to open a directory
        raise error(f"{path}: is a directory, not a {what}") from None
    except OSError as e:
        raise error(f"{path}: cannot open the {what} ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{path}: is a directory, not a {what}")
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                    else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise error(f"{path}: is {kind}, not a {what}; give a regular file")
        chunks, left = [], st.st_size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    finally:
        os.close(fd)


def is_file(path: str | os.PathLike[str]) -> bool:
    """``Path(path).is_file()``, but False for a name the OS refuses (too long, a NUL byte).

    Example:
        >>> import tempfile
        >>> is_file("x" * 5000), is_file(tempfile.gettempdir())  # too long a name; a folder
        (False, False)
    """
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def temporary_file(path: str | os.PathLike[str]) -> Path:
    """The temporary file an atomic write of ``path`` goes through (hidden, named by this process).

    Example:
        >>> temporary_file("out/x.pt").name.startswith(".x.pt.") and temporary_file("out/x.pt").suffix
        '.tmp'
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Temporary files of ``path`` left by writes that a killed process cut short."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object], what: str = "file",
                 error: type[Exception] = TemplateFileError) -> Path:
    """Write ``path`` whole or not at all: ``write(f)`` fills a temporary file beside it, which
    is then renamed over ``path``.

    An interrupted or failed write leaves neither a half file nor the temporary file. A
    ``path`` that is an existing directory raises ``error`` naming it; other OS errors
    (permissions, a full disk) propagate after the clean-up, naming ``path`` (never the
    temporary file, which the user did not ask for), and a missing folder says so.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> atomic_write(os.path.join(d, "x.txt"), lambda f: f.write(b"abc")).read_bytes()
        b'abc'
        >>> atomic_write(os.path.join(d, "no", "x.txt"), lambda f: f.write(b"abc"))
        Traceback (most recent call last):
        ...
        FileNotFoundError: [Errno 2] the folder .../no does not exist; create it first, or write elsewhere: '.../no/x.txt'
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a directory; give a file name for the {what}, e.g. {path / ('template.plt' if what == 'template file' else 'out')}")
    tmp = temporary_file(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        if path.is_dir():  # became a directory in the meantime
            raise error(f"{path}: is a directory; give a file name for the {what}") from None
        if isinstance(e, OSError):
            raise _about(e, path) from None
        raise
    return path


def _about(error: OSError, path: Path) -> OSError:
    """``error`` (raised on the temporary file beside ``path``) as the same error about ``path``."""
    reason = error.strerror or str(error)
    if error.errno == errno.ENOENT and not path.parent.is_dir():
        reason = f"the folder {path.parent} does not exist; create it first, or write elsewhere"
    elif error.errno == errno.ENOSPC:
        reason = f"{reason}: free space there, or write elsewhere"
    return OSError(error.errno, reason, str(path))  # OSError picks the subclass (FileNotFoundError…) from errno


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, what: str = "file",
                       error: type[Exception] = TemplateFileError) -> Path:
    """:func:`atomic_write` of ``data``.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> atomic_write_bytes(os.path.join(d, "x.bin"), b"abc").read_bytes()
        b'abc'
        >>> atomic_write_bytes(d, b"abc", "template file")
        Traceback (most recent call last):
        ...
        polarnet.fileformat.TemplateFileError: ...: is a directory; give a file name for the template file, e.g. ...
        >>> sorted(os.listdir(d))
        ['x.bin']
    """
    return atomic_write(path, lambda f: f.write(data), what, error)


def as_signs(value: object, name: str = "signs", *, copy: bool = False) -> Tensor:
    """Validate a tensor of signs and return it as a contiguous int8 CPU tensor.

    Only the exact values -1, 0 and +1 are signs, judged in the tensor's own dtype: an
    integer or floating tensor holding only those values is accepted (so is ``-0.0``);
    0.5, NaN, inf, 2 or a ``uint8`` 255 (which would wrap to -1) are refused. ``bool`` and
    complex tensors are refused too (is ``True`` +1 or "nonzero"? a complex number has no
    sign), and so are sparse and meta tensors.

    Args:
        value: the candidate signs.
        name: the layer, for messages.
        copy: always return a new tensor (else the input itself when it already is one).

    Raises:
        TypeError: not a tensor.
        ValueError: naming the layer and the offending values or dtype.

    Example:
        >>> as_signs(torch.tensor([1.0, -1.0, 0.0])).tolist()
        [1, -1, 0]
        >>> as_signs(torch.tensor([255], dtype=torch.uint8), "fc.weight")
        Traceback (most recent call last):
        ...
        ValueError: template layer 'fc.weight': values must be exactly -1, 0 or +1, found [255]
    """
    if not isinstance(value, Tensor):
        raise TypeError(f"template layer {name!r}: expected a tensor of signs, got {type(value).__name__}")
    if value.layout != torch.strided:
        raise ValueError(f"template layer {name!r}: a {value.layout} tensor is not supported; pass t.to_dense()")
    if value.is_meta:
        raise ValueError(f"template layer {name!r}: a meta tensor holds no values")
    dtype = value.dtype
    if dtype == torch.bool:
        raise ValueError(f"template layer {name!r}: bool tensors are ambiguous as signs; convert explicitly, "
                         f"e.g. mask.to(torch.int8) for {{0, +1}} or mask.to(torch.int8) * 2 - 1 for {{-1, +1}}")
    if dtype.is_complex:
        raise ValueError(f"template layer {name!r}: a complex tensor has no signs; pass a real tensor of -1, 0, +1")
    if dtype.is_floating_point:
        bad = ~((value == 0) | (value == 1) | (value == -1))  # NaN compares unequal: bad
    elif dtype.is_signed:
        bad = (value < -1) | (value > 1)
    else:  # unsigned: 255 must not pass for -1
        bad = value > 1
    if bool(bad.any()):
        found = sorted(set(value[bad].flatten()[:64].tolist()), key=repr)[:5]
        raise ValueError(f"template layer {name!r}: values must be exactly -1, 0 or +1, found {found}")
    return value.detach().to(device="cpu", dtype=torch.int8, memory_format=torch.contiguous_format, copy=copy)


def _plane(bits: np.ndarray) -> bytes:
    return np.packbits(bits.astype(np.uint8, copy=False)).tobytes()


def _unplane(data: bytes, n: int) -> np.ndarray:
    if n % 8 and data[-1] & (0xFF >> (n % 8)):
        raise TemplateFileError("set padding bits in the last byte of a bit plane: the file is corrupted")
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n).astype(bool)


def _layer_nbytes(bits: int, shape: tuple[int, ...]) -> int:
    return bits * ((math.prod(shape) + 7) // 8)


def encode(signs: Tensor, name: str = "signs") -> tuple[int, bytes]:
    """Pack one layer's signs; returns ``(bits_per_weight, payload)``.

    Args:
        signs: exactly -1, 0 or +1 (see :func:`as_signs`); anything else raises ValueError.
        name: the layer, for messages.

    Example:
        >>> encode(torch.tensor([1, -1, -1, 1], dtype=torch.int8))
        (1, b'`')
    """
    flat = as_signs(signs, name).reshape(-1).numpy()
    neg = flat < 0
    if not (flat == 0).any():
        return 1, _plane(neg)
    return 2, _plane(flat != 0) + _plane(neg)


def decode(bits: int, data: bytes, shape: tuple[int, ...]) -> Tensor:
    """Inverse of :func:`encode`; raises :class:`TemplateFileError` on a wrong length,
    an unknown ``bits``, set padding bits or a zero marked negative.

    Example:
        >>> decode(1, b'`', (4,)).tolist()
        [1, -1, -1, 1]
    """
    if isinstance(bits, bool) or bits not in (1, 2):
        raise TemplateFileError(f"unknown encoding of {bits} bits per weight")
    n = math.prod(shape)
    plane = (n + 7) // 8
    if bits == 1:
        if len(data) != plane:
            raise TemplateFileError(f"layer payload has {len(data)} bytes, expected {plane}")
        out = np.where(_unplane(data, n), -1, 1)
    else:
        if len(data) != 2 * plane:
            raise TemplateFileError(f"layer payload has {len(data)} bytes, expected {2 * plane}")
        nonzero, neg = _unplane(data[:plane], n), _unplane(data[plane:], n)
        if (neg & ~nonzero).any():
            raise TemplateFileError("layer payload marks a zero weight as negative: the file is corrupted")
        out = np.where(nonzero, np.where(neg, -1, 1), 0)
    return torch.from_numpy(out.astype(np.int8)).reshape(shape)


def write_signs(signs: Mapping[str, Tensor], path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``{name: signs}`` to ``path`` in the format above, atomically.

    Every layer is validated first (:func:`as_signs`: exactly -1, 0 or +1), so nothing is
    written for a bad layer. The bytes go to a temporary file that is renamed over ``path``;
    on any failure the temporary file is removed.

    Raises:
        ValueError: a layer holds a value other than -1, 0, +1 (naming the layer).
        TemplateFileError: ``path`` is a directory.

    Example:
        >>> import tempfile, os
        >>> f = write_signs({"w": torch.tensor([1, 0, -1])}, os.path.join(tempfile.mkdtemp(), "t.plt"))
        >>> read_signs(f)[0]["w"].tolist()
        [1, 0, -1]
    """
    layers, payload = [], []
    for name, t in signs.items():
        bits, data = encode(t, name)
        layers.append({"name": name, "shape": list(t.shape), "bits": bits, "nbytes": len(data)})
        payload.append(data)
    header = json.dumps({"layers": layers, "meta": dict(meta or {})}, separators=(",", ":")).encode()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header + b"".join(payload)
    return atomic_write_bytes(path, body + hashlib.sha256(body).digest(), "template file")


def read_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], bytes]:
    """Check a file and return ``(header, payload)``; raises :class:`TemplateFileError`.

    The order of checks: a regular file; the magic bytes; the checksum (so a damaged byte,
    even in the version field, reads as corruption); the version; the header's structure
    and consistency (see the module docstring).

    Example:
        >>> import tempfile, os
        >>> f = write_signs({"w": torch.tensor([1, -1])}, os.path.join(tempfile.mkdtemp(), "t.plt"))
        >>> read_header(f)[0]["layers"]
        [{'name': 'w', 'shape': [2], 'bits': 1, 'nbytes': 1}]
    """
    raw = read_regular_file(path, "template file")
    if len(raw) < _PREFIX.size or raw[:8] != MAGIC:
        if MAGIC.startswith(raw[:8]) and len(raw) < _PREFIX.size:
            raise TemplateFileError(f"{path}: truncated template file ({len(raw)} bytes)")
        raise TemplateFileError(f"{path}: not a polarnet template file (bad magic bytes)")
    _, version, hlen = _PREFIX.unpack_from(raw)
    checksum_ok = len(raw) >= _PREFIX.size + _DIGEST and hashlib.sha256(raw[:-_DIGEST]).digest() == raw[-_DIGEST:]
    if not checksum_ok:
        if len(raw) < _PREFIX.size + _DIGEST or (version == FORMAT_VERSION and len(raw) < _PREFIX.size + hlen + _DIGEST):
            raise TemplateFileError(f"{path}: truncated template file ({len(raw)} bytes)")
        note = "" if version == FORMAT_VERSION else f" (its version field reads {version}, which may be the damaged part)"
        raise TemplateFileError(f"{path}: checksum mismatch: the file is truncated or corrupted{note}")
    if version > FORMAT_VERSION:
        raise TemplateFileError(
            f"{path}: template format version {version} is newer than this polarnet reads ({FORMAT_VERSION}); upgrade polarnet"
        )
    if version < 1:
        raise TemplateFileError(f"{path}: invalid template format version {version}: the file is corrupted")
    if len(raw) < _PREFIX.size + hlen + _DIGEST:
        raise TemplateFileError(f"{path}: header length {hlen} runs past the end of the file ({len(raw)} bytes): the file is corrupted")
    body = raw[:-_DIGEST]
    try:
        header = json.loads(body[_PREFIX.size : _PREFIX.size + hlen])
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError, and too-long integers
        raise TemplateFileError(f"{path}: unreadable header ({e})") from None
    except RecursionError:
        raise TemplateFileError(f"{path}: unreadable header (nested too deeply)") from None
    payload = body[_PREFIX.size + hlen :]
    _check_header(header, path, len(payload))
    return header, payload


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_header(header: object, path: str | os.PathLike[str], payload_size: int) -> None:
    layers = header.get("layers") if isinstance(header, dict) else None
    ok = isinstance(layers, list) and all(
        isinstance(x, dict) and isinstance(x.get("name"), str) and _is_int(x.get("bits"))
        and _is_int(x.get("nbytes")) and isinstance(x.get("shape"), list)
        and all(_is_int(s) and s >= 0 for s in x["shape"]) for x in layers
    )
    if not ok or not isinstance(header.get("meta", {}), dict):  # type: ignore[union-attr]
        raise TemplateFileError(f"{path}: malformed header: expected {{'layers': [{{name, shape, bits, nbytes}}, ...], 'meta': {{...}}}} "
                                f"with integer shapes, bits and nbytes")
    seen: set[str] = set()
    total = 0
    for x in layers:  # type: ignore[union-attr]
        name, bits, nbytes, shape = x["name"], x["bits"], x["nbytes"], x["shape"]
        if name in seen:
            raise TemplateFileError(f"{path}: layer {name!r} appears twice in the header: the file is corrupted")
        seen.add(name)
        if bits not in (1, 2):
            raise TemplateFileError(f"{path}: layer {name!r}: unknown encoding of {bits} bits per weight")
        expected = _layer_nbytes(bits, tuple(shape))  # a Python int: no allocation, however absurd the shape
        if nbytes != expected:
            shown = expected if expected < 10**15 else f"about 2**{expected.bit_length() - 1}"
            raise TemplateFileError(f"{path}: layer {name!r}: nbytes {nbytes} does not match shape {shape} at {bits} bit(s) "
                                    f"per weight: expected {shown}; the file is corrupted")
        total += nbytes
    if total > payload_size:
        raise TemplateFileError(f"{path}: the header declares {total} payload bytes but the file holds {payload_size}: "
                                f"the file is corrupted")
    if total < payload_size:
        raise TemplateFileError(f"{path}: payload has {payload_size - total} unexpected trailing bytes")


def read_signs(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a template file; returns ``({name: int8 signs}, meta)``.

    Raises:
        TemplateFileError: the file is not a regular file, truncated, corrupted, inconsistent or newer.
        FileNotFoundError: there is no such file.

    Example:
        >>> import tempfile, os
        >>> f = write_signs({"w": torch.tensor([[0, -1]])}, os.path.join(tempfile.mkdtemp(), "t.plt"), {"seed": 1})
        >>> signs, meta = read_signs(f)
        >>> signs["w"].tolist(), meta
        ([[0, -1]], {'seed': 1})
    """
    header, payload = read_header(path)
    out: dict[str, Tensor] = {}
    offset = 0
    for layer in header["layers"]:
        n = layer["nbytes"]
        chunk = payload[offset : offset + n]
        offset += n
        try:
            out[layer["name"]] = decode(layer["bits"], chunk, tuple(layer["shape"]))
        except TemplateFileError as e:
            raise TemplateFileError(f"{path}: layer {layer['name']!r}: {e}") from None
    return out, header.get("meta", {})
