"""Small models the tests of several modules share."""

from __future__ import annotations

import torch
from torch import nn


def tied_mlp() -> nn.Sequential:
    """Two Linear layers sharing one weight Parameter (as an embedding tied to a decoder);
    ``state_dict()`` names it ``0.weight`` and ``2.weight``."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    net[2].weight = net[0].weight
    return net
