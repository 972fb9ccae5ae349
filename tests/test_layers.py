"""Tests for polarnet.layers: select, named_tensors, layer_kind."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from polarnet.layers import (LAYER_KINDS, aliases, input_axes, layer_fans, layer_info, layer_kind, module_kinds,
                             named_tensors, register_layer_kind, select)
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
    # An Embedding weight is 2-D but is not a Linear layer: it is an embedding, which "all" takes too.
    net = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    assert select(net) == ["0.weight", "1.weight"]
    assert select(net, "linear") == ["1.weight"]
    assert select(net, "embedding", bias=True) == ["0.weight"]
    with pytest.raises(ValueError, match="conv"):
        select(net, "conv")
    # a state dict knows shapes only: the embedding reads as a linear layer
    assert select(net.state_dict(), "linear") == ["0.weight", "1.weight"]


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


_layer = st.sampled_from(["conv1d", "conv2d", "convT", "linear", "mha", "embedding", "bn", "relu"])
# each kind's parameters (weights, biases) and its kind
_PARAMS = {
    "conv1d": (["weight"], ["bias"], "conv"), "conv2d": (["weight"], ["bias"], "conv"),
    "convT": (["weight"], ["bias"], "conv"), "linear": (["weight"], ["bias"], "linear"),
    "mha": (["in_proj_weight", "out_proj.weight"], ["in_proj_bias", "out_proj.bias"], "linear"),
    "embedding": (["weight"], [], "embedding"),
}


def _build(kinds):
    mods = []
    for k in kinds:
        if k == "conv1d":
            mods.append(nn.Conv1d(2, 2, 1))
        elif k == "conv2d":
            mods.append(nn.Conv2d(2, 2, 1))
        elif k == "convT":
            mods.append(nn.ConvTranspose2d(2, 2, 1))
        elif k == "linear":
            mods.append(nn.Linear(2, 2))
        elif k == "mha":
            mods.append(nn.MultiheadAttention(2, 1))
        elif k == "embedding":
            mods.append(nn.Embedding(3, 2))
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
        if k not in _PARAMS:
            continue
        weights, biases, kind = _PARAMS[k]
        if spec in ("all", kind):
            # the attention's parameters are listed in_proj first, then out_proj
            for p in sorted(weights + (biases if bias else []), key=lambda p: (p.startswith("out_proj"), p.endswith("bias"))):
                expected.append(f"{i}.{p}")
    if not expected:
        with pytest.raises(ValueError):
            select(net, spec, bias=bias)
    else:
        assert select(net, spec, bias=bias) == expected
    if spec == "linear" and "embedding" in kinds:
        return  # a state dict reads an embedding's 2-D weight as a linear layer's
    if not expected:
        with pytest.raises(ValueError):
            select(net.state_dict(), spec, bias=bias)
    else:
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


# --------------------------------------------------------------------------- the layer-kind registry
def _gpt2(vocab: int = 16):
    """A one-block GPT-2 of width 8: real Hugging Face ``Conv1D`` layers, an embedding tied to the LM head."""
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=vocab, n_positions=8,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config)


def _hf_conv1d():
    pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    return Conv1D(6, 4)  # nf=6 outputs, nx=4 inputs: weight (4, 6)


# one example per registered kind: (module factory, {weight: (fans, input axis, output size)}), the fans by hand
EXAMPLES = {
    "conv": (lambda: nn.Conv2d(3, 8, (5, 3), groups=1), {"weight": ((3 * 15, 8 * 15), 1, 8)}),
    "conv_transpose": (lambda: nn.ConvTranspose2d(4, 6, 3, groups=2),  # weight (4, 3, 3, 3)
                       {"weight": ((4 * 9, 3 * 9), 0, 3)}),
    "linear": (lambda: nn.Linear(5, 7), {"weight": ((5, 7), 1, 7)}),
    "bilinear": (lambda: nn.Bilinear(3, 4, 2), {"weight": ((3 * 4, 2 * 4), None, 2)}),
    "multihead_attention": (lambda: nn.MultiheadAttention(8, 2),
                            {"in_proj_weight": ((8, 8), 1, 24), "out_proj.weight": ((8, 8), 1, 8)}),
    "hf_conv1d": (_hf_conv1d, {"weight": ((4, 6), 0, 6)}),
    "embedding": (lambda: nn.Embedding(10, 4), {"weight": ((4, 10), None, 4)}),
}


def test_every_registered_kind_has_an_example():
    assert set(EXAMPLES) == set(LAYER_KINDS.names()), "add an example for the new layer kind to EXAMPLES"


@pytest.mark.parametrize("name", LAYER_KINDS.names())
def test_registered_kind_selects_its_weights_with_their_layout(name):
    factory, expected = EXAMPLES[name]
    entry = LAYER_KINDS.get(name)
    net = nn.Sequential(factory())
    info = layer_info(net)
    weights = [f"0.{p}" for p in expected]
    assert [n for n, i in info.items() if not i.is_bias] == weights
    assert all(info[n].entry is entry for n in info)
    assert select(net, name) == weights and select(net, entry.kind) == weights
    assert select(net, "all") == (weights if entry.in_all else [])
    biases = [n for n in named_tensors(net) if n.endswith("bias")]
    assert select(net, name, bias=True) == [n for n in named_tensors(net) if n in weights or n in biases]
    assert module_kinds(net) == {n: entry.kind for n in info}
    for p, (fans, in_axis, out_size) in expected.items():
        assert layer_fans(net)[f"0.{p}"] == fans
        assert info[f"0.{p}"].in_axis == in_axis and info[f"0.{p}"].out_size == out_size
        assert input_axes(net).get(f"0.{p}") == in_axis


@pytest.mark.parametrize("name", ["conv", "linear", "bilinear", "embedding"])
def test_fans_are_torchs_where_the_layout_is_torchs(name):
    net = EXAMPLES[name][0]()
    assert layer_fans(net)["weight"] == nn.init._calculate_fan_in_and_fan_out(net.weight)


@pytest.mark.parametrize("name", ["conv_transpose", "hf_conv1d"])
def test_fans_of_transposed_layouts_are_torchs_swapped(name):
    net = EXAMPLES[name][0]()
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(net.weight)
    assert layer_fans(net)["weight"] == (fan_out, fan_in)


def test_multihead_attention_with_separate_projections():
    mha = nn.MultiheadAttention(8, 2, kdim=3, vdim=5)
    net = nn.Sequential(mha)
    assert select(net, "linear", bias=True) == ["0.q_proj_weight", "0.k_proj_weight", "0.v_proj_weight",
                                                "0.in_proj_bias", "0.out_proj.weight", "0.out_proj.bias"]
    assert layer_fans(net) == {"0.q_proj_weight": (8, 8), "0.k_proj_weight": (3, 8), "0.v_proj_weight": (5, 8),
                               "0.out_proj.weight": (8, 8)}
    # out_proj is a Linear subclass, claimed by the attention kind that encloses it
    assert layer_info(net)["0.out_proj.weight"].entry.name == "multihead_attention"
    # a state dict pairs a bias with the weight of its name: the shared in_proj_bias has no in_proj_weight there
    assert select(net.state_dict(), "all") == select(net, "all")


def test_transformer_encoder_layer_selects_attention_and_feed_forward():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16)
    assert select(layer) == ["self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight",
                             "linear2.weight"]
    assert select(layer, "multihead_attention") == ["self_attn.in_proj_weight", "self_attn.out_proj.weight"]
    # the shape rule reads *_weight and *_bias too
    assert select(layer.state_dict(), bias=True) == select(layer, bias=True)


def test_gpt2_conv1d_layers_are_linear_with_input_axis_0():
    model = _gpt2()
    conv1d = ["transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.weight",
              "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight"]
    assert select(model, "hf_conv1d") == conv1d
    assert select(model, "linear") == [*conv1d, "lm_head.weight"]  # the head, an alias of the embedding
    assert select(model, "embedding") == ["transformer.wte.weight", "transformer.wpe.weight"]
    # "all": the LM head is the embedding's tensor, taken once; a state dict selects the same names
    assert select(model) == ["transformer.wte.weight", "transformer.wpe.weight", *conv1d]
    assert select(model.state_dict()) == select(model)
    assert {n: input_axes(model)[n] for n in conv1d} == dict.fromkeys(conv1d, 0)
    assert layer_fans(model)["transformer.h.0.attn.c_attn.weight"] == (8, 24)  # weight (8, 24): 8 in, 24 out
    assert layer_fans(model)["transformer.h.0.mlp.c_proj.weight"] == (32, 8)


def test_polarnet_import_does_not_import_transformers():
    import subprocess
    import sys

    code = "import sys, polarnet.layers, polarnet.transfer, polarnet.init; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class _Gain(nn.Module):
    def __init__(self, n: int = 3) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(n, 2))
        self.shift = nn.Parameter(torch.zeros(n))


def test_register_a_kind_is_one_call_and_every_selector_knows_it():
    entry = register_layer_kind("gain_test", kind="gain", types=(_Gain,), weights=("gain",), biases=("shift",))
    try:
        net = nn.Sequential(_Gain(), nn.Linear(2, 2))
        assert select(net) == ["0.gain", "1.weight"]
        assert select(net, "gain", bias=True) == ["0.gain", "0.shift"] == select(net, "gain_test", bias=True)
        assert layer_fans(net)["0.gain"] == (2, 3) and input_axes(net)["0.gain"] == 1
        assert LAYER_KINDS.get("gain_test") is entry
        with pytest.raises(ValueError, match="already registered"):
            register_layer_kind("gain_test", kind="gain", types=(_Gain,))
    finally:
        LAYER_KINDS.unregister("gain_test")
    assert select(nn.Sequential(_Gain(), nn.Linear(2, 2))) == ["1.weight"]


def test_a_kind_left_out_of_all_and_a_predicate_and_a_class_named_by_string():
    register_layer_kind("gain_quiet", kind="gain", types=(f"{__name__}._Gain",), weights=("gain",), in_all=False,
                        predicate=lambda m: m.gain.shape[0] > 2)
    try:
        net = nn.Sequential(_Gain(3), _Gain(2), nn.Linear(2, 2))
        assert select(net) == ["2.weight"]
        assert select(net, "gain") == ["0.gain"]  # the predicate leaves the 2-row one out
    finally:
        LAYER_KINDS.unregister("gain_quiet")


def test_the_closest_class_wins_and_a_tie_is_an_error():
    class MyLinear(nn.Linear):
        pass

    register_layer_kind("my_linear", kind="mine", types=(MyLinear,))
    try:
        net = nn.Sequential(MyLinear(2, 2), nn.Linear(2, 2))
        assert module_kinds(net) == {"0.weight": "mine", "0.bias": "mine", "1.weight": "linear", "1.bias": "linear"}
        register_layer_kind("my_linear_again", kind="mine", types=(MyLinear,))
        try:
            with pytest.raises(ValueError, match=r"MyLinear matches the layer kinds 'my_linear' and 'my_linear_again'"):
                select(net)
        finally:
            LAYER_KINDS.unregister("my_linear_again")
    finally:
        LAYER_KINDS.unregister("my_linear")


@pytest.mark.parametrize("kw, message", [
    ({"name": "x_test", "kind": "linear"}, "types="),
    ({"name": "all", "kind": "x", "types": (nn.Linear,)}, "'all'"),
    ({"name": "x_test", "kind": "all", "types": (nn.Linear,)}, "'all'"),
    ({"name": "linear", "kind": "x", "types": (nn.Linear,)}, "already the kind"),  # the name is a kind
    ({"name": "x_test", "kind": "conv_transpose", "types": (nn.Linear,)}, "is the name of"),
    ({"name": "x_test", "kind": "", "types": (nn.Linear,)}, "non-empty"),
])
def test_register_layer_kind_refuses_ambiguous_names(kw, message):
    before = LAYER_KINDS.names()
    with pytest.raises(ValueError, match=message):
        register_layer_kind(kw.pop("name"), **kw)
    assert LAYER_KINDS.names() == before


def test_unknown_selector_lists_the_kind_selectors():
    with pytest.raises(ValueError, match="kind selectors: all, bilinear, conv, conv_transpose, embedding"):
        select(nn.Linear(2, 2), "nope")


def test_a_shared_module_is_known_under_both_names():
    lin = nn.Linear(2, 2)
    net = nn.Sequential(lin, nn.ReLU(), lin)
    assert set(module_kinds(net)) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert select(net, bias=True) == ["0.weight", "0.bias"]
