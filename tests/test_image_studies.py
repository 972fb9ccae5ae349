"""Image studies through the engine: on real Fashion-MNIST (Debian's package) and on files the
tests write."""

from __future__ import annotations


import pytest
import torch

from helpers import real_data

import polarnet as pn
from polarnet.experiments import Store, load_study, plan, run_study
from polarnet.experiments.datasets import ImagePrep
from polarnet.experiments.trainer import prepare_model, run_data, train_run


SMALL_CNN = ["dataset='fashion_mnist'", "model='lenet'", "in_channels=1", "init_linear='glorot_uniform'",
             "init_bias='zeros'", "conditions=['frozen_rand']", "sizes=[1000]", "trials=1", "epochs=4",
             "batch_size=50", "lr=0.001", "val_size=2000", "thresholds=[0.6]"]


@real_data
def test_frozen_net_learns_real_fashion_mnist_and_keeps_its_signs() -> None:
    run = plan(load_study("xor5d", SMALL_CNN))[0]
    result = train_run(run, keep_weights=True)
    assert result.status == "done"
    assert result.epochs[-1].val_acc >= 0.6, [e.val_acc for e in result.epochs]  # chance is 0.1
    model, template = prepare_model(run)
    model.load_state_dict(result.extra["weights"])
    assert pn.violations(model, template) == 0
    assert sum(e.resets for e in result.epochs) > 0  # Freeze-SGD really had work to do


@real_data
def test_image_study_through_the_store_with_class_subsets(tmp_path) -> None:
    study = load_study("xor5d", SMALL_CNN + ["classes=[5, 6, 7, 8, 9]", "sizes=[100, 200]", "epochs=2",
                                             "conditions=['frozen_rand', 'fluid_rand']", "val_size=500"])
    summary = run_study(study, tmp_path, workers=1, progress=False)
    assert summary.trained == 4 and summary.failed == 0
    with Store(tmp_path) as store:
        epochs = store.epochs()
    assert set(epochs["n_train"]) == {100, 200} and len(epochs) == 4 * 2
    data = run_data(plan(study)[0])
    assert sorted(data.y.unique().tolist()) == [0, 1, 2, 3, 4]  # classes 5-9, relabelled
    assert data.y[:100].bincount().tolist() == [20] * 5  # stratified prefix
    assert data.model_kwargs == {"num_classes": 5, "in_channels": 1}


def test_image_prep_normalises_repeats_and_resizes() -> None:
    prep = ImagePrep((0.5,), (0.25,), channels=3, size=8)
    images = torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)
    x = prep(images)
    assert x.shape == (2, 3, 8, 8) and torch.allclose(x, torch.full_like(x, 2.0))  # (1 - 0.5) / 0.25
    with pytest.raises(ValueError, match="3-channel"):
        ImagePrep((0.5,) * 3, (0.25,) * 3, channels=1, size=0)(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


@real_data
def test_offline_transfer_study_pretrain_then_split(tmp_path, capsys, monkeypatch) -> None:
    from polarnet.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", "fmnist-split-transfer", "--quick", "--no-progress", "--out", "s"]) == 2
    assert "polarnet pretrain --dataset fashion_mnist --classes 0,1,2,3,4" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    assert main(["pretrain", "--dataset", "fashion_mnist", "--classes", "0,1,2,3,4", "--n-train", "1000",
                 "--epochs", "2", "-o", "fmnist-classes-0-4.pt"]) == 0
    assert "validation accuracy" in capsys.readouterr().out
    assert main(["run", "fmnist-split-transfer", "--quick", "--no-progress", "--out", "s", "--set", "trials=1",
                 "--set", "epochs=2", "--set", "sizes=[100]", "--set", "val_size=500"]) == 0
    with Store(tmp_path / "s") as store:
        facts, runs = store.study(), store.runs()
    assert set(runs["status"]) == {"done"} and len(runs) == 6
    assert [m[0] for m in facts["transfer_report"]["matched"]] == [
        "features.0.weight", "features.3.weight", "classifier.0.weight", "classifier.2.weight", "classifier.4.weight"]
    # IN-Weight conditions start from the source's weights: better than chance before any training
    by_condition = runs.set_index("condition")
    assert by_condition.loc["fluid_in_weight", "acc_after_align"] != by_condition.loc["fluid_rand", "acc_after_align"]


@real_data
def test_spin_conditions_keep_the_source_proportions(tmp_path) -> None:
    source = tmp_path / "src.pt"
    from polarnet.experiments.pretrain import pretrain

    pretrain("fashion_mnist", source, n_train=300, epochs=1)
    study = load_study("xor5d", SMALL_CNN + [f"source='{source}'", "conditions=['freeze_spin', 'fluid_spin']",
                                             "sizes=[200]", "epochs=2", "val_size=300"])
    expected = pn.PolarityTemplate.from_model(torch.load(source), layers="conv").proportions()
    for run in plan(study):
        model, template = prepare_model(run)
        assert list(template) == ["features.0.weight", "features.3.weight"]  # conv only (Igoe)
        for name, p in template.proportions().items():
            assert p == pytest.approx(expected[name], abs=1 / template[name].numel())
        result = train_run(run, keep_weights=True)
        weights = result.extra["weights"]
        for name, (p0, pn_, pp) in expected.items():
            w = weights[name]
            assert (w < 0).float().mean().item() == pytest.approx(pn_, abs=0.02), (run.condition.name, name)
        if run.condition.name == "fluid_spin":  # the pattern moved, the proportions did not
            assert sum(sum(e.sign_changes.values()) for e in result.epochs) > 0


def test_missing_image_data_is_one_clear_error_before_any_run(tmp_path, capsys, monkeypatch) -> None:
    from polarnet.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["run", "spin-table1", "--quick", "--out", str(out), "--no-progress",
                 "--data-root", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "cifar10: data not found" in err and str(tmp_path / "nothing") in err and "--download" in err
    assert not out.exists()


def test_spin_table1_preset_defines_the_papers_settings() -> None:
    study = load_study("spin-table1")
    assert study.model == "zfnet" and study.dataset == "cifar10" and study.epochs == 20
    assert study.condition("exp3_p0_0.1").proportions == (0.1, 0.45, 0.45)
    assert study.condition("exp1_all_positive").proportions == (0.0, 0.0, 1.0)
    table = pn.load_proportions(study.condition("table1_in").proportions)
    assert table["features.4.weight"] == (0.5, 0.27, 0.23) and len(table) == 5
    assert all(study.condition(c).layers == "conv" and study.condition(c).frozen for c in study.conditions)


@real_data
def test_pretrained_source_onto_other_channels_and_head_and_template_file_source(tmp_path) -> None:
    """The issue's transfer test: a source pretrained here (1 channel, 5 classes) onto a model with
    3 input channels and 10 classes; and a template file as a study's source."""
    from polarnet.experiments.pretrain import pretrain

    source = tmp_path / "src.pt"
    pretrain("fashion_mnist", source, classes=(0, 1, 2, 3, 4), n_train=300, epochs=1)
    state = torch.load(source)
    from polarnet.models import get_model

    target = get_model("lenet", num_classes=10, in_channels=3)
    template, report = pn.transfer(state, target)
    assert report.adapted == [("features.0.weight", "features.0.weight",
                               "input channels 1 → 3: the one channel repeated")]
    assert report.unmatched == ["classifier.4.weight"]  # head 5 → 10 classes: left free
    assert [m[0] for m in report.matched] == ["features.3.weight", "classifier.0.weight", "classifier.2.weight"]
    assert torch.equal(template["features.0.weight"][:, 1], torch.sign(state["features.0.weight"][:, 0]).to(torch.int8))

    plt = pn.PolarityTemplate.from_model(state).save(tmp_path / "src.plt")
    study = load_study("xor5d", SMALL_CNN + [f"source='{plt}'", "conditions=['frozen_in_polarity']", "sizes=[100]",
                                             "epochs=1", "val_size=200"])
    run = plan(study)[0]
    model, t = prepare_model(run)
    assert torch.equal(t["features.3.weight"], torch.sign(state["features.3.weight"]).to(torch.int8))
    assert train_run(run).status == "done"
    bad = SMALL_CNN + [f"source='{plt}'", "conditions=['fluid_in_weight']", "sizes=[100]", "epochs=1", "val_size=200"]
    with pytest.raises(ValueError, match="template file"):  # refused with the settings, before any run
        load_study("xor5d", bad)
    with pytest.raises(ValueError, match="template file"):  # and by the library itself
        prepare_model(plan(load_study("xor5d", bad, validate=False))[0])


@real_data
@pytest.mark.parametrize("options", [["channels_last=true"], ["amp=true"]])
def test_channels_last_and_mixed_precision_keep_the_template(options) -> None:
    run = plan(load_study("xor5d", SMALL_CNN + ["sizes=[200]", "epochs=1", "val_size=300"] + options))[0]
    result = train_run(run, keep_weights=True)
    assert result.status == "done" and result.epochs[-1].val_acc > 0.2
    model, template = prepare_model(run)
    model.load_state_dict(result.extra["weights"])
    assert pn.violations(model, template) == 0


# Mixed precision and channels-last against float32 (issue 9 §2; docs/images.md states the tolerance):
# per-epoch validation accuracy of one run within 3 points, its final validation loss within 5%.
AMP_ACCURACY, AMP_LOSS = 0.03, 0.05
_AMP_STUDY = ["dataset='fashion_mnist'", "model='lenet'", "in_channels=1", "init_linear='glorot_uniform'",
              "init_bias='zeros'", "sizes=[500]", "trials=1", "epochs=4", "batch_size=50", "lr=0.001",
              "val_size=500", "conditions=['frozen_rand', 'fluid_rand']"]


def _fast_against_fp32(device: str, fast: list[str]) -> None:
    for slow_run, fast_run in zip(plan(load_study("xor5d", _AMP_STUDY + ["amp=false", "channels_last=false"])),
                                  plan(load_study("xor5d", _AMP_STUDY + fast))):
        slow, quick = train_run(slow_run, device), train_run(fast_run, device)
        assert quick.extra["amp"] and quick.extra["channels_last"] and not slow.extra["amp"]
        for a, b in zip(slow.epochs, quick.epochs):
            assert abs(a.val_acc - b.val_acc) <= AMP_ACCURACY, (slow_run.condition.name, a.epoch)
        assert abs(quick.epochs[-1].val_loss / slow.epochs[-1].val_loss - 1) <= AMP_LOSS


@real_data
def test_bf16_autocast_and_channels_last_stay_within_the_documented_tolerance_on_the_cpu() -> None:
    _fast_against_fp32("cpu", ["amp=true", "channels_last=true"])


@real_data
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_defaults_bf16_channels_last_and_cudnn_benchmark_within_the_documented_tolerance() -> None:
    assert load_study("xor5d", _AMP_STUDY).fast_paths("cuda") == (True, True)
    _fast_against_fp32("cuda", [])  # "auto": the CUDA defaults
    assert not torch.backends.cudnn.benchmark  # restored after the runs


def test_auto_keeps_the_cpu_in_float32_and_xor_off_everywhere() -> None:
    image = load_study("xor5d", _AMP_STUDY, validate=False)
    assert image.amp == image.channels_last == "auto"
    assert image.fast_paths("cpu") == (False, False) and image.fast_paths("cuda:1") == (True, True)
    assert load_study("xor5d").fast_paths("cuda") == (False, False)
    with pytest.raises(ValueError, match="amp='fast': true, false or 'auto'"):
        load_study("xor5d", _AMP_STUDY + ["amp='fast'"])


# --------------------------------------------------------------------------- head = "extend" (issue 9 §3): which layer gets which template

IMAGENET_LAYERS = ["features.0.weight", "features.3.weight", "features.6.weight", "features.8.weight",
                   "features.10.weight", "classifier.1.weight", "classifier.4.weight", "classifier.6.weight"]
NEW_LAYER = "classifier.8.weight"


@pytest.fixture
def imagenet(monkeypatch):
    """torchvision's AlexNet with AlexNet_Weights' names and shapes (random values: no download),
    served as the study's source ``AlexNet_Weights.IMAGENET1K_V1``."""
    import torchvision

    from polarnet.experiments import conditions

    state = torchvision.models.alexnet(num_classes=1000).state_dict()
    monkeypatch.setattr(conditions, "source_state", lambda source: state)
    return state


def _wang(*overrides: str):
    return load_study("fmnist-alexnet", ["trials=1", "sizes=[100]", *overrides], quick=True)


def _prepared(study, name: str):
    """What prepare_model does, without the data: build with the study's arguments, magnitudes, template."""
    from polarnet.experiments.conditions import MAGNITUDES, POLARITIES
    from polarnet.experiments.datasets import model_kwargs
    from polarnet.models import get_model

    condition = study.condition(name)
    model = get_model(study.model, **model_kwargs(study))
    MAGNITUDES.get(condition.magnitudes)(condition, model, study, 1)
    return model, POLARITIES.get(condition.polarity)(condition, model, study, 2)


def _signs(t: torch.Tensor) -> torch.Tensor:
    return torch.sign(t).to(torch.int8)


@pytest.mark.parametrize("name", ["frozen_in_polarity", "fluid_in_polarity", "frozen_in_weight"])
def test_head_extend_transfers_imagenets_fc8_signs_to_classifier_6(imagenet, name) -> None:
    study = _wang()
    assert study.head == "extend"
    model, template = _prepared(study, name)
    assert model.classifier[8].out_features == 10
    for layer in IMAGENET_LAYERS:  # all eight ImageNet layers, fc8 (classifier.6, 1000 × 4096) included
        assert torch.equal(template[layer], _signs(imagenet[layer])), layer
    assert template["classifier.6.weight"].shape == (1000, 4096)
    if name == "frozen_in_weight":  # and its weights: the source's, fc8's bias too
        assert torch.equal(model.classifier[6].weight, imagenet["classifier.6.weight"])
        assert torch.equal(model.classifier[6].bias, imagenet["classifier.6.bias"])


def test_head_replace_leaves_fc8_unused(imagenet) -> None:
    """Today's replacement: the 10-way classifier.6 can't take ImageNet's 1000-way fc8."""
    _, template = _prepared(_wang("head='replace'"), "frozen_in_polarity")
    assert list(template) == IMAGENET_LAYERS[:-1]


def test_head_extend_frozen_rand_freezes_every_layer_to_its_own_init_signs(imagenet) -> None:
    model, template = _prepared(_wang(), "frozen_rand")
    assert list(template) == IMAGENET_LAYERS + [NEW_LAYER]
    for layer in template:
        assert torch.equal(template[layer], _signs(model.get_parameter(layer))), layer


def test_head_extend_fine_tuning_copies_fc8_and_draws_the_new_layer_fresh(imagenet) -> None:
    tuned, template = _prepared(_wang(), "fluid_in_weight")
    fresh, _ = _prepared(_wang(), "fluid_rand")  # same init seed: the trial's shared magnitude draw
    assert template is None
    for layer in IMAGENET_LAYERS:
        assert torch.equal(tuned.get_parameter(layer), imagenet[layer]), layer
    assert torch.equal(tuned.get_parameter(NEW_LAYER), fresh.get_parameter(NEW_LAYER))
    assert not torch.equal(tuned.get_parameter(NEW_LAYER), torch.zeros_like(tuned.get_parameter(NEW_LAYER)))


@pytest.mark.parametrize("name", ["frozen_in_polarity", "frozen_in_weight"])
def test_head_extend_frozen_in_conditions_freeze_the_new_layer_to_its_own_init_signs(imagenet, name) -> None:
    """As the reference code: every layer of a Frozen net is constrained, the new one to its
    own initial signs (``unmatched = "auto"`` is ``"own"`` with ``head = "extend"``)."""
    model, template = _prepared(_wang(), name)
    assert list(template) == IMAGENET_LAYERS + [NEW_LAYER]
    assert torch.equal(template[NEW_LAYER], _signs(model.get_parameter(NEW_LAYER)))


def test_head_extend_fluid_in_polarity_leaves_the_new_layer_out_of_its_template(imagenet) -> None:
    """A fluid net only starts aligned: its own signs need no aligning, so its template is as before."""
    _, template = _prepared(_wang(), "fluid_in_polarity")
    assert list(template) == IMAGENET_LAYERS


def _defined(study, table: str):
    return load_study("fmnist-alexnet", ["trials=1", "sizes=[100]", f"head='{study}'",
                                         f"define_condition={{mine={{{table}}}}}", "conditions=['mine']"], quick=True)


def test_unmatched_free_keeps_the_new_layer_free_and_own_freezes_a_replaced_head(imagenet) -> None:
    """``unmatched`` set on a condition of one's own: polarnet's earlier behaviour with the
    extended head, or the reference's treatment of a new layer applied to the replaced one."""
    _, template = _prepared(_defined("extend", "polarity='source', frozen=true, unmatched='free'"), "mine")
    assert list(template) == IMAGENET_LAYERS
    model, template = _prepared(_defined("replace", "polarity='source', frozen=true, unmatched='own'"), "mine")
    assert list(template) == IMAGENET_LAYERS  # classifier.6 now the 10-way head, with its own signs
    assert torch.equal(template["classifier.6.weight"], _signs(model.classifier[6].weight))
    assert template["classifier.6.weight"].shape == (10, 4096)


def test_head_extend_with_a_source_whose_fc8_is_not_1000_way_names_head_replace(monkeypatch) -> None:
    from polarnet.experiments import conditions
    from polarnet.models import get_model

    ten_way = get_model("alexnet", num_classes=10).state_dict()  # e.g. pretrained by polarnet, head replaced
    monkeypatch.setattr(conditions, "source_state", lambda source: ten_way)
    with pytest.raises(ValueError) as e:
        _prepared(_wang(), "frozen_in_polarity")
    assert str(e.value) == (
        "layer 'classifier.6.weight': source 'classifier.6.weight' has shape (10, 4096) ≠ target shape (1000, 4096); "
        "only a change of input channels to or from 1, or of the last layer (head), can be adapted. With head = "
        "'extend' the model keeps a 1000-way layer for ImageNet's fc8 (classifier.6), which fits only a source with a "
        "1000-way fc8 such as AlexNet_Weights.IMAGENET1K_V1; for a source with another head (e.g. one pretrained by "
        "polarnet), set head = 'replace' (--set head=replace)")
    _, template = _prepared(_wang("head='replace'"), "frozen_in_polarity")  # the fix named
    assert list(template) == IMAGENET_LAYERS


@real_data
def test_the_wang_preset_builds_the_extended_alexnet_and_studies_share_their_data(imagenet) -> None:
    extend, replace = plan(_wang())[0], plan(_wang("head='replace'"))[0]
    model, template = prepare_model(extend)
    assert model.classifier[6].out_features == 1000 and model.classifier[8].out_features == 10
    assert extend.condition.name == "frozen_in_polarity" and list(template) == IMAGENET_LAYERS + [NEW_LAYER]
    # the data cache is shared (same tensors), the model's arguments are each study's own
    a, b = run_data(extend), run_data(replace)
    assert a.x is b.x
    assert a.model_kwargs == {"num_classes": 10, "in_channels": 3, "head": "extend"}
    assert b.model_kwargs == {"num_classes": 10, "in_channels": 3}
    assert prepare_model(replace)[0].classifier[6].out_features == 10
