"""Freeze a model's weight polarity while a Hugging Face ``transformers.Trainer`` trains it.

Example:
    >>> from transformers import TrainerCallback
    >>> from polarnet.integrations.hf import PolarityFreezeCallback
    >>> import polarnet as pn
    >>> callback = PolarityFreezeCallback(lambda model: pn.PolarityTemplate.random(model, seed=0), seed=0)
    >>> isinstance(callback, TrainerCallback), callback.handle is None
    (True, True)

(``Trainer(..., callbacks=[callback])``; see ``docs/integrations.md``.)
"""

from __future__ import annotations

import os
from typing import Any

try:
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
except ImportError as e:  # pragma: no cover - exercised by a test that hides transformers
    raise ImportError('polarnet.integrations.hf needs transformers and accelerate: pip install "polarnet[hf]"') from e

import torch

from ..freeze import FreezeHandle
from .core import FreezeOptions, TemplateSpec, attach, reset_metrics

__all__ = ["PolarityFreezeCallback", "STATE_FILE"]

#: the file, in each checkpoint folder, that holds :meth:`polarnet.FreezeHandle.state_dict`
STATE_FILE = "polarnet_freeze.pt"


class PolarityFreezeCallback(TrainerCallback):
    """Keeps a model on a polarity template while ``transformers.Trainer`` trains it.

    * ``on_train_begin``, the first event that sees the optimizer (the Trainer builds it, and on
      a resume restores the model's and the optimizer's state, before any event): freezes the
      model with :func:`polarnet.freeze` on the Trainer's optimizer (the ``torch.optim``
      optimizer inside accelerate's wrapper), aligning the weights; or, when the Trainer
      resumed from a checkpoint, continues the run saved in it (:data:`STATE_FILE`).
    * ``on_log``: adds ``polarnet/resets`` (at the latest step) and ``polarnet/total_resets`` to
      every training log (``logging_steps``), so ``state.log_history``, the printed logs and the
      integrations after this callback in the Trainer's list see them.
    * ``on_save``: writes :meth:`polarnet.FreezeHandle.state_dict` into the checkpoint folder
      (``output_dir/checkpoint-<step>/polarnet_freeze.pt``).
    * ``on_train_end``: ``handle.remove()``; the model is plain again (a reparam learner's
      weights hold ``T ⊙ f(V)``). :attr:`handle` stays readable.

    A resume (``trainer.train(resume_from_checkpoint=...)``) is recognised by the Trainer's
    restored step count; the freeze state is read from ``output_dir/checkpoint-<step>``, or from
    ``resume_from`` for a checkpoint kept elsewhere. A resume whose checkpoint has no freeze
    state raises (it would silently re-align the weights and restart the reset counter).

    Args:
        template: a :class:`~polarnet.PolarityTemplate` of the model (or of ``module``), or a
            function ``model -> PolarityTemplate`` called when training begins.
        reset, eps, learner, align, seed, clear_state, path: as :func:`polarnet.freeze`
            (``align`` only on a fresh start; ``seed=None`` takes ``torch.initial_seed()``,
            which the Trainer sets from ``args.seed``).
        module: the name of the submodule to freeze (``None``: the whole model).
        resume_from: the checkpoint folder to read the freeze state from on a resume, when it
            isn't ``output_dir/checkpoint-<step>``.
    """

    def __init__(self, template: TemplateSpec, reset: str | None = None, eps: float = 1e-3, *,
                 learner: str = "freeze_sgd", align: bool = True, seed: int | None = None,
                 clear_state: bool = False, path: str = "auto", module: str | None = None,
                 resume_from: str | os.PathLike[str] | None = None) -> None:
        self.options = FreezeOptions(template, reset, eps, learner, align, seed, clear_state, path, module)
        self.resume_from = resume_from
        #: the :class:`polarnet.FreezeHandle` of the latest ``train()`` (inactive once it ended)
        self.handle: FreezeHandle | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       **kwargs: Any) -> None:
        self._remove()
        if model is None or optimizer is None:
            raise RuntimeError("PolarityFreezeCallback needs the Trainer's model and optimizer at on_train_begin")
        saved = None
        if state.global_step > 0:  # the Trainer restored its state from a checkpoint
            folder = self.resume_from or os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            file = os.path.join(folder, STATE_FILE)
            if not os.path.isfile(file):
                raise FileNotFoundError(
                    f"resuming at step {state.global_step}, but {file} doesn't exist: pass "
                    f"PolarityFreezeCallback(..., resume_from=<the checkpoint folder>) when it lies outside "
                    f"output_dir; to start freezing from an unfrozen run's checkpoint, load its weights into the "
                    f"model and train without resume_from_checkpoint")
            saved = torch.load(file, map_location="cpu", weights_only=True)
        self.handle = attach(model, self.options, optimizer, saved)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
               **kwargs: Any) -> None:
        if self.handle is None or not self.handle.active or logs is None or "loss" not in logs:
            return
        metrics = reset_metrics(self.handle)
        logs.update(metrics)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(metrics)  # the Trainer appended a copy of logs before this event

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.handle is None or not self.handle.active or not args.should_save:
            return
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"the Trainer saved a checkpoint, but not in {folder} (a hyperparameter search "
                                    f"run?): polarnet can't save its freeze state beside it")
        torch.save(self.handle.state_dict(), os.path.join(folder, STATE_FILE))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._remove()

    def _remove(self) -> None:
        if self.handle is not None and self.handle.active:
            self.handle.remove()
