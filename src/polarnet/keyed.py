"""Counter-based random numbers: ``uniform(seed, step, layer, position)`` without state.

A seeded reset must not depend on how many other weights were reset, in what order, or
which other runs were trained beside it in a vectorised ensemble. Drawing from a stateful
generator can't promise that; hashing the coordinates of each draw can. The hash is
SplitMix64's finaliser over the four keys, computed in int64 tensor arithmetic (wrapping
multiplication; logical shifts emulated with masks), so CPU, CUDA and any batching give
bit-identical numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["keyed_uniform", "reference_uniform"]

_MASK64 = (1 << 64) - 1


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


_K = [_signed(c) for c in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)]
_M1, _M2 = _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _shr(x: Tensor, k: int) -> Tensor:
    return (x >> k) & ((1 << (64 - k)) - 1)


def _mix(x: Tensor | int) -> Tensor | int:
    """SplitMix64's finaliser: on a tensor in wrapping int64 arithmetic, on a Python int exactly."""
    if isinstance(x, int):
        x &= _MASK64
        x ^= x >> 30
        x = (x * (_M1 & _MASK64)) & _MASK64
        x ^= x >> 27
        x = (x * (_M2 & _MASK64)) & _MASK64
        return _signed(x ^ (x >> 31))
    if x.dim() == 0 or x.numel() < 4096:
        x = x ^ _shr(x, 30)
        x = x * _M1
        x = x ^ _shr(x, 27)
        x = x * _M2
        return x ^ _shr(x, 31)
    # large: in place (x is always a fresh temporary here), with one scratch tensor: fresh
    # large tensors cost page faults on a CPU
    tmp = torch.empty_like(x)
    for k, m in ((30, _M1), (27, _M2)):
        torch.bitwise_right_shift(x, k, out=tmp)
        x.bitwise_xor_(tmp.bitwise_and_((1 << (64 - k)) - 1)).mul_(m)
    torch.bitwise_right_shift(x, 31, out=tmp)
    return x.bitwise_xor_(tmp.bitwise_and_((1 << 33) - 1))


def _key(value: Tensor | int, constant: int, offset: int, device: torch.device) -> Tensor | int:
    """``value · constant + offset``, wrapped to signed 64 bits: a Python int for an int, so no
    host-to-device copy happens inside a compiled or CUDA-graph-captured step."""
    if isinstance(value, Tensor):
        return value.to(device=device, dtype=torch.int64) * constant + offset
    return _signed((int(value) * constant + offset) & _MASK64)


def keyed_uniform(seed: Tensor | int, step: Tensor | int, layer: Tensor | int, position: Tensor,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """U[0, 1) numbers, one per ``position``, fixed by ``(seed, step, layer, position)``.

    ``seed``, ``step`` and ``layer`` may be tensors broadcasting against ``position`` (one
    per entry, as in an ensemble, or a step counter kept on the device) or ints. Values are
    multiples of 2⁻²⁴, exact in float32. Nothing is read back to the host, so it runs inside
    ``torch.compile(fullgraph=True)`` and CUDA-graph capture.

    Example:
        >>> a = keyed_uniform(7, 3, 0, torch.arange(5))
        >>> b = keyed_uniform(7, 3, 0, torch.tensor([4, 2]))
        >>> bool(a[4] == b[0] and a[2] == b[1]) and bool(((a >= 0) & (a < 1)).all())
        True
    """
    pos = position.to(torch.int64)
    x = _mix(_key(seed, _K[0], _K[1], pos.device))
    x = _mix(x ^ _key(step, _K[2], 0, pos.device))  # int ^ tensor and tensor ^ int both broadcast
    x = _mix(x ^ _key(layer, _K[3], 1, pos.device))
    x = _mix(x ^ pos)
    top = x.bitwise_right_shift_(40).bitwise_and_((1 << 24) - 1) if x.numel() >= 4096 else _shr(x, 40)
    return top.to(torch.float32).mul_(2.0**-24).to(dtype)  # 24-bit integers: exact in float32


def reference_uniform(seed: int, step: int, layer: int, position: int) -> float:
    """The same number computed with Python integers (the tests' reference).

    Example:
        >>> reference_uniform(7, 3, 0, 4) == keyed_uniform(7, 3, 0, torch.tensor([4])).item()
        True
    """

    def mix(x: int) -> int:
        x &= _MASK64
        x ^= x >> 30
        x = (x * (_M1 & _MASK64)) & _MASK64
        x ^= x >> 27
        x = (x * (_M2 & _MASK64)) & _MASK64
        return x ^ (x >> 31)

    k = [c & _MASK64 for c in _K]
    x = mix(seed * k[0] + k[1])
    x = mix(x ^ ((step * k[2]) & _MASK64))
    x = mix(x ^ ((layer * k[3] + 1) & _MASK64))
    x = mix(x ^ (position & _MASK64))
    return (x >> 40) * 2.0**-24
