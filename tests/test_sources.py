from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import polarnet as pn


@pytest.fixture
def weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2)).state_dict()


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_torch_save_files(tmp_path, weights, suffix) -> None:
    path = tmp_path / f"w{suffix}"
    torch.save(weights, path)
    loaded = pn.load_state_dict(path)
    assert list(loaded) == list(weights) and all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_checkpoint_wrapping_a_state_dict(tmp_path, weights) -> None:
    torch.save({"epoch": 3, "state_dict": weights}, tmp_path / "ckpt.pt")
    assert torch.equal(pn.load_state_dict(tmp_path / "ckpt.pt")["2.weight"], weights["2.weight"])


def test_safetensors(tmp_path, weights) -> None:
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp_path / "w.safetensors"))
    assert torch.equal(pn.load_state_dict(tmp_path / "w.safetensors")["0.weight"], weights["0.weight"])


def test_unreadable_and_wrong_files(tmp_path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"not a pickle")
    with pytest.raises(pn.SourceError, match="bad.pt: cannot read weights"):
        pn.load_state_dict(tmp_path / "bad.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(pn.SourceError, match="no state dict"):
        pn.load_state_dict(tmp_path / "list.pt")
    with pytest.raises(pn.SourceError, match="neither an existing file"):
        pn.load_state_dict(tmp_path / "missing.pt")


def test_unknown_torchvision_name() -> None:
    with pytest.raises(pn.SourceError, match="unknown torchvision weights"):
        pn.load_state_dict("NoSuchNet_Weights.IMAGENET1K_V1")


def test_torchvision_name_reads_the_hub_cache(tmp_path, monkeypatch, weights) -> None:
    """The real loading path: torchvision's weights enum and torch hub, offline from the cache."""
    from torchvision.models import AlexNet_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(weights, cache / os.path.basename(AlexNet_Weights.IMAGENET1K_V1.url))
    loaded = pn.load_state_dict("AlexNet_Weights.IMAGENET1K_V1", progress=False)
    assert torch.equal(loaded["0.weight"], weights["0.weight"])


def test_torchvision_name_offline_says_where_to_put_the_file(tmp_path, monkeypatch) -> None:
    import urllib.error

    import torchvision.models._api as api

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    expected = str(tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    with pytest.raises(pn.SourceError, match="cannot download") as err:
        pn.load_state_dict("AlexNet_Weights.IMAGENET1K_V1", progress=False)
    assert expected in str(err.value)


def test_non_regular_files_are_refused_at_once(tmp_path) -> None:
    with pytest.raises(pn.SourceError, match="is a directory, not a weights file"):
        pn.load_state_dict(tmp_path)
    fifo = tmp_path / "w.pt"
    os.mkfifo(fifo)
    with pytest.raises(pn.SourceError, match="w.pt: is a FIFO, not a weights file"):
        pn.load_state_dict(fifo)
    with pytest.raises(pn.SourceError, match="/dev/zero: is a device, not a weights file"):
        pn.load_state_dict("/dev/zero")


@pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants")
def test_complex_and_sparse_tensors_are_left_out_with_a_warning(tmp_path, weights) -> None:
    f = tmp_path / "w.pt"
    torch.save({**weights, "fft.weight": torch.ones(2, 2, dtype=torch.cfloat), "adj.weight": torch.eye(3).to_sparse()}, f)
    with pytest.warns(UserWarning, match="left out 2 tensor\\(s\\).*'fft.weight' \\(complex\\).*'adj.weight' \\(torch.sparse_coo\\)"):
        loaded = pn.load_state_dict(f)
    assert list(loaded) == list(weights)
    # so a template of "all" layers can be made from the file
    assert list(pn.PolarityTemplate.from_model(loaded)) == ["0.weight", "2.weight"]


def test_only_complex_tensors_is_an_error(tmp_path) -> None:
    f = tmp_path / "c.pt"
    torch.save({"w": torch.ones(2, 2, dtype=torch.cfloat)}, f)
    with pytest.raises(pn.SourceError, match="only complex or sparse"), pytest.warns(UserWarning):
        pn.load_state_dict(f)
