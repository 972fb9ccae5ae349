"""Put a source model's polarities onto another model, adapting the common mismatches.

Renaming (``rename=``): a mapping ``{source name: target name}`` or a function
``source name -> target name or None`` renames the source's layers before matching (e.g.
timm ↔ torchvision names, or a ``backbone.`` prefix); ``None`` leaves a layer out. The
report names source layers by their own names.

Matching (:func:`match_layers`): a target layer takes the source layer of the same name and
kind; the target layers left over take the source layers left over of the same kind
(conv: 3–5-D weight, linear: 2-D), in order. A source whose names come sorted as text (a
``.safetensors`` file keeps no module order: ``features.10`` before ``features.3``) is taken
with the numbers in its names compared as numbers. When both sides are models, their registered
layer kinds (:mod:`polarnet.layers`) must also agree in kind and layout: a convolution and a
transposed convolution, or an ``nn.Linear`` and a Hugging Face ``Conv1D`` (stored
transposed), are different (a state dict or template can't tell them apart by shape; its
layer is then read in the target's layout). Then, per pair:

* same shape → copied;
* a convolution whose input channels differ, when one side has a single channel (the
  input-channel axis is 1 for ``nn.Conv*d``, 0 for ``nn.ConvTranspose*d``, whose weight is
  ``(in, out/groups, *kernel)``):
  source C channels → target 1: the sign of the sum over input channels (of the source
  *weights* when the source is a model or state dict; of the source *signs*, a majority
  vote, when it is a template; a tie of nonzero entries gives +1, all zeros give 0);
  source 1 channel → target C: the one channel is repeated;
* the target's head (``head=``; by default its last linear layer, or the last layer with
  ``num_classes`` outputs; see :func:`head_layers`) with another shape: left unconstrained
  (``head_policy="free"``) or given its own random template (``head_policy="random"``);
* anything else — any other layer, whatever ``layers`` selects — is an error naming the
  layer and both shapes.

Source weights are read through :func:`polarnet.builders.checked_weight`, the check that
:meth:`PolarityTemplate.from_model` uses: a NaN weight, or a weight on the meta device, is
an error naming the layer; ±inf keeps its sign.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Union

import torch
from torch import Tensor, nn

from .builders import check_seed, checked_weight, random_signs
from .layers import LayerSpec, aliases, input_axes, layer_info, named_tensors, select
from .template import PolarityTemplate

__all__ = ["TransferReport", "transfer", "match_layers", "head_layers"]

Source = Union[PolarityTemplate, nn.Module, Mapping[str, Tensor]]
Rename = Union[Mapping[str, str], Callable[[str], Union[str, None]]]
HeadPolicy = Literal["free", "random"]


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


def _renamed(names: Sequence[str], rename: Rename | None, every: Sequence[str]) -> dict[str, str]:
    """``{source name: name to match by}`` for the source layers ``rename`` keeps, in order."""
    if rename is None:
        return {n: n for n in names}
    if isinstance(rename, Mapping):
        known = set(every)
        unknown = [k for k in rename if k not in known]
        if unknown:
            raise ValueError(f"rename maps names the source does not have: {unknown[:6]}; its names start with: "
                             f"{', '.join(list(every)[:6])}{', …' if len(every) > 6 else ''}")
        mapping = rename

        def fn(n: str) -> str | None:
            return mapping.get(n, n)
    elif callable(rename):
        fn = rename
    else:
        raise TypeError(f"rename must be a mapping {{source name: target name}} or a function "
                        f"source name -> target name (or None), got {type(rename).__name__}")
    out: dict[str, str] = {}
    taken: dict[str, str] = {}
    for name in names:
        new = fn(name)
        if new is None:
            continue
        if not isinstance(new, str):
            raise TypeError(f"rename turns source layer {name!r} into {new!r}; give a target name (str), "
                            f"or None to leave the layer out")
        if new in taken:
            raise ValueError(f"rename gives the source layers {taken[new]!r} and {name!r} one name, {new!r}; "
                             f"each source layer needs a name of its own")
        taken[new] = name
        out[name] = new
    return out


Layout = tuple[str, Union[int, None]]


def _layouts(model: nn.Module) -> dict[str, Layout]:
    """Weight name → (kind, input axis), from the registered layer kinds."""
    return {n: (i.kind, i.in_axis) for n, i in layer_info(model).items() if not i.is_bias}


def _pairs(src: Mapping[str, Tensor], src_layouts: Mapping[str, Layout] | None, dst: Mapping[str, Tensor],
           dst_names: list[str], dst_layouts: Mapping[str, Layout]) -> dict[str, str]:
    def fits(s: str, d: str) -> bool:
        if _kind(src[s]) != _kind(dst[d]):
            return False
        # kinds and layouts are compared only where both sides know them (not a state dict, not a template)
        return src_layouts is None or s not in src_layouts or d not in dst_layouts or src_layouts[s] == dst_layouts[d]

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


def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _module_order(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """``tensors`` in the order their model lists them, as far as it can be told: names sorted as
    text (a ``.safetensors`` file's) are re-sorted with their numbers compared as numbers, so the
    layers left over after matching by name pair in the network's order; any other order is the
    source's own."""
    names = list(tensors)
    if names != sorted(names):
        return tensors
    return {name: tensors[name] for name in sorted(names, key=_natural)}


def _match(source: Source, target: nn.Module, layers: LayerSpec, bias: bool,
           rename: Rename | None) -> tuple[dict[str, str], dict[str, Tensor], list[str]]:
    """``({target name: source name}, source tensors by source name, target names)``."""
    src = _module_order(_source_tensors(source, layers, bias))
    every = list(source) if isinstance(source, PolarityTemplate) else list(named_tensors(source))
    new_names = _renamed(list(src), rename, every)
    keyed = {new: src[old] for old, new in new_names.items()}
    src_layouts = None
    if isinstance(source, nn.Module):
        own = _layouts(source)
        src_layouts = {new: own[old] for old, new in new_names.items() if old in own}
    dst_names = select(target, layers, bias=bias)
    pairs = _pairs(keyed, src_layouts, named_tensors(target), dst_names, _layouts(target))
    original = {new: old for old, new in new_names.items()}
    return {d: original[s] for d, s in pairs.items()}, src, dst_names


def match_layers(source: Source, target: nn.Module, layers: LayerSpec = "all", *,
                 bias: bool = False, rename: Rename | None = None) -> dict[str, str]:
    """Which source layer each target layer takes, as :func:`transfer` matches them.

    First by name (same name, same kind), then the layers left over in order, kind by kind
    (conv: 3–5-D, linear: 2-D; when both sides are models, their registered kinds and
    layouts must agree too, so a Conv and a ConvTranspose differ). Shapes are not compared:
    a pair may differ in shape, so check shapes before copying values.

    Args:
        source: a template, a model, or a state dict (e.g. a checkpoint whose names carry
            a ``module.`` prefix).
        target: the model whose layers are matched.
        layers: which layers of both sides take part (see :func:`polarnet.layers.select`);
            for a template source, every template layer.
        bias: with a kind selector (``"all"``, ``"conv"``, ``"linear"``…), also match the
            biases (1-D: matched by name, then in order among themselves).
        rename: ``{source name: target name}``, or a function ``source name -> target name``
            (``None`` leaves the layer out), applied to the source's names before matching.

    Returns:
        ``{target name: source name}`` in the target's order (source names as the source
        has them); target layers without a source layer are absent.

    Raises:
        ValueError: ``layers`` selects nothing on one side, or lists a name one side lacks;
            ``rename`` maps a name the source lacks, or two source layers onto one name.

    Example:
        >>> src = {"module.0.weight": torch.ones(4, 3), "module.0.bias": torch.ones(4)}
        >>> match_layers(src, nn.Sequential(nn.Linear(3, 4)), bias=True)
        {'0.weight': 'module.0.weight', '0.bias': 'module.0.bias'}
        >>> match_layers(src, nn.Sequential(nn.Linear(3, 4)), rename=lambda n: n.removeprefix("module."))
        {'0.weight': 'module.0.weight'}
    """
    return _match(source, target, layers, bias, rename)[0]


def head_layers(target: nn.Module, head: str | Sequence[str] | None = None, *,
                num_classes: int | None = None) -> list[str]:
    """The weights :func:`transfer` treats as the target's head (every name of a tied one).

    Args:
        target: the model.
        head: a module name (``"fc"``: its weights, as its registered kind says) or a parameter
            name (``"fc.weight"``), or a list of them (several heads, e.g. auxiliary
            classifiers). ``None``: the last layer with ``num_classes`` outputs when
            ``num_classes`` is given, else the model's last linear layer (``nn.Linear``,
            attention, Hugging Face ``Conv1D``…), else (no linear layer, e.g. SqueezeNet) its
            last layer of any registered kind.
        num_classes: the number of classes, used when ``head`` is ``None``.

    Returns:
        Parameter names in the target's order; empty when the target has no registered layer.

    Raises:
        ValueError: ``head`` names neither a parameter nor a module with weights; no layer
            has ``num_classes`` outputs; ``num_classes`` is not a positive whole number.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 10), nn.Linear(10, 4))
        >>> head_layers(net), head_layers(net, "2"), head_layers(net, num_classes=10)
        (['3.weight'], ['2.weight'], ['2.weight'])
    """
    tensors = named_tensors(target)
    info = layer_info(target)
    weights = [n for n, i in info.items() if not i.is_bias]
    if head is not None:
        wanted = [head] if isinstance(head, str) else list(head)
        if not wanted:
            raise ValueError("head is an empty list; name the head layer (e.g. head='fc') or leave head out")
        names: list[str] = []
        for h in wanted:
            if not isinstance(h, str):
                raise TypeError(f"head names layers by str (a module such as 'fc' or a parameter such as 'fc.weight'), "
                                f"got {h!r}")
            own = [h] if h in tensors else [n for n in weights if info[n].module == h]
            if not own and f"{h}.weight" in tensors:
                own = [f"{h}.weight"]  # a module of no registered kind, with a weight
            if not own:
                last = weights[-1] if weights else next(iter(tensors))
                raise ValueError(f"head={h!r} names no parameter or layer of the target; name a module such as "
                                 f"{last.rsplit('.', 1)[0]!r} or a parameter such as {last!r}")
            names += own
    elif num_classes is not None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive whole number, got {num_classes!r}")
        fits = [n for n in weights if info[n].out_size == num_classes]
        if not fits:
            sizes = ", ".join(f"{n}: {info[n].out_size}" for n in weights[-4:])
            raise ValueError(f"num_classes={num_classes}: no layer of the target has {num_classes} outputs (the last "
                             f"layers have {sizes}); pass head=NAME to name the head")
        names = [fits[-1]]
    else:
        linear = [n for n in weights if info[n].kind == "linear"]
        names = [(linear or weights)[-1]] if weights else []
    tied = aliases(target)
    canonical = {tied.get(n, n) for n in names}
    return [n for n in tensors if tied.get(n, n) in canonical]


def _head_policy(head: str | Sequence[str] | None, head_policy: str | None,
                 target: nn.Module) -> tuple[str | Sequence[str] | None, str]:
    """``(head, head_policy)``, taking the old ``head="free"|"random"`` as a policy, with a warning."""
    if isinstance(head, str) and head in ("free", "random"):
        try:
            is_name = head in named_tensors(target) or target.get_submodule(head) is not None
        except AttributeError:
            is_name = False
        if not is_name:
            warnings.warn(f"transfer(head={head!r}) as what to do with the head is deprecated: head= now names the "
                          f"head layer; pass head_policy={head!r}", DeprecationWarning, stacklevel=3)
            if head_policy is not None and head_policy != head:
                raise ValueError(f"head={head!r} (the old spelling of head_policy) contradicts "
                                 f"head_policy={head_policy!r}; pass head_policy alone")
            head, head_policy = None, head
    if head_policy is None:
        head_policy = "free"
    if head_policy not in ("free", "random"):
        raise ValueError(f"head_policy must be 'free' (leave a head of another shape unconstrained) or 'random' "
                         f"(its own random template), got {head_policy!r}")
    return head, head_policy


def _head_text(target: nn.Module, heads: set[str]) -> str:
    """How an error names the heads: "the last layer (head)" when that is what they are."""
    weights = [n for n, i in layer_info(target).items() if not i.is_bias]
    if weights and heads == set(head_layers(target, weights[-1])):
        return "the last layer (head)"
    if not heads:
        return "a head (name one with head=)"
    return f"the head ({', '.join(sorted(heads))}; name another with head=)"


def _adaptable(got: tuple[int, ...], want: tuple[int, ...], axis: int) -> bool:
    """Same shape but for the input channels (``axis``), one side of which is 1."""
    return (len(got) == len(want) and axis < len(got) and (got[axis] == 1 or want[axis] == 1)
            and all(g == w for i, (g, w) in enumerate(zip(got, want)) if i != axis))


def transfer(source: Source, target: nn.Module, layers: LayerSpec = "all", *,
             head: str | Sequence[str] | None = None, head_policy: HeadPolicy | None = None,
             num_classes: int | None = None, rename: Rename | None = None,
             seed: int = 0) -> tuple[PolarityTemplate, TransferReport]:
    """Build a template for ``target`` from the polarities of ``source``.

    Args:
        source: a template, a (pretrained) model, or a state dict.
        target: the model to constrain.
        layers: which target layers to constrain (and, for a model/state dict source, which
            source layers to read).
        head: the target's head: a module name (``"fc"``) or parameter name
            (``"fc.weight"``), or a list of them; default: see :func:`head_layers` (the last
            linear layer, or the last with ``num_classes`` outputs). The old
            ``head="free"|"random"`` still works as ``head_policy``, with a ``DeprecationWarning``.
        head_policy: what a head of another shape than its source layer gets: ``"free"``
            (default: unconstrained) or ``"random"`` (its own random template).
        num_classes: the target's number of classes; picks the default head.
        rename: ``{source name: target name}``, or a function ``source name -> target name``
            (``None`` leaves the layer out), applied to the source's names before matching.
        seed: seeds the head's random template; a whole number in ``[0, 2**63 - 1]``.

    Returns:
        ``(template, report)``; the report is also stored in ``template.meta["transfer"]``.

    Raises:
        ValueError: a shape mismatch that is not one of the adaptable ones (a layer other
            than the head, whatever ``layers`` selects); a source weight that is NaN or on
            the meta device (naming the layer, as :meth:`PolarityTemplate.from_model` does);
            no target layer constrained; a ``head``, ``num_classes`` or ``rename`` that
            names nothing.

    Example:
        >>> src = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 100))
        >>> dst = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
        >>> t, report = transfer(src, dst)
        >>> report.adapted[0][2]
        'input channels 3 → 1: sign of the summed source weights'
        >>> report.unmatched
        ['2.weight']
        >>> t, report = transfer(src, dst, head="2", head_policy="random")
        >>> report.adapted[1][2]
        'head (100, 128) → (10, 128): own random template (seed 0)'
    """
    head, policy = _head_policy(head, head_policy, target)
    seed = check_seed(seed)
    is_signs = isinstance(source, PolarityTemplate)
    pairs, src, dst_names = _match(source, target, layers, False, rename)
    dst = named_tensors(target)
    dst_axes = input_axes(target)
    heads = set(head_layers(target, head, num_classes=num_classes))
    if not heads and head is None and num_classes is None:
        heads = {dst_names[-1]}  # no registered layer kind: the last selected layer, as before

    report = TransferReport(unused=[n for n in src if n not in pairs.values()])
    signs: dict[str, Tensor] = {}
    free_heads: list[str] = []
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
        elif name in heads:
            if policy == "random":
                signs[name] = random_signs({name: dst[name]}, seed=seed, layers=[name])[name]
                report.adapted.append((name, s_name, f"head {got} → {want}: own random template (seed {seed})"))
            else:
                report.unmatched.append(name)
                free_heads.append(f"{name!r} (source {s_name!r} has shape {got} ≠ {want})")
        else:
            raise ValueError(
                f"layer {name!r}: source {s_name!r} has shape {got} ≠ target shape {want}; only a change of input "
                f"channels to or from 1, or of {_head_text(target, heads)}, can be adapted"
            )
    if not signs:
        if free_heads:
            which = (f"the only matched target layer is the head {free_heads[0]}" if len(free_heads) == 1 else
                     f"every matched target layer is a head: {', '.join(free_heads)}")
            raise ValueError(f"transfer constrained no layer: {which}, left free (head_policy='free'); pass "
                             f"head_policy='random' to give it a random template, or a source whose layers fit the "
                             f"target's")
        raise ValueError("transfer found no source layer for any target layer; check `layers`, `rename` and the source")
    template = PolarityTemplate(signs, meta={"source": "transfer", "transfer": report.to_dict()})
    return template, report
