"""The package itself: what ``import polarnet`` gives."""

from __future__ import annotations

import subprocess
import sys

import polarnet


def test_public_api_is_listed() -> None:
    for name in polarnet.__all__:
        assert hasattr(polarnet, name), name


def test_experiments_and_analysis_are_reachable_after_a_plain_import() -> None:
    code = ("import polarnet, sys; assert 'polarnet.experiments' not in sys.modules; "
            "print(polarnet.experiments.load_study('xor5d').trials, polarnet.analysis.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["50", "polarnet.analysis"]


def test_unknown_attributes_still_raise() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        polarnet.nope  # noqa: B018


def test_import_polarnet_is_instant_and_loads_no_torch() -> None:
    """The command installs its signal handlers before torch loads (tests/test_interrupt.py)."""
    code = "import sys, polarnet, polarnet.cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_public_functions_keep_their_names_after_their_modules_are_imported() -> None:
    import polarnet.freeze  # noqa: F401  (binds the submodule on the package)
    import polarnet.transfer  # noqa: F401

    assert callable(polarnet.freeze) and polarnet.freeze.__name__ == "freeze"
    assert callable(polarnet.transfer) and polarnet.transfer.__module__ == "polarnet.transfer"
    from polarnet import freeze

    assert freeze is polarnet.freeze


def test_the_version_is_stated_once_in_the_code_and_agrees_with_pyproject() -> None:
    """Low layers read it from ``polarnet._version``, never from the package top (which
    re-exports them); the packaging metadata in pyproject.toml must say the same number."""
    import tomllib
    from pathlib import Path

    from polarnet._version import __version__

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == __version__ == polarnet.__version__
