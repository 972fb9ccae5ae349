from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import polarnet as pn
from polarnet.cli import main


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(16, 10))
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    return net, path


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


def test_console_script_is_installed(tmp_path, model_file) -> None:
    _, path = model_file
    out = tmp_path / "t.plt"
    done = subprocess.run([sys.executable, "-m", "polarnet.cli", "template", "extract", str(path), "-o", str(out)],
                          capture_output=True, text=True, check=True)
    assert "wrote" in done.stdout and out.exists()
