/* L_class engine kernel, compiled and loaded by simulations/lclass/native.py (arXiv 2403.18699, Appendix D step).
   float64; fixed summation order (8 lanes). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#define VW 8
#elif defined(__AVX__)
#define VW 4
#else
#define VW 2
#endif
#define LANES 8
#define NV (LANES / VW)
#define ROWS 4
#ifndef DRIFT_R
#define DRIFT_R 0.0009765625 /* = DRIFT_R of native.py: 2^-10 (-DDRIFT_R=... only for the tests) */
#endif

typedef double vd __attribute__((vector_size(VW * sizeof(double))));

static inline vd vload(const double *p) { vd v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(double *p, vd v) { memcpy(p, &v, sizeof v); }

/* the 8 logical lanes acc[q][l] (lane q*VW + l) added in one fixed order, whatever VW is */
static inline double lanes_sum(const vd *acc) {
    double a[LANES];
    for (int q = 0; q < NV; ++q)
        for (int l = 0; l < VW; ++l) a[q * VW + l] = acc[q][l];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* sum of squares of v[0..D), D a multiple of LANES */
static inline double sumsq(const double *restrict v, int D) {
    vd acc[NV];
    for (int q = 0; q < NV; ++q) acc[q] = (vd){0};
    for (int j = 0; j < D; j += LANES)
        for (int q = 0; q < NV; ++q) {
            vd x = vload(v + j + q * VW);
            acc[q] += x * x;
        }
    return lanes_sum(acc);
}

static inline void scale(double *restrict v, double s, int D) {
    for (int j = 0; j < D; j += VW) vstore(v + j, vload(v + j) * s);
}

/* v <- v / ||v|| (a zero row stays zero) */
static inline void normalise(double *restrict v, int D) { scale(v, 1.0 / fmax(sqrt(sumsq(v, D)), 1e-300), D); }

/* rows z[0..ROWS) (stride D): p[r] = z_r . mu, then z_r += a[r] mu, in one pass */
static inline void block_dot_update(double *restrict z, const double *restrict mu, int D, const double *a,
                                    double *p) {
    vd acc[ROWS][NV];
    for (int r = 0; r < ROWS; ++r)
        for (int q = 0; q < NV; ++q) acc[r][q] = (vd){0};
    for (int j = 0; j < D; j += LANES)
        for (int q = 0; q < NV; ++q) {
            const vd m = vload(mu + j + q * VW);
            for (int r = 0; r < ROWS; ++r) {
                double *zr = z + (size_t)r * D + j + q * VW;
                const vd x = vload(zr);
                acc[r][q] += x * m;
                vstore(zr, x + a[r] * m);
            }
        }
    for (int r = 0; r < ROWS; ++r) p[r] = lanes_sum(acc[r]);
}

/* nu += sum_r w[r] z_r over a block of ROWS rows */
static inline void block_mean(double *restrict nu, const double *restrict z, int D, const double *w) {
    const double *z0 = z, *z1 = z + D, *z2 = z + 2 * (size_t)D, *z3 = z + 3 * (size_t)D;
    for (int j = 0; j < D; j += VW)
        vstore(nu + j, vload(nu + j) + ((w[0] * vload(z0 + j) + w[1] * vload(z1 + j)) +
                                        (w[2] * vload(z2 + j) + w[3] * vload(z3 + j))));
}

/* One run: z (K x D, row-major; rows >= k and columns >= d are zero) advanced in place until it is
   decided. scratch: 2 D + 3 K doubles. Returns the state entries updated (K D per step). */
static int64_t run_one(double *restrict z, int k, int K, int D, double eta, int steps, double thr,
                       int early_exit, int check_every, int renorm_every, double stable_mean,
                       double log_reach, double *restrict scratch, int64_t *collapse, int64_t *decided) {
    double *mu = scratch, *nu = scratch + D, *r = scratch + 2 * (size_t)D, *p = r + K, *w = p + K;
    const double kd = (double)k;
    const double c = eta * kd / ((kd - 1.0) + eta);  /* c = eta k / (k - 1 + eta) */
    const double c2 = c * c, inv_k = 1.0 / kd, m2c = -2.0 * c;
    const double log_growth = log(fmax(fabs(1.0 - c), 1.0));
    double a[ROWS];
    for (int i = 0; i < K; ++i) {
        r[i] = 1.0;
        w[i] = 0.0;
    }
    for (int i = 0; i < k; ++i) {
        normalise(z + (size_t)i * D, D);
        w[i] = inv_k;
    }
    memset(mu, 0, sizeof(double) * (size_t)D);
    for (int i = 0; i < K; i += ROWS) block_mean(mu, z + (size_t)i * D, D, w + i);
    double mm = sumsq(mu, D);
    int64_t first = -1, work = 0;
    int t = 0;
    for (;; ++t) {
        if (first < 0 && mm >= thr) first = t;
        if (t == steps) break;
        if (early_exit && t % check_every == 0) {
            if (first >= 0) break;
            const double mn = sqrt(mm);
            const int rem = steps - t;
            if (mn < stable_mean && log(fmax(mn, 1e-12) + 1e-16 * rem) + rem * log_growth < log_reach) break;
        }
        work += (int64_t)K * D;
        /* One pass over the blocks of ROWS rows. Block b: z_i . mu and z_i <- z_i - c r_i mu (padding rows: a = 0,
           they stay zero); r_i <- r_i sqrt(max(0, 1 - 2 c x_i.mu + c^2 ||mu||^2)), at least 1e-300; a row that has
           shrunk below DRIFT_R since it was last normalised (its tracked norm's error may have grown 1/r_i^2-fold)
           is normalised now, and every row every renorm_every steps; w_i = 1 / (k r_i). Block b - 1, still in L1,
           then adds its share to the next mean, so the latency of block b's square roots and divisions overlaps
           with that work. Row by row and block by block these are the operations, in the order, of a step done
           in separate passes over all rows, so the bits are the same. */
        const int renorm = (t + 1) % renorm_every == 0;
        memset(nu, 0, sizeof(double) * (size_t)D);
        for (int i = 0; i < K; i += ROWS) {
            for (int l = 0; l < ROWS; ++l) a[l] = i + l < k ? -c * r[i + l] : 0.0;
            block_dot_update(z + (size_t)i * D, mu, D, a, p + i);
            const int end = i + ROWS < k ? i + ROWS : k;
            for (int j = i; j < end; ++j) {
                const double rj = r[j];
                double f = c2 * mm + m2c * (p[j] / rj) + 1.0;
                f = f > 0.0 ? f : 0.0;
                const double v = rj * sqrt(f);
                r[j] = v > 1e-300 ? v : 1e-300;
                if (r[j] < DRIFT_R) {
                    normalise(z + (size_t)j * D, D);
                    r[j] = 1.0;
                }
                if (renorm) {
                    normalise(z + (size_t)j * D, D);
                    r[j] = 1.0;
                }
                w[j] = inv_k / r[j];
            }
            if (i > 0) block_mean(nu, z + (size_t)(i - ROWS) * D, D, w + i - ROWS);
        }
        block_mean(nu, z + (size_t)(K - ROWS) * D, D, w + K - ROWS);
        double *tmp = mu;
        mu = nu;
        nu = tmp;
        mm = sumsq(mu, D);
    }
    *collapse = first;
    *decided = t;
    return work;
}

int lclass_abi(void) { return 1; }

int lclass_vector_width(void) { return VW; }

/* n runs; run i: state at z + offsets[i], k = ks[i], padded K = kpad[i] rows, D = dpad[i] columns */
int64_t lclass_decide(int n, const int64_t *offsets, const int32_t *ks, const int32_t *kpad,
                      const int32_t *dpad, double *z, const double *etas, int steps, double thr,
                      int early_exit, int check_every, int renorm_every, double stable_mean,
                      double log_reach, double *scratch, int64_t *collapse, int64_t *decided) {
    int64_t work = 0;
    for (int i = 0; i < n; ++i)
        work += run_one(z + offsets[i], ks[i], kpad[i], dpad[i], etas[i], steps, thr, early_exit,
                        check_every, renorm_every, stable_mean, log_reach, scratch, collapse + i,
                        decided + i);
    return work;
}
