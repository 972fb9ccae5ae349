"""``polarnet pretrain`` (polarnet/cli/pretrain.py)."""

from __future__ import annotations

import pytest

from polarnet.cli import main


def test_pretrain_failures_are_one_line(tmp_path, capsys) -> None:
    (tmp_path / "dir").mkdir()
    assert main(["pretrain", "--dataset", "fashion_mnist", "-o", str(tmp_path / "dir")]) == 2  # before training
    assert "is a folder" in capsys.readouterr().err
    assert main(["pretrain", "--dataset", "fashion_mnist", "--arch", "mlp", "-o", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polarnet: error:") and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["pretrain", "--dataset", "fashion_mnist", "--classes", "a,b", "-o", str(tmp_path / "m.pt")])
    assert "--classes: 'a,b': expected comma-separated class indices" in capsys.readouterr().err
