"""Tests for polarnet.enforcement: the dense Freeze-SGD step on one weight or stacked members."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polarnet import enforcement, native
from polarnet.enforcement import DENSE_RULES, dense_enforce_, template_code
from polarnet.keyed import reference_uniform


def test_template_code_is_one_byte_in_the_weights_layout() -> None:
    w = torch.randn(4, 3, 2, 2).to(memory_format=torch.channels_last)
    code = template_code(torch.randn(4, 3, 2, 2) * (torch.rand(4, 3, 2, 2) > 0.3), w)
    assert code.dtype == torch.int8 and code.stride() == w.stride()
    assert set(code.unique().tolist()) <= {-1, 0, 1}


@pytest.mark.parametrize("rule", DENSE_RULES)
def test_hand_computed_resets(rule) -> None:
    # T:       +1    +1    -1    0     0     -1
    # w:     -0.5   0.2  -0.0  0.3  -0.0   0.7     violations: entries 0 and 5 (rule), 3 (→ +0)
    w = torch.tensor([-0.5, 0.2, -0.0, 0.3, -0.0, 0.7])
    signs = template_code(torch.tensor([1, 1, -1, 0, 0, -1]))
    n = dense_enforce_(w, signs, rule, eps=0.25, seed=9, step=4, layer=2)
    assert n.dtype == torch.int64 and n.dim() == 0 and int(n) == 3
    expected = {
        "posCon": (0.25, -0.25),
        "zero": (0.0, -0.0),
        "flip": (0.5, -0.7),
        "posRand": (reference_uniform(9, 4, 2, 0) * 0.25, -reference_uniform(9, 4, 2, 5) * 0.25),
    }[rule]
    assert w[0].item() == pytest.approx(expected[0], abs=0, rel=1e-7)
    assert w[5].item() == pytest.approx(expected[1], abs=0, rel=1e-7)
    assert torch.signbit(w[[0, 5]]).tolist() == [False, True]  # the zero rule's ±0 is signed like T
    assert w[1].item() == pytest.approx(0.2, rel=1e-7) and w[3].item() == 0.0 and not torch.signbit(w[3])
    assert torch.signbit(w[2]) and torch.signbit(w[4])  # -0.0 is on the boundary: kept as it was


@settings(max_examples=60, deadline=None)
@given(members=st.integers(1, 5), rows=st.integers(1, 4), cols=st.integers(1, 6), rule=st.sampled_from(DENSE_RULES),
       gather=st.booleans(), data=st.data())
def test_stacked_members_equal_one_call_per_member(members, rows, cols, rule, gather, data) -> None:
    """What an ensemble relies on: per-member seeds, steps and layers broadcast; positions restart per member."""
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 1000)))
    w = torch.randn(members, rows, cols, generator=g)
    signs = template_code(torch.randint(-1, 2, (members, rows, cols), generator=g))
    seeds, steps = torch.randint(0, 2**40, (members,), generator=g), torch.randint(1, 100, (members,), generator=g)
    layers = torch.randint(0, 4, (members,), generator=g)
    active = torch.rand(members, generator=g) < 0.7
    view = (members, 1, 1)
    stacked = w.clone()
    counts = dense_enforce_(stacked, signs, rule, 0.1, seed=seeds.view(view), step=steps.view(view),
                            layer=layers.view(view), members=1, active=active.view(view), gather=gather)
    assert counts.shape == (members,)
    for m in range(members):
        one = w[m].clone()
        if active[m]:
            n = dense_enforce_(one, signs[m], rule, 0.1, seed=int(seeds[m]), step=int(steps[m]), layer=int(layers[m]))
        else:
            n = torch.tensor(0)
        assert torch.equal(stacked[m], one) and int(counts[m]) == int(n)


def test_states_are_zeroed_where_resets_happen() -> None:
    w = torch.tensor([[-1.0, 2.0], [3.0, 0.5]])
    signs = template_code(torch.tensor([[1, 1], [0, 1]]))
    moments = torch.ones(2, 2)
    dense_enforce_(w, signs, "posCon", states=[moments])
    assert moments.tolist() == [[0.0, 1.0], [0.0, 1.0]]


def test_an_unknown_rule_names_the_dense_rules_and_the_sparse_path() -> None:
    with pytest.raises(ValueError, match="posRand, posCon, zero, flip.*path='sparse'"):
        dense_enforce_(torch.tensor([-1.0]), template_code(torch.tensor([1])), "mine")


def test_one_rule_per_member_equals_each_members_own_rule() -> None:
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 5, 6, generator=g)
    signs = template_code(torch.randint(-1, 2, (4, 5, 6), generator=g))
    rules = list(DENSE_RULES)
    rule_of = torch.tensor([2, 0, 3, 1]).view(4, 1, 1)
    stacked = w.clone()
    counts = dense_enforce_(stacked, signs, rules, 0.1, seed=5, step=2, layer=1, members=1, rule_of=rule_of)
    for m in range(4):
        one = w[m].clone()
        n = dense_enforce_(one, signs[m], rules[int(rule_of[m])], 0.1, seed=5, step=2, layer=1)
        assert torch.equal(stacked[m], one) and int(counts[m]) == int(n) > 0
    with pytest.raises(ValueError, match="rule_of"):
        dense_enforce_(w.clone(), signs, rules, members=1)


_SPECIAL = [0.0, -0.0, float("nan"), -float("nan"), float("inf"), -float("inf")]


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(st.floats(-3, 3, width=32), st.sampled_from(_SPECIAL)), min_size=24, max_size=24),
       signs=st.lists(st.sampled_from([-1, 0, 1]), min_size=24, max_size=24),
       rules=st.lists(st.sampled_from(DENSE_RULES), min_size=1, max_size=3), channels_last=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]))
def test_gathering_the_violations_gives_the_dense_numbers_bit_for_bit(values, signs, rules, channels_last, dtype) -> None:
    """(2 members, 3, 2, 2): channels-last stacked conv weights, NaN and ±0 included, one rule per member."""
    w = torch.tensor(values).view(2, 3, 2, 2).to(dtype)
    if channels_last:
        w = w.to(memory_format=torch.channels_last)
    code = template_code(torch.tensor(signs).view(2, 3, 2, 2), w)
    rule_of = torch.tensor([0, len(rules) - 1]).view(2, 1, 1, 1)
    keys = dict(seed=torch.tensor([3, 4]).view(2, 1, 1, 1), step=7, layer=torch.tensor([1, 2]).view(2, 1, 1, 1),
                members=1, rule_of=rule_of)
    dense, gathered = w.clone(), w.clone()
    a = dense_enforce_(dense, code, rules if len(rules) > 1 else rules[0], 0.5, **keys)
    b = dense_enforce_(gathered, code, rules if len(rules) > 1 else rules[0], 0.5, gather=True, **keys)
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[w.element_size()]
    assert torch.equal(a, b) and torch.equal(dense.contiguous().view(bits), gathered.contiguous().view(bits))


@settings(max_examples=60, deadline=None)
@given(members=st.integers(1, 6), size=st.sampled_from([(5,), (4, 3), (3, 1, 2, 2)]),
       rules=st.lists(st.sampled_from(DENSE_RULES), min_size=1, max_size=4), zeros=st.booleans(),
       active=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]), data=st.data())
def test_the_c_kernel_gathers_as_the_torch_code_does(members, size, rules, zeros, active, dtype, data) -> None:
    """``gather=True`` on a CPU takes the C kernel (one call per layer for all members, in place);
    its weights and counts equal the torch gathering code's bit for bit, with a rule, seed and
    layer per member, members left out by ``active``, and templates with zeros."""
    if not native.available(dtype):
        pytest.skip("no C compiler here")
    seed = data.draw(st.integers(0, 2**40))
    torch.manual_seed(seed)
    w = torch.randn(members, *size, dtype=dtype)
    w[torch.rand(w.shape) < 0.1] = 0.0
    code = torch.randint(-1 if zeros else 0, 2, w.shape, dtype=torch.int8)
    code = code if zeros else code * 2 - 1
    one = (members,) + (1,) * len(size)
    keys = dict(seed=torch.randint(0, 2**40, one), step=data.draw(st.integers(1, 10**6)),
                layer=torch.randint(0, 9, one), members=1, rule_of=torch.randint(0, len(rules), one),
                active=(torch.rand(one) < 0.6) if active else None)
    by_torch, by_c = w.clone(), w.clone()
    calls = []
    real = native.enforce_rows_
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(enforcement, "_native_rows", lambda *a: None)
        a = dense_enforce_(by_torch, code, rules, 1e-2, gather=True, **keys)
        patch.undo()
        patch.setattr(native, "enforce_rows_", lambda *a: calls.append(1) or real(*a))
        b = dense_enforce_(by_c, code, rules, 1e-2, gather=True, **keys)
    assert calls == [1]
    assert torch.equal(a, b) and torch.equal(by_torch, by_c)


def test_the_c_kernel_is_not_used_where_keys_vary_within_a_member() -> None:
    """Per-entry keys (or an elementwise ``active``) leave ``gather`` to the torch code, which handles them."""
    w = torch.tensor([[0.5, -0.5], [-0.5, 0.5]])
    code = template_code(torch.ones(2, 2))
    assert enforcement._native_rows(w, code, ["posCon"], 0.1, torch.tensor([[1, 2], [3, 4]]), 1, 0, 1, None,
                                    None) is None
    assert enforcement._native_rows(w, code, ["posCon"], 0.1, 0, 1, 0, 1, torch.tensor([[True, False]] * 2),
                                    None) is None
    n = dense_enforce_(w, code, "posCon", 0.1, seed=0, members=1, active=torch.tensor([[True, False]] * 2),
                       gather=True)
    assert n.tolist() == [0, 1] and w.tolist() == [[0.5, -0.5], [pytest.approx(0.1), 0.5]]
