"""``polarnet reproduce``: the budget table, the plan and its reasons, running, resuming, the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import polarnet.reproduce as rp
from polarnet.analysis.scorecard import required_points
from polarnet.cli import main
from polarnet.experiments import load_study
from polarnet.reproduce import (BUDGETS, CPU_LIMITS, Machine, Settings, format_plan, missing_dataset, missing_weights,
                                plan_reproduction, reproduce, required_keys, settings_for)

REQUIRED = required_keys()
TINY = Settings(overrides=("trials=1", "epochs=2", "sizes=[8]"))


@pytest.fixture
def everything(monkeypatch):
    """A machine with every dataset and every source weights file."""
    monkeypatch.setattr(rp, "missing_dataset", lambda name, root=None: None)
    monkeypatch.setattr(rp, "missing_weights", lambda source: None)


@pytest.fixture
def bare(monkeypatch, tmp_path):
    """This machine with empty caches: no CIFAR-10, no torch hub weights, Fashion-MNIST only where
    Debian puts it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("POLARNET_DATA", raising=False)
    return tmp_path


def _tiny(monkeypatch, keys=("xor5d",)):
    """Only ``keys``, each a one-run-per-condition XOR study; no scorecard (its own tests cover it)."""
    monkeypatch.setattr(rp, "required_keys", lambda: {k: () for k in keys})
    for key in keys:
        monkeypatch.setitem(rp.BUDGET_SETTINGS, key, {b: TINY for b in BUDGETS})
    written = []
    monkeypatch.setattr(rp, "_write_scorecard", lambda out, outcomes, budget: written.append(list(outcomes)))
    return written


# --------------------------------------------------------------------------- the budget table

def test_every_study_the_claims_need_has_settings_in_every_budget() -> None:
    assert set(REQUIRED) <= set(rp.BUDGET_SETTINGS)
    for key in REQUIRED:
        assert set(rp.BUDGET_SETTINGS[key]) == set(BUDGETS), key


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("key", sorted(REQUIRED))
def test_budget_settings_keep_what_the_claims_need(key: str, budget: str) -> None:
    """Every budget keeps the conditions, hidden sizes and reset rules the claims read; a reduced
    budget drops only the largest training sets, never one inside its range."""
    settings = settings_for(key, budget)
    study = load_study(key, list(settings.overrides), quick=settings.quick, validate=False)
    assert set(REQUIRED[key]) <= set(study.conditions)
    points = required_points().get(key, {})
    assert set(points.get("hidden", ())) <= set(study.hidden) or study.dataset != "xor"
    assert set(points.get("resets", ())) <= set(study.resets) or study.dataset != "xor"
    assert {n for n in points.get("sizes", ()) if n <= max(study.sizes)} <= set(study.sizes)
    assert settings.reduced == (budget == "quick" or settings != rp.PAPER)
    if budget == "gpu":
        assert not settings.reduced  # the paper's settings


def test_quick_budget_fits_five_minutes_on_two_cores_with_everything_present(everything) -> None:
    machine = Machine(cores=2, gpu=False)
    plan = plan_reproduction("out", "quick", machine)
    running = [p for p in plan if p.will_run]
    assert sum(p.seconds for p in running) <= CPU_LIMITS["quick"].total < 300
    assert {"xor5d", "xor5d-width", "xor5d-reset"} <= {p.key for p in running}
    for p in plan:
        assert p.settings.reduced
        if not p.will_run:  # what no longer fits says so, with its cost here
            assert p.reason.startswith("needs a GPU (or --budget cpu): ~") and " on 2 CPU cores " in p.reason


def test_with_a_gpu_every_budget_runs_everything(everything) -> None:
    for budget in BUDGETS:
        plan = plan_reproduction("out", budget, Machine(cores=2, gpu=True))
        assert [p.key for p in plan if not p.will_run] == []


def test_cpu_budget_runs_the_papers_xor_grids_and_reduced_image_studies(everything) -> None:
    plan = {p.key: p for p in plan_reproduction("out", "cpu", Machine(cores=2, gpu=False))}
    for key in ("xor5d", "xor5d-width", "xor5d-reset"):
        if key in plan:
            assert plan[key].will_run and not plan[key].settings.reduced
    for p in plan.values():
        assert p.will_run and p.seconds <= CPU_LIMITS["cpu"].study
        if p.study.dataset != "xor":
            assert p.settings.reduced


def test_gpu_budget_without_a_gpu_says_what_it_would_cost(everything) -> None:
    plan = {p.key: p for p in plan_reproduction("out", "gpu", Machine(cores=2, gpu=False))}
    assert plan["xor5d"].will_run
    alexnet = plan["fmnist-alexnet"]
    assert not alexnet.will_run and alexnet.reason.startswith("needs a GPU: ~")
    assert "days on 2 CPU cores" in alexnet.reason
    on_one_core = {p.key: p for p in plan_reproduction("out", "gpu", Machine(cores=1, gpu=False))}["fmnist-alexnet"]
    assert on_one_core.seconds > alexnet.seconds and "on 1 CPU core " in on_one_core.reason


def test_a_gpu_left_out_by_device_cpu_is_named(everything) -> None:
    machine = Machine(cores=2, gpu=False, idle_gpu=True)
    alexnet = {p.key: p for p in plan_reproduction("out", "gpu", machine)}["fmnist-alexnet"]
    assert alexnet.reason.endswith("; this machine has one: leave out --device cpu")
    assert machine.describe() == "2 CPU cores, a GPU left out by --device cpu"


def test_missing_cifar10_and_weights_are_each_named(monkeypatch) -> None:
    monkeypatch.setattr(rp, "missing_dataset",
                        lambda name, root=None: "needs CIFAR-10: X" if name == "cifar10" else None)
    monkeypatch.setattr(rp, "missing_weights", lambda source: "needs ImageNet AlexNet weights: Y")
    plan = {p.key: p for p in plan_reproduction("out", "gpu", Machine(cores=2, gpu=True))}
    assert plan["xor5d"].will_run
    assert plan["cifar10-alexnet"].reason == "needs CIFAR-10: X; needs ImageNet AlexNet weights: Y"
    assert plan["fmnist-alexnet"].reason == "needs ImageNet AlexNet weights: Y"
    if "spin-table1" in plan:  # proportions from a file: no weights needed
        assert plan["spin-table1"].reason == "needs CIFAR-10: X"


# --------------------------------------------------------------------------- reasons true on this machine

def test_reasons_on_this_machine_without_cifar10_weights_or_gpu(bare) -> None:
    out = bare / "out"
    machine = Machine.detect(out / "data")
    plan = {p.key: p for p in plan_reproduction(out, "gpu", machine)}
    hub = bare / "torch" / "hub" / "checkpoints"
    cifar = out / "data" / "cifar-10-batches-py"
    assert f"needs CIFAR-10: put torchvision's files (data_batch_1, data_batch_2, …) in {cifar}" in \
        plan["cifar10-alexnet"].reason
    assert f"needs ImageNet AlexNet weights: put alexnet-owt-7be5be79.pth in {hub}" in plan["fmnist-alexnet"].reason
    if not torch.cuda.is_available():
        assert "needs a GPU: ~" in plan["fmnist-alexnet"].reason
    text = format_plan(list(plan.values()), machine, "gpu", out)
    assert "  skip  cifar10-alexnet   " in text and "  run   xor5d   " in text


def test_following_a_reason_makes_it_go_away(bare) -> None:
    """The instructions in the reasons are true: the files where they say make the study runnable."""
    root = bare / "out" / "data"
    assert missing_dataset("cifar10", root).startswith("needs CIFAR-10: ")
    assert missing_weights("AlexNet_Weights.IMAGENET1K_V1").startswith("needs ImageNet AlexNet weights: ")
    (root / "cifar-10-batches-py").mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (root / "cifar-10-batches-py" / name).touch()
    (bare / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    (bare / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth").touch()
    assert missing_dataset("cifar10", root) is None
    assert missing_weights("AlexNet_Weights.IMAGENET1K_V1") is None
    plan = {p.key: p for p in plan_reproduction(bare / "out", "gpu", Machine(cores=2, gpu=True, data_root=root))}
    assert plan["cifar10-alexnet"].will_run


def test_fashion_mnist_reason_names_the_debian_package(no_fashion_mnist, monkeypatch) -> None:
    from dataclasses import replace

    from polarnet.data.images import IMAGE_DATASETS

    reason = missing_dataset("fashion_mnist", no_fashion_mnist / "nowhere")
    assert reason.startswith("needs Fashion-MNIST: apt-get install dataset-fashion-mnist, or put")
    debian = no_fashion_mnist / "debian"  # the package's gzipped files, as it installs them
    debian.mkdir()
    for name in IMAGE_DATASETS["fashion_mnist"].files():
        (debian / f"{name}.gz").touch()
    installed = replace(IMAGE_DATASETS["fashion_mnist"], debian_dir=str(debian))
    monkeypatch.setitem(IMAGE_DATASETS, "fashion_mnist", installed)
    assert missing_dataset("fashion_mnist", no_fashion_mnist / "nowhere") is None


def test_a_weights_file_source_is_checked_and_named(tmp_path) -> None:
    assert missing_weights(str(tmp_path / "w.pt")) == f"needs its source weights: {tmp_path / 'w.pt'} (no such file)"
    (tmp_path / "w.pt").touch()
    assert missing_weights(str(tmp_path / "w.pt")) is None


def test_image_studies_look_in_the_data_root_and_xor_studies_get_none(everything) -> None:
    plan = {p.key: p for p in plan_reproduction("o", "quick", Machine(cores=2, gpu=True, data_root=Path("o/data")))}
    assert plan["fmnist-alexnet"].study.data_root == "o/data"
    assert plan["xor5d"].study.data_root is None


def test_a_source_polarnet_pretrains_goes_into_the_sources_folder(everything, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(rp, "required_keys", lambda: {"fmnist-split-transfer": ()})
    [quick] = plan_reproduction(tmp_path, "quick", Machine(cores=2, gpu=False))
    [paper] = plan_reproduction(tmp_path, "cpu", Machine(cores=2, gpu=False))
    assert quick.pretrain[1] == tmp_path / "sources" / "fmnist-classes-0-4-n_train2000-epochs2.pt"
    assert paper.pretrain[1] == tmp_path / "sources" / "fmnist-classes-0-4.pt"
    assert quick.study.source == str(quick.pretrain[1]) and quick.settings.reduced and not paper.settings.reduced


def test_only_selects_studies_and_rejects_unknown_ones(everything) -> None:
    plan = plan_reproduction("out", "quick", Machine(cores=2, gpu=False), only=("xor5d-width",))
    assert [p.key for p in plan] == ["xor5d-width"]
    with pytest.raises(ValueError, match="--only nope: not a study the claims need"):
        plan_reproduction("out", "quick", Machine(cores=2, gpu=False), only=("nope",))


# --------------------------------------------------------------------------- running

def test_run_then_resume_reuses_the_finished_folder(tmp_path, monkeypatch) -> None:
    written = _tiny(monkeypatch)
    lines: list[str] = []
    first = reproduce(tmp_path, "quick", workers=1, progress=False, echo=lines.append)
    assert first.ok and [o.trained for o in first.outcomes] == [3]
    report = tmp_path / "studies" / "xor5d" / "report.html"
    assert first.outcomes[0].report == report and report.is_file()
    assert first.outcomes[0].quick  # not the paper's settings
    assert "run   xor5d" in lines[0] and any(line.startswith("[1/1] xor5d") for line in lines)
    made = report.stat().st_mtime_ns
    second = reproduce(tmp_path, "quick", workers=1, progress=False, echo=lines.append)
    assert second.ok and [o.trained for o in second.outcomes] == [0]  # no training
    assert report.stat().st_mtime_ns == made  # nor a new report
    assert [o.folder for o in written[1]] == [tmp_path / "studies" / "xor5d"]


def test_a_folder_holding_other_settings_is_refused_before_anything_runs(tmp_path, monkeypatch) -> None:
    _tiny(monkeypatch)
    assert reproduce(tmp_path, "quick", workers=1, progress=False, echo=lambda line: None).ok
    other = Settings(overrides=("trials=1", "epochs=3", "sizes=[8]"))
    monkeypatch.setitem(rp.BUDGET_SETTINGS, "xor5d", {"quick": other})
    with pytest.raises(ValueError, match=r"studies/xor5d holds another study \(3 runs not in this one: epochs: 2 "
                                         r"there, 3 here\)"):
        reproduce(tmp_path, "quick", workers=1, progress=False, echo=lambda line: None)


def test_a_study_that_fails_fails_the_command_and_the_others_still_run(tmp_path, monkeypatch, capsys) -> None:
    written = _tiny(monkeypatch, keys=("xor5d", "xor5d-reset"))
    real = rp._run_one

    def flaky(entry, *args, **kwargs):
        if entry.key == "xor5d":
            raise ValueError("xor5d: something broke")
        return real(entry, *args, **kwargs)

    monkeypatch.setattr(rp, "_run_one", flaky)
    assert main(["reproduce", "--out", str(tmp_path), "--workers", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "polarnet: xor5d: failed: xor5d: something broke" in err
    outcomes = {o.key: o for o in written[0]}
    assert outcomes["xor5d"].failed and outcomes["xor5d"].folder is None
    assert outcomes["xor5d-reset"].folder == tmp_path / "studies" / "xor5d-reset" and not outcomes["xor5d-reset"].failed


@pytest.mark.parametrize("fashion_mnist", ["installed", "missing"])
def test_studies_skipped_by_the_plan_do_not_fail_the_command(tmp_path, monkeypatch, request, fashion_mnist) -> None:
    """In both states of a machine's Fashion-MNIST: where it is missing, the skip gives that reason too."""
    if fashion_mnist == "missing":
        request.getfixturevalue("no_fashion_mnist")
    else:
        monkeypatch.setattr(rp, "missing_dataset", lambda name, root=None: None)
    written = _tiny(monkeypatch, keys=("xor5d", "fmnist-alexnet"))
    monkeypatch.setitem(rp.BUDGET_SETTINGS, "fmnist-alexnet", {"quick": rp.QUICK})
    monkeypatch.setattr(rp, "missing_weights", lambda source: "needs ImageNet AlexNet weights: put it there")
    result = reproduce(tmp_path / "out", "quick", workers=1, progress=False, echo=lambda line: None)
    assert result.ok
    skipped = {o.key: o for o in written[0]}["fmnist-alexnet"]
    reasons = skipped.reason.split("; ")
    assert skipped.folder is None and "needs ImageNet AlexNet weights: put it there" in reasons
    assert reasons[0].startswith("needs Fashion-MNIST: apt-get install dataset-fashion-mnist, or put ") == \
        (fashion_mnist == "missing")


def test_only_leaves_the_other_studies_out_with_that_reason(tmp_path, monkeypatch) -> None:
    written = _tiny(monkeypatch, keys=("xor5d", "xor5d-reset"))
    assert reproduce(tmp_path, "quick", only=("xor5d",), workers=1, progress=False, echo=lambda line: None).ok
    outcomes = {o.key: o for o in written[0]}
    assert outcomes["xor5d-reset"].reason == "left out of this reproduction (--only)"
    assert not (tmp_path / "studies" / "xor5d-reset").exists()


def test_dry_run_prints_the_plan_and_makes_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "new"
    assert main(["reproduce", "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"polarnet reproduce: budget quick into {out}; this machine: ")
    assert "  run   xor5d   " in text and "studies to run, ~" in text
    assert not out.exists()


# --------------------------------------------------------------------------- the command's errors

def test_unknown_budget_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["reproduce", "--budget", "huge"])
    assert done.value.code == 2
    assert "invalid choice: 'huge' (choose from 'quick', 'cpu', 'gpu')" in capsys.readouterr().err


def test_bad_out_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    file = tmp_path / "file"
    file.touch()
    assert main(["reproduce", "--out", str(file)]) == 2
    assert capsys.readouterr().err == f"polarnet: error: --out {file}: is a file; give a folder (made if missing)\n"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(["reproduce", "--out", str(locked / "sub")]) == 2
    assert main(["reproduce", "--out", str(tmp_path / "o"), "--only", "nope"]) == 2
    assert "--only nope: not a study the claims need" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything is made


def test_reproduce_function_rejects_an_unknown_budget(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown budget 'huge': choose one of quick, cpu, gpu"):
        reproduce(tmp_path, "huge")


# --------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_a_study_on_a_source_polarnet_pretrains_runs_end_to_end(tmp_path, monkeypatch) -> None:
    """fmnist-split-transfer on real Fashion-MNIST: its source is pretrained into OUT/sources/
    once, the study reads it, and a second call pretrains and trains nothing."""
    from polarnet.data.images import DataError, find_root

    try:
        find_root("fashion_mnist")
    except DataError:
        pytest.skip("no Fashion-MNIST on this machine")
    _tiny(monkeypatch, keys=("fmnist-split-transfer",))
    small = ("trials=1", "epochs=1", "sizes=[50]", "val_size=100", "conditions=['frozen_in_polarity', 'fluid_rand']")
    monkeypatch.setitem(rp.BUDGET_SETTINGS, "fmnist-split-transfer",
                        {"quick": Settings(overrides=small, pretrain=(("n_train", 200), ("epochs", 1)))})
    lines: list[str] = []
    first = reproduce(tmp_path, "quick", workers=1, progress=False, echo=lines.append)
    source = tmp_path / "sources" / "fmnist-classes-0-4-n_train200-epochs1.pt"
    assert first.ok and source.is_file() and [o.trained for o in first.outcomes] == [2]
    assert any(line.startswith("  pretraining its source: lenet on fashion_mnist classes 0,1,2,3,4") for line in lines)
    assert "+ pretraining its source" in lines[0]
    made = source.stat().st_mtime_ns
    lines.clear()
    second = reproduce(tmp_path, "quick", workers=1, progress=False, echo=lines.append)
    assert second.ok and [o.trained for o in second.outcomes] == [0] and source.stat().st_mtime_ns == made
    assert not any("pretraining" in line for line in lines)


@pytest.mark.slow
def test_quick_budget_end_to_end_on_one_study(tmp_path, capsys) -> None:
    """The quick budget through the command, as `make demo` runs it, on one study (the whole
    budget takes minutes: `make demo` runs it)."""
    out = tmp_path / "reproduce"
    assert main(["reproduce", "--budget", "quick", "--out", str(out), "--only", "xor5d-reset", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "[1/1] xor5d-reset: --quick" in text and "1 studies ran, 0 failed" in text
    assert (out / "studies" / "xor5d-reset" / "report.html").is_file()
    html, md = (out / "scorecard.html").read_text(), (out / "scorecard.md").read_text()
    assert "studies/xor5d-reset/report.html" in html + md
    assert "left out of this reproduction (--only)" in md
    assert main(["reproduce", "--budget", "quick", "--out", str(out), "--only", "xor5d-reset", "--no-progress"]) == 0
    assert "0 runs trained, 162 already done" in capsys.readouterr().out
