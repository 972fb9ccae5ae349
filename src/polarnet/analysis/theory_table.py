"""``polarnet theory xor``: the learnability bounds beside Monte Carlo and, given a finished
``xor5d-width`` study, the fraction of Frozen RAND nets that actually learned."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from .. import theory
from .metrics import run_metrics

__all__ = ["theory_table", "learned_fraction", "xor_study_dims", "simulated_fractions", "learnability_table",
           "which_curve", "CURVES"]

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


# -- the scorecard's Fig. 4A (polarnet.analysis.scorecard) --------------------------------------
#: the theory curves the simulation is held against: column -> how the text names it
CURVES = {"published": "the published bound (Thm D.1)", "per_class": "the per-class count"}


def simulated_fractions(per_run: pd.DataFrame, accuracy: float) -> pd.DataFrame:
    """Per hidden size, how many of the runs in ``per_run`` (one condition's
    :func:`~.metrics.run_metrics` rows) at its largest training set learned: an accuracy at
    convergence of at least ``accuracy`` (as :func:`learned_fraction`), with the 95%
    Clopper–Pearson interval of the fraction.

    Example:
        >>> pr = pd.DataFrame({"hidden": [3, 3, 15], "n_train": [500] * 3, "error_at_convergence": [0.01, 0.3, 0.0]})
        >>> simulated_fractions(pr, 0.95)[["hidden", "learned", "runs", "simulated"]].values.tolist()
        [[3.0, 1.0, 2.0, 0.5], [15.0, 1.0, 1.0, 1.0]]
    """
    from .stats import proportion_ci

    columns = ["hidden", "n_train", "learned", "runs", "simulated", "sim_low", "sim_high"]
    if per_run.empty:
        return pd.DataFrame(columns=columns)
    runs = per_run[per_run["n_train"] == per_run["n_train"].max()]
    rows = []
    for hidden, group in runs.groupby("hidden"):
        learned = int(((1 - group["error_at_convergence"]) >= accuracy - 1e-12).sum())
        low, high = proportion_ci(learned, len(group))
        rows.append({"hidden": hidden, "n_train": int(group["n_train"].iloc[0]), "learned": learned,
                     "runs": len(group), "simulated": learned / len(group), "sim_low": low, "sim_high": high})
    return pd.DataFrame(rows, columns=columns)


def learnability_table(units, dims: int = DEFAULT_DIMS, *, trials: int = 10000, seed: int = 0,
                       simulated: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`theory_table` for ``units`` beside the simulated fractions of
    :func:`simulated_fractions` (columns ``simulated``, ``sim_runs``, ``sim_low``,
    ``sim_high``; NaN and 0 where a width was not simulated).

    Example:
        >>> sim = pd.DataFrame({"hidden": [3], "n_train": [500], "learned": [1], "runs": [2], "simulated": [0.5],
        ...                     "sim_low": [0.01], "sim_high": [0.99]})
        >>> learnability_table([3, 4], trials=100, simulated=sim)["sim_runs"].tolist()
        [2, 0]
    """
    table = theory_table(sorted(set(int(u) for u in units)), dims, trials=trials, seed=seed)
    if simulated is not None and len(simulated):
        sim = simulated.rename(columns={"hidden": "units", "runs": "sim_runs"})[
            ["units", "simulated", "sim_runs", "sim_low", "sim_high"]]
        table = table.merge(sim.astype({"units": int}), on="units", how="left")
    else:
        table = table.assign(simulated=math.nan, sim_runs=0, sim_low=math.nan, sim_high=math.nan)
    table["sim_runs"] = table["sim_runs"].fillna(0).astype(int)
    table.attrs["dims"] = dims
    return table


def which_curve(table: pd.DataFrame) -> tuple[str | None, str]:
    """Which theory curve the simulated fraction follows: per curve of :data:`CURVES`, at how
    many simulated widths it lies within the simulation's 95% interval, and the root mean
    square distance. Returns the curve's column (``None`` when the simulation cannot tell
    them apart, follows neither, or is missing) and a sentence.

    Example:
        >>> t = pd.DataFrame({"units": [10, 15], "published": [0.93, 0.995], "per_class": [0.73, 0.93],
        ...                   "simulated": [0.72, 0.94], "sim_runs": [50, 50], "sim_low": [0.58, 0.83],
        ...                   "sim_high": [0.84, 0.99]})
        >>> which_curve(t)[0]
        'per_class'
    """
    sim = table[table["sim_runs"] > 0] if "sim_runs" in table else table.iloc[0:0]
    if sim.empty:
        return None, "No simulated widths: the simulation cannot say which curve the networks follow."
    m = len(sim)
    fit = {}
    for curve in CURVES:
        inside = int(((sim[curve] >= sim["sim_low"] - 1e-12) & (sim[curve] <= sim["sim_high"] + 1e-12)).sum())
        rms = float(np.sqrt(((sim["simulated"] - sim[curve]) ** 2).mean()))
        fit[curve] = (inside, rms)
    described = "; ".join(f"{CURVES[c]}: within the 95% interval at {fit[c][0]} of {m} widths, RMS distance "
                          f"{fit[c][1]:.3f}" for c in CURVES)
    above = int((sim["sim_low"] > sim[list(CURVES)].max(axis=1) + 1e-12).sum())
    extra = (f" At {above} of {m} widths the simulated nets learn significantly more often than both curves "
             "predict: Lemma D.1's three compatible units are sufficient, not necessary (with free biases "
             "fewer can do)." if above else "")
    best = sorted(CURVES, key=lambda c: (-fit[c][0], fit[c][1]))
    first, second = best[0], best[1]
    if fit[first][0] == fit[second][0] == m:
        return None, (f"The simulation cannot tell the curves apart: both lie within its 95% intervals at every "
                      f"simulated width ({described}); more trials, or widths between 8 and 25, separate them."
                      + extra)
    if fit[first][0] * 2 <= m:
        return None, f"The simulation follows neither curve ({described})." + extra
    if fit[first][0] == fit[second][0]:
        return first, f"The simulated fraction is closer to {CURVES[first]} ({described})." + extra
    return first, f"The simulated fraction follows {CURVES[first]} ({described})." + extra
