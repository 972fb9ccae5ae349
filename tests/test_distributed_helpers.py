"""polarnet.distributed and Freeze-SGD on DTensor weights, in a 2-rank gloo group on the CPU.

One group (two spawned processes) runs every check once (``probes`` below, a module fixture);
each test reads its check's outcome on both ranks. The DTensors are made with
``distribute_tensor`` (Shard(0), Shard(1), uneven and empty blocks, a 2-d mesh, replicas), so
these tests cover the layouts FSDP2 and tensor parallelism produce; tests/test_distributed.py
trains with FSDP2 itself.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import polarnet as pn
from polarnet.distributed import ShardBox, global_count, is_sharded, local_signs, local_view, shard_box
from polarnet.enforcement import dense_enforce_, template_code

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with the gloo backend is not available")

WORLD = 2


# -- without a process group ------------------------------------------------------------------

def test_plain_tensors_pass_through():
    w = torch.randn(3, 4)
    assert not is_sharded(w) and local_view(w) is w
    assert shard_box(w) == ShardBox((3, 4), (3, 4), (0, 0)) and shard_box(w).whole
    signs = torch.ones(3, 4, dtype=torch.int8)
    assert local_signs(signs, w) is signs
    assert global_count(w > 0, w) == int((w > 0).sum())
    with pytest.raises(ValueError, match=r"template shape \(4, 3\) ≠ weight shape \(3, 4\)"):
        local_signs(signs.t(), w)


@pytest.mark.parametrize("box", [ShardBox((7, 4), (3, 4), (4, 0)), ShardBox((6, 5), (6, 2), (0, 3)),
                                 ShardBox((4, 3, 2, 2), (2, 1, 2, 2), (1, 2, 0, 0)), ShardBox((3, 1), (0, 1), (3, 0)),
                                 ShardBox((5,), (2,), (3,)), ShardBox((), (), ())])
def test_box_positions_are_the_global_row_major_indices_of_the_block(box):
    whole = torch.arange(torch.Size(box.global_shape).numel()).view(box.global_shape)
    block = whole[box.slices] if box.slices else whole
    assert torch.equal(box.positions(), block)
    local = torch.arange(block.numel())
    assert torch.equal(box.global_index(local), block.reshape(-1))
    assert torch.equal(box.global_index(local[::2]), block.reshape(-1)[::2])


def test_dense_enforce_on_a_block_with_global_positions_equals_the_same_rows_of_the_whole():
    torch.manual_seed(0)
    w = torch.randn(7, 6)
    signs = template_code(torch.randint(-1, 2, (7, 6)))
    whole = w.clone()
    dense_enforce_(whole, signs, "posRand", 0.1, seed=3, step=2, layer=1)
    for box in (ShardBox((7, 6), (3, 6), (4, 0)), ShardBox((7, 6), (7, 2), (0, 3)), ShardBox((7, 6), (2, 3), (1, 2))):
        for gather in (False, True):
            block = w[box.slices].clone()
            dense_enforce_(block, signs[box.slices], "posRand", 0.1, seed=3, step=2, layer=1, gather=gather,
                           positions=box.positions())
            assert torch.equal(block, whole[box.slices]), (box, gather)


# -- a 2-rank gloo group ------------------------------------------------------------------------

def _entry(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=120))
    outcomes: dict[str, str | None] = {}
    try:
        for name, probe in PROBES.items():
            try:
                probe(rank)
                outcomes[name] = None
            except Exception:  # recorded, and reported by the test that reads it
                outcomes[name] = traceback.format_exc()
            dist.barrier()  # a failed probe must not leave the other rank inside a collective
    finally:
        torch.save(outcomes, Path(out) / f"rank{rank}.pt")
        dist.destroy_process_group()


PROBES: dict[str, Callable[[int], None]] = {}


def _probe(fn: Callable[[int], None]) -> Callable[[int], None]:
    PROBES[fn.__name__] = fn
    return fn


def _mesh(*shape: int):
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh("cpu", shape or (WORLD,))


@_probe
def local_view_is_the_parameters_storage(rank: int) -> None:
    from torch.distributed.tensor import Shard, distribute_tensor

    p = nn.Parameter(distribute_tensor(torch.zeros(5, 3), _mesh(), [Shard(0)]))
    view = local_view(p)
    assert is_sharded(p) and not is_sharded(view)
    assert view.data_ptr() == p.to_local().data_ptr()
    view.fill_(rank + 1.0)
    assert torch.equal(p.full_tensor(), torch.tensor([1.0] * 9 + [2.0] * 6).view(5, 3))


@_probe
def shard_box_agrees_with_the_local_tensors(rank: int) -> None:
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    whole = torch.arange(7 * 6 * 2.0).view(7, 6, 2)
    for mesh, placements in [(_mesh(), [Shard(0)]), (_mesh(), [Shard(1)]), (_mesh(), [Shard(2)]),
                             (_mesh(), [Replicate()]), (_mesh(1, WORLD), [Shard(0), Shard(1)]),
                             (_mesh(1, WORLD), [Replicate(), Shard(0)])]:
        dt = distribute_tensor(whole, mesh, placements)
        box = shard_box(dt)
        assert box.global_shape == (7, 6, 2)
        assert torch.equal(local_view(dt), whole[box.slices]), placements
        assert torch.equal(box.positions().double(), whole[box.slices] / 1.0), placements
        signs = torch.sign(whole - 40).to(torch.int8)
        assert torch.equal(local_signs(signs, dt), signs[box.slices])
        assert box.whole == all(isinstance(p, Replicate) for p in placements)
    one_row = distribute_tensor(torch.ones(1, 4), _mesh(), [Shard(0)])
    assert shard_box(one_row).local_shape == ((1, 4) if rank == 0 else (0, 4))  # rank 1 holds nothing


@_probe
def global_count_counts_each_entry_once(rank: int) -> None:
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    whole = torch.arange(-10.0, 11.0).view(3, 7)
    expected = int((whole > 2).sum())
    for mesh, placements in [(_mesh(), [Shard(0)]), (_mesh(), [Shard(1)]), (_mesh(), [Replicate()]),
                             (_mesh(1, WORLD), [Replicate(), Shard(1)])]:
        dt = distribute_tensor(whole, mesh, placements)
        assert global_count(local_view(dt) > 2, dt) == expected, placements


@_probe
def other_placements_are_refused(rank: int) -> None:
    from torch.distributed.tensor import DTensor, Partial

    partial = DTensor.from_local(torch.ones(2, 2), _mesh(), [Partial()])
    try:
        shard_box(partial)
    except ValueError as e:
        assert "Shard(d) and Replicate() placements only" in str(e)
    else:
        raise AssertionError("a Partial DTensor was accepted")


def _sharded_copy(net: nn.Module, placements_of: dict[str, list]) -> nn.Module:
    """``net`` with the named weights replaced by DTensor parameters (the same values)."""
    from torch.distributed.tensor import distribute_tensor

    mesh = _mesh()
    for name, placements in placements_of.items():
        module_name, _, leaf = name.rpartition(".")
        module = net.get_submodule(module_name)
        w = getattr(module, leaf).detach()
        setattr(module, leaf, nn.Parameter(distribute_tensor(w, mesh, placements)))
    return net


def _nets() -> tuple[nn.Module, nn.Module, pn.PolarityTemplate]:
    """A plain net and its sharded twin (same values), not aligned: many violations."""
    from torch.distributed.tensor import Shard

    def make() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(20, 7), nn.ReLU(), nn.Linear(7, 1))

    plain = make()
    template = pn.PolarityTemplate.random(plain, seed=0)
    signs = template["3.weight"]
    signs.view(-1)[::4] = 0
    template["3.weight"] = signs
    sharded = _sharded_copy(make(), {"0.weight": [Shard(0)], "3.weight": [Shard(1)], "5.weight": [Shard(0)]})
    return plain, sharded, template


@_probe
def enforcer_on_dtensor_blocks_equals_the_unsharded_enforcer(rank: int) -> None:
    for path in ("auto", "native", "sparse", "dense"):
        for reset in ("posRand", "flip", "zero"):
            plain, sharded, template = _nets()
            ref = pn.Enforcer(plain, template, reset, eps=0.05, seed=5, path=path)
            got = pn.Enforcer(sharded, template, reset, eps=0.05, seed=5, path=path)
            for _ in range(2):
                expected, counts = ref.enforce(), got.enforce()
                totals = counts.clone()
                dist.all_reduce(totals)
                assert torch.equal(totals, expected), (path, reset)
                assert int(expected.sum()) > 0  # there were resets to compare
                for (name, p), q in zip(plain.named_parameters(), sharded.named_parameters()):
                    full = q[1].full_tensor() if is_sharded(q[1]) else q[1]
                    assert torch.equal(full, p), (path, reset, name)  # bit for bit
                # every layer moves on: new violations for the second call
                with torch.no_grad():
                    for p, q in zip(plain.parameters(), sharded.parameters()):
                        p.sub_(0.3)
                        local_view(q).sub_(0.3)
            assert pn.violations(sharded, template) == pn.violations(plain, template)


@_probe
def clear_state_zeroes_the_local_optimizer_state(rank: int) -> None:
    from torch.distributed.tensor import distribute_tensor

    for path in ("sparse", "dense"):
        plain, sharded, template = _nets()
        opts = [torch.optim.Adam(net.parameters(), lr=0.5) for net in (plain, sharded)]
        torch.manual_seed(1)
        for p, q in zip(plain.parameters(), sharded.parameters()):
            g = torch.randn_like(p)
            p.grad = g
            q.grad = distribute_tensor(g, q.device_mesh, q.placements) if is_sharded(q) else g.clone()
        ref = pn.Enforcer(plain, template, seed=5, optimizer=opts[0], clear_state=True, path=path)
        got = pn.Enforcer(sharded, template, seed=5, optimizer=opts[1], clear_state=True, path=path)
        for opt in opts:
            opt.step()
        ref.enforce(), got.enforce()
        for p, q in zip(plain.parameters(), sharded.parameters()):
            for key in ("exp_avg", "exp_avg_sq"):
                a, b = opts[0].state[p][key], opts[1].state[q][key]
                full = b.full_tensor() if is_sharded(b) else b
                torch.testing.assert_close(full, a, rtol=0, atol=0, msg=f"{path} {key}")
            full = q.full_tensor() if is_sharded(q) else q
            torch.testing.assert_close(full.detach(), p.detach(), rtol=0, atol=0)


@_probe
def template_check_accepts_dtensor_parameters(rank: int) -> None:
    plain, sharded, template = _nets()  # no aliases shim: the library as it is
    assert sorted(template.check(sharded)) == sorted(template)
    assert pn.PolarityTemplate.random(sharded, seed=0) == pn.PolarityTemplate.random(plain, seed=0)


@_probe
def align_works_on_dtensor_parameters(rank: int) -> None:
    plain, sharded, template = _nets()
    pn.align(plain, template)
    pn.align(sharded, template)
    for (name, p), (_, q) in zip(plain.named_parameters(), sharded.named_parameters()):
        assert torch.equal(q.full_tensor() if is_sharded(q) else q, p), name


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str | None]]:
    tmp = tmp_path_factory.mktemp("dtensor")
    mp.spawn(_entry, args=(str(tmp / "store"), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


def _passed(probes: list[dict[str, str | None]], name: str) -> None:
    failures = [f"rank {r}:\n{p[name]}" for r, p in enumerate(probes) if p.get(name, "not run") is not None]
    assert not failures, "\n".join(failures)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["local_view_is_the_parameters_storage", "shard_box_agrees_with_the_local_tensors",
                                  "global_count_counts_each_entry_once", "other_placements_are_refused",
                                  "enforcer_on_dtensor_blocks_equals_the_unsharded_enforcer",
                                  "clear_state_zeroes_the_local_optimizer_state"])
def test_dtensor(probes, name):
    _passed(probes, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["template_check_accepts_dtensor_parameters", "align_works_on_dtensor_parameters"])
def test_templates_and_align_take_dtensor_parameters(probes, name):
    """polarnet.layers._identity and polarnet.align read a DTensor's local block."""
    _passed(probes, name)
