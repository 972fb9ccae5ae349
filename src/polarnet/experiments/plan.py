"""Expand a study into runs; name each run by a hash of everything that determines it.

A run's key is the SHA-256 of its canonical settings (the study's semantic settings, the
condition, and its grid point), so re-running a study finds the runs it already has, and
changing a setting that matters gives new runs. Settings that only choose *which* runs exist
(the grid lists), how they are computed (``vectorize``), or how they are named, are left out.
A file (the study's ``source`` or ``proportions``, a condition's ``proportions``) counts by
its content: the key holds its SHA-256, not its path, so editing a file gives new runs and
moving or copying it keeps them.

Seeds derive from (study seed, purpose, trial, …), never from the condition, so within a
trial every condition shares the magnitude draw, the training subset, the batch order and
the validation set.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

from ..fileformat import is_file as _is_file
from .conditions import Condition
from .config import Study
# the run count is cost arithmetic the study limits share, so it lives beneath the study
from .cost_model import count_runs
from .cost_model import reset_rules as _resets

__all__ = ["RunSpec", "plan", "derive_seed", "duration", "count_runs", "file_sha256"]

# settings that choose which runs exist or how they are computed, not what a run computes
_NOT_IN_KEY = {"name", "description", "conditions", "sizes", "hidden", "resets", "trials", "vectorize", "ensemble_members",
               "learners", "lr_sweep",
               "define_condition", "thresholds", "learned_accuracy", "data_root", "download", "source_hint",
               "allow_large", "allow_extreme"}
_STUDY_DEFAULTS = Study()._as_dict
_CONDITION_DEFAULTS = {f.name: f.default for f in fields(Condition)}


_FILE_SETTINGS = ("source", "proportions")
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's content, hex; computed once per process for a given path,
    modification time and size (AlexNet's weights are 233 MB), so a changed file is read again.

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "p.json")
        >>> _ = open(f, "w").write("{}")
        >>> file_sha256(f)[:12]
        '44136fa355b3'
    """
    real = os.path.realpath(path)
    stat = os.stat(real)
    cache_key = (real, stat.st_mtime_ns, stat.st_size)
    if cache_key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(real, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[cache_key] = digest.hexdigest()
    return _DIGESTS[cache_key]


def derive_seed(*parts: Any) -> int:
    """A 62-bit seed from any JSON-able parts.

    Example:
        >>> derive_seed(0, "init", 3) == derive_seed(0, "init", 3) != derive_seed(0, "init", 4)
        True
    """
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2


@dataclass(frozen=True)
class RunSpec:
    """One run: a study, a condition and a grid point."""

    study: Study
    condition: Condition
    n_train: int
    hidden: int
    reset: str
    trial: int

    @property
    def lr(self) -> float:
        return self.condition.lr if self.condition.lr is not None else self.study.lr

    def settings(self) -> dict[str, Any]:
        """Everything that determines the run's numbers, as stored beside its results.

        A file setting keeps its path (for people) and gains ``<setting>_sha256``, its
        content's hash; :attr:`key` hashes these settings without the paths of such files.
        """
        # only what differs from the defaults (as open_lth does): a new setting with a default
        # leaves the keys of existing runs, and so their stored results, valid
        study = {k: v for k, v in self.study._as_dict.items() if k not in _NOT_IN_KEY and v != _STUDY_DEFAULTS[k]}
        condition = {k: v for k, v in self.condition.to_dict().items()
                     if k == "name" or k != "description" and v != _CONDITION_DEFAULTS[k]}
        for table in (study, condition):
            for name in _FILE_SETTINGS:
                value = table.get(name)
                if isinstance(value, str) and _is_file(value):
                    table[f"{name}_sha256"] = file_sha256(value)
        return {"study": study, "condition": condition, "n_train": self.n_train,
                "hidden": self.hidden, "reset": self.reset, "trial": self.trial}

    @cached_property
    def key(self) -> str:
        """24 hex digits: the SHA-256 of :meth:`settings`, files counted by content only.

        Example:
            >>> from .config import load_study
            >>> run = plan(load_study("xor5d", ["trials=1", "sizes=[8]"]))[0]
            >>> len(run.key), run.key == plan(load_study("xor5d", ["trials=1", "sizes=[8]"]))[0].key
            (24, True)
        """
        settings = self.settings()
        for table in (settings["study"], settings["condition"]):
            for name in _FILE_SETTINGS:
                if f"{name}_sha256" in table:
                    del table[name]  # the content decides, wherever the file sits
        text = json.dumps(settings, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    # seeds: shared by every condition of a trial
    @property
    def init_seed(self) -> int:
        return derive_seed(self.study.seed, "init", self.trial, self.hidden)

    @property
    def order_seed(self) -> int:
        return derive_seed(self.study.seed, "order", self.trial, self.n_train)

    @property
    def data_seed(self) -> int:
        return derive_seed(self.study.seed, "train", self.trial if self.study.data_per_trial else 0)

    @property
    def val_seed(self) -> int:
        return derive_seed(self.study.seed, "validation")

    @property
    def template_seed(self) -> int:
        return derive_seed(self.study.seed, "template", self.trial, self.hidden)

    @property
    def reset_seed(self) -> int:
        return derive_seed(self.study.seed, "reset", self.trial, self.n_train, self.hidden, self.condition.name, self.reset)


def plan(study: Study) -> list[RunSpec]:
    """All runs of a study, in grid order (condition, size, hidden, reset, trial).

    A condition that fixes its own reset rule takes part once per grid point, not once per
    entry of ``resets``; so do a fluid one and one whose learner never resets (all but
    ``freeze_sgd``): their ``reset`` is ``"none"``.

    Example:
        >>> from .config import load_study
        >>> len(plan(load_study("xor5d")))  # 3 conditions × 11 sizes × 50 trials
        1650
    """
    runs = []
    for name in study.conditions:
        condition = study.condition(name)
        resets = _resets(study, condition)
        for n in study.sizes:
            for hidden in study.hidden:
                for reset in resets:
                    runs.extend(RunSpec(study, condition, n, hidden, reset, t) for t in range(study.trials))
    return runs


def duration(seconds: float) -> str:
    """An estimated time as people say it: ``42 s``, ``4.5 min``, ``12 min``, ``3.5 h``,
    ``4.2 days`` (every estimate polarnet prints: :func:`polarnet.experiments.cost.describe`).

    Example:
        >>> duration(90), duration(150), duration(7200), duration(3 * 86400)
        ('90 s', '2.5 min', '2.0 h', '3.0 days')
    """
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
