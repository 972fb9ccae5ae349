"""Figures of the reproduction scorecard (:mod:`.scorecard`): Wang et al. Fig. 4A."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["fig4a_figure"]

#: Wang et al. Fig. 4: Frozen RAND is green; the theory curves share its colour, the simulation is black
_GREEN = "#2ca02c"


def fig4a_figure(table: pd.DataFrame, stem: str | os.PathLike[str], finding: str = "", paper_units: int = 15) \
        -> list[Path]:
    """Wang et al. Fig. 4A: the probability that a Frozen RAND net can learn XOR against hidden
    units — the published bound (Thm D.1), the per-class count, their Monte Carlo estimates
    and, where simulated, the fraction of nets that learned with its 95% interval — with the
    paper's 99% line and its 15 units, and ``finding`` under the title.

    Args:
        table: :func:`.theory_table.learnability_table`'s columns.
        stem: where to write ``stem.png`` and ``stem.svg``.
        finding: the sentence saying which curve the simulation follows.
        paper_units: the width the paper names for > 99% (a dotted vertical line).

    Example:
        >>> import tempfile
        >>> from polarnet.analysis.theory_table import learnability_table
        >>> [p.suffix for p in fig4a_figure(learnability_table([2, 3, 15], trials=100), tempfile.mkdtemp() + "/f")]
        ['.png', '.svg']
    """
    from .figures import save

    fig, ax = plt.subplots(figsize=(7.0, 4.2), layout="constrained")
    dims = table.attrs.get("dims", 5)
    ax.plot(table["units"], table["published"], "-", color=_GREEN, label=f"published bound (Thm D.1, d = {dims})")
    ax.plot(table["units"], table["per_class"], "--", color=_GREEN, label="per-class count")
    ax.plot(table["units"], table["mc_published"], ".", color="0.45", markersize=3,
            label="Monte Carlo of both")
    ax.plot(table["units"], table["mc_per_class"], ".", color="0.45", markersize=3)
    sim = table[table.get("sim_runs", pd.Series(0, index=table.index)) > 0] if "sim_runs" in table else table.iloc[0:0]
    if len(sim):
        runs = sorted(set(int(r) for r in sim["sim_runs"]))
        count = f"{runs[0]}" if len(runs) == 1 else f"{runs[0]}–{runs[-1]}"
        label = f"simulated Frozen RAND, 95% CI ({count} nets per width)"
        ax.errorbar(sim["units"], sim["simulated"], yerr=[sim["simulated"] - sim["sim_low"],
                                                          sim["sim_high"] - sim["simulated"]],
                    fmt="o", color="k", markersize=4, capsize=2, linewidth=0.8, label=label)
    else:
        ax.text(0.98, 0.3, "no simulation (run xor5d-width)", transform=ax.transAxes, ha="right", fontsize=8,
                color="0.4")
    ax.axhline(0.99, color="0.6", linewidth=0.8, linestyle=":")
    ax.axvline(paper_units, color="0.6", linewidth=0.8, linestyle=":")
    ax.text(paper_units * 1.03, 0.62, f"paper: {paper_units} units for > 99%", fontsize=7, color="0.35", rotation=90,
            va="center")
    ax.set_xscale("log", base=2)
    ax.set_xticks([2, 3, 5, 10, 15, 23, 32, 64])
    ax.set_xticklabels(["2", "3", "5", "10", "15", "23", "32", "64"])
    ax.set_xlabel("hidden units")
    ax.set_ylabel("probability of learning XOR")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    title = "Wang et al. Fig. 4A: learnability of randomly signed Frozen-Nets"
    if finding:
        title += "\n" + "\n".join(textwrap.wrap(finding.split(" (")[0], 100))
    ax.set_title(title, fontsize=8.5)
    return save(fig, stem)
