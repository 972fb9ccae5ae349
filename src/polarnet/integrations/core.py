"""What the trainer integrations share: the options of :func:`polarnet.freeze`, checked when the
adapter is built; freezing once a trainer has its optimizer, fresh or continuing a saved run;
and the reset counts a trainer logs.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(4, 2)
    >>> options = FreezeOptions(lambda model: PolarityTemplate.random(model, seed=0), seed=1)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.5)
    >>> handle = attach(net, options, opt)
    >>> net(torch.randn(8, 4)).sum().backward(); opt.step()
    >>> sorted(reset_metrics(handle))
    ['polarnet/resets', 'polarnet/total_resets']
    >>> state = handle.state_dict(); handle.remove()
    >>> again = attach(net, options, opt, state)          # continues: the same template, seed and step
    >>> again.steps, again.enforcer.seed
    (1, 1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor, nn

from ..freeze import RESETS, FreezeHandle, freeze
from ..learners import LEARNERS
from ..template import PolarityTemplate

__all__ = ["TemplateSpec", "FreezeOptions", "attach", "reset_metrics", "unwrap_optimizer", "detached"]

TemplateSpec = Union[PolarityTemplate, Callable[[nn.Module], PolarityTemplate]]
"""A template, or a function that builds one from the module to freeze (called when training starts)."""


@dataclass(frozen=True)
class FreezeOptions:
    """What an integration passes to :func:`polarnet.freeze` (the same arguments and defaults),
    plus ``module``: the name of the submodule to freeze (``None``: the whole model the trainer
    trains), so a template built for a plain network fits the module that wraps it.

    The learner and the reset rule are looked up here, so a typo fails when the callback is
    built, not when training starts.
    """

    template: TemplateSpec
    reset: str | None = None
    eps: float = 1e-3
    learner: str = "freeze_sgd"
    align: bool = True
    seed: int | None = None
    clear_state: bool = False
    path: str = "auto"
    module: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.template, PolarityTemplate) and not callable(self.template):
            raise TypeError(f"template must be a PolarityTemplate or a function module -> PolarityTemplate, "
                            f"got {type(self.template).__name__}")
        LEARNERS.get(self.learner)
        if self.reset is not None:
            RESETS.get(self.reset)

    def freeze_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`polarnet.freeze` (after model, template, optimizer)."""
        return dict(reset=self.reset, eps=self.eps, learner=self.learner, align=self.align, seed=self.seed,
                    clear_state=self.clear_state, path=self.path)


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The ``torch.optim.Optimizer`` inside a trainer's wrapper (accelerate's ``AcceleratedOptimizer``
    holds it as ``.optimizer``, Lightning's ``LightningOptimizer`` as ``._optimizer``): the one whose
    ``step`` runs, and so the one to hook.

    Example:
        >>> opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
        >>> unwrap_optimizer(opt) is opt
        True
    """
    for _ in range(8):
        inner = getattr(optimizer, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer):
            inner = getattr(optimizer, "_optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or inner is optimizer:
            break
        optimizer = inner
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"the trainer's optimizer is a {type(optimizer).__name__}, not a torch.optim.Optimizer "
                        f"(or a wrapper holding one as .optimizer): polarnet can't hook its step")
    return optimizer


def attach(model: nn.Module, options: FreezeOptions, optimizer: Any,
           state: dict[str, Any] | None = None) -> FreezeHandle:
    """Freeze ``model`` (or its ``options.module``) on the trainer's ``optimizer``.

    Without ``state``, a fresh start: :func:`polarnet.freeze` with ``options`` (aligning the
    weights if ``options.align``). With a saved :meth:`~polarnet.FreezeHandle.state_dict`, that
    run continues: no alignment (the restored weights already fit), then the saved template,
    seed, step counter, reset total (and a reparam learner's exact ``V``) are loaded. If the
    trainer restored the optimizer's state already (``transformers`` does, before any callback
    runs), that state is the saved run's, made for what it trained (``V`` under a reparam
    learner, which :func:`~polarnet.freeze` refuses on an optimizer that has state): it is set
    aside while freezing and put back unchanged.

    Raises:
        ValueError / RuntimeError / TypeError: as :func:`polarnet.freeze` and
            :meth:`~polarnet.FreezeHandle.load_state_dict` (nothing stays hooked then).
    """
    optimizer = unwrap_optimizer(optimizer)
    target = model.get_submodule(options.module) if options.module else model
    template = options.template if isinstance(options.template, PolarityTemplate) else options.template(target)
    if not isinstance(template, PolarityTemplate):
        raise TypeError(f"the template function returned a {type(template).__name__}, not a PolarityTemplate")
    kwargs = options.freeze_kwargs()
    if state is None:
        return freeze(target, template, optimizer, **kwargs)
    kept = dict(optimizer.state)
    optimizer.state.clear()
    try:
        handle = freeze(target, template, optimizer, **{**kwargs, "align": False})
    finally:
        optimizer.state.update(kept)
    try:
        handle.load_state_dict(state)
    except BaseException:
        handle.remove()
        raise
    return handle


def reset_metrics(handle: FreezeHandle) -> dict[str, float]:
    """``polarnet/resets`` (weights reset at the latest step, all layers) and
    ``polarnet/total_resets`` (since :func:`~polarnet.freeze`, across resumes). Reading them
    waits for the device: log them every few steps, not every step."""
    return {"polarnet/resets": float(sum(handle.last_resets.values())),
            "polarnet/total_resets": float(handle.total_resets)}


def detached(state: Any) -> Any:
    """A copy of a freeze state whose tensors share nothing with the model (a reparam learner's
    ``V`` would keep changing, or be gone after :meth:`~polarnet.FreezeHandle.remove`)."""
    if isinstance(state, Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {key: detached(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(detached(value) for value in state)
    return state
