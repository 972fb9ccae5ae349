"""Learners compared at their best learning rate: answers known by construction."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from polarnet.analysis import figures
from polarnet.analysis.learner_comparison import (best_rates, compare_learners, finding_text, has_learners,
                                                  label_arms, learner_figure)
from polarnet.analysis.report import build_report
from polarnet.experiments import load_study, run_study

SIZES = (8, 20, 32, 40, 52, 60)
TRIALS = 12

# Names say nothing here on purpose: what a condition is comes from its stored settings.
SETTINGS = {
    "lr": 0.03, "thresholds": [0.8], "resets": ["posRand"], "learners": ["freeze_sgd", "eg"],
    "define_condition": {
        "q1": {"polarity": "random", "frozen": True, "learner": "freeze_sgd", "lr": None},
        "q2": {"polarity": "random", "frozen": True, "learner": "eg", "lr": 0.01},
        "q3": {"polarity": "random", "frozen": True, "learner": "eg", "lr": 0.1},
        "q4": {"polarity": "rule", "rule": "xor_sufficient", "frozen": True, "learner": "eg", "lr": 0.1},
    },
}


def _runs(condition: str, epochs, auc: float = 0.8, reset: str = "none", sizes=SIZES, hidden: int = 64) -> pd.DataFrame:
    """``TRIALS`` runs per size; ``epochs(n, trial)`` gives the epochs to the threshold (NaN: never)."""
    rows = [{"condition": condition, "n_train": n, "hidden": hidden, "reset": reset, "trial": t,
             "run": f"{condition}-{n}-{t}", "epochs_to_threshold": float(epochs(n, t)), "auc": auc,
             "final_accuracy": 1.0, "error_at_convergence": 0.0} for n in sizes for t in range(TRIALS)]
    return pd.DataFrame(rows)


def _study(eg_epochs, other_eg=lambda n, t: 50 + t % 3, eg_auc=(0.7, 0.9)) -> pd.DataFrame:
    """freeze_sgd (q1) needs 10–15 epochs; eg at lr 0.1 (q3) ``eg_epochs``; eg at lr 0.01 (q2)
    ``other_eg``; ``eg_auc`` the two rates' validation scores."""
    return pd.concat([_runs("q1", lambda n, t: 10 + t % 6, reset="posRand"), _runs("q2", other_eg, eg_auc[0]),
                      _runs("q3", eg_epochs, eg_auc[1]), _runs("fluid_rand", lambda n, t: 3 + t % 2)],
                     ignore_index=True)


def test_arms_come_from_the_stored_settings_not_the_names() -> None:
    arms = label_arms(_study(lambda n, t: 5), SETTINGS).drop_duplicates("condition").set_index("condition")
    assert arms.loc["q2", "arm"] == arms.loc["q3", "arm"] != arms.loc["q1", "arm"]  # differ only in lr: one arm
    assert list(arms.loc[["q1", "q2", "q3"], "learner"]) == ["freeze_sgd", "eg", "eg"]
    assert list(arms.loc[["q1", "q2", "q3"], "lr"]) == [0.03, 0.01, 0.1]  # no lr of its own: the study's
    assert arms.loc["q1", "base"] == arms.loc["q3", "base"]
    # fluid_rand has no define_condition entry: the registered condition says it is fluid
    assert arms.loc["fluid_rand", "learner"] == "fluid" and not arms.loc["fluid_rand", "frozen"]
    # another polarity is another base, whatever the names
    q4 = label_arms(_runs("q4", lambda n, t: 5), SETTINGS)
    assert q4["base"].iloc[0] != arms.loc["q3", "base"]


def test_best_rate_is_the_higher_validation_score_and_failed_runs_count_zero() -> None:
    arms = label_arms(_study(lambda n, t: 5), SETTINGS)
    rates = best_rates(arms).set_index("learner")
    assert rates.loc["eg", "rates"] == (0.01, 0.1) and rates.loc["eg", "best_lr"] == 0.1
    assert rates.loc["eg", "score"] == pytest.approx(0.9)
    assert rates.loc["eg", "scores"] == pytest.approx({0.01: 0.7, 0.1: 0.9})
    # a third of lr 0.1's runs diverged: its mean, with those at 0, falls below lr 0.01's
    failed = pd.DataFrame({"condition": ["q3"] * 36, "hidden": [64] * 36, "status": ["failed"] * 36})
    rates = best_rates(arms, failed).set_index("learner")
    assert rates.loc["eg", "best_lr"] == 0.01 and rates.loc["eg", "failed"] == 36
    assert rates.loc["eg", "scores"][0.1] == pytest.approx(0.9 * 72 / 108)


def test_a_learner_twice_as_fast_everywhere_is_significant_at_every_size() -> None:
    comparison = compare_learners(_study(lambda n, t: 5 + t % 3), SETTINGS)
    tests = comparison.tests
    assert len(tests) == len(SIZES) and set(tests["lr"]) == {0.1}  # compared at its best rate only
    assert tests["significant"].all() and (tests["r"] == -1.0).all()
    assert (tests["p_holm"] >= tests["p"]).all()  # Holm never lowers a p-value
    text = finding_text(comparison)
    assert "reached 80% in fewer epochs than freeze_sgd at 6 of 6 sizes (significant at 6: n = 8, 20, 32, 40, 52, " \
           "60), in more at 0 (significant at 0)" in text
    assert "Significantly faster than freeze_sgd: eg (" in text and "at 6 sizes." in text
    assert "No learner was significantly slower than freeze_sgd at any size." in text
    # the fluid condition is shown, never tested
    fluid = comparison.sizes[comparison.sizes["learner"] == "fluid"]
    assert len(fluid) == len(SIZES) and fluid["reference"].isna().all() and fluid["p"].isna().all()


def test_the_same_learner_is_significant_nowhere_and_the_text_says_so() -> None:
    comparison = compare_learners(_study(lambda n, t: 10 + t % 6), SETTINGS)
    assert not comparison.tests["significant"].any() and (comparison.tests["r"] == 0).all()
    text = finding_text(comparison)
    assert "at 0 of 6 sizes (significant at 0), in more at 0 (significant at 0), as fast at 6" in text
    assert "No learner reached 80% significantly faster than freeze_sgd at any size." in text
    assert "No learner was significantly slower than freeze_sgd at any size." in text


def test_a_slower_learner_is_stated_plainly() -> None:
    comparison = compare_learners(_study(lambda n, t: 20 + t % 6), SETTINGS)
    text = finding_text(comparison)
    assert "at 0 of 6 sizes (significant at 0), in more at 6 (significant at 6" in text
    assert "No learner reached 80% significantly faster than freeze_sgd at any size." in text
    assert "Significantly slower than freeze_sgd: eg (" in text


def test_holm_counts_across_sizes() -> None:
    # faster by construction at the two smallest sizes only; elsewhere identical
    comparison = compare_learners(_study(lambda n, t: (3 + t % 2) if n <= 20 else 10 + t % 6), SETTINGS)
    tests = comparison.tests.set_index("n_train")
    assert list(tests.loc[[8, 20], "significant"]) == [True, True] and not tests.loc[32:, "significant"].any()
    # Holm multiplies the smallest of the six p-values by 6
    assert tests["p_holm"].min() == pytest.approx(min(1.0, tests["p"].min() * len(SIZES)))
    assert "fewer epochs than freeze_sgd at 2 of 6 sizes (significant at 2: n = 8, 20)" in finding_text(comparison)


def test_runs_that_never_reach_the_threshold_count_as_the_slowest() -> None:
    # eg reaches 80% in 1 epoch in 2 of 12 trials and never in the rest: slower, not faster
    comparison = compare_learners(_study(lambda n, t: 1 if t < 2 else math.nan), SETTINGS)
    tests = comparison.tests
    assert (tests["r"] > 0).all() and (tests["median_epochs"] == 1.0).all()  # the median of those that got there
    assert list(tests["success_rate"]) == pytest.approx([2 / 12] * len(SIZES))


def test_neither_reaching_the_threshold_is_not_tested() -> None:
    per_run = pd.concat([_runs("q1", lambda n, t: math.nan, reset="posRand"), _runs("q3", lambda n, t: math.nan)])
    comparison = compare_learners(per_run, SETTINGS)
    assert comparison.tests["p"].isna().all() and not comparison.tests["significant"].any()
    text = finding_text(comparison)
    assert "nor freeze_sgd reached 80% in any run, so nothing was tested" in text
    assert text.endswith("So this study cannot say whether any learner reaches 80% faster or slower than freeze_sgd.")


def test_without_freeze_sgd_there_is_nothing_to_compare_with() -> None:
    comparison = compare_learners(_runs("q3", lambda n, t: 5), SETTINGS)
    assert comparison.tests.empty and "No learner could be compared with freeze_sgd" in finding_text(comparison)


def test_has_learners() -> None:
    assert has_learners(SETTINGS) and has_learners({"lr_sweep": {"fluid": [0.1]}})
    assert not has_learners({"conditions": ["frozen_rand", "fluid_rand"], "define_condition": {}})
    assert has_learners({"define_condition": {"a": {"frozen": True, "learner": "eg"}, "b": {"frozen": True}}})


def test_figure_renders_each_learner_distinctly_and_its_size_labels_do_not_overlap(tmp_path, monkeypatch) -> None:
    settings = {**SETTINGS, "define_condition": {**SETTINGS["define_condition"],
                                                 "q5": {"polarity": "random", "frozen": True, "learner": "project"},
                                                 "q6": {"polarity": "random", "frozen": True,
                                                        "learner": "reparam-softplus"}}}
    sizes = (8, 20, 32, 40, 52, 60, 72, 80, 92, 100, 500)  # the xor5d grid: close sizes on a log axis
    per_run = pd.concat([_runs(c, lambda n, t, k=k: 5 + k + t % 3, sizes=sizes) for k, c in
                         enumerate(["q1", "q3", "q4", "q5", "q6", "fluid_rand"])])
    per_run.loc[per_run["condition"] == "q1", "reset"] = "posRand"
    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, stem: drawn.append(fig) or [])
    learner_figure(compare_learners(per_run, settings), tmp_path / "fig", study="s")
    fig, = drawn
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2  # one per frozen base condition (random, rule)
    lines = [line for line in panels[0].get_lines() if line.get_label() and not line.get_label().startswith("_")]
    styles = {(line.get_color(), str(line.get_linestyle()), line.get_marker()) for line in lines}
    assert len(lines) == 5 and len(styles) == 5  # freeze_sgd, eg, project, reparam-softplus, fluid
    assert len({c for c, _, _ in styles}) == 5 and len({m for _, _, m in styles}) == 5
    renderer = fig.canvas.get_renderer()
    for ax in panels:
        boxes = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_visible() and t.get_text()),
                       key=lambda b: b.x0)
        assert len(boxes) >= 4 and "500" in [t.get_text() for t in ax.get_xticklabels() if t.get_visible()]
        assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:]))  # no two overlap
    figures.plt.close(fig)
    # and it writes its files
    monkeypatch.undo()
    paths = learner_figure(compare_learners(per_run, settings), tmp_path / "fig", study="s")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 0 for p in paths)


def test_report_of_a_learner_study(tmp_path) -> None:
    study = load_study("xor5d", ["trials=2", "epochs=3", "sizes=[8, 20]", "learners=['freeze_sgd','eg']",
                                 "lr_sweep={eg=[0.01, 0.1]}"])
    run_study(study, tmp_path, workers=1, progress=False)
    html_path, md_path = build_report(tmp_path)
    md, html = md_path.read_text(), html_path.read_text()
    assert "## Learners: best learning rate" in md and "## Learners: epochs to 80% against freeze_sgd" in md
    best = md.split("## Learners: best learning rate")[1].split("## ")[0]
    rows = [line for line in best.splitlines() if line.startswith("| frozen_")]
    assert len(rows) == 4  # frozen_sufficient and frozen_rand, each with freeze_sgd and eg
    eg = [row for row in rows if "/ eg" in row]
    assert all("| 0.01, 0.1 |" in row for row in eg)
    assert re.search(r"(No learner reached 80% significantly faster|Significantly faster than freeze_sgd|"
                     r"this study cannot say whether any learner)", md)
    assert "learners.png" in md and "Learners: epochs to 80% against freeze_sgd" in html


def test_a_study_without_learners_has_no_learner_section(tmp_path) -> None:
    run_study(load_study("xor5d", ["trials=1", "epochs=2", "sizes=[8]", "val_size=100"]), tmp_path, workers=1,
              progress=False)
    _, md_path = build_report(tmp_path)
    assert "Learners" not in md_path.read_text()
