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
torch paths do the work; the first two say so once per process, in one ``RuntimeWarning``
line. Float32 and float64 only (bf16/fp16 weights take the torch path).
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
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .keyed import _K, _MASK64, _key, _mix

__all__ = ["library", "available", "enforce_", "enforce_rows_", "layer_keys", "mlp_logits", "conv_pool",
           "conv_pool_with_codes", "pool_weight_grad", "pool_flat", "RULE_CODES"]

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

/* NV vectors of 16 taps of CB output channels' weight gradients: each window of a pooled row adds its
   gradient times the patch at its recorded position (slot 4 of a window holds zeros, for code
   255); CB * NV independent sums keep the multiply-adds' latency hidden */
#define POOL_WGRAD_TILE(CB, NV)                                                                    \
static void pool_wgrad_tile_##CB##_##NV(const float *restrict patch, const float *restrict g,        \
                                        const uint8_t *restrict cd, int64_t wo, int64_t c,           \
                                        int64_t tp, float *restrict gw, float *restrict gb) {        \
    v16f acc[CB][NV];                                                                              \
    float live[CB];                                                                                \
    for (int a = 0; a < CB; ++a) {                                                                 \
        live[a] = 0.0f;                                                                            \
        for (int b = 0; b < NV; ++b) acc[a][b] = (v16f){0};                                        \
    }                                                                                              \
    for (int64_t j = 0; j < wo; ++j)                                                               \
        for (int a = 0; a < CB; ++a) {                                                             \
            uint8_t q = cd[j * c + a];                                                             \
            uint32_t bits; /* the gradient, or +0 where code 255 passes none (even inf or NaN) */ \
            memcpy(&bits, g + j * c + a, sizeof bits);                                             \
            bits &= -(uint32_t)(q < 4);                                                            \
            float v;                                                                               \
            memcpy(&v, &bits, sizeof v);                                                           \
            const float *p = patch + (j * 5 + (q < 4 ? q : 4)) * tp;                               \
            for (int b = 0; b < NV; ++b) acc[a][b] += load16(p + b * 16) * v;                      \
            live[a] += v;                                                                          \
        }                                                                                          \
    for (int a = 0; a < CB; ++a) {                                                                 \
        for (int b = 0; b < NV; ++b) {                                                             \
            v16f sum = load16(gw + a * tp + b * 16) + acc[a][b];                                   \
            memcpy(gw + a * tp + b * 16, &sum, sizeof sum);                                        \
        }                                                                                          \
        if (gb) gb[a] += live[a];                                                                  \
    }                                                                                              \
}
POOL_WGRAD_TILE(4, 1)
POOL_WGRAD_TILE(1, 1)
POOL_WGRAD_TILE(4, 2)
POOL_WGRAD_TILE(1, 2)
POOL_WGRAD_TILE(2, 3)
POOL_WGRAD_TILE(1, 3)
POOL_WGRAD_TILE(2, 4)
POOL_WGRAD_TILE(1, 4)
#pragma GCC pop_options

/* The weight and bias gradients of polarnet_conv_pool_f32 (one group) from its output's gradient
   and codes: the convolution's weight gradient without the zeros that max-pooling puts at three
   positions of every window. x: (n, hp, wp, cin), padded; g and codes: (n, ho, wo, c); adds to gw,
   (c, tp) with taps in (row, column, input channel) order and tp >= kh * kw * cin a multiple of
   16, and to gb, (c). */
int polarnet_pool_wgrad_f32(const float *x, int64_t hp, int64_t wp, int64_t cin, const float *g,
                            const uint8_t *codes, int64_t ho, int64_t wo, int64_t c, int64_t kh, int64_t kw,
                            int64_t tp, float *gw, float *gb, int64_t k0, int64_t k1) {
    /* per window of a pooled row: its 4 positions' patches, then a zero slot (for code 255), and
       room for the last copy's overrun */
    const size_t bytes = sizeof(float) * (size_t)(wo * 5 * tp + 16); /* a multiple of 64 */
    float *patch = aligned_alloc(64, bytes); /* slots on cache lines: the tiles' loads never split */
    if (!patch) return -1;
    memset(patch, 0, bytes);
    const int64_t run = kw * cin, chunks = (run + 15) / 16; /* a patch row: contiguous in x */
    const float *end = x + k1 * hp * wp * cin; /* reads stay below: x's last image may end there */
    for (int64_t k = k0; k < k1; ++k)
        for (int64_t i = 0; i < ho; ++i) {
            for (int64_t j = 0; j < wo; ++j)
                for (int q = 0; q < 4; ++q) {
                    const float *base = x + ((k * hp + 2 * i + q / 2) * wp + 2 * j + q % 2) * cin;
                    float *p = patch + (j * 5 + q) * tp;
                    /* rows in order, 16 at a time: a row's overrun is overwritten by the next row's
                       copy; the last row's lands in the taps' padding and the next slot, which is
                       copied after (a zero slot is never overrun: the one before it is copied
                       by the scalar loop) */
                    for (int64_t r = 0; r < kh; ++r) {
                        const float *src = base + r * wp * cin;
                        if (q < 3 && src + chunks * 16 <= end)
                            for (int64_t u = 0; u < chunks; ++u) memcpy(p + r * run + 16 * u, src + 16 * u, 64);
                        else
                            for (int64_t u = 0; u < run; ++u) p[r * run + u] = src[u];
                    }
                }
            const float *gr = g + (k * ho + i) * wo * c;
            const uint8_t *cr = codes + (k * ho + i) * wo * c;
            for (int64_t v0 = 0; v0 < tp / 16; v0 += 4) {
                const int64_t nv = tp / 16 - v0 < 4 ? tp / 16 - v0 : 4;
                const float *pv = patch + v0 * 16;
                float *bias = v0 ? 0 : gb; /* the bias's sum once, with the first taps */
                for (int64_t ch = 0; ch < c;) {
                    float *out = gw + ch * tp + v0 * 16, *ob = bias ? bias + ch : 0;
#define ARGS pv, gr + ch, cr + ch, wo, c, tp, out, ob
#define TILE(CB, NV) if (ch + CB <= c) { pool_wgrad_tile_##CB##_##NV(ARGS); ch += CB; } \
                     else { pool_wgrad_tile_1_##NV(ARGS); ++ch; }
                    if (nv == 1) TILE(4, 1) /* 4-8 independent sums per tile */
                    else if (nv == 2) TILE(4, 2)
                    else if (nv == 3) TILE(2, 3)
                    else TILE(2, 4)
#undef TILE
#undef ARGS
                }
            }
        }
    free(patch);
    return 0;
}

/* the larger, or a NaN if either is one */
static inline v16f max16(v16f a, v16f b) {
    v16i take = (b > a) | (b != b);
    return (v16f)(((v16i)b & take) | ((v16i)a & ~take));
}
static inline float max1(float a, float b) { return b > a || b != b ? b : a; }

/* max_pool2d(x, 2) of the members' grouped channels, then relu if asked, laid out member by
   member and flattened: x (n, h, w, m * c), out (m, n, c * ho * wo) with ho = h / 2, wo = w / 2.
   The same values as max_pool2d (a NaN wins) and relu (keeps NaN). buf holds one image's pooled
   values, (ho * wo, m * c). */
void polarnet_pool_flat_f32(const float *x, int64_t n, int64_t h, int64_t w, int64_t m, int64_t c, int relu,
                            float *out, float *buf, int64_t k0, int64_t k1) {
    const int64_t ho = h / 2, wo = w / 2, k = m * c, plane = ho * wo;
    for (int64_t img = k0; img < k1; ++img) {
        const float *xi = x + img * h * w * k;
        for (int64_t i = 0; i < ho; ++i)
            for (int64_t j = 0; j < wo; ++j) {
                const float *a = xi + ((2 * i) * w + 2 * j) * k, *b = a + w * k;
                float *o = buf + (i * wo + j) * k;
                int64_t l = 0;
                for (; l + 16 <= k; l += 16) {
                    v16f p = max16(load16(a + l), load16(b + l)), q = max16(load16(a + k + l), load16(b + k + l));
                    v16f v = max16(p, q);
                    if (relu) v = (v16f)((v16i)v & ~(v < (v16f){0}));
                    memcpy(o + l, &v, sizeof v);
                }
                for (; l < k; ++l) {
                    float p = max1(a[l], b[l]), v = max1(p, max1(a[k + l], b[k + l]));
                    o[l] = relu && v < 0.0f ? 0.0f : v;
                }
            }
        for (int64_t l = 0; l < k; ++l) { /* each channel's plane, contiguous in out */
            float *dst = out + ((l / c) * n + img) * c * plane + (l % c) * plane;
            for (int64_t at = 0; at < plane; ++at) dst[at] = buf[at * k + l];
        }
    }
}

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
"""

_FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-std=c11", "-fno-fast-math"]
_LOCK = threading.Lock()
_LIBRARY: ctypes.CDLL | None = None
_TRIED = False
_WARNED = "POLARNET_NATIVE_WARNED"  # set once a process has said the kernels are off
#: entries per thread below which a layer is done in one call (threads cost ~50 µs to hand out)
_SPLIT = 1 << 20


_P, _I, _C = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int  # pointer, int64_t, int


def _enforce(real: type) -> tuple[type, list[type]]:
    return _I, [_P, _P, _I, _I, _C, real, ctypes.c_uint64, _C, _P, _P]


def _enforce_rows(real: type) -> tuple[type | None, list[type]]:
    return None, [_P, _I, _P, _I, _I, _I, _P, _P, real, _P, _P]


#: each C function's return and argument types, in the order the C source declares them
_SIGNATURES: dict[str, tuple[type | None, list[type]]] = {
    "polarnet_enforce_f32": _enforce(ctypes.c_float),
    "polarnet_enforce_f64": _enforce(ctypes.c_double),
    "polarnet_enforce_rows_f32": _enforce_rows(ctypes.c_float),
    "polarnet_enforce_rows_f64": _enforce_rows(ctypes.c_double),
    "polarnet_conv_pool_f32": (_C, [_P, _I, _I, _I, _I, _P, _I, _I, _I, _P, _P, _P, _I, _C, _I, _I]),
    "polarnet_pool_flat_f32": (None, [_P, _I, _I, _I, _I, _I, _C, _P, _P, _I, _I]),
    "polarnet_pool_wgrad_f32": (_C, [_P, _I, _I, _I, _P, _P, _I, _I, _I, _I, _I, _I, _P, _P, _I, _I]),
    "polarnet_mlp_logits_f32": (None, [_P, _I, _I, _P, _P, _P, _P, _I, _P, _I, _I]),
}


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


def _first_line(error: BaseException) -> str:
    """The gist of a failed build: the compiler's first line of errors, else the exception."""
    stderr = getattr(error, "stderr", None)
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else str(stderr or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines:
        return lines[0][:200]
    if isinstance(error, subprocess.CalledProcessError):
        return f"exit status {error.returncode}, no message"
    return f"{type(error).__name__}: {error}"[:200]


def _unavailable(why: str) -> None:
    """Say once, in one line, that the kernels are off: a silent fallback would leave a user
    wondering why training is slower than the benchmarks. No source line is printed under it
    (the warning's location is the module, not a line of it), and POLARNET_NATIVE=0 silences it.
    A sweep's worker processes inherit the mark left in the environment, so a command says it
    once, not once per worker."""
    if os.environ.get(_WARNED):
        return
    message = (f"the C kernels are off: {why}; the torch paths do their work (the same "
               f"numbers, slower). Install a C compiler, or set POLARNET_NATIVE=0 to turn them off quietly")
    warnings.warn_explicit(message, RuntimeWarning, filename="polarnet.native", lineno=0, module=__name__)
    os.environ[_WARNED] = "1"


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
            _unavailable("no C compiler ($CC is unset and PATH has no cc, gcc or clang)")
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
            except (OSError, subprocess.SubprocessError) as e:
                _unavailable(f"the C compiler {compiler!r} could not build them ({_first_line(e)})")
                return None
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
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
