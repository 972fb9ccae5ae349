"""Freeze-SGD: after every optimizer step, put every weight back on its template's side.

A violation is a weight with ``w·T < 0``, a nonzero weight where ``T = 0``, or a weight
that is NaN or ±inf (it has no usable sign or magnitude: training diverged). A weight at
exactly 0 where ``T ≠ 0`` sits on the boundary and is allowed.

:func:`freeze`, :func:`enforce` and :class:`Enforcer` refuse a model whose constrained
weights already hold NaN or inf, and an optimizer holds at most one freeze hook at a time.
A tied weight (one tensor under two names) is enforced once. A sharded weight (a DTensor,
e.g. under FSDP2) is enforced block by block on each rank (:mod:`polarnet.distributed`).

Enforcement changes parameters in place (never replaces or renames them), so
checkpoints, ``state_dict`` keys and the optimizer's parameter references stay valid.
The paths give the same weights bit for bit: on the CPU a C kernel (:mod:`polarnet.native`)
or, without a compiler, a sparse one in torch (a chunked pass over the sign bits, then only
the violating entries gathered, reset and written back), on a GPU the dense one of
:mod:`polarnet.enforcement`, which never synchronises with the device.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from . import distributed, native
from .builders import MAX_SEED, check_seed
from .enforcement import DENSE_RULES, dense_enforce_, template_code
from .keyed import keyed_uniform
from .registry import Registry
from .template import PolarityTemplate

__all__ = ["RESETS", "register_reset", "Enforcer", "FreezeHandle", "enforce", "freeze", "violations", "is_frozen",
           "default_seed", "load_template", "FREEZE_STATE_FORMAT"]

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
    order: list[int] | None  # permutation that makes the (local) weight contiguous (None: already is)
    code: Tensor  # int8 template signs in the weight's own layout, on its device: 1 byte per weight
    box: distributed.ShardBox | None  # where a DTensor's local block lies in the global weight (None: plain)
    has_zeros: bool | None = None  # whether T holds zeros (the sparse path then also looks for stray
    # weights); found when the sparse path first needs it, so building the cache never reads the device


#: entries the sparse path checks at a time: its flag buffers stay in the CPU's cache, which
#: makes the check 3-4x faster than one pass over a whole AlexNet layer (and they cost no
#: memory per weight)
_CHUNK = 1 << 21
_SAME_WIDTH_INT = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


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
    """Refuse weights holding NaN or inf, naming each layer and how many (summed over the
    ranks for a sharded weight, so every rank decides alike), and weights on the meta device,
    which hold no values to keep on a template."""
    meta = [name for name, w in weights.items() if w.is_meta]
    if meta:
        raise ValueError(f"the model's constrained weights are on the meta device (shapes without values): "
                         f"{', '.join(map(repr, meta[:6]))}{', …' if len(meta) > 6 else ''}; a template can't be kept on "
                         f"them: materialise them first (e.g. model.to_empty(device='cpu'), then init_magnitudes or "
                         f"load_state_dict), and build the optimizer after that (to_empty makes new parameters)")
    bad = []
    for name, w in weights.items():
        if w.is_floating_point():
            n = distributed.global_count(~torch.isfinite(distributed.local_view(w.detach())), w)
            if n:
                bad.append(f"{name!r} ({n} of {w.numel()})")
    if bad:
        raise ValueError(f"the model's constrained weights hold NaN or inf: {', '.join(bad)}; a template can't be kept "
                         f"on them (training diverged, or the weights were loaded damaged): re-initialise or repair "
                         f"them (e.g. torch.nan_to_num) first")


def default_seed() -> int:
    """The reset seed of a :func:`freeze` or :class:`Enforcer` given none: ``torch.initial_seed()``
    (so ``torch.manual_seed(s)`` makes the resets repeatable, and no generator is read or
    advanced), taken from rank 0 when a ``torch.distributed`` process group of several ranks
    is initialised (a collective: every rank freezes, as every rank builds its DDP wrapper),
    so replicas reset alike even when their ranks were seeded differently.

    Example:
        >>> _ = torch.manual_seed(123)
        >>> default_seed()
        123
    """
    seed = torch.initial_seed() % (MAX_SEED + 1)  # up to 2**64 - 1 unseeded; keyed seeds are int64
    if torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size() > 1:
        agreed = [seed]
        torch.distributed.broadcast_object_list(agreed, src=0)
        seed = int(agreed[0])
    return seed


def load_template(template: PolarityTemplate, packed: dict[str, Any], model: nn.Module) -> None:
    """Write a packed template (:meth:`PolarityTemplate.state_dict`) into ``template`` in place,
    after checking it has the same layers and fits ``model``; layers that don't change are
    left alone (their ``version`` with them).

    Example:
        >>> net = nn.Linear(2, 2)
        >>> t = PolarityTemplate.random(net, seed=0)
        >>> load_template(t, PolarityTemplate.random(net, seed=1).state_dict(), net)
        >>> t == PolarityTemplate.random(net, seed=1)
        True
    """
    saved = PolarityTemplate.from_state_dict(packed)
    if set(saved) != set(template):
        raise ValueError(f"the saved template covers other layers than this one: saved only "
                         f"{sorted(set(saved) - set(template))}, here only {sorted(set(template) - set(saved))}; "
                         f"freeze the same layers as the run that saved it")
    saved.check(model)
    for name in saved:
        if not torch.equal(saved._signs[name], template._signs[name]):
            template[name] = saved._signs[name]


_BUILTIN_RULES = frozenset({pos_rand, pos_con, zero, flip})  # by identity: a re-registered name is checked
PATHS = ("auto", "native", "sparse", "dense", "compiled")


class Enforcer:
    """Applies a template to a model's weights; the functional core of :func:`freeze`.

    Three implementations give the same weights bit for bit (a test holds them to it for every
    reset rule, templates with zeros, channels-last weights and four float dtypes):

    * ``native`` (:mod:`polarnet.native`): a C kernel, compiled on first use with the system's
      C compiler, that reads each weight once and computes resets for the violations only;
      float32/float64 weights on the CPU (others, and ``clear_state=True``, take ``sparse``).
      About 6-9x faster than ``sparse`` on AlexNet (``benchmarks/bench_freeze.py``).

    * ``sparse`` gathers only the violating entries (usually a tiny fraction) and writes them
      back. It reads counts back to the host, which costs nothing on a CPU, and is the faster
      of the two there (``benchmarks/bench_freeze.py`` measures both).
    * ``dense`` (:func:`polarnet.enforcement.dense_enforce_`) computes every entry's reset and
      keeps the violating ones. It never synchronises with the device: counts and the step
      counter stay tensors on the device, so it runs inside CUDA-graph capture and
      ``torch.compile``. ``compiled`` is the same computation through
      ``torch.compile(fullgraph=True)``, fused across layers.

    ``path="auto"`` takes ``native`` when every constrained weight is on the CPU (``sparse``
    where no C compiler is found, or with ``POLARNET_NATIVE=0``), else ``compiled`` on CUDA
    with Triton installed and ``dense`` otherwise; a reset rule of your own (not
    :data:`~polarnet.enforcement.DENSE_RULES`) always runs sparse, whose result it is checked
    against.

    Inside ``torch.compile`` (a compiled train step that calls ``optimizer.step()``) every path
    with a built-in rule traces the dense computation instead (the same numbers, no host
    reads, so no graph break); a rule of your own runs eagerly behind one graph break.

    Sharded weights (DTensors: FSDP2's ``fully_shard``, tensor parallelism) are enforced on each
    rank's own block (:mod:`polarnet.distributed`), against the template rows of that block,
    in place and without gathering the weight; random resets are keyed by the position in the
    whole weight, so a sharded run resets exactly as an unsharded one. A block takes the
    ``sparse`` torch path where ``native`` was chosen (the C kernel keys positions within the
    tensor it is given). Replicated weights (DDP) need nothing: every replica steps alike
    and resets alike (the default seed is agreed across ranks).

    Args:
        model: the network whose parameters are constrained.
        template: the signs; checked against ``model`` here.
        reset: a reset rule name (see ``RESETS.names()``).
        eps: ε > 0 of the ``posCon``/``posRand`` rules.
        seed: makes random resets a function of (seed, step, layer, position) — see
            :mod:`polarnet.keyed` — so they don't depend on device, layout, path or what else
            is reset; ``None`` takes :func:`default_seed` (``torch.initial_seed()``, agreed
            across the ranks of a process group), so ``torch.manual_seed`` makes a run
            repeatable and torch's global generator (dropout's) is never read.
        optimizer: with ``clear_state=True``, the optimizer whose per-weight state is zeroed
            for the reset entries.
        clear_state: zero the optimizer state (e.g. Adam moments) of reset entries.
        path: ``"auto"``, ``"native"``, ``"sparse"``, ``"dense"`` or ``"compiled"`` (see above).

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
                 clear_state: bool = False, path: str = "auto") -> None:
        self.rule = RESETS.get(reset)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < float("inf"):
            raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
        if clear_state and optimizer is None:
            raise ValueError("clear_state=True needs the optimizer whose state to clear")
        if path not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}; got {path!r}")
        builtin = self.rule in _BUILTIN_RULES
        if path in ("dense", "compiled", "native") and not builtin:
            raise ValueError(f"reset rule {reset!r} is not one of the built-in elementwise rules "
                             f"({', '.join(DENSE_RULES)}), so it can only run on path='sparse' (or 'auto')")
        if seed is not None:
            seed = check_seed(seed)
        found = template.check(model)
        _check_finite(found)
        self.model, self.template, self.reset, self.eps = model, template, reset, float(eps)
        self.optimizer, self.clear_state = optimizer, clear_state
        self.seed = seed if seed is not None else default_seed()
        self.seeded = seed is not None
        self._cache: dict[str, _LayerCache] = {}
        self._buffers: dict[torch.device, tuple[Tensor, Tensor]] = {}
        index = {name: i for i, name in enumerate(template._signs)}
        self._plan: list[tuple[int, str]] = [(index[name], name) for name in found]
        self._plan_version: int | None = template.version
        first = next(iter(found.values()), None)
        device = first.device if first is not None else torch.device("cpu")
        if path == "auto":
            on_cpu = all(w.device.type == "cpu" for w in found.values())
            path = "sparse" if not builtin else ("native" if native.library() is not None else "sparse") if on_cpu \
                else "compiled" if _can_compile(device) else "dense"
        self.path = path
        # the step counter lives on the device (as Adam(capturable=True) keeps its own), so it
        # advances under CUDA-graph replay too; the seed too, so a compiled step isn't
        # specialised to (and recompiled for) each run's seed
        self._step = torch.zeros((), dtype=torch.int64, device=device)
        self._seed = torch.tensor(self.seed, dtype=torch.int64, device=device)

    @property
    def calls(self) -> int:
        """Enforcement steps so far (reads the device counter: a sync on a GPU)."""
        return int(self._step)

    @calls.setter
    def calls(self, value: int) -> None:
        self._step.fill_(int(value))

    @property
    def layer_names(self) -> list[str]:
        """The constrained weights' names, in the order of :meth:`enforce`'s counts (a tied
        weight once, under the first of its template names)."""
        return [name for _, name in self._layers()]

    def _layers(self) -> list[tuple[int, str]]:
        """``(index in the template, name)`` per weight to enforce: a tied weight once.

        Re-checked against the model whenever the template's version changes."""
        if self._plan_version != self.template.version:
            index = {name: i for i, name in enumerate(self.template._signs)}
            self._plan = [(index[name], name) for name in self.template.check(self.model)]
            self._plan_version = self.template.version
        return self._plan

    def _layer(self, name: str, param: Tensor) -> _LayerCache:
        """The cached template code of one weight, in the layout of the tensor enforcement
        writes: the weight itself, or a DTensor's local block (cut from the template's rows)."""
        key = (self.template.version, param.device, param.shape, param.stride(), self.path, type(param),
               getattr(param, "placements", None))
        cached = self._cache.get(name)
        if cached is not None and cached.key == key:
            return cached
        signs = self.template._signs[name]  # read-only use: no copy
        if tuple(signs.shape) != tuple(param.shape):
            raise ValueError(f"layer {name!r}: template shape {tuple(signs.shape)} ≠ weight shape {tuple(param.shape)}")
        box = None
        w = param
        if distributed.is_sharded(param):  # enforce on this rank's block, keyed by global positions
            box, w = distributed.shard_box(param), distributed.local_view(param)
            signs = distributed.local_signs(signs, param)
        order = _memory_order(name, w)
        layer = _LayerCache(key, order, template_code(signs, w), box)
        self._cache[name] = layer
        return layer

    def _states(self, param: Tensor) -> list[Tensor]:
        """The optimizer's per-weight state of ``param`` (local blocks for a DTensor)."""
        if not self.clear_state or self.optimizer is None:
            return []
        return [distributed.local_view(v) for v in self.optimizer.state.get(param, {}).values()
                if isinstance(v, Tensor) and v.shape == param.shape]

    @torch.no_grad()
    def enforce(self) -> Tensor:
        """Enforce once; return the resets per layer (in :attr:`layer_names` order) as an int64
        tensor on the model's device.

        On the dense paths nothing is read back to the host: the counts are ready when
        someone reads them. NaN or inf produced by training is not repaired (no magnitude is
        known for it); :func:`violations` counts it.
        """
        self._step += 1
        layers = []
        for index, name in self._layers():
            param = self.model.get_parameter(name)
            layer = self._layer(name, param)
            layers.append((index, layer, param, param if layer.box is None else distributed.local_view(param)))
        compiling = torch.compiler.is_compiling()
        if self.path in ("sparse", "native") and not (compiling and self.rule in _BUILTIN_RULES):
            # inside torch.compile a built-in rule takes the dense computation below (the same
            # numbers, no host reads: no graph breaks); a rule of its own runs eagerly
            return _eagerly()(self, layers) if compiling else self._enforce_eagerly(layers)
        ws = [w for _, _, _, w in layers]
        codes = [layer.code for _, layer, _, _ in layers]
        indices = [index for index, _, _, _ in layers]
        states = [self._states(param) for _, _, param, _ in layers]
        boxes = [layer.box for _, layer, _, _ in layers]
        args = (ws, codes, states, indices, self.reset, self.eps, self._seed, self._step, boxes)
        if compiling:
            return _dense_layers(*args)
        if self.path == "compiled":
            try:
                return _compiled_dense_layers()(*args)
            except Exception as e:  # no compiler or backend here: same numbers, eagerly
                warnings.warn(f"Freeze-SGD's compiled path failed ({type(e).__name__}: {str(e)[:200]}); using the "
                              f"eager dense path (same numbers, slower)", RuntimeWarning, stacklevel=2)
                self.path = "dense"
        return _dense_layers(*args)

    def detach(self) -> None:
        """Nothing to undo: enforcement changes weights only (the :class:`~polarnet.learners.Keeper` interface)."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to continue bit for bit: the template (packed), the
        reset rule, ε, the seed and the step counter (which keys the resets).

        Example:
            >>> net = nn.Linear(2, 2)
            >>> state = Enforcer(net, PolarityTemplate.random(net, seed=0), seed=3).state_dict()
            >>> state["reset"], state["eps"], state["seed"], state["steps"]
            ('posRand', 0.001, 3, 0)
        """
        return {"template": self.template.state_dict(), "steps": self.calls, "reset": self.reset, "eps": self.eps,
                "seed": self.seed, "seeded": self.seeded, "clear_state": self.clear_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`: the template is updated in place (the same
        :class:`PolarityTemplate` object, which code that moves it, e.g. Fluid SPIN, holds).

        Raises:
            ValueError: the state's template doesn't fit the model, or its ``clear_state``
                differs from this enforcer's (naming the fix).
        """
        if bool(state["clear_state"]) != self.clear_state:
            raise ValueError(f"the saved freeze state has clear_state={bool(state['clear_state'])}, this enforcer "
                             f"clear_state={self.clear_state}: freeze with clear_state={bool(state['clear_state'])} "
                             f"to continue that run")
        rule = RESETS.get(str(state["reset"]))
        if self.path in ("dense", "compiled", "native") and rule not in _BUILTIN_RULES:
            raise ValueError(f"the saved reset rule {state['reset']!r} runs on path='sparse' only; this enforcer "
                             f"uses path={self.path!r}: freeze with path='sparse' or 'auto'")
        load_template(self.template, state["template"], self.model)
        self.rule, self.reset, self.eps = rule, str(state["reset"]), float(state["eps"])
        self.seed, self.seeded = check_seed(int(state["seed"])), bool(state["seeded"])
        self._seed.fill_(self.seed)
        self.calls = int(state["steps"])

    def __call__(self) -> dict[str, int]:
        """Enforce once; return the number of weights reset per layer (a tied weight under the
        first of its template names). Reads the counts back: use :meth:`enforce` in a step
        that must not synchronise.
        """
        counts = self.enforce()
        return dict(zip(self.layer_names, counts.tolist()))

    def _flags(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Two reusable bool buffers of one chunk (padded to a multiple of 8), shared by all layers."""
        if device not in self._buffers:
            self._buffers[device] = torch.zeros(2, _CHUNK, dtype=torch.bool, device=device).unbind(0)
        return self._buffers[device]

    def _violating(self, flat: Tensor, code: Tensor, has_zeros: bool) -> tuple[Tensor, Tensor | None]:
        """Flat indices whose sign bit is against T (to check for ±0 later), and of nonzero
        weights where T = 0 (or None), one cache-sized chunk at a time."""
        flagged, negative = self._flags(flat.device)
        found: list[Tensor] = []
        stray: list[Tensor] = []
        for start in range(0, flat.numel(), _CHUNK):
            part, signs = flat[start : start + _CHUNK], code[start : start + _CHUNK]
            n = part.numel()
            padded = -(-n // 8) * 8
            flags = flagged[:n]
            # as integers, the same sign bits are read 1.5x (float) and 10x (int8) faster
            torch.signbit(part.view(_SAME_WIDTH_INT[part.element_size()]), out=flags)
            torch.signbit(signs, out=negative[:n])
            flags.ne_(negative[:n])
            flagged[n:padded].zero_()
            idx = _sparse_nonzero(flagged[:padded])
            if idx.numel():
                found.append(idx.add_(start))
            if has_zeros:
                zeros = ((signs == 0) & (part != 0)).nonzero().squeeze(1)
                if zeros.numel():
                    stray.append(zeros.add_(start))
        empty = flat.new_zeros(0, dtype=torch.int64)
        return (torch.cat(found) if found else empty), (torch.cat(stray) if stray else None)

    def _native_fits(self, layer: _LayerCache, w: Tensor) -> bool:
        """Whether the C kernel can take this weight (it keeps no indices to clear optimizer state
        with, and keys positions within the tensor it sees: a DTensor's block takes ``sparse``)."""
        return w.device.type == "cpu" and not self.clear_state and layer.box is None and native.available(w.dtype)

    def _enforce_eagerly(self, layers: list[tuple[int, _LayerCache, Tensor, Tensor]]) -> Tensor:
        """The sparse and native paths (they read counts and indices back to the host, so
        ``torch.compile`` runs them outside its graph: one graph break)."""
        step = int(self._step)
        counts = [self._native(index, layer, w, step) if self.path == "native" and self._native_fits(layer, w)
                  else self._sparse(index, layer, param, w, step) for index, layer, param, w in layers]
        return torch.tensor(counts, dtype=torch.int64, device=self._step.device)

    def _native(self, layer_index: int, layer: _LayerCache, w: Tensor, step: int) -> int:
        memory_shape: tuple[int, ...] = ()
        logical: tuple[int, ...] = ()
        if layer.order is not None:  # key by the logical (row-major) position, not the memory order
            row_major = [1] * w.dim()
            for d in range(w.dim() - 2, -1, -1):
                row_major[d] = row_major[d + 1] * w.shape[d + 1]
            memory_shape = tuple(w.shape[d] for d in layer.order)
            logical = tuple(row_major[d] for d in layer.order)
        return native.enforce_(_flat(w.data, layer.order), _flat(layer.code, layer.order), self.reset, self.eps,
                               native.layer_key(self.seed, step, layer_index), memory_shape, logical)

    def _sparse(self, layer_index: int, layer: _LayerCache, param: Tensor, w: Tensor, step: int) -> int:
        flat = _flat(w, layer.order)
        if layer.has_zeros is None:
            layer.has_zeros = bool((layer.code == 0).any())
        idx, stray = self._violating(flat, _flat(layer.code, layer.order), layer.has_zeros)
        n = 0
        if stray is not None:
            flat.index_fill_(0, stray, 0.0)
            if self.clear_state:
                self._clear_state(param, w, layer.order, stray)
            n += stray.numel()
            # a stray weight had its sign bit against T = 0 only if it was negative: now +0, no violation
            idx = idx[flat.index_select(0, idx) != 0] if idx.numel() else idx
        if idx.numel():
            values = flat.index_select(0, idx)
            real = values != 0  # ±0.0 on the wrong side is on the boundary, not a violation
            if not bool(real.all()):
                idx, values = idx[real], values[real]
            signs = values.sign().neg_()  # a violating weight has the sign opposite to T
            new = self.rule(values, signs, self.eps, self._uniform(layer_index, w, layer, idx, values, step))
            if self.rule not in _BUILTIN_RULES and bool((new * signs < 0).any()):
                raise RuntimeError(f"reset rule {self.reset!r} produced values on the wrong side of the template")
            flat.index_copy_(0, idx, new.to(w.dtype))
            if self.clear_state:
                self._clear_state(param, w, layer.order, idx)
            n += idx.numel()
        return n

    def _uniform(self, layer_index: int, w: Tensor, layer: _LayerCache, idx: Tensor, like: Tensor,
                 step: int) -> Callable[[], Tensor]:
        seed, order, box = self.seed, layer.order, layer.box

        def keyed() -> Tensor:
            position = idx
            if order is not None:  # key by the logical (row-major) position, not the memory order
                coords = torch.unravel_index(idx, tuple(w.shape[d] for d in order))
                strides = torch.ones(w.dim(), dtype=torch.int64)
                for d in range(w.dim() - 2, -1, -1):
                    strides[d] = strides[d + 1] * w.shape[d + 1]
                position = sum(coords[k] * int(strides[d]) for k, d in enumerate(order))
            if box is not None:  # a DTensor's block: key by the position in the global weight
                position = box.global_index(position)
            return keyed_uniform(seed, step, layer_index, position, like.dtype)

        return keyed

    def _clear_state(self, param: Tensor, w: Tensor, order: list[int] | None, idx: Tensor) -> None:
        shape = w.shape if order is None else [w.shape[d] for d in order]
        coords = torch.unravel_index(idx, tuple(shape))
        if order is not None:  # back from memory order to the weight's own dimensions
            coords = tuple(coords[order.index(d)] for d in range(w.dim()))
        for value in self._states(param):
            value.index_put_(coords, value.new_zeros(()))


_EAGERLY: Callable[..., Tensor] | None = None


def _eagerly() -> Callable[..., Tensor]:
    """:meth:`Enforcer._enforce_eagerly` behind ``torch.compiler.disable`` (one graph break), made
    on first use under ``torch.compile``: decorating it at import would import ``torch._dynamo``
    (1.5 s) into every process that imports polarnet, study workers included."""
    global _EAGERLY
    if _EAGERLY is None:
        _EAGERLY = torch.compiler.disable(Enforcer._enforce_eagerly)
    return _EAGERLY


def _dense_layers(ws: list[Tensor], codes: list[Tensor], states: list[list[Tensor]], indices: list[int], rule: str,
                  eps: float, seed: Tensor, step: Tensor, boxes: list[distributed.ShardBox | None]) -> Tensor:
    """Every layer's dense step; the resets per layer, stacked on ``step``'s device. One
    function, so ``torch.compile`` can fuse it whole. A DTensor's block (its ``box``) keys its
    resets by the positions in the global weight."""
    counts = [dense_enforce_(w, code, rule, eps, seed=seed.to(w.device), step=step.to(w.device), layer=index,
                             states=s, positions=None if box is None else box.positions(w.device)).to(step.device)
              for w, code, s, index, box in zip(ws, codes, states, indices, boxes)]
    return torch.stack(counts) if counts else step.new_zeros(0)


_COMPILED: Callable[..., Tensor] | None = None


def _compiled_dense_layers() -> Callable[..., Tensor]:
    """:func:`_dense_layers` through ``torch.compile(fullgraph=True)``, built once per process
    (so every enforcer of one model shape shares one compilation). Precision casts are
    emulated: without that, inductor skips the rounding of bf16/fp16 uniforms to the weight's
    dtype before scaling them, and the resets differ from the eager paths in the last bit."""
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = torch.compile(_dense_layers, fullgraph=True, dynamic=False,
                                  options={"emulate_precision_casts": True})
    return _COMPILED


def _can_compile(device: torch.device) -> bool:
    """Whether ``torch.compile`` has its GPU backend (Triton) for ``device``."""
    if device.type != "cuda":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class FreezeHandle:
    """What :func:`freeze` returns: remove it to make the net Fluid again.

    The counts stay on the device until read: reading one of these attributes is the only
    moment a training step with a dense enforcer waits for the GPU.

    Attributes:
        enforcer: what runs after every step: the :class:`Enforcer` of ``freeze_sgd``, or the
            :class:`~polarnet.learners.Keeper` of another learner.
        learner: the learner's name (see :data:`polarnet.learners.LEARNERS`).
        last_resets: weights reset (or clipped, by ``project``) per layer at the latest step
            (``{}`` before the first; always 0 for learners that never leave the template).
        total_resets: resets since :func:`freeze`.
        steps: optimizer steps seen (a device step counter, so it counts CUDA-graph replays too).

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

    enforcer: Any  # Enforcer | learners.Keeper
    _hook: Any = field(repr=False)
    learner: str = "freeze_sgd"
    _optimizer: Any = field(default=None, repr=False)
    _last: Tensor | None = field(default=None, repr=False)
    _total: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._total = torch.zeros((), dtype=torch.int64, device=self.enforcer._step.device)

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._last = self.enforcer.enforce()
        assert self._total is not None
        self._total += self._last.sum()

    @property
    def last_resets(self) -> dict[str, int]:
        if self._last is None:
            return {}
        return dict(zip(self.enforcer.layer_names, self._last.tolist()))

    @property
    def total_resets(self) -> int:
        assert self._total is not None
        return int(self._total)

    @total_resets.setter
    def total_resets(self, value: int) -> None:
        assert self._total is not None
        self._total.fill_(int(value))

    @property
    def steps(self) -> int:
        return self.enforcer.calls

    @steps.setter
    def steps(self, value: int) -> None:
        self.enforcer.calls = value

    def state_dict(self) -> dict[str, Any]:
        """The freeze state for a checkpoint, beside the model's and the optimizer's: the
        learner, its template (packed: 1–2 bits per weight), the reset rule, ε, the seed, the
        step counter and the reset total, plus what a learner keeps of its own (``reparam``: the
        exact ``V``, which the model's ``state_dict`` gives only as ``W``). Plain Python values
        and CPU tensors, which ``torch.load(weights_only=True)`` reads.

        Example:
            >>> net = nn.Linear(3, 3)
            >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
            >>> handle = freeze(net, PolarityTemplate.random(net, seed=0), opt, seed=7)
            >>> state = handle.state_dict()
            >>> state["learner"], state["seed"], state["steps"]
            ('freeze_sgd', 7, 0)
        """
        return {"format": FREEZE_STATE_FORMAT, "learner": self.learner, **self.enforcer.state_dict(),
                "total_resets": self.total_resets}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a frozen run from :meth:`state_dict`: freeze the model again as before (same
        learner and options; ``align=False`` is not needed, the loaded weights already fit),
        load the model's and the optimizer's state, then this one.

        The template is written into the handle's own :class:`PolarityTemplate` in place.

        Raises:
            ValueError: not a freeze state, another learner's, or a template that doesn't fit
                the model (each naming the fix).

        Example:
            >>> net = nn.Linear(3, 3)
            >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
            >>> handle = freeze(net, PolarityTemplate.random(net, seed=0), opt, seed=7)
            >>> state = handle.state_dict()
            >>> handle.remove()
            >>> again = freeze(net, PolarityTemplate.random(net, seed=1), opt)
            >>> again.load_state_dict(state)
            >>> again.enforcer.template == handle.enforcer.template, again.enforcer.seed
            (True, 7)
        """
        if not isinstance(state, dict) or state.get("format") != FREEZE_STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"not a polarnet freeze state (FreezeHandle.state_dict()): format {found!r}, "
                             f"expected {FREEZE_STATE_FORMAT!r}")
        if state.get("learner") != self.learner:
            raise ValueError(f"the saved freeze state is of learner {state.get('learner')!r}, this handle runs "
                             f"{self.learner!r}: freeze with learner={state.get('learner')!r} to continue that run")
        self.enforcer.load_state_dict(state)
        self.total_resets = int(state.get("total_resets", 0))
        self._last = None

    def remove(self) -> None:
        """Stop enforcing; the model keeps its current weights and stays usable (a
        reparametrized weight becomes a plain parameter again, the same ``nn.Parameter``
        object), and the optimizer may be frozen again."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
            self.enforcer.detach()  # reparam: plain parameters again, holding T ⊙ f(V)
            optimizer = self._optimizer
            if optimizer is not None and _hooked(optimizer) is self:
                del _HOOKED[optimizer]

    @property
    def active(self) -> bool:
        """Whether enforcement is still hooked to the optimizer."""
        return self._hook is not None


# optimizer -> its freeze hook's handle (two hooks would enforce two templates that fight). Both
# weak: the handle holds the optimizer, and the optimizer's hook already keeps the handle alive.
_HOOKED: weakref.WeakKeyDictionary[torch.optim.Optimizer, weakref.ref[FreezeHandle]] = weakref.WeakKeyDictionary()


#: the ``format`` of :meth:`FreezeHandle.state_dict` (a new one when its layout changes)
FREEZE_STATE_FORMAT = "polarnet.freeze/1"


def is_frozen(model: nn.Module) -> bool:
    """Whether a :func:`freeze` handle is active on ``model`` (not removed).

    Example:
        >>> net = nn.Linear(2, 2)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> handle = freeze(net, PolarityTemplate.random(net), opt)
        >>> is_frozen(net), is_frozen(nn.Linear(2, 2))
        (True, False)
        >>> handle.remove(); is_frozen(net)
        False
    """
    for optimizer in list(_HOOKED.keys()):
        handle = _hooked(optimizer)
        if handle is not None and handle.enforcer.model is model:
            return True
    return False


def _hooked(optimizer: torch.optim.Optimizer) -> FreezeHandle | None:
    ref = _HOOKED.get(optimizer)
    handle = ref() if ref is not None else None
    return handle if handle is not None and handle.active else None


def freeze(model: nn.Module, template: PolarityTemplate, optimizer: torch.optim.Optimizer, reset: str | None = None,
           eps: float = 1e-3, *, learner: str = "freeze_sgd", align: bool = True, seed: int | None = None,
           clear_state: bool = False, path: str = "auto") -> FreezeHandle:
    """Make ``model`` a Frozen-Net: keep it on ``template`` through every ``optimizer.step()``.

    The default learner is Freeze-SGD: after every step (``optimizer.register_step_post_hook``)
    each weight on the wrong side is reset, so any ``torch.optim`` optimizer and an unchanged
    training loop work. Other learners (:data:`polarnet.learners.LEARNERS`) keep the template
    by construction: ``"reparam-softplus"``/``"-exp"``/``"-abs"`` register ``W = T ⊙ f(V)`` on
    the weights (``torch.nn.utils.parametrize``; the optimizer's parameters stay the same
    objects, now holding ``V``), ``"eg"`` needs a sign-preserving optimizer
    (:class:`polarnet.optim.AdamEG` or :class:`~polarnet.optim.EG`), ``"project"`` clips and
    drops outward momentum. Everything is validated before the model is touched. An
    optimizer takes one freeze at a time: freezing it again raises until the first handle is
    removed.

    Args:
        model: the network; its parameters stay the same objects.
        template: the signs to keep.
        optimizer: any ``torch.optim.Optimizer`` (for ``learner="eg"``: EG or AdamEG).
        reset: Freeze-SGD's reset rule for violating weights (``posRand``, the default,
            ``posCon``, ``zero``, ``flip`` or your own); only with ``learner="freeze_sgd"``.
        eps: ε > 0 for ``posCon``/``posRand``.
        learner: how the template is kept (see :mod:`polarnet.learners`).
        align: flip the weights to the template now (``w ← |w|·T``), as the papers do.
        seed: makes random resets reproducible: a function of (seed, step, layer, position);
            ``None`` takes :func:`default_seed` (``torch.initial_seed()``; rank 0's under
            ``torch.distributed``).
        clear_state: also zero the optimizer's per-weight state for reset entries
            (``freeze_sgd`` only).
        path: how Freeze-SGD enforces (see :class:`Enforcer`): ``"auto"`` is the sync-free
            dense path on a GPU and the sparse one on the CPU (``freeze_sgd`` only).

    Returns:
        A :class:`FreezeHandle`; ``handle.remove()`` stops enforcement (and makes
        reparametrized weights plain parameters again).

    Raises:
        ValueError: the template doesn't fit the model, an unknown learner, an option the
            learner doesn't take, a bad ``reset``/``eps``, or the constrained weights already
            hold NaN or inf (naming the layers and counts).
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
        >>> handle = freeze(net, t, opt, learner="reparam-softplus")   # W = T ⊙ softplus(V)
        Traceback (most recent call last):
        ...
        ValueError: learner 'reparam-softplus': the optimizer already has state for '0.weight' (it has stepped): ...
    """
    from .learners import LEARNERS  # learners.py builds on this module

    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if _hooked(optimizer) is not None:
        raise RuntimeError("this optimizer already has a polarnet freeze hook; call handle.remove() first on the handle "
                           "that freeze() returned (two hooks would enforce two templates against each other)")
    chosen = LEARNERS.get(learner)
    if learner != "freeze_sgd":
        given = [f"{k}={v!r}" for k, v, default in (("reset", reset, None), ("clear_state", clear_state, False),
                                                     ("path", path, "auto")) if v != default]
        if given:
            raise ValueError(f"{', '.join(given)} set(s) how Freeze-SGD resets weights; learner {learner!r} doesn't "
                             f"reset: leave {'it' if len(given) == 1 else 'them'} out, or use learner='freeze_sgd'")
    options = dict(reset=reset if reset is not None else "posRand", eps=eps, seed=seed, clear_state=clear_state,
                   path=path, align=align)
    unowned = _not_trained_by(optimizer, model, template)  # before attach: reparam learners rename parameters
    keeper = chosen.attach(model, template, optimizer, options)  # validates, then aligns (if asked)
    if unowned:
        warnings.warn(f"template layers {', '.join(map(repr, unowned[:6]))}{', …' if len(unowned) > 6 else ''} are "
                      f"trainable parameters this optimizer does not own: the template is kept only after this "
                      f"optimizer's step, so whatever updates them (another optimizer) breaks their signs in between, "
                      f"and pn.violations counts them. Freeze them with the optimizer that owns them (pn.freeze(model, "
                      f"PolarityTemplate({{n: template[n] for n in names}}), other_optimizer)), or give this optimizer "
                      f"those parameters", stacklevel=2)
    handle = FreezeHandle(keeper, None, learner, optimizer)
    handle._hook = optimizer.register_step_post_hook(handle._after_step)
    _HOOKED[optimizer] = weakref.ref(handle)
    return handle


def _not_trained_by(optimizer: torch.optim.Optimizer, model: nn.Module, template: PolarityTemplate) -> list[str]:
    """Template layers that are trainable parameters of ``model`` outside ``optimizer``'s groups
    (a name the model lacks is left to the template's own check)."""
    owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
    params = dict(model.named_parameters(remove_duplicate=False))
    return [name for name in template if name in params and params[name].requires_grad
            and id(params[name]) not in owned]


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
    healthy. A tied weight is counted once, under the first of its names in the template. A
    sharded weight (a DTensor, e.g. under FSDP2) is checked block by block on each rank and the
    counts summed over the ranks (a collective: call it on every rank), never gathered.

    Example:
        >>> lin = nn.Linear(2, 1, bias=False)
        >>> _ = lin.weight.data.copy_(torch.tensor([[0.5, 0.0]]))
        >>> violations(lin, PolarityTemplate({"weight": torch.tensor([[-1, 1]])}))
        1
    """
    counts = {}
    for name, param in template.check(model).items():
        w = distributed.local_view(param)
        t = distributed.local_signs(template._signs[name], param).to(w.device)
        bad = (w * t < 0) | ((t == 0) & (w != 0)) | ~torch.isfinite(w)
        counts[name] = distributed.global_count(bad, param)
    return counts if per_layer else sum(counts.values())
