/* Mamba-1's selective scan, forward only, for CPUs: the inference fast path of seqbench_plugins.cpu_scan.
 *
 * Time-major layouts: one time step's values are a contiguous row, rows are evenly spaced (a row stride
 * lets delta, z, B and C be column slices of a projection's output without copies):
 *   u, y           : (batch, T, E)     rows of E
 *   delta          : (batch, T, E)     rows delta_stride apart, before its bias and softplus (as mamba-ssm
 *                                      takes it); or, with delta_rank R > 0, (batch, T, R): the low-rank input
 *                                      that delta_weight (R, E) projects up (mamba's dt_proj, fused here as in
 *                                      mamba-ssm's mamba_inner_fn, so the (T, E) delta is never stored)
 *   delta_bias     : (E,)
 *   z              : (batch, T, E)     rows z_stride apart; NULL for no output gate
 *   A              : (N, E)            transposed from the model's (E, N)
 *   Bm, Cm         : (batch, T, N)     rows bc_stride apart
 *   D              : (E,) or NULL
 *
 *   delta <- softplus(delta + delta_bias)     (torch's softplus: the identity above 20)
 *   h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t          h : (N, E) per batch row, h_{-1} = 0
 *   y_t = (C_t . h_t + D * u_t) * silu(z_t)
 *
 * Work splits into blocks of `block` (16, 32 or 64) consecutive channels of one batch row; a block's state
 * (N x block floats, on the stack: the caller keeps N <= 256) stays in L1 while t runs, and its innermost
 * loops run over the block's channels, so the compiler vectorises them (the decays' exp inline, softplus
 * and SiLU through glibc's vector math library under -ffast-math). Wider blocks spread each step's scalar
 * work over more channels (one thread, L = 8192, 128 channels: 2x faster at 64 than at 16); the caller
 * picks the widest that still gives every thread a block.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_CHANNELS 64

/* 2^x for x <= 0 (the decays in base 2: delta >= 0, A log2(e) < 0), to ~2e-7 relative: 2^x = 2^k 2^f with
 * k = round(x), f in [-1/2, 1/2], a degree-5 minimax polynomial for 2^f and 2^k from the exponent bits. The
 * decays are most of the scan's arithmetic, and this is ~12 vector operations. Inlined, it lets the compiler
 * keep the scan state in registers; a call to glibc's vector expf clobbers them (one layer at L = 8192,
 * with Cephes' expf inline instead: 4.6 vs 6.9 ms; this polynomial brought it to ~3 ms). */
static inline float exp2_nonpositive(float x) {
    x = x < -126.0f ? -126.0f : x;  /* below, 2^k would leave the normal range (and the decay is ~0 anyway) */
    const float k = rintf(x), f = x - k;  /* rintf: one instruction (roundf is three) */
    float p = 1.3264727e-3f;
    p = p * f + 9.6715127e-3f;
    p = p * f + 5.5507337e-2f;
    p = p * f + 2.4022242e-1f;
    p = p * f + 6.9314698e-1f;
    p = p * f + 1.0f;
    const int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline void scan_block(int64_t T, int64_t E, int64_t N, int64_t e0, const int width,
                              const float *u, const float *delta, int64_t delta_stride, int64_t delta_rank,
                              const float *delta_weight, const float *delta_bias, const float *A,
                              const float *Bm, const float *Cm, int64_t bc_stride, const float *D, const float *z,
                              int64_t z_stride, float *y) {
    float h[N][MAX_CHANNELS], a[N][MAX_CHANNELS], skip[MAX_CHANNELS], bias[MAX_CHANNELS];
    for (int64_t n = 0; n < N; n++)
        for (int e = 0; e < width; e++) {
            h[n][e] = 0.0f;
            a[n][e] = A[n * E + e0 + e] * 1.44269504088896341f;  /* log2(e): the decays run in base 2 */
        }
    for (int e = 0; e < width; e++) {
        skip[e] = D ? D[e0 + e] : 0.0f;
        bias[e] = delta_bias[e0 + e];
    }
    for (int64_t t = 0; t < T; t++) {
        const float *raw = delta + t * delta_stride, *ut = u + t * E + e0;
        const float *b = Bm + t * bc_stride, *c = Cm + t * bc_stride;
        float dt[MAX_CHANNELS], du[MAX_CHANNELS], acc[MAX_CHANNELS];
        if (delta_rank) {
            for (int e = 0; e < width; e++) dt[e] = bias[e];
            for (int64_t r = 0; r < delta_rank; r++)
                for (int e = 0; e < width; e++) dt[e] += raw[r] * delta_weight[r * E + e0 + e];
        } else {
            for (int e = 0; e < width; e++) dt[e] = raw[e0 + e] + bias[e];
        }
        for (int e = 0; e < width; e++) {
            const float x = dt[e];
            dt[e] = x > 20.0f ? x : log1pf(expf(x));
            du[e] = dt[e] * ut[e];
            acc[e] = skip[e] * ut[e];
        }
        for (int64_t n = 0; n < N; n++) {
            const float bn = b[n], cn = c[n];
            for (int e = 0; e < width; e++) {
                const float state = exp2_nonpositive(dt[e] * a[n][e]) * h[n][e] + du[e] * bn;
                h[n][e] = state;
                acc[e] += cn * state;
            }
        }
        float *out = y + t * E + e0;
        if (z) {
            const float *zt = z + t * z_stride + e0;
            for (int e = 0; e < width; e++) out[e] = acc[e] * zt[e] / (1.0f + expf(-zt[e]));
        } else {
            for (int e = 0; e < width; e++) out[e] = acc[e];
        }
    }
}

void selective_scan_forward(int64_t batch, int64_t T, int64_t E, int64_t N, const float *u, const float *delta,
                            int64_t delta_stride, int64_t delta_rank, const float *delta_weight,
                            const float *delta_bias, const float *A, const float *Bm, const float *Cm,
                            int64_t bc_stride, const float *D, const float *z, int64_t z_stride, float *y, int block,
                            int threads) {
    if (block != 16 && block != 32 && block != 64) block = 16;
    const int64_t blocks_per_row = (E + block - 1) / block;
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t job = 0; job < batch * blocks_per_row; job++) {
        const int64_t row = job / blocks_per_row, e0 = (job % blocks_per_row) * block;
        const float *ur = u + row * T * E, *dr = delta + row * T * delta_stride, *br = Bm + row * T * bc_stride;
        const float *cr = Cm + row * T * bc_stride, *zr = z ? z + row * T * z_stride : 0;
        float *yr = y + row * T * E;
        /* full blocks get a constant width, so their loops are fixed-length and fully vectorised */
        const int width = e0 + block > E ? (int)(E - e0) : block;
#define SCAN(w) scan_block(T, E, N, e0, w, ur, dr, delta_stride, delta_rank, delta_weight, delta_bias, A, br, cr, \
                           bc_stride, D, zr, z_stride, yr)
        if (width == 64) SCAN(64);
        else if (width == 32) SCAN(32);
        else if (width == 16) SCAN(16);
        else SCAN(width);
#undef SCAN
    }
}

/* Mamba's depthwise causal convolution and SiLU, time-major: x (batch, T, E) with rows x_stride apart
 * (the x half of in_proj's output), weight (K, E), bias (E,) -> out (batch, T, E) contiguous.
 *   out[t, e] = silu(bias[e] + sum_k weight[k, e] * x[t - (K - 1) + k, e])      (x before t = 0 is 0) */
void causal_conv_silu(int64_t batch, int64_t T, int64_t E, int64_t K, const float *x, int64_t x_stride,
                      const float *weight, const float *bias, float *out, int threads) {
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t row_t = 0; row_t < batch * T; row_t++) {
        const int64_t row = row_t / T, t = row_t % T;
        const float *xr = x + row * T * x_stride;
        float *o = out + row_t * E;
        for (int64_t e = 0; e < E; e++) o[e] = bias[e];
        for (int64_t k = 0; k < K; k++) {
            const int64_t source = t - (K - 1) + k;
            if (source < 0) continue;
            const float *xs = xr + source * x_stride;
            for (int64_t e = 0; e < E; e++) o[e] += weight[k * E + e] * xs[e];
        }
        for (int64_t e = 0; e < E; e++) o[e] = o[e] / (1.0f + expf(-o[e]));
    }
}
