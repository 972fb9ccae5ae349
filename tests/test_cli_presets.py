"""``polarnet presets`` (polarnet/cli/presets.py)."""

from __future__ import annotations

from polarnet.cli import main


def test_presets_lists_every_preset_with_its_cost(capsys) -> None:
    assert main(["presets"]) == 0
    text = capsys.readouterr().out
    for name, runs in (("xor5d", "1,650 runs"), ("xor5d-width", "52,800 runs"), ("xor5d-reset", "4,950 runs")):
        assert name in text and runs in text
    assert "--quick:" in text
