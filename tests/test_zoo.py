"""Freeze-SGD on a realistic set of models built without pretrained weights
(``benchmarks/_zoo.py``: torchvision ResNet-18, MobileNetV3, ViT-B/16, a timm ConvNeXt, Hugging
Face BERT-tiny and GPT-2 with Conv1D layers): a template over every layer ``layers="all"``
selects, ``freeze``, 3 train steps, 0 violations, and a checkpoint that loads into the plain
architecture. ``bench_zoo.py`` prints the per-step overhead."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
import torch

import polarnet as pn

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "_zoo.py"
_spec = importlib.util.spec_from_file_location("bench_zoo_models", _PATH)
zoo = importlib.util.module_from_spec(_spec)
sys.modules["bench_zoo_models"] = zoo
_spec.loader.exec_module(zoo)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(zoo.MODELS))
def test_a_zoo_model_trains_frozen_with_no_violations(name):
    model_spec = zoo.MODELS[name]
    if name not in zoo.available():
        pytest.skip(f"needs {model_spec.needs}, which is not installed")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # library chatter about configs
        model = model_spec.build()
    template = pn.PolarityTemplate.random(model, seed=0)
    for ending in model_spec.kinds:  # every layer kind of the model is covered
        assert any(layer.endswith(ending) for layer in template), ending
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    handle = pn.freeze(model, template, optimizer, seed=0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        optimizer.zero_grad()
        model_spec.loss(model, model_spec.batch(2, generator)).backward()
        optimizer.step()
        assert pn.violations(model, template) == 0
    assert handle.steps == 3 and handle.total_resets > 0
    fresh = model_spec.build()
    fresh.load_state_dict(model.state_dict())  # strict: the plain architecture's keys
    assert pn.violations(fresh, template) == 0


def test_the_zoo_covers_the_issue_list():
    assert {"resnet18", "mobilenet_v3_small", "vit_b_16", "convnext_atto", "bert_tiny"} <= set(zoo.MODELS)
