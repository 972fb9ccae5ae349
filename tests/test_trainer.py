"""One run at a time: the controls the paper demands, frozen/fluid behaviour, non-finite losses."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
import torch

from helpers import real_data

import polarnet as pn
from polarnet import fileformat
from polarnet.experiments import load_study, plan
from polarnet.experiments.ensemble import train_ensemble
from polarnet.experiments.trainer import CHECKPOINT_FORMAT, checkpoint_file, prepare_model, run_data, train_run

CONTROLS_TOML = """
conditions = ["frozen_sufficient", "fluid_sufficient", "frozen_rand", "fluid_rand", "fluid_rand_twin"]
sizes = [8, 40]
hidden = [8, 16]
trials = 2
epochs = 3
val_size = 300

# a fluid net aligned to its own init signs: alignment is a no-op, so it must train exactly like fluid_rand
[define_condition.fluid_rand_twin]
polarity = "random"
frozen = false
"""




@pytest.fixture
def controls(tmp_path):
    path = tmp_path / "controls.toml"
    path.write_text(CONTROLS_TOML)
    return load_study(path)


def _by_point(runs):
    """{(trial, n_train, hidden): {condition: run}}"""
    out = defaultdict(dict)
    for r in runs:
        out[(r.trial, r.n_train, r.hidden)][r.condition.name] = r
    return out


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equal_states(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_seeds_are_shared_within_a_trial_and_differ_across_trials(controls) -> None:
    runs = plan(controls)
    points = _by_point(runs)
    assert len(points) == 2 * 2 * 2
    for (trial, n, hidden), by_condition in points.items():
        assert set(by_condition) == set(controls.conditions)
        for seed in ("init_seed", "order_seed", "data_seed", "val_seed", "template_seed"):
            assert len({getattr(r, seed) for r in by_condition.values()}) == 1, (seed, trial, n, hidden)
        # reset randomness is the condition's own; keys are distinct
        assert len({r.reset_seed for r in by_condition.values()}) == len(by_condition)
    assert len({r.key for r in runs}) == len(runs)
    one = lambda trial, n=8, hidden=8: points[(trial, n, hidden)]["fluid_rand"]
    assert one(0).init_seed != one(1).init_seed and one(0).order_seed != one(1).order_seed
    assert one(0).order_seed != one(0, n=40).order_seed  # each size has its own batch order
    assert one(0).val_seed == one(1).val_seed  # one validation set for the whole study
    assert one(0).data_seed == one(1).data_seed  # nested training sets from one pool (data_per_trial=false)
    # same trial and condition: the same data, validation set and training subset
    d0, d1 = run_data(one(0)), run_data(points[(0, 8, 8)]["frozen_sufficient"])
    assert torch.equal(d0.x, d1.x) and torch.equal(d0.x_val, d1.x_val) and torch.equal(d0.y_val, d1.y_val)


def test_frozen_rand_and_fluid_rand_start_from_identical_weights(controls) -> None:
    for (trial, n, hidden), c in _by_point(plan(controls)).items():
        frozen, t_frozen = prepare_model(c["frozen_rand"])
        fluid, t_fluid = prepare_model(c["fluid_rand"])
        assert t_fluid is None and t_frozen is not None
        before = _state(frozen)
        assert _equal_states(before, _state(fluid))
        pn.align(frozen, t_frozen)  # RAND polarity = the init's own signs: aligning changes nothing
        assert _equal_states(_state(frozen), before)
        # the Sufficient nets start from the same magnitude draw
        sufficient, _ = prepare_model(c["frozen_sufficient"])
        assert _equal_states(_state(sufficient), before)
    first = _by_point(plan(controls))
    a, b = prepare_model(first[(0, 8, 8)]["fluid_rand"])[0], prepare_model(first[(1, 8, 8)]["fluid_rand"])[0]
    assert not torch.equal(a[0].weight, b[0].weight)  # trials draw different magnitudes


def test_fluid_sufficient_starts_from_the_aligned_frozen_sufficient_weights(controls) -> None:
    for key, c in _by_point(plan(controls)).items():
        frozen, t_frozen = prepare_model(c["frozen_sufficient"])
        fluid, t_fluid = prepare_model(c["fluid_sufficient"])
        fresh = _state(fluid)
        assert all(torch.equal(t_frozen[n], t_fluid[n]) for n in t_frozen) and list(t_frozen) == list(t_fluid)
        pn.align(frozen, t_frozen)
        pn.align(fluid, t_fluid)
        aligned = _state(fluid)
        assert _equal_states(aligned, _state(frozen)), key
        # alignment kept the magnitudes of the shared draw (hidden signs as-is) and flipped some output signs
        assert all(torch.equal(aligned[n].abs(), fresh[n].abs()) for n in aligned)
        assert torch.equal(aligned["0.weight"], fresh["0.weight"])
        assert not torch.equal(aligned["2.weight"], fresh["2.weight"])
        assert pn.violations(fluid, t_fluid) == 0


def test_alignment_accuracies_follow_the_controls(controls) -> None:
    runs = [r for r in plan(controls) if r.hidden == 16 and r.n_train == 8]
    results = {(r.trial, r.condition.name): train_run(r) for r in runs}
    for trial in range(controls.trials):
        res = lambda name: results[(trial, name)]
        before = {res(name).acc_before_align for name in controls.conditions}
        assert len(before) == 1  # one magnitude draw for every condition of the trial
        assert res("frozen_rand").acc_after_align == res("fluid_rand").acc_after_align == res("fluid_rand").acc_before_align
        assert res("fluid_sufficient").acc_after_align == res("frozen_sufficient").acc_after_align


def test_conditions_of_a_trial_see_the_same_batches(controls) -> None:
    """fluid_rand_twin differs from fluid_rand only in name (and so in key): same init, data,
    batch order and validation set must give identical numbers, one by one and in an ensemble."""
    runs = plan(controls)
    points = _by_point(runs)
    for key, c in points.items():
        a, b = train_run(c["fluid_rand"], keep_weights=True), train_run(c["fluid_rand_twin"], keep_weights=True)
        assert a.key != b.key
        assert [vars(e) | {"wall": 0} for e in a.epochs] == [vars(e) | {"wall": 0} for e in b.epochs], key
        assert all(torch.equal(a.extra["weights"][n], b.extra["weights"][n]) for n in a.extra["weights"])
    group = [r for r in runs if r.hidden == 8]
    ens = {(r.trial, r.n_train, r.condition.name): res for r, res in zip(group, train_ensemble(group))}
    for trial, n, hidden in points:
        if hidden == 8:
            x, y = ens[(trial, n, "fluid_rand")], ens[(trial, n, "fluid_rand_twin")]
            assert [vars(e) | {"wall": 0} for e in x.epochs] == [vars(e) | {"wall": 0} for e in y.epochs]
    # and a different trial does not (the check above can fail)
    a, b = train_run(points[(0, 40, 8)]["fluid_rand"]), train_run(points[(1, 40, 8)]["fluid_rand"])
    assert a.epochs[0].train_loss != b.epochs[0].train_loss


@pytest.mark.parametrize("reset", ["posRand", "posCon", "zero", "flip"])
def test_frozen_run_ends_on_its_template_and_fluid_runs_change_signs(reset) -> None:
    study = load_study("xor5d", ["trials=1", "epochs=5", "sizes=[40]", "hidden=[16]", f"resets=['{reset}']",
                                 "val_size=200"])
    resets = 0
    for run in plan(study):
        result = train_run(run, keep_weights=True)
        assert result.status == "done" and len(result.epochs) == 5
        model, template = prepare_model(run)
        model.load_state_dict(result.extra["weights"])
        changes = sum(sum(e.sign_changes.values()) for e in result.epochs)
        if run.condition.frozen:
            assert pn.violations(model, template) == 0
            resets += sum(e.resets for e in result.epochs)
        else:
            assert changes > 0
    assert resets > 0  # Freeze-SGD had work to do


def test_non_finite_loss_fails_the_run(tmp_path) -> None:
    path = tmp_path / "nan.toml"
    path.write_text("""
conditions = ["exploding", "fluid_rand"]
sizes = [8, 40]
trials = 1
epochs = 4
val_size = 200
allow_extreme = true  # lr = 1e30 is the point: losses that become NaN

[define_condition.exploding]
polarity = "random"
frozen = false
lr = 1e30
""")
    runs = plan(load_study(path))
    alone = [train_run(r) for r in runs]
    together = train_ensemble(runs)
    for run, a, b in zip(runs, alone, together):
        if run.condition.name == "exploding":
            for r in (a, b):
                assert r.status == "failed" and "non-finite loss" in r.reason
                last = r.epochs[-1]
                assert not (math.isfinite(last.train_loss) and math.isfinite(last.val_loss))
                assert all(math.isfinite(e.train_loss) and math.isfinite(e.val_loss) for e in r.epochs[:-1])
            assert len(a.epochs) == len(b.epochs) < 4 and a.reason == b.reason
        else:  # the NaN member does not leak into the rest of the ensemble
            assert a.status == b.status == "done" and len(b.epochs) == 4
            assert [e.val_loss for e in a.epochs] == pytest.approx([e.val_loss for e in b.epochs], abs=1e-5)


def test_train_run_keep_weights_and_epoch_records() -> None:
    run = plan(load_study("xor5d", ["trials=1", "epochs=3", "sizes=[40]", "val_size=200"]))[0]
    plain = train_run(run)
    kept = train_run(run, keep_weights=True)
    assert "weights" not in plain.extra
    assert set(kept.extra["weights"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert [e.epoch for e in plain.epochs] == [1, 2, 3]
    for e in plain.epochs:
        assert 0 <= e.train_acc <= 1 and 0 <= e.val_acc <= 1 and e.wall >= 0 and e.resets >= 0
        assert set(e.sign_changes) == {"0.weight", "2.weight"}
        assert e.train_acc * run.n_train == pytest.approx(round(e.train_acc * run.n_train))
    assert [e.val_loss for e in plain.epochs] == [e.val_loss for e in kept.epochs]  # deterministic


# -- resuming at the last finished epoch (issue 8) ---------------------------------------------------


TINY_CNN = ["dataset='fashion_mnist'", "model='lenet'", "in_channels=1", "init_linear='glorot_uniform'",
            "init_bias='zeros'", "sizes=[300]", "trials=1", "epochs=4", "batch_size=50", "lr=0.001",
            "val_size=300", "resets=['posRand']"]


class _Stop(Exception):
    """What the test's on_epoch raises to interrupt a run."""


def _interrupted_then_resumed(run, path, after: int = 2):
    """Train ``run`` with a checkpoint, stop it after ``after`` epochs, then train it again."""
    finished = []

    def stop(_work):
        finished.append(1)
        if len(finished) == after:
            raise _Stop

    with pytest.raises(_Stop):
        train_run(run, keep_weights=True, on_epoch=stop, checkpoint=path, checkpoint_overhead=math.inf)
    saved = torch.load(path, weights_only=True)
    assert (saved["format"], saved["key"], saved["epoch"]) == (CHECKPOINT_FORMAT, run.key, after)
    epochs = []
    result = train_run(run, keep_weights=True, on_epoch=epochs.append, checkpoint=path)
    assert len(epochs) == run.study.epochs - after  # only the epochs left were trained
    return result


def _assert_same_run(a, b) -> None:
    assert a.status == b.status == "done"
    assert [vars(e) | {"wall": 0} for e in a.epochs] == [vars(e) | {"wall": 0} for e in b.epochs]
    assert (a.acc_before_align, a.acc_after_align) == (b.acc_before_align, b.acc_after_align)
    assert {k: v for k, v in a.extra.items() if k != "weights"} == {k: v for k, v in b.extra.items() if k != "weights"}
    assert a.extra["weights"].keys() == b.extra["weights"].keys()
    for name in a.extra["weights"]:
        assert torch.equal(a.extra["weights"][name], b.extra["weights"][name]), name


def test_checkpoint_file_names_the_run(tmp_path) -> None:
    assert checkpoint_file(tmp_path, "abc123") == tmp_path / "abc123.pt"


def test_resumed_xor_run_matches_an_uninterrupted_one(tmp_path) -> None:
    run = next(r for r in plan(load_study("xor5d", ["trials=1", "epochs=5", "sizes=[40]", "val_size=200"]))
               if r.condition.name == "frozen_rand")
    straight = train_run(run, keep_weights=True)
    resumed = _interrupted_then_resumed(run, tmp_path / "run.pt", after=3)
    _assert_same_run(straight, resumed)
    assert sum(e.resets for e in straight.epochs[3:]) > 0  # the seeded resets after the restart count
    assert straight.extra["constrained"] == 5 * 64 + 64  # both weight layers of the 5-64-1 net


@real_data
@pytest.mark.parametrize("condition", ["frozen_rand", "fluid_spin_lenet"])
def test_resumed_image_run_matches_an_uninterrupted_one(tmp_path, condition) -> None:
    """A frozen LeNet with seeded posRand resets, and Fluid SPIN (the template moves every epoch)."""
    study_file = tmp_path / "study.toml"
    study_file.write_text("""
[define_condition.fluid_spin_lenet]
polarity = "proportions"
proportions = [0.2, 0.4, 0.4]
layers = "conv"
frozen = true
swap = 0.5
""")
    run = plan(load_study(study_file, TINY_CNN + [f"conditions=['{condition}']"]))[0]
    straight = train_run(run, keep_weights=True)
    resumed = _interrupted_then_resumed(run, checkpoint_file(tmp_path / "checkpoints", run.key))
    _assert_same_run(straight, resumed)
    assert sum(e.resets for e in straight.epochs[2:]) > 0
    if run.condition.swap:  # the swaps changed the template, and the resumed run carried it on
        model, template = prepare_model(run)
        model.load_state_dict(resumed.extra["weights"])
        assert pn.violations(model, template) > 0


@real_data
def test_resumed_run_with_dropout_matches_and_leaves_the_global_generator_alone(tmp_path, dropout_net) -> None:
    run = plan(load_study("xor5d", TINY_CNN + [f"model='{dropout_net}'", "conditions=['frozen_rand']"]))[0]
    torch.manual_seed(1)
    before = torch.get_rng_state()
    straight = train_run(run, keep_weights=True)
    assert torch.equal(torch.get_rng_state(), before)  # the run's dropout draws came from its own seed
    torch.rand(100)  # whatever the caller's generator did before does not matter
    again = train_run(run, keep_weights=True)
    _assert_same_run(straight, again)
    _assert_same_run(straight, _interrupted_then_resumed(run, tmp_path / "run.pt"))


def test_unusable_checkpoints_are_ignored_with_a_warning(tmp_path) -> None:
    runs = [r for r in plan(load_study("xor5d", ["trials=1", "epochs=3", "sizes=[40]", "val_size=200"]))
            if r.condition.frozen]
    run, other = runs[0], runs[1]
    straight = train_run(run, keep_weights=True)
    path = tmp_path / "run.pt"
    bad = {"torn": lambda: path.write_bytes(b"PK\x03\x04 not a whole file"),
           "foreign": lambda: _interrupted_then_resumed(other, path, after=1),
           "old format": lambda: torch.save({"format": CHECKPOINT_FORMAT - 1, "key": run.key, "epoch": 1}, path),
           "wrong layers": lambda: torch.save(torch.load(_checkpoint_of(run, tmp_path / "x.pt"), weights_only=True)
                                              | {"tracker": {}}, path)}
    for why, write in bad.items():
        path.unlink(missing_ok=True)
        write()
        with pytest.warns(RuntimeWarning, match=r"checkpoint .* from the start"):
            result = train_run(run, keep_weights=True, checkpoint=path)
        _assert_same_run(straight, result)
        assert torch.load(path, weights_only=True)["key"] == run.key, why  # overwritten with this run's state


def _checkpoint_of(run, path):
    with pytest.raises(_Stop):
        train_run(run, on_epoch=lambda _: (_ for _ in ()).throw(_Stop()), checkpoint=path, checkpoint_overhead=math.inf)
    return path


def test_a_finished_run_leaves_its_checkpoint_one_epoch_short(tmp_path) -> None:
    """The trainer never deletes the file (the sweep does, once the result is stored); the last
    epoch isn't written, since the result follows at once."""
    run = plan(load_study("xor5d", ["trials=1", "epochs=3", "sizes=[8]", "val_size=100"]))[0]
    path = tmp_path / "deep" / "run.pt"
    train_run(run, checkpoint=path, checkpoint_overhead=math.inf)
    stale = fileformat.temporary_file(path).with_name(".run.pt.12345.tmp")
    stale.write_bytes(b"half a checkpoint")  # a write cut short by a kill
    assert fileformat.stale_temporaries(path) == [stale]
    train_run(run, checkpoint=path, checkpoint_overhead=math.inf)
    assert torch.load(path, weights_only=True)["epoch"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["run.pt"]  # no temporary file left behind, none kept


def test_checkpoints_take_a_bounded_share_of_the_training_time(tmp_path) -> None:
    """The first epoch is always saved; later ones only once the epochs since the last write
    took 1 / checkpoint_overhead times as long as writing it. Resuming from an older epoch
    still gives the uninterrupted numbers."""
    run = next(r for r in plan(load_study("xor5d", ["trials=1", "epochs=4", "sizes=[40]", "val_size=200"]))
               if r.condition.frozen)
    path = tmp_path / "run.pt"
    finished = []

    def stop(_work):
        finished.append(1)
        if len(finished) == 3:
            raise _Stop

    with pytest.raises(_Stop):
        train_run(run, on_epoch=stop, checkpoint=path, checkpoint_overhead=1e-9)  # writing "costs" forever
    assert torch.load(path, weights_only=True)["epoch"] == 1
    _assert_same_run(train_run(run, keep_weights=True), train_run(run, keep_weights=True, checkpoint=path))
    with pytest.raises(ValueError, match="checkpoint_overhead"):
        train_run(run, checkpoint=path, checkpoint_overhead=0)


_KILLED_CHILD = """
import json, math, sys, time

import torch

from polarnet.experiments import load_study, plan, trainer

overrides, path, threads = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)  # as the test process: the same numbers, rounding included
loss = trainer.task_loss


def slow_loss(*args):  # the same numbers, slowly: the kill lands inside an epoch, not between two
    time.sleep(0.05)
    return loss(*args)


trainer.task_loss = slow_loss
run = plan(load_study("xor5d", overrides))[0]
trainer.train_run(run, checkpoint=path, checkpoint_overhead=math.inf)
print("finished, never killed", flush=True)
"""


@real_data
def test_an_image_run_killed_mid_run_resumes_in_another_process_with_the_same_numbers(tmp_path) -> None:
    """Issue 9 §3: a process training a Frozen LeNet (seeded posRand resets) on real
    Fashion-MNIST is killed with SIGKILL once its checkpoint holds epoch 2 or later; this
    process resumes it from the file alone and gets every per-epoch row, and the final
    weights, of an uninterrupted run."""
    import json
    import signal
    import subprocess
    import sys
    import time

    overrides = TINY_CNN + ["epochs=6", "conditions=['frozen_rand']"]
    run = plan(load_study("xor5d", overrides))[0]
    straight = train_run(run, keep_weights=True)
    path = checkpoint_file(tmp_path / "checkpoints", run.key)
    child = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, json.dumps(overrides), str(path),
                              str(torch.get_num_threads())], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen, deadline = 0, time.monotonic() + 60
        while seen < 2 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
            try:
                seen = int(torch.load(path, weights_only=True)["epoch"])
            except Exception:  # not written yet (or, were the write not atomic, torn)
                continue
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert seen >= 2 and child.returncode == -signal.SIGKILL, (seen, child.returncode, out, err[-2000:])
    saved = torch.load(path, weights_only=True)  # perhaps an epoch later than the one seen
    assert saved["key"] == run.key and 2 <= saved["epoch"] < run.study.epochs
    epochs = []
    resumed = train_run(run, keep_weights=True, on_epoch=epochs.append, checkpoint=path)
    assert len(epochs) == run.study.epochs - saved["epoch"]  # it went on from the checkpoint
    _assert_same_run(straight, resumed)
    assert sum(e.resets for e in straight.epochs[saved["epoch"]:]) > 0  # seeded resets after the restart
    assert fileformat.stale_temporaries(path) == []  # a write the kill cut short is cleared away


@pytest.mark.parametrize("learner", ["project", "reparam-softplus", "reparam-exp", "reparam-abs", "eg"])
def test_every_learner_trains_a_run_onto_its_template_and_resumes_from_a_checkpoint(learner, tmp_path) -> None:
    study = load_study("xor5d", ["trials=1", "epochs=4", "sizes=[40]", "hidden=[16]", "vectorize=false",
                                 f"learners=['{learner}']", "conditions=['frozen_rand']"])
    spec = plan(study)[0]
    assert spec.condition.learner == learner and spec.reset == "none"
    whole = train_run(spec, keep_weights=True)
    model, template = prepare_model(spec)
    model.load_state_dict(whole.extra["weights"])  # the unmodified architecture's keys: plain weights
    assert pn.violations(model, template) == 0
    if learner != "project":  # the others never leave the template, so never reset
        assert [e.resets for e in whole.epochs] == [0] * 4
    # interrupted after epoch 2 (a checkpoint holds V, the template buffer and AdamEG's state), then resumed
    ckpt = checkpoint_file(tmp_path, spec.key)
    calls = {"n": 0}

    def stop_after_two(fraction: float) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(spec, checkpoint=ckpt, on_epoch=stop_after_two, checkpoint_overhead=float("inf"))
    resumed = train_run(spec, checkpoint=ckpt)
    assert [(e.val_loss, e.val_acc, e.resets) for e in resumed.epochs] == \
        [(e.val_loss, e.val_acc, e.resets) for e in whole.epochs]
