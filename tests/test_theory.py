from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from polarnet import theory


def brute_force(n: int, d: int) -> tuple[Fraction, Fraction]:
    """Enumerate every sign assignment of n units (d inputs + 1 output each)."""
    patterns = list(itertools.product((1, -1), repeat=d + 1))
    full = classes = 0
    for units in itertools.product(patterns, repeat=n):
        compatible = [u for u in units if u[d] == u[0] * u[1]]
        full += len(set(compatible)) >= 3
        classes += len({(u[0], u[1]) for u in compatible}) >= 3
    total = len(patterns) ** n
    return Fraction(full, total), Fraction(classes, total)


@pytest.mark.parametrize("n,d", [(1, 2), (2, 2), (3, 2), (4, 2), (5, 2), (3, 3), (4, 3), (3, 4)])
def test_formulas_equal_exhaustive_enumeration(n: int, d: int) -> None:
    full, classes = brute_force(n, d)
    assert theory.published_bound(n, d) == full
    assert theory.per_class_bound(n) == classes


def test_hand_values() -> None:
    assert theory.published_bound(3, 2) == Fraction(4 * 3 * 2, 8**3)
    assert theory.published_bound(2, 5) == 0
    assert theory.q_count(0, 4, 4, 3) == 4**3
    assert theory.q_count(2, 4, 4, 2) == 6 * 2  # pick the pair, then either order


def test_paper_numbers_for_xor5d() -> None:
    # PAPER_NOTES: the published formula gives about 0.995 at n = 15, the per-class count about 0.927
    assert float(theory.published_bound(15, 5)) == pytest.approx(0.9947, abs=1e-4)
    assert float(theory.per_class_bound(15)) == pytest.approx(0.9267, abs=1e-4)
    values = [theory.published_bound(n, 5) for n in range(1, 30)]
    assert values == sorted(values)


@pytest.mark.parametrize("n", [3, 8, 15])
def test_monte_carlo_agrees_with_the_exact_values(n: int) -> None:
    pub, cls = theory.monte_carlo(n, 5, trials=40_000, seed=1)
    assert pub == pytest.approx(float(theory.published_bound(n, 5)), abs=0.01)
    assert cls == pytest.approx(float(theory.per_class_bound(n)), abs=0.01)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="d ≥ 2"):
        theory.published_bound(5, 1)
    with pytest.raises(ValueError, match="n ≥ 1"):
        theory.per_class_bound(0)


def test_numpy_integers_give_the_same_exact_values() -> None:
    import numpy as np

    for n in (5, 15, 40):
        assert theory.published_bound(np.int64(n), np.int64(5)) == theory.published_bound(n, 5)
        assert theory.per_class_bound(np.int64(n)) == theory.per_class_bound(n)
