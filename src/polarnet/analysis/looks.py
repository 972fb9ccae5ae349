"""What a study stored about showing its conditions, and its number of classes.

:func:`polarnet.experiments.run_study` stores, beside the study's settings, each condition's
``label``, ``role`` and ``color`` (``looks``; see :meth:`polarnet.experiments.Condition.look`)
and the task's ``num_classes``. The analysis reads them here, so it holds no table of
condition names: a condition a user registers with a label and a colour is shown with them.

Stores written before this version have neither key. For them the looks come from the
conditions' declarations (the study's ``define_condition``, else the condition registry), and
the number of classes is unknown (``None``: :func:`polarnet.analysis.metrics.chance_level`
then keeps its old rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from ..experiments.conditions import CONDITIONS, Condition

__all__ = ["condition_looks", "declared_look", "looks_line", "reference_condition", "stored_num_classes"]


def declared_look(name: str, settings: Mapping | None = None) -> dict[str, Any]:
    """How condition ``name`` is declared to look: the study's ``define_condition`` entry,
    else the registered condition's, else the defaults (its name as label, a comparison, no
    colour).

    Example:
        >>> declared_look("fluid_rand")["role"], declared_look("mine")
        ('reference', {'label': 'mine', 'role': 'comparison', 'color': None})
        >>> declared_look("x", {"define_condition": {"x": {"name": "x", "label": "Ex"}}})["label"]
        'Ex'
    """
    defined = ((settings or {}).get("define_condition") or {}).get(name)
    if isinstance(defined, Mapping):
        known = {f.name for f in fields(Condition)} - {"name"}
        return Condition(name, **{k: v for k, v in defined.items() if k in known}).look()
    return (CONDITIONS.get(name) if name in CONDITIONS.names() else Condition(name)).look()


def condition_looks(facts: Mapping, conditions: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Each condition's ``{label, role, color}``: the study's stored ``looks``
    (``Store.study()``), and for conditions they lack (a store written before this version,
    or runs of a condition the settings no longer list) :func:`declared_look`. In the study's
    order, then that of ``conditions``.

    Args:
        facts: the store's study facts (``Store.study()``: ``settings``, ``looks``…).
        conditions: further conditions to cover (e.g. those of the stored runs).

    Example:
        >>> facts = {"settings": {"conditions": ["mine"]}, "looks": {"mine": {"label": "Mine", "role":
        ...          "reference", "color": "#000000"}}}
        >>> [(n, look["label"]) for n, look in condition_looks(facts, ["fluid_rand"]).items()]
        [('mine', 'Mine'), ('fluid_rand', 'Fluid RAND')]
    """
    settings = facts.get("settings") or {}
    stored = facts.get("looks") or {}
    names = dict.fromkeys([*map(str, stored), *map(str, settings.get("conditions") or []), *map(str, conditions)])
    return {name: dict(stored[name]) if name in stored else declared_look(name, settings) for name in names}


def reference_condition(looks: Mapping[str, Mapping], present: Iterable[str]) -> str | None:
    """The condition the report compares the others with: the first of the study's conditions
    whose role is ``"reference"`` among those ``present`` (e.g. with finished runs).

    Example:
        >>> looks = {"a": {"role": "comparison"}, "b": {"role": "reference"}, "c": {"role": "reference"}}
        >>> reference_condition(looks, ["a", "c", "b"]), reference_condition(looks, ["a"])
        ('b', None)
    """
    present = set(map(str, present))
    return next((name for name, look in looks.items() if look.get("role") == "reference" and name in present), None)


def looks_line(looks: Mapping[str, Mapping], present: Iterable[str]) -> str:
    """One line naming each condition ``present`` by its label, the reference marked.

    Example:
        >>> looks_line({"fluid_rand": {"label": "Fluid RAND", "role": "reference"}, "x": {"label": "x"}},
        ...            ["x", "fluid_rand"])
        'Conditions: `fluid_rand` Fluid RAND (the reference); `x`.'
    """
    present = set(map(str, present))
    parts = [f"`{name}`" + (f" {look['label']}" if look.get("label", name) != name else "")
             + (" (the reference)" if look.get("role") == "reference" else "")
             for name, look in looks.items() if name in present]
    return "Conditions: " + "; ".join(parts) + "." if parts else ""


def stored_num_classes(facts: Mapping) -> int | None:
    """The stored number of classes; ``None`` for a store written before this version.

    Example:
        >>> stored_num_classes({"num_classes": 5}), stored_num_classes({})
        (5, None)
    """
    value = facts.get("num_classes")
    return int(value) if value else None
