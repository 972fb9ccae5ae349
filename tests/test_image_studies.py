"""Image studies through the engine: on real Fashion-MNIST (Debian's package) and on files the
tests write."""

from __future__ import annotations

import pytest
import torch

import polarnet as pn
from polarnet.data.images import IMAGE_DATASETS
from polarnet.experiments import Store, load_study, plan, run_study
from polarnet.experiments.datasets import ImagePrep
from polarnet.experiments.trainer import prepare_model, run_data, train_run

REAL = IMAGE_DATASETS["fashion_mnist"].debian_dir + "/train-images-idx3-ubyte.gz"
real_data = pytest.mark.skipif(not __import__("os").path.isfile(REAL),
                               reason="Debian package dataset-fashion-mnist not installed (.ci/run installs it)")

SMALL_CNN = ["dataset='fashion_mnist'", "model='lenet'", "in_channels=1", "init_linear='glorot_uniform'",
             "init_bias='zeros'", "conditions=['frozen_rand']", "sizes=[1000]", "trials=1", "epochs=4",
             "batch_size=50", "lr=0.001", "val_size=2000", "thresholds=[0.6]"]


@real_data
def test_frozen_net_learns_real_fashion_mnist_and_keeps_its_signs() -> None:
    run = plan(load_study("xor5d", SMALL_CNN))[0]
    result = train_run(run, keep_weights=True)
    assert result.status == "done"
    assert result.epochs[-1].val_acc >= 0.6, [e.val_acc for e in result.epochs]  # chance is 0.1
    model, template = prepare_model(run)
    model.load_state_dict(result.extra["weights"])
    assert pn.violations(model, template) == 0
    assert sum(e.resets for e in result.epochs) > 0  # Freeze-SGD really had work to do


@real_data
def test_image_study_through_the_store_with_class_subsets(tmp_path) -> None:
    study = load_study("xor5d", SMALL_CNN + ["classes=[5, 6, 7, 8, 9]", "sizes=[100, 200]", "epochs=2",
                                             "conditions=['frozen_rand', 'fluid_rand']", "val_size=500"])
    summary = run_study(study, tmp_path, workers=1, progress=False)
    assert summary.trained == 4 and summary.failed == 0
    with Store(tmp_path) as store:
        epochs = store.epochs()
    assert set(epochs["n_train"]) == {100, 200} and len(epochs) == 4 * 2
    data = run_data(plan(study)[0])
    assert sorted(data.y.unique().tolist()) == [0, 1, 2, 3, 4]  # classes 5-9, relabelled
    assert data.y[:100].bincount().tolist() == [20] * 5  # stratified prefix
    assert data.model_kwargs == {"num_classes": 5, "in_channels": 1}


def test_image_prep_normalises_repeats_and_resizes() -> None:
    prep = ImagePrep((0.5,), (0.25,), channels=3, size=8)
    images = torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)
    x = prep(images)
    assert x.shape == (2, 3, 8, 8) and torch.allclose(x, torch.full_like(x, 2.0))  # (1 - 0.5) / 0.25
    with pytest.raises(ValueError, match="3-channel"):
        ImagePrep((0.5,) * 3, (0.25,) * 3, channels=1, size=0)(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
