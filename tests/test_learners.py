"""Tests for polarnet.learners: every learner keeps the template after every step, and each
does what its formula says."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from helpers import assert_unchanged, snapshot

import polarnet as pn
from polarnet.learners import LEARNERS, MAGNITUDE_FNS, Keeper, Learner, SignedMagnitude, register_learner
from polarnet.optim import EG, AdamEG, eg_groups

REPARAM = [name for name in LEARNERS if name.startswith("reparam-")]


def _net(conv: bool = False) -> nn.Module:
    if conv:
        return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def _optimizer(learner: str, model: nn.Module, template: pn.PolarityTemplate, kind: str, lr: float):
    if learner == "eg":
        groups = eg_groups(model, template)
        return AdamEG(groups, lr=lr) if kind == "adam" else EG(groups, lr=lr)
    if kind == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, shape: tuple[int, ...], scale: float = 3.0) -> None:
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(torch.randn(6, *shape) * scale), torch.randn(6, 3))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


# --------------------------------------------------------------------------- the central invariant

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(learner=st.sampled_from(LEARNERS.names()), conv=st.booleans(), kind=st.sampled_from(["adam", "sgd"]),
       lr=st.sampled_from([1e-3, 0.05, 0.5, 2.0]), p0=st.sampled_from([0.0, 0.2, 1.0]), seed=st.integers(0, 2**16))
def test_zero_violations_after_every_step_for_every_learner(learner, conv, kind, lr, p0, seed):
    torch.manual_seed(seed)
    model = _net(conv)
    t = pn.PolarityTemplate.from_proportions(model, (p0, (1 - p0) / 2, (1 - p0) / 2), seed=seed)
    optimizer = _optimizer(learner, model, t, kind, lr)
    handle = pn.freeze(model, t, optimizer, learner=learner)
    assert pn.violations(model, t) == 0
    shape = (2, 4, 4) if conv else (5,)
    for step in range(4):
        _step(model, optimizer, shape)
        assert pn.violations(model, t) == 0, (learner, step)
        assert handle.steps == step + 1
    event(f"resets: {'some' if handle.total_resets else 'none'}")
    handle.remove()
    assert pn.violations(model, t) == 0  # remove leaves a plain model on the template
    assert all(not parametrize.is_parametrized(m) for m in model.modules())


def test_registry_names_and_recipes():
    assert {"freeze_sgd", "project", "reparam-softplus", "reparam-exp", "reparam-abs", "eg"} <= set(LEARNERS)
    assert LEARNERS.get("freeze_sgd").stacked.after == "reset"
    assert LEARNERS.get("project").stacked.after == "project"
    assert LEARNERS.get("eg").stacked.update == "eg"
    assert {LEARNERS.get(n).stacked.weights for n in REPARAM} == set(MAGNITUDE_FNS)


def test_register_learner_is_one_registration():
    calls = []

    def attach(model, template, optimizer, options):
        calls.append(options["align"])
        return Keeper(model, template)

    register_learner(Learner("counting_demo", "w ← w", attach))
    try:
        net = _net()
        t = pn.PolarityTemplate.from_model(net)
        handle = pn.freeze(net, t, torch.optim.SGD(net.parameters(), lr=0.1), learner="counting_demo")
        assert calls == [True] and handle.learner == "counting_demo"
        with pytest.raises(ValueError, match="already registered"):
            register_learner(Learner("counting_demo", "", attach))
    finally:
        LEARNERS.unregister("counting_demo")


# --------------------------------------------------------------------------- reparam

@pytest.mark.parametrize("learner", REPARAM)
def test_reparam_starts_at_the_aligned_weights_and_keeps_parameter_objects(learner):
    torch.manual_seed(0)
    net = _net()
    t = pn.PolarityTemplate.random(net, seed=1)
    aligned = copy.deepcopy(net)
    pn.align(aligned, t)
    params = [id(p) for p in net.parameters()]
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    pn.freeze(net, t, optimizer, learner=learner)
    # the optimizer's parameters are the same objects, now holding V
    assert sorted(id(p) for p in net.parameters()) == sorted(params)
    for name in t:
        module = net.get_submodule(name.rsplit(".", 1)[0])
        assert parametrize.is_parametrized(module, "weight")
        torch.testing.assert_close(module.weight, aligned.get_parameter(name), rtol=1e-6, atol=0)
    if learner == "reparam-abs":  # abs is exact
        assert all(torch.equal(net.get_submodule(n.rsplit(".", 1)[0]).weight, aligned.get_parameter(n)) for n in t)


@pytest.mark.parametrize("fn", sorted(MAGNITUDE_FNS))
def test_signed_magnitude_template_zero_gives_exact_zero_and_no_gradient(fn):
    signs = torch.tensor([[1.0, 0.0, -1.0, 0.0]])
    p = SignedMagnitude(signs, fn)
    v = p.right_inverse(torch.tensor([[0.3, 0.0, -0.2, 0.0]])).requires_grad_()
    w = p(v)
    assert w[0, 1].item() == 0.0 and w[0, 3].item() == 0.0
    assert w[0, 0] > 0 and w[0, 2] < 0
    w.sum().backward()
    assert v.grad[0, 1] == 0 and v.grad[0, 3] == 0
    # the derivative by hand: d/dV of T·f(V)
    expected = {"softplus": torch.sigmoid(v.detach()), "exp": torch.exp(v.detach()), "abs": torch.sign(v.detach())}[fn]
    torch.testing.assert_close(v.grad, expected * signs)


def test_signed_magnitude_boundary_weight_starts_at_the_smallest_normal_number():
    p = SignedMagnitude(torch.tensor([1.0, -1.0]), "softplus")
    w = p(p.right_inverse(torch.tensor([0.0, 0.0])))
    assert torch.all(w.abs() > 0) and torch.all(w.abs() < 1e-37)
    assert w[0] > 0 and w[1] < 0


@pytest.mark.parametrize("learner", REPARAM)
def test_reparam_remove_leaves_a_plain_model_whose_state_dict_loads_into_the_architecture(learner):
    torch.manual_seed(0)
    net = _net(conv=True)
    t = pn.PolarityTemplate.random(net, seed=2)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    handle = pn.freeze(net, t, optimizer, learner=learner)
    assert any(".parametrizations." in name for name, _ in net.named_parameters())
    for _ in range(3):
        _step(net, optimizer, (2, 4, 4))
    computed = {name: net.get_submodule(name.rsplit(".", 1)[0]).weight.detach().clone() for name in t}
    handle.remove()
    plain = _net(conv=True)
    assert list(net.state_dict()) == list(plain.state_dict())  # the same keys in the same order
    plain.load_state_dict(net.state_dict())  # strict: the unmodified architecture's keys
    for name, w in computed.items():
        assert torch.equal(plain.get_parameter(name), w)
    assert pn.violations(plain, t) == 0
    # the optimizer goes on training the same parameter objects, now plain weights
    _step(net, optimizer, (2, 4, 4))


def test_reparam_sees_weights_through_layer_helpers():
    net = _net()
    t = pn.PolarityTemplate.random(net, seed=0)
    pn.freeze(net, t, torch.optim.Adam(net.parameters()), learner="reparam-exp")
    assert pn.select_layers(net) == ["0.weight", "2.weight"]
    # a parametrized weight is listed after its module's own parameters, as named_parameters lists it
    assert sorted(pn.select_layers(net, "linear", bias=True)) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    snap = pn.sign_snapshot(net)
    assert all(torch.equal(snap[n], t[n].to(torch.int8)) for n in t)


@pytest.mark.parametrize("optimizer", ["SGD", "SparseAdam", "Adagrad"])
def test_a_sparse_embedding_keeps_its_template_or_is_refused_by_reparam(optimizer):
    """nn.Embedding(sparse=True) gives sparse gradients: Freeze-SGD and project keep the
    template through them with the optimizers that take them; reparam, whose backward pass
    can't take them, is refused up front with the model unchanged."""
    for learner in ("freeze_sgd", "project", "reparam-softplus"):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Embedding(50, 8, sparse=True), nn.Flatten(), nn.Linear(24, 2))
        params = net[0].parameters() if optimizer == "SparseAdam" else net.parameters()
        opt = getattr(torch.optim, optimizer)(params, lr=0.05)
        t = pn.PolarityTemplate.random(net, seed=1, layers=["0.weight"])
        if learner.startswith("reparam"):
            before = snapshot(net)
            with pytest.raises(ValueError, match="embedding with sparse=True.*learner='freeze_sgd'"):
                pn.freeze(net, t, opt, learner=learner)
            assert_unchanged(net, before)
            continue
        handle = pn.freeze(net, t, opt, learner=learner)
        resets = 0
        # opting in to torch's sparse checks also checks the sparse tensors Freeze-SGD sees
        with torch.sparse.check_sparse_tensor_invariants(enable=True):
            for _ in range(20):
                opt.zero_grad()
                (net(torch.randint(0, 50, (16, 3))) - 3).pow(2).mean().backward()
                assert net[0].weight.grad.is_sparse
                opt.step()
                resets += sum(handle.last_resets.values()) if learner == "freeze_sgd" else 0
        assert pn.violations(net, t) == 0 and (learner != "freeze_sgd" or resets > 0)


def test_reparam_takes_an_adagrad_that_has_not_stepped():
    """Adagrad makes its state when it is built (step 0, zero accumulators), as right for V as for W."""
    torch.manual_seed(0)
    net = _net()
    t = pn.PolarityTemplate.random(net, seed=3)
    opt = torch.optim.Adagrad(net.parameters(), lr=0.1)
    assert opt.state[net[0].weight]  # made in the constructor
    pn.freeze(net, t, opt, learner="reparam-softplus")
    for _ in range(5):
        _step(net, opt, (5,))
    assert pn.violations(net, t) == 0
    stepped = _net()
    opt = torch.optim.Adagrad(stepped.parameters(), lr=0.1)
    _step(stepped, opt, (5,))
    with pytest.raises(ValueError, match="already has state for '0.weight'"):
        pn.freeze(stepped, pn.PolarityTemplate.random(stepped, seed=3), opt, learner="reparam-softplus")


def test_reparam_refuses_a_stepped_optimizer_a_tied_weight_and_a_parametrized_weight_unchanged():
    torch.manual_seed(0)
    net = _net()
    t = pn.PolarityTemplate.random(net, seed=3)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    _step(net, opt, (5,))
    before = snapshot(net)
    with pytest.raises(ValueError, match="already has state for '0.weight'"):
        pn.freeze(net, t, opt, learner="reparam-softplus")
    assert_unchanged(net, before)
    assert not any(parametrize.is_parametrized(m) for m in net.modules())

    tied = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    tied[1].weight = tied[0].weight
    tt = pn.PolarityTemplate.random(tied, seed=0)
    with pytest.raises(ValueError, match="tied weight"):
        pn.freeze(tied, tt, torch.optim.Adam(tied.parameters()), learner="reparam-abs")

    normed = nn.Linear(3, 3)
    parametrize.register_parametrization(normed, "weight", nn.Identity())
    with pytest.raises(ValueError, match="already has a parametrization"):
        pn.freeze(normed, pn.PolarityTemplate.random(normed, seed=0), torch.optim.Adam(normed.parameters()),
                  learner="reparam-exp")


def test_reparam_model_trains_under_parametrize_cached_evaluation():
    torch.manual_seed(0)
    net = _net()
    t = pn.PolarityTemplate.random(net, seed=0)
    pn.freeze(net, t, torch.optim.Adam(net.parameters()), learner="reparam-softplus")
    x = torch.randn(8, 5)
    with torch.no_grad(), parametrize.cached():
        cached = net(x)
    assert torch.equal(cached, net(x).detach())


# --------------------------------------------------------------------------- eg

def test_eg_needs_a_sign_preserving_optimizer_with_the_template_in_an_eg_group():
    net = _net()
    t = pn.PolarityTemplate.random(net, seed=0)
    before = snapshot(net)
    with pytest.raises(ValueError, match="needs polarnet.optim.EG or polarnet.optim.AdamEG, got Adam"):
        pn.freeze(net, t, torch.optim.Adam(net.parameters()), learner="eg")
    with pytest.raises(ValueError, match="'0.weight' is in a parameter group with update='gd'"):
        pn.freeze(net, t, AdamEG(net.parameters(), update="gd"), learner="eg")
    with pytest.raises(ValueError, match="'2.weight' is not in any of the optimizer's parameter groups"):
        pn.freeze(net, t, AdamEG([net.get_parameter("0.weight")]), learner="eg")
    assert_unchanged(net, before)


def test_eg_keeps_template_zeros_at_zero_and_signs_without_resets():
    torch.manual_seed(0)
    net = _net()
    t = pn.PolarityTemplate.from_proportions(net, (0.4, 0.3, 0.3), seed=0)
    opt = AdamEG(eg_groups(net, t), lr=0.3)
    handle = pn.freeze(net, t, opt, learner="eg")
    signs0 = {n: torch.sign(net.get_parameter(n)).clone() for n in t}
    for _ in range(20):
        _step(net, opt, (5,))
    for n in t:
        w = net.get_parameter(n)
        assert torch.all(w[t[n] == 0] == 0)
        moved = w != 0
        assert torch.equal(torch.sign(w)[moved], signs0[n][moved])
    assert handle.total_resets == 0


# --------------------------------------------------------------------------- project

def test_project_differs_from_the_zero_reset_rule_by_dropping_outward_momentum():
    """The zero rule leaves Adam's momentum pointing across the boundary, so the weight is
    pushed across and reset again; project drops that momentum, so it stays put."""
    results = {}
    for learner, reset in (("freeze_sgd", "zero"), ("project", None)):
        w = nn.Parameter(torch.tensor([0.05]))
        t = pn.PolarityTemplate({"w": torch.tensor([1])})
        holder = nn.Module()
        holder.w = w
        opt = torch.optim.Adam([w], lr=0.1)
        handle = pn.freeze(holder, t, opt, reset=reset, learner=learner)
        resets = []
        for step in range(6):
            opt.zero_grad()
            # a strong push towards negative values at first, then a weak pull back
            w.grad = torch.tensor([1.0 if step < 2 else -0.05])
            opt.step()
            resets.append(sum(handle.last_resets.values()))
        results[learner] = (resets, opt.state[w]["exp_avg"].item(), w.item())
    zero, project = results["freeze_sgd"], results["project"]
    assert sum(zero[0]) > sum(project[0])  # the zero rule keeps resetting the same weight
    assert project[2] > 0 and zero[2] == 0  # project's weight already moves back inside


def test_project_counts_clips_and_is_the_zero_rule_on_the_weights():
    torch.manual_seed(0)
    a, b = _net(), _net()
    b.load_state_dict(a.state_dict())
    t = pn.PolarityTemplate.random(a, seed=0)
    oa, ob = torch.optim.SGD(a.parameters(), lr=0.5), torch.optim.SGD(b.parameters(), lr=0.5)  # no momentum
    ha = pn.freeze(a, t, oa, reset="zero")
    hb = pn.freeze(b, t, ob, learner="project")
    for _ in range(3):
        torch.manual_seed(1)
        _step(a, oa, (5,))
        torch.manual_seed(1)
        _step(b, ob, (5,))
    for n, p in a.named_parameters():  # bit for bit, signed zeros included
        assert torch.equal(p, b.get_parameter(n)) and torch.equal(torch.signbit(p), torch.signbit(b.get_parameter(n)))
    assert ha.total_resets == hb.total_resets > 0


# --------------------------------------------------------------------------- freeze() options

@pytest.mark.parametrize("option", [dict(reset="zero"), dict(clear_state=True), dict(path="dense")])
@pytest.mark.parametrize("learner", ["project", "reparam-exp", "eg"])
def test_freeze_sgd_options_are_refused_for_other_learners(option, learner):
    net = _net()
    t = pn.PolarityTemplate.random(net, seed=0)
    opt = AdamEG(eg_groups(net, t)) if learner == "eg" else torch.optim.Adam(net.parameters())
    before = snapshot(net)
    with pytest.raises(ValueError, match=f"learner {learner!r} doesn't reset"):
        pn.freeze(net, t, opt, learner=learner, **option)
    assert_unchanged(net, before)


def test_unknown_learner_lists_the_known_ones():
    net = _net()
    with pytest.raises(ValueError, match="unknown learner 'sgd'; choose one of: eg, freeze_sgd"):
        pn.freeze(net, pn.PolarityTemplate.random(net), torch.optim.Adam(net.parameters()), learner="sgd")


def test_align_false_keeps_weights_for_every_learner():
    for learner in LEARNERS:
        torch.manual_seed(0)
        net = _net()
        t = pn.PolarityTemplate.from_model(net)  # already aligned
        before = {n: net.get_parameter(n).detach().clone() for n in t}
        opt = AdamEG(eg_groups(net, t)) if learner == "eg" else torch.optim.Adam(net.parameters())
        handle = pn.freeze(net, t, opt, learner=learner, align=False)
        for n, w in pn.layers.named_tensors(net).items():
            if n in before:
                torch.testing.assert_close(w, before[n], rtol=1e-6, atol=0)
        handle.remove()


def test_project_follows_a_template_that_moves_between_steps():
    torch.manual_seed(0)
    net = _net()
    t = pn.PolarityTemplate.random(net, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    pn.freeze(net, t, opt, learner="project")
    _step(net, opt, (5,))
    pn.fluid_spin_swap(net, t, 0.5, seed=0)  # Fluid SPIN: half the signs move, weights with them
    for _ in range(5):
        _step(net, opt, (5,))
        assert pn.violations(net, t) == 0


# --------------------------------------------------------------------------- checkpoints of a frozen model

def _bn_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 4), nn.ReLU(),
                         nn.Linear(4, 3))


@pytest.mark.parametrize("learner", LEARNERS.names())
def test_a_frozen_models_state_dict_loads_into_the_unmodified_architecture(learner):
    torch.manual_seed(0)
    net = _bn_net()
    t = pn.PolarityTemplate.random(net, seed=1, p_positive=0.6)
    optimizer = LEARNERS.get(learner).optimizer(net, t, 0.05, 1e-8)
    pn.freeze(net, t, optimizer, learner=learner)
    for _ in range(3):
        _step(net, optimizer, (2, 4, 4))
    saved = net.state_dict()
    plain = _bn_net()
    assert list(saved) == list(plain.state_dict())  # the same keys, in the same order
    plain.load_state_dict(saved)  # strict
    for name in t:  # the weights the frozen model computes
        assert torch.equal(plain.get_parameter(name), pn.layers.named_tensors(net)[name])
    assert pn.violations(plain, t) == 0
    # and the frozen model takes its own checkpoint back, with the same outputs
    x = torch.randn(4, 2, 4, 4)
    net.eval(), plain.eval()
    before = net(x)
    net.load_state_dict(saved)
    torch.testing.assert_close(net(x), before)
    torch.testing.assert_close(plain(x), before)


@pytest.mark.parametrize("learner", REPARAM)
def test_reparam_refuses_to_load_a_weight_that_breaks_its_template(learner):
    net = _net()
    t = pn.PolarityTemplate.random(net, seed=0)
    pn.freeze(net, t, torch.optim.Adam(net.parameters()), learner=learner)
    saved = net.state_dict()
    saved["0.weight"] = -saved["0.weight"]
    with pytest.raises(RuntimeError, match=r"0\.weight: the loaded weight breaks the frozen model's template at \d+ of 40"):
        net.load_state_dict(saved)


@pytest.mark.parametrize("learner", REPARAM)
def test_reparam_removal_drops_the_state_dict_hooks(learner):
    net = _net()
    handle = pn.freeze(net, pn.PolarityTemplate.random(net, seed=0), torch.optim.Adam(net.parameters()),
                       learner=learner)
    handle.remove()
    assert all(not m._state_dict_hooks and not m._load_state_dict_pre_hooks for m in net.modules())
