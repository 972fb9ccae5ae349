"""polarnet.integrations.lightning: PolarityFreeze trains a LightningModule on its template, logs
the resets, and a run resumed from a Lightning checkpoint is the uninterrupted run, bit for bit."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

L = pytest.importorskip("lightning.pytorch")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import Logger  # noqa: E402

import polarnet as pn  # noqa: E402
from polarnet.integrations.lightning import PolarityFreeze  # noqa: E402

# 24 samples, batches of 8: 3 optimizer steps per epoch, always in the same order
_g = torch.Generator().manual_seed(0)
X, Y = torch.randn(24, 6, generator=_g), torch.randn(24, 1, generator=_g)


class Regressor(L.LightningModule):
    def __init__(self, lr: float = 0.2) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=8, shuffle=False)


class MemoryLogger(Logger):
    """Keeps what Lightning logs, in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def _model(seed: int = 0) -> Regressor:
    torch.manual_seed(seed)
    return Regressor()


def _trainer(tmp_path: Path, max_steps: int, callbacks: list, **kwargs) -> L.Trainer:
    kwargs.setdefault("logger", False)
    kwargs.setdefault("enable_checkpointing", False)
    return L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, callbacks=callbacks,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                     num_sanity_val_steps=0, log_every_n_steps=1, **kwargs)


def _fit(trainer: L.Trainer, model: Regressor, **kwargs) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers|LeafSpec"
                                                  "|callbacks used to create the checkpoint).*")
        trainer.fit(model, **kwargs)


def _template(module: nn.Module) -> pn.PolarityTemplate:
    return pn.PolarityTemplate.random(module, seed=0)


def test_trains_on_the_template_and_logs_the_resets(tmp_path) -> None:
    model, logger = _model(), MemoryLogger()
    callback = PolarityFreeze(_template, seed=0, log_every_n_steps=2)
    _fit(_trainer(tmp_path, 6, [callback], logger=logger), model)

    template = callback.handle.enforcer.template
    assert pn.violations(model, template) == 0
    assert callback.handle.steps == 6 and callback.handle.total_resets > 0  # lr 0.2: the template is tested
    assert not callback.handle.active and not pn.is_frozen(model)  # removed at fit end
    logged = [(step, row) for step, row in logger.rows if "polarnet/resets" in row]
    assert [step for step, _ in logged] == [2, 4, 6]
    assert logged[-1][1]["polarnet/total_resets"] == callback.handle.total_resets
    assert callback.state_dict()["steps"] == 6  # still there for a checkpoint saved after fit


@pytest.mark.parametrize("learner", ["freeze_sgd", "reparam-exp"])
def test_a_resumed_run_is_the_uninterrupted_run_bit_for_bit(tmp_path, learner) -> None:
    # Lightning itself resumes exactly only from a checkpoint taken after a step that ends an epoch
    # (every_n_train_steps; one taken at on_train_epoch_end replays a batch, one taken mid-epoch
    # restarts a plain DataLoader: both without polarnet too)
    saved = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_train_steps=3)
    whole = _model()
    callback = PolarityFreeze(_template, seed=0, learner=learner)
    _fit(_trainer(tmp_path, 6, [callback, saved], enable_checkpointing=True), whole)
    assert callback.handle.steps == 6
    if learner == "freeze_sgd":
        assert callback.handle.total_resets > 0
    checkpoint = tmp_path / "ckpt" / "epoch=0-step=3.ckpt"
    assert checkpoint.exists()

    resumed = _model(seed=1)  # other initial weights: everything must come from the checkpoint
    again = PolarityFreeze(_template, seed=123, learner=learner)  # the saved seed wins
    _fit(_trainer(tmp_path, 6, [again]), resumed, ckpt_path=checkpoint)

    assert again.handle.steps == 6 and again.handle.total_resets == callback.handle.total_resets
    assert again.handle.enforcer.template == callback.handle.enforcer.template
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert pn.violations(resumed, again.handle.enforcer.template) == 0


def test_a_reparam_learner_trains_through_lightning(tmp_path) -> None:
    model = _model()
    keys = list(model.state_dict())
    callback = PolarityFreeze(lambda net: pn.PolarityTemplate.random(net, seed=1), learner="reparam-softplus",
                              module="net", log_every_n_steps=0)
    trainer = _trainer(tmp_path, 4, [callback])
    _fit(trainer, model)
    assert callback.handle.steps == 4 and callback.handle.learner == "reparam-softplus"
    assert pn.violations(model.net, callback.handle.enforcer.template) == 0
    assert sorted(model.state_dict()) == sorted(keys)  # plain parameters again after fit
    assert "magnitudes" in callback.state_dict()
    trainer.save_checkpoint(tmp_path / "after.ckpt")  # a checkpoint taken after fit still carries the state
    state = torch.load(tmp_path / "after.ckpt", weights_only=True)["callbacks"][callback.state_key]
    assert state["steps"] == 4 and state["learner"] == "reparam-softplus"


def test_a_template_object_a_submodule_and_the_optimizer_index(tmp_path) -> None:
    model = _model()
    template = pn.PolarityTemplate.random(model.net, seed=0)  # built for the plain network
    callback = PolarityFreeze(template, module="net")
    _fit(_trainer(tmp_path, 2, [callback]), model)
    assert callback.handle.enforcer.template is template and pn.violations(model.net, template) == 0

    with pytest.raises(ValueError, match=r"optimizer=1.*configured 1 optimizer"):
        _fit(_trainer(tmp_path, 2, [PolarityFreeze(template, module="net", optimizer=1)]), _model())


def test_bad_options_fail_when_the_callback_is_built() -> None:
    with pytest.raises(ValueError, match="unknown learner 'nope'"):
        PolarityFreeze(_template, learner="nope")
    with pytest.raises(ValueError, match="unknown reset rule"):
        PolarityFreeze(_template, reset="nope")
    with pytest.raises(TypeError, match="PolarityTemplate or a function"):
        PolarityFreeze("0.weight")
    with pytest.raises(ValueError, match="index of the optimizer"):
        PolarityFreeze(_template, optimizer=-1)


def test_the_pytorch_lightning_namespace_has_the_same_callback() -> None:
    pl = pytest.importorskip("pytorch_lightning")
    from polarnet.integrations.pytorch_lightning import PolarityFreeze as Old

    callback = Old(_template)
    assert isinstance(callback, pl.Callback) and not isinstance(callback, L.Callback)
    assert callback.state_key == PolarityFreeze(_template).state_key


def _fake_trainer(optimizer, ckpt_path=None, restore_after_setup=False):
    from types import SimpleNamespace

    return SimpleNamespace(optimizers=[optimizer], ckpt_path=ckpt_path, global_step=0,
                           strategy=SimpleNamespace(restore_checkpoint_after_setup=restore_after_setup))


def test_a_resume_without_freeze_state_warns_and_freezes_afresh() -> None:
    model = _model()
    callback = PolarityFreeze(_template)
    trainer = _fake_trainer(torch.optim.SGD(model.parameters(), lr=0.1), ckpt_path="fluid.ckpt")
    with pytest.warns(UserWarning, match="fluid.ckpt, which holds no state of PolarityFreeze"):
        callback.on_fit_start(trainer, model)
    assert callback.handle.active and pn.violations(model, callback.handle.enforcer.template) == 0  # aligned
    callback.on_exception(trainer, model, RuntimeError("stop"))
    assert not pn.is_frozen(model)


def test_a_state_restored_after_fit_start_is_applied_at_once() -> None:
    """Strategies that restore checkpoints after setup (FSDP, DeepSpeed) call load_state_dict then."""
    model = _model()
    source = PolarityFreeze(lambda m: pn.PolarityTemplate.random(m, seed=5), seed=9)
    source.on_fit_start(_fake_trainer(torch.optim.SGD(model.parameters(), lr=0.1)), model)
    state = source.state_dict()
    source.teardown(None, model, "fit")

    callback = PolarityFreeze(_template, seed=0)
    callback.on_fit_start(_fake_trainer(torch.optim.SGD(model.parameters(), lr=0.1), "x.ckpt", True), model)
    callback.load_state_dict(state)
    assert callback.handle.enforcer.seed == 9
    assert callback.handle.enforcer.template == pn.PolarityTemplate.random(model, seed=5)
    callback.on_fit_end(None, model)
    assert not callback.handle.active and callback.state_dict()["seed"] == 9
