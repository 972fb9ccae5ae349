from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from polarnet.analysis.figures import curves_figure, efficiency_figure, sign_change_figure
from polarnet.analysis.metrics import run_metrics
from polarnet.experiments import load_study


@pytest.fixture
def epochs() -> pd.DataFrame:
    """A small synthetic store table: 2 conditions × 3 sizes × 4 trials × 6 epochs."""
    rng = np.random.default_rng(0)
    rows = []
    for condition, speed in (("frozen_sufficient", 0.3), ("fluid_rand", 0.15)):
        for n in (8, 40, 100):
            for trial in range(4):
                run = f"{condition}-{n}-{trial}"
                for epoch in range(1, 7):
                    acc = min(0.99, 0.5 + speed * epoch * (1 + n / 100) * rng.uniform(0.8, 1.2))
                    rows.append({"run": run, "condition": condition, "n_train": n, "hidden": 64, "reset": "posRand",
                                 "trial": trial, "status": "done", "epoch": epoch, "train_acc": acc, "val_acc": acc,
                                 "val_loss": 1 - acc, "sign_changes": json.dumps({"0.weight": 0.1 / epoch,
                                                                                   "2.weight": 0.05 / epoch})})
    return pd.DataFrame(rows)


def _is_image(paths) -> None:
    png, svg = paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert b"<svg" in svg.read_bytes()[:500]


def test_efficiency_figure(tmp_path, epochs) -> None:
    paths = efficiency_figure(run_metrics(epochs, 0.8), 0.8, tmp_path / "fig1", study="synthetic")
    assert [p.name for p in paths] == ["fig1.png", "fig1.svg"]
    _is_image(paths)
    assert b"training samples" in paths[1].read_bytes() or b"training" in paths[1].read_bytes()


def test_curves_figure(tmp_path, epochs) -> None:
    _is_image(curves_figure(epochs, tmp_path / "curves", study="synthetic", mark=0.6))


def test_sign_change_figure(tmp_path, epochs) -> None:
    _is_image(sign_change_figure(epochs, "fluid_rand", tmp_path / "c5", study="synthetic"))
    with pytest.raises(ValueError, match="no finished runs of condition 'nope'"):
        sign_change_figure(epochs, "nope", tmp_path / "x")


def test_difference_theory_and_reset_figures(tmp_path, epochs) -> None:
    from polarnet.analysis.figures import difference_figure, reset_figure, theory_figure
    from polarnet.analysis.stats import compare_to_reference
    from polarnet.analysis.theory_table import theory_table

    per_run = run_metrics(epochs, 0.8)
    stats = compare_to_reference(per_run, "error_at_convergence", "fluid_rand")
    _is_image(difference_figure(stats, "error at convergence", tmp_path / "fig3", study="synthetic"))
    table = theory_table([2, 3, 5, 10, 15], trials=500)
    table["simulated"] = [0.0, 0.05, float("nan"), 0.9, 1.0]
    table["sim_runs"] = [10, 10, 0, 10, 10]
    _is_image(theory_figure(table, tmp_path / "fig4a", study="synthetic"))
    per_run_resets = pd.concat([per_run.assign(reset=r) for r in ("posRand", "zero")])
    _is_image(reset_figure(per_run_resets, tmp_path / "c1", study="synthetic"))


def test_magnitude_figure(tmp_path) -> None:
    from polarnet.analysis.figures import magnitude_figure
    from polarnet.experiments.results import QUANTILES

    rows = []
    for condition, scale in (("frozen_rand", 1.0), ("fluid_in_weight", 2.0)):
        for trial in range(3):
            for layer in ("0.weight", "2.weight"):
                rows.append({"condition": condition, "run": f"{condition}{trial}", "layer": layer,
                             **{q: scale * q for q in QUANTILES}})
    _is_image(magnitude_figure(pd.DataFrame(rows), tmp_path / "c6", study="synthetic"))


# -- empty, all-NaN and single-point data (issue 8) -------------------------------------------
PER_RUN_COLUMNS = ["condition", "n_train", "hidden", "reset", "trial", "run", "error_at_convergence",
                   "error_at_last_epoch", "final_accuracy", "auc", "epochs_to_threshold"]


def _per_run(rows: list[tuple]) -> pd.DataFrame:
    """``(condition, n, trial, error, epochs_to_threshold)`` rows as run_metrics output."""
    return pd.DataFrame([{"condition": c, "n_train": n, "hidden": 4, "reset": "zero", "trial": t, "run": f"{c}{n}{t}",
                          "error_at_convergence": e, "error_at_last_epoch": e, "final_accuracy": 1 - e, "auc": 1 - e,
                          "epochs_to_threshold": k} for c, n, t, e, k in rows], columns=PER_RUN_COLUMNS)


NAN = float("nan")


@pytest.mark.parametrize("rows, says", [
    ([], "no finished runs"),
    ([("a", 8, 0, 0.5, NAN), ("a", 20, 0, 0.4, NAN)], "no run reached 80%"),  # a 1-epoch study
    ([("a", 8, 0, NAN, NAN)], "no finite validation accuracy"),
    ([("a", 8, 0, 0.1, 3.0)], "1 trial per point"),  # one size, one trial
    ([("a", 8, t, 0.1, 3.0) for t in range(3)] + [("b", 20, 0, 0.2, 2.0)], "1–3 trials per point"),  # b lacks n=8
])
def test_efficiency_figure_on_sparse_data(tmp_path, rows, says) -> None:
    paths = efficiency_figure(_per_run(rows), 0.8, tmp_path / "f", study="s")
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert says in paths[1].read_text()


def test_curves_figure_on_sparse_data(tmp_path, epochs) -> None:
    assert "no finished runs" in curves_figure(epochs.assign(status="failed"), tmp_path / "a")[1].read_text()
    one = epochs[(epochs["epoch"] == 1) & (epochs["n_train"] == 8)]
    assert "4 runs per point" in curves_figure(one, tmp_path / "b", study="s")[1].read_text()


def test_other_figures_on_empty_data(tmp_path, epochs) -> None:
    from polarnet.analysis.figures import difference_figure, magnitude_figure, reset_figure

    empty_stats = pd.DataFrame(columns=["condition", "reference", "n_train", "n_a", "n_b", "median",
                                        "median_reference", "significant"])
    assert "nothing to compare" in difference_figure(empty_stats, "error", tmp_path / "d")[1].read_text()
    nan_stats = pd.DataFrame({"condition": ["a"], "reference": ["b"], "n_train": [8], "n_a": [0], "n_b": [3],
                              "median": [NAN], "median_reference": [0.2], "significant": [False]})
    assert "nothing to compare" in difference_figure(nan_stats, "error", tmp_path / "d2")[1].read_text()
    assert "no finished runs" in reset_figure(_per_run([]), tmp_path / "r")[1].read_text()
    assert "no magnitudes recorded" in magnitude_figure(pd.DataFrame(columns=["condition", "run", "layer"]),
                                                        tmp_path / "m")[1].read_text()
    no_changes = epochs.assign(sign_changes="{}")
    assert "no sign changes recorded" in sign_change_figure(no_changes, "fluid_rand", tmp_path / "s")[1].read_text()


def test_trials_label() -> None:
    from polarnet.analysis.figures import trials_label

    assert trials_label(pd.Series([4, 4])) == "4 trials per point"
    assert trials_label([2, 20]) == "2–20 trials per point"


# -- every figure the report draws stays readable at the report's width (issue 12) ------------
GRID = [8, 20, 32, 40, 52, 60, 72, 80, 92, 100, 500]  # the XOR presets' sizes: 52…100 crowd a log axis


def _grid_per_run(sizes=GRID, hidden=(64,), conditions=("frozen_sufficient", "frozen_rand", "fluid_rand"),
                  resets=("posRand",), trials=3) -> pd.DataFrame:
    """run_metrics-like rows over a grid, errors falling with n, epochs with fractional medians."""
    rng = np.random.default_rng(1)
    rows = []
    for c, condition in enumerate(conditions):
        for reset in (("none",) if condition.startswith("fluid") else resets):
            for h in hidden:
                for n in sizes:
                    for t in range(trials):
                        e = min(0.5, 3 / n + 0.02 * c + rng.uniform(0, 0.05))
                        rows.append({"condition": condition, "n_train": n, "hidden": h, "reset": reset, "trial": t,
                                     "run": f"{condition}-{reset}-{h}-{n}-{t}", "error_at_convergence": e,
                                     "error_at_last_epoch": e, "final_accuracy": 1 - e, "auc": 1 - e,
                                     "epochs_to_threshold": NAN if e > 0.2 else 3 + rng.integers(0, 3) + t / 4})
    return pd.DataFrame(rows)


def _images_per_run() -> pd.DataFrame:
    """Fashion-MNIST's conditions at two sizes, epochs medians like 3.5 (ticks 3.25 … 5.00)."""
    conditions = ("frozen_in_polarity", "fluid_in_polarity", "frozen_rand", "fluid_rand", "fluid_in_weight",
                  "frozen_in_weight")
    per_run = _grid_per_run(sizes=[50, 200], conditions=conditions, trials=2)
    per_run["epochs_to_threshold"] = np.where(per_run["n_train"] == 200, 3.0 + np.arange(len(per_run)) % 5 / 2, NAN)
    return per_run


def _epochs_table(sizes=(8, 52, 60, 72, 500), epochs=12) -> pd.DataFrame:
    rows = []
    for condition in ("frozen_sufficient", "fluid_rand"):
        for n in sizes:
            for trial in range(2):
                for epoch in range(1, epochs + 1):
                    acc = min(0.99, 0.5 + 0.04 * epoch * (1 + n / 100))
                    rows.append({"run": f"{condition}-{n}-{trial}", "condition": condition, "n_train": n,
                                 "hidden": 64, "reset": "posRand", "trial": trial, "status": "done", "epoch": epoch,
                                 "train_acc": acc, "val_acc": acc, "val_loss": 1 - acc,
                                 "sign_changes": json.dumps({"0.weight": 0.1 / epoch / (1 + n / 100),
                                                             "2.weight": 0.05 / epoch})})
    return pd.DataFrame(rows)


def _draw_efficiency(stem):
    efficiency_figure(_grid_per_run(), 0.8, stem, study="xor5d")


def _draw_efficiency_images(stem):
    efficiency_figure(_images_per_run(), 0.8, stem, study="fmnist-split-transfer")


def _draw_efficiency_many(stem):  # a learner study: 39 conditions (learners × rates)
    conditions = [f"frozen_{p}.{learner}.lr{lr}" for p in ("rand", "sufficient")
                  for learner in ("eg", "freeze_sgd", "project", "reparam-abs", "reparam-exp", "reparam-softplus")
                  for lr in (0.01, 0.03, 0.1)] + [f"fluid_rand.lr{lr}" for lr in (0.03, 0.1, 0.3)]
    efficiency_figure(_grid_per_run(sizes=[20, 100], conditions=conditions, trials=2), 0.8, stem,
                      study="xor5d-learners")


def _draw_many(stem, figure):
    """The curves, magnitudes and differences of a learner study's 39 conditions."""
    from polarnet.analysis.figures import difference_figure, magnitude_figure
    from polarnet.analysis.stats import compare_to_reference
    from polarnet.experiments.results import QUANTILES

    conditions = [f"frozen_{p}.{learner}.lr{lr}" for p in ("rand", "sufficient")
                  for learner in ("eg", "freeze_sgd", "project", "reparam-abs", "reparam-exp", "reparam-softplus")
                  for lr in (0.01, 0.03, 0.1)] + ["fluid_rand", "fluid_rand.lr0.1", "fluid_rand.lr0.3"]
    if figure == "curves":
        table = _epochs_table(sizes=(100,), epochs=6)
        table = pd.concat([table.assign(condition=c, run=table["run"] + c) for c in conditions])
        curves_figure(table, stem, study="xor5d-learners, n = 100", mark=0.8)
    elif figure == "magnitudes":
        rows = [{"condition": c, "run": f"{c}{t}", "layer": layer, **{q: q / 2 for q in QUANTILES}}
                for c in conditions for t in range(2) for layer in ("0.weight", "2.weight")]
        magnitude_figure(pd.DataFrame(rows), stem, study="xor5d-learners")
    else:
        per_run = _grid_per_run(sizes=[20, 100], conditions=conditions, trials=2)
        stats = compare_to_reference(per_run, "error_at_convergence", "fluid_rand")
        difference_figure(stats, "error at convergence", stem, study="xor5d-learners")


def _draw_efficiency_by_hidden(stem):
    efficiency_figure(_grid_per_run(sizes=[500], hidden=[2, 3, 5, 10, 15, 32]), 0.8, stem, study="xor5d-width",
                      by="hidden")


def _draw_curves(stem):
    curves_figure(_epochs_table(), stem, study="xor5d, n = 500", mark=0.8)


def _draw_sign_changes(stem):
    sign_change_figure(_epochs_table(sizes=GRID), "fluid_rand", stem, study="xor5d")


def _draw_differences(stem, by="n_train"):
    from polarnet.analysis.figures import difference_figure
    from polarnet.analysis.stats import compare_to_reference

    per_run = _grid_per_run() if by == "n_train" else _grid_per_run(sizes=[500], hidden=[2, 3, 5, 10, 15, 32])
    stats = compare_to_reference(per_run, "error_at_convergence", "fluid_rand", by=by)
    difference_figure(stats, "error at convergence", stem, study="xor5d", by=by)


def _draw_theory(stem):
    from polarnet.analysis.figures import theory_figure
    from polarnet.analysis.theory_table import theory_table

    table = theory_table([2, 3, 5, 10, 15, 32, 64], trials=200)
    table["simulated"], table["sim_runs"] = np.linspace(0, 1, len(table)), 10
    theory_figure(table, stem, study="xor5d-width")


def _draw_resets(stem):
    from polarnet.analysis.figures import reset_figure

    reset_figure(_grid_per_run(resets=("posRand", "posCon", "zero", "flip")), stem, study="xor5d-reset")


def _draw_magnitudes(stem):
    from polarnet.analysis.figures import magnitude_figure
    from polarnet.experiments.results import QUANTILES

    layers = ["features.0.weight", "features.3.weight", "classifier.0.weight", "classifier.2.weight",
              "classifier.4.weight"]
    rows = [{"condition": c, "run": f"{c}{t}", "layer": layer, **{q: s * q for q in QUANTILES}}
            for c, s in (("frozen_rand", 0.1), ("fluid_in_weight", 0.25)) for t in range(2) for layer in layers]
    magnitude_figure(pd.DataFrame(rows), stem, study="fmnist-split-transfer")


def _draw_learners(stem):
    from polarnet.analysis.learner_comparison import LearnerComparison, learner_figure

    rows = [{"hidden": 64, "arm": f"frozen_rand / {learner}", "base": "frozen_rand", "learner": learner, "lr": 0.03,
             "n_train": n, "runs": 3, "success_rate": 1.0, "median_epochs": 20 - i - n / 50}
            for i, learner in enumerate(("freeze_sgd", "eg")) for n in GRID]
    rows += [{"hidden": 64, "arm": "fluid_rand", "base": "fluid_rand", "learner": "fluid", "lr": 0.03, "n_train": n,
              "runs": 3, "success_rate": 1.0, "median_epochs": 15 - n / 50} for n in GRID]
    comparison = LearnerComparison(pd.DataFrame({"hidden": [64]}), pd.DataFrame(rows), 0.8, 0.05, pd.DataFrame())
    learner_figure(comparison, stem, study="xor5d-learners")


REPORT_FIGURES = {"efficiency": _draw_efficiency, "efficiency-images": _draw_efficiency_images,
                  "efficiency-many-conditions": _draw_efficiency_many,
                  **{f"{f}-many-conditions": (lambda stem, _f=f: _draw_many(stem, _f))
                     for f in ("curves", "magnitudes", "differences")},
                  "efficiency-by-hidden": _draw_efficiency_by_hidden, "curves": _draw_curves,
                  "sign-changes": _draw_sign_changes, "differences": _draw_differences,
                  "differences-by-hidden": lambda stem: _draw_differences(stem, by="hidden"),
                  "theory": _draw_theory, "reset-rules": _draw_resets, "magnitudes": _draw_magnitudes,
                  "learners": _draw_learners}

#: the smallest text the report may show, in CSS pixels
MIN_TEXT_PX = 9
#: the smallest plotting area, in CSS pixels each way
MIN_PANEL_PX = 120


def _texts(ax) -> list:
    """An axes' visible, non-empty texts outside its plotting area: the tick labels of the
    ticks it draws, the axis labels and the titles."""
    found = []
    for axis in (ax.xaxis, ax.yaxis):
        low, high = sorted(axis.get_view_interval())
        span = (high - low) * 1e-9
        for tick in axis.get_major_ticks() + axis.get_minor_ticks():
            if low - span <= tick.get_loc() <= high + span:
                found += [t for t in (tick.label1, tick.label2) if t.get_visible() and t.get_text().strip()]
        found.append(axis.label)
    found += [ax.title, ax._left_title, ax._right_title]
    return [t for t in found if t.get_visible() and t.get_text().strip()]


def _name(ax) -> str:
    return repr(ax.get_title() or ax.get_ylabel())


def _layout_problems(fig) -> list[str]:
    """What makes ``fig`` hard to read at the report's width: overlapping tick labels of one
    axis; an axes' labels, title or legend running into another panel (its plotting area or
    its labels), or into the figure's title or legend; text cut off at the figure's edge; text
    below MIN_TEXT_PX; a panel squashed below MIN_PANEL_PX."""
    from itertools import combinations

    from matplotlib.legend import Legend
    from matplotlib.text import Text

    from polarnet.analysis.figures import REPORT_PX_PER_INCH, REPORT_WIDTH_PX

    fig.set_dpi(REPORT_PX_PER_INCH)  # one figure inch is this many CSS pixels in the report
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    axes = [ax for ax in fig.axes if ax.get_visible()]
    for ax in axes:
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            ticks = {tick.label1 for tick in axis.get_major_ticks() + axis.get_minor_ticks()}
            labels = [t for t in _texts(ax) if t in ticks]
            for a, b in combinations(labels, 2):
                if a.get_window_extent(renderer).overlaps(b.get_window_extent(renderer)):
                    problems.append(f"{name} tick labels {a.get_text()!r} and {b.get_text()!r} overlap "
                                    f"(panel {_name(ax)})")
    # what each owner (a panel, or the figure itself) draws outside a plotting area
    owned = {ax: [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(ax)]
             + [("legend", c.get_window_extent(renderer)) for c in ax.get_children() if isinstance(c, Legend)]
             for ax in axes}
    owned[fig] = [(t.get_text(), t.get_window_extent(renderer)) for t in [fig._suptitle] if t is not None
                  and t.get_visible() and t.get_text()] + [("figure legend", g.get_window_extent(renderer))
                                                           for g in fig.legends]
    for a, b in ((a, b) for a in owned for b in owned if a is not b):
        others = owned[b] + ([("plotting area", b.get_window_extent(renderer))] if b is not fig else [])
        for text, box in owned[a]:
            hit = next((what for what, other in others if box.overlaps(other)), None)
            if hit is not None:
                problems.append(f"{text!r} of {_name(a) if a is not fig else 'the figure'} runs into {hit!r} of "
                                f"{_name(b) if b is not fig else 'the figure'}")
    for (a, box_a), (b, box_b) in combinations(owned[fig], 2):
        if box_a.overlaps(box_b):
            problems.append(f"{a!r} and {b!r} of the figure overlap")
    tight = fig.get_tightbbox(renderer)  # what save() keeps (bbox_inches="tight"), in inches
    edge = tight.transformed(fig.dpi_scale_trans).padded(1)
    for owner in owned.values():
        for text, box in owner:
            if not (edge.x0 <= box.x0 and box.x1 <= edge.x1 and edge.y0 <= box.y0 and box.y1 <= edge.y1):
                problems.append(f"{text!r} is cut off at the figure's edge")
    scale = min(1.0, REPORT_WIDTH_PX / ((tight.width + 0.2) * REPORT_PX_PER_INCH))  # wider ones are shrunk (+ pad)
    for ax in axes:  # a long legend or title must not squash the panels
        box = ax.get_window_extent(renderer)
        if min(box.width, box.height) * scale < MIN_PANEL_PX:
            problems.append(f"panel {_name(ax)} is {box.width * scale:.0f} × {box.height * scale:.0f} CSS px")
    for text in fig.findobj(Text):
        if text.get_visible() and text.get_text().strip() and text.figure is not None:
            px = text.get_fontsize() / 72 * REPORT_PX_PER_INCH * scale
            if px < MIN_TEXT_PX - 0.05:
                problems.append(f"{text.get_text()[:40]!r} is {px:.1f} CSS px at the report's width")
    return sorted(set(problems))


@pytest.mark.parametrize("name", sorted(REPORT_FIGURES))
def test_report_figures_are_readable_at_the_report_width(tmp_path, monkeypatch, name) -> None:
    import matplotlib.pyplot as plt

    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: None)  # keep the figure that save() wrote
    before = set(plt.get_fignums())
    REPORT_FIGURES[name](tmp_path / name)
    drawn = [plt.figure(n) for n in plt.get_fignums() if n not in before]
    assert len(drawn) == 1 and (tmp_path / f"{name}.png").is_file()
    try:
        assert _layout_problems(drawn[0]) == []
    finally:
        close(drawn[0])


@pytest.fixture
def kept(monkeypatch):
    """The figures that save() wrote, kept open (plt.close does nothing) until the test ends."""
    import matplotlib.pyplot as plt

    close = plt.close
    before = set(plt.get_fignums())
    monkeypatch.setattr(plt, "close", lambda fig=None: None)
    yield lambda: [plt.figure(n) for n in plt.get_fignums() if n not in before]
    for n in set(plt.get_fignums()) - before:
        close(n)


def test_reset_figure_gives_each_rule_its_own_line_style_and_marker(tmp_path, kept) -> None:
    from matplotlib.colors import to_hex

    from polarnet.analysis.figures import RESET_STYLES, reset_figure
    from polarnet.experiments.conditions import get_condition

    per_run = _grid_per_run(sizes=[20, 60, 100], resets=("posRand", "posCon", "zero", "flip", "mine"))
    svg = reset_figure(per_run, tmp_path / "c1", study="s", note="no two rules differ significantly")[1].read_text()
    assert "no two rules differ significantly" in svg
    ax = kept()[0].axes[0]
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert len(lines) == 2 * 5 + 1  # two frozen conditions × five rules, and the fluid reference
    for condition in ("frozen_sufficient", "frozen_rand"):
        mine = [line for line in lines if to_hex(line.get_color()) == get_condition(condition).color]
        styles = {(str(line.get_linestyle()), line.get_marker()) for line in mine}
        assert len(mine) == 5 and len(styles) == 5  # one colour per condition, one style per rule
        assert len({tuple(line.get_xdata()) for line in mine}) == 5  # set apart along n, so none hides another
    assert {(RESET_STYLES[r][1]) for r in ("posRand", "posCon", "zero", "flip")} == {"o", "s", "^", "D"}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["frozen_sufficient", "frozen_rand", "fluid_rand", "reset rule:", "posRand", "posCon", "zero",
                      "flip", "mine", "none (fluid)"]


def test_sign_change_figure_draws_each_size_and_says_which_epochs(tmp_path, kept) -> None:
    def title(fig) -> str:
        return fig._suptitle.get_text().replace("\n", " ")

    table = _epochs_table(sizes=(8, 60), epochs=12)
    sign_change_figure(table, "fluid_rand", tmp_path / "a", study="s")
    fig = kept()[-1]
    assert "all 12 epochs, per training size (mean; 2 runs per point)" in title(fig)
    assert [ax.get_title() for ax in fig.axes] == ["0.weight", "2.weight"]
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["n = 8", "n = 60"]
    # n = 8's line is its own runs' mean (0.1 / 1.08 at epoch 1), not pooled with n = 60's
    assert fig.axes[0].get_lines()[0].get_ydata()[0] == pytest.approx(10 / 1.08)
    sign_change_figure(table, "fluid_rand", tmp_path / "b", study="s", max_epoch=5)
    assert "the first 5 of 12 epochs" in title(kept()[-1])
    sign_change_figure(_epochs_table(sizes=GRID, epochs=2), "fluid_rand", tmp_path / "c")
    assert "6 of 11 training sizes" in title(kept()[-1])
    assert [line.get_label() for line in kept()[-1].axes[0].get_lines()] == [
        "n = 8", "n = 32", "n = 52", "n = 72", "n = 92", "n = 500"]  # every other size of the grid


def test_efficiency_and_difference_figures_against_hidden_units(tmp_path, kept) -> None:
    from polarnet.analysis.figures import difference_figure
    from polarnet.analysis.stats import compare_to_reference

    per_run = _grid_per_run(sizes=[500], hidden=[2, 3, 5, 10, 15, 32])
    efficiency_figure(per_run, 0.8, tmp_path / "e", study="s", by="hidden")
    stats = compare_to_reference(per_run, "error_at_convergence", "fluid_rand", by="hidden")
    difference_figure(stats, "error", tmp_path / "d", study="s", by="hidden")
    for fig in kept():
        for ax in fig.axes:
            assert ax.get_xlabel() == "hidden units"
            assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "3", "5", "10", "15", "32"]
            assert all(len(line.get_xdata()) in (0, 6) for line in ax.get_lines() if line.get_label() != "_child0")


def test_curves_figure_draws_the_dashed_line_only_at_the_given_mark(tmp_path, kept) -> None:
    table = _epochs_table(sizes=(60,))
    assert "dashed" not in curves_figure(table, tmp_path / "a", study="s")[1].read_text()
    svg = curves_figure(table, tmp_path / "b", study="s", mark=0.6)[1].read_text()
    assert "dashed: mean validation accuracy first ≥ 60%" in svg
    dashed = [line for line in kept()[-1].axes[1].get_lines() if line.get_linestyle() == "--"]
    # 0.5 + 0.04 · epoch · 1.6 first reaches 60% at epoch 2, for both conditions
    assert [line.get_xdata()[0] for line in dashed] == [2, 2]


# -- what the study really has: distinct colours, model order, bands within 0–100% (issue 22) ----------------------
def test_every_presets_conditions_get_clearly_different_colours(tmp_path, kept) -> None:
    from itertools import combinations

    from matplotlib.colors import to_hex

    from polarnet.analysis.colors import MIN_DISTANCE, color_distance, condition_colors, line_styles
    from polarnet.experiments.config import list_presets, load_study

    for preset in list_presets():
        conditions = list(load_study(preset, validate=False).conditions)
        colors = condition_colors(conditions)
        assert list(colors) == conditions
        if len(conditions) <= 12:  # the palette keeps twelve apart; more repeat a colour with another line style
            closest = min(color_distance(a, b) for a, b in combinations(colors.values(), 2))
            assert closest >= MIN_DISTANCE, f"{preset}: two conditions' colours only {closest:.0f} apart"
        styles = line_styles(colors)
        assert len({(colors[c], styles[c]) for c in conditions}) == len(conditions), preset
    # the paper's Fig. 1 colours stay
    assert condition_colors(["frozen_sufficient", "frozen_rand", "fluid_rand"]) == {
        "frozen_sufficient": "#d62728", "frozen_rand": "#2ca02c", "fluid_rand": "#1f77b4"}
    # the figure draws them: the split-transfer study's red and brown (16 apart) were the complaint
    split = list(load_study("fmnist-split-transfer", validate=False).conditions)
    per_run = pd.DataFrame([{"condition": c, "n_train": n, "run": f"{c}{n}{t}", "error_at_convergence": 0.1 * i,
                             "epochs_to_threshold": 2.0} for i, c in enumerate(split) for n in (50, 200)
                            for t in range(2)])
    efficiency_figure(per_run, 0.8, tmp_path / "eff", study="s")
    drawn = {line.get_label(): to_hex(line.get_color()) for line in kept()[-1].axes[0].get_lines()
             if line.get_label() in split}
    assert set(drawn) == set(split)
    assert min(color_distance(a, b) for a, b in combinations(drawn.values(), 2)) >= MIN_DISTANCE


def test_magnitude_panels_follow_the_models_layer_order(tmp_path, kept) -> None:
    from polarnet.analysis.figures import magnitude_figure
    from polarnet.experiments import Store
    from polarnet.experiments.plan import plan
    from polarnet.experiments.results import EpochRecord, RunResult

    # a model's order: features.3 before features.10 (not as text), features before classifier
    layers = ["features.0.weight", "features.3.weight", "features.10.weight", "classifier.1.weight"]
    specs = plan(load_study("xor5d", ["trials=1", "epochs=1", "sizes=[8]", "hidden=[4]"]))[:2]
    with Store(tmp_path / "study") as store:
        store.mark_running(specs)
        store.record([RunResult(spec.key, "done", epochs=[EpochRecord(1, 0.5, 0.6, 0.5, 0.6, 0, {}, 0.1)],
                                extra={"init_magnitudes": {name: [0.1 * k] * 21 for k, name in enumerate(layers)}})
                      for spec in specs])
        magnitudes = store.magnitudes()
    assert list(dict.fromkeys(magnitudes["layer"])) == layers
    magnitude_figure(magnitudes, tmp_path / "c6", study="s")
    assert [ax.get_title() for ax in kept()[-1].axes if ax.get_visible()] == layers


@pytest.mark.parametrize("epochs_run", [3, 12])  # error bars (few epochs) and bands
def test_learning_curve_bands_stay_within_0_and_100_percent(tmp_path, kept, epochs_run) -> None:
    from matplotlib.collections import PolyCollection

    # two runs per condition, at 100% and 60%: mean 80%, std 28.3 pp, so mean + std would be 108%
    table = pd.DataFrame([{"condition": c, "run": f"{c}{t}", "status": "done", "epoch": e,
                           "train_acc": acc, "val_acc": acc}
                          for c in ("frozen_rand", "fluid_rand") for t, acc in enumerate((1.0, 0.6))
                          for e in range(1, epochs_run + 1)])
    svg = curves_figure(table, tmp_path / "curves", study="s")[1].read_text()
    for ax in kept()[-1].axes:
        ys = [y for c in ax.collections for path in c.get_paths() for y in path.vertices[:, 1]]
        ys += [y for line in ax.get_lines() for y in line.get_ydata()]  # error bars' caps and means
        assert ys and max(ys) <= 100 + 1e-9 and min(ys) >= 0
        if epochs_run > 5:
            band = [c for c in ax.collections if isinstance(c, PolyCollection)]
            assert band and max(p.vertices[:, 1].max() for c in band for p in c.get_paths()) == pytest.approx(100)
    assert "mean ± std (cut at 0 and 100%)" in svg  # the figure says so
