"""The vectorised ensemble is numerically equivalent to training runs one by one."""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict

import pytest
import torch

import polarnet as pn
from polarnet.experiments import load_study, plan
from polarnet.experiments.ensemble import supports, train_ensemble
from polarnet.experiments.trainer import prepare_model, train_run
from polarnet.learners import LEARNERS, Keeper, Learner, Stacked, register_learner

RESET_GRID = ["trials=2", "epochs=4", "sizes=[8, 40, 100]", "resets=['posRand','posCon','zero','flip']"]
#: every learner the ensembles train vectorised (a new one with a recipe is covered automatically)
STACKED_LEARNERS = [name for name in LEARNERS.names() if LEARNERS.get(name).stacked is not None]




def _spin_study(tmp_path, extra=()):
    """A study with SPIN (proportions) conditions whose templates have zeros, a per-condition lr,
    a frozen rule condition and ordinary training, over the four reset rules."""
    props = pn.save_proportions({"0.weight": (0.25, 0.375, 0.375), "2.weight": (0.25, 0.375, 0.375)},
                                tmp_path / "spin.json")
    toml = tmp_path / "spin.toml"
    toml.write_text(f"""
conditions = ["spin_frozen", "spin_fluid", "frozen_sufficient", "fluid_rand"]
sizes = [8, 40, 100]
hidden = [16]
resets = ["posRand", "posCon", "zero", "flip"]
trials = 2
epochs = 4
proportions = "{props}"

[define_condition.spin_frozen]
polarity = "proportions"
frozen = true
lr = 0.01

[define_condition.spin_fluid]
polarity = "proportions"
frozen = false
""")
    return load_study(toml, list(extra))


def _assert_equivalent(a, b, tol: float) -> None:
    """Two results of one run agree: status, alignment accuracies, every epoch metric, final weights."""
    assert a.key == b.key
    assert (a.status, a.reason) == (b.status, b.reason)
    assert a.acc_before_align == pytest.approx(b.acc_before_align, abs=tol)
    assert a.acc_after_align == pytest.approx(b.acc_after_align, abs=tol)
    assert [e.epoch for e in a.epochs] == [e.epoch for e in b.epochs]
    for ea, eb in zip(a.epochs, b.epochs):
        where = f"run {a.key} epoch {ea.epoch}"
        for field in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert getattr(ea, field) == pytest.approx(getattr(eb, field), abs=tol), f"{where}: {field}"
        assert ea.resets == eb.resets, f"{where}: resets"
        assert set(ea.sign_changes) == set(eb.sign_changes), f"{where}: sign_changes layers"
        for layer in ea.sign_changes:
            assert ea.sign_changes[layer] == pytest.approx(eb.sign_changes[layer], abs=tol), f"{where}: {layer}"
    wa, wb = a.extra["weights"], b.extra["weights"]
    assert set(wa) == set(wb)
    for name in wa:
        assert wa[name].dtype == wb[name].dtype
        diff = (wa[name].double() - wb[name].double()).abs().max().item()
        assert diff <= tol, f"run {a.key}: final {name} differs by {diff}"


def _exactly_equal(a, b) -> bool:
    metrics = lambda r: [(e.train_loss, e.train_acc, e.val_loss, e.val_acc, e.resets, e.sign_changes) for e in r.epochs]
    return (a.status == b.status and a.acc_before_align == b.acc_before_align and a.acc_after_align == b.acc_after_align
            and metrics(a) == metrics(b)
            and all(torch.equal(a.extra["weights"][n], b.extra["weights"][n]) for n in a.extra["weights"]))


def _both_ways(runs):
    ensemble = train_ensemble(runs, keep_weights=True)
    one_by_one = [train_run(r, keep_weights=True) for r in runs]
    return ensemble, one_by_one


@pytest.mark.parametrize(("dtype", "tol"), [("float32", 1e-5), ("float64", 1e-9)])
def test_reset_grid_ensemble_equals_one_by_one(dtype, tol) -> None:
    study = load_study("xor5d", RESET_GRID + [f"dtype='{dtype}'"])
    runs = plan(study)
    assert len(runs) == 2 * 3 * (4 + 4 + 1)  # trials × sizes × (frozen conditions × resets + fluid)
    ensemble, one_by_one = _both_ways(runs)
    assert [r.key for r in ensemble] == [r.key for r in runs]  # results come back in the order given
    for a, b in zip(ensemble, one_by_one):
        assert a.status == "done" and len(a.epochs) == study.epochs
        assert all(w.dtype == getattr(torch, dtype) for w in a.extra["weights"].values())
        _assert_equivalent(a, b, tol)
    # the comparison is not vacuous: frozen runs did reset weights, and fluid ones changed signs
    assert sum(e.resets for r, res in zip(runs, ensemble) if r.condition.frozen for e in res.epochs) > 0
    assert all(sum(sum(e.sign_changes.values()) for e in res.epochs) > 0
               for r, res in zip(runs, ensemble) if not r.condition.frozen)


@pytest.mark.parametrize(("dtype", "tol"), [("float32", 1e-5), ("float64", 1e-9)])
def test_template_with_zeros_ensemble_equals_one_by_one(tmp_path, dtype, tol) -> None:
    study = _spin_study(tmp_path, [f"dtype='{dtype}'"])
    runs = plan(study)
    _, template = prepare_model(next(r for r in runs if r.condition.name == "spin_frozen"))
    assert all(zeros > 0 for zeros, _, _ in template.counts().values())  # the templates really have zeros
    ensemble, one_by_one = _both_ways(runs)
    for run, a, b in zip(runs, ensemble, one_by_one):
        assert a.status == "done"
        _assert_equivalent(a, b, tol)
        if run.condition.polarity == "proportions":
            _, t = prepare_model(run)
            zero = t["0.weight"] == 0
            w = a.extra["weights"]["0.weight"]
            if run.condition.frozen:  # frozen: weights where T = 0 stay exactly 0
                assert torch.all(w[zero] == 0)


def test_result_does_not_depend_on_ensemble_companions() -> None:
    study = load_study("xor5d", ["trials=3", "epochs=3", "sizes=[8, 40, 100]", "resets=['posRand','flip']"])
    runs = plan(study)
    full = {r.key: r for r in train_ensemble(runs, keep_weights=True)}
    # one trial alone, handed over in shuffled order: every size still has several members
    subset = [r for r in runs if r.trial == 1]
    random.Random(0).shuffle(subset)
    part = train_ensemble(subset, keep_weights=True)
    assert [r.key for r in part] == [r.key for r in subset]
    for r in part:
        assert _exactly_equal(r, full[r.key]), r.key
    # a different mix of trials and conditions (frozen runs without their fluid twins)
    mixed = [r for r in runs if r.trial != 1 and r.condition.frozen]
    for r in train_ensemble(mixed, keep_weights=True):
        assert _exactly_equal(r, full[r.key]), r.key


def test_lone_member_agrees_with_full_ensemble_within_tolerance() -> None:
    study = load_study("xor5d", ["trials=2", "epochs=3", "sizes=[8, 100]"])
    runs = plan(study)
    full = {r.key: r for r in train_ensemble(runs, keep_weights=True)}
    for run in runs[::3]:
        _assert_equivalent(train_ensemble([run], keep_weights=True)[0], full[run.key], 1e-6)


def test_data_per_trial_ensemble_equals_one_by_one() -> None:
    study = load_study("xor5d", ["trials=2", "epochs=2", "sizes=[8, 40]", "data_per_trial=true"])
    runs = plan(study)
    assert len({r.data_seed for r in runs}) == 2
    ensemble, one_by_one = _both_ways(runs)
    for a, b in zip(ensemble, one_by_one):
        _assert_equivalent(a, b, 1e-5)


def test_frozen_members_end_on_their_template(tmp_path) -> None:
    study = _spin_study(tmp_path)
    runs = plan(study)
    results = train_ensemble(runs, keep_weights=True)
    checked = defaultdict(int)
    for run, result in zip(runs, results):
        model, template = prepare_model(run)
        model.load_state_dict(result.extra["weights"])
        if run.condition.frozen:
            assert pn.violations(model, template) == 0, (run.condition.name, run.reset)
            if run.reset in ("posCon", "flip"):  # these resets keep every sign: no sign ever changes
                assert all(v == 0 for e in result.epochs for v in e.sign_changes.values())
            checked["frozen"] += 1
        else:
            assert sum(sum(e.sign_changes.values()) for e in result.epochs) > 0
            checked["fluid"] += 1
    assert checked["frozen"] == 48 and checked["fluid"] == 12


def test_ensemble_rejects_mixed_hidden_sizes() -> None:
    runs = plan(load_study("xor5d", ["trials=1", "epochs=1", "sizes=[8]", "hidden=[4, 8]"]))
    assert all(supports(r) for r in runs)
    with pytest.raises(ValueError, match="one hidden size"):
        train_ensemble(runs)


def test_ensemble_without_keep_weights_and_records_alignment() -> None:
    runs = plan(load_study("xor5d", ["trials=1", "epochs=2", "sizes=[8, 40]"]))
    results = train_ensemble(runs)
    for run, r in zip(runs, results):
        assert "weights" not in r.extra and r.extra["ensemble_size"] == len(runs)
        assert 0 <= r.acc_before_align <= 1 and 0 <= r.acc_after_align <= 1
        if run.condition.name in ("frozen_rand", "fluid_rand"):  # own signs: alignment changes nothing
            assert r.acc_before_align == r.acc_after_align


def test_a_batch_larger_than_every_training_set_is_the_full_batch_without_huge_tables() -> None:
    full = plan(load_study("xor5d", ["trials=1", "epochs=3", "sizes=[8, 20]", "val_size=100", "batch_size=20"]))
    huge = plan(load_study("xor5d", ["trials=1", "epochs=3", "sizes=[8, 20]", "val_size=100",
                                     f"batch_size={2**31 - 1}"]))
    expected = [r.epochs for r in train_ensemble(full)]
    assert [r.epochs[-1].val_acc for r in train_ensemble(huge)] == [e[-1].val_acc for e in expected]
    assert [r.epochs[-1].train_loss for r in train_ensemble(huge)] == [e[-1].train_loss for e in expected]


def test_frozen_members_record_how_many_weights_their_template_constrains() -> None:
    runs = plan(load_study("xor5d", ["trials=1", "epochs=1", "sizes=[8]", "val_size=100", "hidden=[4]"]))
    constrained = {r.condition.name: res.extra.get("constrained") for r, res in zip(runs, train_ensemble(runs))}
    assert constrained == {"frozen_sufficient": 5 * 4 + 4, "frozen_rand": 5 * 4 + 4, "fluid_rand": None}


def test_the_ensemble_does_not_take_amp_or_channels_last_runs() -> None:
    """Finding 5: the ensemble computes in the study's dtype; Study.validate refuses amp on XOR, and
    a study built without validation still never puts an amp run through the ensemble."""
    run = plan(load_study("xor5d", ["trials=1", "sizes=[8]"]))[0]
    assert supports(run)
    for setting in ("amp", "channels_last"):
        assert not supports(dataclasses.replace(run, study=dataclasses.replace(run.study, **{setting: True})))


def _learner_study(learners, extra=()):
    """Frozen conditions expanded per learner at two rates each (fluid at its own), 3 epochs."""
    rates = ", ".join(f"'{name}' = [0.01, 0.1]" for name in learners)
    return load_study("xor5d", ["trials=2", "epochs=3", "sizes=[8, 40]", f"learners={list(learners)}",
                                f"lr_sweep={{{rates}}}", *extra])


def _check_learner_runs(runs, ensemble, one_by_one) -> None:
    for run, a, b in zip(runs, ensemble, one_by_one):
        assert a.status == "done" and len(a.epochs) == run.study.epochs
        _assert_equivalent(a, b, 1e-5)
        model, template = prepare_model(run)
        model.load_state_dict(a.extra["weights"])
        if run.condition.frozen:
            assert pn.violations(model, template) == 0, run.condition.name


@pytest.mark.parametrize("learner", STACKED_LEARNERS)
def test_every_stacked_learner_ensemble_equals_one_by_one(learner) -> None:
    runs = plan(_learner_study([learner]))
    frozen = [r for r in runs if r.condition.frozen]
    assert frozen and all(r.condition.learner == learner for r in frozen)
    assert {r.lr for r in frozen} == {0.01, 0.1}
    assert all(supports(r) for r in runs)
    ensemble, one_by_one = _both_ways(runs)
    _check_learner_runs(runs, ensemble, one_by_one)
    resets = sum(e.resets for r, res in zip(runs, ensemble) if r.condition.frozen for e in res.epochs)
    recipe = LEARNERS.get(learner).stacked
    if recipe.after is None:  # sign-preserving by construction: nothing to reset
        assert resets == 0
    else:  # the comparison is not vacuous: weights were reset or clipped
        assert resets > 0


def test_learners_mix_in_one_ensemble() -> None:
    runs = plan(_learner_study(STACKED_LEARNERS, ["resets=['posRand', 'flip']"]))
    assert {r.condition.learner for r in runs if r.condition.frozen} == set(STACKED_LEARNERS)
    ensemble, one_by_one = _both_ways(runs)
    _check_learner_runs(runs, ensemble, one_by_one)
    # each learner's runs alone give their numbers in the mixed ensemble, to rounding (EG's
    # multiplicative step rounds the additive members' step another way when they share a stack)
    full = {r.key: r for r in ensemble}
    for name in STACKED_LEARNERS:
        own = [r for r in runs if r.condition.learner == name]
        for r in train_ensemble(own, keep_weights=True):
            _assert_equivalent(r, full[r.key], 1e-6)


def test_reparam_members_end_on_their_template_with_zeros(tmp_path) -> None:
    reparam = [name for name in STACKED_LEARNERS if LEARNERS.get(name).stacked.weights is not None]
    study = _spin_study(tmp_path, ["epochs=2", "sizes=[8, 40]", f"learners={reparam}", "resets=['posRand']"])
    runs = plan(study)
    ensemble, one_by_one = _both_ways(runs)
    _check_learner_runs(runs, ensemble, one_by_one)
    for run, result in zip(runs, ensemble):
        if run.condition.frozen and run.condition.polarity == "proportions":
            _, template = prepare_model(run)
            for name, signs in template.items():  # T = 0 gives W = 0 exactly
                assert torch.all(result.extra["weights"][name][signs == 0] == 0)


def test_a_learner_without_a_stacked_recipe_trains_one_at_a_time() -> None:
    register_learner(Learner("no_recipe_demo", "w ← step(w)", lambda model, t, opt, options: Keeper(model, t)))
    try:
        run = next(r for r in plan(load_study("xor5d", ["trials=1", "sizes=[8]"])) if r.condition.frozen)
        assert supports(run)
        no_recipe = dataclasses.replace(run.condition, learner="no_recipe_demo")
        assert not supports(dataclasses.replace(run, condition=no_recipe, reset="none"))
        # a recipe the ensemble doesn't implement (a reset of V) falls back too
        register_learner(Learner("odd_recipe_demo", "V ← reset(V)", lambda model, t, opt, options: Keeper(model, t),
                                 stacked=Stacked(weights="exp", after="reset")))
        odd = dataclasses.replace(run.condition, learner="odd_recipe_demo")
        assert not supports(dataclasses.replace(run, condition=odd))
    finally:
        for name in ("no_recipe_demo", "odd_recipe_demo"):
            if name in LEARNERS.names():
                LEARNERS.unregister(name)


# -- checkpoints (issue 22 §3) ------------------------------------------------------------------------

class _Stop(Exception):
    """What a test's on_epoch raises to interrupt the ensemble."""


def _interrupted(runs, path, after: int) -> None:
    seen = []

    def stop(_work):
        seen.append(1)
        if len(seen) == after:
            raise _Stop

    with pytest.raises(_Stop):
        train_ensemble(runs, on_epoch=stop, checkpoint=path, checkpoint_overhead=float("inf"))


def test_an_interrupted_ensemble_resumes_with_the_numbers_of_an_uninterrupted_one(tmp_path) -> None:
    """Every stacked learner and reset rule in one ensemble (Adam's moments and step counts, V of
    the reparam members, the keyed resets' steps, the batch orders): stopped after epoch 3 of 6,
    then called again, it trains epochs 4 to 6 only and gives every record and weight of an
    uninterrupted call, bit for bit."""
    runs = plan(load_study("xor5d", ["trials=2", "epochs=6", "sizes=[8, 40]", "val_size=200",
                                     "resets=['posRand', 'flip']", f"learners={STACKED_LEARNERS!r}"]))
    straight = train_ensemble(runs, keep_weights=True)
    path = tmp_path / "ensemble.pt"
    _interrupted(runs, path, after=3)
    assert torch.load(path, weights_only=True)["epoch"] == 3
    epochs = []
    resumed = train_ensemble(runs, keep_weights=True, on_epoch=epochs.append, checkpoint=path)
    assert len(epochs) == 3
    assert sum(e.resets for r in straight for e in r.epochs[3:]) > 0  # the keyed resets after the restart count
    for a, b in zip(straight, resumed):
        assert a.key == b.key and a.status == b.status == "done"
        assert [dataclasses.replace(e, wall=0) for e in a.epochs] == [dataclasses.replace(e, wall=0) for e in b.epochs]
        assert (a.acc_before_align, a.acc_after_align) == (b.acc_before_align, b.acc_after_align)
        assert {k: v for k, v in a.extra.items() if k != "weights"} == {k: v for k, v in b.extra.items() if k != "weights"}
        assert all(torch.equal(a.extra["weights"][n], b.extra["weights"][n]) for n in a.extra["weights"])


def test_a_member_that_failed_before_the_checkpoint_stays_failed_on_resume(tmp_path) -> None:
    runs = plan(load_study("xor5d", ["trials=1", "epochs=4", "sizes=[40]", "val_size=200", "conditions=['fluid_rand']",
                                     "lr=1e30", "allow_extreme=true"]))  # diverges at once
    straight = train_ensemble(runs)
    assert straight[0].status == "failed" and len(straight[0].epochs) < 3
    _interrupted(runs, tmp_path / "ensemble.pt", after=3)
    resumed = train_ensemble(runs, checkpoint=tmp_path / "ensemble.pt")
    assert (resumed[0].status, resumed[0].reason, len(resumed[0].epochs)) == \
        (straight[0].status, straight[0].reason, len(straight[0].epochs))


def test_another_ensembles_checkpoint_is_ignored_with_a_warning(tmp_path) -> None:
    runs = plan(load_study("xor5d", ["trials=2", "epochs=3", "sizes=[8, 40]", "val_size=200"]))
    path = tmp_path / "ensemble.pt"
    _interrupted(runs[1:], path, after=1)
    epochs = []
    with pytest.warns(RuntimeWarning, match=r"unusable \(ValueError: it holds other runs\); training its runs from"):
        train_ensemble(runs, on_epoch=epochs.append, checkpoint=path)
    assert len(epochs) == 3
