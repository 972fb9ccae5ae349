"""The papers' claims as a registry, each measured on polarnet's studies.

A :class:`PaperClaim` is one claim of Wang et al. (ICML 2023) or Igoe et al. (ICLR 2024 Tiny
Papers): where it is in the paper, the claim in a few words, the paper's number where it gives
one, what it needs (:class:`Need`: a study key, its conditions and grid points), the kind of
test, and a ``measure`` that computes polarnet's number from the loaded study
(:class:`StudyData`) and returns a :class:`Result` with one of the verdicts:

* ``agrees``;
* ``same direction, different size`` (:data:`WEAKER`; the finding says how far);
* ``disagrees``;
* ``inconclusive``: the study ran but cannot decide (too few runs for the test to find
  anything, no run reached the threshold, or an interval that holds both the paper's number
  and no effect);
* ``not run``: the data are missing (the scorecard gives the reason).

The registered claims are in :mod:`.paper_claims`; adding one is one
``CLAIMS.register(PaperClaim(...))`` plus its test. Conditions are found by what they *are*
(their stored definition: polarity, frozen, magnitudes, …), not by their names; the accuracy
threshold, chance level and ``learned_accuracy`` are the study's stored settings.

How numbers are judged (:func:`value_verdict`): a paper's number **agrees** when it lies
inside polarnet's 95% bootstrap interval, or polarnet's estimate is within ±:data:`TOLERANCE`
(25%) of the paper's effect, its distance from no effect (a difference of 0, a ratio of 1) —
and the interval excludes no effect. Claims about directions ("always", "never worse",
"sometimes") use two-tailed Mann–Whitney U tests per training size (Fisher's exact test for
success rates, Brown–Forsythe for spread), Holm–Bonferroni across the sizes, α = 0.05.

:func:`check_claims` keeps the per-study report's interface (``Verdict``): it applies the
comparison claims whose conditions a study has, once per claim family.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

# the claims' building blocks live below this module (claim_core, claim_measures) so that
# paper_claims can import them while this module imports paper_claims: no circle. They are
# re-exported here, where they always were.
from . import paper_claims  # noqa: F401  (registers the claims into CLAIMS)
from .claim_core import (AGREES, ALPHA, CLAIMS, DISAGREES, INCONCLUSIVE, MIN_RUNS, NOT_RUN, TOLERANCE, VERDICTS, WEAKER,
                         Measure, Need, PaperClaim, Result, StudyData)
from .claim_measures import (EPOCHS, ERROR, FINAL_ACCURACY, SPREAD, SPREAD_AUC_MORE, SUCCESS, Metric, compare,
                             comparison_claim, difference_claim, direction_verdict, fmt, interval, ratio_claim,
                             sign_change_series, value_verdict)
from .looks import declared_look

__all__ = ["PaperClaim", "Need", "Result", "Measure", "StudyData", "Metric", "CLAIMS", "claims", "AGREES", "WEAKER",
           "DISAGREES", "INCONCLUSIVE", "NOT_RUN", "VERDICTS", "ALPHA", "TOLERANCE", "MIN_RUNS", "value_verdict",
           "direction_verdict", "compare", "Verdict", "check_claims", "ERROR", "EPOCHS", "SUCCESS", "FINAL_ACCURACY",
           "SPREAD", "SPREAD_AUC_MORE", "comparison_claim", "difference_claim", "ratio_claim", "fmt", "interval",
           "sign_change_series"]


def claims() -> list[PaperClaim]:
    """Every registered claim in the order of registration (the papers' order).

    Example:
        >>> [c.paper for c in claims()][:1]
        ['Wang']
    """
    return list(CLAIMS._items.values())  # registration order, not sorted by name


# -- the per-study report's interface ---------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """A claim, where it comes from, and what one study says about it (the per-study
    report's view of a :class:`PaperClaim`).

    ``agrees`` is ``True`` (agrees), ``False`` (disagrees, or same direction but another
    size) or ``None`` (the study cannot test it; the finding says why).
    """

    claim: str
    source: str
    finding: str
    agrees: bool | None
    figure: str = "efficiency"  # the report figure it sits beside: "efficiency" or "difference"
    outcome: str = ""  # the scorecard's verdict
    where: str = ""  # the grid point it was measured at, where the study has several ("hidden 64, reset posRand")
    hidden: tuple[int, ...] = ()  # the hidden sizes of the runs it read (empty: the study has no such axis)
    resets: tuple[str, ...] = ()  # the frozen runs' reset rules it read

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


def check_claims(per_run: pd.DataFrame, threshold: float, settings: dict | None = None) -> list[Verdict]:
    """The registered comparison claims that apply to one study: those whose conditions it
    has, one per claim family, each measured once by the claim's own test at the grid point the
    paper made it for (its :class:`Need`'s hidden sizes and reset rules: Wang et al. Fig. 1 at
    64 hidden units and posRand), never at every width or rule. A claim whose grid point the
    study has no run at is returned unmeasured: outcome :data:`NOT_RUN`, the finding says which
    point is missing.

    Args:
        per_run: :func:`~.metrics.run_metrics` rows of the whole study (without a ``hidden``
            or ``reset`` column: the study has no such axis).
        threshold: the accuracy threshold of its ``epochs_to_threshold``.
        settings: the study's stored settings, if at hand: conditions are then found by their
            definitions, and a claim made on another dataset than the study's is left out.

    Example:
        >>> df = pd.DataFrame({"condition": ["frozen_rand"] * 3 + ["fluid_rand"] * 3, "n_train": [8] * 6,
        ...                    "trial": [0, 1, 2] * 2, "epochs_to_threshold": [3.0] * 6,
        ...                    "error_at_convergence": [0.1, 0.2, 0.15, 0.2, 0.1, 0.15]})
        >>> [(v.claim, v.agrees) for v in check_claims(df, 0.8)][:1]
        [('frozen_rand learns as fast as fluid_rand: never significantly more epochs to the threshold', None)]
    """
    from dataclasses import replace

    from .grid import missing_point, point_label

    settings = {**(settings or {}), "thresholds": [threshold]}
    data = StudyData("", settings, per_run)
    dataset = (settings or {}).get("dataset")
    out, seen = [], set()
    for claim in claims():
        if not claim.per_study or (claim.family or claim.name) in seen:
            continue
        need = claim.needs[0]
        if dataset and _preset_dataset(need.study) not in (None, dataset):
            continue
        if any(data.condition(c, need.study) is None for c in need.conditions):
            continue
        seen.add(claim.family or claim.name)
        if "hidden" not in per_run and need.hidden:  # no width axis: whatever the study ran
            need = replace(need, hidden=())
            claim = replace(claim, needs=(need, *claim.needs[1:]))
        missing = missing_point(per_run, need.hidden, need.resets)
        if missing:
            out.append(Verdict(_sentence(claim, data), claim.source, f"made at {missing}, where this study has no run",
                               None, claim.figure, NOT_RUN))
            continue
        read = data.select(need, *need.conditions)
        result = claim.measure({need.study: data}, claim)
        agrees = {AGREES: True, DISAGREES: False, WEAKER: False}.get(result.verdict)
        out.append(Verdict(_sentence(claim, data), claim.source, result.finding, agrees, claim.figure, result.verdict,
                           point_label(read, per_run),
                           tuple(int(h) for h in sorted(read["hidden"].unique())) if "hidden" in per_run else (),
                           tuple(sorted(set(read["reset"]) - {"none"})) if "reset" in per_run else ()))
    return out


def _sentence(claim: PaperClaim, data: StudyData) -> str:
    """The claim in the study's own condition names: the claim's text names the paper's
    conditions by their declared labels (``Frozen RAND``), each replaced by the name of the
    study's condition that is it."""
    need = claim.needs[0]
    text = claim.claim
    labels = {name: declared_look(name)["label"] for name in need.conditions}
    for name in sorted(need.conditions, key=lambda c: len(labels[c]), reverse=True):
        found = data.condition(name, need.study) or name
        text = text.replace(labels[name], found)
    return text


@lru_cache(maxsize=None)
def _preset_dataset(study: str) -> str | None:
    """The dataset of preset ``study`` (the packaged presets always load); ``None`` for a
    claim whose study is not a preset."""
    from ..experiments.config import list_presets, load_study

    return load_study(study, validate=False).dataset if study in list_presets() else None
