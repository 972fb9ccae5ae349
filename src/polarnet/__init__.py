"""polarnet: train networks with fixed weight polarity and transfer knowledge through polarity.

Example:
    >>> import torch, polarnet as pn
    >>> net = torch.nn.Sequential(torch.nn.Linear(5, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    >>> t = pn.PolarityTemplate.random(net, seed=0)
    >>> handle = pn.freeze(net, t, torch.optim.Adam(net.parameters()))
    >>> pn.violations(net, t)
    0
"""

from .builders import list_rules, register_rule
from .dynamics import SignTracker, fluid_spin_swap, sign_change_fraction, sign_snapshot
from .fileformat import TemplateFileError
from .freeze import RESETS, Enforcer, FreezeHandle, enforce, freeze, register_reset, violations
from .init import INITIALIZERS, align, init_magnitudes, register_initializer
from .layers import select as select_layers
from .proportions import check_proportions, load_proportions, save_proportions
from .sources import SourceError, load_state_dict
from .template import PolarityTemplate
from .transfer import TransferReport, transfer

__version__ = "0.1.0"

__all__ = [
    "PolarityTemplate",
    "TemplateFileError",
    "select_layers",
    "register_rule",
    "list_rules",
    "check_proportions",
    "save_proportions",
    "load_proportions",
    "init_magnitudes",
    "register_initializer",
    "INITIALIZERS",
    "align",
    "freeze",
    "enforce",
    "violations",
    "Enforcer",
    "FreezeHandle",
    "register_reset",
    "RESETS",
    "transfer",
    "TransferReport",
    "sign_snapshot",
    "sign_change_fraction",
    "SignTracker",
    "fluid_spin_swap",
    "load_state_dict",
    "SourceError",
    "__version__",
    "experiments",
    "analysis",
]

_SUBPACKAGES = ("experiments", "analysis")


def __getattr__(name: str):
    """``polarnet.experiments`` and ``polarnet.analysis`` after a plain ``import polarnet``,
    imported on first use (they bring in pandas and matplotlib, which the core doesn't need)."""
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
