"""Freeze-SGD: after every optimizer step, put every weight back on its template's side.

A violation is a weight with ``w·T < 0``, a nonzero weight where ``T = 0``, or a weight
that is NaN or ±inf (it has no usable sign or magnitude: training diverged). A weight at
exactly 0 where ``T ≠ 0`` sits on the boundary and is allowed.

:func:`freeze`, :func:`enforce` and :class:`Enforcer` refuse a model whose constrained
weights already hold NaN or inf, and an optimizer holds at most one freeze hook at a time.
A tied weight (one tensor under two names) is enforced once.

Enforcement changes parameters in place (never replaces or renames them), so
checkpoints, ``state_dict`` keys and the optimizer's parameter references stay valid.
Its cost is a pass over each weight's sign bits against a cached boolean mask; only the
violating entries (usually a tiny fraction) are gathered, reset and written back.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .init import align as _align
from .keyed import keyed_uniform
from .registry import Registry
from .template import PolarityTemplate

__all__ = ["RESETS", "register_reset", "Enforcer", "FreezeHandle", "enforce", "freeze", "violations"]

ResetRule = Callable[[Tensor, Tensor, float, Callable[[], Tensor]], Tensor]
RESETS: Registry[ResetRule] = Registry("reset rule")


def register_reset(name: str) -> Callable[[ResetRule], ResetRule]:
    """Register ``rule(values, signs, eps, uniform) -> new values``.

    ``values`` are the violating weights (1-D), ``signs`` their template signs (±1, same
    dtype and device), and ``uniform()`` returns one U[0, 1) number per entry (keyed by
    position and step when the enforcer is seeded); the result must satisfy
    ``new · signs >= 0`` (it is checked).

    Example:
        >>> @register_reset("half_eps_demo")
        ... def half_eps(values, signs, eps, uniform):
        ...     return signs * (eps / 2)
        >>> RESETS.unregister("half_eps_demo")
    """
    return RESETS.register(name)


@register_reset("posRand")
def pos_rand(values: Tensor, signs: Tensor, eps: float, uniform: Callable[[], Tensor]) -> Tensor:
    """w ← T·U[0, ε): the rule behind the papers' main results (the default)."""
    return uniform().mul_(eps).mul_(signs)


@register_reset("posCon")
def pos_con(values: Tensor, signs: Tensor, eps: float, uniform: Callable[[], Tensor]) -> Tensor:
    """w ← T·ε."""
    return signs * eps


@register_reset("zero")
def zero(values: Tensor, signs: Tensor, eps: float, uniform: Callable[[], Tensor]) -> Tensor:
    """w ← 0 (signed like T, so the sign bit agrees with the template)."""
    return signs * 0.0


@register_reset("flip")
def flip(values: Tensor, signs: Tensor, eps: float, uniform: Callable[[], Tensor]) -> Tensor:
    """w ← −w."""
    return -values


@dataclass
class _LayerCache:
    key: tuple[Any, ...]
    order: list[int] | None  # permutation that makes the weight contiguous (None: already is)
    negative: Tensor  # bool, T < 0, flat in the weight's memory order, on its device
    zeros: Tensor | None  # flat indices where T == 0
    flagged: Tensor  # reusable bool buffer, padded to a multiple of 8: allocating it every step costs more than the check


def _memory_order(name: str, w: Tensor) -> list[int] | None:
    if w.is_contiguous():
        return None
    order = sorted(range(w.dim()), key=lambda d: (-w.stride(d), -w.shape[d]))
    if not w.permute(order).is_contiguous():
        raise ValueError(f"layer {name!r}: the weight is not dense in memory (strides {w.stride()}); make it contiguous")
    return order


def _flat(t: Tensor, order: list[int] | None) -> Tensor:
    return (t if order is None else t.permute(order)).view(-1)


def _sparse_nonzero(flags: Tensor) -> Tensor:
    """Indices of the True entries of a bool buffer whose length is a multiple of 8.

    On the CPU ``nonzero`` costs about 1 ns per element; scanning the buffer as int64 words
    first (8 flags at a time) and then only the words that hold a flag is 1.5–3× faster when
    flags are sparse, as violations are.
    """
    if flags.device.type != "cpu":
        return flags.nonzero().squeeze(1)
    words = flags.view(torch.int64).nonzero().squeeze(1)
    rows, cols = flags.view(-1, 8).index_select(0, words).nonzero(as_tuple=True)
    return words.index_select(0, rows).mul_(8).add_(cols)


def _check_finite(weights: dict[str, Tensor]) -> None:
    """Refuse weights holding NaN or inf, naming each layer and how many."""
    bad = []
    for name, w in weights.items():
        if w.is_floating_point():
            n = int((~torch.isfinite(w.detach())).sum())
            if n:
                bad.append(f"{name!r} ({n} of {w.numel()})")
    if bad:
        raise ValueError(f"the model's constrained weights hold NaN or inf: {', '.join(bad)}; a template can't be kept "
                         f"on them (training diverged, or the weights were loaded damaged): re-initialise or repair "
                         f"them (e.g. torch.nan_to_num) first")


_BUILTIN_RULES = frozenset({pos_rand, pos_con, zero, flip})  # by identity: a re-registered name is checked


class Enforcer:
    """Applies a template to a model's weights; the functional core of :func:`freeze`.

    Args:
        model: the network whose parameters are constrained.
        template: the signs; checked against ``model`` here.
        reset: a reset rule name (see ``RESETS.names()``).
        eps: ε > 0 of the ``posCon``/``posRand`` rules.
        seed: makes random resets a function of (seed, step, layer, position) — see
            :mod:`polarnet.keyed` — so they don't depend on device, layout or what else is
            reset; ``None`` draws from torch's global RNG.
        optimizer: with ``clear_state=True``, the optimizer whose per-weight state is zeroed
            for the reset entries.
        clear_state: zero the optimizer state (e.g. Adam moments) of reset entries.

    Example:
        >>> net = nn.Linear(4, 4)
        >>> t = PolarityTemplate.random(net)
        >>> e = Enforcer(net, t)
        >>> resets = e()             # resets per layer
        >>> violations(net, t)
        0
    """

    def __init__(self, model: nn.Module, template: PolarityTemplate, reset: str = "posRand", eps: float = 1e-3,
                 seed: int | None = None, optimizer: torch.optim.Optimizer | None = None,
                 clear_state: bool = False) -> None:
        self.rule = RESETS.get(reset)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < float("inf"):
            raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
        if clear_state and optimizer is None:
            raise ValueError("clear_state=True needs the optimizer whose state to clear")
        found = template.check(model)
        _check_finite(found)
        self.model, self.template, self.reset, self.eps = model, template, reset, float(eps)
        self.optimizer, self.clear_state, self.seed = optimizer, clear_state, seed
        self._cache: dict[str, _LayerCache] = {}
        index = {name: i for i, name in enumerate(template._signs)}
        self._plan: list[tuple[int, str]] = [(index[name], name) for name in found]
        self._plan_version: int | None = template.version
        self.calls = 0

    def _layers(self) -> list[tuple[int, str]]:
        """``(index in the template, name)`` per weight to enforce: a tied weight once.

        Re-checked against the model whenever the template's version changes."""
        if self._plan_version != self.template.version:
            index = {name: i for i, name in enumerate(self.template._signs)}
            self._plan = [(index[name], name) for name in self.template.check(self.model)]
            self._plan_version = self.template.version
        return self._plan

    def _uniform(self, layer_index: int, w: Tensor, order: list[int] | None, idx: Tensor, like: Tensor) -> Callable[[], Tensor]:
        if self.seed is None:
            return lambda: torch.rand(like.shape, device=like.device, dtype=like.dtype)
        seed, step = self.seed, self.calls

        def keyed() -> Tensor:
            position = idx
            if order is not None:  # key by the logical (row-major) position, not the memory order
                coords = torch.unravel_index(idx, tuple(w.shape[d] for d in order))
                strides = torch.ones(w.dim(), dtype=torch.int64)
                for d in range(w.dim() - 2, -1, -1):
                    strides[d] = strides[d + 1] * w.shape[d + 1]
                position = sum(coords[k] * int(strides[d]) for k, d in enumerate(order))
            return keyed_uniform(seed, step, layer_index, position, like.dtype)

        return keyed

    def _layer(self, name: str, w: Tensor) -> _LayerCache:
        key = (self.template.version, w.device, w.shape, w.stride())
        cached = self._cache.get(name)
        if cached is not None and cached.key == key:
            return cached
        signs = self.template._signs[name]  # read-only use: no copy
        if tuple(signs.shape) != tuple(w.shape):
            raise ValueError(f"layer {name!r}: template shape {tuple(signs.shape)} ≠ weight shape {tuple(w.shape)}")
        order = _memory_order(name, w)
        flat = (signs if order is None else signs.permute(order)).reshape(-1)
        zeros = (flat == 0).nonzero().squeeze(1).to(w.device) if bool((flat == 0).any()) else None
        negative = (flat < 0).to(w.device)
        flagged = torch.zeros(-(-flat.numel() // 8) * 8, dtype=torch.bool, device=w.device)
        self._cache[name] = _LayerCache(key, order, negative, zeros, flagged)
        return self._cache[name]

    @torch.no_grad()
    def __call__(self) -> dict[str, int]:
        """Enforce once; return the number of weights reset per layer (a tied weight under the first of its template names).

        NaN or inf produced by training is not repaired (no magnitude is known for it);
        :func:`violations` counts it.
        """
        self.calls += 1
        resets: dict[str, int] = {}
        for layer_index, name in self._layers():
            w = self.model.get_parameter(name)
            layer = self._layer(name, w)
            flat = _flat(w, layer.order)
            n = 0
            if layer.zeros is not None:
                stray = layer.zeros[flat.index_select(0, layer.zeros) != 0]
                if stray.numel():
                    flat.index_fill_(0, stray, 0.0)
                    if self.clear_state:
                        self._clear_state(w, layer.order, stray)
                    n += stray.numel()
            flagged = layer.flagged[: flat.numel()]
            torch.signbit(flat, out=flagged)
            flagged.ne_(layer.negative)
            idx = _sparse_nonzero(layer.flagged)
            if idx.numel():
                values = flat.index_select(0, idx)
                real = values != 0  # ±0.0 on the wrong side is on the boundary, not a violation
                if not bool(real.all()):
                    idx, values = idx[real], values[real]
                signs = values.sign().neg_()  # a violating weight has the sign opposite to T
                new = self.rule(values, signs, self.eps, self._uniform(layer_index, w, layer.order, idx, values))
                if self.rule not in _BUILTIN_RULES and bool((new * signs < 0).any()):
                    raise RuntimeError(f"reset rule {self.reset!r} produced values on the wrong side of the template")
                flat.index_copy_(0, idx, new.to(w.dtype))
                if self.clear_state:
                    self._clear_state(w, layer.order, idx)
                n += idx.numel()
            resets[name] = n
        return resets

    def _clear_state(self, w: Tensor, order: list[int] | None, idx: Tensor) -> None:
        assert self.optimizer is not None
        shape = w.shape if order is None else [w.shape[d] for d in order]
        coords = torch.unravel_index(idx, tuple(shape))
        if order is not None:  # back from memory order to the weight's own dimensions
            coords = tuple(coords[order.index(d)] for d in range(w.dim()))
        for value in self.optimizer.state.get(w, {}).values():
            if isinstance(value, Tensor) and value.shape == w.shape:
                value.index_put_(coords, value.new_zeros(()))


@dataclass
class FreezeHandle:
    """What :func:`freeze` returns: remove it to make the net Fluid again.

    Attributes:
        enforcer: the :class:`Enforcer` run after every step.
        last_resets: resets per layer at the latest step.
        total_resets: resets since :func:`freeze`.
        steps: optimizer steps seen.

    Example:
        >>> net = nn.Linear(3, 3)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> handle = freeze(net, PolarityTemplate.random(net), opt)
        >>> handle.active
        True
        >>> handle.remove()              # the optimizer may be frozen again now
        >>> handle.active, freeze(net, PolarityTemplate.random(net, seed=1), opt).active
        (False, True)
    """

    enforcer: Enforcer
    _hook: Any = field(repr=False)
    last_resets: dict[str, int] = field(default_factory=dict)
    total_resets: int = 0
    steps: int = 0

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.last_resets = self.enforcer()
        self.total_resets += sum(self.last_resets.values())
        self.steps += 1

    def remove(self) -> None:
        """Stop enforcing; the model keeps its current weights and stays usable, and the
        optimizer may be frozen again."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
            optimizer = self.enforcer.optimizer
            if optimizer is not None and _hooked(optimizer) is self:
                del _HOOKED[optimizer]

    @property
    def active(self) -> bool:
        """Whether enforcement is still hooked to the optimizer."""
        return self._hook is not None


# optimizer -> its freeze hook's handle (two hooks would enforce two templates that fight). Both
# weak: the handle holds the optimizer, and the optimizer's hook already keeps the handle alive.
_HOOKED: weakref.WeakKeyDictionary[torch.optim.Optimizer, weakref.ref[FreezeHandle]] = weakref.WeakKeyDictionary()


def _hooked(optimizer: torch.optim.Optimizer) -> FreezeHandle | None:
    ref = _HOOKED.get(optimizer)
    handle = ref() if ref is not None else None
    return handle if handle is not None and handle.active else None


def freeze(model: nn.Module, template: PolarityTemplate, optimizer: torch.optim.Optimizer, reset: str = "posRand",
           eps: float = 1e-3, *, align: bool = True, seed: int | None = None, clear_state: bool = False) -> FreezeHandle:
    """Make ``model`` a Frozen-Net: enforce ``template`` after every ``optimizer.step()``.

    Uses ``optimizer.register_step_post_hook``, so any ``torch.optim`` optimizer and an
    unchanged training loop work. Everything is validated before the model is touched.
    An optimizer takes one freeze at a time: freezing it again raises until the first
    handle is removed.

    Args:
        model: the network; its parameters stay the same objects.
        template: the signs to keep.
        optimizer: any ``torch.optim.Optimizer``.
        reset: reset rule for violating weights (``posRand``, ``posCon``, ``zero``, ``flip`` or your own).
        eps: ε > 0 for ``posCon``/``posRand``.
        align: flip the weights to the template now (``w ← |w|·T``), as the papers do.
        seed: makes random resets reproducible: a function of (seed, step, layer, position);
            ``None`` uses torch's global RNG.
        clear_state: also zero the optimizer's per-weight state for reset entries.

    Returns:
        A :class:`FreezeHandle`; ``handle.remove()`` stops enforcement.

    Raises:
        ValueError: the template doesn't fit the model, a bad ``reset``/``eps``, or the
            constrained weights already hold NaN or inf (naming the layers and counts).
        RuntimeError: ``optimizer`` already has a polarnet freeze hook.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
        >>> t = PolarityTemplate.random(net, seed=0)
        >>> opt = torch.optim.Adam(net.parameters(), lr=0.1)
        >>> handle = freeze(net, t, opt)
        >>> net(torch.randn(8, 4)).pow(2).mean().backward(); opt.step()
        >>> violations(net, t)
        0
        >>> handle.remove()
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if _hooked(optimizer) is not None:
        raise RuntimeError("this optimizer already has a polarnet freeze hook; call handle.remove() first on the handle "
                           "that freeze() returned (two hooks would enforce two templates against each other)")
    enforcer = Enforcer(model, template, reset, eps, seed, optimizer, clear_state)
    if align:
        _align(model, template)
    handle = FreezeHandle(enforcer, None)
    handle._hook = optimizer.register_step_post_hook(handle._after_step)
    _HOOKED[optimizer] = weakref.ref(handle)
    return handle


def enforce(model: nn.Module, template: PolarityTemplate, reset: str = "posRand", eps: float = 1e-3, *,
            seed: int | None = None) -> int:
    """Enforce once, for custom training loops; returns the number of weights reset.

    For repeated calls build an :class:`Enforcer` once: it caches the template on the device.
    Like :class:`Enforcer`, refuses weights that already hold NaN or inf.

    Example:
        >>> net = nn.Linear(4, 4)
        >>> t = PolarityTemplate({"weight": torch.ones(4, 4)})
        >>> enforce(net, t) >= 0 and violations(net, t) == 0
        True
    """
    return sum(Enforcer(model, template, reset, eps, seed)().values())


@torch.no_grad()
def violations(model: nn.Module, template: PolarityTemplate, *, per_layer: bool = False) -> int | dict[str, int]:
    """Count weights that break the template: ``w·T < 0``, ``w ≠ 0`` where ``T = 0``, or ``w`` NaN/±inf.

    A non-finite weight counts whatever its template sign: a diverged run must not look
    healthy. A tied weight is counted once, under the first of its names in the template.

    Example:
        >>> lin = nn.Linear(2, 1, bias=False)
        >>> _ = lin.weight.data.copy_(torch.tensor([[0.5, 0.0]]))
        >>> violations(lin, PolarityTemplate({"weight": torch.tensor([[-1, 1]])}))
        1
    """
    counts = {}
    for name, w in template.check(model).items():
        t = template._signs[name].to(w.device)
        bad = (w * t < 0) | ((t == 0) & (w != 0)) | ~torch.isfinite(w)
        counts[name] = int(bad.sum())
    return counts if per_layer else sum(counts.values())
