from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from polarnet.analysis.stats import compare_to_reference, mann_whitney


def test_mann_whitney_against_hand_computed_values() -> None:
    # a = [1, 2, 3] all below b = [4, 5, 6]: U_a = 0; exact two-sided p = 2 / C(6, 3) = 0.1
    result = mann_whitney([1, 2, 3], [4, 5, 6])
    assert result["U"] == 0 and result["p"] == pytest.approx(0.1) and result["r"] == -1.0
    # ties and interleaving: a = [1, 3, 5], b = [2, 3, 4]: pairs a > b: 1 -> 0, 3 -> 1 + 0.5, 5 -> 3 => U = 4.5
    result = mann_whitney([1, 3, 5], [2, 3, 4])
    assert result["U"] == 4.5 and result["r"] == pytest.approx(0.0)


def test_missing_values_are_dropped_and_empty_samples_give_nan() -> None:
    assert mann_whitney([1, float("nan"), 2], [3, 4])["n_a"] == 2
    empty = mann_whitney([float("nan")], [1, 2])
    assert empty["n_a"] == 0 and math.isnan(empty["p"])


def test_holm_bonferroni_by_hand() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for n in (8, 20, 60):
        for condition, shift in (("ref", 0.0), ("far", 3.0), ("near", 0.1)):
            rows += [{"condition": condition, "n_train": n, "err": v} for v in rng.normal(shift, 1, 12)]
    table = compare_to_reference(pd.DataFrame(rows), "err", reference="ref")
    assert len(table) == 6 and set(table["condition"]) == {"far", "near"}
    # Holm: sort p ascending; p_holm_(i) = max_{j<=i} min(1, (m - j + 1) p_(j))
    p = table["p"].to_numpy()
    order = np.argsort(p)
    expected = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        expected[i] = running
    assert np.allclose(table["p_holm"], expected)
    assert table.loc[table["condition"] == "far", "significant"].all()
    assert (table["significant"] == (table["p_holm"] < 0.05)).all()
    far = table[table["condition"] == "far"]
    assert (far["r"] > 0.8).all() and (far["median"] > far["median_reference"]).all()


def test_unknown_reference_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="reference condition 'x'"):
        compare_to_reference(pd.DataFrame({"condition": ["a"], "n_train": [8], "err": [1.0]}), "err", "x")


def test_all_nan_metrics_single_trials_and_missing_sizes_give_untested_rows() -> None:
    # nobody reached the threshold (all NaN), one trial per point, and the reference lacks n = 20
    df = pd.DataFrame({"condition": ["a", "a", "b"], "n_train": [8, 20, 8],
                       "epochs": [math.nan, math.nan, math.nan]})
    table = compare_to_reference(df, "epochs", reference="b")
    assert len(table) == 2 and table["p"].isna().all() and table["p_holm"].isna().all()
    assert not table["significant"].any()
    assert table.loc[table["n_train"] == 20, "n_b"].item() == 0
    one = compare_to_reference(pd.DataFrame({"condition": ["a", "b"], "n_train": [8, 8], "e": [1.0, 2.0]}), "e", "b")
    assert one["p"].item() == 1.0 and not one["significant"].item()


# -- the scorecard's statistics (issue 12) ---------------------------------------------------------------
def test_bootstrap_is_seeded_and_deterministic() -> None:
    from polarnet.analysis.stats import bootstrap_ci, median_difference_ci

    rng = np.random.default_rng(1)
    a, b = rng.normal(0.3, 0.05, 20), rng.normal(0.4, 0.05, 20)
    first = median_difference_ci(a, b)
    assert first == median_difference_ci(a, b)  # same data, same seed: the same interval
    assert first != median_difference_ci(a, b, seed=1)
    est, lo, hi = first
    assert est == pytest.approx(np.median(a) - np.median(b)) and lo < est < hi < 0
    # NaN values are dropped; an empty sample gives NaN
    assert median_difference_ci([*a, math.nan], b) == first
    assert all(math.isnan(v) for v in bootstrap_ci([[], [1.0]], lambda x, y: x.mean(axis=1)))


def test_bootstrap_interval_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    from polarnet.analysis.stats import median_difference_ci

    rng = np.random.default_rng(7)
    covered = sum(lo <= -0.1 <= hi for lo, hi in
                  (median_difference_ci(rng.normal(0, 0.1, 30), rng.normal(0.1, 0.1, 30), resamples=1000,
                                        seed=i)[1:] for i in range(200)))
    assert 0.88 <= covered / 200 <= 0.99


def test_median_ratio_and_median_intervals() -> None:
    from polarnet.analysis.stats import median_ci, median_ratio_ci

    est, lo, hi = median_ratio_ci([3, 3, 4, 3, 3], [6, 6, 7, 6, 6])
    assert est == 0.5 and lo <= 0.5 <= hi
    est, lo, hi = median_ci([1.0, 2.0, 3.0])
    assert (est, lo >= 1.0, hi <= 3.0) == (2.0, True, True)


def test_proportion_ci_is_clopper_pearson() -> None:
    from scipy.stats import binomtest

    from polarnet.analysis.stats import proportion_ci

    for k, n in ((0, 10), (3, 10), (10, 10), (49, 50)):
        expected = binomtest(k, n).proportion_ci(method="exact")
        assert proportion_ci(k, n) == pytest.approx((expected.low, expected.high))
    assert all(math.isnan(v) for v in proportion_ci(0, 0))


def test_holm_and_the_smallest_p_a_test_can_give() -> None:
    from polarnet.analysis.stats import fisher_exact, fisher_floor, holm, mann_whitney_floor

    p, significant = holm([0.01, 0.02, 0.04, math.nan])
    assert np.allclose(p[:3], [0.03, 0.04, 0.04]) and math.isnan(p[3])
    assert significant.tolist() == [True, True, True, False]
    # 3 runs against 3: exact two-tailed p can never go below 2 / C(6, 3) = 0.1
    assert mann_whitney_floor(3, 3) == pytest.approx(0.1)
    assert mann_whitney_floor(20, 20) < 1e-6 and math.isnan(mann_whitney_floor(0, 3))
    assert fisher_floor(2, 2) == pytest.approx(1 / 3) and fisher_exact(5, 5, 5, 5) == 1.0


def test_spread_and_paired_tests() -> None:
    from polarnet.analysis.stats import brown_forsythe, wilcoxon_paired

    rng = np.random.default_rng(0)
    assert brown_forsythe(rng.normal(0, 0.1, 30), rng.normal(0, 1, 30)) < 0.001
    assert math.isnan(brown_forsythe([1, 1], [2, 2])) and math.isnan(brown_forsythe([1], [1, 2]))
    assert wilcoxon_paired([5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6]) == pytest.approx(0.03125)
    assert math.isnan(wilcoxon_paired([1, 2], [1, 2]))
