from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from polarnet.analysis.figures import curves_figure, efficiency_figure, sign_change_figure
from polarnet.analysis.metrics import run_metrics


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
