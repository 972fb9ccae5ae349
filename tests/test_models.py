from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import polarnet as pn
from polarnet.models import MODELS, get_model, list_models, register_model


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_builds_and_runs(name) -> None:
    model = get_model(name)
    x = {"mlp": torch.zeros(2, 5), "lenet": torch.zeros(2, 1, 28, 28)}.get(name, torch.zeros(2, 3, 64, 64))
    out = model(x)
    assert out.shape == ((2, 1) if name == "mlp" else (2, 10))
    assert len(pn.PolarityTemplate.random(model)) > 0


@pytest.mark.parametrize("name", ["alexnet", "zfnet"])
def test_image_models_have_five_conv_and_three_linear_layers(name) -> None:
    model = get_model(name, num_classes=7)
    conv, linear = pn.select_layers(model, "conv"), pn.select_layers(model, "linear")
    assert len(conv) == 5 and len(linear) == 3
    assert model(torch.zeros(1, 3, 227, 227)).shape == (1, 7)


def test_alexnet_matches_torchvision_names_so_pretrained_weights_load() -> None:
    import torchvision

    reference = torchvision.models.alexnet(num_classes=1000).state_dict()
    ours = get_model("alexnet", num_classes=1000)
    ours.load_state_dict(reference)  # strict: same names and shapes
    gray = get_model("alexnet", in_channels=1)
    assert gray.features[0].weight.shape == (64, 1, 11, 11)


def test_zfnet_follows_zeiler_and_fergus() -> None:
    model = get_model("zfnet")
    shapes = [tuple(model.get_parameter(n).shape) for n in pn.select_layers(model, "conv")]
    assert shapes == [(96, 3, 7, 7), (256, 96, 5, 5), (384, 256, 3, 3), (384, 384, 3, 3), (256, 384, 3, 3)]
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(58.3e6, rel=0.01)


def test_module_function_names_and_errors() -> None:
    model = get_model("torch.nn:Linear", in_features=3, out_features=2)
    assert isinstance(model, nn.Linear)
    with pytest.raises(ValueError, match="cannot import"):
        get_model("no_such_pkg.mod:fn")
    with pytest.raises(ValueError, match="unknown model 'vgg99'"):
        get_model("vgg99")
    with pytest.raises(ValueError, match="already registered"):
        register_model("mlp")(lambda: None)
    assert "mlp" in MODELS


def test_resolve_model_builds_nothing_and_names_the_problem() -> None:
    from polarnet.models import resolve_model

    assert resolve_model("mlp") is MODELS.get("mlp")
    assert resolve_model("torch.nn:Linear") is nn.Linear
    assert resolve_model("torch.nn:modules.linear.Linear") is nn.Linear  # a dotted attribute
    for name, fragment in [("no_such_pkg.mod:fn", "cannot import 'fn' from 'no_such_pkg.mod' (ModuleNotFoundError"),
                           ("torch.nn:NoSuchLayer", "it has no 'NoSuchLayer'"),
                           ("polarnet.models:__all__", "is a list, not a function"),
                           ("torch.nn:", "expected 'package.module:function'"),
                           ("vgg99", "unknown model 'vgg99'")]:
        with pytest.raises(ValueError, match=re.escape(fragment)):
            resolve_model(name)


def test_a_module_that_raises_while_importing_is_a_value_error(tmp_path, monkeypatch) -> None:
    (tmp_path / "broken_model_demo.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"model 'broken_model_demo:f': cannot import 'f' .*RuntimeError: boom"):
        get_model("broken_model_demo:f")
