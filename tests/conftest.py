"""Shared test set-up."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def _one_thread():
    """The tests use tiny tensors: one intra-op thread is much faster on a busy 2-core machine
    (the sweep tests' worker processes run single-threaded too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def _session_cost_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cost-cache") / "cost.json"


@pytest.fixture(autouse=True)
def _cost_rates_of_this_session(monkeypatch, _session_cost_cache):
    """The cost estimate's measured rates live in a file of this test session, not the user's
    ``~/.cache/polarnet/cost.json``: a test that calibrates (``reproduce()`` does) must not write
    there, and every session, on any machine, starts from the same state (nothing measured). Tests
    of the cache itself point ``$XDG_CACHE_HOME`` elsewhere and undo this."""
    from polarnet.experiments import cost

    monkeypatch.setattr(cost, "_cache_file", lambda: _session_cost_cache)


@pytest.fixture
def model_file(tmp_path):
    """A small conv net and its state dict saved as a .pt file, for the ``polarnet template`` commands."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(16, 10))
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    return net, path


@pytest.fixture
def dropout_net():
    """The name of a registered LeNet with dropout (as AlexNet has): its draws come from torch's
    global generator when trained alone, and differ per member in an ensemble."""
    from polarnet.models import MODELS, register_model

    @register_model("test_dropout_lenet")
    def factory(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
        return nn.Sequential(OrderedDict(
            features=nn.Sequential(nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)),
            flatten=nn.Flatten(),
            classifier=nn.Sequential(nn.Dropout(0.5), nn.Linear(16 * 5 * 5, 84), nn.ReLU(), nn.Dropout(0.5),
                                     nn.Linear(84, num_classes)),
        ))

    yield "test_dropout_lenet"
    MODELS.unregister("test_dropout_lenet")


@pytest.fixture
def no_fashion_mnist(monkeypatch, tmp_path):
    """This machine as a fresh one sees it: no ``dataset-fashion-mnist`` package, empty caches
    (``$XDG_CACHE_HOME``, ``$TORCH_HOME``) and no ``$POLARNET_DATA``, whatever is installed here;
    so a test of the missing-data path runs, and fails, the same on every machine."""
    from dataclasses import replace

    from polarnet.data.images import IMAGE_DATASETS

    spec = IMAGE_DATASETS["fashion_mnist"]
    monkeypatch.setitem(IMAGE_DATASETS, "fashion_mnist", replace(spec, debian_dir=str(tmp_path / "no-debian-package")))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    monkeypatch.delenv("POLARNET_DATA", raising=False)
    return tmp_path


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    """A ``data_root`` holding a small random Fashion-MNIST in its real IDX files (120 training,
    40 test images), and an empty ``$XDG_CACHE_HOME``: image tests that run on any machine,
    with or without the Debian package."""
    from test_images import write_mnist_like

    from polarnet.data.images import IMAGE_DATASETS

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "data"
    write_mnist_like(IMAGE_DATASETS["fashion_mnist"].folder(root), n_train=120, n_test=40)
    return root
