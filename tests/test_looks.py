"""The analysis reads what the study stored: each condition's label, role and colour, and the
number of classes (issue 23, item 4)."""

from __future__ import annotations

import ast
import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import polarnet.analysis

from polarnet.analysis.diagnostics import diagnose
from polarnet.analysis.metrics import chance_level
from polarnet.experiments import load_study, run_study
from polarnet.experiments.conditions import CONDITIONS, Condition, get_condition, register_condition
from polarnet.experiments.store import Store

ANALYSIS = Path(polarnet.analysis.__file__).parent


def _stuck_at(val_acc: float, classes: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One finished image run whose training accuracy rose to 90% and whose validation
    accuracy ended at ``val_acc``."""
    runs = pd.DataFrame({"key": ["r"], "condition": ["c"], "n_train": [500], "hidden": [0], "reset": ["none"],
                         "trial": [0], "frozen": [0], "status": ["done"], "reason": [None], "settings": ["{}"]})
    epochs = pd.DataFrame({"run": ["r"] * 3, "condition": ["c"] * 3, "n_train": [500] * 3, "hidden": [0] * 3,
                           "reset": ["none"] * 3, "trial": [0] * 3, "status": ["done"] * 3, "epoch": [1, 2, 3],
                           "train_acc": [1 / classes, 0.6, 0.9], "val_acc": [1 / classes, val_acc, val_acc],
                           "val_loss": [1.0] * 3})
    return runs, epochs


def test_a_five_class_study_is_at_chance_at_a_fifth() -> None:
    settings = {"dataset": "my_faces", "val_size": 5000, "batch_size": 50}  # a user's dataset: no built-in count
    runs, epochs = _stuck_at(0.2)
    assert chance_level(settings, num_classes=5) == 0.2
    assert chance_level(settings) == 0.1  # a store written before the count was stored: the old rule
    flags = diagnose(runs, epochs, settings, num_classes=5)
    assert [f.kind for f in flags] == ["val_at_chance"] and "chance is 20%" in flags[0].reason
    assert diagnose(runs, epochs, settings) == []  # 20% is far from the old rule's 10%


@pytest.fixture
def mine():
    register_condition(Condition("h12_mine", "none", label="My Baseline", role="reference", color="#123456"))
    yield get_condition("h12_mine")
    CONDITIONS.unregister("h12_mine")


def test_looks_never_enter_a_run_key(mine) -> None:
    from polarnet.experiments.conditions import LOOK_FIELDS
    from polarnet.experiments.plan import plan

    assert not set(LOOK_FIELDS) & set(mine.to_dict())
    plain = Condition("h12_mine", "none")
    study = load_study("xor5d", ["trials=1", "sizes=[8]"], validate=False)
    keys = [r.key for r in plan(study) if r.condition.name == "fluid_rand"]
    assert keys == [r.key for r in plan(study) if r.condition == get_condition("fluid_rand")]
    assert plain.to_dict() == mine.to_dict()


def test_a_study_stores_looks_and_classes_and_the_report_shows_a_users_condition(tmp_path, mine) -> None:
    from polarnet.analysis.report import build_report

    study = load_study("xor5d", ["trials=1", "epochs=2", "sizes=[8]", "val_size=200",
                                 "conditions=[\"frozen_rand\", \"h12_mine\"]"])
    run_study(study, tmp_path, workers=1, progress=False)
    with Store.existing(tmp_path) as store:
        facts = store.study()
    assert facts["num_classes"] == 2
    assert facts["looks"]["h12_mine"] == {"label": "My Baseline", "role": "reference", "color": "#123456"}
    assert facts["looks"]["frozen_rand"]["label"] == "Frozen RAND"
    assert "h12_mine" not in json.dumps(facts["settings"].get("define_condition", {}))  # beside, not in, settings
    _, md = build_report(tmp_path)
    text = md.read_text()
    assert "`h12_mine` My Baseline (the reference)" in text
    assert "vs h12_mine" in text  # the statistics compare with the stored reference
    svgs = list((md.parent / "report-figures").glob("efficiency*.svg"))
    assert svgs and any("#123456" in p.read_text() for p in svgs)  # its own colour, not the palette's


def test_an_old_store_without_the_new_keys_reports_identically(tmp_path) -> None:
    from polarnet.analysis.report import build_report

    run_study(load_study("xor5d", ["trials=2", "epochs=2", "sizes=[8]", "val_size=200"]), tmp_path, workers=1,
              progress=False)
    new = build_report(tmp_path, tmp_path / "new")[1].read_text()
    with sqlite3.connect(tmp_path / "results.sqlite") as db:  # as today's code wrote it
        db.execute("DELETE FROM study WHERE key IN ('looks', 'num_classes')")
    old = build_report(tmp_path, tmp_path / "old")[1].read_text()
    assert "Fluid RAND (the reference)" in new
    assert old.replace("old-figures", "new-figures") == new
    assert run_study(load_study("xor5d", ["trials=2", "epochs=2", "sizes=[8]", "val_size=200"]), tmp_path,
                     workers=1, progress=False).trained == 0  # it resumes: nothing retrained


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


#: where analysis/ may name a condition: what the papers say about one of theirs (a claim, the
#: App. D learnability bounds of Frozen RAND nets, Fig. 4A's simulated Frozen RAND fractions)
_PAPER_DATA = {("theory_table.py", "frozen_rand"), ("scorecard.py", "frozen_rand")}


def test_analysis_names_no_condition_outside_the_papers_data() -> None:
    """The paper's claims name the paper's conditions (that is their data); nothing else in
    analysis/ may look a condition up by name: it reads what the study stored."""
    names = set(CONDITIONS.names())
    found = {(path.name, text) for path in sorted(ANALYSIS.glob("*.py")) if path.name != "paper_claims.py"
             for _, text in _string_literals(path) if text in names}
    assert found == _PAPER_DATA  # a stale allowance fails too


def test_a_bad_role_or_colour_is_refused_with_the_fix() -> None:
    from polarnet.experiments.conditions import condition_from_dict, condition_problems

    bad = condition_from_dict("mine", {"role": "baseline", "color": "reddish"})
    problems = condition_problems(bad)
    assert any(p.startswith("role = 'baseline': choose 'reference'") for p in problems)
    assert any(p.startswith("color = 'reddish' is not a colour") for p in problems)
    good = condition_from_dict("mine", {"label": "Mine", "role": "reference", "color": "tab:blue"})
    assert condition_problems(good) == [] and good.look()["label"] == "Mine"
