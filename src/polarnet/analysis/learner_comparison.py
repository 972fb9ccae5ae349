"""Learners compared: each at its best learning rate, against Freeze-SGD, size by size.

A study with ``learners`` (and ``lr_sweep``) runs every frozen condition once per learner and
learning rate (:func:`polarnet.experiments.config.expand_learners`). Here its conditions are
grouped back into *arms*: conditions whose stored settings differ only in ``lr`` (and name
and description) are one arm, e.g. Frozen RAND trained with ``eg``. What a condition is —
frozen or fluid, its polarity, learner and learning rate — is read from the settings stored
with the study (``define_condition``), or from the registered conditions for built-in names;
never from the condition's name, which is used for labels only.

1. **Best learning rate per arm, chosen on validation** (:func:`best_rates`): the rate with
   the highest mean, over every size and trial, of the run's mean validation accuracy over
   its epochs (``auc`` of :func:`~polarnet.analysis.metrics.run_metrics`). The mean over
   epochs rewards reaching a high accuracy early, which is what the comparison below is
   about, and still separates rates where every run ends at 100%. A run that failed
   (diverged) counts 0. The choice and the comparison read the same validation set (a study
   has no second held-out set), so an arm with several rates is favoured a little by the
   choice itself; an arm with one rate (``freeze_sgd`` at the study's ``lr``, usually) is not.
2. **Comparison at the best rate** (:func:`compare_learners`): per size, epochs to the
   threshold, two-sided Mann–Whitney U of each frozen arm against the ``freeze_sgd`` arm of
   the same base condition (same hidden size), Holm-corrected across the sizes of that pair.
   A run that never reached the threshold counts as the slowest (infinitely many epochs), so
   a learner that rarely gets there is not made fast by its few lucky runs. "Faster" at a size
   means the rank-biserial r < 0: a run of the learner needed fewer epochs than one of
   ``freeze_sgd`` more often than the reverse.
3. **A finding computed from the data** (:func:`finding_text`), stated plainly either way,
   and **efficiency curves** per learner (:func:`learner_figure`).
"""

from __future__ import annotations

import json
import re
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from statsmodels.stats.multitest import multipletests

from .markdown import markdown_table
from .metrics import MIN_SUCCESS_FOR_MEDIAN, median_epochs_text
from .stats import mann_whitney

__all__ = ["REFERENCE", "FLUID", "has_learners", "condition_settings", "label_arms", "best_rates",
           "compare_learners", "finding_text", "learner_figure", "learner_sections", "LearnerComparison"]

#: the learner every other is compared with (Wang et al.'s Freeze-SGD)
REFERENCE = "freeze_sgd"
#: what the tables call the learner of a fluid condition (it keeps no template)
FLUID = "fluid"
#: settings that do not make a condition another arm (``reset`` is the run's own column)
_NOT_ARM = ("name", "description", "lr", "learner", "reset")


def has_learners(settings: dict) -> bool:
    """Whether a study compares learners: it has a ``learners`` or ``lr_sweep`` setting, or its
    frozen conditions use more than one learner.

    Example:
        >>> has_learners({"learners": ["freeze_sgd", "eg"]}), has_learners({"conditions": ["frozen_rand"]})
        (True, False)
    """
    if settings.get("learners") or settings.get("lr_sweep"):
        return True
    learners = {c.get("learner") or REFERENCE for c in (settings.get("define_condition") or {}).values()
                if isinstance(c, dict) and c.get("frozen")}
    return len(learners) > 1


def condition_settings(name: str, settings: dict, runs: pd.DataFrame | None = None) -> dict | None:
    """A condition's stored settings: the study's ``define_condition`` entry, else the full
    condition stored with its runs, else the registered condition of that name; ``None`` if
    none of them knows it.

    Example:
        >>> condition_settings("x", {"define_condition": {"x": {"frozen": True, "learner": "eg", "lr": 0.1}}})["learner"]
        'eg'
        >>> condition_settings("fluid_rand", {})["frozen"]
        False
    """
    defined = (settings.get("define_condition") or {}).get(name)
    if isinstance(defined, dict):
        return {"name": name, **defined}
    if runs is not None and len(runs) and {"condition", "settings"} <= set(runs.columns):
        for text in runs.loc[runs["condition"] == name, "settings"].head(1):
            try:
                stored = json.loads(text).get("condition")
            except (TypeError, ValueError, AttributeError):
                stored = None
            if isinstance(stored, dict) and "frozen" in stored:
                return stored
    from ..experiments.conditions import CONDITIONS

    return CONDITIONS.get(name).to_dict() if name in CONDITIONS.names() else None


def label_arms(per_run: pd.DataFrame, settings: dict, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """``per_run`` with each run's ``base``, ``learner``, ``lr``, ``frozen`` and ``arm``.

    ``base`` names the conditions that share every setting but learner, lr and reset (their
    longest common dotted name prefix, e.g. ``frozen_rand`` for ``frozen_rand.eg.lr0.1``; a
    label, not how they were grouped). ``learner`` is ``fluid`` for a fluid condition. ``arm``
    is ``base / learner`` for frozen ones (with the reset rule where one learner of a base ran
    several) and ``base`` for fluid ones. Conditions nobody knows are left out.

    Example:
        >>> s = {"lr": 0.03, "define_condition": {
        ...     "a.eg.lr0.1": {"polarity": "random", "frozen": True, "learner": "eg", "lr": 0.1},
        ...     "a.freeze_sgd": {"polarity": "random", "frozen": True, "learner": "freeze_sgd", "lr": None}}}
        >>> pr = pd.DataFrame({"condition": ["a.eg.lr0.1", "a.freeze_sgd"], "reset": ["none", "posRand"]})
        >>> label_arms(pr, s)[["arm", "learner", "lr"]].values.tolist()
        [['a / eg', 'eg', 0.1], ['a / freeze_sgd', 'freeze_sgd', 0.03]]
    """
    known = {}
    for name in pd.unique(per_run["condition"]):
        found = condition_settings(str(name), settings, runs)
        if found is not None:
            known[name] = found
    bases: dict[str, list[str]] = {}
    for name, cond in known.items():
        key = json.dumps({k: v for k, v in cond.items() if k not in _NOT_ARM}, sort_keys=True, default=list)
        bases.setdefault(key, []).append(str(name))
    base_of = {name: _common_prefix(names) or _describe(known[names[0]]) for names in bases.values() for name in names}
    out = per_run[per_run["condition"].isin(list(known))].copy()
    frozen = out["condition"].map(lambda c: bool(known[c].get("frozen")))
    out["frozen"] = frozen
    out["base"] = out["condition"].map(base_of)
    out["learner"] = [known[c].get("learner") or REFERENCE if f else FLUID for c, f in zip(out["condition"], frozen)]
    study_lr = settings.get("lr", 0.03)
    out["lr"] = [float(known[c]["lr"]) if known[c].get("lr") is not None else float(study_lr) for c in out["condition"]]
    several = out.groupby(["base", "learner"])["reset"].transform("nunique") > 1
    out["arm"] = [b if learner == FLUID else f"{b} / {learner}" + (f" (reset {r})" if many else "")
                  for b, learner, r, many in zip(out["base"], out["learner"], out["reset"], several)]
    return out


def _common_prefix(names: list[str]) -> str:
    """The dotted name parts all ``names`` start with (``""`` if none), a rate's own dots aside
    (``fluid_rand.lr0.03`` and ``fluid_rand.lr0.1`` share ``fluid_rand``, not ``fluid_rand.lr0``).

    Example:
        >>> _common_prefix(["fluid_rand.lr0.03", "fluid_rand.lr0.1"])
        'fluid_rand'
    """
    parts = [re.sub(r"\.lr[0-9][0-9.e+-]*$", "", n).split(".") for n in sorted(names)]
    common = []
    for pieces in zip(*parts):
        if len(set(pieces)) > 1:
            break
        common.append(pieces[0])
    return ".".join(common)


def _describe(condition: dict) -> str:
    """A base condition named by its settings, when its conditions' names share nothing."""
    polarity = condition.get("polarity", "none")
    rule = f" {condition['rule']}" if polarity == "rule" and condition.get("rule") else ""
    return f"{'frozen' if condition.get('frozen') else 'fluid'}, polarity {polarity}{rule}"


def best_rates(arms: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The best learning rate of every arm (and hidden size), chosen on validation.

    Score of a rate: mean over its runs (every size and trial) of the run's mean validation
    accuracy over epochs (``auc``); failed runs of the rate (from ``runs``, the store's runs
    table) count 0. Ties go to the higher mean final accuracy, then the smaller rate.

    Args:
        arms: :func:`label_arms` output (needs ``auc`` and ``final_accuracy``).
        runs: the store's runs table, for the failed runs; optional.

    Returns:
        One row per arm and hidden size: ``hidden``, ``arm``, ``base``, ``learner``,
        ``frozen``, ``rates`` (all tried), ``best_lr``, ``score``, ``scores`` (``{lr: score}``),
        ``failed`` (failed runs of the arm).

    Example:
        >>> a = pd.DataFrame({"arm": ["x"] * 4, "base": ["b"] * 4, "learner": ["eg"] * 4, "frozen": [True] * 4,
        ...                   "hidden": [4] * 4, "condition": ["c1", "c1", "c2", "c2"], "lr": [0.1, 0.1, 0.01, 0.01],
        ...                   "auc": [0.6, 0.7, 0.9, 0.8], "final_accuracy": [1.0] * 4})
        >>> row = best_rates(a).iloc[0]
        >>> float(row.best_lr), round(float(row.score), 3), row.rates
        (0.01, 0.85, (0.01, 0.1))
    """
    failed = _failed_counts(arms, runs)
    rows = []
    for (hidden, arm), group in arms.groupby(["hidden", "arm"], sort=False):
        scores = {}
        for lr, at in group.groupby("lr"):
            lost = sum(failed.get((c, hidden), 0) for c in at["condition"].unique())
            scores[float(lr)] = (float(at["auc"].sum()) / (len(at) + lost), float(at["final_accuracy"].mean()))
        best = max(scores, key=lambda lr: (scores[lr][0], scores[lr][1], -lr))
        first = group.iloc[0]
        rows.append({"hidden": hidden, "arm": arm, "base": first["base"], "learner": first["learner"],
                     "frozen": bool(first["frozen"]), "rates": tuple(sorted(scores)), "best_lr": float(best),
                     "score": float(scores[best][0]), "scores": {lr: s for lr, (s, _) in sorted(scores.items())},
                     "failed": sum(failed.get((c, hidden), 0) for c in group["condition"].unique())})
    table = pd.DataFrame(rows, columns=["hidden", "arm", "base", "learner", "frozen", "rates", "best_lr", "score",
                                        "scores", "failed"])
    return table.iloc[sorted(range(len(table)), key=lambda i: _order(table.iloc[i]))].reset_index(drop=True)


def _order(row) -> tuple:
    """Tables list, per hidden size, the frozen bases (freeze_sgd first), then the fluid ones."""
    return (row["hidden"], row["learner"] == FLUID, row["base"], row["learner"] != REFERENCE, row["arm"])


def _failed_counts(arms: pd.DataFrame, runs: pd.DataFrame | None) -> dict[tuple[str, int], int]:
    if runs is None or not len(runs) or "status" not in runs:
        return {}
    failed = runs[(runs["status"] == "failed") & runs["condition"].isin(set(arms["condition"]))]
    return {(c, h): int(n) for (c, h), n in failed.groupby(["condition", "hidden"]).size().items()}


@dataclass
class LearnerComparison:
    """What :func:`compare_learners` found.

    Attributes:
        rates: :func:`best_rates`'s table.
        sizes: per hidden size, arm (at its best rate) and training-set size: ``runs``,
            ``success_rate``, ``median_epochs`` (among runs that reached the threshold); for
            tested arms also ``reference`` (the arm compared with), ``median_reference``,
            ``U``, ``p``, ``p_holm``, ``significant``, ``r`` (negative: fewer epochs).
        threshold: the accuracy threshold.
        alpha: the family-wise error rate of each Holm family (one arm's sizes).
        at_best: the runs of every arm at its best rate (:func:`label_arms` rows).
    """

    rates: pd.DataFrame
    sizes: pd.DataFrame
    threshold: float
    alpha: float
    at_best: pd.DataFrame

    @property
    def tests(self) -> pd.DataFrame:
        """The rows of :attr:`sizes` that compare an arm with ``freeze_sgd``."""
        return self.sizes[self.sizes["reference"].notna()]


def compare_learners(per_run: pd.DataFrame, settings: dict, runs: pd.DataFrame | None = None,
                     threshold: float | None = None, alpha: float = 0.05) -> LearnerComparison:
    """Every arm at its best rate, per size; frozen arms tested against ``freeze_sgd``.

    Args:
        per_run: :func:`~polarnet.analysis.metrics.run_metrics` output (``epochs_to_threshold``
            at ``threshold``, ``auc``, ``final_accuracy``).
        settings: the study's stored settings (``Store.study()["settings"]``).
        runs: the store's runs table (failed runs, and conditions stored with their runs).
        threshold: the accuracy behind ``epochs_to_threshold``; default the study's first.
        alpha: family-wise error rate of each Holm correction (one arm's sizes).

    The reference of a frozen arm is the ``freeze_sgd`` arm of the same base condition and
    hidden size; where that ran several reset rules, the one first in the study's ``resets``.

    Example:
        >>> s = {"define_condition": {"c.eg": {"frozen": True, "learner": "eg"},
        ...                           "c.freeze_sgd": {"frozen": True, "learner": "freeze_sgd"}}}
        >>> pr = pd.DataFrame({"condition": ["c.eg"] * 6 + ["c.freeze_sgd"] * 6, "n_train": [8] * 12,
        ...                    "hidden": [4] * 12, "reset": ["none"] * 6 + ["zero"] * 6, "trial": list(range(6)) * 2,
        ...                    "auc": [0.9] * 12, "final_accuracy": [1.0] * 12,
        ...                    "epochs_to_threshold": [1.0] * 6 + [5.0] * 6})
        >>> row = compare_learners(pr, s, threshold=0.8).tests.iloc[0]
        >>> row.arm, row.reference, bool(row.significant), float(row.r)
        ('c / eg', 'c / freeze_sgd', True, -1.0)
    """
    if threshold is None:
        threshold = float((settings.get("thresholds") or [0.8])[0])
    arms = label_arms(per_run, settings, runs)
    rates = best_rates(arms, runs)
    best = {(r.hidden, r.arm): r.best_lr for r in rates.itertuples()}
    at_best = arms[[best.get((h, a)) == lr for h, a, lr in zip(arms["hidden"], arms["arm"], arms["lr"])]]
    order = [str(r) for r in settings.get("resets") or []]
    rows = []
    for hidden, arm in rates[["hidden", "arm"]].itertuples(index=False):
        group = at_best[(at_best["hidden"] == hidden) & (at_best["arm"] == arm)]
        first = group.iloc[0]
        reference = _reference(at_best, hidden, first, order)
        ref_runs = at_best[(at_best["hidden"] == hidden) & (at_best["arm"] == reference)] if reference else None
        family = []
        for n, sample in group.groupby("n_train"):
            epochs = sample["epochs_to_threshold"].astype(float)
            row = {"hidden": hidden, "arm": arm, "base": first["base"], "learner": first["learner"],
                   "lr": first["lr"], "n_train": n, "runs": len(sample), "success_rate": float(epochs.notna().mean()),
                   "median_epochs": float(epochs.median()), "reference": None, "median_reference": math.nan,
                   "U": math.nan, "p": math.nan, "r": math.nan, "p_holm": math.nan, "significant": False}
            if ref_runs is not None:
                theirs = ref_runs.loc[ref_runs["n_train"] == n, "epochs_to_threshold"].astype(float)
                row.update(reference=reference, median_reference=float(theirs.median()))
                if len(theirs) and (epochs.notna().any() or theirs.notna().any()):
                    test = mann_whitney(epochs.fillna(math.inf), theirs.fillna(math.inf))
                    row.update(U=test["U"], p=test["p"], r=test["r"])
                family.append(len(rows))
            rows.append(row)
        tested = [i for i in family if rows[i]["p"] == rows[i]["p"]]
        if tested:
            reject, corrected, _, _ = multipletests([rows[i]["p"] for i in tested], alpha=alpha, method="holm")
            for i, rej, p in zip(tested, reject, corrected):
                rows[i].update(p_holm=float(p), significant=bool(rej))
    sizes = pd.DataFrame(rows, columns=["hidden", "arm", "base", "learner", "lr", "n_train", "runs", "success_rate",
                                        "median_epochs", "reference", "median_reference", "U", "p", "r", "p_holm",
                                        "significant"])
    return LearnerComparison(rates, sizes, threshold, alpha, at_best)


def _reference(at_best: pd.DataFrame, hidden, arm_row, order: list[str]) -> str | None:
    """The ``freeze_sgd`` arm a frozen arm is compared with (``None``: none, or it is one)."""
    if not arm_row["frozen"] or arm_row["learner"] == REFERENCE:
        return None
    mine = at_best[(at_best["hidden"] == hidden) & (at_best["base"] == arm_row["base"])
                   & (at_best["learner"] == REFERENCE)]
    if mine.empty:
        return None
    resets = sorted(set(mine["reset"]), key=lambda r: (order.index(r) if r in order else len(order), r))
    return str(mine.loc[mine["reset"] == resets[0], "arm"].iloc[0])


def finding_text(comparison: LearnerComparison) -> str:
    """One paragraph, computed from :attr:`LearnerComparison.tests`: per compared arm, at how
    many sizes it reached the threshold in fewer and in more epochs than ``freeze_sgd``, and at
    how many of them significantly (Holm); then what holds overall, either way.

    Example:
        >>> sizes = pd.DataFrame({"hidden": [4] * 2, "arm": ["c / eg"] * 2, "base": ["c"] * 2, "learner": ["eg"] * 2,
        ...     "lr": [0.1] * 2, "n_train": [8, 20], "reference": ["c / freeze_sgd"] * 2, "r": [-1.0, 0.5],
        ...     "p": [0.01, 0.3], "p_holm": [0.02, 0.3], "significant": [True, False]})
        >>> c = LearnerComparison(pd.DataFrame({"hidden": [4]}), sizes, 0.8, 0.05, pd.DataFrame())
        >>> print(finding_text(c))  # doctest: +NORMALIZE_WHITESPACE
        At n = 8–20, eg (c, lr 0.1) reached 80% in fewer epochs than freeze_sgd at 1 of 2 sizes (significant at 1:
        n = 8), in more at 1 (significant at 0). Significantly faster than freeze_sgd: eg (c) at 1 size. No learner was
        significantly slower than freeze_sgd at any size.
    """
    tests = comparison.tests
    goal = f"{comparison.threshold:.0%}"
    if tests.empty:
        return (f"No learner could be compared with {REFERENCE}: the study has no {REFERENCE} arm beside another "
                "learner on the same condition, or no finished runs of both.")
    many_hidden = comparison.rates["hidden"].nunique() > 1
    sentences, faster_sig, slower_sig = [], [], []
    for (hidden, arm), rows in tests.groupby(["hidden", "arm"], sort=False):
        first = rows.iloc[0]
        who = f"{first['learner']} ({first['base']}{f', hidden {hidden}' if many_hidden else ''}"
        testable = rows[rows["p"].notna()]
        faster, slower = testable[testable["r"] < 0], testable[testable["r"] > 0]
        ties, untested = len(testable) - len(faster) - len(slower), len(rows) - len(testable)
        sig_f, sig_s = faster[faster["significant"]], slower[slower["significant"]]
        ns = sorted(rows["n_train"])
        span = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"
        if testable.empty:
            sentences.append(f"At {span}, neither {who}, lr {first['lr']:g}) nor {REFERENCE} reached {goal} in any "
                             "run, so nothing was tested.")
            continue
        text = (f"At {span}, {who}, lr {first['lr']:g}) reached {goal} in fewer epochs than {REFERENCE} at "
                f"{len(faster)} of {len(rows)} size{'s' if len(rows) != 1 else ''} {_significant(sig_f)}, in more at "
                f"{len(slower)} {_significant(sig_s)}")
        if ties:
            text += f", as fast at {ties}"
        if untested:
            text += f"; at {untested} neither reached {goal}, so nothing was tested there"
        sentences.append(text + ".")
        if len(sig_f):
            faster_sig.append(f"{who}) at {len(sig_f)} size{'s' if len(sig_f) != 1 else ''}")
        if len(sig_s):
            slower_sig.append(f"{who}) at {len(sig_s)} size{'s' if len(sig_s) != 1 else ''}")
    if tests["p"].isna().all():
        sentences.append(f"So this study cannot say whether any learner reaches {goal} faster or slower than "
                         f"{REFERENCE}.")
        return " ".join(sentences)
    sentences.append(f"Significantly faster than {REFERENCE}: {'; '.join(faster_sig)}." if faster_sig else
                     f"No learner reached {goal} significantly faster than {REFERENCE} at any size.")
    sentences.append(f"Significantly slower than {REFERENCE}: {'; '.join(slower_sig)}." if slower_sig else
                     f"No learner was significantly slower than {REFERENCE} at any size.")
    return " ".join(sentences)


def _significant(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "(significant at 0)"
    return f"(significant at {len(rows)}: n = {', '.join(str(int(n)) for n in sorted(rows['n_train']))})"


# -- the figure ------------------------------------------------------------------------------------

# freeze_sgd has "o" and a solid line, the fluid reference "x" and a dotted one: none of these repeats them
_MARKERS = "sD^vP*Xph<>"
_LINES = ("--", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (3, 1, 1, 1)))


def _style(learner: str) -> dict:
    """One colour, line style and marker per learner, the same in every panel and study
    (registry order); ``freeze_sgd`` black and solid, the fluid reference grey and dotted."""
    if learner == REFERENCE:
        return {"color": "black", "linestyle": "-", "marker": "o"}
    if learner == FLUID:
        return {"color": "0.55", "linestyle": ":", "marker": "x"}
    from ..learners import LEARNERS

    names = [n for n in LEARNERS.names() if n != REFERENCE]
    i = names.index(learner) if learner in names else len(names) + sum(map(ord, learner)) % 7  # stable across runs
    colour = [c for c in range(10) if c != 7][i % 9]  # C7 is grey, the fluid reference's colour
    return {"color": f"C{colour}", "linestyle": _LINES[i % len(_LINES)], "marker": _MARKERS[i % len(_MARKERS)]}


def learner_figure(comparison: LearnerComparison, stem: str | os.PathLike[str], study: str = "") -> list[Path]:
    """Median epochs to the threshold against the training-set size, one curve per learner at
    its best rate, one panel per frozen base condition (and hidden size); ``freeze_sgd`` and
    the fluid conditions (grey, dotted) are in every panel. A median is drawn filled where at
    least half the trials reached the threshold, hollow where fewer did, and not at all where
    none did. Size labels that would overlap are thinned.

    Example:
        >>> import tempfile
        >>> sizes = pd.DataFrame({"hidden": [4] * 2, "arm": ["c / eg", "f"], "base": ["c", "f"],
        ...                       "learner": ["eg", "fluid"], "lr": [0.1, 0.03], "n_train": [8, 8], "runs": [2, 2],
        ...                       "success_rate": [1.0, 0.5], "median_epochs": [3.0, 5.0]})
        >>> c = LearnerComparison(pd.DataFrame({"hidden": [4]}), sizes, 0.8, 0.05, pd.DataFrame())
        >>> [p.suffix for p in learner_figure(c, tempfile.mkdtemp() + "/fig")]
        ['.png', '.svg']
    """
    import matplotlib.pyplot as plt

    from .figures import _no_data, _size_axis, save, trials_label

    sizes = comparison.sizes
    frozen = sizes[sizes["learner"] != FLUID]
    fluid = sizes[sizes["learner"] == FLUID]
    many_hidden = sizes["hidden"].nunique() > 1
    panels = list(frozen.groupby(["hidden", "base"], sort=False)) or [((None, "no frozen condition"), frozen)]
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows), squeeze=False)
    grid = sorted(sizes["n_train"].unique())
    handles = {}
    for ax, ((hidden, base), panel) in zip(axes.flat, panels):
        shown = pd.concat([panel, fluid[fluid["hidden"] == hidden]]) if hidden is not None else panel
        for arm, curve in shown.groupby("arm", sort=False):
            curve = curve.set_index("n_train").reindex(grid)
            learner = curve["learner"].dropna().iloc[0]
            style = _style(str(learner))
            enough = (curve["success_rate"] >= MIN_SUCCESS_FOR_MEDIAN).to_numpy()
            label = (f"{learner} (lr {curve['lr'].dropna().iloc[0]:g})" if learner != FLUID
                     else f"{arm} (fluid, lr {curve['lr'].dropna().iloc[0]:g})")
            line, = ax.plot(grid, curve["median_epochs"].where(enough), label=label, markersize=5, **style)
            few = curve["median_epochs"].where(~enough)
            if few.notna().any():
                ax.plot(grid, few, linestyle="none", marker=style["marker"], markerfacecolor="none",
                        markeredgecolor=style["color"], markersize=6)
            handles.setdefault(label, line)
        _size_axis(ax, grid)
        ax.set_ylabel(f"epochs to {comparison.threshold:.0%} (median)")
        ax.set_title(f"{base}{f', hidden {hidden}' if many_hidden and hidden is not None else ''}", fontsize=9)
        ax.grid(alpha=0.3)
        if shown["median_epochs"].isna().all():
            _no_data(ax, f"no run reached {comparison.threshold:.0%}")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(4, len(handles)), fontsize=8,
                   bbox_to_anchor=(0.5, -0.02), frameon=False)
    trials = trials_label(sizes["runs"]) if "runs" in sizes and len(sizes) else "no trials"
    fig.suptitle(f"{study}: epochs to {comparison.threshold:.0%} per learner at its best learning rate "
                 f"(hollow: fewer than half the trials got there; {trials})", fontsize=9)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * math.ceil(len(handles) / 4), 1, 0.95))
    for ax in list(axes.flat)[:len(panels)]:
        _thin_ticks(fig, ax)
    return save(fig, stem)


def _thin_ticks(fig, ax) -> None:
    """Hide x tick labels that would overlap the previous shown one (close sizes on a log axis)."""
    renderer = fig.canvas.get_renderer()
    last = None
    for label in sorted(ax.get_xticklabels(), key=lambda t: t.get_position()[0]):
        if not label.get_text() or not label.get_visible():
            continue
        box = label.get_window_extent(renderer)
        if last is not None and box.x0 < last.x1 + 1:
            label.set_visible(False)
            continue
        last = box


# -- the report's section --------------------------------------------------------------------------

def learner_sections(per_run: pd.DataFrame, settings: dict, runs: pd.DataFrame | None, figures_dir: Path,
                     study: str = "") -> list[tuple[str, str, list[Path]]]:
    """The report's "Learners" sections: ``(title, markdown, figures)`` each.

    Example:
        >>> import tempfile
        >>> s = {"learners": ["freeze_sgd", "eg"], "define_condition": {
        ...     "c.eg": {"frozen": True, "learner": "eg"}, "c.freeze_sgd": {"frozen": True, "learner": "freeze_sgd"}}}
        >>> pr = pd.DataFrame({"condition": ["c.eg", "c.freeze_sgd"] * 3, "n_train": [8] * 6, "hidden": [4] * 6,
        ...                    "reset": ["none", "zero"] * 3, "trial": [0, 0, 1, 1, 2, 2], "auc": [0.9] * 6,
        ...                    "final_accuracy": [1.0] * 6, "epochs_to_threshold": [2.0, 3.0] * 3})
        >>> [title for title, _, _ in learner_sections(pr, s, None, Path(tempfile.mkdtemp()))]
        ['Learners: best learning rate', 'Learners: epochs to 80% against freeze_sgd']
    """
    comparison = compare_learners(per_run, settings, runs)
    if comparison.rates.empty:
        return [("Learners", "No finished run of a known condition, so there is nothing to compare.", [])]
    many_hidden = comparison.rates["hidden"].nunique() > 1
    rates = comparison.rates.assign(
        lrs_tried=[", ".join(f"{lr:g}" for lr in r) for r in comparison.rates["rates"]],
        best_lr=[f"{lr:g}" for lr in comparison.rates["best_lr"]],
        scores=[", ".join(f"{lr:g}: {s:.3f}" for lr, s in scores.items()) for scores in comparison.rates["scores"]])
    rates = rates[(["hidden"] if many_hidden else []) + ["arm", "learner", "lrs_tried", "best_lr", "score", "scores",
                                                        "failed"]]
    goal = f"{comparison.threshold:.0%}"
    choice = ("Each arm (conditions that differ only in learning rate) at the rate with the highest mean validation "
              "accuracy over epochs, averaged over every size and trial (a failed run counts 0; ties: higher final "
              "accuracy, then the smaller rate). The rate is chosen on the same validation set the comparison below "
              "reads, so arms with several rates are favoured slightly by the choice itself.\n\n"
              + markdown_table(rates, 3))
    sizes = comparison.sizes
    shown = sizes.assign(
        lr=[f"{lr:g}" for lr in sizes["lr"]], success_rate=[f"{s:.0%}" for s in sizes["success_rate"]],
        median_epochs=[median_epochs_text(m, s) for m, s in zip(sizes["median_epochs"], sizes["success_rate"])],
        median_reference=[f"{m:.1f}" if m == m else "—" for m in sizes["median_reference"]],
        reference=sizes["reference"].fillna("—"),
        significant=["yes" if s else ("no" if p == p else "—") for s, p in zip(sizes["significant"], sizes["p"])])
    columns = (["hidden"] if many_hidden else []) + ["arm", "lr", "n_train", "runs", "success_rate", "median_epochs",
                                                     "reference", "median_reference", "r", "p", "p_holm", "significant"]
    paths = learner_figure(comparison, figures_dir / "learners", study=study)
    text = (finding_text(comparison) + "\n\n"
            f"Epochs to {goal} per size at each arm's best rate. Each frozen arm is tested against the {REFERENCE} arm of "
            f"its condition: two-sided Mann–Whitney U, runs that never reached {goal} counted as the slowest, "
            f"Holm–Bonferroni across that arm's sizes (α = {comparison.alpha:g}); r is the rank-biserial correlation "
            f"(negative: fewer epochs than {REFERENCE}). Medians count the runs that reached {goal} (* where fewer than "
            "half did); fluid conditions are shown for reference, untested.\n\n"
            + markdown_table(shown[columns], 4))
    return [("Learners: best learning rate", choice, []), (f"Learners: epochs to {goal} against {REFERENCE}", text, paths)]
