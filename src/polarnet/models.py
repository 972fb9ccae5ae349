"""Model registry: ``@register_model("name")``, ``get_model(name, **kwargs)``, ``list_models()``.

A name may also be ``"package.module:function"``, imported on use, for a model of your own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import nn

from .registry import Registry

__all__ = ["MODELS", "NotAModel", "register_model", "get_model", "resolve_model", "list_models", "HEADS", "mlp", "alexnet", "zfnet",
           "lenet"]

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


def resolve_model(name: str) -> ModelFactory:
    """The factory behind a model name: a registered one, or ``"package.module:function"``
    imported now (``function`` may be dotted: ``"pkg.mod:Class.build"``). Builds nothing.

    Raises:
        ValueError: unknown name; a module that can't be imported (whatever it raises while
            importing); or an attribute that is missing or not callable.

    Example:
        >>> resolve_model("polarnet.models:mlp") is resolve_model("mlp")
        True
        >>> resolve_model("no_such_pkg.mod:fn")
        Traceback (most recent call last):
        ...
        ValueError: model 'no_such_pkg.mod:fn': cannot import 'fn' from 'no_such_pkg.mod' (ModuleNotFoundError: No module named 'no_such_pkg')
    """
    return MODELS.resolve(name)


class NotAModel(ValueError):
    """A model factory that ran but gave no model: it returned something other than an
    ``nn.Module``, or ended the process (``sys.exit``). Its arguments are not the problem, the
    factory is, so callers report it as it is (one line naming the model)."""


def get_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model, or one named ``"package.module:function"`` (see :func:`resolve_model`).

    Raises:
        ValueError: unknown name, or a ``module:function`` that can't be imported.
        NotAModel: the factory returned something other than an ``nn.Module`` (``None``, a
            string, …) or called ``sys.exit`` (a ``ValueError`` too, so a worker fails the run
            with the reason instead of ending).

    Example:
        >>> get_model("mlp", in_features=5, hidden=3)
        Sequential(
          (0): Linear(in_features=5, out_features=3, bias=True)
          (1): ReLU()
          (2): Linear(in_features=3, out_features=1, bias=True)
        )
        >>> get_model("builtins:str")
        Traceback (most recent call last):
        ...
        polarnet.models.NotAModel: model 'builtins:str' returned str, not an nn.Module; make the function return the model it builds
    """
    factory = resolve_model(name)
    try:
        model = factory(**kwargs)
    except SystemExit as e:  # a factory that ends the process would end a study (or a worker) without a word
        raise NotAModel(f"model {name!r} called sys.exit({e.code!r}) instead of returning an nn.Module; make the "
                        f"function raise an exception (or return the model)") from None
    if not isinstance(model, nn.Module):
        raise NotAModel(f"model {name!r} returned {type(model).__name__}, not an nn.Module; make the function return "
                        f"the model it builds")
    return model


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


#: What an ImageNet-style model does with its 1000-way ImageNet layer (``head``): ``"replace"``
#: makes the last layer ``num_classes``-way; ``"extend"`` keeps the 1000-way layer (so ImageNet's
#: fc8 and its signs fit it), adds a ReLU and a new ``Linear(1000, num_classes)`` on top, as
#: Wang et al.'s reference code does.
HEADS = ("replace", "extend")
_IMAGENET_CLASSES = 1000


def _check_head(head: str) -> None:
    if head not in HEADS:
        raise ValueError(f"head={head!r}: choose 'replace' (the last layer is num_classes-way) or 'extend' (keep the "
                         f"1000-way ImageNet layer, add a ReLU and a new num_classes-way layer on top)")


def _head(num_classes: int, head: str) -> tuple[int, list[nn.Module]]:
    """The last linear layer's width and the layers after it, for ``head`` (see :data:`HEADS`)."""
    if head == "extend":
        return _IMAGENET_CLASSES, [nn.ReLU(inplace=True), nn.Linear(_IMAGENET_CLASSES, num_classes)]
    return num_classes, []


@register_model("alexnet")
def alexnet(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5, head: str = "replace") -> nn.Module:
    """torchvision's AlexNet (so torchvision's ImageNet weights and their signs fit its layers
    by name). Its adaptive pooling accepts inputs from 63×63 up.

    torchvision's AlexNet is not quite the Caffe AlexNet of Wang et al.'s reference code: its
    first convolution has 64 filters (Caffe's 96), and its layers are not grouped.

    Args:
        num_classes: the classes of the task.
        in_channels: 3 (RGB) or another count; the first convolution takes that many.
        dropout: before the first two linear layers.
        head: ``"replace"``: the last layer, ``classifier.6``, is ``num_classes``-way.
            ``"extend"``: ``classifier.6`` stays ``Linear(4096, 1000)`` (ImageNet's fc8, whose
            weights and signs a source gives it), followed by ``classifier.7``, a ReLU, and
            ``classifier.8``, a new ``Linear(1000, num_classes)``: the reference code's layout.

    Raises:
        ValueError: ``head`` is neither ``"replace"`` nor ``"extend"``.

    Example:
        >>> import torch
        >>> get_model("alexnet")(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 10])
        >>> net = get_model("alexnet", head="extend")
        >>> net.classifier[6], net.classifier[8]
        (Linear(in_features=4096, out_features=1000, bias=True), Linear(in_features=1000, out_features=10, bias=True))
    """
    from torchvision.models import alexnet as tv_alexnet

    _check_head(head)
    width, extra = _head(num_classes, head)
    model = tv_alexnet(weights=None, num_classes=width, dropout=dropout)
    if in_channels != 3:
        model.features[0] = nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2)
    for layer in extra:
        model.classifier.append(layer)
    return model


@register_model("zfnet")
def zfnet(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5, head: str = "replace") -> nn.Module:
    """ZFNet (Zeiler & Fergus, 2014): AlexNet's plan with a 7×7/2 first layer and a 5×5/2 second
    one, 96-256-384-384-256 filters, local response normalisation after the first two layers.
    Laid out like torchvision's AlexNet (``features``, ``avgpool``, ``classifier``; fc6 and fc7
    of AlexNet's shapes). Its five convolutions take AlexNet's SPIN proportions in order
    (:func:`polarnet.experiments.conditions.proportion_pairs`), not by name: the normalisation
    layers shift its ``features.N``. Inputs from 64×64 up.

    Args:
        num_classes, in_channels, dropout: as for :func:`alexnet`.
        head: as for :func:`alexnet`: ``"replace"`` (``classifier.6`` is ``num_classes``-way) or
            ``"extend"`` (``classifier.6`` is 1000-way, then a ReLU and ``classifier.8``,
            ``Linear(1000, num_classes)``).

    Raises:
        ValueError: ``head`` is neither ``"replace"`` nor ``"extend"``.

    Example:
        >>> import torch
        >>> get_model("zfnet")(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 10])
        >>> get_model("zfnet", head="extend").classifier[8]
        Linear(in_features=1000, out_features=10, bias=True)
    """
    _check_head(head)
    width, extra = _head(num_classes, head)
    features = nn.Sequential(
        nn.Conv2d(in_channels, 96, kernel_size=7, stride=2, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1), nn.LocalResponseNorm(5),
        nn.Conv2d(96, 256, kernel_size=5, stride=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1), nn.LocalResponseNorm(5),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )
    classifier = nn.Sequential(
        nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
        nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        nn.Linear(4096, width), *extra,
    )
    return nn.Sequential(OrderedDict(features=features, avgpool=nn.AdaptiveAvgPool2d((6, 6)), flatten=nn.Flatten(),
                                     classifier=classifier))


@register_model("lenet")
def lenet(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """LeNet-5-style CNN for 28×28 inputs: small enough for quick studies and tests on a CPU.

    Example:
        >>> import torch
        >>> get_model("lenet")(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)),
        flatten=nn.Flatten(),
        classifier=nn.Sequential(nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                                 nn.Linear(84, num_classes)),
    ))
