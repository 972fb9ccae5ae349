"""The dense Freeze-SGD step: one pass over a weight, no host synchronisation.

:class:`~polarnet.freeze.Enforcer` (a plain model), the vectorised XOR ensemble and the
vectorised image ensemble all enforce through :func:`dense_enforce_`. It computes the
violation mask over the whole weight, draws every entry's keyed uniform
(:mod:`polarnet.keyed`) inside the computation, writes the resets with ``torch.where`` and
returns the reset counts as a tensor. Nothing reads a value back to the host, so the step
runs under ``torch.cuda.set_sync_debug_mode("error")``, inside CUDA-graph capture and
inside ``torch.compile(fullgraph=True)``.

Its numbers are those of the sparse path (``Enforcer`` on the CPU, which gathers only the
violating entries) bit for bit: the same comparisons decide what is a violation, the reset
rules see the same values, signs and uniforms entry by entry, and the same ops round them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from . import native
from .keyed import keyed_uniform

__all__ = ["DENSE_RULES", "dense_enforce_", "project_", "template_code", "FIRST_MOMENTS"]

#: reset rules that act entry by entry, so applying them to every entry and keeping the
#: violating ones equals applying them to the gathered violations (a rule registered by a
#: user may not be elementwise: it runs on the sparse path)
DENSE_RULES = ("posRand", "posCon", "zero", "flip")


def template_code(signs: Tensor, like: Tensor | None = None) -> Tensor:
    """A template's signs as ``int8`` (−1, 0, +1): one byte per constrained weight.

    With ``like``, on its device and in its memory layout (channels-last stays channels-last),
    so the enforcement pass reads both tensors in the same order.

    Example:
        >>> template_code(torch.tensor([-2.0, 0.0, 0.5]))
        tensor([-1,  0,  1], dtype=torch.int8)
    """
    code = torch.sign(signs).to(torch.int8)
    if like is None:
        return code
    return torch.empty_like(like, dtype=torch.int8).copy_(code)


def _positions(shape: Sequence[int], device: torch.device) -> Tensor:
    """Each entry's row-major index within one member's weight: the key of its uniform."""
    return torch.arange(int(torch.Size(shape).numel()), device=device, dtype=torch.int64).view(tuple(shape))


def _reset(rule: str, values: Tensor, signs: Tensor, eps: float, uniform: Callable[[], Tensor]) -> Tensor:
    """The rule's new values, op for op as the sparse path computes them."""
    if rule == "posRand":
        return uniform().mul_(eps) * signs  # the uniforms may be one member's shape (keys shared by all)
    if rule == "posCon":
        return signs * eps
    if rule == "zero":
        return signs * 0.0
    assert rule == "flip", rule
    return -values


def _ravel(coords: Sequence[Tensor], shape: Sequence[int]) -> Tensor | int:
    """Row-major index of ``coords`` within ``shape`` (0 for no axes)."""
    index: Tensor | int = 0
    for c, n in zip(coords, shape):
        index = index * n + c
    return index


def dense_enforce_(w: Tensor, signs: Tensor, rule: str | Sequence[str] = "posRand", eps: float = 1e-3, *,
                   seed: Tensor | int = 0, step: Tensor | int = 1, layer: Tensor | int = 0, members: int = 0,
                   active: Tensor | None = None, states: Sequence[Tensor] = (), rule_of: Tensor | None = None,
                   gather: bool = False, positions: Tensor | None = None) -> Tensor:
    """Put ``w`` back on the side of ``signs`` in place; returns the resets as a tensor.

    A violation is ``w·T < 0`` (sign bit against ``T``, ``w ≠ 0``), or ``w ≠ 0`` where
    ``T = 0``; the first gets the reset rule, the second ``+0.0``. A weight at ±0 is on the
    boundary and stays.

    Args:
        w: a weight, or ``members`` leading axes of stacked weights (an ensemble), changed in place.
        signs: the template as :func:`template_code` gives it (any dtype of −1/0/+1 works),
            broadcastable to ``w``.
        rule: one of :data:`DENSE_RULES`, or several, one per member by ``rule_of``.
        eps: ε of ``posRand``/``posCon``.
        seed, step, layer: the keys of ``posRand``'s uniforms: ints, or int64 tensors that
            broadcast against ``w``'s member axes (shape ``(M, 1, …, 1)``); a step counter
            kept on the device keeps the step capturable in a CUDA graph.
        members: how many leading axes of ``w`` index members; an entry's position (the
            last key) is its row-major index within its member's weight.
        active: optional bool mask, broadcastable to ``w``: only True entries are enforced
            (e.g. the Frozen members of an ensemble that also trains Fluid ones).
        states: tensors shaped like ``w`` (optimizer moments) zeroed where a reset happened.
        rule_of: with several rules, each member's rule as an index into ``rule``
            (broadcastable to ``w``, like ``seed``).
        gather: find the violations (a host read of their indices) and compute resets for
            them only. Same numbers; faster on a CPU, where the read is free and the keyed
            hash of every entry is not (3-4x for an ensemble's step), but it synchronises:
            keep it off on a GPU. Keys must then vary along the member axes only. With one
            member axis of float32/float64 rows, int8 ``signs``, and keys, rules and ``active``
            per member (an ensemble's layer), the C kernel
            (:func:`polarnet.native.enforce_rows_`) does it in one pass over each member's
            weight, in place, with the same bits.
        positions: each entry's position key (int64, shaped like one member's weight);
            default its row-major index. A shard of a larger weight passes its entries'
            indices in the whole weight (:meth:`polarnet.distributed.ShardBox.positions`), so
            it resets as the unsharded weight would.

    Returns:
        int64 resets per member (shape ``w.shape[:members]``; a 0-d tensor when ``members=0``),
        on ``w``'s device, not synchronised.

    Example:
        >>> w = torch.tensor([[0.5, -0.2], [0.3, 0.0]])
        >>> code = template_code(torch.tensor([[1, 1], [-1, 0]]))
        >>> n = dense_enforce_(w, code, "posCon", eps=0.01)
        >>> int(n), w.tolist()
        (2, [[0.5, 0.009999999776482582], [-0.009999999776482582, 0.0]])
    """
    with torch.no_grad():
        rules = [rule] if isinstance(rule, str) else list(rule)
        if len(rules) > 1 and rule_of is None:
            raise ValueError("several reset rules need rule_of: each member's rule, as an index into them")
        unknown = [name for name in rules if name not in DENSE_RULES]
        if unknown:
            raise ValueError(f"the dense path knows the reset rules {', '.join(DENSE_RULES)}; got {unknown[0]!r} "
                             f"(a rule of your own runs on the sparse path: Enforcer(..., path='sparse'))")
        if gather and not states and positions is None:
            counts = _native_rows(w, signs, rules, eps, seed, step, layer, members, active, rule_of)
            if counts is not None:
                return counts
        if gather:
            bad, stray = _violations(w, signs, active)
            _gather_resets(w, bad, rules, eps, seed, step, layer, members, rule_of, positions)
            w.masked_fill_(stray, 0.0)
        else:
            bad, stray = _violations(w, signs, active)
            # a violating weight has the sign opposite to T; the sparse path takes the sign from
            # the value in the same way (it also decides a NaN's fate), so the dense one does too
            signs_w = w.sign().neg_()
            if positions is None:
                positions = _positions(w.shape[members:], w.device)

            def uniform() -> Tensor:
                return keyed_uniform(seed, step, layer, positions, w.dtype)

            new = _reset(rules[0], w, signs_w, eps, uniform)
            for k, name in enumerate(rules[1:], 1):
                new = torch.where(rule_of == k, _reset(name, w, signs_w, eps, uniform), new)
            w.copy_(torch.where(bad, new, w).masked_fill_(stray, 0.0))
        hit = bad | stray
        for state in states:
            state.masked_fill_(hit, 0)
        dims = tuple(range(members, w.dim()))
        return hit.sum(dims) if dims else hit.to(torch.int64)


def _per_member(key: Tensor | int, m: int) -> Tensor | int | None:
    """A key as one value per member (shape ``(m,)``) or one int; ``None`` when it varies within a member."""
    if not isinstance(key, Tensor):
        return key
    if key.numel() == 1:
        return int(key)
    return key.reshape(-1).to(torch.int64) if key.numel() == m and key.dim() >= 1 and key.shape[0] == m else None


def _native_rows(w: Tensor, signs: Tensor, rules: list[str], eps: float, seed: Tensor | int, step: Tensor | int,
                 layer: Tensor | int, members: int, active: Tensor | None, rule_of: Tensor | None) -> Tensor | None:
    """:func:`dense_enforce_`'s ``gather`` on a CPU by the C kernel (:func:`polarnet.native.enforce_rows_`), one
    pass over each member's weight; ``None`` where it doesn't apply (the torch code then runs): other than one
    member axis of float32/float64 rows, int8 signs of ``w``'s shape, keys and rules and ``active`` per member."""
    if members != 1 or w.device.type != "cpu" or w.dim() < 2 or signs.dtype != torch.int8 \
            or signs.shape != w.shape or not native.available(w.dtype) \
            or not (w[0].is_contiguous() and signs[0].is_contiguous()):
        return None
    m = w.shape[0]
    keys = [_per_member(k, m) for k in (seed, step, layer)]
    chosen = _per_member(rule_of, m) if rule_of is not None else 0
    on = None if active is None else _per_member(active.to(torch.int64), m)
    if any(k is None for k in keys) or chosen is None or (active is not None and on is None):
        return None
    codes = torch.tensor([native.RULE_CODES[name] for name in rules], dtype=torch.int32)
    rule_codes = codes[chosen].expand(m)
    rows = torch.arange(m) if on is None else torch.nonzero(torch.as_tensor(on).expand(m)).view(-1)
    every = native.layer_keys(*keys).expand(m)  # type: ignore[arg-type]
    counts = torch.zeros(m, dtype=torch.int64)
    counts[rows] = native.enforce_rows_(w, signs, rows, rule_codes[rows], eps, every[rows])
    return counts


def _violations(w: Tensor, signs: Tensor, active: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(bad, stray)``: weights on the wrong side of a nonzero ``T``, and nonzero weights where
    ``T = 0``; only ``active`` entries."""
    nonzero = w != 0
    zero_t = signs == 0
    stray = zero_t & nonzero
    bad = (torch.signbit(w) != (signs < 0)) & nonzero & ~zero_t
    if active is not None:
        stray = stray & active
        bad = bad & active
    return bad, stray


#: optimizer state entries that are first moments (the direction of the next step):
#: ``torch.optim.Adam``/``AdamW``/``NAdam``/``RAdam``/``Adamax`` and ``SGD``/``RMSprop``'s momentum
FIRST_MOMENTS = ("exp_avg", "momentum_buffer")


def project_(w: Tensor, signs: Tensor, *, moments: Sequence[Tensor] = (), members: int = 0,
             active: Tensor | None = None) -> Tensor:
    """The ``project`` learner's step: clip ``w`` to the template's side and drop the momentum
    that would push a clipped weight out again; returns the clipped entries as a tensor.

    A weight on the wrong side of ``T`` becomes 0 (signed like ``T``: the ``zero`` reset
    rule's value, bit for bit), a nonzero weight where ``T = 0`` becomes +0. At a clipped
    entry, a first moment ``m`` (Adam's ``exp_avg``, SGD's momentum) that points out of the
    feasible side is zeroed: the optimizer steps against ``m``, so that is ``m·T > 0``, and any
    ``m ≠ 0`` where ``T = 0``. Second moments are kept (they still measure the gradient's
    scale). Without that, the momentum that carried a weight across carries it across again
    at the next steps, and every step resets it (as the ``zero`` rule does). Never
    synchronises; works on stacked members like :func:`dense_enforce_`.

    Example:
        >>> w, m = torch.tensor([0.5, -0.2, 0.3, 0.1]), torch.tensor([0.5, 0.5, 0.5, -0.5])
        >>> n = project_(w, template_code(torch.tensor([1, 1, -1, -1])), moments=[m])
        >>> int(n), w.tolist(), m.tolist()
        (3, [0.5, 0.0, -0.0, -0.0], [0.5, 0.0, 0.5, 0.0])
    """
    with torch.no_grad():
        bad, stray = _violations(w, signs, active)
        w.copy_(torch.where(bad, signs.to(w.dtype) * 0.0, w).masked_fill_(stray, 0.0))
        for m in moments:
            outward = (bad & (torch.sign(m) == signs.to(m.dtype))) | (stray & (m != 0))
            m.masked_fill_(outward, 0)
        hit = bad | stray
        dims = tuple(range(members, w.dim()))
        return hit.sum(dims) if dims else hit.to(torch.int64)


def _gather_resets(w: Tensor, bad: Tensor, rules: list[str], eps: float, seed: Tensor | int, step: Tensor | int,
                   layer: Tensor | int, members: int, rule_of: Tensor | None, positions: Tensor | None) -> None:
    """:func:`dense_enforce_`'s resets, computed for the violating entries only."""
    where = bad.nonzero(as_tuple=True)  # logical coordinates, whatever w's memory layout
    if where[0].numel() == 0:
        return
    member = _ravel(where[:members], w.shape[:members])

    def pick(key: Tensor | int) -> Tensor | int:  # a key per violation, from its member's
        if not isinstance(key, Tensor) or key.numel() == 1:
            return key.reshape(()) if isinstance(key, Tensor) else key
        return key.reshape(-1)[member]

    values = w[where]
    signs = values.sign().neg_()
    if positions is not None:
        position = positions.to(torch.int64)[where[members:]] if members < w.dim() else \
            positions.to(torch.int64).expand(values.shape)
    else:
        position = _ravel(where[members:], w.shape[members:])
        position = position if isinstance(position, Tensor) else torch.zeros_like(values, dtype=torch.int64)

    def uniform() -> Tensor:
        return keyed_uniform(pick(seed), pick(step), pick(layer), position, w.dtype)

    new = _reset(rules[0], values, signs, eps, uniform)
    if len(rules) > 1:
        assert rule_of is not None
        chosen = pick(rule_of)
        for k, name in enumerate(rules[1:], 1):
            new = torch.where(chosen == k, _reset(name, values, signs, eps, uniform), new)
    w.index_put_(where, new)
