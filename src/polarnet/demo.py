"""``make demo``: train a small Frozen-Net and a Fluid-Net on synthetic 5-D XOR.

Both nets start from the same Glorot magnitudes and signs; the Frozen one keeps a random
template (RAND-Polarity) with Freeze-SGD. Prints validation accuracy per epoch block, the
resets performed, and the polarity violations at the end (always 0 for the Frozen-Net).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from . import PolarityTemplate, freeze, init_magnitudes, violations


def xor5d(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """5-D XOR: two relevant dims in four unit squares split by a 0.05 gap, three N(1, 1) noise dims.

    Example:
        >>> x, y = xor5d(8, torch.Generator().manual_seed(0))
        >>> x.shape, y.shape
        (torch.Size([8, 5]), torch.Size([8]))
    """
    corner = torch.randint(0, 2, (n, 2), generator=generator).float()
    square = torch.rand(n, 2, generator=generator) + corner * 1.05 - 1.0  # [-1, 0) or [0.05, 1.05)
    noise = torch.randn(n, 3, generator=generator) + 1.0
    label = (corner[:, 0] == corner[:, 1]).float()
    return torch.cat([square, noise], dim=1), label


def train(net: nn.Module, frozen: PolarityTemplate | None, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor,
          yv: torch.Tensor, epochs: int, seed: int) -> list[float]:
    """Adam (lr 0.03, batch 32) with BCE; returns validation accuracy per epoch."""
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    handle = freeze(net, frozen, opt) if frozen is not None else None
    order = torch.Generator().manual_seed(seed)
    accuracy = []
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=order).split(32):
            opt.zero_grad()
            nn.functional.binary_cross_entropy_with_logits(net(x[idx]).squeeze(1), y[idx]).backward()
            opt.step()
        with torch.no_grad():
            accuracy.append(((net(xv).squeeze(1) > 0).float() == yv).float().mean().item())
    if handle is not None:
        print(f"  resets performed by Freeze-SGD: {handle.total_resets:,} over {handle.steps} steps")
        handle.remove()
    return accuracy


def main(epochs: int = 40, n_train: int = 200, seed: int = 0) -> None:
    """Run the demo and print a small table."""
    g = torch.Generator().manual_seed(seed)
    x, y = xor5d(n_train, g)
    xv, yv = xor5d(1000, g)
    base = init_magnitudes(nn.Sequential(nn.Linear(5, 64), nn.ReLU(), nn.Linear(64, 1)), seed=seed)
    template = PolarityTemplate.from_model(base)  # RAND-Polarity: the init's own signs, fixed as-is
    results = {}
    for label, frozen in (("Frozen RAND", template), ("Fluid RAND", None)):
        print(f"{label}:")
        net = copy.deepcopy(base)
        results[label] = train(net, frozen, x, y, xv, yv, epochs, seed)
        if frozen is not None:
            results["violations"] = violations(net, frozen)
    print(f"\n5-D XOR, {n_train} training samples, 1000 validation samples, 64 hidden units")
    print(f"{'epoch':>5}  {'Frozen RAND':>11}  {'Fluid RAND':>10}")
    for e in range(4, epochs, 5):
        print(f"{e + 1:>5}  {results['Frozen RAND'][e]:>11.3f}  {results['Fluid RAND'][e]:>10.3f}")
    print(f"\npolarity violations of the Frozen-Net after training: {results['violations']}")


if __name__ == "__main__":
    main()
