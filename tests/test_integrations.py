"""polarnet.integrations: the package imports no trainer library, and each adapter that misses its
library says which extra to install."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


def test_importing_the_package_imports_no_trainer_library() -> None:
    code = ("import sys, polarnet.integrations; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'pytorch_lightning', "
            "'transformers', 'accelerate', 'torch'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("module, hidden, extra", [
    ("lightning", ["lightning", "lightning.pytorch"], 'pip install "polarnet[lightning]"'),
    ("pytorch_lightning", ["pytorch_lightning"], "pip install pytorch-lightning"),
    ("hf", ["transformers", "transformers.trainer_utils"], 'pip install "polarnet[hf]"'),
])
def test_a_missing_library_names_the_extra(monkeypatch, module, hidden, extra) -> None:
    for name in hidden:
        monkeypatch.setitem(sys.modules, name, None)  # "not installed"
    monkeypatch.delitem(sys.modules, f"polarnet.integrations.{module}", raising=False)
    with pytest.raises(ImportError, match=extra.replace("[", r"\[").replace("]", r"\]")):
        importlib.import_module(f"polarnet.integrations.{module}")
