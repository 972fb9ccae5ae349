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


# --------------------------------------------------------------------------- head: replace or extend (issue 9 §3)

@pytest.mark.parametrize("name", ["alexnet", "zfnet"])
def test_head_extend_keeps_the_1000_way_layer_and_adds_a_relu_and_a_new_layer(name) -> None:
    model = get_model(name, num_classes=7, head="extend")
    classifier = model.classifier
    assert len(classifier) == 9
    assert (classifier[6].in_features, classifier[6].out_features) == (4096, 1000)  # ImageNet's fc8
    assert isinstance(classifier[7], nn.ReLU)
    assert (classifier[8].in_features, classifier[8].out_features) == (1000, 7)  # the new layer
    assert pn.select_layers(model, "linear") == ["classifier.1.weight", "classifier.4.weight", "classifier.6.weight",
                                                 "classifier.8.weight"]
    assert len(pn.select_layers(model, "conv")) == 5
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
    # the ReLU sits between fc8 and the new layer: negative fc8 outputs don't reach it
    with torch.no_grad():
        classifier[6].weight.zero_()
        classifier[6].bias.fill_(-1.0)
    out = model.eval()(torch.randn(1, 3, 64, 64))
    assert torch.allclose(out, classifier[8].bias.detach().unsqueeze(0))


@pytest.mark.parametrize("name", ["alexnet", "zfnet"])
def test_head_replace_is_the_default_and_keeps_todays_layout(name) -> None:
    default, replaced = get_model(name), get_model(name, head="replace")
    assert [(k, v.shape) for k, v in default.state_dict().items()] == \
           [(k, v.shape) for k, v in replaced.state_dict().items()]
    assert len(default.classifier) == 7 and default.classifier[6].out_features == 10


def test_head_extend_takes_torchvisions_imagenet_weights_by_name_fc8_included() -> None:
    import torchvision

    imagenet = torchvision.models.alexnet(num_classes=1000).state_dict()  # AlexNet_Weights' names and shapes
    model = get_model("alexnet", head="extend")
    result = model.load_state_dict(imagenet, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys == ["classifier.8.weight", "classifier.8.bias"]  # only the new layer
    assert torch.equal(model.classifier[6].weight, imagenet["classifier.6.weight"])
    gray = get_model("alexnet", in_channels=1, head="extend")
    assert gray.features[0].weight.shape == (64, 1, 11, 11) and gray.classifier[8].in_features == 1000


@pytest.mark.parametrize("name", ["alexnet", "zfnet"])
def test_an_unknown_head_is_refused_naming_the_choices(name) -> None:
    with pytest.raises(ValueError, match=r"^head='keep': choose 'replace' .* or 'extend'"):
        get_model(name, head="keep")


def test_torchvisions_alexnet_has_64_first_filters_not_caffes_96() -> None:
    """docs/images.md says so: polarnet's alexnet is torchvision's, not the reference's Caffe AlexNet."""
    assert get_model("alexnet").features[0].out_channels == 64
    assert get_model("zfnet").features[0].out_channels == 96


@pytest.mark.parametrize(("body", "said"), [("return 'x'", "returned str, not an nn.Module"),
                                            ("return None", "returned NoneType, not an nn.Module"),
                                            ("sys.exit(3)", "called sys.exit(3) instead of returning an nn.Module")])
def test_a_factory_that_gives_no_model_is_one_value_error_naming_it(body, said, tmp_path, monkeypatch) -> None:
    """A non-module would fail later, deep in training; ``sys.exit`` would end a study (or a
    worker) without a word. Both are a ``ValueError`` naming the model, as the CLI reports."""
    from polarnet.models import NotAModel

    module = f"hostile_factory_demo_{abs(hash(body))}"  # one module per case: imports are cached
    (tmp_path / f"{module}.py").write_text(f"import sys\n\ndef build(**kwargs):\n    {body}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(NotAModel) as e:
        get_model(f"{module}:build", in_features=5)
    assert str(e.value).startswith(f"model '{module}:build' {said}")
    assert isinstance(e.value, ValueError)
