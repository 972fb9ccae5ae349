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


# --------------------------------------------------------------------------- not weights (issue 8, finding 16)
def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "weights_only" not in text, text
    return text


def test_a_template_file_is_named_as_one_whatever_its_suffix(tmp_path) -> None:
    for name in ("t.plt", "t.pt"):
        pn.PolarityTemplate.random(nn.Linear(3, 2)).save(tmp_path / name)
        with pytest.raises(pn.SourceError) as err:
            pn.load_state_dict(tmp_path / name)
        assert _one_line(err).startswith(f"{tmp_path / name}: is a polarnet template file (.plt): it carries signs only")
        assert "study source" in str(err.value)


def test_json_files_are_named(tmp_path) -> None:
    from polarnet.proportions import save_proportions

    save_proportions({"0.weight": (0.0, 0.5, 0.5)}, tmp_path / "p.json")
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(tmp_path / "p.json")
    assert "is a polarnet proportions file (JSON)" in _one_line(err) and "`proportions` file" in str(err.value)
    (tmp_path / "o.json").write_text('  [1, 2]\n')
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(tmp_path / "o.json")
    assert "is a JSON file, not weights" in _one_line(err)


@pytest.mark.parametrize("content,expected", [
    (b"", "is empty (0 bytes)"),
    (b"garbage\n", "it is a text file (it starts 'garbage'), not weights"),
    (b"\x93NUMPY\x01\x00", "is a NumPy array file"),
    (b"\x1f\x8b\x08\x00", "is gzip-compressed"),
    (b"\x7fELF\x02\x01\x01\x00" * 8, "not a PyTorch (torch.save) or safetensors weights file (it starts with bytes 7f 45 4c 46"),
])
def test_other_files_say_what_they_are_in_one_line(tmp_path, content, expected) -> None:
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(tmp_path / "x.pt")
    assert expected in _one_line(err)
    if "gzip" not in expected:
        assert "torch.save(model.state_dict(), PATH)" in str(err.value)


def test_etc_passwd_is_a_text_file_not_an_index_error() -> None:
    if not os.path.isfile("/etc/passwd"):
        pytest.skip("no /etc/passwd")
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict("/etc/passwd")
    assert "/etc/passwd: cannot read weights: it is a text file" in _one_line(err)


def test_a_checkpoint_with_python_objects_is_refused_without_unsafe_advice(tmp_path) -> None:
    import argparse

    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": {"w": torch.zeros(2)}}, tmp_path / "ckpt.pt")
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(tmp_path / "ckpt.pt")
    assert "holds Python objects besides tensors (argparse.Namespace)" in _one_line(err)
    assert "torch.save(checkpoint['state_dict']" in str(err.value)


def test_a_damaged_torch_file_is_one_line(tmp_path, weights) -> None:
    torch.save(weights, tmp_path / "w.pt")
    raw = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(tmp_path / "cut.pt")
    assert _one_line(err).startswith(f"{tmp_path / 'cut.pt'}: cannot read weights: damaged, or not a PyTorch")


def test_files_are_read_by_content_not_suffix(tmp_path, weights) -> None:
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp_path / "st.bin"))
    torch.save(weights, tmp_path / "torch.safetensors")
    torch.save(weights, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    for name in ("st.bin", "torch.safetensors", "legacy.pth"):
        loaded = pn.load_state_dict(tmp_path / name)
        assert all(torch.equal(loaded[k], weights[k]) for k in weights), name


@pytest.mark.parametrize("source", ["", "   ", None])
def test_no_source_given(source) -> None:
    with pytest.raises(pn.SourceError, match="^no source given"):
        pn.load_state_dict(source)  # type: ignore[arg-type]
