"""The Lightning callback's logic, written against the trainer's attributes only, so that
``polarnet.integrations.lightning`` (``lightning.pytorch``) and
``polarnet.integrations.pytorch_lightning`` (``pytorch_lightning``) each join it to their own
``Callback`` class in a few lines."""

from __future__ import annotations

import warnings
from typing import Any

from ..freeze import FreezeHandle
from .core import FreezeOptions, TemplateSpec, attach, detached, reset_metrics


class PolarityFreezeLogic:
    """Keeps a LightningModule on a polarity template while Lightning trains it.

    * ``on_fit_start`` (the optimizers exist by then; on a resume their state is restored only
      after it): :func:`polarnet.freeze` on ``trainer.optimizers[optimizer]``, aligning the
      weights, or, when a checkpoint gave this callback its state, continuing that run.
    * ``on_train_batch_end``: every ``log_every_n_steps`` optimizer steps (by default the
      trainer's), ``polarnet/resets`` and ``polarnet/total_resets`` go to every logger of the
      trainer (reading them waits for the device).
    * ``state_dict`` / ``load_state_dict``: :meth:`polarnet.FreezeHandle.state_dict` in the
      Lightning checkpoint, under :attr:`state_key`.
    * ``on_fit_end`` / ``on_exception`` / ``teardown``: ``handle.remove()``; the model is plain
      again (a reparam learner's weights hold ``T ⊙ f(V)``). :attr:`handle` stays readable.

    Args:
        template: a :class:`~polarnet.PolarityTemplate` of the module to freeze, or a function
            ``module -> PolarityTemplate`` called at fit start (after ``configure_model``).
        reset, eps, learner, align, seed, clear_state, path: as :func:`polarnet.freeze`
            (``align`` only on a fresh start; a resume continues the saved run).
        optimizer: the index in ``trainer.optimizers`` of the optimizer to hook.
        module: the name of the submodule to freeze (``None``: the whole LightningModule), so a
            template built for the plain network fits (``"net"`` for ``self.net``).
        log_every_n_steps: how often to log the resets (``None``: the trainer's
            ``log_every_n_steps``; ``0``: never).
    """

    def __init__(self, template: TemplateSpec, reset: str | None = None, eps: float = 1e-3, *,
                 learner: str = "freeze_sgd", align: bool = True, seed: int | None = None,
                 clear_state: bool = False, path: str = "auto", optimizer: int = 0, module: str | None = None,
                 log_every_n_steps: int | None = None) -> None:
        if isinstance(optimizer, bool) or not isinstance(optimizer, int) or optimizer < 0:
            raise ValueError(f"optimizer is the index of the optimizer in trainer.optimizers, an int >= 0; "
                             f"got {optimizer!r}")
        if log_every_n_steps is not None and (isinstance(log_every_n_steps, bool)
                                              or not isinstance(log_every_n_steps, int) or log_every_n_steps < 0):
            raise ValueError(f"log_every_n_steps must be an int >= 0 (0: don't log) or None (the trainer's); "
                             f"got {log_every_n_steps!r}")
        self.options = FreezeOptions(template, reset, eps, learner, align, seed, clear_state, path, module)
        self.optimizer_index = optimizer
        self.log_every_n_steps = log_every_n_steps
        #: the :class:`polarnet.FreezeHandle` of the latest fit (inactive once it ended)
        self.handle: FreezeHandle | None = None
        self._pending: dict[str, Any] | None = None  # from a checkpoint, until the handle exists
        self._final: dict[str, Any] | None = None  # the state when the latest fit ended
        self._logged_step = -1

    @property
    def state_key(self) -> str:
        """``PolarityFreeze{'module': ..., 'optimizer': ...}``: what the callback freezes, not how
        (a resume with another learner then finds its state and says what differs)."""
        key: str = self._generate_state_key(  # type: ignore[attr-defined]  (Lightning's Callback has it)
            module=self.options.module, optimizer=self.optimizer_index)
        return key

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._remove()
        optimizers = trainer.optimizers
        if self.optimizer_index >= len(optimizers):
            raise ValueError(f"PolarityFreeze(optimizer={self.optimizer_index}): the module configured "
                             f"{len(optimizers)} optimizer(s)")
        state, self._pending = self._pending, None
        if state is None and trainer.ckpt_path is not None and not trainer.strategy.restore_checkpoint_after_setup:
            warnings.warn(f"resuming from {trainer.ckpt_path}, which holds no state of {self.state_key}: "
                          f"freezing afresh", stacklevel=2)
        self.handle = attach(pl_module, self.options, optimizers[self.optimizer_index], state)
        self._logged_step = trainer.global_step

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        every = trainer.log_every_n_steps if self.log_every_n_steps is None else self.log_every_n_steps
        step = trainer.global_step
        if not every or step % every or step == self._logged_step or not trainer.loggers:
            return
        if self.handle is None or not self.handle.active:
            return
        self._logged_step = step
        metrics = reset_metrics(self.handle)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def state_dict(self) -> dict[str, Any]:
        if self.handle is not None and self.handle.active:
            return self.handle.state_dict()
        return self._pending or self._final or {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.handle is not None and self.handle.active:  # strategies that restore after on_fit_start
            self.handle.load_state_dict(state_dict)
        else:
            self._pending = state_dict

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._remove()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._remove()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            self._remove()

    def _remove(self) -> None:
        if self.handle is not None and self.handle.active:
            self._final = detached(self.handle.state_dict())
            self.handle.remove()
