"""Polarity dynamics: how often signs change (Fluid nets) and Fluid-SPIN swaps.

Fluid SPIN (Igoe et al., Alg. 3) flips, once per epoch, a fraction of the nonzero
constrained weights, choosing as many positive as negative ones so that p₊ and p₋ stay
exact. The paper can be read two ways, both offered by ``mode``:

* ``"pattern"`` (default) — the text's reading, "keeping the proportion constant but
  varying the polarity pattern": the template itself is changed at the swapped positions
  and the weights are flipped to follow it, so the net keeps training under a new pattern
  with the same proportions.
* ``"literal"`` — Algorithm 3 as printed: the weights are flipped but the template is kept,
  so the next reset step puts the swapped weights back on the template's side (with tiny
  ``posRand`` magnitudes): a once-per-epoch perturbation rather than a moving pattern.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from .layers import LayerSpec, aliases, named_tensors, select
from .template import PolarityTemplate

__all__ = ["sign_snapshot", "sign_change_fraction", "SignTracker", "fluid_spin_swap"]


def sign_snapshot(model: nn.Module, layers: LayerSpec | PolarityTemplate = "all") -> dict[str, Tensor]:
    """The current signs (int8, on the weights' device) of the selected weights.

    Example:
        >>> snap = sign_snapshot(nn.Linear(3, 2))
        >>> snap["weight"].dtype
        torch.int8
    """
    params = named_tensors(model)
    names = list(layers) if isinstance(layers, PolarityTemplate) else select(model, layers)
    return {n: torch.sign(params[n].detach()).to(torch.int8) for n in names}


def sign_change_fraction(before: Mapping[str, Tensor], after: Mapping[str, Tensor]) -> dict[str, float]:
    """Per layer, the fraction of weights whose sign differs between two snapshots
    (Wang et al. Fig. C.5; a move to or from exactly 0 counts as a change).

    Example:
        >>> sign_change_fraction({"w": torch.tensor([1, -1, 1, 1])}, {"w": torch.tensor([1, 1, -1, 1])})
        {'w': 0.5}
    """
    missing = set(before) ^ set(after)
    if missing:
        raise ValueError(f"snapshots cover different layers: {sorted(missing)}")
    return {n: float((before[n] != after[n]).sum()) / max(1, before[n].numel()) for n in before}


class SignTracker:
    """Keeps the last snapshot; :meth:`update` returns the per-layer fraction changed since.

    Example:
        >>> net = nn.Linear(4, 4)
        >>> tracker = SignTracker(net)
        >>> with torch.no_grad():
        ...     _ = net.weight.neg_()
        >>> tracker.update()
        {'weight': 1.0}
    """

    def __init__(self, model: nn.Module, layers: LayerSpec | PolarityTemplate = "all") -> None:
        self.model, self.layers = model, layers
        self.last = sign_snapshot(model, layers)

    def update(self) -> dict[str, float]:
        """Fractions changed since the previous call (or construction); takes a new snapshot."""
        now = sign_snapshot(self.model, self.layers)
        fractions = sign_change_fraction(self.last, now)
        self.last = now
        return fractions


@torch.no_grad()
def fluid_spin_swap(model: nn.Module, template: PolarityTemplate, fraction: float = 0.5, *,
                    mode: Literal["pattern", "literal"] = "pattern", seed: int | None = None,
                    generator: torch.Generator | None = None) -> dict[str, int]:
    """Flip ``fraction`` of each layer's nonzero template entries, half positive, half negative.

    Per layer, ``k = min(round(fraction · nonzero / 2), positives, negatives)`` positive and
    ``k`` negative entries are chosen at random; their weights are negated, and in
    ``"pattern"`` mode so are their template entries (see the module docstring).

    Args:
        model: the network (changed in place).
        template: its template (changed in place in ``"pattern"`` mode).
        fraction: share of the nonzero entries to flip, in [0, 1].
        mode: ``"pattern"`` (default) or ``"literal"``.
        seed: seeds a fresh CPU generator; or pass ``generator`` to continue one across epochs.

    Returns:
        Number of weights flipped per layer.

    Example:
        >>> net = nn.Linear(10, 10)
        >>> t = PolarityTemplate.from_proportions(net, {"weight": (0.2, 0.4, 0.4)})
        >>> flipped = fluid_spin_swap(net, t, 0.5, seed=0)
        >>> flipped, t.proportions()["weight"]
        ({'weight': 40}, (0.2, 0.4, 0.4))
    """
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    if mode not in ("pattern", "literal"):
        raise ValueError(f"mode must be 'pattern' or 'literal', got {mode!r}")
    params = template.check(model)  # a tied weight once, under one of its names
    tied = aliases(model)
    g = generator if generator is not None else torch.Generator().manual_seed(0 if seed is None else seed)
    flipped: dict[str, int] = {}
    for name, w in params.items():
        shape = w.shape
        flat = template[name].reshape(-1)  # a copy: reading a template layer never aliases it
        pos, neg = (flat > 0).nonzero().squeeze(1), (flat < 0).nonzero().squeeze(1)
        k = min(round(fraction * (pos.numel() + neg.numel()) / 2), pos.numel(), neg.numel())
        chosen = torch.cat([pos[torch.randperm(pos.numel(), generator=g)[:k]], neg[torch.randperm(neg.numel(), generator=g)[:k]]])
        coords = tuple(c.to(w.device) for c in torch.unravel_index(chosen, tuple(w.shape)))
        w.index_put_(coords, -w[coords])
        if mode == "pattern":
            flat[chosen] = -flat[chosen]
            root = tied.get(name, name)
            for other in template:  # every name of a tied weight keeps the one pattern
                if other == name or tied.get(other, other) == root:
                    template[other] = flat.view(shape)
        flipped[name] = int(chosen.numel())
    return flipped
