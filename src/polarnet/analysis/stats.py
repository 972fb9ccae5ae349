"""Statistics behind the papers' claims: two-tailed Mann–Whitney U tests of each condition
against a reference condition at each training size, Holm–Bonferroni correction across the
comparisons of a figure, and the rank-biserial correlation as effect size.

scipy computes U and p, statsmodels the correction. For the reproduction scorecard
(:mod:`polarnet.analysis.claims`): a seeded percentile bootstrap of medians, their differences
and ratios (a few lines of numpy, deterministic), Clopper–Pearson intervals, Fisher's exact,
Brown–Forsythe and Wilcoxon tests (scipy), and the smallest p a test can give with a sample
size (to say when a study is too small to find anything).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu
from statsmodels.stats.multitest import multipletests

__all__ = ["compare_to_reference", "mann_whitney", "bootstrap_ci", "median_difference_ci", "median_ratio_ci", "median_ci",
           "proportion_ci", "holm", "mann_whitney_floor", "fisher_exact", "fisher_floor", "brown_forsythe",
           "wilcoxon_paired", "BOOTSTRAP_RESAMPLES"]


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


# -- the scorecard's statistics (polarnet.analysis.claims): seeded bootstrap, exact binomial
# intervals, Holm, and the smallest p a test can give ---------------------------------------
#: resamples of :func:`bootstrap_ci` unless told otherwise
BOOTSTRAP_RESAMPLES = 4000


def _clean(values) -> np.ndarray:
    return np.asarray([float(v) for v in values if not _missing(v)], dtype=float)


def bootstrap_ci(samples, statistic, *, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """A statistic of one or more independent samples and its percentile bootstrap interval.

    Each sample is resampled with replacement on its own (an unpaired design, as the papers'
    Mann–Whitney tests), ``resamples`` times, from one ``numpy`` generator seeded with
    ``seed``: the same data and seed always give the same interval. NaN values are dropped.

    Args:
        samples: a sequence of 1-D samples.
        statistic: ``f(*arrays) -> array``: the statistic of each resample, where each array
            has one resample per row (``axis=1`` holds the values); it is called once more
            with one row per sample for the estimate itself.
        resamples, level, seed: the bootstrap's size, coverage and seed.

    Returns:
        ``(estimate, low, high)``; all NaN when a sample is empty.

    Example:
        >>> est, lo, hi = bootstrap_ci([[1, 2, 3, 4, 5]], lambda a: np.median(a, axis=1))
        >>> est, lo <= est <= hi
        (3.0, True)
    """
    arrays = [_clean(s) for s in samples]
    if not arrays or any(len(a) == 0 for a in arrays):
        return math.nan, math.nan, math.nan
    estimate = float(np.asarray(statistic(*[a[None, :] for a in arrays])).ravel()[0])
    rng = np.random.default_rng(seed)
    drawn = [a[rng.integers(0, len(a), size=(resamples, len(a)))] for a in arrays]
    values = np.asarray(statistic(*drawn), dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return estimate, math.nan, math.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return estimate, float(low), float(high)


def median_difference_ci(a, b, **kwargs) -> tuple[float, float, float]:
    """``median(a) − median(b)`` with its percentile bootstrap interval (:func:`bootstrap_ci`).

    Example:
        >>> est, lo, hi = median_difference_ci([0.30, 0.32, 0.35, 0.31], [0.40, 0.42, 0.38, 0.41])
        >>> round(est, 3), lo < est < hi, hi < 0
        (-0.09, True, True)
    """
    return bootstrap_ci([a, b], lambda x, y: np.median(x, axis=1) - np.median(y, axis=1), **kwargs)


def median_ratio_ci(a, b, **kwargs) -> tuple[float, float, float]:
    """``median(a) / median(b)`` with its percentile bootstrap interval (resamples whose
    denominator median is 0 are left out).

    Example:
        >>> est, lo, hi = median_ratio_ci([3, 3, 4, 3], [6, 7, 6, 6])
        >>> est, lo <= est <= hi
        (0.5, True)
    """
    def ratio(x, y):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.median(x, axis=1) / np.median(y, axis=1)

    return bootstrap_ci([a, b], ratio, **kwargs)


def median_ci(a, **kwargs) -> tuple[float, float, float]:
    """``median(a)`` with its percentile bootstrap interval.

    Example:
        >>> median_ci([0.5, 0.55, 0.6])[0]
        0.55
    """
    return bootstrap_ci([a], lambda x: np.median(x, axis=1), **kwargs)


def proportion_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson (exact) interval of a proportion ``k / n``; ``(nan, nan)`` when ``n = 0``.

    Example:
        >>> lo, hi = proportion_ci(50, 50)
        >>> round(lo, 4), hi
        (0.9289, 1.0)
    """
    if n <= 0:
        return math.nan, math.nan
    from scipy.stats import beta

    tail = (1 - level) / 2
    low = 0.0 if k <= 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k >= n else float(beta.ppf(1 - tail, k + 1, n - k))
    return low, high


def holm(pvalues, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm–Bonferroni over the non-NaN ``pvalues`` (statsmodels): ``(p_holm, significant)``,
    NaN and False where a p is NaN.

    Example:
        >>> p, sig = holm([0.01, 0.04, float("nan")])
        >>> [round(float(v), 2) for v in p[:2]], sig.tolist()
        ([0.02, 0.04], [True, True, False])
    """
    p = np.asarray(pvalues, dtype=float)
    corrected, reject = np.full(p.shape, math.nan), np.zeros(p.shape, dtype=bool)
    tested = ~np.isnan(p)
    if tested.any():
        reject[tested], corrected[tested] = multipletests(p[tested], alpha=alpha, method="holm")[:2]
    return corrected, reject


def mann_whitney_floor(n_a: int, n_b: int) -> float:
    """The smallest two-tailed p :func:`mann_whitney` can give with samples of these sizes (no
    ties, complete separation): above ``α / m``, no Holm-corrected test of ``m`` can succeed.

    Example:
        >>> round(mann_whitney_floor(3, 3), 3), mann_whitney_floor(20, 20) < 1e-6
        (0.1, True)
    """
    if n_a < 1 or n_b < 1:
        return math.nan
    return mann_whitney(range(n_a), range(n_a, n_a + n_b))["p"]


def fisher_exact(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Two-tailed Fisher exact test of the success rates ``k_a / n_a`` against ``k_b / n_b``
    (scipy); NaN when a group is empty.

    Example:
        >>> round(fisher_exact(10, 10, 0, 10), 6)
        1.1e-05
    """
    if n_a < 1 or n_b < 1:
        return math.nan
    from scipy.stats import fisher_exact as fisher

    return float(fisher([[k_a, n_a - k_a], [k_b, n_b - k_b]], alternative="two-sided").pvalue)


def fisher_floor(n_a: int, n_b: int) -> float:
    """The smallest p :func:`fisher_exact` can give with groups of these sizes.

    Example:
        >>> round(fisher_floor(2, 2), 3)
        0.333
    """
    return min(fisher_exact(n_a, n_a, 0, n_b), fisher_exact(0, n_a, n_b, n_b)) if n_a and n_b else math.nan


def brown_forsythe(a, b) -> float:
    """Two-tailed Brown–Forsythe test (Levene's test about the medians, scipy) of equal spread;
    NaN with fewer than 2 values in a sample or no spread at all.

    Example:
        >>> brown_forsythe([1, 1.1, 0.9, 1.05, 0.95], [0, 2, -1, 3, 1]) < 0.05
        True
    """
    from scipy.stats import levene

    a, b = _clean(a), _clean(b)
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return math.nan
    return float(levene(a, b, center="median").pvalue)


def wilcoxon_paired(a, b) -> float:
    """Two-tailed Wilcoxon signed-rank test of paired samples (scipy); NaN with no non-zero
    difference.

    Example:
        >>> round(wilcoxon_paired([5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6]), 4)
        0.0312
    """
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if not len(a) or np.all(a == b):
        return math.nan
    return float(wilcoxon(a, b, alternative="two-sided").pvalue)
