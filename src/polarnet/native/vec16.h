/* 16-lane float vectors (GCC/Clang vector extensions): one AVX-512 register, or two AVX2 ones */
#ifndef POLARNET_VEC16_H
#define POLARNET_VEC16_H

#include <stdint.h>
#include <string.h>

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

static inline v16f load16(const float *p) { v16f v; memcpy(&v, p, sizeof v); return v; }

#endif
