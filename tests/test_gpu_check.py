"""Tests for benchmarks/gpu_check.py: the no-GPU exit, parsing, the summary written as it goes.

No GPU is needed and nothing is timed: the steps are replaced by tiny Python commands that
print what pytest and the benchmarks print (one of them outlasts its budget and is stopped).
Test names avoid the word the script selects CUDA tests by, so its pytest step skips them.
"""

from __future__ import annotations

import doctest
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gpu_check
_spec.loader.exec_module(gpu_check)

_FACTS = {"cuda": True, "name": "NVIDIA H100 80GB HBM3", "driver": "580.159.04", "cuda_version": "13.0",
          "torch": "2.11.0+cu130", "polarnet_installed": False}
_PYTEST_OUT = ("...F.s\nFAILED tests/test_freeze.py::test_hand_values_on_cuda - AssertionError\n"
               "1 failed, 36 passed, 1 skipped, 2310 deselected, 3 warnings in 40.12s\n")
_BENCH_OUT = ("== bench_freeze: load 0.1\n"
              "auto step overhead (CUDA): 6.10% [5.90%–6.30%]  (target <= 5.00%)  MISS\n"
              "syncs per train step: 0  (target <= 0)  PASS\n"
              "== bench_freeze: 2 target(s): 1 PASS, 1 MISS; exit 0\n")


def _printing(text: str, code: int = 0) -> tuple[str, ...]:
    return ("-c", f"import sys; sys.stdout.write({text!r}); sys.exit({code})")


def test_doctests():
    assert doctest.testmod(gpu_check).failed == 0


def test_without_a_gpu_it_writes_a_summary_that_says_so_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "device_facts", lambda python, out: {"cuda": False, "torch": "2.5.1",
                                                                        "reason": "torch.cuda.is_available() is False"})
    assert gpu_check.main(["--out", str(tmp_path / "gpu")]) == 2
    assert capsys.readouterr().out.startswith("no CUDA device: nothing to check (torch.cuda.is_available() is False)")
    summary = json.loads((tmp_path / "gpu" / "summary.json").read_text())
    assert summary["verdict"] == "no CUDA device: nothing to check" and summary["steps"] == []
    md = (tmp_path / "gpu" / "summary.md").read_text()
    assert md.startswith("# GPU check: no CUDA device: nothing to check\n")
    assert "- device: no CUDA (torch.cuda.is_available() is False); torch 2.5.1" in md
    assert sorted(p.name for p in (tmp_path / "gpu").iterdir()) == ["summary.json", "summary.md"]  # no step ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the script would check it")
def test_the_script_on_a_machine_without_a_gpu(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stdout.startswith("no CUDA device: nothing to check")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["device"]["cuda"] is False and summary["device"]["torch"] == torch.__version__
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown .*", summary["commit"])


def test_parsing_canned_pytest_and_benchmark_output():
    assert gpu_check.parse_pytest(_PYTEST_OUT) == {"failed": 1, "passed": 36, "skipped": 1, "deselected": 2310}
    interrupted = "ERROR src/x.py\n!!! Interrupted: 1 error during collection !!!\n37/2347 tests collected (2310 deselected), 1 error in 13.33s\n"
    assert gpu_check.parse_pytest(interrupted) == {"deselected": 2310, "errors": 1}
    targets = gpu_check.parse_targets(_BENCH_OUT + "x: 2.0 h  (target <= 3.0 h)  PASS  (noisy: the range straddles the bound)\n")
    assert [(t["name"], t["verdict"]) for t in targets] == [("auto step overhead (CUDA)", "MISS"),
                                                            ("syncs per train step", "PASS"), ("x", "PASS")]
    assert targets[0]["value"] == "6.10% [5.90%–6.30%]" and targets[0]["bound"] == "5.00%"
    assert targets[2]["notes"] == "noisy: the range straddles the bound"
    status, result = gpu_check.judge("bench_alexnet_cell", 0, False,
                                     "bench_alexnet_cell needs real Fashion-MNIST: fashion_mnist: data not found.")
    assert status == "passed" and result == {"targets": [], "note": "bench_alexnet_cell needs real Fashion-MNIST: "
                                                                    "fashion_mnist: data not found."}
    crashed = "Traceback (most recent call last):\n  ...\nRuntimeError: Found no NVIDIA driver on your system.\n\n"
    assert gpu_check.judge("bench_freeze", 1, False, crashed) == (
        "failed", {"targets": [], "last_line": "RuntimeError: Found no NVIDIA driver on your system."})


def test_a_run_writes_its_summary_as_it_goes_and_stops_a_step_at_its_budget(tmp_path, monkeypatch, capsys):
    out = tmp_path / "gpu"
    peek = ("import json, os, sys, time; s = json.load(open(%r)); "
            "print([x['status'] for x in s['steps']], os.environ['PYTHONPATH'].split(os.pathsep)[0], flush=True); "
            "time.sleep(60)" % str(out / "summary.json"))
    monkeypatch.setattr(gpu_check, "device_facts", lambda python, o: dict(_FACTS))
    monkeypatch.setattr(gpu_check, "STEPS", (
        gpu_check.Step("pytest", _printing(_PYTEST_OUT, 1), 30),
        gpu_check.Step("bench_freeze", _printing(_BENCH_OUT), 30),
        gpu_check.Step("bench_images", ("-c", peek), 4),  # outlasts its budget: stopped
        gpu_check.Step("bench_alexnet_cell", _printing("never printed"), 30),  # under 10 s left: not run
    ))
    assert gpu_check.main(["--out", str(out), "--budget", "13", "--commit", "abc123"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["name"]: s for s in summary["steps"]}
    assert [s["status"] for s in summary["steps"]] == ["failed", "passed", "timed out", "not run"]
    assert steps["pytest"]["result"]["counts"] == {"failed": 1, "passed": 36, "skipped": 1, "deselected": 2310}
    assert steps["pytest"]["exit_code"] == 1 and steps["bench_images"]["exit_code"] is None
    assert [t["verdict"] for t in steps["bench_freeze"]["result"]["targets"]] == ["MISS", "PASS"]
    assert "last_line" not in steps["pytest"]["result"]  # its counts say it
    assert steps["bench_images"]["result"]["last_line"].startswith("['failed', 'passed', 'pending', 'pending']")
    assert summary["verdict"] == "failed: pytest failed, bench_images timed out, bench_alexnet_cell not run"
    assert summary["commit"] == "abc123" and summary["device"]["driver"] == "580.159.04"
    # the stopped step saw the summary of the steps before it, and the checkout's src/ on its path
    log = (out / "bench_images.log").read_text()
    assert f"['failed', 'passed', 'pending', 'pending'] {ROOT / 'src'}" in log
    assert "[gpu_check: stopped after 4 s, its budget]" in log
    assert not (out / "bench_alexnet_cell.log").exists()
    md = (out / "summary.md").read_text()
    assert "| pytest | failed |" in md and "| 1 failed, 36 passed, 1 skipped |" in md
    assert "| bench_images | timed out |" in md and "| bench_alexnet_cell | not run |" in md
    assert "- bench_freeze: auto step overhead (CUDA): 6.10% [5.90%–6.30%] (<= 5.00%) **MISS**" in md
    assert "NVIDIA H100 80GB HBM3, driver 580.159.04, CUDA 13.0" in md
    printed = capsys.readouterr().out
    assert "budget 13 s in all: pytest 30 s, bench_freeze 30 s, bench_images 4 s, bench_alexnet_cell 30 s" in printed


def test_strict_passes_to_the_benchmarks_only_and_an_unknown_step_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "device_facts", lambda python, o: {**_FACTS, "polarnet_installed": True})
    echo = ("-c", "import sys; print(sys.argv[1:]); print('1 passed in 0.1s')")
    monkeypatch.setattr(gpu_check, "STEPS", (gpu_check.Step("pytest", echo, 30), gpu_check.Step("bench_freeze", echo, 30)))
    assert gpu_check.main(["--out", str(tmp_path), "--strict"]) == 0
    assert "[]" in (tmp_path / "pytest.log").read_text() and "['--strict']" in (tmp_path / "bench_freeze.log").read_text()
    with pytest.raises(SystemExit):
        gpu_check.main(["--out", str(tmp_path), "--steps", "pytest,bench_nothing"])
    assert "--steps: unknown bench_nothing; choose from pytest, bench_freeze" in capsys.readouterr().err


def test_every_flag_a_step_passes_is_an_option_of_its_script():
    for step in gpu_check.STEPS[1:]:
        script, *flags = step.args
        shown = subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=ROOT / "benchmarks",
                               capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0, shown.stderr
        for flag in (f for f in flags if f.startswith("--")):
            assert re.search(rf"\s{flag}\b", shown.stdout), f"{script} has no {flag}"


def test_make_gpu_check_runs_the_script_without_the_venv_recipe():
    recipe = re.search(r"^gpu-check:(.*)\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile has no gpu-check target"
    assert "$(STAMP)" not in recipe.group(1)  # a GPU machine without the network can't build the venv
    assert "benchmarks/gpu_check.py --out $(OUT)" in recipe.group(2)
