"""The papers' claims, each checked against a study's numbers.

A claim is a registered function ``claim(per_run, threshold) -> Verdict | None``; it returns
``None`` when the study lacks the conditions it compares. Adding a claim is one function.

A claim the study's numbers cannot decide (e.g. no run reached the threshold) has
``agrees=None`` and a finding that says why; it is neither confirmed nor contradicted.
Epochs-to-threshold medians are compared only where at least half the trials of both
conditions reached the threshold (:data:`polarnet.analysis.metrics.MIN_SUCCESS_FOR_MEDIAN`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ..registry import Registry
from .metrics import MIN_SUCCESS_FOR_MEDIAN

__all__ = ["Verdict", "CLAIMS", "check_claims"]


@dataclass(frozen=True)
class Verdict:
    """A claim, where it comes from, and what this study says about it.

    ``agrees`` is ``None`` when the study cannot test the claim (the finding says why).
    """

    claim: str
    source: str
    finding: str
    agrees: bool | None
    figure: str = "efficiency"  # the report figure it sits beside: "efficiency" or "difference"

    @property
    def verdict(self) -> str:
        """``this study agrees``, ``… does not fully agree`` or ``… cannot test it``.

        Example:
            >>> Verdict("c", "s", "f", None).verdict
            'this study cannot test it'
        """
        if self.agrees is None:
            return "this study cannot test it"
        return "this study agrees" if self.agrees else "this study does not fully agree"


Claim = Callable[[pd.DataFrame, float], "Verdict | None"]
CLAIMS: Registry[Claim] = Registry("claim")


def _medians(per_run: pd.DataFrame, condition: str, column: str) -> pd.Series:
    return per_run[per_run["condition"] == condition].groupby("n_train")[column].median()


def _success(per_run: pd.DataFrame, condition: str) -> pd.Series:
    rows = per_run[per_run["condition"] == condition]
    return rows.groupby("n_train")["epochs_to_threshold"].apply(lambda s: float(s.notna().mean()))


def _faster(per_run: pd.DataFrame, a: str, b: str, threshold: float) -> tuple[int, int]:
    """At how many sizes (where at least half the trials of both reached the threshold) ``a``
    needs fewer median epochs than ``b``."""
    ea, eb = _medians(per_run, a, "epochs_to_threshold"), _medians(per_run, b, "epochs_to_threshold")
    sa, sb = _success(per_run, a), _success(per_run, b)
    both = [n for n in ea.index.intersection(eb.index) if not (math.isnan(ea[n]) or math.isnan(eb[n]))
            and min(sa[n], sb[n]) >= MIN_SUCCESS_FOR_MEDIAN]
    return sum(ea[n] < eb[n] for n in both), len(both)


def _not_worse(per_run: pd.DataFrame, a: str, b: str) -> tuple[int, int]:
    """At how many sizes (with a finite median for both) ``a``'s median error at convergence is at most ``b``'s."""
    ea, eb = _medians(per_run, a, "error_at_convergence"), _medians(per_run, b, "error_at_convergence")
    sizes = [n for n in ea.index.intersection(eb.index) if not (math.isnan(ea[n]) or math.isnan(eb[n]))]
    return sum(ea[n] <= eb[n] + 1e-12 for n in sizes), len(sizes)


def _present(per_run: pd.DataFrame, *conditions: str) -> bool:
    return set(conditions) <= set(per_run["condition"])


def _faster_claim(a: str, b: str, source: str) -> Claim:
    def check(per_run: pd.DataFrame, threshold: float) -> Verdict | None:
        if not _present(per_run, a, b):
            return None
        wins, sizes = _faster(per_run, a, b, threshold)
        pair = per_run[per_run["condition"].isin({a, b})]
        if sizes:
            finding = f"{a} reached {threshold:.0%} in fewer median epochs than {b} at {wins} of {sizes} sizes"
        elif pair["epochs_to_threshold"].isna().all():
            finding = f"no run of {a} or {b} reached {threshold:.0%}"
        else:
            finding = (f"no size where at least half the trials of both {a} and {b} reached {threshold:.0%}")
        return Verdict(f"{a} learns faster (fewer epochs) than {b} at every training size", source, finding,
                       bool(wins == sizes) if sizes else None)

    return check


def _not_worse_claim(a: str, b: str, source: str, figure: str = "efficiency") -> Claim:
    def check(per_run: pd.DataFrame, threshold: float) -> Verdict | None:
        if not _present(per_run, a, b):
            return None
        ok, sizes = _not_worse(per_run, a, b)
        finding = (f"{a}'s median error at convergence was at most {b}'s at {ok} of {sizes} sizes" if sizes
                   else f"no size with finished runs of both {a} and {b}")
        return Verdict(f"{a} is never worse than {b} (validation error at convergence)", source, finding,
                       bool(ok == sizes) if sizes else None, figure)

    return check


for _name, _claim in (
    ("xor_sufficient_faster", _faster_claim("frozen_sufficient", "fluid_rand", "Wang et al. Fig. 1C")),
    ("xor_sufficient_fewer_samples", _not_worse_claim("frozen_sufficient", "fluid_rand", "Wang et al. Fig. 1B")),
    ("rand_not_worse", _not_worse_claim("frozen_rand", "fluid_rand", "Wang et al. Fig. 1B/C and Fig. 2")),
    ("in_polarity_faster", _faster_claim("frozen_in_polarity", "fluid_rand", "Wang et al. Fig. 2")),
    ("in_polarity_fewer_samples", _not_worse_claim("frozen_in_polarity", "fluid_rand", "Wang et al. Fig. 2")),
    ("in_polarity_beats_finetuning", _not_worse_claim("frozen_in_polarity", "fluid_in_weight", "Wang et al. Fig. 3",
                                                      "difference")),
):
    CLAIMS.register(_name)(_claim)


def check_claims(per_run: pd.DataFrame, threshold: float) -> list[Verdict]:
    """Every registered claim that applies to this study.

    Example:
        >>> df = pd.DataFrame({"condition": ["frozen_rand", "fluid_rand"], "n_train": [8, 8], "trial": [0, 0],
        ...                    "epochs_to_threshold": [3.0, 5.0], "error_at_convergence": [0.1, 0.2]})
        >>> [v.agrees for v in check_claims(df, 0.8)]
        [True]
    """
    verdicts = [CLAIMS.get(name)(per_run, threshold) for name in CLAIMS.names()]
    return [v for v in verdicts if v is not None]
