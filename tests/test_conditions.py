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
from polarnet.template import PolarityTemplate
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
                           "swap_mode": "pattern", "unmatched": "auto", "learner": "freeze_sgd", "description": ""}


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
    assert ("allowed: ['color', 'description', 'frozen', 'label', 'layers', 'learner', 'lr', 'magnitudes', 'polarity', "
            "'proportions', 'reset', 'role', 'rule', 'swap', 'swap_mode', 'unmatched']") in message


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


# --------------------------------------------------------------------------- unmatched: layers the source gives no signs

def _other_head_source(tmp_path):
    """An MLP source whose last layer is 3-way: the study's 1-way head gets no signs from it."""
    torch.manual_seed(123)
    source = torch.nn.Sequential(torch.nn.Linear(5, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 3))
    path = tmp_path / "source.pt"
    torch.save(source.state_dict(), path)
    return source, path


@pytest.mark.parametrize("unmatched, head, frozen, mode", [
    ("auto", "replace", True, "free"), ("auto", "extend", True, "own"),  # auto: the reference's protocol with extend
    ("auto", "extend", False, "free"), ("auto", "replace", False, "free"),  # a fluid net has nothing to freeze
    ("own", "replace", True, "own"), ("free", "extend", True, "free"),  # set: as set
])
def test_unmatched_mode(unmatched, head, frozen, mode):
    from types import SimpleNamespace

    from polarnet.experiments.conditions import unmatched_mode

    condition = Condition("c", "source", frozen, unmatched=unmatched)
    assert unmatched_mode(condition, SimpleNamespace(head=head)) == mode
    assert unmatched_mode(Condition("c", "source", True), object()) == "free"  # a study without head: 'replace'


def test_every_built_in_condition_keeps_unmatched_auto():
    """So no built-in condition's run keys change (the field enters a key only when set)."""
    assert {get_condition(name).unmatched for name in CONDITIONS.names()} == {"auto"}


@pytest.mark.parametrize("unmatched", ["own", "free"])
def test_polarity_source_with_unmatched_own_or_free(study, tmp_path, unmatched):
    source, path = _other_head_source(tmp_path)
    model = _model(7)
    cond = Condition("c", "source", True, unmatched=unmatched)
    template = POLARITIES.get("source")(cond, model, dataclasses.replace(study, source=str(path)), 0)
    assert torch.equal(template["0.weight"], _signs(source[0].weight))  # the source's signs where it has a layer
    if unmatched == "free":
        assert list(template) == ["0.weight"]  # the head, (1, 8) against the source's (3, 8), left free
    else:
        assert list(template) == ["0.weight", "2.weight"]  # in the model's order
        assert torch.equal(template["2.weight"], _signs(model[2].weight))  # its own initial signs
        assert template.meta["own_signs"] == ["2.weight"]
        assert template.meta["transfer"]["unmatched"] == ["2.weight"]


def test_polarity_source_unmatched_auto_is_free_without_head_extend(study, tmp_path):
    """What polarnet did before the field existed, for every study that does not extend its head."""
    _, path = _other_head_source(tmp_path)
    template = POLARITIES.get("source")(get_condition("frozen_in_polarity"), _model(7),
                                        dataclasses.replace(study, source=str(path)), 0)
    assert list(template) == ["0.weight"]


def test_source_proportions_does_not_read_unmatched(study, tmp_path):
    """SPIN takes the proportions of the layers the source has, whatever the head."""
    _, path = _other_head_source(tmp_path)
    extend = dataclasses.replace(study, source=str(path), head="extend")  # as an extended AlexNet's study would be
    template = POLARITIES.get("source_proportions")(Condition("s", "source_proportions", True), _model(7), extend, 0)
    assert list(template) == ["0.weight"]


@pytest.mark.parametrize("table, fragment", [
    ({"polarity": "source", "frozen": True, "unmatched": "mine"},
     "unmatched = 'mine': choose 'own' (layers the source gives no signs are frozen to their own initial signs), "
     "'free' (left unconstrained) or 'auto' (the default: 'own' with head = 'extend', else 'free')"),
    ({"polarity": "random", "frozen": True, "unmatched": "own"},
     "unmatched = 'own' has no effect: only polarity = 'source' reads it (polarity is 'random'); remove unmatched"),
    ({"polarity": "source_proportions", "frozen": True, "unmatched": "free"},
     "unmatched = 'free' has no effect: only polarity = 'source' reads it (polarity is 'source_proportions'); remove "
     "unmatched"),
    ({"polarity": "source", "frozen": False, "unmatched": "own"},
     "unmatched = 'own' has no effect on a fluid net (frozen = false): it only starts aligned to its template, and a "
     "layer's own signs need no aligning; remove unmatched, or set frozen = true"),
])
def test_unmatched_is_refused_where_it_would_do_nothing(table, fragment):
    from polarnet.experiments.conditions import condition_problems

    assert condition_problems(condition_from_dict("x", table)) == [fragment]


def test_unmatched_is_a_string_field():
    assert condition_from_dict("x", {"polarity": "source", "frozen": True, "unmatched": "own"}).unmatched == "own"
    with pytest.raises(ValueError, match=r"^define_condition.x.unmatched: expected str, got True"):
        condition_from_dict("x", {"unmatched": True})


def test_unmatched_enters_a_run_key_only_when_set(tmp_path):
    from polarnet.experiments import plan

    source = tmp_path / "w.pt"
    source.write_bytes(b"not really weights")  # keys hash the content; validation does not read it

    def run(table: str):
        return plan(load_study("xor5d", [f"define_condition={{mine={{polarity='source', frozen=true{table}}}}}",
                                         "conditions=['mine']", f"source='{source}'", "trials=1", "sizes=[8]"]))[0]

    auto, own, free = run(""), run(", unmatched='own'"), run(", unmatched='free'")
    assert "unmatched" not in auto.settings()["condition"]
    assert own.settings()["condition"]["unmatched"] == "own" and free.settings()["condition"]["unmatched"] == "free"
    assert len({auto.key, own.key, free.key}) == 3


def test_run_keys_of_every_preset_are_unchanged_by_unmatched(tmp_path):
    """Keys computed before ``unmatched`` existed (a digest of each preset's plan at trials=2):
    every stored run is found again. The Wang presets' Frozen IN runs (head = "extend") now fix
    the new layer to its own signs under the same keys: ``head = "extend"`` came with the same
    issue (9 §3), and only its first commits left that layer free."""
    import hashlib
    import os

    from polarnet.experiments import plan
    from polarnet.presets import __file__ as presets

    source = tmp_path / "source.pt"
    source.write_bytes(b"not really weights")  # fmnist-split-transfer's source, keyed by content

    def digest(name: str, *overrides: str) -> str:
        keys = [r.key for r in plan(load_study(name, ["trials=2", *overrides]))]
        return hashlib.sha256(" ".join(keys).encode()).hexdigest()[:16]

    expected = {
        "cifar10-alexnet": "2425292a112ac23d", "fmnist-alexnet": "569f933ea9d280a8",
        "fmnist-split-transfer": "a450763abde25549", "spin-alexnet-cifar10": "f8ddde43f9850909",
        "spin-alexnet-fmnist": "462f84d777f19896", "spin-table1": "f55180977c3ad6e7",
        "spin-zfnet-cifar10": "0a269a26a2053a23", "spin-zfnet-fmnist": "e382a3e906a08a97",
        "xor5d": "a4eb558d2591d861", "xor5d-reset": "a99db4ada245dd13", "xor5d-width": "2e6ddd214e17f9a2",
    }
    names = sorted(n[:-5] for n in os.listdir(os.path.dirname(presets)) if n.endswith(".toml"))
    # the presets that existed then (later ones, such as the learners' presets, have no old keys)
    assert set(expected) <= set(names)
    for name in sorted(expected):
        extra = [f"source='{source}'"] if name == "fmnist-split-transfer" else []
        assert digest(name, *extra) == expected[name], name
    assert digest("fmnist-alexnet", "head='replace'") == "fc5304ca608a6304"
    # a condition of a study file that does not set unmatched
    assert digest("xor5d", "define_condition={mine={polarity='source', frozen=true, layers='0.weight'}}",
                  "conditions=['mine']", f"source='{source}'") == "85b380280f15ba97"


def test_learner_problems_are_named():
    from polarnet.experiments.conditions import condition_problems

    assert condition_problems(Condition("ok", "random", True, learner="eg")) == []
    fluid = condition_problems(Condition("f", "none", False, learner="project"))
    assert fluid == ["learner = 'project' keeps a template: a fluid net (frozen = false) has none to keep; remove "
                     "learner, or set frozen = true"]
    assert "choose one of eg, freeze_sgd" in condition_problems(Condition("u", "random", True, learner="adam"))[0]
    swap = condition_problems(Condition("s", "source_proportions", True, swap=0.5, learner="reparam-abs"))
    assert swap and "builds it into the model" in swap[0]
    assert condition_problems(Condition("s", "source_proportions", True, swap=0.5, learner="eg")) == []


def _alexnet_shaped_source(tmp_path):
    """torchvision AlexNet's layer names with small tensors: conv layer i holds i+1 negatives in
    ten entries (the rest positive), so each layer's proportions say where they came from."""
    names = ["features.0.weight", "features.3.weight", "features.6.weight", "features.8.weight", "features.10.weight"]
    state = {}
    for i, name in enumerate(names):
        w = torch.ones(10, 1, 1, 1)
        w[: i + 1] = -1
        state[name] = w
    state.update({"classifier.1.weight": torch.randn(4096, 9216), "classifier.4.weight": torch.randn(4096, 4096),
                  "classifier.6.weight": torch.randn(1000, 4096)})
    path = tmp_path / "alexnet-shaped.pt"
    torch.save(state, path)
    return state, path


def test_spin_gives_zfnet_the_proportions_of_alexnets_convolutions_in_order(tmp_path):
    """Igoe et al.'s ZFNet takes AlexNet's per-layer proportions: conv k from conv k, though the
    shapes differ and ZFNet's normalisation layers shift its names (its conv3 is features.8,
    AlexNet's conv4's name)."""
    _, path = _alexnet_shaped_source(tmp_path)
    study = load_study("spin-zfnet-fmnist", ["trials=1", f"source='{path}'"], validate=False)
    model = polarnet.models.get_model("zfnet", num_classes=10, in_channels=3)
    zf_convs = ["features.0.weight", "features.4.weight", "features.8.weight", "features.10.weight",
                "features.12.weight"]
    for name in ("freeze_spin", "fluid_spin"):
        template = POLARITIES.get("source_proportions")(get_condition(name), model, study, 3)
        assert list(template) == zf_convs  # conv layers only; the linear layers stay free
        for k, layer in enumerate(zf_convs):
            p0, neg, pos = template.proportions()[layer]
            rounding = 0.5 / template[layer].numel()  # round(p·N) entries of each sign
            assert p0 == 0 and neg == pytest.approx((k + 1) / 10, abs=rounding) and pos == pytest.approx(
                1 - (k + 1) / 10, abs=rounding)


def test_source_report_lists_what_spin_and_fine_tuning_take_from_another_architecture(tmp_path):
    from polarnet.experiments.conditions import source_report
    _, path = _alexnet_shaped_source(tmp_path)
    study = load_study("spin-zfnet-fmnist", ["trials=1", f"source='{path}'"], validate=False)
    report = source_report(study, polarnet.models.get_model("zfnet"))
    assert [(t, s) for t, s, _ in report.adapted] == [
        ("features.0.weight", "features.0.weight"), ("features.4.weight", "features.3.weight"),
        ("features.8.weight", "features.6.weight"), ("features.10.weight", "features.8.weight"),
        ("features.12.weight", "features.10.weight")]
    assert all("sign proportions only" in how for _, _, how in report.adapted)
    # fluid_in copies the weights whose shapes fit: fc6 and fc7; the 10-way head is fresh
    assert report.matched == [("classifier.1.weight", "classifier.1.weight"),
                              ("classifier.4.weight", "classifier.4.weight")]
    assert report.unmatched == ["classifier.6.weight"] and report.unused == ["classifier.6.weight"]
    # a condition that transfers the signs themselves cannot take a layer of another shape
    signs = dataclasses.replace(study, conditions=["frozen_in_polarity"])
    with pytest.raises(ValueError, match="features.0.weight.*≠ target shape"):
        source_report(signs, polarnet.models.get_model("zfnet"))


def test_spin_pairs_by_number_when_the_source_names_come_sorted_as_text(tmp_path):
    """A .safetensors file stores its names sorted as text (features.10 before features.3):
    the layers still pair in the network's order."""
    from polarnet.experiments.conditions import proportion_pairs
    state, _ = _alexnet_shaped_source(tmp_path)
    as_text = {name: state[name] for name in sorted(state)}
    assert list(as_text)[:3] == ["classifier.1.weight", "classifier.4.weight", "classifier.6.weight"]
    pairs = proportion_pairs(as_text, polarnet.models.get_model("zfnet"), "conv")
    assert pairs == {"features.0.weight": "features.0.weight", "features.4.weight": "features.3.weight",
                     "features.8.weight": "features.6.weight", "features.10.weight": "features.8.weight",
                     "features.12.weight": "features.10.weight"}


def test_spin_from_a_source_the_signs_fit_takes_the_transferred_signs_proportions(tmp_path):
    """Where the sign transfer applies (same architecture), SPIN takes its template's
    proportions, as before sources of other architectures were allowed: a 3-channel source's
    first layer for a 1-channel model gives the proportions of its summed signs."""
    torch.manual_seed(0)
    source = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 5), torch.nn.ReLU(), torch.nn.Conv2d(6, 4, 3))
    path = tmp_path / "three.pt"
    torch.save(source.state_dict(), path)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 5), torch.nn.ReLU(), torch.nn.Conv2d(6, 4, 3))
    study = load_study("spin-zfnet-fmnist", ["trials=1", f"source='{path}'"], validate=False)
    template = POLARITIES.get("source_proportions")(get_condition("freeze_spin"), model, study, 3)
    transferred, report = polarnet.transfer(source.state_dict(), model, layers="conv", seed=3)
    ours, theirs = template.proportions(), transferred.proportions()
    assert report.adapted and ours.keys() == theirs.keys()
    assert all(ours[name] == pytest.approx(theirs[name], abs=1e-12) for name in ours)  # the same counts
    raw = PolarityTemplate({"0.weight": torch.sign(source[0].weight.detach()).to(torch.int8)}).proportions()
    assert ours["0.weight"] != pytest.approx(raw["0.weight"])  # 450 signs vs 150 summed ones
