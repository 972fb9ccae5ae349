"""The grid axes a study really has, and the grid point a paper's claim was made at.

A study is conditions × training sizes × hidden units × reset rules × trials, but not every axis
means something for every study: ``hidden`` is the width of the XOR network's hidden layer, and
an image model takes no hidden size (its runs store the setting's default, 64, which says
nothing). Tables and diagnostics show ``hidden`` only where the study's model takes it or the
runs differ in it (:func:`has_hidden`).

A paper's claim holds for the grid it was made at (Wang et al. Fig. 1: 64 hidden units, the
posRand rule), so the report measures it there only, once (:func:`missing_point`,
:func:`point_label`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import SimpleNamespace

import pandas as pd

__all__ = ["has_hidden", "model_takes", "grid_columns", "missing_point", "point_label", "curve_point"]


def has_hidden(settings: Mapping | None, values: Iterable = ()) -> bool:
    """Whether ``hidden`` is an axis of the study: its runs differ in it (``values``, e.g. the
    runs' ``hidden`` column), or its model is built with a hidden size (XOR's MLP; an image
    dataset's model is not). Without settings, or for a dataset whose loader alone knows its
    model's arguments, it counts as one.

    Example:
        >>> has_hidden({"dataset": "xor"}, [64]), has_hidden({"dataset": "fashion_mnist"}, [64, 64])
        (True, False)
        >>> has_hidden({"dataset": "fashion_mnist"}, [8, 64]), has_hidden(None, [64])
        (True, True)
    """
    return len(set(values)) > 1 or model_takes(settings, "hidden")


def model_takes(settings: Mapping | None, argument: str) -> bool:
    """Whether the study's model is built with ``argument`` (``"hidden"``; ``"in_features"``,
    which XOR's ``dims`` sets): :func:`polarnet.experiments.datasets.model_kwargs` says so. True
    without settings, or for a dataset whose loader alone knows its model's arguments.

    Example:
        >>> model_takes({"dataset": "xor"}, "in_features"), model_takes({"dataset": "cifar10"}, "in_features")
        (True, False)
    """
    if not settings:
        return True
    from ..experiments.datasets import model_kwargs

    fields = SimpleNamespace(dataset=settings.get("dataset", "xor"), dims=settings.get("dims", 5),
                             classes=settings.get("classes"), in_channels=settings.get("in_channels", 3),
                             head=settings.get("head", "replace"))
    try:
        kwargs = model_kwargs(fields, hidden=1)
    except (KeyError, TypeError):  # e.g. an image dataset this version no longer registers (IMAGE_DATASETS[...])
        return True  # or a stored value of another type: show the setting rather than hide a real one
    return kwargs is None or argument in kwargs


def grid_columns(settings: Mapping | None, frame: pd.DataFrame) -> list[str]:
    """The grid columns a table of ``frame`` (runs or per-run metrics) shows: condition and
    training size, then ``hidden`` where :func:`has_hidden`, and ``reset`` where a run resets.

    Example:
        >>> runs = pd.DataFrame({"condition": ["a", "b"], "n_train": [8, 8], "hidden": [64, 64],
        ...                      "reset": ["posRand", "none"]})
        >>> grid_columns({"dataset": "fashion_mnist"}, runs), grid_columns({"dataset": "xor"}, runs)
        (['condition', 'n_train', 'reset'], ['condition', 'n_train', 'hidden', 'reset'])
    """
    columns = ["condition", "n_train"]
    if "hidden" in frame and has_hidden(settings, frame["hidden"]):
        columns.append("hidden")
    if "reset" in frame and (frame["reset"] != "none").any():
        columns.append("reset")
    return columns


def _values(values: Iterable) -> str:
    return ", ".join(map(str, values))


def missing_point(per_run: pd.DataFrame, hidden: tuple = (), resets: tuple = ()) -> str:
    """The part of a claim's grid point (its ``hidden`` sizes, its frozen runs' ``resets``; empty:
    any) that the study has no run at, as text (``"hidden 64"``); empty when it has them. A
    frame without a ``hidden`` (``reset``) column has no such axis, so nothing is missing there.

    Example:
        >>> runs = pd.DataFrame({"hidden": [2, 32, 32], "reset": ["posRand", "zero", "none"]})
        >>> missing_point(runs, (64,), ("posRand",)), missing_point(runs, (32,), ("flip",)), missing_point(runs, (32,))
        ('hidden 64', 'reset flip', '')
    """
    missing = []
    if hidden and "hidden" in per_run and not per_run["hidden"].isin(hidden).any():
        missing.append(f"hidden {_values(hidden)}")
    frozen = per_run[per_run["reset"] != "none"] if "reset" in per_run else per_run.iloc[0:0]
    if resets and len(frozen) and not frozen["reset"].isin(resets).any():
        missing.append(f"reset {_values(resets)}")
    return ", ".join(missing)


def point_label(read: pd.DataFrame, study: pd.DataFrame) -> str:
    """Where a claim was measured (``"hidden 64, reset posRand"``): the hidden sizes and frozen
    reset rules of the runs it ``read``, each named only where the ``study`` has several.

    Example:
        >>> study = pd.DataFrame({"hidden": [8, 64, 64], "reset": ["posRand", "posRand", "none"]})
        >>> point_label(study[study["hidden"] == 64], study)
        'hidden 64'
    """
    parts = []
    if "hidden" in study and study["hidden"].nunique() > 1 and len(read):
        parts.append(f"hidden {_values(sorted(read['hidden'].unique()))}")
    rules = study.loc[study["reset"] != "none", "reset"] if "reset" in study else pd.Series(dtype=object)
    if rules.nunique() > 1 and len(read):
        parts.append(f"reset {_values(sorted(set(read['reset']) - {'none'}))}")
    return ", ".join(parts)


def curve_point(done: pd.DataFrame, settings: Mapping) -> tuple[pd.DataFrame, list[str]]:
    """The epochs a learning-curve figure averages, and where they are (``["n = 500", …]``):
    the largest training size with finished runs and, where the study varies them, the widest
    hidden layer and, per condition, one reset rule (the first of the study's ``resets`` it
    ran), so that no curve averages across a grid axis.

    Example:
        >>> done = pd.DataFrame({"condition": ["f", "f", "g"], "n_train": [8, 8, 8], "hidden": [2, 32, 32],
        ...                      "reset": ["zero", "zero", "none"]})
        >>> point, where = curve_point(done, {"resets": ["zero"]})
        >>> list(point["hidden"]), where
        ([32, 32], ['n = 8', 'hidden 32 (the widest of 2)'])
    """
    largest = done["n_train"].max()
    point, where = done[done["n_train"] == largest], [f"n = {largest}"]
    if point["hidden"].nunique() > 1:
        widest = point["hidden"].max()
        where.append(f"hidden {widest} (the widest of {point['hidden'].nunique()})")
        point = point[point["hidden"] == widest]
    if len(set(point["reset"]) - {"none"}) > 1:
        order = [*(settings.get("resets") or []), *sorted(set(point["reset"]))]
        rules = {c: next(r for r in order if r in set(rows["reset"])) for c, rows in point.groupby("condition")}
        point = point[point["reset"] == point["condition"].map(rules)]
        kept = sorted(set(rules.values()) - {"none"})
        where.append(f"reset {', '.join(kept)} (the study's first rule; the Reset rules section compares them)")
    return point, where
