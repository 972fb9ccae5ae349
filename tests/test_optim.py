"""Tests for polarnet.optim: EG and AdamEG against hand computation and torch.optim.Adam."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import polarnet as pn
from polarnet.optim import EG, AdamEG, adam_, eg_, eg_groups


def test_plain_eg_step_by_hand():
    w = nn.Parameter(torch.tensor([0.5, -0.25, 0.0, -0.0], dtype=torch.float64))
    opt = EG([w], lr=0.2)
    w.grad = torch.tensor([1.0, -2.0, 3.0, 1.0], dtype=torch.float64)
    opt.step()
    expected = [0.5 * math.exp(-0.2 * 1.0), -0.25 * math.exp(-0.2 * (-1) * (-2.0)), 0.0, 0.0]
    assert w.detach().tolist() == pytest.approx(expected, rel=1e-15)
    assert torch.signbit(w[3])  # -0.0 stays -0.0


def test_gd_groups_are_plain_sgd_and_adam_bit_for_bit():
    torch.manual_seed(0)
    grads = [torch.randn(3, 4) for _ in range(5)]
    start = torch.randn(3, 4)
    a, b = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    ours, theirs = AdamEG([a], lr=0.01, update="gd"), torch.optim.Adam([b], lr=0.01, foreach=False)
    c, d = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    sgd_ours, sgd_theirs = EG([c], lr=0.1, update="gd"), torch.optim.SGD([d], lr=0.1)
    for g in grads:
        for p in (a, b, c, d):
            p.grad = g.clone()
        for o in (ours, theirs, sgd_ours, sgd_theirs):
            o.step()
    assert torch.equal(a, b) and torch.equal(c, d)


def test_adam_eg_step_by_hand():
    w = nn.Parameter(torch.tensor([0.4, -0.3], dtype=torch.float64))
    opt = AdamEG([w], lr=0.1, eps=1e-8)
    g = torch.tensor([0.2, 0.5], dtype=torch.float64)
    w.grad = g.clone()
    opt.step()
    # first step: m = 0.1 g, v = 0.001 g², bias corrections 0.1 and 0.001 → m̂/(√v̂+ε) = g/(|g|+ε)
    direction = g / (g.abs() + 1e-8)
    expected = torch.tensor([0.4, -0.3], dtype=torch.float64) * torch.exp(-0.1 * torch.tensor([1.0, -1.0],
                                                                                               dtype=torch.float64) * direction)
    torch.testing.assert_close(w.detach(), expected, rtol=1e-12, atol=0)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-10, 10), min_size=1, max_size=12),
       grads=st.lists(st.floats(-100, 100), min_size=12, max_size=12), lr=st.floats(1e-4, 1.0))
def test_eg_never_changes_a_sign_and_keeps_zeros(values, grads, lr):
    w = torch.tensor(values, dtype=torch.float64)
    before = w.clone()
    for opt_kind in ("plain", "adam"):
        p = nn.Parameter(before.clone())
        opt = EG([p], lr=lr) if opt_kind == "plain" else AdamEG([p], lr=lr)
        for _ in range(3):
            p.grad = torch.tensor(grads[: len(values)], dtype=torch.float64)
            opt.step()
        assert torch.equal(torch.sign(p.detach()[p.detach() != 0]), torch.sign(before[p.detach() != 0]))
        assert torch.all(p.detach()[before == 0] == 0)
        assert torch.all(torch.isfinite(p.detach()))


def test_adam_eg_factor_per_step_is_bounded_by_about_3_lr():
    p = nn.Parameter(torch.tensor([1.0]))
    opt = AdamEG([p], lr=0.1)
    for g in [1e-6] * 30 + [1e6]:  # a spike after a calm: Adam's largest step
        p.grad = torch.tensor([g])
        before = p.item()
        opt.step()
    assert math.exp(-3.2 * 0.1) < p.item() / before < 1


def test_stacked_multiplicative_per_member_equals_each_member_alone():
    torch.manual_seed(0)
    w = torch.randn(3, 4, dtype=torch.float64)
    g = torch.randn(3, 4, dtype=torch.float64)
    mask = torch.tensor([True, False, True])
    lr = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    stacked, m, v = w.clone(), torch.zeros_like(w), torch.zeros_like(w)
    adam_([stacked], [g], [m], [v], torch.tensor([1, 1, 1]), lr, 1e-8, multiplicative=[mask])
    for k in range(3):
        alone, mk, vk = w[k].clone(), torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
        adam_([alone], [g[k]], [mk], [vk], 1, float(lr[k]), 1e-8, multiplicative=[bool(mask[k])])
        torch.testing.assert_close(stacked[k], alone, rtol=1e-15, atol=1e-15)


def test_eg_in_place_helper_broadcasts_one_size_per_member():
    w = torch.tensor([[1.0, -1.0], [2.0, -2.0]])
    eg_([w], [torch.ones(2, 2)], torch.tensor([[-0.5], [0.0]]))
    torch.testing.assert_close(w, torch.tensor([[math.exp(-0.5), -math.exp(0.5)], [2.0, -2.0]]))


def test_eg_groups_split_template_weights_from_the_rest():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    t = pn.PolarityTemplate({"0.weight": torch.ones(4, 3)})
    eg, gd = eg_groups(net, t, lr=0.5)
    assert eg["update"] == "eg" and [id(p) for p in eg["params"]] == [id(net[0].weight)]
    assert {id(p) for p in gd["params"]} == {id(net[0].bias), id(net[2].weight), id(net[2].bias)}
    assert eg["lr"] == gd["lr"] == 0.5


@pytest.mark.parametrize("make, match", [
    (lambda p: EG([p], lr=0.0), "lr must be > 0"),
    (lambda p: AdamEG([p], lr=-1.0), "lr must be > 0"),
    (lambda p: AdamEG([p], betas=(0.8, 0.99)), "default betas"),
    (lambda p: EG([{"params": [p], "update": "mul"}]), "update must be 'eg'"),
])
def test_bad_settings_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make(nn.Parameter(torch.ones(2)))


@settings(max_examples=40, deadline=None)
@given(members=st.integers(1, 9), shape=st.sampled_from([(7,), (30, 41), (6, 1, 5, 5)]),
       per_member_lr=st.booleans(), per_member_step=st.booleans(), update=st.sampled_from(["gd", "eg", "mixed"]),
       seed=st.integers(0, 2**31))
def test_a_large_tensor_updated_a_slice_of_rows_at_a_time_gives_the_same_bits(members, shape, per_member_lr,
                                                                              per_member_step, update, seed):
    """On a CPU, tensors above ``_CPU_SLICE`` entries are updated rows at a time (to stay in
    cache); with the slice forced small, every number equals the whole-tensor update's."""
    from polarnet import optim
    torch.manual_seed(seed)
    p, g = torch.randn(members, *shape), torch.randn(members, *shape)
    avg, square = torch.randn(members, *shape) * 0.1, torch.rand(members, *shape) * 0.01
    lr = torch.rand(members, dtype=torch.float64) if per_member_lr else 1e-3
    step = torch.randint(1, 50, (members,)) if per_member_step else 7
    kind = {"gd": False, "eg": True, "mixed": torch.rand(members) < 0.5}[update]
    out = []
    for slice_size in (10**12, 16):
        state = [p.clone(), avg.clone(), square.clone()]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(optim, "_CPU_SLICE", slice_size)
            for _ in range(3):
                adam_([state[0]], [g], [state[1]], [state[2]], step, lr, 1e-8, multiplicative=[kind])
        out.append(state)
    for whole, sliced in zip(*out):
        assert torch.equal(whole, sliced)
    assert len(optim._slices(torch.zeros(members * 1000, 100))) > 1
    assert optim._slices(torch.zeros(3, 4)) == [slice(None)]
