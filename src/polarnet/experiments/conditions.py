"""Experimental conditions as data: where the signs come from, frozen or fluid, magnitudes.

A :class:`Condition` is a record; what its fields mean lives in two registries —
:data:`POLARITIES` (how a template is made) and :data:`MAGNITUDES` (how the weights start) —
so adding a condition is data, and adding a kind of polarity is one registered function,
never a branch in the training loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor, nn

from ..builders import checked_weight
from ..init import init_magnitudes
from ..layers import named_tensors, select
from ..learners import LEARNERS
from ..proportions import load_proportions
from ..registry import Registry
from ..sources import load_state_dict
from ..template import PolarityTemplate
from ..transfer import TransferReport, head_layers, match_layers, transfer

__all__ = ["Condition", "CONDITIONS", "POLARITIES", "MAGNITUDES", "POLARITY_READS", "register_condition",
           "get_condition", "condition_from_dict", "condition_problems", "source_state", "source_report",
           "source_pairs", "proportion_pairs", "needs_source", "gives_template", "UNMATCHED", "unmatched_mode",
           "LOOK_FIELDS", "ROLES", "study_looks"]


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
        layers: which layers the template covers (see :func:`polarnet.select_layers`); for
            polarities ``"random"``, ``"source"``, ``"source_proportions"`` and
            ``"proportions"``. A proportions *file* constrains the layers it names, so there
            ``layers`` must select all of them (a check, not a filter); polarity ``"rule"``
            lets its rule decide.
        reset: a reset rule that overrides the study's ``resets`` axis.
        lr: a learning rate that overrides the study's.
        proportions: for ``polarity="proportions"``: one ``[p0, p_neg, p_pos]`` for every
            constrained layer, or a proportions JSON file; unset, the study's ``proportions``.
        swap: Fluid SPIN (Igoe et al., Alg. 3): after every epoch, flip this fraction of the
            template's nonzero entries, half positive, half negative (0: never). Fluid SPIN
            is a *frozen* condition with a swap (the template moves, and is enforced between
            moves), so ``swap`` needs ``frozen = true`` and a polarity that gives a template.
        swap_mode: ``"pattern"`` (the template moves; default) or ``"literal"`` — see
            :func:`polarnet.fluid_spin_swap`.
        unmatched: for a frozen condition with polarity ``"source"``: what becomes of the
            selected layers the source gives no signs (a layer without a source counterpart,
            such as the new top layer of ``head = "extend"``, or a head of another shape).
            ``"free"``: left unconstrained. ``"own"``: frozen to the model's own initial
            signs, as Frozen RAND freezes every layer; Wang et al.'s reference code does this
            for the layer it adds on top of ImageNet's fc8. ``"auto"`` (the default):
            ``"own"`` in a study with ``head = "extend"`` (the reference code's layout, so
            its protocol), else ``"free"`` (what polarnet did before this field existed). See
            :func:`unmatched_mode`.
        learner: how a frozen condition keeps its template while training (see
            :data:`polarnet.learners.LEARNERS`): ``"freeze_sgd"`` (Wang et al.'s Freeze-SGD, the
            default), ``"project"``, ``"reparam-softplus"``/``"-exp"``/``"-abs"`` or ``"eg"``.
            Only ``freeze_sgd`` uses a reset rule; the others run with reset ``"none"``.
        description: one line for reports.
        label: how reports and claims name it ("Frozen Sufficient"); empty: its ``name``.
        role: ``"reference"`` (the baseline others are compared with: Wang et al.'s Fluid RAND
            and Fluid IN-Weight, Igoe et al.'s Fluid IN) or ``"comparison"`` (the default).
        color: its preferred colour in figures (any matplotlib colour; the paper's for the
            presets); ``None``: the palette assigns one (:func:`polarnet.analysis.colors.condition_colors`).

    ``label``, ``role`` and ``color`` say how a report shows the condition, never how it
    trains: :meth:`to_dict` leaves them out, so they enter no run key; :meth:`look` gives them,
    and a study stores them per condition beside its settings (``Store.study()["looks"]``).

    A field that a condition would not use is refused (:func:`condition_problems`), so that
    nothing is recorded, or keyed, that did not shape the run: ``rule`` belongs to polarity
    ``"rule"``, ``proportions`` to ``"proportions"``, ``layers`` to the polarities that
    select layers (:data:`POLARITY_READS`), ``reset`` and ``swap`` to frozen conditions with
    a template, ``unmatched`` to frozen conditions with polarity ``"source"``, ``learner``
    to frozen conditions (and ``reset`` to those whose learner is ``freeze_sgd``).
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
    unmatched: str = "auto"
    learner: str = "freeze_sgd"
    description: str = ""
    label: str = ""
    role: str = "comparison"
    color: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain fields that shape a run, for hashing and storing (less :data:`LOOK_FIELDS`)."""
        return {k: v for k, v in asdict(self).items() if k not in LOOK_FIELDS}

    def look(self) -> dict[str, Any]:
        """How reports show the condition: ``label`` (its name when unset), ``role``, ``color``.

        Example:
            >>> get_condition("frozen_sufficient").look()
            {'label': 'Frozen Sufficient', 'role': 'comparison', 'color': '#d62728'}
            >>> Condition("mine").look()
            {'label': 'mine', 'role': 'comparison', 'color': None}
        """
        return {"label": self.label or self.name, "role": self.role, "color": self.color}


#: the fields of :class:`Condition` that say how reports show it, kept out of run keys
LOOK_FIELDS = ("label", "role", "color")
#: the values of :attr:`Condition.role`
ROLES = ("reference", "comparison")


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


# The fields of a condition that each polarity reads; ``None``: the polarity gives no template
# (so a frozen net has nothing to enforce). A polarity registered elsewhere without an entry
# here is taken to read every field and to give a template.
POLARITY_READS: dict[str, frozenset[str] | None] = {
    "none": None,
    "random": frozenset({"layers"}),
    "rule": frozenset({"rule"}),  # the rule decides which layers it constrains
    "source": frozenset({"layers", "unmatched"}),
    "source_proportions": frozenset({"layers"}),
    "proportions": frozenset({"layers", "proportions"}),
}
_WITH_TEMPLATE = "random, rule, source, source_proportions or proportions"

#: The values of :attr:`Condition.unmatched`.
UNMATCHED = ("auto", "own", "free")


def gives_template(polarity: str) -> bool:
    """Whether a polarity gives a template (all but ``"none"``, per :data:`POLARITY_READS`).

    Example:
        >>> gives_template("random"), gives_template("none")
        (True, False)
    """
    return POLARITY_READS.get(polarity, frozenset()) is not None


def condition_problems(condition: Condition) -> list[str]:
    """Fields of a condition that would have no effect, or that cannot work together; one
    message per problem, each naming the field and the fix (empty: the condition is sound).

    Checked: ``frozen = true`` and ``swap`` need a template (a polarity other than
    ``"none"``); ``swap`` and ``reset`` need a frozen net; ``swap_mode`` needs a swap;
    ``rule``, ``proportions``, ``layers`` and ``unmatched`` must be read by the polarity
    (:data:`POLARITY_READS`); ``unmatched`` needs a frozen net (a fluid one only starts
    aligned to its template, and aligning a layer to its own signs changes nothing), and one
    of :data:`UNMATCHED`. Other values (a known polarity, a positive ``lr``…) are
    :meth:`polarnet.experiments.Study.validate`'s job.

    Example:
        >>> condition_problems(Condition("ok", "random", frozen=True, reset="flip"))
        []
        >>> condition_problems(Condition("fz", "none", frozen=True))
        ["frozen = true needs a template: polarity 'none' gives none; choose polarity = random, rule, source, source_proportions or proportions, or set frozen = false"]
    """
    c, problems = condition, []
    reads = POLARITY_READS.get(c.polarity, frozenset({"rule", "layers", "proportions", "unmatched"}))
    template = reads is not None
    if c.frozen and not template:
        problems.append(f"frozen = true needs a template: polarity {c.polarity!r} gives none; choose polarity = "
                        f"{_WITH_TEMPLATE}, or set frozen = false")
    if c.swap and not template:
        problems.append(f"swap = {c.swap:g} swaps a template's signs: polarity {c.polarity!r} gives none; choose "
                        f"polarity = {_WITH_TEMPLATE}, or remove swap")
    elif c.swap and not c.frozen:
        problems.append(f"swap = {c.swap:g} moves the template of a frozen net (Fluid SPIN is frozen = true with "
                        f"a swap); set frozen = true, or remove swap")
    if c.swap_mode != "pattern" and not c.swap:
        problems.append(f"swap_mode = {c.swap_mode!r} has no effect without a swap; remove swap_mode, or set swap")
    if c.reset is not None and not c.frozen:
        problems.append(f"reset = {c.reset!r} has no effect: a fluid net (frozen = false) never resets; remove "
                        f"reset, or set frozen = true")
    elif c.reset is not None and c.learner != "freeze_sgd":
        problems.append(f"reset = {c.reset!r} has no effect: learner {c.learner!r} never resets (only freeze_sgd "
                        f"does); remove reset, or set learner = 'freeze_sgd'")
    if c.learner != "freeze_sgd" and not c.frozen:
        problems.append(f"learner = {c.learner!r} keeps a template: a fluid net (frozen = false) has none to keep; "
                        f"remove learner, or set frozen = true")
    elif c.learner not in LEARNERS:
        problems.append(f"learner = {c.learner!r}: choose one of {', '.join(LEARNERS.names())}")
    elif c.swap and not LEARNERS.get(c.learner).moves_template:
        problems.append(f"swap = {c.swap:g} moves the template, but learner {c.learner!r} builds it into the "
                        f"model at the start; use learner = 'freeze_sgd' (or 'project', 'eg') with swap")
    if c.role not in ROLES:
        problems.append(f"role = {c.role!r}: choose 'reference' (the baseline the report compares the others with) "
                        f"or 'comparison'")
    if c.color is not None and not _is_color(c.color):
        problems.append(f"color = {c.color!r} is not a colour; give one matplotlib reads ('#1f77b4', 'tab:blue'), "
                        f"or remove color to let the palette choose")
    reads = reads or frozenset()
    if c.rule is not None and "rule" not in reads:
        problems.append(f"rule = {c.rule!r} has no effect: only polarity = 'rule' reads it (polarity is "
                        f"{c.polarity!r}); remove rule")
    if c.proportions is not None and "proportions" not in reads:
        problems.append(f"proportions = {_show(c.proportions)} has no effect: only polarity = 'proportions' reads "
                        f"it (polarity is {c.polarity!r}); remove proportions")
    if c.layers != "all" and "layers" not in reads:
        why = ("the rule decides which layers it constrains" if c.polarity == "rule" else
               f"polarity {c.polarity!r} gives no template" if not template else
               f"polarity {c.polarity!r} does not select layers")
        problems.append(f"layers = {c.layers!r} has no effect: {why}; remove layers")
    if c.unmatched not in UNMATCHED:
        problems.append(f"unmatched = {c.unmatched!r}: choose 'own' (layers the source gives no signs are frozen to "
                        f"their own initial signs), 'free' (left unconstrained) or 'auto' (the default: 'own' with "
                        f"head = 'extend', else 'free')")
    elif c.unmatched != "auto" and "unmatched" not in reads:
        problems.append(f"unmatched = {c.unmatched!r} has no effect: only polarity = 'source' reads it (polarity is "
                        f"{c.polarity!r}); remove unmatched")
    elif c.unmatched != "auto" and not c.frozen:
        problems.append(f"unmatched = {c.unmatched!r} has no effect on a fluid net (frozen = false): it only starts "
                        f"aligned to its template, and a layer's own signs need no aligning; remove unmatched, or set "
                        f"frozen = true")
    return problems


def _is_color(value: str) -> bool:
    from matplotlib.colors import is_color_like  # imported here: only a condition with a colour needs it

    return bool(is_color_like(value))


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else "[" + ", ".join(f"{v:g}" for v in value) + "]"


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
    "unmatched": (str,), "learner": (str,),
    "proportions": (list, str, type(None)),
    "description": (str,), "label": (str,), "role": (str,), "color": (str, type(None)),
}


# labels as the papers write them; colours as Wang et al. Fig. 1 (Frozen Sufficient red, Frozen
# RAND green, Fluid blue) and one for each other condition; the references are the baselines the
# papers measure the others against: Fluid RAND and Fluid IN-Weight (Wang et al. Fig. 3, Tab. 1),
# Fluid IN (Igoe et al. Table 1)
for _c in (
    Condition("frozen_sufficient", "rule", True, rule="xor_sufficient",
              description="Frozen-Net, Sufficient-Polarity (XOR rule)", label="Frozen Sufficient", color="#d62728"),
    Condition("fluid_sufficient", "rule", False, rule="xor_sufficient",
              description="Fluid-Net starting from Sufficient-Polarity", label="Fluid Sufficient", color="#ff7f0e"),
    Condition("frozen_rand", "random", True, description="Frozen-Net, RAND-Polarity (init signs fixed as-is)",
              label="Frozen RAND", color="#2ca02c"),
    Condition("fluid_rand", "none", False, description="Fluid-Net, random init (ordinary training)",
              label="Fluid RAND", role="reference", color="#1f77b4"),
    # Wang et al. §3-4 (image classification): the study's source is ImageNet (or any) weights
    Condition("frozen_in_polarity", "source", True, description="Frozen-Net, IN-Polarity (source signs, fresh magnitudes)",
              label="Frozen IN-Polarity", color="#d62728"),
    Condition("fluid_in_polarity", "source", False, description="Fluid-Net starting from IN-Polarity",
              label="Fluid IN-Polarity", color="#ff7f0e"),
    Condition("fluid_in_weight", "none", False, magnitudes="source",
              description="Fluid-Net, IN-Weight: fine-tuning the source weights", label="Fluid IN-Weight",
              role="reference", color="#9467bd"),
    Condition("frozen_in_weight", "source", True, magnitudes="source",
              description="Frozen-Net, IN-Weight: source weights, signs kept", label="Frozen IN-Weight",
              color="#8c564b"),
    # Igoe et al.: only the convolutions are constrained
    Condition("freeze_spin", "source_proportions", True, layers="conv",
              description="Freeze SPIN: the source's per-layer sign proportions, random pattern, frozen",
              label="Freeze SPIN", color="#d62728"),
    Condition("fluid_spin", "source_proportions", True, layers="conv", swap=0.5,
              description="Fluid SPIN: as Freeze SPIN, half the signs swapped every epoch (proportions kept)",
              label="Fluid SPIN", color="#ff7f0e"),
    Condition("fluid_in", "none", False, magnitudes="source", description="Fluid IN: classic transfer learning",
              label="Fluid IN", role="reference", color="#1f77b4"),
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


def source_report(study: Any, model: nn.Module) -> TransferReport:
    """What the study's conditions take from its source, layer by layer (stored with the study).

    The report of :func:`polarnet.transfer` (signs) when the source's signs fit the model.
    When they don't — a source of another architecture, e.g. AlexNet's weights for a ZFNet
    study, whose conditions take only per-layer sign proportions (SPIN) and same-shaped weights
    — what those conditions take: each layer given proportions is listed as adapted, each
    given weights (:func:`source_pairs`) as matched, the rest free.

    Raises:
        ValueError: a condition transfers the source's signs and a layer's shape can't be adapted.

    Example:
        >>> from types import SimpleNamespace
        >>> import tempfile, torch
        >>> src = tempfile.mktemp(suffix=".pt")
        >>> torch.save({"0.weight": torch.randn(6, 3, 5, 5), "1.weight": torch.randn(2, 6, 1, 1)}, src)
        >>> study = SimpleNamespace(source=src, conditions=["freeze_spin"], condition=get_condition)
        >>> print(source_report(study, nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 1))))
        adapted  0.weight ← 0.weight  (shape (6, 3, 5, 5) → (4, 3, 3, 3): sign proportions only)
        free     1.weight
        unused   1.weight (source)
    """
    state = source_state(study.source)
    try:
        return transfer(state, model)[1]
    except ValueError:
        conditions = [study.condition(c) for c in study.conditions]
        if any(c.polarity == "source" for c in conditions):
            raise
    spin = {name: theirs for c in conditions if c.polarity == "source_proportions"
            for name, theirs in _spin_signs(state, model, c.layers, 0)[1].items()}
    copied = source_pairs(state, model) if any(c.magnitudes == "source" for c in conditions) else {}
    tensors, ours = named_tensors(state), named_tensors(model)
    report = TransferReport()
    for name in select(model, "all"):
        if name in spin:
            got, want = tuple(tensors[spin[name]].shape), tuple(ours[name].shape)
            shape = f"shape {got} → {want}: " if got != want else ""
            report.adapted.append((name, spin[name], shape + "sign proportions only"
                                   + (f"; weights copied from {copied[name]}" if name in copied else "")))
        elif name in copied:
            report.matched.append((name, copied[name]))
        else:
            report.unmatched.append(name)
    used = set(spin.values()) | set(copied.values())
    report.unused = [n for n in (list(state) if isinstance(state, PolarityTemplate) else select(state, "all"))
                     if n not in used]
    return report


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


def unmatched_mode(condition: Condition, study: Any) -> str:
    """``"own"`` or ``"free"``: what ``condition`` does with the layers the study's source gives
    no signs (see :attr:`Condition.unmatched`). ``"auto"`` is ``"own"`` for a frozen condition in
    a study whose model extends its head (``head = "extend"``: the reference code's layout, whose
    Frozen conditions fix the new top layer to its own initial signs), else ``"free"``.

    Example:
        >>> from types import SimpleNamespace
        >>> frozen = get_condition("frozen_in_polarity")
        >>> unmatched_mode(frozen, SimpleNamespace(head="extend")), unmatched_mode(frozen, SimpleNamespace(head="replace"))
        ('own', 'free')
        >>> unmatched_mode(get_condition("fluid_in_polarity"), SimpleNamespace(head="extend"))
        'free'
    """
    if condition.unmatched != "auto":
        return condition.unmatched
    return "own" if condition.frozen and getattr(study, "head", "replace") == "extend" else "free"


def _transferred(condition: Condition, model: nn.Module, study: Any, seed: int) -> tuple[PolarityTemplate, TransferReport]:
    """The source's signs on ``model`` (:func:`polarnet.transfer`, unmatched layers left out)."""
    if not getattr(study, "source", None):
        raise ValueError(f"condition {condition.name!r} needs the study's source (--set source=FILE)")
    try:
        return transfer(source_state(study.source), model, layers=condition.layers, seed=seed)
    except ValueError as e:
        if getattr(study, "head", "replace") != "extend" or "≠ target shape" not in str(e):
            raise
        raise ValueError(f"{e}. With head = 'extend' the model keeps a 1000-way layer for ImageNet's fc8 "
                         f"(classifier.6), which fits only a source with a 1000-way fc8 such as "
                         f"AlexNet_Weights.IMAGENET1K_V1; for a source with another head (e.g. one pretrained by "
                         f"polarnet), set head = 'replace' (--set head=replace)") from None


@POLARITIES.register("source")
def _source(condition: Condition, model: nn.Module, study: Any, seed: int) -> PolarityTemplate:
    """The source's signs, transferred; the selected layers it gives no signs stay free, or take
    the model's own initial signs (:func:`unmatched_mode`), in the model's layer order."""
    template, report = _transferred(condition, model, study, seed)
    if not report.unmatched or unmatched_mode(condition, study) == "free":
        return template
    own = PolarityTemplate.from_model(model, layers=report.unmatched)
    signs = {name: template[name] if name in template else own[name]
             for name in select(model, condition.layers) if name in template or name in own}
    return PolarityTemplate(signs, meta=dict(template.meta, own_signs=list(report.unmatched)))


def _in_order(name: str) -> str:
    return "source:" + name  # no source name equals a model's, so match_layers pairs by order alone


def proportion_pairs(source: Mapping[str, Tensor] | PolarityTemplate, model: nn.Module,
                     layers: Any = "all") -> dict[str, str]:
    """Which source layer gives each of ``model``'s layers its sign proportions (SPIN) when the
    source has another architecture: ``{model name: source name}``, the layers of each kind
    paired in order (first conv with first conv, …), whatever their shapes or names, as Igoe
    et al. give ZFNet the proportions of AlexNet's five convolutions. Names are not used:
    another architecture's indices mislead (ZFNet's normalisation layers shift its
    ``features.N``). A source whose names come sorted as text (a ``.safetensors`` file puts
    ``features.10`` before ``features.3``) is taken in numeric order. A head whose shape
    differs (the source's task had other classes) is left out, as :func:`polarnet.transfer`
    leaves it free.

    Example:
        >>> from polarnet.models import get_model
        >>> pairs = proportion_pairs(get_model("alexnet").state_dict(), get_model("zfnet"), "conv")
        >>> pairs["features.8.weight"], pairs["features.12.weight"]
        ('features.6.weight', 'features.10.weight')
    """
    theirs, ours, heads = named_tensors(source), named_tensors(model), set(head_layers(model))
    pairs = match_layers(theirs, model, layers=layers, rename=_in_order)  # text-sorted names: in numeric order
    return {name: other for name, other in pairs.items()
            if name not in heads or theirs[other].shape == ours[name].shape}


def _spin_signs(source: Mapping[str, Tensor] | PolarityTemplate, model: nn.Module, layers: Any,
                seed: int) -> tuple[PolarityTemplate, dict[str, str]]:
    """The signs whose per-layer proportions SPIN takes, and ``{model layer: source layer}``:
    the source's signs transferred onto the model (:func:`polarnet.transfer`: by name, input
    channels adapted) where they fit it; from a source of another architecture, whose shapes
    the transfer can't adapt, each layer's own signs, paired by :func:`proportion_pairs`."""
    try:
        template, report = transfer(source, model, layers=layers, seed=seed)
        return template, {**dict(report.matched), **{t: s for t, s, _ in report.adapted}}
    except ValueError as e:
        if "≠ target shape" not in str(e):
            raise
    pairs = proportion_pairs(source, model, layers)
    tensors = named_tensors(source)
    return PolarityTemplate({name: checked_weight(theirs, tensors[theirs]).sign().to(torch.int8)
                             for name, theirs in pairs.items()}), pairs


@POLARITIES.register("source_proportions")
def _source_proportions(condition: Condition, model: nn.Module, study: Any, seed: int) -> PolarityTemplate:
    """SPIN from the source itself: the per-layer proportions of its signs (:func:`_spin_signs`),
    a fresh pattern."""
    if not getattr(study, "source", None):
        raise ValueError(f"condition {condition.name!r} needs the study's source (--set source=FILE)")
    signs, _ = _spin_signs(source_state(study.source), model, condition.layers, seed)
    if not len(signs):
        raise ValueError(f"condition {condition.name!r}: no {condition.layers} layer of {study.source} pairs with one "
                         f"of the model {getattr(study, 'model', '')!r}, so there are no proportions to transfer")
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
    """The source's weights, matched to the model's as :func:`polarnet.transfer` matches layers
    (by name, then the layers left over in order, same shapes only); a layer without a match
    keeps its fresh draw. A source from which no weight can be copied is an error."""
    if not getattr(study, "source", None):
        raise ValueError(f"condition {condition.name!r} needs the study's source (--set source=FILE)")
    _fresh(condition, model, study, seed)  # layers the source lacks keep a fresh draw
    state = source_state(study.source)
    if isinstance(state, PolarityTemplate):
        raise ValueError(f"condition {condition.name!r} copies the source's weights, but {study.source} is a template "
                         f"file (signs only): use a .pt/.pth/.safetensors file, a torchvision weights name, timm:MODEL or hf:ORG/NAME")
    pairs = source_pairs(state, model)
    weights = select(model, "all")
    if not any(name in pairs for name in weights):
        own = list(model.state_dict())
        theirs = [k for k, v in state.items() if isinstance(v, Tensor)]
        raise ValueError(
            f"condition {condition.name!r} copies the source's weights (magnitudes='source'), but no weight of "
            f"{study.source} fits the model {getattr(study, 'model', '')!r}: the names differ and no layer of the same "
            f"kind and shape comes in the same order (model: {_first(own)}; source: {_first(theirs)}). Use a source "
            f"saved from this architecture (a state dict of the same model, without a wrapper's prefix such as "
            f"'module.')")
    model.load_state_dict({target: state[source] for target, source in pairs.items()}, strict=False)


def source_pairs(state: Mapping[str, Tensor], model: nn.Module) -> dict[str, str]:
    """Which source tensor each of a model's tensors takes when a condition copies the source's
    weights (``magnitudes = "source"``): ``{model name: source name}``, same shapes only.

    A name the source has with the same shape is taken as it is; the weights left over are
    paired as :func:`polarnet.transfer` pairs layers (by name, then in order among layers of
    the same kind), and each pair brings its layer's bias and buffers along. A source saved
    from a wrapper (``module.features.0.weight``, as ``DistributedDataParallel`` writes) so
    fits its bare model.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> wrapped = {"module." + k: v for k, v in net.state_dict().items()}
        >>> source_pairs(wrapped, net)["2.bias"]
        'module.2.bias'
    """
    own = model.state_dict()
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    pairs = {k: k for k, v in tensors.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if all(name in pairs for name in select(model, "all")):
        return pairs
    try:
        _, report = transfer(tensors, model)
    except ValueError:  # a layer transfer cannot adapt (another architecture): the names alone decide
        return pairs
    used = set(pairs.values())
    for target, source in report.matched:  # same shapes, by name then in order
        if target in pairs:
            continue
        t_layer, s_layer = target.rpartition(".")[0], source.rpartition(".")[0]
        for name in own:  # the weight, and the bias and buffers beside it
            if name in pairs or name.rpartition(".")[0] != t_layer:
                continue
            leaf = name.rpartition(".")[2]
            theirs = f"{s_layer}.{leaf}" if s_layer else leaf
            if theirs in tensors and theirs not in used and tuple(tensors[theirs].shape) == tuple(own[name].shape):
                pairs[name] = theirs
                used.add(theirs)
    return pairs


def _first(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f", … ({len(names)} in all)" if len(names) > n else "") if names else "nothing"


def study_looks(study: Any) -> dict[str, dict[str, Any]]:
    """How reports show each of a study's conditions (:meth:`Condition.look`), in its order:
    what :func:`polarnet.experiments.run_study` stores beside the settings.

    Example:
        >>> from types import SimpleNamespace
        >>> s = SimpleNamespace(conditions=["fluid_rand"], condition=get_condition)
        >>> study_looks(s)
        {'fluid_rand': {'label': 'Fluid RAND', 'role': 'reference', 'color': '#1f77b4'}}
    """
    return {name: study.condition(name).look() for name in dict.fromkeys(study.conditions)}
