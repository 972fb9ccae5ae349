"""Tests for polarnet.analysis.theory_table: bounds beside Monte Carlo and the simulated fraction."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from polarnet import theory
from polarnet.analysis.theory_table import learned_fraction, theory_table
from polarnet.experiments import load_study, run_study
from polarnet.experiments.plan import plan
from polarnet.experiments.results import EpochRecord, RunResult
from polarnet.experiments.store import Store

COLUMNS = ["units", "published", "per_class", "mc_published", "mc_per_class"]


@pytest.fixture(scope="module")
def width_study(tmp_path_factory):
    """A small real xor5d-width study: 3 conditions × n = 40 × hidden 3, 10 × 2 trials × 3 epochs."""
    folder = tmp_path_factory.mktemp("width")
    study = load_study("xor5d-width", ["trials=2", "epochs=3", "sizes=[40]", "hidden=[3, 10]"])
    summary = run_study(study, folder, progress=False, workers=1)
    assert (summary.total, summary.trained, summary.failed) == (12, 12, 0)
    return folder


def test_columns_and_values_equal_the_theory_functions():
    units = [1, 2, 3, 10, 15]
    table = theory_table(units, 5, trials=2000, seed=3)
    assert table.columns.tolist() == COLUMNS
    assert table["units"].tolist() == units
    for row in table.itertuples(index=False):
        assert row.published == float(theory.published_bound(row.units, 5))
        assert row.per_class == float(theory.per_class_bound(row.units))
        assert (row.mc_published, row.mc_per_class) == theory.monte_carlo(row.units, 5, 2000, 3)


def test_known_values():
    table = theory_table([1, 2, 3, 15], 5, trials=4000).set_index("units")
    # fewer than 3 units can never hold 3 distinct compatible units
    for n in (1, 2):
        assert table.loc[n].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert table.loc[15, "published"] == pytest.approx(0.995, abs=5e-4)
    assert table.loc[15, "per_class"] == pytest.approx(0.927, abs=5e-4)
    assert table.loc[15, "mc_per_class"] == pytest.approx(0.927, abs=0.02)
    assert table.loc[15, "mc_published"] == pytest.approx(0.995, abs=0.01)


def test_two_dims_published_equals_per_class():
    table = theory_table([3, 4, 6], 2, trials=500)
    assert table["published"].tolist() == table["per_class"].tolist()
    # Lemma D.2 with 3 units: all three draws compatible and distinct: (4·3·2) / 8³ = 0.046875
    assert table["published"].iloc[0] == 0.046875


def test_dims_change_only_the_published_columns():
    a = theory_table([10], 3, trials=500)
    b = theory_table([10], 5, trials=500)
    assert a["per_class"].iloc[0] == b["per_class"].iloc[0]
    assert a["published"].iloc[0] != b["published"].iloc[0]


def test_simulated_column_from_a_real_study(width_study):
    table = theory_table([2, 3, 10, 15], 5, trials=200, folder=width_study)
    assert table.columns.tolist() == COLUMNS + ["simulated", "sim_runs"]
    rows = table.set_index("units")
    assert rows.loc[3, "sim_runs"] == 2 and rows.loc[10, "sim_runs"] == 2
    assert rows.loc[2, "sim_runs"] == 0 and rows.loc[15, "sim_runs"] == 0
    assert math.isnan(rows.loc[2, "simulated"]) and math.isnan(rows.loc[15, "simulated"])
    # the simulated fraction, recomputed from the store by hand: frozen_rand runs whose accuracy at the
    # epoch of minimum validation loss is ≥ 0.95
    with Store(width_study) as store:
        epochs = store.epochs()
    frozen = epochs[epochs["condition"] == "frozen_rand"]
    for hidden in (3, 10):
        learned = []
        for _, run in frozen[frozen["hidden"] == hidden].groupby("run"):
            run = run.sort_values("epoch")
            learned.append(run["val_acc"].iloc[run["val_loss"].to_numpy().argmin()] >= 0.95)
        assert len(learned) == 2
        assert rows.loc[hidden, "simulated"] == sum(learned) / 2
    # the theory columns are unchanged by the folder
    plain = theory_table([2, 3, 10, 15], 5, trials=200)
    pd.testing.assert_frame_equal(table[COLUMNS], plain)


def _hand_store(folder, learned_accuracy, **settings):
    """frozen_rand at n = 500: trial 0 learns (0.65 at convergence), trial 1 doesn't (0.58 at convergence,
    although it passed 0.7 earlier), trial 2 failed; everything at n = 40 and every fluid run learns."""
    study = load_study("xor5d-width", ["trials=3", "sizes=[40, 500]", "hidden=[3]",
                                       "conditions=['frozen_rand', 'fluid_rand']"])
    specs = plan(study)

    def result(spec):
        if spec.condition.name == "frozen_rand" and spec.n_train == 500:
            if spec.trial == 2:
                return RunResult(spec.key, "failed", reason="boom")
            accs = [0.55, 0.65] if spec.trial == 0 else [0.7, 0.58]
        else:
            accs = [0.99, 0.99]
        return RunResult(spec.key, "done", epochs=[EpochRecord(e + 1, 0.1, 0.9, loss, acc, 0, {}, 0.0)
                                                   for e, (loss, acc) in enumerate(zip([0.5, 0.4], accs))])

    with Store(folder) as store:
        store.set_study({"settings": {**study.to_dict(), "learned_accuracy": learned_accuracy, **settings}})
        store.mark_running(specs)
        store.record([result(s) for s in specs])


@pytest.mark.parametrize("learned_accuracy, expected", [(0.6, 0.5), (0.95, 0.0), (0.5, 1.0)])
def test_simulated_fraction_by_hand(tmp_path, learned_accuracy, expected):
    _hand_store(tmp_path, learned_accuracy)
    table = theory_table([3, 4], 5, trials=100, folder=tmp_path).set_index("units")
    assert table.loc[3, "simulated"] == expected  # the threshold is the study's learned_accuracy
    assert table.loc[3, "sim_runs"] == 2  # the largest size only, the failed run left out
    assert math.isnan(table.loc[4, "simulated"]) and table.loc[4, "sim_runs"] == 0


def test_learned_fraction_by_hand():
    e = pd.DataFrame({"run": ["a", "b", "c", "d"], "condition": ["frozen_rand"] * 3 + ["fluid_rand"],
                      "n_train": [500, 500, 100, 500], "hidden": [3, 3, 3, 3], "reset": ["posRand"] * 4,
                      "trial": [0, 1, 2, 0], "status": ["done"] * 4, "epoch": [1] * 4,
                      "val_loss": [0.1, 0.6, 0.1, 0.1], "val_acc": [0.95, 0.7, 0.99, 0.99]})
    assert learned_fraction(e, 0.95).to_dict("records") == [{"hidden": 3, "simulated": 0.5, "sim_runs": 2}]
    assert learned_fraction(e, 0.95, condition="fluid_rand").to_dict("records") == \
        [{"hidden": 3, "simulated": 1.0, "sim_runs": 1}]
    empty = learned_fraction(e, 0.95, condition="frozen_sufficient")
    assert empty.empty and empty.columns.tolist() == ["hidden", "simulated", "sim_runs"]


def test_folder_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no results.sqlite"):
        theory_table([3], folder=tmp_path)
    missing = tmp_path / "absent"
    with pytest.raises(ValueError, match="polarnet run xor5d-width"):
        theory_table([3], folder=missing)
    assert not missing.exists()  # nothing was created


# -- only XOR studies of an MLP with the same dims become the simulated column (issue 8, finding 8) ----------
@pytest.mark.parametrize("settings, message", [
    ({"dataset": "fashion_mnist", "model": "lenet"}, "trains model 'lenet' on dataset 'fashion_mnist'"),
    ({"dataset": "xor", "model": "tests.custom:net"}, "trains model 'tests.custom:net' on dataset 'xor'"),
])
def test_a_study_that_is_not_xor_with_an_mlp_is_refused(tmp_path, monkeypatch, settings, message):
    _hand_store(tmp_path, 0.6, **settings)
    ran = []
    monkeypatch.setattr(theory, "monte_carlo", lambda *a: ran.append(a) or (0.0, 0.0))
    with pytest.raises(ValueError, match=message) as error:
        theory_table([3], folder=tmp_path)
    assert str(tmp_path) in str(error.value) and 'dataset = "xor", model = "mlp"' in str(error.value)
    assert "polarnet run xor5d-width" in str(error.value)  # the fix
    assert not ran  # refused before the Monte Carlo


def test_dims_must_match_the_study_or_are_taken_from_it(tmp_path, monkeypatch):
    _hand_store(tmp_path, 0.6, dims=9)
    with pytest.raises(ValueError, match=r"has dims = 9, but the bounds were asked for dims = 3: .*--dims 9"):
        theory_table([3], 3, trials=10, folder=tmp_path)
    with pytest.raises(ValueError, match="dims = 9.*dims = 5"):
        theory_table([3], 5, trials=10, folder=tmp_path)  # an explicit 5 is a choice too
    table = theory_table([3], trials=50, folder=tmp_path)  # dims left out: the study's
    assert table.attrs["dims"] == 9
    assert table["published"].iloc[0] == float(theory.published_bound(3, 9))
    assert table.set_index("units").loc[3, "simulated"] == 0.5
    assert theory_table([3], 9, trials=50, folder=tmp_path).equals(table)
    assert theory_table([3], trials=10).attrs["dims"] == 5  # no study: the default


def test_xor_study_dims_of_settings_from_older_stores():
    from polarnet.analysis.theory_table import xor_study_dims

    assert xor_study_dims({}) == 5  # Study's defaults: xor, mlp, dims 5
    assert xor_study_dims({"dims": 7}, 7) == 7
