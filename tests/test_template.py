"""Tests for polarnet.template.PolarityTemplate."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from polarnet import PolarityTemplate, TemplateFileError
from polarnet.proportions import counts_from_proportions
from helpers import tied_mlp


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 2 * 2, 3), nn.ReLU(), nn.Linear(3, 1))


def _hand():
    return PolarityTemplate(
        {
            "a": torch.tensor([[0, -1], [1, 1]]),
            "b": torch.tensor([-1, -1, -1, 1, 0, 0, 0, 0]),
        }
    )


# --------------------------------------------------------------------------- construction and validation


def test_values_stored_as_int8_cpu():
    t = PolarityTemplate({"w": torch.tensor([1.0, -1.0, 0.0]), "b": torch.tensor([1, 0], dtype=torch.int64)})
    assert t["w"].dtype == torch.int8 and t["w"].tolist() == [1, -1, 0]
    assert t["b"].dtype == torch.int8 and t["b"].tolist() == [1, 0]
    assert t["w"].device.type == "cpu"
    assert list(t) == ["w", "b"] and len(t) == 2


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.float16, torch.bfloat16, torch.float64])
def test_exact_signs_of_any_real_dtype_are_accepted(dtype):
    values = [1, 0] if dtype == torch.uint8 else [1, 0, -1]
    assert PolarityTemplate({"w": torch.tensor(values).to(dtype)})["w"].tolist() == values


def test_uint8_255_is_not_minus_one():
    # cast to int8, 255 would wrap to -1: it is judged in its own dtype instead
    with pytest.raises(ValueError, match="'w'.*exactly -1, 0 or \\+1, found \\[255\\]"):
        PolarityTemplate({"w": torch.tensor([1, 255], dtype=torch.uint8)})


@pytest.mark.parametrize(
    "bad, says",
    [
        (torch.tensor([True, False]), "bool tensors are ambiguous"),
        (torch.tensor([1 + 0j, -1 + 0j]), "complex tensor has no signs"),
        (torch.tensor([1, 0, -1]).to_sparse(), "to_dense"),
    ],
)
def test_bool_complex_and_sparse_signs_are_refused(bad, says):
    with pytest.raises(ValueError) as exc:
        PolarityTemplate({"fc.weight": bad})
    assert "'fc.weight'" in str(exc.value) and says in str(exc.value)


@pytest.mark.parametrize(
    "bad, shown",
    [
        (torch.tensor([1, 2, -1]), "[2]"),
        (torch.tensor([0.5, 1.0]), "[0.5]"),
        (torch.tensor([-3, 0], dtype=torch.int8), "[-3]"),
        (torch.tensor([1.0, float("nan")]), "nan"),
        (torch.tensor([float("inf")]), "inf"),
    ],
)
def test_values_outside_signs_raise_naming_layer_and_value(bad, shown):
    with pytest.raises(ValueError) as exc:
        PolarityTemplate({"conv1.weight": bad})
    msg = str(exc.value)
    assert "'conv1.weight'" in msg
    assert shown in msg
    assert "-1, 0 or +1" in msg


def test_non_tensor_raises_type_error():
    t = PolarityTemplate()
    with pytest.raises(TypeError, match="'w'"):
        t["w"] = [1, -1]


def test_overwrite_with_different_shape_raises_and_keeps_old():
    t = PolarityTemplate({"fc.weight": torch.ones(2, 3)})
    v = t.version
    with pytest.raises(ValueError) as exc:
        t["fc.weight"] = torch.ones(3, 2)
    msg = str(exc.value)
    assert "'fc.weight'" in msg and "(3, 2)" in msg and "(2, 3)" in msg
    assert t["fc.weight"].shape == (2, 3)
    assert t.version == v
    # deleting first allows the change
    del t["fc.weight"]
    t["fc.weight"] = torch.ones(3, 2)
    assert t["fc.weight"].shape == (3, 2)


def test_failed_value_write_changes_nothing():
    t = PolarityTemplate({"w": torch.ones(3)})
    v = t.version
    with pytest.raises(ValueError):
        t["w"] = torch.tensor([1, 5, 1])
    assert t.version == v and t["w"].tolist() == [1, 1, 1]


def test_version_counts_writes_and_deletes():
    t = PolarityTemplate()
    assert t.version == 0
    t["a"] = torch.ones(2)
    assert t.version == 1
    t["a"] = -torch.ones(2)  # same shape overwrite
    assert t.version == 2
    t["b"] = torch.zeros(1)
    assert t.version == 3
    del t["a"]
    assert t.version == 4 and list(t) == ["b"]
    t.update({"c": torch.ones(1), "d": torch.ones(1)})
    assert t.version == 6
    t.pop("c")
    assert t.version == 7
    with pytest.raises(KeyError):
        del t["nope"]
    assert t.version == 7
    assert PolarityTemplate({"x": torch.ones(1), "y": torch.ones(1)}).version == 2


def test_stored_tensor_does_not_alias_a_float_input():
    src = torch.tensor([1.0, -1.0])
    t = PolarityTemplate({"w": src})
    src[0] = -1.0
    assert t["w"].tolist() == [1, -1]


def test_stored_tensor_does_not_alias_an_int8_input():
    src = torch.tensor([1, -1, 0], dtype=torch.int8)
    t = PolarityTemplate({"w": src})
    v = t.version
    src[0] = 5  # an invalid value, written to the caller's own tensor
    assert t["w"].tolist() == [1, -1, 0]
    assert t.version == v


def test_input_with_grad_is_detached():
    w = nn.Parameter(torch.tensor([0.3, -0.2]))
    t = PolarityTemplate({"w": torch.sign(w)})
    assert not t["w"].requires_grad


# --------------------------------------------------------------------------- queries


def test_counts_and_proportions_by_hand():
    t = _hand()
    assert t.counts() == {"a": (1, 1, 2), "b": (4, 3, 1)}
    assert t.proportions() == {"a": (0.25, 0.25, 0.5), "b": (0.5, 0.375, 0.125)}
    assert t.numel() == 12


def test_proportions_of_empty_layer_and_empty_template():
    t = PolarityTemplate({"e": torch.zeros(0, 3)})
    assert t.counts() == {"e": (0, 0, 0)}
    assert t.proportions() == {"e": (0.0, 0.0, 0.0)}
    assert PolarityTemplate().numel() == 0
    assert PolarityTemplate().proportions() == {}


def test_repr_mentions_sizes():
    r = repr(_hand())
    assert "2 layers" in r and "12 weights" in r


# --------------------------------------------------------------------------- equality


def test_equality():
    assert _hand() == _hand()
    other = _hand()
    other["b"] = torch.tensor([-1, -1, -1, 1, 0, 0, 0, 1])
    assert _hand() != other
    # meta does not count
    m = _hand()
    m.meta["x"] = 1
    assert m == _hand()
    # a missing or extra layer
    fewer = _hand()
    del fewer["a"]
    assert fewer != _hand() and _hand() != fewer
    # a plain mapping of tensors compares by content
    assert _hand() == {"a": torch.tensor([[0, -1], [1, 1]], dtype=torch.int8), "b": torch.tensor([-1, -1, -1, 1, 0, 0, 0, 0], dtype=torch.int8)}
    # a non-mapping is never equal
    assert _hand() != 3
    assert _hand() != [("a", 1)]


def test_equality_different_shape_same_values():
    a = PolarityTemplate({"w": torch.ones(2, 3)})
    b = PolarityTemplate({"w": torch.ones(3, 2)})
    assert a != b


# --------------------------------------------------------------------------- check


def test_check_ok_returns_model_tensors():
    net = _net()
    t = PolarityTemplate.random(net)
    found = t.check(net)
    assert list(found) == ["0.weight", "3.weight", "5.weight"]
    assert found["3.weight"] is net[3].weight
    sd = net.state_dict()
    assert list(t.check(sd)) == ["0.weight", "3.weight", "5.weight"]


def test_check_missing_name():
    net = _net()
    t = PolarityTemplate({"ghost.weight": torch.ones(2)})
    with pytest.raises(ValueError) as exc:
        t.check(net)
    msg = str(exc.value)
    assert "'ghost.weight'" in msg and "0.weight" in msg


def test_check_wrong_shape_names_layer_and_both_shapes():
    net = _net()
    t = PolarityTemplate({"3.weight": torch.ones(8, 3)})  # weight is (3, 8)
    for src in (net, net.state_dict()):
        with pytest.raises(ValueError) as exc:
            t.check(src)
        msg = str(exc.value)
        assert "'3.weight'" in msg and "(8, 3)" in msg and "(3, 8)" in msg


# --------------------------------------------------------------------------- builders


def test_random_template():
    net = _net()
    t = PolarityTemplate.random(net, seed=5)
    assert list(t) == ["0.weight", "3.weight", "5.weight"]
    assert t.numel() == 18 + 24 + 3
    assert t.meta == {"source": "random", "seed": 5}
    assert all(set(v.unique().tolist()) <= {-1, 1} for v in t.values())
    assert t == PolarityTemplate.random(net, seed=5)
    assert t != PolarityTemplate.random(net, seed=6)
    assert list(PolarityTemplate.random(net, layers="conv", bias=True)) == ["0.weight", "0.bias"]


@settings(max_examples=50, deadline=None)
@given(p=st.floats(0.0, 1.0), seed=st.integers(0, 10**6), rows=st.integers(1, 8), cols=st.integers(1, 8))
def test_random_template_property(p, seed, rows, cols):
    sd = {"l.weight": torch.zeros(rows, cols)}
    t = PolarityTemplate.random(sd, p_positive=p, seed=seed)
    w = t["l.weight"]
    assert w.shape == (rows, cols)
    assert bool(((w == 1) | (w == -1)).all())
    assert t == PolarityTemplate.random(sd, p_positive=p, seed=seed)
    if p == 1.0:
        assert bool((w == 1).all())
    if p == 0.0:
        assert bool((w == -1).all())


def test_from_model_on_model_and_state_dict():
    net = _net()
    with torch.no_grad():
        net[5].weight.copy_(torch.tensor([[0.5, 0.0, -0.25]]))
    t = PolarityTemplate.from_model(net)
    assert t.meta == {"source": "model"}
    assert list(t) == ["0.weight", "3.weight", "5.weight"]
    assert t["5.weight"].tolist() == [[1, 0, -1]]
    for name in t:
        assert torch.equal(t[name], torch.sign(dict(net.named_parameters())[name].detach()).to(torch.int8))
    t_sd = PolarityTemplate.from_model(net.state_dict())
    assert t_sd == t
    assert list(PolarityTemplate.from_model(net, "linear", bias=True)) == ["3.weight", "3.bias", "5.weight", "5.bias"]
    assert list(PolarityTemplate.from_model(net.state_dict(), ["3.bias"])) == ["3.bias"]


def test_from_model_not_changed_by_later_training():
    net = nn.Linear(3, 2)
    t = PolarityTemplate.from_model(net)
    before = t["weight"].clone()
    with torch.no_grad():
        net.weight.mul_(-1)
    assert torch.equal(t["weight"], before)


def test_from_proportions_counts_and_meta():
    t = PolarityTemplate.from_proportions(nn.Linear(10, 10), {"weight": (0.5, 0.25, 0.25)}, seed=2)
    assert t.proportions() == {"weight": (0.5, 0.25, 0.25)}
    assert t.counts() == {"weight": (50, 25, 25)}
    assert t.meta == {"source": "proportions", "seed": 2}


@settings(max_examples=50, deadline=None)
@given(
    w=st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20)).filter(lambda x: sum(x) > 0),
    shape=st.lists(st.integers(1, 6), min_size=2, max_size=4),
    seed=st.integers(0, 1000),
)
def test_from_proportions_places_exact_counts(w, shape, seed):
    s = sum(w)
    p = (w[0] / s, w[1] / s, w[2] / s)
    sd = {"x.weight": torch.zeros(shape)}
    t = PolarityTemplate.from_proportions(sd, p, seed=seed)
    n = t["x.weight"].numel()
    assert t.counts()["x.weight"] == counts_from_proportions(p, n)
    # round trip through the proportions the template reports
    z, neg, pos = t.counts()["x.weight"]
    assert t.proportions()["x.weight"] == (z / n, neg / n, pos / n)


def test_from_rule_xor():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 1))
    t = PolarityTemplate.from_rule(net, "xor_sufficient")
    assert t.meta == {"source": "rule:xor_sufficient"}
    assert t.numel() == 30 + 6
    w = net[0].weight.detach()
    assert t["2.weight"].tolist() == [(torch.sign(w[:, 0]) * torch.sign(w[:, 1])).to(torch.int8).tolist()]
    with pytest.raises(ValueError) as exc:
        PolarityTemplate.from_rule(net, "no_such_rule")
    assert "no_such_rule" in str(exc.value) and "xor_sufficient" in str(exc.value)


# --------------------------------------------------------------------------- save / load


def test_save_load_with_meta(tmp_path):
    t = _hand()
    t.meta.update({"source": "hand", "seed": 11, "nested": {"k": [1, 2]}})
    path = t.save(tmp_path / "t.plt")
    assert path == tmp_path / "t.plt"
    u = PolarityTemplate.load(path)
    assert u == t
    assert list(u) == list(t)
    assert u.meta == {"source": "hand", "seed": 11, "nested": {"k": [1, 2]}}
    assert all(v.dtype == torch.int8 for v in u.values())


def test_builder_meta_survives_save(tmp_path):
    t = PolarityTemplate.random(_net(), seed=9)
    u = PolarityTemplate.load(t.save(str(tmp_path / "r.plt")))
    assert u == t and u.meta == {"source": "random", "seed": 9}


def test_save_size_uses_one_bit_without_zeros(tmp_path):
    t = PolarityTemplate.random({"w.weight": torch.zeros(64, 64)}, seed=0)  # 4096 weights, no zeros
    raw = t.save(tmp_path / "s.plt").read_bytes()
    (hlen,) = struct.unpack("<I", raw[10:14])
    assert len(raw) == 14 + hlen + 4096 // 8 + 32
    t["w.weight"] = torch.zeros(64, 64)  # all zeros: 2 bits
    raw = t.save(tmp_path / "s.plt").read_bytes()
    (hlen,) = struct.unpack("<I", raw[10:14])
    assert len(raw) == 14 + hlen + 2 * 4096 // 8 + 32


def test_load_corrupted_raises(tmp_path):
    path = _hand().save(tmp_path / "c.plt")
    raw = bytearray(path.read_bytes())
    raw[-33] ^= 0x01  # the last payload byte (the 32-byte digest follows)
    path.write_bytes(bytes(raw))
    with pytest.raises(TemplateFileError):
        PolarityTemplate.load(path)


_names = st.text(st.characters(min_codepoint=33, max_codepoint=0x24F), min_size=1, max_size=8)


@st.composite
def _templates(draw):
    names = draw(st.lists(_names, min_size=0, max_size=4, unique=True))
    rng = np.random.default_rng(draw(st.integers(0, 10**6)))
    signs = {}
    for name in names:
        shape = draw(st.lists(st.integers(1, 9), min_size=1, max_size=4))
        zeros = draw(st.booleans())
        signs[name] = torch.from_numpy(np.asarray(rng.choice([-1, 0, 1] if zeros else [-1, 1], size=shape), dtype=np.int8))
    return PolarityTemplate(signs, meta=draw(st.dictionaries(st.text(max_size=5), st.integers(-1000, 1000), max_size=3)))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(t=_templates())
def test_save_load_round_trip_property(tmp_path, t):
    u = PolarityTemplate.load(t.save(tmp_path / "p.plt"))
    assert u == t
    assert list(u) == list(t)
    assert u.meta == t.meta
    assert u.counts() == t.counts()
    for k in t:
        assert u[k].shape == t[k].shape and u[k].dtype == torch.int8


# --------------------------------------------------------------------------- reading a layer gives a copy


def test_reading_a_layer_returns_a_copy():
    t = PolarityTemplate({"w": torch.tensor([1, -1, 0])})
    v = t.version
    t["w"][0] = -1
    t["w"].zero_()
    for x in t.values():
        x.fill_(5)  # even an invalid value can't get in
    for _, x in t.items():
        x.neg_()
    assert t["w"].tolist() == [1, -1, 0] and t.version == v


def test_in_place_edit_of_a_read_layer_cannot_leave_an_enforcer_stale():
    from polarnet.freeze import Enforcer, violations

    torch.manual_seed(0)
    net = nn.Linear(4, 4)
    t = PolarityTemplate.random(net, seed=0)
    enforcer = Enforcer(net, t)
    enforcer()
    t["weight"].neg_()  # a copy: the template (and the enforcer's cache) are unchanged
    enforcer()
    assert violations(net, t) == 0
    # the supported way to edit: assign, which bumps the version and rebuilds the cache
    t["weight"] = -t["weight"]
    enforcer()
    assert violations(net, t) == 0


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.sampled_from([-1, 0, 1]), min_size=1, max_size=30), fill=st.integers(-100, 100))
def test_no_in_place_write_through_a_read_changes_the_template(values, fill):
    t = PolarityTemplate({"w": torch.tensor(values)})
    before = (t.version, t.counts())
    t["w"].fill_(fill)
    next(iter(t.values())).fill_(fill)
    assert (t.version, t.counts()) == before and t["w"].tolist() == values


# --------------------------------------------------------------------------- tied weights


def test_template_from_a_tied_state_dict_is_accepted_by_the_model():
    net = tied_mlp()
    assert list(net.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    t = PolarityTemplate.from_model(net.state_dict())
    assert t == PolarityTemplate.from_model(net)
    assert list(t) == ["0.weight"]  # the tied tensor once
    assert list(t.check(net)) == ["0.weight"]


def test_both_names_of_a_tied_weight_are_accepted_once():
    net = tied_mlp()
    signs = torch.sign(net[0].weight.detach())
    both = PolarityTemplate({"0.weight": signs, "2.weight": signs})
    assert list(both.check(net)) == ["0.weight"]  # the caller touches the shared tensor once
    only_alias = PolarityTemplate({"2.weight": signs})
    assert list(only_alias.check(net)) == ["2.weight"]
    assert only_alias.check(net)["2.weight"] is net[0].weight


def test_a_tied_weight_with_two_different_sign_patterns_is_refused():
    net = tied_mlp()
    signs = torch.sign(net[0].weight.detach())
    with pytest.raises(ValueError) as exc:
        PolarityTemplate({"0.weight": signs, "2.weight": -signs}).check(net)
    assert "'0.weight' and '2.weight' are one tied weight" in str(exc.value)


def test_check_refuses_complex_weights():
    lin = nn.Linear(2, 2, dtype=torch.cfloat)
    with pytest.raises(ValueError, match="'weight'.*complex"):
        PolarityTemplate({"weight": torch.ones(2, 2)}).check(lin)


def test_numpy_seeds_are_stored_as_plain_ints_so_templates_save(tmp_path) -> None:
    import numpy as np

    net = nn.Linear(4, 4)
    for t in (PolarityTemplate.random(net, seed=np.int64(4)),
              PolarityTemplate.from_proportions(net, {"weight": (0.0, 0.5, 0.5)}, seed=np.int64(4))):
        assert type(t.meta["seed"]) is int
        assert PolarityTemplate.load(t.save(tmp_path / "t.plt")).meta["seed"] == 4


def test_selecting_nothing_says_why_and_what_to_give_instead() -> None:
    """A state dict with non-standard keys said "available names start with: w" without why
    `w` did not count; a model without parameters listed nothing."""
    with pytest.raises(ValueError) as e:
        PolarityTemplate.from_model({"w": torch.ones(3, 3), "fc.weight": torch.ones(4)})
    assert str(e.value) == (
        "layers='all' selects no parameter; a state dict has no module types, so a layer's kind comes from its name "
        "and shape: a tensor named 'weight' or '*_weight' of 2 dimensions is linear, of 3-5 a convolution, and none "
        "of these is of that kind: w (not named *weight), fc.weight (1 dimensions); select by name instead (a glob "
        "such as layers='*', or a list of names), or load the weights into their model and pass the model")
    assert list(PolarityTemplate.from_model({"w": torch.ones(3, 3)}, layers="*")) == ["w"]  # the fix it names
    with pytest.raises(ValueError, match=r"^layers='all' selects no parameter; the model has no parameters$"):
        PolarityTemplate.from_model(nn.ReLU())
    with pytest.raises(ValueError, match=r"no module of the model is of that kind \(names start with: weight, bias\); "
                                         r"register your layer class with pn.register_layer_kind"):
        PolarityTemplate.from_model(nn.BatchNorm1d(3))
