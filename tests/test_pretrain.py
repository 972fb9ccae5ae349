"""``polarnet pretrain``: a source model trained offline, with progress."""

from __future__ import annotations

import io
import os

import pytest
import torch

from polarnet.data.images import IMAGE_DATASETS
from polarnet.experiments.pretrain import pretrain

REAL = IMAGE_DATASETS["fashion_mnist"].debian_dir + "/train-images-idx3-ubyte.gz"
real_data = pytest.mark.skipif(not os.path.isfile(REAL) and not os.environ.get("POLARNET_REQUIRE_REAL_DATA"),
                               reason="Debian package dataset-fashion-mnist not installed (.ci/run installs it)")


@real_data
def test_pretrain_writes_a_loadable_state_dict_and_reports_each_epoch(tmp_path) -> None:
    stream = io.StringIO()
    out = tmp_path / "deep" / "src.pt"
    metrics = pretrain("fashion_mnist", out, classes=(0, 1), n_train=200, epochs=2, progress=stream)
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["pretrain: epoch 1/2", "pretrain: epoch 2/2"]
    state = torch.load(out, weights_only=True)
    assert state["classifier.4.weight"].shape == (2, 84)
    assert 0.5 < metrics["val_acc"] <= 1.0 and metrics["n_train"] == 200


def test_pretrain_names_an_unknown_dataset(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown image dataset 'imagenet'"):
        pretrain("imagenet", tmp_path / "x.pt")
