/* rtclone native CPU kernel: the time steps of a GRU layer's training pass (recurrent product + gates).
 *
 * torch's own GRU, under bfloat16 autocast on the CPU, runs a training pass as a graph of about
 * ten small operators per time step, and its backward takes two small matrix products per step
 * (one of them a weight gradient with an inner dimension of only the batch size), each product
 * re-packing its weights. The layer in rtclone/kernels/cpu/gru.py leaves the weight gradients to
 * whole-sequence products in torch after the loop and does each time step in one call here: the
 * recurrent product (h W_hh^T going forward, dG_h W_hh going back, on weights packed once per
 * pass) and the gate arithmetic:
 *
 *   forward   r = s(gi_r + gh_r), z = s(gi_z + gh_z), n = tanh(gi_n + r gh_n), h' = n + z (h - n)
 *   backward  d = carry + dout;  dn = d (1 - z);  dz = d (h - n)
 *             a_n = dn (1 - n^2);  a_z = dz z (1 - z);  a_r = a_n gh_n r (1 - r)
 *             dG_i = [a_r, a_z, a_n];  dG_h = [a_r, a_z, a_n r];  carry' = d z + dG_h W_hh
 *
 * (gi = x W_ih^T + b_ih, gh = h W_hh^T + b_hh, gate order r, z, n as torch.nn.GRU.) Matrix operands
 * and results are float32 or bfloat16 (the "mm" dtype, bf16 flag); everything else — gates, states,
 * gradients of the elementwise part, bias-gradient sums — is float32. bfloat16 stores round to
 * nearest even. sigmoid and tanh use the vectorised functions of vmath.h on AVX2 machines.
 *
 * Products y (+)= a W, a (B, K) in the mm dtype, W a (K, N) operand packed by the caller, float32
 * accumulation and result: W float32 (K, N) row-major ("kn", a scalar loop), float32 column tiles
 * (N / 16, K, 16) ("tiles", AVX2 FMA on 4 rows x 16 columns), or bfloat16 pairs in column tiles
 * (N / 32, K / 2, 32, 2) ("pairs", AVX512-BF16 dot products on 4 rows x 32 columns, on CPUs that have
 * them). A tile's K rows are contiguous: the inner loop streams them (a row-major W read 16 or 32
 * columns at a time strides N floats per k, which for N of a few thousand makes every load miss L1).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "vmath.h"

enum { W_KN = 0, W_PAIRS = 1, W_TILES = 2 };

/* the elementwise loops: compiled twice, for AVX2 + FMA and for the baseline, chosen at load time */
#if RT_X86 && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define CLONES
#endif

static int use_vec = -1; /* AVX2 activations and products */
static int use_bf16dot = -1; /* AVX512-BF16 products (W_PAIRS) */

static inline float bf16_to_f(uint16_t b) {
    const uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* dst[0:n] = src[0:n] as float32 (src float32 or bfloat16 bits) */
CLONES static void load_row(const void *src, float *dst, long n, int bf) {
    if (!bf) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    const uint16_t *s = (const uint16_t *)src;
    for (long j = 0; j < n; j++) dst[j] = bf16_to_f(s[j]);
}

CLONES static void store_row(void *dst, const float *src, int n, int bf) {
    if (!bf) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    uint16_t *d = (uint16_t *)dst;
    for (int j = 0; j < n; j++) d[j] = f_to_bf16(src[j]);
}

/* x[0:n] = sigmoid (kind 1) or tanh (kind 2) of x, in place */
static void activate(int kind, float *x, int n) {
#if RT_X86
    if (use_vec) {
        nonlin_avx2(kind, x, x, n);
        return;
    }
#endif
    for (int k = 0; k < n; k++) x[k] = kind == 1 ? sigmoid_s(x[k]) : tanhf(x[k]);
}

/* ---- products y (B, N) += a (B, K) W (K, N); a float32 here ---------------------------------- */
static void mm_kn_scalar(const float *a, int B, int K, const float *W, int N, float *y) {
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++) {
            const float av = a[(long)b * K + k];
            const float *w = W + (long)k * N;
            float *yr = y + (long)b * N;
            for (int j = 0; j < N; j++) yr[j] += av * w[j];
        }
}

#if RT_X86
/* y[g] (+)= a[g] W over columns j .. j + 15, rows g < G (G <= 4), named accumulators */
#define KN_ROW(g, c0, c1)                                          \
    if (G > g) {                                                   \
        const __m256 av = _mm256_broadcast_ss(a + (long)g * K + k); \
        c0 = _mm256_fmadd_ps(w0, av, c0);                          \
        c1 = _mm256_fmadd_ps(w1, av, c1);                          \
    }
AVX2_FN static void mm_tiles_avx2(const float *a0, int B, int K, const float *W0, int N, float *y0) {
    for (int j = 0; j < N; j += 16) { /* a column tile of W stays in cache across the row groups */
        const float *W = W0 + (long)j * K;
        for (int b = 0; b < B; b += 4) {
            const int G = B - b < 4 ? B - b : 4;
            const float *a = a0 + (long)b * K;
            float *y = y0 + (long)b * N + j;
            __m256 p0 = _mm256_loadu_ps(y), p1 = _mm256_loadu_ps(y + 8), q0 = p0, q1 = p1, r0 = p0, r1 = p1,
                   s0 = p0, s1 = p1;
            if (G > 1) q0 = _mm256_loadu_ps(y + N), q1 = _mm256_loadu_ps(y + N + 8);
            if (G > 2) r0 = _mm256_loadu_ps(y + 2 * N), r1 = _mm256_loadu_ps(y + 2 * N + 8);
            if (G > 3) s0 = _mm256_loadu_ps(y + 3 * N), s1 = _mm256_loadu_ps(y + 3 * N + 8);
            for (int k = 0; k < K; k++) {
                const __m256 w0 = _mm256_loadu_ps(W + (long)k * 16), w1 = _mm256_loadu_ps(W + (long)k * 16 + 8);
                KN_ROW(0, p0, p1)
                KN_ROW(1, q0, q1)
                KN_ROW(2, r0, r1)
                KN_ROW(3, s0, s1)
            }
            _mm256_storeu_ps(y, p0), _mm256_storeu_ps(y + 8, p1);
            if (G > 1) _mm256_storeu_ps(y + N, q0), _mm256_storeu_ps(y + N + 8, q1);
            if (G > 2) _mm256_storeu_ps(y + 2 * N, r0), _mm256_storeu_ps(y + 2 * N + 8, r1);
            if (G > 3) _mm256_storeu_ps(y + 3 * N, s0), _mm256_storeu_ps(y + 3 * N + 8, s1);
        }
    }
}

#define BF16_FN __attribute__((target("avx512f,avx512bf16")))

BF16_FN static inline __attribute__((always_inline)) void mm_pairs_tile(const uint16_t *a, int K, const uint16_t *W,
                                                                         int N, float *y, int j, const int G) {
    __m512 c0[4], c1[4];
    for (int g = 0; g < G; g++) {
        c0[g] = _mm512_loadu_ps(y + (long)g * N + j);
        c1[g] = _mm512_loadu_ps(y + (long)g * N + j + 16);
    }
    for (int kp = 0; kp < K / 2; kp++) {
        const uint16_t *w = W + ((long)j * (K / 2) + (long)kp * 32) * 2;
        const __m512bh w0 = (__m512bh)_mm512_loadu_si512(w), w1 = (__m512bh)_mm512_loadu_si512(w + 32);
        for (int g = 0; g < G; g++) {
            uint32_t pair;
            memcpy(&pair, a + (long)g * K + 2 * kp, 4);
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)pair);
            c0[g] = _mm512_dpbf16_ps(c0[g], av, w0);
            c1[g] = _mm512_dpbf16_ps(c1[g], av, w1);
        }
    }
    for (int g = 0; g < G; g++) {
        _mm512_storeu_ps(y + (long)g * N + j, c0[g]);
        _mm512_storeu_ps(y + (long)g * N + j + 16, c1[g]);
    }
}

BF16_FN static void mm_pairs_bf16(const uint16_t *a, int B, int K, const uint16_t *W, int N, float *y) {
    for (int j = 0; j < N; j += 32) /* a column tile of W stays in L1 across the row groups */
        for (int b = 0; b < B; b += 4) {
            const int G = B - b < 4 ? B - b : 4;
            const uint16_t *ab = a + (long)b * K;
            float *yb = y + (long)b * N;
            switch (G) {
                case 4: mm_pairs_tile(ab, K, W, N, yb, j, 4); break;
                case 3: mm_pairs_tile(ab, K, W, N, yb, j, 3); break;
                case 2: mm_pairs_tile(ab, K, W, N, yb, j, 2); break;
                default: mm_pairs_tile(ab, K, W, N, yb, j, 1);
            }
        }
}
#endif

static int have_bf16dot(void) {
#if RT_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

static int wkind_ok(int wkind, int bf, int K, int N) {
    if (wkind == W_KN) return 1;
    if (wkind == W_TILES) return RT_X86 && use_vec && N % 16 == 0;
    return wkind == W_PAIRS && RT_X86 && use_bf16dot && bf && K % 2 == 0 && N % 32 == 0;
}

/* y (B, N) += a (B, K, mm dtype, contiguous) W; tmp holds B * K floats; wkind_ok(wkind, bf, K, N). */
static void matmul(const void *a, int bf, int B, int K, const void *W, int wkind, int N, float *y, float *tmp) {
#if RT_X86
    if (wkind == W_PAIRS) {
        mm_pairs_bf16((const uint16_t *)a, B, K, (const uint16_t *)W, N, y);
        return;
    }
#endif
    const float *af = (const float *)a;
    if (bf) {
        load_row(a, tmp, (long)B * K, 1);
        af = tmp;
    }
#if RT_X86
    if (wkind == W_TILES) {
        mm_tiles_avx2(af, B, K, (const float *)W, N, y);
        return;
    }
#endif
    mm_kn_scalar(af, B, K, (const float *)W, N, y);
}

/* ---- one time step ------------------------------------------------------------------------------ */
/* forward, one batch row: gi (3R, mm dtype), gh (3R float32), hp (R) -> g = [r, z, n], hn = gh_n, h, hm */
CLONES static void fwd_row(const void *gi, const float *gh, const float *hp, float *h, void *hm, float *g, float *hn, int R,
                    int bf) {
    load_row(gi, g, 3 * R, bf);
    for (int j = 0; j < 2 * R; j++) g[j] += gh[j];
    activate(1, g, 2 * R);
    for (int j = 0; j < R; j++) {
        hn[j] = gh[2 * R + j];
        g[2 * R + j] += g[j] * hn[j];
    }
    activate(2, g + 2 * R, R);
    const float *z = g + R, *n = g + 2 * R;
    for (int j = 0; j < R; j++) h[j] = n[j] + z[j] * (hp[j] - n[j]);
    store_row(hm, h, R, bf);
}

/* backward, one batch row (see the file comment): dgi float32, dgh mm dtype; sums into db_*; carry = d z */
CLONES static void bwd_row(float *carry, const float *dout, const float *g, const float *hn, const float *hp, float *dgi,
                    void *dgh, float *db_ih, float *db_hh, float *ghn, int R, int bf) {
    const float *r = g, *z = g + R, *n = g + 2 * R;
    for (int j = 0; j < R; j++) {
        const float d = carry[j] + dout[j];
        const float an = d * (1.0f - z[j]) * (1.0f - n[j] * n[j]);
        const float az = d * (hp[j] - n[j]) * z[j] * (1.0f - z[j]);
        const float ar = an * hn[j] * r[j] * (1.0f - r[j]);
        dgi[j] = ar;
        dgi[R + j] = az;
        dgi[2 * R + j] = an;
        ghn[j] = an * r[j];
        carry[j] = d * z[j];
    }
    for (int j = 0; j < 3 * R; j++) db_ih[j] += dgi[j];
    for (int j = 0; j < 2 * R; j++) db_hh[j] += dgi[j];
    for (int j = 0; j < R; j++) db_hh[2 * R + j] += ghn[j];
    store_row(dgh, dgi, 2 * R, bf);
    store_row((char *)dgh + (size_t)2 * R * (bf ? 2 : 4), ghn, R, bf);
}

#define PTR(v) ((void *)(uintptr_t)(v))

/* fwd(gi, gi_stride, hm, W, wkind, b_hh, hp, hp_stride, h, h_stride, gates, hn, B, R, bf16)
 * gh = hm W + b_hh (hm: (B, R) mm dtype, the previous state, overwritten with the new one), then the
 * gates. Strides are in elements between batch rows; gates (B, 3R) and hn (B, R) are contiguous. */
static PyObject *py_fwd(PyObject *self, PyObject *args) {
    unsigned long long gi, hm, w, bhh, hp, h, g, hn;
    long long gis, hps, hs;
    int wkind, B, R, bf;
    if (!PyArg_ParseTuple(args, "KLKKiKKLKLKKiii", &gi, &gis, &hm, &w, &wkind, &bhh, &hp, &hps, &h, &hs, &g, &hn, &B,
                          &R, &bf))
        return NULL;
    if (!wkind_ok(wkind, bf, R, 3 * R)) return PyErr_Format(PyExc_ValueError, "weight layout %d unusable here", wkind);
    const size_t es = bf ? 2 : 4;
    float *gh = (float *)malloc((size_t)B * 4 * R * sizeof(float)), *tmp = gh + (size_t)B * 3 * R;
    if (!gh) return PyErr_NoMemory();
    for (int b = 0; b < B; b++) memcpy(gh + (size_t)b * 3 * R, PTR(bhh), (size_t)3 * R * sizeof(float));
    matmul(PTR(hm), bf, B, R, PTR(w), wkind, 3 * R, gh, tmp);
    for (int b = 0; b < B; b++)
        fwd_row((const char *)PTR(gi) + (size_t)b * gis * es, gh + (size_t)b * 3 * R,
                (const float *)PTR(hp) + (size_t)b * hps, (float *)PTR(h) + (size_t)b * hs,
                (char *)PTR(hm) + (size_t)b * R * es, (float *)PTR(g) + (size_t)b * 3 * R,
                (float *)PTR(hn) + (size_t)b * R, R, bf);
    free(gh);
    Py_RETURN_NONE;
}

/* bwd(carry, dout, dout_stride, gates, hn, hp, hp_stride, dgi, dgi_stride, dgh, W, wkind, db_ih, db_hh,
 *     B, R, bf16, product): one step back; dgh (B, 3R) contiguous, mm dtype; with product != 0 the
 * carry gains dgh W (W packed from W_hh, (3R, R)): the state gradient of the step before. */
static PyObject *py_bwd(PyObject *self, PyObject *args) {
    unsigned long long carry, dout, g, hn, hp, dgi, dgh, w, dbi, dbh;
    long long ds, hps, gis;
    int wkind, B, R, bf, product;
    if (!PyArg_ParseTuple(args, "KKLKKKLKLKKiKKiiii", &carry, &dout, &ds, &g, &hn, &hp, &hps, &dgi, &gis, &dgh, &w,
                          &wkind, &dbi, &dbh, &B, &R, &bf, &product))
        return NULL;
    if (!wkind_ok(wkind, bf, 3 * R, R)) return PyErr_Format(PyExc_ValueError, "weight layout %d unusable here", wkind);
    const size_t es = bf ? 2 : 4;
    float *tmp = (float *)malloc((size_t)(B * 3 + 1) * R * sizeof(float));
    if (!tmp) return PyErr_NoMemory();
    for (int b = 0; b < B; b++)
        bwd_row((float *)PTR(carry) + (size_t)b * R, (const float *)PTR(dout) + (size_t)b * ds,
                (const float *)PTR(g) + (size_t)b * 3 * R, (const float *)PTR(hn) + (size_t)b * R,
                (const float *)PTR(hp) + (size_t)b * hps, (float *)PTR(dgi) + (size_t)b * gis,
                (char *)PTR(dgh) + (size_t)b * 3 * R * es, (float *)PTR(dbi), (float *)PTR(dbh), tmp, R, bf);
    if (product) matmul(PTR(dgh), bf, B, 3 * R, PTR(w), wkind, R, (float *)PTR(carry), tmp);
    free(tmp);
    Py_RETURN_NONE;
}

/* ---- LSTM steps (torch.nn.LSTM's gate order i, f, g, o) ------------------------------------------
 *   forward   G = gi + h W_hh^T (gi = x W_ih^T + b_ih + b_hh); i, f, o = s(G_i, G_f, G_o), g = tanh(G_g)
 *             c' = f c + i g;  h' = o tanh(c')
 *   backward  d = carry_h + dout;  t = tanh(c');  dc = carry_c + d o (1 - t^2)
 *             dG = [dc g i (1 - i), dc c f (1 - f), dc i (1 - g^2), d t o (1 - o)]
 *             carry_c' = dc f;  carry_h' = dG W_hh
 * The input and recurrent halves share dG (and one bias-gradient sum). Zoneout (RTVC's decoder LSTMs
 * in training), with a 0/1 mask m per state unit and step: the state kept is m h + (1 - m) h', the
 * cell is not zoned; going back, d splits into m d (to the previous state) and (1 - m) d (to h'). */
CLONES static void lstm_fwd_row(const void *gi, const float *gh, const float *cp, float *c, float *h, void *hm, float *g,
                                float *tc, const float *zm, const float *hp, int R, int bf) {
    load_row(gi, g, 4 * R, bf);
    for (int j = 0; j < 4 * R; j++) g[j] += gh[j];
    activate(1, g, 2 * R);
    activate(2, g + 2 * R, R);
    activate(1, g + 3 * R, R);
    const float *i = g, *f = g + R, *gg = g + 2 * R;
    for (int j = 0; j < R; j++) c[j] = tc[j] = f[j] * cp[j] + i[j] * gg[j];
    activate(2, tc, R);
    for (int j = 0; j < R; j++) h[j] = g[3 * R + j] * tc[j];
    if (zm)
        for (int j = 0; j < R; j++) h[j] += zm[j] * (hp[j] - h[j]);
    store_row(hm, h, R, bf);
}

CLONES static void lstm_bwd_row(float *carry_h, float *carry_c, const float *dout, const float *g, const float *c,
                                const float *cp, float *dg, void *dgh, float *db, float *tc, const float *zm, int R,
                                int bf) {
    const float *i = g, *f = g + R, *gg = g + 2 * R, *o = g + 3 * R;
    memcpy(tc, c, (size_t)R * sizeof(float));
    activate(2, tc, R);
    for (int j = 0; j < R; j++) {
        const float dz = carry_h[j] + dout[j], keep = zm ? zm[j] : 0.0f, d = dz * (1.0f - keep);
        const float dc = carry_c[j] + d * o[j] * (1.0f - tc[j] * tc[j]);
        dg[j] = dc * gg[j] * i[j] * (1.0f - i[j]);
        dg[R + j] = dc * cp[j] * f[j] * (1.0f - f[j]);
        dg[2 * R + j] = dc * i[j] * (1.0f - gg[j] * gg[j]);
        dg[3 * R + j] = d * tc[j] * o[j] * (1.0f - o[j]);
        carry_c[j] = dc * f[j];
        carry_h[j] = dz * keep;
    }
    for (int j = 0; j < 4 * R; j++) db[j] += dg[j];
    store_row(dgh, dg, 4 * R, bf);
}

/* lstm_fwd(gi, gi_stride, hm, W, wkind, cp, cp_stride, c, h, h_stride, gates, zm, hp, hp_stride, B, R, bf16):
 * G = gi + hm W (hm: (B, R) mm dtype, the previous state, overwritten with the new one), the gates, the
 * new cell c ((B, R) contiguous) and state h (rows h_stride apart); cp: the previous cell. gates (B, 4R)
 * contiguous. zm: 0, or a zoneout mask (B, R) contiguous, and then hp the previous state (float32). */
static PyObject *py_lstm_fwd(PyObject *self, PyObject *args) {
    unsigned long long gi, hm, w, cp, c, h, g, zm, hp;
    long long gis, cps, hs, hps;
    int wkind, B, R, bf;
    if (!PyArg_ParseTuple(args, "KLKKiKLKKLKKKLiii", &gi, &gis, &hm, &w, &wkind, &cp, &cps, &c, &h, &hs, &g, &zm, &hp, &hps,
                          &B, &R, &bf))
        return NULL;
    if (!wkind_ok(wkind, bf, R, 4 * R)) return PyErr_Format(PyExc_ValueError, "weight layout %d unusable here", wkind);
    const size_t es = bf ? 2 : 4;
    float *gh = (float *)calloc((size_t)B * 5 * R + R, sizeof(float)), *tmp = gh + (size_t)B * 4 * R;
    if (!gh) return PyErr_NoMemory();
    matmul(PTR(hm), bf, B, R, PTR(w), wkind, 4 * R, gh, tmp);
    for (int b = 0; b < B; b++)
        lstm_fwd_row((const char *)PTR(gi) + (size_t)b * gis * es, gh + (size_t)b * 4 * R,
                     (const float *)PTR(cp) + (size_t)b * cps, (float *)PTR(c) + (size_t)b * R,
                     (float *)PTR(h) + (size_t)b * hs, (char *)PTR(hm) + (size_t)b * R * es,
                     (float *)PTR(g) + (size_t)b * 4 * R, tmp, zm ? (const float *)PTR(zm) + (size_t)b * R : NULL,
                     zm ? (const float *)PTR(hp) + (size_t)b * hps : NULL, R, bf);
    free(gh);
    Py_RETURN_NONE;
}

/* lstm_bwd(carry_h, carry_c, dout, dout_stride, gates, c, cp, cp_stride, dg, dg_stride, dgh, W, wkind, db, zm,
 *          B, R, bf16, product): one step back; dg float32 rows dg_stride apart, dgh (B, 4R) contiguous
 * in the mm dtype; carry_h becomes the zoned-out part of the state gradient (0 without a mask zm), plus
 * dgh W with product != 0 (W packed from W_hh, (4R, R)). */
static PyObject *py_lstm_bwd(PyObject *self, PyObject *args) {
    unsigned long long ch, cc, dout, g, c, cp, dg, dgh, w, db, zm;
    long long ds, cps, dgs;
    int wkind, B, R, bf, product;
    if (!PyArg_ParseTuple(args, "KKKLKKKLKLKKiKKiiii", &ch, &cc, &dout, &ds, &g, &c, &cp, &cps, &dg, &dgs, &dgh, &w,
                          &wkind, &db, &zm, &B, &R, &bf, &product))
        return NULL;
    if (!wkind_ok(wkind, bf, 4 * R, R)) return PyErr_Format(PyExc_ValueError, "weight layout %d unusable here", wkind);
    const size_t es = bf ? 2 : 4;
    float *tmp = (float *)malloc((size_t)(B * 4 + 1) * R * sizeof(float));
    if (!tmp) return PyErr_NoMemory();
    for (int b = 0; b < B; b++)
        lstm_bwd_row((float *)PTR(ch) + (size_t)b * R, (float *)PTR(cc) + (size_t)b * R,
                     (const float *)PTR(dout) + (size_t)b * ds, (const float *)PTR(g) + (size_t)b * 4 * R,
                     (const float *)PTR(c) + (size_t)b * R, (const float *)PTR(cp) + (size_t)b * cps,
                     (float *)PTR(dg) + (size_t)b * dgs, (char *)PTR(dgh) + (size_t)b * 4 * R * es, (float *)PTR(db), tmp,
                     zm ? (const float *)PTR(zm) + (size_t)b * R : NULL, R, bf);
    if (product) matmul(PTR(dgh), bf, B, 4 * R, PTR(w), wkind, R, (float *)PTR(ch), tmp);
    free(tmp);
    Py_RETURN_NONE;
}

/* set_kernels(vectorised, bf16dot): use the AVX2 paths / the AVX512-BF16 products when the CPU has
 * them; returns (vectorised, bf16dot) as now in use. */
static PyObject *py_set_kernels(PyObject *self, PyObject *args) {
    int vec, dot;
    if (!PyArg_ParseTuple(args, "pp", &vec, &dot)) return NULL;
    use_vec = vec && have_avx2();
    use_bf16dot = dot && have_bf16dot();
    return Py_BuildValue("(OO)", use_vec ? Py_True : Py_False, use_bf16dot ? Py_True : Py_False);
}

static PyMethodDef methods[] = {
    {"fwd", py_fwd, METH_VARARGS, "One forward time step of a GRU layer (product and gates) for B rows."},
    {"bwd", py_bwd, METH_VARARGS, "One backward time step of a GRU layer (gates and product) for B rows."},
    {"lstm_fwd", py_lstm_fwd, METH_VARARGS, "One forward time step of an LSTM layer (product and gates) for B rows."},
    {"lstm_bwd", py_lstm_bwd, METH_VARARGS, "One backward time step of an LSTM layer (gates and product) for B rows."},
    {"set_kernels", py_set_kernels, METH_VARARGS, "Choose the vector paths (tests); returns those in use."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_gru", "rtclone GRU and LSTM training steps", -1, methods};

/* ABI: the calling convention and weight layouts kernels/cpu/gru.py expects (2: column tiles, LSTM
 * steps with zoneout); a stale build with another value is not used. */
PyMODINIT_FUNC PyInit__gru(void) {
    use_vec = have_avx2();
    use_bf16dot = have_bf16dot();
    PyObject *m = PyModule_Create(&moddef);
    if (m && PyModule_AddIntConstant(m, "ABI", 2) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
