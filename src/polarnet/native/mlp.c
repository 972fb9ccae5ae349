#include <stdlib.h>

#include "vec16.h"

/* z[m, i] = b2[m] + sum_h w2[m, h] relu(b1[m, h] + sum_d w1[m, h, d] x[i, d]) for members
   m0 <= m < m1: a one-hidden-layer MLP's logits per member and sample, 16 hidden units at a
   time in one vector register (GCC/Clang vector extensions: AVX-512, or two AVX2 halves) */
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
