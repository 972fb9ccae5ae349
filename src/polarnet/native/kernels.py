"""The C kernels' Python side: checks, memory layout and threads around each :mod:`ctypes` call.

:mod:`ctypes` releases the GIL during a call, so large work is split across
``torch.get_num_threads()`` threads. Each function raises ``RuntimeError`` where the kernels
are not available (:func:`available` says beforehand).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

from ..keyed import _K, _MASK64, _key, _mix
from .build import WIDE_BITS, library, vector_bits

__all__ = ["available", "enforce_", "enforce_rows_", "layer_key", "layer_keys", "mlp_logits", "conv_pool",
           "conv_pool_with_codes", "pool_weight_grad", "pool_flat", "RULE_CODES"]

#: the built-in reset rules' numbers in the kernel
RULE_CODES = {"posRand": 0, "posCon": 1, "zero": 2, "flip": 3}

#: entries per thread below which a layer is done in one call (threads cost ~50 µs to hand out)
_SPLIT = 1 << 20

def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the kernel can enforce weights of ``dtype`` here.

    Example:
        >>> available(torch.bfloat16)
        False
    """
    return dtype in (torch.float32, torch.float64) and library() is not None




def engine_kernels() -> bool:
    """Whether the engines' kernels (:func:`mlp_logits`, :func:`conv_pool`, :func:`pool_flat`,
    :func:`pool_weight_grad`) run here: the library is built, and for vectors of at least
    :data:`WIDE_BITS` bits (AVX-512). Elsewhere the engines take their torch paths, which are
    faster there, and only Freeze-SGD's enforcement uses the kernel (:func:`available`).

    Example:
        >>> engine_kernels() in (True, False)
        True
    """
    return vector_bits() >= WIDE_BITS


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, threads, pool)


def _pool(threads: int) -> ThreadPoolExecutor:
    """Worker threads for the kernels: a new pool when torch's thread count changes, and in a
    forked child (a parent's threads don't survive ``fork``; its pool would wait forever)."""
    global _POOL
    if _POOL is None or _POOL[:2] != (os.getpid(), threads):
        _POOL = (os.getpid(), threads, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="polarnet-native"))
    return _POOL[2]


def _spans(n: int, small: bool, block: int = 1) -> list[tuple[int, int]]:
    """``[0, n)`` in one span per torch thread, each a whole number of ``block`` entries, or in
    one span when the work is ``small`` (handing out threads costs ~50 µs)."""
    threads = 1 if small else max(1, min(torch.get_num_threads(), -(-n // block)))
    per = -(-n // threads)
    size = max(block, -(-per // block) * block)
    return [(s, min(s + size, n)) for s in range(0, n, size)] or [(0, n)]


def _in_spans(spans: list[tuple[int, int]], run: Callable[[int, int, int], Any]) -> list[Any]:
    """``run(index, start, stop)`` for each span, on the kernels' threads when there are several."""
    if len(spans) == 1:
        return [run(0, *spans[0])]
    return list(_pool(max(1, torch.get_num_threads())).map(lambda i: run(i, *spans[i]), range(len(spans))))


def layer_key(seed: int, step: int, layer: int) -> int:
    """The hash state after the keys that a layer's entries share: ``keyed_uniform(seed, step,
    layer, p)`` is ``mix(key ^ p)`` for every position ``p``.

    Example:
        >>> from polarnet.keyed import reference_uniform
        >>> key = layer_key(7, 3, 0)
        >>> ((_mix(key ^ 4) & _MASK64) >> 40) * 2.0**-24 == reference_uniform(7, 3, 0, 4)
        True
    """
    x = _mix(_key(seed, _K[0], _K[1], torch.device("cpu")))
    x = _mix(x ^ _key(step, _K[2], 0, torch.device("cpu")))
    x = _mix(x ^ _key(layer, _K[3], 1, torch.device("cpu")))
    return int(x) & _MASK64


def enforce_(flat: Tensor, code: Tensor, rule: str, eps: float, key: int,
             memory_shape: tuple[int, ...] = (), logical_strides: tuple[int, ...] = ()) -> int:
    """Enforce one layer in place with the kernel; returns the weights reset.

    ``flat`` is the weight's memory viewed as 1-D (contiguous, float32/float64) and ``code`` its
    int8 template signs in the same memory order. ``key`` is :func:`layer_key`'s. For a weight
    whose memory order isn't row-major (channels-last), ``memory_shape`` lists its sizes in
    memory order and ``logical_strides`` each such dimension's row-major stride, so the keyed
    uniforms are those of the logical positions.

    Example:
        >>> w = torch.tensor([0.5, -0.2, 0.3, 0.0])
        >>> code = torch.tensor([1, 1, -1, 1], dtype=torch.int8)
        >>> enforce_(w, code, "posCon", 0.01, layer_key(0, 1, 0)) if available() else 2
        2
    """
    lib = library()
    if lib is None or not available(flat.dtype):
        raise RuntimeError("the native kernel is not available here (see polarnet.native.library)")
    if not (flat.is_contiguous() and code.is_contiguous() and flat.dim() == 1 and code.numel() == flat.numel()
            and code.dtype == torch.int8 and flat.device.type == "cpu"):
        raise ValueError("enforce_ needs a contiguous 1-D CPU weight and int8 signs of the same length")
    fn = lib.polarnet_enforce_f32 if flat.dtype == torch.float32 else lib.polarnet_enforce_f64
    ndim = len(memory_shape)
    shape = (ctypes.c_int64 * max(ndim, 1))(*memory_shape)
    strides = (ctypes.c_int64 * max(ndim, 1))(*logical_strides)
    w_ptr, c_ptr, n = flat.data_ptr(), code.data_ptr(), flat.numel()
    rule_code = RULE_CODES[rule]

    def run(start: int, stop: int) -> int:
        return fn(w_ptr, c_ptr, start, stop, rule_code, eps, key, ndim, shape, strides)

    return sum(_in_spans(_spans(n, n < 2 * _SPLIT, block=64), lambda _, start, stop: run(start, stop)))


def enforce_rows_(w: Tensor, code: Tensor, rows: Tensor, rules: Tensor, eps: float, keys: Tensor) -> Tensor:
    """Enforce the members ``rows`` of stacked weights in place with the kernel, each with its
    own rule and key, in one call; returns each one's resets.

    ``w`` and ``code`` (its int8 template signs, the same shape) hold one member per row of
    their first axis, each row contiguous (rows may be apart, as in a slice of a stack).
    ``rows`` (int64) picks the members to enforce, ``rules`` (int32, :data:`RULE_CODES`) and
    ``keys`` (int64: :func:`layer_key`'s bits, as :func:`layer_keys` computes them for many
    members) are one per picked member. The same numbers as :func:`enforce_` on each row.

    Example:
        >>> w = torch.tensor([[0.5, -0.2], [0.3, -0.1], [-0.4, 0.2]])
        >>> code = torch.tensor([[1, 1], [1, 1], [-1, 1]], dtype=torch.int8)
        >>> rows, rules = torch.tensor([0, 2]), torch.tensor([RULE_CODES["posCon"]] * 2, dtype=torch.int32)
        >>> keys = layer_keys(0, 1, torch.tensor([0, 0]))
        >>> n = enforce_rows_(w, code, rows, rules, 0.01, keys) if available() else None
        >>> n.tolist() if n is not None else [1, 0], w[1].tolist()  # row 1 is not picked: unchanged
        ([1, 0], [0.30000001192092896, -0.10000000149011612])
    """
    lib = library()
    if lib is None or not available(w.dtype):
        raise RuntimeError("the native kernel is not available here (see polarnet.native.library)")
    length = w[0].numel() if w.shape[0] else 0
    if not (w.device.type == "cpu" and code.dtype == torch.int8 and code.shape == w.shape and w.dim() >= 1
            and (w.shape[0] == 0 or (w[0].is_contiguous() and code[0].is_contiguous()))):
        raise ValueError("enforce_rows_ needs CPU weights stacked along the first axis, each row contiguous, and "
                         "int8 signs of the same shape")
    rows, rules, keys = (t.to(torch.int64).contiguous().view(-1) for t in (rows, rules, keys))
    rules = rules.to(torch.int32)
    counts = torch.zeros(len(rows), dtype=torch.int64)
    if len(rows) == 0:
        return counts
    if len(rules) != len(rows) or len(keys) != len(rows) or int(rows.min()) < 0 or int(rows.max()) >= w.shape[0] \
            or int(rules.min()) < 0 or int(rules.max()) >= len(RULE_CODES):
        raise ValueError(f"enforce_rows_ takes a rule code and a key per picked row, rows within the stack's "
                         f"{w.shape[0]}; got {len(rows)} rows from {int(rows.min())} to {int(rows.max())}, "
                         f"{len(rules)} rules, {len(keys)} keys")
    fn = lib.polarnet_enforce_rows_f32 if w.dtype == torch.float32 else lib.polarnet_enforce_rows_f64
    w_stride, code_stride = w.stride(0), code.stride(0)

    def run(start: int, stop: int) -> None:
        fn(w.data_ptr(), w_stride, code.data_ptr(), code_stride, length, stop - start,
           rows.data_ptr() + 8 * start, rules.data_ptr() + 4 * start, eps, keys.data_ptr() + 8 * start,
           counts.data_ptr() + 8 * start)

    _in_spans(_spans(len(rows), len(rows) * length < 2 * _SPLIT), lambda _, start, stop: run(start, stop))
    return counts


def layer_keys(seed: Tensor | int, step: Tensor | int, layer: Tensor | int) -> Tensor:
    """:func:`layer_key` of many members at once: int64 tensors (or ints) that broadcast; the
    keys' 64 bits as int64.

    Example:
        >>> keys = layer_keys(torch.tensor([7, 8]), 3, torch.tensor([0, 2]))
        >>> [k & _MASK64 for k in keys.tolist()] == [layer_key(7, 3, 0), layer_key(8, 3, 2)]
        True
    """
    cpu = torch.device("cpu")
    x = _mix(_key(seed, _K[0], _K[1], cpu))
    x = _mix(x ^ _key(step, _K[2], 0, cpu))
    x = _mix(x ^ _key(layer, _K[3], 1, cpu))
    return torch.as_tensor(x, dtype=torch.int64)


def mlp_logits(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """Logits of stacked one-hidden-layer MLPs on shared inputs: ``z[m, i] = b2[m] + w2[m] ·
    relu(w1[m] x[i] + b1[m])``, float32 on the CPU (the XOR ensemble's validation pass).

    Each member's hidden units stay in registers instead of a (samples × hidden) tensor per
    member: about 10x faster than batched products for XOR's 5 inputs and 64 hidden units. The
    sums run in another order than ``torch.baddbmm``'s, so logits agree with it to rounding
    (about 1e-7 relative), not bit for bit. Members are split across
    ``torch.get_num_threads()`` threads.

    Args:
        x: ``(N, D)`` inputs; w1: ``(M, H, D)``; b1: ``(M, H)``; w2: ``(M, 1, H)`` or ``(M, H)``;
            b2: ``(M, 1)`` or ``(M,)``.

    Returns:
        ``(M, N)`` logits.

    Example:
        >>> x = torch.tensor([[1.0, -1.0]])
        >>> w1, b1 = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), torch.zeros(1, 2)
        >>> mlp_logits(x, w1, b1, torch.tensor([[2.0, 3.0]]), torch.tensor([0.5])) if available() else torch.tensor([[2.5]])
        tensor([[2.5000]])
    """
    lib = library()
    if lib is None:
        raise RuntimeError("the native kernel is not available here (see polarnet.native.library)")
    tensors = [t.detach().contiguous() for t in (x, w1, b1, w2, b2)]
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors):
        raise ValueError("mlp_logits takes float32 CPU tensors")
    x, w1, b1, w2, b2 = tensors
    (n, d), (m, h) = x.shape, w1.shape[:2]
    if w1.shape != (m, h, d) or b1.numel() != m * h or w2.numel() != m * h or b2.numel() != m:
        raise ValueError(f"shapes don't fit one-hidden-layer MLPs: x {tuple(x.shape)}, w1 {tuple(w1.shape)}, "
                         f"b1 {tuple(b1.shape)}, w2 {tuple(w2.shape)}, b2 {tuple(b2.shape)}")
    z = torch.empty(m, n, dtype=torch.float32)
    args = (x.data_ptr(), n, d, w1.data_ptr(), b1.data_ptr(), w2.data_ptr(), b2.data_ptr(), h, z.data_ptr())
    _in_spans(_spans(m, m * n * h < (1 << 22)), lambda _, start, stop: lib.polarnet_mlp_logits_f32(*args, start, stop))
    return z


def conv_pool(x: Tensor, weight: Tensor, bias: Tensor | None, padding: tuple[int, int], relu: bool,
              groups: int = 1) -> Tensor:
    """``max_pool2d(conv2d(x, weight, bias, padding=padding, groups=groups), 2)``, then ``relu``
    if asked, in one pass: float32 on the CPU, stride 1 (an image ensemble's convolutions in
    evaluation: the first over a shared batch, its members' filters side by side, and the
    later ones grouped, a group per member).

    Each 2×2 window's four outputs are summed in registers, pooled and stored, so the
    full-size convolution output, larger than a core's cache for a batch of an ensemble's
    members, is never written and read back. Sums run in another order than oneDNN's (about
    1e-7 relative apart); the pool and relu keep NaN as torch's do. Images are split across
    ``torch.get_num_threads()`` threads.

    Returns:
        ``(N, C, H', W')`` in channels-last memory.

    Example:
        >>> x, w, b = torch.randn(2, 1, 8, 8), torch.randn(6, 1, 5, 5), torch.randn(6)
        >>> ref = torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(x, w, b, padding=2), 2).relu()
        >>> out = conv_pool(x, w, b, (2, 2), relu=True) if available() else ref
        >>> out.shape, torch.allclose(out, ref, atol=1e-5)
        (torch.Size([2, 6, 4, 4]), True)
    """
    return _conv_pool(x, weight, bias, padding, relu, groups, codes=False)[0]


def conv_pool_with_codes(x: Tensor, weight: Tensor, bias: Tensor | None, padding: tuple[int, int],
                         relu: bool) -> tuple[Tensor, Tensor]:
    """:func:`conv_pool` (one group) that also records, per output, where its gradient goes:
    the window position ``0..3`` (row-major) that ``max_pool2d`` picks (a larger value or a NaN
    takes over, a tie keeps the first), or 255 where ``relu`` passes no gradient (its output
    isn't > 0). :func:`pool_weight_grad` takes an output gradient from there to the weights.

    Returns:
        The output, ``(N, C, H', W')`` in channels-last memory, and the codes, uint8
        ``(N, H', W', C)``.

    Example:
        >>> x = torch.tensor([[[[1.0, 3.0], [3.0, -1.0]]]])
        >>> out, codes = conv_pool_with_codes(x, torch.ones(1, 1, 1, 1), None, (0, 0), True) if available() \\
        ...     else (torch.tensor([[[[3.0]]]]), torch.tensor([[[[1]]]], dtype=torch.uint8))
        >>> out.item(), codes.item()  # the first of the two 3s
        (3.0, 1)
    """
    out, codes = _conv_pool(x, weight, bias, padding, relu, 1, codes=True)
    assert codes is not None
    return out, codes


def pool_flat(x: Tensor, members: int, relu: bool) -> Tensor:
    """``max_pool2d(x, 2)``, then ``relu`` if asked, of a grouped activation (an image
    ensemble's members' channels side by side, ``(N, M·C, H, W)``), returned member by member
    and flattened as ``nn.Flatten`` would, ``(M, N, C·H/2·W/2)``, in one pass: what the
    evaluation of a LeNet-like model does before its first linear layer, without writing the
    pooled activation and copying it into the linear layer's order. The same values as
    ``max_pool2d`` and ``torch.relu`` give (a NaN wins). Float32 on the CPU; images are split
    across ``torch.get_num_threads()`` threads.

    Example:
        >>> x = torch.randn(3, 2 * 4, 6, 6)
        >>> ref = torch.nn.functional.max_pool2d(x, 2).relu().unflatten(1, (2, 4)).transpose(0, 1).flatten(2)
        >>> out = pool_flat(x, 2, relu=True) if available() else ref
        >>> out.shape, torch.equal(out, ref)
        (torch.Size([2, 3, 36]), True)
    """
    lib = library()
    if lib is None:
        raise RuntimeError("the native kernel is not available here (see polarnet.native.library)")
    if x.dtype != torch.float32 or x.device.type != "cpu" or x.dim() != 4 or members < 1 or x.shape[1] % members \
            or x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(f"pool_flat takes a float32 CPU activation (N, M·C, H, W) with H, W >= 2 and M = {members} "
                         f"dividing its channels; got {x.dtype} {tuple(x.shape)} on {x.device}")
    n, k, h, w = x.shape
    c, plane = k // members, (h // 2) * (w // 2)
    rows = x.detach().permute(0, 2, 3, 1).contiguous()  # (N, H, W, M·C): no copy for channels-last x
    out = torch.empty(members, n, c * plane)
    spans = _spans(n, rows.numel() < (1 << 22))
    bufs = torch.empty(len(spans), plane * k)  # one image's pooled values per thread
    _in_spans(spans, lambda i, start, stop: lib.polarnet_pool_flat_f32(
        rows.data_ptr(), n, h, w, members, c, int(relu), out.data_ptr(), bufs[i].data_ptr(), start, stop))
    return out


def pool_weight_grad(x: Tensor, grad: Tensor, codes: Tensor, kernel: tuple[int, int],
                     padding: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The weight and bias gradients of :func:`conv_pool_with_codes`'s convolution (one group,
    stride 1) from its output's gradient ``grad`` and ``codes``: each window's gradient times
    the input patch at its recorded position: the convolution's weight gradient from what
    ``max_pool2d``'s and ``relu``'s backward passes give, without the zeros they put at the
    other three positions of every window, in one pass; sums
    run in another order than oneDNN's (about 1e-7 relative apart). Images are split across
    ``torch.get_num_threads()`` threads.

    Args:
        x: the convolution's input, float32 ``(N, C_in, H, W)``.
        grad: the gradient of the pooled output, ``(N, C, H', W')``.
        codes: uint8 ``(N, H', W', C)``, from :func:`conv_pool_with_codes`.
        kernel: the kernel's height and width.
        padding: the convolution's padding.

    Returns:
        ``(C, C_in, KH, KW)`` and ``(C,)``.

    Example:
        >>> x, w = torch.randn(2, 1, 8, 8), torch.randn(3, 1, 5, 5, requires_grad=True)
        >>> y = torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(x, w, padding=2), 2).relu()
        >>> y.sum().backward()
        >>> _, codes = conv_pool_with_codes(x, w.detach(), None, (2, 2), True) if available() else (None, None)
        >>> gw, gb = pool_weight_grad(x, torch.ones(2, 3, 4, 4), codes, (5, 5), (2, 2)) if available() else (w.grad, 0)
        >>> torch.allclose(gw, w.grad, atol=1e-4)
        True
    """
    lib = library()
    if lib is None:
        raise RuntimeError("the native kernel is not available here (see polarnet.native.library)")
    n, cin, h, w = x.shape
    c, ho, wo = grad.shape[1], grad.shape[2], grad.shape[3]
    kh, kw = kernel
    if x.dtype != torch.float32 or grad.dtype != torch.float32 or x.device.type != "cpu" \
            or grad.device.type != "cpu" or grad.shape[0] != n or codes.shape != (n, ho, wo, c) \
            or codes.dtype != torch.uint8 or (h + 2 * padding[0] - kh + 1) // 2 != ho \
            or (w + 2 * padding[1] - kw + 1) // 2 != wo:
        raise ValueError(f"pool_weight_grad takes float32 CPU inputs (N, C_in, H, W), gradients (N, C, H', W') and "
                         f"uint8 codes (N, H', W', C) that fit a {kh}x{kw} kernel with padding {padding}; got "
                         f"{x.dtype} {tuple(x.shape)}, {grad.dtype} {tuple(grad.shape)}, {codes.dtype} "
                         f"{tuple(codes.shape)}")
    tp = -(-(kh * kw * cin) // 16) * 16
    with torch.no_grad():
        if padding != (0, 0):
            x = torch.nn.functional.pad(x, (padding[1], padding[1], padding[0], padding[0]))
        padded = x.permute(0, 2, 3, 1).contiguous()
        g = grad.detach().permute(0, 2, 3, 1).contiguous()
    codes = codes.contiguous()
    spans = _spans(n, n * ho * wo * c * tp < (1 << 22))
    gw, gb = torch.zeros(len(spans), c, tp), torch.zeros(len(spans), c)  # a sum per thread, added below
    args = (padded.data_ptr(), padded.shape[1], padded.shape[2], cin, g.data_ptr(), codes.data_ptr(), ho, wo, c,
            kh, kw, tp)
    if any(_in_spans(spans, lambda i, start, stop: lib.polarnet_pool_wgrad_f32(
            *args, gw[i].data_ptr(), gb[i].data_ptr(), start, stop))):
        raise MemoryError("pool_weight_grad could not allocate its patch buffer")
    weight = gw.sum(0)[:, : kh * kw * cin].reshape(c, kh, kw, cin).permute(0, 3, 1, 2).contiguous()
    return weight, gb.sum(0)


def _conv_pool(x: Tensor, weight: Tensor, bias: Tensor | None, padding: tuple[int, int], relu: bool, groups: int,
               *, codes: bool) -> tuple[Tensor, Tensor | None]:
    lib = library()
    if lib is None:
        raise RuntimeError("the native kernel is not available here (see polarnet.native.library)")
    if x.dtype != torch.float32 or weight.dtype != torch.float32 or x.device.type != "cpu" \
            or weight.device.type != "cpu" or x.dim() != 4 \
            or weight.dim() != 4 or groups < 1 or weight.shape[0] % groups or weight.shape[1] * groups != x.shape[1]:
        raise ValueError(f"conv_pool takes float32 CPU inputs (N, C, H, W) and weights (C', C / groups, KH, KW); got "
                         f"{x.dtype} {tuple(x.shape)} and {weight.dtype} {tuple(weight.shape)}, groups={groups}")
    n, channels, h, w = x.shape
    total, cin, kh, kw = weight.shape
    cout = total // groups
    hp, wp = h + 2 * padding[0], w + 2 * padding[1]
    ho, wo = (hp - kh + 1) // 2, (wp - kw + 1) // 2
    if ho < 1 or wo < 1:
        raise ValueError(f"a {kh}x{kw} kernel on {h}x{w} inputs padded by {padding} leaves nothing to pool")
    cp = -(-cout // 16) * 16
    with torch.no_grad():
        if padding != (0, 0):
            x = torch.nn.functional.pad(x, (padding[1], padding[1], padding[0], padding[0]))
        padded = x.permute(0, 2, 3, 1).contiguous()  # (N, H, W, C): no copy for channels-last x
        packed = weight.new_zeros(groups, kh, kw, cin, cp)
        packed[..., :cout] = weight.detach().reshape(groups, cout, cin, kh, kw).permute(0, 3, 4, 2, 1)
        shift = weight.new_zeros(groups, cp)
        if bias is not None:
            shift[:, :cout] = bias.detach().reshape(groups, cout)
    out = torch.empty(n, ho, wo, total)
    recorded = torch.empty(n, ho, wo, total, dtype=torch.uint8) if codes else None
    args = (padded.data_ptr(), hp, wp, groups, cin, packed.data_ptr(), kh, kw, cp, shift.data_ptr(), out.data_ptr(),
            recorded.data_ptr() if recorded is not None else None, cout, int(relu))
    if any(_in_spans(_spans(n, n * ho * wo * total * kh * kw * cin < (1 << 24)),
                     lambda _, start, stop: lib.polarnet_conv_pool_f32(*args, start, stop))):
        raise MemoryError("conv_pool could not allocate its table of kernel offsets")
    return out.permute(0, 3, 1, 2), recorded
