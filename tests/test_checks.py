"""Tests for polarnet.experiments.checks: what needs the model, checked once before any run."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from polarnet.experiments.checks import check_study
from polarnet.experiments.config import list_presets, load_study
from polarnet.models import MODELS, register_model
from polarnet.proportions import save_proportions

SMALL = ["trials=1", "epochs=1", "sizes=[8]"]
LENET = ["dataset='fashion_mnist'", "model='lenet'", "in_channels=1", "sizes=[100]", "val_size=500", "trials=1",
         "epochs=1"]  # with the default (XOR) conditions refused: each test names its own


def _condition(**settings) -> list[str]:
    table = ", ".join(f"{k}={json.dumps(v)}" for k, v in settings.items())
    return [f"define_condition={{x={{{table}}}}}", "conditions=['x']"]


def _problems(study) -> str:
    with pytest.raises(ValueError) as e:
        check_study(study)
    message = str(e.value)
    assert message.startswith("study checks failed:\n  ")
    return message


@pytest.mark.parametrize("name", sorted(list_presets()))
def test_every_preset_passes(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fmnist-classes-0-4.pt").write_bytes(b"")  # made by pretrain; its content is the preflight's job
    assert check_study(load_study(name)) is None


def test_a_layers_glob_that_selects_nothing():
    study = load_study("xor5d", SMALL + _condition(polarity="random", frozen=True, layers="nope"))
    message = _problems(study)
    assert "condition 'x': layers='nope' selects no parameter; available names start with: 0.weight" in message
    assert len(message.splitlines()) == 2  # one problem, though the model is built per hidden size


@pytest.mark.parametrize("polarity", ["random", "source_proportions"])
def test_layers_are_checked_for_every_polarity_that_uses_them(polarity, tmp_path):
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "w.pt")
    source = [f"source='{tmp_path / 'w.pt'}'"] if polarity == "source_proportions" else []
    study = load_study("xor5d", SMALL + source + _condition(polarity=polarity, frozen=True, layers="features.*"))
    assert "layers='features.*' selects no parameter" in _problems(study)


def test_layers_of_a_condition_without_a_template_are_refused_before_the_model():
    with pytest.raises(ValueError, match="layers = 'nope' has no effect: polarity 'none' gives no template"):
        load_study("xor5d", SMALL + _condition(polarity="none", layers="nope"))


def test_layers_are_checked_against_an_image_model():
    assert "layers='classifier.9.*' selects no parameter" in _problems(
        load_study("xor5d", LENET + _condition(polarity="random", frozen=True, layers="classifier.9.*")))
    check_study(load_study("xor5d", LENET + _condition(polarity="random", frozen=True, layers="features.*.weight")))


def _proportions_study(path, extra=()):
    return load_study("xor5d", LENET + [f"proportions='{path}'", "conditions=['freeze_spin_file']", *extra])


def test_a_proportions_file_that_sums_to_1_5(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"format": "polarnet-proportions", "version": 1,
                                "layers": {"features.0.weight": {"p0": 0.5, "p_neg": 0.5, "p_pos": 0.5}}}))
    assert "must sum to 1" in _problems(_proportions_study(path))


def test_a_binary_proportions_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_bytes(bytes(range(256)) * 4)
    message = _problems(_proportions_study(path))
    assert str(path) in message


def test_a_proportions_file_naming_layers_the_model_lacks(tmp_path):
    path = save_proportions({"features.0.weight": (0.0, 0.5, 0.5), "conv9.weight": (0.0, 0.5, 0.5)}, tmp_path / "p.json")
    message = _problems(_proportions_study(path))
    assert "proportions file" in message and "names layers model 'lenet' does not have: ['conv9.weight']" in message


def test_a_condition_proportions_file_is_checked_too(tmp_path):
    path = save_proportions({"conv9.weight": (0.0, 0.5, 0.5)}, tmp_path / "p.json")
    study = load_study("xor5d", LENET + _condition(polarity="proportions", frozen=True, proportions=str(path)))
    assert "condition 'x': proportions file" in _problems(study)


def test_a_good_proportions_file_passes(tmp_path):
    path = save_proportions({"features.0.weight": (0.1, 0.45, 0.45), "features.3.weight": (0.0, 0.5, 0.5)},
                            tmp_path / "p.json")
    check_study(_proportions_study(path))


def test_every_problem_in_one_error(tmp_path):
    path = save_proportions({"conv9.weight": (0.0, 0.5, 0.5)}, tmp_path / "p.json")
    study = load_study("xor5d", LENET + [
        f"proportions='{path}'",
        'define_condition={x={polarity="random", frozen=true, layers="nope"}, y={polarity="random", layers="no*"}}',
        "conditions=['x', 'y', 'freeze_spin_file']"])
    message = _problems(study)
    assert len(message.splitlines()) == 4
    for fragment in ("condition 'x': layers='nope'", "condition 'y': layers='no*'", "conv9.weight"):
        assert fragment in message


@pytest.fixture
def temporary_models():
    names = []

    def add(name, factory):
        register_model(name)(factory)
        names.append(name)

    yield add
    for name in names:
        MODELS.unregister(name)


def test_a_rule_that_does_not_fit_the_model(temporary_models):
    temporary_models("one_linear_checks_demo", lambda in_features=5, hidden=4: nn.Sequential(nn.Linear(in_features, 1)))
    study = load_study("xor5d", SMALL + ["model='one_linear_checks_demo'", "conditions=['frozen_sufficient']"])
    message = _problems(study)
    assert ("condition 'frozen_sufficient': rule 'xor_sufficient' needs a model with 2 nn.Linear layers; model "
            "'one_linear_checks_demo' has 1") in message


def test_xor_sufficient_refuses_a_deeper_mlp_but_takes_any_d_h_1_mlp(temporary_models):
    """The rule reads the first two Linear layers as hidden and output: in a deeper net it would
    constrain a hidden layer as if it were the output. A user's own d → H → 1 MLP is fine."""
    temporary_models("deep_mlp_checks_demo", lambda in_features=5, hidden=4: nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)))
    message = _problems(load_study("xor5d", SMALL + ["model='deep_mlp_checks_demo'", "conditions=['frozen_sufficient']"]))
    assert "needs a model with 2 nn.Linear layers; model 'deep_mlp_checks_demo' has 3" in message
    check_study(load_study("xor5d", SMALL + ["model='polarnet.models:mlp'"]))


def test_a_rule_that_raises_for_the_model_is_reported(temporary_models):
    from polarnet.builders import RULES, register_rule

    @register_rule("needs_conv_checks_demo")
    def needs_conv(model):
        raise ValueError("no convolution here")

    try:
        message = _problems(load_study("xor5d", SMALL + _condition(polarity="rule", rule="needs_conv_checks_demo",
                                                                   frozen=True)))
    finally:
        RULES.unregister("needs_conv_checks_demo")
    assert "condition 'x': rule 'needs_conv_checks_demo' does not apply to model 'mlp': no convolution here" in message


def test_xor_sufficient_on_an_image_dataset_is_refused_by_validation():
    with pytest.raises(ValueError) as e:
        load_study("xor5d", LENET + ["conditions=['frozen_sufficient', 'frozen_rand']"])
    assert ("condition 'frozen_sufficient': rule 'xor_sufficient' needs dataset = 'xor' (here: dataset = "
            "'fashion_mnist')") in str(e.value)
    with pytest.raises(ValueError, match="the default conditions are XOR's"):
        load_study("xor5d", LENET[:3])


def test_a_proportions_file_must_lie_within_the_conditions_layers(tmp_path):
    path = save_proportions({"features.0.weight": (0.0, 0.5, 0.5), "classifier.0.weight": (0.5, 0.25, 0.25)},
                            tmp_path / "p.json")
    table = dict(polarity="proportions", frozen=True, proportions=str(path))
    check_study(load_study("xor5d", LENET + _condition(**table)))  # layers = "all": the file's layers
    message = _problems(load_study("xor5d", LENET + _condition(**table, layers="conv")))
    assert "names layers that layers='conv' does not select: ['classifier.0.weight']" in message
    conv_only = save_proportions({"features.0.weight": (0.0, 0.5, 0.5)}, tmp_path / "conv.json")
    check_study(load_study("xor5d", LENET + _condition(**{**table, "proportions": str(conv_only)}, layers="conv")))


def test_a_model_that_does_not_take_the_studys_arguments():
    study = load_study("xor5d", SMALL + ["model='torch.nn:Linear'", "conditions=['fluid_rand']"])
    message = _problems(study)
    assert "model='torch.nn:Linear': cannot build it with in_features=5, hidden=64 (TypeError:" in message


def test_a_model_that_cannot_be_built_on_meta_is_built_on_the_cpu(temporary_models):
    def needs_values(in_features=5, hidden=4):
        model = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        float(model[0].weight.detach().sum())  # fails on the meta device
        return model

    temporary_models("needs_values_checks_demo", needs_values)
    check_study(load_study("xor5d", SMALL + ["model='needs_values_checks_demo'"]))
    study = load_study("xor5d", SMALL + ["model='needs_values_checks_demo'"]
                       + _condition(polarity="random", frozen=True, layers="nope"))
    assert "layers='nope'" in _problems(study)


def test_check_study_validates_first():
    from polarnet.experiments.config import Study

    with pytest.raises(ValueError, match="invalid study settings"):
        check_study(Study(trials=0))


def test_check_study_reads_no_data_and_no_source(monkeypatch, tmp_path):
    import polarnet.experiments.conditions as conditions
    import polarnet.experiments.datasets as datasets

    def forbidden(*args, **kwargs):
        raise AssertionError("check_study must not read data or source weights")

    monkeypatch.setattr(datasets, "load_images", forbidden)
    monkeypatch.setattr(datasets, "load_data", forbidden)
    monkeypatch.setattr(conditions, "load_state_dict", forbidden)
    (tmp_path / "w.pt").write_bytes(b"not read")
    check_study(load_study("xor5d", LENET + [f"source='{tmp_path / 'w.pt'}'",
                                             "conditions=['frozen_in_polarity', 'freeze_spin', 'fluid_in']"]))


@pytest.mark.parametrize(("factory", "said"), [(lambda **kw: "x", "returned str, not an nn.Module"),
                                               (lambda **kw: None, "returned NoneType, not an nn.Module")])
def test_a_factory_that_returns_no_module_is_the_one_problem(factory, said, temporary_models):
    """``None`` passed the checks (and failed every run); a string raised an AttributeError."""
    temporary_models("no_module_checks_demo", factory)
    message = _problems(load_study("xor5d", SMALL + ["model='no_module_checks_demo'", "hidden=[4, 8]"]))
    assert message == f"study checks failed:\n  model 'no_module_checks_demo' {said}; make the function return the model it builds"
