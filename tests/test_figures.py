from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from polarnet.analysis.figures import curves_figure, efficiency_figure, sign_change_figure
from polarnet.analysis.metrics import run_metrics


@pytest.fixture
def epochs() -> pd.DataFrame:
    """A small synthetic store table: 2 conditions × 3 sizes × 4 trials × 6 epochs."""
    rng = np.random.default_rng(0)
    rows = []
    for condition, speed in (("frozen_sufficient", 0.3), ("fluid_rand", 0.15)):
        for n in (8, 40, 100):
            for trial in range(4):
                run = f"{condition}-{n}-{trial}"
                for epoch in range(1, 7):
                    acc = min(0.99, 0.5 + speed * epoch * (1 + n / 100) * rng.uniform(0.8, 1.2))
                    rows.append({"run": run, "condition": condition, "n_train": n, "hidden": 64, "reset": "posRand",
                                 "trial": trial, "status": "done", "epoch": epoch, "train_acc": acc, "val_acc": acc,
                                 "val_loss": 1 - acc, "sign_changes": json.dumps({"0.weight": 0.1 / epoch,
                                                                                   "2.weight": 0.05 / epoch})})
    return pd.DataFrame(rows)


def _is_image(paths) -> None:
    png, svg = paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert b"<svg" in svg.read_bytes()[:500]


def test_efficiency_figure(tmp_path, epochs) -> None:
    paths = efficiency_figure(run_metrics(epochs, 0.8), 0.8, tmp_path / "fig1", study="synthetic")
    assert [p.name for p in paths] == ["fig1.png", "fig1.svg"]
    _is_image(paths)
    assert b"training samples" in paths[1].read_bytes() or b"training" in paths[1].read_bytes()


def test_curves_figure(tmp_path, epochs) -> None:
    _is_image(curves_figure(epochs, tmp_path / "curves", study="synthetic", mark=0.6))


def test_sign_change_figure(tmp_path, epochs) -> None:
    _is_image(sign_change_figure(epochs, "fluid_rand", tmp_path / "c5", study="synthetic"))
    with pytest.raises(ValueError, match="no finished runs of condition 'nope'"):
        sign_change_figure(epochs, "nope", tmp_path / "x")
