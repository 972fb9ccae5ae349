"""Tests for polarnet.layers: select, named_tensors, layer_kind."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from polarnet.layers import aliases, input_axes, layer_kind, named_tensors, select
from helpers import tied_mlp


def _net():
    # 0: conv, 1: BN (neither kind), 2: relu, 3: flatten, 4: linear, 5: relu, 6: linear
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * 2 * 2, 3),
        nn.ReLU(),
        nn.Linear(3, 1),
    )


# --------------------------------------------------------------------------- named_tensors


def test_named_tensors_model_gives_parameters_only():
    net = _net()
    names = list(named_tensors(net))
    assert names == [n for n, _ in net.named_parameters()]
    assert "1.running_mean" not in names


def test_named_tensors_state_dict_gives_all_tensors_and_skips_non_tensors():
    sd = OrderedDict([("a", torch.zeros(2)), ("meta", 3), ("b", torch.ones(1))])
    out = named_tensors(sd)
    assert list(out) == ["a", "b"]
    assert out["b"] is sd["b"]


def test_named_tensors_empty_state_dict_raises():
    with pytest.raises(ValueError, match="no tensors"):
        named_tensors({})
    with pytest.raises(ValueError, match="no tensors"):
        named_tensors({"x": 1})


def test_named_tensors_wrong_type_names_type():
    with pytest.raises(TypeError, match="list"):
        named_tensors([torch.zeros(1)])


# --------------------------------------------------------------------------- layer_kind


@pytest.mark.parametrize(
    "name, shape, kind",
    [
        ("fc.weight", (3, 4), "linear"),
        ("c1.weight", (2, 1, 3), "conv"),  # conv1d
        ("c2.weight", (2, 1, 3, 3), "conv"),  # conv2d
        ("c3.weight", (2, 1, 3, 3, 3), "conv"),  # conv3d
        ("bn.weight", (4,), None),  # 1-D weight: neither
        ("x.weight", (1, 1, 1, 1, 1, 1), None),  # 6-D: neither
        ("fc.bias", (3, 4), None),  # not a weight by name
        ("running_mean", (3, 4), None),
    ],
)
def test_layer_kind_from_shape(name, shape, kind):
    assert layer_kind(name, torch.zeros(shape)) == kind


def test_layer_kind_from_known_kinds_overrides_shape():
    kinds = {"emb.weight": "linear"}
    # given kinds, the shape is ignored and unknown names give None
    assert layer_kind("emb.weight", torch.zeros(5), kinds) == "linear"
    assert layer_kind("fc.weight", torch.zeros(2, 2), kinds) is None


# --------------------------------------------------------------------------- select: kinds


def test_select_all_conv_linear_on_model():
    net = _net()
    assert select(net) == ["0.weight", "4.weight", "6.weight"]
    assert select(net, "all") == ["0.weight", "4.weight", "6.weight"]
    assert select(net, "conv") == ["0.weight"]
    assert select(net, "linear") == ["4.weight", "6.weight"]


def test_select_with_bias_on_model():
    net = _net()
    assert select(net, "all", bias=True) == ["0.weight", "0.bias", "4.weight", "4.bias", "6.weight", "6.bias"]
    assert select(net, "conv", bias=True) == ["0.weight", "0.bias"]
    assert select(net, "linear", bias=True) == ["4.weight", "4.bias", "6.weight", "6.bias"]


def test_select_on_state_dict_reads_kind_from_shapes():
    sd = _net().state_dict()
    # the state dict also holds BN buffers; none of them is picked
    assert "1.running_mean" in sd and "1.num_batches_tracked" in sd
    assert select(sd) == ["0.weight", "4.weight", "6.weight"]
    assert select(sd, "conv") == ["0.weight"]
    assert select(sd, "linear") == ["4.weight", "6.weight"]
    assert select(sd, "all", bias=True) == ["0.weight", "0.bias", "4.weight", "4.bias", "6.weight", "6.bias"]
    assert select(sd, "conv", bias=True) == ["0.weight", "0.bias"]
    assert select(sd, "linear", bias=True) == ["4.weight", "4.bias", "6.weight", "6.bias"]


def test_select_state_dict_bias_without_weight_is_skipped():
    sd = {"fc.weight": torch.zeros(2, 3), "orphan.bias": torch.zeros(2), "fc.bias": torch.zeros(2)}
    assert select(sd, "all", bias=True) == ["fc.weight", "fc.bias"]


def test_select_handmade_state_dict_of_all_conv_dims():
    sd = {
        "a.weight": torch.zeros(2, 1, 3),
        "b.weight": torch.zeros(2, 1, 3, 3),
        "c.weight": torch.zeros(2, 1, 3, 3, 3),
        "d.weight": torch.zeros(4, 5),
        "e.weight": torch.zeros(4),
    }
    assert select(sd, "conv") == ["a.weight", "b.weight", "c.weight"]
    assert select(sd, "linear") == ["d.weight"]
    assert select(sd) == ["a.weight", "b.weight", "c.weight", "d.weight"]


def test_select_model_uses_module_types_not_shapes():
    # An Embedding weight is 2-D but is not a Linear layer.
    net = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    assert select(net) == ["1.weight"]
    with pytest.raises(ValueError, match="conv"):
        select(net, "conv")


def test_select_root_module_names():
    lin = nn.Linear(3, 2)
    assert select(lin) == ["weight"]
    assert select(lin, bias=True) == ["weight", "bias"]
    assert select(lin.state_dict(), bias=True) == ["weight", "bias"]


def test_select_kind_with_no_match_raises_and_lists_names():
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError) as exc:
        select(net, "conv")
    msg = str(exc.value)
    assert "'conv'" in msg and "0.weight" in msg


# --------------------------------------------------------------------------- select: glob and list


def test_select_glob_on_model_and_state_dict():
    net = _net()
    assert select(net, "4.*") == ["4.weight", "4.bias"]
    assert select(net, "*.bias") == ["0.bias", "1.bias", "4.bias", "6.bias"]
    assert select(net, "[46].weight") == ["4.weight", "6.weight"]
    # on a state dict, a glob also sees buffers
    assert select(net.state_dict(), "1.*") == [
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]


def test_select_glob_is_case_sensitive_and_no_match_raises():
    net = _net()
    with pytest.raises(ValueError) as exc:
        select(net, "*.WEIGHT")
    assert "*.WEIGHT" in str(exc.value)


def test_select_list_taken_as_given_order():
    net = _net()
    assert select(net, ["6.weight", "0.bias", "1.weight"]) == ["6.weight", "0.bias", "1.weight"]
    assert select(net.state_dict(), ["1.running_mean"]) == ["1.running_mean"]
    assert select(net, ("4.weight",)) == ["4.weight"]


def test_select_list_unknown_names_error_names_them():
    net = _net()
    with pytest.raises(ValueError) as exc:
        select(net, ["0.weight", "nope.weight", "9.bias"])
    msg = str(exc.value)
    assert "nope.weight" in msg and "9.bias" in msg
    # the known names are listed too
    assert "0.weight" in msg


def test_select_empty_list_raises():
    with pytest.raises(ValueError, match="empty"):
        select(_net(), [])


# --------------------------------------------------------------------------- property: model vs state dict


_layer = st.sampled_from(["conv1d", "conv2d", "linear", "bn", "relu"])


def _build(kinds):
    mods = []
    for k in kinds:
        if k == "conv1d":
            mods.append(nn.Conv1d(2, 2, 1))
        elif k == "conv2d":
            mods.append(nn.Conv2d(2, 2, 1))
        elif k == "linear":
            mods.append(nn.Linear(2, 2))
        elif k == "bn":
            mods.append(nn.BatchNorm1d(2))
        else:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


@settings(max_examples=50, deadline=None)
@given(kinds=st.lists(_layer, min_size=1, max_size=6), spec=st.sampled_from(["all", "conv", "linear"]), bias=st.booleans())
def test_select_model_and_state_dict_agree(kinds, spec, bias):
    net = _build(kinds)
    expected = []
    for i, k in enumerate(kinds):
        is_conv = k.startswith("conv")
        is_lin = k == "linear"
        if (spec == "all" and (is_conv or is_lin)) or (spec == "conv" and is_conv) or (spec == "linear" and is_lin):
            expected.append(f"{i}.weight")
            if bias:
                expected.append(f"{i}.bias")
    if not expected:
        with pytest.raises(ValueError):
            select(net, spec, bias=bias)
        with pytest.raises(ValueError):
            select(net.state_dict(), spec, bias=bias)
    else:
        assert select(net, spec, bias=bias) == expected
        assert select(net.state_dict(), spec, bias=bias) == expected


# --------------------------------------------------------------------------- tied weights


def test_named_tensors_knows_every_name_of_a_tied_weight():
    net = tied_mlp()
    tensors = named_tensors(net)
    assert list(tensors) == list(net.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert tensors["2.weight"] is tensors["0.weight"]


def test_aliases_of_model_and_state_dict():
    net = tied_mlp()
    assert aliases(net) == aliases(net.state_dict()) == {"2.weight": "0.weight"}
    assert aliases(_net()) == {} and aliases(_net().state_dict()) == {}
    # equal values in other memory are not tied, nor are empty tensors
    assert aliases({"a": torch.ones(2), "b": torch.ones(2), "c": torch.empty(0), "d": torch.empty(0)}) == {}
    # different views of one storage are not tied either
    flat = torch.zeros(8)
    assert aliases({"a": flat[:4], "b": flat[4:], "c": flat.view(2, 4)}) == {}


@pytest.mark.parametrize("spec", ["all", "linear", "*.weight", "*"])
def test_select_takes_a_tied_weight_once_and_model_and_state_dict_agree(spec):
    net = tied_mlp()
    names = select(net, spec)
    assert names == select(net.state_dict(), spec)
    assert "2.weight" not in names and "0.weight" in names


def test_select_glob_on_the_alias_alone_and_lists_as_given():
    net = tied_mlp()
    assert select(net, "2.*") == ["2.weight", "2.bias"]
    assert select(net, ["0.weight", "2.weight"]) == ["0.weight", "2.weight"]


def test_input_axes_know_transposed_convolutions():
    net = nn.Sequential(nn.Conv1d(2, 3, 1), nn.ConvTranspose1d(3, 4, 1), nn.ConvTranspose3d(4, 2, 1, groups=2),
                        nn.Flatten(), nn.Linear(2, 2), nn.Bilinear(2, 2, 1), nn.Conv2d(1, 1, 1, bias=False))
    assert input_axes(net) == {"0.weight": 1, "1.weight": 0, "2.weight": 0, "4.weight": 1, "6.weight": 1}


def test_a_parametrized_weight_is_named_as_the_module_computes_it():
    from torch.nn.utils import parametrize

    class Double(nn.Module):
        def forward(self, x):
            return 2 * x

    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    plain = net[0].weight.detach().clone()
    parametrize.register_parametrization(net[0], "weight", Double())
    tensors = named_tensors(net)
    assert set(tensors) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    assert torch.equal(tensors["0.weight"], 2 * plain) and not tensors["0.weight"].requires_grad
    assert select(net) == ["0.weight", "1.weight"]
    assert input_axes(net)["0.weight"] == 1
