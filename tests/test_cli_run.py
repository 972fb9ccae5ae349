"""``polarnet run`` (polarnet/cli/run.py)."""

from __future__ import annotations

import pytest

import polarnet as pn
from polarnet.cli import main
from helpers import TINY


def test_run_prints_the_summary_and_resumes(tmp_path, capsys) -> None:
    out = tmp_path / "study"
    assert main(["run", "xor5d", "--out", str(out), *TINY]) == 0
    text = capsys.readouterr().out
    assert "xor5d: 12 runs trained, 0 already done in" in text
    assert "epochs to 80%" in text and "frozen_sufficient" in text and "fluid_rand" in text
    assert "Diagnostics:" in text
    assert (out / "results.sqlite").is_file()
    assert main(["run", "xor5d", "--out", str(out), *TINY]) == 0
    assert "0 runs trained, 12 already done in" in capsys.readouterr().out


def test_run_quick_uses_the_preset_quick_table(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", "xor5d-reset", "--quick", "--set", "trials=1", "--set", "epochs=2", "--workers", "1",
                 "--no-progress"]) == 0
    # [quick] sizes [20, 60, 100]; frozen conditions once per reset rule (4), fluid once
    assert "xor5d-reset: 27 runs trained" in capsys.readouterr().out
    assert (tmp_path / "out" / "xor5d-reset-quick" / "results.sqlite").is_file()


def test_bad_settings_are_rejected_before_anything_runs(tmp_path, capsys) -> None:
    out = tmp_path / "bad"
    assert main(["run", "xor5d", "--out", str(out), "--set", "trials=0"]) == 2
    assert "trials=0: must be >= 1" in capsys.readouterr().err
    assert main(["run", "xor5d", "--out", str(out), "--set", "colour=3"]) == 2
    assert "unknown setting(s) ['colour']" in capsys.readouterr().err
    assert not out.exists()


def test_run_summary_flags_runs_that_cannot_be_trusted(tmp_path, capsys) -> None:
    out = tmp_path / "hot"
    assert main(["run", "xor5d", "--out", str(out), *TINY, "--set", "lr=3", "--set", "epochs=5"]) == 0
    text = capsys.readouterr().out
    assert "excess_resets" in text and "hint: lower the learning rate (lr = 3 here)" in text


def test_the_interruption_line_counts_runs_in_the_default_folder(tmp_path, monkeypatch, capsys) -> None:
    import signal

    import polarnet.experiments as experiments

    monkeypatch.chdir(tmp_path)
    assert main(["run", "xor5d", *TINY]) == 0
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise experiments.Interrupted(signal.SIGINT)

    monkeypatch.setattr(experiments, "run_study", interrupted)
    assert main(["run", "xor5d", *TINY]) == 130
    assert "(12 runs done in out/xor5d)" in capsys.readouterr().err

    # an ensemble and a run left part-trained are named: the resume continues them
    (tmp_path / "out" / "xor5d" / "checkpoints").mkdir()
    (tmp_path / "out" / "xor5d" / "checkpoints" / "ensemble-abc.pt").write_bytes(b"")
    (tmp_path / "out" / "xor5d" / "checkpoints" / "run-key.pt").write_bytes(b"")
    assert main(["run", "xor5d", *TINY]) == 130
    assert "(12 runs done in out/xor5d; 1 ensemble and 1 run part-trained, resumed from their checkpoints)" \
        in capsys.readouterr().err


@pytest.mark.parametrize(("body", "said"), [("return 'x'", "returned str, not an nn.Module"),
                                            ("return None", "returned NoneType, not an nn.Module"),
                                            ("sys.exit(3)", "called sys.exit(3) instead of returning an nn.Module")])
def test_run_with_a_factory_that_gives_no_model_exits_2_naming_it(body, said, tmp_path, monkeypatch, capsys) -> None:
    module = f"hostile_cli_demo_{abs(hash(body))}"  # one module per case: imports are cached
    (tmp_path / f"{module}.py").write_text(f"import sys\n\ndef build(**kwargs):\n    {body}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["run", "xor5d", "--set", f"model='{module}:build'", "--set", "trials=1", "--set", "sizes=[8]",
            "--set", "epochs=1", "--out", str(tmp_path / "study"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"model '{module}:build' {said}" in err and "Traceback" not in err


def test_run_and_pretrain_help_say_how_to_bring_your_own_model_and_data(capsys) -> None:
    for argv in (["run", "--help"], ["pretrain", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    run_help, pretrain_help = text.split("usage: polarnet pretrain")
    assert "model = \"package.module:function\"" in run_help and "--set model='mypkg.nets:build'" in run_help
    assert 'dataset = "package.module:function"' in run_help and "polarnet.experiments.datasets.Data" in run_help
    assert "a registered model or your own, 'package.module:function'" in pretrain_help


USER_DATA = '''
import torch
from torch import nn

from polarnet.experiments.datasets import Data


def rings(study, pool_size, train_seed, val_seed):
    def draw(n, seed):
        x = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
        return x, (x.norm(dim=1) > 1.18).float()
    return Data(*draw(pool_size, train_seed), *draw(study.val_size, val_seed), task="binary",
                model_kwargs={"in_features": 2})


def net(in_features, hidden=8):
    return nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))
'''


def test_run_trains_a_dataset_and_model_of_the_users_named_by_module(tmp_path, monkeypatch, capsys) -> None:
    """``dataset = "pkg.mod:fn"`` as ``model`` takes it: polarnet run knew only registered datasets, and a
    registration made in Python can't reach the command. Two worker processes import the module themselves."""
    (tmp_path / "user_rings_data.py").write_text(USER_DATA)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "rings.toml").write_text('dataset = "user_rings_data:rings"\nmodel = "user_rings_data:net"\n'
                                        'conditions = ["frozen_rand", "fluid_rand"]\nsizes = [50, 200]\nhidden = [8]\n'
                                        'trials = 2\nepochs = 3\nval_size = 200\nvectorize = false\n')
    folder = tmp_path / "study"
    assert main(["run", str(tmp_path / "rings.toml"), "--out", str(folder), "--workers", "2", "--no-progress"]) == 0
    capsys.readouterr()
    rows = pn.experiments.load_results(folder)
    assert rows.groupby(["condition", "n_train", "trial"]).ngroups == 8 and len(rows) == 8 * 3  # runs × epochs
    assert rows["val_acc"].between(0, 1).all() and rows["val_acc"].nunique() > 1

    assert main(["run", str(tmp_path / "rings.toml"), "--out", str(tmp_path / "other"), "--no-progress",
                 "--set", "dataset='user_rings_data:ringz'"]) == 2
    assert "dataset 'user_rings_data:ringz': cannot import 'ringz' from 'user_rings_data' (it has no 'ringz')" \
        in capsys.readouterr().err
