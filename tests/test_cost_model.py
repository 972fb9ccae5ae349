"""experiments/cost_model.py: the cost arithmetic beneath the study, which the study limits use
without importing the estimator (experiments/cost.py) above them."""

from __future__ import annotations

import pytest

from polarnet.experiments.config import load_study
from polarnet.experiments.cost import estimate_cost
from polarnet.experiments.cost_model import count_runs, even_chunks, reference_estimate


@pytest.mark.parametrize("name, overrides", [("xor5d", []), ("xor5d-reset", ["trials=3"]),
                                             ("fmnist-alexnet", ["trials=2"])])
def test_reference_estimate_is_the_estimators_unplanned_reference_price(name, overrides) -> None:
    study = load_study(name, overrides, validate=False)
    assert reference_estimate(study) == estimate_cost(study, workers=2, rates={}, planned=False)


def test_even_chunks_share_every_run_out() -> None:
    study = load_study("xor5d", ["sizes=[8, 16]", "hidden=[4, 8]", "trials=6"])
    chunks = even_chunks(study, "xor", 2)
    assert len(chunks) == 2 * 2  # one ensemble per hidden size and worker
    assert sum(sum(m.values()) for _, m in chunks) == count_runs(study) == 6 * 2 * 2 * 3  # trials × sizes × hidden × conditions

