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
