"""Every ```python block of the README and docs/ runs, in order, per file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import polarnet as pn

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_python_blocks_run(path: Path, tmp_path, monkeypatch) -> None:
    blocks = BLOCK.findall(path.read_text())
    if path.name in ("README.md", "templates.md", "freeze.md", "transfer.md"):
        assert blocks, f"{path.name} should have runnable examples"
    monkeypatch.chdir(tmp_path)
    registered = set(pn.builders.RULES.names())
    try:
        namespace: dict[str, object] = {}
        for block in blocks:
            exec(compile(block, str(path), "exec"), namespace)
    finally:
        for name in set(pn.builders.RULES.names()) - registered:
            pn.builders.RULES.unregister(name)
