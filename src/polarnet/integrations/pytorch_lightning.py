"""Freeze a LightningModule's weight polarity while ``pytorch_lightning`` trains it: the callback of
:mod:`polarnet.integrations.lightning`, for the older namespace (Lightning installs both).

Example:
    >>> import pytorch_lightning as L
    >>> from polarnet.integrations.pytorch_lightning import PolarityFreeze
    >>> import polarnet as pn
    >>> callback = PolarityFreeze(lambda module: pn.PolarityTemplate.random(module, seed=0), seed=0)
    >>> isinstance(callback, L.Callback), callback.state_key
    (True, "PolarityFreeze{'module': None, 'optimizer': 0}")

(``trainer = L.Trainer(callbacks=[callback])``; see ``docs/integrations.md``.)
"""

from __future__ import annotations

try:
    import pytorch_lightning as L
except ImportError as e:  # pragma: no cover - exercised by a test that hides lightning
    raise ImportError("polarnet.integrations.pytorch_lightning needs pytorch_lightning: pip install pytorch-lightning "
                      '(or use polarnet.integrations.lightning: pip install "polarnet[lightning]")') from e

from ._lightning import PolarityFreezeLogic

__all__ = ["PolarityFreeze"]


class PolarityFreeze(PolarityFreezeLogic, L.Callback):
    __doc__ = PolarityFreezeLogic.__doc__
