"""Tests for polarnet.experiments.plan: run counts, keys, seeds, cost estimate."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections import Counter

import pytest

from polarnet.experiments.conditions import Condition
from polarnet.experiments.config import load_study
from polarnet.experiments.cost import estimate_cost
from polarnet.experiments.plan import RunSpec, derive_seed, plan

SMALL = ["trials=3", "epochs=2", "sizes=[8, 20]", "hidden=[4, 8]"]


def _keys(study) -> dict[tuple, str]:
    """Grid point → key."""
    return {(r.condition.name, r.n_train, r.hidden, r.reset, r.trial): r.key for r in plan(study)}


# --------------------------------------------------------------------------- counts and order


def test_xor5d_has_1650_runs():
    runs = plan(load_study("xor5d"))
    assert len(runs) == 3 * 11 * 1 * 50 == 1650
    assert Counter(r.condition.name for r in runs) == {"frozen_sufficient": 550, "frozen_rand": 550, "fluid_rand": 550}
    assert {r.reset for r in runs if r.condition.frozen} == {"posRand"}
    assert {r.reset for r in runs if not r.condition.frozen} == {"none"}  # a fluid net never resets


def test_xor5d_reset_runs_fluid_once_and_frozen_once_per_rule():
    runs = plan(load_study("xor5d-reset"))
    # frozen_sufficient and frozen_rand: 4 rules × 11 sizes × 50 trials each; fluid_rand: 11 × 50
    assert len(runs) == (4 + 4 + 1) * 11 * 50 == 4950
    per = Counter((r.condition.name, r.reset) for r in runs)
    for rule in ("posRand", "posCon", "zero", "flip"):
        assert per["frozen_sufficient", rule] == 550
        assert per["frozen_rand", rule] == 550
    assert per["fluid_rand", "none"] == 550  # a fluid net never resets
    assert sum(v for (c, _), v in per.items() if c == "fluid_rand") == 550


def test_xor5d_width_count():
    study = load_study("xor5d-width")
    assert len(study.hidden) == 32
    assert len(plan(study)) == 3 * 11 * 32 * 50 == 52800


def test_quick_presets_counts():
    assert len(plan(load_study("xor5d", quick=True))) == 3 * 6 * 20
    assert len(plan(load_study("xor5d-width", quick=True))) == 3 * 1 * 6 * 10
    assert len(plan(load_study("xor5d-reset", quick=True))) == (4 + 4 + 1) * 3 * 6


def test_condition_with_its_own_reset_runs_once(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("""
conditions = ["frozen_rand", "frozen_flip", "fluid_sufficient"]
sizes = [8]
resets = ["posRand", "zero"]
trials = 2
[define_condition.frozen_flip]
polarity = "random"
frozen = true
reset = "flip"
""")
    runs = plan(load_study(path))
    per = Counter((r.condition.name, r.reset) for r in runs)
    assert per == {("frozen_rand", "posRand"): 2, ("frozen_rand", "zero"): 2, ("frozen_flip", "flip"): 2,
                   ("fluid_sufficient", "none"): 2}


def test_grid_order_condition_size_hidden_reset_trial():
    study = load_study("xor5d", ["trials=2", "sizes=[8, 20]", "hidden=[4, 8]"])
    points = [(r.condition.name, r.n_train, r.hidden, r.reset, r.trial) for r in plan(study)]
    assert len(points) == 3 * 2 * 2 * 2
    assert points[:5] == [("frozen_sufficient", 8, 4, "posRand", 0), ("frozen_sufficient", 8, 4, "posRand", 1),
                          ("frozen_sufficient", 8, 8, "posRand", 0), ("frozen_sufficient", 8, 8, "posRand", 1),
                          ("frozen_sufficient", 20, 4, "posRand", 0)]
    assert points[8] == ("frozen_rand", 8, 4, "posRand", 0)
    assert points[-1] == ("fluid_rand", 20, 8, "none", 1)


def test_runspec_lr_prefers_the_conditions():
    study = load_study("xor5d", ["lr=0.05"])
    assert RunSpec(study, Condition("a"), 8, 4, "posRand", 0).lr == 0.05
    assert RunSpec(study, Condition("b", lr=0.2), 8, 4, "posRand", 0).lr == 0.2


# --------------------------------------------------------------------------- keys


def test_keys_unique_and_hex():
    runs = plan(load_study("xor5d-reset", ["trials=3", "sizes=[8, 20]", "hidden=[4, 8]"]))
    keys = [r.key for r in runs]
    assert len(keys) == (4 + 4 + 1) * 2 * 2 * 3
    assert len(set(keys)) == len(keys)
    assert all(len(k) == 24 and int(k, 16) >= 0 for k in keys)


def test_keys_stable_across_calls_and_equal_studies():
    a = _keys(load_study("xor5d", SMALL))
    b = _keys(load_study("xor5d", SMALL))
    assert a == b


def test_keys_stable_across_processes():
    code = ("import json; from polarnet.experiments import load_study, plan; "
            f"print(json.dumps([r.key for r in plan(load_study('xor5d', {SMALL!r}))]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [r.key for r in plan(load_study("xor5d", SMALL))]


@pytest.mark.parametrize("extra", [
    ["name=other"], ["description=something else"], ["vectorize=false"], ["thresholds=[0.5, 0.9]"],
    ["learned_accuracy=0.6"], ["sizes=[8, 20, 500]"], ["sizes=[500, 20, 8]"], ["hidden=[4, 8, 16]"], ["trials=5"],
    ["conditions=['fluid_rand', 'frozen_rand', 'frozen_sufficient']"], ["conditions=['frozen_rand']"],
    ["resets=['posRand', 'flip']"],
])
def test_keys_unchanged_by_settings_that_only_choose_runs(extra):
    before = _keys(load_study("xor5d", SMALL))
    after = _keys(load_study("xor5d", SMALL + extra))
    common = before.keys() & after.keys()
    assert common  # the change keeps some runs
    assert {p: after[p] for p in common} == {p: before[p] for p in common}


def test_adding_a_size_keeps_existing_keys_and_adds_new_ones():
    before = _keys(load_study("xor5d", SMALL))
    after = _keys(load_study("xor5d", SMALL[:2] + ["sizes=[8, 20, 32]"] + SMALL[3:]))
    assert before.items() <= after.items()
    new = set(after.values()) - set(before.values())
    assert len(new) == 3 * 2 * 3  # conditions × hidden × trials at n = 32


@pytest.mark.parametrize("extra", [["lr=0.01"], ["epochs=3"], ["seed=1"], ["batch_size=16"], ["val_size=500"],
                                   ["data_per_trial=true"], ["eps=0.01"], ["dtype=float64"], ["dims=6"],
                                   ["init_linear=glorot_uniform"]])
def test_keys_changed_by_settings_that_change_the_numbers(extra):
    before = _keys(load_study("xor5d", SMALL))
    after = _keys(load_study("xor5d", SMALL + extra))
    assert before.keys() == after.keys()
    assert not set(before.values()) & set(after.values())


def test_keys_changed_by_the_condition_definition():
    study = load_study("xor5d", SMALL)
    base = RunSpec(study, Condition("c", "random", True), 8, 4, "posRand", 0)
    assert RunSpec(study, Condition("c", "random", True), 8, 4, "posRand", 0).key == base.key
    for other in (Condition("c", "random", True, lr=0.1), Condition("c", "random", False),
                  Condition("c", "random", True, layers="2.weight"), Condition("d", "random", True)):
        assert RunSpec(study, other, 8, 4, "posRand", 0).key != base.key
    for n, h, reset, t in ((20, 4, "posRand", 0), (8, 8, "posRand", 0), (8, 4, "zero", 0), (8, 4, "posRand", 1)):
        assert RunSpec(study, base.condition, n, h, reset, t).key != base.key


def test_key_is_the_hash_of_the_settings():
    run = plan(load_study("xor5d", SMALL))[0]
    settings = run.settings()
    assert set(settings) == {"study", "condition", "n_train", "hidden", "reset", "trial"}
    assert not {"name", "description", "sizes", "hidden", "trials", "vectorize", "conditions"} & set(settings["study"])
    assert "epochs" in settings["study"]  # SMALL changes it from the default
    assert not {"lr", "seed", "batch_size", "dims"} & set(settings["study"])  # defaults are left out (open_lth)
    defaults = Condition(run.condition.name).to_dict()
    assert settings["condition"] == {k: v for k, v in run.condition.to_dict().items()
                                     if k == "name" or k != "description" and v != defaults[k]}


def test_fluid_keys_do_not_depend_on_the_resets_axis():
    before = _keys(load_study("xor5d", SMALL + ["resets=['posRand']"]))
    after = _keys(load_study("xor5d", SMALL + ["resets=['zero', 'posRand']"]))
    fluid_before = sorted(k for p, k in before.items() if p[0] == "fluid_rand")
    fluid_after = sorted(k for p, k in after.items() if p[0] == "fluid_rand")
    assert fluid_before == fluid_after


def test_condition_description_does_not_change_keys():
    study = load_study("xor5d", SMALL)
    a = RunSpec(study, Condition("c", "random", True, description="one"), 8, 4, "posRand", 0)
    b = RunSpec(study, Condition("c", "random", True, description="two"), 8, 4, "posRand", 0)
    assert a.key == b.key


# --------------------------------------------------------------------------- seeds


SEEDS = ("init_seed", "order_seed", "data_seed", "val_seed", "template_seed")


def _by_point(runs):
    out: dict[tuple, list[RunSpec]] = {}
    for r in runs:
        out.setdefault((r.n_train, r.hidden, r.trial), []).append(r)
    return out


def test_seeds_shared_by_all_conditions_of_a_trial():
    runs = plan(load_study("xor5d", SMALL))
    for point, group in _by_point(runs).items():
        assert len(group) == 3
        for seed in SEEDS:
            assert len({getattr(r, seed) for r in group}) == 1, (point, seed)


@pytest.mark.parametrize("data_per_trial", [False, True])
def test_seeds_between_trials(data_per_trial):
    study = load_study("xor5d", SMALL + [f"data_per_trial={str(data_per_trial).lower()}"])
    runs = [r for r in plan(study) if r.condition.name == "frozen_rand" and r.n_train == 8 and r.hidden == 4]
    assert [r.trial for r in runs] == [0, 1, 2]
    for seed in ("init_seed", "order_seed", "template_seed"):
        assert len({getattr(r, seed) for r in runs}) == 3, seed
    # one validation set for the whole study
    assert len({r.val_seed for r in runs}) == 1
    # one training pool for all trials, unless data_per_trial
    assert len({r.data_seed for r in runs}) == (3 if data_per_trial else 1)
    # training pool and validation set are different draws
    assert runs[0].data_seed != runs[0].val_seed


def test_val_seed_is_shared_by_every_run():
    runs = plan(load_study("xor5d", SMALL + ["data_per_trial=true"]))
    assert len({r.val_seed for r in runs}) == 1


def test_seeds_follow_the_study_seed():
    a = plan(load_study("xor5d", SMALL))[0]
    b = plan(load_study("xor5d", SMALL + ["seed=1"]))[0]
    for seed in SEEDS + ("reset_seed",):
        assert getattr(a, seed) != getattr(b, seed), seed


def test_reset_seed_is_per_run():
    runs = plan(load_study("xor5d-reset", ["trials=2", "sizes=[8, 20]", "hidden=[4]"]))
    assert len({r.reset_seed for r in runs}) == len(runs)


def test_derive_seed():
    assert derive_seed(0, "init", 3) == derive_seed(0, "init", 3)
    assert derive_seed(0, "init", 3) != derive_seed(0, "init", 4)
    assert derive_seed(0, "init", 3) != derive_seed(0, "order", 3)
    assert derive_seed(0, "init", 3) != derive_seed(1, "init", 3)
    seeds = [derive_seed(s, "x") for s in range(200)]
    assert all(0 <= s < 2**62 for s in seeds)
    assert max(seeds) > 2**60  # uses the whole 62-bit range


# --------------------------------------------------------------------------- cost


def test_estimate_cost_by_hand():
    study = load_study("xor5d", ["trials=2", "epochs=3", "sizes=[8, 40]"])
    cost = estimate_cost(study)
    # 3 conditions × 2 sizes × 2 trials = 12 runs; steps: n=8 → 1 batch, n=40 → 2 batches, × 3 epochs
    assert cost["runs"] == 12
    assert cost["steps"] == 3 * 2 * (1 * 3 + 2 * 3) == 54  # its seconds: tests/test_cost.py


def test_estimate_cost_quick_reset_preset_by_hand():
    cost = estimate_cost(load_study("xor5d-reset", quick=True))
    # (4 + 4 + 1) condition-rule pairs × sizes 20, 60, 100 (1, 2, 4 batches of 32) × 6 trials × 30 epochs
    assert cost["runs"] == 9 * 3 * 6 == 162
    assert cost["steps"] == 9 * 6 * (1 + 2 + 4) * 30 == 11340


def test_estimate_cost_batch_size_rounds_up():
    cost = estimate_cost(load_study("xor5d", ["trials=1", "epochs=1", "sizes=[33]", "batch_size=32", "conditions=['fluid_rand']"]))
    assert (cost["runs"], cost["steps"]) == (1, 2)
    assert math.isfinite(cost["seconds"])


def test_estimate_cost_full_xor5d():
    cost = estimate_cost(load_study("xor5d"))
    batches = sum(math.ceil(n / 32) for n in (8, 20, 32, 40, 52, 60, 72, 80, 92, 100, 500))
    assert batches == 1 + 1 + 1 + 2 + 2 + 2 + 3 + 3 + 3 + 4 + 16
    assert cost["runs"] == 1650
    assert cost["steps"] == 3 * 50 * 100 * batches


def test_plan_of_a_replaced_study():
    study = dataclasses.replace(load_study("xor5d", SMALL), sizes=(8,))
    assert len(plan(study)) == 3 * 1 * 2 * 3


# --------------------------------------------------------------------------- keys: files count by content


def _spin_study(path, extra=()):
    return load_study("xor5d", ["dataset='fashion_mnist'", "model='lenet'", "in_channels=1", "sizes=[100]",
                                "val_size=500", "trials=2", "conditions=['freeze_spin_file']",
                                f"proportions='{path}'", *extra])


def _save(path, p0=0.0):
    from polarnet.proportions import save_proportions

    return save_proportions({"features.0.weight": (p0, (1 - p0) / 2, (1 - p0) / 2)}, path)


def test_editing_a_proportions_file_gives_new_keys(tmp_path):
    path = _save(tmp_path / "p.json")
    before = [r.key for r in plan(_spin_study(path))]
    _save(path, p0=0.5)  # same path, other numbers
    after = [r.key for r in plan(_spin_study(path))]
    assert len(before) == len(after) == 2 and not set(before) & set(after)


def test_a_moved_or_copied_proportions_file_keeps_the_keys(tmp_path):
    path = _save(tmp_path / "p.json")
    (tmp_path / "elsewhere").mkdir()
    copy = tmp_path / "elsewhere" / "renamed.json"
    copy.write_bytes(path.read_bytes())
    assert [r.key for r in plan(_spin_study(path))] == [r.key for r in plan(_spin_study(copy))]


def test_stored_settings_keep_the_path_and_the_hash(tmp_path):
    import hashlib

    path = _save(tmp_path / "p.json")
    settings = plan(_spin_study(path))[0].settings()
    assert settings["study"]["proportions"] == str(path)
    assert settings["study"]["proportions_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_conditions_proportions_file_counts_by_content(tmp_path):
    a, b = _save(tmp_path / "a.json"), _save(tmp_path / "b.json", p0=0.2)
    (tmp_path / "c.json").write_bytes(a.read_bytes())

    def key(path):
        table = f'define_condition={{x={{polarity="proportions", frozen=true, proportions="{path}"}}}}'
        study = load_study("xor5d", ["dataset='fashion_mnist'", "model='lenet'", "in_channels=1", "sizes=[100]",
                                     "val_size=500", "trials=1", table, "conditions=['x']"])
        run = plan(study)[0]
        assert run.settings()["condition"]["proportions"] == str(path)
        return run.key

    assert key(a) == key(tmp_path / "c.json") != key(b)


def test_editing_a_source_file_gives_new_keys(tmp_path):
    import torch

    path = tmp_path / "w.pt"
    torch.save(torch.nn.Linear(5, 4).state_dict(), path)
    study = lambda: load_study("xor5d", SMALL + [f"source='{path}'", "conditions=['frozen_in_polarity']"])  # noqa: E731
    before = _keys(study())
    torch.save(torch.nn.Linear(5, 4).state_dict(), path)  # other random weights
    assert not set(before.values()) & set(_keys(study()).values())


def test_a_torchvision_weights_name_is_keyed_by_its_name():
    run = plan(load_study("spin-alexnet-fmnist", quick=True))[0]
    assert run.settings()["study"]["source"] == "AlexNet_Weights.IMAGENET1K_V1"
    assert "source_sha256" not in run.settings()["study"]


def test_file_hashes_are_cached_per_path_time_and_size(tmp_path, monkeypatch):
    module = sys.modules["polarnet.experiments.plan"]  # the package exports a function of that name

    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    first = module.file_sha256(path)
    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: reads.append(a[0]) or real_open(*a, **k))
    assert module.file_sha256(path) == first and reads == []  # cached
    path.write_bytes(b"two!")
    assert module.file_sha256(path) != first and len(reads) == 1  # changed: read again


def test_allow_large_is_not_in_the_key():
    assert _keys(load_study("xor5d", SMALL)) == _keys(load_study("xor5d", SMALL + ["allow_large=true"]))


def test_allow_extreme_is_not_in_the_key():
    assert _keys(load_study("xor5d", SMALL)) == _keys(load_study("xor5d", SMALL + ["allow_extreme=true"]))


# --------------------------------------------------------------------------- counting without planning


@pytest.mark.parametrize("name", ["xor5d", "xor5d-reset", "xor5d-width", "spin-table1"])
@pytest.mark.parametrize("quick", [False, True])
def test_count_runs_is_the_plans_length(name, quick):
    from polarnet.experiments.plan import count_runs

    study = load_study(name, quick=quick)
    assert count_runs(study) == len(plan(study))


def test_estimate_cost_of_the_split_transfer_preset_follows_its_measured_wall_time() -> None:
    """bench_split_transfer measured 654 s for the whole preset, vectorised, on 2 cores: the
    reference rates (before this machine's are measured) give it."""
    study = load_study("fmnist-split-transfer", ["source=''"], validate=False)
    assert 600 < estimate_cost(study, workers=2, rates={})["seconds"] < 710
    slower = estimate_cost(load_study("fmnist-split-transfer", ["source=''", "vectorize=false"], validate=False),
                           workers=2, rates={})
    assert 2400 < slower["seconds"] < 4000  # one run at a time: 2766-3106 s measured


def test_learners_that_never_reset_run_once_with_reset_none_and_get_their_own_keys():
    study = load_study("xor5d", ["trials=1", "sizes=[8]", "resets=['posRand', 'zero']",
                                 "learners=['freeze_sgd', 'project', 'eg']", "lr_sweep={eg=[0.1, 0.3]}"])
    runs = plan(study)
    by = Counter((r.condition.learner, r.reset) for r in runs if r.condition.frozen)
    # freeze_sgd runs the study's reset axis; the others never reset
    assert by == {("freeze_sgd", "posRand"): 2, ("freeze_sgd", "zero"): 2, ("project", "none"): 2, ("eg", "none"): 4}
    keys = [r.key for r in runs]
    assert len(set(keys)) == len(keys)
    eg = [r for r in runs if r.condition.learner == "eg"]
    assert {r.lr for r in eg} == {0.1, 0.3}
    assert all(r.settings()["condition"]["learner"] == "eg" for r in eg)


def test_the_default_learner_leaves_existing_run_keys_unchanged():
    explicit = plan(load_study("xor5d", ["trials=1", "sizes=[8]", "conditions=['mine']",
                                         "define_condition={mine={polarity='random', frozen=true, learner='freeze_sgd'}}"]))
    implicit = plan(load_study("xor5d", ["trials=1", "sizes=[8]", "conditions=['mine']",
                                         "define_condition={mine={polarity='random', frozen=true}}"]))
    assert "learner" not in explicit[0].settings()["condition"]  # defaults stay out of keys (open_lth's rule)
    assert [r.key for r in explicit] == [r.key for r in implicit]


@pytest.mark.parametrize("seconds, said", [(0, "0 s"), (119, "119 s"), (120, "2.0 min"), (599, "10.0 min"),
                                           (600, "10 min"), (3599, "60 min"), (3600, "1.0 h"), (2 * 86400, "2.0 days")])
def test_duration_reads_as_people_say_it(seconds, said):
    """One formatter for every estimate polarnet prints (``polarnet presets``, ``polarnet reproduce``)."""
    from polarnet import cli, reproduce
    from polarnet.experiments.plan import duration
    assert duration(seconds) == said and reproduce.duration is duration and not hasattr(cli, "_duration")
