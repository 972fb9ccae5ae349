"""Put a source model's polarities onto another model, adapting the common mismatches.

Matching: a target layer takes the source layer of the same name and kind; the target layers left
over take the source layers left over of the same kind (conv: 3–5-D weight, linear: 2-D),
in order. Then, per pair:

* same shape → copied;
* a convolution whose input channels differ, when one side has a single channel:
  source C channels → target 1: the sign of the sum over input channels (of the source
  *weights* when the source is a model or state dict; of the source *signs*, a majority
  vote, when it is a template; a tie of nonzero entries gives +1, all zeros give 0);
  source 1 channel → target C: the one channel is repeated;
* the target's last layer (its classifier head) with another shape: left unconstrained
  (``head="free"``) or given its own random template (``head="random"``);
* anything else is an error naming the layer and both shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from .builders import random_signs
from .layers import LayerSpec, named_tensors, select
from .template import PolarityTemplate

__all__ = ["TransferReport", "transfer"]


@dataclass
class TransferReport:
    """What :func:`transfer` did with each layer.

    Attributes:
        matched: ``(target, source)`` pairs copied as they are.
        adapted: ``(target, source, how)`` for layers whose signs were adapted.
        unmatched: target layers left unconstrained (no source layer, or a free head).
        unused: source layers that no target layer took.
    """

    matched: list[tuple[str, str]] = field(default_factory=list)
    adapted: list[tuple[str, str, str]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list]:
        """A JSON-ready dict (stored in the template's ``meta["transfer"]``)."""
        return {k: [list(v) if isinstance(v, tuple) else v for v in vs] for k, vs in asdict(self).items()}

    def __str__(self) -> str:
        rows = [f"matched  {t} ← {s}" for t, s in self.matched]
        rows += [f"adapted  {t} ← {s}  ({how})" for t, s, how in self.adapted]
        rows += [f"free     {t}" for t in self.unmatched]
        rows += [f"unused   {s} (source)" for s in self.unused]
        return "\n".join(rows)


def _kind(t: Tensor) -> str:
    return "linear" if t.dim() == 2 else "conv" if 3 <= t.dim() <= 5 else "other"


def _sum_channels(src: Tensor, is_signs: bool) -> Tensor:
    total = src.to(torch.float64).sum(dim=1, keepdim=True)
    out = torch.sign(total)
    if is_signs:  # a tie of nonzero signs: keep the weight free to be nonzero
        out[(out == 0) & (src != 0).any(dim=1, keepdim=True)] = 1
    return out.to(torch.int8)


def transfer(source: PolarityTemplate | nn.Module | Mapping[str, Tensor], target: nn.Module,
             layers: LayerSpec = "all", *, head: Literal["free", "random"] = "free",
             seed: int = 0) -> tuple[PolarityTemplate, TransferReport]:
    """Build a template for ``target`` from the polarities of ``source``.

    Args:
        source: a template, a (pretrained) model, or a state dict.
        target: the model to constrain.
        layers: which target layers to constrain (and, for a model/state dict source, which
            source layers to read).
        head: what to do with a differently shaped last layer: ``"free"`` or ``"random"``.
        seed: seeds the head's random template.

    Returns:
        ``(template, report)``; the report is also stored in ``template.meta["transfer"]``.

    Raises:
        ValueError: a shape mismatch that is not one of the adaptable ones.

    Example:
        >>> src = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 100))
        >>> dst = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
        >>> t, report = transfer(src, dst)
        >>> report.adapted[0][2]
        'input channels 3 → 1: sign of the summed source weights'
        >>> report.unmatched
        ['2.weight']
    """
    if head not in ("free", "random"):
        raise ValueError(f"head must be 'free' or 'random', got {head!r}")
    is_signs = isinstance(source, PolarityTemplate)
    if is_signs:
        src: dict[str, Tensor] = dict(source)  # type: ignore[arg-type]
    else:
        tensors = named_tensors(source)  # type: ignore[arg-type]
        src = {n: tensors[n].detach().cpu() for n in select(source, layers)}  # type: ignore[arg-type]
    dst = named_tensors(target)
    dst_names = select(target, layers)

    pairs: dict[str, str] = {n: n for n in dst_names if n in src and _kind(src[n]) == _kind(dst[n])}
    left = [n for n in src if n not in pairs.values()]
    for name in dst_names:
        if name in pairs:
            continue
        same_kind = [s for s in left if _kind(src[s]) == _kind(dst[name])]
        if same_kind:
            pairs[name] = same_kind[0]
            left.remove(same_kind[0])

    report = TransferReport(unused=left)
    signs: dict[str, Tensor] = {}
    head_name = dst_names[-1]
    for name in dst_names:
        if name not in pairs:
            report.unmatched.append(name)
            continue
        s_name = pairs[name]
        s, want = src[s_name], tuple(dst[name].shape)
        got = tuple(s.shape)
        if got == want:
            signs[name] = torch.sign(s).to(torch.int8)
            report.matched.append((name, s_name))
        elif _kind(s) == "conv" and len(got) == len(want) and got[0] == want[0] and got[2:] == want[2:] and want[1] == 1:
            signs[name] = _sum_channels(s, is_signs)
            what = "signs (majority vote)" if is_signs else "weights"
            report.adapted.append((name, s_name, f"input channels {got[1]} → 1: sign of the summed source {what}"))
        elif _kind(s) == "conv" and len(got) == len(want) and got[0] == want[0] and got[2:] == want[2:] and got[1] == 1:
            signs[name] = torch.sign(s).to(torch.int8).expand(*want).clone()
            report.adapted.append((name, s_name, f"input channels 1 → {want[1]}: the one channel repeated"))
        elif name == head_name:
            if head == "random":
                signs[name] = random_signs({name: dst[name]}, seed=seed, layers=[name])[name]
                report.adapted.append((name, s_name, f"head {got} → {want}: own random template (seed {seed})"))
            else:
                report.unmatched.append(name)
        else:
            raise ValueError(
                f"layer {name!r}: source {s_name!r} has shape {got} ≠ target shape {want}; only a change of "
                f"input channels to or from 1, or of the last layer (head), can be adapted"
            )
    if not signs:
        raise ValueError("transfer found no source layer for any target layer; check `layers` and the source")
    template = PolarityTemplate(signs, meta={"source": "transfer", "transfer": report.to_dict()})
    return template, report
