"""Freeze-SGD's CPU kernel in C: one pass over a layer, resets computed for the violations only.

On a CPU the eager sparse path (:class:`polarnet.freeze.Enforcer`) spends most of its time in
``nonzero`` and in the gathers and scatters around it: about 1 ns per weight however few
weights break the template. This kernel reads each weight and its template sign once, 64 at a
time into a bit mask (a loop the compiler vectorises), and visits only the set bits: the
violations, whose resets it computes exactly as the torch paths do (the same comparisons, the
same SplitMix64 keyed uniforms of :mod:`polarnet.keyed`, the same float operations in the
weight's dtype), so its weights equal theirs bit for bit (a test holds it to that).

It is compiled from the C source below with the system's C compiler the first time it is
needed, into ``$XDG_CACHE_HOME/polarnet`` (else ``~/.cache/polarnet``), once per source,
compiler and CPU, and loaded with :mod:`ctypes`, which releases the GIL during a call, so a
large layer is split across ``torch.get_num_threads()`` threads. No compiler, a failed build,
or ``POLARNET_NATIVE=0`` in the environment: :func:`library` is ``None`` and the
torch paths do the work. Float32 and float64 only (bf16/fp16 weights take the torch path).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from .keyed import _K, _MASK64, _key, _mix

__all__ = ["library", "available", "enforce_", "enforce_rows_", "layer_keys", "mlp_logits", "conv_pool",
           "conv_pool_with_codes", "pool_scatter", "RULE_CODES"]

#: the built-in reset rules' numbers in the kernel
RULE_CODES = {"posRand": 0, "posCon": 1, "zero": 2, "flip": 3}

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t mix(uint64_t x) {
    x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27; x *= 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* the row-major (logical) position of memory index m, the weight's dimensions listed in
   memory order with each one's logical stride */
static inline uint64_t logical(int64_t m, int ndim, const int64_t *shape, const int64_t *strides) {
    uint64_t pos = 0;
    for (int d = ndim - 1; d >= 0; --d) {
        int64_t c = m % shape[d];
        m /= shape[d];
        pos += (uint64_t)c * (uint64_t)strides[d];
    }
    return pos;
}

#define ENFORCE(NAME, T)                                                                          \
int64_t NAME(T *w, const int8_t *code, int64_t start, int64_t stop, int rule, T eps, uint64_t base, \
             int ndim, const int64_t *shape, const int64_t *strides) {                            \
    int64_t count = 0;                                                                            \
    uint8_t flag[64];                                                                             \
    for (int64_t b = start; b < stop; b += 64) {                                                  \
        int64_t len = b + 64 < stop ? 64 : stop - b;                                              \
        const T *wb = w + b;                                                                      \
        const int8_t *cb = code + b;                                                              \
        if (len < 64) memset(flag, 0, sizeof flag);                                               \
        for (int64_t k = 0; k < len; ++k) /* vectorised: no branch, a byte per entry */            \
            flag[k] = (wb[k] != 0) & ((cb[k] == 0) | ((signbit(wb[k]) != 0) != (cb[k] < 0)));     \
        for (int j = 0; j < 64; j += 8) {                                                         \
            uint64_t word;                                                                        \
            memcpy(&word, flag + j, 8);                                                           \
            while (word) {                                                                        \
                int byte = __builtin_ctzll(word) >> 3;                                            \
                word &= ~(0xFFULL << (8 * byte));                                                 \
                int64_t i = b + j + byte;                                                         \
                T v = w[i];                                                                       \
                ++count;                                                                          \
                if (code[i] == 0) { w[i] = 0; continue; }                                         \
                T s = -(T)((0 < v) - (v < 0)); /* torch.sign(v).neg(): -0.0 for NaN */            \
                if (rule == 0) {                                                                  \
                    uint64_t pos = ndim ? logical(i, ndim, shape, strides) : (uint64_t)i;         \
                    float top = (float)((mix(base ^ pos) >> 40) & 0xFFFFFF);                      \
                    T u = (T)(top * 5.9604644775390625e-08f);                                     \
                    w[i] = (u * eps) * s;                                                         \
                } else if (rule == 1) {                                                           \
                    w[i] = s * eps;                                                               \
                } else if (rule == 2) {                                                           \
                    w[i] = s * (T)0;                                                              \
                } else {                                                                          \
                    w[i] = -v;                                                                    \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
    return count;                                                                                 \
}

ENFORCE(polarnet_enforce_f32, float)
ENFORCE(polarnet_enforce_f64, double)

/* rows[i] of stacked weights (an ensemble's members), each its own rule and key: counts[i] */
#define ENFORCE_ROWS(NAME, ONE, T)                                                                \
void NAME(T *w, int64_t w_stride, const int8_t *code, int64_t code_stride, int64_t len,           \
          int64_t n, const int64_t *rows, const int32_t *rule, T eps, const int64_t *keys,         \
          int64_t *counts) {                                                                      \
    for (int64_t i = 0; i < n; ++i)                                                               \
        counts[i] = ONE(w + rows[i] * w_stride, code + rows[i] * code_stride, 0, len, rule[i], eps, \
                        (uint64_t)keys[i], 0, 0, 0);                                              \
}

ENFORCE_ROWS(polarnet_enforce_rows_f32, polarnet_enforce_f32, float)
ENFORCE_ROWS(polarnet_enforce_rows_f64, polarnet_enforce_f64, double)

/* z[m, i] = b2[m] + sum_h w2[m, h] relu(b1[m, h] + sum_d w1[m, h, d] x[i, d]) for members
   m0 <= m < m1: a one-hidden-layer MLP's logits per member and sample, 16 hidden units at a
   time in one vector register (GCC/Clang vector extensions: AVX-512, or two AVX2 halves) */
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

static inline v16f load16(const float *p) { v16f v; memcpy(&v, p, sizeof v); return v; }

void polarnet_mlp_logits_f32(const float *x, int64_t n, int64_t d, const float *w1, const float *b1,
                             const float *w2, const float *b2, int64_t h, float *z, int64_t m0, int64_t m1) {
    int64_t hp = (h + 15) / 16 * 16;
    float *wt = malloc(sizeof(float) * (size_t)(hp * (d + 2)));
    if (!wt) return;
    float *bias = wt + hp * d, *out = bias + hp;
    const v16f zero = {0};
    for (int64_t m = m0; m < m1; ++m) {
        /* member m's first layer as (d, hp), its bias and output weights, zero-padded */
        for (int64_t k = 0; k < d; ++k)
            for (int64_t j = 0; j < hp; ++j)
                wt[k * hp + j] = j < h ? w1[(m * h + j) * d + k] : 0.0f;
        for (int64_t j = 0; j < hp; ++j) {
            bias[j] = j < h ? b1[m * h + j] : 0.0f;
            out[j] = j < h ? w2[m * h + j] : 0.0f;
        }
        for (int64_t i = 0; i < n; ++i) {
            const float *xi = x + i * d;
            v16f part = zero;
            for (int64_t j0 = 0; j0 < hp; j0 += 16) {
                v16f a = load16(bias + j0);
                for (int64_t k = 0; k < d; ++k)
                    a += load16(wt + k * hp + j0) * xi[k];
                a = (v16f)((v16i)a & ~(a <= zero)); /* relu, keeping NaN as torch.relu does */
                part += load16(out + j0) * a;
            }
            float total = 0.0f;
            for (int l = 0; l < 16; ++l) total += part[l];
            z[m * n + i] = b2[m] + total;
        }
    }
    free(wt);
}

/* relu(max_pool2d(conv2d(x, w, bias, groups=groups), 2)) in one pass, float32, stride 1: the four
   outputs of each 2x2 window (of P windows side by side) for NB blocks of 16 channels of one
   group are summed in registers, pooled and stored; the full-size convolution output is never
   written. x: (n, hp, wp, groups * cin), already padded; w: (groups, kh, kw, cin, cp), cp = 16 *
   blocks per group, zero-padded channels; bias: (groups, cp); out: (n, ho, wo, groups * cout),
   ho = (hp - kh + 1) / 2. Sums are fused multiply-adds (as oneDNN's are): a scoped fp-contract
   keeps the rest of this file's arithmetic exactly as written. */
#pragma GCC push_options
#pragma GCC optimize ("fp-contract=fast")
/* NB blocks of 16 channels of one group, P pooled windows side by side: one loop over the taps
   (row, column, input channel; xoff[t] is tap t's offset in x) keeps the sums in registers */
#define CONV_POOL_TILE(NB, P)                                                                      \
static void conv_pool_tile_##NB##_##P(const float *restrict xg, const float *restrict wg,             \
                                      const float *restrict bias, float *restrict o,                 \
                                      const int64_t *restrict xoff, int64_t taps, int64_t cx,        \
                                      int64_t down, int64_t cp, int64_t ostride, int64_t cout,       \
                                      int relu, uint8_t *restrict codes) {                           \
    v16f acc[P][4][NB];                                                                            \
    for (int p = 0; p < P; ++p)                                                                    \
        for (int q = 0; q < 4; ++q)                                                                \
            for (int b = 0; b < NB; ++b) acc[p][q][b] = load16(bias + b * 16);                     \
    for (int64_t t = 0; t < taps; ++t) {                                                           \
        const float *x0 = xg + xoff[t];                                                            \
        v16f wv[NB];                                                                               \
        for (int b = 0; b < NB; ++b) wv[b] = load16(wg + t * cp + b * 16);                         \
        for (int p = 0; p < P; ++p) {                                                              \
            const float *xp = x0 + 2 * p * cx;                                                     \
            float v0 = xp[0], v1 = xp[cx], v2 = xp[down], v3 = xp[down + cx];                      \
            for (int b = 0; b < NB; ++b) {                                                         \
                acc[p][0][b] += wv[b] * v0;                                                        \
                acc[p][1][b] += wv[b] * v1;                                                        \
                acc[p][2][b] += wv[b] * v2;                                                        \
                acc[p][3][b] += wv[b] * v3;                                                        \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    for (int p = 0; p < P; ++p)                                                                    \
        for (int b = 0; b < NB; ++b) {                                                             \
            /* max_pool2d's scan: a larger value or a NaN takes over, a tie keeps the first */     \
            v16f m = acc[p][0][b];                                                                 \
            v16i at = {0};                                                                         \
            for (int q = 1; q < 4; ++q) {                                                          \
                v16f v = acc[p][q][b];                                                             \
                v16i take = (v > m) | (v != v);                                                    \
                m = (v16f)(((v16i)v & take) | ((v16i)m & ~take));                                  \
                at = (at & ~take) | (take & q);                                                    \
            }                                                                                      \
            if (relu) {                                                                            \
                v16i live = m > (v16f){0}; /* relu's gradient: 0 where its output isn't > 0 */      \
                m = (v16f)((v16i)m & ~(m <= (v16f){0})); /* keeps NaN, as torch.relu */            \
                at = (at & live) | (~live & 255);                                                  \
            }                                                                                      \
            int64_t c0 = b * 16, len = cout - c0 < 16 ? cout - c0 : 16;                             \
            memcpy(o + p * ostride + c0, &m, sizeof(float) * (size_t)len);                          \
            if (codes)                                                                             \
                for (int64_t l = 0; l < len; ++l) codes[p * ostride + c0 + l] = (uint8_t)at[l];     \
        }                                                                                          \
}
CONV_POOL_TILE(4, 1)
CONV_POOL_TILE(3, 1)
CONV_POOL_TILE(2, 2)
CONV_POOL_TILE(2, 1)
CONV_POOL_TILE(1, 4)
CONV_POOL_TILE(1, 1)
#pragma GCC pop_options

int polarnet_conv_pool_f32(const float *x, int64_t hp, int64_t wp, int64_t groups, int64_t cin, const float *w,
                            int64_t kh, int64_t kw, int64_t cp, const float *bias, float *out, uint8_t *codes,
                            int64_t cout, int relu, int64_t k0, int64_t k1) {
    const int64_t cx = groups * cin, ho = (hp - kh + 1) / 2, wo = (wp - kw + 1) / 2, blocks = cp / 16;
    const int64_t ostride = groups * cout, down = wp * cx, taps = kh * kw * cin;
    int64_t *xoff = malloc(sizeof(int64_t) * (size_t)taps);
    if (!xoff) return -1;
    for (int64_t r = 0, t = 0; r < kh; ++r)
        for (int64_t s = 0; s < kw; ++s)
            for (int64_t c = 0; c < cin; ++c, ++t) xoff[t] = (r * wp + s) * cx + c;
    for (int64_t k = k0; k < k1; ++k)
        for (int64_t i = 0; i < ho; ++i)
            for (int64_t g = 0; g < groups; ++g)
                for (int64_t b0 = 0; b0 < blocks; b0 += 4) {
                    int64_t nb = blocks - b0 < 4 ? blocks - b0 : 4, cg = cout - b0 * 16;
                    const float *wg = w + g * taps * cp + b0 * 16, *bg = bias + g * cp + b0 * 16;
                    for (int64_t j = 0; j < wo;) {
                        const float *xg = x + ((k * hp + 2 * i) * wp + 2 * j) * cx + g * cin;
                        int64_t at = ((k * ho + i) * wo + j) * ostride + g * cout + b0 * 16;
                        float *o = out + at;
                        uint8_t *cd = codes ? codes + at : 0;
#define ARGS xg, wg, bg, o, xoff, taps, cx, down, cp, ostride, cg, relu, cd
                        if (nb == 4) { conv_pool_tile_4_1(ARGS); j += 1; }
                        else if (nb == 3) { conv_pool_tile_3_1(ARGS); j += 1; }
                        else if (nb == 2 && j + 2 <= wo) { conv_pool_tile_2_2(ARGS); j += 2; }
                        else if (nb == 2) { conv_pool_tile_2_1(ARGS); j += 1; }
                        else if (j + 4 <= wo) { conv_pool_tile_1_4(ARGS); j += 4; }
                        else { conv_pool_tile_1_1(ARGS); j += 1; }
#undef ARGS
                    }
                }
    free(xoff);
    return 0;
}

/* max_pool2d's (and a relu's) gradient after polarnet_conv_pool_f32 with codes: gin (n, hc, wc, c)
   holds g at each window's recorded position and 0 elsewhere (code 255: the relu's zero; a last
   odd row or column is outside every window) */
static void scatter_window(const float *restrict src, const uint8_t *restrict cd, float *restrict dst, uint8_t q,
                           int64_t c) {
    for (int64_t l = 0; l < c; ++l) dst[l] = cd[l] == q ? src[l] : 0.0f; /* vectorised */
}

void polarnet_pool_scatter_f32(const float *g, const uint8_t *codes, float *gin, int64_t hc, int64_t wc,
                               int64_t c, int64_t k0, int64_t k1) {
    int64_t ho = hc / 2, wo = wc / 2;
    for (int64_t k = k0; k < k1; ++k) {
        float *image = gin + k * hc * wc * c;
        for (int64_t i = 0; i < ho; ++i) {
            for (int64_t j = 0; j < wo; ++j) {
                int64_t at = ((k * ho + i) * wo + j) * c;
                for (uint8_t q = 0; q < 4; ++q)
                    scatter_window(g + at, codes + at, image + ((2 * i + q / 2) * wc + 2 * j + q % 2) * c, q, c);
            }
            if (wc % 2) /* a last odd column: outside every window */
                for (int64_t y = 2 * i; y < 2 * i + 2; ++y)
                    memset(image + (y * wc + wc - 1) * c, 0, sizeof(float) * (size_t)c);
        }
        if (hc % 2)
            memset(image + (hc - 1) * wc * c, 0, sizeof(float) * (size_t)(wc * c));
    }
}
"""

_FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-std=c11", "-fno-fast-math"]
_LOCK = threading.Lock()
_LIBRARY: ctypes.CDLL | None = None
_TRIED = False
#: entries per thread below which a layer is done in one call (threads cost ~50 µs to hand out)
_SPLIT = 1 << 20


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "polarnet"


def _cpu() -> str:
    """What ``-march=native`` compiles for: the CPU's model and flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [line for line in text.splitlines() if line.startswith(("model name", "flags"))][:2]
        return "\n".join(lines)
    except OSError:
        return platform.processor() or platform.machine()


def _build(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        source = Path(tmp) / "enforce.c"
        source.write_text(_SOURCE)
        built = Path(tmp) / target.name
        subprocess.run([compiler, *_FLAGS, str(source), "-o", str(built)], check=True, capture_output=True, timeout=120)
        os.replace(built, target)  # atomic: a concurrent process sees the old file or the new one


def library() -> ctypes.CDLL | None:
    """The compiled kernel, built on first use (see the module docstring), or ``None``.

    Example:
        >>> lib = library()
        >>> lib is None or hasattr(lib, "polarnet_enforce_f32")
        True
    """
    global _LIBRARY, _TRIED
    if _TRIED:
        return _LIBRARY
    with _LOCK:
        if _TRIED:
            return _LIBRARY
        _TRIED = True
        if os.environ.get("POLARNET_NATIVE", "1") == "0":
            return None
        compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if compiler is None:
            return None
        digest = hashlib.sha256("\0".join([_SOURCE, " ".join(_FLAGS), compiler, _cpu()]).encode()).hexdigest()[:16]
        target = _cache_dir() / f"enforce-{digest}.so"
        try:
            if not target.exists():
                _build(compiler, target)
            lib = ctypes.CDLL(str(target))
        except (OSError, subprocess.SubprocessError):
            try:  # an unwritable cache: build in a private temporary folder instead
                target = Path(tempfile.mkdtemp(prefix="polarnet-native-")) / target.name
                _build(compiler, target)
                lib = ctypes.CDLL(str(target))
            except (OSError, subprocess.SubprocessError):
                return None
        for name, real in (("polarnet_enforce_f32", ctypes.c_float), ("polarnet_enforce_f64", ctypes.c_double)):
            fn = getattr(lib, name)
            fn.restype = ctypes.c_int64
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, real,
                           ctypes.c_uint64, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        for name, real in (("polarnet_enforce_rows_f32", ctypes.c_float),
                           ("polarnet_enforce_rows_f64", ctypes.c_double)):
            fn = getattr(lib, name)
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                           ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, real, ctypes.c_void_p, ctypes.c_void_p]
        fused = lib.polarnet_conv_pool_f32
        fused.restype = ctypes.c_int
        fused.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                          ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                          ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_int64,
                          ctypes.c_int64]
        scatter = lib.polarnet_pool_scatter_f32
        scatter.restype = None
        scatter.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                            ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
        logits = lib.polarnet_mlp_logits_f32
        logits.restype = None
        logits.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                           ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                           ctypes.c_int64]
        _LIBRARY = lib
        return lib


def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the kernel can enforce weights of ``dtype`` here.

    Example:
        >>> available(torch.bfloat16)
        False
    """
    return dtype in (torch.float32, torch.float64) and library() is not None


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, threads, pool)


def _pool(threads: int) -> ThreadPoolExecutor:
    """Worker threads for the kernels: a new pool when torch's thread count changes, and in a
    forked child (a parent's threads don't survive ``fork``; its pool would wait forever)."""
    global _POOL
    if _POOL is None or _POOL[:2] != (os.getpid(), threads):
        _POOL = (os.getpid(), threads, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="polarnet-native"))
    return _POOL[2]


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

    threads = max(1, torch.get_num_threads())
    if threads == 1 or n < 2 * _SPLIT:
        return run(0, n)
    size = -(-n // threads // 64) * 64  # whole 64-entry blocks per thread
    bounds = [(s, min(s + size, n)) for s in range(0, n, size)]
    return sum(_pool(threads).map(lambda b: run(*b), bounds))


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
        >>> n.tolist() if n is not None else [1, 0], w[1].tolist() if n is not None else [0.3, -0.1]
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

    threads = max(1, torch.get_num_threads())
    if threads == 1 or len(rows) < 2 or len(rows) * length < 2 * _SPLIT:
        run(0, len(rows))
    else:
        per = -(-len(rows) // threads)
        list(_pool(threads).map(lambda s: run(s, min(s + per, len(rows))), range(0, len(rows), per)))
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
    threads = max(1, min(torch.get_num_threads(), m))
    if threads == 1 or m * n * h < (1 << 22):
        lib.polarnet_mlp_logits_f32(*args, 0, m)
        return z
    per = -(-m // threads)
    list(_pool(threads).map(lambda s: lib.polarnet_mlp_logits_f32(*args, s, min(s + per, m)), range(0, m, per)))
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
    isn't > 0). :func:`pool_scatter` turns an output gradient into the convolution output's.

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


def pool_scatter(grad: Tensor, codes: Tensor, size: tuple[int, int]) -> Tensor:
    """The gradient of :func:`conv_pool_with_codes`'s convolution output (``size``: its height
    and width, before pooling) from its output's gradient: each window's gradient at its
    recorded position, 0 elsewhere; what ``max_pool2d``'s and ``relu``'s backward passes give.

    Returns:
        ``(N, C, H, W)`` in channels-last memory.

    Example:
        >>> codes = torch.tensor([[[[1]]]], dtype=torch.uint8)
        >>> g = torch.tensor([[[[0.0, 5.0], [0.0, 0.0]]]])
        >>> g = pool_scatter(torch.tensor([[[[5.0]]]]), codes, (2, 2)) if available() else g
        >>> g[0, 0].tolist()
        [[0.0, 5.0], [0.0, 0.0]]
    """
    lib = library()
    if lib is None:
        raise RuntimeError("the native kernel is not available here (see polarnet.native.library)")
    n, c, ho, wo = grad.shape
    if codes.shape != (n, ho, wo, c) or codes.dtype != torch.uint8 or grad.dtype != torch.float32 \
            or size[0] // 2 != ho or size[1] // 2 != wo:
        raise ValueError(f"pool_scatter takes float32 gradients (N, C, H', W'), uint8 codes (N, H', W', C) and the "
                         f"size before pooling; got {tuple(grad.shape)}, {codes.dtype} {tuple(codes.shape)}, {size}")
    g = grad.detach().permute(0, 2, 3, 1).contiguous()
    out = torch.empty(n, size[0], size[1], c)
    threads = max(1, min(torch.get_num_threads(), n))
    args = (g.data_ptr(), codes.data_ptr(), out.data_ptr(), size[0], size[1], c)
    if threads == 1 or out.numel() < (1 << 22):
        lib.polarnet_pool_scatter_f32(*args, 0, n)
    else:
        per = -(-n // threads)
        list(_pool(threads).map(lambda s: lib.polarnet_pool_scatter_f32(*args, s, min(s + per, n)), range(0, n, per)))
    return out.permute(0, 3, 1, 2)


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
    threads = max(1, min(torch.get_num_threads(), n))
    if threads == 1 or n * ho * wo * total * kh * kw * cin < (1 << 24):
        failed = lib.polarnet_conv_pool_f32(*args, 0, n) != 0
    else:
        per = -(-n // threads)
        failed = any(_pool(threads).map(lambda s: lib.polarnet_conv_pool_f32(*args, s, min(s + per, n)),
                                        range(0, n, per)))
    if failed:
        raise MemoryError("conv_pool could not allocate its table of kernel offsets")
    return out.permute(0, 3, 1, 2), recorded
