"""Figures drawn from the results store's tables (matplotlib, PNG and SVG).

Colours follow Wang et al. where the paper names them (Fig. 1: Frozen Sufficient red, Frozen
RAND green, Fluid blue); every figure says which study and how many trials it shows.
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

__all__ = ["COLORS", "efficiency_figure", "curves_figure", "sign_change_figure", "difference_figure", "theory_figure",
           "reset_figure", "magnitude_figure", "save"]

COLORS = {
    "frozen_sufficient": "#d62728", "frozen_rand": "#2ca02c", "fluid_rand": "#1f77b4", "fluid_sufficient": "#ff7f0e",
    "frozen_in_polarity": "#d62728", "fluid_in_polarity": "#ff7f0e", "fluid_in_weight": "#9467bd",
    "frozen_in_weight": "#8c564b", "freeze_spin": "#d62728", "fluid_spin": "#ff7f0e", "fluid_in": "#1f77b4",
}


def _color(condition: str, index: int) -> str:
    return COLORS.get(condition, f"C{index % 10}")


def save(fig, stem: str | os.PathLike[str]) -> list[Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.svg``; close the figure; return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def _size_axis(ax, sizes) -> None:
    """Training sizes on a log axis labelled with the sizes themselves (linear for one size)."""
    if len(sizes) > 1:
        ax.set_xscale("log")
    ax.set_xticks(list(sizes))
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

    Args:
        per_run: :func:`polarnet.analysis.metrics.run_metrics` output (one hidden size and reset).
        threshold: the accuracy threshold of panels (b) and (c).
        stem: output path without extension.
        study: the study's name, for the title.
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    sizes = sorted(per_run["n_train"].unique())
    for i, (condition, runs) in enumerate(per_run.groupby("condition", sort=False)):
        color = _color(condition, i)
        by_size = runs.groupby("n_train")
        _band(axes[0], sizes, runs.assign(error=runs["error_at_convergence"] * 100).groupby("n_train")["error"], color,
              condition)
        success = by_size["epochs_to_threshold"].apply(lambda s: s.notna().mean() * 100)
        axes[1].plot(sizes, success.reindex(sizes), "o-", color=color, label=condition, markersize=3)
        _band(axes[2], sizes, runs.dropna(subset=["epochs_to_threshold"]).groupby("n_train")["epochs_to_threshold"],
              color, condition)
    labels = ("validation error at convergence (%)", f"trials reaching {threshold:.0%} accuracy (%)",
              f"epochs to {threshold:.0%} validation accuracy")
    for ax, label in zip(axes, labels):
        _size_axis(ax, sizes)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(-5, 105)
    axes[0].legend(fontsize=8)
    trials = int(per_run.groupby(["condition", "n_train"]).size().max()) if len(per_run) else 0
    fig.suptitle(f"{study}: statistical and computational efficiency (medians, 25th–75th percentiles; "
                 f"{trials} trials per point)", fontsize=10)
    return save(fig, stem)


def curves_figure(epochs: pd.DataFrame, stem: str | os.PathLike[str], study: str = "", mark: float = 0.4) -> list[Path]:
    """Igoe et al. Fig. 1–2: train and validation accuracy against the epoch, mean ± standard
    deviation over runs per condition, a dashed line where the mean validation accuracy first
    reaches ``mark``."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    done = epochs[epochs["status"] == "done"]
    for i, (condition, runs) in enumerate(done.groupby("condition", sort=False)):
        color = _color(condition, i)
        for ax, column in zip(axes, ("train_acc", "val_acc")):
            stats = runs.groupby("epoch")[column].agg(["mean", "std"]).fillna(0)
            ax.plot(stats.index, stats["mean"] * 100, color=color, label=condition)
            ax.fill_between(stats.index, (stats["mean"] - stats["std"]) * 100, (stats["mean"] + stats["std"]) * 100,
                            color=color, alpha=0.2, linewidth=0)
            if column == "val_acc":
                reached = stats.index[stats["mean"] >= mark]
                if len(reached):
                    ax.axvline(reached[0], color=color, linestyle="--", linewidth=1)
    for ax, title in zip(axes, ("training accuracy", "validation accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[1].legend(fontsize=8)
    runs = int(done.groupby("condition")["run"].nunique().max()) if len(done) else 0
    fig.suptitle(f"{study}: mean ± std over {runs} runs; dashed: mean validation accuracy first ≥ {mark:.0%}",
                 fontsize=10)
    return save(fig, stem)


def sign_change_figure(epochs: pd.DataFrame, condition: str, stem: str | os.PathLike[str], study: str = "",
                       max_epoch: int = 50) -> list[Path]:
    """Wang et al. Fig. C.5: per layer, the fraction of weights whose sign changed since the
    previous epoch (median over runs), for the first ``max_epoch`` epochs of ``condition``."""
    runs = epochs[(epochs["condition"] == condition) & (epochs["status"] == "done") & (epochs["epoch"] <= max_epoch)]
    if runs.empty:
        raise ValueError(f"no finished runs of condition {condition!r} to plot")
    layers = pd.DataFrame([json.loads(s) if isinstance(s, str) else s for s in runs["sign_changes"]], index=runs.index)
    layers["epoch"] = runs["epoch"]
    medians = layers.groupby("epoch").median()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, layer in enumerate(medians.columns):
        ax.plot(medians.index, medians[layer] * 100, label=layer, color=f"C{i % 10}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("weights that changed sign (%)")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    n = runs["run"].nunique()
    ax.set_title(f"{study}: {condition}, sign changes per epoch (median of {n} runs)", fontsize=9)
    return save(fig, stem)


def difference_figure(stats: pd.DataFrame, metric_label: str, stem: str | os.PathLike[str], study: str = "",
                      by: str = "n_train") -> list[Path]:
    """Wang et al. Fig. 3: each condition's median minus the reference's, against ``by``, with an
    asterisk where the Holm-corrected Mann–Whitney test is significant.

    Args:
        stats: :func:`polarnet.analysis.stats.compare_to_reference` output.
        metric_label: the compared metric, for the axis label.
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
    ax.legend(fontsize=8)
    reference = stats["reference"].iloc[0] if "reference" in stats and len(stats) else "reference"
    trials = int(stats[["n_a", "n_b"]].max().max()) if len(stats) else 0
    ax.set_title(f"{study}: difference to {reference}, up to {trials} trials per point\n"
                 f"(* Holm-corrected p < 0.05, two-tailed Mann–Whitney U)", fontsize=9)
    return save(fig, stem)


def theory_figure(table: pd.DataFrame, stem: str | os.PathLike[str], study: str = "") -> list[Path]:
    """Wang et al. Fig. 4A: P(a Frozen RAND net can learn XOR) against hidden units — the
    published bound, the per-class count, their Monte Carlo estimates and, where the table has
    it, the fraction of simulated nets that learned."""
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
    line per frozen condition and reset rule (fluid runs as the dashed reference)."""
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
    ax.legend(fontsize=7)
    trials = int(per_run.groupby(["condition", "reset", "n_train"]).size().max()) if len(per_run) else 0
    ax.set_title(f"{study}: reset rules (medians of {trials} trials per point)", fontsize=9)
    return save(fig, stem)


def magnitude_figure(magnitudes: pd.DataFrame, stem: str | os.PathLike[str], study: str = "",
                     max_layers: int = 8) -> list[Path]:
    """Wang et al. Fig. C.6: per layer, the distribution of ``|w|`` at initialisation (after
    alignment) per condition, as the median over runs of each quantile — identical curves mean
    identical magnitude distributions (only IN-Weight conditions should differ)."""
    levels = [c for c in magnitudes.columns if isinstance(c, float)]
    layers = list(dict.fromkeys(magnitudes["layer"]))[:max_layers]
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
    fig.suptitle(f"{study}: weight magnitudes at initialisation (median over {magnitudes['run'].nunique()} runs)",
                 fontsize=10)
    fig.tight_layout()
    return save(fig, stem)
