"""Which parameters a template covers: the ``layers=`` argument of every builder.

``layers`` is one of:

* ``"all"`` — every Conv and Linear weight (biases only with ``bias=True``);
* ``"conv"`` / ``"linear"`` — only those layer kinds;
* a glob on parameter names, e.g. ``"features.*.weight"`` (matched against every parameter);
* a list of parameter names, taken as given.

A plain ``state_dict`` carries no module types, so there a layer's kind is read from its
shape: a ``*weight`` of 3–5 dimensions is a convolution, of 2 dimensions a linear layer.

Tied weights (one tensor under two names, as ``model.state_dict()`` lists a parameter
shared by two modules) are known under every name (:func:`named_tensors`), and
:func:`aliases` says which names are the same tensor. The ``"all"``/``"conv"``/``"linear"``
and glob selectors take a tied tensor once, under its first selected name, so a model and
its state dict select the same layers; a list of names is taken as given.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Literal, Union

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = ["LayerSpec", "select", "named_tensors", "aliases", "layer_kind", "module_kinds", "input_axes"]

LayerSpec = Union[Literal["all", "conv", "linear"], str, Sequence[str]]
Kind = Literal["conv", "linear"]

_CONV_TYPES = (nn.modules.conv._ConvNd,)
_LINEAR_TYPES = (nn.Linear, nn.Bilinear)
_TRANSPOSED_TYPES = (nn.modules.conv._ConvTransposeNd,)


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
    """Equal for two tensors exactly when they are the same values in the same memory."""
    if t.layout != torch.strided or t.is_meta or t.numel() == 0:
        return ("object", id(t))  # no memory to share (or none we can compare)
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


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


def module_kinds(model: nn.Module) -> dict[str, Kind]:
    """Parameter name → ``"conv"``/``"linear"`` for the parameters of Conv and Linear modules.

    Example:
        >>> module_kinds(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(2, 1)))
        {'0.weight': 'conv', '0.bias': 'conv', '1.weight': 'linear', '1.bias': 'linear'}
    """
    kinds: dict[str, Kind] = {}
    for mod_name, mod in model.named_modules():
        kind: Kind | None = "conv" if isinstance(mod, _CONV_TYPES) else "linear" if isinstance(mod, _LINEAR_TYPES) else None
        if kind is None:
            continue
        own = [p_name for p_name, _ in mod.named_parameters(recurse=False)]
        if parametrize.is_parametrized(mod):
            own += list(mod.parametrizations)
        for p_name in own:
            kinds[f"{mod_name}.{p_name}" if mod_name else p_name] = kind
    return kinds


def input_axes(model: nn.Module) -> dict[str, int]:
    """Weight name → the axis of its input channels, for Conv, ConvTranspose and Linear modules.

    ``nn.Conv*d`` weights are ``(out, in/groups, *kernel)`` and ``nn.Linear`` weights
    ``(out, in)``: axis 1. ``nn.ConvTranspose*d`` weights are ``(in, out/groups, *kernel)``:
    axis 0. A shape alone can't tell the two convolutions apart, so a state dict has no
    such table. ``nn.Bilinear`` (two inputs) and other modules are left out.

    Example:
        >>> input_axes(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 2, 3), nn.Linear(2, 1)))
        {'0.weight': 1, '1.weight': 0, '2.weight': 1}
    """
    axes: dict[str, int] = {}
    for mod_name, mod in model.named_modules():
        if isinstance(mod, (*_CONV_TYPES, nn.Linear)) and isinstance(getattr(mod, "weight", None), Tensor):
            axes[f"{mod_name}.weight" if mod_name else "weight"] = 0 if isinstance(mod, _TRANSPOSED_TYPES) else 1
    return axes


def layer_kind(name: str, tensor: Tensor, kinds: Mapping[str, Kind] | None = None) -> Kind | None:
    """The kind of a parameter: from its module when known, else from its shape.

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


def select(source: nn.Module | Mapping[str, Tensor], layers: LayerSpec = "all", *, bias: bool = False) -> list[str]:
    """Names of the parameters that ``layers`` picks, in the source's own order.

    Args:
        source: a model or a state dict.
        layers: ``"all"``, ``"conv"``, ``"linear"``, a glob on names, or a list of names.
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
    """
    tensors = named_tensors(source)
    if isinstance(layers, str):
        if layers in ("all", "conv", "linear"):
            kinds = module_kinds(source) if isinstance(source, nn.Module) else None
            names = []
            for name, t in tensors.items():
                leaf = name.rsplit(".", 1)[-1]
                if leaf == "bias" and not bias or leaf not in ("weight", "bias"):
                    continue
                if kinds is None and leaf == "bias":
                    # a state dict: a bias has the kind of the weight beside it
                    weight_name = name[: -len("bias")] + "weight"
                    weight = tensors.get(weight_name)
                    kind = layer_kind(weight_name, weight) if weight is not None else None
                else:
                    kind = layer_kind(name, t, kinds)
                if kind is not None and layers in ("all", kind):
                    names.append(name)
        else:
            names = [n for n in tensors if fnmatch.fnmatchcase(n, layers)]
        if not names:
            raise ValueError(
                f"layers={layers!r} selects no parameter; available names start with: "
                f"{', '.join(list(tensors)[:6])}{', …' if len(tensors) > 6 else ''}"
            )
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
