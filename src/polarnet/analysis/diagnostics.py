"""Run diagnostics: which runs of a study cannot be trusted, why, and what to do about it.

:func:`diagnose` reads the store's ``runs`` and ``epochs`` tables and the study's settings
and returns one :class:`Flag` per kind of problem found; :func:`format_flags` writes them as
plain text (``polarnet run`` prints it; the report has it as its "Diagnostics" section).

The checks (each a registered function ``check(runs, epochs, settings) -> list[Flag]``,
so adding one is one function):

* ``failed`` — runs that failed (a non-finite loss, or any other recorded reason);
* ``interrupted`` — runs still marked ``running`` (the sweep was stopped, or is going on);
* ``val_at_chance`` — validation accuracy ends at chance while training accuracy rose
  (BatchNorm running statistics that have not converged, a broken validation pipeline);
* ``identical_conditions`` — runs of different conditions (or reset rules) of one trial and
  grid point with exactly the same curves (a template that was not applied);
* ``excess_resets`` — Frozen runs whose Freeze-SGD resets per step stay above
  :data:`MAX_RESET_FRACTION` of their constrained weights in every epoch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ..registry import Registry
from .grid import has_hidden
from .metrics import chance_level

__all__ = ["Flag", "CHECKS", "diagnose", "format_flags", "chance_margin", "suspect_settings", "paper_value",
           "CHANCE_STANDARD_ERRORS", "TRAIN_RISE", "MAX_RESET_FRACTION", "ABNORMAL_FACTOR", "PAPER_VALUES"]

CHANCE_STANDARD_ERRORS = 3.0
"""A final validation accuracy is "at chance" when it lies within this many standard errors of
chance, the standard error being that of a binomial proportion at chance over the validation
set, ``sqrt(c (1 − c) / val_size)``. A model that predicts no better than chance lands inside
this band 99.7% of the time; with 1000 validation samples the band is ±4.7 points at c = 1/2
and ±2.8 points at c = 1/10. Healthy XOR-5D runs, even at n = 8, end near 60%: outside it."""

TRAIN_RISE = 0.2
"""Training accuracy "rose" when it ended more than this above chance, or gained more than
this from the first epoch to the last, *and* by more than :data:`CHANCE_STANDARD_ERRORS`
standard errors over the training set (:func:`chance_margin` with ``n_train``). 20 points is
far beyond the noise of an epoch's mean training accuracy on a real training set; the second
condition keeps tiny training sets, where 6 of 8 right is luck, from counting as learning."""

MAX_RESET_FRACTION = 0.2
"""A Frozen run is flagged when, in *every* epoch, Freeze-SGD reset more than this share of its
constrained weights per step (``resets / (steps per epoch × constrained weights)``). Then the
template, not the gradient, decides most updates, and the run measures the reset rule more than
learning: usually the learning rate is too high for Freeze-SGD. Measured on XOR-5D with the
paper's settings (lr 0.03, 64 hidden units), healthy Frozen runs start near 3% and reach at
most about 24% in late epochs at n = 8; with lr 0.3 they stay at 25–50% from the first epoch
on. "Every epoch" keeps the late-epoch peaks of healthy runs from being flagged."""

ABNORMAL_FACTOR = 1000.0
"""A numeric training setting "looks abnormal" when it is more than this factor above or below
the papers' value (:data:`PAPER_VALUES`), or outside the range of the study's ``dtype``.
Three orders of magnitude: the papers' own learning-rate search spans two (0.001–0.1, Igoe
et al.), so nothing a paper tried is called abnormal, while the values that break training
(``eps = 1e200``, ``lr = 1e30``) are far beyond it."""

PAPER_VALUES = {"lr": {"xor": 0.03, "": 0.001}, "eps": 1e-3, "adam_eps": 1e-8}
"""The papers' values of the settings whose size can make a loss non-finite (PAPER_NOTES.md):
Adam's learning rate (Wang et al., XOR: 0.03; Igoe et al., images: 0.001), Freeze-SGD's
reset magnitude ``eps`` (0.001) and Adam's ``adam_eps`` (1e-8, PyTorch's default)."""

#: the order flags are reported in: what invalidates results first
_ORDER = ("failed", "interrupted", "val_at_chance", "identical_conditions", "excess_resets")
_GRID = ["condition", "n_train", "hidden", "reset"]
_SHOWN = 6  # grid points listed per flag before "… and k more"


@dataclass(frozen=True)
class Flag:
    """A problem found in a study's runs.

    Attributes:
        kind: which check found it: ``failed``, ``interrupted``, ``val_at_chance``,
            ``identical_conditions``, ``excess_resets`` (or a registered extra check).
        runs: the keys of the affected runs (``len(flag.runs)`` is how many).
        where: the affected grid points, as text, e.g.
            ``"frozen_rand, n=20, hidden 64, reset posRand: 2 of 3 trials"``.
        reason: what was seen, with the numbers.
        hint: what probably causes it and what to do.
    """

    kind: str
    runs: tuple[str, ...]
    where: tuple[str, ...]
    reason: str
    hint: str

    def __str__(self) -> str:
        shown = list(self.where[:_SHOWN]) + ([f"… and {len(self.where) - _SHOWN} more"]
                                             if len(self.where) > _SHOWN else [])
        lines = [f"! {self.kind} ({len(self.runs)} run{'s' if len(self.runs) != 1 else ''}): {self.reason}"]
        lines += [f"    - {w}" for w in shown]
        lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


Check = Callable[[pd.DataFrame, pd.DataFrame, dict], "list[Flag]"]
CHECKS: Registry[Check] = Registry("diagnostic check")


def chance_margin(chance: float, val_size: int) -> float:
    """Half-width of the "at chance" band: :data:`CHANCE_STANDARD_ERRORS` binomial standard
    errors of an accuracy at ``chance`` over ``val_size`` validation samples.

    Example:
        >>> round(chance_margin(0.5, 1000), 4), round(chance_margin(0.1, 1000), 4)
        (0.0474, 0.0285)
    """
    return CHANCE_STANDARD_ERRORS * math.sqrt(chance * (1 - chance) / max(1, val_size))


def paper_value(key: str, settings: dict) -> float:
    """The papers' value of ``lr``, ``eps`` or ``adam_eps`` for a study (the learning rate
    depends on the dataset).

    Example:
        >>> paper_value("lr", {"dataset": "xor"}), paper_value("lr", {"dataset": "cifar10"}), paper_value("eps", {})
        (0.03, 0.001, 0.001)
    """
    value = PAPER_VALUES[key]
    if isinstance(value, dict):
        return value.get(settings.get("dataset", "xor"), value[""])
    return value


def suspect_settings(settings: dict, lrs: list[float] | tuple[float, ...] = ()) -> list[tuple[str, float, str]]:
    """The settings among ``lr``, ``eps`` and ``adam_eps`` that look abnormal: more than
    :data:`ABNORMAL_FACTOR` times above or below the papers' value, or outside what the study's
    ``dtype`` can hold.

    Args:
        settings: the study's settings (``lr``, ``eps``, ``adam_eps``, ``dtype``, ``dataset``).
        lrs: the learning rates actually used (conditions may override the study's); default:
            the study's ``lr``.

    Returns:
        ``(key, value, why)`` per abnormal value, e.g. ``("eps", 1e200, "… float32 …")``.

    Example:
        >>> suspect_settings({"lr": 0.03, "eps": 1e200, "adam_eps": 1e-8})
        [('eps', 1e+200, "203 orders of magnitude above the papers' 0.001, and more than float32 holds (3.4e+38)")]
        >>> suspect_settings({"lr": 0.3, "eps": 0.001})
        []
    """
    dtype = str(settings.get("dtype") or "float32")
    largest, smallest = _RANGES.get(dtype, _RANGES["float32"])
    found = []
    values = [("lr", lr) for lr in (lrs or [settings.get("lr")])] + [(k, settings.get(k)) for k in ("eps", "adam_eps")]
    for key, value in values:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value or value <= 0:
            continue
        paper = paper_value(key, settings)
        orders = math.log10(value) - math.log10(paper)  # no overflow for 1e300 / 1e-8 or 5e-324
        if abs(orders) <= math.log10(ABNORMAL_FACTOR) and smallest <= value <= largest:
            continue
        why = (f"{abs(orders):.0f} orders of magnitude {'above' if orders > 0 else 'below'} the papers' {paper:g}"
               if abs(orders) >= 1 else f"near the papers' {paper:g}")
        if value > largest:
            why += f", and more than {dtype} holds ({largest:.2g})"
        elif value < smallest:
            why += f", and below {dtype}'s smallest normal number ({smallest:.2g})"
        found.append((key, value, why))
    return found


#: (largest, smallest normal) per dtype a study can train in
_RANGES = {"float32": (3.4028234663852886e38, 1.1754943508222875e-38),
           "float64": (1.7976931348623157e308, 2.2250738585072014e-308),
           "bfloat16": (3.3895313892515355e38, 1.1754943508222875e-38),
           "float16": (65504.0, 6.103515625e-05)}


def diagnose(runs: pd.DataFrame, epochs: pd.DataFrame, settings: dict, num_classes: int | None = None) -> list[Flag]:
    """Every problem the registered checks find in a study's runs, most serious first.

    Args:
        runs: the store's runs table (``Store.runs()``); uses ``key``, the grid point,
            ``frozen``, ``status``, ``reason``, ``settings`` and, where present, ``constrained``.
        epochs: the store's epochs table (``Store.epochs()``).
        settings: the study's settings (``Store.study()["settings"]``).
        num_classes: the study's stored number of classes (``Store.study()["num_classes"]``;
            ``None`` for a store written before it was stored): chance is ``1 / num_classes``.

    Returns:
        One :class:`Flag` per kind of problem found; empty when none.

    Example:
        >>> runs = pd.DataFrame({"key": ["a", "b"], "condition": ["c", "c"], "n_train": [8, 8], "hidden": [4, 4],
        ...                      "reset": ["zero"] * 2, "trial": [0, 1], "frozen": [1, 1],
        ...                      "status": ["done", "failed"], "reason": [None, "non-finite loss at epoch 1"],
        ...                      "settings": ["{}", "{}"]})
        >>> [(f.kind, f.runs) for f in diagnose(runs, pd.DataFrame(), {"lr": 1e30})]
        [('failed', ('b',))]
    """
    if num_classes:  # the checks take the settings alone: the stored count rides with them
        settings = {**settings, "num_classes": num_classes}
    flags = [flag for name in CHECKS.names() for flag in CHECKS.get(name)(runs, epochs, settings)]
    rank = {kind: i for i, kind in enumerate(_ORDER)}
    return sorted(flags, key=lambda f: rank.get(f.kind, len(rank)))


def format_flags(flags: list[Flag]) -> str:
    """Flags as plain text: a headline, then each flag with its grid points and hint.

    Example:
        >>> print(format_flags([]))
        Diagnostics: no problems found.
        >>> print(format_flags([Flag("failed", ("a",), ("c, n=8, hidden 4, reset zero: 1 of 2 trials",),
        ...                         "non-finite loss", "lower lr")]))
        Diagnostics: 1 problem found.
        ! failed (1 run): non-finite loss
            - c, n=8, hidden 4, reset zero: 1 of 2 trials
          hint: lower lr
    """
    if not flags:
        return "Diagnostics: no problems found."
    head = f"Diagnostics: {len(flags)} problem{'s' if len(flags) != 1 else ''} found."
    return "\n".join([head, *map(str, flags)])


# -- helpers ------------------------------------------------------------------------------
def _where(affected: pd.DataFrame, runs: pd.DataFrame, settings: dict | None = None) -> tuple[str, ...]:
    """``"condition, n=…, hidden …, reset …: k of m trials"`` per affected grid point; ``hidden``
    only where the study has that axis (:func:`.grid.has_hidden`: not for an image model)."""
    grid = _GRID if has_hidden(settings, runs["hidden"] if "hidden" in runs else ()) else \
        [c for c in _GRID if c != "hidden"]
    totals = runs.groupby(grid).size() if len(runs) else pd.Series(dtype=int)
    out = []
    for point, rows in affected.groupby(grid, sort=True):
        total = int(totals.get(point, len(rows)))
        values = dict(zip(grid, point))
        hidden = f", hidden {values['hidden']}" if "hidden" in values else ""
        out.append(f"{values['condition']}, n={values['n_train']}{hidden}, reset {values['reset']}: {len(rows)} of "
                   f"{total} trial{'s' if total != 1 else ''}")
    return tuple(out)


def _run_settings(row) -> dict:
    text = row.get("settings") if hasattr(row, "get") else None
    try:
        return json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}


def _lr(row, settings: dict) -> float | None:
    """A run's learning rate: its condition's own, else the study's."""
    condition = _run_settings(row).get("condition", {})
    lr = condition.get("lr") if isinstance(condition, dict) else None
    return lr if lr is not None else settings.get("lr")


def _steps_per_epoch(n_train: int, settings: dict) -> int:
    return max(1, math.ceil(int(n_train) / int(settings.get("batch_size") or 32)))


def _done_epochs(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    if epochs.empty or "run" not in epochs:
        return epochs.iloc[0:0]
    done = set(runs.loc[runs["status"] == "done", "key"]) if len(runs) else set()
    return epochs[epochs["run"].isin(done)]


def _pct(values) -> str:
    """``"44%"`` or ``"40–48%"``: the range of some accuracies."""
    values = [v for v in values if v == v]
    if not values:
        return "—"
    low, high = min(values) * 100, max(values) * 100
    return f"{low:.0f}%" if round(low) == round(high) else f"{low:.0f}–{high:.0f}%"


# -- checks --------------------------------------------------------------------------------
@CHECKS.register("failed")
def _failed(runs: pd.DataFrame, epochs: pd.DataFrame, settings: dict) -> list[Flag]:
    """Failed runs, one flag for non-finite losses and one per other reason."""
    if runs.empty:
        return []
    failed = runs[runs["status"] == "failed"]
    flags = []
    reasons = failed["reason"].fillna("no reason recorded")
    nonfinite = reasons.str.startswith("non-finite")
    if nonfinite.any():
        rows = failed[nonfinite]
        lrs = sorted({lr for lr in (_lr(r, settings) for _, r in rows.iterrows()) if lr is not None})
        lr_text = ", ".join(f"{lr:g}" for lr in lrs) or "?"
        first = reasons[nonfinite].str.extract(r"epoch (\d+)")[0].dropna().astype(int)
        when = f" (first at epoch {first.min()})" if len(first) else ""
        flags.append(Flag(
            "failed", tuple(rows["key"]), _where(rows, runs, settings),
            f"the loss became NaN or infinite{when}; these runs are left out of every metric and figure",
            _nonfinite_hint(settings, lrs, lr_text)))
    for reason, rows in failed[~nonfinite].groupby(reasons[~nonfinite]):
        flags.append(Flag(
            "failed", tuple(rows["key"]), _where(rows, runs, settings), f"the run failed: {reason}",
            "the reason names the cause; after fixing it, `polarnet run … --retry-failed` trains the failed runs "
            "again (failed runs are otherwise skipped when a study is resumed)."))
    return flags


def _nonfinite_hint(settings: dict, lrs: list[float], lr_text: str) -> str:
    """What to do about non-finite losses: the abnormal settings by name (the reset magnitude
    ``eps``, Adam's ``adam_eps``, the learning rate), else the learning rate or float64."""
    suspects = suspect_settings(settings, lrs)
    retry = "After a fix, `polarnet run … --retry-failed` trains the failed runs again."
    others = [(key, value, why) for key, value, why in suspects if key != "lr"]
    high_lr = any(key == "lr" and value > paper_value("lr", settings) for key, value, _ in suspects)
    low_lr = [value for key, value, _ in suspects if key == "lr" and value < paper_value("lr", settings)]
    if not others and not low_lr:  # the learning rate, or nothing abnormal: the usual cause
        return (f"lower the learning rate (lr = {lr_text} here; try 10× smaller) or train in float64 "
                f"(--set dtype=float64); NaN or inf in the inputs gives the same symptom. {retry}")
    what = {"eps": "Freeze-SGD's reset magnitude", "adam_eps": "Adam's epsilon", "lr": "the learning rate"}
    named = "; ".join(f"{key} = {value:g}, {what[key]}: {why}" for key, value, why in suspects)
    fixes = " ".join(f"--set {key}={paper_value(key, settings):g}" for key in dict.fromkeys(k for k, _, _ in suspects))
    text = (f"{'these settings look' if len(suspects) > 1 else 'this setting looks'} abnormal and "
            f"{'are' if len(suspects) > 1 else 'is'} the likely cause: {named}. Set "
            f"{'them' if len(suspects) > 1 else 'it'} near the papers' values ({fixes})")
    if high_lr:
        text += f", or at least lower the learning rate (lr = {lr_text} here; try 10× smaller)"
    return f"{text}; NaN or inf in the inputs gives the same symptom. {retry}"


@CHECKS.register("interrupted")
def _interrupted(runs: pd.DataFrame, epochs: pd.DataFrame, settings: dict) -> list[Flag]:
    """Runs still marked ``running``: an interrupted (or unfinished) sweep."""
    if runs.empty:
        return []
    rows = runs[runs["status"] == "running"]
    if rows.empty:
        return []
    return [Flag("interrupted", tuple(rows["key"]), _where(rows, runs, settings),
                 "these runs never finished (the sweep was interrupted, or is still going); they are left out",
                 "run the same `polarnet run` command again: it resumes, training only the runs not yet done.")]


@CHECKS.register("val_at_chance")
def _val_at_chance(runs: pd.DataFrame, epochs: pd.DataFrame, settings: dict) -> list[Flag]:
    """Validation accuracy ends at chance while training accuracy rose."""
    done = _done_epochs(runs, epochs)
    if done.empty:
        return []
    chance = chance_level(settings, settings.get("num_classes"))
    margin = chance_margin(chance, int(settings.get("val_size") or 1000))
    hits, vals, trains, steps = [], [], [], []
    for key, group in done.groupby("run", sort=False):
        group = group.sort_values("epoch")
        val = float(group["val_acc"].iloc[-1]) if group["val_acc"].notna().iloc[-1] else math.nan
        train = group["train_acc"].astype(float)
        if val != val or train.isna().all():
            continue
        last, first = float(train.dropna().iloc[-1]), float(train.dropna().iloc[0])
        rise = max(TRAIN_RISE, chance_margin(chance, int(group["n_train"].iloc[0])))
        rose = last > chance + rise or last - first > rise
        if abs(val - chance) <= margin and rose:
            hits.append(key)
            vals.append(val)
            trains.append(last)
            steps.append(len(group) * _steps_per_epoch(group["n_train"].iloc[0], settings))
    if not hits:
        return []
    rows = runs[runs["key"].isin(hits)]
    total_steps = f"{min(steps)}" if min(steps) == max(steps) else f"{min(steps)}–{max(steps)}"
    total_steps += " training step" + ("s" if max(steps) != 1 else "")
    return [Flag(
        "val_at_chance", tuple(rows["key"]), _where(rows, runs, settings),
        f"validation accuracy ended at chance ({_pct(vals)}; chance is {chance:.0%} ± {margin * 100:.1f} points, "
        f"{CHANCE_STANDARD_ERRORS:g} standard errors over {int(settings.get('val_size') or 1000)} validation "
        f"samples) while training accuracy rose to {_pct(trains)}",
        f"a model with BatchNorm evaluates with running statistics, which after {total_steps} may not "
        "have converged (momentum 0.1 needs a few dozen steps, 0.01 a few hundred): train longer, raise the "
        "momentum, or recompute the statistics before evaluating (torch.optim.swa_utils.update_bn). Otherwise "
        "check that validation inputs and labels go through the same pipeline as training (normalisation, "
        "label order). With very few training samples, memorising them gives the same picture.")]


@CHECKS.register("identical_conditions")
def _identical_conditions(runs: pd.DataFrame, epochs: pd.DataFrame, settings: dict) -> list[Flag]:
    """Runs of one trial and grid point whose conditions (or reset rules) differ but whose
    per-epoch validation accuracy and loss and training loss are exactly equal."""
    done = _done_epochs(runs, epochs)
    if done.empty:
        return []
    info = runs.set_index("key")
    curves, moved = {}, {}
    for key, group in done.groupby("run", sort=False):
        group = group.sort_values("epoch")
        curves[key] = tuple(None if v != v else float(v) for column in ("val_acc", "val_loss", "train_loss")
                            if column in group for v in group[column].astype(float))
        changes = sum(sum(json.loads(s).values()) if isinstance(s, str) else 0
                      for s in group.get("sign_changes", pd.Series(dtype=object)))
        moved[key] = bool(group["resets"].fillna(0).sum() > 0 or changes > 0) if "resets" in group else changes > 0

    def identity(key: str) -> str:
        condition = _run_settings(info.loc[key]).get("condition", {})
        condition = {k: v for k, v in condition.items() if k != "name"} if isinstance(condition, dict) else {}
        return json.dumps([condition or info.loc[key, "condition"], info.loc[key, "reset"]], sort_keys=True,
                          default=list)

    hits, pairs = [], set()
    points = info.loc[list(curves)].reset_index().groupby(["trial", "n_train", "hidden"])
    for _, point in points:
        same: dict[tuple, list[str]] = {}
        for key in point["key"]:
            same.setdefault(curves[key], []).append(key)
        for keys in same.values():
            if len(keys) < 2 or len({identity(k) for k in keys}) < 2:
                continue  # alone, or conditions with identical settings: equal curves are expected
            if not any(moved[k] for k in keys):
                continue  # no sign ever changed and nothing was reset: the template could not matter
            hits += keys
            pairs.add(" = ".join(sorted(f"{info.loc[k, 'condition']} ({info.loc[k, 'reset']})" for k in keys)))
    if not hits:
        return []
    rows = runs[runs["key"].isin(hits)]
    return [Flag(
        "identical_conditions", tuple(rows["key"]), _where(rows, runs, settings),
        f"conditions that should differ have exactly the same curves, epoch for epoch, in one trial and grid point: "
        f"{'; '.join(sorted(pairs))}",
        "the polarity template was probably not applied or not enforced: check that the condition's template "
        "covers the model's layers (a custom model's parameter names must match), that the frozen condition has a "
        "reset rule, and that runs were not given one another's results.")]


@CHECKS.register("excess_resets")
def _excess_resets(runs: pd.DataFrame, epochs: pd.DataFrame, settings: dict) -> list[Flag]:
    """Frozen runs whose resets per step stay above :data:`MAX_RESET_FRACTION` of their
    constrained weights (needs the runs table's ``constrained`` column; skipped without it)."""
    if "constrained" not in runs or runs["constrained"].isna().all():
        return []
    done = _done_epochs(runs, epochs)
    if done.empty or "resets" not in done:
        return []
    frozen = runs[(runs["status"] == "done") & (runs["frozen"].astype(bool)) & runs["constrained"].notna()
                  & (runs["constrained"].fillna(0) > 0)].set_index("key")
    hits, fractions = [], []
    for key, group in done[done["run"].isin(frozen.index)].groupby("run", sort=False):
        steps = _steps_per_epoch(group["n_train"].iloc[0], settings)
        share = group["resets"].astype(float) / (steps * float(frozen.loc[key, "constrained"]))
        if share.notna().all() and (share > MAX_RESET_FRACTION).all():
            hits.append(key)
            fractions.append(float(share.median()))
    if not hits:
        return []
    rows = runs[runs["key"].isin(hits)]
    lrs = sorted({lr for lr in (_lr(r, settings) for _, r in rows.iterrows()) if lr is not None})
    return [Flag(
        "excess_resets", tuple(rows["key"]), _where(rows, runs, settings),
        f"Freeze-SGD reset more than {MAX_RESET_FRACTION:.0%} of the constrained weights per step in every epoch "
        f"(median {_pct(fractions)} per step): the template, not the gradient, decides most updates",
        f"lower the learning rate (lr = {', '.join(f'{lr:g}' for lr in lrs) or '?'} here); if that does not help, "
        "check that the template fits the task (a template that fights the data keeps pushing weights across "
        "zero) and compare reset rules (resets = [...]).")]
