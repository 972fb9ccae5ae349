"""The set-up a fresh machine goes through: ``make demo``'s clean-up and the dataset installer
that ``make venv`` runs (``.ci/install-dataset``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.fixture
def demo_tree(tmp_path: Path) -> Path:
    """The Makefile in a folder of its own, with an up-to-date venv whose ``polarnet`` only
    records its arguments (in ``calls``), so ``make demo`` runs its recipe in a second."""
    if shutil.which("make") is None:
        pytest.skip("no make here")
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
        os.utime(tmp_path / name, (0, 0))  # older than the venv's stamp: make won't rebuild it
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "polarnet").write_text('#!/bin/sh\necho "polarnet $*" >> calls\n')
    (bin_dir / "polarnet").chmod(0o755)
    (tmp_path / ".venv" / ".installed").touch()
    return tmp_path


def _make_demo(folder: Path) -> list[str]:
    out = subprocess.run(["make", "-s", "demo"], cwd=folder, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_make_demo_names_each_earlier_result_it_deletes(demo_tree: Path) -> None:
    (demo_tree / "out" / "demo" / "runs").mkdir(parents=True)
    (demo_tree / "out" / "reproduce").mkdir()
    (demo_tree / "out" / "mine").mkdir()
    keep = " (the previous demo's results; to keep them, move the folder before running make demo)"
    assert _make_demo(demo_tree) == [f"make demo: deleting out/demo{keep}", f"make demo: deleting out/reproduce{keep}"]
    assert sorted(p.name for p in (demo_tree / "out").iterdir()) == ["mine"]
    assert (demo_tree / "calls").read_text().splitlines() == [
        "polarnet run xor5d --quick --out out/demo", "polarnet report out/demo",
        "polarnet reproduce --budget quick --out out/reproduce"]
    assert _make_demo(demo_tree) == []  # nothing earlier to delete: nothing said


def _install_dataset(**env: str) -> subprocess.CompletedProcess[str]:
    shell = shutil.which("sh") or "/bin/sh"  # found before a test takes PATH away
    out = subprocess.run([shell, str(ROOT / ".ci" / "install-dataset")], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **env})
    assert out.returncode == 0 and out.stderr == "", out.stderr  # it never fails the set-up
    return out


def test_install_dataset_says_in_one_line_why_it_installs_nothing(tmp_path: Path) -> None:
    """Told not to, or without apt-get: one line with the consequence and the way out (nothing
    at all where the package is installed already)."""
    no_apt = tmp_path / "bin"  # a PATH with the script's tools but no apt-get
    no_apt.mkdir()
    for tool in ("id", "mktemp"):
        (no_apt / tool).symlink_to(shutil.which(tool))
    told = _install_dataset(POLARNET_NO_DATASET="1").stdout
    without_apt = _install_dataset(PATH=str(no_apt), POLARNET_NO_DATASET="").stdout
    if FASHION_MNIST.is_file():
        assert told == without_apt == ""
    else:
        assert told == ("install-dataset: POLARNET_NO_DATASET is set: not installing dataset-fashion-mnist; "
                        "the tests that need Fashion-MNIST will be skipped\n")
        assert without_apt.startswith("install-dataset: no apt-get here: put Fashion-MNIST in $POLARNET_DATA or ")
        assert without_apt.count("\n") == 1
