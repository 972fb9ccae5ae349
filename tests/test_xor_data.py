"""Tests for polarnet.data.xor: the XOR-5D data of Wang et al."""

from __future__ import annotations

import pytest
import torch

from polarnet.experiments.config import load_study

from polarnet.data import xor_pool
from polarnet.experiments.datasets import load_data


def _on_a_side(v: torch.Tensor) -> torch.Tensor:
    return ((v >= -1) & (v < 0)) | ((v >= 0.05) & (v < 1.05))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_relevant_dims_lie_in_the_two_squares(dtype):
    x, y = xor_pool(2000, 5, seed=3, dtype=dtype)
    assert x.shape == (2000, 5) and y.shape == (2000,)
    assert x.dtype == dtype and y.dtype == dtype
    for d in (0, 1):
        assert bool(_on_a_side(x[:, d]).all())
        assert not bool(((x[:, d] >= 0) & (x[:, d] < 0.05)).any())  # the gap is empty
    # both sides are used, and they fill their squares
    for d in (0, 1):
        neg, pos = x[x[:, d] < 0, d], x[x[:, d] >= 0, d]
        assert neg.min() < -0.99 and neg.max() > -0.01
        assert pos.min() < 0.06 and pos.max() > 1.04


def test_label_is_same_side():
    x, y = xor_pool(1000, 5, seed=1)
    same = (x[:, 0] >= 0) == (x[:, 1] >= 0)
    assert torch.equal(y, same.to(y.dtype))
    assert set(y.unique().tolist()) == {0.0, 1.0}


def test_gap_parameter():
    x, _ = xor_pool(500, 2, seed=0, gap=0.5, dtype=torch.float64)
    pos = x[x >= 0]
    assert pos.min() >= 0.5 and pos.max() < 1.5
    assert bool((x >= -1).all())


def test_noise_dims_are_n_1_1():
    x, _ = xor_pool(40000, 5, seed=0, dtype=torch.float64)
    noise = x[:, 2:]
    assert noise.shape == (40000, 3)
    for d in range(3):
        assert abs(noise[:, d].mean().item() - 1.0) < 0.03
        assert abs(noise[:, d].std().item() - 1.0) < 0.03
    # unbounded like a normal: some values below 0 and above 2 (beyond 1σ), none absurd
    assert (noise < 0).any() and (noise > 2).any()
    assert noise.abs().max() < 8


def test_dims_two_has_no_noise_and_dims_seven_has_five():
    assert xor_pool(10, 2)[0].shape == (10, 2)
    x7, _ = xor_pool(10, 7, seed=0)
    x5, _ = xor_pool(10, 5, seed=0)
    assert x7.shape == (10, 7)
    assert torch.equal(x7[:, :2], x5[:, :2])  # the relevant dims don't depend on the noise dims


@pytest.mark.parametrize("n, m", [(8, 20), (20, 500), (63, 64), (64, 65), (60, 72), (100, 129), (1, 1000)])
def test_pools_are_nested(n, m):
    xs, ys = xor_pool(n, 5, seed=7)
    xl, yl = xor_pool(m, 5, seed=7)
    assert len(xs) == n and len(xl) == m
    assert torch.equal(xl[:n], xs)
    assert torch.equal(yl[:n], ys)


def test_nested_across_block_boundaries_sample_by_sample():
    big_x, big_y = xor_pool(200, 5, seed=2)
    for n in (63, 64, 65, 127, 128, 129, 200):
        x, y = xor_pool(n, 5, seed=2)
        assert torch.equal(x, big_x[:n]) and torch.equal(y, big_y[:n])
    # consecutive blocks are different draws, not a repeated block
    assert not torch.equal(big_x[:64], big_x[64:128])


@pytest.mark.parametrize("n", [4, 8, 20, 32, 60, 64, 68, 100, 500])
def test_multiples_of_four_are_balanced(n):
    x, y = xor_pool(n, 5, seed=11)
    quadrant = (x[:, 0] >= 0).long() * 2 + (x[:, 1] >= 0).long()
    assert torch.bincount(quadrant, minlength=4).tolist() == [n // 4] * 4
    assert int(y.sum()) == n // 2


def test_every_four_consecutive_samples_cover_the_quadrants():
    x, _ = xor_pool(256, 5, seed=5)
    quadrant = (x[:, 0] >= 0).long() * 2 + (x[:, 1] >= 0).long()
    for s in range(0, 256, 4):
        assert sorted(quadrant[s:s + 4].tolist()) == [0, 1, 2, 3]


def test_reproducible_and_seeded():
    a = xor_pool(100, 5, seed=4)
    b = xor_pool(100, 5, seed=4)
    c = xor_pool(100, 5, seed=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_does_not_depend_on_global_rng():
    torch.manual_seed(0)
    a = xor_pool(50, 5, seed=1)[0]
    torch.manual_seed(1)
    torch.rand(100)
    b = xor_pool(50, 5, seed=1)[0]
    assert torch.equal(a, b)


def test_float32_is_the_rounded_float64():
    x64, y64 = xor_pool(70, 5, seed=0, dtype=torch.float64)
    x32, y32 = xor_pool(70, 5, seed=0)
    assert x32.dtype == torch.float32
    assert torch.equal(x32, x64.to(torch.float32)) and torch.equal(y32, y64.to(torch.float32))


@pytest.mark.parametrize("dims", [1, 0, -3])
def test_dims_below_two_is_an_error(dims):
    with pytest.raises(ValueError, match=f"at least 2 input dimensions, got dims={dims}"):
        xor_pool(10, dims)


@pytest.mark.parametrize("n", [0, -1])
def test_n_below_one_is_an_error(n):
    with pytest.raises(ValueError, match=f"need n >= 1 samples, got {n}"):
        xor_pool(n)


def test_load_data_uses_the_pool_and_validation_seeds():
    d = load_data(load_study("xor5d", ["val_size=30", "dtype='float64'"]), 40, 123, 456)
    x, y = xor_pool(40, 5, 123, dtype=torch.float64)
    xv, yv = xor_pool(30, 5, 456, dtype=torch.float64)
    assert torch.equal(d.x, x) and torch.equal(d.y, y) and torch.equal(d.x_val, xv) and torch.equal(d.y_val, yv)
