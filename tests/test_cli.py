from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import polarnet as pn
from polarnet.cli import main


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(16, 10))
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    return net, path


def test_extract_info_proportions_round_trip(tmp_path, model_file, capsys) -> None:
    net, path = model_file
    out = tmp_path / "net.plt"
    assert main(["template", "extract", str(path), "-o", str(out)]) == 0
    t = pn.PolarityTemplate.load(out)
    assert list(t) == ["0.weight", "2.weight"]
    assert torch.equal(t["0.weight"], torch.sign(net[0].weight).to(torch.int8))
    assert t.meta["extracted_from"] == str(path)

    capsys.readouterr()
    assert main(["template", "info", str(out)]) == 0
    text = capsys.readouterr().out
    p0, pn_, pp = t.proportions()["2.weight"]
    assert f"{p0:.4f}  {pn_:.4f}  {pp:.4f}" in text and "(10, 16)" in text
    size = out.stat().st_size
    assert f"size on disk: {size:,} bytes" in text
    assert f"compression {4 * t.numel() / size:.1f}x" in text

    props = tmp_path / "p.json"
    assert main(["template", "proportions", str(out), "-o", str(props)]) == 0
    assert pn.load_proportions(props) == t.proportions()
    assert json.loads(props.read_text())["layers"]["2.weight"]["numel"] == 160


def test_extract_layer_selection(tmp_path, model_file) -> None:
    _, path = model_file
    for layers, expected in (("conv", ["0.weight"]), ("2.*", ["2.weight", "2.bias"]), ("0.weight,2.bias", ["0.weight", "2.bias"])):
        out = tmp_path / "sel.plt"
        assert main(["template", "extract", str(path), "-o", str(out), "--layers", layers]) == 0
        assert list(pn.PolarityTemplate.load(out)) == expected
    assert main(["template", "extract", str(path), "-o", str(out), "--layers", "linear", "--bias"]) == 0
    assert list(pn.PolarityTemplate.load(out)) == ["2.weight", "2.bias"]


def test_errors_are_one_clear_line_and_exit_2(tmp_path, model_file, capsys) -> None:
    _, path = model_file
    assert main(["template", "extract", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "x.plt")]) == 2
    assert "neither an existing file" in capsys.readouterr().err
    (tmp_path / "broken.plt").write_bytes(b"PLRTMPL\n\x01\x00")
    assert main(["template", "info", str(tmp_path / "broken.plt")]) == 2
    assert "truncated" in capsys.readouterr().err
    assert main(["template", "extract", str(path), "-o", str(tmp_path / "x.plt"), "--layers", "nomatch*"]) == 2
    assert "selects no parameter" in capsys.readouterr().err


def test_console_script_is_installed(tmp_path, model_file) -> None:
    _, path = model_file
    out = tmp_path / "t.plt"
    done = subprocess.run([sys.executable, "-m", "polarnet.cli", "template", "extract", str(path), "-o", str(out)],
                          capture_output=True, text=True, check=True)
    assert "wrote" in done.stdout and out.exists()


@pytest.fixture
def offline_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache that HF_HOME names; HF_HUB_OFFLINE=1."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf" / "hub"


def _signs(weights: dict[str, torch.Tensor], template: pn.PolarityTemplate) -> None:
    assert list(template) and all(torch.equal(template[k], torch.sign(weights[k]).to(torch.int8)) for k in template)


def test_extract_timm_and_hf_names_from_the_hub_cache(tmp_path, offline_hub_cache, capsys) -> None:
    """`template extract timm:MODEL` and `hf:REPO` end to end, offline, from files laid out as huggingface_hub does."""
    timm = pytest.importorskip("timm")
    from test_sources import put_in_hub_cache

    torch.manual_seed(2)
    timm_weights = timm.create_model("test_resnet.r160_in1k", pretrained=False).state_dict()
    put_in_hub_cache(offline_hub_cache, "timm/test_resnet.r160_in1k", "model.safetensors", timm_weights)
    out = tmp_path / "timm.plt"
    assert main(["template", "extract", "timm:test_resnet.r160_in1k", "-o", str(out)]) == 0
    t = pn.PolarityTemplate.load(out)
    _signs(timm_weights, t)
    assert "conv1.0.weight" in t and "fc.weight" in t and t.meta["extracted_from"] == "timm:test_resnet.r160_in1k"

    hf_weights = nn.Sequential(nn.Embedding(30, 8), nn.Linear(8, 8), nn.Linear(8, 2)).state_dict()
    put_in_hub_cache(offline_hub_cache, "prajjwal1/bert-tiny", "pytorch_model.bin", hf_weights, fmt="torch")
    out = tmp_path / "hf.plt"
    assert main(["template", "extract", "hf:prajjwal1/bert-tiny", "-o", str(out), "--layers", "[12].*"]) == 0
    t = pn.PolarityTemplate.load(out)
    _signs(hf_weights, t)
    assert sorted(t) == ["1.bias", "1.weight", "2.bias", "2.weight"]
    assert "wrote" in capsys.readouterr().out


def test_extract_named_weights_errors_are_one_line(tmp_path, offline_hub_cache, capsys) -> None:
    pytest.importorskip("timm")
    out = str(tmp_path / "t.plt")
    assert main(["template", "extract", "hf:prajjwal1/bert-tiny", "-o", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"is not in the Hugging Face cache {offline_hub_cache}" in err
    assert f"{offline_hub_cache}/models--prajjwal1--bert-tiny/snapshots/COMMIT/model.safetensors" in err
    assert main(["template", "extract", "timm:convnext_atto", "-o", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{offline_hub_cache}/models--timm--convnext_atto.d2_in1k/snapshots/" in err
    assert main(["template", "extract", "timm:resnet1800", "-o", out]) == 2
    assert "has no model 'resnet1800'; close names: resnet18" in capsys.readouterr().err
    assert not (tmp_path / "t.plt").exists()


# --------------------------------------------------------------------------- experiments

TINY = ["--set", "trials=2", "--set", "epochs=3", "--set", "sizes=[8, 40]", "--workers", "1", "--no-progress"]


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


def test_presets_lists_every_preset_with_its_cost(capsys) -> None:
    assert main(["presets"]) == 0
    text = capsys.readouterr().out
    for name, runs in (("xor5d", "1,650 runs"), ("xor5d-width", "52,800 runs"), ("xor5d-reset", "4,950 runs")):
        assert name in text and runs in text
    assert "--quick:" in text


def test_theory_prints_and_saves(tmp_path, capsys) -> None:
    out = tmp_path / "t.csv"
    assert main(["theory", "xor", "--units", "3,15", "--dims", "5", "--trials", "2000", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "0.9947" in text and "0.9267" in text  # published and per-class bounds at 15 units
    import pandas as pd

    table = pd.read_csv(out)
    assert table["units"].tolist() == [3, 15]


def test_theory_from_a_width_study(tmp_path, capsys) -> None:
    folder = tmp_path / "width"
    assert main(["run", "xor5d-width", "--out", str(folder), "--set", "trials=2", "--set", "epochs=3",
                 "--set", "sizes=[40]", "--set", "hidden=[3, 10]", "--workers", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["theory", "xor", "--units", "2:4", "--trials", "500", "--from", str(folder)]) == 0
    assert "simulated" in capsys.readouterr().out
    assert (folder / "theory-xor.csv").is_file()


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


# --------------------------------------------------------------------------- bad input: one line, no traceback

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


def test_outputs_never_overwrite_their_inputs(tmp_path, model_file, capsys) -> None:
    _, path = model_file
    plt = tmp_path / "t.plt"
    assert main(["template", "extract", str(path), "-o", str(plt)]) == 0
    before = plt.read_bytes()
    assert main(["template", "proportions", str(plt), "-o", str(plt)]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert plt.read_bytes() == before
    weights = path.read_bytes()
    assert main(["template", "extract", str(path), "-o", str(path)]) == 2
    assert "is the input file" in capsys.readouterr().err and path.read_bytes() == weights
    assert main(["template", "extract", str(path), "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.tmp"))


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


def test_theory_checks_its_folder_before_computing(tmp_path, capsys) -> None:
    import time

    start = time.perf_counter()
    assert main(["theory", "xor", "--units", "1:64", "--trials", "200000", "--from", str(tmp_path / "none")]) == 2
    assert time.perf_counter() - start < 5
    assert "no results.sqlite" in capsys.readouterr().err


def test_a_keyboard_interrupt_is_one_line_and_exit_130(monkeypatch, capsys) -> None:
    import polarnet.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_presets", interrupted)
    assert main(["presets"]) == 130
    assert capsys.readouterr().err == "polarnet: interrupted by SIGINT\n"


def test_run_summary_flags_runs_that_cannot_be_trusted(tmp_path, capsys) -> None:
    out = tmp_path / "hot"
    assert main(["run", "xor5d", "--out", str(out), *TINY, "--set", "lr=3", "--set", "epochs=5"]) == 0
    text = capsys.readouterr().out
    assert "excess_resets" in text and "hint: lower the learning rate (lr = 3 here)" in text


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


def test_compare_prints_the_settings_that_differ(tmp_path, capsys) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["run", "xor5d", "--out", str(a), *TINY]) == 0
    assert main(["run", "xor5d", "--out", str(b), *TINY, "--set", "lr=0.01"]) == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "- lr: 0.03 in A, 0.01 in B" in out and "runs_a" in out


def test_theory_takes_dims_from_the_study(tmp_path, capsys) -> None:
    folder = tmp_path / "d7"
    assert main(["run", "xor5d", "--out", str(folder), *TINY, "--set", "dims=7"]) == 0
    capsys.readouterr()
    assert main(["theory", "xor", "--units", "3", "--trials", "100", "--from", str(folder)]) == 0
    assert main(["theory", "xor", "--units", "3", "--trials", "100", "--dims", "5", "--from", str(folder)]) == 2
    assert "dims" in capsys.readouterr().err


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


def test_output_errors_name_the_path_asked_for_and_the_right_suffix(tmp_path, model_file, capsys) -> None:
    """The write goes through a temporary file beside the output: its name ('.a.plt.123.tmp')
    was what the user saw; and a folder given to -o was answered with the input's suffix."""
    _, path = model_file
    out = tmp_path / "missing" / "dir" / "a.plt"
    assert main(["template", "extract", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"polarnet: error: {out}: the folder {out.parent} does not exist; create it first, or write "
                   f"elsewhere\n")
    (tmp_path / "folder.plt").mkdir()
    assert main(["template", "extract", str(path), "-o", str(tmp_path / "folder.plt")]) == 2
    assert f"(e.g. {tmp_path / 'folder.plt' / 'out.plt'})" in capsys.readouterr().err
    template = tmp_path / "t.plt"
    assert main(["template", "extract", str(path), "-o", str(template)]) == 0
    assert main(["template", "proportions", str(template), "-o", str(tmp_path / "folder.plt")]) == 2
    assert f"(e.g. {tmp_path / 'folder.plt' / 'out.json'})" in capsys.readouterr().err


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
