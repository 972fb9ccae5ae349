"""Statistics behind the papers' claims: two-tailed Mann–Whitney U tests of each condition
against a reference condition at each training size, Holm–Bonferroni correction across the
comparisons of a figure, and the rank-biserial correlation as effect size.

scipy computes U and p, statsmodels the correction; nothing is hand-rolled.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu
from statsmodels.stats.multitest import multipletests

__all__ = ["compare_to_reference", "mann_whitney"]


def mann_whitney(a, b) -> dict[str, float]:
    """Two-tailed Mann–Whitney U of samples ``a`` against ``b``.

    Returns ``n_a``, ``n_b``, ``U`` (scipy's statistic for ``a``), ``p`` and the rank-biserial
    correlation ``r = 2U / (n_a n_b) − 1`` (positive: ``a`` tends to be larger). With an empty
    sample, U, p and r are NaN.

    Example:
        >>> round(mann_whitney([1, 2, 3], [4, 5, 6])["p"], 3), mann_whitney([1, 2, 3], [4, 5, 6])["r"]
        (0.1, -1.0)
    """
    a = np.asarray([v for v in a if not _missing(v)], dtype=float)
    b = np.asarray([v for v in b if not _missing(v)], dtype=float)
    if len(a) == 0 or len(b) == 0:
        return {"n_a": len(a), "n_b": len(b), "U": math.nan, "p": math.nan, "r": math.nan}
    result = mannwhitneyu(a, b, alternative="two-sided")
    u = float(result.statistic)
    return {"n_a": len(a), "n_b": len(b), "U": u, "p": float(result.pvalue), "r": 2 * u / (len(a) * len(b)) - 1}


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def compare_to_reference(per_run: pd.DataFrame, metric: str, reference: str, by: str = "n_train",
                         alpha: float = 0.05) -> pd.DataFrame:
    """Each condition against ``reference`` at each value of ``by``, Holm-corrected together.

    Args:
        per_run: one row per run with ``condition``, ``by`` and ``metric`` columns
            (e.g. :func:`polarnet.analysis.metrics.run_metrics`).
        metric: the column compared (NaN values, e.g. runs that never reached a threshold, are dropped).
        reference: the condition every other is compared with.
        by: the grouping column (training-set size by default).
        alpha: family-wise error rate of the Holm–Bonferroni correction.

    Returns:
        One row per (condition, ``by``): ``n_a``, ``n_b``, ``U``, ``p``, ``p_holm``,
        ``significant`` and the rank-biserial ``r`` (condition vs reference), and both medians.

    Example:
        >>> df = pd.DataFrame({"condition": ["a"] * 5 + ["b"] * 5, "n_train": [8] * 10,
        ...                    "err": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]})
        >>> row = compare_to_reference(df, "err", reference="b").iloc[0]
        >>> row.condition, float(row.U), round(float(row.p), 4), float(row.r)
        ('a', 0.0, 0.0079, -1.0)
    """
    if reference not in set(per_run["condition"]):
        raise ValueError(f"reference condition {reference!r} is not in the results; have {sorted(set(per_run['condition']))}")
    rows = []
    for value, group in per_run.groupby(by):
        ref = group.loc[group["condition"] == reference, metric]
        for condition, sample in group[group["condition"] != reference].groupby("condition"):
            stats = mann_whitney(sample[metric], ref)
            rows.append({"condition": condition, "reference": reference, by: value, **stats,
                         "median": float(sample[metric].median()), "median_reference": float(ref.median())})
    table = pd.DataFrame(rows, columns=["condition", "reference", by, "n_a", "n_b", "U", "p", "r", "median",
                                        "median_reference"])
    tested = table["p"].notna()
    table["p_holm"] = math.nan
    table["significant"] = False
    if tested.any():
        reject, corrected, _, _ = multipletests(table.loc[tested, "p"], alpha=alpha, method="holm")
        table.loc[tested, "p_holm"] = corrected
        table.loc[tested, "significant"] = reject
    return table
