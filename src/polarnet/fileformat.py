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

A truncated or altered file fails the checksum; a file of a newer version is refused
before anything else is read. Both raise :class:`TemplateFileError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["TemplateFileError", "FORMAT_VERSION", "write_signs", "read_signs", "encode", "decode"]

MAGIC = b"PLRTMPL\n"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sHI")
_DIGEST = 32


class TemplateFileError(ValueError):
    """A template file is truncated, corrupted, of a newer version, or not a template file."""


def _plane(bits: np.ndarray) -> bytes:
    return np.packbits(bits.astype(np.uint8, copy=False)).tobytes()


def _unplane(data: bytes, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n).astype(bool)


def encode(signs: Tensor) -> tuple[int, bytes]:
    """Pack one layer's signs; returns ``(bits_per_weight, payload)``.

    Example:
        >>> encode(torch.tensor([1, -1, -1, 1], dtype=torch.int8))
        (1, b'`')
    """
    flat = signs.reshape(-1).numpy()
    neg = flat < 0
    if not (flat == 0).any():
        return 1, _plane(neg)
    return 2, _plane(flat != 0) + _plane(neg)


def decode(bits: int, data: bytes, shape: tuple[int, ...]) -> Tensor:
    """Inverse of :func:`encode`.

    Example:
        >>> decode(1, b'`', (4,)).tolist()
        [1, -1, -1, 1]
    """
    n = math.prod(shape)
    plane = (n + 7) // 8
    if bits == 1:
        if len(data) != plane:
            raise TemplateFileError(f"layer payload has {len(data)} bytes, expected {plane}")
        out = np.where(_unplane(data, n), -1, 1)
    elif bits == 2:
        if len(data) != 2 * plane:
            raise TemplateFileError(f"layer payload has {len(data)} bytes, expected {2 * plane}")
        nonzero, neg = _unplane(data[:plane], n), _unplane(data[plane:], n)
        if (neg & ~nonzero).any():
            raise TemplateFileError("layer payload marks a zero weight as negative: the file is corrupted")
        out = np.where(nonzero, np.where(neg, -1, 1), 0)
    else:
        raise TemplateFileError(f"unknown encoding of {bits} bits per weight")
    return torch.from_numpy(out.astype(np.int8)).reshape(shape)


def write_signs(signs: Mapping[str, Tensor], path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``{name: int8 signs}`` to ``path`` in the format above (atomically)."""
    layers, payload = [], []
    for name, t in signs.items():
        bits, data = encode(t)
        layers.append({"name": name, "shape": list(t.shape), "bits": bits, "nbytes": len(data)})
        payload.append(data)
    header = json.dumps({"layers": layers, "meta": dict(meta or {})}, separators=(",", ":")).encode()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header + b"".join(payload)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(body + hashlib.sha256(body).digest())
    os.replace(tmp, path)
    return path


def read_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], bytes]:
    """Check a file and return ``(header, payload)``; raises :class:`TemplateFileError`."""
    raw = Path(path).read_bytes()
    if len(raw) < _PREFIX.size or raw[:8] != MAGIC:
        if MAGIC.startswith(raw[:8]) and len(raw) < _PREFIX.size:
            raise TemplateFileError(f"{path}: truncated template file ({len(raw)} bytes)")
        raise TemplateFileError(f"{path}: not a polarnet template file (bad magic bytes)")
    _, version, hlen = _PREFIX.unpack_from(raw)
    if version > FORMAT_VERSION:
        raise TemplateFileError(
            f"{path}: template format version {version} is newer than this polarnet reads ({FORMAT_VERSION}); upgrade polarnet"
        )
    if version < 1:
        raise TemplateFileError(f"{path}: invalid template format version {version}")
    if len(raw) < _PREFIX.size + hlen + _DIGEST:
        raise TemplateFileError(f"{path}: truncated template file ({len(raw)} bytes)")
    body, digest = raw[:-_DIGEST], raw[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise TemplateFileError(f"{path}: checksum mismatch: the file is truncated or corrupted")
    try:
        header = json.loads(body[_PREFIX.size : _PREFIX.size + hlen])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TemplateFileError(f"{path}: unreadable header ({e})") from None
    _check_header(header, path)
    return header, body[_PREFIX.size + hlen :]


def _check_header(header: object, path: str | os.PathLike[str]) -> None:
    layers = header.get("layers") if isinstance(header, dict) else None
    ok = isinstance(layers, list) and all(
        isinstance(x, dict) and isinstance(x.get("name"), str) and isinstance(x.get("bits"), int)
        and isinstance(x.get("nbytes"), int) and isinstance(x.get("shape"), list)
        and all(isinstance(s, int) and s >= 0 for s in x["shape"]) for x in layers
    )
    if not ok or not isinstance(header.get("meta", {}), dict):  # type: ignore[union-attr]
        raise TemplateFileError(f"{path}: malformed header: expected {{'layers': [{{name, shape, bits, nbytes}}, ...], 'meta': {{...}}}}")


def read_signs(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a template file; returns ``({name: int8 signs}, meta)``."""
    header, payload = read_header(path)
    out: dict[str, Tensor] = {}
    offset = 0
    for layer in header["layers"]:
        n = int(layer["nbytes"])
        chunk = payload[offset : offset + n]
        offset += n
        try:
            out[layer["name"]] = decode(int(layer["bits"]), chunk, tuple(int(s) for s in layer["shape"]))
        except TemplateFileError as e:
            raise TemplateFileError(f"{path}: layer {layer['name']!r}: {e}") from None
    if offset != len(payload):
        raise TemplateFileError(f"{path}: payload has {len(payload) - offset} unexpected trailing bytes")
    return out, header.get("meta", {})
