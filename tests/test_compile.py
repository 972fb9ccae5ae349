"""Freeze-SGD inside torch.compile (CPU, inductor).

Two ways to compile a frozen model's training, both tested against the eager run:

* the whole train step compiled (forward, backward, ``optimizer.step()`` and the freeze
  hook): under ``torch.compile`` every path with a built-in reset rule traces the dense,
  sync-free computation (the same numbers), so polarnet adds no graph break; the breaks
  that remain are torch's own (``Optimizer.zero_grad`` is not traced, ``Tensor.backward()``
  is not traced, and ``Optimizer.step`` breaks the graph on purpose before and after the
  update: pytorch/pytorch#104053);
* the model compiled and the step eager: the hook runs eagerly on its fastest path (the C
  kernel on a CPU); no graph break at all.

A reset rule of your own runs eagerly (``torch.compiler.disable``): one graph break.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch._dynamo
from torch import nn

import polarnet as pn
from polarnet.freeze import RESETS, register_reset

STEPS = 4


def _cpp_compiler() -> str | None:
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return shutil.which(get_cpp_compiler())
    except Exception:
        return None


needs_inductor = pytest.mark.skipif(_cpp_compiler() is None,
                                    reason="torch.compile's CPU backend (inductor) needs a C++ compiler (g++/clang++, "
                                           "or $CXX); none found")


def _setup(path: str, reset: str = "posRand"):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    template = pn.PolarityTemplate.random(net, seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)  # large: weights cross at every step
    handle = pn.freeze(net, template, opt, reset, seed=1, path=path)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(32, 8, generator=g), torch.randint(0, 2, (32,), generator=g)

    def step(model: nn.Module) -> None:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return net, template, handle, step


def _eager(path: str) -> tuple[nn.Module, pn.FreezeHandle]:
    net, _, handle, step = _setup(path)
    for _ in range(STEPS):
        step(net)
    return net, handle


def _polarnet_breaks(explanation) -> list[str]:
    """Graph breaks whose innermost user frame is polarnet's code."""
    return [f"{b.reason.splitlines()[0]} at {b.user_stack[-1].filename}:{b.user_stack[-1].lineno}"
            for b in explanation.break_reasons if b.user_stack and "polarnet" in b.user_stack[-1].filename]


@pytest.mark.parametrize("path", ["auto", "sparse", "dense"])
def test_the_freeze_hook_adds_no_graph_break(path):
    """torch._dynamo.explain traces the whole step (no inductor compile: fast)."""
    torch._dynamo.reset()
    net, template, handle, step = _setup(path)
    explanation = torch._dynamo.explain(step)(net)
    assert _polarnet_breaks(explanation) == []
    # torch's own: zero_grad is skipped (a break counted by the compile counters, not here),
    # backward, and the optimizer's deliberate break around its update
    assert explanation.graph_break_count <= 2
    assert handle.steps == 1 and handle.total_resets > 0 and pn.violations(net, template) == 0


def test_a_reset_rule_of_your_own_runs_eagerly_behind_one_graph_break():
    @register_reset("half_eps_compile_test")
    def half_eps(values, signs, eps, uniform):
        return signs * (eps / 2)

    try:
        torch._dynamo.reset()
        net, template, handle, step = _setup("auto", reset="half_eps_compile_test")
        explanation = torch._dynamo.explain(step)(net)
        breaks = _polarnet_breaks(explanation)
        assert len(breaks) == 1 and "disable" in breaks[0]
        assert handle.total_resets > 0 and pn.violations(net, template) == 0
    finally:
        RESETS.unregister("half_eps_compile_test")


@pytest.mark.slow
@needs_inductor
def test_a_compiled_train_step_with_the_hook_trains_like_eager():
    """The whole step through inductor (one compile; 20-60 s on a busy CPU)."""
    from torch._dynamo.utils import counters

    reference, ref_handle = _eager("auto")
    torch._dynamo.reset()
    counters.clear()
    net, template, handle, step = _setup("auto")  # native eagerly; traced as dense under compile
    compiled = torch.compile(step)
    for _ in range(STEPS):
        compiled(net)
    breaks = counters["graph_break"]
    assert not [reason for reason in breaks if "polarnet" in reason]
    assert sum(breaks.values()) <= 4, dict(breaks)  # zero_grad, backward, the optimizer's two
    for (name, a), b in zip(reference.named_parameters(), net.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)  # compiled kernels round differently
    assert handle.steps == STEPS and handle.total_resets == ref_handle.total_resets > 0
    assert pn.violations(net, template) == 0


@pytest.mark.slow
@needs_inductor
def test_a_compiled_model_with_an_eager_step_trains_like_eager():
    from torch._dynamo.utils import counters

    reference, ref_handle = _eager("auto")
    torch._dynamo.reset()
    counters.clear()
    net, template, handle, step = _setup("auto")
    compiled = torch.compile(net)
    for _ in range(STEPS):
        step(compiled)
    assert sum(counters["graph_break"].values()) == 0
    for (name, a), b in zip(reference.named_parameters(), net.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    assert handle.enforcer.path in ("native", "sparse")  # the eager hook keeps its CPU path
    assert handle.total_resets == ref_handle.total_resets > 0 and pn.violations(net, template) == 0
