"""Trainer integrations: thin adapters that put :func:`polarnet.freeze` into a trainer's loop.

* :class:`polarnet.integrations.lightning.PolarityFreeze`: a Lightning callback
  (``pip install "polarnet[lightning]"``); ``polarnet.integrations.pytorch_lightning`` has the
  same class for the ``pytorch_lightning`` namespace.
* :class:`polarnet.integrations.hf.PolarityFreezeCallback`: a Hugging Face ``transformers``
  ``TrainerCallback`` (``pip install "polarnet[hf]"``).

Each adapter only decides *when*: it freezes once the trainer has built its optimizer, logs
the resets through the trainer's own logging, saves :meth:`polarnet.FreezeHandle.state_dict`
in the trainer's checkpoints and continues from it on resume, and removes the hook when
training ends. *What* happens is :func:`polarnet.freeze` (the functional core), shared through
:mod:`polarnet.integrations.core`. Importing this package imports neither Lightning nor
``transformers``: each submodule imports its own library.
"""

__all__: list[str] = []
