from __future__ import annotations

import pytest
import torch
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
    t, report = pn.transfer(convnet(3, 1000), convnet(3, 10), head="random", seed=3)
    assert t["6.weight"].shape == (10, 8) and set(t["6.weight"].unique().tolist()) == {-1, 1}
    assert report.adapted[0][0] == "6.weight" and "random" in report.adapted[0][2]
    again, _ = pn.transfer(convnet(3, 1000), convnet(3, 10), head="random", seed=3)
    assert torch.equal(again["6.weight"], t["6.weight"])


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
    with pytest.raises(ValueError, match="head"):
        pn.transfer(convnet(3, 10), convnet(3, 10), head="drop")  # type: ignore[arg-type]


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
    with pytest.raises(ValueError, match=r"only matched target layer is the head 'weight'.*\(4, 3, 3, 3\).*head='random'"):
        pn.transfer(nn.ConvTranspose2d(4, 3, 3), nn.ConvTranspose2d(4, 1, 3))
    t, _ = pn.transfer(nn.ConvTranspose2d(4, 3, 3), nn.ConvTranspose2d(4, 1, 3), head="random")
    assert t["weight"].shape == (4, 1, 3, 3)


def test_conv_and_conv_transpose_models_do_not_match_each_other() -> None:
    conv = nn.Sequential(nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    t, report = pn.transfer(conv, nn.Sequential(nn.ConvTranspose2d(4, 4, 3), nn.Flatten(), nn.Linear(4, 2)))
    assert report.unmatched == ["0.weight"] and report.unused == ["0.weight"]
    assert report.matched == [("2.weight", "2.weight")]


# --------------------------------------------------------------------------- match_layers
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
