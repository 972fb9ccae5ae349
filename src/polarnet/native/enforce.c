/* Freeze-SGD's reset of the weights that break their template, one layer (polarnet_enforce_*)
   or an ensemble's picked members (polarnet_enforce_rows_*); see polarnet/native/__init__.py */
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

/* the widest vectors this build may use: the engines' kernels (mlp.c, conv_pool.c) are written for
   16 floats, one AVX-512 register; built for AVX2 they spill their tiles (see native/kernels.py) */
int polarnet_vector_bits(void) {
#if defined(__AVX512F__)
    return 512;
#elif defined(__AVX2__) || defined(__AVX__)
    return 256;
#else
    return 128;
#endif
}
