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


# --------------------------------------------------------------------------- bounded work (issue 8, finding 14)
def reference_monte_carlo(n: int, d: int, trials: int, seed: int) -> tuple[float, float]:
    """The events counted with Python sets, on the same draws (one randint call for all trials)."""
    import torch

    bits = torch.randint(0, 2, (trials, n, d + 1), generator=torch.Generator().manual_seed(seed)).tolist()
    full = classes = 0
    for units in bits:
        compatible = [tuple(u) for u in units if u[d] == u[0] ^ u[1]]
        full += len(set(compatible)) >= 3
        classes += len({u[:2] for u in compatible}) >= 3
    return full / trials, classes / trials


@pytest.mark.parametrize("n,d", [(3, 2), (6, 5), (5, 60), (5, 61), (5, 62), (4, 130)])
def test_monte_carlo_counts_exactly_what_sets_count_for_any_dims(n: int, d: int, monkeypatch) -> None:
    expected = reference_monte_carlo(n, d, 400, seed=3)
    assert theory.monte_carlo(n, d, trials=400, seed=3) == expected
    monkeypatch.setattr(theory, "_CHUNK", 7 * n * (d + 1))  # 7 trials a chunk: the same numbers
    assert theory.monte_carlo(n, d, trials=400, seed=3) == expected


def test_monte_carlo_with_many_dims_has_no_exponential_table() -> None:
    # was: zeros(trials, 2**(d+1)): an overflow at d = 100000, 17.6 TB at d = 40
    pub, cls = theory.monte_carlo(3, 100_000, trials=2)
    assert 0 <= pub <= cls <= 1
    assert theory.monte_carlo(4, 40, trials=50) == reference_monte_carlo(4, 40, 50, seed=0)


def test_monte_carlo_refuses_work_over_its_limits_before_starting() -> None:
    with pytest.raises(ValueError, match=r"trials·n·\(d\+1\) = .* sign draws, over the limit of 1,000,000,000"):
        theory.monte_carlo(3, 40, trials=10**8)
    with pytest.raises(ValueError, match=r"one trial of n·\(d\+1\) = .* over the limit of 16,777,216"):
        theory.monte_carlo(100, 10**6, trials=1)


@pytest.mark.parametrize("kwargs,name", [
    ({"n": 0}, "n"), ({"n": 2.5}, "n"), ({"n": True}, "n"), ({"d": 1}, "d"), ({"trials": 0}, "trials"),
    ({"trials": -5}, "trials"), ({"seed": 2**70}, "seed"), ({"seed": -1}, "seed"),
])
def test_monte_carlo_validates_its_arguments(kwargs: dict, name: str) -> None:
    args = {"n": 3, "d": 5, "trials": 10, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        theory.monte_carlo(**args)


def test_exact_values_refuse_huge_integers() -> None:
    with pytest.raises(ValueError, match=r"published_bound\(n=3, d=1000000\) needs exact integers of 3,000,003 bits"):
        theory.published_bound(3, 10**6)
    with pytest.raises(ValueError, match="over the limit of 2,000,000"):
        theory.per_class_bound(10**7)
    with pytest.raises(ValueError, match="over the limit"):
        theory.q_count(0, 4, 4, 10**9)
    with pytest.raises(ValueError, match="k must be at most 100"):
        theory.q_count(5000, 5000, 4, 3)
    with pytest.raises(ValueError, match="whole number"):
        theory.published_bound(2.5, 5)
    assert theory.published_bound(3, 60) > 0  # large d, small n: still exact
