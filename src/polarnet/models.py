"""Model registry: ``@register_model("name")``, ``get_model(name, **kwargs)``, ``list_models()``.

A name may also be ``"package.module:function"``, imported on use, for a model of your own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

from .registry import Registry

__all__ = ["MODELS", "register_model", "get_model", "list_models", "mlp"]

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a model factory ``f(**kwargs) -> nn.Module``.

    Example:
        >>> @register_model("tiny_demo")
        ... def tiny(in_features=2, out_features=1):
        ...     return nn.Linear(in_features, out_features)
        >>> get_model("tiny_demo", in_features=3).in_features
        3
        >>> MODELS.unregister("tiny_demo")
    """
    return MODELS.register(name)


def get_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model, or one named ``"package.module:function"``.

    Raises:
        ValueError: unknown name, or a ``module:function`` that can't be imported.

    Example:
        >>> get_model("mlp", in_features=5, hidden=3)
        Sequential(
          (0): Linear(in_features=5, out_features=3, bias=True)
          (1): ReLU()
          (2): Linear(in_features=3, out_features=1, bias=True)
        )
    """
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"model {name!r}: cannot import {attr!r} from {module_name!r} ({e})") from None
        return factory(**kwargs)
    return MODELS.get(name)(**kwargs)


def list_models() -> list[str]:
    """Registered model names.

    Example:
        >>> "mlp" in list_models()
        True
    """
    return MODELS.names()


@register_model("mlp")
def mlp(in_features: int = 5, hidden: int = 64, out_features: int = 1) -> nn.Sequential:
    """One hidden ReLU layer: the XOR-5D network of Wang et al. (one logit out)."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))
