"""Sign-preserving optimisers: exponentiated gradient (EG), plain and Adam-style.

EG moves a weight by a factor, never across zero: ``w ← w · exp(−lr · sign(w) · d)``, where
``d`` is the gradient (:class:`EG`) or Adam's bias-corrected direction ``m̂ / (√v̂ + ε)``
(:class:`AdamEG`). A positive weight stays positive, a negative one negative, and a weight at
exactly 0 stays 0, so a template's zeros stay zeros. A parameter group with
``update="gd"`` takes the ordinary additive step instead (SGD, or Adam bit for bit), for the
parameters without a template, such as biases; :func:`eg_groups` builds the two groups from a
template.

The update is the one Kivinen & Warmuth's EG and Cornford et al.'s sign-preserving
"EG" optimiser (linclab, ``update_alg="eg"``) give for a positive or negative weight; the
Adam-style variant scales the exponent by Adam's moment estimates, so one ``lr`` means about
the same relative change of every weight.

:func:`adam_` is the functional core: ``torch.optim.Adam``'s single-tensor update, op for op,
on plain or stacked (one row per ensemble member) tensors, optionally multiplicative. The
optimisers here and the study engine's vectorised ensembles share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["EG", "AdamEG", "adam_", "eg_", "eg_groups", "UPDATES"]

#: a parameter group's ``update``: multiplicative (sign-preserving) or ordinary additive
UPDATES = ("eg", "gd")
_BETA1, _BETA2 = 0.9, 0.999


def eg_(params: Sequence[Tensor], directions: Sequence[Tensor], size: float | Tensor) -> None:
    """``w ← w · exp(size · sign(w) · d)`` in place, per tensor: the sign-preserving step.

    ``size`` is ``−lr`` (or ``−lr / bias correction``): a number, or one per member of a
    stack as a tensor that broadcasts against ``w``.

    Example:
        >>> w = torch.tensor([0.5, -0.5, 0.0])
        >>> eg_([w], [torch.tensor([1.0, 1.0, 1.0])], -0.1)
        >>> w
        tensor([ 0.4524, -0.5526,  0.0000])
    """
    for w, d in zip(params, directions):
        w.mul_(torch.sign(w).mul_(d).mul_(size).exp_())  # one temporary: weight-sized ones cost page faults


def adam_(params: Sequence[Tensor], grads: Sequence[Tensor], avgs: Sequence[Tensor], squares: Sequence[Tensor],
          step: int | Tensor, lr: float | Tensor, eps: float, *,
          multiplicative: Sequence[bool | Tensor] | None = None) -> None:
    """``torch.optim.Adam``'s update (its single-tensor form, op for op, so bit for bit) on
    plain tensors or on stacked members.

    ``step`` counts this one: an int when all members took the same number of steps, or one
    per member as an int tensor shaped ``(M,)``; ``lr`` is one number, or one per member as a
    tensor shaped ``(M,)`` (float64). ``multiplicative[i]`` makes tensor ``i``'s step the
    Adam-style EG step (``w ← w · exp(−lr/b₁ · sign(w) · m / denom)``) instead of the
    additive one: ``True`` for the whole tensor, or a bool tensor shaped ``(M,)`` choosing per
    member. The ensembles, :class:`AdamEG` and the image study engine share this one Adam.

    Example:
        >>> w = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
        >>> one = torch.nn.Parameter(w[1].clone())
        >>> opt = torch.optim.Adam([one], lr=0.3)
        >>> one.grad = torch.tensor([0.2, -0.1]); opt.step()
        >>> g, m, v = torch.tensor([[1.0, 1.0], [0.2, -0.1]]), torch.zeros(2, 2), torch.zeros(2, 2)
        >>> adam_([w], [g], [m], [v], step=1, lr=torch.tensor([0.1, 0.3], dtype=torch.float64), eps=1e-8)
        >>> torch.equal(w[1], one.detach())
        True
    """
    if isinstance(step, Tensor):
        t = step.to(torch.float64)
        bias1: float | Tensor = 1 - _BETA1**t
        bias2_sqrt: float | Tensor = (1 - _BETA2**t).sqrt()
    else:
        bias1 = 1 - _BETA1 ** float(step)
        bias2_sqrt = (1 - _BETA2 ** float(step)) ** 0.5
    kinds = multiplicative if multiplicative is not None else [False] * len(params)
    per_member = isinstance(lr, Tensor) or isinstance(bias1, Tensor)
    for p, g, avg, square, kind in zip(params, grads, avgs, squares, kinds):
        shape = (-1,) + (1,) * (p.dim() - 1)
        scale = bias2_sqrt.to(p.dtype).view(shape) if isinstance(bias2_sqrt, Tensor) else bias2_sqrt
        if per_member:
            size: float | Tensor = torch.as_tensor(-(lr / bias1), dtype=torch.float64, device=p.device).to(p.dtype)
            size = size.view(shape) if size.dim() else size
        else:
            size = -(lr / bias1)
        kind = kind.view(shape) if isinstance(kind, Tensor) else kind
        for rows in _slices(p):
            _adam_rows(p[rows], g[rows], avg[rows], square[rows], _part(scale, rows, p), _part(size, rows, p),
                       _part(kind, rows, p), eps, per_member)


#: on a CPU, a tensor of more entries than this is updated a slice of rows (its first axis: an
#: ensemble's members) at a time, so that Adam's seven passes stay in the core's cache instead
#: of streaming the whole tensor from memory each time; the same ops on every entry, so the
#: same numbers, in about half the time for an ensemble's weights
_CPU_SLICE = 1 << 16


def _slices(p: Tensor) -> list[slice]:
    """Rows of ``p`` to update one after another (all of it on a GPU, or when small)."""
    if p.device.type != "cpu" or p.dim() == 0 or p.numel() <= _CPU_SLICE or p.shape[0] < 2:
        return [slice(None)]
    per = max(1, _CPU_SLICE // max(1, p.numel() // p.shape[0]))
    return [slice(start, start + per) for start in range(0, p.shape[0], per)]


def _part(t: Any, rows: slice, p: Tensor) -> Any:
    """A per-member number (shaped ``(M, 1, …)``) for the rows ``rows`` of ``p``; a scalar as it is."""
    return t[rows] if isinstance(t, Tensor) and t.dim() and t.shape[0] == p.shape[0] else t


def _adam_rows(p: Tensor, g: Tensor, avg: Tensor, square: Tensor, scale: float | Tensor, size: float | Tensor,
               kind: bool | Tensor, eps: float, per_member: bool) -> None:
    """:func:`adam_`'s update of one tensor (or rows of it)."""
    avg.lerp_(g, 1 - _BETA1)
    square.mul_(_BETA2).addcmul_(g, g, value=1 - _BETA2)
    denom = (square.sqrt() / scale).add_(eps)
    if kind is False:
        if per_member:
            p.add_(size * avg / denom)
        else:
            p.addcdiv_(avg, denom, value=size)  # type: ignore[arg-type]
        return
    if kind is True:
        eg_([p], [torch.div(avg, denom, out=denom)], size)  # the direction, in denom's memory
        return
    direction = avg / denom
    # some members multiplicative, the others additive
    grown = p * torch.exp(torch.sign(p).mul_(direction).mul_(size))
    p.copy_(torch.where(kind, grown, p + size * avg / denom))  # the additive path's ops, so its rounding


def eg_groups(model: nn.Module, template: Any, **options: Any) -> list[dict[str, Any]]:
    """Two parameter groups for :class:`EG` / :class:`AdamEG`: the template's weights
    (``update="eg"``, sign-preserving) and every other parameter (``update="gd"``).

    ``options`` go into both groups (``lr``…). A tied weight is listed once.

    Example:
        >>> import polarnet as pn
        >>> net = nn.Linear(4, 2)
        >>> groups = eg_groups(net, pn.PolarityTemplate.random(net, seed=0))
        >>> [(g["update"], len(g["params"])) for g in groups]
        [('eg', 1), ('gd', 1)]
    """
    constrained = list(template.check(model).values())
    ids = {id(p) for p in constrained}
    params = [p for p in dict.fromkeys(model.parameters()) if id(p) not in ids]
    return [dict(options, params=constrained, update="eg"), dict(options, params=params, update="gd")]


def _check_update(group: dict[str, Any]) -> None:
    if group.get("update") not in UPDATES:
        raise ValueError(f"a parameter group's update must be 'eg' (multiplicative, sign-preserving) or 'gd' "
                         f"(additive); got {group.get('update')!r}")


class _SignPreserving(torch.optim.Optimizer):
    """What EG and AdamEG share: a positive ``lr``, each group's ``update`` checked, and
    ``step(closure)``; a subclass updates one group at a time (:meth:`_update`)."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        if not defaults["lr"] > 0:
            raise ValueError(f"lr must be > 0, got {defaults['lr']!r}")
        super().__init__(params, defaults)
        for group in self.param_groups:
            _check_update(group)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._update(group)
        return loss

    def _update(self, group: dict[str, Any]) -> None:
        raise NotImplementedError


class EG(_SignPreserving):
    """Plain exponentiated gradient: ``w ← w · exp(−lr · sign(w) · g)`` (groups with
    ``update="eg"``, the default), ``w ← w − lr · g`` (groups with ``update="gd"``).

    Args:
        params: parameters or parameter groups (see :func:`eg_groups`).
        lr: the step size; the exponent is ``lr · |g|``, so a weight changes by a factor
            ``exp(±lr·|g|)`` per step (a huge gradient can overflow a weight to inf, which a
            study records as a failed run).
        update: the default ``update`` of groups that don't set one.

    Example:
        >>> w = nn.Parameter(torch.tensor([0.5, -0.5, 0.0]))
        >>> opt = EG([w], lr=0.1)
        >>> w.grad = torch.tensor([1.0, 1.0, 1.0]); opt.step()
        >>> w.detach()
        tensor([ 0.4524, -0.5526,  0.0000])
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.01, *, update: str = "eg") -> None:
        super().__init__(params, dict(lr=lr, update=update))

    def _update(self, group: dict[str, Any]) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if group["update"] == "eg":
            eg_(params, [p.grad for p in params], -group["lr"])
        else:
            for p in params:
                p.add_(p.grad, alpha=-group["lr"])


class AdamEG(_SignPreserving):
    """Adam whose step is multiplicative in groups with ``update="eg"`` (the default):
    ``w ← w · exp(−lr/(1−β₁ᵗ) · sign(w) · m / (√v̂ + ε))``, Adam's moments scaling the
    exponent. Groups with ``update="gd"`` take ``torch.optim.Adam``'s step, bit for bit.

    Adam's step is at most about ``3·lr`` in size, so a weight changes by at most a factor of
    about ``exp(3·lr)`` per step.

    Args:
        params: parameters or parameter groups (see :func:`eg_groups`).
        lr: step size.
        betas: fixed at (0.9, 0.999), Adam's defaults (the study engine's Adam).
        eps: Adam's ε.
        update: the default ``update`` of groups that don't set one.

    Example:
        >>> import polarnet as pn
        >>> net = nn.Linear(3, 1)
        >>> t = pn.PolarityTemplate.random(net, seed=0)
        >>> opt = AdamEG(eg_groups(net, t), lr=0.01)
        >>> handle = pn.freeze(net, t, opt, learner="eg")
        >>> net(torch.randn(4, 3)).sum().backward(); opt.step()
        >>> pn.violations(net, t)
        0
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (_BETA1, _BETA2),
                 eps: float = 1e-8, *, update: str = "eg") -> None:
        if tuple(betas) != (_BETA1, _BETA2):
            raise ValueError(f"AdamEG uses Adam's default betas {(_BETA1, _BETA2)}; got {tuple(betas)}")
        super().__init__(params, dict(lr=lr, eps=eps, update=update))

    def _update(self, group: dict[str, Any]) -> None:
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            adam_([p], [p.grad], [state["exp_avg"]], [state["exp_avg_sq"]], int(state["step"]), group["lr"],
                  group["eps"], multiplicative=[group["update"] == "eg"])
