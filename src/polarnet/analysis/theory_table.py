"""``polarnet theory xor``: the learnability bounds beside Monte Carlo and, given a finished
``xor5d-width`` study, the fraction of Frozen RAND nets that actually learned."""

from __future__ import annotations

import math
import os

import pandas as pd

from .. import theory
from .metrics import run_metrics

__all__ = ["theory_table", "learned_fraction"]


def learned_fraction(epochs: pd.DataFrame, accuracy: float, condition: str = "frozen_rand") -> pd.DataFrame:
    """Per hidden size, the fraction of ``condition`` runs at the study's largest training set
    whose validation accuracy at convergence is at least ``accuracy``.

    Example:
        >>> e = pd.DataFrame({"run": ["a", "b"], "condition": ["frozen_rand"] * 2, "n_train": [500] * 2,
        ...                   "hidden": [3, 3], "reset": ["posRand"] * 2, "trial": [0, 1], "status": ["done"] * 2,
        ...                   "epoch": [1, 1], "val_loss": [0.1, 0.6], "val_acc": [0.99, 0.7]})
        >>> learned_fraction(e, 0.95).to_dict("records")
        [{'hidden': 3, 'simulated': 0.5, 'sim_runs': 2}]
    """
    runs = run_metrics(epochs[epochs["condition"] == condition], threshold=accuracy)
    if runs.empty:
        return pd.DataFrame(columns=["hidden", "simulated", "sim_runs"])
    runs = runs[runs["n_train"] == runs["n_train"].max()]
    runs["learned"] = (1 - runs["error_at_convergence"]) >= accuracy - 1e-12
    out = runs.groupby("hidden").agg(simulated=("learned", "mean"), sim_runs=("learned", "size")).reset_index()
    return out


def theory_table(units: list[int], dims: int = 5, *, trials: int = 20000, seed: int = 0,
                 folder: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """One row per hidden-unit count: published bound, per-class bound, Monte Carlo of both,
    and (with ``folder``) the simulated fraction of Frozen RAND nets that learned.

    Example:
        >>> theory_table([3, 15], trials=2000).columns.tolist()
        ['units', 'published', 'per_class', 'mc_published', 'mc_per_class']
    """
    rows = []
    for n in units:
        mc_pub, mc_cls = theory.monte_carlo(n, dims, trials, seed)
        rows.append({"units": n, "published": float(theory.published_bound(n, dims)),
                     "per_class": float(theory.per_class_bound(n)), "mc_published": mc_pub, "mc_per_class": mc_cls})
    table = pd.DataFrame(rows)
    if folder is not None:
        from ..experiments.store import Store

        with Store.existing(folder, "polarnet run xor5d-width --out FOLDER") as store:
            epochs = store.epochs()
            accuracy = store.study().get("settings", {}).get("learned_accuracy", 0.95)
        sim = learned_fraction(epochs, accuracy).rename(columns={"hidden": "units"})
        table = table.merge(sim, on="units", how="left")
        table["sim_runs"] = table["sim_runs"].fillna(0).astype(int)
        table["simulated"] = table["simulated"].astype(float).where(table["sim_runs"] > 0, math.nan)
    return table
