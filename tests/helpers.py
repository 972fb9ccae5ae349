"""Helpers shared by test modules."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from polarnet.data.images import IMAGE_DATASETS

#: the real Fashion-MNIST of the Debian package dataset-fashion-mnist (``make venv`` installs it
#: through .ci/install-dataset where it can). Tests marked ``real_data`` skip without it, except
#: under ``POLARNET_REQUIRE_REAL_DATA`` (CI sets it), where a missing package fails them.
REAL_FASHION_MNIST = os.path.join(IMAGE_DATASETS["fashion_mnist"].debian_dir, "train-images-idx3-ubyte.gz")
real_data = pytest.mark.skipif(
    not os.path.isfile(REAL_FASHION_MNIST) and not os.environ.get("POLARNET_REQUIRE_REAL_DATA"),
    reason="needs the Debian package dataset-fashion-mnist (make venv installs it where it can: sh .ci/install-dataset)")


#: the arguments of a tiny ``polarnet run xor5d`` (12 runs of 3 epochs, a few seconds), for the command's tests
TINY = ["--set", "trials=2", "--set", "epochs=3", "--set", "sizes=[8, 40]", "--workers", "1", "--no-progress"]


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every tensor of the model's state."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    """The model's state equals ``before`` exactly (same keys, same values)."""
    after = model.state_dict()
    assert list(after) == list(before)
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed"


def tied_mlp() -> nn.Sequential:
    """Two Linear layers sharing one weight Parameter (as an embedding tied to a decoder);
    ``state_dict()`` names it ``0.weight`` and ``2.weight``."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    net[2].weight = net[0].weight
    return net


# processes seen through /proc (Linux), for the tests that stop workers and drivers
def proc_stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name: state, ppid, …; raises OSError."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        return proc_stat(pid)[0] != "Z"
    except OSError:
        return False
