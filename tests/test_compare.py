"""Tests for polarnet.analysis.compare: two studies side by side, with what differs between
them and the runs behind every number (issue 8, finding 11)."""

from __future__ import annotations

import shutil

import pytest

from polarnet.analysis.compare import compare_studies, difference_lines, setting_differences
from polarnet.experiments import Store, load_study, run_study

TINY = ["trials=1", "epochs=2", "sizes=[8]", "hidden=[4]", "val_size=100", "conditions=['frozen_rand', 'fluid_rand']"]


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    run_study(load_study("xor5d", TINY), root / "a", workers=1, progress=False)
    run_study(load_study("xor5d", [*TINY, "trials=2", "sizes=[8, 20]", "lr=0.01"]), root / "b", workers=1,
              progress=False)
    return root


def test_run_counts_behind_every_grid_point(studies) -> None:
    table = compare_studies(studies / "a", studies / "b")
    assert table.columns[:6].tolist() == ["condition", "n_train", "hidden", "reset", "runs_a", "runs_b"]
    rows = {(r.condition, r.n_train): (r.runs_a, r.runs_b) for r in table.itertuples(index=False)}
    assert rows == {("fluid_rand", 8): (1, 2), ("frozen_rand", 8): (1, 2), ("fluid_rand", 20): (0, 2),
                    ("frozen_rand", 20): (0, 2)}
    assert table["runs_a"].dtype.kind == "i" and table["runs_b"].dtype.kind == "i"


def test_the_settings_that_differ_are_listed_and_equal_lists_are_not(studies) -> None:
    table = compare_studies(studies / "a", studies / "b")
    assert table.attrs["differences"] == [("lr", 0.03, 0.01), ("sizes", [8], [8, 20]), ("trials", 1, 2)]
    assert compare_studies(studies / "a", studies / "a").attrs["differences"] == []
    lines = difference_lines(table)
    assert lines[0] == "Settings that differ (A = xor5d, B = xor5d):"
    assert lines[1:] == ["- lr: 0.03 in A, 0.01 in B", "- sizes: [8] in A, [8, 20] in B", "- trials: 1 in A, 2 in B"]
    assert difference_lines(compare_studies(studies / "a", studies / "a")) == [
        "Settings: the same in both studies (apart from allow_extreme, allow_large, description, name, source_hint)."]


def test_setting_differences_normalise_and_flatten() -> None:
    a = {"conditions": ("x", "y"), "thresholds": (0.8,), "define_condition": {"fz": {"frozen": True, "reset": "flip"}},
         "name": "a", "description": "one"}
    b = {"conditions": ["x", "y"], "thresholds": [0.8], "define_condition": {"fz": {"frozen": True, "reset": "zero"}},
         "name": "b", "description": "two", "amp": False}
    assert setting_differences(a, b) == [("amp", "(not stored)", False), ("define_condition.fz.reset", "flip", "zero")]


def _retag(source, target, **settings):
    """A copy of a study whose stored settings say something else (as a study of another dataset would)."""
    shutil.copytree(source, target)
    with Store(target) as store:
        store.set_study({"settings": {**store.study()["settings"], **settings}})
    return target


@pytest.mark.parametrize("changed, named", [({"dataset": "fashion_mnist", "model": "lenet"}, "dataset and model"),
                                           ({"model": "custom.nets:mine"}, "model")])
def test_studies_of_different_datasets_or_models_are_refused_unless_asked(studies, tmp_path, changed, named) -> None:
    other = _retag(studies / "a", tmp_path / "other", **changed)
    with pytest.raises(ValueError, match=f"differ in {named}: their errors measure different tasks") as error:
        compare_studies(studies / "a", other)
    assert "allow_different=True (polarnet compare --allow-different)" in str(error.value)
    assert "dataset 'xor', model 'mlp'" in str(error.value)
    table = compare_studies(studies / "a", other, allow_different=True)
    assert {key for key, _, _ in table.attrs["differences"]} == set(changed)
    assert len(table) == 2
