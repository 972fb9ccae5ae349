"""The image ensemble: the runs of a cell trained together give train_run's numbers to rounding."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from helpers import real_data

import polarnet as pn
from polarnet.experiments import load_study, plan
from polarnet.experiments.image_ensemble import (CHECKPOINT_FORMAT, ensemble_checkpoint_file, ensemble_size, image_cell,
                                                 supports_images, train_image_ensemble)
from polarnet.experiments.stacked import Act, StackedProgram
from polarnet.experiments.trainer import prepare_model, train_run
from polarnet.freeze import RESETS, register_reset
from polarnet.learners import LEARNERS, Keeper, Learner, register_learner
from polarnet.models import MODELS, get_model, register_model


TINY = ["dataset='fashion_mnist'", "model='lenet'", "in_channels=1", "init_linear='glorot_uniform'",
        "init_bias='zeros'", "sizes=[100]", "trials=2", "epochs=3", "batch_size=50", "lr=0.001", "val_size=300"]

STUDY = """
# a fluid twin of fluid_rand: the same weights, data and batch order (dropout is all that can part them)
[define_condition.fluid_twin]
polarity = "random"
frozen = false

[define_condition.fluid_fast]
polarity = "none"
lr = 0.003
"""


#: every learner the ensembles train vectorised (a new one with a recipe is covered automatically)
STACKED_LEARNERS = [name for name in LEARNERS.names() if LEARNERS.get(name).stacked is not None]

SPIN = """
[define_condition.fluid_spin_lenet]
polarity = "proportions"
proportions = [0.2, 0.4, 0.4]
layers = "conv"
frozen = true
swap = 0.5
"""


def _study(tmp_path, *overrides: str):
    path = tmp_path / "study.toml"
    path.write_text(STUDY)
    return load_study(path, TINY + list(overrides))


def _rows(result):
    return [vars(e) | {"wall": 0} for e in result.epochs]


def _assert_close(ensemble, alone, tol: float = 1e-5) -> None:
    """Per-epoch losses and accuracies within ``tol``, resets and the rest equal."""
    assert ensemble.key == alone.key and ensemble.status == alone.status == "done"
    assert ensemble.acc_before_align == pytest.approx(alone.acc_before_align, abs=1e-12)
    assert ensemble.acc_after_align == pytest.approx(alone.acc_after_align, abs=1e-12)
    assert len(ensemble.epochs) == len(alone.epochs)
    for a, b in zip(ensemble.epochs, alone.epochs):
        assert a.epoch == b.epoch
        for field in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert abs(getattr(a, field) - getattr(b, field)) <= tol, (a.epoch, field, getattr(a, field), getattr(b, field))
        assert a.resets == b.resets
        assert a.sign_changes.keys() == b.sign_changes.keys()
        assert all(abs(a.sign_changes[k] - b.sign_changes[k]) <= 1e-4 for k in a.sign_changes)
    assert {k: v for k, v in ensemble.extra.items() if k not in ("ensemble_size", "weights")} == \
        {k: v for k, v in alone.extra.items() if k != "weights"}


@pytest.fixture
def source(tmp_path):
    """A LeNet state dict to transfer from (IN-Polarity and IN-Weight conditions)."""
    torch.manual_seed(5)
    path = tmp_path / "source.pt"
    torch.save(get_model("lenet", num_classes=10, in_channels=1).state_dict(), path)
    return str(path)


def _bn_lenet(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A LeNet with BatchNorm after conv1."""
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Conv2d(in_channels, 6, 5, padding=2, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                               nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)),
        flatten=nn.Flatten(),
        classifier=nn.Sequential(nn.Linear(16 * 5 * 5, 32), nn.ReLU(), nn.Linear(32, num_classes)),
    ))


@pytest.fixture
def bn_net():
    """A LeNet with BatchNorm: each member keeps its own statistics."""
    register_model("test_bn_lenet")(_bn_lenet)
    yield "test_bn_lenet"
    MODELS.unregister("test_bn_lenet")


class _LenNet(nn.Module):
    """A small CNN that torch.fx can't trace (``len`` of a proxy): it runs under vmap whole."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 5, stride=3)
        self.fc = nn.Linear(4 * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).reshape(len(x), -1))


@pytest.fixture
def untraceable_net():
    register_model("test_len_net")(_LenNet)
    yield "test_len_net"
    MODELS.unregister("test_len_net")


# -- equivalence with one run at a time -----------------------------------------------------------

@real_data
def test_a_cell_trained_as_one_ensemble_matches_train_run(tmp_path, source) -> None:
    """Trials, frozen and fluid conditions, two reset rules, transfer conditions and a condition
    with its own learning rate, in one ensemble: within 1e-5 of train_run per epoch."""
    study = _study(tmp_path, f"source='{source}'", "resets=['posRand', 'posCon']",
                   "conditions=['frozen_rand', 'fluid_rand', 'frozen_in_polarity', 'fluid_in_weight', 'fluid_fast']")
    runs = plan(study)
    assert len(runs) == 2 * (2 + 1 + 2 + 1 + 1)
    together = train_image_ensemble(runs, keep_weights=True)
    assert [r.key for r in together] == [r.key for r in runs]
    for run, result in zip(runs, together):
        alone = train_run(run, keep_weights=True)
        _assert_close(result, alone)
        assert result.extra["ensemble_size"] == len(runs)
        assert result.extra["weights"].keys() == alone.extra["weights"].keys()
        for name, w in alone.extra["weights"].items():
            torch.testing.assert_close(result.extra["weights"][name], w, atol=1e-4, rtol=0)
        if run.condition.frozen:
            assert sum(e.resets for e in alone.epochs) > 0  # Freeze-SGD did work, and its counts agree


@real_data
@pytest.mark.parametrize("model", ["bn_net", "untraceable_net"])
def test_batch_norm_and_untraceable_models_match_train_run(tmp_path, request, model) -> None:
    """BatchNorm with per-member statistics (grouped channels, normalised in train_run's
    memory layout: torch's channels-last and contiguous kernels sum the statistics in other
    orders, 1e-4 apart over an image's flat background), and a model torch.fx can't trace,
    which runs under torch.func.vmap as a whole. (BatchNorm1d is in test_stacked's layer-by-layer test:
    after an always-active unit, a bias's gradient is rounding noise, which Adam's first steps
    turn into steps of size lr, in any two implementations.)"""
    name = request.getfixturevalue(model)
    runs = plan(_study(tmp_path, f"model='{name}'", "epochs=2", "conditions=['frozen_rand', 'fluid_fast']"))
    for run, result in zip(runs, train_image_ensemble(runs)):
        _assert_close(result, train_run(run))


@real_data
def test_mixed_precision_as_train_run(tmp_path) -> None:
    """amp = true: bf16 autocast of the training forward pass, as train_run does (on the CPU
    here); the runs agree to bf16's rounding and record what they used."""
    runs = plan(_study(tmp_path, "amp=true", "trials=1", "epochs=2", "conditions=['frozen_rand', 'fluid_rand']"))
    for run, result in zip(runs, train_image_ensemble(runs)):
        alone = train_run(run)
        assert result.extra["amp"] is alone.extra["amp"] is True
        for a, b in zip(result.epochs, alone.epochs):
            assert abs(a.train_loss - b.train_loss) < 0.05 and abs(a.val_loss - b.val_loss) < 0.05


# -- learners -----------------------------------------------------------------------------------------

def _check_learner_runs(runs, together) -> None:
    """Each run within 1e-5 of train_run per epoch (resets and clips equal), its final weights
    within 1e-4, and a frozen run's final weights on its template."""
    for run, result in zip(runs, together):
        alone = train_run(run, keep_weights=True)
        _assert_close(result, alone)
        for name, w in alone.extra["weights"].items():
            torch.testing.assert_close(result.extra["weights"][name], w, atol=1e-4, rtol=0)
        if run.condition.frozen:
            model, template = prepare_model(run)
            model.load_state_dict(result.extra["weights"])
            assert pn.violations(model, template) == 0, run.condition.name


@real_data
@pytest.mark.parametrize("learner", STACKED_LEARNERS)
def test_every_stacked_learner_matches_train_run(tmp_path, learner) -> None:
    runs = plan(_study(tmp_path, "trials=1", "epochs=2", "conditions=['frozen_rand', 'fluid_rand']",
                       f"learners=['{learner}']", "resets=['posRand']"))
    assert [r.condition.learner for r in runs if r.condition.frozen] == [learner]
    assert all(supports_images(r) for r in runs)
    together = train_image_ensemble(runs, keep_weights=True)
    _check_learner_runs(runs, together)
    resets = sum(e.resets for r, res in zip(runs, together) if r.condition.frozen for e in res.epochs)
    assert (resets == 0) == (LEARNERS.get(learner).stacked.after is None)  # reset or clipped: not vacuous


@real_data
def test_learners_mix_in_one_image_ensemble(tmp_path) -> None:
    """Every stacked learner and a fluid run in one ensemble, at two learning rates each
    (EG's and reparam's members among additive ones)."""
    rates = ", ".join(f"'{name}' = [0.001, 0.003]" for name in STACKED_LEARNERS)
    runs = plan(_study(tmp_path, "trials=1", "epochs=2", "conditions=['frozen_rand', 'fluid_rand']",
                       f"learners={STACKED_LEARNERS}", f"lr_sweep={{{rates}}}", "resets=['posRand']"))
    assert len(runs) == 2 * len(STACKED_LEARNERS) + 1
    _check_learner_runs(runs, train_image_ensemble(runs, keep_weights=True))


@real_data
def test_an_interrupted_ensemble_of_learners_resumes_with_the_same_numbers(tmp_path) -> None:
    """The stack holds reparam members' V and project's clipped moments: a checkpoint keeps them."""
    runs = plan(_study(tmp_path, "trials=1", "epochs=2", "conditions=['frozen_rand']",
                       f"learners={STACKED_LEARNERS}", "resets=['posRand']"))
    straight = train_image_ensemble(runs, keep_weights=True)
    path = tmp_path / "ensemble.pt"

    def stop(work):
        raise _Stop

    with pytest.raises(_Stop):
        train_image_ensemble(runs, on_epoch=stop, checkpoint=path, checkpoint_overhead=math.inf)
    resumed = train_image_ensemble(runs, keep_weights=True, checkpoint=path)
    for a, b in zip(straight, resumed):
        assert _rows(a) == _rows(b)
        assert all(torch.equal(a.extra["weights"][k], b.extra["weights"][k]) for k in a.extra["weights"])


def test_learners_that_swap_or_lack_a_recipe_train_alone(tmp_path) -> None:
    study_file = tmp_path / "spin.toml"
    study_file.write_text(SPIN)
    spin = plan(load_study(study_file, TINY + ["conditions=['fluid_spin_lenet']", "learners=['freeze_sgd', 'eg']"]))
    assert {r.condition.learner: supports_images(r) for r in spin} == {"freeze_sgd": True, "eg": False}
    register_learner(Learner("no_recipe_demo", "w ← step(w)", lambda model, t, opt, options: Keeper(model, t)))
    try:
        runs = plan(_study(tmp_path, "conditions=['frozen_rand']", "learners=['no_recipe_demo']"))
        assert not any(supports_images(r) for r in runs)
    finally:
        LEARNERS.unregister("no_recipe_demo")


# -- dropout ------------------------------------------------------------------------------------------

@real_data
def test_dropout_masks_differ_per_member(tmp_path, dropout_net) -> None:
    """fluid_rand and its fluid twin start from the same weights and see the same batches: without
    dropout they train identically; with dropout their masks, and so their numbers, differ. The
    caller's global generator is left alone."""
    plain = plan(_study(tmp_path, "trials=1", "epochs=1", "conditions=['fluid_rand', 'fluid_twin']"))
    a, b = train_image_ensemble(plain)
    assert _rows(a) == _rows(b)
    runs = plan(_study(tmp_path, f"model='{dropout_net}'", "trials=1", "epochs=1",
                       "conditions=['fluid_rand', 'fluid_twin']"))
    torch.manual_seed(1)
    before = torch.get_rng_state()
    a, b = train_image_ensemble(runs)
    assert torch.equal(torch.get_rng_state(), before)
    assert a.acc_after_align == b.acc_after_align  # the same weights to start with
    assert a.epochs[0].train_loss != b.epochs[0].train_loss
    # and the masks are those of dropout: about half the units of a member are dropped
    program = StackedProgram(get_model(dropout_net))
    model = get_model(dropout_net)
    params = {n: p.detach().expand(4, *p.shape).clone() for n, p in model.named_parameters()}
    out = program(params, {}, Act(torch.randn(1, 2, 1, 28, 28).expand(4, 2, 1, 28, 28), "members"), True)
    assert all(not torch.equal(out[0], out[m]) for m in range(1, 4))


# -- resuming -----------------------------------------------------------------------------------------

class _Stop(Exception):
    pass


@real_data
def test_an_interrupted_ensemble_resumes_with_the_same_numbers(tmp_path, dropout_net) -> None:
    """Stopped after the second epoch of its second ensemble (max_members splits the cell), then
    called again (without max_members: the saved split holds): the per-epoch rows and weights
    of an uninterrupted call, dropout included."""
    runs = plan(_study(tmp_path, f"model='{dropout_net}'", "epochs=3", "conditions=['frozen_rand', 'fluid_rand']"))
    straight = train_image_ensemble(runs, keep_weights=True, max_members=2)
    path = ensemble_checkpoint_file(tmp_path / "checkpoints", runs)
    seen = []

    def stop(work):
        seen.append(work)
        if len(seen) == 5:  # the first ensemble's 3 epochs, then 2 of the second's
            raise _Stop

    with pytest.raises(_Stop):
        train_image_ensemble(runs, keep_weights=True, on_epoch=stop, checkpoint=path, max_members=2,
                             checkpoint_overhead=math.inf)
    saved = torch.load(path, weights_only=True)
    assert (saved["format"], saved["running_index"], saved["running"]["ensemble"]["epoch"]) == (CHECKPOINT_FORMAT, 1, 2)
    assert len(saved["finished"]) == 2
    epochs = []
    resumed = train_image_ensemble(runs, keep_weights=True, on_epoch=epochs.append, checkpoint=path)
    assert len(epochs) == 1  # only the last epoch of the second ensemble was trained
    for a, b in zip(straight, resumed):
        assert a.key == b.key and _rows(a) == _rows(b)
        assert (a.acc_before_align, a.acc_after_align) == (b.acc_before_align, b.acc_after_align)
        for name in a.extra["weights"]:
            assert torch.equal(a.extra["weights"][name], b.extra["weights"][name]), name


@real_data
def test_unusable_checkpoints_are_ignored_with_a_warning(tmp_path) -> None:
    runs = plan(_study(tmp_path, "trials=1", "epochs=2", "conditions=['frozen_rand', 'fluid_rand']"))
    path = tmp_path / "ensemble.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="unusable"):
        results = train_image_ensemble(runs, checkpoint=path)
    assert [r.status for r in results] == ["done", "done"]


@real_data
def test_fluid_spin_swaps_each_members_template_and_resumes(tmp_path) -> None:
    """Fluid SPIN moves a member's own template after every epoch, from its own generator, as
    train_run does; an interrupted call resumes with the moved templates."""
    study_file = tmp_path / "spin.toml"
    study_file.write_text(SPIN)
    runs = plan(load_study(study_file, TINY + ["epochs=3", "conditions=['fluid_spin_lenet', 'frozen_rand']"]))
    straight = train_image_ensemble(runs, keep_weights=True)
    for run, result in zip(runs, straight):
        _assert_close(result, train_run(run))
    path = tmp_path / "ensemble.pt"
    seen = []

    def stop(work):
        seen.append(work)
        if len(seen) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        train_image_ensemble(runs, on_epoch=stop, checkpoint=path, checkpoint_overhead=math.inf)
    resumed = train_image_ensemble(runs, keep_weights=True, checkpoint=path)
    for a, b in zip(straight, resumed):
        assert _rows(a) == _rows(b)
        assert all(torch.equal(a.extra["weights"][k], b.extra["weights"][k]) for k in a.extra["weights"])


# -- what the ensemble takes --------------------------------------------------------------------------

def test_eligibility_and_cells(tmp_path) -> None:
    runs = plan(_study(tmp_path, "sizes=[50, 100]", "conditions=['frozen_rand', 'fluid_rand']"))
    assert all(supports_images(r) for r in runs)
    assert len({image_cell(r) for r in runs}) == 2  # one per size: trials and conditions mix
    assert not supports_images(plan(load_study("xor5d", ["trials=1"]))[0])  # XOR: ensemble.py's
    register_reset("test_half_eps")(lambda values, signs, eps, uniform: signs * (eps / 2))
    try:  # a reset rule of one's own runs on the sparse path: one run at a time
        own = plan(_study(tmp_path, "resets=['posCon', 'test_half_eps']", "conditions=['frozen_rand', 'fluid_rand']"))
        assert [supports_images(r) for r in own if r.trial == 0] == [True, False, True]
    finally:
        RESETS.unregister("test_half_eps")
    with pytest.raises(ValueError, match="one study at one training-set size"):
        train_image_ensemble(runs)
    register_reset("test_half_eps")(lambda values, signs, eps, uniform: signs * (eps / 2))
    try:
        with pytest.raises(ValueError, match="train it with train_run"):
            train_image_ensemble(plan(_study(tmp_path, "resets=['test_half_eps']", "conditions=['frozen_rand']")))
    finally:
        RESETS.unregister("test_half_eps")
    assert train_image_ensemble([]) == []


def test_ensemble_size_follows_free_memory(tmp_path) -> None:
    run = plan(_study(tmp_path, "conditions=['fluid_rand']"))[0]
    sizes = [ensemble_size(run, "cpu", free=free) for free in (1 << 22, 1 << 26, 1 << 30, 1 << 40)]
    assert sizes == sorted(sizes) and sizes[0] >= 1 and sizes[-1] <= 120
    assert ensemble_size(run, "cpu") >= 1


def test_checkpoint_files_are_named_by_their_runs(tmp_path) -> None:
    runs = plan(_study(tmp_path, "conditions=['frozen_rand', 'fluid_rand']"))
    path = ensemble_checkpoint_file(tmp_path, runs)
    assert path == ensemble_checkpoint_file(tmp_path, runs[::-1]) != ensemble_checkpoint_file(tmp_path, runs[1:])
    assert path.parent == tmp_path and path.suffix == ".pt"
