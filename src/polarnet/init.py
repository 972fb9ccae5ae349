"""Magnitude initialisation and sign alignment.

The papers control magnitudes across conditions: draw Glorot weights once, then either
keep their signs (RAND) or flip them to a template (IN, SPIN), leaving ``|w|`` unchanged.

An initializer's fans are those the layer's registered kind gives
(:func:`polarnet.layers.layer_fans`): a ConvTranspose, a Hugging Face ``Conv1D`` (stored
``(in, out)``) and the packed ``in_proj_weight`` of ``nn.MultiheadAttention`` (three
``(E, E)`` projections) get their own, where ``torch.nn.init`` would read the weight as an
``(out, in, *kernel)`` one.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from .distributed import local_signs, local_view
from .layers import LAYER_KINDS, LayerSpec, layer_info, layer_kind, named_tensors, select
from .registry import Registry
from .template import PolarityTemplate

__all__ = ["INITIALIZERS", "register_initializer", "init_magnitudes", "align"]

Initializer = Callable[..., Tensor]
"""``init(cpu_tensor, generator) -> tensor``, or ``init(cpu_tensor, generator, fans=(fan_in, fan_out))``."""
INITIALIZERS: Registry[Initializer] = Registry("initializer")


def register_initializer(name: str) -> Callable[[Initializer], Initializer]:
    """Register ``init(cpu_tensor, generator) -> tensor`` filled in place.

    An initializer with a ``fans`` parameter is given the layer's ``(fan_in, fan_out)`` as its
    registered kind counts them (see :func:`polarnet.layers.layer_fans`); without one it sees
    only the tensor.

    Example:
        >>> @register_initializer("ones_demo")
        ... def ones(t, g):
        ...     return t.fill_(1.0)
        >>> INITIALIZERS.unregister("ones_demo")
    """
    return INITIALIZERS.register(name)


def _fans(t: Tensor, fans: tuple[int, int] | None = None) -> tuple[int, int]:
    if fans is not None:
        return fans
    if t.dim() < 2:  # Keras treats a vector as fan_in = fan_out = its length
        return t.numel(), t.numel()
    return nn.init._calculate_fan_in_and_fan_out(t)


@register_initializer("glorot_normal")
def glorot_normal(t: Tensor, g: torch.Generator, fans: tuple[int, int] | None = None) -> Tensor:
    """Keras' GlorotNormal, as in the papers' code: normal truncated at ±2σ, rescaled so
    the standard deviation is sqrt(2 / (fan_in + fan_out)); ``fans`` default to torch's count."""
    fan_in, fan_out = _fans(t, fans)
    std = math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978
    return nn.init.trunc_normal_(t, 0.0, std, -2 * std, 2 * std, generator=g)


@register_initializer("glorot_uniform")
def glorot_uniform(t: Tensor, g: torch.Generator, fans: tuple[int, int] | None = None) -> Tensor:
    """Glorot (Xavier) uniform: U(−a, a), a = sqrt(6 / (fan_in + fan_out)); ``fans`` default to
    torch's count."""
    fan_in, fan_out = _fans(t, fans)
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return nn.init.uniform_(t, -a, a, generator=g)


@register_initializer("xor_truncated_normal")
def xor_truncated_normal(t: Tensor, g: torch.Generator) -> Tensor:
    """TruncatedNormal(0, 0.25) cut at ±2σ: the XOR-5D kernels of the reference code."""
    return nn.init.trunc_normal_(t, 0.0, 0.25, -0.5, 0.5, generator=g)


@register_initializer("zeros")
def zeros(t: Tensor, g: torch.Generator) -> Tensor:
    """All zeros (Keras' default for biases)."""
    return t.zero_()


def _takes_fans(fill: Initializer) -> bool:
    try:
        return "fans" in inspect.signature(fill).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


def init_magnitudes(model: nn.Module, seed: int = 0, *, conv: str = "glorot_normal", linear: str = "glorot_uniform",
                    embedding: str = "glorot_uniform", kinds: Mapping[str, str] | None = None,
                    layers: LayerSpec = "all", bias: str | None = None) -> nn.Module:
    """Re-draw the weights of the selected layers, reproducibly on any device.

    Draws happen on the CPU from one generator seeded with ``seed``, in parameter order,
    then are copied to each parameter's device, so CPU and CUDA get the same numbers. Each
    initializer is given the weight's fans as its registered layer kind counts them (see
    :func:`polarnet.layers.layer_fans`).

    Args:
        model: changed in place.
        seed: the magnitude draw; share it across conditions of a trial.
        conv: initializer name for convolution weights (see ``INITIALIZERS.names()``).
        linear: initializer name for linear weights (``nn.Linear``, attention projections,
            Hugging Face ``Conv1D``…).
        embedding: initializer name for embedding weights.
        kinds: initializers for other kinds, or for one registered kind (by its name, e.g.
            ``{"conv_transpose": "glorot_uniform"}``), taking precedence over the three above.
        layers: which weights to re-draw (see :func:`polarnet.layers.select`); a selected
            parameter of no known kind (a BatchNorm weight picked by a glob) is left as it is.
        bias: initializer for the biases of those layers; ``None`` leaves them as they are.

    Returns:
        ``model``.

    Raises:
        ValueError: an unknown initializer name, a ``kinds`` key that is no kind, or a
            selected layer whose kind has no initializer; nothing is changed then.

    Example:
        >>> net = init_magnitudes(nn.Linear(300, 100), seed=0)
        >>> round(net.weight.std().item(), 3)  # sqrt(2 / 400)
        0.071
    """
    by_kind = {"conv": INITIALIZERS.get(conv), "linear": INITIALIZERS.get(linear),
               "embedding": INITIALIZERS.get(embedding)}
    known = {LAYER_KINDS.get(n).kind for n in LAYER_KINDS} | set(LAYER_KINDS.names())
    for key, init_name in (kinds or {}).items():
        if key not in known:
            raise ValueError(f"kinds names {key!r}, which is neither a layer kind nor a registered kind's name; "
                             f"choose among: {', '.join(sorted(known))}")
        by_kind[key] = INITIALIZERS.get(init_name)
    bias_init = INITIALIZERS.get(bias) if bias is not None else None
    params = named_tensors(model)  # every name of a tied weight, so a list may name either
    names = select(model, layers, bias=bias is not None)
    info = layer_info(model)
    plan: list[tuple[str, Initializer, tuple[int, int] | None]] = []
    for name in names:
        entry = info[name].entry if name in info else None
        if name.endswith("bias") and (entry is None or info[name].is_bias):
            if bias_init is not None:
                plan.append((name, bias_init, None))
            continue
        kind = entry.kind if entry is not None else layer_kind(name, params[name])
        if kind is None:
            continue
        fill = (by_kind.get(entry.name) if entry is not None else None) or by_kind.get(kind)
        if fill is None:
            raise ValueError(f"layer {name!r} is of kind {kind!r}, which has no initializer; pass "
                             f"kinds={{{kind!r}: 'glorot_uniform'}} (or another of {', '.join(INITIALIZERS.names())}) "
                             f"or leave it out with layers=")
        plan.append((name, fill, info[name].fans if name in info else None))
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.no_grad():
        for name, fill, fans in plan:
            p = params[name]
            fresh = torch.empty(p.shape, dtype=torch.float32)
            fresh = fill(fresh, g, fans=fans) if fans is not None and _takes_fans(fill) else fill(fresh, g)
            p.copy_(fresh)
    return model


def align(model: nn.Module, template: PolarityTemplate) -> nn.Module:
    """Flip weight signs to match ``template``, keeping magnitudes: ``w ← |w|·T``.

    Where ``T = 0`` the weight becomes exactly 0. The template is checked against the
    model before any weight changes; a tied weight is aligned once.

    Returns:
        ``model``.

    Example:
        >>> lin = nn.Linear(2, 1)
        >>> t = PolarityTemplate({"weight": torch.tensor([[1, -1]])})
        >>> before = lin.weight.abs().clone()
        >>> _ = align(lin, t)
        >>> bool(torch.equal(lin.weight.abs(), before)) and lin.weight[0, 1].item() <= 0
        True
    """
    params = template.check(model)
    with torch.no_grad():
        for name, p in params.items():
            # a DTensor (FSDP2) is aligned block by block, against its block of the template
            local_view(p).abs_().mul_(local_signs(template._signs[name], p).to(device=p.device, dtype=p.dtype))
    return model
