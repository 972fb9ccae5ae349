"""``polarnet theory xor`` (polarnet/cli/theory.py)."""

from __future__ import annotations

from polarnet.cli import main
from helpers import TINY


def test_theory_prints_and_saves(tmp_path, capsys) -> None:
    out = tmp_path / "t.csv"
    assert main(["theory", "xor", "--units", "3,15", "--dims", "5", "--trials", "2000", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "0.9947" in text and "0.9267" in text  # published and per-class bounds at 15 units
    import pandas as pd

    table = pd.read_csv(out)
    assert table["units"].tolist() == [3, 15]


def test_theory_from_a_width_study(tmp_path, capsys) -> None:
    folder = tmp_path / "width"
    assert main(["run", "xor5d-width", "--out", str(folder), "--set", "trials=2", "--set", "epochs=3",
                 "--set", "sizes=[40]", "--set", "hidden=[3, 10]", "--workers", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["theory", "xor", "--units", "2:4", "--trials", "500", "--from", str(folder)]) == 0
    assert "simulated" in capsys.readouterr().out
    assert (folder / "theory-xor.csv").is_file()


def test_theory_checks_its_folder_before_computing(tmp_path, capsys) -> None:
    import time

    start = time.perf_counter()
    assert main(["theory", "xor", "--units", "1:64", "--trials", "200000", "--from", str(tmp_path / "none")]) == 2
    assert time.perf_counter() - start < 5
    assert "no results.sqlite" in capsys.readouterr().err


def test_theory_takes_dims_from_the_study(tmp_path, capsys) -> None:
    folder = tmp_path / "d7"
    assert main(["run", "xor5d", "--out", str(folder), *TINY, "--set", "dims=7"]) == 0
    capsys.readouterr()
    assert main(["theory", "xor", "--units", "3", "--trials", "100", "--from", str(folder)]) == 0
    assert main(["theory", "xor", "--units", "3", "--trials", "100", "--dims", "5", "--from", str(folder)]) == 2
    assert "dims" in capsys.readouterr().err
