"""Learners: how a Frozen net is kept on its template while it trains.

Wang et al. keep the template with Freeze-SGD: an ordinary step, then every weight that
crossed to the wrong side is reset (:mod:`polarnet.freeze`). Their §6 asks whether a learning
rule that respects the fixed polarity by construction learns better. A *learner* is such a
rule; :data:`LEARNERS` holds them, and ``freeze(model, T, optimizer, learner=NAME)`` applies
one to any model:

* ``freeze_sgd``: the optimizer's step, then the reset rule on the violations (the default).
* ``project``: the step, then a projection: violating weights become 0 and the momentum that
  would push them out again is dropped (:func:`polarnet.enforcement.project_`).
* ``reparam-softplus`` / ``reparam-exp`` / ``reparam-abs``: ``W = T ⊙ f(V)`` through
  ``torch.nn.utils.parametrize``; the optimizer trains ``V``.
* ``eg``: exponentiated gradient, ``w ← w · exp(−η · sign(w) · d)``; needs
  :class:`polarnet.optim.EG` or :class:`polarnet.optim.AdamEG` as the optimizer.

A learner also tells the study engine how to run it: the optimizer to build
(:attr:`Learner.optimizer`) and, for the vectorised ensembles, the three places a learner can
act in a step (:attr:`Learner.stacked`): the weights the forward pass sees, the update, and
what follows the update. A learner without a :class:`Stacked` recipe trains one run at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .enforcement import FIRST_MOMENTS, project_, template_code
from .freeze import Enforcer, _check_finite, load_template
from .init import align as _align
from .layers import aliases
from .optim import AdamEG, EG, eg_groups
from .registry import Registry
from .template import PolarityTemplate

__all__ = ["Learner", "Stacked", "LEARNERS", "register_learner", "MAGNITUDE_FNS", "SignedMagnitude", "Keeper",
           "adam_optimizer", "learner_formula", "signed_magnitude", "signed_magnitude_grad"]


# -- magnitude functions of reparam ----------------------------------------------------------------

@dataclass(frozen=True)
class MagnitudeFn:
    """``f`` of ``W = T ⊙ f(V)`` and its inverse (``V`` from ``|W|``)."""

    f: Callable[[Tensor], Tensor]
    inverse: Callable[[Tensor], Tensor]
    exact_zero: bool  # whether f reaches 0 (else |W| = 0 starts at the dtype's smallest normal number)


def _softplus_inverse(m: Tensor) -> Tensor:
    # log(expm1(m)), written to stay accurate for tiny m and finite for large m
    return m + torch.log(-torch.expm1(-m))


#: the ``f`` of each ``reparam-<f>`` learner
MAGNITUDE_FNS: dict[str, MagnitudeFn] = {
    "softplus": MagnitudeFn(nn.functional.softplus, _softplus_inverse, False),
    "exp": MagnitudeFn(torch.exp, torch.log, False),
    "abs": MagnitudeFn(torch.abs, lambda m: m, True),
}


class _SignedMagnitudeFunction(torch.autograd.Function):
    """``T ⊙ f(V)`` with one new tensor each way: the forward pass multiplies ``f(V)`` by the
    int8 signs in place, and the backward pass computes ``grad · T · f'(V)`` with torch's own
    derivative kernels, in the order autograd takes through ``f(V) * T`` (so the same numbers).
    On AlexNet's 57 M weights this is about half the time of letting autograd record the two
    ops: every fresh weight-sized tensor costs page faults on a CPU."""

    @staticmethod
    def forward(ctx: Any, v: Tensor, signs: Tensor, fn: str) -> Tensor:  # type: ignore[override]
        w = MAGNITUDE_FNS[fn].f(v).mul_(signs)  # f makes a new tensor, so in place is safe
        ctx.fn = fn
        ctx.save_for_backward(v, signs, w if fn == "exp" else v)
        return w

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:  # type: ignore[override]
        v, signs, w = ctx.saved_tensors
        return signed_magnitude_grad(grad, v, signs, ctx.fn, w), None, None


def signed_magnitude_grad(grad: Tensor, v: Tensor, signs: Tensor, fn: str, w: Tensor | None = None) -> Tensor:
    """The gradient to ``V`` of ``W = T ⊙ f(V)`` from the one to ``W``: ``grad · T · f'(V)``,
    computed as autograd computes it through ``f(V) * T`` (torch's own derivative kernels, in
    its order). ``w`` (``W``; recomputed when not given) serves ``exp``, whose derivative is ``W``.

    Example:
        >>> v, signs = torch.tensor([0.0, 1.0]), torch.tensor([1.0, -1.0])
        >>> signed_magnitude_grad(torch.ones(2), v, signs, "abs").tolist()
        [0.0, -1.0]
    """
    if fn == "exp":  # d/dV T·exp(V) = T·exp(V) = W
        return grad * (w if w is not None else torch.exp(v).mul_(signs))
    g = grad * signs
    if fn == "softplus":  # torch's own derivative, written into g
        return torch.ops.aten.softplus_backward.grad_input(g, v, 1.0, 20.0, grad_input=g)
    return g.mul_(torch.sign(v))


def signed_magnitude(v: Tensor, signs: Tensor, fn: str) -> Tensor:
    """``W = T ⊙ f(V)`` (``signs``: the template as −1/0/+1 in ``V``'s dtype, or int8, which is
    slower: a mixed-dtype product doesn't vectorise), differentiable in ``V``: what the
    ``reparam-<f>`` learners' parametrization and the vectorised ensembles compute.

    Example:
        >>> v = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
        >>> w = signed_magnitude(v, torch.tensor([1.0, -1.0, 0.0]), "exp")
        >>> w.tolist()
        [1.0, -2.7182817459106445, 0.0]
        >>> w.sum().backward(); v.grad.tolist()
        [1.0, -2.7182817459106445, 0.0]
    """
    if fn not in MAGNITUDE_FNS:
        raise ValueError(f"unknown magnitude function {fn!r}; choose one of {', '.join(MAGNITUDE_FNS)}")
    return _SignedMagnitudeFunction.apply(v, signs, fn)


class SignedMagnitude(nn.Module):
    """The parametrization ``W = T ⊙ f(V)`` (``T`` as int8, in a persistent buffer ``code``;
    a copy in ``V``'s dtype, not saved, makes the product fast).

    ``T = 0`` gives ``W = 0`` exactly (and ``V`` there gets no gradient). ``right_inverse``
    makes ``V`` from an aligned weight, so registering it keeps the weight's values (to
    rounding; a weight at exactly 0 where ``T ≠ 0`` starts at the dtype's smallest normal
    number, as softplus and exp never reach 0).

    Example:
        >>> lin = nn.Linear(3, 2, bias=False)
        >>> t = PolarityTemplate.from_model(lin)  # the weight's own signs: nothing to align
        >>> before = lin.weight.detach().clone()
        >>> _ = parametrize.register_parametrization(lin, "weight", SignedMagnitude(t["weight"], "abs"))
        >>> torch.equal(lin.weight, before), [name for name, _ in lin.named_parameters()]
        (True, ['parametrizations.weight.original'])
    """

    def __init__(self, signs: Tensor, fn: str = "softplus") -> None:
        super().__init__()
        if fn not in MAGNITUDE_FNS:
            raise ValueError(f"unknown magnitude function {fn!r}; choose one of {', '.join(MAGNITUDE_FNS)}")
        self.fn = fn
        self.register_buffer("code", template_code(signs))

    def forward(self, v: Tensor) -> Tensor:
        return signed_magnitude(v, self._signs(v), self.fn)

    def _signs(self, v: Tensor) -> Tensor:
        """``code`` in ``V``'s dtype and device, kept until ``code`` changes (a product of a
        float and an int8 tensor costs 4-5x one of two floats)."""
        key = (v.dtype, v.device, self.code.data_ptr(), self.code._version)
        if getattr(self, "_cached", None) is None or self._cached[0] != key:
            self._cached = (key, self.code.to(dtype=v.dtype, device=v.device))
        return self._cached[1]

    def right_inverse(self, w: Tensor) -> Tensor:
        spec = MAGNITUDE_FNS[self.fn]
        m = w.detach().abs()
        if not spec.exact_zero:
            m = m.clamp_min(torch.finfo(w.dtype).tiny)
        return spec.inverse(m).to(w.dtype)

    def extra_repr(self) -> str:
        return f"fn={self.fn!r}"


# -- what keeps the template after each step -------------------------------------------------------

class Keeper:
    """What a learner attaches to a model (the :class:`~polarnet.freeze.Enforcer` is the
    ``freeze_sgd`` one): run after every optimizer step, it returns the weights it reset or
    clipped per layer as a device tensor; :meth:`detach` undoes what attaching did.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> k = Keeper(net, PolarityTemplate.random(net, seed=0))
        >>> k.enforce().tolist(), k.calls
        ([0], 1)
    """

    def __init__(self, model: nn.Module, template: PolarityTemplate) -> None:
        self.model, self.template = model, template
        found = template.check(model)
        _check_finite(found)
        self._names = list(found)
        first = next(iter(found.values()), None)
        device = first.device if first is not None else torch.device("cpu")
        self._step = torch.zeros((), dtype=torch.int64, device=device)

    @property
    def layer_names(self) -> list[str]:
        """The constrained weights, in the order of :meth:`enforce`'s counts."""
        return list(self._names)

    @property
    def calls(self) -> int:
        """Steps so far (reads the device counter)."""
        return int(self._step)

    @calls.setter
    def calls(self, value: int) -> None:
        self._step.fill_(int(value))

    @torch.no_grad()
    def enforce(self) -> Tensor:
        """After a step: count it; nothing to reset (the learner keeps the template by construction)."""
        self._step += 1
        return torch.zeros(len(self._names), dtype=torch.int64, device=self._step.device)

    def detach(self) -> None:
        """Undo what attaching changed (nothing here)."""

    def state_dict(self) -> dict[str, Any]:
        """The template (packed) and the step counter: what
        :meth:`polarnet.FreezeHandle.state_dict` saves for this learner."""
        return {"template": self.template.state_dict(), "steps": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the template updated in place)."""
        load_template(self.template, state["template"], self.model)
        self.calls = int(state["steps"])


class _Projector(Keeper):
    """``project``: :func:`~polarnet.enforcement.project_` on every constrained weight."""

    def __init__(self, model: nn.Module, template: PolarityTemplate, optimizer: torch.optim.Optimizer) -> None:
        super().__init__(model, template)
        self.optimizer = optimizer
        self._codes: dict[str, tuple[int, Tensor]] = {}

    def _code(self, name: str, w: Tensor) -> Tensor:
        """The template's int8 signs in ``w``'s layout, rebuilt when the template changes (a
        Fluid-SPIN swap moves it between steps)."""
        cached = self._codes.get(name)
        if cached is None or cached[0] != self.template.version or cached[1].device != w.device \
                or cached[1].stride() != w.stride():
            cached = self._codes[name] = (self.template.version, template_code(self.template._signs[name], w))
        return cached[1]

    @torch.no_grad()
    def enforce(self) -> Tensor:
        self._step += 1
        counts = []
        for name in self._names:
            w = self.model.get_parameter(name)
            state = self.optimizer.state.get(w, {})
            moments = [state[k] for k in FIRST_MOMENTS if isinstance(state.get(k), Tensor) and state[k].shape == w.shape]
            counts.append(project_(w, self._code(name, w), moments=moments).to(self._step.device))
        return torch.stack(counts) if counts else self._step.new_zeros(0)


class _Reparametrized(Keeper):
    """``reparam-<f>``: ``W = T ⊙ f(V)`` registered on every constrained weight."""

    def __init__(self, model: nn.Module, template: PolarityTemplate, fn: str) -> None:
        super().__init__(model, template)
        self.fn = fn

    def _modules(self) -> dict[str, tuple[nn.Module, list[str]]]:
        """Module name → (module, its constrained leaves), in the model's order."""
        out: dict[str, tuple[nn.Module, list[str]]] = {}
        for name in self._names:
            module_name, _, leaf = name.rpartition(".")
            out.setdefault(module_name, (self.model.get_submodule(module_name), []))[1].append(leaf)
        return out

    def attach(self) -> None:
        self._hooks = []
        self._orders: dict[str, list[str]] = {}  # each module's parameter order before
        for module_name, (module, leaves) in self._modules().items():
            prefix = f"{module_name}." if module_name else ""
            # the keys the unmodified module saves, in its order (params, then persistent buffers)
            own = list(module._parameters) + [b for b in module._buffers if b not in module._non_persistent_buffers_set]
            self._orders[module_name] = list(module._parameters)
            for leaf in leaves:
                w = getattr(module, leaf)
                parametrize.register_parametrization(
                    module, leaf, SignedMagnitude(self.template._signs[f"{prefix}{leaf}"].to(w.device), self.fn))
            self._hooks.append(module.register_state_dict_post_hook(_plain_state_dict(own, leaves)))
            self._hooks.append(module.register_load_state_dict_pre_hook(_load_plain_weights(leaves)))

    def detach(self) -> None:
        """Make every weight a plain parameter again, holding ``T ⊙ f(V)`` (the same
        ``nn.Parameter`` objects, so an optimizer built on the model keeps working)."""
        for hook in getattr(self, "_hooks", []):
            hook.remove()
        self._hooks = []
        for name in self._names:
            module_name, _, leaf = name.rpartition(".")
            module = self.model.get_submodule(module_name)
            if parametrize.is_parametrized(module, leaf):
                parametrize.remove_parametrizations(module, leaf, leave_parametrized=True)
        for module_name, order in getattr(self, "_orders", {}).items():
            # removal appends the weight last; the state_dict keys keep the model's order
            params = self.model.get_submodule(module_name)._parameters
            for key in [k for k in order if k in params] + [k for k in params if k not in order]:
                params[key] = params.pop(key)

    def _parametrizations(self) -> dict[str, tuple[Tensor, SignedMagnitude]]:
        """Weight name → (``V``, its :class:`SignedMagnitude`)."""
        out = {}
        for module_name, (module, leaves) in self._modules().items():
            prefix = f"{module_name}." if module_name else ""
            for leaf in leaves:
                chain = module.parametrizations[leaf]
                out[f"{prefix}{leaf}"] = (chain.original, chain[0])
        return out

    def state_dict(self) -> dict[str, Any]:
        """Also the exact ``V`` of every weight: the model's own ``state_dict`` holds
        ``W = T ⊙ f(V)``, from which ``f⁻¹`` recovers ``V`` only to rounding."""
        return {**super().state_dict(),
                "magnitudes": {name: v.detach() for name, (v, _) in self._parametrizations().items()}}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        magnitudes = state.get("magnitudes", {})
        for name, (v, sm) in self._parametrizations().items():
            sm.code.copy_(template_code(self.template._signs[name]).to(sm.code.device))
            if name in magnitudes:
                v.copy_(magnitudes[name])


def _violating(w: Tensor, code: Tensor) -> int:
    t = code.to(w.device)
    return int(((w * t < 0) | ((t == 0) & (w != 0)) | ~torch.isfinite(w)).sum())


def _plain_state_dict(own: list[str], leaves: list[str]) -> Callable[..., None]:
    """A ``state_dict`` post-hook that saves a reparametrized module as the unmodified
    module would: ``weight`` (the ``W`` it computes), in its place among the module's own keys,
    and no ``parametrizations.*`` entries; so the checkpoint of a frozen model loads into the
    plain architecture."""

    def hook(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
        mine = []
        for key in reversed(state_dict):  # this module's keys are the last ones saved
            if not key.startswith(prefix):
                break
            mine.append(key)
        entries = {key: state_dict.pop(key) for key in reversed(mine)}
        with torch.no_grad():
            computed = {f"{prefix}{leaf}": getattr(module, leaf).detach() for leaf in leaves}
        for name in own:
            key = f"{prefix}{name}"
            if key in computed:
                state_dict[key] = computed[key]
            elif key in entries:
                state_dict[key] = entries.pop(key)
        for key, value in entries.items():
            if not key.startswith(f"{prefix}parametrizations."):
                state_dict[key] = value

    return hook


def _load_plain_weights(leaves: list[str]) -> Callable[..., None]:
    """A ``load_state_dict`` pre-hook that takes a plain ``weight`` (what :func:`_plain_state_dict`
    saves, or any checkpoint of the architecture) into ``V = f⁻¹(|W|)``, keeping the template;
    a weight that breaks the template is an error."""

    def hook(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any, strict: bool,
             missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
        for leaf in leaves:
            key = f"{prefix}{leaf}"
            if key not in state_dict or f"{prefix}parametrizations.{leaf}.original" in state_dict:
                continue
            w = state_dict.pop(key)
            sm = module.parametrizations[leaf][0]
            if not isinstance(w, Tensor) or tuple(w.shape) != tuple(sm.code.shape):
                shape = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
                error_msgs.append(f"size mismatch for {key}: copying a param with shape {shape} from checkpoint, "
                                  f"the shape in current model is {tuple(sm.code.shape)}.")
                continue
            bad = _violating(w, sm.code)
            if bad:
                error_msgs.append(f"{key}: the loaded weight breaks the frozen model's template at {bad} of "
                                  f"{w.numel()} entries; load it before freeze() (which aligns it), or align it "
                                  f"first (polarnet.align)")
                continue
            state_dict[f"{prefix}parametrizations.{leaf}.original"] = sm.right_inverse(w)
            state_dict[f"{prefix}parametrizations.{leaf}.0.code"] = sm.code

    return hook


# -- the registry ----------------------------------------------------------------------------------

Attach = Callable[[nn.Module, PolarityTemplate, torch.optim.Optimizer, dict[str, Any]], Any]
OptimizerFactory = Callable[[nn.Module, "PolarityTemplate | None", float, float], torch.optim.Optimizer]


@dataclass(frozen=True)
class Stacked:
    """How the vectorised ensembles run a learner, at the three places it can act in a step.

    Attributes:
        weights: ``f`` of ``W = T ⊙ f(V)`` (a key of :data:`MAGNITUDE_FNS`): the ensemble
            trains ``V`` and the forward pass sees ``W``; ``None``: the weights themselves.
        update: ``"gd"`` (Adam's additive step) or ``"eg"`` (Adam-style EG, multiplicative).
        after: ``"reset"`` (Freeze-SGD with the run's reset rule), ``"project"``
            (:func:`~polarnet.enforcement.project_`) or ``None``.
    """

    weights: str | None = None
    update: str = "gd"
    after: str | None = None


def adam_optimizer(model: nn.Module, template: PolarityTemplate | None, lr: float, eps: float) -> torch.optim.Optimizer:
    """The study engine's optimizer: ``torch.optim.Adam`` on every parameter.

    Example:
        >>> type(adam_optimizer(nn.Linear(2, 2), None, 0.01, 1e-8)).__name__
        'Adam'
    """
    return torch.optim.Adam(model.parameters(), lr=lr, eps=eps)


def _adam_eg_optimizer(model: nn.Module, template: PolarityTemplate | None, lr: float, eps: float) -> torch.optim.Optimizer:
    if template is None:
        return adam_optimizer(model, template, lr, eps)
    return AdamEG(eg_groups(model, template), lr=lr, eps=eps)


@dataclass(frozen=True)
class Learner:
    """One way to keep a template while training.

    Attributes:
        name: its registry name (a condition's ``learner``).
        formula: the update in one line (docs and reports).
        attach: ``attach(model, template, optimizer, options) -> keeper``: validates, aligns
            the weights to the template when ``options["align"]`` (:func:`polarnet.align`),
            changes the model if the learner needs to (reparam), and returns the
            :class:`Keeper` run after every step. It raises before changing anything when the
            input is bad. ``options`` also holds :func:`~polarnet.freeze`'s ``reset``, ``eps``,
            ``seed``, ``clear_state`` and ``path``.
        optimizer: builds the study engine's optimizer for a run (default Adam).
        stacked: the vectorised ensembles' recipe, or ``None`` (one run at a time).
        moves_template: whether a template changed between steps (Fluid SPIN's swap) is
            followed: false where the template is baked into the model (reparam).
    """

    name: str
    formula: str
    attach: Attach
    optimizer: OptimizerFactory = adam_optimizer
    stacked: Stacked | None = None
    moves_template: bool = True


LEARNERS: Registry[Learner] = Registry("learner")


def register_learner(learner: Learner) -> Learner:
    """Add a learner to :data:`LEARNERS` (the name is its own).

    Example:
        >>> def attach(model, template, optimizer, options):
        ...     keeper = Keeper(model, template)  # checks the template against the model
        ...     return _aligned(keeper, options)
        >>> _ = register_learner(Learner("trust_me_demo", "w ← w − η·g (and hope)", attach))
        >>> LEARNERS.get("trust_me_demo").stacked is None
        True
        >>> LEARNERS.unregister("trust_me_demo")
    """
    return LEARNERS.register(learner.name)(learner)


def _aligned(keeper: Any, options: dict[str, Any]) -> Any:
    """``keeper``, after aligning its model to its template when ``options["align"]`` asks."""
    if options.get("align", True):
        _align(keeper.model, keeper.template)
    return keeper


def _attach_freeze_sgd(model: nn.Module, template: PolarityTemplate, optimizer: torch.optim.Optimizer,
                       options: dict[str, Any]) -> Any:
    return _aligned(Enforcer(model, template, options["reset"], options["eps"], options["seed"], optimizer,
                             options["clear_state"], options["path"]), options)


def _attach_project(model: nn.Module, template: PolarityTemplate, optimizer: torch.optim.Optimizer,
                    options: dict[str, Any]) -> Keeper:
    return _aligned(_Projector(model, template, optimizer), options)


def _stepped(state: dict[str, Any]) -> bool:
    """Whether an optimizer's state for a weight comes from a step. Adagrad makes its state when
    it is built (step 0, the accumulator at its initial value), which fits V as well as W."""
    step = state.get("step")
    return bool(state) and (step is None or float(step) > 0)


def _attach_reparam(fn: str) -> Attach:
    def attach(model: nn.Module, template: PolarityTemplate, optimizer: torch.optim.Optimizer,
               options: dict[str, Any]) -> Keeper:
        keeper = _Reparametrized(model, template, fn)
        tied = aliases(model)
        for name in keeper.layer_names:
            module_name, _, leaf = name.rpartition(".")
            module = model.get_submodule(module_name)
            if name in tied or name in tied.values():
                raise ValueError(f"learner 'reparam-{fn}': layer {name!r} is a tied weight (one tensor under two "
                                 f"names), which a parametrization would split; use learner='freeze_sgd'")
            if parametrize.is_parametrized(module, leaf):
                raise ValueError(f"learner 'reparam-{fn}': layer {name!r} already has a parametrization "
                                 f"({module.parametrizations[leaf]}); reparam needs a plain weight: remove it "
                                 f"(torch.nn.utils.parametrize.remove_parametrizations) or use learner='freeze_sgd'")
            if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and module.sparse:
                raise ValueError(f"learner 'reparam-{fn}': layer {name!r} is an embedding with sparse=True, whose "
                                 f"sparse gradient the parametrization's backward pass can't take; use "
                                 f"learner='freeze_sgd' or 'project' (both keep sparse embeddings), or sparse=False")
            if _stepped(optimizer.state.get(module.get_parameter(leaf), {})):
                raise ValueError(f"learner 'reparam-{fn}': the optimizer already has state for {name!r} (it has "
                                 f"stepped): its moments are for W, and reparam trains V; freeze before the first "
                                 f"step, or build a new optimizer")
        _aligned(keeper, options)  # V starts from the aligned weights
        keeper.attach()
        return keeper

    return attach


def _attach_eg(model: nn.Module, template: PolarityTemplate, optimizer: torch.optim.Optimizer,
               options: dict[str, Any]) -> Keeper:
    if not isinstance(optimizer, (EG, AdamEG)):
        raise ValueError(f"learner 'eg' keeps signs through the optimizer's update, so it needs polarnet.optim.EG or "
                         f"polarnet.optim.AdamEG, got {type(optimizer).__name__}: build it with "
                         f"AdamEG(eg_groups(model, template), lr=...) (from polarnet.optim)")
    update = {id(p): group["update"] for group in optimizer.param_groups for p in group["params"]}
    for name, w in template.check(model).items():
        if update.get(id(w)) != "eg":
            where = "is not in any of the optimizer's parameter groups" if id(w) not in update else \
                "is in a parameter group with update='gd' (additive, not sign-preserving)"
            raise ValueError(f"learner 'eg': layer {name!r} {where}; build the optimizer with "
                             f"eg_groups(model, template) (from polarnet.optim), which puts the template's weights "
                             f"in an update='eg' group")
    return _aligned(Keeper(model, template), options)


for _learner in (
    Learner("freeze_sgd", "w ← step(w); then w ← reset(w) wherever w·T < 0 (Wang et al.'s Freeze-SGD)",
            _attach_freeze_sgd, stacked=Stacked(after="reset")),
    Learner("project", "w ← step(w); then w ← 0 and m ← 0 wherever w·T < 0 and m pushes w outwards",
            _attach_project, stacked=Stacked(after="project")),
    *(Learner(f"reparam-{fn}", f"W = T ⊙ {fn}(V); the optimizer steps V", _attach_reparam(fn),
              stacked=Stacked(weights=fn), moves_template=False) for fn in MAGNITUDE_FNS),
    Learner("eg", "w ← w · exp(−η · sign(w) · m̂/(√v̂ + ε)) (Adam-style EG; plain EG with polarnet.optim.EG)",
            _attach_eg, optimizer=_adam_eg_optimizer, stacked=Stacked(update="eg")),
):
    register_learner(_learner)


def learner_formula(name: str) -> str:
    """One line: how a learner updates (for reports).

    Example:
        >>> learner_formula("reparam-exp")
        'W = T ⊙ exp(V); the optimizer steps V'
    """
    return LEARNERS.get(name).formula

