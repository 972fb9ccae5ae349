"""XOR-5D (Wang et al. §2): two relevant dimensions in four unit squares, the rest noise.

Each relevant coordinate lies in ``[−1, 0)`` or ``[gap, 1 + gap)``; label 1 when both lie on
the same side (the two same-side quadrants), 0 otherwise; the other ``dims − 2`` coordinates
are N(1, 1) noise.

Samples come in blocks of 64, each drawn from its own seed, so the first ``n`` samples of a
pool are the same whatever the pool's size: training sets are prefixes of one sequence, hence
nested, and adding a larger size to a study leaves the smaller sets unchanged. Within a block,
every four consecutive samples hold one per quadrant in a random order, so a prefix whose
length is a multiple of 4 (every size the paper uses) is balanced.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

__all__ = ["xor_pool"]

_BLOCK = 64


def _block_seed(seed: int, block: int) -> int:
    return int.from_bytes(hashlib.sha256(f"xor:{seed}:{block}".encode()).digest()[:8], "little") >> 1


def _block(seed: int, block: int, dims: int, gap: float) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(_block_seed(seed, block))
    quadrant = torch.argsort(torch.rand(_BLOCK // 4, 4, generator=g), dim=1).reshape(-1)
    corner = torch.stack([quadrant // 2, quadrant % 2], dim=1).to(torch.float64)
    relevant = torch.rand(_BLOCK, 2, generator=g, dtype=torch.float64) + corner * (1.0 + gap) - 1.0
    noise = torch.randn(_BLOCK, dims - 2, generator=g, dtype=torch.float64) + 1.0
    return torch.cat([relevant, noise], dim=1), (corner[:, 0] == corner[:, 1]).to(torch.float64)


def xor_pool(n: int, dims: int = 5, seed: int = 0, gap: float = 0.05,
             dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """The first ``n`` XOR samples of the sequence ``seed``: ``(x (n, dims), y (n,) in {0., 1.})``.

    Example:
        >>> x, y = xor_pool(8, seed=0)
        >>> x.shape, y.tolist().count(1.0)
        (torch.Size([8, 5]), 4)
        >>> bool(torch.equal(xor_pool(100, seed=0)[0][:8], x))  # nested
        True
    """
    if dims < 2:
        raise ValueError(f"XOR needs at least 2 input dimensions, got dims={dims}")
    if n < 1:
        raise ValueError(f"need n >= 1 samples, got {n}")
    blocks = [_block(seed, b, dims, gap) for b in range(-(-n // _BLOCK))]
    x = torch.cat([b[0] for b in blocks])[:n].to(dtype)
    y = torch.cat([b[1] for b in blocks])[:n].to(dtype)
    return x, y
