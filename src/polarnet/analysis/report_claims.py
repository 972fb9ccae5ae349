"""The report's claims: each beside the figure that holds the grid point it was measured at,
once, and a Claims section that counts them, lists those no figure took, and names the claims
the study could not measure because it has no run where the paper made them."""

from __future__ import annotations

import pandas as pd

from .claims import NOT_RUN, Verdict

__all__ = ["holds", "claims_section"]


def holds(panel: pd.DataFrame, verdict: Verdict) -> bool:
    """Whether ``panel`` (per-run rows of one figure) holds the grid point ``verdict`` was
    measured at: one of its hidden sizes and, for frozen runs, one of its reset rules.

    Example:
        >>> panel = pd.DataFrame({"hidden": [64, 64], "reset": ["zero", "none"]})
        >>> holds(panel, Verdict("c", "s", "f", None, hidden=(64,), resets=("posRand",)))
        False
    """
    return bool((not verdict.hidden or panel["hidden"].isin(verdict.hidden).any())
                and (not verdict.resets or panel["reset"].isin(verdict.resets).any()))


def claims_section(verdicts: list[Verdict], unplaced: list[Verdict]) -> str:
    """The Claims section's Markdown: how many claims were measured (each shown once, beside
    its figure) and what they found, the measured claims no figure took (``unplaced``), and one
    line per missing grid point naming the claims made there.

    Example:
        >>> made = Verdict("A beats B", "Wang et al. Fig. 1B", "made at hidden 64, where this study has no run", None,
        ...                outcome=NOT_RUN)
        >>> print(claims_section([made], []))
        Not measured: 1 claim (Wang et al. Fig. 1B) was made at hidden 64, where this study has no run: A beats B.
    """
    measured = [v for v in verdicts if v.outcome != NOT_RUN]
    text = []
    if measured:
        counts = {what: sum(v.agrees is agrees for v in measured) for what, agrees in (
            ("agree", True), ("do not fully agree", False), ("cannot be tested with these runs", None))}
        where = sorted({v.where for v in measured if v.where})
        text.append(f"{len(measured)} of the papers' claims apply to this study and were each measured once"
                    + (f" (at {'; '.join(where)}, where the papers made them)" if where else "")
                    + (", beside their figures above and below" if len(unplaced) < len(measured) else "")
                    + ": " + ", ".join(f"{n} {what}" for what, n in counts.items() if n) + ".")
    if unplaced:
        text.append("\n".join(f"- **{v.claim}** ({v.source}{', ' + v.where if v.where else ''}): {v.finding} — "
                              f"{v.verdict}." for v in unplaced))
    missing: dict[str, list[Verdict]] = {}
    for v in verdicts:
        if v.outcome == NOT_RUN:
            missing.setdefault(v.finding, []).append(v)
    for finding, found in missing.items():
        sources = "; ".join(dict.fromkeys(v.source for v in found))
        many = len(found) != 1
        text.append(f"Not measured: {len(found)} claim{'s' if many else ''} ({sources}) {'were' if many else 'was'} "
                    f"{finding}: " + "; ".join(v.claim for v in found) + ".")
    return "\n\n".join(text)
