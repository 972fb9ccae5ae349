"""Tests for polarnet.native: the C kernel equals the torch computation bit for bit, splits
across threads without changing a number, and stays out of the way where it can't build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polarnet import native
from polarnet.keyed import keyed_uniform

#: the tests of the C code itself; those of the fallback (no compiler, POLARNET_NATIVE=0) run everywhere
needs_kernel = pytest.mark.skipif(not native.available(), reason="the C kernels are not built here: no C compiler, "
                                  "or it failed (the RuntimeWarning from polarnet.native says which)")

RULES = ["posRand", "posCon", "zero", "flip"]
_INT = {4: torch.int32, 8: torch.int64}


def _reference(w: torch.Tensor, code: torch.Tensor, rule: str, eps: float, seed: int, step: int, layer: int) -> int:
    """The sparse path's computation, written out: violations by the sign bit, +0 at T = 0."""
    stray = (code == 0) & (w != 0)
    bad = (torch.signbit(w) != (code < 0)) & (w != 0) & (code != 0)
    i = bad.nonzero().squeeze(1)
    values = w[i]
    signs = values.sign().neg_()
    if rule == "posRand":
        new = keyed_uniform(seed, step, layer, i, w.dtype).mul_(eps).mul_(signs)
    elif rule == "posCon":
        new = signs * eps
    elif rule == "zero":
        new = signs * 0.0
    else:
        new = -values
    w.index_copy_(0, i, new)
    w.masked_fill_(stray, 0.0)
    return int(i.numel() + stray.sum())


_SPECIAL = st.sampled_from([0.0, -0.0, float("nan"), -float("nan"), float("inf"), -float("inf"), 1e-30, -1e-30, 1e-45])


@needs_kernel
@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.one_of(st.floats(-3, 3), _SPECIAL), min_size=1, max_size=200),
       signs=st.lists(st.sampled_from([-1, 0, 1]), min_size=200, max_size=200), rule=st.sampled_from(RULES),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**62), step=st.integers(0, 2**40),
       layer=st.integers(0, 300), eps=st.sampled_from([1e-3, 0.5, 0.1]))
def test_kernel_equals_the_torch_computation_bit_for_bit(values, signs, rule, dtype, seed, step, layer, eps):
    w = torch.tensor(values, dtype=dtype)
    code = torch.tensor(signs[: len(values)], dtype=torch.int8)
    expected = w.clone()
    n_expected = _reference(expected, code, rule, eps, seed, step, layer)
    n = native.enforce_(w, code, rule, eps, native.layer_key(seed, step, layer))
    assert n == n_expected
    assert torch.equal(w.view(_INT[w.element_size()]), expected.view(_INT[w.element_size()]))


@needs_kernel
def test_a_large_layer_split_across_threads_gives_the_same_weights(monkeypatch):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3 * native._SPLIT + 77, generator=g)
    code = torch.randint(-1, 2, w.shape, generator=g, dtype=torch.int8)
    one = w.clone()
    key = native.layer_key(1, 2, 3)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    n_one = native.enforce_(one, code, "posRand", 1e-3, key)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    n_many = native.enforce_(w, code, "posRand", 1e-3, key)
    assert n_one == n_many > 0 and torch.equal(one, w)


@needs_kernel
def test_memory_order_keys_uniforms_by_logical_position():
    """A channels-last weight: memory order (N, H, W, C), positions keyed row-major (N, C, H, W)."""
    g = torch.Generator().manual_seed(0)
    logical = torch.randn(2, 3, 4, 5, generator=g)
    code = -torch.sign(logical).to(torch.int8)  # every entry violates
    expected = logical.clone().view(-1)
    _reference(expected, code.view(-1), "posRand", 0.5, 9, 1, 0)
    memory = logical.permute(0, 2, 3, 1).contiguous()  # what channels-last stores
    flat, flat_code = memory.view(-1), code.permute(0, 2, 3, 1).contiguous().view(-1)
    native.enforce_(flat, flat_code, "posRand", 0.5, native.layer_key(9, 1, 0), memory_shape=(2, 4, 5, 3),
                    logical_strides=(60, 5, 1, 20))
    assert torch.equal(memory.permute(0, 3, 1, 2).contiguous().view(-1), expected)


@needs_kernel
def test_layer_key_is_keyed_uniforms_state_before_the_position():
    key = native.layer_key(7, 3, 2)
    from polarnet.keyed import _MASK64, _mix

    positions = [0, 1, 4097, 2**40]
    ours = [((_mix(key ^ p) & _MASK64) >> 40) * 2.0**-24 for p in positions]
    assert ours == keyed_uniform(7, 3, 2, torch.tensor(positions), torch.float64).tolist()


@needs_kernel
def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="contiguous 1-D CPU weight"):
        native.enforce_(torch.zeros(4, 2).t().reshape(-1)[::2], torch.zeros(4, dtype=torch.int8), "zero", 1.0, 0)
    with pytest.raises(RuntimeError, match="not available"):
        native.enforce_(torch.zeros(4, dtype=torch.bfloat16), torch.zeros(4, dtype=torch.int8), "zero", 1.0, 0)


def _in_subprocess(code: str, **env: str | None) -> str:
    """``code``'s output in a fresh Python with ``env`` changed (``None`` removes a variable);
    the stderr lines it printed, if any, follow a line ``--- stderr``."""
    environment = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=environment)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() + ("\n--- stderr\n" + out.stderr.strip() if out.stderr.strip() else "")


#: freeze a layer, enforce twice, and print what ran and the violations left
_ENFORCE = ("import torch, polarnet as pn; from polarnet import native; net = torch.nn.Linear(4, 4); "
            "t = pn.PolarityTemplate.random(net, seed=0); e = pn.Enforcer(net, t); e(); e(); "
            "print(native.library(), native.available(), e.path, pn.violations(net, t))")


def test_polarnet_native_0_turns_it_off_quietly_and_enforcement_stays_correct():
    assert _in_subprocess(_ENFORCE, POLARNET_NATIVE="0") == "None False sparse 0"


def test_without_a_compiler_the_kernels_are_off_with_one_warning_line(tmp_path):
    """A machine with no C compiler: the torch paths do the work, and one line says so, however
    often the kernels are asked for."""
    (tmp_path / "bin").mkdir()  # a PATH with no cc, gcc or clang in it
    out = _in_subprocess(_ENFORCE, CC=None, PATH=str(tmp_path / "bin"), XDG_CACHE_HOME=str(tmp_path / "cache"),
                         POLARNET_NATIVE=None, POLARNET_NATIVE_WARNED=None)
    assert out == ("None False sparse 0\n--- stderr\npolarnet.native:0: RuntimeWarning: the C kernels are off: "
                   "no C compiler ($CC is unset and PATH has no cc, gcc or clang); the torch paths do their work "
                   "(the same numbers, slower). Install a C compiler, or set POLARNET_NATIVE=0 to turn them off "
                   "quietly")


def test_processes_started_after_the_warning_do_not_repeat_it(tmp_path):
    """A sweep probes the kernels before it starts its workers: they inherit the warning's mark,
    so a command without a compiler says so once, not once per worker."""
    (tmp_path / "bin").mkdir()
    code = ("import multiprocessing as mp; from polarnet import native; native.library(); "
            "workers = [mp.get_context('spawn').Process(target=native.library) for _ in range(2)]; "
            "[w.start() for w in workers]; [w.join() for w in workers]; print([w.exitcode for w in workers])")
    out = _in_subprocess(code, CC=None, PATH=str(tmp_path / "bin"), XDG_CACHE_HOME=str(tmp_path / "cache"),
                         POLARNET_NATIVE=None, POLARNET_NATIVE_WARNED=None)
    result, stderr = out.split("\n--- stderr\n")
    assert result == "[0, 0]" and stderr.count("RuntimeWarning: the C kernels are off: no C compiler") == 1
    assert "\n" not in stderr


@pytest.mark.parametrize("compiler", ["false", "no-such-compiler"])
def test_a_compiler_that_fails_is_named_in_one_warning_line(tmp_path, compiler):
    cc = shutil.which(compiler) or str(tmp_path / compiler)
    out = _in_subprocess(_ENFORCE, CC=cc, XDG_CACHE_HOME=str(tmp_path / "cache"), POLARNET_NATIVE=None,
                         POLARNET_NATIVE_WARNED=None)
    result, stderr = out.split("\n--- stderr\n")
    assert result == "None False sparse 0" and "\n" not in stderr
    missing = f"FileNotFoundError: [Errno 2] No such file or directory: {cc!r}"
    why = "exit status 1, no message" if compiler == "false" else missing
    assert stderr.startswith(f"polarnet.native:0: RuntimeWarning: the C kernels are off: the C compiler {cc!r} could "
                             f"not build them ({why}); the torch paths do their work")


@needs_kernel
def test_an_unwritable_cache_builds_in_a_temporary_folder(tmp_path):
    blocked = tmp_path / "not-a-folder"  # a file where the cache folder should be (permissions don't stop root)
    blocked.write_text("")
    out = _in_subprocess("from polarnet import native; print(native.library()._name)", XDG_CACHE_HOME=str(blocked))
    assert "polarnet-native-" in out and str(blocked) not in out


def test_the_c_sources_are_package_data_a_wheel_ships():
    """The kernels are real files in the package, read with importlib.resources, each C
    function the loader declares is in one of them, and pyproject's package-data takes them all."""
    import fnmatch
    import tomllib
    from importlib import resources
    from pathlib import Path

    from polarnet.native import build

    folder = resources.files("polarnet.native")
    names = sorted(f.name for f in folder.iterdir() if f.name.endswith((".c", ".h")))
    assert names == ["conv_pool.c", "enforce.c", "mlp.c", "vec16.h"] and build.sources().keys() == set(names)
    text = "".join(folder.joinpath(name).read_text() for name in names)
    assert all(f" {fn}(" in text or f"({fn}," in text for fn in build._SIGNATURES)
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["polarnet"]
    assert all(any(fnmatch.fnmatch(f"native/{name}", p) for p in patterns) for name in names)


_STATUS = "from polarnet import native; print(native.status()); native.library(); print(native.status())"


def test_status_says_which_path_ran_without_building(tmp_path):
    """status() names the path: off and why, or the target built for; before the first kernel
    call it builds nothing (the cache stays empty) and says so."""
    (tmp_path / "bin").mkdir()
    assert _in_subprocess(_STATUS, POLARNET_NATIVE="0") == "off: POLARNET_NATIVE=0\noff: POLARNET_NATIVE=0"
    out = _in_subprocess(_STATUS, CC=None, PATH=str(tmp_path / "bin"), XDG_CACHE_HOME=str(tmp_path / "cache"),
                         POLARNET_NATIVE=None, POLARNET_NATIVE_WARNED="1", POLARNET_NATIVE_ARCH=None)
    assert out == "not built yet (native)\noff: no C compiler"
    cache = tmp_path / "empty"
    out = _in_subprocess("from polarnet import native; print(native.status())", XDG_CACHE_HOME=str(cache),
                         POLARNET_NATIVE=None, POLARNET_NATIVE_ARCH="x86-64-v3")
    assert out == "not built yet (x86-64-v3)" and not cache.exists()
    with pytest.raises(AssertionError, match="ValueError: POLARNET_NATIVE_ARCH='-O0 x' is not a -march= target"):
        _in_subprocess("from polarnet import native; native.library()", POLARNET_NATIVE=None,
                       POLARNET_NATIVE_ARCH="-O0 x")


@needs_kernel
def test_status_names_the_target_built_for():
    out = _in_subprocess(_STATUS, POLARNET_NATIVE=None, POLARNET_NATIVE_ARCH="x86-64-v3")
    assert out == "not built yet (x86-64-v3)\nnative x86-64-v3, 256-bit vectors: enforcement kernel only"
    first, built = _in_subprocess(_STATUS, POLARNET_NATIVE=None, POLARNET_NATIVE_ARCH=None).split("\n")
    assert first == "not built yet (native)" and built.startswith("native (") and "x86-64-v3" not in built
    wide = "avx512f" in Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").is_file() else False
    assert built.endswith(", 512-bit vectors: enforcement and engine kernels" if wide else " kernel only")


@needs_kernel
def test_the_engines_kernels_run_only_on_a_build_with_avx512_vectors(monkeypatch):
    """Built for AVX2 (x86-64-v3) the engines' 16-float kernels measured 2-8x slower than torch
    (benchmarks/bench_native.py): there the engines take their torch paths, with the same numbers
    as the kernels give, and only enforcement uses the C kernel."""
    from polarnet.experiments import ensemble, stacked
    from polarnet.native import build

    with build.using("x86-64-v3"):
        assert native.vector_bits() == 256 and not native.engine_kernels() and native.available()
    wide = "avx512f" in Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").is_file() else False
    assert native.engine_kernels() == wide

    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(50, 5, generator=g), torch.randint(0, 2, (50,), generator=g).float()
    w1, b1, w2, b2 = (torch.randn(4, 16, 5, generator=g), torch.randn(4, 16, generator=g),
                      torch.randn(4, 1, 16, generator=g), torch.randn(4, 1, generator=g))
    with_kernels = ensemble._evaluate(w1, b1, w2, b2, x, y)

    def refuse(*args, **kwargs):
        raise AssertionError("an engine kernel ran on a build without AVX-512 vectors")

    for name in ("mlp_logits", "conv_pool", "conv_pool_with_codes", "pool_flat", "pool_weight_grad"):
        monkeypatch.setattr(native, name, refuse)
    monkeypatch.setattr(native, "engine_kernels", lambda: False)
    without = ensemble._evaluate(w1, b1, w2, b2, x, y)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(with_kernels, without, strict=True))
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 14 * 14, 3))
    program = stacked.StackedProgram(net, torch.channels_last, torch.channels_last)
    params, buffers = torch.func.stack_module_state([net, net])
    out = program(params, buffers, stacked.Act(torch.randn(2, 1, 28, 28, generator=g), stacked.SHARED), False)
    assert out.shape == (2, 2, 3)


@needs_kernel
def test_the_x86_64_v3_build_gives_the_native_builds_numbers():
    """The portable build (AVX2, FMA) computes what the native one does, bit for bit, for every
    kernel family: enforcement, the MLP logits, the fused convolution and pool, its weight
    gradient, and the pool before the linear layer."""
    from polarnet.native import build

    g = torch.Generator().manual_seed(5)
    w, code = torch.randn(5000, generator=g), torch.randint(-1, 2, (5000,), generator=g, dtype=torch.int8)
    x, w1, b1 = torch.randn(40, 5, generator=g), torch.randn(3, 64, 5, generator=g), torch.randn(3, 64, generator=g)
    w2, b2 = torch.randn(3, 64, generator=g), torch.randn(3, generator=g)
    img, filt, bias = torch.randn(4, 3, 12, 12, generator=g), torch.randn(20, 3, 5, 5, generator=g), torch.randn(20)
    grouped, gfilt = torch.randn(4, 2 * 6, 8, 8, generator=g), torch.randn(2 * 7, 6, 3, 3, generator=g)

    def every_kernel() -> list[torch.Tensor]:
        out = w.clone()
        native.enforce_(out, code, "posRand", 0.01, native.layer_key(1, 2, 3))
        pooled, codes = native.conv_pool_with_codes(img, filt, bias, (2, 2), True)
        grads = native.pool_weight_grad(img, torch.ones_like(pooled), codes, (5, 5), (2, 2))
        return [out, native.mlp_logits(x, w1, b1, w2, b2), pooled, codes, *grads,
                native.conv_pool(grouped, gfilt, None, (1, 1), False, groups=2),
                native.pool_flat(grouped, 2, relu=True)]

    mine = every_kernel()
    with build.using("x86-64-v3"):
        assert native.status() == "native x86-64-v3, 256-bit vectors: enforcement kernel only"
        portable = every_kernel()
    for a, b in zip(mine, portable, strict=True):
        assert torch.equal(a, b)


@needs_kernel
@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 20), n=st.integers(1, 50), d=st.integers(1, 7), h=st.integers(1, 40), seed=st.integers(0, 99))
def test_mlp_logits_equal_batched_products_to_rounding(m, n, d, h, seed):
    g = torch.Generator().manual_seed(seed)
    x, w1, b1 = torch.randn(n, d, generator=g), torch.randn(m, h, d, generator=g), torch.randn(m, h, generator=g)
    w2, b2 = torch.randn(m, 1, h, generator=g), torch.randn(m, 1, generator=g)
    hidden = torch.baddbmm(b1[:, None, :], x.expand(m, n, d), w1.transpose(1, 2)).relu_()
    expected = torch.baddbmm(b2[:, :, None], w2, hidden.transpose(1, 2)).squeeze(1)
    torch.testing.assert_close(native.mlp_logits(x, w1, b1, w2, b2), expected, rtol=1e-5, atol=1e-5)


@needs_kernel
def test_mlp_logits_keep_nan_and_split_members_across_threads(monkeypatch):
    g = torch.Generator().manual_seed(0)
    x, w1, b1 = torch.randn(1000, 5, generator=g), torch.randn(64, 70, 5, generator=g), torch.randn(64, 70, generator=g)
    w2, b2 = torch.randn(64, 70, generator=g), torch.randn(64, generator=g)
    w1[3, 0, 0] = float("nan")  # a diverged member: its logits are NaN, as torch.relu keeps NaN
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    one = native.mlp_logits(x, w1, b1, w2, b2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    many = native.mlp_logits(x, w1, b1, w2, b2)
    assert torch.equal(one[~one.isnan()], many[~many.isnan()]) and torch.equal(one.isnan(), many.isnan())
    assert one[3].isnan().all() and not one[[0, 1, 2, 4]].isnan().any()
    with pytest.raises(ValueError, match="float32 CPU tensors"):
        native.mlp_logits(x.double(), w1, b1, w2, b2)
    with pytest.raises(ValueError, match="shapes don't fit"):
        native.mlp_logits(x, w1, b1[:3], w2, b2)


@needs_kernel
@settings(max_examples=50, deadline=None)
@given(rows=st.integers(1, 5), length=st.integers(1, 300), dtype=st.sampled_from([torch.float32, torch.float64]),
       seed=st.integers(0, 2**40), step=st.integers(0, 10**6), data=st.data())
def test_enforce_rows_equals_enforce_on_each_picked_row(rows, length, dtype, seed, step, data):
    """One call for picked rows of a stack (rows apart in memory: a slice of a wider stack), each
    with its own rule and key, equals :func:`native.enforce_` row by row; other rows are untouched."""
    torch.manual_seed(seed)
    wide = torch.randn(rows, length + 3, dtype=dtype)
    w = wide[:, :length]
    code = torch.randint(-1, 2, (rows, length + 3), dtype=torch.int8)[:, :length]
    picked = sorted(data.draw(st.sets(st.integers(0, rows - 1), min_size=1)))
    rules = [data.draw(st.sampled_from(RULES)) for _ in picked]
    keys = native.layer_keys(seed, step, torch.tensor(picked))
    expected, counts = wide.clone(), []
    for r, rule in zip(picked, rules):
        row = wide[r, :length].clone()
        counts.append(native.enforce_(row, code[r].contiguous(), rule, 0.25, native.layer_key(seed, step, r)))
        expected[r, :length] = row
    got = native.enforce_rows_(w, code, torch.tensor(picked), torch.tensor([native.RULE_CODES[r] for r in rules]),
                               0.25, keys)
    assert got.tolist() == counts
    assert torch.equal(wide, expected)


@needs_kernel
def test_layer_keys_are_layer_key_for_each_member():
    keys = native.layer_keys(torch.tensor([5, 2**40 + 7]), torch.tensor([1, 99]), 3)
    expected = [native.layer_key(5, 1, 3), native.layer_key(2**40 + 7, 99, 3)]
    assert [k & ((1 << 64) - 1) for k in keys.tolist()] == expected
    assert int(native.layer_keys(5, 1, 3)) & ((1 << 64) - 1) == native.layer_key(5, 1, 3)


@needs_kernel
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), cin=st.integers(1, 4), cout=st.integers(1, 70), groups=st.sampled_from([1, 2, 3]),
       k=st.integers(1, 5), pad=st.integers(0, 2), size=st.integers(2, 13), relu=st.booleans(),
       seed=st.integers(0, 2**31))
def test_conv_pool_is_conv_then_pool_then_relu_to_rounding(n, cin, cout, groups, k, pad, size, relu, seed):
    """Every channel count (blocks of 16 and their tails), group count, kernel, padding and odd
    sizes (the pool's floor), against ``conv2d`` → ``max_pool2d`` → ``relu``."""
    torch.manual_seed(seed)
    functional = torch.nn.functional
    if size + 2 * pad - k + 1 < 2:
        return
    x = torch.randn(n, cin * groups, size, size)
    w, b = torch.randn(cout * groups, cin, k, k), torch.randn(cout * groups)
    expected = functional.max_pool2d(functional.conv2d(x, w, b, padding=pad, groups=groups), 2)
    expected = expected.relu() if relu else expected
    got = native.conv_pool(x.contiguous(memory_format=torch.channels_last), w, b, (pad, pad), relu, groups)
    assert got.shape == expected.shape and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(native.conv_pool(x, w, None, (pad, pad), relu, groups),
                       native.conv_pool(x, w, torch.zeros_like(b), (pad, pad), relu, groups))


@needs_kernel
def test_conv_pool_keeps_nan_and_refuses_what_it_cannot_compute():
    x, w = torch.randn(1, 1, 6, 6), torch.randn(17, 1, 3, 3)
    x[0, 0, 0, 0] = float("nan")
    out = native.conv_pool(x, w, None, (0, 0), relu=True)
    assert torch.isnan(out[0, :, 0, 0]).all() and not torch.isnan(out[0, :, 1:, 1:]).any()
    with pytest.raises(ValueError, match="float32 CPU"):
        native.conv_pool(x.double(), w.double(), None, (0, 0), relu=True)
    with pytest.raises(ValueError, match="groups=2"):
        native.conv_pool(x, w, None, (0, 0), relu=True, groups=2)
    with pytest.raises(ValueError, match="nothing to pool"):
        native.conv_pool(x, torch.randn(2, 1, 6, 6), None, (0, 0), relu=True)


@needs_kernel
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), cin=st.integers(1, 3), cout=st.integers(1, 40), k=st.integers(1, 4),
       pad=st.integers(0, 2), size=st.integers(2, 11), relu=st.booleans(), flat=st.booleans(),
       seed=st.integers(0, 2**31))
def test_codes_are_max_pools_indices_and_relus_zeros(n, cin, cout, k, pad, size, relu, flat, seed):
    """The recorded window positions are those ``max_pool2d(return_indices=True)`` picks, also
    with ties (small integers: many equal values; a flat input: every window equal, the first
    position wins), and 255 where ``relu`` passes no gradient (its output isn't > 0).
    Integers keep every sum exact, so the kernel's order of summing can't move a maximum."""
    torch.manual_seed(seed)
    functional = torch.nn.functional
    if size + 2 * pad - k + 1 < 2:
        return
    x = torch.zeros(n, cin, size, size) if flat else torch.randint(-3, 4, (n, cin, size, size)).float()
    w, b = torch.randint(-2, 3, (cout, cin, k, k)).float(), torch.randint(-2, 3, (cout,)).float()
    out, codes = native.conv_pool_with_codes(x, w, b, (pad, pad), relu)
    y = functional.conv2d(x, w, b, padding=pad)
    pooled, index = functional.max_pool2d(y, 2, return_indices=True)
    torch.testing.assert_close(out, pooled.relu() if relu else pooled, atol=1e-5, rtol=1e-5)
    rows, cols = index // y.shape[3], index % y.shape[3]
    i = torch.arange(pooled.shape[2]).view(1, 1, -1, 1)
    j = torch.arange(pooled.shape[3]).view(1, 1, 1, -1)
    expected = (rows - 2 * i) * 2 + (cols - 2 * j)
    if relu:
        expected = torch.where(pooled > 0, expected, 255)
    assert torch.equal(codes.permute(0, 3, 1, 2).long(), expected)


@needs_kernel
@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 3), cin=st.integers(1, 5), cout=st.integers(1, 11), k=st.integers(1, 7),
       pad=st.integers(0, 3), size=st.integers(2, 12), relu=st.booleans(), layout=st.booleans(),
       seed=st.integers(0, 2**31))
def test_pool_weight_grad_is_autograds_weight_and_bias_gradient(n, cin, cout, k, pad, size, relu, layout, seed):
    """:func:`native.pool_weight_grad` equals autograd's weight and bias gradients of
    ``relu(max_pool2d(conv2d(x, w, b), 2))``, bit for bit on integers (exact sums in any order),
    for every tile of channels (1–11) and of taps (``cin·k²`` from 1 to 245: 1 to 16 vectors of
    16), odd sizes, padding, and either memory layout of the input and the gradient."""
    torch.manual_seed(seed)
    functional = torch.nn.functional
    if size + 2 * pad - k + 1 < 2:
        return
    x = torch.randint(-3, 4, (n, cin, size, size)).float()
    w = torch.randint(-2, 3, (cout, cin, k, k)).float().requires_grad_()
    b = torch.randint(-2, 3, (cout,)).float().requires_grad_()
    pooled = functional.max_pool2d(functional.conv2d(x, w, b, padding=pad), 2)
    pooled = pooled.relu() if relu else pooled
    g = torch.randint(-3, 4, pooled.shape).float()
    expected = torch.autograd.grad(pooled, (w, b), g)
    _, codes = native.conv_pool_with_codes(x, w.detach(), b.detach(), (pad, pad), relu)
    if layout:
        x, g = x.contiguous(memory_format=torch.channels_last), g.contiguous(memory_format=torch.channels_last)
    got = native.pool_weight_grad(x, g, codes, (k, k), (pad, pad))
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@needs_kernel
def test_pool_weight_grad_passes_no_gradient_where_relu_killed_it():
    """A relu's zero passes nothing back, not even an inf or NaN gradient (0·inf would be NaN)."""
    x = torch.tensor([[[[1.0, -2.0], [-3.0, -4.0]], [[-1.0, -2.0], [-3.0, -4.0]]]]).reshape(2, 1, 2, 2)
    w = torch.ones(1, 1, 1, 1)
    _, codes = native.conv_pool_with_codes(x, w, None, (0, 0), relu=True)
    assert codes.flatten().tolist() == [0, 255]
    gw, gb = native.pool_weight_grad(x, torch.tensor([2.0, float("nan")]).reshape(2, 1, 1, 1), codes, (1, 1), (0, 0))
    assert gw.flatten().tolist() == [2.0] and gb.tolist() == [2.0]
    with pytest.raises(ValueError, match="fit a 3x3 kernel"):
        native.pool_weight_grad(x, torch.ones(2, 1, 1, 1), codes, (3, 3), (0, 0))


@needs_kernel
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 4), members=st.integers(1, 5), c=st.integers(1, 20), h=st.integers(2, 9),
       w=st.integers(2, 9), relu=st.booleans(), layout=st.booleans(), seed=st.integers(0, 2**31))
def test_pool_flat_is_max_pool_relu_and_flatten_bit_for_bit(n, members, c, h, w, relu, layout, seed):
    """:func:`native.pool_flat` against ``max_pool2d`` → ``relu`` → each member's ``flatten``:
    every channel count (vectors of 16 and their tails), odd sizes (the pool's floor), NaN,
    ±inf, ties and -0.0, in either memory layout; the same values, NaN where torch has NaN
    (a zero's sign may differ: torch's own pooling kernels disagree on it)."""
    torch.manual_seed(seed)
    x = torch.randint(-3, 4, (n, members * c, h, w)).float()
    x[torch.rand(x.shape) < 0.05] = float("nan")
    x[torch.rand(x.shape) < 0.05] = float("inf")
    x[torch.rand(x.shape) < 0.05] = -0.0
    if layout:
        x = x.contiguous(memory_format=torch.channels_last)
    pooled = torch.nn.functional.max_pool2d(x, 2)
    expected = (pooled.relu() if relu else pooled).unflatten(1, (members, c)).transpose(0, 1).flatten(2)
    got = native.pool_flat(x, members, relu)
    assert got.shape == expected.shape
    assert torch.equal(torch.isnan(got), torch.isnan(expected))
    same = ~torch.isnan(got)
    assert torch.equal(got[same], expected[same])
    with pytest.raises(ValueError, match="M = 7 dividing its channels"):
        native.pool_flat(torch.zeros(1, 5, 4, 4), 7, relu)


@needs_kernel
def test_enforce_rows_refuses_rows_outside_the_stack():
    w, code = torch.randn(2, 4), torch.ones(2, 4, dtype=torch.int8)
    keys = native.layer_keys(0, 1, torch.tensor([0]))
    with pytest.raises(ValueError, match="within the stack's 2"):
        native.enforce_rows_(w, code, torch.tensor([2]), torch.tensor([0]), 0.1, keys)
    with pytest.raises(ValueError, match="a rule code and a key per picked row"):
        native.enforce_rows_(w, code, torch.tensor([0, 1]), torch.tensor([0]), 0.1, keys)
