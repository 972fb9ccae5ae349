from __future__ import annotations

import pytest
import torch
from torch import nn

import polarnet as pn


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
