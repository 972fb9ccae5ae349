"""The papers' claims as a registry, each measured on polarnet's studies.

A :class:`PaperClaim` is one claim of Wang et al. (ICML 2023) or Igoe et al. (ICLR 2024 Tiny
Papers): where it is in the paper, the claim in a few words, the paper's number where it gives
one, what it needs (:class:`Need`: a study key, its conditions and grid points), the kind of
test, and a ``measure`` that computes polarnet's number from the loaded study
(:class:`StudyData`) and returns a :class:`Result` with one of the verdicts:

* ``agrees``;
* ``same direction, different size`` (:data:`WEAKER`; the finding says how far);
* ``disagrees``;
* ``inconclusive``: the study ran but cannot decide (too few runs for the test to find
  anything, no run reached the threshold, or an interval that holds both the paper's number
  and no effect);
* ``not run``: the data are missing (the scorecard gives the reason).

The registered claims are in :mod:`.paper_claims`; adding one is one
``CLAIMS.register(PaperClaim(...))`` plus its test. Conditions are found by what they *are*
(their stored definition: polarity, frozen, magnitudes, …), not by their names; the accuracy
threshold, chance level and ``learned_accuracy`` are the study's stored settings.

How numbers are judged (:func:`value_verdict`): a paper's number **agrees** when it lies
inside polarnet's 95% bootstrap interval, or polarnet's estimate is within ±:data:`TOLERANCE`
(25%) of the paper's effect, its distance from no effect (a difference of 0, a ratio of 1) —
and the interval excludes no effect. Claims about directions ("always", "never worse",
"sometimes") use two-tailed Mann–Whitney U tests per training size (Fisher's exact test for
success rates, Brown–Forsythe for spread), Holm–Bonferroni across the sizes, α = 0.05.

:func:`check_claims` keeps the per-study report's interface (``Verdict``): it applies the
comparison claims whose conditions a study has, once per claim family.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..registry import Registry
from .metrics import MIN_SUCCESS_FOR_MEDIAN, chance_level, run_metrics
from .stats import (bootstrap_ci, brown_forsythe, fisher_exact, fisher_floor, holm, mann_whitney, mann_whitney_floor,
                    median_difference_ci, median_ratio_ci)

__all__ = ["PaperClaim", "Need", "Result", "StudyData", "Metric", "CLAIMS", "claims", "AGREES", "WEAKER", "DISAGREES",
           "INCONCLUSIVE", "NOT_RUN", "VERDICTS", "ALPHA", "TOLERANCE", "MIN_RUNS", "value_verdict", "compare",
           "Verdict", "check_claims", "ERROR", "EPOCHS", "SUCCESS", "FINAL_ACCURACY", "SPREAD", "comparison_claim"]

AGREES = "agrees"
WEAKER = "same direction, different size"
DISAGREES = "disagrees"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"
#: every verdict, in the order the scorecard counts them
VERDICTS = (AGREES, WEAKER, DISAGREES, INCONCLUSIVE, NOT_RUN)
#: family-wise error rate of every Holm-corrected test
ALPHA = 0.05
#: a number agrees when polarnet's estimate is within this share of the paper's effect (its
#: distance from no effect) of the paper's number, or the paper's number is in the 95% CI
TOLERANCE = 0.25
#: the fewest runs per condition behind a bootstrap interval (or a spread test) that a verdict
#: rests on: a percentile bootstrap of 2 or 3 values is far too narrow to trust
MIN_RUNS = 5


# -- what a claim needs and gives -----------------------------------------------------------
@dataclass(frozen=True)
class Need:
    """What a claim reads from one study.

    Attributes:
        study: the study's key (a preset name: ``"xor5d"``, ``"fmnist-alexnet"``, …).
        conditions: the conditions compared (names as in the preset; found in the study by
            their definition).
        sizes: training-set sizes the claim needs (empty: whatever the study ran).
        hidden: hidden-unit counts it needs (empty: any; XOR only).
        resets: reset rules it reads (empty: the study's first rule for frozen conditions).
    """

    study: str
    conditions: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()
    hidden: tuple[int, ...] = ()
    resets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    """What a claim's measure found.

    Attributes:
        verdict: one of :data:`VERDICTS`.
        number: polarnet's number as text, with its 95% interval where it has one.
        finding: what was measured, in a sentence or two (says how far when the size differs).
        test: the test and the rule that gave the verdict.
        estimate, ci: the number and its interval, where there is one.
        table: per training size (or grid cell): the medians, differences with intervals, p
            values; for the scorecard's details.
    """

    verdict: str
    number: str
    finding: str
    test: str = ""
    estimate: float | None = None
    ci: tuple[float, float] | None = None
    table: pd.DataFrame | None = field(default=None, compare=False, repr=False)


Measure = Callable[[Mapping[str, "StudyData"], "PaperClaim"], Result]


@dataclass(frozen=True)
class PaperClaim:
    """One claim of one paper, with what it needs and how polarnet measures it.

    Attributes:
        name: registry name (``wang_xor_sufficient_faster``).
        paper: ``"Wang"`` or ``"Igoe"``.
        where: figure, table or section (``"Fig. 1C, §2.1"``).
        claim: the claim in a few words.
        number: the paper's number as text (``"58% of Fluid's epochs at n = 60"``); empty when
            the paper gives none.
        value: the paper's number as a value (0.58), where it gives one.
        needs: the studies and conditions it reads; empty for claims computed without a study.
        test: the kind of test (``"value"``, ``"always"``, ``"never worse"``, …).
        measure: ``measure(data, claim) -> Result``, where ``data`` maps study keys to
            :class:`StudyData`.
        family: claims saying the same on other data share it (the per-study report shows one).
        figure: the per-study report figure the claim sits beside (``"efficiency"`` or
            ``"difference"``).
        per_study: whether the per-study report applies it (:func:`check_claims`).
    """

    name: str
    paper: str
    where: str
    claim: str
    number: str
    value: float | None
    needs: tuple[Need, ...]
    test: str
    measure: Measure = field(compare=False, repr=False)
    family: str = ""
    figure: str = "efficiency"
    per_study: bool = False

    @property
    def source(self) -> str:
        """``Wang et al. Fig. 1C, §2.1``."""
        return f"{self.paper} et al. {self.where}"


CLAIMS: Registry[PaperClaim] = Registry("paper claim")


def claims() -> list[PaperClaim]:
    """Every registered claim in the order of registration (the papers' order).

    Example:
        >>> [c.paper for c in claims()][:1]
        ['Wang']
    """
    return list(CLAIMS._items.values())  # registration order, not sorted by name


# -- a study's data ---------------------------------------------------------------------------
_SEMANTIC = ("polarity", "frozen", "magnitudes", "rule", "layers", "swap", "swap_mode", "learner", "proportions")


@lru_cache(maxsize=None)
def _condition_defaults() -> dict:
    from ..experiments.conditions import Condition

    return Condition(name="").to_dict()


@lru_cache(maxsize=None)
def _wanted(study: str, name: str) -> dict | None:
    """The definition a claim means by condition ``name`` of study ``study``: the preset's
    (``define_condition``) or the registered condition's; ``None`` if neither knows it."""
    from ..experiments.conditions import CONDITIONS

    try:
        from ..experiments.config import list_presets, load_study

        if study in list_presets():
            return load_study(study, validate=False).condition(name).to_dict()
    except Exception:  # a preset that does not load, or a name it does not define
        pass
    return CONDITIONS.get(name).to_dict() if name in CONDITIONS.names() else None


def _same(stored: dict, wanted: dict) -> bool:
    for key in _SEMANTIC:
        a, b = stored.get(key), wanted.get(key)
        if key == "proportions" and (isinstance(a, str) or isinstance(b, str)):
            return False  # a file: the names must match (its path differs between machines)
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            if len(a) != len(b) or not np.allclose(np.asarray(a, float), np.asarray(b, float)):
                return False
        elif a != b:
            return False
    return True


class StudyData:
    """One study, loaded: stored settings, runs, epochs, magnitudes and per-run metrics.

    ``threshold`` (the study's first accuracy threshold), ``chance`` and
    ``learned_accuracy`` come from the stored settings. :meth:`condition` finds a condition of
    a claim in the study by its definition.

    Example:
        >>> per_run = pd.DataFrame({"condition": ["fluid_rand"], "n_train": [8], "hidden": [64], "reset": ["none"],
        ...                         "trial": [0], "error_at_convergence": [0.2], "epochs_to_threshold": [3.0]})
        >>> StudyData("xor5d", {"thresholds": [0.7]}, per_run).threshold
        0.7
    """

    def __init__(self, key: str, settings: dict, per_run: pd.DataFrame, *, epochs: pd.DataFrame | None = None,
                 runs: pd.DataFrame | None = None, magnitudes: pd.DataFrame | None = None,
                 folder: Path | None = None, quick: bool = False) -> None:
        self.key, self.settings, self.folder, self.quick = key, dict(settings or {}), folder, quick
        self.per_run = per_run.copy()
        for column, default in (("hidden", 0), ("reset", "none"), ("trial", 0)):
            if column not in self.per_run:
                self.per_run[column] = default
        self.epochs = epochs if epochs is not None else pd.DataFrame()
        self.runs = runs if runs is not None else pd.DataFrame()
        self.magnitudes = magnitudes if magnitudes is not None else pd.DataFrame()
        self._definitions: dict[str, dict | None] = {}

    @classmethod
    def load(cls, folder: str | Path, key: str = "", quick: bool = False) -> StudyData:
        """Read a study folder (read-only).

        Raises:
            StoreError: the folder holds no readable store.
        """
        from ..experiments.store import Store

        with Store.existing(folder) as store:
            facts, runs, epochs, magnitudes = store.study(), store.runs(), store.epochs(), store.magnitudes()
        settings = facts.get("settings", {})
        thresholds = tuple(settings.get("thresholds") or [0.8])
        per_run = run_metrics(epochs, thresholds[0], thresholds=thresholds) if len(epochs) else \
            run_metrics(pd.DataFrame(columns=["run", "condition", "n_train", "hidden", "reset", "trial", "status",
                                              "epoch", "val_loss", "val_acc"]), thresholds[0])
        return cls(key or settings.get("name", Path(folder).name), settings, per_run, epochs=epochs, runs=runs,
                   magnitudes=magnitudes, folder=Path(folder), quick=quick)

    # -- settings --------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return float((self.settings.get("thresholds") or [0.8])[0])

    @property
    def chance(self) -> float:
        return chance_level(self.settings)

    @property
    def learned_accuracy(self) -> float:
        return float(self.settings.get("learned_accuracy", 0.95))

    @property
    def epochs_run(self) -> int:
        """Epochs per run: the stored setting, else the most any run recorded."""
        if self.settings.get("epochs"):
            return int(self.settings["epochs"])
        return int(self.epochs["epoch"].max()) if len(self.epochs) else 0

    # -- conditions ------------------------------------------------------------------------
    def definition(self, name: str) -> dict | None:
        """A condition's stored definition (``define_condition``, else the one stored with its
        runs, else the registered one), with every field."""
        if name not in self._definitions:
            from .learner_comparison import condition_settings

            try:
                found = condition_settings(name, self.settings, self.runs if len(self.runs) else None)
            except Exception:
                found = None
            self._definitions[name] = None if found is None else {**_condition_defaults(), **found}
        return self._definitions[name]

    def condition(self, name: str, study: str | None = None) -> str | None:
        """The study's condition that is what the claim calls ``name`` (of preset ``study``):
        the one of that name if its definition matches, else the only one whose definition
        matches; ``None`` when the study has none.

        Example:
            >>> pr = pd.DataFrame({"condition": ["my_fluid"], "n_train": [8]})
            >>> s = {"define_condition": {"my_fluid": {"polarity": "none", "frozen": False}}}
            >>> StudyData("xor5d", s, pr).condition("fluid_rand")
            'my_fluid'
        """
        present = [str(c) for c in pd.unique(self.per_run["condition"])] if len(self.per_run) else []
        wanted = _wanted(study or self.key, name)
        if wanted is None:
            return name if name in present else None
        matches = [c for c in present if (d := self.definition(c)) is not None and _same(d, wanted)]
        if name in matches or (name in present and self.definition(name) is None):
            return name
        if len(matches) == 1:
            return matches[0]
        plain = [c for c in matches if self.definition(c).get("lr") is None]
        return plain[0] if len(plain) == 1 else None

    def select(self, need: Need, *conditions: str) -> pd.DataFrame:
        """The per-run rows of ``conditions`` (found by :meth:`condition`) at the grid points
        ``need`` asks for: its hidden sizes, its reset rules (else the study's first) for
        frozen runs; fluid runs (reset ``none``) always. Column ``role`` holds the name the
        claim uses."""
        parts = []
        for name in conditions:
            found = self.condition(name, need.study)
            if found is None:
                continue
            rows = self.per_run[self.per_run["condition"] == found]
            if need.hidden:
                rows = rows[rows["hidden"].isin(need.hidden)]
            rules = need.resets or tuple((self.settings.get("resets") or [])[:1])
            frozen = rows["reset"] != "none"
            if rules and frozen.any() and rows.loc[frozen, "reset"].isin(rules).any():
                rows = rows[~frozen | rows["reset"].isin(rules)]
            elif frozen.any():  # no rule named, none stored: the most common one
                rule = rows.loc[frozen, "reset"].mode().iloc[0]
                rows = rows[~frozen | (rows["reset"] == rule)]
            parts.append(rows.assign(role=name))
        if not parts:
            return self.per_run.iloc[0:0].assign(role=pd.Series(dtype=object))
        return pd.concat(parts, ignore_index=True)


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


# -- the per-study report's interface ---------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """A claim, where it comes from, and what one study says about it (the per-study
    report's view of a :class:`PaperClaim`).

    ``agrees`` is ``True`` (agrees), ``False`` (disagrees, or same direction but another
    size) or ``None`` (the study cannot test it; the finding says why).
    """

    claim: str
    source: str
    finding: str
    agrees: bool | None
    figure: str = "efficiency"  # the report figure it sits beside: "efficiency" or "difference"
    outcome: str = ""  # the scorecard's verdict
    where: str = ""  # the grid point it was measured at, where the study has several ("hidden 64, reset posRand")
    hidden: tuple[int, ...] = ()  # the hidden sizes of the runs it read (empty: the study has no such axis)
    resets: tuple[str, ...] = ()  # the frozen runs' reset rules it read

    @property
    def verdict(self) -> str:
        """``this study agrees``, ``… does not fully agree`` or ``… cannot test it``.

        Example:
            >>> Verdict("c", "s", "f", None).verdict
            'this study cannot test it'
        """
        if self.agrees is None:
            return "this study cannot test it"
        return "this study agrees" if self.agrees else "this study does not fully agree"


def check_claims(per_run: pd.DataFrame, threshold: float, settings: dict | None = None) -> list[Verdict]:
    """The registered comparison claims that apply to one study: those whose conditions it
    has, one per claim family, each measured once by the claim's own test at the grid point the
    paper made it for (its :class:`Need`'s hidden sizes and reset rules: Wang et al. Fig. 1 at
    64 hidden units and posRand), never at every width or rule. A claim whose grid point the
    study has no run at is returned unmeasured: outcome :data:`NOT_RUN`, the finding says which
    point is missing.

    Args:
        per_run: :func:`~.metrics.run_metrics` rows of the whole study (without a ``hidden``
            or ``reset`` column: the study has no such axis).
        threshold: the accuracy threshold of its ``epochs_to_threshold``.
        settings: the study's stored settings, if at hand: conditions are then found by their
            definitions, and a claim made on another dataset than the study's is left out.

    Example:
        >>> df = pd.DataFrame({"condition": ["frozen_rand"] * 3 + ["fluid_rand"] * 3, "n_train": [8] * 6,
        ...                    "trial": [0, 1, 2] * 2, "epochs_to_threshold": [3.0] * 6,
        ...                    "error_at_convergence": [0.1, 0.2, 0.15, 0.2, 0.1, 0.15]})
        >>> [(v.claim, v.agrees) for v in check_claims(df, 0.8)][:1]
        [('frozen_rand learns as fast as fluid_rand: never significantly more epochs to the threshold', None)]
    """
    from dataclasses import replace

    from .grid import missing_point, point_label

    settings = {**(settings or {}), "thresholds": [threshold]}
    data = StudyData("", settings, per_run)
    dataset = (settings or {}).get("dataset")
    out, seen = [], set()
    for claim in claims():
        if not claim.per_study or (claim.family or claim.name) in seen:
            continue
        need = claim.needs[0]
        if dataset and _preset_dataset(need.study) not in (None, dataset):
            continue
        if any(data.condition(c, need.study) is None for c in need.conditions):
            continue
        seen.add(claim.family or claim.name)
        if "hidden" not in per_run and need.hidden:  # no width axis: whatever the study ran
            need = replace(need, hidden=())
            claim = replace(claim, needs=(need, *claim.needs[1:]))
        missing = missing_point(per_run, need.hidden, need.resets)
        if missing:
            out.append(Verdict(_sentence(claim, data), claim.source, f"made at {missing}, where this study has no run",
                               None, claim.figure, NOT_RUN))
            continue
        read = data.select(need, *need.conditions)
        result = claim.measure({need.study: data}, claim)
        agrees = {AGREES: True, DISAGREES: False, WEAKER: False}.get(result.verdict)
        out.append(Verdict(_sentence(claim, data), claim.source, result.finding, agrees, claim.figure, result.verdict,
                           point_label(read, per_run),
                           tuple(int(h) for h in sorted(read["hidden"].unique())) if "hidden" in per_run else (),
                           tuple(sorted(set(read["reset"]) - {"none"})) if "reset" in per_run else ()))
    return out


def _sentence(claim: PaperClaim, data: StudyData) -> str:
    """The claim in the study's own condition names."""
    need = claim.needs[0]
    text = claim.claim
    for name in sorted(need.conditions, key=lambda c: len(_NAMES.get(c, "")), reverse=True):
        found = data.condition(name, need.study) or name
        text = text.replace(_NAMES.get(name, "\0"), found)
    return text


#: how the claims' texts name the preset conditions (replaced by the study's own names in the report)
_NAMES = {"frozen_sufficient": "Frozen Sufficient", "frozen_rand": "Frozen RAND", "fluid_rand": "Fluid RAND",
          "frozen_in_polarity": "Frozen IN-Polarity", "fluid_in_polarity": "Fluid IN-Polarity",
          "fluid_in_weight": "Fluid IN-Weight", "frozen_in_weight": "Frozen IN-Weight", "freeze_spin": "Freeze SPIN",
          "fluid_spin": "Fluid SPIN", "fluid_in": "Fluid IN"}


@lru_cache(maxsize=None)
def _preset_dataset(study: str) -> str | None:
    try:
        from ..experiments.config import list_presets, load_study

        return load_study(study, validate=False).dataset if study in list_presets() else None
    except Exception:
        return None


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


from . import paper_claims  # noqa: E402,F401  (registers the claims)
