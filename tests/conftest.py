"""Shared test set-up."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The tests use tiny tensors: one intra-op thread is much faster on a busy 2-core machine
    (the sweep tests' worker processes run single-threaded too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
