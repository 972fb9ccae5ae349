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

All exact values are :class:`fractions.Fraction`. Every function checks its arguments (whole
numbers: ``n ≥ 1`` units, ``d ≥ 2`` dims, ``trials ≥ 1``, a seed in ``[0, 2**63 - 1]``) and
refuses work it can't finish, before starting it: exact values whose denominator has more
than :data:`MAX_EXACT_BITS` bits (``n·(d+1)`` for the published bound), and Monte Carlo runs
of more than :data:`MAX_DRAWS` sign draws (``trials·n·(d+1)``) or :data:`MAX_TRIAL_DRAWS`
in one trial. The Monte Carlo draws in chunks of trials and counts distinct patterns by
sorting, so its memory stays under a few hundred MB for any ``d`` (no ``2^(d+1)`` table).

Example:
    >>> float(published_bound(3, 2))  # 3 units, 2-D XOR
    0.046875
"""

from __future__ import annotations

import numbers
from fractions import Fraction
from collections.abc import Callable
from functools import lru_cache
from math import comb

import torch

from .builders import check_seed

__all__ = ["q_count", "published_bound", "per_class_bound", "monte_carlo", "MAX_DRAWS", "MAX_TRIAL_DRAWS", "MAX_EXACT_BITS"]

MAX_EXACT_BITS = 2_000_000
"""Largest denominator (in bits) of an exact value: ``n·(d+1)`` for :func:`published_bound`
(about 5 s at the limit; the time grows with its square)."""
MAX_DRAWS = 10**9
"""Most sign draws ``trials·n·(d+1)`` of one :func:`monte_carlo` call (some tens of seconds)."""
MAX_TRIAL_DRAWS = 2**24
"""Most sign draws ``n·(d+1)`` of one Monte Carlo trial, which is held in memory at once
(int64: 128 MiB, a few times that in temporaries)."""
_CHUNK = 2**22  # sign draws per chunk: 32 MiB of int64, a few times that in temporaries
_WORD = 62  # sign bits per int64 word of a packed pattern


def _whole(value: object, name: str, least: int) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= least:
        return int(value)
    raise ValueError(f"{name} must be a whole number ≥ {least}, got {value!r}")


def _exact_size(bits: int, what: Callable[[], str]) -> None:
    if bits > MAX_EXACT_BITS:
        raise ValueError(f"{what()} needs exact integers of {bits:,} bits, over the limit of {MAX_EXACT_BITS:,} "
                         f"(the time grows with the square); use fewer units or dims, or monte_carlo")


def _short(x: int) -> str:
    """An integer for a message: a huge one by its size (str() refuses over 4300 digits)."""
    return str(x) if x.bit_length() <= 64 else f"(a {x.bit_length():,}-bit integer)"


def q_count(k: int, m: int, big_m: int, n: int) -> int:
    """``Q(k, m, M, n)``: sequences of ``n`` draws from ``m + M`` patterns in which exactly
    ``k`` of the ``m`` compatible patterns appear (the other draws are among the ``M``).

    ``Q(k, m, M, n) = C(m, k)·[(M + k)^n − Σ_{p<k} Q(p, k, M, n)]``.

    Raises:
        ValueError: an argument that is not a whole number ≥ 0, ``k > 100``, or a value of
            more than :data:`MAX_EXACT_BITS` bits.

    Example:
        >>> q_count(1, 4, 4, 2)  # choose the pattern, then 5² − 4² sequences that use it
        36
    """
    # Python integers, always: numpy integers would overflow (and poison the cache)
    k, m, big_m, n = (_whole(v, name, 0) for v, name in ((k, "k"), (m, "m"), (big_m, "M"), (n, "n")))
    if k > 100:
        raise ValueError(f"k must be at most 100 (the recursion is k deep), got {k}")
    _exact_size(n * (big_m + min(k, m)).bit_length(), lambda: f"q_count(k={k}, m={_short(m)}, M={_short(big_m)}, n={n})")
    return _q(k, m, big_m, n)


@lru_cache(maxsize=None)
def _q(k: int, m: int, big_m: int, n: int) -> int:
    if k < 0 or k > m:
        return 0
    inner = (big_m + k) ** n - sum(_q(p, k, big_m, n) for p in range(k))
    return comb(m, k) * inner


def _at_least_three(m: int, big_m: int, n: int) -> Fraction:
    # the largest integer is the denominator (m + M)^n: n·log2(m + M) bits
    _exact_size(n * (m + big_m - 1).bit_length(), lambda: f"the exact value for n={n} units and {_short(m + big_m)} patterns")
    return 1 - Fraction(sum(q_count(k, m, big_m, n) for k in range(3)), (m + big_m) ** n)


def published_bound(n: int, d: int = 5) -> Fraction:
    """Theorem D.1 (Lemma D.2 when ``d = 2``): P(≥ 3 distinct compatible full patterns).

    Raises:
        ValueError: ``n < 1`` or ``d < 2`` (or not whole numbers), or ``n·(d+1)`` over
            :data:`MAX_EXACT_BITS` (the denominator's bits).

    Example:
        >>> round(float(published_bound(15, 5)), 3)
        0.995
    """
    if not (_is_whole(n, 1) and _is_whole(d, 2)):
        raise ValueError(f"need n ≥ 1 hidden units and d ≥ 2 input dims (whole numbers), got n={n!r}, d={d!r}")
    n, d = int(n), int(d)
    _exact_size(n * (d + 1), lambda: f"published_bound(n={n}, d={d})")
    return _at_least_three(2**d, 2**d, n)


def per_class_bound(n: int) -> Fraction:
    """P(≥ 3 of the 4 compatible classes among ``n`` units), for any input dimension.

    Raises:
        ValueError: ``n < 1`` or not a whole number, or ``3·n`` over :data:`MAX_EXACT_BITS`.

    Example:
        >>> round(float(per_class_bound(15)), 3)
        0.927
    """
    if not _is_whole(n, 1):
        raise ValueError(f"need n ≥ 1 hidden units (a whole number), got {n!r}")
    return _at_least_three(4, 4, int(n))


def _is_whole(value: object, least: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= least


def monte_carlo(n: int, d: int = 5, trials: int = 100_000, seed: int = 0) -> tuple[float, float]:
    """Estimate ``(published event, per-class event)`` from random sign draws.

    Each trial draws ``n`` units with ``d`` input signs and one output sign. The published
    event needs 3 distinct compatible full patterns; the per-class event 3 distinct
    compatible ``(sign w_1, sign w_2)`` classes. The draws come in chunks of trials from one
    generator, so the numbers don't depend on the chunk size.

    Raises:
        ValueError: ``n < 1``, ``d < 2``, ``trials < 1`` or a bad seed (naming it), more
            than :data:`MAX_DRAWS` sign draws ``trials·n·(d+1)``, or more than
            :data:`MAX_TRIAL_DRAWS` in one trial.

    Example:
        >>> pub, cls = monte_carlo(15, 5, trials=20_000)
        >>> abs(pub - 0.995) < 0.01 and abs(cls - 0.927) < 0.01
        True
    """
    n, d, trials = _whole(n, "n (hidden units)", 1), _whole(d, "d (input dims)", 2), _whole(trials, "trials", 1)
    seed = check_seed(seed)
    if n * (d + 1) > MAX_TRIAL_DRAWS:
        raise ValueError(f"monte_carlo: one trial of n·(d+1) = {n:,}·{d + 1:,} = {n * (d + 1):,} sign draws is over the "
                         f"limit of {MAX_TRIAL_DRAWS:,} held in memory at once; use fewer units or dims")
    draws = trials * n * (d + 1)
    if draws > MAX_DRAWS:
        raise ValueError(f"monte_carlo: trials·n·(d+1) = {trials:,}·{n:,}·{d + 1:,} = {draws:,} sign draws, over the "
                         f"limit of {MAX_DRAWS:,}; use fewer trials, units or dims")
    g = torch.Generator().manual_seed(seed)
    words = -(-(d + 1) // _WORD)
    chunk = max(1, _CHUNK // (n * (d + 1)))
    hits = [0, 0]
    for start in range(0, trials, chunk):
        c = min(chunk, trials - start)
        bits = torch.randint(0, 2, (c, n, d + 1), generator=g)  # 1 = negative
        compatible = bits[..., d] == (bits[..., 0] ^ bits[..., 1])
        cls = bits[..., 0] * 2 + bits[..., 1]
        seen = torch.zeros(c, 4, dtype=torch.long).scatter_add_(1, cls, compatible.long())
        hits[1] += int(((seen > 0).sum(1) >= 3).sum())
        hits[0] += int((_distinct(bits, compatible, words) >= 3).sum())
    return hits[0] / trials, hits[1] / trials


def _distinct(bits: torch.Tensor, compatible: torch.Tensor, words: int) -> torch.Tensor:
    """Per trial (row of ``bits``: units × sign bits), how many distinct compatible patterns.

    Each pattern is packed into ``words`` int64 words (62 bits each); incompatible units get
    -1 in every word. The units are sorted lexicographically (stable sorts, last word first),
    and a unit counts when it is compatible and differs from the one before it.
    """
    c, n, width = bits.shape
    if words == 1:
        keys = (bits * (2 ** torch.arange(width))).sum(-1).masked_fill_(~compatible, -1)
        ordered = keys.sort(dim=1).values.unsqueeze(-1)
    else:
        padded = torch.nn.functional.pad(bits, (0, words * _WORD - width)).view(c, n, words, _WORD)
        keys = (padded * (2 ** torch.arange(_WORD))).sum(-1).masked_fill_(~compatible.unsqueeze(-1), -1)
        order = torch.arange(n).expand(c, n)
        for j in reversed(range(words)):
            order = order.gather(1, keys[..., j].gather(1, order).sort(dim=1, stable=True).indices)
        ordered = keys.gather(1, order.unsqueeze(-1).expand(c, n, words))
    new = torch.ones(c, n, dtype=torch.bool)
    new[:, 1:] = (ordered[:, 1:] != ordered[:, :-1]).any(-1)
    return ((ordered[..., 0] >= 0) & new).sum(1)
