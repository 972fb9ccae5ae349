from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import polarnet as pn


def test_sign_change_fraction_by_hand() -> None:
    before = {"a": torch.tensor([1, -1, 0, 1], dtype=torch.int8), "b": torch.tensor([1, 1], dtype=torch.int8)}
    after = {"a": torch.tensor([1, 1, 1, 1], dtype=torch.int8), "b": torch.tensor([1, 1], dtype=torch.int8)}
    assert pn.sign_change_fraction(before, after) == {"a": 0.5, "b": 0.0}
    with pytest.raises(ValueError, match="different layers"):
        pn.sign_change_fraction(before, {"a": after["a"]})


def test_tracker_follows_training_of_a_fluid_net() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
    tracker = pn.SignTracker(net)
    start = {n: torch.sign(p.detach()).clone() for n, p in net.named_parameters() if n.endswith("weight")}
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net(torch.randn(32, 6)).pow(2).mean().backward()
    opt.step()
    fractions = tracker.update()
    for name, frac in fractions.items():
        now = torch.sign(net.get_parameter(name).detach())
        assert frac == pytest.approx((now != start[name]).float().mean().item())
    assert tracker.update() == {name: 0.0 for name in fractions}


def proportions_strategy():
    return st.tuples(st.integers(0, 10), st.integers(0, 10), st.integers(0, 10)).filter(lambda c: sum(c) > 0).map(
        lambda c: tuple(v / sum(c) for v in c)
    )


@settings(max_examples=40, deadline=None)
@given(p=proportions_strategy(), fraction=st.floats(0, 1), seed=st.integers(0, 1000), mode=st.sampled_from(["pattern", "literal"]))
def test_swap_keeps_proportions_and_flips_the_promised_count(p, fraction, seed, mode) -> None:
    net = nn.Linear(12, 10)
    t = pn.PolarityTemplate.from_proportions(net, {"weight": p}, seed=seed)
    pn.align(net, t)
    before_t, before_w = t["weight"].clone(), net.weight.detach().clone()
    zeros, neg, pos = t.counts()["weight"]
    flipped = pn.fluid_spin_swap(net, t, fraction, mode=mode, seed=seed)
    k = min(round(fraction * (neg + pos) / 2), neg, pos)
    assert flipped == {"weight": 2 * k}
    assert t.counts()["weight"] == (zeros, neg, pos)
    changed = net.weight.detach() != before_w
    assert int(changed.sum()) == 2 * k
    assert torch.equal(net.weight.detach()[changed], -before_w[changed])
    assert bool((before_t[changed] > 0).sum() == k)  # as many positives as negatives flipped
    assert bool((t["weight"] == 0).eq(before_t == 0).all())  # zeros never move
    if mode == "pattern":
        assert int((t["weight"] != before_t).sum()) == 2 * k
        assert pn.violations(net, t) == 0
    else:
        assert torch.equal(t["weight"], before_t)
        assert pn.violations(net, t) == 2 * k


def test_pattern_swap_under_freeze_keeps_training_on_the_new_pattern() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    t = pn.PolarityTemplate.from_proportions(net, (0.1, 0.45, 0.45), seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    handle = pn.freeze(net, t, opt)
    x = torch.randn(64, 8)
    for epoch in range(3):
        for _ in range(5):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
            assert pn.violations(net, t) == 0
        pn.fluid_spin_swap(net, t, 0.5, seed=epoch)
    assert handle.steps == 15
    assert t.proportions()["0.weight"] == pytest.approx((0.1, 0.45, 0.45), abs=1 / 256)


def test_literal_swap_is_undone_by_the_next_enforcement() -> None:
    net = nn.Linear(10, 10)
    t = pn.PolarityTemplate.random(net, seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    handle = pn.freeze(net, t, opt)
    pn.fluid_spin_swap(net, t, 0.5, mode="literal", seed=0)
    assert pn.violations(net, t) > 0
    opt.step()
    assert pn.violations(net, t) == 0 and handle.last_resets["weight"] > 0


def test_swap_rejects_bad_arguments() -> None:
    net = nn.Linear(3, 3)
    t = pn.PolarityTemplate.random(net)
    with pytest.raises(ValueError, match="fraction"):
        pn.fluid_spin_swap(net, t, 1.5)
    with pytest.raises(ValueError, match="mode"):
        pn.fluid_spin_swap(net, t, 0.5, mode="moving")  # type: ignore[arg-type]


def test_fluid_spin_swap_keeps_tied_weights_on_one_pattern() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 6))
    net[1].weight = net[0].weight  # tied, as a language model's embedding and decoder
    t = pn.PolarityTemplate.from_model(net.state_dict(), layers=["0.weight", "1.weight"])  # both names
    assert set(t) >= {"0.weight", "1.weight"}
    before = t["0.weight"]
    flipped = pn.fluid_spin_swap(net, t, 0.5, seed=0)
    assert flipped == {"0.weight": 18} or flipped == {"1.weight": 18}
    assert torch.equal(t["0.weight"], t["1.weight"]) and not torch.equal(t["0.weight"], before)
    assert pn.violations(net, t) == 0
    assert t.proportions()["0.weight"] == pn.PolarityTemplate({"w": before}).proportions()["w"]
