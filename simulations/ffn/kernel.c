/* Fused training kernel of the synthetic 3-D FFN experiment (arXiv 2403.18699, Sec. 4), compiled and loaded by
   simulations/ffn/native.py. The formulas are those of simulations/ffn/grads.py and simulations/ffn/fused.py;
   this file computes them one run at a time, its state in the L1/L2 cache.

   real is float (the experiment) or double (-DFFN_DOUBLE, for the gradient tests). Every sum has one fixed
   order whatever vector width the compiler targets: sums over a contiguous axis use LANES logical lanes
   (lane j mod LANES) added in a fixed tree; every other sum runs in index order. Multiply-adds are fused only
   where the code says so (vfma: IEEE fma, one rounding, the same result in hardware and in libm); the compiler
   contracts nothing else (-ffp-contract=off). So the kernel gives the same bits on every machine it compiles on.

   Layout of one run's parameters (P reals; Hp = hidden padded to a multiple of LANES with zero weights, which
   stay zero: their gradients are exactly zero):
     W1 [D][Hp], b1 [Hp], W2 [Hp][Hp], b2 [Hp], W3T [D][Hp] (W3 transposed), b3 [D]. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef FFN_DOUBLE
typedef double real;
#define SQRT sqrt
#define LOG log
#define FMA fma
#else
typedef float real;
#define SQRT sqrtf
#define LOG logf
#define FMA fmaf
#endif

#if defined(__AVX512F__)
#define VBYTES 64
#elif defined(__AVX__)
#define VBYTES 32
#else
#define VBYTES 16
#endif
#define VW ((int)(VBYTES / sizeof(real)))
#define LANES ((int)(64 / sizeof(real))) /* 16 floats or 8 doubles */
#define NV (LANES / VW)
#define NORM_FLOOR 1e-6
#define ROWS 8 /* rows per register block of the products */
#define MAXC 4 /* the largest input / output dimension D (native.MAX_DIM) */

typedef real vr __attribute__((vector_size(VBYTES)));

#if defined(__x86_64__) && (defined(__AVX512F__) || defined(__FMA__))
#include <immintrin.h>
#endif

/* a b + c lane by lane with one rounding (IEEE fused multiply-add): the hardware instruction where the build
   has one, else libm's fma (correctly rounded too, only slower), so the bits are the same either way */
static inline vr vfma(vr a, vr b, vr c) {
#if defined(__x86_64__) && defined(__AVX512F__) && !defined(FFN_DOUBLE)
    return (vr)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(__x86_64__) && defined(__AVX512F__)
    return (vr)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#elif defined(__x86_64__) && defined(__AVX__) && defined(__FMA__) && !defined(FFN_DOUBLE)
    return (vr)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#elif defined(__x86_64__) && defined(__AVX__) && defined(__FMA__)
    return (vr)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#else
    for (int l = 0; l < VW; ++l) c[l] = FMA(a[l], b[l], c[l]);
    return c;
#endif
}

static inline vr vload(const real *p) { vr v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(real *p, vr v) { memcpy(p, &v, sizeof v); }
static inline vr vsplat(real a) { return a - (vr){0}; } /* a in every lane (x - 0 is x exactly: one broadcast) */

#ifdef FFN_DOUBLE
typedef int64_t ireal;
#else
typedef int32_t ireal;
#endif
typedef ireal vi __attribute__((vector_size(VBYTES)));

/* lane l ^ 2^level, for the shuffles of lanes_sum (the first VW entries of each row) */
static const ireal SWAP[4][16] = {{1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14},
                                  {2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13},
                                  {4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11},
                                  {8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7}};

/* the LANES logical lanes of acc[0..NV) added in one fixed tree: adjacent lanes first, then adjacent pairs, ...
   (within a vector by shuffles: lane l + lane l ^ w; then across the NV vectors, which hold consecutive lanes) */
static inline real lanes_sum(const vr *acc) {
    real t[NV];
    for (int q = 0; q < NV; ++q) {
        vr v = acc[q];
        for (int level = 0, w = 1; w < VW; ++level, w *= 2) {
            vi m;
            memcpy(&m, SWAP[level], sizeof m);
            v = v + __builtin_shuffle(v, m);
        }
        t[q] = v[0];
    }
    for (int w = 1; w < NV; w *= 2)
        for (int q = 0; q + w < NV; q += 2 * w) t[q] = t[q] + t[q + w];
    return t[0];
}

/* sum_j x[j] y[j], n a multiple of LANES */
static inline real dot(const real *restrict x, const real *restrict y, int n) {
    vr acc[NV];
    for (int q = 0; q < NV; ++q) acc[q] = vsplat(0);
    for (int j = 0; j < n; j += LANES)
        for (int q = 0; q < NV; ++q) acc[q] = vfma(vload(x + j + q * VW), vload(y + j + q * VW), acc[q]);
    return lanes_sum(acc);
}

/* exp(x) lane by lane for x in [-87, 0] (the exponents of the contrastive losses lie in [-2/tau, 0], and
   native.py admits no temperature below 0.025). float: Cody-Waite reduction and the polynomial of Cephes'
   expf (relative error about 1e-7), the same operations in every lane whatever the vector width; double (the
   tests): libm. */
static inline vr vexp(vr x) {
#ifdef FFN_DOUBLE
    for (int l = 0; l < VW; ++l) x[l] = exp(x[l]);
    return x;
#else
    const vr k = vfma(x, vsplat(1.44269504088896341f), vsplat(12582912.0f)) - 12582912.0f; /* round(x / ln 2) */
    const vr r = vfma(k, vsplat(2.12194440e-4f), vfma(k, vsplat(-0.693359375f), x));
    vr p = vfma(r, vsplat(1.9875691500e-4f), vsplat(1.3981999507e-3f));
    p = vfma(p, r, vsplat(8.3334519073e-3f));
    p = vfma(p, r, vsplat(4.1665795894e-2f));
    p = vfma(p, r, vsplat(1.6666665459e-1f));
    p = vfma(p, r, vsplat(5.0000001201e-1f));
    p = vfma(p, r * r, r + 1.0f);
    const vi bits = (__builtin_convertvector(k, vi) + 127) << 23;
    return p * (vr)bits;
#endif
}

static inline int pad_to(int n, int m) { return (n + m - 1) / m * m; }

/* --------------------------------------------------------------------------------------------------------- */
/* losses: gradient with respect to z (R x D, rows 0..N-1 the first view, N..2N-1 the second), value returned  */

enum { LOSS_INFONCE = 0, LOSS_DCL = 1, LOSS_BARLOW = 2, LOSS_VICREG = 3 };

typedef struct {
    real *u, *n, *uT, *w, *e, *r, *pu, *gu;
} LossScratch;

static int64_t loss_scratch_size(int R, int D) {
    const int Rp = pad_to(R, LANES);
    return (int64_t)R * D * 3 + R + 2 * (int64_t)D * Rp + (int64_t)(R + 4) * Rp + R + 64;
}

static LossScratch loss_scratch(real *s, int R, int D) {
    const int Rp = pad_to(R, LANES);
    LossScratch ls;
    ls.u = s; s += (size_t)R * D;
    ls.n = s; s += R;
    ls.pu = s; s += (size_t)R * D;
    ls.gu = s; s += (size_t)R * D;
    ls.uT = s; s += (size_t)D * Rp;
    ls.w = s; s += (size_t)D * Rp;
    ls.r = s; s += R;
    ls.e = s;
    return ls;
}

/* u = z / max(||z||, floor) row-wise, n = ||z|| */
static void unit_rows(const real *z, int R, int D, real *u, real *n) {
    for (int i = 0; i < R; ++i) {
        real s = 0;
        for (int d = 0; d < D; ++d) s += z[i * D + d] * z[i * D + d];
        n[i] = SQRT(s);
        const real nc = n[i] > (real)NORM_FLOOR ? n[i] : (real)NORM_FLOOR;
        for (int d = 0; d < D; ++d) u[i * D + d] = z[i * D + d] / nc;
    }
}

/* g = (gu - u (u . gu) [n >= floor]) / max(n, floor) */
static void project(const real *gu, const real *u, const real *n, int R, int D, real *g) {
    for (int i = 0; i < R; ++i) {
        real dt = 0;
        for (int d = 0; d < D; ++d) dt += u[i * D + d] * gu[i * D + d];
        if (!(n[i] >= (real)NORM_FLOOR)) dt = 0;
        const real nc = n[i] > (real)NORM_FLOOR ? n[i] : (real)NORM_FLOOR;
        for (int d = 0; d < D; ++d) g[i * D + d] = (gu[i * D + d] - u[i * D + d] * dt) / nc;
    }
}

/* InfoNCE (drop = 0) and DCL (drop = 1) in two passes over blocks of RB rows, which share the loads of uT and
   w (u has pad_to(R, RB) rows, zero beyond R; ls->e as many rows of E). D <= MAXC, a compile-time constant. */
#define RB 4

/* pass 1 for rows i0..i0+RB: rows of E (E_ia = exp(s_ia - 1/tau), 0 off the allowed pairs) into ls->e;
   r_i = sum_a E_ia and pu_i = (E u)_i / r_i, all sums lane-fixed */
static inline __attribute__((always_inline)) void contrastive_pass1(const real *u, int R, const int D, real inv_t,
                                                                    int drop, LossScratch *ls, int i0) {
    const int Rp = pad_to(R, LANES), N = R / 2;
    const real *uT = ls->uT;
    real ui[RB][MAXC];
    ireal self[RB], partner[RB];
    vr acc[RB][MAXC + 1][NV];
    vi iota;
    for (int l = 0; l < VW; ++l) iota[l] = l;
    for (int b = 0; b < RB; ++b) {
        const int i = i0 + b;
        for (int d = 0; d < D; ++d) ui[b][d] = i < R ? u[i * D + d] * inv_t : 0; /* s_ia = (u_i / tau) . u_a */
        self[b] = i;
        partner[b] = drop ? (i < N ? i + N : i - N) : -1;
        for (int c = 0; c <= D; ++c)
            for (int q = 0; q < NV; ++q) acc[b][c][q] = vsplat(0);
    }
    for (int a = 0; a < Rp; a += LANES)
        for (int q = 0; q < NV; ++q) {
            const int a0 = a + q * VW;
            vr ut[MAXC];
            for (int d = 0; d < D; ++d) ut[d] = vload(uT + (size_t)d * Rp + a0);
            /* only a few vectors hold an excluded pair (a = i, a = p(i)) or padding (a >= R) */
            int masked = a0 + VW > R;
            for (int b = 0; b < RB; ++b)
                masked |= (self[b] >= a0 && self[b] < a0 + VW) || (partner[b] >= a0 && partner[b] < a0 + VW);
            const vi idx = iota + a0;
            for (int b = 0; b < RB; ++b) {
                vr sv = ut[0] * ui[b][0];
                for (int d = 1; d < D; ++d) sv = vfma(ut[d], vsplat(ui[b][d]), sv);
                vr ev = vexp(sv - inv_t);
                if (masked) ev = (vr)((vi)ev & ((idx < R) & (idx != self[b]) & (idx != partner[b])));
                vstore(ls->e + (size_t)(i0 + b) * Rp + a0, ev);
                acc[b][0][q] += ev;
                for (int d = 0; d < D; ++d) acc[b][d + 1][q] = vfma(ev, ut[d], acc[b][d + 1][q]);
            }
        }
    for (int b = 0; b < RB && i0 + b < R; ++b) {
        const int i = i0 + b;
        ls->r[i] = lanes_sum(acc[b][0]);
        for (int d = 0; d < D; ++d) ls->pu[i * D + d] = lanes_sum(acc[b][d + 1]) / ls->r[i];
    }
}

/* pass 2 for rows i0..i0+RB: (P^T u)_i = (E (u / r))_i (E symmetric; ls->w holds u / r), then
   gu_i += (P u + P^T u - 2 u_p(i))_i / (R tau); returns the rows' sum of log r_i + 1/tau - s_{i p(i)} */
static inline __attribute__((always_inline)) double contrastive_pass2(const real *u, int R, const int D, real inv_t,
                                                                      LossScratch *ls, int i0, int want) {
    const int Rp = pad_to(R, LANES), N = R / 2;
    const real scale = inv_t / (real)R;
    vr acc[RB][MAXC][NV];
    for (int b = 0; b < RB; ++b)
        for (int d = 0; d < D; ++d)
            for (int q = 0; q < NV; ++q) acc[b][d][q] = vsplat(0);
    for (int a = 0; a < Rp; a += LANES)
        for (int q = 0; q < NV; ++q) {
            const int a0 = a + q * VW;
            vr wt[MAXC];
            for (int d = 0; d < D; ++d) wt[d] = vload(ls->w + (size_t)d * Rp + a0);
            for (int b = 0; b < RB; ++b) {
                const vr ev = vload(ls->e + (size_t)(i0 + b) * Rp + a0);
                for (int d = 0; d < D; ++d) acc[b][d][q] = vfma(ev, wt[d], acc[b][d][q]);
            }
        }
    double value = 0;
    for (int b = 0; b < RB && i0 + b < R; ++b) {
        const int i = i0 + b, p = i < N ? i + N : i - N;
        real pos = 0;
        for (int d = 0; d < D; ++d) {
            ls->gu[i * D + d] += (ls->pu[i * D + d] + lanes_sum(acc[b][d]) - 2 * u[p * D + d]) * scale;
            pos += u[i * D + d] * u[p * D + d];
        }
        if (want) value += (double)(LOG(ls->r[i]) + inv_t - pos * inv_t);
    }
    return value;
}

/* gu += dL/du of InfoNCE (drop = 0) or DCL (drop = 1) on unit rows u (R x D); returns the loss */
static inline __attribute__((always_inline)) double contrastive_d(const real *u, int R, const int D, real inv_t,
                                                                  int drop, LossScratch *ls, int want) {
    const int Rp = pad_to(R, LANES), Rr = pad_to(R, RB);
    for (int d = 0; d < D; ++d) {
        for (int a = 0; a < R; ++a) ls->uT[d * Rp + a] = u[a * D + d];
        for (int a = R; a < Rp; ++a) ls->uT[d * Rp + a] = 0;
    }
    for (int i0 = 0; i0 < Rr; i0 += RB) contrastive_pass1(u, R, D, inv_t, drop, ls, i0);
    for (int d = 0; d < D; ++d) {
        for (int a = 0; a < R; ++a) ls->w[d * Rp + a] = ls->uT[d * Rp + a] / ls->r[a];
        for (int a = R; a < Rp; ++a) ls->w[d * Rp + a] = 0;
    }
    double value = 0;
    for (int i0 = 0; i0 < Rr; i0 += RB) value += contrastive_pass2(u, R, D, inv_t, ls, i0, want);
    return value / R;
}

/* contrastive_d with D a compile-time constant (the accumulators stay in registers) */
static double contrastive(const real *u, int R, int D, real inv_t, int drop, LossScratch *ls, int want) {
    switch (D) {
    case 1: return contrastive_d(u, R, 1, inv_t, drop, ls, want);
    case 2: return contrastive_d(u, R, 2, inv_t, drop, ls, want);
    case 3: return contrastive_d(u, R, 3, inv_t, drop, ls, want);
    default: return contrastive_d(u, R, 4, inv_t, drop, ls, want);
    }
}

/* Every sum below runs over the rows i in order, one accumulator per output (i outermost, so the accumulators
   are independent chains). */

/* column means of the N rows of view v: m[d] = sum_i z[v N + i][d] / N */
static void view_means(const real *z, int N, int D, int v, real *m) {
    for (int d = 0; d < D; ++d) m[d] = 0;
    for (int i = 0; i < N; ++i)
        for (int d = 0; d < D; ++d) m[d] += z[(v * N + i) * D + d];
    for (int d = 0; d < D; ++d) m[d] /= N;
}

/* Barlow Twins: g = dL/dz (overwritten); returns the loss */
static double barlow(const real *z, int R, int D, real lam, real eps, real *g, real *y, real *sig, int want) {
    const int N = R / 2;
    for (int v = 0; v < 2; ++v) {
        real m[MAXC], s[MAXC];
        view_means(z, N, D, v, m);
        for (int d = 0; d < D; ++d) s[d] = 0;
        for (int i = 0; i < N; ++i)
            for (int d = 0; d < D; ++d) {
                const real c = z[(v * N + i) * D + d] - m[d];
                y[(v * N + i) * D + d] = c;
                s[d] += c * c;
            }
        for (int d = 0; d < D; ++d) sig[v * D + d] = SQRT(s[d] / N + eps);
        for (int i = 0; i < N; ++i)
            for (int d = 0; d < D; ++d) y[(v * N + i) * D + d] /= sig[v * D + d];
    }
    real C[MAXC * MAXC], G[MAXC * MAXC];
    for (int k = 0; k < D * D; ++k) C[k] = 0;
    for (int i = 0; i < N; ++i)
        for (int a = 0; a < D; ++a)
            for (int b = 0; b < D; ++b) C[a * D + b] += y[i * D + a] * y[(N + i) * D + b];
    double value = 0;
    for (int a = 0; a < D; ++a)
        for (int b = 0; b < D; ++b) {
            C[a * D + b] /= N;
            G[a * D + b] = a == b ? (C[a * D + b] - 1) * 2 : C[a * D + b] * (2 * lam);
            if (want) value += a == b ? (double)((1 - C[a * D + b]) * (1 - C[a * D + b]))
                                      : (double)(lam * C[a * D + b] * C[a * D + b]);
        }
    /* gy1 = y2 G^T / N, gy2 = y1 G / N */
    for (int i = 0; i < N; ++i)
        for (int a = 0; a < D; ++a) {
            real s1 = 0, s2 = 0;
            for (int b = 0; b < D; ++b) {
                s1 += y[(N + i) * D + b] * G[a * D + b];
                s2 += y[i * D + b] * G[b * D + a];
            }
            g[i * D + a] = s1 / N;
            g[(N + i) * D + a] = s2 / N;
        }
    /* through the standardisation: (gy - mean(gy) - y mean(gy y)) / sigma */
    for (int v = 0; v < 2; ++v) {
        real mg[MAXC], mgy[MAXC];
        for (int d = 0; d < D; ++d) mg[d] = mgy[d] = 0;
        for (int i = 0; i < N; ++i)
            for (int d = 0; d < D; ++d) {
                mg[d] += g[(v * N + i) * D + d];
                mgy[d] += g[(v * N + i) * D + d] * y[(v * N + i) * D + d];
            }
        for (int d = 0; d < D; ++d) {
            mg[d] /= N;
            mgy[d] /= N;
        }
        for (int i = 0; i < N; ++i)
            for (int d = 0; d < D; ++d) {
                const int k = (v * N + i) * D + d;
                g[k] = (g[k] - mg[d] - y[k] * mgy[d]) / sig[v * D + d];
            }
    }
    return value;
}

/* VICReg: g = dL/dz (overwritten); returns the loss */
static double vicreg(const real *z, int R, int D, const double *lp, real *g, real *xc, int want) {
    const int N = R / 2;
    const real sim = lp[0], var_w = lp[1], cov_w = lp[2], eps = lp[3], gamma = lp[4];
    double value = 0;
    for (int v = 0; v < 2; ++v) {
        real m[MAXC], K[MAXC * MAXC], M[MAXC * MAXC];
        view_means(z, N, D, v, m);
        for (int i = 0; i < N; ++i)
            for (int d = 0; d < D; ++d) xc[(v * N + i) * D + d] = z[(v * N + i) * D + d] - m[d];
        for (int k = 0; k < D * D; ++k) K[k] = 0;
        for (int i = 0; i < N; ++i)
            for (int a = 0; a < D; ++a)
                for (int b = 0; b < D; ++b) K[a * D + b] += xc[(v * N + i) * D + a] * xc[(v * N + i) * D + b];
        for (int a = 0; a < D; ++a)
            for (int b = 0; b < D; ++b) {
                const real cov = K[a * D + b] / (N - 1);
                if (a == b) {
                    const real std = SQRT(cov + eps);
                    M[a * D + b] = gamma - std > 0 ? -var_w / (real)(D * (N - 1)) / std : 0;
                    if (want) value += (double)(var_w * (gamma - std > 0 ? gamma - std : 0) / D);
                } else {
                    M[a * D + b] = cov * (4 * cov_w / (real)(D * (N - 1)));
                    if (want) value += (double)(cov_w * cov * cov / D);
                }
            }
        for (int i = 0; i < N; ++i)
            for (int b = 0; b < D; ++b) {
                real s = 0;
                for (int a = 0; a < D; ++a) s += xc[(v * N + i) * D + a] * M[a * D + b];
                g[(v * N + i) * D + b] = s;
            }
    }
    const real ci = 2 * sim / (real)(N * D);
    double inv = 0;
    for (int i = 0; i < N; ++i)
        for (int d = 0; d < D; ++d) {
            const real diff = z[i * D + d] - z[(N + i) * D + d];
            g[i * D + d] += diff * ci;
            g[(N + i) * D + d] += -(diff * ci);
            if (want) inv += (double)(diff * diff);
        }
    return want ? value + sim * inv / (N * D) : 0;
}

/* d(base loss + CLOP term)/dz into g (R x D); crow: the unit prototype of each labeled row, zero rows for the
   unlabeled ones, or NULL without the CLOP term. Returns the base loss when want. */
static double loss_grad(const real *z, const real *crow, int R, int D, int loss, const double *lp, real clop_lam,
                        real *g, real *scratch, int want) {
    LossScratch ls = loss_scratch(scratch, R, D);
    double value;
    const int cosine = loss == LOSS_INFONCE || loss == LOSS_DCL;
    if (cosine || crow) unit_rows(z, R, D, ls.u, ls.n);
    if (crow)
        for (int k = 0; k < R * D; ++k) ls.gu[k] = crow[k] * -clop_lam;
    else
        for (int k = 0; k < R * D; ++k) ls.gu[k] = 0;
    if (cosine) {
        value = contrastive(ls.u, R, D, (real)(1.0 / lp[0]), loss == LOSS_DCL, &ls, want);
        project(ls.gu, ls.u, ls.n, R, D, g);
        return value;
    }
    real *y = ls.e, *sig = ls.e + (size_t)R * D;
    value = loss == LOSS_BARLOW ? barlow(z, R, D, (real)lp[0], (real)lp[1], g, y, sig, want)
                                : vicreg(z, R, D, lp, g, y, want);
    if (crow) {
        real *gc = ls.pu;
        project(ls.gu, ls.u, ls.n, R, D, gc);
        for (int k = 0; k < R * D; ++k) g[k] += gc[k];
    }
    return value;
}

/* --------------------------------------------------------------------------------------------------------- */
/* the network                                                                                                 */

/* columns j..j+NJ*VW of rows_times (NJ a compile-time constant: the accumulators stay in registers) */
static inline __attribute__((always_inline)) void rows_tile(real *restrict out, const real *restrict in, int ldi,
                                                            int i, int j, int K, const real *restrict W, int Hp,
                                                            const real *restrict bias, const real *restrict gate,
                                                            int relu, const int NJ) {
    vr acc[ROWS][2 * NV];
    for (int r = 0; r < ROWS; ++r)
        for (int q = 0; q < NJ; ++q) acc[r][q] = bias ? vload(bias + j + q * VW) : vsplat(0);
    for (int k = 0; k < K; ++k) {
        vr w[2 * NV];
        for (int q = 0; q < NJ; ++q) w[q] = vload(W + (size_t)k * Hp + j + q * VW);
        for (int r = 0; r < ROWS; ++r) {
            const vr a = vsplat(in[(size_t)(i + r) * ldi + k]);
            for (int q = 0; q < NJ; ++q) acc[r][q] = vfma(a, w[q], acc[r][q]);
        }
    }
    for (int r = 0; r < ROWS; ++r)
        for (int q = 0; q < NJ; ++q) {
            const size_t at = (size_t)(i + r) * Hp + j + q * VW;
            vr v = acc[r][q];
            if (relu) v = (vr)((vi)v & (v > 0));               /* v > 0 ? v : 0 */
            if (gate) v = (vr)((vi)v & (vload(gate + at) > 0)); /* gate > 0 ? v : 0 */
            vstore(out + at, v);
        }
}

/* out[i][:] = bias + sum_{k<K} in[i][k] W[k][:] (bias NULL: 0) for rows i < R (R a multiple of ROWS), width Hp
   (a multiple of LANES); in has row stride ldi, W and out row stride Hp. Each sum runs in index order k. Then,
   with relu, out = max(out, 0) (negative and NaN to 0), and with a gate (R x Hp), out = 0 where gate <= 0. */
static void rows_times(real *restrict out, const real *restrict in, int ldi, int R, int K, const real *restrict W,
                       int Hp, const real *restrict bias, const real *restrict gate, int relu) {
    for (int i = 0; i < R; i += ROWS) {
        int j = 0;
        for (; j + 2 * LANES <= Hp; j += 2 * LANES) rows_tile(out, in, ldi, i, j, K, W, Hp, bias, gate, relu, 2 * NV);
        for (; j < Hp; j += LANES) rows_tile(out, in, ldi, i, j, K, W, Hp, bias, gate, relu, NV);
    }
}

/* columns j..j+NJ*VW of rows k0..k0+TR of at_times (NJ, TR compile-time constants) */
static inline __attribute__((always_inline)) void at_tile(real *restrict out, const real *restrict A, int lda,
                                                          int k0, int K, const real *restrict B, int R, int W,
                                                          int j, const int NJ, const int TR) {
    int kk[ROWS];
    for (int r = 0; r < TR; ++r) kk[r] = k0 + r < K ? k0 + r : K - 1;
    vr acc[ROWS][2 * NV];
    for (int r = 0; r < TR; ++r)
        for (int q = 0; q < NJ; ++q) acc[r][q] = vsplat(0);
    for (int i = 0; i < R; ++i) {
        vr b[2 * NV];
        for (int q = 0; q < NJ; ++q) b[q] = vload(B + (size_t)i * W + j + q * VW);
        for (int r = 0; r < TR; ++r) {
            const vr a = vsplat(A[(size_t)i * lda + kk[r]]);
            for (int q = 0; q < NJ; ++q) acc[r][q] = vfma(a, b[q], acc[r][q]);
        }
    }
    for (int r = 0; r < TR && k0 + r < K; ++r)
        for (int q = 0; q < NJ; ++q) vstore(out + (size_t)(k0 + r) * W + j + q * VW, acc[r][q]);
}

/* out[k][:] = sum_{i<R} A[i][k] B[i][:] for k < K, width W (a multiple of LANES); A has row stride lda, B and
   out row stride W. Each sum runs in row order i. Tiles of ROWS rows of out, or of 4 where K <= 4. */
static void at_times(real *restrict out, const real *restrict A, int lda, int K, const real *restrict B, int R,
                     int W) {
    for (int k0 = 0; k0 < K; k0 += ROWS) {
        int j = 0;
        if (K <= 4) {
            for (; j + 2 * LANES <= W; j += 2 * LANES) at_tile(out, A, lda, k0, K, B, R, W, j, 2 * NV, 4);
            for (; j < W; j += LANES) at_tile(out, A, lda, k0, K, B, R, W, j, NV, 4);
        } else {
            for (; j + 2 * LANES <= W; j += 2 * LANES) at_tile(out, A, lda, k0, K, B, R, W, j, 2 * NV, ROWS);
            for (; j < W; j += LANES) at_tile(out, A, lda, k0, K, B, R, W, j, NV, ROWS);
        }
    }
}

/* out[:] = sum_{i<R} B[i][:] (row order), width W a multiple of LANES */
static void col_sums(real *restrict out, const real *restrict B, int R, int W) {
    for (int j = 0; j < W; j += LANES) {
        vr acc[NV];
        for (int q = 0; q < NV; ++q) acc[q] = vsplat(0);
        for (int i = 0; i < R; ++i)
            for (int q = 0; q < NV; ++q) acc[q] += vload(B + (size_t)i * W + j + q * VW);
        for (int q = 0; q < NV; ++q) vstore(out + j + q * VW, acc[q]);
    }
}

typedef struct {
    int D, Hp;
    real *w1, *b1, *w2, *b2, *w3t, *b3;
} Net;

static int64_t param_count(int D, int Hp) { return (int64_t)D * Hp + Hp + (int64_t)Hp * Hp + Hp + (int64_t)D * Hp + D; }

static Net net_view(real *p, int D, int Hp) {
    Net n;
    n.D = D;
    n.Hp = Hp;
    n.w1 = p; p += (size_t)D * Hp;
    n.b1 = p; p += Hp;
    n.w2 = p; p += (size_t)Hp * Hp;
    n.b2 = p; p += Hp;
    n.w3t = p; p += (size_t)D * Hp;
    n.b3 = p;
    return n;
}

/* h1, h2 (Rb x Hp) and z (Rb x D) for x (Rb x D; rows R..Rb-1 zero); z_id = (h2_i . W3^T_d) + b3_d, the dot
   product lane-fixed */
static void forward(const Net *net, const real *x, int Rb, real *h1, real *h2, real *z) {
    const int D = net->D, Hp = net->Hp;
    rows_times(h1, x, D, Rb, D, net->w1, Hp, net->b1, NULL, 1);
    rows_times(h2, h1, Hp, Rb, Hp, net->w2, Hp, net->b2, NULL, 1);
    for (int i = 0; i < Rb; ++i)
        for (int d = 0; d < D; ++d) z[i * D + d] = dot(h2 + (size_t)i * Hp, net->w3t + (size_t)d * Hp, Hp) + net->b3[d];
}

/* grad (the layout of Net) of the loss whose gradient with respect to z is g (Rb x D, zero beyond row R);
   g2, g1: Rb x Hp scratch; wt: Hp x Hp scratch */
static void backward(const Net *net, const real *x, int Rb, const real *h1, const real *h2, const real *g,
                     real *g2, real *g1, real *wt, real *grad) {
    const int D = net->D, Hp = net->Hp;
    Net gn = net_view(grad, D, Hp);
    at_times(gn.w3t, g, D, D, h2, Rb, Hp);
    for (int d = 0; d < D; ++d) {
        real s = 0;
        for (int i = 0; i < Rb; ++i) s += g[i * D + d];
        gn.b3[d] = s;
    }
    rows_times(g2, g, D, Rb, D, net->w3t, Hp, NULL, h2, 0);
    at_times(gn.w2, h1, Hp, Hp, g2, Rb, Hp);
    col_sums(gn.b2, g2, Rb, Hp);
    for (int k = 0; k < Hp; ++k) /* W2^T */
        for (int j = 0; j < Hp; ++j) wt[j * Hp + k] = net->w2[k * Hp + j];
    rows_times(g1, g2, Hp, Rb, Hp, wt, Hp, NULL, h1, 0);
    at_times(gn.w1, x, D, D, g1, Rb, Hp);
    col_sums(gn.b1, g1, Rb, Hp);
}

/* one Adam step (torch.optim.Adam's arithmetic): m <- m + (1 - b1)(g - m), v <- b2 v + (1 - b2) g g,
   p <- p - step (m / (sqrt(v) / bc2 + eps)) */
static void adam(real *p, real *m, real *v, const real *g, int64_t n, real w1, real b2, real w2, real bc2,
                 real eps, real step) {
    for (int64_t j = 0; j < n; ++j) {
        m[j] = m[j] + w1 * (g[j] - m[j]);
        v[j] = v[j] * b2 + w2 * g[j] * g[j];
        p[j] = p[j] - step * (m[j] / (SQRT(v[j]) / bc2 + eps));
    }
}

/* --------------------------------------------------------------------------------------------------------- */
/* entry points                                                                                                */

int ffn_abi(void) { return 1; }
int ffn_real_bytes(void) { return (int)sizeof(real); }
int ffn_lanes(void) { return LANES; }
int ffn_vector_width(void) { return VW; }

/* 1 where fma is a hardware instruction in this build (else libm computes it, with the same bits, slowly) */
int ffn_fast_fma(void) {
#if (defined(FFN_DOUBLE) && defined(__FP_FAST_FMA)) || (!defined(FFN_DOUBLE) && defined(__FP_FAST_FMAF))
    return 1;
#else
    return 0;
#endif
}

int64_t ffn_param_count(int D, int Hp) { return param_count(D, Hp); }

/* reals of scratch one call needs for batches of at most B points */
int64_t ffn_scratch_size(int B, int D, int Hp) {
    const int R = 2 * B, Rb = pad_to(R, ROWS);
    return (int64_t)Rb * D * 4 + 4 * (int64_t)Rb * Hp + (int64_t)Hp * Hp + param_count(D, Hp) +
           loss_scratch_size(R, D) + 64;
}

typedef struct {
    real *x, *z, *g, *cr, *h1, *h2, *g2, *g1, *wt, *grad, *loss;
} Scratch;

static Scratch scratch_view(real *s, int Rb, int D, int Hp) {
    Scratch w;
    w.x = s; s += (size_t)Rb * D;
    w.z = s; s += (size_t)Rb * D;
    w.g = s; s += (size_t)Rb * D;
    w.cr = s; s += (size_t)Rb * D;
    w.h1 = s; s += (size_t)Rb * Hp;
    w.h2 = s; s += (size_t)Rb * Hp;
    w.g2 = s; s += (size_t)Rb * Hp;
    w.g1 = s; s += (size_t)Rb * Hp;
    w.wt = s; s += (size_t)Hp * Hp;
    w.grad = s; s += param_count(D, Hp);
    w.loss = s;
    return w;
}

/* forward, loss gradient and backward on the R rows of w->x (zero rows up to Rb): the gradient in w->grad,
   the base loss returned when want */
static double gradient(const Net *net, Scratch *w, int R, int Rb, const real *crow, int loss, const double *lp,
                       real clop_lam, int want) {
    const int D = net->D;
    forward(net, w->x, Rb, w->h1, w->h2, w->z);
    const double value = loss_grad(w->z, crow, R, D, loss, lp, clop_lam, w->g, w->loss, want);
    memset(w->g + (size_t)R * D, 0, sizeof(real) * (size_t)(Rb - R) * D);
    backward(net, w->x, Rb, w->h1, w->h2, w->g, w->g2, w->g1, w->wt, w->grad);
    return value;
}

/* One epoch of S runs. Run s: parameters params[s*P ..], Adam moments m, v (same layout), `step` Adam steps
   taken before this epoch; views v1, v2 (S x N x D), point order (S x N), row prototypes crow (S x N x D, unit
   rows for labeled points, zero rows otherwise) or NULL. Batches of `batch` points (the last may be smaller).
   lp: the loss's settings (see native.py). loss_out (S, or NULL): the base loss averaged over the batches.
   Returns 0. */
int ffn_epoch(int S, int N, int D, int Hp, int batch, real *params, real *m, real *v, int64_t step,
              const real *v1, const real *v2, const int64_t *order, const real *crow, int loss,
              const double *lp, double clop_lam, double lr, double beta1, double beta2, double adam_eps,
              real *scratch, double *loss_out) {
    const int64_t P = param_count(D, Hp);
    const int Rmax = 2 * (batch < N ? batch : N), Rbmax = pad_to(Rmax, ROWS);
    Scratch w = scratch_view(scratch, Rbmax, D, Hp);
    for (int s = 0; s < S; ++s) {
        real *p = params + (size_t)s * P, *ms = m + (size_t)s * P, *vs = v + (size_t)s * P;
        Net net = net_view(p, D, Hp);
        const int64_t *ord = order + (size_t)s * N;
        const real *a1 = v1 + (size_t)s * N * D, *a2 = v2 + (size_t)s * N * D;
        const real *cs = crow ? crow + (size_t)s * N * D : NULL;
        double sum = 0;
        int batches = 0;
        int64_t t = step;
        for (int start = 0; start < N; start += batch) {
            const int b = start + batch <= N ? batch : N - start, R = 2 * b, Rb = pad_to(R, ROWS);
            memset(w.x, 0, sizeof(real) * (size_t)Rb * D);
            for (int i = 0; i < b; ++i) {
                const int64_t o = ord[start + i];
                for (int d = 0; d < D; ++d) {
                    w.x[i * D + d] = a1[o * D + d];
                    w.x[(b + i) * D + d] = a2[o * D + d];
                    if (cs) w.cr[i * D + d] = w.cr[(b + i) * D + d] = cs[o * D + d];
                }
            }
            sum += gradient(&net, &w, R, Rb, cs ? w.cr : NULL, loss, lp, (real)clop_lam, loss_out != NULL);
            ++t;
            const double bc1 = 1.0 - pow(beta1, (double)t), bc2 = sqrt(1.0 - pow(beta2, (double)t));
            adam(p, ms, vs, w.grad, P, (real)(1.0 - beta1), (real)beta2, (real)(1.0 - beta2), (real)bc2,
                 (real)adam_eps, (real)(lr / bc1));
            ++batches;
        }
        if (loss_out) loss_out[s] = sum / (batches > 0 ? batches : 1);
    }
    return 0;
}

/* f(x) of S runs on M points each: x, out: S x M x D; scratch: ffn_scratch_size(ROWS, D, Hp) reals */
void ffn_forward(int S, int M, int D, int Hp, real *params, const real *x, real *out, real *scratch) {
    const int64_t P = param_count(D, Hp);
    Scratch w = scratch_view(scratch, ROWS, D, Hp);
    for (int s = 0; s < S; ++s) {
        Net net = net_view(params + (size_t)s * P, D, Hp);
        for (int i0 = 0; i0 < M; i0 += ROWS) {
            const int n = M - i0 < ROWS ? M - i0 : ROWS;
            memset(w.x, 0, sizeof(real) * ROWS * D);
            memcpy(w.x, x + ((size_t)s * M + i0) * D, sizeof(real) * (size_t)n * D);
            forward(&net, w.x, ROWS, w.h1, w.h2, w.z);
            memcpy(out + ((size_t)s * M + i0) * D, w.z, sizeof(real) * (size_t)n * D);
        }
    }
}

/* For the tests: the gradient g (R x D) of the base loss (+ the CLOP term with crow) at z; returns the loss.
   scratch: ffn_scratch_size(R / 2, D, 16) reals */
double ffn_loss_grad(int R, int D, const real *z, const real *crow, int loss, const double *lp, double clop_lam,
                     real *g, real *scratch) {
    return loss_grad(z, crow, R, D, loss, lp, (real)clop_lam, g, scratch, 1);
}

/* For the tests: the parameter gradient (P reals) of the loss on the outputs of x (R x D rows, the two views);
   returns the base loss. scratch: ffn_scratch_size(R / 2, D, Hp) reals */
double ffn_param_grad(int R, int D, int Hp, real *params, const real *x, const real *crow, int loss,
                      const double *lp, double clop_lam, real *grad, real *scratch) {
    const int Rb = pad_to(R, ROWS);
    Net net = net_view(params, D, Hp);
    Scratch w = scratch_view(scratch, Rb, D, Hp);
    memset(w.x, 0, sizeof(real) * (size_t)Rb * D);
    memcpy(w.x, x, sizeof(real) * (size_t)R * D);
    const double value = gradient(&net, &w, R, Rb, crow, loss, lp, (real)clop_lam, 1);
    memcpy(grad, w.grad, sizeof(real) * (size_t)param_count(D, Hp));
    return value;
}

/* For the tests: y = exp(x) as the contrastive losses compute it, n a multiple of VW */
void ffn_exp(int n, const real *x, real *y) {
    for (int j = 0; j < n; j += VW) vstore(y + j, vexp(vload(x + j)));
}
