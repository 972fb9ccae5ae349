"""SPIN distributions: per-layer sign proportions ``(p0, p_neg, p_pos)``.

Igoe et al. transfer only these three numbers per layer. This module validates them,
turns them into exact per-layer counts (largest-remainder rule) and saves them as a
small JSON file::

    {"format": "polarnet-proportions", "version": 1,
     "layers": {"features.0.weight": {"p0": 0.0, "p_neg": 0.5, "p_pos": 0.5, "numel": 23232}}}
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .fileformat import atomic_write_bytes, read_regular_file

__all__ = ["Proportions", "check_proportions", "counts_from_proportions", "save_proportions", "load_proportions"]

Proportions = tuple[float, float, float]
_TOL = 1e-6
_FORMAT = "polarnet-proportions"
_VERSION = 1


def _number(v: object) -> float:
    """A real number as float; bools, strings, ``None`` and anything else raise ValueError."""
    if isinstance(v, Tensor) and v.dim() == 0 and not v.dtype.is_complex and v.dtype != torch.bool:
        v = v.item()
    if isinstance(v, numbers.Real) and not isinstance(v, bool):  # numpy bools aren't Real
        return float(v)
    raise ValueError(f"not a real number: {v!r}")


def check_proportions(p: object, name: str = "proportions") -> Proportions:
    """Validate one ``(p0, p_neg, p_pos)`` triple and return it as floats.

    ``p`` must be a sequence of three real numbers (``int``/``float``, numpy or 0-d torch
    numbers); strings (``"100"`` is not ``(1, 0, 0)``), bools and ``None`` are refused.

    Raises:
        ValueError: not three numbers, a negative or non-finite entry, or a sum off 1 by more than 1e-6.

    Example:
        >>> check_proportions((0, 0.5, 0.5))
        (0.0, 0.5, 0.5)
        >>> check_proportions("100", "fc.weight")
        Traceback (most recent call last):
        ...
        ValueError: fc.weight: expected three numbers (p0, p_neg, p_pos), got '100'
    """
    if isinstance(p, (str, bytes, bytearray, Mapping)):
        raise ValueError(f"{name}: expected three numbers (p0, p_neg, p_pos), got {p!r}")
    try:
        values = tuple(_number(v) for v in p)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected three numbers (p0, p_neg, p_pos), got {p!r}") from None
    if len(values) != 3:
        raise ValueError(f"{name}: expected three numbers (p0, p_neg, p_pos), got {len(values)}: {p!r}")
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"{name}: proportions must be finite and non-negative, got {values}")
    total = sum(values)
    if abs(total - 1.0) > _TOL:
        raise ValueError(f"{name}: proportions must sum to 1 (±1e-6), got {values} summing to {total:.9g}")
    return values  # type: ignore[return-value]


def counts_from_proportions(p: Proportions, n: int) -> tuple[int, int, int]:
    """Exact counts of zeros, negatives and positives among ``n`` weights.

    The proportions are first divided by their sum (they may be off 1 by the 1e-6 that
    :func:`check_proportions` allows). Each count is then ``floor(p·n)`` or ``ceil(p·n)``;
    the units left over go to the largest fractional parts (ties to the earlier entry), so
    the counts always sum to ``n`` and equal ``p·n`` rounded half up whenever those roundings
    already sum to ``n``.

    Example:
        >>> counts_from_proportions((0.5, 0.27, 0.23), 10)
        (5, 3, 2)
        >>> counts_from_proportions((1/3, 1/3, 1/3), 10)
        (4, 3, 3)
    """
    p = check_proportions(p)
    total = sum(p)
    exact = [v / total * n for v in p]
    counts = [math.floor(x) for x in exact]
    left = n - sum(counts)
    order = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:left]:
        counts[i] += 1
    return counts[0], counts[1], counts[2]


def save_proportions(
    proportions: Mapping[str, Proportions], path: str | os.PathLike[str], numel: Mapping[str, int] | None = None
) -> Path:
    """Write per-layer proportions as JSON (validated first), atomically.

    The file is written to a temporary name and renamed, so a failed save leaves neither a
    half file nor the temporary one.

    Raises:
        ValueError: invalid proportions (naming the layer), or ``path`` is a directory.

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "p.json")
        >>> _ = save_proportions({"fc.weight": (0.0, 0.5, 0.5)}, f)
        >>> load_proportions(f)
        {'fc.weight': (0.0, 0.5, 0.5)}
    """
    layers = {}
    for name, p in proportions.items():
        p0, pn, pp = check_proportions(p, name)
        entry: dict[str, float | int] = {"p0": p0, "p_neg": pn, "p_pos": pp}
        if numel is not None and name in numel:
            entry["numel"] = int(numel[name])
        layers[name] = entry
    text = json.dumps({"format": _FORMAT, "version": _VERSION, "layers": layers}, indent=2) + "\n"
    return atomic_write_bytes(path, text.encode(), "proportions file", ValueError)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def load_proportions(path: str | os.PathLike[str]) -> dict[str, Proportions]:
    """Read a proportions file written by :func:`save_proportions` (validated).

    Only a regular UTF-8 JSON file is read (a directory, FIFO or device is refused at
    once). The version, when given, must be a positive integer no newer than this
    polarnet's; every ``p0``/``p_neg``/``p_pos`` a real number (not a string or bool),
    each layer's three summing to 1 within 1e-6; an optional ``numel`` a non-negative
    integer; no key twice.

    Raises:
        ValueError: naming the file (and the layer): not a polarnet proportions file, a newer
            or invalid version, or invalid values.
        FileNotFoundError: there is no such file.

    Example:
        >>> import tempfile, os, json
        >>> f = os.path.join(tempfile.mkdtemp(), "p.json")
        >>> with open(f, "w") as out:
        ...     json.dump({"format": "polarnet-proportions", "layers": {"w": {"p0": "0", "p_neg": 0.5, "p_pos": 0.5}}}, out)
        >>> load_proportions(f)
        Traceback (most recent call last):
        ...
        ValueError: ...: layer 'w': expected three numbers (p0, p_neg, p_pos), got ('0', 0.5, 0.5)
    """
    raw = read_regular_file(path, "proportions file", ValueError)
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a JSON proportions file (not UTF-8 text)") from None
    except RecursionError:
        raise ValueError(f"{path}: not a JSON proportions file (nested too deeply)") from None
    except ValueError as e:  # JSONDecodeError, a repeated key, too-long integers
        raise ValueError(f"{path}: not a JSON proportions file ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a polarnet proportions file (expected a 'format': '{_FORMAT}' object)")
    version = doc.get("version", _VERSION)  # hand-written files may leave it out
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: invalid proportions format version {version!r}: expected a positive integer "
                         f"(this polarnet writes {_VERSION}); the file is damaged")
    if version > _VERSION:
        raise ValueError(f"{path}: proportions format version {version!r} is not one this polarnet reads "
                         f"(newest: {_VERSION}); a newer file needs a newer polarnet: upgrade polarnet")
    if not isinstance(doc.get("layers"), dict):
        raise ValueError(f"{path}: not a polarnet proportions file: 'layers' must map names to proportions")
    out: dict[str, Proportions] = {}
    for name, entry in doc["layers"].items():
        if not isinstance(entry, dict) or not {"p0", "p_neg", "p_pos"} <= entry.keys():
            raise ValueError(f"{path}: layer {name!r} needs keys p0, p_neg, p_pos")
        n = entry.get("numel", 0)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{path}: layer {name!r}: numel must be a non-negative integer, got {n!r}")
        out[name] = check_proportions((entry["p0"], entry["p_neg"], entry["p_pos"]), f"{path}: layer {name!r}")
    return out
