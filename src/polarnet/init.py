"""Magnitude initialisation and sign alignment.

The papers control magnitudes across conditions: draw Glorot weights once, then either
keep their signs (RAND) or flip them to a template (IN, SPIN), leaving ``|w|`` unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .layers import LayerSpec, layer_kind, module_kinds, named_tensors, select
from .registry import Registry
from .template import PolarityTemplate

__all__ = ["INITIALIZERS", "register_initializer", "init_magnitudes", "align"]

Initializer = Callable[[Tensor, torch.Generator], Tensor]
INITIALIZERS: Registry[Initializer] = Registry("initializer")


def register_initializer(name: str) -> Callable[[Initializer], Initializer]:
    """Register ``init(cpu_tensor, generator) -> tensor`` filled in place.

    Example:
        >>> @register_initializer("ones_demo")
        ... def ones(t, g):
        ...     return t.fill_(1.0)
        >>> INITIALIZERS.unregister("ones_demo")
    """
    return INITIALIZERS.register(name)


def _fans(t: Tensor) -> tuple[int, int]:
    if t.dim() < 2:  # Keras treats a vector as fan_in = fan_out = its length
        return t.numel(), t.numel()
    return nn.init._calculate_fan_in_and_fan_out(t)


@register_initializer("glorot_normal")
def glorot_normal(t: Tensor, g: torch.Generator) -> Tensor:
    """Keras' GlorotNormal, as in the papers' code: normal truncated at ±2σ, rescaled so
    the standard deviation is sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(t)
    std = math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978
    return nn.init.trunc_normal_(t, 0.0, std, -2 * std, 2 * std, generator=g)


@register_initializer("glorot_uniform")
def glorot_uniform(t: Tensor, g: torch.Generator) -> Tensor:
    """Glorot (Xavier) uniform: U(−a, a), a = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(t)
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


def init_magnitudes(model: nn.Module, seed: int = 0, *, conv: str = "glorot_normal", linear: str = "glorot_uniform",
                    layers: LayerSpec = "all", bias: str | None = None) -> nn.Module:
    """Re-draw the weights of Conv and Linear layers, reproducibly on any device.

    Draws happen on the CPU from one generator seeded with ``seed``, in parameter order,
    then are copied to each parameter's device, so CPU and CUDA get the same numbers.

    Args:
        model: changed in place.
        seed: the magnitude draw; share it across conditions of a trial.
        conv: initializer name for convolution weights (see ``INITIALIZERS.names()``).
        linear: initializer name for linear weights.
        layers: which weights to re-draw (see :func:`polarnet.layers.select`).
        bias: initializer for the biases of those layers; ``None`` leaves them as they are.

    Returns:
        ``model``.

    Example:
        >>> net = init_magnitudes(nn.Linear(300, 100), seed=0)
        >>> round(net.weight.std().item(), 3)  # sqrt(2 / 400)
        0.071
    """
    by_kind = {"conv": INITIALIZERS.get(conv), "linear": INITIALIZERS.get(linear)}
    bias_init = INITIALIZERS.get(bias) if bias is not None else None
    params = named_tensors(model)  # every name of a tied weight, so a list may name either
    names = select(model, layers, bias=bias is not None)
    from_modules = module_kinds(model)
    kinds = {n: from_modules.get(n) or layer_kind(n, params[n]) for n in names}
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.no_grad():
        for name in names:
            p = params[name]
            fill = bias_init if name.endswith("bias") else by_kind.get(kinds[name] or "")
            if fill is None:
                continue
            fresh = fill(torch.empty(p.shape, dtype=torch.float32), g)
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
            p.abs_().mul_(template._signs[name].to(device=p.device, dtype=p.dtype))  # no copy: read only
    return model
