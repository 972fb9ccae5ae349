"""Tests for polarnet.freeze: Freeze-SGD enforcement, reset rules, violations, freeze()."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

from helpers import assert_unchanged, snapshot

import polarnet
from polarnet import RESETS, Enforcer, FreezeHandle, PolarityTemplate, enforce, freeze, register_reset, violations

BUILTIN_RESETS = ["flip", "posCon", "posRand", "zero"]


# --------------------------------------------------------------------------- helpers


def _check_invariant(model: nn.Module, t: PolarityTemplate) -> None:
    assert violations(model, t) == 0
    for name, signs in t.items():
        w = model.get_parameter(name).detach()
        s = signs.to(device=w.device, dtype=w.dtype)
        assert torch.isfinite(w).all(), name
        assert (w * s >= 0).all(), name
        zero = signs.to(w.device) == 0
        assert (w[zero] == 0).all(), name


def _hand_violations(model: nn.Module, t: PolarityTemplate) -> int:
    n = 0
    for name, signs in t.items():
        w = model.get_parameter(name).detach().flatten().tolist()
        for v, s in zip(w, signs.flatten().tolist()):
            n += (v * s < 0) or (s == 0 and v != 0)
    return n


def _make_optimizer(kind: str, params, lr: float, wd: float = 0.0) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if kind == "sgd_momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise AssertionError(kind)


# A tiny two-layer linear net whose violations are known by hand.
#   layer 0 (3×4):  weights                       template
#     [ 0.5, -0.2,  0.0, -0.0]                    [ 1,  1,  1,  1]
#     [-0.3,  0.7,  0.4,  0.0]                    [ 1, -1,  0,  0]
#     [-0.6,  0.0, -0.9,  0.25]                   [-1, -1,  1,  0]
#   violating: (0,1) (1,0) (1,1) (1,2: T=0) (2,2) (2,3: T=0)            → 6
#   boundary, NOT violating: (0,2) +0 with T=+1, (0,3) −0 with T=+1, (2,1) +0 with T=−1
#   layer 1 (2×3):
#     [ 0.1, -0.8,  0.0]                          [ 1, -1,  0]
#     [ 0.2,  0.3, -0.4]                          [-1,  1,  1]
#   violating: (1,0) (1,2)                                              → 2
W0 = [[0.5, -0.2, 0.0, -0.0], [-0.3, 0.7, 0.4, 0.0], [-0.6, 0.0, -0.9, 0.25]]
T0 = [[1, 1, 1, 1], [1, -1, 0, 0], [-1, -1, 1, 0]]
W1 = [[0.1, -0.8, 0.0], [0.2, 0.3, -0.4]]
T1 = [[1, -1, 0], [-1, 1, 1]]
BAD0 = [(0, 1), (1, 0), (1, 1), (1, 2), (2, 2), (2, 3)]
BAD1 = [(1, 0), (1, 2)]


def _hand_net(dtype=torch.float32) -> tuple[nn.Sequential, PolarityTemplate]:
    net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2)).to(dtype)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W0, dtype=dtype))
        net[2].weight.copy_(torch.tensor(W1, dtype=dtype))
        net[2].bias.copy_(torch.tensor([-0.5, 0.5], dtype=dtype))
    t = PolarityTemplate({"0.weight": torch.tensor(T0), "2.weight": torch.tensor(T1)})
    return net, t


def _expected(rule: str, eps: float) -> tuple[list[list[float]], list[list[float]]]:
    def reset(w, s):
        if s == 0:
            return 0.0
        return {"posCon": s * eps, "zero": 0.0, "flip": -w}[rule]

    e0 = [row[:] for row in W0]
    for i, j in BAD0:
        e0[i][j] = reset(W0[i][j], T0[i][j])
    e1 = [row[:] for row in W1]
    for i, j in BAD1:
        e1[i][j] = reset(W1[i][j], T1[i][j])
    return e0, e1


# --------------------------------------------------------------------------- the central invariant
def _build_model(kind: str, bn: bool, a: int, b: int, c: int) -> tuple[nn.Module, tuple[int, ...]]:
    if kind == "linear":
        layers: list[nn.Module] = [nn.Linear(a, b)]
        if bn:
            layers.append(nn.BatchNorm1d(b))
        layers += [nn.ReLU(), nn.Linear(b, c, bias=False), nn.Tanh(), nn.Linear(c, 2)]
        return nn.Sequential(*layers), (a,)
    layers = [nn.Conv2d(a, b, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(b))
    layers += [nn.ReLU(), nn.Conv2d(b, c, 2, bias=False), nn.Flatten(), nn.Linear(c * 3 * 3, 2)]
    return nn.Sequential(*layers), (a, 4, 4)


def _template(model: nn.Module, kind: str, p0: float, frac_neg: float, seed: int) -> PolarityTemplate:
    if kind == "random":
        return PolarityTemplate.random(model, p_positive=frac_neg, seed=seed)
    if kind == "model":
        return PolarityTemplate.from_model(model)
    p_neg = (1.0 - p0) * frac_neg
    return PolarityTemplate.from_proportions(model, (p0, p_neg, 1.0 - p0 - p_neg), seed=seed)


OPTIMIZERS = ["sgd", "sgd_momentum", "adam", "adamw", "rmsprop"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["linear", "conv"]),
    bn=st.booleans(),
    dims=st.tuples(st.integers(1, 6), st.integers(1, 8), st.integers(1, 5)),
    tkind=st.sampled_from(["random", "model", "proportions", "proportions"]),
    p0=st.sampled_from([0.0, 0.0, 0.1, 0.5, 0.9, 1.0]),
    frac_neg=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    opt=st.sampled_from(OPTIMIZERS),
    lr=st.one_of(st.sampled_from([1e-3, 0.1, 1.0, 10.0]), st.floats(1e-4, 10.0)),
    wd=st.floats(0.01, 0.5),
    reset=st.sampled_from(RESETS.names()),
    align=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_invariant_after_every_step(kind, bn, dims, tkind, p0, frac_neg, opt, lr, wd, reset, align, seed):
    torch.manual_seed(seed)
    model, in_shape = _build_model(kind, bn, *dims)
    t = _template(model, tkind, p0, frac_neg, seed)
    if not align:  # start from weights that already respect T, so only steps can break it
        polarnet.align(model, t)
    optimizer = _make_optimizer(opt, model.parameters(), lr, wd)
    handle = freeze(model, t, optimizer, reset=reset, align=align, seed=seed)
    _check_invariant(model, t)
    # only Conv/Linear weights are constrained (no biases, no BatchNorm parameters)
    assert all(n.endswith("weight") and isinstance(model.get_submodule(n.rsplit(".", 1)[0]), (nn.Linear, nn.Conv2d))
               for n in t)
    total = 0
    for step in range(4):
        x = torch.randn(4, *in_shape) * 3
        y = torch.randn(4, 2)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # keep weights finite at lr up to 10
        optimizer.step()
        _check_invariant(model, t)
        assert set(handle.last_resets) == set(t)
        total += sum(handle.last_resets.values())
        assert handle.steps == step + 1
    assert handle.total_resets == total
    event("some weights were reset" if total else "no resets")
    handle.remove()


def test_invariant_covers_sign_flipping_weight_decay():
    # AdamW with lr·wd > 1 multiplies every weight by (1 − lr·wd) < 0: every nonzero weight flips
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    t = PolarityTemplate.from_proportions(model, (0.2, 0.4, 0.4), seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=10.0, weight_decay=0.5)
    handle = freeze(model, t, opt, reset="posCon", eps=0.01)
    nonzero = sum(int((model.get_parameter(n) != 0).sum()) for n in t)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    # zero grads: Adam's update is 0, so the only change is the (negative) decay factor
    assert sum(handle.last_resets.values()) == nonzero
    for name, signs in t.items():
        w = model.get_parameter(name).detach()
        expected = signs.float() * 0.01
        assert torch.allclose(w, expected, atol=0, rtol=1e-6), name
    _check_invariant(model, t)


# --------------------------------------------------------------------------- reset rules by hand
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rule", ["posCon", "zero", "flip"])
def test_reset_rule_values_by_hand(rule, dtype):
    net, t = _hand_net(dtype)
    bias = net[2].bias.detach().clone()
    eps = 0.01
    resets = Enforcer(net, t, reset=rule, eps=eps)()
    assert resets == {"0.weight": 6, "2.weight": 2}
    e0, e1 = _expected(rule, eps)
    assert torch.equal(net[0].weight.detach(), torch.tensor(e0, dtype=dtype))
    assert torch.equal(net[2].weight.detach(), torch.tensor(e1, dtype=dtype))
    assert torch.equal(net[2].bias, bias)  # biases are never touched
    assert violations(net, t) == 0


def test_zero_rule_sign_bits_agree_with_template():
    net, t = _hand_net()
    Enforcer(net, t, reset="zero")()
    w = net[0].weight.detach()
    # a second pass finds nothing left to reset (−0.0 where T < 0 is on the right side)
    assert Enforcer(net, t, reset="zero")() == {"0.weight": 0, "2.weight": 0}
    assert torch.equal(w, net[0].weight.detach())


def test_pos_rand_values_by_hand():
    net, t = _hand_net()
    eps = 0.01
    resets = Enforcer(net, t, reset="posRand", eps=eps, seed=0)()
    assert resets == {"0.weight": 6, "2.weight": 2}
    for name, W, T, bad in (("0.weight", W0, T0, BAD0), ("2.weight", W1, T1, BAD1)):
        w = net.get_parameter(name).detach()
        w_before = torch.tensor(W)
        for i, row in enumerate(W):
            for j in range(len(row)):
                got = w[i, j].item()
                if (i, j) not in bad:
                    assert got == w_before[i, j].item(), (name, i, j)
                elif T[i][j] == 0:
                    assert got == 0.0, (name, i, j)
                else:
                    assert math.copysign(1, got) == T[i][j] and got != 0, (name, i, j)
                    assert abs(got) < eps, (name, i, j)


def test_pos_rand_is_uniform_below_eps():
    lin = nn.Linear(100, 100, bias=False)
    with torch.no_grad():
        lin.weight.fill_(-1.0)
    t = PolarityTemplate({"weight": torch.ones(100, 100)})
    eps = 0.5
    assert Enforcer(lin, t, reset="posRand", eps=eps, seed=1)() == {"weight": 10000}
    w = lin.weight.detach()
    assert (w >= 0).all() and (w < eps).all()
    assert w.mean().item() == pytest.approx(eps / 2, rel=0.03)
    assert w.min().item() < 0.01 * eps and w.max().item() > 0.99 * eps


def test_boundary_zero_is_not_counted_or_changed_and_nonzero_at_template_zero_is():
    lin = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, -0.0, 0.7]]))
    t = PolarityTemplate({"weight": torch.tensor([[1, -1, 0]])})
    assert violations(lin, t) == 1
    for rule in BUILTIN_RESETS:
        lin2 = copy.deepcopy(lin)
        assert Enforcer(lin2, t, reset=rule)() == {"weight": 1}, rule
        w = lin2.weight.detach()[0]
        assert w[0].item() == 0.0 and w[1].item() == 0.0 and w[2].item() == 0.0, rule
        # the zero at T=+1 kept its sign bit: it was not touched
        assert not torch.signbit(w[0]) and torch.signbit(lin.weight.detach()[0, 1]) == torch.signbit(w[1])


def test_enforce_returns_total():
    net, t = _hand_net()
    assert enforce(net, t, reset="posCon") == 8
    assert enforce(net, t, reset="posCon") == 0


# --------------------------------------------------------------------------- violations
def test_violations_hand_count_and_per_layer():
    net, t = _hand_net()
    assert violations(net, t) == 8
    assert _hand_violations(net, t) == 8
    per = violations(net, t, per_layer=True)
    assert isinstance(per, dict)
    assert per == {"0.weight": 6, "2.weight": 2}


def test_violations_random_matches_hand_count():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 4))
    t = PolarityTemplate.from_proportions(net, (0.3, 0.3, 0.4), seed=2)
    with torch.no_grad():
        net[0].weight.view(-1)[:5] = 0.0
    n = violations(net, t)
    assert n == _hand_violations(net, t)
    assert 0 < n < t.numel()


def test_violations_mismatch_raises():
    net, t = _hand_net()
    t2 = PolarityTemplate({"nope.weight": torch.ones(3, 4)})
    with pytest.raises(ValueError, match="nope.weight"):
        violations(net, t2)


# --------------------------------------------------------------------------- freeze()
def _step_net():
    lin = nn.Linear(3, 2, bias=False)
    t = PolarityTemplate({"weight": torch.ones(2, 3)})
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    return lin, t, opt


def _set_grad_and_step(lin, opt, grad):
    opt.zero_grad()
    lin.weight.grad = torch.tensor(grad)
    opt.step()


def test_freeze_handle_keeps_parameters_and_counts():
    lin, t, opt = _step_net()
    ids = [id(p) for p in lin.parameters()]
    keys = list(lin.state_dict())
    handle = freeze(lin, t, opt, reset="posCon", eps=1e-3)
    assert isinstance(handle, FreezeHandle) and handle.active
    assert handle.steps == 0 and handle.total_resets == 0 and handle.last_resets == {}
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]))
    grad = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    _set_grad_and_step(lin, opt, grad)
    assert handle.last_resets == {"weight": 2} and handle.total_resets == 2 and handle.steps == 1
    assert torch.allclose(lin.weight, torch.tensor([[1e-3, 0.2, 0.3], [0.4, 1e-3, 0.6]]), atol=0, rtol=1e-6)
    _set_grad_and_step(lin, opt, grad)
    assert handle.last_resets == {"weight": 2} and handle.total_resets == 4 and handle.steps == 2
    _set_grad_and_step(lin, opt, [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert handle.last_resets == {"weight": 0} and handle.total_resets == 4 and handle.steps == 3
    assert [id(p) for p in lin.parameters()] == ids
    assert list(lin.state_dict()) == keys
    assert opt.param_groups[0]["params"][0] is lin.weight
    handle.remove()
    assert not handle.active
    handle.remove()  # idempotent
    _set_grad_and_step(lin, opt, grad)
    assert violations(lin, t) == 2
    assert handle.steps == 3 and handle.total_resets == 4
    assert lin.weight[0, 0].item() == pytest.approx(1e-3 - 1.0)


def test_remove_stops_enforcement_with_big_lr():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
    t = PolarityTemplate.random(model, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=50.0)

    def step():
        opt.zero_grad()
        model(torch.randn(32, 6)).pow(2).mean().backward()
        opt.step()

    handle = freeze(model, t, opt)
    step()
    assert violations(model, t) == 0
    handle.remove()
    step()
    assert violations(model, t) > 0


@pytest.mark.parametrize("do_align", [True, False])
def test_freeze_align_flag(do_align):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    t = PolarityTemplate.random(model, seed=5)
    before = snapshot(model)
    assert violations(model, t) > 0
    freeze(model, t, torch.optim.Adam(model.parameters()), align=do_align)
    if do_align:
        assert violations(model, t) == 0
        for name in t:
            w = model.get_parameter(name).detach()
            assert torch.equal(w.abs(), before[name].abs())
            assert torch.equal(torch.sign(w), t[name].float())
        assert torch.equal(model[0].bias, before["0.bias"])
    else:
        assert_unchanged(model, before)


def test_template_edit_after_freeze_is_picked_up():
    lin, t, opt = _step_net()
    handle = freeze(lin, t, opt, reset="posCon", eps=0.5)
    _set_grad_and_step(lin, opt, [[0.0] * 3] * 2)
    t["weight"] = torch.tensor([[-1, -1, -1], [0, 0, 0]])
    _set_grad_and_step(lin, opt, [[0.0] * 3] * 2)
    assert handle.last_resets == {"weight": 6}
    assert torch.equal(lin.weight.detach(), torch.tensor([[-0.5, -0.5, -0.5], [0.0, 0.0, 0.0]]))


def test_state_dict_roundtrip_after_training():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    t = PolarityTemplate.random(model, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.5)
    freeze(model, t, opt)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).sum().backward()
        opt.step()
    fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    fresh.load_state_dict(model.state_dict())
    assert violations(fresh, t) == 0
    assert_unchanged(fresh, snapshot(model))


# --------------------------------------------------------------------------- clear_state
def _adam_twins(model_fn, template_fn, memory_format=None, lr=1.0):
    """Three copies of one model after one Adam step: enforced with clear_state, enforced without,
    and not enforced (to read off the violating positions)."""
    torch.manual_seed(0)
    base = model_fn()
    t = template_fn(base)
    polarnet.align(base, t)
    if memory_format is not None:
        base = base.to(memory_format=memory_format)
    out = []
    for mode in ("clear", "keep", "none"):
        m = copy.deepcopy(base)
        opt = torch.optim.Adam(m.parameters(), lr=lr)
        if mode != "none":
            freeze(m, t, opt, reset="posCon", clear_state=(mode == "clear"))
        opt.zero_grad()
        torch.manual_seed(1)
        inp = torch.randn(16, *model_fn.in_shape)
        if memory_format is not None and inp.dim() == 4:
            inp = inp.to(memory_format=memory_format)
        m(inp).pow(2).mean().backward()
        opt.step()
        out.append((m, opt))
    return t, out


def _linear_model():
    return nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))


_linear_model.in_shape = (6,)


def _conv_model():
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.Flatten(), nn.Linear(4 * 2 * 2, 2))


_conv_model.in_shape = (3, 6, 6)


def _check_cleared(t, twins, positions):
    """``positions``: which reset entries must have zero Adam moments ("opposite": w·T < 0 after the
    step; "zeros": w ≠ 0 where T = 0; "all": both). Entries that were not reset must be untouched."""
    (mc, oc), (mk, ok), (mn, _) = twins
    checked = 0
    for name, signs in t.items():
        wn = mn.get_parameter(name).detach()
        s = signs.to(wn.dtype)
        opposite, zeros = wn * s < 0, (signs == 0) & (wn != 0)
        reset = opposite | zeros
        mask = {"opposite": opposite, "zeros": zeros, "all": reset}[positions]
        pc, pk = mc.get_parameter(name), mk.get_parameter(name)
        assert torch.equal(pc, pk)  # posCon: same weights with and without clear_state
        for key in ("exp_avg", "exp_avg_sq"):
            sc, sk = oc.state[pc][key], ok.state[pk][key]
            assert torch.equal(sc[~reset], sk[~reset]), (name, key)
            assert (sc[~reset] != 0).any(), (name, key)
            assert (sc[mask] == 0).all(), (name, key)
            assert (sk[reset] != 0).all(), (name, key)  # default leaves them
        checked += int(mask.sum())
    assert checked > 0


@pytest.mark.parametrize("model_fn", [_linear_model, _conv_model])
def test_clear_state_zeroes_adam_moments_at_resets(model_fn):
    t, twins = _adam_twins(model_fn, lambda m: PolarityTemplate.random(m, seed=3))
    _check_cleared(t, twins, "opposite")


def test_clear_state_channels_last():
    t, twins = _adam_twins(_conv_model, lambda m: PolarityTemplate.random(m, seed=3), memory_format=torch.channels_last)
    assert not twins[0][0][0].weight.is_contiguous()
    _check_cleared(t, twins, "opposite")


def test_clear_state_also_at_template_zeros():
    t, twins = _adam_twins(_linear_model, lambda m: PolarityTemplate.from_proportions(m, (0.5, 0.25, 0.25), seed=3))
    _check_cleared(t, twins, "all")


def test_clear_state_sign_violations_with_template_zeros():
    # with zeros in T, the sign-violating entries are still cleared exactly
    t, twins = _adam_twins(_linear_model, lambda m: PolarityTemplate.from_proportions(m, (0.5, 0.25, 0.25), seed=3))
    _check_cleared(t, twins, "opposite")


# --------------------------------------------------------------------------- channels_last
def test_channels_last_model_enforced():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 2)).to(memory_format=torch.channels_last)
    assert not model[0].weight.is_contiguous()
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    t = PolarityTemplate.from_proportions(model, (0.3, 0.35, 0.35), seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1.0)
    handle = freeze(model, t, opt, reset="posRand", seed=0)
    for _ in range(4):
        opt.zero_grad()
        model(torch.randn(8, 3, 6, 6).to(memory_format=torch.channels_last)).pow(2).mean().backward()
        opt.step()
        _check_invariant(model, t)
        assert sum(handle.last_resets.values()) > 0
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    sd = model.state_dict()
    fresh = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    fresh.load_state_dict(sd)
    assert violations(fresh, t) == 0
    for k, v in sd.items():
        assert torch.equal(fresh.state_dict()[k], v), k


@pytest.mark.parametrize("rule", ["posCon", "zero", "flip"])
def test_channels_last_same_result_as_contiguous(rule):
    torch.manual_seed(0)
    a = nn.Conv2d(3, 5, 3)
    t = PolarityTemplate.from_proportions(a, (0.2, 0.4, 0.4), seed=1)
    b = copy.deepcopy(a).to(memory_format=torch.channels_last)
    assert not b.weight.is_contiguous()
    ra = Enforcer(a, t, reset=rule, eps=0.01)()
    rb = Enforcer(b, t, reset=rule, eps=0.01)()
    assert ra == rb and ra["weight"] > 0
    assert torch.equal(a.weight, b.weight)
    assert b.weight.is_contiguous(memory_format=torch.channels_last)
    assert violations(b, t) == 0


# --------------------------------------------------------------------------- custom rules
def test_custom_reset_rule():
    name = "_test_half_eps"

    @register_reset(name)
    def half_eps(values, signs, eps, uniform):
        return signs * (eps / 2)

    try:
        assert name in RESETS.names()
        net, t = _hand_net()
        assert Enforcer(net, t, reset=name, eps=0.5)() == {"0.weight": 6, "2.weight": 2}
        e0, e1 = _expected("posCon", 0.25)
        assert torch.equal(net[0].weight.detach(), torch.tensor(e0))
        assert torch.equal(net[2].weight.detach(), torch.tensor(e1))
        with pytest.raises(ValueError, match="already registered"):
            register_reset(name)(half_eps)
    finally:
        RESETS.unregister(name)
    assert name not in RESETS.names()
    with pytest.raises(ValueError):
        Enforcer(net, t, reset=name)


def test_custom_reset_rule_wrong_sign_raises():
    name = "_test_wrong_sign"

    @register_reset(name)
    def wrong(values, signs, eps, uniform):
        return -signs * eps

    try:
        net, t = _hand_net()
        with pytest.raises(RuntimeError, match=name):
            Enforcer(net, t, reset=name)()
        # through freeze as well
        net, t = _hand_net()
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        freeze(net, t, opt, reset=name, align=False)
        opt.zero_grad()
        net(torch.randn(2, 4)).sum().backward()
        with pytest.raises(RuntimeError, match="wrong side"):
            opt.step()
    finally:
        RESETS.unregister(name)
    assert name not in RESETS.names()


def test_builtin_reset_names():
    assert set(BUILTIN_RESETS) <= set(RESETS.names())
    with pytest.raises(ValueError, match="already registered"):
        register_reset("posRand")(lambda v, s, e, g: s * e)


# --------------------------------------------------------------------------- bad input
def _bad_call_cases():
    return [
        ("reset", dict(reset="posrand"), ValueError, "posCon"),
        ("eps0", dict(eps=0.0), ValueError, "eps"),
        ("eps_neg", dict(eps=-1e-3), ValueError, "eps"),
        ("eps_nan", dict(eps=float("nan")), ValueError, "eps"),
        ("eps_inf", dict(eps=float("inf")), ValueError, "eps"),
        ("eps_true", dict(eps=True), ValueError, "eps"),
        ("eps_str", dict(eps="0.1"), ValueError, "eps"),
    ]


@pytest.mark.parametrize("case", _bad_call_cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("entry", ["freeze", "Enforcer", "enforce"])
def test_bad_arguments_raise_and_change_nothing(case, entry):
    _, kwargs, exc, text = case
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    t = PolarityTemplate.random(model, seed=9)
    assert violations(model, t) > 0
    before = snapshot(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with pytest.raises(exc) as err:
        if entry == "freeze":
            freeze(model, t, opt, **kwargs)
        elif entry == "Enforcer":
            Enforcer(model, t, **kwargs)
        else:
            enforce(model, t, **kwargs)
    assert text in str(err.value)
    if kwargs.get("reset"):
        for n in BUILTIN_RESETS:
            assert n in str(err.value)
    assert_unchanged(model, before)
    # no hook: a step leaves the violations in place
    opt.zero_grad()
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    assert_unchanged(model, before)


@pytest.mark.parametrize("bad", ["missing", "shape"])
def test_template_mismatch_raises_and_changes_nothing(bad):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    good = PolarityTemplate.random(model, seed=9)["0.weight"]
    if bad == "missing":
        t = PolarityTemplate({"0.weight": good, "5.weight": torch.ones(2, 6)})
    else:
        t = PolarityTemplate({"0.weight": good, "2.weight": torch.ones(6, 2)})
    before = snapshot(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    for call in (lambda: freeze(model, t, opt), lambda: Enforcer(model, t), lambda: enforce(model, t),
                 lambda: violations(model, t)):
        with pytest.raises(ValueError, match="5.weight" if bad == "missing" else "2.weight"):
            call()
        assert_unchanged(model, before)
    opt.zero_grad()
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    assert_unchanged(model, before)


def test_clear_state_without_optimizer_raises():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    t = PolarityTemplate.random(model, seed=9)
    before = snapshot(model)
    with pytest.raises(ValueError, match="clear_state"):
        Enforcer(model, t, clear_state=True)
    with pytest.raises((ValueError, TypeError)):
        freeze(model, t, None, clear_state=True)
    assert_unchanged(model, before)


@pytest.mark.parametrize("not_an_optimizer", [None, "adam", object(), [torch.zeros(1)]])
def test_freeze_rejects_non_optimizer(not_an_optimizer):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    t = PolarityTemplate.random(model, seed=9)
    assert violations(model, t) > 0
    before = snapshot(model)
    with pytest.raises(TypeError, match="Optimizer"):
        freeze(model, t, not_an_optimizer)
    assert_unchanged(model, before)  # align=True did not run


# --------------------------------------------------------------------------- seeds
def test_seeded_resets_reproducible():
    def run(seed, global_seed):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 2))
        t = PolarityTemplate.random(model, seed=1)
        opt = torch.optim.Adam(model.parameters(), lr=0.3)
        handle = freeze(model, t, opt, reset="posRand", seed=seed)
        torch.manual_seed(123)  # same data for every run
        data = [torch.randn(8, 5) for _ in range(4)]
        torch.manual_seed(global_seed)  # seeded resets must not depend on the global RNG
        for x in data:
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
        assert handle.total_resets > 0
        return snapshot(model)

    a, b, c = run(5, global_seed=1), run(5, global_seed=2), run(6, global_seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_seeded_enforcer_reproducible_and_seed_dependent():
    outs = []
    for seed, global_seed in ((3, 100), (3, 200), (4, 100)):
        net, t = _hand_net()
        torch.manual_seed(global_seed)
        Enforcer(net, t, reset="posRand", eps=1.0, seed=seed)()
        outs.append(net[0].weight.detach().clone())
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


def test_unseeded_resets_follow_global_rng():
    outs = []
    for global_seed in (100, 100, 200):
        net, t = _hand_net()
        torch.manual_seed(global_seed)
        Enforcer(net, t, reset="posRand", eps=1.0)()
        outs.append(net[0].weight.detach().clone())
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


# --------------------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("reset", BUILTIN_RESETS)
def test_invariant_on_cuda(opt, reset):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 10), nn.ReLU(), nn.Linear(10, 2)).cuda()
    t = PolarityTemplate.from_proportions(model, (0.2, 0.4, 0.4), seed=0)
    optimizer = _make_optimizer(opt, model.parameters(), 5.0, 0.3)
    handle = freeze(model, t, optimizer, reset=reset, seed=0)
    _check_invariant(model, t)
    for _ in range(4):
        optimizer.zero_grad()
        model(torch.randn(8, 3, 6, 6, device="cuda")).pow(2).mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        _check_invariant(model, t)
    assert handle.total_resets > 0
    assert all(p.is_cuda for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_hand_values_on_cuda():
    for rule in ("posCon", "zero", "flip"):
        net, t = _hand_net()
        net = net.cuda()
        assert Enforcer(net, t, reset=rule, eps=0.01)() == {"0.weight": 6, "2.weight": 2}
        e0, e1 = _expected(rule, 0.01)
        assert torch.equal(net[0].weight.detach().cpu(), torch.tensor(e0))
        assert torch.equal(net[2].weight.detach().cpu(), torch.tensor(e1))


# --------------------------------------------------------------------------- non-finite weights


def _diverged():
    """SGD with lr=100 and momentum: the run that produced 40 NaN weights and 0 violations."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    t = PolarityTemplate.random(model, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=100.0, momentum=0.9)
    handle = freeze(model, t, opt)
    for _ in range(30):
        opt.zero_grad()
        model(torch.randn(16, 4) * 100).pow(2).mean().mul(1e6).backward()
        opt.step()
    handle.remove()
    return model, t


def test_violations_count_non_finite_weights():
    model, t = _diverged()
    bad = sum(int((~torch.isfinite(model.get_parameter(n))).sum()) for n in t)
    assert bad > 0
    assert violations(model, t) >= bad


@settings(max_examples=40, deadline=None)
@given(value=st.sampled_from([float("nan"), float("inf"), -float("inf")]), sign=st.sampled_from([-1, 0, 1]),
       index=st.integers(0, 7))
def test_every_non_finite_weight_is_one_violation(value, sign, index):
    lin = nn.Linear(4, 2, bias=False)
    t = PolarityTemplate({"weight": torch.full((2, 4), sign)})
    with torch.no_grad():
        lin.weight.copy_(t["weight"].float() * 0.5)  # on the template's side
        assert violations(lin, t) == 0
        lin.weight.view(-1)[index] = value
    assert violations(lin, t) == 1 and violations(lin, t, per_layer=True) == {"weight": 1}


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("entry", ["freeze", "Enforcer", "enforce"])
def test_non_finite_weights_are_refused_naming_layer_and_count(entry, value):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    with torch.no_grad():
        model[2].weight[0, :3] = value
    t = PolarityTemplate.random(model, seed=1)
    before = snapshot(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError) as err:
        if entry == "freeze":
            freeze(model, t, opt)
        elif entry == "Enforcer":
            Enforcer(model, t)
        else:
            enforce(model, t)
    assert "'2.weight' (3 of 12)" in str(err.value) and "NaN or inf" in str(err.value)
    for name, w in before.items():  # align did not run
        assert torch.equal(model.state_dict()[name].nan_to_num(), w.nan_to_num())
    freeze(model, PolarityTemplate.random(model, layers=["0.weight"]), opt)  # a finite layer alone is fine


@pytest.mark.parametrize("entry", ["freeze_sgd", "project", "reparam-softplus", "Enforcer", "enforce"])
def test_weights_on_the_meta_device_are_refused_with_the_fix(entry):
    """torch's own error was "Tensor.item() cannot be called on meta tensors"."""
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    t = PolarityTemplate({"0.weight": torch.ones(6, 4, dtype=torch.int8), "2.weight": -torch.ones(2, 6)})
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError) as err:
        if entry == "Enforcer":
            Enforcer(model, t)
        elif entry == "enforce":
            enforce(model, t)
        else:
            freeze(model, t, opt, learner=entry)
    assert str(err.value).startswith("the model's constrained weights are on the meta device (shapes without values): "
                                     "'0.weight', '2.weight'")
    assert "model.to_empty(device='cpu')" in str(err.value)
    assert not polarnet.is_frozen(model)
    model.to_empty(device="cpu")  # the fix; it makes new parameters, so the optimizer comes after it
    polarnet.init_magnitudes(model, seed=0)  # to_empty leaves whatever the memory held, NaN and inf included
    freeze(model, t, torch.optim.Adam(model.parameters()))
    assert violations(model, t) == 0


class _EmbeddingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.lin = nn.Embedding(10, 4), nn.Linear(4, 1)

    def forward(self, i: torch.Tensor) -> torch.Tensor:
        return self.lin(self.emb(i)).squeeze(-1)


def test_freeze_warns_when_the_template_covers_parameters_another_optimizer_trains():
    """The hook keeps the template after *this* optimizer's step; a second optimizer's step
    afterwards breaks it unseen until pn.violations counts it."""
    torch.manual_seed(0)
    net = _EmbeddingNet()
    t = PolarityTemplate.random(net, seed=0)
    dense = torch.optim.Adam(net.lin.parameters(), lr=0.1)
    with pytest.warns(UserWarning) as caught:
        handle = freeze(net, t, dense)
    assert len(caught) == 1 and caught[0].filename == __file__  # points at the caller's line
    message = str(caught[0].message)
    assert message.startswith("template layers 'emb.weight' are trainable parameters this optimizer does not own")
    assert "'lin.weight'" not in message
    with torch.no_grad():  # what the second optimizer's step can do between two of this one's
        net.emb.weight.neg_()
    assert violations(net, t) == net.emb.weight.count_nonzero()  # the layer named by the warning
    handle.remove()


def test_freeze_is_silent_when_its_optimizer_owns_every_trainable_template_layer(recwarn):
    net = _EmbeddingNet()
    t = PolarityTemplate.random(net, seed=0)
    dense, sparse = torch.optim.Adam(net.lin.parameters(), lr=0.1), torch.optim.SGD(net.emb.parameters(), lr=1.0)
    freeze(net, PolarityTemplate({n: t[n] for n in t if n.startswith("lin.")}), dense)  # the warning's fix
    freeze(net, PolarityTemplate({n: t[n] for n in t if n.startswith("emb.")}), sparse)
    net.emb.weight.requires_grad_(False)  # a layer nothing trains can't drift: no warning for it either
    freeze(nn.Sequential(net), PolarityTemplate({"0." + n: t[n] for n in t}), torch.optim.SGD(net.lin.parameters()))
    assert not [w for w in recwarn if "does not own" in str(w.message)]


# --------------------------------------------------------------------------- one freeze per optimizer


def test_second_freeze_on_the_same_optimizer_is_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    first, second = PolarityTemplate.random(model, seed=1), PolarityTemplate.random(model, seed=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    handle = freeze(model, first, opt)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="already has a polarnet freeze hook; call handle.remove\\(\\) first"):
        freeze(model, second, opt)
    assert_unchanged(model, before)  # the refused freeze did not align
    for _ in range(5):
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
    assert violations(model, first) == 0 and handle.steps == 5
    # removing the handle frees the optimizer
    handle.remove()
    handle.remove()  # twice is harmless
    again = freeze(model, second, opt)
    opt.zero_grad()
    model(torch.randn(8, 4)).pow(2).sum().backward()
    opt.step()
    assert violations(model, second) == 0 and again.steps == 1 and handle.steps == 5
    # another optimizer is independent
    other = freeze(model, second, torch.optim.SGD(model.parameters(), lr=0.1))
    other.remove()
    again.remove()


def test_the_freeze_registry_does_not_keep_optimizers_alive():
    import gc
    import weakref

    model = nn.Linear(3, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    handle = freeze(model, PolarityTemplate.random(model), opt)
    ref = weakref.ref(opt)
    del opt, handle
    gc.collect()
    assert ref() is None


# --------------------------------------------------------------------------- tied weights


def _tied():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    net[2].weight = net[0].weight  # two Linear layers share one weight Parameter
    return net


@pytest.mark.parametrize("names", ["state_dict", "both", "alias"])
def test_tied_weights_freeze_and_violations_agree(names):
    net = _tied()
    signs = PolarityTemplate.random(net, seed=3)["0.weight"]
    if names == "state_dict":  # what `template extract` makes of the model's checkpoint
        t = PolarityTemplate.from_model(net.state_dict())
    elif names == "both":
        t = PolarityTemplate({"0.weight": signs, "2.weight": signs})
    else:
        t = PolarityTemplate({"2.weight": signs})
    t.check(net)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    handle = freeze(net, t, opt, reset="posCon", seed=0)
    for _ in range(4):
        opt.zero_grad()
        net(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
    per_layer = violations(net, t, per_layer=True)
    assert sum(per_layer.values()) == 0 and len(per_layer) == 1  # the shared tensor counted once
    assert len(handle.last_resets) == 1  # and enforced once per step
    with torch.no_grad():
        net[0].weight.neg_()
    assert violations(net, t) == 16  # not 32
    handle.remove()


def test_tied_weights_with_contradicting_signs_are_refused_by_freeze():
    net = _tied()
    signs = PolarityTemplate.random(net, seed=3)["0.weight"]
    t = PolarityTemplate({"0.weight": signs, "2.weight": -signs})
    with pytest.raises(ValueError, match="one tied weight"):
        freeze(net, t, torch.optim.SGD(net.parameters(), lr=1.0))


def test_enforcer_rechecks_a_template_edited_after_construction():
    net = _tied()
    signs = PolarityTemplate.random(net, seed=3)["0.weight"]
    t = PolarityTemplate({"0.weight": signs})
    enforcer = Enforcer(net, t)
    enforcer()
    t["2.weight"] = -signs  # contradicts the tied 0.weight
    with pytest.raises(ValueError, match="one tied weight"):
        enforcer()


# --------------------------------------------------------------------------- sparse, dense and compiled paths
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
_INT_OF_WIDTH = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(t: torch.Tensor) -> torch.Tensor:
    """A tensor's raw bits in logical order: ±0 and NaN payloads compared exactly."""
    return t.detach().contiguous().view(_INT_OF_WIDTH[t.element_size()]).cpu()


def _path_net(dtype: torch.dtype, channels_last: bool, device: str = "cpu") -> tuple[nn.Module, PolarityTemplate]:
    """A conv and two linear layers; a template with zeros (a third of the entries)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 6), nn.Linear(6, 5, bias=False)).to(dtype)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    signs = {n: torch.randint(-1, 2, p.shape, generator=torch.Generator().manual_seed(i))
             for i, (n, p) in enumerate(net.named_parameters()) if n.endswith("weight")}
    return net.to(device), PolarityTemplate(signs)


def _run_path(path: str, rule: str, dtype: torch.dtype, channels_last: bool, steps: int = 3,
              device: str = "cpu") -> tuple[list[torch.Tensor], list[dict[str, int]]]:
    """Weights after ``steps`` rounds of noise (with exact ±0 planted) and enforcement."""
    net, t = _path_net(dtype, channels_last, device)
    e = Enforcer(net, t, rule, eps=1e-2, seed=5, path=path)
    assert e.path == path
    g = torch.Generator().manual_seed(1)
    counts = []
    for _ in range(steps):
        with torch.no_grad():
            for p in net.parameters():
                noise = torch.randn(p.shape, generator=g) * 0.3
                noise[torch.rand(p.shape, generator=g) < 0.05] = 0.0
                p.add_(noise.to(device=device, dtype=dtype))
                p.mul_(torch.where(torch.rand(p.shape, generator=g) < 0.05, 0.0, 1.0).to(device=device, dtype=dtype))
        counts.append(e())
    return [p.detach().clone() for p in net.parameters()], counts


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("rule", BUILTIN_RESETS)
@pytest.mark.parametrize("path", ["dense", "native"])
def test_dense_and_native_paths_are_bit_identical_to_the_sparse_path(path, rule, dtype, channels_last) -> None:
    if path == "native" and not polarnet.native.available():
        pytest.skip("no C compiler here")
    sparse, sparse_counts = _run_path("sparse", rule, dtype, channels_last)
    dense, dense_counts = _run_path(path, rule, dtype, channels_last)
    assert dense_counts == sparse_counts and sum(sum(c.values()) for c in sparse_counts) > 0
    for a, b in zip(sparse, dense):
        assert torch.equal(_bits(a), _bits(b))
        assert a.stride() == b.stride()  # the dense path keeps channels-last weights channels-last


_SPECIAL = st.sampled_from([0.0, -0.0, float("nan"), -float("nan"), float("inf"), -float("inf"), 1e-30, -1e-30])


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.one_of(st.floats(-3, 3, width=32), _SPECIAL), min_size=1, max_size=40),
       signs=st.lists(st.sampled_from([-1, 0, 1]), min_size=40, max_size=40),
       rule=st.sampled_from(BUILTIN_RESETS), seed=st.integers(0, 2**62), steps=st.integers(1, 3))
def test_paths_agree_on_any_values_including_zeros_nan_and_inf(values, signs, rule, seed, steps) -> None:
    """NaN and inf can't be passed to freeze (refused), but training can produce them."""
    n = len(values)
    results = []
    for path in ("sparse", "dense") + (("native",) if polarnet.native.available() else ()):
        lin = nn.Linear(n, 1, bias=False)
        t = PolarityTemplate({"weight": torch.tensor([signs[:n]])})
        with torch.no_grad():
            lin.weight.zero_()
        e = Enforcer(lin, t, rule, eps=0.5, seed=seed, path=path)
        counts = []
        for _ in range(steps):
            with torch.no_grad():
                lin.weight.copy_(torch.tensor([values]))
            counts.append(e())
        results.append((_bits(lin.weight), counts))
    for other in results[1:]:
        assert torch.equal(results[0][0], other[0]) and results[0][1] == other[1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_compiled_dense_path_builds_one_full_graph_and_matches_bit_for_bit(dtype) -> None:
    """torch.compile(fullgraph=True) would raise on any host read (a graph break)."""
    import torch._dynamo

    torch._dynamo.reset()
    sparse, sparse_counts = _run_path("sparse", "posRand", dtype, True)
    compiled, compiled_counts = _run_path("compiled", "posRand", dtype, True)
    assert compiled_counts == sparse_counts
    for a, b in zip(sparse, compiled):
        assert torch.equal(_bits(a), _bits(b))


def test_auto_path_is_native_on_the_cpu_and_sparse_for_rules_of_your_own_or_without_a_compiler(monkeypatch) -> None:
    net, t = _path_net(torch.float32, False)
    assert Enforcer(net, t).path == ("native" if polarnet.native.library() is not None else "sparse")
    monkeypatch.setattr(polarnet.native, "library", lambda: None)
    assert Enforcer(net, t).path == "sparse"

    @register_reset("tenth_eps_test")
    def tenth(values, signs, eps, uniform):
        return signs * (eps / 10)

    try:
        assert Enforcer(net, t, "tenth_eps_test").path == "sparse"
        with pytest.raises(ValueError, match="tenth_eps_test.*path='sparse'"):
            Enforcer(net, t, "tenth_eps_test", path="dense")
    finally:
        RESETS.unregister("tenth_eps_test")
    with pytest.raises(ValueError, match="path must be one of auto, native, sparse, dense, compiled; got 'fast'"):
        Enforcer(net, t, path="fast")


@pytest.mark.parametrize("path", ["sparse", "dense", "native"])
def test_the_cached_template_takes_one_byte_per_constrained_weight(path) -> None:
    net, t = _path_net(torch.float32, True)
    e = Enforcer(net, t, path=path)
    e()
    per_weight = sum(
        v.numel() * v.element_size()
        for layer in e._cache.values() for v in vars(layer).values() if isinstance(v, torch.Tensor))
    assert per_weight == t.numel()
    assert all(layer.code.dtype == torch.int8 for layer in e._cache.values())


@pytest.mark.parametrize("path", ["sparse", "dense", "native"])
def test_clear_state_zeroes_adam_moments_of_reset_entries_on_both_paths(path) -> None:
    lin = nn.Linear(4, 3, bias=False)
    t = PolarityTemplate({"weight": torch.ones(3, 4)})
    opt = torch.optim.Adam(lin.parameters(), lr=1.0)
    handle = freeze(lin, t, opt, "posCon", seed=0, clear_state=True, path=path)
    opt.zero_grad()
    lin.weight.grad = torch.tensor([[1.0, -1.0, 1.0, -1.0]] * 3)
    opt.step()  # lr 1 pushes the entries with a positive gradient below zero: reset, moments cleared
    reset = lin.weight.detach() == 1e-3
    assert reset.sum() == handle.total_resets == 6
    for moment in ("exp_avg", "exp_avg_sq"):
        state = opt.state[lin.weight][moment]
        assert (state[reset] == 0).all() and (state[~reset] != 0).all()


def test_seed_none_draws_a_private_seed_once_and_leaves_the_global_generator_alone() -> None:
    net, t = _path_net(torch.float32, False)
    torch.manual_seed(7)
    e = Enforcer(net, t)
    after_init = torch.random.get_rng_state()
    with torch.no_grad():
        for p in net.parameters():
            p.neg_()
    assert sum(e().values()) > 0
    assert torch.equal(torch.random.get_rng_state(), after_init)
    torch.manual_seed(7)
    assert Enforcer(net, t).seed == e.seed and not e.seeded


def test_handle_counts_stay_on_the_device_until_read() -> None:
    net, t = _path_net(torch.float32, False)
    opt = torch.optim.SGD(net.parameters(), lr=10.0)
    handle = freeze(net, t, opt, seed=0, path="dense")
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, 3, 3, 3)).pow(2).sum().backward()
        opt.step()
    assert isinstance(handle._last, torch.Tensor) and isinstance(handle._total, torch.Tensor)
    assert handle.steps == 3 and handle.total_resets >= sum(handle.last_resets.values()) > 0
    assert list(handle.last_resets) == handle.enforcer.layer_names == ["0.weight", "2.weight", "3.weight"]


def _cuda_step(model, optimizer, x):
    optimizer.zero_grad(set_to_none=False)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(x).float().pow(2).mean()
    loss.backward()
    optimizer.step()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("path", ["dense", "compiled"])
def test_cuda_paths_are_bit_identical_to_the_cpu_sparse_path(path, dtype) -> None:
    for rule in BUILTIN_RESETS:
        sparse, sparse_counts = _run_path("sparse", rule, dtype, True)
        gpu, gpu_counts = _run_path(path, rule, dtype, True, device="cuda")
        assert gpu_counts == sparse_counts
        for a, b in zip(sparse, gpu):
            assert torch.equal(_bits(a), _bits(b)), (rule, path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_auto_path_is_sync_free_in_a_full_train_step() -> None:
    net, t = _path_net(torch.float32, True, "cuda")
    opt = torch.optim.Adam(net.parameters(), lr=0.1, capturable=True)
    handle = freeze(net, t, opt, seed=0)
    assert handle.enforcer.path in ("dense", "compiled")
    x = torch.randn(16, 3, 3, 3, device="cuda").to(memory_format=torch.channels_last)
    _cuda_step(net, opt, x)  # warm-up: caches, compilation, optimizer state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            _cuda_step(net, opt, x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert handle.steps == 4 and violations(net, t) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("path", ["dense", "compiled"])
def test_cuda_graph_capture_and_replay_match_eager_steps(path) -> None:
    def build():
        net, t = _path_net(torch.float32, False, "cuda")
        opt = torch.optim.Adam(net.parameters(), lr=0.5, capturable=True)
        return net, t, opt, freeze(net, t, opt, "posRand", seed=3, path=path)

    xs = torch.randn(6, 16, 3, 3, 3, generator=torch.Generator().manual_seed(0)).cuda()
    eager, t, opt, handle = build()
    for x in xs:
        _cuda_step(eager, opt, x)
    eager_total = handle.total_resets

    graphed, t, opt, handle = build()
    static_x = xs[0].clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up off the capture: caches, optimizer state
        _cuda_step(graphed, opt, static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        _cuda_step(graphed, opt, static_x)
    # the capture ran no step; the warm-up was step 1
    for x in xs[1:]:
        static_x.copy_(x)
        graph.replay()
    assert handle.steps == len(xs) and handle.total_resets == eager_total > 0
    for a, b in zip(eager.parameters(), graphed.parameters()):
        assert torch.equal(_bits(a), _bits(b))


# --------------------------------------------------------------------------- state that survives a checkpoint

def _resume_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.2), nn.ReLU(),
                         nn.Linear(8, 3))


def _train(net, optimizer, steps, start):
    for i in range(start, start + steps):
        g = torch.Generator().manual_seed(i)
        x, y = torch.randn(8, 2, 4, 4, generator=g) * 3, torch.randint(0, 3, (8,), generator=g)
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()


def _frozen(learner, reset, seed):
    from polarnet.learners import LEARNERS

    torch.manual_seed(0)
    net = _resume_net()
    t = PolarityTemplate.random(net, seed=1, p_positive=0.6)
    t["3.weight"] = t["3.weight"] * (torch.rand(8, 16, generator=torch.Generator().manual_seed(2)) > 0.2)
    optimizer = LEARNERS.get(learner).optimizer(net, t, 0.2, 1e-8)
    options = {"reset": reset, "seed": seed} if learner == "freeze_sgd" else {}
    return net, optimizer, freeze(net, t, optimizer, learner=learner, **options)


RESUMABLE = [("freeze_sgd", rule) for rule in BUILTIN_RESETS] + \
    [(name, None) for name in polarnet.LEARNERS.names() if name != "freeze_sgd"]


@pytest.mark.parametrize("learner,reset", RESUMABLE)
def test_a_resumed_job_continues_bit_for_bit(tmp_path, learner, reset):
    """Save model + optimizer + handle state (and the RNG, which dropout draws from) at step k,
    resume in fresh objects: the weights equal those of a job that never stopped."""
    net, optimizer, handle = _frozen(learner, reset, seed=5)
    torch.manual_seed(11)
    _train(net, optimizer, 10, 0)
    reference = {k: v.clone() for k, v in net.state_dict().items()}
    total = handle.total_resets

    net, optimizer, handle = _frozen(learner, reset, seed=5)
    torch.manual_seed(11)
    _train(net, optimizer, 4, 0)
    torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(), "freeze": handle.state_dict(),
                "rng": torch.get_rng_state()}, tmp_path / "ckpt.pt")
    del net, optimizer, handle

    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    net, optimizer, handle = _frozen(learner, reset, seed=None)  # other seed and template: the state has them
    net.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    handle.load_state_dict(ckpt["freeze"])
    torch.set_rng_state(ckpt["rng"])
    assert handle.steps == 4
    _train(net, optimizer, 6, 4)
    for key, value in net.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert handle.total_resets == total
    if learner == "freeze_sgd" and reset != "zero":
        assert total > 0  # the test exercised resets


def test_a_resume_that_skips_the_freeze_state_differs():
    """The seeded reset stream is keyed by the step: restarting it at 0 changes the weights
    (the guarantee above is not vacuous)."""
    runs = []
    for load_state in (True, False):
        net, optimizer, handle = _frozen("freeze_sgd", "posRand", seed=5)
        _train(net, optimizer, 3, 0)
        state = (net.state_dict(), optimizer.state_dict(), handle.state_dict())
        net, optimizer, handle = _frozen("freeze_sgd", "posRand", seed=5)
        net.load_state_dict(state[0]), optimizer.load_state_dict(state[1])
        if load_state:
            handle.load_state_dict(state[2])
        _train(net, optimizer, 3, 3)
        runs.append(net.state_dict())
    assert any(not torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_the_freeze_state_packs_the_template():
    net = nn.Linear(64, 64, bias=False)
    handle = freeze(net, PolarityTemplate.random(net, seed=0), torch.optim.SGD(net.parameters(), lr=0.1), seed=1)
    packed = handle.state_dict()["template"]["layers"]["weight"]
    assert packed["bits"] == 1 and packed["data"].dtype == torch.uint8 and packed["data"].numel() == 64 * 64 // 8


def test_load_state_dict_refuses_other_states_naming_the_fix():
    net = nn.Linear(3, 3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    handle = freeze(net, PolarityTemplate.random(net, seed=0), optimizer, seed=1)
    state = handle.state_dict()
    with pytest.raises(ValueError, match="not a polarnet freeze state"):
        handle.load_state_dict({"model": 1})
    with pytest.raises(ValueError, match="learner 'project'.*freeze with learner='project'"):
        handle.load_state_dict({**state, "learner": "project"})
    with pytest.raises(ValueError, match="clear_state=True"):
        handle.load_state_dict({**state, "clear_state": True})
    other = PolarityTemplate.random(nn.Linear(3, 4), seed=0).state_dict()
    with pytest.raises(ValueError, match="template shape"):
        handle.load_state_dict({**state, "template": other})
    wider = PolarityTemplate.random(net, seed=0, layers=["weight", "bias"]).state_dict()
    with pytest.raises(ValueError, match=r"other layers.*saved only \['bias'\]"):
        handle.load_state_dict({**state, "template": wider})


def test_load_state_dict_updates_the_template_object_in_place():
    net = nn.Linear(3, 3)
    t = PolarityTemplate.random(net, seed=0)
    handle = freeze(net, t, torch.optim.SGD(net.parameters(), lr=0.1))
    handle.load_state_dict({**handle.state_dict(), "template": PolarityTemplate.random(net, seed=9).state_dict()})
    assert handle.enforcer.template is t and t == PolarityTemplate.random(net, seed=9)


def test_the_default_seed_is_torch_initial_seed_and_the_global_generator_is_never_read():
    net = nn.Linear(16, 16)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    optimizer = torch.optim.SGD(net.parameters(), lr=5.0)
    handle = freeze(net, PolarityTemplate.random(net, seed=0), optimizer)
    assert handle.enforcer.seed == 1234 and not handle.enforcer.seeded
    for _ in range(3):
        optimizer.zero_grad()
        net(torch.ones(4, 16)).pow(2).sum().backward()  # no randomness here
        optimizer.step()
    assert handle.total_resets > 0
    assert torch.equal(torch.get_rng_state(), before)


def test_is_frozen_follows_the_handle():
    net = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    assert not polarnet.is_frozen(net)
    handle = freeze(net, PolarityTemplate.random(net), optimizer)
    assert polarnet.is_frozen(net)
    handle.remove()
    assert not polarnet.is_frozen(net)


def test_amp_on_the_cpu_bf16_autocast_and_a_skipped_scaler_step_enforce_nothing():
    """Under ``torch.autocast`` (bf16 on the CPU) the weights stay float32 and are kept on the
    template; a step ``GradScaler`` skips (inf gradients) runs no enforcement and doesn't
    advance the reset stream."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    t = PolarityTemplate.random(net, seed=0)
    optimizer = torch.optim.SGD(net.parameters(), lr=2.0)
    handle = freeze(net, t, optimizer, seed=1)
    scaler = torch.amp.GradScaler("cpu")
    for _ in range(3):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = net(torch.randn(16, 8)).float().pow(2).mean()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    assert handle.steps == 3 and handle.total_resets > 0 and violations(net, t) == 0
    before = [p.detach().clone() for p in net.parameters()]
    optimizer.zero_grad()
    scaler.scale(net(torch.full((2, 8), float("inf"))).sum()).backward()
    scaler.step(optimizer)  # skipped: the gradients hold inf
    scaler.update()
    assert handle.steps == 3 and all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
