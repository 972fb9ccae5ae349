"""Figures drawn from the results store's tables (matplotlib, PNG and SVG).

Colours follow Wang et al. where the paper names them (Fig. 1: Frozen Sufficient red, Frozen
RAND green, Fluid blue), and every two conditions of a study get clearly different colours
(:mod:`.colors`); every figure says which study and how many trials stand behind each
point ("3 trials per point", or "2–20 trials per point" where it varies).

Every figure accepts empty, all-NaN and single-point data: a panel without data says so in
its middle ("no run reached 80%", "no finished runs") instead of failing.

Every figure stays readable in the report (``report.html`` is :data:`REPORT_WIDTH_PX` CSS
pixels wide and shows one figure inch as :data:`REPORT_PX_PER_INCH` pixels): figures are at
most :data:`FULL_WIDTH` inches wide, laid out with constrained layout (labels never run into
a neighbouring panel), and :func:`save` hides tick labels that would overlap a neighbour
(close sizes on a log axis keep their ticks, and every other label).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .colors import condition_colors, line_styles  # noqa: E402
from .metrics import MIN_SUCCESS_FOR_MEDIAN  # noqa: E402

__all__ = ["DPI", "FULL_WIDTH", "REPORT_PX_PER_INCH", "REPORT_WIDTH_PX", "RESET_STYLES", "SIGN_CHANGE_SIZES",
           "efficiency_figure", "curves_figure", "mean_std_band", "sign_change_figure", "difference_figure",
           "theory_figure", "reset_figure", "magnitude_figure", "save", "trials_label"]

#: the PNGs' resolution
DPI = 150
#: the report's width in CSS pixels (``report.html``'s ``max-width``)
REPORT_WIDTH_PX = 1100
#: CSS pixels per figure inch in the report: every figure is shown at this scale (its 150-dpi
#: PNG at 2/3 size, sharp on high-density screens), so text has the same size in every figure
#: (10 pt: 14 px; the smallest used, 7 pt: 9.7 px)
REPORT_PX_PER_INCH = 100
#: the widest figure, in inches: wider ones would be shrunk to fit the report, and their text with
#: them (the page's width less the 0.1 in that ``bbox_inches="tight"`` pads on each side)
FULL_WIDTH = REPORT_WIDTH_PX / REPORT_PX_PER_INCH - 0.2

#: the most training sizes the sign-change figure draws (lines beyond that are unreadable)
SIGN_CHANGE_SIZES = 6

#: line style and marker per reset rule (Wang Fig. C.1), the same in every figure
RESET_STYLES = {"posRand": ("-", "o"), "posCon": ("--", "s"), "zero": (":", "^"), "flip": ("-.", "D"),
                "none": ((0, (1, 1)), "x")}
_MORE_STYLES = [((0, (5, 1)), "v"), ((0, (3, 1, 1, 1, 1, 1)), "P"), ((0, (8, 2)), "*"), ((0, (3, 1, 1, 1)), "h")]


def _reset_style(reset: str, others: list[str]) -> tuple:
    """``(linestyle, marker)`` of a reset rule; rules outside :data:`RESET_STYLES` get the
    next unused style in the order of ``others``."""
    if reset in RESET_STYLES:
        return RESET_STYLES[reset]
    extra = [r for r in others if r not in RESET_STYLES]
    return _MORE_STYLES[extra.index(reset) % len(_MORE_STYLES)] if reset in extra else _MORE_STYLES[0]


def _palette(conditions, colors: Mapping[str, str] | None) -> tuple[dict[str, str], dict[str, str]]:
    """``(colour, line style)`` per condition: ``colors`` (the report passes the whole study's, so
    a condition has one colour in every figure) or, without it, :func:`.colors.condition_colors`
    of these conditions; a condition missing from ``colors`` gets one too."""
    conditions = list(dict.fromkeys(conditions))
    given = dict(colors or {})
    missing = [c for c in conditions if c not in given]
    if missing:
        given.update({c: v for c, v in condition_colors([*given, *missing]).items() if c in missing})
    return given, line_styles(given)


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
    fig.canvas.draw()  # lays the figure out, so that the labels' extents are final
    for ax in fig.axes:
        if ax.get_visible():
            _thin_tick_labels(ax, fig.canvas.get_renderer())
    fig.savefig(paths[0], dpi=DPI, bbox_inches="tight")
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


def _thin_tick_labels(ax, renderer, gap: float = 2.0) -> None:
    """Hide each tick label that would overlap the last one kept along its axis (e.g. sizes
    52, 60, 72, 80, 92 on a log axis); the ticks stay, and the last label is kept over its
    neighbour, so both ends of an axis are labelled."""
    for axis, lo, hi in ((ax.xaxis, "x0", "x1"), (ax.yaxis, "y0", "y1")):
        low, high = sorted(axis.get_view_interval())
        slack = (high - low) * 1e-9
        boxes = {t.label1: t.label1.get_window_extent(renderer) for t in axis.get_major_ticks()
                 if low - slack <= t.get_loc() <= high + slack and t.label1.get_visible()
                 and t.label1.get_text().strip()}
        ordered = sorted(boxes, key=lambda label: getattr(boxes[label], lo))
        kept: list = []
        for label in ordered:
            start = getattr(boxes[label], lo)
            if not kept or start >= getattr(boxes[kept[-1]], hi) + gap:
                kept.append(label)
            elif label is ordered[-1] and len(kept) > 1 and start >= getattr(boxes[kept[-2]], hi) + gap:
                kept.pop().set_visible(False)  # the last label wins over its neighbour
                kept.append(label)
            else:
                label.set_visible(False)


def _suptitle(fig, text: str, fontsize: float = 10) -> None:
    """A figure title wrapped to the figure's width (a long study name never widens the figure)."""
    import textwrap

    chars = int(fig.get_figwidth() * 72 / (fontsize * 0.55))
    fig.suptitle("\n".join(textwrap.wrap(text, chars)), fontsize=fontsize)


def _legend_below(fig, handles: list, labels: list[str], fontsize: float = 8, **kw) -> None:
    """One legend under the panels (constrained layout makes room), in as many columns as the
    figure's width holds; the figure grows by the legend's height, so that many entries (a
    learner study's dozens of conditions) never squash the panels."""
    if not handles:
        return
    column = max(map(len, labels)) * fontsize * 0.55 / 72 + 0.9  # inches: text, handle and gap
    ncols = max(1, min(len(labels), int(fig.get_figwidth() // column)))
    rows = -(-len(labels) // ncols)
    fig.set_figheight(fig.get_figheight() + rows * fontsize * 1.75 / 72 + 0.1)
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=fontsize, frameon=False, **kw)


def _no_data(ax, text: str) -> None:
    """Say in the middle of a panel why it is empty."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="0.35",
            bbox={"facecolor": "white", "edgecolor": "0.7", "boxstyle": "round"})


def _size_axis(ax, sizes, label: str = "training samples (n)") -> None:
    """Training sizes (or another grid, e.g. hidden units) on a log axis labelled with the
    values themselves (linear for one value); :func:`save` thins labels that would overlap.

    The limits are set from the values, not the data, so a panel with nothing to draw still
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
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel(label)


#: the x-axis label of each grid a figure can be drawn against
_AXIS_LABELS = {"n_train": "training samples (n)", "hidden": "hidden units"}


def _band(ax, x, values: pd.core.groupby.SeriesGroupBy, color: str, label: str, linestyle="-") -> None:
    median, q25, q75 = values.median(), values.quantile(0.25), values.quantile(0.75)
    ax.plot(x, median.reindex(x), "o", linestyle=linestyle, color=color, label=label, markersize=3)
    ax.fill_between(x, q25.reindex(x), q75.reindex(x), color=color, alpha=0.2, linewidth=0)


def efficiency_figure(per_run: pd.DataFrame, threshold: float, stem: str | os.PathLike[str],
                      study: str = "", by: str = "n_train", colors: Mapping[str, str] | None = None) -> list[Path]:
    """Wang et al. Fig. 1 B/C and Fig. 2: per condition against the training-set size (or
    ``by``, e.g. hidden units), (a) validation error at convergence, (b) the share of trials
    reaching ``threshold``, (c) epochs to reach it (trials that did). Medians with 25th–75th
    percentile bands.

    In (c) a median is drawn (filled, joined) only where at least half the trials reached the
    threshold; where fewer did it is a hollow marker, and where none did, nothing. A panel
    without any such point says "no run reached 80%".

    Args:
        per_run: :func:`polarnet.analysis.metrics.run_metrics` output (one hidden size and reset,
            or with ``by="hidden"`` one training size and reset).
        threshold: the accuracy threshold of panels (b) and (c).
        stem: output path without extension.
        study: the study's name, for the title.
        by: the column along the x axis: ``"n_train"`` (the default) or ``"hidden"``.
        colors: a colour per condition (default: :func:`.colors.condition_colors` of these).

    Returns:
        The PNG and SVG paths.

    Example:
        >>> import tempfile
        >>> per_run = pd.DataFrame({"condition": ["c"] * 2, "n_train": [8, 8], "run": ["a", "b"],
        ...                         "error_at_convergence": [0.5, 0.4], "epochs_to_threshold": [float("nan")] * 2})
        >>> [p.suffix for p in efficiency_figure(per_run, 0.8, tempfile.mkdtemp() + "/fig")]
        ['.png', '.svg']
    """
    fig, axes = plt.subplots(1, 3, figsize=(FULL_WIDTH, 3.6), layout="constrained")
    sizes = sorted(per_run[by].unique())
    sparse = False
    palette, styles = _palette(per_run["condition"], colors)
    for condition, runs in per_run.groupby("condition", sort=False):
        color, line = palette[condition], styles[condition]
        by_size = runs.groupby(by)
        _band(axes[0], sizes, runs.assign(error=runs["error_at_convergence"] * 100).groupby(by)["error"], color,
              condition, line)
        success = by_size["epochs_to_threshold"].apply(lambda s: s.notna().mean()).reindex(sizes)
        axes[1].plot(sizes, success * 100, "o", linestyle=line, color=color, label=condition, markersize=3)
        reached = runs.dropna(subset=["epochs_to_threshold"]).groupby(by)["epochs_to_threshold"]
        median = reached.median().reindex(sizes)
        enough = (success >= MIN_SUCCESS_FOR_MEDIAN).to_numpy()
        axes[2].plot(sizes, median.where(enough), "o", linestyle=line, color=color, label=condition, markersize=3)
        axes[2].fill_between(sizes, reached.quantile(0.25).reindex(sizes).where(enough),
                             reached.quantile(0.75).reindex(sizes).where(enough), color=color, alpha=0.2, linewidth=0)
        few = median.where(~enough & median.notna().to_numpy())
        if few.notna().any():
            sparse = True
            axes[2].plot(sizes, few, "o", markerfacecolor="none", markeredgecolor=color, markersize=5)
    labels = ("validation error at convergence (%)", f"trials reaching {threshold:.0%} accuracy (%)",
              f"epochs to {threshold:.0%} val. accuracy")
    for ax, label in zip(axes, labels):
        _size_axis(ax, sizes, _AXIS_LABELS.get(by, by))
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
    if len(per_run):  # one legend under the panels, where it hides no data
        _legend_below(fig, *axes[2].get_legend_handles_labels())
    trials = trials_label(per_run.groupby(["condition", by]).size()) if len(per_run) else "no trials"
    _suptitle(fig, f"{study}: statistical and computational efficiency (medians, 25th–75th percentiles; {trials})")
    return save(fig, stem)


def mean_std_band(epochs: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per epoch, the mean of ``column`` (an accuracy, 0–1) over runs and the band mean ± standard
    deviation, cut to [0, 1]: a run's accuracy never leaves that range, so neither does the band
    (the spread of runs near 100% would otherwise draw a band above it). One run: no spread.

    Example:
        >>> e = pd.DataFrame({"epoch": [1, 1], "val_acc": [1.0, 0.6]})
        >>> band = mean_std_band(e, "val_acc").round(3)
        >>> float(band["mean"].iloc[0]), float(band["low"].iloc[0]), float(band["high"].iloc[0])
        (0.8, 0.517, 1.0)
    """
    stats = epochs.groupby("epoch")[column].agg(["mean", "std"])
    spread = stats.pop("std").fillna(0)
    stats["low"], stats["high"] = (stats["mean"] - spread).clip(0, 1), (stats["mean"] + spread).clip(0, 1)
    return stats


def curves_figure(epochs: pd.DataFrame, stem: str | os.PathLike[str], study: str = "",
                  mark: float | None = None, colors: Mapping[str, str] | None = None) -> list[Path]:
    """Igoe et al. Fig. 1–2: train and validation accuracy against the epoch, mean ± standard
    deviation over runs per condition (:func:`mean_std_band`: cut at 0 and 100%, which no
    accuracy passes), a dashed line where the mean validation accuracy first
    reaches ``mark`` (the report passes the study's threshold, the first of its stored
    ``thresholds``: 40% in the Igoe presets, as in their figures; none: no line). Finished runs
    only; points get markers when there are few epochs.

    Example:
        >>> import tempfile
        >>> e = pd.DataFrame({"condition": ["c"], "run": ["a"], "status": ["done"], "epoch": [1],
        ...                   "train_acc": [0.6], "val_acc": [0.5]})
        >>> [p.suffix for p in curves_figure(e, tempfile.mkdtemp() + "/curves")]
        ['.png', '.svg']
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True, layout="constrained")
    done = epochs[epochs["status"] == "done"]
    few = done["epoch"].nunique() <= 5 if len(done) else False
    palette, styles = _palette(done["condition"], colors)
    for condition, runs in done.groupby("condition", sort=False):
        color, line = palette[condition], styles[condition]
        for ax, column in zip(axes, ("train_acc", "val_acc")):
            stats = mean_std_band(runs, column)
            if few:  # a band between a handful of epochs hides the spread: error bars instead
                ax.errorbar(stats.index, stats["mean"] * 100, yerr=[(stats["mean"] - stats["low"]) * 100,
                                                                   (stats["high"] - stats["mean"]) * 100],
                            fmt="o", linestyle=line, markersize=3, capsize=3, color=color, label=condition)
            else:
                ax.plot(stats.index, stats["mean"] * 100, color=color, linestyle=line, label=condition)
                ax.fill_between(stats.index, stats["low"] * 100, stats["high"] * 100, color=color, alpha=0.2,
                                linewidth=0)
            if column == "val_acc" and mark is not None:
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
    if len(done):  # under the panels: a legend inside would hide curves
        _legend_below(fig, *axes[1].get_legend_handles_labels())
    runs = trials_label(done.groupby("condition")["run"].nunique()).replace("trial", "run") if len(done) else "no runs"
    dashed = f"; dashed: mean validation accuracy first ≥ {mark:.0%}" if mark is not None else ""
    _suptitle(fig, f"{study}: mean ± std (cut at 0 and 100%), {runs}{dashed}")
    return save(fig, stem)


def sign_change_figure(epochs: pd.DataFrame, condition: str, stem: str | os.PathLike[str], study: str = "",
                       max_epoch: int | None = None, max_layers: int = 8, max_sizes: int | None = None) -> list[Path]:
    """Wang et al. Fig. C.5: the fraction of weights whose sign changed since the previous
    epoch, one panel per layer (the first ``max_layers``), one line per training size (the
    mean over that size's runs of ``condition``), over every recorded epoch or the first
    ``max_epoch`` (Wang et al. show the first 50 of 100); the title says which epochs and sizes.

    Sizes are not pooled: a larger training set takes more steps per epoch, and the paper's
    point is that the decay holds at every size. With more than ``max_sizes`` sizes (default
    :data:`SIGN_CHANGE_SIZES`), that many are drawn, spread evenly over the grid (the smallest
    and the largest among them).
    Means, not medians: a small layer's fraction moves in steps of one weight and is 0 in most
    runs of a late epoch, so its median is 0 while the sign changes go on.

    Raises:
        ValueError: ``condition`` has no finished run.

    Example:
        >>> import tempfile
        >>> e = pd.DataFrame({"condition": ["c"], "run": ["a"], "status": ["done"], "epoch": [1], "n_train": [8],
        ...                   "sign_changes": ['{"0.weight": 0.02}']})
        >>> [p.suffix for p in sign_change_figure(e, "c", tempfile.mkdtemp() + "/c5")]
        ['.png', '.svg']
    """
    import numpy as np

    max_sizes = max_sizes or SIGN_CHANGE_SIZES
    done = epochs[(epochs["condition"] == condition) & (epochs["status"] == "done")]
    if done.empty:
        raise ValueError(f"no finished runs of condition {condition!r} to plot")
    if "n_train" not in done:
        done = done.assign(n_train=0)
    last = int(done["epoch"].max())
    runs = done[done["epoch"] <= max_epoch] if max_epoch is not None else done
    grid = sorted(runs["n_train"].unique())
    sizes = ([grid[int(round(i))] for i in np.linspace(0, len(grid) - 1, max_sizes)] if len(grid) > max_sizes
             else grid)
    runs = runs[runs["n_train"].isin(sizes)]
    layers = pd.DataFrame([json.loads(s) if isinstance(s, str) else s for s in runs["sign_changes"]], index=runs.index)
    layers["epoch"], layers["n_train"] = runs["epoch"], runs["n_train"]
    means = layers.groupby(["n_train", "epoch"]).mean().dropna(axis=1, how="all")
    names = list(means.columns)[:max_layers]
    cols = max(1, min(4, len(names)))
    rows = -(-max(1, len(names)) // cols)
    legend = len(sizes) > 1
    fig, axes = plt.subplots(rows, cols, figsize=(min(FULL_WIDTH, 2.7 * cols + (1.3 if legend else 0.4)),
                                                  2.7 * rows + 0.7), sharex=True, sharey=True, squeeze=False,
                             layout="constrained")
    few = runs["epoch"].nunique() <= 5
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.85, len(sizes)))
    for ax, layer in zip(axes.flat, names):
        for color, n in zip(colors, sizes):
            if n in means.index.get_level_values(0):
                curve = means.loc[n, layer]
                ax.plot(curve.index, curve * 100, "o-" if few else "-", markersize=3, linewidth=1.3, color=color,
                        label=f"n = {n}")
        ax.set_title(layer, fontsize=9)
        ax.set_yscale("symlog", linthresh=0.1)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))
    for ax in axes[:, 0]:
        ax.set_ylabel("weights that changed sign (%)" if rows == 1 else "changed sign (%)")
    for ax in axes[-1, :]:
        ax.set_xlabel("epoch")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    if not names:
        axes[0, 0].set_visible(True)
        _no_data(axes[0, 0], "no sign changes recorded")
    elif legend:  # beside the first row's last panel, below the figure's title
        handles, labels = axes.flat[0].get_legend_handles_labels()
        axes[0, min(cols, len(names)) - 1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                                                  fontsize=8, title="training size", title_fontsize=8,
                                                  frameon=False)
    shown = int(runs["epoch"].max()) if len(runs) else 0
    span = (f"the first {shown} of {last} epochs" if shown < last
            else "epoch 1" if last == 1 else f"all {last} epochs")
    per = trials_label(runs.groupby("n_train")["run"].nunique()).replace("trial", "run")
    which = (f"n = {sizes[0]}" if len(sizes) == 1 else f"{len(sizes)} of {len(grid)} training sizes"
             if len(sizes) < len(grid) else "per training size")
    _suptitle(fig, f"{study}: {condition}, weights that changed sign since the previous epoch, {span}, {which} "
                   f"(mean; {per})")
    return save(fig, stem)


def difference_figure(stats: pd.DataFrame, metric_label: str, stem: str | os.PathLike[str], study: str = "",
                      by: str = "n_train", colors: Mapping[str, str] | None = None) -> list[Path]:
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
    fig, ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")
    ax.axhline(0, color="0.4", linewidth=1)
    palette, styles = _palette(stats["condition"], colors)
    for condition, rows in stats.groupby("condition", sort=False):
        rows = rows.sort_values(by)
        diff = rows["median"] - rows["median_reference"]
        color = palette[condition]
        ax.plot(rows[by], diff, "o", linestyle=styles[condition], color=color, label=condition, markersize=3)
        for x, d, significant in zip(rows[by], diff, rows["significant"]):
            if significant:
                ax.annotate("*", (x, d), textcoords="offset points", xytext=(0, 4), ha="center", color=color,
                            fontsize=12)
    _size_axis(ax, sorted(stats[by].unique()), _AXIS_LABELS.get(by, by))
    ax.set_ylabel(f"median {metric_label} − reference")
    ax.grid(alpha=0.3)
    if len(stats) and (stats["median"] - stats["median_reference"]).notna().any():
        if stats["condition"].nunique() > 4:  # many: under the panel, where it hides nothing
            _legend_below(fig, *ax.get_legend_handles_labels())
        else:
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
    fig, ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")
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


def reset_figure(per_run: pd.DataFrame, stem: str | os.PathLike[str], study: str = "", note: str = "",
                 colors: Mapping[str, str] | None = None) -> list[Path]:
    """Wang et al. Fig. C.1: validation error at convergence against the training size, one
    line per frozen condition and reset rule: the colour is the condition's, the line style
    and marker the rule's (:data:`RESET_STYLES`; fluid runs, which never reset, dotted with
    ×). The rules of a condition are set slightly apart along the size axis (±2% per rule) so
    that equal medians stay visible. ``note`` (e.g. whether the rules differ significantly)
    is printed under the title.

    Example:
        >>> import tempfile
        >>> per_run = pd.DataFrame({"condition": ["c", "c"], "reset": ["zero", "posRand"], "n_train": [8, 8],
        ...                         "error_at_convergence": [0.2, 0.3]})
        >>> [p.suffix for p in reset_figure(per_run, tempfile.mkdtemp() + "/c1")]
        ['.png', '.svg']
    """
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
    sizes = sorted(per_run["n_train"].unique())
    seen = list(dict.fromkeys(per_run["reset"]))  # the paper's rules in its order, then others, fluid last
    rules = [r for r in RESET_STYLES if r in seen and r != "none"] + [r for r in seen if r not in RESET_STYLES]
    frozen_rules = list(rules)
    rules += ["none"] if "none" in seen else []
    palette, _ = _palette(per_run["condition"], colors)
    colors = {}
    for (condition, reset), runs in per_run.groupby(["condition", "reset"], sort=False):
        color = colors.setdefault(condition, palette[condition])
        median = runs.groupby("n_train")["error_at_convergence"].median().reindex(sizes) * 100
        offset = frozen_rules.index(reset) - (len(frozen_rules) - 1) / 2 if reset in frozen_rules else 0
        linestyle, marker = _reset_style(reset, rules)
        ax.plot([n * 1.02 ** offset for n in sizes], median, linestyle=linestyle, marker=marker, color=color,
                markersize=5, markerfacecolor="none" if reset != "none" else color, linewidth=1.3)
    _size_axis(ax, sizes)
    ax.set_ylabel("validation error at convergence (%)")
    ax.grid(alpha=0.3)
    if len(per_run):  # one legend beside the panel: colours name the conditions, styles the rules
        blank = Line2D([], [], linestyle="none")
        handles = [Line2D([], [], color=c, linewidth=2.5) for c in colors.values()] + [blank] + [
            Line2D([], [], color="0.2", linestyle=_reset_style(r, rules)[0], marker=_reset_style(r, rules)[1],
                   markerfacecolor="none" if r != "none" else "0.2") for r in rules]
        names = list(colors) + ["reset rule:"] + [r if r != "none" else "none (fluid)" for r in rules]
        ax.legend(handles, names, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  handlelength=4)
    else:
        _no_data(ax, "no finished runs")
    trials = trials_label(per_run.groupby(["condition", "reset", "n_train"]).size()) if len(per_run) else "no trials"
    import textwrap

    ax.set_title("\n".join([f"{study}: reset rules (medians; {trials})", *textwrap.wrap(note, 95)]), fontsize=9)
    return save(fig, stem)


def magnitude_figure(magnitudes: pd.DataFrame, stem: str | os.PathLike[str], study: str = "",
                     max_layers: int = 8, colors: Mapping[str, str] | None = None) -> list[Path]:
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
        _suptitle(fig, f"{study}: weight magnitudes at initialisation")
        return save(fig, stem)
    cols = min(4, len(layers))
    rows = -(-len(layers) // cols)
    conditions = list(dict.fromkeys(magnitudes["condition"]))
    palette, _ = _palette(conditions, colors)
    width = FULL_WIDTH if len(conditions) > 2 * cols else min(FULL_WIDTH, 2.75 * cols)  # room for a long legend
    fig, axes = plt.subplots(rows, cols, figsize=(width, 2.5 * rows + 0.7), squeeze=False, layout="constrained")
    # coinciding curves are the expected result: dashes of different lengths keep each one visible
    dashes = ["-", (0, (6, 3)), (0, (2, 2)), (0, (8, 2, 2, 2)), (0, (1, 3)), (0, (4, 1, 1, 1, 1, 1))]
    for ax, layer in zip(axes.flat, layers):
        data = magnitudes[magnitudes["layer"] == layer]
        for condition, runs in data.groupby("condition", sort=False):
            i = conditions.index(condition)
            ax.plot(runs[levels].median().to_numpy(), levels, color=palette[condition], label=condition,
                    linestyle=dashes[i % len(dashes)], linewidth=1.4)
        ax.set_title(layer, fontsize=8)
        ax.set_xlabel("|w|", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("cumulative share", fontsize=8)
    for ax in list(axes.flat)[len(layers):]:
        ax.set_visible(False)
    _legend_below(fig, *axes.flat[0].get_legend_handles_labels(), handlelength=3)
    n = magnitudes["run"].nunique()
    _suptitle(fig, f"{study}: weight magnitudes at initialisation (median over {n} run{'s' if n != 1 else ''})")
    return save(fig, stem)
