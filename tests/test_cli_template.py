"""``polarnet template extract | info | proportions`` (polarnet/cli/template.py)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import polarnet as pn
from polarnet.cli import main


def test_extract_info_proportions_round_trip(tmp_path, model_file, capsys) -> None:
    net, path = model_file
    out = tmp_path / "net.plt"
    assert main(["template", "extract", str(path), "-o", str(out)]) == 0
    t = pn.PolarityTemplate.load(out)
    assert list(t) == ["0.weight", "2.weight"]
    assert torch.equal(t["0.weight"], torch.sign(net[0].weight).to(torch.int8))
    assert t.meta["extracted_from"] == str(path)

    capsys.readouterr()
    assert main(["template", "info", str(out)]) == 0
    text = capsys.readouterr().out
    p0, pn_, pp = t.proportions()["2.weight"]
    assert f"{p0:.4f}  {pn_:.4f}  {pp:.4f}" in text and "(10, 16)" in text
    size = out.stat().st_size
    assert f"size on disk: {size:,} bytes" in text
    assert f"compression {4 * t.numel() / size:.1f}x" in text

    props = tmp_path / "p.json"
    assert main(["template", "proportions", str(out), "-o", str(props)]) == 0
    assert pn.load_proportions(props) == t.proportions()
    assert json.loads(props.read_text())["layers"]["2.weight"]["numel"] == 160


def test_extract_layer_selection(tmp_path, model_file) -> None:
    _, path = model_file
    for layers, expected in (("conv", ["0.weight"]), ("2.*", ["2.weight", "2.bias"]), ("0.weight,2.bias", ["0.weight", "2.bias"])):
        out = tmp_path / "sel.plt"
        assert main(["template", "extract", str(path), "-o", str(out), "--layers", layers]) == 0
        assert list(pn.PolarityTemplate.load(out)) == expected
    assert main(["template", "extract", str(path), "-o", str(out), "--layers", "linear", "--bias"]) == 0
    assert list(pn.PolarityTemplate.load(out)) == ["2.weight", "2.bias"]


def test_errors_are_one_clear_line_and_exit_2(tmp_path, model_file, capsys) -> None:
    _, path = model_file
    assert main(["template", "extract", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "x.plt")]) == 2
    assert "neither an existing file" in capsys.readouterr().err
    (tmp_path / "broken.plt").write_bytes(b"PLRTMPL\n\x01\x00")
    assert main(["template", "info", str(tmp_path / "broken.plt")]) == 2
    assert "truncated" in capsys.readouterr().err
    assert main(["template", "extract", str(path), "-o", str(tmp_path / "x.plt"), "--layers", "nomatch*"]) == 2
    assert "selects no parameter" in capsys.readouterr().err


@pytest.fixture
def offline_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache that HF_HOME names; HF_HUB_OFFLINE=1."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf" / "hub"


def _signs(weights: dict[str, torch.Tensor], template: pn.PolarityTemplate) -> None:
    assert list(template) and all(torch.equal(template[k], torch.sign(weights[k]).to(torch.int8)) for k in template)


def test_extract_timm_and_hf_names_from_the_hub_cache(tmp_path, offline_hub_cache, capsys) -> None:
    """`template extract timm:MODEL` and `hf:REPO` end to end, offline, from files laid out as huggingface_hub does."""
    timm = pytest.importorskip("timm")
    from test_sources import put_in_hub_cache

    torch.manual_seed(2)
    timm_weights = timm.create_model("test_resnet.r160_in1k", pretrained=False).state_dict()
    put_in_hub_cache(offline_hub_cache, "timm/test_resnet.r160_in1k", "model.safetensors", timm_weights)
    out = tmp_path / "timm.plt"
    assert main(["template", "extract", "timm:test_resnet.r160_in1k", "-o", str(out)]) == 0
    t = pn.PolarityTemplate.load(out)
    _signs(timm_weights, t)
    assert "conv1.0.weight" in t and "fc.weight" in t and t.meta["extracted_from"] == "timm:test_resnet.r160_in1k"

    hf_weights = nn.Sequential(nn.Embedding(30, 8), nn.Linear(8, 8), nn.Linear(8, 2)).state_dict()
    put_in_hub_cache(offline_hub_cache, "prajjwal1/bert-tiny", "pytorch_model.bin", hf_weights, fmt="torch")
    out = tmp_path / "hf.plt"
    assert main(["template", "extract", "hf:prajjwal1/bert-tiny", "-o", str(out), "--layers", "[12].*"]) == 0
    t = pn.PolarityTemplate.load(out)
    _signs(hf_weights, t)
    assert sorted(t) == ["1.bias", "1.weight", "2.bias", "2.weight"]
    assert "wrote" in capsys.readouterr().out


def test_extract_named_weights_errors_are_one_line(tmp_path, offline_hub_cache, capsys) -> None:
    pytest.importorskip("timm")
    out = str(tmp_path / "t.plt")
    assert main(["template", "extract", "hf:prajjwal1/bert-tiny", "-o", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"is not in the Hugging Face cache {offline_hub_cache}" in err
    assert f"{offline_hub_cache}/models--prajjwal1--bert-tiny/snapshots/COMMIT/model.safetensors" in err
    assert main(["template", "extract", "timm:convnext_atto", "-o", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{offline_hub_cache}/models--timm--convnext_atto.d2_in1k/snapshots/" in err
    assert main(["template", "extract", "timm:resnet1800", "-o", out]) == 2
    assert "has no model 'resnet1800'; close names: resnet18" in capsys.readouterr().err
    assert not (tmp_path / "t.plt").exists()


def test_outputs_never_overwrite_their_inputs(tmp_path, model_file, capsys) -> None:
    _, path = model_file
    plt = tmp_path / "t.plt"
    assert main(["template", "extract", str(path), "-o", str(plt)]) == 0
    before = plt.read_bytes()
    assert main(["template", "proportions", str(plt), "-o", str(plt)]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert plt.read_bytes() == before
    weights = path.read_bytes()
    assert main(["template", "extract", str(path), "-o", str(path)]) == 2
    assert "is the input file" in capsys.readouterr().err and path.read_bytes() == weights
    assert main(["template", "extract", str(path), "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.tmp"))


def test_output_errors_name_the_path_asked_for_and_the_right_suffix(tmp_path, model_file, capsys) -> None:
    """The write goes through a temporary file beside the output: its name ('.a.plt.123.tmp')
    was what the user saw; and a folder given to -o was answered with the input's suffix."""
    _, path = model_file
    out = tmp_path / "missing" / "dir" / "a.plt"
    assert main(["template", "extract", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"polarnet: error: {out}: the folder {out.parent} does not exist; create it first, or write "
                   f"elsewhere\n")
    (tmp_path / "folder.plt").mkdir()
    assert main(["template", "extract", str(path), "-o", str(tmp_path / "folder.plt")]) == 2
    assert f"(e.g. {tmp_path / 'folder.plt' / 'out.plt'})" in capsys.readouterr().err
    template = tmp_path / "t.plt"
    assert main(["template", "extract", str(path), "-o", str(template)]) == 0
    assert main(["template", "proportions", str(template), "-o", str(tmp_path / "folder.plt")]) == 2
    assert f"(e.g. {tmp_path / 'folder.plt' / 'out.json'})" in capsys.readouterr().err
