"""How a claim is measured: the metrics a comparison reads (:class:`Metric`), the comparison
itself (:func:`compare`), the verdict rules (:func:`direction_verdict`, :func:`value_verdict`),
their formatting, and the measures the registered claims are built from
(:func:`comparison_claim`, :func:`difference_claim`, :func:`ratio_claim`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .claim_core import (AGREES, ALPHA, DISAGREES, INCONCLUSIVE, MIN_RUNS, TOLERANCE, WEAKER, Measure, Need, PaperClaim,
                         Result, StudyData)
from .metrics import MIN_SUCCESS_FOR_MEDIAN
from .stats import (bootstrap_ci, brown_forsythe, fisher_exact, fisher_floor, holm, mann_whitney, mann_whitney_floor,
                    median_difference_ci, median_ratio_ci)

__all__ = ["Metric", "ERROR", "EPOCHS", "SUCCESS", "FINAL_ACCURACY", "SPREAD", "SPREAD_AUC_MORE", "compare",
           "direction_verdict", "value_verdict", "fmt", "interval", "comparison_claim", "difference_claim",
           "ratio_claim", "sign_change_series"]


# -- metrics a comparison reads --------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """What a comparison reads per run and how it is tested.

    Attributes:
        column: the per-run column (``reached`` and the epochs columns are made on the fly).
        label: how the text names it (``{t}`` becomes the threshold).
        lower: whether lower is what the claim calls better.
        test: ``"mwu"`` (Mann–Whitney U of the values), ``"fisher"`` (Fisher's exact test of
            the share of runs reaching the threshold) or ``"spread"`` (Brown–Forsythe test of
            equal spread; the statistic is the interquartile range).
        unit: ``"pp"`` (accuracies and errors, shown in percentage points), ``"epochs"``.
    """

    column: str
    label: str
    lower: bool
    test: str = "mwu"
    unit: str = "pp"


ERROR = Metric("error_at_convergence", "validation error at convergence", lower=True)
EPOCHS = Metric("epochs_to_threshold", "epochs to {t} (a run that never reached it counts as the slowest)", lower=True,
                unit="epochs")
SUCCESS = Metric("reached", "share of runs reaching {t}", lower=False, test="fisher")
FINAL_ACCURACY = Metric("final_accuracy", "final validation accuracy", lower=False)
SPREAD = Metric("error_at_convergence", "spread (IQR) of the validation error across trials", lower=True,
                test="spread")
SPREAD_AUC_MORE = Metric("auc", "spread (IQR) across runs of the mean validation accuracy over epochs", lower=False,
                         test="spread")


def _iqr(x, axis=None):
    q75, q25 = np.percentile(x, [75, 25], axis=axis)
    return q75 - q25


def _values(rows: pd.DataFrame, metric: Metric, slowest: float) -> np.ndarray:
    if metric.column == "reached":
        return rows["epochs_to_threshold"].notna().to_numpy(dtype=float)
    values = rows[metric.column].astype(float)
    if metric.column.startswith("epochs_to"):
        values = values.fillna(slowest)
    return values.dropna().to_numpy()


def compare(data: StudyData, need: Need, a: str, b: str, metric: Metric, *, sizes: Callable[[int], bool] | None = None,
            widths: Callable[[int], bool] | None = None, seed: int = 0) -> pd.DataFrame:
    """``a`` against ``b`` per grid cell (training size, and hidden size where the study has
    several): both statistics, their difference with its 95% bootstrap interval, the test's
    p, the smallest p it could give (``p_floor``), Holm across the cells, and ``better``
    (+1: ``a`` is better by the statistic, −1 worse, 0 equal).

    ``sizes`` and ``widths`` keep only the training and hidden sizes they accept. Epochs: a run that never reached the
    threshold counts as the slowest (one epoch more than the study ran); a cell where no run of
    either reached it is not tested.

    Example:
        >>> pr = pd.DataFrame({"condition": ["frozen_rand"] * 5 + ["fluid_rand"] * 5, "n_train": [8] * 10,
        ...                    "error_at_convergence": [.1, .12, .11, .09, .1, .3, .31, .29, .32, .3],
        ...                    "epochs_to_threshold": [1.0] * 10})
        >>> row = compare(StudyData("xor5d", {}, pr), Need("xor5d"), "frozen_rand", "fluid_rand", ERROR).iloc[0]
        >>> int(row.better), bool(row.significant), round(float(row.difference), 2)
        (1, True, -0.2)
    """
    rows = data.select(need, a, b)
    if widths is not None:
        rows = rows[rows["hidden"].map(lambda h: bool(widths(int(h))))]
    by = ["hidden", "n_train"] if rows["hidden"].nunique() > 1 else ["n_train"]
    reached = rows["epochs_to_threshold"].max() if len(rows) else math.nan
    slowest = float(max(data.epochs_run, 0 if reached != reached else reached) + 1)
    out = []
    for cell, group in rows.groupby(by, sort=True):
        cell = cell if isinstance(cell, tuple) else (cell,)
        n = int(cell[-1])
        if sizes is not None and not sizes(n):
            continue
        va = _values(group[group["role"] == a], metric, slowest)
        vb = _values(group[group["role"] == b], metric, slowest)
        row = dict(zip(by, cell), n_a=len(va), n_b=len(vb))
        if not len(va) or not len(vb):
            continue
        untested = metric.column.startswith("epochs_to") and (va >= slowest).all() and (vb >= slowest).all()
        if metric.test == "fisher":
            ka, kb = int(va.sum()), int(vb.sum())
            sa, sb = ka / len(va), kb / len(vb)
            p, floor = fisher_exact(ka, len(va), kb, len(vb)), fisher_floor(len(va), len(vb))
            est, lo, hi = bootstrap_ci([va, vb], lambda x, y: x.mean(axis=1) - y.mean(axis=1), seed=seed)
        elif metric.test == "spread":
            sa, sb = float(_iqr(va)), float(_iqr(vb))
            p = brown_forsythe(va, vb)
            floor = 0.0
            if min(len(va), len(vb)) < MIN_RUNS:  # a spread of 2-4 values: not tested
                p = math.nan
            est, lo, hi = bootstrap_ci([va, vb], lambda x, y: _iqr(x, axis=1) - _iqr(y, axis=1), seed=seed)
        else:
            sa, sb = float(np.median(va)), float(np.median(vb))
            p, floor = mann_whitney(va, vb)["p"], mann_whitney_floor(len(va), len(vb))
            est, lo, hi = median_difference_ci(va, vb, seed=seed)
        if untested:
            p = math.nan
        sign = -1 if metric.lower else 1
        better = int(np.sign(round((sa - sb) * sign, 12)))
        out.append({**row, "stat_a": sa, "stat_b": sb, "difference": est, "ci_low": lo, "ci_high": hi, "p": p,
                    "p_floor": floor, "better": better})
    columns = by + ["n_a", "n_b", "stat_a", "stat_b", "difference", "ci_low", "ci_high", "p", "p_floor", "better"]
    table = pd.DataFrame(out, columns=columns)
    table["p_holm"], table["significant"] = holm(table["p"].to_numpy(), ALPHA) if len(table) else ([], [])
    table["significant"] = table["significant"].astype(bool)
    return table


# -- verdict rules -----------------------------------------------------------------------------
def _cells(table: pd.DataFrame, rows: pd.DataFrame | None = None) -> str:
    rows = table if rows is None else rows
    if "hidden" in rows:
        return ", ".join(f"{int(h)}/{int(n)}" for h, n in zip(rows["hidden"], rows["n_train"]))
    return ", ".join(str(int(n)) for n in rows["n_train"])


def _where(table: pd.DataFrame) -> str:
    return "(hidden/n) cells" if "hidden" in table else "sizes"


def _power(tested: pd.DataFrame) -> tuple[bool, str]:
    """Whether any Holm-corrected test of these could be significant, and a sentence if not."""
    m = len(tested)
    floor = float(tested["p_floor"].min()) if m else math.nan
    if m and not (floor <= ALPHA / m):
        runs = sorted(set(tested["n_a"]) | set(tested["n_b"]))
        per = f"{runs[0]}" if len(runs) == 1 else f"{runs[0]}–{runs[-1]}"
        text = ("too few runs to find anything: " + (f"with {per} runs per condition the smallest p the test can "
                                                        f"give is {floor:.2g}, above Holm's first threshold "
                                                        f"{ALPHA:g}/{m} = {ALPHA / m:.2g}" if floor == floor
                                                        else f"{per} runs per condition"))
        return False, text
    return True, ""


def direction_verdict(table: pd.DataFrame, kind: str, a: str, b: str, what: str, named: tuple[int, ...] = ()) \
        -> tuple[str, str]:
    """The verdict and finding of a comparison table for a claim of kind ``always`` (``a``
    significantly better at every cell), ``mostly`` (at least half, never significantly
    worse), ``never worse`` (never significantly worse), ``sometimes`` (significantly better
    at some cell) or ``not better`` (never significantly better).

    Example:
        >>> t = pd.DataFrame({"n_train": [8, 20], "p": [.001, .002], "p_floor": [1e-6, 1e-6], "better": [1, 1],
        ...                   "significant": [True, True], "n_a": [20, 20], "n_b": [20, 20]})
        >>> direction_verdict(t, "always", "a", "b", "lower error")[0]
        'agrees'
    """
    tested = table[table["p"].notna()]
    m, where = len(tested), _where(table)
    if not m:
        return INCONCLUSIVE, f"no {where[:-1] if where.endswith('s') else where} could be tested"
    sig = tested["significant"].astype(bool)
    better, worse = tested[sig & (tested["better"] > 0)], tested[sig & (tested["better"] < 0)]
    favour = int((tested["better"] > 0).sum())
    powered, weak = _power(tested)
    of = f"{len(better)} of {m} {where}"
    sizes_b = f" ({_cells(table, better)})" if len(better) else ""
    worse_text = f"{a} significantly worse than {b} at {len(worse)} of {m} {where} ({_cells(table, worse)})"
    if kind == "not better":
        if len(better):
            return DISAGREES, f"{a} significantly {what} than {b} at {of}{sizes_b}"
        if not powered:
            return INCONCLUSIVE, weak
        return AGREES, f"{a} never significantly {what} than {b} ({m} {where})"
    if len(worse) and kind != "sometimes":
        return DISAGREES, worse_text + (f"; significantly {what} at {of}{sizes_b}" if len(better) else "")
    if kind == "never worse":
        if not powered:
            return INCONCLUSIVE, weak
        extra = f"; significantly {what} at {of}{sizes_b}" if len(better) else ""
        return AGREES, f"{a} never significantly worse than {b} ({m} {where}){extra}"
    if kind == "sometimes":
        if len(better):
            named_text = ""
            if named:
                hit = sorted(set(named) & set(int(n) for n in better["n_train"]))
                ran = sorted(set(named) & set(int(n) for n in tested["n_train"]))
                named_text = (f"; the paper's sizes {', '.join(map(str, named))}: "
                              + (f"significant at {', '.join(map(str, hit))}" if hit else
                                 "not among them" if ran else "not run here"))
            return AGREES, f"{a} significantly {what} than {b} at {of}{sizes_b}{named_text}"
        if not powered:
            return INCONCLUSIVE, weak
        if favour:
            return WEAKER, f"{a} {what} by the median at {favour} of {m} {where}, but significantly at none"
        return DISAGREES, f"{a} never significantly {what} than {b}, nor by the median ({m} {where})"
    need = m if kind == "always" else math.ceil(m / 2)
    if len(better) >= need:
        return AGREES, f"{a} significantly {what} than {b} at {of}{sizes_b}"
    if len(better):
        return WEAKER, (f"{a} significantly {what} than {b} at {of}{sizes_b} only (the paper: "
                        f"{'every' if kind == 'always' else 'most'} {where[:-1] if where.endswith('s') else where})")
    if not powered:
        return INCONCLUSIVE, weak
    if favour >= m / 2:
        return WEAKER, f"{a} {what} by the median at {favour} of {m} {where}, but significantly at none"
    return DISAGREES, f"{a} significantly {what} at none of {m} {where} (and by the median at {favour})"


def value_verdict(estimate: float, low: float, high: float, paper: float, null: float,
                  tolerance: float = TOLERANCE) -> tuple[str, str]:
    """Judge polarnet's number against the paper's.

    * **agrees**: the paper's number is in the interval ``[low, high]`` or within
      ``tolerance`` × |paper − null| of the estimate, and the interval excludes ``null``;
    * **inconclusive**: as agrees, but the interval also holds ``null`` (no effect);
    * **same direction, different size**: the estimate is on the paper's side of ``null``
      but the paper's number is neither in the interval nor within the tolerance;
    * **disagrees**: the interval lies on the other side of ``null``, or the estimate is
      there (or at it) and the paper's number is not in the interval.

    Example:
        >>> value_verdict(0.60, 0.50, 0.70, paper=0.58, null=1.0)[0]
        'agrees'
        >>> value_verdict(0.85, 0.80, 0.90, paper=0.58, null=1.0)
        ('same direction, different size', "polarnet's effect is 0.36× the paper's")
        >>> value_verdict(1.20, 1.05, 1.30, paper=0.58, null=1.0)[0]
        'disagrees'
    """
    if any(v != v for v in (estimate, low, high)):
        return INCONCLUSIVE, "no interval could be computed"
    side = 1 if paper > null else -1
    excludes = (low > null) if side > 0 else (high < null)
    opposite = (high < null) if side > 0 else (low > null)
    close = low <= paper <= high or abs(estimate - paper) <= tolerance * abs(paper - null)
    if opposite:
        return DISAGREES, "the effect goes the other way"
    if close:
        if excludes:
            return AGREES, "the paper's number is within the interval or the tolerance"
        return INCONCLUSIVE, "the interval holds both the paper's number and no effect"
    if (estimate - null) * side > 0:
        size = (estimate - null) / (paper - null)
        tail = "" if excludes else ", and not significantly different from no effect"
        return WEAKER, f"polarnet's effect is {size:.2g}× the paper's{tail}"
    return DISAGREES, "no effect in the paper's direction, and the paper's number is outside the interval"


# -- formatting -------------------------------------------------------------------------------
def fmt(value: float, unit: str, signed: bool = False) -> str:
    """A number for the scorecard: ``pp`` (percentage points of a fraction), ``%`` (a fraction
    as a percentage), ``epochs`` or ``x`` (a plain number).

    Example:
        >>> fmt(-0.061, "pp", signed=True), fmt(0.58, "%"), fmt(3.0, "epochs", signed=True)
        ('−6.1 pp', '58%', '+3 epochs')
    """
    if value != value:
        return "—"
    if unit == "pp":
        text = f"{value * 100:+.1f} pp" if signed else f"{value * 100:.1f} pp"
    elif unit == "%":
        text = f"{value * 100:.0f}%" if abs(value * 100 - round(value * 100)) < 0.05 else f"{value * 100:.1f}%"
    elif unit == "epochs":
        text = f"{value:+.3g} epochs" if signed else f"{value:.3g} epochs"
    else:
        text = f"{value:+.3g}" if signed else f"{value:.3g}"
    return text.replace("-", "−")


def interval(low: float, high: float, unit: str) -> str:
    """``95% CI −8.0 to −4.2 pp``.

    Example:
        >>> interval(-0.08, -0.042, "pp")
        '95% CI −8.0 to −4.2 pp'
    """
    a, b = fmt(low, unit), fmt(high, unit)
    suffix = {"pp": " pp", "epochs": " epochs"}.get(unit, "")
    if suffix and a.endswith(suffix):
        a = a[: -len(suffix)]
    return f"95% CI {a} to {b}"


# -- comparison claims ----------------------------------------------------------------------------
_KIND_RULES = {
    "always": "agrees: significantly {what} at every {cell}; same direction: at some; disagrees: significantly "
              "worse at any, or at none with enough runs",
    "mostly": "agrees: significantly {what} at at least half the {cells} and never significantly worse",
    "never worse": "agrees: significantly worse at no {cell} (with enough runs that it could have been)",
    "sometimes": "agrees: significantly {what} at at least one {cell}",
    "not better": "agrees: significantly {what} at no {cell} (with enough runs that it could have been)",
}
_TESTS = {"mwu": "two-tailed Mann–Whitney U", "fisher": "two-tailed Fisher exact test",
          "spread": "two-tailed Brown–Forsythe test"}


def comparison_claim(a: str, b: str, metric: Metric, kind: str, what: str, *,
                     sizes: Callable[[int], bool] | None = None, widths: Callable[[int], bool] | None = None,
                     focus: tuple[int, ...] = ()) -> Measure:
    """A measure comparing conditions ``a`` and ``b`` of the claim's first need per training
    size (and hidden size), judged by :func:`direction_verdict`.

    Args:
        a, b: the claim's conditions (preset names; found by definition).
        metric: what is compared.
        kind: ``always``, ``mostly``, ``never worse``, ``sometimes`` or ``not better``.
        what: the claimed direction in words (``"lower error"``, ``"fewer epochs"``).
        sizes, widths: keep only the training (hidden) sizes they accept.
        focus: the sizes whose difference the number shows (the paper's named sizes); default
            the smallest tested size.
    """
    def measure(data: Mapping[str, StudyData], claim: PaperClaim) -> Result:
        need = claim.needs[0]
        study = data[need.study]
        table = compare(study, need, a, b, metric, sizes=sizes, widths=widths)
        threshold = f"{study.threshold:.0%}"
        cell = "cell" if "hidden" in table else "size"
        test = (f"{_TESTS[metric.test]} of the {metric.label.format(t=threshold)} per training size"
                + (" and hidden size" if cell == "cell" else "")
                + f", Holm–Bonferroni across the {len(table[table['p'].notna()])} {cell}s, α = {ALPHA:g}; "
                + _KIND_RULES[kind].format(what=what, cell=cell, cells=cell + "s"))
        verdict, finding = direction_verdict(table, kind, a, b, what, named=focus)
        if len(table) and metric.column.startswith("epochs_to") and table["p"].isna().all():
            finding = f"no run of {a} or {b} reached {threshold}"
        elif len(table) and metric.test == "spread" and table["p"].isna().all():
            finding = f"too few runs for a spread test (fewer than {MIN_RUNS} of {a} or {b} per size)"
        if not len(table):
            return Result(INCONCLUSIVE, "—", f"no {cell} with finished runs of both {a} and {b}", test, table=table)
        tested = table[table["p"].notna()]
        pick = tested if len(tested) else table
        wanted = [n for n in focus if n in set(pick["n_train"])]
        row = pick[pick["n_train"] == (wanted[0] if wanted else pick["n_train"].min())].iloc[0]
        unit = "pp" if metric.unit == "pp" or metric.test == "fisher" else metric.unit
        label = {"mwu": "Δ median", "fisher": "Δ share reaching", "spread": "Δ IQR"}[metric.test]
        at = f"n = {int(row.n_train)}" + (f", hidden {int(row.hidden)}" if "hidden" in table else "")
        significant = int((tested["significant"] & (tested["better"] > 0)).sum())
        number = (f"{label} ({a} − {b}) at {at}: {fmt(row.difference, unit, signed=True)} "
                  f"({interval(row.ci_low, row.ci_high, unit)}); significantly {what} at {significant} of "
                  f"{len(tested)} {cell}s")
        return Result(verdict, number, finding, test, float(row.difference), (float(row.ci_low), float(row.ci_high)),
                      table=table)

    return measure


def difference_claim(a: str, b: str, metric: Metric, n: int, paper: float) -> Measure:
    """A measure of ``statistic(a) − statistic(b)`` at training size ``n`` (medians; for
    :data:`SUCCESS`, shares) against the paper's number, by :func:`value_verdict`."""
    def measure(data: Mapping[str, StudyData], claim: PaperClaim) -> Result:
        need = claim.needs[0]
        study = data[need.study]
        table = compare(study, need, a, b, metric, sizes=lambda size: size == n)
        test = (f"median {metric.label} of {a} minus {b} at n = {n}; percentile bootstrap 95% CI "
                f"({_resamples()} resamples, seeded; at least {MIN_RUNS} runs each); agrees: the paper's number in the "
                f"CI or within ±{TOLERANCE:.0%} of its effect, and the CI excludes 0")
        if not len(table):
            return Result(INCONCLUSIVE, "—", f"no finished runs of both {a} and {b} at n = {n}", test)
        row = table.iloc[0]
        verdict, why = value_verdict(row.difference, row.ci_low, row.ci_high, paper, 0.0)
        if min(row.n_a, row.n_b) < MIN_RUNS:
            verdict, why = INCONCLUSIVE, f"too few runs for an interval ({row.n_a} and {row.n_b}; {MIN_RUNS} needed)"
        number = f"{fmt(row.difference, 'pp', signed=True)} ({interval(row.ci_low, row.ci_high, 'pp')})"
        finding = (f"median error {fmt(row.stat_a, 'pp')} ({a}, {row.n_a} runs) vs {fmt(row.stat_b, 'pp')} ({b}, "
                   f"{row.n_b} runs) at n = {n}; the paper: {fmt(paper, 'pp', signed=True)}; {why}")
        return Result(verdict, number, finding, test, float(row.difference), (float(row.ci_low), float(row.ci_high)),
                      table=table)

    return measure


def ratio_claim(a: str, b: str, n: int, paper: float) -> Measure:
    """A measure of median epochs to the threshold of ``a`` over ``b`` at size ``n``, among the
    runs that reached it (the papers' measure), against the paper's ratio; needs at least half
    the runs of each to have reached it (:data:`~.metrics.MIN_SUCCESS_FOR_MEDIAN`)."""
    def measure(data: Mapping[str, StudyData], claim: PaperClaim) -> Result:
        need = claim.needs[0]
        study = data[need.study]
        rows = study.select(need, a, b)
        rows = rows[rows["n_train"] == n]
        threshold = f"{study.threshold:.0%}"
        test = (f"ratio of the median epochs to {threshold} of {a} and {b} at n = {n}, among the runs that reached it; "
                f"percentile bootstrap 95% CI ({_resamples()} resamples, seeded; at least {MIN_RUNS} runs each); "
                f"agrees: the paper's number in the CI or within ±{TOLERANCE:.0%} of its effect (1 − ratio), and the "
                "CI excludes 1")
        ea = rows.loc[rows["role"] == a, "epochs_to_threshold"]
        eb = rows.loc[rows["role"] == b, "epochs_to_threshold"]
        if not len(ea) or not len(eb):
            return Result(INCONCLUSIVE, "—", f"no finished runs of both {a} and {b} at n = {n}", test)
        sa, sb = ea.notna().mean(), eb.notna().mean()
        if min(sa, sb) < MIN_SUCCESS_FOR_MEDIAN:
            return Result(INCONCLUSIVE, "—", f"too few runs reached {threshold} at n = {n} for a median ({a}: "
                          f"{int(ea.notna().sum())} of {len(ea)}, {b}: {int(eb.notna().sum())} of {len(eb)})", test)
        est, lo, hi = median_ratio_ci(ea.dropna(), eb.dropna())
        verdict, why = value_verdict(est, lo, hi, paper, 1.0)
        if min(ea.notna().sum(), eb.notna().sum()) < MIN_RUNS:
            verdict, why = INCONCLUSIVE, (f"too few runs reached it for an interval ({int(ea.notna().sum())} and "
                                          f"{int(eb.notna().sum())}; {MIN_RUNS} needed)")
        number = f"{fmt(est, '%')} ({interval(lo, hi, '%')})"
        finding = (f"median {ea.median():.3g} vs {eb.median():.3g} epochs to {threshold} ({a}: {int(ea.notna().sum())} "
                   f"of {len(ea)} runs reached it, {b}: {int(eb.notna().sum())} of {len(eb)}); the paper: "
                   f"{fmt(paper, '%')}; {why}")
        return Result(verdict, number, finding, test, est, (lo, hi))

    return measure


def _resamples() -> int:
    from .stats import BOOTSTRAP_RESAMPLES

    return BOOTSTRAP_RESAMPLES


def sign_change_series(epochs: pd.DataFrame, runs: list[str]) -> pd.DataFrame:
    """Per run and epoch, the mean over layers of the fraction of weights whose sign changed
    since the previous epoch (the store's ``sign_changes``)."""
    rows = epochs[epochs["run"].isin(runs)]
    values = []
    for text in rows["sign_changes"]:
        try:
            layers = json.loads(text) if isinstance(text, str) else {}
        except ValueError:
            layers = {}
        values.append(float(np.mean(list(layers.values()))) if layers else math.nan)
    return rows[["run", "epoch"]].assign(changed=values)

