"""``polarnet report``: one self-contained ``report.html`` (figures embedded, nothing fetched
from the network) and ``report.md`` (figures beside it), read only from the results store."""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

import pandas as pd

from ..experiments.store import Store
from .claims import check_claims
from .figures import (curves_figure, difference_figure, efficiency_figure, magnitude_figure, reset_figure,
                      sign_change_figure, theory_figure)
from .metrics import run_metrics, summary_table
from .stats import compare_to_reference

__all__ = ["build_report", "markdown_table"]

_REFERENCES = ("fluid_rand", "fluid_in_weight", "fluid_in")


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a Markdown table; floats to ``digits`` places, NaN as a dash.

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
        return str(v)

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def build_report(folder: str | os.PathLike[str], output: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` for the study in ``folder``.

    Args:
        folder: a study folder holding ``results.sqlite``.
        output: where to write (a folder, or a file path whose stem names both files);
            default: ``folder``.

    Returns:
        ``(html_path, markdown_path)``.
    """
    folder = Path(folder)
    with Store.existing(folder) as store:
        facts, runs, epochs, magnitudes = store.study(), store.runs(), store.epochs(), store.magnitudes()
    out = Path(output) if output else folder
    stem = out.with_suffix("") if out.suffix else out / "report"
    stem.parent.mkdir(parents=True, exist_ok=True)
    figures_dir = stem.parent / f"{stem.name}-figures"
    settings = facts.get("settings", {})
    name = settings.get("name", folder.name)
    thresholds = tuple(settings.get("thresholds", [0.8]))
    threshold = thresholds[0]
    per_run = run_metrics(epochs, threshold, thresholds=thresholds)

    sections: list[tuple[str, str, list[Path]]] = []  # (title, markdown body, figures)
    # claims are checked per panel (hidden size × reset rule), so rules and widths never mix
    panels = list(_panels(per_run)) if not per_run.empty else []
    verdicts = {label: check_claims(panel, threshold) for label, panel in panels}

    def beside(figure: str, label: str) -> str:
        """The claims a figure bears on, each with this study's computed finding."""
        lines = [f"- **Claim ({v.source}):** {v.claim}. **Here:** {v.finding} — "
                 f"{'this study agrees' if v.agrees else 'this study does not fully agree'}."
                 for v in verdicts.get(label, []) if v.figure == figure]
        return ("\n\n" + "\n".join(lines)) if lines else ""

    counts = runs["status"].value_counts().to_dict()
    sections.append(("Study", f"**{name}** — {settings.get('description', '')}\n\n"
                     f"Runs: {len(runs)} ({', '.join(f'{v} {k}' for k, v in counts.items())}). "
                     f"Software: {runs['versions'].iloc[0] if len(runs) else '—'}.", []))
    if not per_run.empty:
        summary = summary_table(per_run)
        sections.append(("Per condition", markdown_table(summary), []))
        for label, panel in panels:
            paths = efficiency_figure(panel, threshold, figures_dir / f"efficiency-{_slug(label)}",
                                      study=f"{name}{' (' + label + ')' if label else ''}")
            sections.append((f"Efficiency{' — ' + label if label else ''}",
                             "Validation error at convergence, share of trials reaching the threshold, and epochs to "
                             "reach it, against the training-set size (Wang et al. Fig. 1 B/C, Fig. 2)."
                             + beside("efficiency", label), paths))
            for extra in thresholds[1:]:  # Wang et al. Fig. C.2/C.4: the same at other thresholds
                other = panel.assign(epochs_to_threshold=panel[f"epochs_to_{extra:g}"])
                paths = efficiency_figure(other, extra, figures_dir / f"efficiency-{_slug(label)}-{extra:g}",
                                          study=f"{name}{' (' + label + ')' if label else ''}")
                sections.append((f"Efficiency at {extra:.0%}{' — ' + label if label else ''}",
                                 "The same at another accuracy threshold (Wang et al. Fig. C.2/C.4).", paths))
        if len(set(per_run["reset"]) - {"none"}) > 1:
            paths = reset_figure(per_run, figures_dir / "reset-rules", study=name)
            sections.append(("Reset rules", "Error at convergence per reset rule (Wang et al. Fig. C.1).", paths))
        chance = _chance(settings)
        convergence = per_run.assign(converged=(per_run["final_accuracy"] > chance)).groupby("condition").agg(
            runs=("run", "count"), converged=("converged", "mean"), final_accuracy=("final_accuracy", "mean"),
            final_accuracy_std=("final_accuracy", "std")).reset_index()
        sections.append(("Convergence", f"Share of runs whose final validation accuracy beats chance ({chance:.0%}), "
                         "and the final accuracy, mean and standard deviation (Igoe et al. Table 1).\n\n"
                         + markdown_table(convergence), []))
        if settings.get("dataset") == "xor" and per_run["hidden"].nunique() > 2:
            from .theory_table import theory_table

            table = theory_table(sorted(per_run["hidden"].unique()), settings.get("dims", 5), trials=20000,
                                 folder=folder)
            paths = theory_figure(table, figures_dir / "theory", study=name)
            sections.append(("Learnability", "The App. D bounds against the fraction of Frozen RAND nets that "
                             "learned (Wang et al. Fig. 4A; see docs/theory.md).\n\n" + markdown_table(table, 3), paths))
        mark = 0.4 if settings.get("dataset", "xor") != "xor" else threshold  # Igoe's 40% is below XOR's chance
        curves = curves_figure(epochs[epochs["n_train"] == epochs["n_train"].max()], figures_dir / "curves",
                               study=f"{name}, n = {epochs['n_train'].max()}", mark=mark)
        sections.append(("Learning curves", "Training and validation accuracy per epoch at the largest training set "
                         "(Igoe et al. Fig. 1–2).", curves))
        fluid = next((c for c in _REFERENCES if c in set(epochs["condition"])), None)
        if fluid is not None:
            signs = sign_change_figure(epochs, fluid, figures_dir / "sign-changes", study=name)
            sections.append(("Sign changes", f"Fraction of weights whose sign changed per epoch, {fluid} "
                             "(Wang et al. Fig. C.5).", signs))
        if not magnitudes.empty:
            paths = magnitude_figure(magnitudes, figures_dir / "magnitudes", study=name)
            sections.append(("Magnitudes at initialisation", "Distribution of |w| per layer and condition after "
                             "alignment (Wang et al. Fig. C.6): conditions share their magnitude draw, so the curves "
                             "coincide except for conditions that copy source weights.", paths))
        if any(verdicts.values()):
            lines = [f"- **{v.claim}** ({v.source}{', ' + label if label else ''}): {v.finding} — "
                     f"{'this study agrees' if v.agrees else 'this study does not fully agree'}."
                     for label, found in verdicts.items() for v in found]
            sections.append(("Claims", "All the papers' claims this study can test, as beside the figures above "
                             "and below.\n\n" + "\n".join(lines), []))
        reference = next((c for c in _REFERENCES if c in set(per_run["condition"])), None)
        if reference is not None and per_run["condition"].nunique() > 1:
            for label, panel in panels:
                stats = compare_to_reference(panel, "error_at_convergence", reference)
                paths = difference_figure(stats, "error at convergence", figures_dir / f"differences-{_slug(label)}",
                                          study=name) if len(stats) else []
                sections.append((f"Statistics: error at convergence vs {reference}{' — ' + label if label else ''}",
                                 "Two-tailed Mann–Whitney U per size, Holm–Bonferroni across the table, rank-biserial "
                                 "r (negative: lower error than the reference); the figure shows median differences "
                                 "(Wang et al. Fig. 3)." + beside("difference", label) + "\n\n"
                                 + markdown_table(stats, 4),
                                 paths))
    if facts.get("transfer_report_text"):
        sections.append(("Transfer", "```\n" + facts["transfer_report_text"] + "\n```", []))
    sections.append(("Settings", "```json\n" + json.dumps(settings, indent=2, default=list) + "\n```", []))

    md_path, html_path = stem.with_suffix(".md"), stem.with_suffix(".html")
    md = [f"# polarnet report: {name}\n"]
    body = []
    for title, text, paths in sections:
        md.append(f"## {title}\n\n{text}\n")
        body.append(f"<h2>{html.escape(title)}</h2>\n{_html_text(text)}")
        for path in paths:
            if path.suffix == ".png":
                md.append(f"![{title}]({os.path.relpath(path, md_path.parent)})\n")
                data = base64.b64encode(path.read_bytes()).decode()
                body.append(f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">')
    md_path.write_text("\n".join(md))
    html_path.write_text(_HTML.format(title=html.escape(f"polarnet report: {name}"), body="\n".join(body)))
    return html_path, md_path


def _chance(settings: dict) -> float:
    """Chance accuracy: 1/2 for XOR, 1/classes for the image datasets."""
    if settings.get("dataset", "xor") == "xor":
        return 0.5
    return 1.0 / (len(settings.get("classes") or []) or 10)


def _panels(per_run: pd.DataFrame):
    """One panel per hidden size and frozen reset rule; fluid runs (reset "none") join every panel."""
    frozen_resets = sorted(set(per_run["reset"]) - {"none"}) or ["none"]
    many = per_run["hidden"].nunique() > 1 or len(frozen_resets) > 1
    for hidden in sorted(per_run["hidden"].unique()):
        for reset in frozen_resets:
            panel = per_run[(per_run["hidden"] == hidden) & per_run["reset"].isin({reset, "none"})]
            yield (f"hidden {hidden}, reset {reset}" if many else ""), panel


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label).strip("-") or "all"


def _html_text(text: str) -> str:
    """Markdown-ish text → HTML: code blocks, tables, bullet lists, paragraphs."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre>" + html.escape("\n".join(lines[i + 1 : j])) + "</pre>")
            i = j + 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                if not lines[i].startswith("|---"):
                    rows.append([html.escape(c.strip()) for c in lines[i].strip("|").split("|")])
                i += 1
            head, *rest = rows
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rest) + "</table>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(_inline(lines[i][2:]))
                i += 1
            out.append("<ul>" + "".join(f"<li>{t}</li>" for t in items) + "</ul>")
        else:
            if line.strip():
                out.append(f"<p>{_inline(line)}</p>")
            i += 1
    return "\n".join(out)


def _inline(text: str) -> str:
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if k % 2 else p for k, p in enumerate(parts))


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; line-height: 1.45; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
th {{ background: #f3f3f3; }} img {{ max-width: 100%; }} pre {{ background: #f6f6f6; padding: 0.6em; overflow-x: auto; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""
