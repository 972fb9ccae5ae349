"""What the whole-preset benchmarks share: a study run end to end into a scratch folder, timed."""

from __future__ import annotations

import tempfile

import pandas as pd

from polarnet.experiments import Store, load_study, run_study

from _report import timed


def timed_study(preset: str, overrides: list[str], workers: int, runs: dict[str, int], key: str,
                curves: dict[str, pd.DataFrame] | None = None, name: str = "") -> float:
    """Seconds to run ``preset`` with ``overrides`` on the CPU (every run must succeed); its
    run count goes to ``runs[key]``, and with ``curves`` its store's epochs table (one row
    per run and epoch, :meth:`Store.epochs`) to ``curves[name]``."""
    study = load_study(preset, overrides)
    with tempfile.TemporaryDirectory() as folder:
        summaries = []
        seconds = timed(lambda: summaries.append(run_study(study, folder, workers=workers, device="cpu",
                                                           progress=False)))
        if curves is not None:
            with Store(folder) as store:
                curves[name or key] = store.epochs()
    assert summaries[0].failed == 0, f"{summaries[0].failed} runs failed"
    runs[key] = summaries[0].trained
    return seconds


def agreement(a: pd.DataFrame, b: pd.DataFrame) -> str:
    """How far two stores of the same runs (same settings and seeds, trained by two engines)
    are apart in validation accuracy: per epoch, at the last epoch, and the mean last-epoch
    difference (b − a) with its 95% interval (normal, over runs), which is near 0 when neither
    engine is biased."""
    keys = ["condition", "n_train", "hidden", "reset", "trial", "epoch"]
    both = a[keys + ["val_acc"]].merge(b[keys + ["val_acc"]], on=keys, suffixes=("_a", "_b"))
    if len(both) != len(a) or len(both) != len(b):
        return f"the two stores hold different runs ({len(a)} and {len(b)} epoch rows, {len(both)} in common)"
    delta = both["val_acc_b"] - both["val_acc_a"]
    last = both["epoch"] == both.groupby(keys[:-1])["epoch"].transform("max")
    final = delta[last]
    half = 1.96 * final.std(ddof=1) / len(final) ** 0.5 if len(final) > 1 else float("nan")
    return (f"validation accuracy |difference| per epoch: median {delta.abs().median():.4f}, max {delta.abs().max():.4f} "
            f"({len(delta)} epochs); at the last epoch: max {final.abs().max():.4f}, mean {final.mean():+.4f} "
            f"± {half:.4f} (95%, {len(final)} runs)")
