"""``polarnet report``, ``compare`` and ``results`` (polarnet/cli/report.py)."""

from __future__ import annotations

import pytest

from polarnet.cli import main
from helpers import TINY


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_results_export(tmp_path, fmt, capsys) -> None:
    import pandas as pd

    folder = tmp_path / "s"
    assert main(["run", "xor5d", "--out", str(folder), *TINY]) == 0
    assert main(["results", str(folder), "--to", fmt, "-o", str(tmp_path / "export")]) == 0
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    runs = read(tmp_path / "export" / f"runs.{fmt}")
    epochs = read(tmp_path / "export" / f"epochs.{fmt}")
    assert len(runs) == 12 and set(runs["status"]) == {"done"}
    assert len(epochs) == 12 * 3 and {"val_acc", "train_loss", "resets", "sign_changes"} <= set(epochs.columns)


def test_results_of_an_empty_folder_is_a_clear_error(tmp_path, capsys) -> None:
    assert main(["results", str(tmp_path)]) == 2
    assert "no results.sqlite" in capsys.readouterr().err


def test_outputs_never_overwrite_a_study_store(tmp_path, capsys) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        assert main(["run", "xor5d", "--out", str(folder), *TINY]) == 0
    store = (a / "results.sqlite").read_bytes()
    assert main(["compare", str(a), str(b), "-o", str(a / "results.sqlite")]) == 2
    assert "where a study keeps its results" in capsys.readouterr().err
    assert main(["theory", "xor", "--units", "3", "--trials", "10", "--from", str(b), "-o",
                 str(b / "results.sqlite")]) == 2
    assert (a / "results.sqlite").read_bytes() == store
    assert main(["results", str(a), "-o", str(a / "results.sqlite")]) == 2
    assert "is a file; -o names a folder" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "-o", ""]) == 2
    assert "an empty path" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "c.md")]) == 0
    assert (tmp_path / "c.md").read_text().startswith("# xor5d")


def test_compare_prints_the_settings_that_differ(tmp_path, capsys) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["run", "xor5d", "--out", str(a), *TINY]) == 0
    assert main(["run", "xor5d", "--out", str(b), *TINY, "--set", "lr=0.01"]) == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "- lr: 0.03 in A, 0.01 in B" in out and "runs_a" in out


def test_report_on_a_full_disk_names_the_folder_and_the_fix(tmp_path, monkeypatch, capsys) -> None:
    """matplotlib's savefig raises ENOSPC without a file name: the line was only 'No space left on device'."""
    import errno

    from matplotlib.figure import Figure

    study = tmp_path / "study"
    assert main(["run", "xor5d", "--set", "trials=2", "--set", "sizes=[8]", "--set", "epochs=2", "--set", "hidden=[4]",
                 "--out", str(study), "--no-progress"]) == 0
    capsys.readouterr()

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full)
    assert main(["report", str(study)]) == 2
    assert capsys.readouterr().err == (f"polarnet: error: {study}: No space left on device while writing the report; "
                                       f"free space there, or write the report elsewhere with -o FOLDER\n")
    assert main(["report", str(study), "-o", str(tmp_path / "elsewhere")]) == 2
    assert f"error: {tmp_path / 'elsewhere'}: No space left" in capsys.readouterr().err
