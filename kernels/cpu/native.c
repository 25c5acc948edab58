/* rtclone native CPU kernel: the fused, autoregressive WaveRNN sample loop.
 *
 * One call runs T steps of  I -> GRU1 -> GRU2 -> FC1 -> FC2 -> FC3 -> sample -> next input  for B
 * independent streams, with no Python per sample and the GIL released. Streams are dealt to
 * OpenMP threads in contiguous shares; inside a thread, up to 4 streams advance in lockstep so
 * that every weight block loaded serves all of them (16x1 AVX2 path). The spec is /work/notes/wavernn_spec.md; the torch reference is reference.py.
 *
 * Weights are block-sparse (rtclone.sparse.pack, BSR) with blocks transposed to (nnzb, bw, bh)
 * so that a block's bh rows are contiguous. A matrix whose col_idx is NULL is "dense": every
 * block is present and block k of block-row r sits at block-column k - row_ptr[r]. Values are
 * float32 or float16 bits (converted with F16C); accumulation is float32, the RAW sampler's
 * cumulative sum is float64 (as torch.cumsum on CPU).
 *
 * Each stage multiplies its matrix with an input vector [recurrent part | conditioning slice]:
 * a matrix with fewer columns than that skips the conditioning columns, whose product the caller
 * precomputed for all steps (an "addend", (B, T, rows)). Dispatch: AVX2+FMA+F16C kernels when the
 * CPU has them (__builtin_cpu_supports), a portable scalar path otherwise.
 *
 * Vectorised exp (vmath.h, shared with gru_train.c): Cody-Waite range reduction + degree-7 Taylor
 * polynomial, relative error <= ~2e-7 on [-87, 88]; sigmoid = 1 / (1 + exp(-x)) (exact division); tanh = 2 sigmoid(2x) - 1
 * (absolute error <= ~3e-7). The scalar path uses libm expf/tanhf.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "vmath.h"

typedef struct {
    int rows, cols, bh, bw;
    const int32_t *row_ptr; /* (rows / bh + 1,) */
    const int32_t *col_idx; /* (nnzb,) or NULL when dense */
    const void *vals;       /* (nnzb, bw, bh) float32 or float16 bits */
    int f16;
} Mat;

enum { M_I = 0, M_IH1, M_HH1, M_IH2, M_HH2, M_FC1, M_FC2, M_FC3, N_MATS };

typedef struct {
    Mat m[N_MATS];
    const float *bias[N_MATS]; /* (rows,) each */
    int R, F, n_out, feat, aux, mode_mol, use_avx2;
} Model;

/* ------------------------------------------------------------------------------------------ */
/* portable scalar path                                                                        */
/* ------------------------------------------------------------------------------------------ */
static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (e == 0) {
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    if (e == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((e + 112u) << 23) | (man << 13);
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

static inline float mat_val(const Mat *m, long idx) {
    return m->f16 ? half_to_float(((const uint16_t *)m->vals)[idx]) : ((const float *)m->vals)[idx];
}

/* y = b0 (+ b1) + W v, any block shape */
static void matvec_scalar(const Mat *m, const float *v, const float *b0, const float *b1, float *y) {
    const int bh = m->bh, bw = m->bw, nbr = m->rows / bh;
    for (int i = 0; i < m->rows; i++) y[i] = b0[i] + (b1 ? b1[i] : 0.0f);
    for (int r = 0; r < nbr; r++) {
        float *yr = y + (long)r * bh;
        for (int k = m->row_ptr[r]; k < m->row_ptr[r + 1]; k++) {
            const int c = m->col_idx ? m->col_idx[k] : k - m->row_ptr[r];
            for (int q = 0; q < bw; q++) {
                const float xv = v[c * bw + q];
                const long base = ((long)k * bw + q) * bh;
                for (int j = 0; j < bh; j++) yr[j] += mat_val(m, base + j) * xv;
            }
        }
    }
}

static void gru_scalar(const float *gi, const float *gh, float *h, int R, int from) {
    for (int j = from; j < R; j++) {
        const float r = sigmoid_s(gi[j] + gh[j]);
        const float z = sigmoid_s(gi[R + j] + gh[R + j]);
        const float n = tanhf(gi[2 * R + j] + r * gh[2 * R + j]);
        h[j] = (1.0f - z) * n + z * h[j];
    }
}

static void exp_shift_scalar(const float *x, float shift, float *e, int n, int from) {
    for (int k = from; k < n; k++) e[k] = expf(x[k] - shift);
}

/* ------------------------------------------------------------------------------------------ */
/* AVX2 + FMA + F16C path                                                                      */
/* ------------------------------------------------------------------------------------------ */
#define GMAX_V 4
#if RT_X86
AVX2_FN static inline __m256 load_vals(const void *vals, long off, int f16) {
    if (f16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)vals + off)));
    return _mm256_loadu_ps((const float *)vals + off);
}

/* the hot kernel: 16x1 blocks; specialised on (dense, f16) by constant arguments */
AVX2_FN static inline __attribute__((always_inline)) void mv16x1_body(const Mat *m, const float *v, const float *b0,
                                                                         const float *b1, float *y, const int dense,
                                                                         const int f16) {
    const int nbr = m->rows / 16;
    const int32_t *rp = m->row_ptr, *ci = m->col_idx;
    const void *vals = m->vals;
    for (int r = 0; r < nbr; r++) {
        __m256 a0 = _mm256_loadu_ps(b0 + 16 * r), a1 = _mm256_loadu_ps(b0 + 16 * r + 8);
        if (b1) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(b1 + 16 * r));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(b1 + 16 * r + 8));
        }
        __m256 c0 = _mm256_setzero_ps(), c1 = c0, d0 = c0, d1 = c0, e0 = c0, e1 = c0;
        int k = rp[r];
        const int end = rp[r + 1], k0 = k;
        for (; k + 4 <= end; k += 4) {
            const __m256 x0 = _mm256_broadcast_ss(v + (dense ? k - k0 : ci[k]));
            const __m256 x1 = _mm256_broadcast_ss(v + (dense ? k + 1 - k0 : ci[k + 1]));
            const __m256 x2 = _mm256_broadcast_ss(v + (dense ? k + 2 - k0 : ci[k + 2]));
            const __m256 x3 = _mm256_broadcast_ss(v + (dense ? k + 3 - k0 : ci[k + 3]));
            const long o = (long)k * 16;
            a0 = _mm256_fmadd_ps(load_vals(vals, o, f16), x0, a0);
            a1 = _mm256_fmadd_ps(load_vals(vals, o + 8, f16), x0, a1);
            c0 = _mm256_fmadd_ps(load_vals(vals, o + 16, f16), x1, c0);
            c1 = _mm256_fmadd_ps(load_vals(vals, o + 24, f16), x1, c1);
            d0 = _mm256_fmadd_ps(load_vals(vals, o + 32, f16), x2, d0);
            d1 = _mm256_fmadd_ps(load_vals(vals, o + 40, f16), x2, d1);
            e0 = _mm256_fmadd_ps(load_vals(vals, o + 48, f16), x3, e0);
            e1 = _mm256_fmadd_ps(load_vals(vals, o + 56, f16), x3, e1);
        }
        for (; k < end; k++) {
            const __m256 x0 = _mm256_broadcast_ss(v + (dense ? k - k0 : ci[k]));
            a0 = _mm256_fmadd_ps(load_vals(vals, (long)k * 16, f16), x0, a0);
            a1 = _mm256_fmadd_ps(load_vals(vals, (long)k * 16 + 8, f16), x0, a1);
        }
        a0 = _mm256_add_ps(_mm256_add_ps(a0, c0), _mm256_add_ps(d0, e0));
        a1 = _mm256_add_ps(_mm256_add_ps(a1, c1), _mm256_add_ps(d1, e1));
        _mm256_storeu_ps(y + 16 * r, a0);
        _mm256_storeu_ps(y + 16 * r + 8, a1);
    }
}

AVX2_FN static void matvec_avx2(const Mat *m, const float *v, const float *b0, const float *b1, float *y) {
    if (m->bh != 16 || m->bw != 1) {
        matvec_scalar(m, v, b0, b1, y);
        return;
    }
    const int dense = m->col_idx == NULL;
    if (dense && m->f16) mv16x1_body(m, v, b0, b1, y, 1, 1);
    else if (dense) mv16x1_body(m, v, b0, b1, y, 1, 0);
    else if (m->f16) mv16x1_body(m, v, b0, b1, y, 0, 1);
    else mv16x1_body(m, v, b0, b1, y, 0, 0);
}

/* 16x1 blocks for G lockstep streams: each weight block is loaded once for all G inputs. */
AVX2_FN static inline __attribute__((always_inline)) void mv16x1_multi_body(const Mat *m, const float *const *v,
                                                                               const float *b0, const float *const *b1,
                                                                               float *const *y, const int G,
                                                                               const int dense, const int f16) {
    const int nbr = m->rows / 16;
    const int32_t *rp = m->row_ptr, *ci = m->col_idx;
    const void *vals = m->vals;
    for (int r = 0; r < nbr; r++) {
        __m256 a0[GMAX_V], a1[GMAX_V];
        const __m256 bb0 = _mm256_loadu_ps(b0 + 16 * r), bb1 = _mm256_loadu_ps(b0 + 16 * r + 8);
        for (int g = 0; g < G; g++) {
            a0[g] = b1[g] ? _mm256_add_ps(bb0, _mm256_loadu_ps(b1[g] + 16 * r)) : bb0;
            a1[g] = b1[g] ? _mm256_add_ps(bb1, _mm256_loadu_ps(b1[g] + 16 * r + 8)) : bb1;
        }
        const int k0 = rp[r], end = rp[r + 1];
        for (int k = k0; k < end; k++) {
            const int c = dense ? k - k0 : ci[k];
            const __m256 w0 = load_vals(vals, (long)k * 16, f16), w1 = load_vals(vals, (long)k * 16 + 8, f16);
            for (int g = 0; g < G; g++) {
                const __m256 xv = _mm256_broadcast_ss(v[g] + c);
                a0[g] = _mm256_fmadd_ps(w0, xv, a0[g]);
                a1[g] = _mm256_fmadd_ps(w1, xv, a1[g]);
            }
        }
        for (int g = 0; g < G; g++) {
            _mm256_storeu_ps(y[g] + 16 * r, a0[g]);
            _mm256_storeu_ps(y[g] + 16 * r + 8, a1[g]);
        }
    }
}

#define MULTI_CASES(G)                                                              \
    case G:                                                                         \
        if (dense && m->f16) mv16x1_multi_body(m, v, b0, b1, y, G, 1, 1);           \
        else if (dense) mv16x1_multi_body(m, v, b0, b1, y, G, 1, 0);                \
        else if (m->f16) mv16x1_multi_body(m, v, b0, b1, y, G, 0, 1);              \
        else mv16x1_multi_body(m, v, b0, b1, y, G, 0, 0);                           \
        break;

AVX2_FN static void matvec_multi_avx2(const Mat *m, const float *const *v, const float *b0, const float *const *b1,
                                      float *const *y, int G) {
    const int dense = m->col_idx == NULL;
    switch (G) {
        MULTI_CASES(2)
        MULTI_CASES(3)
        MULTI_CASES(4)
        default:
            for (int g = 0; g < G; g++) matvec_avx2(m, v[g], b0, b1[g], y[g]);
    }
}

AVX2_FN static void gru_avx2(const float *gi, const float *gh, float *h, int R) {
    int j = 0;
    for (; j + 8 <= R; j += 8) {
        const __m256 r = sigmoid_avx2(_mm256_add_ps(_mm256_loadu_ps(gi + j), _mm256_loadu_ps(gh + j)));
        const __m256 z = sigmoid_avx2(_mm256_add_ps(_mm256_loadu_ps(gi + R + j), _mm256_loadu_ps(gh + R + j)));
        const __m256 n =
            tanh_avx2(_mm256_fmadd_ps(r, _mm256_loadu_ps(gh + 2 * R + j), _mm256_loadu_ps(gi + 2 * R + j)));
        const __m256 hv = _mm256_loadu_ps(h + j);
        _mm256_storeu_ps(h + j, _mm256_fmadd_ps(z, _mm256_sub_ps(hv, n), n));
    }
    gru_scalar(gi, gh, h, R, j);
}

AVX2_FN static void exp_shift_avx2(const float *x, float shift, float *e, int n) {
    int k = 0;
    const __m256 s = _mm256_set1_ps(shift);
    for (; k + 8 <= n; k += 8) _mm256_storeu_ps(e + k, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + k), s)));
    exp_shift_scalar(x, shift, e, n, k);
}

#endif

/* ------------------------------------------------------------------------------------------ */
/* dispatch helpers                                                                            */
/* ------------------------------------------------------------------------------------------ */
static inline void matvec(const Model *M, int which, const float *v, const float *add, float *y) {
#if RT_X86
    if (M->use_avx2) {
        matvec_avx2(&M->m[which], v, M->bias[which], add, y);
        return;
    }
#endif
    matvec_scalar(&M->m[which], v, M->bias[which], add, y);
}

static inline void gru(const Model *M, const float *gi, const float *gh, float *h) {
#if RT_X86
    if (M->use_avx2) {
        gru_avx2(gi, gh, h, M->R);
        return;
    }
#endif
    gru_scalar(gi, gh, h, M->R, 0);
}

static inline void exp_shift(const Model *M, const float *x, float shift, float *e, int n) {
#if RT_X86
    if (M->use_avx2) {
        exp_shift_avx2(x, shift, e, n);
        return;
    }
#endif
    exp_shift_scalar(x, shift, e, n, 0);
}

/* Inverse CDF of softmax(out[0..n-1]) at u * total: the number of cumulative sums <= u * total,
 * clamped to n - 1 (e: n floats of scratch). The cumulative sum runs in float64. */
static int icdf_label(const Model *M, const float *out, float *e, int n, float u) {
    float mx = out[0];
    for (int k = 1; k < n; k++) mx = out[k] > mx ? out[k] : mx;
    exp_shift(M, out, mx, e, n);
    double t4[4] = {0.0, 0.0, 0.0, 0.0};
    int k = 0;
    for (; k + 4 <= n; k += 4)
        for (int q = 0; q < 4; q++) t4[q] += e[k + q];
    double total = (t4[0] + t4[1]) + (t4[2] + t4[3]);
    for (; k < n; k++) total += e[k];
    const double thr = (double)u * total;
    /* first k whose cumulative sum exceeds thr: skip whole groups of 8, then step inside one */
    double c = 0.0;
    int label = n - 1;
    for (k = 0; k < n; k += 8) {
        const int end = k + 8 < n ? k + 8 : n;
        double gsum = 0.0;
        for (int j = k; j < end; j++) gsum += e[j];
        if (c + gsum <= thr) {
            c += gsum;
            continue;
        }
        for (int j = k; j < end; j++) {
            c += e[j];
            if (c > thr) {
                label = j;
                break;
            }
        }
        break;
    }
    return label;
}

/* RAW: label by inverse CDF at u, x = 2 label / (n - 1) - 1. */
static float sample_raw(const Model *M, const float *out, float *e, float u) {
    const int n = M->n_out;
    return (float)(2 * icdf_label(M, out, e, n, u)) / (float)(n - 1) - 1.0f;
}

/* MoL: component by inverse CDF of softmax(logit_probs = out[0..9]) at u0 (the RAW rule), then the
 * logistic draw of that component at u1. */
static float sample_mol(const Model *M, const float *out, float *e, float u0, float u1) {
    const float lo = 1e-5f, hi = (float)(1.0 - 1e-5);
    const float ub = fminf(fmaxf(u1, lo), hi);
    const int best = icdf_label(M, out, e, 10, u0);
    const float s = fmaxf(out[20 + best], -7.0f);
    const float x = out[10 + best] + expf(s) * (logf(ub) - logf(1.0f - ub));
    return fminf(fmaxf(x, -1.0f), 1.0f);
}

/* ------------------------------------------------------------------------------------------ */
/* the loop for a group of streams                                                                    */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
    int T;
    const float *cond;  /* (T, cond_w) for this stream */
    int cond_w;
    const float *unif;  /* (T, 2) */
    float *out;         /* (T,) */
    float *x, *h1, *h2; /* state: (1,), (R,), (R,) updated in place */
    const float *add[4];/* addends for I, ih2, fc1, fc2: (T, rows) or NULL */
} StreamArgs;

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

/* G streams (1..GMAX) advance in lockstep so that each weight block loaded serves all of them. */
#define GMAX 4

static inline void matvec_g(const Model *M, int which, float *const *v, const float *const *add, float *const *y, int G) {
#if RT_X86
    if (G > 1 && M->use_avx2 && M->m[which].bh == 16 && M->m[which].bw == 1) {
        matvec_multi_avx2(&M->m[which], (const float *const *)v, M->bias[which], add, y, G);
        return;
    }
#endif
    for (int g = 0; g < G; g++) matvec(M, which, v[g], add[g], y[g]);
}

static int run_group(const Model *M, const StreamArgs *a, int G) {
    const int R = M->R, F = M->F, n_out = M->n_out, feat = M->feat, aux = M->aux;
    const size_t nI = pad16(1 + feat + aux), n3 = pad16(3 * (size_t)R), nRa = pad16(R + aux), nFa = pad16(F + aux);
    const size_t nO = pad16(M->m[M_FC3].rows > n_out ? M->m[M_FC3].rows : n_out); /* rows may be padded */
    const size_t per = nI + pad16(R) + 4 * n3 + 2 * nRa + nFa + pad16(F) + 2 * nO + 16;
    float *buf = (float *)aligned_alloc(64, ((per * G * sizeof(float) + 127) / 64) * 64); /* size: multiple of 64 */
    if (!buf) return -1;
    memset(buf, 0, per * G * sizeof(float));
    float *vI[GMAX], *iv[GMAX], *gi[GMAX], *gh[GMAX], *gi2[GMAX], *gh2[GMAX], *v2[GMAX], *v3[GMAX], *v4[GMAX],
        *f2[GMAX], *out[GMAX], *e[GMAX], *h1[GMAX], *h2[GMAX];
    const float *add[4][GMAX];
    const float *nulls[GMAX] = {NULL, NULL, NULL, NULL};
    float x[GMAX];
    for (int g = 0; g < G; g++) {
        float *b = buf + per * g;
        vI[g] = b, iv[g] = vI[g] + nI, gi[g] = iv[g] + pad16(R), gh[g] = gi[g] + n3, gi2[g] = gh[g] + n3;
        gh2[g] = gi2[g] + n3, v2[g] = gh2[g] + n3, v3[g] = v2[g] + nRa, v4[g] = v3[g] + nRa, f2[g] = v4[g] + nFa;
        out[g] = f2[g] + pad16(F), e[g] = out[g] + nO;
        h1[g] = a[g].h1, h2[g] = a[g].h2, x[g] = a[g].x[0];
    }
    const int Iin = M->m[M_I].cols, in2 = M->m[M_IH2].cols, in3 = M->m[M_FC1].cols, in4 = M->m[M_FC2].cols;
    const long rows[4] = {R, 3L * R, F, F};
    const int T = a[0].T;
    for (int t = 0; t < T; t++) {
        for (int g = 0; g < G; g++) {
            const float *ct = a[g].cond + (long)t * a[g].cond_w;
            for (int k = 0; k < 4; k++) add[k][g] = a[g].add[k] ? a[g].add[k] + t * rows[k] : NULL;
            vI[g][0] = x[g]; /* I: [x, m_t, a1] (conditioning columns skipped when precomputed) */
            if (Iin > 1) memcpy(vI[g] + 1, ct, (size_t)(Iin - 1) * sizeof(float));
        }
        matvec_g(M, M_I, vI, add[0], iv, G);
        matvec_g(M, M_IH1, iv, nulls, gi, G);
        matvec_g(M, M_HH1, h1, nulls, gh, G);
        for (int g = 0; g < G; g++) {
            const float *ct = a[g].cond + (long)t * a[g].cond_w;
            gru(M, gi[g], gh[g], h1[g]);
            for (int j = 0; j < R; j++) v2[g][j] = iv[g][j] + h1[g][j]; /* x1 */
            if (in2 > R) memcpy(v2[g] + R, ct + feat + aux, (size_t)aux * sizeof(float));
        }
        matvec_g(M, M_IH2, v2, add[1], gi2, G); /* GRU 2 on [x1, a2] */
        matvec_g(M, M_HH2, h2, nulls, gh2, G);
        for (int g = 0; g < G; g++) {
            const float *ct = a[g].cond + (long)t * a[g].cond_w;
            gru(M, gi2[g], gh2[g], h2[g]);
            for (int j = 0; j < R; j++) v3[g][j] = v2[g][j] + h2[g][j]; /* x2 */
            if (in3 > R) memcpy(v3[g] + R, ct + feat + 2 * aux, (size_t)aux * sizeof(float));
        }
        matvec_g(M, M_FC1, v3, add[2], v4, G); /* FC1 on [x2, a3] */
        for (int g = 0; g < G; g++) {
            const float *ct = a[g].cond + (long)t * a[g].cond_w;
            for (int j = 0; j < F; j++) v4[g][j] = v4[g][j] > 0.0f ? v4[g][j] : 0.0f;
            if (in4 > F) memcpy(v4[g] + F, ct + feat + 3 * aux, (size_t)aux * sizeof(float));
        }
        matvec_g(M, M_FC2, v4, add[3], f2, G); /* FC2 on [f1, a4] */
        for (int g = 0; g < G; g++)
            for (int j = 0; j < F; j++) f2[g][j] = f2[g][j] > 0.0f ? f2[g][j] : 0.0f;
        matvec_g(M, M_FC3, f2, nulls, out, G);
        for (int g = 0; g < G; g++) {
            const float *u = a[g].unif + 2L * t;
            x[g] = M->mode_mol ? sample_mol(M, out[g], e[g], u[0], u[1]) : sample_raw(M, out[g], e[g], u[0]);
            a[g].out[t] = x[g];
        }
    }
    for (int g = 0; g < G; g++) a[g].x[0] = x[g];
    free(buf);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Python bindings                                                                             */
/* ------------------------------------------------------------------------------------------ */
static void model_free(PyObject *cap) { free(PyCapsule_GetPointer(cap, "rtclone.wavernn")); }

#define PTR(o) ((void *)(uintptr_t)PyLong_AsUnsignedLongLong(o))

/* make_model(mats, biases, dims) -> capsule.
 * mats: 8 tuples (rows, cols, bh, bw, row_ptr, col_idx or 0, vals, f16); biases: 8 pointers;
 * dims: (R, F, n_out, feat, aux, mode_mol, allow_avx2). Pointers are ints (tensor.data_ptr()). */
static PyObject *py_make_model(PyObject *self, PyObject *args) {
    PyObject *mats, *biases;
    int R, F, n_out, feat, aux, mol, allow;
    if (!PyArg_ParseTuple(args, "OO(iiiiiii)", &mats, &biases, &R, &F, &n_out, &feat, &aux, &mol, &allow)) return NULL;
    if (!PyTuple_Check(mats) || PyTuple_GET_SIZE(mats) != N_MATS || !PyTuple_Check(biases) ||
        PyTuple_GET_SIZE(biases) != N_MATS) {
        PyErr_SetString(PyExc_ValueError, "make_model: expected 8 matrices and 8 biases");
        return NULL;
    }
    Model *M = (Model *)calloc(1, sizeof(Model));
    if (!M) return PyErr_NoMemory();
    for (int i = 0; i < N_MATS; i++) {
        PyObject *t = PyTuple_GET_ITEM(mats, i);
        unsigned long long rp, ci, vals;
        Mat *m = &M->m[i];
        if (!PyArg_ParseTuple(t, "iiiiKKKi", &m->rows, &m->cols, &m->bh, &m->bw, &rp, &ci, &vals, &m->f16)) {
            free(M);
            return NULL;
        }
        m->row_ptr = (const int32_t *)(uintptr_t)rp;
        m->col_idx = (const int32_t *)(uintptr_t)ci;
        m->vals = (const void *)(uintptr_t)vals;
        M->bias[i] = (const float *)PTR(PyTuple_GET_ITEM(biases, i));
    }
    if (PyErr_Occurred()) {
        free(M);
        return NULL;
    }
    M->R = R, M->F = F, M->n_out = n_out, M->feat = feat, M->aux = aux, M->mode_mol = mol;
    M->use_avx2 = allow && have_avx2();
    return PyCapsule_New(M, "rtclone.wavernn", model_free);
}

/* run(model, B, T, threads, cond, cond_sb, cond_w, unif, unif_sb, out, out_sb, x, h1, h2,
 *     (addI, add2, add3, add4), add_sb_rows_multiplier T_add)
 * Stream b reads cond + b*cond_sb (floats), unif + b*unif_sb, writes out + b*out_sb, state
 * x[b], h1 + b*R, h2 + b*R; addend k of stream b starts at add_k + b*T_add*rows_k. */
static PyObject *py_run(PyObject *self, PyObject *args) {
    PyObject *cap, *adds;
    int B, T, threads, cond_w;
    unsigned long long cond, unif, out, xs, h1, h2;
    long long cond_sb, unif_sb, out_sb, T_add;
    if (!PyArg_ParseTuple(args, "OiiiKLiKLKLKKKOL", &cap, &B, &T, &threads, &cond, &cond_sb, &cond_w, &unif, &unif_sb,
                          &out, &out_sb, &xs, &h1, &h2, &adds, &T_add))
        return NULL;
    const Model *M = (const Model *)PyCapsule_GetPointer(cap, "rtclone.wavernn");
    if (!M) return NULL;
    if (!PyTuple_Check(adds) || PyTuple_GET_SIZE(adds) != 4) {
        PyErr_SetString(PyExc_ValueError, "run: expected 4 addend pointers");
        return NULL;
    }
    const float *add[4];
    for (int k = 0; k < 4; k++) add[k] = (const float *)PTR(PyTuple_GET_ITEM(adds, k));
    if (PyErr_Occurred()) return NULL;
    const long rows[4] = {M->R, 3L * M->R, M->F, M->F};
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS;
    const int nt = threads < 1 ? 1 : (threads > B ? B : threads);
    /* streams are dealt to threads in contiguous shares, each share cut into lockstep groups */
    const int share = (B + nt - 1) / nt;
    const int G = share < GMAX ? share : GMAX;
    const int groups_per_share = (share + G - 1) / G;
    const int n_groups = nt * groups_per_share;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1) reduction(| : failed)
    for (int q = 0; q < n_groups; q++) {
        const int s0 = (q / groups_per_share) * share + (q % groups_per_share) * G;
        int s1 = s0 + G, lim = (q / groups_per_share + 1) * share;
        if (s1 > lim) s1 = lim;
        if (s1 > B) s1 = B;
        if (s0 >= s1) continue;
        StreamArgs a[GMAX];
        for (int b = s0; b < s1; b++) {
            StreamArgs *sa = &a[b - s0];
            sa->T = T;
            sa->cond = (const float *)(uintptr_t)cond + b * cond_sb;
            sa->cond_w = cond_w;
            sa->unif = (const float *)(uintptr_t)unif + b * unif_sb;
            sa->out = (float *)(uintptr_t)out + b * out_sb;
            sa->x = (float *)(uintptr_t)xs + b;
            sa->h1 = (float *)(uintptr_t)h1 + (long)b * M->R;
            sa->h2 = (float *)(uintptr_t)h2 + (long)b * M->R;
            for (int k = 0; k < 4; k++) sa->add[k] = add[k] ? add[k] + (long)b * T_add * rows[k] : NULL;
        }
        failed |= run_group(M, a, s1 - s0) != 0;
    }
    Py_END_ALLOW_THREADS;
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* nonlin(kind, x_ptr, y_ptr, n, vectorised): kind 0 exp, 1 sigmoid, 2 tanh (for accuracy tests) */
static PyObject *py_nonlin(PyObject *self, PyObject *args) {
    int kind, vec;
    unsigned long long xp, yp;
    long long n;
    if (!PyArg_ParseTuple(args, "iKKLi", &kind, &xp, &yp, &n, &vec)) return NULL;
    const float *x = (const float *)(uintptr_t)xp;
    float *y = (float *)(uintptr_t)yp;
#if RT_X86
    if (vec && have_avx2()) {
        nonlin_avx2(kind, x, y, n);
        Py_RETURN_NONE;
    }
#endif
    for (long long k = 0; k < n; k++) y[k] = kind == 0 ? expf(x[k]) : kind == 1 ? sigmoid_s(x[k]) : tanhf(x[k]);
    Py_RETURN_NONE;
}

static PyObject *py_has_avx2(PyObject *self, PyObject *noargs) { return PyBool_FromLong(have_avx2()); }

static PyObject *py_uses_avx2(PyObject *self, PyObject *cap) {
    const Model *M = (const Model *)PyCapsule_GetPointer(cap, "rtclone.wavernn");
    if (!M) return NULL;
    return PyBool_FromLong(M->use_avx2);
}

static PyMethodDef methods[] = {
    {"make_model", py_make_model, METH_VARARGS, "Build a model descriptor from raw tensor pointers."},
    {"run", py_run, METH_VARARGS, "Run the fused sample loop for B streams and T steps (GIL released)."},
    {"nonlin", py_nonlin, METH_VARARGS, "Evaluate the kernel's exp/sigmoid/tanh (accuracy tests)."},
    {"has_avx2", py_has_avx2, METH_NOARGS, "True when the CPU supports AVX2, FMA and F16C."},
    {"uses_avx2", py_uses_avx2, METH_O, "True when a model descriptor runs the AVX2 path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_native", "rtclone native WaveRNN sample loop", -1, methods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&moddef); }
