"""Every claim of Wang et al. (ICML 2023) and Igoe et al. (ICLR 2024 Tiny Papers), registered in
:data:`polarnet.analysis.claim_core.CLAIMS` (re-exported by :mod:`.claims`) in the papers' order.

Each is one ``_add(PaperClaim(...))``: where it is, the claim, the paper's number, what it
needs (study keys are the presets), the kind of test and the measure. The measures shared by
many claims live in :mod:`.claim_measures`; the ones particular to one claim (learnability, reset
rules, Igoe's Table 1, sign changes, magnitudes, SPIN's compression) are below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import combinations

import numpy as np
import pandas as pd

from .claim_core import (AGREES, ALPHA, CLAIMS, DISAGREES, INCONCLUSIVE, MIN_RUNS, TOLERANCE, WEAKER, Need, PaperClaim,
                         Result, StudyData)
from .claim_measures import (EPOCHS, ERROR, FINAL_ACCURACY, SPREAD, SPREAD_AUC_MORE, SUCCESS, comparison_claim,
                             difference_claim, fmt, interval, ratio_claim, sign_change_series, value_verdict)
from .stats import holm, mann_whitney, mann_whitney_floor, median_ci, wilcoxon_paired

__all__: list[str] = []

XOR, RESET, WIDTH = "xor5d", "xor5d-reset", "xor5d-width"
FMNIST, CIFAR = "fmnist-alexnet", "cifar10-alexnet"
TABLE1 = "spin-table1"
SPIN = {"spin-alexnet-cifar10": "AlexNet, CIFAR-10", "spin-alexnet-fmnist": "AlexNet, Fashion-MNIST",
        "spin-zfnet-cifar10": "ZFNet, CIFAR-10", "spin-zfnet-fmnist": "ZFNet, Fashion-MNIST"}
IMAGES = {FMNIST: ("Fashion-MNIST", "fmnist"), CIFAR: ("CIFAR-10", "cifar10")}
#: the paper's chosen reset rule and width for Fig. 1
_FIG1 = {"hidden": (64,), "resets": ("posRand",)}


def _add(claim: PaperClaim) -> PaperClaim:
    return CLAIMS.register(claim.name)(claim)


def _xor(*conditions: str, sizes: tuple[int, ...] = ()) -> tuple[Need, ...]:
    return (Need(XOR, conditions, sizes=sizes, **_FIG1),)


# == Wang et al., §2 and Fig. 1: XOR-5D ===========================================================
_add(PaperClaim(
    "wang_xor_sufficient_faster", "Wang", "Fig. 1C, §2.1",
    "Frozen Sufficient learns faster (fewer epochs to the threshold) than Fluid RAND at every training size",
    "every n (8–500)", None, _xor("frozen_sufficient", "fluid_rand"), "always",
    comparison_claim("frozen_sufficient", "fluid_rand", EPOCHS, "always", "fewer epochs"),
    family="sufficient_faster", per_study=True))
for _n, _ratio in ((60, 0.58), (72, 0.48)):
    _add(PaperClaim(
        f"wang_xor_sufficient_time_{_n}", "Wang", "§2.1 (Fig. 1C)",
        f"At n = {_n} Frozen Sufficient needs a fraction of Fluid RAND's training time (epochs to 80%)",
        f"{_ratio:.0%} of Fluid's epochs at n = {_n}", _ratio, _xor("frozen_sufficient", "fluid_rand", sizes=(_n,)),
        "value", ratio_claim("frozen_sufficient", "fluid_rand", _n, _ratio)))
_add(PaperClaim(
    "wang_xor_sufficient_fewer_samples", "Wang", "Fig. 1B, §2.1",
    "Frozen Sufficient reaches lower error at convergence than Fluid RAND (the same error with fewer samples)",
    "every n", None, _xor("frozen_sufficient", "fluid_rand"), "always",
    comparison_claim("frozen_sufficient", "fluid_rand", ERROR, "always", "lower error"),
    family="sufficient_fewer_samples", per_study=True))
_add(PaperClaim(
    "wang_xor_rand_not_slower", "Wang", "Fig. 1C, §2.1",
    "Frozen RAND learns as fast as Fluid RAND: never significantly more epochs to the threshold",
    "", None, _xor("frozen_rand", "fluid_rand"), "never worse",
    comparison_claim("frozen_rand", "fluid_rand", EPOCHS, "never worse", "fewer epochs"),
    family="rand_not_slower", per_study=True))
_add(PaperClaim(
    "wang_xor_rand_sometimes_faster", "Wang", "Fig. 1C, §2.1",
    "Frozen RAND sometimes learns faster than Fluid RAND",
    "e.g. n = 80 and 92", None, (Need(XOR, ("frozen_rand", "fluid_rand"), **_FIG1),), "sometimes",
    comparison_claim("frozen_rand", "fluid_rand", EPOCHS, "sometimes", "fewer epochs", focus=(80, 92)),
    family="rand_sometimes_faster", per_study=True))
_add(PaperClaim(
    "wang_xor_rand_not_worse", "Wang", "Fig. 1B, §2.1",
    "Frozen RAND is never worse than Fluid RAND: never significantly higher error at convergence",
    "", None, _xor("frozen_rand", "fluid_rand"), "never worse",
    comparison_claim("frozen_rand", "fluid_rand", ERROR, "never worse", "lower error"),
    family="rand_not_worse", per_study=True))
_add(PaperClaim(
    "wang_xor_rand_sometimes_fewer_samples", "Wang", "Fig. 1B, §2.1",
    "Frozen RAND oftentimes needs less data than Fluid RAND: significantly lower error at some size",
    "", None, _xor("frozen_rand", "fluid_rand"), "sometimes",
    comparison_claim("frozen_rand", "fluid_rand", ERROR, "sometimes", "lower error"),
    family="rand_sometimes_fewer_samples", per_study=True))


def _reset_rules(data: Mapping[str, StudyData], claim: PaperClaim) -> Result:
    """Every pair of reset rules of each frozen condition, per training size: two-tailed
    Mann–Whitney U of the error at convergence, Holm across all pairs. Similar: no pair
    differs significantly; a difference of less than 5 points is "same direction"."""
    need = claim.needs[0]
    study = data[need.study]
    rows = []
    for name in need.conditions:
        found = study.condition(name, need.study)
        if found is None:
            continue
        runs = study.per_run[(study.per_run["condition"] == found) & (study.per_run["reset"] != "none")]
        for (hidden, n), group in runs.groupby(["hidden", "n_train"]):
            samples = {rule: g["error_at_convergence"].dropna().to_numpy() for rule, g in group.groupby("reset")}
            for a, b in combinations(sorted(samples), 2):
                if len(samples[a]) and len(samples[b]):
                    rows.append({"condition": name, "hidden": hidden, "n_train": n, "rule_a": a, "rule_b": b,
                                 "stat_a": float(np.median(samples[a])), "stat_b": float(np.median(samples[b])),
                                 "n_a": len(samples[a]), "n_b": len(samples[b]),
                                 "p": mann_whitney(samples[a], samples[b])["p"],
                                 "p_floor": mann_whitney_floor(len(samples[a]), len(samples[b]))})
    table = pd.DataFrame(rows)
    test = (f"two-tailed Mann–Whitney U of the error at convergence between every pair of reset rules of each frozen "
            f"condition and size, Holm–Bonferroni across the pairs, α = {ALPHA:g}; agrees: no pair differs "
            "significantly; same direction: pairs differ, by less than 5 points; disagrees: by 5 points or more")
    if table.empty:
        return Result(INCONCLUSIVE, "—", "no two reset rules of a frozen condition ran at the same size", test)
    table["difference"] = table["stat_a"] - table["stat_b"]
    table["p_holm"], table["significant"] = holm(table["p"].to_numpy())
    m, sig = int(table["p"].notna().sum()), table[table["significant"]]
    rules = sorted(set(table["rule_a"]) | set(table["rule_b"]))
    largest = float(table["difference"].abs().max())
    number = (f"{len(sig)} of {m} pairs differ significantly; largest median difference {fmt(largest, 'pp')} "
              f"({len(rules)} rules: {', '.join(rules)})")
    if len(sig):
        worst = float(sig["difference"].abs().max())
        pairs = "; ".join(f"{r.condition} n = {r.n_train}: {r.rule_a} {fmt(r.stat_a, 'pp')} vs {r.rule_b} "
                          f"{fmt(r.stat_b, 'pp')}" for r in sig.sort_values("p_holm").head(4).itertuples())
        verdict = WEAKER if worst < 0.05 else DISAGREES
        return Result(verdict, number, f"the rules differ significantly at {len(sig)} of {m} pairs, by up to "
                      f"{fmt(worst, 'pp')} ({pairs})", test, worst, table=table)
    floor = float(table["p_floor"].min())
    if not floor <= ALPHA / m:
        return Result(INCONCLUSIVE, number, f"too few runs per rule to find a difference: the smallest p is "
                      f"{floor:.2g}, above Holm's first threshold {ALPHA:g}/{m}", test, table=table)
    return Result(AGREES, number, f"no two of the {len(rules)} rules differ significantly ({m} pairs)", test,
                  largest, table=table)


_add(PaperClaim(
    "wang_reset_rules_similar", "Wang", "Fig. C.1, §2.1",
    "The four reset rules (posRand, posCon, zero, flip) give similar results", "", None,
    (Need(RESET, ("frozen_sufficient", "frozen_rand"), hidden=(64,),
          resets=("posRand", "posCon", "zero", "flip")),), "similar", _reset_rules))


# == Wang et al., §5 and Fig. 4: learnability ========================================================
def _first_above(values: Mapping[int, float], level: float) -> int | None:
    return next((n for n in sorted(values) if values[n] > level), None)


def _learnability_theory(data: Mapping[str, StudyData], claim: PaperClaim) -> Result:
    from .. import theory

    units = range(3, 65)
    published = {n: float(theory.published_bound(n, 5)) for n in units}
    per_class = {n: float(theory.per_class_bound(n)) for n in units}
    first, first_class = _first_above(published, 0.99), _first_above(per_class, 0.99)
    mc = theory.monte_carlo(15, 5, 20000, 0)
    test = ("Theorem D.1 evaluated exactly (rational arithmetic) for d = 5, and checked by Monte Carlo (20,000 "
            "draws); agrees: the first width above 99% within ±1 unit of the paper's")
    verdict = AGREES if first is not None and abs(first - 15) <= 1 else WEAKER
    finding = (f"the published bound first exceeds 99% at {first} units ({published[first]:.4f}; "
               f"{published[15]:.4f} at 15, Monte Carlo {mc[0]:.3f}). Counting distinct compatible classes "
               f"instead (the irrelevant inputs' signs do not change what a unit does for XOR) gives "
               f"{per_class[15]:.3f} at 15 units and first exceeds 99% at {first_class} units (Monte Carlo "
               f"{mc[1]:.3f} at 15): the simulation row says which the networks follow")
    return Result(verdict, f"{first} units (published formula); {first_class} units (per-class count)", finding,
                  test, float(first))


_add(PaperClaim(
    "wang_learnability_theory", "Wang", "Fig. 4A (top), §5, Thm D.1",
    "In theory a Frozen RAND net needs at least 15 hidden units for a > 99% chance to learn XOR-5D",
    "15 hidden units for > 99%", 15.0, (), "value", _learnability_theory))


def _learned(study: StudyData, need: Need, name: str) -> pd.DataFrame:
    from .theory_table import simulated_fractions

    rows = study.select(Need(need.study), name)
    return simulated_fractions(rows, study.learned_accuracy)


def _learnability_simulation(data: Mapping[str, StudyData], claim: PaperClaim) -> Result:
    from .theory_table import which_curve

    need = claim.needs[0]
    study = data[need.study]
    sim = _learned(study, need, "frozen_rand")
    test = (f"the fraction of Frozen RAND nets at the largest training set whose accuracy at convergence reached "
            f"learned_accuracy = {study.learned_accuracy:.0%}, with its 95% Clopper–Pearson interval; agrees: "
            "at least 99% learned at 15 units; disagrees: significantly fewer than 99% there")
    at = sim[sim["hidden"] == 15]
    if at.empty:
        return Result(INCONCLUSIVE, "—", "no Frozen RAND runs with 15 hidden units at the largest size", test)
    row = at.iloc[0]
    from .. import theory

    dims = int(study.settings.get("dims", 5))
    table = sim.rename(columns={"hidden": "units", "runs": "sim_runs"}).assign(
        published=[float(theory.published_bound(int(h), dims)) for h in sim["hidden"]],
        per_class=[float(theory.per_class_bound(int(h))) for h in sim["hidden"]])
    curve, follows = which_curve(table)
    first = _first_above(dict(zip(sim["hidden"], sim["simulated"])), 0.99 - 1e-12)
    number = (f"{fmt(row.simulated, '%')} learned at 15 units ({int(row.learned)} of {int(row.runs)}; "
              f"95% CI {fmt(row.sim_low, '%')}–{fmt(row.sim_high, '%')}), n = {int(row.n_train)}")
    first_text = (f"the first simulated width where ≥ 99% learned: {first}" if first is not None
                  else "no simulated width reached 99%")
    if row.sim_high < 0.99:
        verdict = WEAKER if first is not None and first > 15 else DISAGREES
        finding = f"significantly fewer than 99% of the 15-unit nets learned; {first_text}. {follows}"
    elif row.simulated >= 0.99:
        verdict, finding = AGREES, f"{first_text}. {follows}"
    else:
        verdict, finding = INCONCLUSIVE, f"too few runs to tell {fmt(row.simulated, '%')} from 99%; {first_text}. " \
                                         f"{follows}"
    return Result(verdict, number, finding, test, float(row.simulated), (float(row.sim_low), float(row.sim_high)),
                  table=table)


_add(PaperClaim(
    "wang_learnability_simulation", "Wang", "Fig. 4A (bottom), §5",
    "Simulated Frozen RAND nets with ≥ 15 hidden units learn XOR-5D with > 99% probability (500 samples, "
    "100 epochs), matching the theory", "> 99% at 15 hidden units", 0.99,
    (Need(WIDTH, ("frozen_rand",), sizes=(500,), hidden=(15,)),), "fraction", _learnability_simulation))


def _sufficient_three(data: Mapping[str, StudyData], claim: PaperClaim) -> Result:
    need = claim.needs[0]
    study = data[need.study]
    test = (f"the fraction of Frozen Sufficient nets with 3 hidden units at the largest training set that reached "
            f"learned_accuracy = {study.learned_accuracy:.0%} (Clopper–Pearson 95%); the paper's claim is "
            "theoretical (a perfect learner), this measures what training achieves; agrees: ≥ 99% learned; "
            "disagrees: significantly fewer")
    parts = {}
    for name in ("frozen_sufficient", "fluid_rand"):
        sim = _learned(study, need, name)
        sim = sim[sim["hidden"] == 3]
        if len(sim):
            parts[name] = sim.iloc[0]
    if "frozen_sufficient" not in parts:
        return Result(INCONCLUSIVE, "—", "no Frozen Sufficient runs with 3 hidden units", test)
    row = parts["frozen_sufficient"]
    fluid = parts.get("fluid_rand")
    number = (f"{fmt(row.simulated, '%')} of Frozen Sufficient nets learned ({int(row.learned)} of {int(row.runs)}; "
              f"95% CI {fmt(row.sim_low, '%')}–{fmt(row.sim_high, '%')})"
              + (f"; Fluid RAND {fmt(fluid.simulated, '%')}" if fluid is not None else ""))
    if row.sim_high < 0.99:
        verdict = WEAKER if row.simulated >= 0.5 else DISAGREES
        finding = "training does not always find the solution three compatible units allow"
    elif row.simulated >= 0.99:
        verdict, finding = AGREES, "every (or nearly every) 3-unit Frozen Sufficient net learned"
    else:
        verdict, finding = INCONCLUSIVE, "too few runs to tell the fraction from 99%"
    return Result(verdict, number, finding, test, float(row.simulated), (float(row.sim_low), float(row.sim_high)))


_add(PaperClaim(
    "wang_learnability_sufficient_three", "Wang", "Fig. 4A, §5",
    "Three hidden units suffice for Frozen Sufficient (and Fluid) nets to learn XOR-5D", "3 units, every trial "
    "(in theory)", 1.0, (Need(WIDTH, ("frozen_sufficient", "fluid_rand"), sizes=(500,), hidden=(3,)),), "fraction",
    _sufficient_three))
_add(PaperClaim(
    "wang_small_rand_net_worse", "Wang", "Fig. 4B, §5",
    "A small (10-unit) Frozen RAND net learns worse than Fluid RAND: significantly higher error at some size",
    "10 hidden units", None, (Need(WIDTH, ("fluid_rand", "frozen_rand"), hidden=(10,)),), "sometimes",
    comparison_claim("fluid_rand", "frozen_rand", ERROR, "sometimes", "lower error")))
_add(PaperClaim(
    "wang_large_rand_net_not_worse", "Wang", "Fig. 4C, §5",
    "Sufficiently large (> 15 units) Frozen RAND nets are at least as good as Fluid RAND (error at convergence)",
    "> 15 hidden units", None, (Need(WIDTH, ("frozen_rand", "fluid_rand")),), "never worse",
    comparison_claim("frozen_rand", "fluid_rand", ERROR, "never worse", "lower error", widths=lambda h: h > 15)))
_add(PaperClaim(
    "wang_sufficient_every_width", "Wang", "Fig. 4D, §5",
    "Frozen Sufficient has an advantage over Fluid RAND at almost all training sizes and every width",
    "", None, (Need(WIDTH, ("frozen_sufficient", "fluid_rand")),), "mostly",
    comparison_claim("frozen_sufficient", "fluid_rand", ERROR, "mostly", "lower error")))


# == Wang et al., §3-4, Fig. 2-3 and C.2-C.6: images ==================================================
for _key, (_data, _slug) in IMAGES.items():
    _t = "80%" if _key == FMNIST else "50%"
    _add(PaperClaim(
        f"wang_in_polarity_fewer_samples_{_slug}", "Wang", "Fig. 2 (col. 1), §3",
        f"{_data}: Frozen IN-Polarity always reaches lower error than Fluid RAND (learns with fewer samples)",
        "every n", None, (Need(_key, ("frozen_in_polarity", "fluid_rand")),), "always",
        comparison_claim("frozen_in_polarity", "fluid_rand", ERROR, "always", "lower error"),
        family="in_polarity_fewer_samples", per_study=True))
    _frozen, _fluid = (0.07, 0.06) if _key == FMNIST else (0.094, 0.084)
    _add(PaperClaim(
        f"wang_in_polarity_gain_100_{_slug}", "Wang", "§3 (Fig. 2)",
        f"{_data}, 100 images: Frozen IN-Polarity's validation error is lower than Fluid RAND's",
        f"{_frozen * 100:.2g}% less error (read as points)", -_frozen,
        (Need(_key, ("frozen_in_polarity", "fluid_rand"), sizes=(100,)),), "value",
        difference_claim("frozen_in_polarity", "fluid_rand", ERROR, 100, -_frozen)))
    _add(PaperClaim(
        f"wang_fluid_in_polarity_gain_100_{_slug}", "Wang", "§3 (Fig. 2)",
        f"{_data}, 100 images: most of the gain is the polarity pattern: Fluid IN-Polarity's error is already lower "
        "than Fluid RAND's", f"{_fluid * 100:.2g}% less error (read as points)", -_fluid,
        (Need(_key, ("fluid_in_polarity", "fluid_rand"), sizes=(100,)),), "value",
        difference_claim("fluid_in_polarity", "fluid_rand", ERROR, 100, -_fluid)))
    if _key == CIFAR:
        for _n, _gain in ((100, 0.01), (50000, 0.03)):
            _add(PaperClaim(
                f"wang_fixing_gain_{_n}_cifar10", "Wang", "§3 (Fig. 3)",
                f"CIFAR-10, {_n} images: fixing the polarities adds a gain: Frozen IN-Polarity's error is below Fluid "
                "IN-Polarity's", f"{_gain * 100:.0f}% less error (read as points)", -_gain,
                (Need(_key, ("frozen_in_polarity", "fluid_in_polarity"), sizes=(_n,)),), "value",
                difference_claim("frozen_in_polarity", "fluid_in_polarity", ERROR, _n, -_gain)))
    _add(PaperClaim(
        f"wang_in_polarity_faster_{_slug}", "Wang", "Fig. 2 (col. 3), §3",
        f"{_data}: Frozen IN-Polarity always takes fewer epochs than Fluid RAND to reach {_t}", "every n", None,
        (Need(_key, ("frozen_in_polarity", "fluid_rand")),), "always",
        comparison_claim("frozen_in_polarity", "fluid_rand", EPOCHS, "always", "fewer epochs"),
        family="in_polarity_faster", per_study=True))
    _add(PaperClaim(
        f"wang_in_polarity_more_success_{_slug}", "Wang", "Fig. 2 (col. 2), §3",
        f"{_data}: Frozen IN-Polarity always has a higher chance than Fluid RAND of reaching {_t}", "every n", None,
        (Need(_key, ("frozen_in_polarity", "fluid_rand")),), "always",
        comparison_claim("frozen_in_polarity", "fluid_rand", SUCCESS, "always", "more often reaching the threshold"),
        family="in_polarity_more_success", per_study=True))
    _add(PaperClaim(
        f"wang_image_rand_not_worse_{_slug}", "Wang", "Fig. 2 (col. 1), §3",
        f"{_data}: Frozen RAND never performs worse than Fluid RAND (error at convergence)", "", None,
        (Need(_key, ("frozen_rand", "fluid_rand")),), "never worse",
        comparison_claim("frozen_rand", "fluid_rand", ERROR, "never worse", "lower error"),
        family="rand_not_worse", per_study=True))
    _named = (1000, 2000) if _key == FMNIST else (10000, 25000)
    _add(PaperClaim(
        f"wang_image_rand_sometimes_more_success_{_slug}", "Wang", "Fig. 2 (col. 2), §3",
        f"{_data}: Frozen RAND has an equal and sometimes higher chance than Fluid RAND of reaching {_t}",
        f"higher at n = {_named[0]} and {_named[1]}", None,
        (Need(_key, ("frozen_rand", "fluid_rand")),), "sometimes",
        comparison_claim("frozen_rand", "fluid_rand", SUCCESS, "sometimes", "more often reaching the threshold",
                         focus=_named),
        family="rand_sometimes_more_success", per_study=True))
    _add(PaperClaim(
        f"wang_image_rand_not_slower_{_slug}", "Wang", "Fig. 2 (col. 3), §3",
        f"{_data}: Frozen RAND takes a comparable number of epochs to Fluid RAND (never significantly more)", "",
        None, (Need(_key, ("frozen_rand", "fluid_rand")),), "never worse",
        comparison_claim("frozen_rand", "fluid_rand", EPOCHS, "never worse", "fewer epochs"),
        family="rand_not_slower", per_study=True))
    _add(PaperClaim(
        f"wang_in_polarity_less_variable_{_slug}", "Wang", "Fig. 2 (col. 1), §3",
        f"{_data}: IN-Polarity runs vary less across trials than Fluid RAND (interquartile range of the error)",
        "every n", None, (Need(_key, ("frozen_in_polarity", "fluid_rand")),), "always",
        comparison_claim("frozen_in_polarity", "fluid_rand", SPREAD, "always", "less variable"),
        family="in_polarity_less_variable", per_study=True))
    _add(PaperClaim(
        f"wang_polarity_beats_finetuning_{_slug}", "Wang", "Fig. 3 (col. 1), §4",
        f"{_data}: with limited data (≤ 1000 images) Frozen IN-Polarity has significantly lower error than "
        "fine-tuning (Fluid IN-Weight)",
        "significant at 250 and 1000" if _key == FMNIST else "significant at ≤ 1000 except 250", None,
        (Need(_key, ("frozen_in_polarity", "fluid_in_weight")),), "mostly",
        comparison_claim("frozen_in_polarity", "fluid_in_weight", ERROR, "mostly", "lower error",
                         sizes=lambda n: n <= 1000),
        family="polarity_beats_finetuning", figure="difference", per_study=True))
    _add(PaperClaim(
        f"wang_polarity_transfer_faster_{_slug}", "Wang", "Fig. 3 (col. 3), §4",
        f"{_data}: Frozen IN-Polarity always takes fewer epochs than fine-tuning (Fluid IN-Weight) to reach {_t}",
        "every n", None, (Need(_key, ("frozen_in_polarity", "fluid_in_weight")),), "always",
        comparison_claim("frozen_in_polarity", "fluid_in_weight", EPOCHS, "always", "fewer epochs"),
        family="polarity_transfer_faster", figure="difference", per_study=True))
    _add(PaperClaim(
        f"wang_fluid_in_polarity_beats_in_weight_{_slug}", "Wang", "Fig. 3, §4",
        f"{_data}: Fluid IN-Polarity almost always has lower error than Fluid IN-Weight", "", None,
        (Need(_key, ("fluid_in_polarity", "fluid_in_weight")),), "mostly",
        comparison_claim("fluid_in_polarity", "fluid_in_weight", ERROR, "mostly", "lower error"),
        family="fluid_in_polarity_beats_in_weight", figure="difference", per_study=True))
    _add(PaperClaim(
        f"wang_frozen_in_weight_small_{_slug}", "Wang", "Fig. 3 (col. 1), §4",
        f"{_data}: with ≤ 1000 images, Frozen IN-Weight gains little over Frozen IN-Polarity (never significantly "
        "lower error)", "≈ 0", None, (Need(_key, ("frozen_in_weight", "frozen_in_polarity")),), "not better",
        comparison_claim("frozen_in_weight", "frozen_in_polarity", ERROR, "not better", "lower error",
                         sizes=lambda n: n <= 1000),
        family="frozen_in_weight_small", figure="difference", per_study=True))
    _largest, _gain = (6000, 0.01) if _key == FMNIST else (50000, 0.04)
    _add(PaperClaim(
        f"wang_frozen_in_weight_gain_large_{_slug}", "Wang", "§4 (Fig. 3)",
        f"{_data}, {_largest} images: with abundant data Frozen IN-Weight has lower error than Frozen IN-Polarity",
        f"≈ {_gain * 100:.0f}% less error (read as points)", -_gain,
        (Need(_key, ("frozen_in_weight", "frozen_in_polarity"), sizes=(_largest,)),), "value",
        difference_claim("frozen_in_weight", "frozen_in_polarity", ERROR, _largest, -_gain)))


def _sign_changes(data: Mapping[str, StudyData], claim: PaperClaim) -> Result:
    need = claim.needs[0]
    study = data[need.study]
    rows = study.select(need, "fluid_rand")
    series = sign_change_series(study.epochs, list(rows["run"])) if "run" in rows and len(study.epochs) else \
        pd.DataFrame(columns=["run", "epoch", "changed"])
    series = series[series["epoch"] <= 50].dropna()
    test = ("per Fluid RAND run, the mean over layers of the fraction of weights whose sign changed since the "
            "previous epoch, averaged over the first 3 and over the last 3 of the first 50 epochs; two-tailed "
            f"Wilcoxon signed-rank test over runs, α = {ALPHA:g}; agrees: significantly more changes early")
    last = int(series["epoch"].max()) if len(series) else 0
    if last < 6:
        return Result(INCONCLUSIVE, "—", f"needs at least 6 epochs with recorded sign changes (has {last})", test)
    early = series[series["epoch"] <= 3].groupby("run")["changed"].mean()
    late = series[series["epoch"] > last - 3].groupby("run")["changed"].mean()
    both = early.index.intersection(late.index)
    early, late = early[both], late[both]
    p = wilcoxon_paired(early, late)
    est, lo, hi = median_ci((early / late.replace(0, np.nan)).dropna()) if (late > 0).any() else (math.nan,) * 3
    number = (f"median {fmt(float(early.median()), '%')} of weights change sign per epoch in epochs 1–3, "
              f"{fmt(float(late.median()), '%')} in epochs {last - 2}–{last} ({len(both)} runs)")
    floor = 2 / 2 ** len(both) if len(both) else 1.0
    if p == p and p < ALPHA:
        verdict = AGREES if early.median() > late.median() else DISAGREES
    elif floor >= ALPHA:
        verdict = INCONCLUSIVE
    else:
        verdict = DISAGREES
    finding = (f"early/late ratio {est:.3g} ({interval(lo, hi, 'x')}); Wilcoxon p = {p:.2g}" if est == est
               else f"Wilcoxon p = {p:.2g}")
    if verdict == INCONCLUSIVE:
        finding += f"; with {len(both)} runs no difference could be significant"
    return Result(verdict, number, finding, test, est, (lo, hi))


def _magnitudes(data: Mapping[str, StudyData], claim: PaperClaim) -> Result:
    need = claim.needs[0]
    study = data[need.study]
    mags = study.magnitudes
    test = ("the quantiles of |w| per layer at initialisation (after alignment), stored for every run: equal "
            "across conditions of a trial with fresh magnitudes (to 1e-6, relative), different for IN-Weight; "
            "agrees: equal")
    if mags.empty:
        return Result(INCONCLUSIVE, "—", "the store holds no initial magnitudes", test)
    levels = [c for c in mags.columns if c not in ("condition", "n_train", "hidden", "reset", "trial", "run", "layer")]
    fresh, source = [], []
    for name in pd.unique(mags["condition"]):
        definition = study.definition(str(name)) or {}
        (source if definition.get("magnitudes") == "source" else fresh).append(name)
    worst, groups = 0.0, 0
    for _, group in mags[mags["condition"].isin(fresh)].groupby(["n_train", "trial", "layer"]):
        if group["condition"].nunique() < 2:
            continue
        values = group[levels].to_numpy(dtype=float)
        scale = np.abs(values).max() or 1.0
        worst = max(worst, float(np.abs(values - values[0]).max() / scale))
        groups += 1
    if not groups:
        return Result(INCONCLUSIVE, "—", "no two fresh-magnitude conditions share a trial", test)
    differs = ""
    if source:
        src = mags[mags["condition"].isin(source)].groupby(["n_train", "trial", "layer"])[levels].mean()
        ref = mags[mags["condition"].isin(fresh)].groupby(["n_train", "trial", "layer"])[levels].mean()
        common = src.index.intersection(ref.index)
        if len(common):
            gap = float((src.loc[common] - ref.loc[common]).abs().to_numpy().max())
            differs = f"; IN-Weight's differ (largest quantile gap {gap:.3g})"
    number = f"largest relative difference {worst:.2g} across {groups} (size, trial, layer) groups{differs}"
    verdict = AGREES if worst <= 1e-6 else DISAGREES
    finding = (f"conditions with fresh magnitudes ({', '.join(map(str, fresh))}) start from the same |w| "
               "distribution" if verdict == AGREES else "the magnitudes differ between conditions of a trial")
    return Result(verdict, number, finding, test, worst)


for _key, (_data, _slug) in IMAGES.items():
    _add(PaperClaim(
        f"wang_sign_changes_decay_{_slug}", "Wang", "Fig. C.5, §3",
        f"{_data}: Fluid RAND's weights change sign most early in training, decaying over the first 50 epochs", "",
        None, (Need(_key, ("fluid_rand",)),), "decay", _sign_changes))
    _add(PaperClaim(
        f"wang_magnitudes_controlled_{_slug}", "Wang", "Fig. C.6, §3",
        f"{_data}: initial magnitude distributions are identical across conditions except IN-Weight", "", None,
        (Need(_key, ("frozen_in_polarity", "fluid_rand")),), "equal", _magnitudes))


# == Igoe et al. ======================================================================================
for _key, _label in SPIN.items():
    _slug = _key.removeprefix("spin-").replace("-", "_")
    for _cond, _title in (("freeze_spin", "Freeze SPIN"), ("fluid_spin", "Fluid SPIN")):
        _add(PaperClaim(
            f"igoe_{_cond}_as_good_{_slug}", "Igoe", "Fig. 1–2, §3.1",
            f"{_label}: {_title} performs as well as Fluid IN (final validation accuracy not significantly lower)",
            "", None, (Need(_key, (_cond, "fluid_in")),), "never worse",
            comparison_claim(_cond, "fluid_in", FINAL_ACCURACY, "never worse", "higher final accuracy"),
            family=f"{_cond}_as_good", per_study=True))
    _add(PaperClaim(
        f"igoe_freeze_spin_fewer_epochs_{_slug}", "Igoe", "Fig. 1–2, §3.1",
        f"{_label}: Freeze SPIN takes fewer epochs than Fluid IN to reach the 40% line", "", None,
        (Need(_key, ("freeze_spin", "fluid_in")),), "always",
        comparison_claim("freeze_spin", "fluid_in", EPOCHS, "always", "fewer epochs"),
        family="freeze_spin_fewer_epochs", per_study=True))
    _add(PaperClaim(
        f"igoe_fluid_spin_more_variable_{_slug}", "Igoe", "Fig. 1–2, §3.1",
        f"{_label}: Fluid SPIN varies more between runs than Freeze SPIN", "", None,
        (Need(_key, ("fluid_spin", "freeze_spin")),), "always",
        comparison_claim("fluid_spin", "freeze_spin", SPREAD_AUC_MORE, "always", "more variable"),
        family="fluid_spin_more_variable", per_study=True))

#: Igoe et al. Table 1: condition of spin-table1 -> (experiment, p0 text, converged, accuracy)
TABLE_1 = {"table1_in": ("ImageNet proportions", "per layer", True, 0.57),
           "exp1_all_positive": ("Exp. 1", "all positive", False, 0.10),
           "exp2_all_negative": ("Exp. 2", "all negative", False, 0.10),
           "exp3_p0_0.1": ("Exp. 3", "p0 = 0.1", True, 0.55),
           "exp4_p0_0.01": ("Exp. 4", "p0 = 0.01", False, 0.10),
           "exp5_p0_0.6": ("Exp. 5", "p0 = 0.6", True, 0.49),
           "exp6_p0_0.7": ("Exp. 6", "p0 = 0.7", True, 0.50),
           "exp7_p0_0.8": ("Exp. 7", "p0 = 0.8", False, 0.10)}


def _convergence(condition: str, converged: bool, accuracy: float):
    def measure(data: Mapping[str, StudyData], claim: PaperClaim) -> Result:
        from .diagnostics import chance_margin

        need = claim.needs[0]
        study = data[need.study]
        rows = study.select(need, condition)
        chance = study.chance
        margin = chance_margin(chance, int(study.settings.get("val_size") or 1000))
        test = (f"converged: final validation accuracy above chance ({chance:.0%}) by more than 3 standard errors "
                f"(> {chance + margin:.1%}); the final accuracy's median with a bootstrap 95% CI; agrees: the "
                f"majority of runs converge as the paper says and, where it converged, its accuracy in the CI or "
                f"within ±{TOLERANCE:.0%} of (paper − chance)")
        final = rows["final_accuracy"].dropna()
        if len(final) < 3:
            return Result(INCONCLUSIVE, f"{len(final)} run{'s' if len(final) != 1 else ''}",
                          f"too few finished runs of {condition} to say whether it converges (3 needed)", test)
        k, n = int((final > chance + margin).sum()), len(final)
        est, lo, hi = median_ci(final)
        number = f"{k} of {n} runs converged; median final accuracy {fmt(est, '%')} ({interval(lo, hi, '%')})"
        majority = k * 2 > n
        paper_text = f"the paper: {'converged' if converged else 'no convergence'}, {fmt(accuracy, '%')}"
        if converged != majority:
            if converged and k:
                return Result(WEAKER, number, f"only a minority of runs converged; {paper_text}", test, est, (lo, hi))
            if not converged and k * 2 < n:
                return Result(WEAKER, number, f"a minority of runs converged; {paper_text}", test, est, (lo, hi))
            return Result(DISAGREES, number, f"{'none' if not k else 'most'} of the runs converged; {paper_text}",
                          test, est, (lo, hi))
        if not converged:
            return Result(AGREES, number, f"{'no run' if not k else 'only a minority'} converged; {paper_text}",
                          test, est, (lo, hi))
        verdict, why = value_verdict(est, lo, hi, accuracy, chance)
        if n < MIN_RUNS:  # too few runs for an interval: the tolerance alone
            close = abs(est - accuracy) <= TOLERANCE * abs(accuracy - chance)
            verdict, why = (AGREES if close else WEAKER), (f"{n} runs: the median within ±{TOLERANCE:.0%} of the "
                                                           f"paper's gain over chance" if close else
                                                           f"{n} runs: the median outside ±{TOLERANCE:.0%} of the "
                                                           "paper's gain over chance")
        elif verdict != AGREES:
            verdict = WEAKER
        return Result(verdict, number, f"converged as the paper says; accuracy: {why}; {paper_text}", test, est,
                      (lo, hi))

    return measure


for _cond, (_exp, _p0, _conv, _acc) in TABLE_1.items():
    _add(PaperClaim(
        f"igoe_table1_{_cond.split('_')[0] if _cond.startswith('exp') else 'in'}", "Igoe", "Table 1, §3.2",
        f"ZFNet, CIFAR-10, 20 epochs, Freeze SPIN with {_p0}" + (" (ImageNet's)" if _cond == "table1_in" else "")
        + f": {'converges' if _conv else 'does not converge'}",
        f"{_exp}: {'yes' if _conv else 'no'}, {_acc:.0%}", _acc, (Need(TABLE1, (_cond,)),), "convergence",
        _convergence(_cond, _conv, _acc)))


def _compression(data: Mapping[str, StudyData], claim: PaperClaim) -> Result:
    import torch

    from ..layers import select
    from ..models import get_model

    with torch.device("meta"):
        model = get_model("alexnet", num_classes=10)
    conv = select(model, "conv")
    params = dict(model.named_parameters())
    conv_weights = sum(params[name].numel() for name in conv)
    total = sum(p.numel() for p in model.parameters())
    numbers = 2 * len(conv)  # (p0, p−, p+) sums to 1: two free numbers per layer
    test = ("polarnet's AlexNet, counted: the layers Freeze SPIN constrains (conv) and the free numbers of their "
            "proportions (p0, p−, p+ sum to 1); agrees: equal")
    number = (f"{numbers} numbers for {len(conv)} conv layers, against {conv_weights / 1e6:.1f} M conv signs "
              f"({total / 1e6:.0f} M parameters in all)")
    return Result(AGREES if numbers == 10 else DISAGREES, number,
                  "a SPIN template of AlexNet is its per-layer proportions", test, float(numbers))


_add(PaperClaim(
    "igoe_compression", "Igoe", "§4",
    "SPIN transfers 2n numbers (n conv layers) instead of a polarity per weight",
    "10 numbers instead of 60 M", 10.0, (), "count", _compression))
