"""Experimental conditions as data: where the signs come from, frozen or fluid, magnitudes.

A :class:`Condition` is a record; what its fields mean lives in two registries —
:data:`POLARITIES` (how a template is made) and :data:`MAGNITUDES` (how the weights start) —
so adding a condition is data, and adding a kind of polarity is one registered function,
never a branch in the training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

from torch import nn

from ..init import init_magnitudes
from ..proportions import load_proportions
from ..registry import Registry
from ..sources import load_state_dict
from ..template import PolarityTemplate
from ..transfer import transfer

__all__ = ["Condition", "CONDITIONS", "POLARITIES", "MAGNITUDES", "register_condition", "get_condition",
           "condition_from_dict", "source_state", "needs_source"]


@dataclass(frozen=True)
class Condition:
    """One experimental condition.

    Attributes:
        name: how results call it.
        polarity: where the template comes from: ``"none"``, ``"random"`` (the init's own
            signs, fixed as-is), ``"rule"`` (see ``rule``), ``"source"`` (signs of the study's
            ``source`` weights, transferred), ``"proportions"`` (SPIN, the study's
            ``proportions`` file); any name in :data:`POLARITIES`.
        frozen: enforce the template after every step (Freeze-SGD); a fluid condition with a
            template only starts aligned to it.
        magnitudes: ``"fresh"`` (a seeded Glorot-style draw shared by all conditions of a
            trial) or ``"source"`` (the source weights); any name in :data:`MAGNITUDES`.
        rule: the template rule for ``polarity="rule"``.
        layers: which layers the template covers (see :func:`polarnet.select_layers`).
        reset: a reset rule that overrides the study's ``resets`` axis.
        lr: a learning rate that overrides the study's.
        proportions: for ``polarity="proportions"``: one ``[p0, p_neg, p_pos]`` for every
            constrained layer, or a proportions JSON file; unset, the study's ``proportions``.
        swap: Fluid SPIN (Igoe et al., Alg. 3): after every epoch, flip this fraction of the
            template's nonzero entries, half positive, half negative (0: never).
        swap_mode: ``"pattern"`` (the template moves; default) or ``"literal"`` — see
            :func:`polarnet.fluid_spin_swap`.
        description: one line for reports.
    """

    name: str
    polarity: str = "none"
    frozen: bool = False
    magnitudes: str = "fresh"
    rule: str | None = None
    layers: str = "all"
    reset: str | None = None
    lr: float | None = None
    proportions: tuple[float, ...] | str | None = None
    swap: float = 0.0
    swap_mode: str = "pattern"
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain fields, for hashing and storing."""
        return asdict(self)


CONDITIONS: Registry[Condition] = Registry("condition")
PolarityBuilder = Callable[[Condition, nn.Module, Any, int], "PolarityTemplate | None"]
POLARITIES: Registry[PolarityBuilder] = Registry("polarity source")
MagnitudeBuilder = Callable[[Condition, nn.Module, Any, int], None]
MAGNITUDES: Registry[MagnitudeBuilder] = Registry("magnitude source")


def register_condition(condition: Condition) -> Condition:
    """Add a named condition to :data:`CONDITIONS`.

    Example:
        >>> c = register_condition(Condition("frozen_rand_flip_demo", "random", True, reset="flip"))
        >>> get_condition("frozen_rand_flip_demo").reset
        'flip'
        >>> CONDITIONS.unregister("frozen_rand_flip_demo")
    """
    return CONDITIONS.register(condition.name)(condition)


def get_condition(name: str) -> Condition:
    """A registered condition by name (raises ``ValueError`` listing the known ones)."""
    return CONDITIONS.get(name)


def condition_from_dict(name: str, table: dict[str, Any]) -> Condition:
    """Build a condition from a TOML table, naming any unknown key or wrongly typed value.

    Types only: whether the values make sense (a known polarity, a positive ``lr``…) is
    :meth:`Study.validate`'s job.

    Raises:
        ValueError: the table is not a table, has an unknown key, or a value of the wrong type.

    Example:
        >>> condition_from_dict("mine", {"polarity": "random", "frozen": True}).frozen
        True
        >>> condition_from_dict("mine", {"lr": "fast"})
        Traceback (most recent call last):
        ...
        ValueError: define_condition.mine.lr: expected float or none, got 'fast'
    """
    where = f"define_condition.{name}"
    if not isinstance(table, dict):
        raise ValueError(f"{where}: expected a table of condition settings ([{where}]), got {table!r}")
    allowed = {f.name for f in fields(Condition)} - {"name"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    values = {}
    for key, value in table.items():
        kinds = _FIELD_TYPES[key]
        if _is_number(value) and float in kinds:
            try:
                value = float(value)
            except OverflowError:
                raise ValueError(f"{where}.{key}={value}: too large for a number") from None
        elif isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            expected = " or ".join("none" if k is type(None) else "list of numbers" if k is list else k.__name__
                                   for k in kinds)
            raise ValueError(f"{where}.{key}: expected {expected}, got {value!r}")
        if isinstance(value, str) and "\0" in value:
            raise ValueError(f"{where}.{key}: {value!r} contains a NUL character")
        if isinstance(value, list):  # proportions: three numbers
            if not all(_is_number(v) for v in value):
                raise ValueError(f"{where}.{key}: expected three numbers [p0, p_neg, p_pos] or a file name, got {value!r}")
            try:
                value = tuple(float(v) for v in value)
            except OverflowError:
                raise ValueError(f"{where}.{key}: {value!r} holds a number too large for a float") from None
        values[key] = value
    return Condition(name=name, **values)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "polarity": (str,), "frozen": (bool,), "magnitudes": (str,), "rule": (str, type(None)), "layers": (str,),
    "reset": (str, type(None)), "lr": (float, type(None)), "swap": (float,), "swap_mode": (str,),
    "proportions": (list, str, type(None)),
    "description": (str,),
}


for _c in (
    Condition("frozen_sufficient", "rule", True, rule="xor_sufficient",
              description="Frozen-Net, Sufficient-Polarity (XOR rule)"),
    Condition("fluid_sufficient", "rule", False, rule="xor_sufficient",
              description="Fluid-Net starting from Sufficient-Polarity"),
    Condition("frozen_rand", "random", True, description="Frozen-Net, RAND-Polarity (init signs fixed as-is)"),
    Condition("fluid_rand", "none", False, description="Fluid-Net, random init (ordinary training)"),
    # Wang et al. §3-4 (image classification): the study's source is ImageNet (or any) weights
    Condition("frozen_in_polarity", "source", True, description="Frozen-Net, IN-Polarity (source signs, fresh magnitudes)"),
    Condition("fluid_in_polarity", "source", False, description="Fluid-Net starting from IN-Polarity"),
    Condition("fluid_in_weight", "none", False, magnitudes="source",
              description="Fluid-Net, IN-Weight: fine-tuning the source weights"),
    Condition("frozen_in_weight", "source", True, magnitudes="source",
              description="Frozen-Net, IN-Weight: source weights, signs kept"),
    # Igoe et al.: only the convolutions are constrained
    Condition("freeze_spin", "source_proportions", True, layers="conv",
              description="Freeze SPIN: the source's per-layer sign proportions, random pattern, frozen"),
    Condition("fluid_spin", "source_proportions", True, layers="conv", swap=0.5,
              description="Fluid SPIN: as Freeze SPIN, half the signs swapped every epoch (proportions kept)"),
    Condition("fluid_in", "none", False, magnitudes="source", description="Fluid IN: classic transfer learning"),
    Condition("freeze_spin_file", "proportions", True, layers="conv",
              description="Freeze SPIN with proportions from the study's proportions file (e.g. Igoe Table 1)"),
):
    register_condition(_c)


@lru_cache(maxsize=2)
def source_state(source: str) -> dict | PolarityTemplate:
    """The study's source, read once per process (AlexNet's weights are 233 MB): a state dict,
    or a :class:`~polarnet.PolarityTemplate` for a template file (``.plt``), which carries signs only."""
    if str(source).endswith(".plt"):
        return PolarityTemplate.load(source)
    return load_state_dict(source)


def needs_source(condition: Condition) -> bool:
    """Whether a condition reads the study's ``source`` weights."""
    return condition.polarity in ("source", "source_proportions") or condition.magnitudes == "source"


@POLARITIES.register("none")
def _no_template(condition: Condition, model: nn.Module, study: Any, seed: int) -> None:
    return None


@POLARITIES.register("random")
def _own_signs(condition: Condition, model: nn.Module, study: Any, seed: int) -> PolarityTemplate:
    return PolarityTemplate.from_model(model, layers=condition.layers)


@POLARITIES.register("rule")
def _rule(condition: Condition, model: nn.Module, study: Any, seed: int) -> PolarityTemplate:
    if not condition.rule:
        raise ValueError(f"condition {condition.name!r}: polarity 'rule' needs rule = \"<name>\"")
    return PolarityTemplate.from_rule(model, condition.rule)


@POLARITIES.register("source")
def _source(condition: Condition, model: nn.Module, study: Any, seed: int) -> PolarityTemplate:
    if not getattr(study, "source", None):
        raise ValueError(f"condition {condition.name!r} needs the study's source (--set source=FILE)")
    template, _ = transfer(source_state(study.source), model, layers=condition.layers, seed=seed)
    return template


@POLARITIES.register("source_proportions")
def _source_proportions(condition: Condition, model: nn.Module, study: Any, seed: int) -> PolarityTemplate:
    """SPIN from the source itself: its transferred template's per-layer proportions, a fresh pattern."""
    signs = _source(condition, model, study, seed)
    return PolarityTemplate.from_proportions(model, signs.proportions(), seed=seed)


@POLARITIES.register("proportions")
def _proportions(condition: Condition, model: nn.Module, study: Any, seed: int) -> PolarityTemplate:
    source = condition.proportions if condition.proportions is not None else getattr(study, "proportions", None)
    if source is None:
        raise ValueError(f"condition {condition.name!r} needs proportions (the condition's or the study's "
                         f"proportions = FILE)")
    if isinstance(source, str):
        return PolarityTemplate.from_proportions(model, load_proportions(source), seed=seed)
    return PolarityTemplate.from_proportions(model, tuple(source), seed=seed, layers=condition.layers)


@MAGNITUDES.register("fresh")
def _fresh(condition: Condition, model: nn.Module, study: Any, seed: int) -> None:
    init_magnitudes(model, seed, conv=study.init_conv, linear=study.init_linear, bias=study.init_bias)


@MAGNITUDES.register("source")
def _copy_source(condition: Condition, model: nn.Module, study: Any, seed: int) -> None:
    if not getattr(study, "source", None):
        raise ValueError(f"condition {condition.name!r} needs the study's source (--set source=FILE)")
    _fresh(condition, model, study, seed)  # layers the source lacks keep a fresh draw
    own = model.state_dict()
    state = source_state(study.source)
    if isinstance(state, PolarityTemplate):
        raise ValueError(f"condition {condition.name!r} copies the source's weights, but {study.source} is a template "
                         f"file (signs only): use a .pt/.pth/.safetensors file or a torchvision weights name")
    weights = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(weights, strict=False)
