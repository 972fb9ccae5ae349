"""``polarnet compare``: two studies side by side (e.g. CPU vs GPU, two reset rules).

The comparison says what differs between the two studies (:func:`setting_differences`,
printed by :func:`difference_lines`), shows the finished runs behind every grid point of each
(``runs_a``, ``runs_b``), and refuses studies of different datasets or models, whose errors
measure different tasks, unless asked (``allow_different=True``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..experiments.store import Store
from ..experiments.store import setting_differences as store_differences
from .metrics import one_line, run_metrics, summary_table

__all__ = ["compare_studies", "setting_differences", "difference_lines", "MUST_MATCH", "NOT_COMPARED"]

_KEYS = ["condition", "n_train", "hidden", "reset"]
_SHOWN = ["median_epochs", "success_rate", "median_error", "mean_final_accuracy"]

#: settings two studies must share to be compared (else ``allow_different=True``), with the
#: value a store that lacks the key was run with (:class:`~polarnet.experiments.config.Study`'s default)
MUST_MATCH = {"dataset": "xor", "model": "mlp"}
#: settings never listed as differences: labels and safety switches, which change no number
NOT_COMPARED = frozenset({"name", "description", "source_hint", "allow_large", "allow_extreme"})
def setting_differences(settings_a: dict, settings_b: dict) -> list[tuple[str, Any, Any]]:
    """The stored settings in which two studies differ, as ``(key, value in A, value in B)``:
    :func:`polarnet.experiments.store.setting_differences` without the :data:`NOT_COMPARED` keys.

    Example:
        >>> setting_differences({"lr": 0.03, "sizes": (8, 20), "name": "a"},
        ...                     {"lr": 0.01, "sizes": [8, 20], "name": "b", "define_condition": {"fz": {"lr": 0.1}}})
        [('define_condition.fz.lr', '(not stored)', 0.1), ('lr', 0.03, 0.01)]
    """
    return store_differences(settings_a, settings_b, ignore=NOT_COMPARED)


def difference_lines(table: pd.DataFrame) -> list[str]:
    """What ``polarnet compare`` prints above the table: the settings that differ between the
    two studies (from ``table.attrs``, as :func:`compare_studies` returns), one Markdown
    bullet each, or one line saying there are none.

    Example:
        >>> t = pd.DataFrame()
        >>> t.attrs.update(study_a="a", study_b="b", differences=[("lr", 0.03, 0.01), ("sizes", [8], [8, 20])])
        >>> print("\\n".join(difference_lines(t)))
        Settings that differ (A = a, B = b):
        - lr: 0.03 in A, 0.01 in B
        - sizes: [8] in A, [8, 20] in B
    """
    differences = table.attrs.get("differences", [])
    if not differences:
        return [f"Settings: the same in both studies (apart from {', '.join(sorted(NOT_COMPARED))})."]

    def shown(value: Any) -> str:
        return one_line(value if isinstance(value, str) else json.dumps(value))

    return ([f"Settings that differ (A = {one_line(table.attrs.get('study_a', 'A'))}, "
             f"B = {one_line(table.attrs.get('study_b', 'B'))}):"]
            + [f"- {one_line(key)}: {shown(a)} in A, {shown(b)} in B" for key, a, b in differences])


def _read(folder: Path) -> tuple[dict, pd.DataFrame]:
    with Store.existing(folder) as store:
        return store.study().get("settings", {}), store.epochs()


def compare_studies(folder_a: str | os.PathLike[str], folder_b: str | os.PathLike[str],
                    threshold: float | None = None, *, allow_different: bool = False) -> pd.DataFrame:
    """Per grid point present in either study: the summary metrics of both, and B − A.

    Args:
        folder_a, folder_b: two study folders.
        threshold: the accuracy threshold for epochs and success; default: study A's first.
        allow_different: compare studies of different datasets or models (:data:`MUST_MATCH`)
            anyway; without it they are refused.

    Returns:
        One row per condition × size × hidden × reset, with ``runs_a`` and ``runs_b`` (finished
        runs, i.e. trials, behind the grid point in each study; 0 where a study lacks it), the
        metrics with suffixes ``_a`` and ``_b`` (NaN where a study lacks the point) and
        ``_b_minus_a``. ``attrs``: ``study_a``, ``study_b``, ``threshold`` and
        ``differences``, the settings that differ (:func:`setting_differences`; print them
        with :func:`difference_lines`).

    Raises:
        ValueError: a folder holds no study, or the studies differ in dataset or model and
            ``allow_different`` is false.

    Example:
        >>> import tempfile
        >>> from polarnet.experiments import load_study, run_study
        >>> a, b = tempfile.mkdtemp(), tempfile.mkdtemp()
        >>> _ = run_study(load_study("xor5d", ["trials=2", "epochs=2", "sizes=[8]"]), a, progress=False)
        >>> _ = run_study(load_study("xor5d", ["trials=2", "epochs=2", "sizes=[8]", "lr=0.01"]), b, progress=False)
        >>> table = compare_studies(a, b)
        >>> table.shape[0], table["runs_a"].tolist(), table.attrs["differences"]
        (3, [2, 2, 2], [('lr', 0.03, 0.01)])
    """
    (settings_a, epochs_a), (settings_b, epochs_b) = _read(Path(folder_a)), _read(Path(folder_b))
    name_a, name_b = settings_a.get("name", Path(folder_a).name), settings_b.get("name", Path(folder_b).name)
    mismatched = [key for key, default in MUST_MATCH.items()
                  if settings_a.get(key, default) != settings_b.get(key, default)]
    if mismatched and not allow_different:
        def task(settings: dict) -> str:
            return ", ".join(f"{key} {settings.get(key, default)!r}" for key, default in MUST_MATCH.items())

        raise ValueError(f"{folder_a} ({task(settings_a)}) and {folder_b} ({task(settings_b)}) differ in "
                         f"{' and '.join(mismatched)}: their errors measure different tasks, so B − A means nothing; "
                         "compare studies of the same dataset and model, or pass allow_different=True "
                         "(polarnet compare --allow-different) to put them side by side anyway")
    threshold = threshold if threshold is not None else settings_a.get("thresholds", [0.8])[0]
    table_a = summary_table(run_metrics(epochs_a, threshold))
    table_b = summary_table(run_metrics(epochs_b, threshold))
    shown = ["runs", *_SHOWN]
    merged = table_a[_KEYS + shown].merge(table_b[_KEYS + shown], on=_KEYS, how="outer", suffixes=("_a", "_b"))
    for column in ("runs_a", "runs_b"):
        merged[column] = merged[column].fillna(0).astype(int)
    for column in _SHOWN:
        merged[f"{column}_b_minus_a"] = merged[f"{column}_b"] - merged[f"{column}_a"]
    merged = merged[_KEYS + ["runs_a", "runs_b"] + [c for c in merged if c not in _KEYS + ["runs_a", "runs_b"]]]
    merged = merged.sort_values(_KEYS).reset_index(drop=True)
    merged.attrs.update(study_a=name_a, study_b=name_b, threshold=threshold,
                        differences=setting_differences(settings_a, settings_b))
    return merged
