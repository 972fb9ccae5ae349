"""The papers' claims (polarnet.analysis.claims, registered in paper_claims): hand-made data whose verdict
is known — agrees, same direction different size, disagrees, inconclusive — for each kind of test."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from polarnet.analysis.claims import (AGREES, CLAIMS, DISAGREES, INCONCLUSIVE, VERDICTS, WEAKER, Need, StudyData,
                                      check_claims, claims, value_verdict)
from polarnet.experiments.config import list_presets, load_study


def _spread(center: float, n: int, width: float = 0.01) -> np.ndarray:
    """``n`` values evenly spread over ``center ± width`` (no ties, deterministic)."""
    return center + np.linspace(-width, width, n)


def _rows(condition: str, n_train: int, values, column: str = "error_at_convergence", hidden: int = 64,
          reset: str | None = None, **other) -> list[dict]:
    reset = reset or ("none" if condition.startswith("fluid") else "posRand")
    return [{"condition": condition, "n_train": n_train, "hidden": hidden, "reset": reset, "trial": t,
             "run": f"{condition}-{n_train}-{hidden}-{reset}-{t}", column: float(v), **other}
            for t, v in enumerate(values)]


def _frame(*parts: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame([row for part in parts for row in part])
    for column, default in (("error_at_convergence", 0.2), ("epochs_to_threshold", 5.0), ("final_accuracy", 0.8),
                            ("auc", 0.7)):
        if column not in frame:
            frame[column] = default
    frame["final_accuracy"] = frame["final_accuracy"].where(frame["final_accuracy"].notna(), 0.8)
    return frame


def _measure(name: str, per_run: pd.DataFrame, settings: dict | None = None, **kwargs):
    claim = CLAIMS.get(name)
    key = claim.needs[0].study if claim.needs else ""
    data = StudyData(key, settings or {}, per_run, **kwargs)
    return claim.measure({key: data}, claim)


# -- the registry ----------------------------------------------------------------------------------------------
def test_every_claim_names_its_place_its_test_and_studies_that_exist() -> None:
    everything = claims()
    assert len(everything) == len(CLAIMS.names()) >= 70
    assert {c.paper for c in everything} == {"Wang", "Igoe"}
    presets = list_presets()
    for claim in everything:
        assert claim.where and claim.claim and claim.test, claim.name
        assert (claim.value is not None) == (claim.test in ("value", "fraction", "convergence", "count")), claim.name
        for need in claim.needs:
            assert need.study in presets, claim.name
            study = load_study(need.study, validate=False)
            assert set(need.conditions) <= set(study.conditions), (claim.name, need.conditions)
            assert set(need.sizes) <= set(study.sizes), (claim.name, need.sizes)


def test_the_papers_numbers_are_registered() -> None:
    values = {c.name: c.value for c in claims()}
    assert values["wang_xor_sufficient_time_60"] == 0.58 and values["wang_xor_sufficient_time_72"] == 0.48
    assert values["wang_in_polarity_gain_100_fmnist"] == -0.07 and values["wang_in_polarity_gain_100_cifar10"] == -0.094
    assert values["wang_fluid_in_polarity_gain_100_fmnist"] == -0.06
    assert values["wang_fluid_in_polarity_gain_100_cifar10"] == -0.084
    assert values["wang_learnability_theory"] == 15
    table1 = {name: value for name, value in values.items() if name.startswith("igoe_table1_")}
    assert table1 == {"igoe_table1_in": 0.57, "igoe_table1_exp1": 0.10, "igoe_table1_exp2": 0.10,
                      "igoe_table1_exp3": 0.55, "igoe_table1_exp4": 0.10, "igoe_table1_exp5": 0.49,
                      "igoe_table1_exp6": 0.50, "igoe_table1_exp7": 0.10}


def test_value_verdict_rules() -> None:
    assert value_verdict(-0.07, -0.09, -0.05, paper=-0.07, null=0)[0] == AGREES
    assert value_verdict(-0.06, -0.065, -0.055, paper=-0.07, null=0)[0] == AGREES  # within ±25% of the effect
    assert value_verdict(-0.02, -0.03, -0.01, paper=-0.07, null=0) == (
        WEAKER, "polarnet's effect is 0.29× the paper's")
    assert value_verdict(-0.05, -0.10, 0.01, paper=-0.07, null=0)[0] == INCONCLUSIVE  # holds 0 and the paper's
    assert value_verdict(0.03, 0.01, 0.05, paper=-0.07, null=0)[0] == DISAGREES
    assert value_verdict(0.01, -0.01, 0.03, paper=-0.07, null=0)[0] == DISAGREES  # wrong side, paper's outside
    assert value_verdict(math.nan, math.nan, math.nan, paper=-0.07, null=0)[0] == INCONCLUSIVE


# -- a paper's number: a difference of medians --------------------------------------------------------------------
@pytest.mark.parametrize("frozen, expected", [(0.23, AGREES), (0.28, WEAKER), (0.35, DISAGREES)])
def test_difference_of_medians_against_the_papers_number(frozen, expected) -> None:
    per_run = _frame(_rows("frozen_in_polarity", 100, _spread(frozen, 20)), _rows("fluid_rand", 100, _spread(0.30, 20)))
    result = _measure("wang_in_polarity_gain_100_fmnist", per_run, {"dataset": "fashion_mnist"})
    assert result.verdict == expected
    low, high = result.ci
    assert low <= result.estimate <= high and result.estimate == pytest.approx(frozen - 0.30)
    assert "95% CI" in result.number and "bootstrap" in result.test and "the paper: −7.0 pp" in result.finding


def test_a_difference_the_runs_cannot_decide_is_inconclusive() -> None:
    noisy = np.array([0.05, 0.45, 0.1, 0.4, 0.2, 0.35])
    per_run = _frame(_rows("frozen_in_polarity", 100, noisy - 0.05), _rows("fluid_rand", 100, noisy))
    result = _measure("wang_in_polarity_gain_100_fmnist", per_run)
    assert result.verdict == INCONCLUSIVE and result.ci[0] < -0.07 < 0 < result.ci[1]


# -- a paper's number: a ratio of median epochs --------------------------------------------------------------------
@pytest.mark.parametrize("frozen, expected", [(6.0, AGREES), (9.0, WEAKER), (12.0, DISAGREES)])
def test_ratio_of_median_epochs_against_58_percent(frozen, expected) -> None:
    per_run = _frame(_rows("frozen_sufficient", 60, _spread(frozen, 20, 0.5), "epochs_to_threshold"),
                     _rows("fluid_rand", 60, _spread(10.0, 20, 0.5), "epochs_to_threshold"))
    result = _measure("wang_xor_sufficient_time_60", per_run)
    assert result.verdict == expected and result.estimate == pytest.approx(frozen / 10.0)


def test_ratio_needs_half_the_runs_to_reach_the_threshold() -> None:
    frozen = [3.0, 4.0] + [math.nan] * 8
    per_run = _frame(_rows("frozen_sufficient", 60, frozen, "epochs_to_threshold"),
                     _rows("fluid_rand", 60, _spread(10.0, 10, 0.5), "epochs_to_threshold"))
    result = _measure("wang_xor_sufficient_time_60", per_run, {"thresholds": [0.7]})
    assert result.verdict == INCONCLUSIVE and "too few runs reached 70%" in result.finding


# -- "always", "mostly", "never worse", "sometimes", "not better" --------------------------------------------------
def _epochs(frozen_by_size: dict[int, float], fluid: float = 10.0, trials: int = 10) -> pd.DataFrame:
    parts = []
    for n, frozen in frozen_by_size.items():
        parts.append(_rows("frozen_sufficient", n, _spread(frozen, trials, 0.5), "epochs_to_threshold"))
        parts.append(_rows("fluid_rand", n, _spread(fluid, trials, 0.5), "epochs_to_threshold"))
    return _frame(*parts)


@pytest.mark.parametrize("frozen, trials, expected", [
    ({20: 5, 60: 5, 100: 5}, 10, AGREES),
    ({20: 5, 60: 10, 100: 10}, 10, WEAKER),
    ({20: 5, 60: 15, 100: 5}, 10, DISAGREES),
    ({20: 5, 60: 5, 100: 5}, 3, INCONCLUSIVE),  # 3 runs against 3: p ≥ 0.1 whatever the data
])
def test_always_faster(frozen, trials, expected) -> None:
    result = _measure("wang_xor_sufficient_faster", _epochs(frozen, trials=trials), {"epochs": 100})
    assert result.verdict == expected
    assert "Holm–Bonferroni across the 3 sizes" in result.test and "Mann–Whitney U" in result.test
    if expected == INCONCLUSIVE:
        assert "too few runs" in result.finding and "0.1" in result.finding


def test_runs_that_never_reached_the_threshold_count_as_the_slowest() -> None:
    # frozen reaches it in 5 epochs, fluid never does: significantly faster, although fluid has no epochs at all
    per_run = _frame(_rows("frozen_sufficient", 60, _spread(5, 10, 0.5), "epochs_to_threshold"),
                     _rows("fluid_rand", 60, [math.nan] * 10, "epochs_to_threshold"))
    result = _measure("wang_xor_sufficient_faster", per_run, {"epochs": 30})
    assert result.verdict == AGREES and result.table["stat_b"].iloc[0] == 31
    nobody = _frame(_rows("frozen_sufficient", 60, [math.nan] * 10, "epochs_to_threshold"),
                    _rows("fluid_rand", 60, [math.nan] * 10, "epochs_to_threshold"))
    result = _measure("wang_xor_sufficient_faster", nobody, {"epochs": 30, "thresholds": [0.8]})
    assert result.verdict == INCONCLUSIVE and result.finding == "no run of frozen_sufficient or fluid_rand reached 80%"


def _errors(frozen: dict[int, float], fluid: float = 0.2, trials: int = 20, a: str = "frozen_rand",
            b: str = "fluid_rand") -> pd.DataFrame:
    parts = []
    for n, value in frozen.items():
        parts += [_rows(a, n, _spread(value, trials)), _rows(b, n, _spread(fluid, trials))]
    return _frame(*parts)


@pytest.mark.parametrize("frozen, trials, expected", [
    ({20: 0.2, 60: 0.2}, 20, AGREES),
    ({20: 0.2, 60: 0.3}, 20, DISAGREES),
    ({20: 0.2, 60: 0.2}, 3, INCONCLUSIVE),
])
def test_never_worse(frozen, trials, expected) -> None:
    result = _measure("wang_xor_rand_not_worse", _errors(frozen, trials=trials))
    assert result.verdict == expected
    if expected == DISAGREES:
        assert "significantly worse than fluid_rand at 1 of 2 sizes (60)" in result.finding


@pytest.mark.parametrize("frozen, expected", [
    ({60: 10.0, 80: 5.0, 92: 10.0}, AGREES),
    ({60: 10.0, 80: 9.9, 92: 10.0}, WEAKER),  # better by the median, but not significantly
    ({60: 10.0, 80: 11.0, 92: 10.0}, DISAGREES),
])
def test_sometimes_faster(frozen, expected) -> None:
    parts = []
    for n, value in frozen.items():
        parts += [_rows("frozen_rand", n, _spread(value, 10, 0.5), "epochs_to_threshold"),
                  _rows("fluid_rand", n, _spread(10.0, 10, 0.5), "epochs_to_threshold")]
    result = _measure("wang_xor_rand_sometimes_faster", _frame(*parts), {"epochs": 100})
    assert result.verdict == expected
    if expected == AGREES:
        assert "the paper's sizes 80, 92: significant at 80" in result.finding
        assert "at n = 80" in result.number  # the number is shown at the paper's size


def test_mostly_reads_only_the_small_sizes_it_names() -> None:
    per_run = _errors({200: 0.1, 500: 0.1, 1000: 0.2, 6000: 0.4}, a="frozen_in_polarity", b="fluid_in_weight")
    result = _measure("wang_polarity_beats_finetuning_fmnist", per_run)
    assert result.verdict == AGREES and set(result.table["n_train"]) == {200, 500, 1000}
    assert "at 2 of 3 sizes (200, 500)" in result.finding


@pytest.mark.parametrize("in_weight, expected", [(0.2, AGREES), (0.1, DISAGREES)])
def test_not_better(in_weight, expected) -> None:
    per_run = _errors({100: in_weight, 500: 0.2}, a="frozen_in_weight", b="frozen_in_polarity")
    assert _measure("wang_frozen_in_weight_small_fmnist", per_run).verdict == expected


def test_success_rates_are_tested_with_fisher() -> None:
    reached = _rows("frozen_in_polarity", 100, _spread(5, 10, 0.5), "epochs_to_threshold")
    never = _rows("fluid_rand", 100, [math.nan] * 10, "epochs_to_threshold")
    result = _measure("wang_in_polarity_more_success_fmnist", _frame(reached, never), {"thresholds": [0.8]})
    assert result.verdict == AGREES and "Fisher exact" in result.test and "reaching 80%" in result.test
    assert result.estimate == 1.0  # shares 100% vs 0%


def test_spread_is_tested_with_brown_forsythe() -> None:
    tight = _rows("frozen_in_polarity", 100, _spread(0.2, 20, 0.005))
    wide = _rows("fluid_rand", 100, _spread(0.3, 20, 0.2))
    result = _measure("wang_in_polarity_less_variable_fmnist", _frame(tight, wide))
    assert result.verdict == AGREES and "Brown–Forsythe" in result.test


def test_width_claims_compare_per_hidden_size() -> None:
    parts = []
    for hidden in (10, 20, 32):
        for n in (20, 500):
            worse = 0.4 if hidden == 10 else 0.2
            parts += [_rows("frozen_rand", n, _spread(worse, 20), hidden=hidden),
                      _rows("fluid_rand", n, _spread(0.2, 20), hidden=hidden)]
    per_run = _frame(*parts)
    small = _measure("wang_small_rand_net_worse", per_run)
    assert small.verdict == AGREES and set(small.table["n_train"]) == {20, 500} and "hidden" not in small.table
    large = _measure("wang_large_rand_net_not_worse", per_run)
    assert large.verdict == AGREES and set(large.table["hidden"]) == {20, 32}  # > 15 units only


# -- reset rules (Fig. C.1) -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("zero, trials, expected", [(0.2, 20, AGREES), (0.23, 20, WEAKER), (0.3, 20, DISAGREES),
                                                    (0.2, 3, INCONCLUSIVE)])
def test_reset_rules(zero, trials, expected) -> None:
    parts = []
    for condition in ("frozen_sufficient", "frozen_rand"):
        for rule in ("posRand", "posCon", "zero", "flip"):
            center = zero if rule == "zero" and condition == "frozen_rand" else 0.2
            parts.append(_rows(condition, 60, _spread(center, trials), reset=rule))
    result = _measure("wang_reset_rules_similar", _frame(*parts))
    assert result.verdict == expected and "4 rules" in result.number


# -- learnability (Fig. 4A) -------------------------------------------------------------------------------------------
def test_theory_row_recomputes_the_published_bound_and_names_the_per_class_count() -> None:
    result = CLAIMS.get("wang_learnability_theory").measure({}, CLAIMS.get("wang_learnability_theory"))
    assert result.verdict == AGREES and result.estimate == 14  # 0.991 at 14, 0.995 at 15: within ±1 unit
    assert "23 units (per-class count)" in result.number and "0.927 at 15 units" in result.finding


def _width(learned: dict[int, tuple[int, int]], condition: str = "frozen_rand") -> pd.DataFrame:
    parts = []
    for hidden, (k, n) in learned.items():
        parts.append(_rows(condition, 500, [0.01] * k + [0.3] * (n - k), hidden=hidden))
    return _frame(*parts)


@pytest.mark.parametrize("learned, expected", [
    ({10: (30, 50), 15: (50, 50), 32: (50, 50)}, AGREES),
    ({10: (30, 50), 15: (40, 50), 32: (50, 50)}, WEAKER),  # 99% only at 32 units
    ({10: (30, 50), 15: (40, 50), 32: (45, 50)}, DISAGREES),
    ({15: (9, 10)}, INCONCLUSIVE),  # 9 of 10: can't tell 90% from 99%
])
def test_learnability_simulation(learned, expected) -> None:
    result = _measure("wang_learnability_simulation", _width(learned), {"learned_accuracy": 0.95, "dims": 5})
    assert result.verdict == expected
    assert "Clopper–Pearson" in result.test
    assert re.search(r"follows|is closer to|cannot tell the curves apart|follows neither", result.finding)


def test_simulation_says_which_curve_it_follows() -> None:
    from polarnet import theory

    # fractions that sit on the per-class count, 200 nets per width
    widths = (5, 8, 10, 12, 15)
    learned = {h: (round(float(theory.per_class_bound(h)) * 200), 200) for h in widths}
    result = _measure("wang_learnability_simulation", _width(learned), {"learned_accuracy": 0.95})
    assert "follows the per-class count" in result.finding
    learned = {h: (round(float(theory.published_bound(h, 5)) * 200), 200) for h in widths}
    result = _measure("wang_learnability_simulation", _width(learned), {"learned_accuracy": 0.95})
    assert "follows the published bound" in result.finding


@pytest.mark.parametrize("k, expected", [(50, AGREES), (40, WEAKER), (10, DISAGREES)])
def test_three_units_for_sufficient_nets(k, expected) -> None:
    per_run = pd.concat([_width({3: (k, 50)}, "frozen_sufficient"), _width({3: (20, 50)}, "fluid_rand")])
    assert _measure("wang_learnability_sufficient_three", per_run).verdict == expected


# -- Igoe: SPIN against Fluid IN, and Table 1 ------------------------------------------------------------------
def test_spin_as_good_as_fluid_in_reads_the_final_accuracy() -> None:
    same = _frame(_rows("freeze_spin", 10000, _spread(0.5, 5), "final_accuracy"),
                  _rows("fluid_in", 10000, _spread(0.5, 5), "final_accuracy"))
    assert _measure("igoe_freeze_spin_as_good_alexnet_cifar10", same).verdict == AGREES
    worse = _frame(_rows("freeze_spin", 10000, _spread(0.3, 5), "final_accuracy"),
                   _rows("fluid_in", 10000, _spread(0.5, 5), "final_accuracy"))
    assert _measure("igoe_freeze_spin_as_good_alexnet_cifar10", worse).verdict == DISAGREES


@pytest.mark.parametrize("name, accuracy, expected", [
    ("igoe_table1_in", 0.56, AGREES), ("igoe_table1_in", 0.30, WEAKER), ("igoe_table1_in", 0.10, DISAGREES),
    ("igoe_table1_exp1", 0.10, AGREES), ("igoe_table1_exp1", 0.45, DISAGREES),
])
def test_table_1_convergence(name, accuracy, expected) -> None:
    condition = CLAIMS.get(name).needs[0].conditions[0]
    per_run = _frame(_rows(condition, 10000, _spread(accuracy, 5, 0.005), "final_accuracy"))
    result = _measure(name, per_run, {"dataset": "cifar10", "val_size": 10000})
    assert result.verdict == expected
    assert "above chance (10%)" in result.test


def test_compression_counts_polarnets_alexnet() -> None:
    claim = CLAIMS.get("igoe_compression")
    result = claim.measure({}, claim)
    assert result.verdict == AGREES and result.number.startswith("10 numbers for 5 conv layers")


# -- sign changes (C.5) and initial magnitudes (C.6) ----------------------------------------------------------------
@pytest.mark.parametrize("shape, expected", [("decay", AGREES), ("flat", DISAGREES), ("rise", DISAGREES)])
def test_sign_changes_decay(shape, expected) -> None:
    per_run = _frame(_rows("fluid_rand", 100, [0.3] * 10))
    epochs = []
    for run in per_run["run"]:
        for epoch in range(1, 21):
            value = {"decay": 0.2 / epoch, "flat": 0.05, "rise": 0.01 * epoch}[shape]
            value *= 1 + 0.01 * int(run.split("-")[-1])  # runs differ a little
            epochs.append({"run": run, "epoch": epoch, "sign_changes": json.dumps({"a": value, "b": value})})
    result = _measure("wang_sign_changes_decay_fmnist", per_run, epochs=pd.DataFrame(epochs))
    assert result.verdict == expected and "Wilcoxon" in result.test


def test_initial_magnitudes_equal_across_fresh_conditions() -> None:
    per_run = _frame(_rows("frozen_in_polarity", 100, [0.2] * 2), _rows("fluid_rand", 100, [0.2] * 2))

    def mags(shift: float) -> pd.DataFrame:
        rows = []
        for condition in ("frozen_in_polarity", "fluid_rand", "fluid_in_weight"):
            for trial in (0, 1):
                extra = shift if condition == "fluid_rand" else 1.0 if condition == "fluid_in_weight" else 0
                rows.append({"condition": condition, "n_train": 100, "trial": trial, "layer": "w",
                             "0.5": 0.1 + extra, "0.9": 0.2 + extra})
        return pd.DataFrame(rows)

    equal = _measure("wang_magnitudes_controlled_fmnist", per_run, magnitudes=mags(0.0))
    assert equal.verdict == AGREES and "IN-Weight's differ" in equal.number
    assert _measure("wang_magnitudes_controlled_fmnist", per_run, magnitudes=mags(0.05)).verdict == DISAGREES


# -- conditions are found by what they are, thresholds read from the study -------------------------------------------
def test_conditions_are_found_by_their_definition_not_their_name() -> None:
    per_run = _errors({20: 0.2, 60: 0.2}, a="rand_frozen_mine", b="plain")
    settings = {"define_condition": {"rand_frozen_mine": {"polarity": "random", "frozen": True},
                                     "plain": {"polarity": "none", "frozen": False}}}
    data = StudyData("xor5d", settings, per_run)
    assert data.condition("frozen_rand") == "rand_frozen_mine" and data.condition("fluid_rand") == "plain"
    assert data.condition("frozen_sufficient") is None
    claim = CLAIMS.get("wang_xor_rand_not_worse")
    assert claim.measure({"xor5d": data}, claim).verdict == AGREES
    # the condition stored with the runs (only its non-default fields) counts too
    runs = pd.DataFrame({"condition": ["rand_frozen_mine"],
                         "settings": [json.dumps({"condition": {"name": "rand_frozen_mine", "polarity": "random",
                                                                "frozen": True}})]})
    assert StudyData("xor5d", {}, per_run, runs=runs).condition("frozen_rand") == "rand_frozen_mine"


def test_the_threshold_and_chance_are_the_studys_stored_settings() -> None:
    result = _measure("wang_in_polarity_faster_cifar10", _frame(
        _rows("frozen_in_polarity", 100, _spread(3, 10, 0.5), "epochs_to_threshold"),
        _rows("fluid_rand", 100, _spread(8, 10, 0.5), "epochs_to_threshold")), {"thresholds": [0.5], "epochs": 20})
    assert "epochs to 50%" in result.test
    data = StudyData("spin-table1", {"dataset": "cifar10", "classes": [0, 1, 2, 3]}, _frame(_rows("x", 1, [0.1])))
    assert data.chance == 0.25 and data.threshold == 0.8


def test_select_takes_the_needed_width_and_reset_rule() -> None:
    per_run = _frame(_rows("frozen_rand", 20, [0.1] * 3, hidden=64, reset="posRand"),
                     _rows("frozen_rand", 20, [0.9] * 3, hidden=64, reset="zero"),
                     _rows("frozen_rand", 20, [0.9] * 3, hidden=8, reset="posRand"),
                     _rows("fluid_rand", 20, [0.2] * 3, hidden=64))
    rows = StudyData("xor5d", {"resets": ["zero", "posRand"]}, per_run).select(
        Need("xor5d", hidden=(64,), resets=("posRand",)), "frozen_rand", "fluid_rand")
    assert set(zip(rows["role"], rows["reset"], rows["hidden"])) == {("frozen_rand", "posRand", 64),
                                                                     ("fluid_rand", "none", 64)}


# -- the per-study report's view --------------------------------------------------------------------------------------
def test_check_claims_applies_one_claim_per_family_on_the_studys_dataset() -> None:
    per_run = _errors({100: 0.2, 500: 0.2})
    plain = {v.source: v for v in check_claims(per_run, 0.8)}
    assert any(s.startswith("Wang et al. Fig. 1B") for s in plain)  # no settings: the first of each family
    images = check_claims(per_run, 0.8, {"dataset": "fashion_mnist"})
    assert {v.source for v in images} >= {"Wang et al. Fig. 2 (col. 1), §3"}
    assert not any("Fig. 1" in v.source for v in images)  # XOR's claims are left out of an image study
    assert all(v.outcome in VERDICTS for v in images)
    verdict = next(v for v in images if "never performs worse" in v.claim)
    assert verdict.claim.startswith("Fashion-MNIST: frozen_rand never performs worse than fluid_rand")
    assert verdict.agrees is True and verdict.verdict == "this study agrees"


def test_too_few_runs_for_an_interval_are_inconclusive() -> None:
    # 3 runs each, far apart: a bootstrap of 3 values would give a misleadingly narrow interval
    per_run = _frame(_rows("frozen_in_polarity", 100, _spread(0.23, 3)), _rows("fluid_rand", 100, _spread(0.30, 3)))
    result = _measure("wang_in_polarity_gain_100_fmnist", per_run)
    assert result.verdict == INCONCLUSIVE and "too few runs for an interval (3 and 3; 5 needed)" in result.finding
    assert result.number.startswith("−7.0 pp")  # the number is still shown
    spread = _frame(_rows("frozen_in_polarity", 100, _spread(0.2, 4, 0.001)),
                    _rows("fluid_rand", 100, _spread(0.3, 4, 0.2)))
    result = _measure("wang_in_polarity_less_variable_fmnist", spread)
    assert result.verdict == INCONCLUSIVE and result.finding.startswith("too few runs for a spread test")


@pytest.mark.parametrize("runs, accuracy, expected", [(2, 0.57, INCONCLUSIVE), (3, 0.55, AGREES), (3, 0.3, WEAKER)])
def test_table_1_with_few_runs(runs, accuracy, expected) -> None:
    per_run = _frame(_rows("table1_in", 10000, _spread(accuracy, runs, 0.005), "final_accuracy"))
    assert _measure("igoe_table1_in", per_run, {"dataset": "cifar10", "val_size": 10000}).verdict == expected
