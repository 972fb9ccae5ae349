"""Tests for polarnet.init: controlled magnitude initialisation and sign alignment."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from helpers import assert_unchanged, snapshot

import polarnet
from polarnet import INITIALIZERS, PolarityTemplate, align, init_magnitudes, register_initializer
from helpers import tied_mlp

# std of a standard normal truncated at ±2σ
TRUNC_STD = 0.8796256610342398




def _mixed_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3),
        nn.Flatten(), nn.Linear(4 * 2 * 2, 16), nn.ReLU(), nn.Linear(16, 3),
    )


# --------------------------------------------------------------------------- init_magnitudes
def test_truncation_constant_matches_truncated_normal_std():
    # Var of N(0,1) truncated at ±2: 1 - 2·2·φ(2)/(Φ(2) − Φ(−2))
    phi = math.exp(-2.0) / math.sqrt(2 * math.pi)
    z = math.erf(2 / math.sqrt(2))
    assert math.sqrt(1 - 4 * phi / z) == pytest.approx(TRUNC_STD, rel=1e-12)


def test_init_magnitudes_reproducible_for_a_seed():
    torch.manual_seed(1)
    a = _mixed_net()
    torch.manual_seed(2)
    b = _mixed_net()
    assert not torch.equal(a[0].weight, b[0].weight)
    assert init_magnitudes(a, seed=7) is a
    init_magnitudes(b, seed=7)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        if na.endswith("weight") and pa.dim() >= 2:
            assert torch.equal(pa, pb), na
    # calling again with the same seed gives the same numbers again
    first = snapshot(a)
    init_magnitudes(a, seed=7)
    assert_unchanged(a, first)


def test_init_magnitudes_different_seeds_differ():
    a, b = _mixed_net(), _mixed_net()
    init_magnitudes(a, seed=0)
    init_magnitudes(b, seed=1)
    for name in ("0.weight", "3.weight", "5.weight", "7.weight"):
        pa, pb = a.get_parameter(name), b.get_parameter(name)
        assert not torch.equal(pa, pb), name
        # not merely a sign flip or permutation of few entries
        assert (pa != pb).float().mean() > 0.99


def test_init_magnitudes_many_seeds_all_differ():
    draws = []
    for seed in range(5):
        lin = nn.Linear(6, 5)
        init_magnitudes(lin, seed=seed)
        draws.append(lin.weight.detach().clone())
    for i in range(5):
        for j in range(i):
            assert not torch.equal(draws[i], draws[j]), (i, j)


def test_same_shaped_layers_get_different_draws():
    # one generator for the whole model, drawn in parameter order: layers are not copies
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 3))
    init_magnitudes(net, seed=0)
    assert not torch.equal(net[0].weight, net[2].weight)
    assert not torch.equal(net[3].weight, net[4].weight)


def test_init_magnitudes_ignores_global_rng():
    a, b = nn.Linear(6, 5), nn.Linear(6, 5)
    torch.manual_seed(1)
    init_magnitudes(a, seed=3)
    torch.manual_seed(2)
    init_magnitudes(b, seed=3)
    assert torch.equal(a.weight, b.weight)


def test_conv_weights_glorot_normal_truncated():
    conv = nn.Conv2d(64, 128, 5)
    init_magnitudes(conv, seed=3)
    w = conv.weight.detach().double()
    fan_in, fan_out = 64 * 25, 128 * 25
    sigma = math.sqrt(2.0 / (fan_in + fan_out))
    bound = 2 * sigma / TRUNC_STD
    assert w.abs().max().item() <= bound * (1 + 1e-6)
    # truncated at 2σ of the pre-scale std, not earlier: 204800 draws reach close to the edge
    assert w.abs().max().item() > 0.97 * bound
    assert w.std().item() == pytest.approx(sigma, rel=0.02)
    assert abs(w.mean().item()) < 0.01 * sigma
    # shape of a truncated normal (not uniform): fraction within ±pre-scale σ is
    # (Φ(1) − Φ(−1)) / (Φ(2) − Φ(−2)) ≈ 0.7165 (uniform on ±bound would give 0.5)
    inside = (w.abs() <= sigma / TRUNC_STD).double().mean().item()
    assert inside == pytest.approx(math.erf(1 / math.sqrt(2)) / math.erf(2 / math.sqrt(2)), abs=0.01)


def test_linear_weights_glorot_uniform():
    lin = nn.Linear(500, 300)
    init_magnitudes(lin, seed=4)
    w = lin.weight.detach().double()
    a = math.sqrt(6.0 / (500 + 300))
    assert w.max().item() <= a
    assert w.min().item() >= -a
    assert w.max().item() > 0.99 * a and w.min().item() < -0.99 * a
    assert w.std().item() == pytest.approx(a / math.sqrt(3), rel=0.02)
    assert abs(w.mean().item()) < 0.01 * a
    # uniform: a quarter of the draws in each quarter of [-a, a]
    q = ((w > a / 2).double().mean().item(), ((w > 0) & (w <= a / 2)).double().mean().item())
    assert q[0] == pytest.approx(0.25, abs=0.01) and q[1] == pytest.approx(0.25, abs=0.01)


def test_mixed_model_uses_normal_for_conv_uniform_for_linear():
    net = nn.Sequential(nn.Conv2d(32, 64, 3), nn.Flatten(), nn.Linear(600, 400))
    init_magnitudes(net, seed=0)
    cw, lw = net[0].weight.detach(), net[2].weight.detach()
    # max/std ≈ 2/0.8796 ≈ 2.27 for the truncated normal, sqrt(3) ≈ 1.73 for the uniform
    assert cw.abs().max() / cw.std() > 2.1
    assert lw.abs().max() / lw.std() < 1.8
    a = math.sqrt(6.0 / 1000)
    assert lw.abs().max().item() <= a


def test_initializer_names_can_be_swapped():
    net = nn.Sequential(nn.Conv2d(32, 64, 3), nn.Flatten(), nn.Linear(600, 400))
    init_magnitudes(net, seed=0, conv="glorot_uniform", linear="glorot_normal")
    cw, lw = net[0].weight.detach(), net[2].weight.detach()
    assert cw.abs().max().item() <= math.sqrt(6.0 / (32 * 9 + 64 * 9))
    assert cw.abs().max() / cw.std() < 1.8
    assert lw.abs().max() / lw.std() > 2.1


def test_layers_selects_which_weights_are_redrawn():
    net = _mixed_net()
    before = snapshot(net)
    init_magnitudes(net, seed=0, layers="conv")
    after = net.state_dict()
    assert not torch.equal(after["0.weight"], before["0.weight"])
    assert not torch.equal(after["3.weight"], before["3.weight"])
    assert torch.equal(after["5.weight"], before["5.weight"])
    assert torch.equal(after["7.weight"], before["7.weight"])


def test_bias_none_leaves_biases_untouched():
    net = _mixed_net()
    before = snapshot(net)
    init_magnitudes(net, seed=0)
    after = net.state_dict()
    for k in before:
        if k.endswith("bias") or k.startswith("1."):  # all biases, and every BatchNorm tensor
            assert torch.equal(after[k], before[k]), k
    assert not torch.equal(after["0.weight"], before["0.weight"])


def test_bias_zeros_zeroes_biases_and_keeps_weight_draws():
    net = _mixed_net()
    ref = _mixed_net()
    bn_before = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("1.")}
    init_magnitudes(net, seed=5, bias="zeros")
    init_magnitudes(ref, seed=5)
    for name in ("0.bias", "3.bias", "5.bias", "7.bias"):
        b = net.get_parameter(name)
        assert torch.equal(b, torch.zeros_like(b)), name
    # zeroing biases draws no random numbers: the weights are those of bias=None
    for name in ("0.weight", "3.weight", "5.weight", "7.weight"):
        assert torch.equal(net.get_parameter(name), ref.get_parameter(name)), name
    # BatchNorm is neither conv nor linear: untouched
    for k, v in bn_before.items():
        assert torch.equal(net.state_dict()[k], v), k


@pytest.mark.parametrize("kw", [{"conv": "nope"}, {"linear": "nope"}, {"bias": "nope"}])
def test_unknown_initializer_raises_listing_names(kw):
    net = _mixed_net()
    before = snapshot(net)
    with pytest.raises(ValueError) as err:
        init_magnitudes(net, seed=0, **kw)
    msg = str(err.value)
    assert "nope" in msg
    for name in ("glorot_normal", "glorot_uniform", "zeros"):
        assert name in msg
    assert_unchanged(net, before)


def test_register_initializer_custom_and_duplicate():
    name = "_test_init_threes"

    @register_initializer(name)
    def threes(t, g):
        return t.fill_(3.0)

    try:
        assert name in INITIALIZERS.names()
        lin = nn.Linear(4, 2)
        init_magnitudes(lin, linear=name)
        assert torch.equal(lin.weight, torch.full((2, 4), 3.0))
        with pytest.raises(ValueError, match="already registered"):
            register_initializer(name)(lambda t, g: t)
        # the original is kept after the failed registration
        assert INITIALIZERS.get(name) is threes
    finally:
        INITIALIZERS.unregister(name)
    assert name not in INITIALIZERS.names()
    with pytest.raises(ValueError, match="already registered"):
        register_initializer("glorot_normal")(lambda t, g: t)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_init_magnitudes_same_numbers_on_cuda():
    cpu, gpu = _mixed_net(), _mixed_net().cuda()
    init_magnitudes(cpu, seed=11)
    init_magnitudes(gpu, seed=11)
    for name in ("0.weight", "3.weight", "5.weight", "7.weight"):
        assert torch.equal(cpu.get_parameter(name), gpu.get_parameter(name).cpu()), name


# --------------------------------------------------------------------------- align
def _hand_template() -> tuple[nn.Sequential, PolarityTemplate]:
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.5, -0.25, 0.75], [-1.5, 2.0, -0.125]]))
        net[2].weight.copy_(torch.tensor([[0.3, -0.4], [0.0, -0.0]]))
    t = PolarityTemplate({
        "0.weight": torch.tensor([[1, 1, -1], [0, -1, 1]]),
        "2.weight": torch.tensor([[0, -1], [1, -1]]),
    })
    return net, t


def test_align_by_hand():
    net, t = _hand_template()
    bias = net[0].bias.detach().clone()
    assert align(net, t) is net
    assert torch.equal(net[0].weight, torch.tensor([[0.5, 0.25, -0.75], [0.0, -2.0, 0.125]]))
    assert torch.equal(net[2].weight, torch.tensor([[0.0, -0.4], [0.0, 0.0]]))
    assert torch.equal(net[0].bias, bias)


def test_align_keeps_magnitudes_and_takes_template_signs():
    torch.manual_seed(0)
    net = _mixed_net()
    init_magnitudes(net, seed=0)
    t = PolarityTemplate.from_proportions(net, (0.2, 0.5, 0.3), seed=3)
    before = {n: net.get_parameter(n).detach().clone() for n in t}
    others = {k: v.clone() for k, v in net.state_dict().items() if k not in t}
    align(net, t)
    for name, signs in t.items():
        w, w0 = net.get_parameter(name).detach(), before[name]
        nz = signs != 0
        assert torch.equal(w.abs()[nz], w0.abs()[nz]), name
        assert torch.equal(torch.sign(w)[nz], signs[nz].float()), name
        assert torch.equal(w[~nz], torch.zeros_like(w[~nz])), name
        assert (~nz).any()
    for k, v in others.items():
        assert torch.equal(net.state_dict()[k], v), k
    assert polarnet.violations(net, t) == 0


def test_align_channels_last():
    conv = nn.Conv2d(3, 5, 3).to(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    t = PolarityTemplate.random(conv, seed=2)
    mag = conv.weight.detach().abs().clone()
    align(conv, t)
    assert torch.equal(conv.weight.abs(), mag)
    assert torch.equal(torch.sign(conv.weight), t["weight"].float())


@pytest.mark.parametrize("bad", ["missing", "shape"])
def test_align_mismatch_raises_before_any_change(bad):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    before = snapshot(net)
    # the good layer comes first and would flip many signs if applied
    good = -torch.sign(net[0].weight.detach()).to(torch.int8)
    if bad == "missing":
        t = PolarityTemplate({"0.weight": good, "9.weight": torch.ones(2, 4)})
    else:
        t = PolarityTemplate({"0.weight": good, "2.weight": torch.ones(4, 2)})
    with pytest.raises(ValueError) as err:
        align(net, t)
    assert ("9.weight" if bad == "missing" else "2.weight") in str(err.value)
    assert_unchanged(net, before)


def test_xor_truncated_normal():
    lin = nn.Linear(400, 500)
    init_magnitudes(lin, seed=0, linear="xor_truncated_normal")
    w = lin.weight.detach().double()
    assert w.abs().max().item() <= 0.5
    assert w.abs().max().item() > 0.49
    # TruncatedNormal(0, 0.25) cut at ±2σ keeps no rescaling: std = 0.25·0.8796
    assert w.std().item() == pytest.approx(0.25 * TRUNC_STD, rel=0.02)


# --------------------------------------------------------------------------- tied weights


def test_init_magnitudes_accepts_either_name_of_a_tied_weight():
    for name in ("0.weight", "2.weight"):
        net = tied_mlp()
        init_magnitudes(net, seed=1, layers=[name])
        assert net[2].weight is net[0].weight
    a, b = tied_mlp(), tied_mlp()
    init_magnitudes(a, seed=1, layers=["0.weight"])
    init_magnitudes(b, seed=1, layers=["2.weight"])
    assert torch.equal(a[0].weight, b[0].weight)


def test_align_a_tied_weight_under_both_names():
    net = tied_mlp()
    signs = PolarityTemplate.random(net, seed=2)["0.weight"]
    magnitudes = net[0].weight.detach().abs().clone()
    align(net, PolarityTemplate({"0.weight": signs, "2.weight": signs}))
    assert torch.equal(net[2].weight.detach(), magnitudes * signs)


# --------------------------------------------------------------------------- fans from the layer-kind registry
def _recorder(name: str, seen: dict):
    """Register an initializer that records the fans it is given, by the weight's shape."""

    @register_initializer(name)
    def record(t, g, fans=None):
        seen[tuple(t.shape)] = fans
        return t.fill_(0.5)

    return record


def test_initializers_are_given_the_registered_kinds_fans():
    from polarnet.layers import layer_fans

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 6, (3, 2), groups=2), nn.Flatten(),
                        nn.Linear(6, 5), nn.Bilinear(5, 4, 2), nn.MultiheadAttention(8, 2), nn.Embedding(10, 3))
    seen: dict = {}
    _recorder("_test_record_fans", seen)
    try:
        init_magnitudes(net, conv="_test_record_fans", linear="_test_record_fans", embedding="_test_record_fans")
    finally:
        INITIALIZERS.unregister("_test_record_fans")
    by_hand = {
        (4, 3, 3, 3): (3 * 9, 4 * 9),          # Conv2d: (in/groups·k, out·k), torch's
        (4, 3, 3, 2): (4 * 6, 3 * 6),          # ConvTranspose2d (in, out/groups, k): (in·k, out/groups·k)
        (5, 6): (6, 5),                        # Linear
        (2, 5, 4): (5 * 4, 2 * 4),             # Bilinear: torch's
        (24, 8): (8, 8),                       # MHA in_proj_weight: one (E, E) projection
        (8, 8): (8, 8),                        # MHA out_proj
        (10, 3): (3, 10),                      # Embedding (num, dim): torch's (dim, num)
    }
    assert seen == by_hand
    assert sorted(layer_fans(net).values()) == sorted(by_hand.values())
    # where the layout is torch's, the fans are torch's own
    for shape in [(4, 3, 3, 3), (5, 6), (2, 5, 4), (10, 3)]:
        assert nn.init._calculate_fan_in_and_fan_out(torch.empty(shape)) == by_hand[shape]
    # every selected weight was drawn, biases untouched
    assert all(bool((net.get_parameter(n) == 0.5).all()) for n in polarnet.select_layers(net))


def test_hugging_face_conv1d_fans_are_in_out():
    pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    layer = Conv1D(300, 100)  # weight (100, 300): 100 inputs, 300 outputs
    seen: dict = {}
    _recorder("_test_record_fans", seen)
    try:
        init_magnitudes(layer, linear="_test_record_fans")
    finally:
        INITIALIZERS.unregister("_test_record_fans")
    assert seen == {(100, 300): (100, 300)}
    assert nn.init._calculate_fan_in_and_fan_out(layer.weight) == (300, 100)  # torch reads it transposed


def test_attention_in_projection_is_drawn_per_projection():
    e = 64
    mha = nn.MultiheadAttention(e, 4)
    init_magnitudes(mha, seed=0)
    w = mha.in_proj_weight.detach()
    per_projection, packed = math.sqrt(6.0 / (e + e)), math.sqrt(6.0 / (e + 3 * e))
    assert w.abs().max().item() <= per_projection and w.abs().max().item() > packed * 1.2
    assert w.std().item() == pytest.approx(per_projection / math.sqrt(3), rel=0.03)


def test_conv_transpose_glorot_by_hand():
    layer = nn.ConvTranspose2d(64, 32, 5, groups=2)  # weight (64, 16, 5, 5)
    init_magnitudes(layer, seed=0, conv="glorot_uniform")
    a = math.sqrt(6.0 / (64 * 25 + 16 * 25))
    w = layer.weight.detach()
    assert w.abs().max().item() <= a and w.abs().max().item() > 0.99 * a


def test_embeddings_take_their_own_initializer_and_kinds_overrides():
    net = nn.Sequential(nn.Embedding(50, 20), nn.Linear(20, 10), nn.ConvTranspose1d(2, 2, 3), nn.Conv1d(2, 2, 3))
    init_magnitudes(net, seed=0, embedding="zeros", kinds={"conv_transpose": "zeros"})
    assert bool((net[0].weight == 0).all()) and bool((net[2].weight == 0).all())
    assert bool((net[1].weight != 0).all()) and bool((net[3].weight != 0).all())
    init_magnitudes(net, seed=0)  # by default an embedding is drawn Glorot uniform on its fans
    assert net[0].weight.abs().max().item() <= math.sqrt(6.0 / 70)
    init_magnitudes(net, seed=0, kinds={"linear": "zeros"})  # a kind: every linear layer
    assert bool((net[1].weight == 0).all())


def test_kinds_naming_no_kind_is_refused_before_any_change():
    net = _mixed_net()
    before = snapshot(net)
    with pytest.raises(ValueError, match=r"'convolution'.*conv, conv_transpose"):
        init_magnitudes(net, kinds={"convolution": "zeros"})
    with pytest.raises(ValueError, match="nope"):
        init_magnitudes(net, kinds={"conv": "nope"})
    assert_unchanged(net, before)


def test_a_registered_kind_without_an_initializer_is_an_error_that_names_the_fix():
    from polarnet.layers import LAYER_KINDS, register_layer_kind

    class Gain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(3, 2))

    register_layer_kind("_test_gain", kind="gain", types=(Gain,))
    try:
        net = nn.Sequential(nn.Linear(2, 2), Gain())
        before = snapshot(net)
        with pytest.raises(ValueError, match=r"layer '1.weight' is of kind 'gain'.*kinds=\{'gain': 'glorot_uniform'\}"):
            init_magnitudes(net)
        assert_unchanged(net, before)  # the linear layer before it is not drawn either
        init_magnitudes(net, kinds={"gain": "glorot_normal"})
        assert not torch.equal(net[1].weight, torch.ones(3, 2))
    finally:
        LAYER_KINDS.unregister("_test_gain")


def test_existing_draws_are_unchanged_by_the_registry():
    # the numbers of a Conv/Linear model are those of torch's fans, drawn in parameter order
    net = _mixed_net()
    init_magnitudes(net, seed=3)
    g = torch.Generator().manual_seed(3)
    from polarnet.init import glorot_normal, glorot_uniform

    for name in ("0.weight", "3.weight"):
        assert torch.equal(net.get_parameter(name), glorot_normal(torch.empty(net.get_parameter(name).shape), g))
    for name in ("5.weight", "7.weight"):
        assert torch.equal(net.get_parameter(name), glorot_uniform(torch.empty(net.get_parameter(name).shape), g))
