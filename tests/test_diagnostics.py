"""Tests for polarnet.analysis.diagnostics: each situation is built on purpose, and the flag
and its hint are checked (issue 8)."""

from __future__ import annotations

import json
import textwrap

import pandas as pd
import pytest

from helpers import real_data

from polarnet.analysis.diagnostics import (CHECKS, MAX_RESET_FRACTION, Flag, chance_margin, diagnose,
                                           format_flags)
from polarnet.experiments import Store, load_study, run_study
from polarnet.experiments.config import Study

#: out-of-range training numbers are refused unless the study says it means them (finding 21)
EXTREME = ["allow_extreme=true"] if "allow_extreme" in Study.__dataclass_fields__ else []


def _tables(folder) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    with Store(folder) as store:
        return store.runs(), store.epochs(), store.study()["settings"]


def _kinds(flags: list[Flag]) -> list[str]:
    return [f.kind for f in flags]


def _frames(curves: dict, settings: dict | None = None, constrained: dict | None = None):
    """Synthetic runs/epochs tables from ``{key: (condition, n, trial, frozen, reset, [(train_acc, val_acc,
    val_loss, resets, sign_change), ...])}``."""
    runs, epochs = [], []
    for key, (condition, n, trial, frozen, reset, rows) in curves.items():
        runs.append({"key": key, "condition": condition, "n_train": n, "hidden": 4, "reset": reset, "trial": trial,
                     "frozen": int(frozen), "status": "done", "reason": None,
                     "settings": json.dumps({"condition": {"name": condition, "frozen": frozen}}),
                     **({"constrained": (constrained or {}).get(key)} if constrained is not None else {})})
        for epoch, (train, val, loss, resets, change) in enumerate(rows, start=1):
            epochs.append({"condition": condition, "n_train": n, "hidden": 4, "reset": reset, "trial": trial,
                           "frozen": int(frozen), "status": "done", "run": key, "epoch": epoch, "train_loss": 1 - train,
                           "train_acc": train, "val_loss": loss, "val_acc": val, "resets": resets,
                           "sign_changes": json.dumps({"0.weight": change}), "wall": 0.0})
    return pd.DataFrame(runs), pd.DataFrame(epochs), {"dataset": "xor", "val_size": 1000, "batch_size": 32,
                                                      "lr": 0.03, **(settings or {})}


# -- validation at chance while training accuracy rises -------------------------------------------
BATCHNORM_MODEL = """
    from torch import nn


    class Shift(nn.Module):
        '''Adds a constant: a pipeline that forgot to subtract the mean.'''

        def forward(self, x):
            return x + 10.0


    def slow_bn(num_classes=10, in_channels=1, **_):
        return nn.Sequential(Shift(), nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16, momentum=0.01),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 14 * 14, num_classes))
"""


@real_data
def test_batchnorm_with_slow_running_statistics_is_flagged(tmp_path, monkeypatch) -> None:
    # BatchNorm2d(momentum=0.01) after 10 steps: training (batch statistics) learns, evaluation
    # (running statistics, still near their initial 0 and 1) sees the unremoved offset: chance
    (tmp_path / "slowbn_model.py").write_text(textwrap.dedent(BATCHNORM_MODEL))
    monkeypatch.syspath_prepend(str(tmp_path))
    study = load_study("xor5d", ["dataset='fashion_mnist'", "model='slowbn_model:slow_bn'", "in_channels=1",
                                 "init_linear='glorot_uniform'", "init_bias='zeros'", "conditions=['fluid_rand']",
                                 "sizes=[250]", "trials=1", "epochs=2", "batch_size=50", "lr=0.01", "val_size=1000",
                                 "thresholds=[0.6]"])
    run_study(study, tmp_path / "study", workers=1, progress=False)
    runs, epochs, settings = _tables(tmp_path / "study")
    assert epochs["train_acc"].iloc[-1] > 0.3 and abs(epochs["val_acc"].iloc[-1] - 0.1) < chance_margin(0.1, 1000)
    flags = diagnose(runs, epochs, settings)
    assert _kinds(flags) == ["val_at_chance"]
    flag = flags[0]
    # an image model has no hidden size: the flag does not name one (its runs store the default, 64)
    assert flag.runs == tuple(runs["key"]) and flag.where == ("fluid_rand, n=250, reset none: 1 of 1 trial",)
    assert "chance is 10% ± 2.8 points" in flag.reason
    assert "BatchNorm" in flag.hint and "after 10 training steps" in flag.hint and "update_bn" in flag.hint


def test_validation_at_chance_needs_real_learning_on_a_real_training_set() -> None:
    rise = [(0.5, 0.5, 0.7, 0, 0.0), (0.95, 0.51, 0.7, 0, 0.0)]
    runs, epochs, settings = _frames({"big": ("a", 500, 0, False, "none", rise),
                                      "tiny": ("a", 8, 0, False, "none", rise),  # 8 memorised samples: no flag
                                      "learned": ("a", 500, 1, False, "none", [(0.5, 0.6, 0.6, 0, 0.0),
                                                                               (0.95, 0.9, 0.2, 0, 0.0)]),
                                      "flat": ("a", 500, 2, False, "none", [(0.5, 0.5, 0.7, 0, 0.0)] * 2)})
    flags = diagnose(runs, epochs, settings)
    assert _kinds(flags) == ["val_at_chance"] and flags[0].runs == ("big",)
    assert flags[0].where == ("a, n=500, hidden 4, reset none: 1 of 3 trials",)
    assert "training accuracy rose to 95%" in flags[0].reason
    # the same runs of an image study: hidden is not one of its axes (issue 22)
    runs, epochs, settings = _frames({"big": ("a", 500, 0, False, "none", rise)},
                                     {"dataset": "fashion_mnist", "classes": [0, 1]})
    assert diagnose(runs, epochs, settings)[0].where == ("a, n=500, reset none: 1 of 1 trial",)


# -- non-finite losses (failed runs) ------------------------------------------------------------
def test_a_huge_learning_rate_gives_failed_runs_with_a_hint(tmp_path) -> None:
    run_study(load_study("xor5d", ["trials=2", "epochs=2", "sizes=[8]", "lr=1e30", "val_size=100", *EXTREME]),
              tmp_path, workers=1, progress=False)
    runs, epochs, settings = _tables(tmp_path)
    flags = diagnose(runs, epochs, settings)
    assert _kinds(flags) == ["failed"]
    assert len(flags[0].runs) == 6 and "NaN or infinite (first at epoch 1)" in flags[0].reason
    assert "lower the learning rate (lr = 1e+30 here" in flags[0].hint and "--retry-failed" in flags[0].hint
    assert "frozen_rand, n=8, hidden 64, reset posRand: 2 of 2 trials" in flags[0].where


def test_a_huge_reset_magnitude_is_named_in_the_hint_not_the_learning_rate(tmp_path) -> None:
    run_study(load_study("xor5d", ["trials=1", "epochs=2", "sizes=[8]", "hidden=[4]", "eps=1e200", "val_size=100",
                                   *EXTREME]), tmp_path, workers=1, progress=False)
    runs, epochs, settings = _tables(tmp_path)
    flags = diagnose(runs, epochs, settings)
    failed = next(f for f in flags if f.kind == "failed")
    assert "NaN or infinite" in failed.reason
    assert "eps = 1e+200, Freeze-SGD's reset magnitude: 203 orders of magnitude above the papers' 0.001" in failed.hint
    assert "more than float32 holds" in failed.hint and "--set eps=0.001" in failed.hint
    assert "learning rate" not in failed.hint and "lr" not in failed.hint.replace("--retry-failed", "")


@pytest.mark.parametrize("settings, named, lr_advice", [
    ({"adam_eps": 1e-300}, ["adam_eps = 1e-300, Adam's epsilon: 292 orders of magnitude below"], False),
    ({"adam_eps": 1e300, "dtype": "float64"}, ["adam_eps = 1e+300"], False),
    ({"lr": 1e30, "eps": 5.0}, ["lr = 1e+30, the learning rate", "eps = 5, Freeze-SGD's reset magnitude"], True),
    ({"lr": 1e-30}, ["lr = 1e-30, the learning rate: 28 orders of magnitude below the papers' 0.03"], False),
    ({"lr": 0.3, "eps": 0.1, "adam_eps": 1e-6}, [], True),  # within the factor: the usual advice
    ({"lr": 1e30}, [], True),  # only the learning rate: the usual advice names it
    ({"dataset": "cifar10", "lr": 5.0}, [], True),  # images: 5000× the papers' 0.001, lr is the suspect
])
def test_the_failed_hint_names_the_abnormal_settings(settings, named, lr_advice) -> None:
    runs, epochs, base = _frames({"a": ("c", 8, 0, True, "posRand", [(0.5, 0.5, 0.7, 0, 0.0)])}, settings)
    runs = runs.assign(status="failed", reason="non-finite loss at epoch 1")
    hint = next(f for f in diagnose(runs, epochs.iloc[0:0], base) if f.kind == "failed").hint
    for text in named:
        assert text in hint
    assert ("abnormal" in hint) == bool(named)
    assert ("lower the learning rate" in hint) == lr_advice
    assert "--retry-failed" in hint


def test_a_conditions_own_learning_rate_is_judged() -> None:
    from polarnet.analysis.diagnostics import suspect_settings

    assert suspect_settings({"lr": 0.03}, [0.03, 300.0])[0][:2] == ("lr", 300.0)
    assert suspect_settings({"lr": 0.03, "eps": 1e-3, "adam_eps": 1e-8, "dtype": "float64"}) == []
    assert [k for k, _, _ in suspect_settings({"lr": 1e-3, "dataset": "fashion_mnist", "eps": 1e-7})] == ["eps"]


def test_other_failures_and_interrupted_runs() -> None:
    runs, epochs, settings = _frames({"a": ("c", 8, 0, False, "none", [(0.5, 0.5, 0.7, 0, 0.0)])})
    more = pd.DataFrame([dict(runs.iloc[0], key="b", trial=1, status="failed", reason="out of memory"),
                         dict(runs.iloc[0], key="r", trial=2, status="running")])
    flags = diagnose(pd.concat([runs, more]), epochs, settings)
    assert _kinds(flags) == ["failed", "interrupted"]
    assert flags[0].reason == "the run failed: out of memory" and flags[0].runs == ("b",)
    assert flags[1].runs == ("r",) and "resumes" in flags[1].hint


# -- conditions that should differ but are identical ---------------------------------------------
def test_identical_curves_of_different_conditions_are_flagged() -> None:
    curve = [(0.7, 0.6, 0.5, 0, 0.1), (0.9, 0.8, 0.3, 0, 0.05)]
    runs, epochs, settings = _frames({"f0": ("frozen_rand", 20, 0, True, "posRand", curve),
                                      "u0": ("fluid_rand", 20, 0, False, "none", curve),
                                      "f1": ("frozen_rand", 20, 1, True, "posRand", curve),
                                      "u1": ("fluid_rand", 20, 1, False, "none", curve[:1] + [(0.9, 0.7, 0.4, 0, 0.1)])})
    flags = diagnose(runs, epochs, settings)
    assert _kinds(flags) == ["identical_conditions"]
    assert sorted(flags[0].runs) == ["f0", "u0"]  # trial 1 differs; equal curves across trials are not compared
    assert "fluid_rand (none) = frozen_rand (posRand)" in flags[0].reason
    assert "template was probably not applied" in flags[0].hint


def test_identical_curves_that_are_expected_are_not_flagged() -> None:
    still = [(0.7, 0.6, 0.5, 0, 0.0)]  # no sign changed and nothing was reset: the template cannot matter
    runs, epochs, settings = _frames({"f": ("frozen_rand", 20, 0, True, "posRand", still),
                                      "u": ("fluid_rand", 20, 0, False, "none", still)})
    assert diagnose(runs, epochs, settings) == []
    moving = [(0.7, 0.6, 0.5, 0, 0.2)]  # two names for one condition: equal curves are expected
    runs, epochs, settings = _frames({"a": ("copy_a", 20, 0, False, "none", moving),
                                      "b": ("copy_b", 20, 0, False, "none", moving)})
    assert diagnose(runs, epochs, settings) == []


def test_a_real_study_whose_frozen_run_got_the_fluid_curve(tmp_path) -> None:
    run_study(load_study("xor5d", ["trials=1", "epochs=3", "sizes=[40]", "val_size=200",
                                   "conditions=['frozen_rand', 'fluid_rand']"]), tmp_path, workers=1, progress=False)
    runs, epochs, settings = _tables(tmp_path)
    assert "identical_conditions" not in _kinds(diagnose(runs, epochs, settings))
    fluid = epochs[epochs["condition"] == "fluid_rand"]
    broken = epochs.copy()
    columns = ["train_loss", "train_acc", "val_loss", "val_acc"]
    broken.loc[broken["condition"] == "frozen_rand", columns] = fluid[columns].to_numpy()  # the template "was lost"
    assert _kinds(diagnose(runs, broken, settings)) == ["identical_conditions"]


# -- Frozen runs dominated by resets -------------------------------------------------------------
def test_excess_resets_are_flagged_when_every_epoch_is_above_the_limit() -> None:
    # n = 64, batch 32: 2 steps per epoch; 100 constrained weights: 200 weight-steps per epoch
    high = [(0.8, 0.8, 0.3, 60, 0.0), (0.9, 0.85, 0.2, 50, 0.0)]  # 30% and 25% per step
    settles = [(0.8, 0.8, 0.3, 60, 0.0), (0.9, 0.85, 0.2, 30, 0.0)]  # 30%, then 15%
    curves = {"hot": ("frozen_rand", 64, 0, True, "posRand", high),
              "ok": ("frozen_rand", 64, 1, True, "posRand", settles),
              "fluid": ("fluid_rand", 64, 0, False, "none", [(0.8, 0.7, 0.3, 0, 0.1), (0.9, 0.8, 0.2, 0, 0.1)])}
    runs, epochs, settings = _frames(curves, constrained={"hot": 100, "ok": 100, "fluid": None})
    flags = diagnose(runs, epochs, settings)
    assert _kinds(flags) == ["excess_resets"] and flags[0].runs == ("hot",)
    assert f"more than {MAX_RESET_FRACTION:.0%}" in flags[0].reason and "median 28% per step" in flags[0].reason
    assert "lower the learning rate (lr = 0.03 here)" in flags[0].hint
    # without the runs table's ``constrained`` column (older stores) the check is skipped
    runs_old, epochs_old, _ = _frames(curves)
    assert diagnose(runs_old, epochs_old, settings) == []


def test_a_real_study_with_a_learning_rate_too_high_for_freeze_sgd(tmp_path) -> None:
    base = ["trials=1", "epochs=4", "sizes=[60]", "val_size=200", "conditions=['frozen_rand', 'fluid_rand']"]
    run_study(load_study("xor5d", base + ["lr=3"]), tmp_path / "hot", workers=1, progress=False)
    runs, epochs, settings = _tables(tmp_path / "hot")
    if "constrained" not in runs:
        pytest.skip("this store has no `constrained` column yet")
    flags = [f for f in diagnose(runs, epochs, settings) if f.kind == "excess_resets"]
    assert len(flags) == 1 and flags[0].where == ("frozen_rand, n=60, hidden 64, reset posRand: 1 of 1 trial",)
    run_study(load_study("xor5d", base), tmp_path / "paper", workers=1, progress=False)
    assert diagnose(*_tables(tmp_path / "paper")) == []


# -- the API ----------------------------------------------------------------------------------------
def test_format_flags_and_the_registry() -> None:
    assert format_flags([]) == "Diagnostics: no problems found."
    flags = [Flag("failed", ("a", "b"), tuple(f"p{i}" for i in range(8)), "why", "do this")]
    text = format_flags(flags)
    assert text.splitlines()[0] == "Diagnostics: 1 problem found."
    assert "! failed (2 runs): why" in text and "    - p5" in text and "p6" not in text
    assert "… and 2 more" in text and text.endswith("  hint: do this")
    assert set(CHECKS.names()) == {"failed", "interrupted", "val_at_chance", "identical_conditions", "excess_resets"}
    assert diagnose(pd.DataFrame(columns=["key", "status"]), pd.DataFrame(), {}) == []
