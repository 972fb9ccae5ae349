"""polarnet: train networks with fixed weight polarity and transfer knowledge through polarity.

The names below are imported on first use (PEP 562), so ``import polarnet`` itself is
instant: the ``polarnet`` command installs its signal handlers before torch loads, and
``polarnet.experiments`` / ``polarnet.analysis`` bring in pandas and matplotlib only when
used.

Example:
    >>> import torch, polarnet as pn
    >>> net = torch.nn.Sequential(torch.nn.Linear(5, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    >>> t = pn.PolarityTemplate.random(net, seed=0)
    >>> handle = pn.freeze(net, t, torch.optim.Adam(net.parameters()))
    >>> pn.violations(net, t)
    0
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name → (module, attribute in it)
_EXPORTS: dict[str, tuple[str, str]] = {
    "PolarityTemplate": ("template", "PolarityTemplate"),
    "TemplateFileError": ("fileformat", "TemplateFileError"),
    "select_layers": ("layers", "select"),
    "register_layer_kind": ("layers", "register_layer_kind"),
    "LAYER_KINDS": ("layers", "LAYER_KINDS"),
    "register_rule": ("builders", "register_rule"),
    "list_rules": ("builders", "list_rules"),
    "check_proportions": ("proportions", "check_proportions"),
    "save_proportions": ("proportions", "save_proportions"),
    "load_proportions": ("proportions", "load_proportions"),
    "init_magnitudes": ("init", "init_magnitudes"),
    "register_initializer": ("init", "register_initializer"),
    "INITIALIZERS": ("init", "INITIALIZERS"),
    "align": ("init", "align"),
    "freeze": ("freeze", "freeze"),
    "enforce": ("freeze", "enforce"),
    "violations": ("freeze", "violations"),
    "Enforcer": ("freeze", "Enforcer"),
    "FreezeHandle": ("freeze", "FreezeHandle"),
    "register_reset": ("freeze", "register_reset"),
    "RESETS": ("freeze", "RESETS"),
    "is_frozen": ("freeze", "is_frozen"),
    "LEARNERS": ("learners", "LEARNERS"),
    "register_learner": ("learners", "register_learner"),
    "Learner": ("learners", "Learner"),
    "transfer": ("transfer", "transfer"),
    "TransferReport": ("transfer", "TransferReport"),
    "head_layers": ("transfer", "head_layers"),
    "sign_snapshot": ("dynamics", "sign_snapshot"),
    "sign_change_fraction": ("dynamics", "sign_change_fraction"),
    "SignTracker": ("dynamics", "SignTracker"),
    "fluid_spin_swap": ("dynamics", "fluid_spin_swap"),
    "load_state_dict": ("sources", "load_state_dict"),
    "SourceError": ("sources", "SourceError"),
}
_SUBPACKAGES = ("experiments", "analysis")

__all__ = [*_EXPORTS, "__version__", *_SUBPACKAGES]

if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from . import analysis, experiments
    from .builders import list_rules, register_rule
    from .dynamics import SignTracker, fluid_spin_swap, sign_change_fraction, sign_snapshot
    from .fileformat import TemplateFileError
    from .freeze import RESETS, Enforcer, FreezeHandle, enforce, freeze, is_frozen, register_reset, violations
    from .learners import LEARNERS, Learner, register_learner
    from .init import INITIALIZERS, align, init_magnitudes, register_initializer
    from .layers import LAYER_KINDS, register_layer_kind
    from .layers import select as select_layers
    from .proportions import check_proportions, load_proportions, save_proportions
    from .sources import SourceError, load_state_dict
    from .template import PolarityTemplate
    from .transfer import TransferReport, head_layers, transfer


def __getattr__(name: str) -> Any:
    """Import a public name, or a submodule (``polarnet.builders``…), on first use."""
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
        globals()[name] = value  # later lookups skip this function
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps ``polarnet.freeze`` and ``polarnet.transfer`` the functions: importing a submodule
    binds it on its package, which would hide a public name it shares."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
