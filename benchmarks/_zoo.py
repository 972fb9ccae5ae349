"""A realistic set of models, built without pretrained weights, for ``bench_zoo.py`` and
``tests/test_zoo.py``: each is a builder, a batch maker and a loss, small inputs so a CPU
takes a few steps in seconds.

A model whose library is missing (timm, transformers) is left out of :func:`available`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import Tensor, nn


@dataclass(frozen=True)
class ZooModel:
    """``build()`` → model; ``batch(n, generator)`` → model inputs and targets; ``loss(model,
    batch)`` → a scalar; ``needs`` names the library it takes (``None``: torchvision)."""

    name: str
    build: Callable[[], nn.Module]
    batch: Callable[[int, torch.Generator], tuple[object, Tensor]]
    loss: Callable[[nn.Module, tuple[object, Tensor]], Tensor]
    needs: str | None = None
    kinds: tuple[str, ...] = ()  # parameter-name endings a template of the model must cover


def _images(size: int) -> Callable[[int, torch.Generator], tuple[object, Tensor]]:
    return lambda n, g: (torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g))


def _tokens(vocab: int, length: int, classes: int) -> Callable[[int, torch.Generator], tuple[object, Tensor]]:
    return lambda n, g: (torch.randint(0, vocab, (n, length), generator=g), torch.randint(0, classes, (n,), generator=g))


def _classify(model: nn.Module, batch: tuple[object, Tensor]) -> Tensor:
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def _hf_classify(model: nn.Module, batch: tuple[object, Tensor]) -> Tensor:
    x, y = batch
    return model(input_ids=x, labels=y).loss


def _hf_lm(model: nn.Module, batch: tuple[object, Tensor]) -> Tensor:
    x, _ = batch
    return model(input_ids=x, labels=x).loss


def _timm_convnext() -> nn.Module:
    import timm

    return timm.create_model("convnext_atto", pretrained=False, num_classes=10)


def _bert_tiny() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    # prajjwal1/bert-tiny's shape (2 layers, 128 wide, 2 heads), a smaller vocabulary
    config = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=512, max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification(config)


def _gpt2_tiny() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    # Hugging Face Conv1D layers, and an output layer tied to the token embedding
    return GPT2LMHeadModel(GPT2Config(vocab_size=1000, n_positions=64, n_embd=64, n_layer=2, n_head=2,
                                      bos_token_id=0, eos_token_id=0, loss_type="ForCausalLM"))


MODELS: dict[str, ZooModel] = {m.name: m for m in (
    ZooModel("resnet18", lambda: torchvision.models.resnet18(num_classes=10), _images(32), _classify,
             kinds=("conv1.weight", "fc.weight")),
    ZooModel("mobilenet_v3_small", lambda: torchvision.models.mobilenet_v3_small(num_classes=10), _images(32),
             _classify, kinds=("features.0.0.weight", "classifier.3.weight")),
    ZooModel("vit_b_16", lambda: torchvision.models.vit_b_16(image_size=32, num_classes=10), _images(32), _classify,
             kinds=("conv_proj.weight", "in_proj_weight", "out_proj.weight", "heads.head.weight")),
    ZooModel("convnext_atto", _timm_convnext, _images(32), _classify, needs="timm",
             kinds=("stem.0.weight", "conv_dw.weight", "head.fc.weight")),
    ZooModel("bert_tiny", _bert_tiny, _tokens(1000, 16, 2), _hf_classify, needs="transformers",
             kinds=("query.weight", "word_embeddings.weight", "classifier.weight")),
    ZooModel("gpt2_tiny", _gpt2_tiny, _tokens(1000, 16, 2), _hf_lm, needs="transformers",
             kinds=("c_attn.weight", "c_proj.weight", "wte.weight")),
)}


def available() -> list[str]:
    """The models whose libraries are installed."""
    return [name for name, m in MODELS.items() if m.needs is None or importlib.util.find_spec(m.needs) is not None]
