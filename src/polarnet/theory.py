"""XOR learnability of randomly signed Frozen-Nets (Wang et al., App. D).

A hidden unit is *XOR-compatible* when ``sign(w_out) = sign(w_1)·sign(w_2)`` (Lemma D.1:
three distinct compatible units suffice to solve XOR). With every sign Bernoulli(0.5):

* :func:`published_bound` — Lemma D.2 (d = 2) and Theorem D.1 (any d ≥ 2), as published:
  ``1 − Σ_{k=0..2} Q(k, 2^d, 2^d, n) / (2^{d+1})^n``, which counts *distinct full sign
  patterns*, irrelevant-dimension signs included.
* :func:`per_class_bound` — the same count over the 4 compatible *classes* (the signs of
  the irrelevant inputs don't change what a unit contributes to XOR), which is the d = 2
  value for every d.
* :func:`monte_carlo` — both events estimated from random sign draws.

All exact values are :class:`fractions.Fraction`.

Example:
    >>> float(published_bound(3, 2))  # 3 units, 2-D XOR
    0.046875
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from math import comb

import torch

__all__ = ["q_count", "published_bound", "per_class_bound", "monte_carlo"]


def q_count(k: int, m: int, big_m: int, n: int) -> int:
    """``Q(k, m, M, n)``: sequences of ``n`` draws from ``m + M`` patterns in which exactly
    ``k`` of the ``m`` compatible patterns appear (the other draws are among the ``M``).

    ``Q(k, m, M, n) = C(m, k)·[(M + k)^n − Σ_{p<k} Q(p, k, M, n)]``.

    Example:
        >>> q_count(1, 4, 4, 2)  # choose the pattern, then 5² − 4² sequences that use it
        36
    """
    # Python integers, always: numpy integers would overflow (and poison the cache)
    return _q(int(k), int(m), int(big_m), int(n))


@lru_cache(maxsize=None)
def _q(k: int, m: int, big_m: int, n: int) -> int:
    if k < 0 or k > m:
        return 0
    inner = (big_m + k) ** n - sum(_q(p, k, big_m, n) for p in range(k))
    return comb(m, k) * inner


def _at_least_three(m: int, big_m: int, n: int) -> Fraction:
    return 1 - Fraction(sum(q_count(k, m, big_m, n) for k in range(3)), (m + big_m) ** n)


def published_bound(n: int, d: int = 5) -> Fraction:
    """Theorem D.1 (Lemma D.2 when ``d = 2``): P(≥ 3 distinct compatible full patterns).

    Example:
        >>> round(float(published_bound(15, 5)), 3)
        0.995
    """
    n, d = int(n), int(d)
    if n < 1 or d < 2:
        raise ValueError(f"need n ≥ 1 hidden units and d ≥ 2 input dims, got n={n}, d={d}")
    return _at_least_three(2**d, 2**d, n)


def per_class_bound(n: int) -> Fraction:
    """P(≥ 3 of the 4 compatible classes among ``n`` units), for any input dimension.

    Example:
        >>> round(float(per_class_bound(15)), 3)
        0.927
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"need n ≥ 1 hidden units, got {n}")
    return _at_least_three(4, 4, n)


def monte_carlo(n: int, d: int = 5, trials: int = 100_000, seed: int = 0) -> tuple[float, float]:
    """Estimate ``(published event, per-class event)`` from random sign draws.

    Each trial draws ``n`` units with ``d`` input signs and one output sign. The published
    event needs 3 distinct compatible full patterns; the per-class event 3 distinct
    compatible ``(sign w_1, sign w_2)`` classes.

    Example:
        >>> pub, cls = monte_carlo(15, 5, trials=20_000)
        >>> abs(pub - 0.995) < 0.01 and abs(cls - 0.927) < 0.01
        True
    """
    g = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (trials, n, d + 1), generator=g)  # 1 = negative
    compatible = bits[..., d] == (bits[..., 0] ^ bits[..., 1])
    weights = 2 ** torch.arange(d + 1)
    code = (bits * weights).sum(-1)
    cls = bits[..., 0] * 2 + bits[..., 1]
    out = []
    for labels, size in ((code, 2 ** (d + 1)), (cls, 4)):
        seen = torch.zeros(trials, size, dtype=torch.long).scatter_add_(1, labels, compatible.long())
        out.append(float(((seen > 0).sum(1) >= 3).float().mean()))
    return out[0], out[1]
