"""polarnet.integrations.hf: PolarityFreezeCallback trains a transformers model on its template, logs
the resets, and a run resumed from a Trainer checkpoint is the uninterrupted run, bit for bit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments  # noqa: E402

import polarnet as pn  # noqa: E402
from polarnet.integrations.hf import STATE_FILE, PolarityFreezeCallback  # noqa: E402

_g = torch.Generator().manual_seed(0)
IDS, LABELS = torch.randint(0, 32, (48, 8), generator=_g), torch.randint(0, 2, (48,), generator=_g)


class Tokens(torch.utils.data.Dataset):
    """48 sequences: 6 batches of 8 per epoch (the Trainer shuffles them with its seed)."""

    def __len__(self) -> int:
        return len(IDS)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": IDS[i], "labels": LABELS[i]}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    transformers.logging.set_verbosity_error()
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _model(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)  # dropout 0.1: the RNG is resumed too
    return BertForSequenceClassification(config)


def _train(model, out: Path, steps: int, callback, resume: str | None = None, **kwargs) -> Trainer:
    args = TrainingArguments(output_dir=str(out), use_cpu=True, report_to=[], max_steps=steps, save_steps=3,
                             per_device_train_batch_size=8, learning_rate=0.05, seed=0, disable_tqdm=True,
                             **kwargs)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=[callback] if callback else None)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def _template(model) -> pn.PolarityTemplate:
    return pn.PolarityTemplate.random(model, seed=0)


def test_trains_on_the_template_and_logs_the_resets(tmp_path) -> None:
    model = _model()
    callback = PolarityFreezeCallback(_template, seed=0)
    trainer = _train(model, tmp_path, 4, callback, logging_steps=2, save_strategy="no")

    template = callback.handle.enforcer.template
    assert pn.violations(model, template) == 0 and "bert.embeddings.word_embeddings.weight" in template
    assert callback.handle.steps == 4 and callback.handle.total_resets > 0
    assert not callback.handle.active and not pn.is_frozen(model)  # removed when training ended
    logged = [row for row in trainer.state.log_history if "polarnet/resets" in row]
    assert [row["step"] for row in logged] == [2, 4]
    assert logged[-1]["polarnet/total_resets"] == callback.handle.total_resets


def test_hf_resumes_exactly_without_polarnet(tmp_path) -> None:
    """The baseline: the Trainer's own resume (mid-epoch, shuffled, with dropout) is bit-exact."""
    whole = _model()
    _train(whole, tmp_path, 6, None)
    resumed = _model(seed=1)
    _train(resumed, tmp_path, 6, None, resume=str(tmp_path / "checkpoint-3"))
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("learner", ["freeze_sgd", "reparam-abs"])
def test_a_resumed_run_is_the_uninterrupted_run_bit_for_bit(tmp_path, learner) -> None:
    whole = _model()
    callback = PolarityFreezeCallback(_template, seed=0, learner=learner)
    _train(whole, tmp_path, 6, callback)
    assert (tmp_path / "checkpoint-3" / STATE_FILE).exists()
    if learner == "freeze_sgd":
        assert callback.handle.total_resets > 0

    resumed = _model(seed=1)  # other initial weights: everything must come from the checkpoint
    again = PolarityFreezeCallback(_template, seed=123, learner=learner)  # the saved seed wins
    _train(resumed, tmp_path, 6, again, resume=str(tmp_path / "checkpoint-3"))

    assert again.handle.steps == 6 and again.handle.total_resets == callback.handle.total_resets
    assert again.handle.enforcer.template == callback.handle.enforcer.template
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert pn.violations(resumed, again.handle.enforcer.template) == 0


def test_a_resume_finds_the_state_elsewhere_only_when_told(tmp_path) -> None:
    _train(_model(), tmp_path / "a", 3, PolarityFreezeCallback(_template, seed=0))
    moved = tmp_path / "kept"
    os.rename(tmp_path / "a" / "checkpoint-3", moved)
    with pytest.raises(FileNotFoundError, match="resume_from=<the checkpoint folder>"):
        _train(_model(), tmp_path / "b", 4, PolarityFreezeCallback(_template), resume=str(moved))
    callback = PolarityFreezeCallback(_template, resume_from=moved)
    _train(_model(), tmp_path / "b", 4, callback, resume=str(moved), save_strategy="no")
    assert callback.handle.steps == 4 and callback.handle.enforcer.seed == 0


def test_bad_options_fail_when_the_callback_is_built() -> None:
    with pytest.raises(ValueError, match="unknown learner 'nope'"):
        PolarityFreezeCallback(_template, learner="nope")
    with pytest.raises(TypeError, match="PolarityTemplate or a function"):
        PolarityFreezeCallback(None)
