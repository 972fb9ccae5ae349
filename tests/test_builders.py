"""Tests for polarnet.builders: random_signs, signs_of, signs_from_proportions, rules, xor_sufficient."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import polarnet as pn
from polarnet.builders import (
    RULES,
    check_seed,
    checked_weight,
    list_rules,
    random_signs,
    register_rule,
    signs_from_proportions,
    signs_of,
    xor_sufficient,
)
from polarnet.proportions import counts_from_proportions


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5), nn.ReLU(), nn.Linear(5, 2))


def _count(t, v):
    return int((t == v).sum())


# --------------------------------------------------------------------------- random_signs


def test_random_signs_shapes_dtype_values():
    net = _net()
    s = random_signs(net, seed=3)
    assert list(s) == ["0.weight", "3.weight", "5.weight"]
    for name, t in s.items():
        assert t.dtype == torch.int8
        assert t.shape == dict(net.named_parameters())[name].shape
        assert set(t.unique().tolist()) <= {-1, 1}


def test_random_signs_reproducible_and_seed_dependent():
    net = _net()
    a = random_signs(net, seed=7)
    b = random_signs(net, seed=7)
    c = random_signs(net, seed=8)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_random_signs_independent_of_global_rng():
    net = nn.Linear(20, 20)
    torch.manual_seed(1)
    a = random_signs(net, seed=5)
    torch.manual_seed(2)
    torch.rand(10)
    b = random_signs(net, seed=5)
    assert torch.equal(a["weight"], b["weight"])


def test_random_signs_extreme_probabilities():
    net = nn.Linear(10, 10)
    assert bool((random_signs(net, p_positive=1.0)["weight"] == 1).all())
    assert bool((random_signs(net, p_positive=0.0)["weight"] == -1).all())


def test_random_signs_rate_close_to_p():
    s = random_signs({"w.weight": torch.zeros(100, 100)}, p_positive=0.8, seed=0)["w.weight"]
    frac = _count(s, 1) / s.numel()
    assert abs(frac - 0.8) < 0.02  # 10,000 draws: std ~ 0.004
    assert _count(s, 0) == 0


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_random_signs_bad_probability(p):
    with pytest.raises(ValueError, match="p_positive"):
        random_signs(nn.Linear(2, 2), p_positive=p)


def test_random_signs_layers_and_bias():
    net = _net()
    assert list(random_signs(net, layers="conv")) == ["0.weight"]
    assert list(random_signs(net, layers="linear", bias=True)) == ["3.weight", "3.bias", "5.weight", "5.bias"]
    s = random_signs(net.state_dict(), layers=["5.bias"])
    assert list(s) == ["5.bias"] and s["5.bias"].shape == (2,)


@settings(max_examples=50, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_random_signs_property(shape, p, seed):
    sd = {"x.weight": torch.zeros(shape)}
    a = random_signs(sd, p_positive=p, layers=["x.weight"], seed=seed)["x.weight"]
    b = random_signs(sd, p_positive=p, layers=["x.weight"], seed=seed)["x.weight"]
    assert a.shape == tuple(shape)
    assert a.dtype == torch.int8
    assert bool(((a == 1) | (a == -1)).all())
    assert torch.equal(a, b)
    # same draw as the documented rule: +1 iff U[0,1) < p, with a generator seeded by `seed`
    g = torch.Generator().manual_seed(seed)
    ref = torch.where(torch.rand(tuple(shape), generator=g) < p, 1, -1).to(torch.int8)
    assert torch.equal(a, ref)


# --------------------------------------------------------------------------- signs_of


def test_signs_of_hand_values_with_zero():
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.3, -2.0, 0.0], [-0.0, 1e-30, -1e-30]]))
    s = signs_of(lin)
    assert list(s) == ["weight"]
    assert s["weight"].dtype == torch.int8
    assert s["weight"].tolist() == [[1, -1, 0], [0, 1, -1]]


def test_signs_of_state_dict_and_model_agree():
    net = _net()
    a = signs_of(net, bias=True)
    b = signs_of(net.state_dict(), bias=True)
    assert list(a) == list(b) == ["0.weight", "0.bias", "3.weight", "3.bias", "5.weight", "5.bias"]
    for k in a:
        assert torch.equal(a[k], b[k])
        assert torch.equal(a[k], torch.sign(dict(net.named_parameters())[k].detach()).to(torch.int8))


def test_signs_of_result_does_not_alias_weights():
    lin = nn.Linear(2, 2)
    s = signs_of(lin)["weight"]
    with torch.no_grad():
        lin.weight.mul_(-1)
    assert torch.equal(s, -signs_of(lin)["weight"])


# --------------------------------------------------------------------------- signs_from_proportions


def test_signs_from_proportions_hand_counts():
    s = signs_from_proportions(nn.Linear(10, 10), {"weight": (0.1, 0.3, 0.6)})
    w = s["weight"]
    assert w.shape == (10, 10) and w.dtype == torch.int8
    assert (_count(w, 0), _count(w, -1), _count(w, 1)) == (10, 30, 60)


def test_signs_from_proportions_single_triple_uses_layers():
    net = _net()
    s = signs_from_proportions(net, (0.5, 0.25, 0.25), layers="linear", seed=1)
    assert list(s) == ["3.weight", "5.weight"]
    w = s["3.weight"]  # 5 x 48 = 240
    assert (_count(w, 0), _count(w, -1), _count(w, 1)) == (120, 60, 60)
    w = s["5.weight"]  # 2 x 5 = 10: 5, 2.5, 2.5 -> tie goes to the earlier (negatives)
    assert (_count(w, 0), _count(w, -1), _count(w, 1)) == (5, 3, 2)


def test_signs_from_proportions_default_all_layers():
    net = _net()
    assert list(signs_from_proportions(net, (0, 0.5, 0.5))) == ["0.weight", "3.weight", "5.weight"]


def test_signs_from_proportions_reproducible_and_seeded():
    net = nn.Linear(20, 20)
    a = signs_from_proportions(net, (0.2, 0.3, 0.5), seed=4)["weight"]
    b = signs_from_proportions(net, (0.2, 0.3, 0.5), seed=4)["weight"]
    c = signs_from_proportions(net, (0.2, 0.3, 0.5), seed=5)["weight"]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_signs_from_proportions_unknown_layer_named():
    with pytest.raises(ValueError) as exc:
        signs_from_proportions(nn.Linear(2, 2), {"weight": (0, 0.5, 0.5), "ghost.weight": (0, 0.5, 0.5)})
    assert "ghost.weight" in str(exc.value)


def test_signs_from_proportions_invalid_values_named():
    with pytest.raises(ValueError) as exc:
        signs_from_proportions(nn.Linear(2, 2), {"weight": (0.5, 0.5, 0.5)})
    assert "weight" in str(exc.value) and "sum to 1" in str(exc.value)
    with pytest.raises(ValueError, match="non-negative"):
        signs_from_proportions(nn.Linear(2, 2), (-0.5, 0.5, 1.0))


_weights = st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)).filter(lambda t: sum(t) > 0)


@settings(max_examples=50, deadline=None)
@given(
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    w=_weights,
    seed=st.integers(0, 1000),
)
def test_signs_from_proportions_places_exact_counts(shape, w, seed):
    s = sum(w)
    p = (w[0] / s, w[1] / s, w[2] / s)
    sd = {"l.weight": torch.zeros(shape)}
    out = signs_from_proportions(sd, {"l.weight": p}, seed=seed)["l.weight"]
    n = out.numel()
    assert out.shape == tuple(shape)
    assert set(out.unique().tolist()) <= {-1, 0, 1}
    assert (_count(out, 0), _count(out, -1), _count(out, 1)) == counts_from_proportions(p, n)


def test_signs_from_proportions_counts_within_tolerance_on_a_big_layer():
    # p sums to 1 + 9e-7 (accepted); on 2e6 weights the exact shares are 0, 1e6, 1000001.8
    sd = {"w": torch.zeros(2000, 1000)}
    out = signs_from_proportions(sd, {"w": (0.0, 0.5, 0.5 + 9e-7)})["w"]
    n_pos, n_neg = _count(out, 1), _count(out, -1)
    assert _count(out, 0) == 0  # p0 = 0; currently 1 zero is placed
    assert n_neg + n_pos == out.numel()
    assert n_pos in (1000001, 1000002)  # floor/ceil of the positive share


# --------------------------------------------------------------------------- rules registry


def test_xor_rule_registered():
    assert "xor_sufficient" in list_rules()
    assert RULES.get("xor_sufficient") is xor_sufficient
    assert list_rules() == sorted(list_rules())


def test_register_rule_and_duplicate():
    name = "_test_all_positive_rule"

    @register_rule(name)
    def all_pos(model, **kw):
        return {n: torch.ones_like(p, dtype=torch.int8) for n, p in model.named_parameters() if n.endswith("weight")}

    try:
        assert name in list_rules()
        assert RULES.get(name) is all_pos
        with pytest.raises(ValueError, match=name):
            register_rule(name)(all_pos)
    finally:
        RULES.unregister(name)
    assert name not in list_rules()


def test_unknown_rule_lists_known():
    with pytest.raises(ValueError) as exc:
        RULES.get("no_such_rule")
    assert "no_such_rule" in str(exc.value) and "xor_sufficient" in str(exc.value)


# --------------------------------------------------------------------------- xor_sufficient


def _xor_net(h, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, h), nn.ReLU(), nn.Linear(h, 1))


def _sgn(x: float) -> int:
    return (x > 0) - (x < 0)


@pytest.mark.parametrize("h", [1, 4, 16])
def test_xor_sufficient_by_hand(h):
    net = _xor_net(h, seed=h)
    s = xor_sufficient(net)
    assert list(s) == ["0.weight", "2.weight"]
    w = net[0].weight.detach().tolist()
    assert s["0.weight"].tolist() == [[_sgn(v) for v in row] for row in w]
    assert s["2.weight"].shape == (1, h)
    assert s["2.weight"].tolist() == [[_sgn(row[0]) * _sgn(row[1]) for row in w]]
    assert s["0.weight"].dtype == s["2.weight"].dtype == torch.int8


def test_xor_sufficient_fixed_weights_with_zero():
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.copy_(
            torch.tensor(
                [
                    [0.5, 0.2, -1.0, 0.0, 3.0],  # + * + = +
                    [-0.5, 0.2, 1.0, 1.0, 1.0],  # - * + = -
                    [-0.5, -0.2, 1.0, 1.0, 1.0],  # - * - = +
                    [0.0, -0.2, 1.0, 1.0, 1.0],  # 0 * - = 0
                ]
            )
        )
    s = xor_sufficient(net)
    assert s["0.weight"].tolist() == [[1, 1, -1, 0, 1], [-1, 1, 1, 1, 1], [-1, -1, 1, 1, 1], [0, -1, 1, 1, 1]]
    # every output row gets the same pattern
    assert s["2.weight"].tolist() == [[1, -1, 1, 0], [1, -1, 1, 0]]
    # other relevant dims: (2, 4) -> -1*1, 1*1, 1*1, 1*1
    s24 = xor_sufficient(net, relevant=(2, 4))
    assert s24["2.weight"].tolist() == [[-1, 1, 1, 1], [-1, 1, 1, 1]]


def test_xor_sufficient_output_rows_are_independent_tensors():
    net = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2))
    out = xor_sufficient(net)["2.weight"]
    out[0, 0] = 7  # writing one row must not change the other (no expand() view)
    assert out[1, 0] != 7


def test_xor_sufficient_explicit_layers():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = nn.Linear(5, 3)  # not part of the rule
            self.hidden = nn.Linear(5, 6)
            self.out = nn.Linear(6, 1)

    torch.manual_seed(3)
    net = Net()
    s = xor_sufficient(net, layers=["hidden.weight", "out.weight"])
    assert list(s) == ["hidden.weight", "out.weight"]
    w = net.hidden.weight.detach().tolist()
    assert s["out.weight"].tolist() == [[_sgn(r[0]) * _sgn(r[1]) for r in w]]
    # without layers=, the first two Linears are taken: pre (3x5) and hidden (6x5) do not chain
    with pytest.raises(ValueError) as exc:
        xor_sufficient(net)
    assert "hidden.weight" in str(exc.value) and "(6, 5)" in str(exc.value)


def test_xor_sufficient_one_linear_raises():
    with pytest.raises(ValueError, match="hidden and an output"):
        xor_sufficient(nn.Sequential(nn.Linear(5, 1)))
    with pytest.raises(ValueError, match="hidden and an output"):
        xor_sufficient(nn.Linear(5, 1))


def test_xor_sufficient_bad_explicit_layers():
    net = _xor_net(4)
    with pytest.raises(ValueError) as exc:
        xor_sufficient(net, layers=["0.weight", "missing.weight"])
    assert "missing.weight" in str(exc.value)
    with pytest.raises(ValueError):
        xor_sufficient(net, layers=["0.weight"])


def test_xor_sufficient_relevant_out_of_range():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with pytest.raises(ValueError) as exc:
        xor_sufficient(net, relevant=(0, 2))
    msg = str(exc.value)
    assert "0.weight" in msg and "(3, 2)" in msg


def test_xor_sufficient_via_registry():
    net = _xor_net(4)
    a = RULES.get("xor_sufficient")(net, relevant=(1, 3))
    b = xor_sufficient(net, relevant=(1, 3))
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- weights that can't carry signs


@settings(max_examples=30, deadline=None)
@given(n_nan=st.integers(1, 12), seed=st.integers(0, 100))
def test_signs_of_refuses_nan_naming_layer_and_count(n_nan, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 4, generator=g)
    w.view(-1)[torch.randperm(12, generator=g)[:n_nan]] = float("nan")
    with pytest.raises(ValueError) as exc:
        signs_of({"fc.weight": w, "fc.bias": torch.zeros(3)})
    assert "'fc.weight'" in str(exc.value) and f"{n_nan} of 12 weights are NaN" in str(exc.value)


def test_signs_of_nan_in_an_unselected_layer_is_fine_and_inf_has_a_sign():
    sd = {"a.weight": torch.tensor([[float("inf"), -float("inf"), 0.0]]), "b.weight": torch.full((2, 2), float("nan"))}
    assert signs_of(sd, ["a.weight"])["a.weight"].tolist() == [[1, -1, 0]]


def test_xor_sufficient_refuses_nan_hidden_weights():
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        net[0].weight[1, 0] = float("nan")
    with pytest.raises(ValueError, match="'0.weight': 1 of 20 weights are NaN"):
        xor_sufficient(net)


@pytest.mark.parametrize("build", [signs_of, random_signs, lambda sd, layers: signs_from_proportions(sd, (0, 0.5, 0.5), 0, layers)])
def test_complex_and_sparse_weights_are_refused_by_name(build):
    for bad, says in [(torch.ones(2, 2, dtype=torch.cfloat), "complex"), (torch.eye(2).to_sparse(), "sparse")]:
        sd = {"ok.weight": torch.ones(2, 2), "odd.weight": bad}
        with pytest.raises(ValueError) as exc:
            build(sd, layers="all")
        assert "'odd.weight'" in str(exc.value) and says in str(exc.value)
        assert list(build(sd, layers=["ok.weight"])) == ["ok.weight"]  # leaving it out works


# --------------------------------------------------------------------------- tied weights


def _tied():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    net[2].weight = net[0].weight
    return net


@pytest.mark.parametrize("source", ["model", "state_dict"])
def test_builders_give_a_tied_weight_one_sign_pattern(source):
    net = _tied()
    src = net if source == "model" else net.state_dict()
    both = ["0.weight", "2.weight"]
    for signs in (random_signs(src, layers=both, seed=3), signs_of(src, both),
                  signs_from_proportions(src, {"0.weight": (0.2, 0.4, 0.4), "2.weight": (0.2, 0.4, 0.4)}, seed=3)):
        assert torch.equal(signs["0.weight"], signs["2.weight"])
    assert list(random_signs(src)) == list(signs_of(src)) == ["0.weight"]


def test_tied_weight_with_two_different_proportions_is_refused():
    with pytest.raises(ValueError, match="'0.weight' and '2.weight' are one tied weight"):
        signs_from_proportions(_tied(), {"0.weight": (0.2, 0.4, 0.4), "2.weight": (0.0, 0.5, 0.5)})


# --------------------------------------------------------------------------- seeds and meta weights (issue 8, finding 22)
@pytest.mark.parametrize("seed", [2**63, 2**70, -1, 1.5, 2.0, True, "3", None])
@pytest.mark.parametrize("build", ["random", "from_proportions"])
def test_bad_seeds_are_refused_naming_seed(build, seed):
    make = {"random": lambda s: pn.PolarityTemplate.random(nn.Linear(3, 2), seed=s),
            "from_proportions": lambda s: pn.PolarityTemplate.from_proportions(nn.Linear(3, 2), (0.2, 0.4, 0.4), seed=s)}
    with pytest.raises(ValueError, match=r"^seed must be a whole number in \[0, 2\*\*63 - 1\], got "):
        make[build](seed)


def test_seeds_at_the_limits_and_numpy_integers_work():
    import numpy as np

    assert check_seed(0) == 0 and check_seed(2**63 - 1) == 2**63 - 1
    assert type(check_seed(np.int64(5))) is int
    a = random_signs(nn.Linear(4, 4), seed=np.int64(5))["weight"]
    assert torch.equal(a, random_signs(nn.Linear(4, 4), seed=5)["weight"])
    random_signs(nn.Linear(4, 4), seed=2**63 - 1)
    signs_from_proportions(nn.Linear(4, 4), (0.25, 0.25, 0.5), seed=2**63 - 1)


def test_from_model_on_meta_weights_names_the_layer_and_the_fix():
    with torch.device("meta"):
        net = _net()
    with pytest.raises(ValueError, match=r"'0.weight': weights on the meta device have no values.*load or initialise"):
        pn.PolarityTemplate.from_model(net)
    with pytest.raises(ValueError, match="meta device"):
        xor_sufficient(nn.Sequential(nn.Linear(5, 4, device="meta"), nn.ReLU(), nn.Linear(4, 1, device="meta")))


def test_shape_only_builders_work_on_meta_weights():
    with torch.device("meta"):
        net = _net()
    assert random_signs(net, seed=1)["0.weight"].shape == (3, 1, 3, 3)
    assert signs_from_proportions(net, (0.2, 0.4, 0.4), seed=1)["5.weight"].shape == (2, 5)


def test_checked_weight_keeps_infinities_and_returns_a_detached_cpu_tensor():
    w = torch.tensor([1.0, -float("inf"), float("inf")], requires_grad=True)
    out = checked_weight("w", w)
    assert out.tolist() == [1.0, -float("inf"), float("inf")] and not out.requires_grad and out.device.type == "cpu"
