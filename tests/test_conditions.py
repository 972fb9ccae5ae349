"""Tests for polarnet.experiments.conditions: registered conditions and the polarity/magnitude builders."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import polarnet
from polarnet.experiments.conditions import (
    CONDITIONS,
    MAGNITUDES,
    POLARITIES,
    Condition,
    condition_from_dict,
    get_condition,
    register_condition,
)
from polarnet.experiments.config import load_study
from polarnet.init import init_magnitudes
from polarnet.models import mlp

HIDDEN = 8


@pytest.fixture
def study():
    return load_study("xor5d", ["trials=1", "epochs=2", "sizes=[8]", f"hidden=[{HIDDEN}]"])


def _model(seed: int = 0, hidden: int = HIDDEN) -> torch.nn.Module:
    torch.manual_seed(seed)
    return mlp(5, hidden)


def _signs(t: torch.Tensor) -> torch.Tensor:
    return torch.sign(t.detach()).to(torch.int8)


def _source_file(tmp_path, seed: int = 123, hidden: int = HIDDEN):
    source = _model(seed, hidden)
    path = tmp_path / "source.pt"
    torch.save(source.state_dict(), path)
    return source, path


# --------------------------------------------------------------------------- registered conditions


def test_registered_conditions():
    assert {"frozen_sufficient", "fluid_sufficient", "frozen_rand", "fluid_rand"} <= set(CONDITIONS.names())
    fs = get_condition("frozen_sufficient")
    assert (fs.polarity, fs.frozen, fs.rule, fs.magnitudes, fs.layers, fs.reset, fs.lr) == \
        ("rule", True, "xor_sufficient", "fresh", "all", None, None)
    fl = get_condition("fluid_sufficient")
    assert (fl.polarity, fl.frozen, fl.rule, fl.magnitudes) == ("rule", False, "xor_sufficient", "fresh")
    fr = get_condition("frozen_rand")
    assert (fr.polarity, fr.frozen, fr.rule, fr.magnitudes, fr.reset) == ("random", True, None, "fresh", None)
    fluid = get_condition("fluid_rand")
    assert (fluid.polarity, fluid.frozen, fluid.rule, fluid.magnitudes) == ("none", False, None, "fresh")
    for name in ("frozen_sufficient", "fluid_sufficient", "frozen_rand", "fluid_rand"):
        assert get_condition(name).name == name
        assert get_condition(name).description


def test_unknown_condition_lists_known_ones():
    with pytest.raises(ValueError, match="unknown condition 'nope'.*frozen_rand"):
        get_condition("nope")


def test_condition_defaults_and_to_dict():
    c = Condition("c")
    assert c.to_dict() == {"name": "c", "polarity": "none", "frozen": False, "magnitudes": "fresh", "rule": None,
                           "layers": "all", "reset": None, "lr": None, "proportions": None, "swap": 0.0,
                           "swap_mode": "pattern", "description": ""}


def test_register_condition_and_duplicates():
    c = register_condition(Condition("test_conditions_tmp", "random", True, reset="zero"))
    try:
        assert get_condition("test_conditions_tmp") is c
        with pytest.raises(ValueError, match="already registered"):
            register_condition(Condition("test_conditions_tmp"))
    finally:
        CONDITIONS.unregister("test_conditions_tmp")
    assert "test_conditions_tmp" not in CONDITIONS


def test_condition_from_dict():
    c = condition_from_dict("mine", {"polarity": "rule", "rule": "xor_sufficient", "frozen": True, "lr": 0.1})
    assert c == Condition("mine", polarity="rule", frozen=True, rule="xor_sufficient", lr=0.1)
    assert condition_from_dict("empty", {}) == Condition("empty")


@pytest.mark.parametrize("table, unknown", [({"colour": 1}, ["colour"]), ({"name": "x"}, ["name"]),
                                            ({"polarity": "random", "b": 1, "a": 2}, ["a", "b"])])
def test_condition_from_dict_names_unknown_keys(table, unknown):
    with pytest.raises(ValueError) as e:
        condition_from_dict("mine", table)
    message = str(e.value)
    assert f"unknown key(s) {unknown}" in message
    assert ("allowed: ['description', 'frozen', 'layers', 'lr', 'magnitudes', 'polarity', 'proportions', 'reset', "
            "'rule', 'swap', 'swap_mode']") in message


def test_registries_hold_the_documented_kinds():
    assert {"none", "proportions", "random", "rule", "source"} <= set(POLARITIES.names())
    assert {"fresh", "source"} <= set(MAGNITUDES.names())


# --------------------------------------------------------------------------- polarity builders


def test_polarity_none_gives_no_template(study):
    assert POLARITIES.get("none")(get_condition("fluid_rand"), _model(), study, 0) is None


def test_polarity_random_is_the_models_own_signs(study):
    model = _model(1)
    template = POLARITIES.get("random")(get_condition("frozen_rand"), model, study, 99)
    assert list(template) == ["0.weight", "2.weight"]  # weights only, no biases
    assert torch.equal(template["0.weight"], _signs(model[0].weight))
    assert torch.equal(template["2.weight"], _signs(model[2].weight))
    # the seed plays no part: the signs are the init's
    assert POLARITIES.get("random")(get_condition("frozen_rand"), model, study, 5) == template


def test_polarity_random_honours_layers(study):
    model = _model(1)
    cond = Condition("only_output", "random", True, layers="2.weight")
    template = POLARITIES.get("random")(cond, model, study, 0)
    assert list(template) == ["2.weight"]


def test_polarity_rule_is_xor_sufficient(study):
    model = _model(2)
    template = POLARITIES.get("rule")(get_condition("frozen_sufficient"), model, study, 0)
    w = model[0].weight.detach()
    assert torch.equal(template["0.weight"], _signs(w))
    expected = (_signs(w[:, 0]) * _signs(w[:, 1])).view(1, HIDDEN)
    assert torch.equal(template["2.weight"], expected)
    # hand check on one unit: signs (+, −) give −1, (−, −) give +1
    with torch.no_grad():
        model[0].weight[0, :2] = torch.tensor([0.3, -0.2])
        model[0].weight[1, :2] = torch.tensor([-0.3, -0.2])
    template = POLARITIES.get("rule")(get_condition("frozen_sufficient"), model, study, 0)
    assert template["2.weight"][0, :2].tolist() == [-1, 1]


def test_polarity_rule_without_a_rule_is_an_error(study):
    with pytest.raises(ValueError, match="polarity 'rule' needs rule"):
        POLARITIES.get("rule")(Condition("bad", "rule", True), _model(), study, 0)


def test_polarity_source_transfers_the_source_signs(study, tmp_path):
    source, path = _source_file(tmp_path)
    with_source = dataclasses.replace(study, source=str(path))
    model = _model(7)
    cond = Condition("frozen_in", "source", True)
    template = POLARITIES.get("source")(cond, model, with_source, 0)
    assert list(template) == ["0.weight", "2.weight"]
    assert torch.equal(template["0.weight"], _signs(source[0].weight))
    assert torch.equal(template["2.weight"], _signs(source[2].weight))
    # the target's own signs differ from the source's somewhere (so the test can fail)
    assert not torch.equal(template["0.weight"], _signs(model[0].weight))


def test_polarity_source_via_load_study_overrides(tmp_path):
    source, path = _source_file(tmp_path)
    study = load_study("xor5d", ['define_condition={frozen_in={polarity="source", frozen=true}}',
                                 'conditions=["frozen_in"]', f"source={path}", "sizes=[8]", f"hidden=[{HIDDEN}]"])
    assert study.source == str(path)
    template = POLARITIES.get("source")(study.condition("frozen_in"), _model(7), study, 0)
    assert torch.equal(template["2.weight"], _signs(source[2].weight))


def test_polarity_source_without_source_is_a_clear_error(study):
    assert study.source is None
    with pytest.raises(ValueError, match=r"condition 'frozen_in' needs the study's source \(--set source=FILE\)"):
        POLARITIES.get("source")(Condition("frozen_in", "source", True), _model(), study, 0)


def test_polarity_source_with_a_missing_file_is_an_error(study, tmp_path):
    with_source = dataclasses.replace(study, source=str(tmp_path / "absent.pt"))
    with pytest.raises(polarnet.SourceError, match="absent.pt"):
        POLARITIES.get("source")(Condition("frozen_in", "source", True), _model(), with_source, 0)


def test_polarity_proportions_gives_exact_counts(study, tmp_path):
    path = tmp_path / "p.json"
    polarnet.save_proportions({"0.weight": (0.25, 0.25, 0.5), "2.weight": (0.0, 0.5, 0.5)}, path)
    with_props = dataclasses.replace(study, proportions=str(path))
    cond = Condition("frozen_spin", "proportions", True)
    template = POLARITIES.get("proportions")(cond, _model(), with_props, 3)
    # 0.weight has 8 × 5 = 40 weights: 10 zeros, 10 negative, 20 positive; 2.weight 1 × 8: 0, 4, 4
    assert template.counts() == {"0.weight": (10, 10, 20), "2.weight": (0, 4, 4)}
    again = POLARITIES.get("proportions")(cond, _model(5), with_props, 3)
    assert again == template  # the seed, not the model's values, places the signs
    other = POLARITIES.get("proportions")(cond, _model(), with_props, 4)
    assert other.counts() == template.counts() and other != template


def test_polarity_proportions_without_file_is_a_clear_error(study):
    with pytest.raises(ValueError, match=r"needs proportions \(the condition's or the study's proportions = FILE\)"):
        POLARITIES.get("proportions")(Condition("spin", "proportions", True), _model(), study, 0)


# --------------------------------------------------------------------------- magnitude builders


def test_fresh_magnitudes_are_reproducible_for_a_seed(study):
    cond = get_condition("fluid_rand")
    a, b, c = _model(1), _model(2), _model(3)
    MAGNITUDES.get("fresh")(cond, a, study, 42)
    MAGNITUDES.get("fresh")(cond, b, study, 42)
    MAGNITUDES.get("fresh")(cond, c, study, 43)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name  # the previous values play no part
        assert not torch.equal(value, c.state_dict()[name]), name
    # the study's initialisers: XOR truncated normal (|w| ≤ 2σ = 0.5) and Glorot uniform biases
    reference = init_magnitudes(_model(9), 42, conv=study.init_conv, linear=study.init_linear, bias=study.init_bias)
    for name, value in a.state_dict().items():
        assert torch.equal(value, reference.state_dict()[name]), name
    assert a[0].weight.abs().max() <= 0.5 and a[2].weight.abs().max() <= 0.5
    assert a[0].bias.abs().max() <= math.sqrt(6 / (HIDDEN + HIDDEN))


def test_fresh_magnitudes_do_not_depend_on_the_condition(study):
    a, b = _model(1), _model(2)
    MAGNITUDES.get("fresh")(get_condition("frozen_sufficient"), a, study, 7)
    MAGNITUDES.get("fresh")(get_condition("fluid_rand"), b, study, 7)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_source_magnitudes_copy_the_source_weights(study, tmp_path):
    source, path = _source_file(tmp_path)
    with_source = dataclasses.replace(study, source=str(path))
    model = _model(5)
    MAGNITUDES.get("source")(Condition("fluid_in_weight", "none", magnitudes="source"), model, with_source, 0)
    for name, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_source_magnitudes_keep_a_fresh_draw_where_shapes_differ(study, tmp_path):
    source = torch.nn.Sequential(torch.nn.Linear(5, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 3))  # another head
    path = tmp_path / "source.pt"
    torch.save(source.state_dict(), path)
    with_source = dataclasses.replace(study, source=str(path))
    model = _model(5)
    MAGNITUDES.get("source")(Condition("c", magnitudes="source"), model, with_source, 11)
    fresh = init_magnitudes(_model(6), 11, conv=study.init_conv, linear=study.init_linear, bias=study.init_bias)
    assert torch.equal(model[0].weight, source[0].weight) and torch.equal(model[0].bias, source[0].bias)
    for name in ("2.weight", "2.bias"):
        assert torch.equal(model.state_dict()[name], fresh.state_dict()[name]), name


def test_source_magnitudes_from_a_source_with_no_fitting_weight_is_an_error(study, tmp_path):
    """Finding 6: a source no weight of which fits must not pass as IN-Weight (only a bias of
    shape (1,) would be copied here)."""
    source, path = _source_file(tmp_path, hidden=4)
    with_source = dataclasses.replace(study, source=str(path))
    with pytest.raises(ValueError) as e:
        MAGNITUDES.get("source")(Condition("c", magnitudes="source"), _model(5), with_source, 11)
    message = str(e.value)
    assert "condition 'c' copies the source's weights (magnitudes='source'), but no weight of" in message
    assert "model: 0.weight, 0.bias, 2.weight, 2.bias; source: 0.weight, 0.bias, 2.weight, 2.bias" in message


def test_source_magnitudes_from_a_module_prefixed_source(study, tmp_path):
    """Finding 6: a state dict saved from DistributedDataParallel (``module.`` before every name)
    gives the same weights as the bare one: layers are matched as polarnet.transfer matches them."""
    source = _model(123)
    path = tmp_path / "module.pt"
    torch.save({"module." + k: v for k, v in source.state_dict().items()}, path)
    with_source = dataclasses.replace(study, source=str(path))
    model = _model(5)
    MAGNITUDES.get("source")(Condition("fluid_in_weight", "none", magnitudes="source"), model, with_source, 0)
    for name, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_source_pairs_by_name_then_order():
    from polarnet.experiments.conditions import source_pairs

    model = _model(1)
    state = {"0.weight": torch.zeros(HIDDEN, 5), "0.bias": torch.zeros(HIDDEN),
             "head.weight": torch.zeros(1, HIDDEN), "head.bias": torch.zeros(1), "extra": torch.zeros(7)}
    assert source_pairs(state, model) == {"0.weight": "0.weight", "0.bias": "0.bias", "2.weight": "head.weight",
                                          "2.bias": "head.bias"}
    # another architecture (a shape transfer cannot adapt): the names alone decide, nothing invented
    other = {"0.weight": torch.zeros(HIDDEN, 5), "1.weight": torch.zeros(3, 3, 3, 3), "9.weight": torch.zeros(2, 2)}
    assert source_pairs(other, model) == {"0.weight": "0.weight"}


def test_source_magnitudes_without_source_is_a_clear_error(study):
    with pytest.raises(ValueError, match="needs the study's source"):
        MAGNITUDES.get("source")(Condition("c", magnitudes="source"), _model(), study, 0)


@pytest.mark.parametrize("table, fragment", [
    ({"proportions": [[1]]}, "define_condition.mine.proportions: expected three numbers"),
    ({"proportions": ["a", 0, 1]}, "define_condition.mine.proportions: expected three numbers"),
    ({"proportions": [True, False, True]}, "define_condition.mine.proportions: expected three numbers"),
    ({"proportions": 5}, "define_condition.mine.proportions: expected list of numbers or str or none"),
    ({"lr": 10**400}, "define_condition.mine.lr=1000"),
    ({"lr": True}, "define_condition.mine.lr: expected float or none"),
    ({"frozen": 1}, "define_condition.mine.frozen: expected bool"),
    ({"layers": "a\0b"}, "contains a NUL character"),
])
def test_condition_from_dict_rejects_wrong_types_with_one_clear_error(table, fragment):
    with pytest.raises(ValueError) as e:
        condition_from_dict("mine", table)
    assert fragment in str(e.value)


def test_condition_from_dict_needs_a_table():
    with pytest.raises(ValueError, match=r"define_condition.mine: expected a table"):
        condition_from_dict("mine", 5)  # type: ignore[arg-type]


def test_condition_from_dict_takes_ints_as_floats():
    c = condition_from_dict("mine", {"lr": 1, "swap": 0, "proportions": [0, 0, 1]})
    assert (c.lr, c.swap, c.proportions) == (1.0, 0.0, (0.0, 0.0, 1.0))
    assert isinstance(c.lr, float) and isinstance(c.swap, float)
