"""Put a source model's polarities onto another model, adapting the common mismatches.

Matching (:func:`match_layers`): a target layer takes the source layer of the same name and
kind; the target layers left over take the source layers left over of the same kind
(conv: 3–5-D weight, linear: 2-D), in order. A convolution and a transposed convolution
are different kinds when both sides are models (a state dict or template can't tell them
apart by shape; its layer is then read in the target's layout). Then, per pair:

* same shape → copied;
* a convolution whose input channels differ, when one side has a single channel (the
  input-channel axis is 1 for ``nn.Conv*d``, 0 for ``nn.ConvTranspose*d``, whose weight is
  ``(in, out/groups, *kernel)``):
  source C channels → target 1: the sign of the sum over input channels (of the source
  *weights* when the source is a model or state dict; of the source *signs*, a majority
  vote, when it is a template; a tie of nonzero entries gives +1, all zeros give 0);
  source 1 channel → target C: the one channel is repeated;
* the target's last layer (its classifier head) with another shape: left unconstrained
  (``head="free"``) or given its own random template (``head="random"``);
* anything else is an error naming the layer and both shapes.

Source weights are read through :func:`polarnet.builders.checked_weight`, the check that
:meth:`PolarityTemplate.from_model` uses: a NaN weight, or a weight on the meta device, is
an error naming the layer; ±inf keeps its sign.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from .builders import check_seed, checked_weight, random_signs
from .layers import LayerSpec, input_axes, named_tensors, select
from .template import PolarityTemplate

__all__ = ["TransferReport", "transfer", "match_layers"]

Source = PolarityTemplate | nn.Module | Mapping[str, Tensor]


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


def _sum_channels(src: Tensor, is_signs: bool, axis: int, name: str) -> Tensor:
    total = src.to(torch.float64).sum(dim=axis, keepdim=True)
    undefined = int(torch.isnan(total).sum())  # NaN weights are refused before: only +inf + -inf
    if undefined:
        raise ValueError(f"layer {name!r}: at {undefined} positions the input channels hold both +inf and -inf, whose "
                         f"sum has no sign; repair the source (e.g. torch.nan_to_num) or leave the layer out with layers=[...]")
    out = torch.sign(total)
    if is_signs:  # a tie of nonzero signs: keep the weight free to be nonzero
        out[(out == 0) & (src != 0).any(dim=axis, keepdim=True)] = 1
    return out.to(torch.int8)


def _source_tensors(source: Source, layers: LayerSpec, bias: bool) -> dict[str, Tensor]:
    if isinstance(source, PolarityTemplate):
        return dict(source)  # type: ignore[arg-type]
    tensors = named_tensors(source)
    return {n: tensors[n] for n in select(source, layers, bias=bias)}


def _pairs(src: Mapping[str, Tensor], src_axes: Mapping[str, int] | None, target: nn.Module,
           dst_names: list[str], dst_axes: Mapping[str, int]) -> dict[str, str]:
    dst = named_tensors(target)

    def fits(s: str, d: str) -> bool:
        if _kind(src[s]) != _kind(dst[d]):
            return False
        # a Conv and a ConvTranspose only where one side's layout is unknown (a state dict, a template)
        return src_axes is None or s not in src_axes or d not in dst_axes or src_axes[s] == dst_axes[d]

    pairs: dict[str, str] = {n: n for n in dst_names if n in src and fits(n, n)}
    left = [n for n in src if n not in pairs.values()]
    for name in dst_names:
        if name in pairs:
            continue
        same_kind = [s for s in left if fits(s, name)]
        if same_kind:
            pairs[name] = same_kind[0]
            left.remove(same_kind[0])
    return {n: pairs[n] for n in dst_names if n in pairs}


def match_layers(source: Source, target: nn.Module, layers: LayerSpec = "all", *,
                 bias: bool = False) -> dict[str, str]:
    """Which source layer each target layer takes, as :func:`transfer` matches them.

    First by name (same name, same kind), then the layers left over in order, kind by kind
    (conv: 3–5-D, linear: 2-D; a Conv and a ConvTranspose are different kinds when both
    sides are models). Shapes are not compared: a pair may differ in shape, so check
    shapes before copying values.

    Args:
        source: a template, a model, or a state dict (e.g. a checkpoint whose names carry
            a ``module.`` prefix).
        target: the model whose layers are matched.
        layers: which layers of both sides take part (see :func:`polarnet.layers.select`);
            for a template source, every template layer.
        bias: with a kind selector (``"all"``, ``"conv"``, ``"linear"``), also match the
            biases (1-D: matched by name, then in order among themselves).

    Returns:
        ``{target name: source name}`` in the target's order; target layers without a
        source layer are absent.

    Raises:
        ValueError: ``layers`` selects nothing on one side, or lists a name one side lacks.

    Example:
        >>> src = {"module.0.weight": torch.ones(4, 3), "module.0.bias": torch.ones(4)}
        >>> match_layers(src, nn.Sequential(nn.Linear(3, 4)), bias=True)
        {'0.weight': 'module.0.weight', '0.bias': 'module.0.bias'}
    """
    src = _source_tensors(source, layers, bias)
    src_axes = input_axes(source) if isinstance(source, nn.Module) else None
    return _pairs(src, src_axes, target, select(target, layers, bias=bias), input_axes(target))


def _adaptable(got: tuple[int, ...], want: tuple[int, ...], axis: int) -> bool:
    """Same shape but for the input channels (``axis``), one side of which is 1."""
    return (len(got) == len(want) and axis < len(got) and (got[axis] == 1 or want[axis] == 1)
            and all(g == w for i, (g, w) in enumerate(zip(got, want)) if i != axis))


def transfer(source: Source, target: nn.Module, layers: LayerSpec = "all", *,
             head: Literal["free", "random"] = "free", seed: int = 0) -> tuple[PolarityTemplate, TransferReport]:
    """Build a template for ``target`` from the polarities of ``source``.

    Args:
        source: a template, a (pretrained) model, or a state dict.
        target: the model to constrain.
        layers: which target layers to constrain (and, for a model/state dict source, which
            source layers to read).
        head: what to do with a differently shaped last layer: ``"free"`` or ``"random"``.
        seed: seeds the head's random template; a whole number in ``[0, 2**63 - 1]``.

    Returns:
        ``(template, report)``; the report is also stored in ``template.meta["transfer"]``.

    Raises:
        ValueError: a shape mismatch that is not one of the adaptable ones; a source weight
            that is NaN or on the meta device (naming the layer, as
            :meth:`PolarityTemplate.from_model` does); no target layer constrained.

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
    seed = check_seed(seed)
    is_signs = isinstance(source, PolarityTemplate)
    src = _source_tensors(source, layers, False)
    dst = named_tensors(target)
    dst_names = select(target, layers)
    dst_axes = input_axes(target)
    pairs = _pairs(src, input_axes(source) if isinstance(source, nn.Module) else None, target, dst_names, dst_axes)

    report = TransferReport(unused=[n for n in src if n not in pairs.values()])
    signs: dict[str, Tensor] = {}
    head_name = dst_names[-1]
    free_head: str | None = None
    for name in dst_names:
        if name not in pairs:
            report.unmatched.append(name)
            continue
        s_name = pairs[name]
        want, got = tuple(dst[name].shape), tuple(src[s_name].shape)
        axis = dst_axes.get(name, 1)
        if got == want:
            signs[name] = torch.sign(checked_weight(s_name, src[s_name])).to(torch.int8)
            report.matched.append((name, s_name))
        elif _kind(src[s_name]) == "conv" and _adaptable(got, want, axis) and want[axis] == 1:
            signs[name] = _sum_channels(checked_weight(s_name, src[s_name]), is_signs, axis, s_name)
            what = "signs (majority vote)" if is_signs else "weights"
            report.adapted.append((name, s_name, f"input channels {got[axis]} → 1: sign of the summed source {what}"))
        elif _kind(src[s_name]) == "conv" and _adaptable(got, want, axis):
            signs[name] = torch.sign(checked_weight(s_name, src[s_name])).to(torch.int8).expand(*want).clone()
            report.adapted.append((name, s_name, f"input channels 1 → {want[axis]}: the one channel repeated"))
        elif name == head_name:
            if head == "random":
                signs[name] = random_signs({name: dst[name]}, seed=seed, layers=[name])[name]
                report.adapted.append((name, s_name, f"head {got} → {want}: own random template (seed {seed})"))
            else:
                report.unmatched.append(name)
                free_head = f"{name!r} (source {s_name!r} has shape {got} ≠ {want})"
        else:
            raise ValueError(
                f"layer {name!r}: source {s_name!r} has shape {got} ≠ target shape {want}; only a change of "
                f"input channels to or from 1, or of the last layer (head), can be adapted"
            )
    if not signs:
        if free_head:
            raise ValueError(f"transfer constrained no layer: the only matched target layer is the head {free_head}, "
                             f"left free (head='free'); pass head='random' to give it a random template, or a source "
                             f"whose layers fit the target's")
        raise ValueError("transfer found no source layer for any target layer; check `layers` and the source")
    template = PolarityTemplate(signs, meta={"source": "transfer", "transfer": report.to_dict()})
    return template, report
