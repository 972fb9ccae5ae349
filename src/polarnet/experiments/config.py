"""Typed, validated study configuration: TOML files, presets, ``--set key=value`` overrides.

A study is a grid: conditions × training-set sizes × hidden units × reset rules × trials.
Everything is checked before any run starts; an unknown key or a bad value is rejected
with its name and the allowed values, always as one ``ValueError``.

Checked when, at what cost:

* reading (:func:`load_study`): keys and types;
* :meth:`Study.validate` (milliseconds: no data, no model): every value, against the
  dataset's split sizes and the limits below; and that every setting given shapes the runs
  (a condition field its polarity does not read, a ``source`` no condition uses, ``hidden``
  on an image study… would be recorded and keyed without effect, so they are refused);
* :func:`polarnet.experiments.checks.check_study` (builds the model once per architecture):
  what needs the model — layer selections, proportions files.

Limits: a value past a cap is refused unless ``allow_large = true`` (for a real huge study);
a dataset's own sizes and the hard limits hold whatever ``allow_large`` says. ``lr``,
``adam_eps`` and ``eps`` must lie in :data:`RANGES` unless ``allow_extreme = true`` (to
provoke a failure on purpose, say).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from ..builders import RULES
from ..fileformat import is_file as _is_file
from ..proportions import check_proportions
from ..freeze import RESETS
from ..init import INITIALIZERS
from ..learners import LEARNERS
from ..data.images import IMAGE_DATASETS
from ..models import HEADS, MODELS, resolve_model
from .conditions import (CONDITIONS, MAGNITUDES, POLARITIES, Condition, condition_from_dict, condition_problems,
                         needs_source)
from .cost_model import reference_estimate
from .datasets import DATASET_LOADERS, model_kwargs

__all__ = ["Study", "load_study", "expand_learners", "list_presets", "parse_override", "LIMITS", "RANGES", "RULE_REQUIREMENTS"]

_DTYPES = ("float32", "float64")

# Caps that stop a typo (an extra zero, a TOML int near 2**63) from hanging a machine;
# ``allow_large = true`` lifts them. HARD_MAX holds always: every count must fit a tensor
# dimension's 32-bit range.
LIMITS: dict[str, int] = {
    "runs": 10**6,  # runs in the study (the plan's size)
    "days": 10**4,  # estimated days on 2 CPU cores (cost_model.reference_estimate)
    "generated": 10**7,  # XOR samples in a training set or the validation set
    "epochs": 10**5,
    "dims": 10**4,
    "hidden": 10**5,
    "input_size": 2048,
}
HARD_MAX = 2**31 - 1
_OVERRIDE = "set allow_large=true for a real huge study"

# Sane ranges of the training numbers (a condition's ``lr`` too): outside them a run fails at
# once or learns nothing, and the cause is hard to see. ``allow_extreme = true`` lifts them.
RANGES: dict[str, tuple[float, float]] = {
    "lr": (1e-8, 10.0),
    "adam_eps": (1e-30, 0.1),
    "eps": (1e-30, 1.0),  # a reset's magnitude; float32 holds normal numbers down to ~1e-38
}
_EXTREME = "set allow_extreme=true if you mean it"

# What a template rule needs: {rule: {what: allowed values}}. ``what`` is a study setting
# (checked by Study.validate) or ``"linear_layers"``, the number of ``nn.Linear`` layers of the
# model (checked by checks.check_study, which builds it). A rule registered elsewhere may add
# its entry; without one, it is only checked to apply to the model.
RULE_REQUIREMENTS: dict[str, dict[str, tuple[Any, ...]]] = {
    # hidden unit j's output sign from input dimensions 0 and 1: XOR's relevant inputs, in a d → H → 1 MLP
    "xor_sufficient": {"dataset": ("xor",), "linear_layers": (2,)},
}

# a study name is a folder name (out/<name>); a condition name a label in tables and figures
_STUDY_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")
_CONDITION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Study:
    """Every setting of a study. Defaults are the XOR-5D study of Wang et al. (Fig. 1).

    Grid axes: ``conditions``, ``sizes``, ``hidden``, ``resets``, ``trials``.
    ``allow_large`` lifts the caps in :data:`LIMITS`, ``allow_extreme`` the ranges in
    :data:`RANGES` (neither is part of any run's key).

    ``head`` (image models that take it: ``alexnet``, ``zfnet``): ``"replace"`` (the default)
    makes the last layer ``num_classes``-way; ``"extend"`` keeps the 1000-way ImageNet layer
    and adds a ReLU and a new ``num_classes``-way layer on top, as Wang et al.'s reference
    code does (see :func:`polarnet.models.alexnet`).

    ``learners`` and ``lr_sweep`` compare learners (:mod:`polarnet.learners`), each at its own
    learning rates: :func:`load_study` replaces every frozen condition ``C`` of ``conditions``
    by one condition per learner ``L`` and learning rate ``r`` of ``lr_sweep[L]``, named
    ``C.L.lrR`` (``C.L`` when ``lr_sweep`` has no entry for ``L``: the study's ``lr``), and
    every fluid one by ``C.lrR`` per rate of ``lr_sweep["fluid"]``. The grid that runs is
    then explicit in ``conditions`` and ``define_condition``; the two settings stay for the
    report, which picks each learner's best rate on validation (see
    :func:`expand_learners`).
    """

    name: str = "study"
    description: str = ""
    dataset: str = "xor"
    dims: int = 5
    model: str = "mlp"
    conditions: tuple[str, ...] = ("frozen_sufficient", "frozen_rand", "fluid_rand")
    sizes: tuple[int, ...] = (8, 20, 32, 40, 52, 60, 72, 80, 92, 100, 500)
    hidden: tuple[int, ...] = (64,)
    resets: tuple[str, ...] = ("posRand",)
    trials: int = 50
    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.03
    adam_eps: float = 1e-8
    eps: float = 1e-3
    val_size: int = 1000
    seed: int = 0
    data_per_trial: bool = False
    init_conv: str = "glorot_normal"
    init_linear: str = "xor_truncated_normal"
    init_bias: str = "glorot_uniform"
    dtype: str = "float32"
    vectorize: bool = True
    ensemble_members: int = 0
    thresholds: tuple[float, ...] = (0.8,)
    learned_accuracy: float = 0.95
    source: str | None = None
    source_hint: str = ""
    proportions: str | None = None
    data_root: str | None = None
    download: bool = False
    subset: str = "stratified"
    classes: tuple[int, ...] = ()
    in_channels: int = 3
    input_size: int = 0
    head: str = "replace"
    amp: bool | str = "auto"
    channels_last: bool | str = "auto"
    allow_large: bool = False
    allow_extreme: bool = False
    learners: tuple[str, ...] = ()
    lr_sweep: dict[str, tuple[float, ...]] = field(default_factory=dict)
    define_condition: dict[str, Condition] = field(default_factory=dict)

    # -- derived ----------------------------------------------------------------
    def condition(self, name: str) -> Condition:
        """A condition of this study: defined in the study file, else from the registry."""
        return self.define_condition[name] if name in self.define_condition else CONDITIONS.get(name)

    def fast_paths(self, device: str | Any) -> tuple[bool, bool]:
        """``(amp, channels_last)`` as they apply on ``device``: ``"auto"`` turns both on for
        an image study on CUDA (bf16 autocast, channels-last memory; the trainer then also
        lets cuDNN pick its fastest kernels) and off elsewhere; ``true``/``false`` are kept.

        Example:
            >>> image = Study(dataset="fashion_mnist", model="lenet", in_channels=1)
            >>> image.fast_paths("cuda"), image.fast_paths("cpu"), Study().fast_paths("cuda")
            ((True, True), (False, False), (False, False))
        """
        on = str(device).startswith("cuda") and self.dataset in IMAGE_DATASETS
        return tuple(on if value == "auto" else bool(value) for value in (self.amp, self.channels_last))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (a fresh copy)."""
        return copy.deepcopy(self._as_dict)

    @cached_property
    def _as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["define_condition"] = {k: c.to_dict() for k, c in self.define_condition.items()}
        return out

    def validate(self) -> Study:
        """Check every value; raise one ``ValueError`` listing all problems.

        Fast (no data read, no model built): sizes are checked against the dataset's known
        split sizes, counts against :data:`LIMITS`, files for existence only. What needs the
        model is :func:`polarnet.experiments.checks.check_study`'s job.

        Example:
            >>> Study(trials=3).validate().trials
            3
            >>> Study(dataset="cifar10", model="lenet", conditions=("frozen_rand",), val_size=20000).validate()
            Traceback (most recent call last):
            ...
            ValueError: invalid study settings:
              val_size=20000: the test split of cifar10 has 10,000 images; val_size can be at most that
        """
        problems: list[str] = []

        def need(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        need(_STUDY_NAME.fullmatch(self.name) is not None,
             f"name={self.name!r}: the study's name is its folder's name (out/NAME): 1-100 letters, digits, '-', '_' "
             f"or '.', not starting with '.'")
        if ":" in self.dataset:  # a loader of the user's, "package.module:function": imported now, loads nothing
            try:
                DATASET_LOADERS.resolve(self.dataset)
            except ValueError as e:
                problems.append(str(e))
        else:
            need(self.dataset in DATASET_LOADERS,
                 f"dataset={self.dataset!r}: choose one of {DATASET_LOADERS.names()}, or name a loader of "
                 f"your own as 'package.module:function'")
        if ":" in self.model:
            try:
                resolve_model(self.model)
            except ValueError as e:
                problems.append(str(e))
        else:
            need(self.model in MODELS, f"model={self.model!r}: choose one of {MODELS.names()} or 'package.module:function'")
        need(self.dims >= 2, f"dims={self.dims}: must be >= 2")
        self._validate_conditions(need)
        self._validate_learners(need)
        need(len(self.sizes) > 0 and all(s > 0 for s in self.sizes), f"sizes={list(self.sizes)}: positive integers, at least one")
        for key in ("sizes", "hidden", "resets", "conditions"):
            values = list(getattr(self, key))
            need(len(set(values)) == len(values), f"{key}={values}: contains duplicates")
        need(len(self.hidden) > 0 and all(h > 0 for h in self.hidden), f"hidden={list(self.hidden)}: positive integers")
        need(len(self.resets) > 0 and all(r in RESETS for r in self.resets), f"resets={list(self.resets)}: choose from {RESETS.names()}")
        for key in ("trials", "epochs", "batch_size", "val_size"):
            need(getattr(self, key) >= 1, f"{key}={getattr(self, key)}: must be >= 1")
        need(self.ensemble_members >= 0, f"ensemble_members={self.ensemble_members}: the most runs trained at once as "
                                         f"one vectorised ensemble, >= 1; or 0 (the default) to size it from the "
                                         f"device's free memory")
        for key in ("lr", "adam_eps", "eps"):
            self._validate_number(key, getattr(self, key), need)
        for key in ("init_conv", "init_linear", "init_bias"):
            need(getattr(self, key) in INITIALIZERS, f"{key}={getattr(self, key)!r}: choose one of {INITIALIZERS.names()}")
        need(self.dtype in _DTYPES, f"dtype={self.dtype!r}: choose one of {list(_DTYPES)}")
        need(self.subset in ("stratified", "first"), f"subset={self.subset!r}: choose 'stratified' or 'first'")
        need(self.in_channels in (1, 3), f"in_channels={self.in_channels}: 1 or 3")
        need(self.head in HEADS, f"head={self.head!r}: choose 'replace' (the last layer is num_classes-way) or "
                                 f"'extend' (keep the 1000-way ImageNet layer, add a num_classes-way layer on top)")
        for key in ("amp", "channels_last"):
            value = getattr(self, key)
            need(isinstance(value, bool) or value == "auto",
                 f"{key}={_show(value)}: true, false or 'auto' (on for image studies on CUDA, off elsewhere)")
        need(self.input_size >= 0, f"input_size={self.input_size}: 0 (the data's own size) or a size in pixels")
        need(all(0 < t <= 1 for t in self.thresholds) and len(self.thresholds) > 0, f"thresholds={list(self.thresholds)}: accuracies in (0, 1]")
        need(0 < self.learned_accuracy <= 1, f"learned_accuracy={self.learned_accuracy}: an accuracy in (0, 1]")
        self._validate_data(need)
        counts_ok = self._validate_counts(need)
        known = all(name in self.define_condition or name in CONDITIONS for name in self.conditions)
        if counts_ok and known and self.conditions and self.sizes and self.hidden and min(self.sizes) > 0 \
                and min(self.hidden) > 0 and min(self.trials, self.epochs, self.batch_size, self.val_size) >= 1:
            self._validate_cost(need)
        if problems:
            unique = list(dict.fromkeys(problems))  # conditions sharing a setting report it once
            raise ValueError("invalid study settings:\n  " + "\n  ".join(unique))
        return self

    def _validate_number(self, key: str, value: float, need: typing.Callable[[bool, str], None]) -> None:
        """A training number: finite, > 0, and within :data:`RANGES` unless ``allow_extreme``."""
        setting = key.rpartition(".")[2]
        if not math.isfinite(value):
            need(False, f"{key}={value}: must be a finite number > 0")
        elif value <= 0:
            need(False, f"{key}={value}: must be > 0")
        elif not self.allow_extreme:
            low, high = RANGES[setting]
            need(low <= value <= high, f"{key}={value:g}: outside the sane range [{low:g}, {high:g}] of {setting}; "
                                       f"{_EXTREME}")

    def _validate_conditions(self, need: typing.Callable[[bool, str], None]) -> None:
        need(len(self.conditions) > 0, "conditions: name at least one")
        for name in self.conditions:
            need(name in self.define_condition or name in CONDITIONS,
                 f"conditions: unknown {name!r}; choose from {CONDITIONS.names()} or define [define_condition.{name}]")
        for name, c in self.define_condition.items():
            where = f"define_condition.{name}"
            if _CONDITION_NAME.fullmatch(name) is None:
                need(False, f"{where}: a condition's name labels tables and figures: 1-64 letters, digits, '_', '-' "
                            f"or '.', starting with a letter, digit or '_'")
            if name in CONDITIONS and _semantics(c) != _semantics(CONDITIONS.get(name)):
                need(False, f"{where}: {name!r} is a built-in condition; give yours another name")
            need(c.polarity in POLARITIES, f"{where}.polarity={c.polarity!r}: choose one of {POLARITIES.names()}")
            need(c.magnitudes in MAGNITUDES, f"{where}.magnitudes={c.magnitudes!r}: choose one of {MAGNITUDES.names()}")
            need(c.reset is None or c.reset in RESETS, f"{where}.reset={c.reset!r}: choose one of {RESETS.names()}")
            if c.lr is not None:
                self._validate_number(f"{where}.lr", c.lr, need)
            for problem in condition_problems(c):
                need(False, f"{where}: {problem}")
        for name in dict.fromkeys(self.conditions):
            c = self.condition(name) if (name in self.define_condition or name in CONDITIONS) else None
            if c is None:
                continue
            requires = {k: v for k, v in (RULE_REQUIREMENTS.get(c.rule or "", {}) if c.polarity == "rule" else {}).items()
                        if k in _FIELDS}
            if any(getattr(self, setting) not in allowed for setting, allowed in requires.items()):
                needs = " and ".join(f"{k} = {' or '.join(repr(a) for a in v)}" for k, v in requires.items())
                here = ", ".join(f"{k} = {getattr(self, k)!r}" for k in requires)
                default = " (the default conditions are XOR's)" if self.conditions == _DEFAULTS["conditions"] else ""
                need(False, f"condition {name!r}: rule {c.rule!r} needs {needs} (here: {here}); it would constrain "
                            f"layers it was not made for: choose other conditions{default}")
            sources = {c.polarity, c.magnitudes, "source" if c.polarity == "source_proportions" else ""}
            if c.proportions is not None:
                sources.discard("proportions")
                if isinstance(c.proportions, str):
                    need(_is_file(c.proportions), f"condition {name!r}: proportions={c.proportions!r}: no such file")
                else:
                    try:
                        check_proportions(c.proportions, f"condition {name!r}: proportions")
                    except ValueError as e:
                        need(False, str(e))
            for needs in sorted(sources & {"source", "proportions"}):
                value = getattr(self, needs)
                need(value is not None,
                     f"condition {name!r} takes its {'weights' if needs == 'source' else 'proportions'} from the study's "
                     f"{needs!r} setting: set {needs} = \"FILE\" (--set {needs}=FILE)")
                need(value is None or _is_file(value) or needs == "source" and _is_weights_name(value),
                     f"{needs}={value!r}: no such file" + (f"; {self.source_hint}" if needs == "source" and
                                                          self.source_hint else ""))
            if c.magnitudes == "source" and self.source is not None and self.source.endswith(".plt"):
                need(False, f"condition {name!r} copies the source's weights (magnitudes='source'), but source="
                            f"{self.source!r} is a template file (signs only): use a .pt/.pth/.safetensors file, a "
                            f"torchvision weights name, timm:MODEL or hf:ORG/NAME")
            need(math.isfinite(c.swap) and 0 <= c.swap <= 1, f"condition {name!r}: swap={c.swap}: a fraction in [0, 1]")
            need(c.swap_mode in ("pattern", "literal"), f"condition {name!r}: swap_mode={c.swap_mode!r}: 'pattern' or 'literal'")
            if c.polarity == "rule":
                need(c.rule in RULES, f"condition {name!r}: rule={c.rule!r}; choose one of {RULES.names()}")
        self._validate_unread_files(need)

    def _validate_learners(self, need: typing.Callable[[bool, str], None]) -> None:
        """``learners`` are registered, ``lr_sweep`` names learners of the study (or ``fluid``)
        and holds distinct rates in range; both only with conditions they expanded."""
        need(all(name in LEARNERS for name in self.learners),
             f"learners={list(self.learners)}: choose from {LEARNERS.names()}")
        need(len(set(self.learners)) == len(self.learners), f"learners={list(self.learners)}: contains duplicates")
        for key, rates in self.lr_sweep.items():
            need(key == "fluid" or key in self.learners,
                 f"lr_sweep.{key}: not a learner of this study ({', '.join(self.learners) or 'learners is empty'}) "
                 f"nor 'fluid'")
            need(len(rates) > 0 and len(set(rates)) == len(rates), f"lr_sweep.{key}={list(rates)}: distinct rates, "
                                                                 f"at least one")
            for rate in rates:
                self._validate_number(f"lr_sweep.{key}.lr", rate, need)
        if self.learners:  # expanded conditions are named C.L or C.L.lrR
            known = [n for n in self.conditions if n in self.define_condition or n in CONDITIONS]
            unexpanded = [n for n in known if self.condition(n).frozen and f".{self.condition(n).learner}" not in n]
            need(not unexpanded, f"learners: the frozen conditions {unexpanded} were not expanded into one condition "
                                 f"per learner (load_study does it; or call expand_learners)")

    def _validate_unread_files(self, need: typing.Callable[[bool, str], None]) -> None:
        """A study-level ``source`` or ``proportions`` that no listed condition reads would enter
        every run's key (by its content) without shaping any run: refused."""
        listed = [self.condition(n) for n in dict.fromkeys(self.conditions) if n in self.define_condition or n in CONDITIONS]
        readers = {
            "source": [c for c in listed if needs_source(c)],
            "proportions": [c for c in listed if c.polarity == "proportions" and c.proportions is None],
        }
        examples = {"source": "frozen_in_polarity, fluid_in_weight, freeze_spin", "proportions": "freeze_spin_file"}
        for setting, using in readers.items():
            value = getattr(self, setting)
            if value is not None and not using:
                need(False, f"{setting}={value!r} is set but no condition uses it (conditions: "
                            f"{', '.join(self.conditions)}); remove it (--set {setting}='' unsets a preset's), or add "
                            f"a condition that reads it ({examples[setting]}…)")

    def _validate_data(self, need: typing.Callable[[bool, str], None]) -> None:
        """Sizes against what the dataset has: an image split's size, or the cap on generated data."""
        self._validate_model_settings(need)
        spec = IMAGE_DATASETS.get(self.dataset)
        if spec is None:
            need(not self.classes, f"classes={list(self.classes)}: only image datasets have classes "
                                   f"(dataset={self.dataset!r}); remove the setting")
            if self.dataset == "xor" and not self.allow_large:
                cap = LIMITS["generated"]
                need(max(self.sizes, default=0) <= cap, f"sizes={list(self.sizes)}: XOR training sets are capped at "
                                                        f"10^7 samples; {_OVERRIDE}")
                need(self.val_size <= cap, f"val_size={self.val_size}: the XOR validation set is capped at 10^7 "
                                           f"samples; {_OVERRIDE}")
            return
        known = spec.num_classes
        classes_ok = all(0 <= c < known for c in self.classes) and len(set(self.classes)) == len(self.classes)
        need(classes_ok, f"classes={list(self.classes)}: distinct class indices 0..{known - 1} (empty: all)")
        need(len(self.classes) != 1, f"classes={list(self.classes)}: name at least 2 classes (one class is always "
                                     f"right: accuracy 1.0), or none for all {known}")
        if not classes_ok:
            return
        which = f" in classes {list(self.classes)}" if self.classes else ""
        train, test = spec.split_size(True, self.classes), spec.split_size(False, self.classes)
        too_big = [s for s in self.sizes if s > train]
        need(not too_big, f"sizes={list(self.sizes)}: {too_big} larger than the {train:,} training images of "
                          f"{self.dataset}{which}")
        need(self.val_size <= test, f"val_size={self.val_size}: the test split of {self.dataset} has {test:,} "
                                    f"images{which}; val_size can be at most that")

    def _validate_model_settings(self, need: typing.Callable[[bool, str], None]) -> None:
        """Settings the dataset's model does not take are refused: they would enter every run's
        key (and ``hidden``, the grid and the seeds) without changing the network."""
        if self.dataset not in DATASET_LOADERS:
            return
        kwargs = model_kwargs(self, hidden=self.hidden[0] if self.hidden else 1)
        if kwargs is None:  # a dataset registered elsewhere: only its loader knows its model's arguments
            return
        where = f"dataset={self.dataset!r} (model {self.model!r})"
        if "hidden" not in kwargs:
            need(self.hidden == _DEFAULTS["hidden"],
                 f"hidden={list(self.hidden)}: {where} takes no hidden size, so every value would train the same "
                 f"network under another seed; remove the setting")
        if "in_features" not in kwargs:
            need(self.dims == _DEFAULTS["dims"], f"dims={self.dims}: only XOR has dims; {where}: remove the setting")
        if self.dataset in IMAGE_DATASETS:
            need(self.head == _DEFAULTS["head"] or self.head not in HEADS or _takes(self.model, "head"),
                 f"head={self.head!r}: model {self.model!r} has no head option (alexnet and zfnet have one); remove the "
                 f"setting, or choose model = 'alexnet' or 'zfnet'")
            return
        for key in ("in_channels", "input_size", "subset", "amp", "channels_last", "head"):
            what = ("mixed precision and channels-last memory are for image models (a d → H → 1 MLP gains "
                    "nothing, and the vectorised ensemble would ignore it)" if key in ("amp", "channels_last")
                    else "only image models (alexnet, zfnet) have it" if key == "head"
                    else "only image datasets have it")
            need(getattr(self, key) in (_DEFAULTS[key], False if key in ("amp", "channels_last") else _DEFAULTS[key])
                 or key == "head" and self.head not in HEADS,
                 f"{key}={_show(getattr(self, key))}: {what}; {where}: remove the setting")

    def _validate_counts(self, need: typing.Callable[[bool, str], None]) -> bool:
        """Every count within HARD_MAX, and within its cap unless ``allow_large``; True when all are.
        (``trials`` is bounded through the number of runs, in :meth:`_validate_cost`.)"""
        ok = True
        counts = {"epochs": [self.epochs], "batch_size": [self.batch_size], "val_size": [self.val_size],
                  "dims": [self.dims], "input_size": [self.input_size], "sizes": list(self.sizes),
                  "hidden": list(self.hidden)}
        for key, values in counts.items():
            shown = values if key in ("sizes", "hidden") else values[0]
            if max(values, default=0) > HARD_MAX:
                ok = False
                hint = "; a batch larger than the training set is the whole set" if key == "batch_size" else ""
                need(False, f"{key}={shown}: at most 2^31-1 ({HARD_MAX}){hint}")
            elif key in LIMITS and not self.allow_large and max(values, default=0) > LIMITS[key]:
                ok = False
                need(False, f"{key}={shown}: the limit is {LIMITS[key]:,}; {_OVERRIDE}")
        return ok

    def _validate_cost(self, need: typing.Callable[[bool, str], None]) -> None:
        """The plan's size and estimated time, computed arithmetically (no plan is built)."""
        # the reference machine's rates on 2 workers: a limit must not depend on where it is checked
        cost = reference_estimate(self, workers=2)
        runs, days = cost["runs"], cost["seconds"] / 86400
        pairs = runs // (len(self.sizes) * len(self.hidden) * self.trials)
        factors = {"trials": self.trials, "sizes": len(self.sizes), "hidden": len(self.hidden), "conditions": pairs}
        worst = max(factors, key=lambda k: factors[k])
        culprit = f"trials={self.trials}" if worst == "trials" else f"{worst} ({factors[worst]:,} entries)"
        what = (f"the study would have {runs:.3g} runs ({pairs:,} condition×reset × {len(self.sizes):,} sizes × "
                f"{len(self.hidden):,} hidden × {self.trials:,} trials; ~{days:.2g} days on 2 CPU cores)")
        hard = f"trials can be at most 2^31-1 ({HARD_MAX})"
        if not self.allow_large and runs > LIMITS["runs"]:
            need(False, f"{culprit}: {what}; the limit is 10^6 runs: {_OVERRIDE}"
                        + (f" ({hard} even then)" if self.trials > HARD_MAX else ""))
        elif self.trials > HARD_MAX:
            need(False, f"trials={self.trials}: {what}; {hard}")
        elif not self.allow_large:
            need(days <= LIMITS["days"],
                 f"the study would take ~{days:.2g} days on 2 CPU cores ({runs:,} runs, epochs={self.epochs:,}, "
                 f"largest size {max(self.sizes):,}, val_size={self.val_size:,}); the limit is 10^4 days: {_OVERRIDE}")


def _takes(model: str, argument: str) -> bool:
    """Whether a model's factory takes ``argument`` (or any keyword); builds nothing. A model
    that can't be resolved counts as taking it: its own error is reported already.

    Example:
        >>> _takes("alexnet", "head"), _takes("lenet", "head"), _takes("torch.nn:Linear", "bias")
        (True, False, True)
    """
    try:
        factory = resolve_model(model)
        parameters = inspect.signature(factory).parameters.values()
    except (ValueError, TypeError):  # unknown or unimportable (reported), or no signature (a builtin)
        return True
    return any(p.name == argument and p.kind is not p.POSITIONAL_ONLY or p.kind is p.VAR_KEYWORD for p in parameters)


def _semantics(condition: Condition) -> dict[str, Any]:
    """A condition's fields less its description (which only labels it)."""
    return {k: v for k, v in condition.to_dict().items() if k != "description"}


def _show(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else repr(value)


def _is_weights_name(text: str) -> bool:
    from ..sources import is_weights_name

    return is_weights_name(text)


_FIELDS = {f.name: f for f in fields(Study)}
_DEFAULTS = {f.name: f.default for f in fields(Study) if f.default is not dataclasses.MISSING}
_HINTS = typing.get_type_hints(Study)


def _coerce(key: str, value: Any) -> Any:
    """Check a raw TOML value against the field's type; lists become tuples.

    Raises:
        ValueError: ``"<key>: expected <type>, got <value>"``, with the syntax to use where
            the value looks like a list written as text (``--set sizes=20,60``).
    """
    hint = _HINTS[key]
    origin = typing.get_origin(hint)
    if key == "lr_sweep":
        if not isinstance(value, dict):
            raise ValueError(f"lr_sweep: expected a table [lr_sweep] of learner = [rates], got {value!r}")
        return {_text(f"lr_sweep.{name}", name): _coerce_rates(f"lr_sweep.{name}", rates) for name, rates in value.items()}
    if key == "define_condition":
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ValueError("define_condition: expected tables [define_condition.NAME] of condition settings")
        return {_text(f"define_condition.{name}", name): condition_from_dict(name, table) for name, table in value.items()}
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, str) and (item is not str or re.search(r"[,\[\]]", value)):
            raise ValueError(f"{key}: expected a list of {item.__name__}, got the text {value!r}; lists take TOML "
                             f"syntax: --set '{key}={_as_list(value, item)}' (in a study file: {key} = "
                             f"{_as_list(value, item)})")
        if isinstance(value, dict):
            raise ValueError(f"{key}: expected a list of {item.__name__}, got a table {value!r}")
        if not isinstance(value, list):
            value = [value]
        return tuple(_scalar(key, v, item, in_list=True) for v in value)
    if key in ("amp", "channels_last"):  # true, false or "auto"
        if value != "auto" and not isinstance(value, bool):
            raise ValueError(f"{key}={value!r}: true, false or 'auto' (on for image studies on CUDA, off elsewhere)")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or value == "":  # "" unsets a file setting: --set source=''
            return None
        return _scalar(key, value, next(a for a in typing.get_args(hint) if a is not type(None)))
    return _scalar(key, value, hint)


def _coerce_rates(key: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{key}: expected a list of learning rates, got {value!r}")
    return tuple(_scalar(key, v, float, in_list=True) for v in value)


def expand_learners(study: Study) -> Study:
    """The study with ``learners`` × ``lr_sweep`` spelled out as conditions (see :class:`Study`).

    A frozen condition ``C`` becomes ``C.L.lrR`` for every learner ``L`` and each of its rates
    ``R`` (``C.L`` without rates); a fluid one ``C.lrR`` for each rate of ``lr_sweep.fluid``
    (unchanged without). Each made condition copies ``C``'s settings with ``learner = L`` and
    ``lr = R``. A study without ``learners`` and ``lr_sweep`` comes back unchanged.

    Example:
        >>> s = expand_learners(Study(conditions=("frozen_rand", "fluid_rand"), learners=("freeze_sgd", "eg"),
        ...                           lr_sweep={"eg": (0.01, 0.1), "fluid": (0.03,)}))
        >>> s.conditions
        ('frozen_rand.freeze_sgd', 'frozen_rand.eg.lr0.01', 'frozen_rand.eg.lr0.1', 'fluid_rand.lr0.03')
        >>> s.condition("frozen_rand.eg.lr0.1").learner, s.condition("frozen_rand.eg.lr0.1").lr
        ('eg', 0.1)
    """
    if not study.learners and not study.lr_sweep:
        return study
    names: list[str] = []
    defined = dict(study.define_condition)
    learners = study.learners or ("freeze_sgd",)
    for name in study.conditions:
        if name not in study.define_condition and name not in CONDITIONS:
            names.append(name)  # validate() names the unknown condition
            continue
        base = study.condition(name)
        arms = [(f"{name}.{learner}", learner) for learner in learners] if base.frozen and study.learners else \
            [(name, base.learner)]
        for arm, learner in arms:
            rates = study.lr_sweep.get(learner if base.frozen else "fluid")
            for rate in rates if rates else (None,):
                made = f"{arm}.lr{rate:g}" if rate is not None else arm
                if made == name:
                    names.append(name)
                    continue
                detail = ", ".join(x for x in (f"learner {learner}" if base.frozen and study.learners else "",
                                                f"lr {rate:g}" if rate is not None else "") if x)
                defined[made] = dataclasses.replace(base, name=made, learner=learner,
                                                    lr=rate if rate is not None else base.lr,
                                                    description=f"{base.description} ({detail})".strip())
                names.append(made)
    return dataclasses.replace(study, conditions=tuple(names), define_condition=defined)


def _as_list(text: str, item: type) -> str:
    """``"20,60"`` → ``[20, 60]``; ``"a, b"`` → ``["a", "b"]``: a TOML list of what the text holds."""
    parts = [p for p in re.split(r"[\s,\[\]]+", text) if p]
    if item is str:
        return "[" + ", ".join('"' + p.strip("\"'") + '"' for p in parts) + "]"
    return "[" + ", ".join(parts) + "]"


def _scalar(key: str, value: Any, kind: type, in_list: bool = False) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"{key}: {value} is too large for a float") from None
    if kind is bool and not isinstance(value, bool) or kind is int and (isinstance(value, bool) or not isinstance(value, int)) \
            or kind in (float, str) and not isinstance(value, kind):
        expected = f"a list of {kind.__name__}" if in_list else kind.__name__
        got = "a list" if isinstance(value, list) else "a table" if isinstance(value, dict) else type(value).__name__
        raise ValueError(f"{key}: expected {expected}, got {value!r} ({got})")
    return _text(key, value) if kind is str else value


def _text(key: str, value: Any) -> Any:
    if isinstance(value, str) and "\0" in value:
        raise ValueError(f"{key}: {value!r} contains a NUL character")
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is read as TOML (``5``, ``[8, 20]``, ``true``), else kept as text.

    Example:
        >>> parse_override("sizes=[8, 20]")
        ('sizes', [8, 20])
        >>> parse_override("name=my study")
        ('name', 'my study')
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set {text!r}: expected key=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value


def _preset_text(name: str) -> str | None:
    path = resources.files("polarnet.presets") / f"{name}.toml"
    return path.read_text() if path.is_file() else None


def list_presets() -> dict[str, str]:
    """Preset name → its description.

    Example:
        >>> "xor5d" in list_presets()
        True
    """
    out = {}
    for entry in sorted(resources.files("polarnet.presets").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            out[entry.name[:-5]] = tomllib.loads(entry.read_text()).get("description", "")
    return out


def load_study(source: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = (), quick: bool = False,
               validate: bool = True) -> Study:
    """Read a preset name or a TOML file, apply ``[quick]`` (with ``quick=True``) and overrides, validate.

    ``validate=False`` skips the value checks (types are still checked): for listing presets
    whose files don't exist yet.

    The study's name defaults to the file's stem (other characters than letters, digits,
    ``-``, ``_`` and ``.`` made ``-``).

    Raises:
        ValueError: unknown preset/file, unknown key, wrong type, or an invalid value — for
            any bad input, never another exception; ``quick=True`` on a file without a
            ``[quick]`` table (it would run the whole study).

    Example:
        >>> s = load_study("xor5d", ["trials=3"], quick=True)
        >>> s.trials, s.name
        (3, 'xor5d')
        >>> load_study("xor5d", ["sizes=20,60"])
        Traceback (most recent call last):
        ...
        ValueError: sizes: expected a list of int, got the text '20,60'; lists take TOML syntax: --set 'sizes=[20, 60]' (in a study file: sizes = [20, 60])
    """
    name = str(source)
    is_preset = not Path(name).suffix and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) is not None
    text = _preset_text(name) if is_preset else None
    base = Path(str(resources.files("polarnet.presets"))) if text is not None else Path(source).parent
    if text is None:
        if "\0" in name or not _is_file(name):
            raise ValueError(f"{name!r} is neither a preset ({', '.join(list_presets())}) nor a TOML file")
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{source}: cannot read it as a TOML text file ({type(e).__name__}: {e})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{source}: not valid TOML ({e})") from None
    quick_table = raw.pop("quick", {})
    if not isinstance(quick_table, dict):
        raise ValueError(f"{source}: quick: expected a table [quick] of settings that --quick applies, got {quick_table!r}")
    raw.setdefault("name", _folder_name(Path(name).stem))
    if quick:
        if not quick_table:
            raise ValueError(f"{source} has no [quick] table; --quick would change nothing (and run the whole study): "
                             f"add a [quick] table of the settings to change, or drop --quick")
        raw.update(quick_table)
    for text_override in overrides:
        key, value = parse_override(text_override)
        raw[key] = value
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; allowed: {sorted(_FIELDS)}")
    _resolve_paths(raw, base)  # a preset's or a study file's own files sit beside it
    values = {key: _coerce(key, value) for key, value in raw.items()}
    study = expand_learners(Study(**values))
    return study.validate() if validate else study


def _folder_name(stem: str) -> str:
    """A study file's stem made a valid study name: runs of other characters become '-'.

    Example:
        >>> _folder_name("my study (v2)")
        'my-study-v2'
    """
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-").lstrip(".")[:100]
    return name or "study"


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Relative ``source``/``proportions`` files that exist beside the study file are taken from there."""
    defined = raw.get("define_condition", {})
    tables = [raw] + ([t for t in defined.values() if isinstance(t, dict)] if isinstance(defined, dict) else [])
    for table in tables:
        for key in ("source", "proportions"):
            value = table.get(key)
            if isinstance(value, str) and "\0" not in value and not Path(value).is_absolute() \
                    and not _exists(value) and _is_file(str(base / value)):
                table[key] = str(base / value)


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False
