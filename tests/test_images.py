from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from helpers import real_data
from polarnet.data import images
from polarnet.data.images import DataError, find_root, load_images, stratified_order


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No real data or cache leaks into these tests."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("POLARNET_DATA", raising=False)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX format: 2 zero bytes, a type code (0x08 = uint8), the rank, big-endian dims, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist_like(folder, n_train=40, n_test=20, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        arrays[split] = (rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10)
        for kind, data in (("images-idx3", arrays[split][0]), ("labels-idx1", arrays[split][1])):
            name = folder / f"{split}-{kind}-ubyte"
            raw = idx_bytes(data)
            if gz:
                with gzip.open(str(name) + ".gz", "wb") as f:
                    f.write(raw)
            else:
                name.write_bytes(raw)
    return arrays


def write_cifar(folder, per_batch=6, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32)).astype(np.uint8)
        labels = list(rng.integers(0, 10, per_batch))
        batches[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return batches


def test_idx_files_in_torchvision_layout(tmp_path) -> None:
    arrays = write_mnist_like(tmp_path / "root" / "FashionMNIST" / "raw")
    x, y = load_images("fashion_mnist", True, data_root=tmp_path / "root", debian_dir=tmp_path / "none")
    assert x.shape == (40, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.equal(x[:, 0], torch.from_numpy(arrays["train"][0].astype(np.uint8)))
    assert y.tolist() == list(arrays["train"][1])
    x_test, _ = load_images("fashion_mnist", False, data_root=tmp_path / "root", debian_dir=tmp_path / "none")
    assert len(x_test) == 20


def test_gzipped_idx_from_a_debian_style_folder_are_unpacked_once(tmp_path) -> None:
    debian = tmp_path / "usr-share"
    arrays = write_mnist_like(debian, gz=True)
    x, y = load_images("fashion_mnist", True, debian_dir=debian)
    assert torch.equal(x[:, 0], torch.from_numpy(arrays["train"][0].astype(np.uint8)))
    unpacked = tmp_path / "cache" / "polarnet" / "data" / "FashionMNIST" / "raw"
    assert sorted(p.name for p in unpacked.iterdir()) == sorted(images.IMAGE_DATASETS["fashion_mnist"].files())
    assert find_root("fashion_mnist", debian_dir=tmp_path / "gone") == tmp_path / "cache" / "polarnet" / "data"


def test_search_order_prefers_data_root_then_env_then_cache(tmp_path, monkeypatch) -> None:
    for where in ("a", "b"):
        write_mnist_like(tmp_path / where / "MNIST" / "raw")
    monkeypatch.setenv("POLARNET_DATA", str(tmp_path / "b"))
    assert find_root("mnist", tmp_path / "a", debian_dir=tmp_path / "x") == tmp_path / "a"
    assert find_root("mnist", tmp_path / "empty", debian_dir=tmp_path / "x") == tmp_path / "b"


def test_missing_data_says_where_it_looked_and_how_to_get_it(tmp_path) -> None:
    with pytest.raises(DataError) as err:
        find_root("fashion_mnist", tmp_path / "mine", debian_dir=tmp_path / "nodebian")
    text = str(err.value)
    assert str(tmp_path / "mine" / "FashionMNIST" / "raw") in text
    assert "apt-get install dataset-fashion-mnist" in text and "--download" in text
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        find_root("cifar10", tmp_path / "mine")
    with pytest.raises(ValueError, match="unknown image dataset"):
        find_root("imagenet")


def test_cifar_pickle_batches(tmp_path) -> None:
    batches = write_cifar(tmp_path / "root" / "cifar-10-batches-py")
    x, y = load_images("cifar10", True, data_root=tmp_path / "root", verify_checksums=False)
    assert x.shape == (30, 3, 32, 32)
    first = torch.from_numpy(batches["data_batch_1"][0][0].reshape(3, 32, 32))
    assert torch.equal(x[0], first) and y[:6].tolist() == batches["data_batch_1"][1]
    x_test, _ = load_images("cifar10", False, data_root=tmp_path / "root", verify_checksums=False)
    assert len(x_test) == 6
    with pytest.raises(DataError, match="corrupted"):  # torchvision's MD5 check refuses files it doesn't know
        load_images("cifar10", True, data_root=tmp_path / "root")


def test_corrupted_files_are_clear_errors(tmp_path) -> None:
    raw = tmp_path / "root" / "MNIST" / "raw"
    write_mnist_like(raw)
    data = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(DataError, match="MNIST/raw.*truncated or corrupted"):
        load_images("mnist", True, data_root=tmp_path / "root", debian_dir=tmp_path / "x")
    folder = tmp_path / "root2" / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_images("cifar10", True, data_root=tmp_path / "root2", verify_checksums=False)
    debian = tmp_path / "deb"
    write_mnist_like(debian, gz=True)
    (debian / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(DataError, match="reinstall"):
        load_images("fashion_mnist", True, debian_dir=debian)


def test_stratified_order_is_nested_and_balanced() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    order = stratified_order(labels, seed=3)
    assert sorted(order.tolist()) == list(range(100))
    for n in range(1, 61):  # while every class still has samples
        counts = labels[order[:n]].bincount(minlength=3)
        assert counts.max() - counts.min() <= 1
    assert torch.equal(stratified_order(labels, seed=3), order)
    assert not torch.equal(stratified_order(labels, seed=4), order)


@real_data
def test_real_fashion_mnist_from_the_debian_package() -> None:
    x, y = load_images("fashion_mnist", False)
    assert x.shape == (10000, 1, 28, 28) and y.bincount().tolist() == [1000] * 10


def test_split_sizes_are_known_without_the_data() -> None:
    for name, train, test in (("fashion_mnist", 60000, 10000), ("mnist", 60000, 10000), ("cifar10", 50000, 10000)):
        spec = images.IMAGE_DATASETS[name]
        assert spec.num_classes == 10
        assert (spec.split_size(True), spec.split_size(False)) == (train, test)
    fmnist = images.IMAGE_DATASETS["fashion_mnist"]
    assert (fmnist.split_size(True, (5, 6, 7, 8, 9)), fmnist.split_size(False, [0, 1])) == (30000, 2000)
    mnist = images.IMAGE_DATASETS["mnist"]
    assert (mnist.split_size(True, [5]), mnist.split_size(False, [1])) == (5421, 1135)  # MNIST is not balanced


@real_data
def test_the_known_split_sizes_match_the_real_fashion_mnist() -> None:
    spec = images.IMAGE_DATASETS["fashion_mnist"]
    for train, counts in ((True, spec.train_counts), (False, spec.test_counts)):
        assert tuple(load_images("fashion_mnist", train)[1].bincount().tolist()) == counts


@pytest.mark.parametrize("classes", [[10], [-1], [0, 12]])
def test_split_size_rejects_unknown_classes(classes) -> None:
    with pytest.raises(ValueError, match=r"fashion_mnist: no class .*; classes are 0..9"):
        images.IMAGE_DATASETS["fashion_mnist"].split_size(False, classes)
