#include <stdlib.h>

#include "vec16.h"

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
