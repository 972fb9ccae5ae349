"""Which parameters a template covers: the ``layers=`` argument of every builder.

Layer kinds are a registry (:data:`LAYER_KINDS`, :func:`register_layer_kind`). Each
registered kind says which modules it covers, which of their parameters it constrains, the
group ``layers=`` selects it by (its ``kind``), and the layout of each weight: the axis of
its input channels (what :func:`polarnet.transfer` adapts), the axis of its outputs (a
head's output size), and its fans (what :func:`polarnet.init_magnitudes` scales by).

* ``conv`` (kind ``conv``): ``nn.Conv1d/2d/3d``; input axis 1; torch's fans.
* ``conv_transpose`` (kind ``conv``): ``nn.ConvTranspose1d/2d/3d``, weight
  ``(in, out/groups, *k)``; input axis 0; fans ``(in·k, out/groups·k)``.
* ``linear`` (kind ``linear``): ``nn.Linear``; input axis 1; torch's fans.
* ``bilinear`` (kind ``linear``): ``nn.Bilinear`` (two inputs: no input axis); torch's fans.
* ``multihead_attention`` (kind ``linear``): ``nn.MultiheadAttention``'s ``in_proj_weight``
  (or ``q/k/v_proj_weight``) and ``out_proj.weight``; input axis 1; fans of one projection:
  ``(E, E)`` for the packed ``(3E, E)`` ``in_proj_weight``.
* ``hf_conv1d`` (kind ``linear``): Hugging Face ``transformers`` ``Conv1D``, a linear layer
  stored ``(in, out)``; input axis 0; fans ``(in, out)``. Matched by class name, so polarnet
  never imports ``transformers``.
* ``embedding`` (kind ``embedding``): ``nn.Embedding``, ``nn.EmbeddingBag``, weight
  ``(num, dim)``; no input axis; fans as ``torch.nn.init`` counts them, ``(dim, num)``.

``layers`` is one of:

* ``"all"`` — the weights of every registered kind (biases only with ``bias=True``); on a
  model of Conv and Linear layers that is what it always was, and embeddings, attention and
  ``Conv1D`` weights are taken too;
* a kind — ``"conv"``, ``"linear"``, ``"embedding"``: every registered kind in that group;
* a registered kind's name — ``"conv_transpose"``, ``"multihead_attention"``, …: that one;
* a glob on parameter names, e.g. ``"features.*.weight"`` (matched against every parameter);
* a list of parameter names, taken as given.

A plain ``state_dict`` carries no module types, so there a layer's kind is read from its
shape: a ``*weight`` (or ``*_weight``, as ``in_proj_weight``) of 3–5 dimensions is a
convolution, of 2 dimensions a linear layer (an embedding's weight is one too).

Tied weights (one tensor under two names, as ``model.state_dict()`` lists a parameter
shared by two modules) are known under every name (:func:`named_tensors`), and
:func:`aliases` says which names are the same tensor. The kind and glob selectors take a
tied tensor once, under its first selected name, so a model and its state dict select the
same layers; a list of names is taken as given.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .distributed import local_view

from .registry import Registry

__all__ = ["LayerSpec", "LayerKind", "LayerInfo", "LAYER_KINDS", "register_layer_kind", "layer_info", "select",
           "named_tensors", "aliases", "layer_kind", "module_kinds", "input_axes", "layer_fans", "torch_fans"]

LayerSpec = Union[str, Sequence[str]]
"""``"all"``, a kind, a registered kind's name, a glob on names, or a list of names."""
Kind = str
Fans = Callable[[Tensor, str], "tuple[int, int]"]


# --------------------------------------------------------------------------- the registry
def torch_fans(weight: Tensor, param: str = "weight") -> tuple[int, int]:
    """``(fan_in, fan_out)`` as ``torch.nn.init`` counts them: dimension 1 and dimension 0, each
    times the product of the dimensions after 1; a vector (Keras' rule) has its length as both.

    Example:
        >>> torch_fans(torch.empty(8, 3, 5, 5)), torch_fans(torch.empty(7))
        ((75, 200), (7, 7))
    """
    if weight.dim() < 2:
        return weight.numel(), weight.numel()
    return nn.init._calculate_fan_in_and_fan_out(weight)


def _axis_fans(weight: Tensor, in_axis: int, out_axis: int) -> tuple[int, int]:
    if weight.dim() < 2:
        return weight.numel(), weight.numel()
    axes = (in_axis % weight.dim(), out_axis % weight.dim())
    rest = math.prod(s for i, s in enumerate(weight.shape) if i not in axes)
    return weight.shape[in_axis] * rest, weight.shape[out_axis] * rest


@dataclass(frozen=True)
class LayerKind:
    """One registered layer kind (see :func:`register_layer_kind` for the fields)."""

    name: str
    kind: str
    types: tuple[type | str, ...] = ()
    predicate: Callable[[nn.Module], bool] | None = None
    weights: tuple[str, ...] = ("weight",)
    biases: tuple[str, ...] = ("bias",)
    in_axis: int | None = 1
    out_axis: int = 0
    fans: Fans | None = None
    in_all: bool = True

    def distance(self, module: nn.Module) -> int | None:
        """How closely this kind names the module's class: 0 for its own class, 1 for its base…;
        ``None`` when it does not match."""
        distance: int | None = 0
        if self.types:
            by_name = any(isinstance(t, str) for t in self.types)
            distance = next((i for i, cls in enumerate(type(module).__mro__) if cls in self.types
                             or by_name and f"{cls.__module__}.{cls.__qualname__}" in self.types), None)
        if distance is None or self.predicate is not None and not self.predicate(module):
            return None
        return distance

    def fans_of(self, weight: Tensor, param: str = "weight") -> tuple[int, int]:
        """``(fan_in, fan_out)`` of one of this kind's weights: its ``fans`` function, or the sizes
        of the input and output axes, each times the product of the other dimensions (without an
        input axis: :func:`torch_fans`)."""
        if self.fans is not None:
            return self.fans(weight, param)
        if self.in_axis is None:
            return torch_fans(weight, param)
        return _axis_fans(weight, self.in_axis, self.out_axis)


LAYER_KINDS: Registry[LayerKind] = Registry("layer kind")


def register_layer_kind(name: str, *, kind: str, types: Sequence[type | str] = (),
                        predicate: Callable[[nn.Module], bool] | None = None, weights: Sequence[str] = ("weight",),
                        biases: Sequence[str] = ("bias",), in_axis: int | None = 1, out_axis: int = 0,
                        fans: Fans | None = None, in_all: bool = True) -> LayerKind:
    """Register a layer kind: one call, and every selector, ``init_magnitudes`` and ``transfer`` know it.

    Args:
        name: the registry name; also a ``layers=`` selector for this kind alone.
        kind: the group ``layers=`` selects it by: ``"conv"``, ``"linear"``, ``"embedding"`` or a new one.
        types: module classes it covers (subclasses too), or ``"module.QualName"`` strings,
            matched against the class and its bases without importing that module.
        predicate: ``module -> bool``, alone or narrowing ``types``.
        weights: the parameters it constrains, relative to the module (``"out_proj.weight"``);
            a module that lacks one (``None``) is skipped for it.
        biases: the parameters that ``bias=True`` adds.
        in_axis: the weight's axis of input channels (``None``: none to adapt).
        out_axis: the weight's axis of outputs.
        fans: ``(weight, param) -> (fan_in, fan_out)``; default: the sizes of ``in_axis`` and
            ``out_axis``, each times the product of the other dimensions.
        in_all: whether ``layers="all"`` takes it.

    When several kinds match one module, the one that names its class most closely wins (its
    own class before a base class; a predicate alone counts as its own class); two equally
    close kinds are an error when such a module is met. A parameter already claimed by an
    enclosing module's kind (``out_proj.weight`` of ``nn.MultiheadAttention``) keeps that kind.

    Returns:
        The registered :class:`LayerKind`.

    Raises:
        ValueError: the name is taken (or is ``"all"``), ``name`` or ``kind`` clashes with
            another kind's, or neither ``types`` nor ``predicate`` is given.

    Example:
        >>> class Scale(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.gain = nn.Parameter(torch.ones(3, 4))
        >>> _ = register_layer_kind("scale_demo", kind="scale", types=(Scale,), weights=("gain",), biases=())
        >>> select(nn.Sequential(Scale(), nn.Linear(4, 2)), "scale")
        ['0.gain']
        >>> LAYER_KINDS.unregister("scale_demo")
    """
    if not types and predicate is None:
        raise ValueError(f"layer kind {name!r}: give types=(SomeModule, …) or predicate=lambda module: …")
    if "all" in (name, kind):
        raise ValueError(f"layer kind {name!r}: 'all' is the selector of every kind; pick another name or kind")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"layer kind {name!r}: kind must be a non-empty string such as 'linear', got {kind!r}")
    for other in (LAYER_KINDS.get(n) for n in LAYER_KINDS):
        if other.name != name and other.kind == name and kind != name:
            raise ValueError(f"layer kind {name!r}: {name!r} is already the kind of {other.name!r}, so layers={name!r} "
                             f"would be ambiguous; name it differently or register it with kind={name!r}")
        if other.name == kind and other.kind != kind:
            raise ValueError(f"layer kind {name!r}: kind {kind!r} is the name of the registered kind {other.name!r} "
                             f"(kind {other.kind!r}); pick another kind")
    entry = LayerKind(name, kind, tuple(types), predicate, tuple(weights), tuple(biases), in_axis, out_axis, fans,
                      in_all)
    return LAYER_KINDS.register(name)(entry)


def _mha_fans(weight: Tensor, param: str) -> tuple[int, int]:
    """The packed ``(3E, E)`` input projection holds three ``(E, E)`` projections: fans ``(E, E)``."""
    if param == "in_proj_weight":
        return weight.shape[1], weight.shape[0] // 3
    return torch_fans(weight, param)


def _swapped_torch_fans(weight: Tensor, param: str) -> tuple[int, int]:
    fan_in, fan_out = torch_fans(weight, param)
    return fan_out, fan_in


register_layer_kind("conv", kind="conv", types=(nn.modules.conv._ConvNd,))
register_layer_kind("conv_transpose", kind="conv", types=(nn.modules.conv._ConvTransposeNd,), in_axis=0, out_axis=1)
register_layer_kind("linear", kind="linear", types=(nn.Linear,))
register_layer_kind("bilinear", kind="linear", types=(nn.Bilinear,), in_axis=None, fans=torch_fans)
register_layer_kind("multihead_attention", kind="linear", types=(nn.MultiheadAttention,),
                    weights=("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight"),
                    biases=("in_proj_bias", "out_proj.bias"), fans=_mha_fans)
register_layer_kind("hf_conv1d", kind="linear", types=("transformers.pytorch_utils.Conv1D",
                                                      "transformers.modeling_utils.Conv1D"), in_axis=0, out_axis=1)
register_layer_kind("embedding", kind="embedding", types=(nn.Embedding, nn.EmbeddingBag), biases=(), in_axis=None,
                    out_axis=1, fans=torch_fans)


# --------------------------------------------------------------------------- names and tensors
def named_tensors(source: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Name → tensor for a module (its parameters) or a state dict (its tensors).

    A module's tied parameters appear under every name, as in its ``state_dict()``. A
    parametrized tensor (``torch.nn.utils.parametrize``, e.g. the ``reparam`` learners'
    ``W = T ⊙ f(V)``) appears under its own name (``0.weight``, not
    ``0.parametrizations.weight.original``) with the value the module computes, without
    gradient, so templates, selections and sign tracking see the weights the model uses.

    Example:
        >>> sorted(named_tensors(nn.Linear(2, 3)))
        ['bias', 'weight']
    """
    if isinstance(source, nn.Module):
        tensors = dict(source.named_parameters(remove_duplicate=False))
        if any(parametrize.is_parametrized(m) for m in source.modules()):
            tensors = _unparametrized(source, tensors)
        return tensors
    if isinstance(source, Mapping):
        out = {k: v for k, v in source.items() if isinstance(v, Tensor)}
        if not out:
            raise ValueError("the state dict holds no tensors; pass a model or a non-empty state dict")
        return out
    raise TypeError(f"expected an nn.Module or a state dict (Mapping[str, Tensor]), got {type(source).__name__}")


def _unparametrized(model: nn.Module, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """``tensors`` with each parametrization's originals replaced by the tensor it computes,
    in the original's place."""
    computed: dict[str, tuple[str, Tensor]] = {}  # original's name -> (own name, value)
    with torch.no_grad():
        for mod_name, mod in model.named_modules():
            if not parametrize.is_parametrized(mod):
                continue
            prefix = f"{mod_name}." if mod_name else ""
            for leaf in mod.parametrizations:
                computed[f"{prefix}parametrizations.{leaf}.original"] = (f"{prefix}{leaf}", getattr(mod, leaf))
    out: dict[str, Tensor] = {}
    for name, t in tensors.items():
        if name in computed:
            own, value = computed[name]
            out[own] = value
        elif ".parametrizations." not in f".{name}":
            out[name] = t
    return out


def _identity(t: Tensor) -> tuple[object, ...]:
    """Equal for two tensors exactly when they are the same values in the same memory (for a
    DTensor, this rank's block: it has no storage of its own)."""
    local = local_view(t)
    if local.layout != torch.strided or local.is_meta or local.numel() == 0:
        return ("object", id(t))  # no memory to share (or none we can compare)
    return (local.device, local.untyped_storage().data_ptr(), local.storage_offset(), tuple(local.shape),
            local.stride(), local.dtype)


def aliases(source: nn.Module | Mapping[str, Tensor]) -> dict[str, str]:
    """Tied weights: ``{alias: first name}`` for every name whose tensor an earlier name already has.

    Two names are tied when they are the same tensor in the same memory (one shared
    ``nn.Parameter``, or the views of it that ``state_dict()`` returns).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
        >>> net[1].weight = net[0].weight
        >>> aliases(net), aliases(net.state_dict())
        ({'1.weight': '0.weight'}, {'1.weight': '0.weight'})
    """
    first: dict[tuple[object, ...], str] = {}
    out: dict[str, str] = {}
    for name, t in named_tensors(source).items():
        key = _identity(t)
        if key in first:
            out[name] = first[key]
        else:
            first[key] = name
    return out


@dataclass(frozen=True)
class LayerInfo:
    """What the registry says about one parameter of a model.

    Attributes:
        entry: its registered :class:`LayerKind`.
        module: the name of the module it belongs to (``""`` for the root).
        param: its path inside that module (``"weight"``, ``"out_proj.weight"``).
        is_bias: whether it is one of the kind's biases rather than a weight.
        shape: its shape.
    """

    entry: LayerKind
    module: str
    param: str
    is_bias: bool
    shape: tuple[int, ...]

    @property
    def kind(self) -> str:
        return self.entry.kind

    @property
    def in_axis(self) -> int | None:
        return None if self.is_bias else self.entry.in_axis

    @property
    def fans(self) -> tuple[int, int]:
        """``(fan_in, fan_out)`` (a bias: its length twice)."""
        if self.is_bias:
            return math.prod(self.shape), math.prod(self.shape)
        return self.entry.fans_of(torch.empty(self.shape, device="meta"), self.param)

    @property
    def out_size(self) -> int | None:
        """The number of outputs of a weight (``None`` for a bias)."""
        return None if self.is_bias or not self.shape else self.shape[self.entry.out_axis]


def _entry_for(module: nn.Module, entries: Sequence[LayerKind]) -> LayerKind | None:
    best: list[tuple[int, LayerKind]] = []
    for entry in entries:
        d = entry.distance(module)
        if d is not None:
            best.append((d, entry))
    if not best:
        return None
    best.sort(key=lambda x: x[0])
    if len(best) > 1 and best[0][0] == best[1][0]:
        raise ValueError(f"a {type(module).__name__} matches the layer kinds {best[0][1].name!r} and "
                         f"{best[1][1].name!r} equally; unregister one (LAYER_KINDS.unregister) or narrow it with types= or predicate=")
    return best[0][1]


def layer_info(model: nn.Module) -> dict[str, LayerInfo]:
    """Parameter name → :class:`LayerInfo` for every weight and bias of a registered kind.

    Every name of a tied parameter is listed, each with its own module's kind; a parametrized
    weight under its own name (as :func:`named_tensors` lists it).

    Example:
        >>> info = layer_info(nn.Sequential(nn.ConvTranspose2d(4, 2, 3), nn.Embedding(10, 3)))
        >>> for name, i in info.items():
        ...     print(name, i.entry.name, i.is_bias, i.in_axis, i.fans)
        0.weight conv_transpose False 0 (36, 18)
        0.bias conv_transpose True None (2, 2)
        1.weight embedding False None (3, 10)
    """
    tensors = named_tensors(model)
    entries = [LAYER_KINDS.get(n) for n in LAYER_KINDS]
    by_type = not any(e.predicate for e in entries)  # then a module's class alone decides
    seen: dict[type, LayerKind | None] = {}
    out: dict[str, LayerInfo] = {}
    for mod_name, mod in model.named_modules(remove_duplicate=False):
        if by_type and type(mod) in seen:
            entry = seen[type(mod)]
        else:
            entry = seen[type(mod)] = _entry_for(mod, entries)
        if entry is None:
            continue
        prefix = f"{mod_name}." if mod_name else ""
        for params, is_bias in ((entry.weights, False), (entry.biases, True)):
            for param in params:
                name = prefix + param
                if name in tensors and name not in out:
                    out[name] = LayerInfo(entry, mod_name, param, is_bias, tuple(tensors[name].shape))
    return {n: out[n] for n in tensors if n in out}


def module_kinds(model: nn.Module) -> dict[str, Kind]:
    """Parameter name → kind (``"conv"``, ``"linear"``, ``"embedding"``…) for the weights and
    biases of registered layer kinds.

    Example:
        >>> module_kinds(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(2, 1)))
        {'0.weight': 'conv', '0.bias': 'conv', '1.weight': 'linear', '1.bias': 'linear'}
    """
    return {name: info.kind for name, info in layer_info(model).items()}


def input_axes(model: nn.Module) -> dict[str, int]:
    """Weight name → the axis of its input channels, for the weights whose kind has one.

    ``nn.Conv*d`` weights are ``(out, in/groups, *kernel)`` and ``nn.Linear`` weights
    ``(out, in)``: axis 1. ``nn.ConvTranspose*d`` weights are ``(in, out/groups, *kernel)``
    and Hugging Face ``Conv1D`` weights ``(in, out)``: axis 0. A shape alone can't tell these
    apart, so a state dict has no such table. ``nn.Bilinear`` (two inputs) and embeddings are
    left out.

    Example:
        >>> input_axes(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 2, 3), nn.Linear(2, 1)))
        {'0.weight': 1, '1.weight': 0, '2.weight': 1}
    """
    return {name: info.in_axis for name, info in layer_info(model).items() if info.in_axis is not None}


def layer_fans(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Weight name → ``(fan_in, fan_out)``, as its registered kind counts them.

    Example:
        >>> layer_fans(nn.Sequential(nn.Linear(4, 3), nn.MultiheadAttention(8, 2)))
        {'0.weight': (4, 3), '1.in_proj_weight': (8, 8), '1.out_proj.weight': (8, 8)}
    """
    return {name: info.fans for name, info in layer_info(model).items() if not info.is_bias}


def _is_weight_name(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return leaf == "weight" or leaf.endswith("_weight")


def _is_bias_name(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return leaf == "bias" or leaf.endswith("_bias")


def layer_kind(name: str, tensor: Tensor, kinds: Mapping[str, Kind] | None = None) -> Kind | None:
    """The kind of a parameter: from its module when known (``kinds``, see :func:`module_kinds`),
    else from its shape (a ``*weight`` of 2 dimensions is ``"linear"``, of 3–5 ``"conv"``).

    Example:
        >>> layer_kind("features.0.weight", torch.zeros(8, 3, 3, 3))
        'conv'
    """
    if kinds is not None:
        return kinds.get(name)
    if not name.endswith("weight"):
        return None
    if tensor.dim() == 2:
        return "linear"
    if 3 <= tensor.dim() <= 5:
        return "conv"
    return None


def _kind_selector(layers: str) -> Callable[[LayerKind], bool] | None:
    """Which registered kinds a string selector takes, or ``None`` when it is not a kind selector."""
    entries = [LAYER_KINDS.get(n) for n in LAYER_KINDS]
    if layers == "all":
        return lambda e: e.in_all
    if any(e.kind == layers for e in entries):
        return lambda e: e.kind == layers
    if layers in LAYER_KINDS:
        return lambda e: e.name == layers
    return None


def _select_kind(source: nn.Module | Mapping[str, Tensor], tensors: dict[str, Tensor], layers: str,
                 takes: Callable[[LayerKind], bool], bias: bool) -> list[str]:
    if isinstance(source, nn.Module):
        info = layer_info(source)
        return [n for n in tensors if n in info and takes(info[n].entry) and (bias or not info[n].is_bias)]
    # a state dict: the shape rule; a bias has the kind of the weight beside it
    names = []
    for name, t in tensors.items():
        if _is_weight_name(name):
            kind = layer_kind(name, t)
        elif bias and _is_bias_name(name):
            weight = tensors.get(name[: -len("bias")] + "weight")
            kind = layer_kind(name[: -len("bias")] + "weight", weight) if weight is not None else None
        else:
            continue
        if kind is not None and (layers == "all" or layers == kind):
            names.append(name)
    return names


def _why_none(source: nn.Module | Mapping[str, Tensor], tensors: dict[str, Tensor], by_kind: bool) -> str:
    """Why a string selector found nothing, and what to give instead (for :func:`select`'s error)."""
    if not tensors:
        return "the model has no parameters"
    known = ", ".join(sorted({"all", *(LAYER_KINDS.get(n).kind for n in LAYER_KINDS), *LAYER_KINDS.names()}))
    shown = f"{', '.join(list(tensors)[:6])}{', …' if len(tensors) > 6 else ''}"
    if not by_kind:
        return f"available names start with: {shown} (kind selectors: {known})"
    if isinstance(source, nn.Module):
        return (f"no module of the model is of that kind (names start with: {shown}); register your layer class with "
                f"pn.register_layer_kind, or select parameters by name: a glob (layers='*') or a list")
    reasons = [f"{name} ({'not named *weight' if not _is_weight_name(name) else f'{t.dim()} dimensions'})"
               for name, t in list(tensors.items())[:6]]
    return (f"a state dict has no module types, so a layer's kind comes from its name and shape: a tensor named "
            f"'weight' or '*_weight' of 2 dimensions is linear, of 3-5 a convolution, and none of these is of that kind: "
            f"{', '.join(reasons)}{', …' if len(tensors) > 6 else ''}; select by name instead (a glob such as "
            f"layers='*', or a list of names), or load the weights into their model and pass the model")


def select(source: nn.Module | Mapping[str, Tensor], layers: LayerSpec = "all", *, bias: bool = False) -> list[str]:
    """Names of the parameters that ``layers`` picks, in the source's own order.

    Args:
        source: a model or a state dict.
        layers: ``"all"``, a kind (``"conv"``, ``"linear"``, ``"embedding"``…), a registered
            kind's name (``"conv_transpose"``…; see :data:`LAYER_KINDS`), a glob on names, or a
            list of names. On a state dict, kinds come from shapes (see the module docstring).
        bias: with a kind selector, also take the biases of those layers.

    Returns:
        Parameter names, in the order the source lists them; a tied tensor once (see the
        module docstring), except in a list of names.

    Raises:
        ValueError: nothing matched, or a listed name is not in the source.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
        >>> select(net)
        ['0.weight', '3.weight']
        >>> select(net, "conv", bias=True)
        ['0.weight', '0.bias']
        >>> select(net, "3.*")
        ['3.weight', '3.bias']
        >>> select(nn.Sequential(nn.Embedding(10, 4), nn.MultiheadAttention(4, 2)), "multihead_attention")
        ['1.in_proj_weight', '1.out_proj.weight']
    """
    tensors = named_tensors(source)
    if isinstance(layers, str):
        takes = _kind_selector(layers)
        if takes is not None:
            names = _select_kind(source, tensors, layers, takes, bias)
        else:
            names = [n for n in tensors if fnmatch.fnmatchcase(n, layers)]
        if not names:
            raise ValueError(f"layers={layers!r} selects no parameter; {_why_none(source, tensors, takes is not None)}")
        tied = aliases(source)
        if tied:  # a tied tensor once, under its first selected name
            chosen: set[str] = set()
            kept = []
            for name in names:
                canonical = tied.get(name, name)
                if canonical not in chosen:
                    chosen.add(canonical)
                    kept.append(name)
            names = kept
        return names
    names = list(layers)
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ValueError(f"layers lists names the source does not have: {missing}; available: {list(tensors)}")
    if not names:
        raise ValueError("layers is an empty list; name at least one parameter or use 'all'")
    return names
