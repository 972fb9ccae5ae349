from __future__ import annotations

import torch

from polarnet import demo


def test_xor5d_data_follows_the_reference_layout() -> None:
    x, y = demo.xor5d(4000, torch.Generator().manual_seed(0))
    relevant = x[:, :2]
    assert bool(((relevant < 0) & (relevant >= -1) | (relevant >= 0.05) & (relevant < 1.05)).all())
    same_side = (relevant[:, 0] > 0) == (relevant[:, 1] > 0)
    assert torch.equal(y, same_side.float())
    assert abs(x[:, 2:].mean().item() - 1.0) < 0.05 and abs(x[:, 2:].std().item() - 1.0) < 0.05


def test_demo_learns_and_keeps_polarity(capsys) -> None:
    demo.main(epochs=10, n_train=200)
    out = capsys.readouterr().out
    assert "polarity violations of the Frozen-Net after training: 0" in out
    last = [line.split() for line in out.splitlines() if line.strip().startswith("10 ")][0]
    assert float(last[1]) > 0.8 and float(last[2]) > 0.8  # well above chance (0.5)
