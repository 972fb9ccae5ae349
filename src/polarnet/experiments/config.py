"""Typed, validated study configuration: TOML files, presets, ``--set key=value`` overrides.

A study is a grid: conditions × training-set sizes × hidden units × reset rules × trials.
Everything is checked before any run starts; an unknown key or a bad value is rejected
with its name and the allowed values.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from ..builders import RULES
from ..proportions import check_proportions
from ..freeze import RESETS
from ..init import INITIALIZERS
from ..models import MODELS
from .conditions import CONDITIONS, MAGNITUDES, POLARITIES, Condition, condition_from_dict
from .datasets import DATASET_LOADERS

__all__ = ["Study", "load_study", "list_presets", "parse_override"]

_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Study:
    """Every setting of a study. Defaults are the XOR-5D study of Wang et al. (Fig. 1).

    Grid axes: ``conditions``, ``sizes``, ``hidden``, ``resets``, ``trials``.
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
    amp: bool = False
    channels_last: bool = False
    define_condition: dict[str, Condition] = field(default_factory=dict)

    # -- derived ----------------------------------------------------------------
    def condition(self, name: str) -> Condition:
        """A condition of this study: defined in the study file, else from the registry."""
        return self.define_condition[name] if name in self.define_condition else CONDITIONS.get(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (a fresh copy)."""
        return copy.deepcopy(self._as_dict)

    @cached_property
    def _as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["define_condition"] = {k: c.to_dict() for k, c in self.define_condition.items()}
        return out

    def validate(self) -> Study:
        """Check every value; raise one ``ValueError`` listing all problems."""
        problems = []

        def need(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        need(self.dataset in DATASET_LOADERS, f"dataset={self.dataset!r}: choose one of {DATASET_LOADERS.names()}")
        need(":" in self.model or self.model in MODELS, f"model={self.model!r}: choose one of {MODELS.names()} or 'package.module:function'")
        need(self.dims >= 2, f"dims={self.dims}: must be >= 2")
        need(len(self.conditions) > 0, "conditions: name at least one")
        for name in self.conditions:
            need(name in self.define_condition or name in CONDITIONS,
                 f"conditions: unknown {name!r}; choose from {CONDITIONS.names()} or define [define_condition.{name}]")
        for name, c in self.define_condition.items():
            need(c.polarity in POLARITIES, f"define_condition.{name}.polarity={c.polarity!r}: choose one of {POLARITIES.names()}")
            need(c.magnitudes in MAGNITUDES, f"define_condition.{name}.magnitudes={c.magnitudes!r}: choose one of {MAGNITUDES.names()}")
            need(c.reset is None or c.reset in RESETS, f"define_condition.{name}.reset={c.reset!r}: choose one of {RESETS.names()}")
            need(c.lr is None or c.lr > 0, f"define_condition.{name}.lr={c.lr}: must be > 0")
        for name in set(self.conditions):
            c = self.condition(name) if (name in self.define_condition or name in CONDITIONS) else None
            if c is None:
                continue
            sources = {c.polarity, c.magnitudes, "source" if c.polarity == "source_proportions" else ""}
            if c.proportions is not None:
                sources.discard("proportions")
                if isinstance(c.proportions, str):
                    need(Path(c.proportions).is_file(), f"condition {name!r}: proportions={c.proportions!r}: no such file")
                else:
                    try:
                        check_proportions(c.proportions, f"condition {name!r}: proportions")
                    except ValueError as e:
                        need(False, str(e))
            for needs in sources & {"source", "proportions"}:
                value = getattr(self, needs)
                need(value is not None,
                     f"condition {name!r} takes its {'weights' if needs == 'source' else 'proportions'} from the study's "
                     f"{needs!r} setting: set {needs} = \"FILE\" (--set {needs}=FILE)")
                need(value is None or Path(value).is_file() or needs == "source" and _is_weights_name(value),
                     f"{needs}={value!r}: no such file" + (f"; {self.source_hint}" if needs == "source" and
                                                          self.source_hint else ""))
            need(0 <= c.swap <= 1, f"condition {name!r}: swap={c.swap}: a fraction in [0, 1]")
            need(c.swap_mode in ("pattern", "literal"), f"condition {name!r}: swap_mode={c.swap_mode!r}: 'pattern' or 'literal'")
            if c.polarity == "rule":
                need(c.rule in RULES, f"condition {name!r}: rule={c.rule!r}; choose one of {RULES.names()}")
        need(len(self.sizes) > 0 and all(s > 0 for s in self.sizes), f"sizes={list(self.sizes)}: positive integers, at least one")
        for key in ("sizes", "hidden", "resets", "conditions"):
            values = list(getattr(self, key))
            need(len(set(values)) == len(values), f"{key}={values}: contains duplicates")
        need(len(self.hidden) > 0 and all(h > 0 for h in self.hidden), f"hidden={list(self.hidden)}: positive integers")
        need(len(self.resets) > 0 and all(r in RESETS for r in self.resets), f"resets={list(self.resets)}: choose from {RESETS.names()}")
        for key in ("trials", "epochs", "batch_size", "val_size"):
            need(getattr(self, key) >= 1, f"{key}={getattr(self, key)}: must be >= 1")
        for key in ("lr", "adam_eps", "eps"):
            need(getattr(self, key) > 0, f"{key}={getattr(self, key)}: must be > 0")
        for key in ("init_conv", "init_linear", "init_bias"):
            need(getattr(self, key) in INITIALIZERS, f"{key}={getattr(self, key)!r}: choose one of {INITIALIZERS.names()}")
        need(self.dtype in _DTYPES, f"dtype={self.dtype!r}: choose one of {list(_DTYPES)}")
        need(self.subset in ("stratified", "first"), f"subset={self.subset!r}: choose 'stratified' or 'first'")
        need(self.in_channels in (1, 3), f"in_channels={self.in_channels}: 1 or 3")
        need(self.input_size >= 0, f"input_size={self.input_size}: 0 (the data's own size) or a size in pixels")
        need(all(0 <= c <= 9 for c in self.classes) and len(set(self.classes)) == len(self.classes),
             f"classes={list(self.classes)}: distinct class indices 0..9 (empty: all)")
        need(all(0 < t <= 1 for t in self.thresholds) and len(self.thresholds) > 0, f"thresholds={list(self.thresholds)}: accuracies in (0, 1]")
        need(0 < self.learned_accuracy <= 1, f"learned_accuracy={self.learned_accuracy}: an accuracy in (0, 1]")
        if problems:
            unique = list(dict.fromkeys(problems))  # conditions sharing a setting report it once
            raise ValueError("invalid study settings:\n  " + "\n  ".join(unique))
        return self


def _is_weights_name(text: str) -> bool:
    from ..sources import _WEIGHTS_NAME

    return bool(_WEIGHTS_NAME.match(text))


_FIELDS = {f.name: f for f in fields(Study)}
_HINTS = typing.get_type_hints(Study)


def _coerce(key: str, value: Any) -> Any:
    """Check a raw TOML value against the field's type; lists become tuples."""
    hint = _HINTS[key]
    origin = typing.get_origin(hint)
    if key == "define_condition":
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ValueError("define_condition: expected tables [define_condition.NAME] of condition settings")
        return {name: condition_from_dict(name, table) for name, table in value.items()}
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            value = [value]
        return tuple(_scalar(key, v, item) for v in value)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _scalar(key, value, next(a for a in typing.get_args(hint) if a is not type(None)))
    return _scalar(key, value, hint)


def _scalar(key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and not isinstance(value, bool) or kind is int and (isinstance(value, bool) or not isinstance(value, int)) \
            or kind in (float, str) and not isinstance(value, kind):
        raise ValueError(f"{key}: expected {kind.__name__}, got {value!r} ({type(value).__name__})")
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

    Raises:
        ValueError: unknown preset/file, unknown key, wrong type, or an invalid value.

    Example:
        >>> s = load_study("xor5d", ["trials=3"], quick=True)
        >>> s.trials, s.name
        (3, 'xor5d')
    """
    text = _preset_text(str(source)) if not Path(source).suffix else None
    base = Path(str(resources.files("polarnet.presets"))) if text is not None else Path(source).parent
    if text is None:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"{source!r} is neither a preset ({', '.join(list_presets())}) nor a TOML file")
        text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{source}: not valid TOML ({e})") from None
    quick_table = raw.pop("quick", {})
    raw.setdefault("name", Path(str(source)).stem)
    if quick:
        raw.update(quick_table)
    for text_override in overrides:
        key, value = parse_override(text_override)
        raw[key] = value
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; allowed: {sorted(_FIELDS)}")
    _resolve_paths(raw, base)  # a preset's or a study file's own files sit beside it
    values = {key: _coerce(key, value) for key, value in raw.items()}
    study = Study(**values)
    return study.validate() if validate else study


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Relative ``source``/``proportions`` files that exist beside the study file are taken from there."""
    defined = raw.get("define_condition", {})
    tables = [raw] + ([t for t in defined.values() if isinstance(t, dict)] if isinstance(defined, dict) else [])
    for table in tables:
        for key in ("source", "proportions"):
            value = table.get(key)
            if isinstance(value, str) and not Path(value).is_absolute() and not Path(value).exists() \
                    and (base / value).is_file():
                table[key] = str(base / value)
