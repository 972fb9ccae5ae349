"""The learner presets (``xor5d-learners``, ``split-transfer-learners``): they load, expand into
one condition per learner and rate of its sweep (and one per fluid rate), and their
``[quick]`` grids stay small."""

from __future__ import annotations

import pytest

from polarnet.experiments import estimate_cost, load_study
from polarnet.experiments.plan import count_runs
from polarnet.learners import LEARNERS

# preset: (its frozen conditions, its fluid conditions, the base study it copies)
PRESETS = {
    "xor5d-learners": (("frozen_sufficient", "frozen_rand"), ("fluid_rand",), "xor5d"),
    "split-transfer-learners": (("frozen_in_polarity",), ("fluid_rand",), "fmnist-split-transfer"),
}
SAME = ("dataset", "model", "sizes", "trials", "epochs", "batch_size", "val_size", "classes", "in_channels", "source",
        "init_linear", "init_bias", "thresholds")


@pytest.fixture(autouse=True)
def _source(tmp_path, monkeypatch):
    """split-transfer's source checkpoint, as a placeholder (load_study only checks that it exists)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fmnist-classes-0-4.pt").write_bytes(b"")


def expected_conditions(study) -> dict[str, tuple[str | None, float]]:
    """Every condition the preset should expand into: name -> (learner or None, lr)."""
    frozen, fluid, _ = PRESETS[study.name]
    out: dict[str, tuple[str | None, float]] = {}
    for base in frozen:
        for learner in study.learners:
            for rate in study.lr_sweep[learner]:
                out[f"{base}.{learner}.lr{rate:g}"] = (learner, rate)
    for base in fluid:
        for rate in study.lr_sweep["fluid"]:
            out[f"{base}.lr{rate:g}"] = (None, rate)
    return out


@pytest.mark.parametrize("quick", [False, True])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_expands_every_learner_at_every_rate_of_its_sweep(name, quick):
    study = load_study(name, quick=quick)
    assert study.validate() is study
    assert "freeze_sgd" in study.learners  # the reference learner is always in
    assert all(learner in LEARNERS for learner in study.learners)
    assert set(study.lr_sweep) == {*study.learners, "fluid"}  # every learner, and fluid, has its own sweep
    assert all(len(rates) == 3 for rates in study.lr_sweep.values())
    expected = expected_conditions(study)
    assert sorted(study.conditions) == sorted(expected)
    for condition_name, (learner, rate) in expected.items():
        condition = study.condition(condition_name)
        assert condition.lr == rate
        assert condition.frozen == (learner is not None)
        if learner is not None:
            assert condition.learner == learner
    assert count_runs(study) == len(expected) * len(study.sizes) * len(study.hidden) * study.trials


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_quick_keeps_every_condition_on_a_small_grid(name):
    full, quick = load_study(name), load_study(name, quick=True)
    assert quick.conditions == full.conditions
    cost = estimate_cost(quick)
    assert cost["seconds"] < 30 and cost["runs"] <= 300, cost


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_keeps_its_base_studys_grid_and_data(name):
    study, base = load_study(name), load_study(PRESETS[name][2])
    for key in SAME:
        assert getattr(study, key) == getattr(base, key), key


def test_xor5d_learners_sweeps_follow_the_pilot():
    """The pilot's findings in the preset: freeze_sgd keeps Wang's 0.03 as the reference;
    softplus wants larger rates than Freeze-SGD, exp and eg at least 0.1; eg stops at 0.1
    (at 0.3, long runs overflow)."""
    study = load_study("xor5d-learners")
    assert 0.03 in study.lr_sweep["freeze_sgd"] and 0.03 in study.lr_sweep["fluid"]
    assert max(study.lr_sweep["reparam-softplus"]) > max(study.lr_sweep["freeze_sgd"])
    assert max(study.lr_sweep["reparam-exp"]) >= 0.1 and max(study.lr_sweep["eg"]) == 0.1
