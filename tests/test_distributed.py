"""Freeze-SGD under torch.distributed, two CPU processes over gloo (started by the tests).

* DDP: replicas trained on different data hold bit-identical weights after every step, with
  0 violations, with a seeded reset stream and with the default one (``seed=None``) even
  when the ranks were seeded differently.
* FSDP2 (``fully_shard``): each rank enforces on its own block of every weight, against the
  template rows of that block, without gathering the weight; random resets are keyed by the
  position in the whole weight, so two sharded ranks train to the weights of one unsharded
  process (within the rounding of the gradient reduction).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import polarnet as pn

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                       reason="torch.distributed with the gloo backend is not available"),
]

WORLD = 2
STEPS = 4
BATCH = 8  # per rank


def _spawn(fn: Any, tmp_path: Path, *args: Any) -> None:
    """Run ``fn(rank, *args)`` in WORLD fresh processes joined by a gloo process group."""
    mp.spawn(_entry, args=(str(tmp_path / "store"), fn, args), nprocs=WORLD, join=True)


def _entry(rank: int, store: str, fn: Any, args: tuple[Any, ...]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=120))  # a mismatched collective fails, not hangs
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()


def _batch(rank: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One global batch drawn alike everywhere; rank ``r`` takes its slice (``None``: all)."""
    g = torch.Generator().manual_seed(1234)
    x, y = torch.randn(WORLD * BATCH, 6, generator=g), torch.randn(WORLD * BATCH, 1, generator=g)
    if rank is None:
        return x, y
    return x[rank * BATCH:(rank + 1) * BATCH], y[rank * BATCH:(rank + 1) * BATCH]


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1))


def _flat_weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# -- DDP -----------------------------------------------------------------------------------

def _ddp_worker(rank: int, out: str, seed: int | None, rank_seeds: bool, path: str) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(rank if rank_seeds else 0)  # rank_seeds: every rank its own seed (and init)
    model = _mlp()
    ddp = DDP(model)  # broadcasts rank 0's parameters
    template = pn.PolarityTemplate.random(model, seed=0)  # the same on every rank
    opt = torch.optim.SGD(model.parameters(), lr=1.0)  # large: many weights cross every step
    handle = pn.freeze(model, template, opt, seed=seed, path=path)
    x, y = _batch(rank)
    same = []
    for _ in range(STEPS):
        opt.zero_grad()
        nn.functional.mse_loss(ddp(x), y).backward()
        opt.step()
        flat = _flat_weights(model)
        gathered = [torch.empty_like(flat) for _ in range(WORLD)]
        dist.all_gather(gathered, flat)
        same.append(all(torch.equal(gathered[0], g) for g in gathered[1:]))
        assert pn.violations(model, template) == 0
    torch.save({"same": same, "resets": handle.total_resets, "seed": handle.enforcer.seed,
                "initial_seed": torch.initial_seed(), "path": handle.enforcer.path,
                "weights": _flat_weights(model)}, Path(out) / f"rank{rank}.pt")


def _ddp_results(tmp_path: Path) -> list[dict[str, Any]]:
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("path", ["auto", "dense"])
def test_ddp_replicas_stay_identical_with_a_seeded_reset_stream(tmp_path, path):
    _spawn(_ddp_worker, tmp_path, str(tmp_path), 7, False, path)
    results = _ddp_results(tmp_path)
    for r in results:
        assert r["same"] == [True] * STEPS  # bit for bit after every step
        assert r["resets"] > 0 and r["seed"] == 7
    assert results[0]["resets"] == results[1]["resets"]
    assert torch.equal(results[0]["weights"], results[1]["weights"])


def test_ddp_default_reset_stream_is_agreed_across_differently_seeded_ranks(tmp_path):
    """seed=None: rank 0's torch.initial_seed() keys every rank's resets, so replicas whose
    ranks were seeded differently (torch.manual_seed(rank)) still reset alike."""
    _spawn(_ddp_worker, tmp_path, str(tmp_path), None, True, "auto")
    results = _ddp_results(tmp_path)
    assert [r["initial_seed"] for r in results] == [0, 1]  # the ranks were seeded differently
    assert [r["seed"] for r in results] == [0, 0]  # ... and agree on rank 0's
    for r in results:
        assert r["resets"] > 0
        assert r["same"] == [True] * STEPS
    assert torch.equal(results[0]["weights"], results[1]["weights"])


# -- FSDP2 ---------------------------------------------------------------------------------

#: (reset rule, path, optimizer, clear_state): every enforcement path a sharded weight can take
#: ("auto" and "native" take the sparse torch path for a DTensor block)
FSDP_CONFIGS = [("posRand", "auto", "sgd", False), ("posRand", "dense", "sgd", False),
                ("posRand", "sparse", "adam", True), ("posRand", "dense", "adam", True),
                ("flip", "sparse", "sgd", False)]


def _fsdp_net() -> tuple[nn.Module, pn.PolarityTemplate]:
    """A net whose weights shard unevenly over 2 ranks (7 rows: 4 + 3), one of them to nothing
    on rank 1 (1 row), a 4-d conv weight, and a template with zeros."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 2 * 2, 7), nn.ReLU(),
                        nn.Linear(7, 3), nn.ReLU(), nn.Linear(3, 1))
    template = pn.PolarityTemplate.random(net, seed=0)
    signs = template["3.weight"]
    signs.view(-1)[::5] = 0
    template["3.weight"] = signs
    pn.align(net, template)
    return net, template


def _optimizer(kind: str, net: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(net.parameters(), lr=0.5) if kind == "sgd" else torch.optim.Adam(net.parameters(), lr=0.2)


def _images(rank: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(99)
    x, y = torch.randn(WORLD * BATCH, 1, 4, 4, generator=g), torch.randn(WORLD * BATCH, 1, generator=g)
    if rank is None:
        return x, y
    return x[rank * BATCH:(rank + 1) * BATCH], y[rank * BATCH:(rank + 1) * BATCH]


def _train_unsharded(config: tuple[str, str, str, bool]) -> list[dict[str, Any]]:
    """The single-process run a sharded one must reproduce: per step, weights and resets."""
    reset, path, kind, clear = config
    net, template = _fsdp_net()
    opt = _optimizer(kind, net)
    handle = pn.freeze(net, template, opt, reset, eps=0.05, seed=11, path=path, clear_state=clear, align=False)
    x, y = _images(None)
    history = []
    for _ in range(STEPS):
        opt.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        opt.step()
        history.append({"weights": {n: p.detach().clone() for n, p in net.named_parameters()},
                        "resets": handle.last_resets})
    return history


def _fsdp_worker(rank: int, out: str) -> None:
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    from polarnet.distributed import shard_box

    results = {}
    for config in FSDP_CONFIGS:
        reset, path, kind, clear = config
        net, template = _fsdp_net()
        for module in net:
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                fully_shard(module)
        fully_shard(net)
        assert all(isinstance(p, DTensor) for p in net.parameters())
        opt = _optimizer(kind, net)
        handle = pn.freeze(net, template, opt, reset, eps=0.05, seed=11, path=path, clear_state=clear, align=False)
        x, y = _images(rank)
        history = []
        for _ in range(STEPS):
            opt.zero_grad()
            nn.functional.mse_loss(net(x), y).backward()
            gathered = []
            real = DTensor.full_tensor
            DTensor.full_tensor = lambda self: gathered.append(self) or real(self)  # type: ignore[method-assign]
            try:
                opt.step()  # ... and Freeze-SGD, on the local blocks
            finally:
                DTensor.full_tensor = real  # type: ignore[method-assign]
            assert not gathered, "enforcement gathered a full weight"
            history.append({"local": {n: p.to_local().detach().clone() for n, p in net.named_parameters()},
                            "offset": {n: shard_box(p).offset for n, p in net.named_parameters()},
                            "resets": handle.last_resets,
                            "violations": pn.violations(net, template)})
        results[config] = {"history": history, "enforcer_path": handle.enforcer.path}
    torch.save(results, Path(out) / f"rank{rank}.pt")


def test_fsdp2_shards_train_like_one_unsharded_process(tmp_path):
    _spawn(_fsdp_worker, tmp_path, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for config in FSDP_CONFIGS:
        reference = _train_unsharded(config)
        total = 0
        for step, expected in enumerate(reference):
            parts = [ranks[r][config]["history"][step] for r in range(WORLD)]
            assert [p["violations"] for p in parts] == [0] * WORLD, config
            for name, weight in expected["weights"].items():
                locals_ = [p["local"][name] for p in parts]
                assert parts[0]["offset"][name][0] == 0 and parts[1]["offset"][name][0] == locals_[0].shape[0]
                whole = torch.cat(locals_)  # Shard(0): rank 0's rows, then rank 1's
                # the same weights as one process, up to the order of the gradient reduction
                torch.testing.assert_close(whole, weight, rtol=1e-5, atol=1e-6, msg=f"{config} step {step} {name}")
            for name, n in expected["resets"].items():
                assert sum(p["resets"][name] for p in parts) == n, (config, step, name)
            total += sum(expected["resets"].values())
        assert total > 0, config  # resets happened, so their keys were compared
