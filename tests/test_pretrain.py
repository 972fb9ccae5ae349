"""``polarnet pretrain``: a source model trained offline, with progress."""

from __future__ import annotations

import io

import pytest
import torch

from helpers import real_data

from polarnet.experiments.pretrain import pretrain



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
