"""Tests for polarnet.analysis.metrics: error at convergence, epochs to threshold, summaries."""

from __future__ import annotations

import math

import numpy as np

import pandas as pd
import pytest

from polarnet.analysis.metrics import format_summary, run_metrics, summary_table


def _frame(runs: dict) -> pd.DataFrame:
    """Build an epochs table like ``Store.epochs()`` from ``{run: (condition, n, trial, status, losses, accs)}``."""
    rows = []
    for run, (condition, n, trial, status, losses, accs) in runs.items():
        for epoch, (loss, acc) in enumerate(zip(losses, accs), start=1):
            rows.append({"condition": condition, "n_train": n, "hidden": 64, "reset": "posRand", "trial": trial,
                         "frozen": 1, "status": status, "run": run, "epoch": epoch, "train_loss": 0.0,
                         "train_acc": 0.0, "val_loss": loss, "val_acc": acc})
    return pd.DataFrame(rows)


RUNS = {
    # minimum val loss at epoch 2 (acc 0.7): error 0.3; first acc ≥ 0.8 at epoch 3; final 0.9
    "a": ("c1", 8, 0, "done", [0.9, 0.3, 0.5, 0.6], [0.5, 0.7, 0.85, 0.9]),
    # minimum at epoch 4 (acc 0.83): error 0.17; first ≥ 0.8 at epoch 2
    "b": ("c1", 8, 1, "done", [0.8, 0.7, 0.6, 0.5], [0.6, 0.81, 0.82, 0.83]),
    # never reaches 0.8; minimum at epoch 2 (acc 0.6): error 0.4
    "c": ("c1", 8, 2, "done", [0.7, 0.6, 0.65, 0.66], [0.5, 0.6, 0.7, 0.75]),
    # failed: excluded even though it reaches 0.8
    "d": ("c1", 8, 3, "failed", [0.1, math.nan], [0.99, math.nan]),
    # a second condition: error 0.05, threshold at epoch 1
    "e": ("c2", 8, 0, "done", [0.2, 0.1], [0.9, 0.95]),
    # a second size of c1
    "f": ("c1", 20, 0, "done", [0.5, 0.4, 0.45], [0.7, 0.75, 0.8]),
}


@pytest.fixture
def epochs():
    return _frame(RUNS)


def test_run_metrics_by_hand(epochs):
    per = run_metrics(epochs, 0.8).set_index("run")
    assert sorted(per.index) == ["a", "b", "c", "e", "f"]  # the failed run is left out
    assert per["error_at_convergence"].to_dict() == pytest.approx({"a": 0.3, "b": 0.17, "c": 0.4, "e": 0.05, "f": 0.25})
    assert per["final_accuracy"].to_dict() == pytest.approx({"a": 0.9, "b": 0.83, "c": 0.75, "e": 0.95, "f": 0.8})
    ett = per["epochs_to_threshold"]
    assert ett["a"] == 3 and ett["b"] == 2 and ett["e"] == 1 and ett["f"] == 3
    assert math.isnan(ett["c"])
    assert (per.loc["a", "condition"], per.loc["a", "n_train"], per.loc["a", "hidden"], per.loc["a", "reset"],
            per.loc["a", "trial"]) == ("c1", 8, 64, "posRand", 0)
    assert per.loc["f", "n_train"] == 20


def test_run_metrics_columns(epochs):
    assert run_metrics(epochs, 0.8).columns.tolist() == [
        "condition", "n_train", "hidden", "reset", "trial", "run", "error_at_convergence", "error_at_last_epoch",
        "final_accuracy", "auc", "epochs_to_threshold"]


def test_threshold_is_inclusive_and_thresholds_differ(epochs):
    per = run_metrics(epochs, 0.85).set_index("run")["epochs_to_threshold"]
    assert per["a"] == 3  # val_acc exactly 0.85 counts
    assert math.isnan(per["b"]) and math.isnan(per["f"])
    per = run_metrics(epochs, 0.5).set_index("run")["epochs_to_threshold"]
    assert per.to_dict() == {"a": 1, "b": 1, "c": 1, "e": 1, "f": 1}
    per = run_metrics(epochs, 1.0).set_index("run")["epochs_to_threshold"]
    assert per.isna().all()


def test_epoch_order_of_the_rows_does_not_matter(epochs):
    shuffled = epochs.sample(frac=1.0, random_state=0)
    a = run_metrics(epochs, 0.8).set_index("run").sort_index()
    b = run_metrics(shuffled, 0.8).set_index("run").sort_index()
    pd.testing.assert_frame_equal(a, b)


def test_nan_val_loss_is_never_the_minimum():
    e = _frame({"r": ("c", 8, 0, "done", [0.6, math.nan, 0.4, 0.5], [0.5, 0.99, 0.7, 0.9])})
    row = run_metrics(e, 0.8).iloc[0]
    assert row["error_at_convergence"] == pytest.approx(0.3)  # epoch 3, not the NaN epoch 2
    assert row["epochs_to_threshold"] == 2  # accuracy still counts


def test_ties_take_the_first_minimum():
    e = _frame({"r": ("c", 8, 0, "done", [0.5, 0.3, 0.3], [0.5, 0.6, 0.9])})
    assert run_metrics(e, 0.8).iloc[0]["error_at_convergence"] == pytest.approx(0.4)


def test_summary_table_by_hand(epochs):
    table = summary_table(run_metrics(epochs, 0.8))
    assert table.columns.tolist() == ["condition", "n_train", "hidden", "reset", "median_epochs", "success_rate",
                                      "median_error", "error_q25", "error_q75", "mean_final_accuracy",
                                      "std_final_accuracy", "runs"]
    rows = {(r.condition, r.n_train): r for r in table.itertuples(index=False)}
    assert set(rows) == {("c1", 8), ("c1", 20), ("c2", 8)}
    c1 = rows["c1", 8]
    assert c1.median_epochs == 2.5  # median of 3 and 2; run c never reached 0.8
    assert c1.success_rate == pytest.approx(2 / 3)
    assert c1.median_error == pytest.approx(0.3)  # median of 0.3, 0.17, 0.4
    assert c1.runs == 3  # the failed run d is not counted
    c2 = rows["c2", 8]
    assert (c2.median_epochs, c2.success_rate, c2.runs) == (1.0, 1.0, 1)
    assert c2.median_error == pytest.approx(0.05)
    assert rows["c1", 20].median_error == pytest.approx(0.25)


def test_summary_when_nobody_reaches_the_threshold(epochs):
    table = summary_table(run_metrics(epochs, 0.99))
    row = table[(table.condition == "c1") & (table.n_train == 8)].iloc[0]
    assert math.isnan(row["median_epochs"]) and row["success_rate"] == 0.0


def test_format_summary_contains_the_numbers(epochs):
    text = format_summary(summary_table(run_metrics(epochs, 0.8)), 0.8)
    lines = text.splitlines()
    assert len(lines) == 4
    assert "epochs to 80%" in lines[0] and "success" in lines[0] and "error at conv." in lines[0]
    c1 = next(line for line in lines if line.startswith("c1") and " 8 " in line and "20" not in line.split()[1])
    assert c1.split() == ["c1", "8", "64", "posRand", "2.5", "67%", "0.300", "3"]
    c2 = next(line for line in lines if line.startswith("c2"))
    assert c2.split() == ["c2", "8", "64", "posRand", "1.0", "100%", "0.050", "1"]


def test_format_summary_dash_when_never_reached(epochs):
    text = format_summary(summary_table(run_metrics(epochs, 0.99)), 0.99)
    assert "epochs to 99%" in text.splitlines()[0]
    c1 = next(line for line in text.splitlines() if line.startswith("c1"))
    assert c1.split()[4:6] == ["—", "0%"]


def test_all_failed_runs_give_an_empty_summary():
    e = _frame({"x": ("c", 8, 0, "failed", [math.nan], [0.5]), "y": ("c", 8, 1, "failed", [math.nan], [0.5])})
    per = run_metrics(e, 0.8)
    assert per.empty
    assert "error_at_convergence" in per.columns
    table = summary_table(per)
    assert table.empty
    assert format_summary(table, 0.8).count("\n") == 0  # only the header


def test_more_thresholds_auc_convergence_and_spread_by_hand():
    epochs = pd.DataFrame({
        "run": ["a"] * 4 + ["b"] * 4, "condition": ["c"] * 8, "n_train": [8] * 8, "hidden": [4] * 8,
        "reset": ["posRand"] * 8, "trial": [0] * 4 + [1] * 4, "status": ["done"] * 8, "epoch": [1, 2, 3, 4] * 2,
        "val_loss": [0.9, 0.5, 0.6, 0.7, 0.9, 0.8, 0.7, 0.6],
        "val_acc": [0.5, 0.7, 0.8, 0.95, 0.1, 0.1, 0.2, 0.05],
    })
    per_run = run_metrics(epochs, 0.8, thresholds=(0.6, 0.8, 0.9), chance=0.1).set_index("run")
    assert per_run.loc["a", "epochs_to_threshold"] == 3 and per_run.loc["a", "epochs_to_0.6"] == 2
    assert per_run.loc["a", "epochs_to_0.9"] == 4 and math.isnan(per_run.loc["b", "epochs_to_0.6"])
    assert "epochs_to_0.8" not in per_run.columns  # the main threshold has its own column
    assert per_run.loc["a", "auc"] == pytest.approx((0.5 + 0.7 + 0.8 + 0.95) / 4)
    assert per_run.loc["a", "error_at_last_epoch"] == pytest.approx(0.05)
    assert bool(per_run.loc["a", "converged"]) and not bool(per_run.loc["b", "converged"])  # 0.05 <= chance
    table = summary_table(per_run.reset_index()).iloc[0]
    errors = [1 - 0.7, 1 - 0.05]  # at min val loss: epoch 2 of a, epoch 4 of b
    assert table.median_error == pytest.approx(np.median(errors))
    assert table.error_q25 == pytest.approx(np.quantile(errors, 0.25))
    assert table.error_q75 == pytest.approx(np.quantile(errors, 0.75))
    assert table.mean_final_accuracy == pytest.approx(0.5) and table.std_final_accuracy == pytest.approx(
        np.std([0.95, 0.05], ddof=1))


def test_format_summary_marks_medians_of_fewer_than_half_the_trials(epochs):
    # c1 at n = 8 with a threshold of 0.86: only run a of a, b, c reaches it (1 of 3), at epoch 4
    table = summary_table(run_metrics(epochs, 0.86))
    text = format_summary(table, 0.86)
    c1 = next(line for line in text.splitlines() if line.startswith("c1") and line.split()[1] == "8")
    assert c1.split()[4:6] == ["4.0*", "33%"]
    assert text.splitlines()[-1].startswith("* median of the fewer than half of the trials that reached 86%")
    c2 = next(line for line in text.splitlines() if line.startswith("c2"))
    assert c2.split()[4] == "1.0"  # 1 of 1: not marked


def test_chance_level_is_defined_once():
    from polarnet.analysis import report
    from polarnet.analysis.metrics import chance_level

    assert chance_level({"dataset": "xor"}) == 0.5 and chance_level({}) == 0.5
    assert chance_level({"dataset": "cifar10", "classes": [3, 5]}) == 0.5
    assert chance_level({"dataset": "mnist", "classes": []}) == pytest.approx(0.1)
    assert not hasattr(report, "_chance")
