"""``polarnet compare``: two studies side by side (e.g. CPU vs GPU, two reset rules)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..experiments.store import Store
from .metrics import run_metrics, summary_table

__all__ = ["compare_studies"]

_KEYS = ["condition", "n_train", "hidden", "reset"]
_SHOWN = ["median_epochs", "success_rate", "median_error", "mean_final_accuracy"]


def _summary(folder: Path, threshold: float | None) -> tuple[pd.DataFrame, str, float]:
    with Store.existing(folder) as store:
        settings, epochs = store.study().get("settings", {}), store.epochs()
    threshold = threshold if threshold is not None else settings.get("thresholds", [0.8])[0]
    return summary_table(run_metrics(epochs, threshold)), settings.get("name", folder.name), threshold


def compare_studies(folder_a: str | os.PathLike[str], folder_b: str | os.PathLike[str],
                    threshold: float | None = None) -> pd.DataFrame:
    """Per grid point present in either study: the summary metrics of both, and B − A.

    Rows only one study has keep NaN for the other. ``threshold`` defaults to study A's first.

    Example:
        >>> import tempfile
        >>> from polarnet.experiments import load_study, run_study
        >>> a, b = tempfile.mkdtemp(), tempfile.mkdtemp()
        >>> _ = run_study(load_study("xor5d", ["trials=2", "epochs=2", "sizes=[8]"]), a, progress=False)
        >>> _ = run_study(load_study("xor5d", ["trials=2", "epochs=2", "sizes=[8]", "lr=0.01"]), b, progress=False)
        >>> compare_studies(a, b).shape[0]
        3
    """
    table_a, name_a, threshold = _summary(Path(folder_a), threshold)
    table_b, name_b, _ = _summary(Path(folder_b), threshold)
    merged = table_a[_KEYS + _SHOWN].merge(table_b[_KEYS + _SHOWN], on=_KEYS, how="outer", suffixes=("_a", "_b"))
    for column in _SHOWN:
        merged[f"{column}_b_minus_a"] = merged[f"{column}_b"] - merged[f"{column}_a"]
    merged.attrs.update(study_a=name_a, study_b=name_b, threshold=threshold)
    return merged.sort_values(_KEYS).reset_index(drop=True)
