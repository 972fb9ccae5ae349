from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import polarnet as pn
from polarnet.transfer import match_layers


def convnet(in_ch: int, classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.Flatten(), nn.Linear(6 * 2 * 2, 8),
                         nn.ReLU(), nn.Linear(8, classes))


def test_same_architecture_copies_every_sign() -> None:
    src, dst = convnet(3, 10), convnet(3, 10)
    t, report = pn.transfer(src, dst)
    assert [m[0] for m in report.matched] == ["0.weight", "2.weight", "4.weight", "6.weight"]
    assert not report.adapted and not report.unmatched and not report.unused
    for name, signs in t.items():
        assert torch.equal(signs, torch.sign(src.get_parameter(name)).to(torch.int8))


def test_rgb_to_gray_uses_sign_of_summed_weights_and_frees_the_head() -> None:
    src, dst = convnet(3, 1000), convnet(1, 10)
    t, report = pn.transfer(src, dst)
    w = src[0].weight.detach()
    expected = torch.sign(w.sum(dim=1, keepdim=True)).to(torch.int8)
    assert torch.equal(t["0.weight"], expected)
    assert report.adapted == [("0.weight", "0.weight", "input channels 3 → 1: sign of the summed source weights")]
    assert report.unmatched == ["6.weight"] and "6.weight" not in t
    assert t.meta["transfer"]["unmatched"] == ["6.weight"]
    pn.align(dst, t)
    assert pn.violations(dst, t) == 0


def test_template_source_uses_majority_vote_with_ties_to_plus_one() -> None:
    signs = torch.tensor([1, -1, -1, 1, 1, -1, 0, 0, 0, 1, 0, -1]).view(4, 3, 1, 1).to(torch.int8)
    src = pn.PolarityTemplate({"conv.weight": signs})
    dst = nn.Sequential()
    dst.add_module("conv", nn.Conv2d(1, 4, 1, bias=False))
    t, report = pn.transfer(src, dst)
    assert t["conv.weight"].view(-1).tolist() == [-1, 1, 0, 1]  # (-1), (+1), all zero -> 0, tie -> +1
    assert "majority vote" in report.adapted[0][2]


def test_gray_to_rgb_repeats_the_channel() -> None:
    src, dst = convnet(1, 10), convnet(3, 10)
    t, report = pn.transfer(src, dst)
    one = torch.sign(src[0].weight.detach()).to(torch.int8)
    assert torch.equal(t["0.weight"], one.expand(4, 3, 3, 3))
    assert "repeated" in report.adapted[0][2]


def test_random_head_gets_its_own_template() -> None:
    t, report = pn.transfer(convnet(3, 1000), convnet(3, 10), head_policy="random", seed=3)
    assert t["6.weight"].shape == (10, 8) and set(t["6.weight"].unique().tolist()) == {-1, 1}
    assert report.adapted[0][0] == "6.weight" and "random" in report.adapted[0][2]
    again, _ = pn.transfer(convnet(3, 1000), convnet(3, 10), head_policy="random", seed=3)
    assert torch.equal(again["6.weight"], t["6.weight"])


@pytest.mark.parametrize("policy", ["free", "random"])
def test_the_old_head_policy_spelling_warns_and_still_works(policy: str) -> None:
    src, dst = convnet(3, 1000), convnet(3, 10)
    with pytest.warns(DeprecationWarning, match=f"head_policy='{policy}'"):
        old, old_report = pn.transfer(src, dst, head=policy, seed=3)
    new, new_report = pn.transfer(src, dst, head_policy=policy, seed=3)  # type: ignore[arg-type]
    assert dict(old.items()).keys() == dict(new.items()).keys() and old_report == new_report
    assert all(torch.equal(old[n], new[n]) for n in new)
    with pytest.raises(ValueError, match="contradicts"), pytest.warns(DeprecationWarning):
        pn.transfer(convnet(3, 1000), convnet(3, 10), head=policy, head_policy="free" if policy == "random" else "random")


def test_matching_by_order_when_names_differ() -> None:
    src = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2))
    dst = nn.Module()
    dst.hidden, dst.out = nn.Linear(5, 7), nn.Linear(7, 2)
    t, report = pn.transfer(src.state_dict(), dst)
    assert report.matched == [("hidden.weight", "0.weight"), ("out.weight", "2.weight")]
    assert torch.equal(t["hidden.weight"], torch.sign(src[0].weight).to(torch.int8))


def test_unused_source_layers_and_extra_target_layers_are_reported() -> None:
    src = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4))
    dst = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten(), nn.Linear(4, 4))
    t, report = pn.transfer(src, dst)
    assert report.unmatched == ["0.weight"]  # no conv in the source
    assert report.matched == [("2.weight", "2.weight")]
    assert report.unused == ["0.weight", "1.weight"]
    assert "unused" in str(report) and "free" in str(report)


def test_other_shape_mismatch_names_layer_and_shapes() -> None:
    src = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    dst = nn.Sequential(nn.Conv2d(3, 5, 3), nn.Flatten(), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"'0.weight'.*\(4, 3, 3, 3\).*\(5, 3, 3, 3\)"):
        pn.transfer(src, dst)


def test_bad_head_option() -> None:
    with pytest.raises(ValueError, match=r"head='drop' names no parameter or layer of the target; name a module such as '6'"):
        pn.transfer(convnet(3, 10), convnet(3, 10), head="drop")
    with pytest.raises(ValueError, match="head_policy must be 'free'"):
        pn.transfer(convnet(3, 10), convnet(3, 10), head_policy="drop")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- NaN and ±inf (issue 8, finding 9)
def _with_nan(in_ch: int = 3) -> nn.Sequential:
    net = convnet(in_ch, 10)
    with torch.no_grad():
        net[0].weight[0, 0, 0, :] = float("nan")
    return net


@pytest.mark.parametrize("path", ["model", "state_dict", "adapted 3 → 1", "adapted 1 → 3"])
def test_nan_source_weights_are_refused_as_from_model_refuses_them(path: str) -> None:
    src = _with_nan(1 if path == "adapted 1 → 3" else 3)
    source = src.state_dict() if path == "state_dict" else src
    target = convnet(1, 10) if path == "adapted 3 → 1" else convnet(3, 10)
    with pytest.raises(ValueError, match="NaN") as from_model:
        pn.PolarityTemplate.from_model(src)
    with pytest.raises(ValueError) as transferred:
        pn.transfer(source, target)
    assert str(transferred.value) == str(from_model.value)  # one check, one message: layer and count
    assert "'0.weight'" in str(transferred.value) and "3 of" in str(transferred.value)


def test_nan_in_a_source_layer_no_target_reads_is_not_an_error() -> None:
    src = convnet(3, 1000)
    with torch.no_grad():
        src[6].weight[0, 0] = float("nan")  # the head: left free, never read
    t, report = pn.transfer(src, convnet(3, 10))
    assert report.unmatched == ["6.weight"] and "6.weight" not in t


def test_infinite_source_weights_keep_their_sign() -> None:
    src, dst = convnet(3, 10), convnet(3, 10)
    with torch.no_grad():
        src[0].weight[0, 0, 0, 0], src[0].weight[0, 0, 0, 1] = float("inf"), -float("inf")
    t, _ = pn.transfer(src, dst)
    assert t["0.weight"][0, 0, 0, :2].tolist() == [1, -1]
    assert torch.equal(t["0.weight"], pn.PolarityTemplate.from_model(src)["0.weight"])
    gray, _ = pn.transfer(src, convnet(1, 10))  # summed: +inf dominates its position
    assert gray["0.weight"][0, 0, 0, 0] == 1


def test_plus_and_minus_infinity_summed_over_channels_are_refused() -> None:
    src = convnet(3, 10)
    with torch.no_grad():
        src[0].weight[0, 0, 0, 0], src[0].weight[0, 1, 0, 0] = float("inf"), -float("inf")
    with pytest.raises(ValueError, match=r"'0.weight': at 1 positions .*\+inf and -inf"):
        pn.transfer(src, convnet(1, 10))


def test_meta_device_source_is_refused_by_name() -> None:
    with torch.device("meta"):
        src = convnet(3, 10)
    with pytest.raises(ValueError, match="'0.weight': weights on the meta device have no values"):
        pn.transfer(src, convnet(3, 10))


def test_a_template_source_cannot_carry_nan() -> None:
    with pytest.raises(ValueError):
        pn.PolarityTemplate({"0.weight": torch.tensor([float("nan"), 1.0])})


# --------------------------------------------------------------------------- ConvTranspose (finding 19)
def deconv(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(in_ch, out_ch, 3), nn.ReLU(), nn.Conv2d(out_ch, 2, 1))


@pytest.mark.parametrize("as_state_dict", [False, True])
def test_conv_transpose_input_channels_are_axis_0(as_state_dict: bool) -> None:
    src = deconv(3, 4)
    source = src.state_dict() if as_state_dict else src
    t, report = pn.transfer(source, deconv(1, 4))  # weight (3, 4, 3, 3) → (1, 4, 3, 3)
    w = src[0].weight.detach()
    assert torch.equal(t["0.weight"], torch.sign(w.sum(dim=0, keepdim=True)).to(torch.int8))
    assert report.adapted == [("0.weight", "0.weight", "input channels 3 → 1: sign of the summed source weights")]
    back, report = pn.transfer(deconv(1, 4), deconv(3, 4))
    assert back["0.weight"].shape == (3, 4, 3, 3) and bool((back["0.weight"] == back["0.weight"][:1]).all())
    assert "input channels 1 → 3" in report.adapted[0][2]


def test_conv_transpose_output_channels_are_not_input_channels() -> None:
    # (4, 3, 3, 3) → (4, 1, 3, 3) changes the *output* channels of a ConvTranspose2d
    with pytest.raises(ValueError, match=r"'0.weight'.*\(4, 3, 3, 3\).*\(4, 1, 3, 3\)"):
        pn.transfer(deconv(4, 3), nn.Sequential(nn.ConvTranspose2d(4, 1, 3), nn.ReLU(), nn.Conv2d(1, 2, 1)))


def test_a_lone_head_left_free_is_named_in_the_error() -> None:
    # no linear layer: the head is the last layer
    with pytest.raises(ValueError, match=r"only matched target layer is the head 'weight'.*\(4, 3, 3, 3\).*head_policy='random'"):
        pn.transfer(nn.ConvTranspose2d(4, 3, 3), nn.ConvTranspose2d(4, 1, 3))
    t, _ = pn.transfer(nn.ConvTranspose2d(4, 3, 3), nn.ConvTranspose2d(4, 1, 3), head_policy="random")
    assert t["weight"].shape == (4, 1, 3, 3)


def test_conv_and_conv_transpose_models_do_not_match_each_other() -> None:
    conv = nn.Sequential(nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    t, report = pn.transfer(conv, nn.Sequential(nn.ConvTranspose2d(4, 4, 3), nn.Flatten(), nn.Linear(4, 2)))
    assert report.unmatched == ["0.weight"] and report.unused == ["0.weight"]
    assert report.matched == [("2.weight", "2.weight")]


# --------------------------------------------------------------------------- match_layers
def test_a_source_sorted_as_text_pairs_its_leftover_layers_in_numeric_order(tmp_path) -> None:
    """A .safetensors file lists its names sorted as text (features.10 before features.3): the
    layers that names don't pair still pair in the network's order; any other order is kept."""
    from collections import OrderedDict

    from safetensors.torch import save_file

    from polarnet.sources import load_state_dict
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3), nn.Conv2d(4, 5, 3), nn.Conv2d(5, 6, 3)]
    modules: list[nn.Module] = [nn.ReLU() for _ in range(11)]
    modules[0], modules[3], modules[10] = layers
    source = nn.Sequential(OrderedDict(features=nn.Sequential(*modules)))
    path = tmp_path / "source.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    state = load_state_dict(path)
    weights = [n for n in state if n.endswith("weight")]
    assert weights == ["features.0.weight", "features.10.weight", "features.3.weight"]  # as the file has them
    target = nn.Sequential(OrderedDict(a=nn.Conv2d(1, 4, 3), b=nn.Conv2d(4, 5, 3), c=nn.Conv2d(5, 6, 3)))
    pairs = match_layers(state, target)
    assert pairs == {"a.weight": "features.0.weight", "b.weight": "features.3.weight", "c.weight": "features.10.weight"}
    template, report = pn.transfer(state, target)
    assert torch.equal(template["c.weight"], torch.sign(layers[2].weight.detach()).to(template["c.weight"].dtype))
    # a source in module order keeps it, though its numbers are not sorted as text
    assert match_layers(source.state_dict(), target) == pairs


def test_match_layers_by_name_then_order_with_biases() -> None:
    src = {f"module.{k}": v for k, v in convnet(3, 10).state_dict().items()}
    pairs = match_layers(src, convnet(3, 10), bias=True)
    assert pairs == {k: f"module.{k}" for k in convnet(3, 10).state_dict()}


def test_match_layers_is_what_transfer_uses() -> None:
    src = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2))
    dst = nn.Module()
    dst.hidden, dst.out = nn.Linear(5, 7), nn.Linear(7, 2)
    _, report = pn.transfer(src, dst)
    assert match_layers(src, dst) == dict(report.matched) == {"hidden.weight": "0.weight", "out.weight": "2.weight"}


def test_seed_is_validated() -> None:
    with pytest.raises(ValueError, match=r"seed must be a whole number in \[0, 2\*\*63 - 1\]"):
        pn.transfer(convnet(3, 10), convnet(3, 10), seed=2**70)


# --------------------------------------------------------------------------- head=, num_classes=
def test_the_default_head_is_the_last_linear_layer_not_the_last_selected_one() -> None:
    src = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 6, 3), nn.Flatten(), nn.Linear(6, 10))
    dst = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 5, 3), nn.Flatten(), nn.Linear(5, 10))
    from polarnet.transfer import head_layers

    assert head_layers(dst) == ["3.weight"]
    # with layers="conv" the last convolution is not a head: its mismatch is an error, as with "all"
    for layers in ("conv", "all"):
        with pytest.raises(ValueError) as e:
            pn.transfer(src, dst, layers=layers)
        assert str(e.value) == ("layer '1.weight': source '1.weight' has shape (6, 4, 3, 3) ≠ target shape (5, 4, 3, 3); "
                                "only a change of input channels to or from 1, or of the last layer (head), can be adapted")
    # naming it the head frees it
    t, report = pn.transfer(src, dst, layers="conv", head="1")
    assert report.unmatched == ["1.weight"] and list(t) == ["0.weight"]


@pytest.mark.parametrize("head", ["6", "6.weight", ["6"], ("2", "6.weight")])
def test_head_by_module_or_parameter_name(head) -> None:
    t, report = pn.transfer(convnet(3, 1000), convnet(3, 10), head=head, head_policy="random")
    assert report.adapted[0][0] == "6.weight" and "own random template" in report.adapted[0][2]


def test_a_named_head_that_is_not_the_last_layer() -> None:
    src = nn.Sequential(nn.Linear(4, 1000), nn.ReLU(), nn.Linear(1000, 3))
    dst = nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 3))  # the last layer takes 10 inputs: a mismatch too
    with pytest.raises(ValueError, match="'0.weight'"):
        pn.transfer(src, dst)
    with pytest.raises(ValueError, match=r"'2.weight'.*or of the head \(0.weight; name another with head=\)"):
        pn.transfer(src, dst, head="0")  # the last layer still mismatches and is no head now
    t, report = pn.transfer(src, dst, head=["0", "2"], head_policy="random")
    assert [a[0] for a in report.adapted] == ["0.weight", "2.weight"] and not report.matched
    # left free, no layer is constrained: an error that says so
    with pytest.raises(ValueError, match=r"every matched target layer is a head: '0.weight' .*, '2.weight' .*head_policy='random'"):
        pn.transfer(src, dst, head=["0", "2"])


def test_num_classes_picks_the_layer_with_that_many_outputs() -> None:
    from polarnet.transfer import head_layers

    # an auxiliary layer after the classifier: the last linear layer is not the head
    src = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1000), nn.Linear(1000, 1))
    dst = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 10), nn.Linear(10, 1))
    assert head_layers(dst) == ["3.weight"] and head_layers(dst, num_classes=10) == ["2.weight"]
    with pytest.raises(ValueError, match="'2.weight'"):
        pn.transfer(src, dst)
    with pytest.raises(ValueError, match="'3.weight'"):  # (1, 1000) → (1, 10): not the head either
        pn.transfer(src, dst, num_classes=10)
    t, report = pn.transfer(src, dst, head=["2", "3"], head_policy="random")
    assert [a[0] for a in report.adapted] == ["2.weight", "3.weight"]
    with pytest.raises(ValueError, match=r"num_classes=7: no layer of the target has 7 outputs.*3.weight: 1.*head=NAME"):
        head_layers(dst, num_classes=7)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_classes must be a positive whole number"):
            head_layers(dst, num_classes=bad)  # type: ignore[arg-type]


def test_head_names_are_checked() -> None:
    from polarnet.transfer import head_layers

    with pytest.raises(ValueError, match="head is an empty list"):
        head_layers(convnet(3, 10), [])
    with pytest.raises(TypeError, match="by str"):
        head_layers(convnet(3, 10), [6])  # type: ignore[list-item]
    # a module of no registered kind with a weight can be named too
    net = nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4))
    assert head_layers(net, "1") == ["1.weight"]


def test_a_layer_named_like_the_old_policy_is_a_head_name() -> None:
    src, dst = nn.Module(), nn.Module()
    src.body, src.random = nn.Linear(3, 4), nn.Linear(4, 100)
    dst.body, dst.random = nn.Linear(3, 4), nn.Linear(4, 10)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, report = pn.transfer(src, dst, head="random")
    assert report.unmatched == ["random.weight"]


def test_a_tied_head_is_known_under_its_first_name() -> None:
    from polarnet.transfer import head_layers

    def tied_lm(vocab: int) -> nn.Module:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Embedding(vocab, 4), nn.Linear(4, 4), nn.Linear(4, vocab, bias=False))
        net[2].weight = net[0].weight
        return net

    assert head_layers(tied_lm(20)) == ["0.weight", "2.weight"]
    t, report = pn.transfer(tied_lm(20), tied_lm(30))  # a new vocabulary: the tied embedding is the head
    assert report.unmatched == ["0.weight"] and report.matched == [("1.weight", "1.weight")]


# --------------------------------------------------------------------------- new layer kinds
def test_transformer_encoder_layers_transfer_every_projection() -> None:
    torch.manual_seed(0)
    src, dst = nn.TransformerEncoderLayer(8, 2, 16), nn.TransformerEncoderLayer(8, 2, 16)
    t, report = pn.transfer(src, dst)
    assert [m[0] for m in report.matched] == ["self_attn.in_proj_weight", "self_attn.out_proj.weight",
                                              "linear1.weight", "linear2.weight"]
    assert torch.equal(t["self_attn.in_proj_weight"], torch.sign(src.self_attn.in_proj_weight).to(torch.int8))


def _gpt2(vocab: int = 16) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=vocab, n_positions=8,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config)


def test_gpt2_to_a_gpt2_of_another_vocabulary() -> None:
    torch.manual_seed(0)
    src, dst = _gpt2(16), _gpt2(32)
    for source in (src, src.state_dict()):
        t, report = pn.transfer(source, dst)
        # the embedding tied to the LM head is the head: left free; every Conv1D layer copied
        assert report.unmatched == ["transformer.wte.weight"]
        assert [m[0] for m in report.matched] == ["transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight",
                                                  "transformer.h.0.attn.c_proj.weight", "transformer.h.0.mlp.c_fc.weight",
                                                  "transformer.h.0.mlp.c_proj.weight"]
        assert torch.equal(t["transformer.h.0.attn.c_attn.weight"],
                           torch.sign(src.transformer.h[0].attn.c_attn.weight).to(torch.int8))


def test_a_conv1d_and_a_linear_layer_are_different_layouts() -> None:
    pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    src = nn.Sequential(Conv1D(4, 4), nn.ReLU(), nn.Linear(4, 2))
    dst = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    _, report = pn.transfer(src, dst)
    assert report.unmatched == ["0.weight"] and report.unused == ["0.weight"]
    # a state dict can't tell them apart: read in the target's layout
    _, report = pn.transfer(src.state_dict(), dst)
    assert report.matched[0] == ("0.weight", "0.weight")


# --------------------------------------------------------------------------- rename=
def _resnet_without_layer1(classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 under ``backbone.``, without ``layer1`` (conv1's 64 channels feed layer2),
    and a head of its own, registered before the backbone."""
    from torchvision.models import resnet18

    net = resnet18()
    model = nn.Module()
    model.head = nn.Linear(512, classes)
    model.backbone = nn.Module()
    for name in ("conv1", "bn1", "layer2", "layer3", "layer4"):
        model.backbone.add_module(name, getattr(net, name))
    return model


def test_rename_maps_torchvision_names_onto_another_model() -> None:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    state = resnet18().state_dict()
    target = _resnet_without_layer1()
    # in order, backbone.layer2's first convolution would take layer1's: an error
    with pytest.raises(ValueError, match=r"'backbone.layer2.0.conv1.weight': source 'layer1.0.conv1.weight'"):
        pn.transfer(state, target)
    prefix = {"fc.weight": "head.weight"}
    t, report = pn.transfer(state, target, rename=lambda n: prefix.get(n, f"backbone.{n}"))
    assert all(d == f"backbone.{s}" for d, s in report.matched)  # every pair by name; report: the source's names
    assert len(report.matched) == 1 + 3 * (4 + 1) and not report.adapted  # conv1; 4 convs + a downsample per stage
    assert report.unused == [n for n in pn.select_layers(state) if n.startswith("layer1.")]
    assert report.unmatched == ["head.weight"]  # 1000 → 10 classes: the head, left free
    assert torch.equal(t["backbone.layer4.1.conv2.weight"], torch.sign(state["layer4.1.conv2.weight"]).to(torch.int8))
    # a mapping does the same; a name it doesn't map keeps its own (and here matches nothing by name)
    mapping = {n: f"backbone.{n}" for n in state if not n.startswith("fc.")}
    again, report2 = pn.transfer(state, target, rename=mapping)
    assert report2.matched == report.matched and all(torch.equal(again[n], t[n]) for n in t)
    assert match_layers(state, target, rename=mapping)["backbone.conv1.weight"] == "conv1.weight"


def test_timm_resnet18_names_are_torchvisions() -> None:
    timm = pytest.importorskip("timm")
    from torchvision.models import resnet18

    torch.manual_seed(0)
    src = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    t, report = pn.transfer(src, resnet18(num_classes=10))
    assert all(d == s for d, s in report.matched) and len(report.matched) == 20
    assert report.unmatched == ["fc.weight"] and not report.unused


def test_rename_none_leaves_a_source_layer_out() -> None:
    src, dst = convnet(3, 10), convnet(3, 10)
    t, report = pn.transfer(src, dst, rename=lambda n: None if n.startswith("0.") else n)
    assert report.unmatched == ["0.weight"] and report.unused == ["0.weight"] and "0.weight" not in t


@pytest.mark.parametrize("rename, error, message", [
    ({"nope.weight": "0.weight"}, ValueError, r"rename maps names the source does not have: \['nope.weight'\]"),
    ({"0.weight": "x", "2.weight": "x"}, ValueError, r"source layers '0.weight' and '2.weight' one name, 'x'"),
    (lambda n: 3, TypeError, r"turns source layer '0.weight' into 3"),
    ({"0.weight": 3}, TypeError, r"turns source layer '0.weight' into 3"),
    (["0.weight"], TypeError, "rename must be a mapping"),
])
def test_bad_renames_are_refused_by_name(rename, error, message) -> None:
    with pytest.raises(error, match=message):
        pn.transfer(convnet(3, 10), convnet(3, 10), rename=rename)


def test_rename_works_for_a_template_source() -> None:
    src = pn.PolarityTemplate.random(convnet(3, 10), seed=1)
    dst = nn.Module()
    dst.classifier, dst.features = convnet(3, 10)[4:], convnet(3, 10)[:4]  # a slice keeps its names: 4, 6
    t, report = pn.transfer(src, dst, rename=lambda n: f"features.{n}" if int(n[0]) < 4 else f"classifier.{n}")
    assert report.matched == [("classifier.4.weight", "4.weight"), ("classifier.6.weight", "6.weight"),
                              ("features.0.weight", "0.weight"), ("features.2.weight", "2.weight")]
    # without renaming, in order: the classifier's layers come first in the target, and still pair by kind
    assert match_layers(src, dst)["classifier.4.weight"] == "4.weight"


@settings(max_examples=25, deadline=None)
@given(prefix=st.text(alphabet="abcxyz_.", min_size=1, max_size=8), order=st.permutations(range(4)))
def test_renaming_a_renamed_source_back_gives_the_same_template(prefix: str, order: list[int]) -> None:
    # whatever the source's names and key order, renaming them to the target's pairs every layer by name
    torch.manual_seed(0)
    src, dst = convnet(3, 10), convnet(3, 10)
    state = src.state_dict()
    names = [n for n in state if n.endswith("weight")]
    shuffled = {f"{prefix}{names[i]}": state[names[i]] for i in order}
    t, report = pn.transfer(shuffled, dst, rename=lambda n: n[len(prefix):])
    plain, _ = pn.transfer(src, dst)
    assert list(t) == list(plain) and all(torch.equal(t[n], plain[n]) for n in plain)
    assert report.matched == [(n, f"{prefix}{n}") for n in names]
