"""Checks of a study that need its model: run once, before any run is marked.

:meth:`Study.validate` checks values without building anything. Some settings only make
sense against the model's layers — a condition's ``layers`` glob, a proportions file's layer
names, a template rule — and would otherwise fail every run of the study, one by one.
:func:`check_study` builds the model once per distinct architecture (on the ``meta`` device:
shapes and names, no memory, no time), reads each proportions file once, and reports every
problem in one ``ValueError``. It reads no data and no source weights (the sweep's preflight
loads those).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..layers import select
from ..models import NotAModel, get_model
from ..proportions import check_proportions, load_proportions
from ..template import PolarityTemplate
from .conditions import Condition
from .config import RULE_REQUIREMENTS, Study
from .datasets import model_kwargs

__all__ = ["check_study"]


def check_study(study: Study) -> None:
    """Check what needs the study's model; raise one ``ValueError`` listing every problem.

    Validates the study first (:meth:`Study.validate`), then, per distinct architecture
    (one per hidden size for XOR, one for an image dataset):

    * the model builds with the study's arguments (``model="pkg.mod:fn"`` included);
    * every condition's ``layers`` selects at least one parameter (for the polarities that
      use it: all but ``"none"`` and ``"rule"``);
    * a ``"rule"`` condition's rule applies to the model (and the model has the number of
      ``nn.Linear`` layers that :data:`~polarnet.experiments.config.RULE_REQUIREMENTS` asks);
    * a proportions file (the condition's or the study's) is a valid proportions file whose
      layers the model has, all of them selected by the condition's ``layers`` (a file
      constrains the layers it names: ``layers`` is a check there, not a filter); inline
      proportions are one valid ``[p0, p_neg, p_pos]``.

    A dataset registered elsewhere (whose model arguments only its loader knows) gets the
    validation only.

    Raises:
        ValueError: ``"study checks failed:"`` and one line per problem.

    Example:
        >>> from .config import load_study
        >>> check_study(load_study("xor5d", ["trials=1"]))  # fine: returns None
        >>> study = load_study("xor5d", ['define_condition={x={polarity="random", frozen=true, layers="nope"}}',
        ...                              'conditions=["x"]'])
        >>> check_study(study)  # doctest: +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
        ...
        ValueError: study checks failed:
          condition 'x': layers='nope' selects no parameter; available names start with: 0.weight, 0.bias, 2.weight, 2.bias (kind
        selectors: all, bilinear, conv, conv_transpose, embedding, hf_conv1d, linear, multihead_attention)
    """
    study.validate()
    problems: list[str] = []
    hiddens = study.hidden if study.dataset == "xor" else (None,)
    conditions = [study.condition(name) for name in dict.fromkeys(study.conditions)]
    loaded: dict[str, dict[str, Any] | None] = {}
    for hidden in hiddens:
        kwargs = model_kwargs(study, hidden)
        if kwargs is None:
            return
        model = _build(study.model, kwargs, problems)
        if model is None:
            continue
        cpu_model: list[nn.Module] = []  # rules read weight values: built on the CPU when needed

        def on_cpu(kwargs: dict[str, Any] = kwargs, cache: list[nn.Module] = cpu_model) -> nn.Module:
            if not cache:
                cache.append(get_model(study.model, **kwargs))
            return cache[0]

        for condition in conditions:
            _check_condition(study, condition, model, on_cpu, loaded, problems)
    if problems:
        raise ValueError("study checks failed:\n  " + "\n  ".join(dict.fromkeys(problems)))


def _build(name: str, kwargs: dict[str, Any], problems: list[str]) -> nn.Module | None:
    """The model on the meta device (no memory), else on the CPU; None (and a problem) if it won't build."""
    described = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    try:
        with torch.device("meta"):
            return get_model(name, **kwargs)
    except NotAModel as e:  # the factory itself is wrong, whatever the device: its one line says so
        problems.append(str(e))
        return None
    except Exception:  # some model code can't run on meta tensors: try the CPU, which says why
        pass
    try:
        return get_model(name, **kwargs)
    except NotAModel as e:
        problems.append(str(e))
        return None
    except Exception as e:  # a user's factory may raise anything for arguments it doesn't take
        problems.append(f"model={name!r}: cannot build it with {described} ({type(e).__name__}: {e})")
        return None


def _check_condition(study: Study, condition: Condition, model: nn.Module, on_cpu: Callable[[], nn.Module],
                     loaded: dict[str, dict[str, Any] | None], problems: list[str]) -> None:
    where = f"condition {condition.name!r}"
    if condition.polarity == "rule":
        wanted = RULE_REQUIREMENTS.get(condition.rule or "", {}).get("linear_layers")
        linears = sum(isinstance(m, nn.Linear) for m in model.modules())
        if wanted is not None and linears not in wanted:
            problems.append(f"{where}: rule {condition.rule!r} needs a model with {' or '.join(map(str, wanted))} "
                            f"nn.Linear layers; model {study.model!r} has {linears}")
            return
        try:
            PolarityTemplate.from_rule(on_cpu(), condition.rule or "")
        except ValueError as e:
            problems.append(f"{where}: rule {condition.rule!r} does not apply to model {study.model!r}: {e}")
        return
    proportions = condition.proportions if condition.proportions is not None else study.proportions
    if condition.polarity == "proportions" and isinstance(proportions, str):
        table = _proportions_file(proportions, loaded, problems)
        if table is not None:
            names = dict(model.named_parameters())
            missing = [n for n in table if n not in names]
            if missing:
                problems.append(f"{where}: proportions file {proportions!r} names layers model {study.model!r} does "
                                f"not have: {missing}; it has {list(names)}")
            elif condition.layers != "all":  # a file's layers are its own: ``layers`` must agree with them
                try:
                    chosen = set(select(model, condition.layers))
                except ValueError as e:
                    problems.append(f"{where}: {e}")
                    return
                outside = [n for n in table if n not in chosen]
                if outside:
                    problems.append(f"{where}: proportions file {proportions!r} names layers that layers="
                                    f"{condition.layers!r} does not select: {outside}; a file constrains the layers "
                                    f"it names: remove layers (or fix it, or the file)")
        return
    if condition.polarity == "proportions" and proportions is not None:
        try:
            check_proportions(proportions, f"{where}: proportions")
        except ValueError as e:
            problems.append(str(e))
    if condition.polarity != "none":
        try:
            select(model, condition.layers)
        except ValueError as e:
            problems.append(f"{where}: {e}")


def _proportions_file(path: str, loaded: dict[str, dict[str, Any] | None], problems: list[str]) -> dict | None:
    """A proportions file read once per check (None, with the problem noted, when it is bad)."""
    if path not in loaded:
        try:
            loaded[path] = dict(load_proportions(path))
        except ValueError as e:
            problems.append(str(e))
            loaded[path] = None
        except OSError as e:
            problems.append(f"proportions {path!r}: cannot read it ({type(e).__name__}: {e})")
            loaded[path] = None
    return loaded[path]
