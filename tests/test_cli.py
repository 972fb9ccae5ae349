"""The ``polarnet`` command as a whole (polarnet/cli/__init__.py): the entry points, the parser,
exit codes, one-line errors and the interruption line."""

from __future__ import annotations

import subprocess
import sys

import pytest

import polarnet as pn
from polarnet.cli import main
from helpers import TINY


def test_console_script_is_installed(tmp_path, model_file) -> None:
    _, path = model_file
    out = tmp_path / "t.plt"
    done = subprocess.run([sys.executable, "-m", "polarnet.cli", "template", "extract", str(path), "-o", str(out)],
                          capture_output=True, text=True, check=True)
    assert "wrote" in done.stdout and out.exists()


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"polarnet {pn.__version__}"


def test_out_under_a_regular_file_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "study"):
        assert main(["run", "xor5d", "--out", str(out), *TINY]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "not a folder" in err or "Not a directory" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["theory", "xor", "--trials", "-5"], "--trials: -5: must be >= 1"),
    (["theory", "xor", "--units", "5:1"], "an empty range"),
    (["theory", "xor", "--units", "0:3"], "must be >= 1"),
    (["compare", "a", "b", "--threshold", "nan"], "an accuracy in (0, 1]"),
    (["run", "xor5d", "--workers", "-3"], "--workers: -3: must be >= 1"),
    (["pretrain", "--dataset", "mnist", "-o", "x.pt", "--epochs", "0"], "--epochs: 0: must be >= 1"),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert message in capsys.readouterr().err


def test_a_keyboard_interrupt_is_one_line_and_exit_130(monkeypatch, capsys) -> None:
    import polarnet.cli.presets as presets

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(presets, "_presets", interrupted)
    assert main(["presets"]) == 130
    assert capsys.readouterr().err == "polarnet: interrupted by SIGINT\n"


def test_each_command_lives_in_its_own_module() -> None:
    """polarnet/cli is one module per subcommand or family; main only assembles the parser."""
    from polarnet.cli import build_parser

    argvs = {"template": ["template", "info", "t.plt"], "run": ["run", "xor5d"], "reproduce": ["reproduce"],
             "pretrain": ["pretrain", "--dataset", "mnist", "-o", "s.pt"], "presets": ["presets"],
             "theory": ["theory", "xor"], "report": ["report", "f"], "compare": ["compare", "a", "b"],
             "results": ["results", "f"]}
    owners = {name: build_parser().parse_args(argv).func.__module__ for name, argv in argvs.items()}
    assert owners == {"template": "polarnet.cli.template", "run": "polarnet.cli.run",
                      "reproduce": "polarnet.cli.reproduce", "pretrain": "polarnet.cli.pretrain",
                      "presets": "polarnet.cli.presets", "theory": "polarnet.cli.theory",
                      "report": "polarnet.cli.report", "compare": "polarnet.cli.report",
                      "results": "polarnet.cli.report"}


def test_the_interruption_line_says_what_each_command_kept(tmp_path, monkeypatch, capsys) -> None:
    """Each command adds its own words to the one line (nothing for a command that keeps nothing)."""
    import signal

    import polarnet.experiments as experiments
    import polarnet.reproduce as reproduce

    def stop(*args, **kwargs):
        raise experiments.Interrupted(signal.SIGTERM)

    monkeypatch.setattr(experiments, "run_study", stop)
    monkeypatch.setattr(reproduce, "reproduce", stop)
    assert main(["run", "xor5d", "--out", str(tmp_path / "study"), "--no-progress"]) == 143
    assert capsys.readouterr().err == ("polarnet: interrupted by SIGTERM; finished runs are kept. Run the same "
                                       "command again to resume\n")
    assert main(["reproduce", "--out", str(tmp_path / "all"), "--no-progress"]) == 143
    assert capsys.readouterr().err == ("polarnet: interrupted by SIGTERM; finished studies and runs are kept. Run "
                                       "the same command again to resume\n")
    monkeypatch.setattr(experiments, "list_presets", stop)
    assert main(["presets"]) == 143
    assert capsys.readouterr().err == "polarnet: interrupted by SIGTERM\n"
