"""The reproduction scorecard: every registered claim of both papers (:mod:`.claims`) measured
on the studies that ran, in one self-contained ``scorecard.html`` and a ``scorecard.md``.

``polarnet reproduce`` plans and runs the studies and calls :func:`build_scorecard` with a
:class:`StudyStatus` per study; :func:`required_studies` says which studies and conditions the
claims need, :func:`required_points` which training sizes, widths and reset rules.

Example:
    >>> import tempfile
    >>> html, md = build_scorecard(tempfile.mkdtemp(), {}, mc_trials=200)
    >>> "| Wang |" in md.read_text() and "not planned" in md.read_text()
    True
"""

from __future__ import annotations

import base64
import html as htmllib
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .claims import (AGREES, DISAGREES, INCONCLUSIVE, NOT_RUN, TOLERANCE, VERDICTS, WEAKER, ALPHA, PaperClaim,
                     Result, StudyData, claims)
from .metrics import one_line

__all__ = ["StudyStatus", "required_studies", "required_points", "build_scorecard", "evaluate", "Row"]


@dataclass(frozen=True)
class StudyStatus:
    """What became of one study the scorecard reads.

    Attributes:
        key: the study's key: a preset name (``"xor5d"``, ``"fmnist-alexnet"``, …).
        folder: its study folder (a store :func:`polarnet.experiments.load_results` reads)
            when it ran, else ``None``.
        reason: why it did not run or is incomplete, in words true on this machine.
        report: its own ``report.html``, to link to.
        quick: it ran with reduced settings (a smaller grid than the paper's).
    """

    key: str
    folder: Path | None
    reason: str | None = None
    report: Path | None = None
    quick: bool = False


def required_studies() -> dict[str, tuple[str, ...]]:
    """Study key → the conditions the registered claims need from it (union over claims, in
    the order the claims name them).

    Example:
        >>> required_studies()["xor5d"]
        ('frozen_sufficient', 'fluid_rand', 'frozen_rand')
    """
    out: dict[str, list[str]] = {}
    for claim in claims():
        for need in claim.needs:
            names = out.setdefault(need.study, [])
            names.extend(c for c in need.conditions if c not in names)
    return {key: tuple(names) for key, names in out.items()}


def required_points() -> dict[str, dict[str, tuple]]:
    """Study key → the grid points some claim needs (``sizes``, ``hidden``, ``resets``), or
    names as the paper's example (``focus`` sizes): a reduced (``--quick``) study that keeps
    these still measures every claim on it.

    Example:
        >>> required_points()["xor5d"]["sizes"]
        (60, 72)
    """
    out: dict[str, dict[str, set]] = {}
    for claim in claims():
        for need in claim.needs:
            points = out.setdefault(need.study, {"sizes": set(), "hidden": set(), "resets": set()})
            points["sizes"].update(need.sizes)
            points["hidden"].update(need.hidden)
            points["resets"].update(need.resets)
    return {key: {k: tuple(sorted(v)) for k, v in points.items()} for key, points in out.items()}


# -- evaluation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One claim on the scorecard: the claim, what was found, and where from."""

    index: int
    claim: PaperClaim
    result: Result
    studies: tuple[str, ...]
    quick: bool = False
    notes: tuple[str, ...] = field(default=())


def _load(status: StudyStatus) -> StudyData | str:
    try:
        return StudyData.load(status.folder, key=status.key, quick=status.quick)
    except Exception as error:  # a damaged or missing store: every claim on it is not run, with why
        return f"{status.key}'s store in {status.folder} cannot be read: {one_line(error)}"


def _missing(claim: PaperClaim, studies: Mapping[str, StudyStatus], loaded: dict[str, StudyData | str]) -> str | None:
    """Why ``claim`` cannot be measured, or ``None``."""
    for need in claim.needs:
        status = studies.get(need.study)
        if status is None:
            return f"not planned: no `{need.study}` study was given"
        if status.folder is None:
            return status.reason or f"`{need.study}` did not run"
        if need.study not in loaded:
            loaded[need.study] = _load(status)
        data = loaded[need.study]
        if isinstance(data, str):
            return data
        if data.per_run.empty:
            why = f"no run of `{need.study}` finished"
            return why + (f" ({status.reason})" if status.reason else "")
        found = {c: data.condition(c, need.study) for c in need.conditions}
        lacking = [c for c, f in found.items() if f is None]
        if lacking:
            return f"`{need.study}` ran without {', '.join(lacking)}"
        rows = data.select(need, *need.conditions) if need.conditions else data.per_run
        for column, wanted, label in (("n_train", need.sizes, "n"), ("hidden", need.hidden, "hidden")):
            for name in need.conditions or ("",):
                have = set(int(v) for v in (rows[rows["role"] == name] if name else rows)[column])
                absent = [v for v in wanted if v not in have]
                if absent:
                    ran = ", ".join(map(str, sorted(have))) or "none"
                    return (f"`{need.study}` has no finished {name + ' ' if name else ''}runs at {label} = "
                            f"{', '.join(map(str, absent))} (it ran {label} = {ran})")
        if len(need.resets) > 1:
            ran = set(data.per_run["reset"]) & set(need.resets)
            if len(ran) < 2:
                return f"`{need.study}` ran {len(ran)} of the reset rules {', '.join(need.resets)}; the claim needs two"
    return None


def evaluate(studies: Mapping[str, StudyStatus], loaded: dict[str, StudyData | str] | None = None) -> list[Row]:
    """One :class:`Row` per registered claim: measured where its studies ran, else ``not run``
    with the reason.

    Args:
        studies: study key → :class:`StudyStatus` (a key that is absent is "not planned").
        loaded: a cache of loaded studies (filled as studies are read).
    """
    loaded = {} if loaded is None else loaded
    rows = []
    for index, claim in enumerate(claims(), 1):
        keys = tuple(need.study for need in claim.needs)
        quick = any(studies[k].quick for k in keys if k in studies and studies[k].folder is not None)
        notes = tuple(f"{k}: {studies[k].reason}" for k in keys
                      if k in studies and studies[k].folder is not None and studies[k].reason)
        why = _missing(claim, studies, loaded)
        if why is not None:
            result = Result(NOT_RUN, "—", why)
        else:
            try:
                result = claim.measure({k: loaded[k] for k in keys}, claim)
            except Exception as error:  # the scorecard is still written; the row says what failed
                warnings.warn(f"claim {claim.name}: {error!r}", RuntimeWarning, stacklevel=2)
                result = Result(INCONCLUSIVE, "—", f"the analysis failed: {one_line(repr(error))}")
        rows.append(Row(index, claim, result, keys, quick, notes))
    return rows


# -- the scorecard's files --------------------------------------------------------------------
def build_scorecard(out_dir: str | os.PathLike[str], studies: Mapping[str, StudyStatus], *, budget: str = "",
                    mc_trials: int = 10000) -> tuple[Path, Path]:
    """Write ``out_dir/scorecard.html`` (self-contained: figures embedded as data URIs) and
    ``out_dir/scorecard.md`` (figures in ``out_dir/scorecard-figures/``); return both paths.

    One row per registered claim; a claim whose study is missing from ``studies``, or has
    folder ``None``, is ``not run`` with that study's reason (``not planned`` if absent).

    Args:
        out_dir: the folder to write into (created).
        studies: study key → :class:`StudyStatus`.
        budget: the budget the studies ran under (``quick``, ``cpu``, ``gpu``), for the header.
        mc_trials: Monte Carlo draws per width for Fig. 4A.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded: dict[str, StudyData | str] = {}
    rows = evaluate(studies, loaded)
    figure, fig_md = _fig4a(out, studies, loaded, rows, mc_trials)
    md = _markdown(out, rows, studies, loaded, budget, fig_md, figure)
    md_path, html_path = out / "scorecard.md", out / "scorecard.html"
    md_path.write_text(md, encoding="utf-8")
    html_path.write_text(_html(out, rows, studies, loaded, budget, fig_md, figure), encoding="utf-8")
    return html_path, md_path


def _fig4a(out: Path, studies: Mapping[str, StudyStatus], loaded: dict, rows: list[Row], trials: int) \
        -> tuple[list[Path], str]:
    """Fig. 4A's figure and the text beside it."""
    from .scorecard_figures import fig4a_figure
    from .theory_table import learnability_table, simulated_fractions, which_curve

    width = "xor5d-width"
    data = loaded.get(width)
    if data is None and width in studies and studies[width].folder is not None:
        data = loaded[width] = _load(studies[width])
    sim, dims, source = None, 5, "no `xor5d-width` study ran"
    if isinstance(data, StudyData) and not data.per_run.empty:
        from .claims import Need

        frozen = data.select(Need(width), "frozen_rand")
        sim = simulated_fractions(frozen, data.learned_accuracy)
        dims = int(data.settings.get("dims", 5))
        if len(sim):
            source = (f"`{width}`: Frozen RAND nets at n = {int(sim['n_train'].iloc[0])}, learned = accuracy at "
                      f"convergence ≥ {data.learned_accuracy:.0%}" + (" (quick settings)" if data.quick else ""))
    elif isinstance(data, str):
        source = data
    elif width in studies and studies[width].folder is None:
        source = f"`{width}` did not run: {studies[width].reason or 'no reason given'}"
    units = set(range(2, 33)) | {48, 64} | (set(int(h) for h in sim["hidden"]) if sim is not None else set())
    table = learnability_table(sorted(units), dims, trials=trials, simulated=sim)
    _, finding = which_curve(table)
    paths = fig4a_figure(table, out / "scorecard-figures" / "fig4a", finding=finding)
    shown = table[(table["sim_runs"] > 0) | table["units"].isin([3, 10, 14, 15, 23, 32, 64])]
    lines = ["| units | published bound | per-class count | Monte Carlo (published / per-class) | simulated (95% CI) |",
             "|---|---|---|---|---|"]
    for r in shown.itertuples(index=False):
        simulated = (f"{r.simulated:.0%} of {r.sim_runs} ({r.sim_low:.0%}–{r.sim_high:.0%})" if r.sim_runs else "—")
        lines.append(f"| {r.units} | {r.published:.4f} | {r.per_class:.4f} | {r.mc_published:.3f} / "
                     f"{r.mc_per_class:.3f} | {simulated} |")
    text = (f"The probability that a randomly signed Frozen-Net with a given number of hidden units can learn "
            f"XOR-{dims}D: "
            f"the published bound (Thm D.1, as printed), the count over the 4 compatible classes (the signs of the "
            f"irrelevant inputs do not change what a unit does for XOR), their Monte Carlo estimates ({trials:,} draws "
            f"per width), and the simulated fraction of nets that learned ({source}). **Finding:** {finding}")
    return paths, text + "\n\n" + "\n".join(lines)


def _cell(value) -> str:
    return one_line(value).replace("\\", "\\\\").replace("|", "\\|")


_PAPERS = {"Wang": "Wang et al., *Polarity is all you need to learn and transfer faster* (ICML 2023)",
           "Igoe": "Igoe et al., *A study on polarity distributions for network learning* (ICLR 2024 Tiny Papers)"}


def _counts(rows: list[Row]) -> str:
    counts = {v: sum(r.result.verdict == v for r in rows) for v in VERDICTS}
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n)


def _how() -> str:
    return (f"**How to read it.** Each row is one claim, with the paper's number where it gives one and "
            f"polarnet's, measured the same way on the studies below, with a 95% percentile bootstrap interval "
            f"(seeded, so the same data give the same interval). A number **agrees** when the paper's value lies "
            f"inside polarnet's interval or within ±{TOLERANCE:.0%} of the paper's effect (its distance from no "
            f"effect: a difference of 0, a ratio of 1), and the interval excludes no effect; **same direction, "
            f"different size** when polarnet's effect points the same way but is outside both (the row says how "
            f"far); **disagrees** when it points the other way. \"Always\" claims need a significant difference at "
            f"every size, \"never worse\" means never significantly worse, \"sometimes better\" means significantly "
            f"better at some size: two-tailed Mann–Whitney U per training size (Fisher's exact test for success "
            f"rates, Brown–Forsythe for spread), Holm–Bonferroni across the sizes, α = {ALPHA:g}. "
            f"**Inconclusive**: the study ran, but cannot decide (too few runs for any test to be significant, no "
            f"run reached the threshold, or an interval that holds both the paper's number and no effect). "
            f"**Not run**: the data are missing, with the reason. Rows marked *quick* rest on studies run with "
            f"reduced settings (fewer sizes, trials or epochs than the paper).")


def _links(out: Path, row: Row, studies: Mapping[str, StudyStatus], markdown: bool) -> str:
    parts = []
    for key in row.studies:
        status = studies.get(key)
        if status is not None and status.report is not None:
            href = os.path.relpath(status.report, out)
            parts.append(f"[{key}]({href})" if markdown else
                         f'<a href="{htmllib.escape(href)}">{htmllib.escape(key)}</a>')
        else:
            parts.append(key if markdown else htmllib.escape(key))
    return ", ".join(parts) or "—"


def _study_table(studies: Mapping[str, StudyStatus], loaded: dict, out: Path) -> pd.DataFrame:
    records = []
    needed = required_studies()
    for key in sorted(set(needed) | set(studies)):
        status = studies.get(key)
        data = loaded.get(key)
        if status is None:
            state, what = "not planned", ""
        elif status.folder is None:
            state, what = "not run", status.reason or ""
        elif isinstance(data, StudyData):
            done = len(data.per_run)
            sizes = sorted(set(int(n) for n in data.per_run["n_train"])) if done else []
            state = f"ran{' (quick)' if status.quick else ''}: {done} runs finished"
            what = (f"sizes {', '.join(map(str, sizes))}; {data.settings.get('trials', '?')} trials, "
                    f"{data.settings.get('epochs', '?')} epochs" if sizes else "") \
                + (f"; {status.reason}" if status.reason else "")
        else:
            state, what = "ran", (data if isinstance(data, str) else status.reason or "")
        report = ""
        if status is not None and status.report is not None:
            report = os.path.relpath(status.report, out)
        records.append({"study": key, "state": state, "settings / reason": what, "report": report,
                        "claims": sum(key in [n.study for n in c.needs] for c in claims())})
    return pd.DataFrame(records)


def _detail_table(result: Result) -> pd.DataFrame | None:
    table = result.table
    if table is None or not isinstance(table, pd.DataFrame) or table.empty:
        return None
    keep = [c for c in ("condition", "rule_a", "rule_b", "units", "hidden", "n_train", "n_a", "n_b", "stat_a",
                        "stat_b", "difference", "ci_low", "ci_high", "p", "p_holm", "significant", "published",
                        "per_class", "simulated", "sim_runs") if c in table]
    return table[keep]


def _fmt_detail(value) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return _cell(value)


def _markdown(out: Path, rows: list[Row], studies, loaded, budget: str, fig_md: str, figure: list[Path]) -> str:
    lines = ["# Reproduction scorecard", ""]
    lines.append(f"{len(rows)} claims of the two papers{f', budget `{budget}`' if budget else ''}: {_counts(rows)}.")
    lines += ["", _how(), ""]
    for paper, title in _PAPERS.items():
        mine = [r for r in rows if r.claim.paper == paper]
        lines += [f"## {title}", "", f"{_counts(mine)}.", "",
                  "| # | paper | where | claim | paper's number | polarnet (95% CI) | verdict | why / test | study |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in mine:
            verdict = r.result.verdict + (" *(quick)*" if r.quick and r.result.verdict != NOT_RUN else "")
            why = r.result.finding + (f" — Test: {r.result.test}" if r.result.test else "")
            if r.notes:
                why += " — Note: " + "; ".join(r.notes)
            lines.append("| " + " | ".join(_cell(v) for v in (
                r.index, r.claim.paper, r.claim.where, r.claim.claim, r.claim.number or "—", r.result.number,
                verdict, why)) + " | " + _links(out, r, studies, markdown=True) + " |")
        lines.append("")
    rel = os.path.relpath(figure[0], out) if figure else ""
    lines += ["## Wang et al. Fig. 4A: learnability against hidden units", "", f"![Fig. 4A]({rel})", "", fig_md, ""]
    lines += ["## Studies", "", "| study | state | settings / reason | report | claims |", "|---|---|---|---|---|"]
    for s in _study_table(studies, loaded, out).itertuples(index=False):
        report = f"[report.html]({s.report})" if s.report else "—"
        lines.append(f"| {_cell(s.study)} | {_cell(s.state)} | {_cell(s[2]) or '—'} | {report} | {s.claims} |")
    lines += ["", "## Details", ""]
    for r in rows:
        table = _detail_table(r.result)
        if table is None:
            continue
        lines += [f"### {r.index}. {_cell(r.claim.claim)}", "", "| " + " | ".join(table.columns) + " |",
                  "|" + "---|" * len(table.columns)]
        lines += ["| " + " | ".join(_fmt_detail(v) for v in rec) + " |" for rec in table.itertuples(index=False)]
        lines.append("")
    return "\n".join(lines)


_COLOURS = {AGREES: "#d4efd4", WEAKER: "#fdf0c2", DISAGREES: "#f7cfcf", INCONCLUSIVE: "#e6e6ee", NOT_RUN: "#f4f4f4"}

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Reproduction scorecard</title>
<style>
body {{ font-family: sans-serif; max-width: 1400px; margin: 2em auto; line-height: 1.45; color: #222; padding: 0 1em; }}
table {{ border-collapse: collapse; font-size: 0.82em; margin: 1em 0; display: block; overflow-x: auto; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; text-align: left; }}
th {{ background: #f3f3f3; }} td.num {{ white-space: nowrap; }}
img {{ max-width: 100%; height: auto; display: block; }}
details {{ margin: 0.4em 0; }} summary {{ cursor: pointer; }}
.test {{ color: #555; font-size: 0.92em; }} .quick {{ font-style: italic; color: #805b00; }}
</style></head>
<body><h1>Reproduction scorecard</h1>
{body}
</body></html>
"""


def _inline(text: str) -> str:
    """Escape, then ``**bold**`` and ``*italic*`` and `` `code` ``."""
    import re

    out = htmllib.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def _html(out: Path, rows: list[Row], studies, loaded, budget: str, fig_md: str, figure: list[Path]) -> str:
    shown = f", budget <code>{htmllib.escape(budget)}</code>" if budget else ""
    parts = [f"<p>{len(rows)} claims of the two papers{shown}"
             f": {htmllib.escape(_counts(rows))}.</p>", f"<p>{_inline(_how())}</p>"]
    for paper, title in _PAPERS.items():
        mine = [r for r in rows if r.claim.paper == paper]
        parts.append(f"<h2>{_inline(title)}</h2><p>{htmllib.escape(_counts(mine))}.</p>")
        parts.append("<table><tr><th>#</th><th>where</th><th>claim</th><th>paper's number</th>"
                     "<th>polarnet (95% CI)</th><th>verdict</th><th>why / test</th><th>study</th></tr>")
        for r in mine:
            colour = _COLOURS.get(r.result.verdict, "#fff")
            quick = ' <span class="quick">(quick)</span>' if r.quick and r.result.verdict != NOT_RUN else ""
            notes = ("<br><i>Note: " + htmllib.escape("; ".join(r.notes)) + "</i>") if r.notes else ""
            test = f'<br><span class="test">Test: {htmllib.escape(r.result.test)}</span>' if r.result.test else ""
            parts.append(
                f'<tr id="claim-{r.index}"><td>{r.index}</td><td>{htmllib.escape(r.claim.where)}</td>'
                f"<td>{htmllib.escape(r.claim.claim)}</td><td>{htmllib.escape(r.claim.number or '—')}</td>"
                f"<td>{htmllib.escape(r.result.number)}</td>"
                f'<td style="background:{colour}"><b>{htmllib.escape(r.result.verdict)}</b>{quick}</td>'
                f"<td>{_inline(r.result.finding)}{test}{notes}</td>"
                f"<td>{_links(out, r, studies, markdown=False)}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Wang et al. Fig. 4A: learnability against hidden units</h2>")
    png = next((p for p in figure if p.suffix == ".png"), None)
    if png is not None:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f'<img alt="Wang et al. Fig. 4A" src="data:image/png;base64,{data}">')
    text, _, table = fig_md.partition("\n\n")
    parts.append(f"<p>{_inline(text)}</p>" + _md_table_html(table))
    parts.append("<h2>Studies</h2><table><tr><th>study</th><th>state</th><th>settings / reason</th><th>report</th>"
                 "<th>claims</th></tr>")
    for s in _study_table(studies, loaded, out).itertuples(index=False):
        report = f'<a href="{htmllib.escape(s.report)}">report.html</a>' if s.report else "—"
        parts.append(f"<tr><td>{htmllib.escape(s.study)}</td><td>{htmllib.escape(s.state)}</td>"
                     f"<td>{htmllib.escape(s[2]) or '—'}</td><td>{report}</td><td>{s.claims}</td></tr>")
    parts.append("</table><h2>Details</h2>")
    for r in rows:
        table = _detail_table(r.result)
        if table is None:
            continue
        head = "".join(f"<th>{htmllib.escape(str(c))}</th>" for c in table.columns)
        body = "".join("<tr>" + "".join(f"<td class=\"num\">{htmllib.escape(_fmt_detail(v))}</td>" for v in rec)
                       + "</tr>" for rec in table.itertuples(index=False))
        parts.append(f"<details><summary>{r.index}. {htmllib.escape(r.claim.claim)}</summary>"
                     f"<table><tr>{head}</tr>{body}</table></details>")
    return _PAGE.format(body="\n".join(parts))


def _md_table_html(table: str) -> str:
    lines = [l for l in table.strip().split("\n") if l.startswith("|") and not l.startswith("|---")]
    if not lines:
        return ""
    cells = [[c.strip() for c in l.strip("|").split("|")] for l in lines]
    head, *body = cells
    return ("<table><tr>" + "".join(f"<th>{htmllib.escape(c)}</th>" for c in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{htmllib.escape(c)}</td>" for c in r) + "</tr>" for r in body)
            + "</table>")
