from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import polarnet as pn
from polarnet.keyed import keyed_uniform, reference_uniform


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**62), step=st.integers(0, 2**40), layer=st.integers(0, 1000), pos=st.integers(0, 2**40))
def test_tensor_hash_equals_python_integer_reference(seed, step, layer, pos) -> None:
    assert keyed_uniform(seed, step, layer, torch.tensor([pos])).item() == reference_uniform(seed, step, layer, pos)


def test_broadcast_seeds_and_steps_per_entry() -> None:
    seeds, steps, pos = torch.tensor([1, 2, 3]), torch.tensor([5, 6, 7]), torch.tensor([0, 10, 20])
    batched = keyed_uniform(seeds, steps, 2, pos)
    single = [keyed_uniform(int(s), int(t), 2, p.view(1)).item() for s, t, p in zip(seeds, steps, pos)]
    assert batched.tolist() == single


def test_roughly_uniform_and_decorrelated() -> None:
    u = keyed_uniform(0, 1, 0, torch.arange(200_000), torch.float64)
    assert abs(u.mean().item() - 0.5) < 0.005 and abs(u.std().item() - 12**-0.5) < 0.005
    v = keyed_uniform(0, 2, 0, torch.arange(200_000), torch.float64)
    assert abs(torch.corrcoef(torch.stack([u, v]))[0, 1].item()) < 0.01
    assert (u * 2**24).frac().abs().max() == 0  # multiples of 2^-24: exact in float32


def test_seeded_posrand_resets_are_keyed_by_step_layer_and_position() -> None:
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))
    t = pn.PolarityTemplate({"0.weight": torch.ones(4, 3), "1.weight": torch.ones(2, 4)})
    e = pn.Enforcer(net, t, "posRand", eps=0.5, seed=11)
    for step in (1, 2):
        with torch.no_grad():
            net[0].weight.fill_(-1.0)
            net[1].weight.fill_(1.0)
            net[1].weight[1, 2] = -1.0
        e()
        expected0 = keyed_uniform(11, step, 0, torch.arange(12)).view(4, 3) * 0.5
        assert torch.equal(net[0].weight.detach(), expected0)
        assert net[1].weight[1, 2].item() == keyed_uniform(11, step, 1, torch.tensor([6])).item() * 0.5


def test_seeded_resets_do_not_depend_on_memory_layout() -> None:
    torch.manual_seed(0)
    a = nn.Conv2d(3, 5, 3)
    b = nn.Conv2d(3, 5, 3).to(memory_format=torch.channels_last)
    b.load_state_dict(a.state_dict())
    t = pn.PolarityTemplate.random(a, seed=1)
    for net in (a, b):
        pn.Enforcer(net, t, "posRand", seed=4)()
    assert torch.equal(a.weight.detach(), b.weight.detach().contiguous())


def test_large_inputs_take_the_in_place_path_with_the_same_numbers() -> None:
    """Above 4096 entries the hash runs in place; every entry still equals the Python reference."""
    pos = torch.arange(0, 3 * 10**6, 331)
    seeds = torch.randint(0, 2**62, pos.shape, generator=torch.Generator().manual_seed(0))
    u = keyed_uniform(seeds, torch.tensor(9), 4, pos)
    for i in torch.randint(0, len(pos), (64,), generator=torch.Generator().manual_seed(1)).tolist():
        assert u[i].item() == reference_uniform(int(seeds[i]), 9, 4, int(pos[i]))
    assert torch.equal(u[:100], keyed_uniform(seeds[:100], 9, 4, pos[:100]))  # the small path agrees
