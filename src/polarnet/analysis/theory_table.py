"""``polarnet theory xor``: the learnability bounds beside Monte Carlo and, given a finished
``xor5d-width`` study, the fraction of Frozen RAND nets that actually learned."""

from __future__ import annotations

import math
import os

import pandas as pd

from .. import theory
from .metrics import run_metrics

__all__ = ["theory_table", "learned_fraction", "xor_study_dims"]

#: the default input dimensions when neither the caller nor a study chooses (Wang et al.: XOR-5D)
DEFAULT_DIMS = 5


def xor_study_dims(settings: dict, dims: int | None = None, where: str = "the study") -> int:
    """The input dimensions to compare a stored study with the XOR bounds at, or a
    ``ValueError`` when the study cannot be compared with them.

    The bounds are for XOR with ``dims`` inputs learned by a one-hidden-layer MLP, so the study
    must have ``dataset = "xor"`` and ``model = "mlp"``; ``dims`` must equal the study's
    ``dims``. With ``dims=None`` the study's own ``dims`` is taken. Settings a store lacks
    (very old stores) take :class:`~polarnet.experiments.config.Study`'s defaults.

    Args:
        settings: the study's stored settings (``Store.study()["settings"]``).
        dims: the dimensions the caller asked for; ``None``: the study's.
        where: how to name the study in an error (e.g. its folder).

    Returns:
        The dimensions to use.

    Example:
        >>> xor_study_dims({"dataset": "xor", "model": "mlp", "dims": 9})
        9
        >>> xor_study_dims({"dataset": "xor", "model": "mlp", "dims": 9}, 3)
        Traceback (most recent call last):
        ...
        ValueError: the study has dims = 9, but the bounds were asked for dims = 3: ask for dims = 9 (polarnet theory xor --dims 9), or give a study run with dims = 3
        >>> xor_study_dims({"dataset": "fashion_mnist", "model": "lenet"})
        Traceback (most recent call last):
        ...
        ValueError: the study trains model 'lenet' on dataset 'fashion_mnist', but the XOR bounds compare only with studies of an MLP on XOR (dataset = "xor", model = "mlp"): give a study such as `polarnet run xor5d-width --out FOLDER`
    """
    dataset, model = settings.get("dataset", "xor"), settings.get("model", "mlp")
    if dataset != "xor" or model != "mlp":
        raise ValueError(f"{where} trains model {model!r} on dataset {dataset!r}, but the XOR bounds compare only "
                         'with studies of an MLP on XOR (dataset = "xor", model = "mlp"): give a study such as '
                         "`polarnet run xor5d-width --out FOLDER`")
    stored = settings.get("dims", DEFAULT_DIMS)
    if dims is not None and int(dims) != int(stored):
        raise ValueError(f"{where} has dims = {stored}, but the bounds were asked for dims = {dims}: ask for "
                         f"dims = {stored} (polarnet theory xor --dims {stored}), or give a study run with "
                         f"dims = {dims}")
    return int(stored)


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


def theory_table(units: list[int], dims: int | None = None, *, trials: int = 20000, seed: int = 0,
                 folder: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """One row per hidden-unit count: published bound, per-class bound, Monte Carlo of both,
    and (with ``folder``) the simulated fraction of Frozen RAND nets that learned.

    Args:
        units: hidden-unit counts, one row each.
        dims: XOR input dimensions. ``None`` (the default): the study's ``dims`` with
            ``folder``, else :data:`DEFAULT_DIMS` (5).
        trials, seed: the Monte Carlo's draws per unit count and seed.
        folder: a finished XOR study (``dataset = "xor"``, ``model = "mlp"``, e.g.
            ``xor5d-width``) whose Frozen RAND runs give the ``simulated`` column.

    Returns:
        Columns ``units, published, per_class, mc_published, mc_per_class`` (and
        ``simulated, sim_runs`` with ``folder``); ``attrs["dims"]`` holds the dims used.

    Raises:
        ValueError: ``folder`` holds no study, or a study that is not XOR with an MLP, or one
            whose ``dims`` differs from ``dims`` (checked before the Monte Carlo runs; see
            :func:`xor_study_dims`).

    Example:
        >>> theory_table([3, 15], trials=2000).columns.tolist()
        ['units', 'published', 'per_class', 'mc_published', 'mc_per_class']
    """
    epochs = None
    if folder is not None:  # check the study before minutes of Monte Carlo
        from ..experiments.store import Store

        with Store.existing(folder, "polarnet run xor5d-width --out FOLDER") as store:
            settings = store.study().get("settings", {})
            dims = xor_study_dims(settings, dims, where=f"{folder}: the study")
            epochs = store.epochs()
            accuracy = settings.get("learned_accuracy", 0.95)
    dims = DEFAULT_DIMS if dims is None else dims
    rows = []
    for n in units:
        mc_pub, mc_cls = theory.monte_carlo(n, dims, trials, seed)
        rows.append({"units": n, "published": float(theory.published_bound(n, dims)),
                     "per_class": float(theory.per_class_bound(n)), "mc_published": mc_pub, "mc_per_class": mc_cls})
    table = pd.DataFrame(rows)
    if epochs is not None:
        sim = learned_fraction(epochs, accuracy).rename(columns={"hidden": "units"})
        table = table.merge(sim, on="units", how="left")
        table["sim_runs"] = table["sim_runs"].fillna(0).astype(int)
        table["simulated"] = table["simulated"].astype(float).where(table["sim_runs"] > 0, math.nan)
    table.attrs["dims"] = dims
    return table
