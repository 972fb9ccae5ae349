"""Efficiency metrics of Wang et al., computed from the store's per-epoch table.

* statistical efficiency: validation error *at convergence*, i.e. at the epoch of minimum
  validation loss (as the reference code did);
* computational efficiency: epochs to first reach an accuracy threshold — only runs that
  reach it count, so the success rate (fraction of runs that reach it) goes with it.
"""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["run_metrics", "summary_table", "format_summary"]


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


def summary_table(per_run: pd.DataFrame) -> pd.DataFrame:
    """Per condition × size (× hidden × reset): median epochs to threshold among runs that
    reached it, success rate, median error at convergence with its 25th–75th percentiles, the
    mean ± standard deviation of the final accuracy (as Igoe et al. report), and the run count."""
    keys = ["condition", "n_train", "hidden", "reset"]
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
    """The plain-text table ``make demo`` prints."""
    lines = [f"{'condition':<20} {'n':>5} {'hidden':>6} {'reset':<8} {'epochs to ' + format(threshold, '.0%'):>14} "
             f"{'success':>8} {'error at conv.':>15} {'runs':>5}"]
    for row in table.itertuples(index=False):
        epochs = "—" if math.isnan(row.median_epochs) else f"{row.median_epochs:.1f}"
        lines.append(f"{row.condition:<20} {row.n_train:>5} {row.hidden:>6} {row.reset:<8} {epochs:>14} "
                     f"{row.success_rate:>8.0%} {row.median_error:>15.3f} {row.runs:>5}")
    return "\n".join(lines)
