"""Tests for benchmarks/_report.py: the PASS/MISS verdicts, alternation and exit status.

Only the logic, with made-up numbers: benchmarks are scripts, never timed tests. A benchmark's
``--quick`` form is smoke-run at the end (it checks that the script works; its verdicts are
not counted, so it passes whatever the machine's speed).
"""

from __future__ import annotations

import doctest
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from polarnet.experiments import load_study

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "_report.py"
_spec = importlib.util.spec_from_file_location("bench_report", _PATH)
report_module = importlib.util.module_from_spec(_spec)
sys.modules["bench_report"] = report_module
_spec.loader.exec_module(report_module)
Report, Spread = report_module.Report, report_module.Spread


def _report(strict: bool = False, counted: bool = True) -> tuple[object, list[str]]:
    lines: list[str] = []
    return Report("bench_fake", strict, counted=counted, out=lines.append), lines


def test_doctests():
    assert doctest.testmod(report_module).failed == 0


def test_orders_alternate_and_reverse():
    assert list(report_module.orders(["a", "b", "c"], 4)) == [["a", "b", "c"], ["c", "b", "a"]] * 2
    assert list(report_module.orders(["a"], 0)) == []


def test_alternate_runs_warmup_then_alternated_rounds():
    calls: list[str] = []

    def arm(name: str, value: float):
        return lambda: calls.append(name) or value

    out = report_module.alternate({"a": arm("a", 1.0), "b": arm("b", 2.0)}, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert out == {"a": [1.0] * 3, "b": [2.0] * 3}


def test_per_round_pairs_rounds_and_refuses_unequal_lengths():
    assert report_module.per_round(lambda a, b: a / b, [2, 9], [1, 3]) == [2, 3]
    with pytest.raises(ValueError):
        report_module.per_round(lambda a, b: a / b, [1, 2], [1])


def test_spread_median_min_max_and_format():
    s = Spread.of([3.0, 1.0, 2.0, 10.0])
    assert (s.median, s.low, s.high, s.n) == (2.5, 1.0, 10.0, 4)
    assert s.format(".1f", " s") == "2.5 s [1.0–10.0 s]"
    assert Spread.of([0.5]).format(".2f", "x") == "0.50x"
    with pytest.raises(ValueError, match="no measurements"):
        Spread.of([])


@pytest.mark.parametrize("value, op, bound, met", [
    (0.02, "<=", 0.03, True), (0.03, "<=", 0.03, True), (0.031, "<=", 0.03, False),
    (0.03, "<", 0.03, False), (16.0, ">=", 15, True), (14.9, ">=", 15, False),
    (15.0, ">", 15, False), (-0.04, ">=", -0.05, True), (-0.06, ">=", -0.05, False),
])
def test_target_verdict(value, op, bound, met):
    report, lines = _report()
    assert report.target("thing", value, op, bound) is met
    assert lines[-1].startswith("thing: ")
    assert lines[-1].endswith("PASS" if met else "MISS")


def test_target_judges_the_median_and_flags_a_range_that_straddles_the_bound():
    report, lines = _report()
    assert report.target("overhead", Spread.of([0.01, 0.02, 0.05]), "<=", 0.03, spec=".0%")
    assert lines[-1] == ("overhead: 2% [1%–5%]  (target <= 3%)  PASS  "
                         "(noisy: the range straddles the bound)")
    assert not report.target("firm", Spread.of([0.04, 0.05, 0.06]), "<=", 0.03, spec=".0%")
    assert "noisy" not in lines[-1] and "MISS" in lines[-1]


def test_target_refuses_unknown_op():
    report, _ = _report()
    with pytest.raises(ValueError, match="op '=='"):
        report.target("x", 1.0, "==", 1.0)


def test_goal_is_printed_honestly_but_never_fails_strict():
    report, lines = _report(strict=True)
    assert not report.target("enforcement/Adam", 0.8, "<=", 0.25, goal=True)
    assert lines[-1].endswith("GOAL MISSED")
    assert report.target("step overhead", 0.02, "<=", 0.03)
    assert report.finish() == 0
    assert "1 goal(s): 0 met, 1 missed" in lines[-1] and lines[-1].split(";")[-1].strip() == "exit 0"


def test_a_miss_exits_1_only_with_strict():
    for strict, status in ((False, 0), (True, 1)):
        report, lines = _report(strict=strict)
        report.target("fast", 1.0, "<=", 2.0)
        report.target("slow", 70.0, "<=", 60.0)
        assert report.finish() == status
        assert "2 target(s): 1 PASS, 1 MISS" in lines[-1]
        assert lines[-1].endswith("exit 1 (--strict: missed slow)" if strict else "exit 0")


def test_strict_passes_when_all_targets_pass():
    report, lines = _report(strict=True)
    report.target("a", 1.0, "<=", 2.0)
    assert report.finish() == 0 and report.misses == []


def test_quick_runs_print_verdicts_but_count_none():
    report, lines = _report(strict=True, counted=False)
    assert "--quick" in lines[0]
    report.target("slow", 70.0, "<=", 60.0)
    assert lines[-1].endswith("MISS  (not counted: --quick)")
    assert report.finish() == 0
    assert "--quick: nothing counted" in lines[-1]


def test_header_and_summary_show_the_load():
    report, lines = _report()
    report.finish()
    assert all("load average" in line and "CPUs" in line for line in lines)
    assert lines[0].startswith("== bench_fake: ") and "not strict" in lines[0]


# --------------------------------------------------------------------------- smoke runs, --quick

@pytest.mark.slow
def test_bench_learners_quick_runs_and_prints_every_learner_and_the_preset():
    """``bench_learners.py --quick`` runs end to end (LeNet, 2 steps per arm, a tiny stand-in
    of ``xor5d-learners``); its verdicts are not counted, so it exits 0 whatever the timings."""
    script = _PATH.parent / "bench_learners.py"
    done = subprocess.run([sys.executable, str(script), "--quick", "--workers", "1", "--strict"],
                          capture_output=True, text=True, timeout=300, cwd=_PATH.parents[1])
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for learner in ("freeze_sgd", "project", "reparam-softplus", "reparam-exp", "reparam-abs", "eg"):
        assert re.search(rf"^{re.escape(learner)} +[\d.]+ s.* vs Adam [\d.]+x", out, re.M), learner
    for learner in ("reparam-softplus", "reparam-exp", "reparam-abs", "eg"):
        assert f"{learner} step / Adam step: " in out
    conditions = len(load_study("xor5d-learners").conditions)  # every condition, 2 sizes, 1 trial
    assert f"xor5d-learners quick stand-in: {2 * conditions} runs ({conditions} conditions)" in out
    assert "--quick: nothing counted" in out.splitlines()[-1]


@pytest.mark.slow
def test_bench_zoo_quick_runs_and_prints_an_overhead_line_per_model():
    """``bench_zoo.py --quick`` on the smallest model of the zoo (tests/test_zoo.py trains them all), and an
    unknown name refused."""
    script = _PATH.parent / "bench_zoo.py"
    done = subprocess.run([sys.executable, str(script), "--quick", "--strict", "--models", "gpt2_tiny"],
                          capture_output=True, text=True, timeout=300, cwd=_PATH.parents[1])
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("gpt2_tiny",):
        assert re.search(rf"^{name} freeze overhead per step: -?[\d.]+% \[", done.stdout, re.M), name
    assert "--quick: nothing counted" in done.stdout.splitlines()[-1]
    bad = subprocess.run([sys.executable, str(script), "--models", "lenet9"], capture_output=True, text=True,
                         timeout=120, cwd=_PATH.parents[1])
    assert bad.returncode == 2 and "unknown model(s) ['lenet9']" in bad.stderr


def test_agreement_of_two_stores_of_the_same_runs():
    """``_studies.agreement`` (bench_split_transfer's vectorised-vs-one-at-a-time line), on
    made-up curves whose differences are known: 0.01 and 0.03 at the last epochs."""
    import pandas as pd
    sys.path.insert(0, str(_PATH.parent))
    try:
        spec = importlib.util.spec_from_file_location("bench_studies", _PATH.parent / "_studies.py")
        studies = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(studies)
    finally:
        sys.path.remove(str(_PATH.parent))
    rows = [("a", 50, 0, "zero", t, e) for t in (0, 1) for e in (1, 2)]
    columns = ["condition", "n_train", "hidden", "reset", "trial", "epoch"]
    a = pd.DataFrame(rows, columns=columns).assign(val_acc=[0.5, 0.6, 0.5, 0.7])
    b = a.assign(val_acc=[0.5, 0.61, 0.52, 0.73])
    line = studies.agreement(a, b)
    # per epoch |Δ| = 0, 0.01, 0.02, 0.03: median 0.015; last epochs 0.01, 0.03: mean 0.02, sd 0.01414
    assert "per epoch: median 0.0150, max 0.0300 (4 epochs)" in line
    assert "at the last epoch: max 0.0300, mean +0.0200 ± 0.0196 (95%, 2 runs)" in line
    assert "different runs" in studies.agreement(a, b.iloc[:3])
    # runs that differ only in their reset rule are other runs, not one run twice
    two = pd.concat([a, a.assign(reset="posRand")])
    assert "(8 epochs)" in studies.agreement(two, pd.concat([b, b.assign(reset="posRand")]))
