"""Markdown tables whose cells stay cells: the report's and the learner comparison's tables
(here rather than in :mod:`.report`, so that the sections the report includes can use them
without importing the report back).
"""

from __future__ import annotations

import pandas as pd

from .metrics import one_line

__all__ = ["markdown_cell", "markdown_table"]


def markdown_cell(value) -> str:
    """One table cell's text, escaped so that it stays one cell: ``\\`` and ``|`` get a
    backslash, and newlines and other control characters are written as escapes (``\\n``).

    Example:
        >>> print(markdown_cell("a|b\\nc"))
        a\\|b\\\\nc
    """
    return one_line(value).replace("\\", "\\\\").replace("|", "\\|")


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a Markdown table; floats to ``digits`` places, NaN as a dash, and every
    other cell escaped by :func:`markdown_cell` (a ``|`` or a newline in a condition name never
    adds a column or splits a row).

    Example:
        >>> print(markdown_table(pd.DataFrame({"a": [1.0, float("nan")]}), 1))
        | a |
        |---|
        | 1.0 |
        | — |
    """
    def cell(v) -> str:
        if isinstance(v, float):
            return "—" if v != v else f"{v:.{digits}f}"
        return markdown_cell(v)

    head = "| " + " | ".join(map(markdown_cell, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])
