"""Every ```python block of the README and docs/ runs, in order, per file."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import polarnet as pn
from polarnet.cli import build_parser
from polarnet.experiments.datasets import DATASET_LOADERS
from polarnet.models import MODELS

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_python_blocks_run(path: Path, tmp_path, monkeypatch) -> None:
    blocks = BLOCK.findall(path.read_text())
    if path.name in ("README.md", "templates.md", "freeze.md", "transfer.md"):
        assert blocks, f"{path.name} should have runnable examples"
    monkeypatch.chdir(tmp_path)
    registries = (pn.builders.RULES, MODELS, DATASET_LOADERS)  # what examples register is theirs alone
    registered = [set(registry.names()) for registry in registries]
    try:
        namespace: dict[str, object] = {}
        for block in blocks:
            exec(compile(block, str(path), "exec"), namespace)
    finally:
        for registry, before in zip(registries, registered):
            for name in set(registry.names()) - before:
                registry.unregister(name)


def _demo_folders() -> dict[Path, str]:
    """The study folders `make demo` leaves, each with its study, from the demo recipe's own
    commands (parsed as `polarnet` parses them) and `reproduce`'s own plan on the smallest
    machine it runs on (2 cores, no GPU: only the studies every machine runs)."""
    from polarnet.experiments import load_study
    from polarnet.reproduce import Machine, plan_reproduction

    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile has no demo target"
    folders: dict[Path, str] = {}
    for line in recipe.group(1).splitlines():
        words = shlex.split(line)
        if not words or not words[0].endswith("/polarnet"):
            continue
        args = build_parser().parse_args(words[1:])
        if args.command == "run":
            folders[Path(args.out)] = load_study(args.study, quick=args.quick).name
        elif args.command == "reproduce":
            machine = Machine(cores=2, gpu=False)
            folders.update({s.folder: s.key for s in plan_reproduction(args.out, args.budget, machine) if s.will_run})
    return folders


def test_the_readmes_commands_read_the_studies_make_demo_leaves() -> None:
    """Every README command that reads a study folder names one that `make demo` writes (and
    `theory --from` an xor5d-width study), so each works right after `make demo`."""
    folders = _demo_folders()
    assert {"xor5d", "xor5d-width"} <= set(folders.values()), folders
    commands = [shlex.split(line, comments=True) for block in re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
                for line in block.splitlines()]
    read = []
    for words in commands:
        if words[:1] != ["polarnet"] or words[1:2] == ["--version"]:
            continue
        args = build_parser().parse_args(words[1:])
        studies = {"results": ["folder"], "report": ["folder"], "compare": ["folder_a", "folder_b"],
                   "theory": ["from_dir"]}.get(args.command, [])
        for field in studies:
            folder = getattr(args, field)
            if folder is None:
                continue
            read.append(folder)
            assert Path(folder) in folders, f"README: `{' '.join(words)}` reads {folder}, which make demo does not write"
            if args.command == "theory":
                assert folders[Path(folder)] == "xor5d-width", f"README: `{' '.join(words)}` needs an xor5d-width study"
    assert len(read) >= 4  # results, report, compare (two) and theory: the test looked at them
