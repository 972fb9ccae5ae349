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

__all__ = ["COLORS", "efficiency_figure", "curves_figure", "sign_change_figure", "save"]

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
        ax.set_xscale("log")
        ax.set_xticks(sizes)  # the sizes themselves, not log-scale decades
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.tick_params(axis="x", labelsize=7, labelrotation=45)
        ax.set_xlabel("training samples (n)")
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
