"""Efficiency metrics of Wang et al., computed from the store's per-epoch table.

* statistical efficiency: validation error *at convergence*, i.e. at the epoch of minimum
  validation loss (as the reference code did);
* computational efficiency: epochs to first reach an accuracy threshold — only runs that
  reach it count, so the success rate (fraction of runs that reach it) goes with it.
"""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["run_metrics", "summary_table", "format_summary", "chance_level", "median_epochs_text", "one_line",
           "MIN_SUCCESS_FOR_MEDIAN"]

#: A median of epochs to a threshold is shown as a finding only when at least this share of
#: the trials reached the threshold: a median over the few lucky trials of a grid point where
#: most never got there would look fast, not slow. Figures draw such medians hollow and the
#: tables mark them with ``*``.
MIN_SUCCESS_FOR_MEDIAN = 0.5


def chance_level(settings: dict, num_classes: int | None = None) -> float:
    """Chance accuracy of a study: ``1 / num_classes``, the number of classes the study stored
    (:func:`polarnet.analysis.looks.stored_num_classes`; a binary task has 2).

    Args:
        settings: the study's settings (``Store.study()["settings"]``, or ``Study.to_dict()``).
        num_classes: the stored number of classes; ``None`` for a store written before this
            version, which stored none (or a caller without the store).

    Example:
        >>> chance_level({"dataset": "my_faces"}, num_classes=5), chance_level({"dataset": "xor"}, 2)
        (0.2, 0.5)
        >>> chance_level({"dataset": "xor"}), chance_level({"dataset": "cifar10", "classes": [0, 1, 2, 3]})
        (0.5, 0.25)
    """
    if num_classes:
        return 1.0 / num_classes
    # fallback for stores written before the number of classes was stored: 1/2 for XOR, else
    # the study's chosen classes or the ten of the built-in image datasets
    if settings.get("dataset", "xor") == "xor":
        return 0.5
    return 1.0 / (len(settings.get("classes") or []) or 10)


def run_metrics(epochs: pd.DataFrame, threshold: float, thresholds: tuple[float, ...] = (),
                chance: float | None = None) -> pd.DataFrame:
    """One row per run: grid point, error at convergence, epochs to ``threshold`` (NaN if never).

    Args:
        epochs: the store's epochs table (``Store.epochs()``), done runs only are used.
        threshold: validation accuracy to reach, e.g. 0.8 (column ``epochs_to_threshold``).
        thresholds: more thresholds, one ``epochs_to_<t>`` column each (Wang Fig. C.2/C.4).
        chance: with it, ``converged`` says whether the final accuracy beats chance (Igoe).

    Also: ``error_at_last_epoch``, ``final_accuracy`` and ``auc`` (the mean validation
    accuracy over epochs: the area under the curve, per epoch).

    Example:
        >>> e = pd.DataFrame({"run": ["a"] * 3, "condition": ["c"] * 3, "n_train": [8] * 3, "hidden": [4] * 3,
        ...                   "reset": ["posRand"] * 3, "trial": [0] * 3, "status": ["done"] * 3, "epoch": [1, 2, 3],
        ...                   "val_loss": [0.9, 0.5, 0.7], "val_acc": [0.6, 0.85, 0.9]})
        >>> row = run_metrics(e, 0.8, thresholds=(0.9,), chance=0.5).iloc[0]
        >>> round(float(row.error_at_convergence), 6), int(row.epochs_to_threshold), int(row["epochs_to_0.9"])
        (0.15, 2, 3)
        >>> round(float(row.auc), 4), bool(row.converged)
        (0.7833, True)
    """
    done = epochs[epochs["status"] == "done"]
    rows = []
    keys = ["condition", "n_train", "hidden", "reset", "trial"]
    extra = [t for t in thresholds if t != threshold]
    for run, group in done.groupby("run", sort=False):
        group = group.sort_values("epoch")
        accuracy = group["val_acc"].astype(float)
        best = group["val_loss"].astype(float).fillna(math.inf).to_numpy().argmin()
        first = group.iloc[0]
        row = {**{k: first[k] for k in keys}, "run": run,
               "error_at_convergence": 1.0 - float(accuracy.iloc[best]),
               "error_at_last_epoch": 1.0 - float(accuracy.iloc[-1]),
               "final_accuracy": float(accuracy.iloc[-1]),
               "auc": float(accuracy.mean()),
               "epochs_to_threshold": _first_epoch(group, threshold)}
        row.update({f"epochs_to_{t:g}": _first_epoch(group, t) for t in extra})
        if chance is not None:
            row["converged"] = bool(accuracy.iloc[-1] > chance)
        rows.append(row)
    columns = keys + ["run", "error_at_convergence", "error_at_last_epoch", "final_accuracy", "auc",
                      "epochs_to_threshold"] + [f"epochs_to_{t:g}" for t in extra] + (["converged"] if chance is not None else [])
    return pd.DataFrame(rows, columns=columns)


def _first_epoch(group: pd.DataFrame, threshold: float) -> float:
    reached = group.loc[group["val_acc"].astype(float) >= threshold, "epoch"]
    return float(reached.iloc[0]) if len(reached) else math.nan


def summary_table(per_run: pd.DataFrame, settings: dict | None = None) -> pd.DataFrame:
    """Per condition × size (× hidden × reset): median epochs to threshold among runs that
    reached it, success rate, median error at convergence with its 25th–75th percentiles, the
    mean ± standard deviation of the final accuracy (as Igoe et al. report), and the run count.

    With the study's ``settings``, only the grid axes the study has (:func:`.grid.grid_columns`:
    no ``hidden`` for an image model, no ``reset`` when nothing resets).

    Example:
        >>> per_run = pd.DataFrame({"condition": ["c"] * 3, "n_train": [8] * 3, "hidden": [4] * 3,
        ...                         "reset": ["zero"] * 3, "run": ["a", "b", "d"],
        ...                         "epochs_to_threshold": [2.0, 4.0, float("nan")],
        ...                         "error_at_convergence": [0.1, 0.2, 0.5], "final_accuracy": [0.9, 0.8, 0.5]})
        >>> row = summary_table(per_run).iloc[0]
        >>> float(row.median_epochs), round(float(row.success_rate), 3), float(row.median_error), int(row.runs)
        (3.0, 0.667, 0.2, 3)
        >>> list(summary_table(per_run, {"dataset": "cifar10"}).columns[:3])
        ['condition', 'n_train', 'reset']
    """
    from .grid import grid_columns

    keys = ["condition", "n_train", "hidden", "reset"] if settings is None else grid_columns(settings, per_run)
    out = per_run.groupby(keys).agg(
        median_epochs=("epochs_to_threshold", "median"),
        success_rate=("epochs_to_threshold", lambda s: float(s.notna().mean())),
        median_error=("error_at_convergence", "median"),
        error_q25=("error_at_convergence", lambda s: float(s.quantile(0.25))),
        error_q75=("error_at_convergence", lambda s: float(s.quantile(0.75))),
        mean_final_accuracy=("final_accuracy", "mean"),
        std_final_accuracy=("final_accuracy", "std"),
        runs=("run", "count"),
    )
    return out.reset_index()


def format_summary(table: pd.DataFrame, threshold: float) -> str:
    """The plain-text table ``polarnet run`` and ``make demo`` print.

    A median of epochs to the threshold that rests on fewer than half the trials (see
    :data:`MIN_SUCCESS_FOR_MEDIAN`) is marked ``*``, with a footnote; a dash means no trial
    reached the threshold.

    Example:
        >>> t = pd.DataFrame({"condition": ["c", "c"], "n_train": [8, 20], "hidden": [4, 4], "reset": ["zero"] * 2,
        ...                   "median_epochs": [7.0, 3.0], "success_rate": [0.25, 1.0], "median_error": [0.4, 0.1],
        ...                   "runs": [4, 4]})
        >>> print(format_summary(t, 0.8))  # doctest: +NORMALIZE_WHITESPACE
        condition                n hidden reset     epochs to 80%  success  error at conv.  runs
        c                        8      4 zero               7.0*      25%           0.400     4
        c                       20      4 zero                3.0     100%           0.100     4
        * median of the fewer than half of the trials that reached 80%; the others never did
    """
    hidden, reset = "hidden" in table, "reset" in table  # the axes :func:`summary_table` kept
    lines = [f"{'condition':<20} {'n':>5}" + (f" {'hidden':>6}" if hidden else "") + (f" {'reset':<8}" if reset else "")
             + f" {'epochs to ' + format(threshold, '.0%'):>14} {'success':>8} {'error at conv.':>15} {'runs':>5}"]
    marked = False
    for row in table.itertuples(index=False):
        epochs = median_epochs_text(row.median_epochs, row.success_rate)
        marked |= epochs.endswith("*")
        lines.append(f"{one_line(row.condition):<20} {row.n_train:>5}" + (f" {row.hidden:>6}" if hidden else "")
                     + (f" {one_line(row.reset):<8}" if reset else "")
                     + f" {epochs:>14} {row.success_rate:>8.0%} {row.median_error:>15.3f} {row.runs:>5}")
    if marked:
        lines.append(f"* median of the fewer than half of the trials that reached {threshold:.0%}; the others never did")
    return "\n".join(lines)


def one_line(text) -> str:
    """``text`` as one printable line: newlines, tabs and other control characters written as
    their escapes (``\\n``), so a name can never split a table row.

    Example:
        >>> print(one_line("a\\nb\\tc"), one_line("ü_ok"), one_line(3))
        a\\nb\\tc ü_ok 3
    """
    text = str(text)
    return text if text.isprintable() else "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def median_epochs_text(median: float, success_rate: float) -> str:
    """A median of epochs to a threshold as text: a dash when no trial reached it, marked ``*``
    when fewer than half did.

    Example:
        >>> median_epochs_text(float("nan"), 0.0), median_epochs_text(4.0, 0.2), median_epochs_text(4.0, 0.5)
        ('—', '4.0*', '4.0')
    """
    if median != median:
        return "—"
    return f"{median:.1f}" + ("*" if success_rate < MIN_SUCCESS_FOR_MEDIAN else "")
