"""The stacked program and Adam: many models of one architecture as one, to rounding (Adam bit for bit)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from polarnet import native
from polarnet.experiments.stacked import MEMBERS, SHARED, Act, StackedProgram, adam_
from polarnet.models import get_model


def _bn_lenet() -> nn.Module:
    """LeNet with BatchNorm in the features and in the classifier, a 3×3 pool and dropout."""
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Conv2d(1, 6, 5, padding=2, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                               nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(3, 2)),
        flatten=nn.Flatten(),
        classifier=nn.Sequential(nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.BatchNorm1d(32), nn.Linear(32, 10)),
    ))


def test_the_program_matches_the_model_layer_by_layer() -> None:
    """Stacked members on shared (validation) and per-member (training) inputs give each
    model's own outputs, gradients and BatchNorm statistics; no data needed."""
    torch.manual_seed(0)
    models = [_bn_lenet().train() for _ in range(3)]
    params = {n: torch.stack([m.get_parameter(n).detach() for m in models]) for n, _ in models[0].named_parameters()}
    buffers = {n: torch.stack([m.get_buffer(n).clone() for m in models]) for n, _ in models[0].named_buffers()}
    program = StackedProgram(_bn_lenet())
    x = torch.randn(3, 8, 1, 28, 28)
    leaves = {n: p.clone().requires_grad_() for n, p in params.items()}
    out = program(leaves, buffers, Act(x, "members"), True)
    grads = torch.autograd.grad(out.square().sum(), list(leaves.values()))
    for m, model in enumerate(models):
        own = model(x[m])
        torch.testing.assert_close(out[m], own, atol=1e-5, rtol=1e-5)
        for g, (name, p) in zip(grads, model.named_parameters()):
            torch.testing.assert_close(g[m], torch.autograd.grad(own.square().sum(), p, retain_graph=True)[0],
                                       atol=1e-4, rtol=1e-4)
        for name, b in model.named_buffers():  # running statistics moved as the model's did
            torch.testing.assert_close(buffers[name][m], b.to(buffers[name].dtype))
    shared = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        out = program(params, buffers, Act(shared, "shared"), False)
        for m, model in enumerate(models):
            model.eval()
            torch.testing.assert_close(out[m], model(shared), atol=1e-5, rtol=1e-5)


class _Reshaping(nn.Module):
    """torch.fx can't trace ``len`` of a proxy: the whole model runs under vmap."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 3, 3), nn.Linear(3 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x), 1).reshape(len(x), -1))


@pytest.mark.parametrize("make", [lambda: get_model("lenet"), _Reshaping])
@pytest.mark.parametrize("layout", [SHARED, MEMBERS])
def test_every_member_computes_its_own_model(make, layout) -> None:
    torch.manual_seed(1)
    models = [make().eval() for _ in range(3)]
    size = 28 if isinstance(models[0], nn.Sequential) else 6
    params = {n: torch.stack([m.get_parameter(n).detach() for m in models]) for n, _ in models[0].named_parameters()}
    program = StackedProgram(make())
    assert program.traced == isinstance(models[0], nn.Sequential)
    x = torch.randn(4, 1, size, size) if layout == SHARED else torch.randn(3, 4, 1, size, size)
    with torch.no_grad():
        out = program(params, {}, Act(x, layout), False)
    for m, model in enumerate(models):
        torch.testing.assert_close(out[m], model(x if layout == SHARED else x[m]), atol=1e-5, rtol=1e-5)


def test_adam_is_torch_adam_bit_for_bit() -> None:
    """Three members, their own learning rates, ten steps: exactly torch.optim.Adam's numbers."""
    torch.manual_seed(2)
    start = torch.randn(3, 5, 4)
    grads = torch.randn(10, 3, 5, 4)
    lrs = (0.1, 0.003, 0.03)
    stacked, avg, square = start.clone(), torch.zeros(3, 5, 4), torch.zeros(3, 5, 4)
    for step in range(10):
        adam_([stacked], [grads[step]], [avg], [square], step + 1, torch.tensor(lrs, dtype=torch.float64), 1e-8)
    uniform, avg, square = start.clone(), torch.zeros(3, 5, 4), torch.zeros(3, 5, 4)
    for step in range(10):
        adam_([uniform], [grads[step]], [avg], [square], step + 1, lrs[1], 1e-8)
    for m, lr in enumerate(lrs):
        p = nn.Parameter(start[m].clone())
        opt = torch.optim.Adam([p], lr=lr, eps=1e-8)
        for step in range(10):
            p.grad = grads[step, m].clone()
            opt.step()
        assert torch.equal(stacked[m], p.detach())
        if lr == lrs[1]:
            assert torch.equal(uniform[m], p.detach())


def _lenet_stack(members: int) -> tuple[dict[str, torch.Tensor], list[nn.Module]]:
    models = [get_model("lenet").eval() for _ in range(members)]
    return {n: torch.stack([m.get_parameter(n).detach() for m in models]) for n, _ in models[0].named_parameters()}, \
        models


@pytest.mark.skipif(not native.available(), reason="no C compiler here")
def test_a_shared_batch_takes_the_fused_convolution_and_pool(monkeypatch) -> None:
    """LeNet's first convolution, its ReLU and 2×2 pool run as one C pass
    (:func:`polarnet.native.conv_pool`) on a shared batch, in evaluation and in training: the
    outputs and every gradient are the unfused program's to rounding, a NaN kept, with ties in
    the pool windows (a flat background). A per-member batch or one that needs a gradient
    doesn't take it."""
    torch.manual_seed(2)
    params, models = _lenet_stack(3)
    # first-layer weights in eighths and an image of small integers: its sums are exact, so no
    # order of summing can move a pool window's maximum (and the gradient with it)
    params["features.0.weight"] = (params["features.0.weight"] * 8).round() / 8
    params["features.0.bias"] = (params["features.0.bias"] * 8).round() / 8
    for m, model in enumerate(models):
        model.load_state_dict({**model.state_dict(), "features.0.weight": params["features.0.weight"][m],
                               "features.0.bias": params["features.0.bias"][m]})
    program = StackedProgram(get_model("lenet"))
    calls = []
    for name in ("conv_pool", "conv_pool_with_codes"):
        real = getattr(native, name)
        monkeypatch.setattr(native, name, lambda *a, real=real, **k: calls.append(1) or real(*a, **k))
    x = torch.randint(-3, 4, (6, 1, 28, 28)).float()
    x[:, :, :6] = 0.0  # equal values in whole pool windows: the gradient goes to each one's first
    x[0, 0, 10, 10] = float("nan")
    results = {}
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(StackedProgram, "_fusable", lambda self, t, w: False)
        with torch.no_grad():
            evaluated = program(params, {}, Act(x, SHARED), False)
        leaves = {n: p.clone().requires_grad_() for n, p in params.items()}
        trained = program(leaves, {}, Act(x[1:], SHARED), True)
        grads = torch.autograd.grad(trained.square().sum(), list(leaves.values()))
        results[fused] = evaluated, trained.detach(), grads
    assert len(calls) == 2
    (fused_eval, fused_train, fused_grads), (plain_eval, plain_train, plain_grads) = results[True], results[False]
    assert torch.isnan(fused_eval[:, 0]).all() and torch.isnan(plain_eval[:, 0]).all()
    torch.testing.assert_close(fused_eval[:, 1:], plain_eval[:, 1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused_train, plain_train, atol=1e-5, rtol=1e-5)
    for a, b in zip(fused_grads, plain_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    for m, model in enumerate(models):
        torch.testing.assert_close(fused_eval[m, 1:], model(x[1:]), atol=1e-5, rtol=1e-5)
    monkeypatch.undo()
    monkeypatch.setattr(native, "conv_pool", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(native, "conv_pool_with_codes", lambda *a, **k: calls.append(1))
    program(params, {}, Act(x.clone().requires_grad_(), SHARED), True)
    with torch.no_grad():
        program(params, {}, Act(x.expand(3, *x.shape), MEMBERS), False)
    assert len(calls) == 2


@pytest.mark.skipif(not native.available(), reason="no C compiler here")
@pytest.mark.parametrize("layout", [SHARED, MEMBERS])
def test_evaluation_pools_and_flattens_the_last_convolution_in_one_pass(monkeypatch, layout) -> None:
    """In evaluation, LeNet's second convolution's ReLU, 2×2 pool and the Flatten after it run
    as one C pass (:func:`polarnet.native.pool_flat`), with the same outputs as the passes it
    replaces; training, which needs their gradients, doesn't take it."""
    torch.manual_seed(4)
    params, models = _lenet_stack(3)
    program = StackedProgram(get_model("lenet"))
    calls = []
    real = native.pool_flat
    monkeypatch.setattr(native, "pool_flat", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.randn(5, 1, 28, 28)
    act = Act(x, SHARED) if layout == SHARED else Act(x.expand(3, *x.shape).clone(), MEMBERS)
    with torch.no_grad():
        fused = program(params, {}, act, False)
        assert len(calls) == 1
        monkeypatch.setattr(StackedProgram, "_flat_fusable", lambda self, t: False)
        plain = program(params, {}, act, False)
    assert torch.equal(fused, plain)
    for m, model in enumerate(models):
        torch.testing.assert_close(fused[m], model(x), atol=1e-5, rtol=1e-5)
    monkeypatch.undo()
    monkeypatch.setattr(native, "pool_flat", lambda *a, **k: calls.append(1))
    leaves = {n: p.clone().requires_grad_() for n, p in params.items()}
    program(leaves, {}, act, True)
    assert len(calls) == 1


def test_a_grouped_first_convolution_on_a_shared_batch_keeps_members_apart() -> None:
    """groups > 1 over a shared input: each member's groups read the input's channels, as its
    own model does (the dense side-by-side convolution only holds for one group)."""
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Conv2d(4, 6, 3, groups=2), nn.Flatten()) for _ in range(3)]
    params = {n: torch.stack([m.get_parameter(n).detach() for m in models]) for n, _ in models[0].named_parameters()}
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        out = StackedProgram(models[0])(params, {}, Act(x, SHARED), training=False)
    for m, model in enumerate(models):
        torch.testing.assert_close(out[m], model(x), atol=1e-5, rtol=1e-5)


def test_a_forward_that_reads_its_own_weight_is_refused_when_the_program_is_built() -> None:
    """A conv calling F.conv2d(x, self.weight) traces to a get_attr: refused at build time, with
    the weight named, so the engine can train such a model one run at a time instead."""
    from polarnet.experiments.stacked import Unstackable

    class Same(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1)), self.weight, self.bias)

    with pytest.raises(Unstackable, match="reads 1.weight directly, which the stacked engine can't trace"):
        StackedProgram(nn.Sequential(nn.ReLU(), Same(1, 2, 3)))
