"""What the whole-preset benchmarks share: a study run end to end into a scratch folder, timed."""

from __future__ import annotations

import tempfile

from polarnet.experiments import load_study, run_study

from _report import timed


def timed_study(preset: str, overrides: list[str], workers: int, runs: dict[str, int], key: str) -> float:
    """Seconds to run ``preset`` with ``overrides`` on the CPU (every run must succeed); its
    run count goes to ``runs[key]``."""
    study = load_study(preset, overrides)
    with tempfile.TemporaryDirectory() as folder:
        summaries = []
        seconds = timed(lambda: summaries.append(run_study(study, folder, workers=workers, device="cpu",
                                                           progress=False)))
    assert summaries[0].failed == 0, f"{summaries[0].failed} runs failed"
    runs[key] = summaries[0].trained
    return seconds
