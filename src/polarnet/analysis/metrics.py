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


def run_metrics(epochs: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One row per run: grid point, error at convergence, epochs to ``threshold`` (NaN if never).

    Args:
        epochs: the store's epochs table (``Store.epochs()``), done runs only are used.
        threshold: validation accuracy to reach, e.g. 0.8.

    Example:
        >>> e = pd.DataFrame({"run": ["a"] * 3, "condition": ["c"] * 3, "n_train": [8] * 3, "hidden": [4] * 3,
        ...                   "reset": ["posRand"] * 3, "trial": [0] * 3, "status": ["done"] * 3, "epoch": [1, 2, 3],
        ...                   "val_loss": [0.9, 0.5, 0.7], "val_acc": [0.6, 0.85, 0.9]})
        >>> row = run_metrics(e, 0.8).iloc[0]
        >>> round(float(row.error_at_convergence), 6), int(row.epochs_to_threshold)
        (0.15, 2)
    """
    done = epochs[epochs["status"] == "done"]
    rows = []
    keys = ["condition", "n_train", "hidden", "reset", "trial"]
    for run, group in done.groupby("run", sort=False):
        group = group.sort_values("epoch")
        best = group["val_loss"].fillna(math.inf).to_numpy().argmin()
        reached = group.loc[group["val_acc"] >= threshold, "epoch"]
        first = group.iloc[0]
        rows.append({**{k: first[k] for k in keys}, "run": run,
                     "error_at_convergence": 1.0 - float(group["val_acc"].iloc[best]),
                     "final_accuracy": float(group["val_acc"].iloc[-1]),
                     "epochs_to_threshold": float(reached.iloc[0]) if len(reached) else math.nan})
    columns = keys + ["run", "error_at_convergence", "final_accuracy", "epochs_to_threshold"]
    return pd.DataFrame(rows, columns=columns)


def summary_table(per_run: pd.DataFrame) -> pd.DataFrame:
    """Per condition × size (× hidden × reset): median epochs to threshold among runs that
    reached it, success rate, median error at convergence, and the run count."""
    keys = ["condition", "n_train", "hidden", "reset"]
    out = per_run.groupby(keys).agg(
        median_epochs=("epochs_to_threshold", "median"),
        success_rate=("epochs_to_threshold", lambda s: float(s.notna().mean())),
        median_error=("error_at_convergence", "median"),
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
