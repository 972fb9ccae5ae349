"""What a paper claim is and the data it is measured on: the verdicts, :class:`Need`,
:class:`Result`, :class:`PaperClaim`, the :data:`CLAIMS` registry and :class:`StudyData`.

The registry is filled by :mod:`.paper_claims`; import :mod:`.claims` (which imports both)
for every registered claim. This module imports neither, so the claims import it without a
circle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..registry import Registry
from .looks import stored_num_classes
from .metrics import chance_level, run_metrics

__all__ = ["PaperClaim", "Need", "Result", "Measure", "StudyData", "CLAIMS", "AGREES", "WEAKER", "DISAGREES",
           "INCONCLUSIVE", "NOT_RUN", "VERDICTS", "ALPHA", "TOLERANCE", "MIN_RUNS"]

AGREES = "agrees"
WEAKER = "same direction, different size"
DISAGREES = "disagrees"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"
#: every verdict, in the order the scorecard counts them
VERDICTS = (AGREES, WEAKER, DISAGREES, INCONCLUSIVE, NOT_RUN)
#: family-wise error rate of every Holm-corrected test
ALPHA = 0.05
#: a number agrees when polarnet's estimate is within this share of the paper's effect (its
#: distance from no effect) of the paper's number, or the paper's number is in the 95% CI
TOLERANCE = 0.25
#: the fewest runs per condition behind a bootstrap interval (or a spread test) that a verdict
#: rests on: a percentile bootstrap of 2 or 3 values is far too narrow to trust
MIN_RUNS = 5


# -- what a claim needs and gives -----------------------------------------------------------
@dataclass(frozen=True)
class Need:
    """What a claim reads from one study.

    Attributes:
        study: the study's key (a preset name: ``"xor5d"``, ``"fmnist-alexnet"``, …).
        conditions: the conditions compared (names as in the preset; found in the study by
            their definition).
        sizes: training-set sizes the claim needs (empty: whatever the study ran).
        hidden: hidden-unit counts it needs (empty: any; XOR only).
        resets: reset rules it reads (empty: the study's first rule for frozen conditions).
    """

    study: str
    conditions: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()
    hidden: tuple[int, ...] = ()
    resets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    """What a claim's measure found.

    Attributes:
        verdict: one of :data:`VERDICTS`.
        number: polarnet's number as text, with its 95% interval where it has one.
        finding: what was measured, in a sentence or two (says how far when the size differs).
        test: the test and the rule that gave the verdict.
        estimate, ci: the number and its interval, where there is one.
        table: per training size (or grid cell): the medians, differences with intervals, p
            values; for the scorecard's details.
    """

    verdict: str
    number: str
    finding: str
    test: str = ""
    estimate: float | None = None
    ci: tuple[float, float] | None = None
    table: pd.DataFrame | None = field(default=None, compare=False, repr=False)


Measure = Callable[[Mapping[str, "StudyData"], "PaperClaim"], Result]


@dataclass(frozen=True)
class PaperClaim:
    """One claim of one paper, with what it needs and how polarnet measures it.

    Attributes:
        name: registry name (``wang_xor_sufficient_faster``).
        paper: ``"Wang"`` or ``"Igoe"``.
        where: figure, table or section (``"Fig. 1C, §2.1"``).
        claim: the claim in a few words.
        number: the paper's number as text (``"58% of Fluid's epochs at n = 60"``); empty when
            the paper gives none.
        value: the paper's number as a value (0.58), where it gives one.
        needs: the studies and conditions it reads; empty for claims computed without a study.
        test: the kind of test (``"value"``, ``"always"``, ``"never worse"``, …).
        measure: ``measure(data, claim) -> Result``, where ``data`` maps study keys to
            :class:`StudyData`.
        family: claims saying the same on other data share it (the per-study report shows one).
        figure: the per-study report figure the claim sits beside (``"efficiency"`` or
            ``"difference"``).
        per_study: whether the per-study report applies it (:func:`.claims.check_claims`).
    """

    name: str
    paper: str
    where: str
    claim: str
    number: str
    value: float | None
    needs: tuple[Need, ...]
    test: str
    measure: Measure = field(compare=False, repr=False)
    family: str = ""
    figure: str = "efficiency"
    per_study: bool = False

    @property
    def source(self) -> str:
        """``Wang et al. Fig. 1C, §2.1``."""
        return f"{self.paper} et al. {self.where}"


CLAIMS: Registry[PaperClaim] = Registry("paper claim")


# -- a study's data ---------------------------------------------------------------------------
_SEMANTIC = ("polarity", "frozen", "magnitudes", "rule", "layers", "swap", "swap_mode", "learner", "proportions")


@lru_cache(maxsize=None)
def _condition_defaults() -> dict:
    from ..experiments.conditions import Condition

    return Condition(name="").to_dict()


@lru_cache(maxsize=None)
def _wanted(study: str, name: str) -> dict | None:
    """The definition a claim means by condition ``name`` of study ``study``: the preset's
    (``define_condition``) or the registered condition's; ``None`` if neither knows it."""
    from ..experiments.conditions import CONDITIONS

    from ..experiments.config import list_presets, load_study

    if study in list_presets():
        preset = load_study(study, validate=False)
        if name in preset.define_condition or name in CONDITIONS.names():
            return preset.condition(name).to_dict()
    return CONDITIONS.get(name).to_dict() if name in CONDITIONS.names() else None


def _same(stored: dict, wanted: dict) -> bool:
    for key in _SEMANTIC:
        a, b = stored.get(key), wanted.get(key)
        if key == "proportions" and (isinstance(a, str) or isinstance(b, str)):
            return False  # a file: the names must match (its path differs between machines)
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            if len(a) != len(b) or not np.allclose(np.asarray(a, float), np.asarray(b, float)):
                return False
        elif a != b:
            return False
    return True


class StudyData:
    """One study, loaded: stored settings, runs, epochs, magnitudes and per-run metrics.

    ``threshold`` (the study's first accuracy threshold), ``chance`` and
    ``learned_accuracy`` come from the stored settings. :meth:`condition` finds a condition of
    a claim in the study by its definition.

    Example:
        >>> per_run = pd.DataFrame({"condition": ["fluid_rand"], "n_train": [8], "hidden": [64], "reset": ["none"],
        ...                         "trial": [0], "error_at_convergence": [0.2], "epochs_to_threshold": [3.0]})
        >>> StudyData("xor5d", {"thresholds": [0.7]}, per_run).threshold
        0.7
    """

    def __init__(self, key: str, settings: dict, per_run: pd.DataFrame, *, epochs: pd.DataFrame | None = None,
                 runs: pd.DataFrame | None = None, magnitudes: pd.DataFrame | None = None,
                 folder: Path | None = None, quick: bool = False, num_classes: int | None = None) -> None:
        self.key, self.settings, self.folder, self.quick = key, dict(settings or {}), folder, quick
        self.num_classes = num_classes  # as stored (None: a store written before it was)
        self.per_run = per_run.copy()
        for column, default in (("hidden", 0), ("reset", "none"), ("trial", 0)):
            if column not in self.per_run:
                self.per_run[column] = default
        self.epochs = epochs if epochs is not None else pd.DataFrame()
        self.runs = runs if runs is not None else pd.DataFrame()
        self.magnitudes = magnitudes if magnitudes is not None else pd.DataFrame()
        self._definitions: dict[str, dict | None] = {}

    @classmethod
    def load(cls, folder: str | Path, key: str = "", quick: bool = False) -> StudyData:
        """Read a study folder (read-only).

        Raises:
            StoreError: the folder holds no readable store.
        """
        from ..experiments.store import Store

        with Store.existing(folder) as store:
            facts, runs, epochs, magnitudes = store.study(), store.runs(), store.epochs(), store.magnitudes()
        settings = facts.get("settings", {})
        thresholds = tuple(settings.get("thresholds") or [0.8])
        per_run = run_metrics(epochs, thresholds[0], thresholds=thresholds) if len(epochs) else \
            run_metrics(pd.DataFrame(columns=["run", "condition", "n_train", "hidden", "reset", "trial", "status",
                                              "epoch", "val_loss", "val_acc"]), thresholds[0])
        return cls(key or settings.get("name", Path(folder).name), settings, per_run, epochs=epochs, runs=runs,
                   magnitudes=magnitudes, folder=Path(folder), quick=quick, num_classes=stored_num_classes(facts))

    # -- settings --------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return float((self.settings.get("thresholds") or [0.8])[0])

    @property
    def chance(self) -> float:
        return chance_level(self.settings, self.num_classes)

    @property
    def learned_accuracy(self) -> float:
        return float(self.settings.get("learned_accuracy", 0.95))

    @property
    def epochs_run(self) -> int:
        """Epochs per run: the stored setting, else the most any run recorded."""
        if self.settings.get("epochs"):
            return int(self.settings["epochs"])
        return int(self.epochs["epoch"].max()) if len(self.epochs) else 0

    # -- conditions ------------------------------------------------------------------------
    def definition(self, name: str) -> dict | None:
        """A condition's stored definition (``define_condition``, else the one stored with its
        runs, else the registered one), with every field."""
        if name not in self._definitions:
            from .learner_comparison import condition_settings

            found = condition_settings(name, self.settings, self.runs if len(self.runs) else None)
            self._definitions[name] = None if found is None else {**_condition_defaults(), **found}
        return self._definitions[name]

    def condition(self, name: str, study: str | None = None) -> str | None:
        """The study's condition that is what the claim calls ``name`` (of preset ``study``):
        the one of that name if its definition matches, else the only one whose definition
        matches; ``None`` when the study has none.

        Example:
            >>> pr = pd.DataFrame({"condition": ["my_fluid"], "n_train": [8]})
            >>> s = {"define_condition": {"my_fluid": {"polarity": "none", "frozen": False}}}
            >>> StudyData("xor5d", s, pr).condition("fluid_rand")
            'my_fluid'
        """
        present = [str(c) for c in pd.unique(self.per_run["condition"])] if len(self.per_run) else []
        wanted = _wanted(study or self.key, name)
        if wanted is None:
            return name if name in present else None
        matches = [c for c in present if (d := self.definition(c)) is not None and _same(d, wanted)]
        if name in matches or (name in present and self.definition(name) is None):
            return name
        if len(matches) == 1:
            return matches[0]
        plain = [c for c in matches if self.definition(c).get("lr") is None]
        return plain[0] if len(plain) == 1 else None

    def select(self, need: Need, *conditions: str) -> pd.DataFrame:
        """The per-run rows of ``conditions`` (found by :meth:`condition`) at the grid points
        ``need`` asks for: its hidden sizes, its reset rules (else the study's first) for
        frozen runs; fluid runs (reset ``none``) always. Column ``role`` holds the name the
        claim uses."""
        parts = []
        for name in conditions:
            found = self.condition(name, need.study)
            if found is None:
                continue
            rows = self.per_run[self.per_run["condition"] == found]
            if need.hidden:
                rows = rows[rows["hidden"].isin(need.hidden)]
            rules = need.resets or tuple((self.settings.get("resets") or [])[:1])
            frozen = rows["reset"] != "none"
            if rules and frozen.any() and rows.loc[frozen, "reset"].isin(rules).any():
                rows = rows[~frozen | rows["reset"].isin(rules)]
            elif frozen.any():  # no rule named, none stored: the most common one
                rule = rows.loc[frozen, "reset"].mode().iloc[0]
                rows = rows[~frozen | (rows["reset"] == rule)]
            parts.append(rows.assign(role=name))
        if not parts:
            return self.per_run.iloc[0:0].assign(role=pd.Series(dtype=object))
        return pd.concat(parts, ignore_index=True)

