"""``polarnet report``: one self-contained ``report.html`` (figures embedded, nothing fetched
from the network) and ``report.md`` (figures beside it), read only from the results store.

The report describes the settings actually stored (never the preset's free-text description
as if it were the run), flags runs that cannot be trusted (:mod:`.diagnostics`) and works on
any study: with no finished run, one size, one trial, one epoch or no run reaching the
threshold it says so instead of failing."""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

import pandas as pd

from ..experiments.store import Store
from .claims import NOT_RUN, check_claims
from .colors import condition_colors
from .diagnostics import CHANCE_STANDARD_ERRORS, Flag, chance_margin, diagnose
from .grid import curve_point, has_hidden, model_takes
from .figures import (DPI, REPORT_PX_PER_INCH, REPORT_WIDTH_PX, SIGN_CHANGE_SIZES, curves_figure, difference_figure,
                      efficiency_figure, magnitude_figure, reset_figure, sign_change_figure, theory_figure)
from .learner_comparison import has_learners, learner_sections
from .markdown import markdown_cell, markdown_table
from .looks import condition_looks, looks_line, reference_condition, stored_num_classes
from .metrics import chance_level, median_epochs_text, one_line, run_metrics, summary_table
from .report_claims import claims_section, holds
from .stats import compare_to_reference, mann_whitney

__all__ = ["build_report", "report_paths", "markdown_table", "markdown_cell", "describe_study", "reset_rule_tests",
           "reset_rule_finding"]

#: suffixes of ``build_report(output=...)`` that name the report's files rather than a folder
REPORT_SUFFIXES = (".html", ".md")


def build_report(folder: str | os.PathLike[str], output: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` for the study in ``folder``.

    Args:
        folder: a study folder holding ``results.sqlite``.
        output: where to write; default: ``folder``. See :func:`report_paths`: a folder
            (existing, or any path not ending in ``.html``/``.md``) gets ``report.html``,
            ``report.md`` and ``report-figures/``; a path ending in ``.html`` or ``.md``
            names the files (``r.html``: ``r.html``, ``r.md`` and ``r-figures/``).

    Returns:
        ``(html_path, markdown_path)``.

    Raises:
        ValueError: ``folder`` holds no study, or ``output`` cannot be written to (see
            :func:`report_paths`).

    Example:
        >>> import tempfile
        >>> from polarnet.experiments import load_study, run_study
        >>> folder = tempfile.mkdtemp()
        >>> _ = run_study(load_study("xor5d", ["trials=1", "epochs=1", "sizes=[8]"]), folder, progress=False)
        >>> [p.name for p in build_report(folder, f"{folder}/v1.2")]  # a folder, although it has a dot
        ['report.html', 'report.md']
    """
    folder = Path(folder)
    with Store.existing(folder) as store:
        facts, runs, epochs, magnitudes = store.study(), store.runs(), store.epochs(), store.magnitudes()
    stem = report_paths(folder, output)
    stem.parent.mkdir(parents=True, exist_ok=True)
    figures_dir = stem.parent / f"{stem.name}-figures"
    settings = facts.get("settings", {})
    name = settings.get("name", folder.name)
    thresholds = tuple(settings.get("thresholds", [0.8]))
    threshold = thresholds[0]
    per_run = run_metrics(epochs, threshold, thresholds=thresholds)

    sections: list[tuple[str, str, list[Path]]] = []  # (title, markdown body, figures)
    panels = list(_panels(per_run)) if not per_run.empty else []
    # each claim is measured once, at the grid point its paper made it for (Fig. 1: hidden 64, posRand)
    verdicts = check_claims(per_run, threshold, settings) if panels else []
    measured = [v for v in verdicts if v.outcome != NOT_RUN]
    placed: set[int] = set()  # the claims already beside a figure: each is listed once
    figure_panels = list(_figure_panels(per_run, panels)) if panels else []
    looks = condition_looks(facts, map(str, pd.unique(runs["condition"]) if len(runs) else []))
    colors = condition_colors(list(looks), {c: look["color"] for c, look in looks.items() if look.get("color")})
    classes = stored_num_classes(facts)

    def beside(figure: str, panel: pd.DataFrame) -> str:
        """The claims a figure bears on (measured on runs this panel holds), each with this
        study's computed finding and, where the study has several, its grid point."""
        lines = []
        for i, v in enumerate(measured):
            if v.figure == figure and i not in placed and holds(panel, v):
                placed.add(i)
                lines.append(f"- **Claim ({v.source}{', ' + v.where if v.where else ''}):** {v.claim}. **Here:** "
                             f"{v.finding} — {v.verdict}.")
        return ("\n\n" + "\n".join(lines)) if lines else ""

    sections.append(("Study", describe_study(settings, runs, epochs), []))
    sections.append(("Diagnostics", _flags_markdown(diagnose(runs, epochs, settings, classes)), []))
    if per_run.empty:
        sections.append(("Results", "No run finished, so there are no metrics, figures or claims to show"
                         + (": see the Diagnostics above for why." if len(runs) else " (the study has no runs yet)."),
                         []))
    else:
        summary = summary_table(per_run, settings)
        shown = summary.assign(median_epochs=[median_epochs_text(m, r) for m, r in
                                              zip(summary["median_epochs"], summary["success_rate"])])
        note = (f"\n\nMedians marked * rest on the fewer than half of the trials that reached {threshold:.0%}; the "
                "others never did."
                if shown["median_epochs"].str.endswith("*").any() else "")
        named = looks_line(looks, per_run["condition"])
        sections.append(("Per condition", (named + "\n\n" if named else "") + _reached(per_run, threshold)
                         + markdown_table(shown) + note, []))
        for label, panel, by in figure_panels:
            title = f"Efficiency{' — ' + label if label else ''}"
            what = (f"against the number of hidden units, at this study's one training size (n = "
                    f"{int(panel['n_train'].iloc[0])}; cf. Wang et al. Fig. 4A, bottom, at n = 500)"
                    if by == "hidden" else "against the training-set size (Wang et al. Fig. 1 B/C, Fig. 2)")
            paths = efficiency_figure(panel, threshold, figures_dir / f"efficiency-{_slug(label)}",
                                      study=f"{name}{' (' + label + ')' if label else ''}", by=by, colors=colors)
            sections.append((title, _reached(panel, threshold) +
                             f"Validation error at convergence, share of trials reaching the threshold, and epochs to "
                             f"reach it, {what}. Medians of epochs are drawn only where at least half the trials "
                             "reached the threshold (hollow where fewer did)." + beside("efficiency", panel), paths))
            for extra in thresholds[1:]:  # Wang et al. Fig. C.2/C.4: the same at other thresholds
                other = panel.assign(epochs_to_threshold=panel[f"epochs_to_{extra:g}"])
                paths = efficiency_figure(other, extra, figures_dir / f"efficiency-{_slug(label)}-{extra:g}",
                                          study=f"{name}{' (' + label + ')' if label else ''}", by=by, colors=colors)
                sections.append((f"Efficiency at {extra:.0%}{' — ' + label if label else ''}",
                                 _reached(other, extra) + "The same at another accuracy threshold (Wang et al. Fig. C.2/C.4).", paths))
        if len(set(per_run["reset"]) - {"none"}) > 1:  # Wang et al. Fig. C.1, per hidden size
            several = per_run["hidden"].nunique() > 1
            for hidden, panel in per_run.groupby("hidden"):
                if len(set(panel["reset"]) - {"none"}) < 2:
                    continue
                tests = reset_rule_tests(panel)
                finding, note = reset_rule_finding(tests)
                paths = reset_figure(panel, figures_dir / f"reset-rules{f'-hidden-{hidden}' if several else ''}",
                                     study=f"{name}{f' (hidden {hidden})' if several else ''}", note=note,
                                     colors=colors)
                sections.append((f"Reset rules{f' — hidden {hidden}' if several else ''}",
                                 "Median error at convergence per condition (colour) and reset rule (line style and "
                                 "marker) against the training-set size (Wang et al. Fig. C.1, where the four rules "
                                 "give similar results); the rules of a condition are set slightly apart along the "
                                 f"size axis so that equal medians stay visible. {finding}", paths))
        chance = chance_level(settings, classes)
        margin = chance_margin(chance, int(settings.get("val_size") or 1000))
        convergence = per_run.assign(converged=(per_run["final_accuracy"] > chance + margin)).groupby("condition").agg(
            runs=("run", "count"), converged=("converged", "mean"), final_accuracy=("final_accuracy", "mean"),
            final_accuracy_std=("final_accuracy", "std")).reset_index()
        sections.append(("Convergence", f"Share of runs whose final validation accuracy beats chance ({chance:.0%}) by "
                         f"more than {CHANCE_STANDARD_ERRORS:g} standard errors over the validation set (above "
                         f"{chance + margin:.1%}), and the final accuracy, mean and standard deviation (Igoe et al. "
                         "Table 1).\n\n"
                         + markdown_table(convergence), []))
        if settings.get("dataset", "xor") == "xor" and per_run["hidden"].nunique() > 2:
            from .theory_table import theory_table, xor_study_dims

            try:
                dims = xor_study_dims(settings)
            except ValueError as error:  # e.g. a custom model: the bounds are for an MLP
                sections.append(("Learnability", f"Not shown: {error}.", []))
            else:
                table = theory_table(sorted(per_run["hidden"].unique()), dims, trials=20000, folder=folder)
                paths = theory_figure(table, figures_dir / "theory", study=name)
                sections.append(("Learnability", "The App. D bounds against the fraction of Frozen RAND nets that "
                                 "learned (Wang et al. Fig. 4A; see docs/theory.md).\n\n" + markdown_table(table, 3),
                                 paths))
        done = epochs[epochs["status"] == "done"]
        point, where = curve_point(done, settings)
        # the dashed line marks the study's threshold (its first): Igoe's presets store their 40%
        curves = curves_figure(point, figures_dir / "curves", study=f"{name}, {', '.join(where)}", mark=threshold,
                               colors=colors)
        sections.append(("Learning curves", f"Training and validation accuracy per epoch at {'; '.join(where)} "
                         "(Igoe et al. Fig. 1–2), mean ± standard deviation over runs (the band cut at 0 and 100%); "
                         f"the dashed line marks the epoch where a condition's mean validation accuracy first reached "
                         f"the study's threshold, {threshold:.0%}.", curves))
        fluid = reference_condition(looks, done["condition"])
        if fluid is not None:
            signs = sign_change_figure(epochs, fluid, figures_dir / "sign-changes", study=name)
            last = int(done.loc[done["condition"] == fluid, "epoch"].max())
            sizes = done.loc[done["condition"] == fluid, "n_train"].nunique()
            subset = f" ({SIGN_CHANGE_SIZES} of the {sizes}, spread over the grid)" if sizes > SIGN_CHANGE_SIZES else ""
            lines = f"one line per training size{subset}, the mean over its runs" if sizes > 1 else "the mean over runs"
            sections.append(("Sign changes", f"Fraction of weights whose sign changed since the previous epoch, "
                             f"{fluid} (Wang et al. Fig. C.5): one panel per layer, {lines}, over all {last} epochs "
                             "(Wang et al. show the first 50 of 100 epochs, at every size).", signs))
        if not magnitudes.empty:
            paths = magnitude_figure(magnitudes, figures_dir / "magnitudes", study=name, colors=colors)
            sections.append(("Magnitudes at initialisation", "Distribution of |w| per layer and condition after "
                             "alignment (Wang et al. Fig. C.6): conditions share their magnitude draw, so the curves "
                             "coincide except for conditions that copy source weights.", paths))
        claims_at = len(sections)  # the Claims section goes here once the figures below have taken theirs
        reference = reference_condition(looks, per_run["condition"])
        if reference is not None and per_run["condition"].nunique() > 1:
            for label, panel, by in figure_panels:
                if reference not in set(panel["condition"]) or panel["condition"].nunique() < 2:
                    continue
                stats = compare_to_reference(panel, "error_at_convergence", reference, by=by)
                paths = difference_figure(stats, "error at convergence", figures_dir / f"differences-{_slug(label)}",
                                          study=name, by=by, colors=colors) if len(stats) else []
                per = "hidden size" if by == "hidden" else "size"
                sections.append((f"Statistics: error at convergence vs {reference}{' — ' + label if label else ''}",
                                 f"Two-tailed Mann–Whitney U per {per}, Holm–Bonferroni across the table, "
                                 "rank-biserial r (negative: lower error than the reference); the figure shows median "
                                 "differences (Wang et al. Fig. 3)."
                                 + beside("difference", panel) + "\n\n"
                                 + markdown_table(stats, 4),
                                 paths))
        if verdicts:
            sections.insert(claims_at, ("Claims", claims_section(verdicts, [v for i, v in enumerate(measured)
                                                                                if i not in placed]), []))
        if has_learners(settings):  # learners × learning rates: each at its best rate against freeze_sgd
            sections.extend(learner_sections(per_run, settings, runs, figures_dir, study=name))
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
                png = path.read_bytes()
                data = base64.b64encode(png).decode()
                body.append(f'<img alt="{html.escape(title)}" width="{_css_width(png)}" '
                            f'src="data:image/png;base64,{data}">')
    md_path.write_text("\n".join(md))
    html_path.write_text(_HTML.format(title=html.escape(f"polarnet report: {name}"), body="\n".join(body),
                                      width=REPORT_WIDTH_PX))
    _remove_stale_figures(figures_dir, [path for _, _, paths in sections for path in paths])
    return html_path, md_path


def _remove_stale_figures(figures_dir: Path, kept: list[Path]) -> None:
    """Deletes the figures an earlier report left in ``figures_dir`` that this one did not draw
    (another study's, or a panel this study no longer has), so the folder shows only this
    report's; other files stay."""
    if not figures_dir.is_dir():
        return
    drawn = {path.resolve() for path in kept}
    for path in figures_dir.iterdir():
        if path.suffix in (".png", ".svg") and path.is_file() and path.resolve() not in drawn:
            path.unlink()


def report_paths(folder: str | os.PathLike[str], output: str | os.PathLike[str] | None = None) -> Path:
    """Where :func:`build_report` writes: the stem of ``STEM.html``, ``STEM.md`` and
    ``STEM-figures/``.

    * no ``output``: ``folder/report``;
    * an existing folder is always a folder (``rep/v1.2`` too): ``output/report``;
    * a path ending in ``.html`` or ``.md`` (any case) names the files: ``r.html`` → ``r``;
    * any other path that does not exist is a folder to create, whatever its suffix
      (``rep/v1.2``, ``rep/2024.06``);
    * anything else that exists (``/dev/null``, a file such as ``notes.txt`` or
      ``results.sqlite``) is refused.

    Raises:
        ValueError: naming ``output`` and what to give instead.

    Example:
        >>> report_paths("s"), report_paths("s", "rep/v1.2"), report_paths("s", "rep/r.HTML")
        (PosixPath('s/report'), PosixPath('rep/v1.2/report'), PosixPath('rep/r'))
        >>> report_paths("s", "/dev/null")
        Traceback (most recent call last):
        ...
        ValueError: -o /dev/null: exists and is not a folder or a regular file; give a folder (the report is written into it) or a path ending in .html or .md
    """
    out = Path(output) if output is not None and str(output) != "" else Path(folder)
    fix = "give a folder (the report is written into it) or a path ending in .html or .md"
    if out.is_dir() or out == Path(folder):
        stem = out / "report"
    elif out.exists() and not out.is_file():
        raise ValueError(f"-o {out}: exists and is not a folder or a regular file; {fix}")
    elif out.suffix.lower() not in REPORT_SUFFIXES:
        if out.exists():
            raise ValueError(f"-o {out}: is a file, not a folder, and does not end in .html or .md; {fix}")
        stem = out / "report"
    else:
        stem = out.with_suffix("")
    for path in (stem.with_suffix(".html"), stem.with_suffix(".md")):
        if path.exists() and not path.is_file():
            raise ValueError(f"-o {out}: the report writes {path}, which exists and is not a regular file; choose "
                             "another name")
    figures = stem.parent / f"{stem.name}-figures"
    if figures.exists() and not figures.is_dir():
        raise ValueError(f"-o {out}: the report puts its figures in {figures}, which exists and is not a folder; "
                         "choose another name")
    return stem


#: settings shown in the report's header, in this order (the grid first)
_HEADER_SETTINGS = ("dataset", "dims", "classes", "model", "batch_size", "lr", "val_size", "thresholds", "dtype", "seed")
#: settings that say nothing about the numbers (left out when comparing with the preset)
_NOT_COMPARED = {"name", "description", "data_root", "download", "source_hint", "vectorize", "ensemble_members"}


def describe_study(settings: dict, runs: pd.DataFrame, epochs: pd.DataFrame) -> str:
    """The report's header: the grid and settings actually stored, the runs actually in the
    store, and the preset's description labelled as such, with what this study changed.

    Example:
        >>> settings = {"name": "mine", "description": "10 sizes, 50 trials", "conditions": ["a", "b"],
        ...             "sizes": [8, 20], "hidden": [4], "resets": ["zero"], "trials": 2, "epochs": 1,
        ...             "dataset": "xor", "lr": 0.03}
        >>> runs = pd.DataFrame({"status": ["done"] * 7 + ["failed"], "condition": ["a", "b"] * 4,
        ...                      "n_train": [8, 8, 20, 20] * 2, "trial": [0] * 4 + [1] * 4})
        >>> print(describe_study(settings, runs, pd.DataFrame()))  # doctest: +NORMALIZE_WHITESPACE
        **mine** — as run: 2 conditions (a, b) × 2 sizes (8, 20) × hidden 4 × reset zero × 2 trials, 1 epoch each.
        <BLANKLINE>
        Settings: dataset xor, lr 0.03.
        <BLANKLINE>
        Runs in the store: 8 (7 done, 1 failed); 1–2 trials per grid point finished.
        <BLANKLINE>
        Description (free text from the study file, not checked against the settings): 10 sizes, 50 trials
    """
    def listing(key: str, singular: str, plural: str) -> str:
        values = list(settings.get(key) or [])
        if len(values) == 1:
            return f"{singular} {one_line(values[0])}"
        return f"{len(values)} {plural} ({', '.join(map(one_line, values))})"

    trials, epochs_each = settings.get("trials", "?"), settings.get("epochs", "?")
    resets = listing("resets", "reset", "reset rules")
    overrides = _reset_overrides(settings, runs)
    if overrides:  # frozen conditions with their own rule run only that one
        resets += " (except " + "; ".join(f"{one_line(c)}: {one_line(r)}" for c, r in overrides.items()) + ")"
    widths = [listing("hidden", "hidden", "hidden sizes")] * has_hidden(settings, runs["hidden"] if "hidden" in runs
                                                                         else ())  # not an image model's
    grid = " × ".join([listing("conditions", "condition", "conditions"), listing("sizes", "size", "sizes"), *widths,
                       resets, f"{trials} trial{'s' if trials != 1 else ''}"])
    lines = [f"**{settings.get('name', 'study')}** — as run: {grid}, {epochs_each} epoch{'s' if epochs_each != 1 else ''} "
             "each."]
    shown = [f"{key.replace('_', ' ')} {_value(settings[key])}" for key in _HEADER_SETTINGS
             if key in settings and settings[key] not in (None, [], ())
             and (key != "dims" or model_takes(settings, "in_features"))]  # dims: XOR's inputs
    lines.append(f"Settings: {', '.join(shown)}.")
    if len(runs):
        counts = runs["status"].value_counts()
        status = ", ".join(f"{int(counts[k])} {k}" for k in ("done", "failed", "running") if k in counts)
        done = runs[runs["status"] == "done"]
        per_point = done.groupby(["condition", "n_train"] + [c for c in ("hidden", "reset") if c in done]).size() \
            if len(done) else pd.Series(dtype=int)
        text = f"Runs in the store: {len(runs)} ({status})"
        if len(per_point):
            low, high = int(per_point.min()), int(per_point.max())
            text += f"; {low if low == high else f'{low}–{high}'} trial{'s' if high != 1 else ''} per grid point finished"
        if len(epochs) and "status" in epochs:
            recorded = epochs[epochs["status"] == "done"].groupby("run")["epoch"].max()
            if len(recorded) and recorded.min() != recorded.max():
                text += f"; {int(recorded.min())}–{int(recorded.max())} epochs per finished run"
        lines.append(text + ".")
    else:
        lines.append("Runs in the store: none yet.")
    lines.append(_preset_note(settings))
    return "\n\n".join(line for line in lines if line)


def _reset_overrides(settings: dict, runs: pd.DataFrame) -> dict[str, str]:
    """``{condition: reset rule}`` for the frozen conditions that override the study's ``resets``:
    from the study's ``define_condition`` tables and from the conditions stored with the runs
    (which also holds registered conditions with their own rule)."""
    names = [str(c) for c in settings.get("conditions") or []]
    found: dict[str, str] = {}

    def note(condition) -> None:
        if isinstance(condition, dict) and condition.get("frozen") and condition.get("reset"):
            found.setdefault(str(condition.get("name")), str(condition["reset"]))

    for name, condition in (settings.get("define_condition") or {}).items():
        note({"name": name, **condition} if isinstance(condition, dict) else None)
    if len(runs) and "settings" in runs and "condition" in runs:
        for text in runs.drop_duplicates("condition")["settings"]:
            try:
                note(json.loads(text).get("condition") if isinstance(text, str) else None)
            except (ValueError, AttributeError):
                continue
    ran = set(runs["condition"]) if "condition" in runs else set()
    return {name: found[name] for name in [*names, *sorted(ran - set(names))] if name in found}


def _value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_value, value)) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _preset_note(settings: dict) -> str:
    """The description, labelled: a preset's own (with what this study changed), or free text."""
    description = settings.get("description") or ""
    name = settings.get("name", "")
    from ..experiments.config import list_presets, load_study

    versions = {}
    if name in list_presets():  # the packaged presets load (tests/test_presets.py), unvalidated
        versions = {"": load_study(name, validate=False).to_dict(),
                    " --quick": load_study(name, quick=True, validate=False).to_dict()}
    if not versions:
        return (f"Description (free text from the study file, not checked against the settings): {description}"
                if description else "")

    def changes(preset: dict) -> list[str]:
        return [key for key in preset if key not in _NOT_COMPARED and key in settings
                and json.dumps(settings[key], default=list) != json.dumps(preset[key], default=list)]

    version, changed = min(((v, changes(p)) for v, p in versions.items()), key=lambda vc: len(vc[1]))
    if not changed:
        if not version:
            return f"Preset `{name}`, run as published: {description}"
        return (f"Preset `{name}`, its --quick version: {', '.join(f'{k} {_value(settings[k])}' for k in changes(versions['']))}. "
                f"Preset description (of the full preset, not of this run): {description}")
    diffs = "; ".join(f"{key} {_value(settings[key])} (preset{version}: {_value(versions[version][key])})"
                      for key in changed)
    return (f"Preset description (of the full `{name}` preset, which this study does not match): {description}\n\n"
            f"Changed from `polarnet run {name}{version}` (with --set): {diffs}.")


def _reached(per_run: pd.DataFrame, threshold: float) -> str:
    """A sentence when no run reached ``threshold`` (that is then the finding); else nothing."""
    if per_run.empty or per_run["epochs_to_threshold"].notna().any():
        return ""
    best = per_run["final_accuracy"].max()
    best_text = f" (best final validation accuracy: {best:.1%})" if best == best else ""
    return f"**No run reached {threshold:.0%} validation accuracy**{best_text}.\n\n"


def _flags_markdown(flags: list[Flag]) -> str:
    """Diagnostics as Markdown: one bullet per flag with its grid points and hint."""
    if not flags:
        return "No problems found: no failed or interrupted runs, no validation stuck at chance, no conditions " \
               "with identical curves, no Frozen run dominated by resets."
    lines = []
    for flag in flags:
        where = "; ".join(map(one_line, flag.where[:6])) + (f"; … and {len(flag.where) - 6} more"
                                                             if len(flag.where) > 6 else "")
        lines.append(f"- **{flag.kind}** ({len(flag.runs)} run{'s' if len(flag.runs) != 1 else ''}): "
                     f"{one_line(flag.reason)}. **Where:** {where}. **Hint:** {one_line(flag.hint)}")
    return "These runs cannot be fully trusted (see docs/analysis.md, Diagnostics):\n\n" + "\n".join(lines)


def _panels(per_run: pd.DataFrame):
    """One panel per hidden size and frozen reset rule; fluid runs (reset "none") join every panel.
    The label names the axes the study varies (never a hidden size it does not vary)."""
    frozen_resets = sorted(set(per_run["reset"]) - {"none"}) or ["none"]
    widths = per_run["hidden"].nunique() > 1
    for hidden in sorted(per_run["hidden"].unique()):
        for reset in frozen_resets:
            panel = per_run[(per_run["hidden"] == hidden) & per_run["reset"].isin({reset, "none"})]
            parts = [f"hidden {hidden}"] * widths + [f"reset {reset}"] * (len(frozen_resets) > 1)
            yield ", ".join(parts), panel


def _figure_panels(per_run: pd.DataFrame, panels: list[tuple[str, pd.DataFrame]]):
    """The efficiency and difference figures to draw, ``(label, runs, by)``: one per panel
    against the training-set size; but a study with one training size and several hidden sizes
    (e.g. ``xor5d-width --quick``) gets one figure per reset rule against hidden units instead of
    a single-point figure per hidden size."""
    if per_run["n_train"].nunique() > 1 or per_run["hidden"].nunique() < 2:
        for label, panel in panels:
            yield label, panel, "n_train"
        return
    n = int(per_run["n_train"].iloc[0])
    resets = sorted(set(per_run["reset"]) - {"none"}) or ["none"]
    for reset in resets:
        runs = per_run[per_run["reset"].isin({reset, "none"})]
        label = f"against hidden units, n = {n}" + (f", reset {reset}" if len(resets) > 1 else "")
        yield label, runs, "hidden"


def reset_rule_tests(per_run: pd.DataFrame, metric: str = "error_at_convergence", alpha: float = 0.05) -> pd.DataFrame:
    """Do the reset rules differ? A two-tailed Mann–Whitney U (:func:`.stats.mann_whitney`)
    between every pair of reset rules of the same condition, hidden size and training size,
    Holm–Bonferroni across all the pairs (statsmodels), as for Wang et al. Fig. C.1. Fluid
    runs (rule ``none``) are left out.

    Returns:
        One row per pair: ``condition``, ``hidden``, ``n_train``, ``rule_a``, ``rule_b``, the
        medians, ``n_a``, ``n_b``, ``U``, ``p``, ``r`` (rank-biserial, a vs b), ``p_holm``,
        ``significant`` and ``p_floor``, the smallest p the test can give with these sample
        sizes (when it is above Holm's first threshold ``alpha / pairs``, nothing can be found).

    Example:
        >>> runs = pd.DataFrame({"condition": ["c"] * 12, "hidden": [4] * 12, "n_train": [8] * 12,
        ...                      "reset": ["zero"] * 6 + ["flip"] * 6, "error_at_convergence": list(range(12))})
        >>> row = reset_rule_tests(runs).iloc[0]
        >>> row.rule_a, row.rule_b, round(float(row.p_holm), 4), bool(row.significant)
        ('flip', 'zero', 0.0022, True)
    """
    from itertools import combinations

    from statsmodels.stats.multitest import multipletests

    columns = ["condition", "hidden", "n_train", "rule_a", "rule_b", "median_a", "median_b", "n_a", "n_b", "U", "p",
               "r", "p_holm", "significant", "p_floor"]
    frozen = per_run[per_run["reset"] != "none"]
    if "hidden" not in frozen:
        frozen = frozen.assign(hidden=0)
    rows = []
    for (condition, hidden, n), group in frozen.groupby(["condition", "hidden", "n_train"], sort=True):
        samples = {rule: runs[metric].dropna() for rule, runs in group.groupby("reset")}
        for a, b in combinations(sorted(samples), 2):
            if len(samples[a]) and len(samples[b]):
                floor = mann_whitney(range(len(samples[a])), range(len(samples[a]), len(samples[a]) + len(samples[b])))
                rows.append({"condition": condition, "hidden": hidden, "n_train": n, "rule_a": a, "rule_b": b,
                             "median_a": float(samples[a].median()), "median_b": float(samples[b].median()),
                             **mann_whitney(samples[a], samples[b]), "p_floor": floor["p"]})
    table = pd.DataFrame(rows, columns=[c for c in columns if c not in ("p_holm", "significant")])
    table["p_holm"], table["significant"] = float("nan"), False
    tested = table["p"].notna()
    if tested.any():
        reject, corrected, _, _ = multipletests(table.loc[tested, "p"], alpha=alpha, method="holm")
        table.loc[tested, "p_holm"], table.loc[tested, "significant"] = corrected, reject
    return table[columns]


def reset_rule_finding(tests: pd.DataFrame, alpha: float = 0.05) -> tuple[str, str]:
    """What :func:`reset_rule_tests` found: a sentence for the caption and a short note for the
    figure's title.

    Example:
        >>> runs = pd.DataFrame({"condition": ["c"] * 6, "hidden": [4] * 6, "n_train": [8] * 6,
        ...                      "reset": ["zero"] * 3 + ["flip"] * 3, "error_at_convergence": [1, 2, 3, 1, 2, 4]})
        >>> reset_rule_finding(reset_rule_tests(runs))[1]
        'no two rules differ significantly (Mann–Whitney U, Holm, 1 pair; too few runs to detect a difference)'
    """
    tested = tests[tests["p"].notna()]
    m = len(tested)
    if not m:
        return ("No two reset rules of one condition have finished runs at the same size, so they were not compared.",
                "rules not compared")
    how = (f"two-tailed Mann–Whitney U between every pair of reset rules of the same condition and size, "
           f"Holm–Bonferroni across the figure's {m} pair{'s' if m != 1 else ''}, α = {alpha:g}")

    def where(row) -> str:
        return f"{row.condition}, n = {row.n_train}: {row.rule_a} vs {row.rule_b}"

    significant = tested[tested["significant"].astype(bool)]
    if len(significant):
        listed = "; ".join(f"{where(row)} (median error {row.median_a:.1%} vs {row.median_b:.1%}, Holm p = "
                           f"{row.p_holm:.2g})" for row in significant.sort_values("p_holm").head(6).itertuples())
        more = f"; and {len(significant) - 6} more" if len(significant) > 6 else ""
        return (f"**The reset rules differ significantly at {len(significant)} of {m} pairs** ({how}): "
                f"{listed}{more}.", f"rules differ significantly at {len(significant)} of {m} pairs "
                                    "(Mann–Whitney U, Holm)")
    best = tested.sort_values(["p", "p_holm"]).iloc[0]
    text = (f"**No two reset rules differ significantly** ({how}); the closest pair is {where(best)} (median error "
            f"{best.median_a:.1%} vs {best.median_b:.1%}; p = {best.p:.2g}, Holm-corrected {best.p_holm:.2g}).")
    note = f"no two rules differ significantly (Mann–Whitney U, Holm, {m} pair{'s' if m != 1 else ''}"
    floor = float(tested["p_floor"].min())
    if floor > alpha / m:  # Holm's first step compares the smallest p with alpha / m
        runs = sorted(set(tested["n_a"]) | set(tested["n_b"]))
        text += (f" With {runs[0] if len(runs) == 1 else f'{runs[0]}–{runs[-1]}'} runs per rule no pair could "
                 f"have been significant: the smallest p this test can give is {floor:.2g}, above Holm's first "
                 f"threshold {alpha:g}/{m} = {alpha / m:.3g}. So this study cannot tell whether the rules differ; "
                 "more trials can.")
        note += "; too few runs to detect a difference"
    return text, note + ")"


def _css_width(png: bytes) -> int:
    """The width to show a figure's PNG at: :data:`.figures.REPORT_PX_PER_INCH` CSS pixels per
    figure inch, so text has one size in every figure (the page's width caps it)."""
    return round(int.from_bytes(png[16:20], "big") * REPORT_PX_PER_INCH / DPI)  # the IHDR chunk's width


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
                    rows.append([html.escape(c) for c in _table_cells(lines[i])])
                i += 1
            head, *rest = rows
            # headers may break after an underscore (``mean_final_accuracy``), and a table wider
            # than the page scrolls inside its own box instead of widening the page
            out.append('<div class="table"><table><tr>' + "".join(f"<th>{c.replace('_', '_<wbr>')}</th>" for c in head)
                       + "</tr>" + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rest)
                       + "</table></div>")
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


def _table_cells(line: str) -> list[str]:
    """The cells of a Markdown table row, undoing :func:`markdown_cell`'s escapes (``\\|`` is a
    ``|`` inside a cell, ``\\\\`` a backslash)."""
    cells, cell, i = [], [], line.index("|") + 1
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line) and line[i + 1] in "|\\":
            cell.append(line[i + 1])
            i += 2
            continue
        if c == "|":
            cells.append("".join(cell).strip())
            cell = []
        else:
            cell.append(c)
        i += 1
    if "".join(cell).strip():  # a row without its closing "|"
        cells.append("".join(cell).strip())
    return cells


def _inline(text: str) -> str:
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if k % 2 else p for k, p in enumerate(parts))


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: {width}px; margin: 2em auto; line-height: 1.45; color: #222; }}
div.table {{ overflow-x: auto; margin: 1em 0; }} table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
th {{ background: #f3f3f3; }} img {{ max-width: 100%; height: auto; }} pre {{ background: #f6f6f6; padding: 0.6em; overflow-x: auto; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""
