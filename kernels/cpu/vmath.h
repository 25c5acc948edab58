/* Shared by rtclone's native CPU kernels: x86 detection, the CPU check and the vectorised
 * exp / sigmoid / tanh (Cody-Waite range reduction + degree-7 Taylor polynomial, relative error
 * <= ~2e-7 on [-87, 88]; sigmoid = 1 / (1 + exp(-x)); tanh = 2 sigmoid(2x) - 1). Every function is
 * static: each extension gets its own copy.
 */
#ifndef RTCLONE_VMATH_H
#define RTCLONE_VMATH_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RT_X86 1
#else
#define RT_X86 0
#endif

static inline float sigmoid_s(float x) { return 1.0f / (1.0f + expf(-x)); }

static inline int have_avx2(void) {
#if RT_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}

#if RT_X86
#define AVX2_FN __attribute__((target("avx2,fma,f16c")))

AVX2_FN static inline __m256 exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.7f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

AVX2_FN static inline __m256 sigmoid_avx2(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

AVX2_FN static inline __m256 tanh_avx2(__m256 x) {
    const __m256 s = sigmoid_avx2(_mm256_add_ps(x, x));
    return _mm256_sub_ps(_mm256_add_ps(s, s), _mm256_set1_ps(1.0f));
}

/* y = exp (kind 0) / sigmoid (1) / tanh (2) of x, n values (x == y allowed) */
AVX2_FN static inline void nonlin_avx2(int kind, const float *x, float *y, long n) {
    long k = 0;
    for (; k + 8 <= n; k += 8) {
        const __m256 v = _mm256_loadu_ps(x + k);
        _mm256_storeu_ps(y + k, kind == 0 ? exp_avx2(v) : kind == 1 ? sigmoid_avx2(v) : tanh_avx2(v));
    }
    for (; k < n; k++) y[k] = kind == 0 ? expf(x[k]) : kind == 1 ? sigmoid_s(x[k]) : tanhf(x[k]);
}
#endif

#endif
