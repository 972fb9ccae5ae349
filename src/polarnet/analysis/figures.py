"""Figures drawn from the results store's tables (matplotlib, PNG and SVG).

Colours follow Wang et al. where the paper names them (Fig. 1: Frozen Sufficient red, Frozen
RAND green, Fluid blue); every figure says which study and how many trials stand behind each
point ("3 trials per point", or "2–20 trials per point" where it varies).

Every figure accepts empty, all-NaN and single-point data: a panel without data says so in
its middle ("no run reached 80%", "no finished runs") instead of failing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .metrics import MIN_SUCCESS_FOR_MEDIAN  # noqa: E402

__all__ = ["COLORS", "efficiency_figure", "curves_figure", "sign_change_figure", "difference_figure", "theory_figure",
           "reset_figure", "magnitude_figure", "save", "trials_label"]

COLORS = {
    "frozen_sufficient": "#d62728", "frozen_rand": "#2ca02c", "fluid_rand": "#1f77b4", "fluid_sufficient": "#ff7f0e",
    "frozen_in_polarity": "#d62728", "fluid_in_polarity": "#ff7f0e", "fluid_in_weight": "#9467bd",
    "frozen_in_weight": "#8c564b", "freeze_spin": "#d62728", "fluid_spin": "#ff7f0e", "fluid_in": "#1f77b4",
}


def _color(condition: str, index: int) -> str:
    return COLORS.get(condition, f"C{index % 10}")


def save(fig, stem: str | os.PathLike[str]) -> list[Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.svg``; close the figure; return both paths.

    Example:
        >>> import tempfile
        >>> [p.name for p in save(plt.figure(), tempfile.mkdtemp() + "/empty")]
        ['empty.png', 'empty.svg']
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def trials_label(counts) -> str:
    """How many trials stand behind each point of a figure, from the count per point.

    Example:
        >>> trials_label([3, 3]), trials_label([2, 20, 7]), trials_label([1]), trials_label([])
        ('3 trials per point', '2–20 trials per point', '1 trial per point', 'no trials')
    """
    counts = [int(c) for c in counts if c == c and c > 0]
    if not counts:
        return "no trials"
    low, high = min(counts), max(counts)
    if low == high:
        return f"{low} trial{'s' if low != 1 else ''} per point"
    return f"{low}–{high} trials per point"


def _no_data(ax, text: str) -> None:
    """Say in the middle of a panel why it is empty."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="0.35",
            bbox={"facecolor": "white", "edgecolor": "0.7", "boxstyle": "round"})


def _size_axis(ax, sizes) -> None:
    """Training sizes on a log axis labelled with the sizes themselves (linear for one size).

    The limits are set from the sizes, not the data, so a panel with nothing to draw still
    has a valid (log) axis.
    """
    sizes = sorted(int(s) for s in sizes)
    if len(sizes) > 1:
        ax.set_xscale("log")
        ax.set_xlim(sizes[0] / 1.25, sizes[-1] * 1.25)
    elif sizes:
        ax.set_xlim(sizes[0] * 0.5, sizes[0] * 1.5)
    ax.set_xticks(sizes)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.tick_params(axis="x", labelsize=7, labelrotation=45)
    ax.set_xlabel("training samples (n)")


def _band(ax, x, values: pd.core.groupby.SeriesGroupBy, color: str, label: str) -> None:
    median, q25, q75 = values.median(), values.quantile(0.25), values.quantile(0.75)
    ax.plot(x, median.reindex(x), "o-", color=color, label=label, markersize=3)
    ax.fill_between(x, q25.reindex(x), q75.reindex(x), color=color, alpha=0.2, linewidth=0)


def efficiency_figure(per_run: pd.DataFrame, threshold: float, stem: str | os.PathLike[str],
                      study: str = "") -> list[Path]:
    """Wang et al. Fig. 1 B/C and Fig. 2: per condition against the training-set size, (a)
    validation error at convergence, (b) the share of trials reaching ``threshold``, (c)
    epochs to reach it (trials that did). Medians with 25th–75th percentile bands.

    In (c) a median is drawn (filled, joined) only where at least half the trials reached the
    threshold; where fewer did it is a hollow marker, and where none did, nothing. A panel
    without any such point says "no run reached 80%".

    Args:
        per_run: :func:`polarnet.analysis.metrics.run_metrics` output (one hidden size and reset).
        threshold: the accuracy threshold of panels (b) and (c).
        stem: output path without extension.
        study: the study's name, for the title.

    Returns:
        The PNG and SVG paths.

    Example:
        >>> import tempfile
        >>> per_run = pd.DataFrame({"condition": ["c"] * 2, "n_train": [8, 8], "run": ["a", "b"],
        ...                         "error_at_convergence": [0.5, 0.4], "epochs_to_threshold": [float("nan")] * 2})
        >>> [p.suffix for p in efficiency_figure(per_run, 0.8, tempfile.mkdtemp() + "/fig")]
        ['.png', '.svg']
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    sizes = sorted(per_run["n_train"].unique())
    sparse = False
    for i, (condition, runs) in enumerate(per_run.groupby("condition", sort=False)):
        color = _color(condition, i)
        by_size = runs.groupby("n_train")
        _band(axes[0], sizes, runs.assign(error=runs["error_at_convergence"] * 100).groupby("n_train")["error"], color,
              condition)
        success = by_size["epochs_to_threshold"].apply(lambda s: s.notna().mean()).reindex(sizes)
        axes[1].plot(sizes, success * 100, "o-", color=color, label=condition, markersize=3)
        reached = runs.dropna(subset=["epochs_to_threshold"]).groupby("n_train")["epochs_to_threshold"]
        median = reached.median().reindex(sizes)
        enough = (success >= MIN_SUCCESS_FOR_MEDIAN).to_numpy()
        axes[2].plot(sizes, median.where(enough), "o-", color=color, label=condition, markersize=3)
        axes[2].fill_between(sizes, reached.quantile(0.25).reindex(sizes).where(enough),
                             reached.quantile(0.75).reindex(sizes).where(enough), color=color, alpha=0.2, linewidth=0)
        few = median.where(~enough & median.notna().to_numpy())
        if few.notna().any():
            sparse = True
            axes[2].plot(sizes, few, "o", markerfacecolor="none", markeredgecolor=color, markersize=5)
    labels = ("validation error at convergence (%)", f"trials reaching {threshold:.0%} accuracy (%)",
              f"epochs to {threshold:.0%} validation accuracy")
    for ax, label in zip(axes, labels):
        _size_axis(ax, sizes)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(-5, 105)
    if per_run.empty:
        for ax in axes:
            _no_data(ax, "no finished runs")
    elif per_run["error_at_convergence"].isna().all():
        _no_data(axes[0], "no finite validation accuracy")
    if not per_run.empty and per_run["epochs_to_threshold"].isna().all():
        _no_data(axes[2], f"no run reached {threshold:.0%}")
        axes[2].set_yticks([])
    elif sparse:
        axes[2].plot([], [], "o", markerfacecolor="none", markeredgecolor="0.3",
                     label=f"hollow: < {MIN_SUCCESS_FOR_MEDIAN:.0%} of trials reached it")
        axes[2].legend(fontsize=7)
    if len(per_run):
        axes[0].legend(fontsize=8)
    trials = trials_label(per_run.groupby(["condition", "n_train"]).size()) if len(per_run) else "no trials"
    fig.suptitle(f"{study}: statistical and computational efficiency (medians, 25th–75th percentiles; "
                 f"{trials})", fontsize=10)
    return save(fig, stem)


def curves_figure(epochs: pd.DataFrame, stem: str | os.PathLike[str], study: str = "", mark: float = 0.4) -> list[Path]:
    """Igoe et al. Fig. 1–2: train and validation accuracy against the epoch, mean ± standard
    deviation over runs per condition, a dashed line where the mean validation accuracy first
    reaches ``mark``. Finished runs only; points get markers when there are few epochs.

    Example:
        >>> import tempfile
        >>> e = pd.DataFrame({"condition": ["c"], "run": ["a"], "status": ["done"], "epoch": [1],
        ...                   "train_acc": [0.6], "val_acc": [0.5]})
        >>> [p.suffix for p in curves_figure(e, tempfile.mkdtemp() + "/curves")]
        ['.png', '.svg']
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    done = epochs[epochs["status"] == "done"]
    few = done["epoch"].nunique() <= 5 if len(done) else False
    for i, (condition, runs) in enumerate(done.groupby("condition", sort=False)):
        color = _color(condition, i)
        for ax, column in zip(axes, ("train_acc", "val_acc")):
            stats = runs.groupby("epoch")[column].agg(["mean", "std"])
            stats["std"] = stats["std"].fillna(0)
            if few:  # a band between a handful of epochs hides the spread: error bars instead
                ax.errorbar(stats.index, stats["mean"] * 100, yerr=stats["std"] * 100, fmt="o-", markersize=3,
                            capsize=3, color=color, label=condition)
            else:
                ax.plot(stats.index, stats["mean"] * 100, color=color, label=condition)
                ax.fill_between(stats.index, (stats["mean"] - stats["std"]) * 100,
                                (stats["mean"] + stats["std"]) * 100, color=color, alpha=0.2, linewidth=0)
            if column == "val_acc":
                reached = stats.index[stats["mean"] >= mark]
                if len(reached):
                    ax.axvline(reached[0], color=color, linestyle="--", linewidth=1)
    for ax, title in zip(axes, ("training accuracy", "validation accuracy")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))
        if len(done) and done["epoch"].nunique() == 1:
            ax.set_xlim(done["epoch"].iloc[0] - 0.5, done["epoch"].iloc[0] + 0.5)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if done.empty:
            _no_data(ax, "no finished runs")
    axes[0].set_ylabel("accuracy (%)")
    if len(done):
        axes[1].legend(fontsize=8)
    runs = trials_label(done.groupby("condition")["run"].nunique()).replace("trial", "run") if len(done) else "no runs"
    fig.suptitle(f"{study}: mean ± std, {runs}; dashed: mean validation accuracy first ≥ {mark:.0%}",
                 fontsize=10)
    return save(fig, stem)


def sign_change_figure(epochs: pd.DataFrame, condition: str, stem: str | os.PathLike[str], study: str = "",
                       max_epoch: int = 50) -> list[Path]:
    """Wang et al. Fig. C.5: per layer, the fraction of weights whose sign changed since the
    previous epoch (median over runs), for the first ``max_epoch`` epochs of ``condition``.

    Raises:
        ValueError: ``condition`` has no finished run.

    Example:
        >>> import tempfile
        >>> e = pd.DataFrame({"condition": ["c"], "run": ["a"], "status": ["done"], "epoch": [1],
        ...                   "sign_changes": ['{"0.weight": 0.02}']})
        >>> [p.suffix for p in sign_change_figure(e, "c", tempfile.mkdtemp() + "/c5")]
        ['.png', '.svg']
    """
    runs = epochs[(epochs["condition"] == condition) & (epochs["status"] == "done") & (epochs["epoch"] <= max_epoch)]
    if runs.empty:
        raise ValueError(f"no finished runs of condition {condition!r} to plot")
    layers = pd.DataFrame([json.loads(s) if isinstance(s, str) else s for s in runs["sign_changes"]], index=runs.index)
    layers["epoch"] = runs["epoch"]
    medians = layers.groupby("epoch").median().dropna(axis=1, how="all")
    fig, ax = plt.subplots(figsize=(6, 3.8))
    few = medians.index.nunique() <= 5
    for i, layer in enumerate(medians.columns):
        ax.plot(medians.index, medians[layer] * 100, "o-" if few else "-", markersize=3, label=layer,
                color=f"C{i % 10}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("weights that changed sign (%)")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.grid(alpha=0.3)
    if len(medians.columns):
        ax.legend(fontsize=7)
    else:
        _no_data(ax, "no sign changes recorded")
    n = runs["run"].nunique()
    ax.set_title(f"{study}: {condition}, sign changes per epoch (median of {n} run{'s' if n != 1 else ''})",
                 fontsize=9)
    return save(fig, stem)


def difference_figure(stats: pd.DataFrame, metric_label: str, stem: str | os.PathLike[str], study: str = "",
                      by: str = "n_train") -> list[Path]:
    """Wang et al. Fig. 3: each condition's median minus the reference's, against ``by``, with an
    asterisk where the Holm-corrected Mann–Whitney test is significant.

    Args:
        stats: :func:`polarnet.analysis.stats.compare_to_reference` output.
        metric_label: the compared metric, for the axis label.

    Example:
        >>> import tempfile
        >>> stats = pd.DataFrame({"condition": ["a"], "reference": ["b"], "n_train": [8], "n_a": [3], "n_b": [2],
        ...                       "median": [0.1], "median_reference": [0.2], "significant": [False]})
        >>> [p.suffix for p in difference_figure(stats, "error", tempfile.mkdtemp() + "/fig3")]
        ['.png', '.svg']
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.axhline(0, color="0.4", linewidth=1)
    for i, (condition, rows) in enumerate(stats.groupby("condition", sort=False)):
        rows = rows.sort_values(by)
        diff = rows["median"] - rows["median_reference"]
        color = _color(condition, i)
        ax.plot(rows[by], diff, "o-", color=color, label=condition, markersize=3)
        for x, d, significant in zip(rows[by], diff, rows["significant"]):
            if significant:
                ax.annotate("*", (x, d), textcoords="offset points", xytext=(0, 4), ha="center", color=color,
                            fontsize=12)
    _size_axis(ax, sorted(stats[by].unique()))
    ax.set_ylabel(f"median {metric_label} − reference")
    ax.grid(alpha=0.3)
    if len(stats) and (stats["median"] - stats["median_reference"]).notna().any():
        ax.legend(fontsize=8)
    else:
        _no_data(ax, "nothing to compare")
    reference = stats["reference"].iloc[0] if "reference" in stats and len(stats) else "reference"
    trials = trials_label(pd.concat([stats["n_a"], stats["n_b"]])) if len(stats) else "no trials"
    ax.set_title(f"{study}: difference to {reference}, {trials}\n"
                 f"(* Holm-corrected p < 0.05, two-tailed Mann–Whitney U)", fontsize=9)
    return save(fig, stem)


def theory_figure(table: pd.DataFrame, stem: str | os.PathLike[str], study: str = "") -> list[Path]:
    """Wang et al. Fig. 4A: P(a Frozen RAND net can learn XOR) against hidden units — the
    published bound, the per-class count, their Monte Carlo estimates and, where the table has
    it, the fraction of simulated nets that learned.

    Example:
        >>> import tempfile
        >>> from polarnet.analysis.theory_table import theory_table
        >>> [p.suffix for p in theory_figure(theory_table([2, 3], trials=100), tempfile.mkdtemp() + "/fig4a")]
        ['.png', '.svg']
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(table["units"], table["published"], "-", color="#2ca02c", label="published bound (Thm D.1)")
    ax.plot(table["units"], table["per_class"], "--", color="#2ca02c", label="per-class count")
    ax.plot(table["units"], table["mc_published"], ".", color="0.5", markersize=3, label="Monte Carlo")
    ax.plot(table["units"], table["mc_per_class"], ".", color="0.5", markersize=3)
    if "simulated" in table:
        sim = table.dropna(subset=["simulated"])
        ax.plot(sim["units"], sim["simulated"], "o", color="k", markersize=4,
                label=f"simulated Frozen RAND ({int(sim['sim_runs'].max()) if len(sim) else 0} nets per width)")
    ax.axhline(0.99, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xlabel("hidden units")
    ax.set_ylabel("probability of learning XOR")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{study}: learnability of randomly signed Frozen-Nets", fontsize=9)
    return save(fig, stem)


def reset_figure(per_run: pd.DataFrame, stem: str | os.PathLike[str], study: str = "") -> list[Path]:
    """Wang et al. Fig. C.1: validation error at convergence against the training size, one
    line per frozen condition and reset rule (fluid runs as the dashed reference).

    Example:
        >>> import tempfile
        >>> per_run = pd.DataFrame({"condition": ["c", "c"], "reset": ["zero", "posRand"], "n_train": [8, 8],
        ...                         "error_at_convergence": [0.2, 0.3]})
        >>> [p.suffix for p in reset_figure(per_run, tempfile.mkdtemp() + "/c1")]
        ['.png', '.svg']
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    styles = {"posRand": "-", "posCon": "--", "zero": ":", "flip": "-."}
    sizes = sorted(per_run["n_train"].unique())
    for i, ((condition, reset), runs) in enumerate(per_run.groupby(["condition", "reset"], sort=False)):
        median = runs.groupby("n_train")["error_at_convergence"].median().reindex(sizes) * 100
        ax.plot(sizes, median, linestyle=styles.get(reset, (0, (1, 3))), color=_color(condition, i),
                label=f"{condition}, {reset}", marker="o", markersize=3)
    _size_axis(ax, sizes)
    ax.set_ylabel("validation error at convergence (%)")
    ax.grid(alpha=0.3)
    if len(per_run):
        ax.legend(fontsize=7)
    else:
        _no_data(ax, "no finished runs")
    trials = trials_label(per_run.groupby(["condition", "reset", "n_train"]).size()) if len(per_run) else "no trials"
    ax.set_title(f"{study}: reset rules (medians; {trials})", fontsize=9)
    return save(fig, stem)


def magnitude_figure(magnitudes: pd.DataFrame, stem: str | os.PathLike[str], study: str = "",
                     max_layers: int = 8) -> list[Path]:
    """Wang et al. Fig. C.6: per layer, the distribution of ``|w|`` at initialisation (after
    alignment) per condition, as the median over runs of each quantile — identical curves mean
    identical magnitude distributions (only IN-Weight conditions should differ).

    Example:
        >>> import tempfile
        >>> m = pd.DataFrame({"condition": ["c"], "run": ["a"], "layer": ["0.weight"], 0.0: [0.0], 0.5: [0.1],
        ...                   1.0: [0.4]})
        >>> [p.suffix for p in magnitude_figure(m, tempfile.mkdtemp() + "/c6")]
        ['.png', '.svg']
    """
    levels = [c for c in magnitudes.columns if isinstance(c, float)]
    layers = list(dict.fromkeys(magnitudes["layer"]))[:max_layers]
    if not layers:
        fig, ax = plt.subplots(figsize=(4, 2.5))
        ax.set_axis_off()
        _no_data(ax, "no magnitudes recorded")
        fig.suptitle(f"{study}: weight magnitudes at initialisation", fontsize=10)
        return save(fig, stem)
    cols = min(4, len(layers))
    rows = -(-len(layers) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, layer in zip(axes.flat, layers):
        data = magnitudes[magnitudes["layer"] == layer]
        for i, (condition, runs) in enumerate(data.groupby("condition", sort=False)):
            ax.plot(runs[levels].median().to_numpy(), levels, color=_color(condition, i), label=condition)
        ax.set_title(layer, fontsize=8)
        ax.set_xlabel("|w|", fontsize=8)
        ax.set_ylabel("cumulative share", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(layers):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=6)
    n = magnitudes["run"].nunique()
    fig.suptitle(f"{study}: weight magnitudes at initialisation (median over {n} run{'s' if n != 1 else ''})",
                 fontsize=10)
    fig.tight_layout()
    return save(fig, stem)
