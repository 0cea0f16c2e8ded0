/* Mamba-1's selective scan for CPUs, forward and backward: the fast path of seqbench_plugins.cpu_scan.
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
 *
 * Training (mamba-ssm's CUDA pattern): the forward also writes the state before every `chunk` steps
 * (starts, (batch, T / chunk, N, E)), and the backward walks the chunks from the last, re-running each
 * chunk's forward from its saved start into a per-block buffer, then the reverse recurrence over it:
 *   g_t   = dL/dy_t * silu(z_t)                       (dL/dz_t from the recomputed C_t . h_t + D u_t)
 *   gh_t  = C_t g_t + exp(delta_{t+1} A) gh_{t+1}     (dL/dh_t)
 *   dL/dA += gh_t h_{t-1} exp(delta_t A) delta_t,   dL/ddelta_t = sum_n gh_t (h_{t-1} exp(delta_t A) A + u_t B_t)
 *   dL/du_t = g_t D + delta_t sum_n gh_t B_t,        dL/dB_t = sum_e gh_t delta_t u_t,  dL/dC_t = sum_e g_t h_t
 * The backward returns dL/d(delta + delta_bias) before softplus, per (t, e): the caller turns it into the
 * low-rank input's, dt_proj's and the bias's gradients with two matmuls and a sum. Partial sums over
 * channels (dB, dC) are written per block and over batch rows (dA, dD) per row, and summed by the caller,
 * so no two threads write one value.
 *
 * The file compiles twice: as float (the run-time kernel) and, with -DSCAN_DOUBLE, as double with exact
 * exponentials (functions suffixed _f64), so torch.autograd.gradcheck can check the backward in float64.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHANNELS 64

#ifdef SCAN_DOUBLE
typedef double real;
#define FN(name) name##_f64
#define EXP exp
#define LOG1P log1p
#define DECAY2(x) exp2(x)
#else
typedef float real;
#define FN(name) name
#define EXP expf
#define LOG1P log1pf
#define DECAY2(x) exp2_nonpositive(x)
#endif
#define R(x) ((real)(x))

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

/* One step's delta for a block's channels: softplus(raw + bias) into dt; with slope, softplus's derivative
 * there (sigmoid, 1 above torch's threshold 20) for the backward. */
static inline void step_delta(const int width, int64_t E, int64_t e0, const real *raw, int64_t delta_rank,
                              const real *delta_weight, const real *bias, real *dt, real *slope) {
    if (delta_rank) {
        for (int e = 0; e < width; e++) dt[e] = bias[e];
        for (int64_t r = 0; r < delta_rank; r++)
            for (int e = 0; e < width; e++) dt[e] += raw[r] * delta_weight[r * E + e0 + e];
    } else {
        for (int e = 0; e < width; e++) dt[e] = raw[e0 + e] + bias[e];
    }
    for (int e = 0; e < width; e++) {
        const real x = dt[e];
        dt[e] = x > R(20.0) ? x : LOG1P(EXP(x));
        if (slope) slope[e] = x > R(20.0) ? R(1.0) : R(1.0) / (R(1.0) + EXP(-x));
    }
}

/* The forward over one block; with starts (this batch row's (T / chunk, N, E)), the state before every
 * chunk's first step too. */
static inline void scan_block(int64_t T, int64_t E, int64_t N, int64_t e0, const int width,
                              const real *u, const real *delta, int64_t delta_stride, int64_t delta_rank,
                              const real *delta_weight, const real *delta_bias, const real *A,
                              const real *Bm, const real *Cm, int64_t bc_stride, const real *D, const real *z,
                              int64_t z_stride, real *y, real *starts, int64_t chunk) {
    real h[N][MAX_CHANNELS], a[N][MAX_CHANNELS], skip[MAX_CHANNELS], bias[MAX_CHANNELS];
    for (int64_t n = 0; n < N; n++)
        for (int e = 0; e < width; e++) {
            h[n][e] = R(0.0);
            a[n][e] = A[n * E + e0 + e] * R(1.44269504088896341);  /* log2(e): the decays run in base 2 */
        }
    for (int e = 0; e < width; e++) {
        skip[e] = D ? D[e0 + e] : R(0.0);
        bias[e] = delta_bias[e0 + e];
    }
    for (int64_t t = 0; t < T; t++) {
        const real *ut = u + t * E + e0;
        const real *b = Bm + t * bc_stride, *c = Cm + t * bc_stride;
        real dt[MAX_CHANNELS], du[MAX_CHANNELS], acc[MAX_CHANNELS];
        if (starts && t % chunk == 0) {
            real *saved = starts + (t / chunk) * N * E + e0;
            for (int64_t n = 0; n < N; n++)
                for (int e = 0; e < width; e++) saved[n * E + e] = h[n][e];
        }
        step_delta(width, E, e0, delta + t * delta_stride, delta_rank, delta_weight, bias, dt, 0);
        for (int e = 0; e < width; e++) {
            du[e] = dt[e] * ut[e];
            acc[e] = skip[e] * ut[e];
        }
        for (int64_t n = 0; n < N; n++) {
            const real bn = b[n], cn = c[n];
            for (int e = 0; e < width; e++) {
                const real state = DECAY2(dt[e] * a[n][e]) * h[n][e] + du[e] * bn;
                h[n][e] = state;
                acc[e] += cn * state;
            }
        }
        real *out = y + t * E + e0;
        if (z) {
            const real *zt = z + t * z_stride + e0;
            for (int e = 0; e < width; e++) out[e] = acc[e] * zt[e] / (R(1.0) + EXP(-zt[e]));
        } else {
            for (int e = 0; e < width; e++) out[e] = acc[e];
        }
    }
}

/* starts: NULL (inference), or (batch, ceil(T / chunk), N, E) for the backward. */
void FN(selective_scan_forward)(int64_t batch, int64_t T, int64_t E, int64_t N, const real *u, const real *delta,
                                int64_t delta_stride, int64_t delta_rank, const real *delta_weight,
                                const real *delta_bias, const real *A, const real *Bm, const real *Cm,
                                int64_t bc_stride, const real *D, const real *z, int64_t z_stride, real *y,
                                real *starts, int64_t chunk, int block, int threads) {
    if (block != 16 && block != 32 && block != 64) block = 16;
    const int64_t blocks_per_row = (E + block - 1) / block, chunks = (T + chunk - 1) / chunk;
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t job = 0; job < batch * blocks_per_row; job++) {
        const int64_t row = job / blocks_per_row, e0 = (job % blocks_per_row) * block;
        const real *ur = u + row * T * E, *dr = delta + row * T * delta_stride, *br = Bm + row * T * bc_stride;
        const real *cr = Cm + row * T * bc_stride, *zr = z ? z + row * T * z_stride : 0;
        real *yr = y + row * T * E, *sr = starts ? starts + row * chunks * N * E : 0;
        /* full blocks get a constant width, so their loops are fixed-length and fully vectorised */
        const int width = e0 + block > E ? (int)(E - e0) : block;
#define SCAN(w) scan_block(T, E, N, e0, w, ur, dr, delta_stride, delta_rank, delta_weight, delta_bias, A, br, cr, \
                           bc_stride, D, zr, z_stride, yr, sr, chunk)
        if (width == 64) SCAN(64);
        else if (width == 32) SCAN(32);
        else if (width == 16) SCAN(16);
        else SCAN(width);
#undef SCAN
    }
}

/* The backward over one block (see the file's comment). Row pointers are this batch row's; grad_B and
 * grad_C are this block's (T, N) partial sums, grad_A (N, E) and grad_D (E,) this row's. */
static inline void backward_block(int64_t T, int64_t E, int64_t N, int64_t e0, const int width,
                                  const real *restrict u, const real *restrict delta, int64_t delta_stride, int64_t delta_rank,
                                  const real *restrict delta_weight, const real *restrict delta_bias, const real *restrict A,
                                  const real *restrict Bm, const real *restrict Cm, int64_t bc_stride, const real *restrict D, const real *restrict z,
                                  int64_t z_stride, const real *restrict starts, int64_t chunk, const real *restrict grad_y,
                                  real *restrict grad_u, real *restrict grad_delta, real *restrict grad_z, real *restrict grad_A, real *restrict grad_D,
                                  real *restrict grad_B, real *restrict grad_C, real *restrict work) {
    /* per block, in work: the chunk's states and decays, (chunk, N, MAX_CHANNELS) each, and the carried
     * dL/dh, dA, A (natural and base 2) and the start state, (N, MAX_CHANNELS) each */
    /* restrict: these regions of work never overlap, and telling the compiler so lets it vectorise */
    real (*restrict H)[N][MAX_CHANNELS] = (real (*)[N][MAX_CHANNELS])work;
    real (*restrict DEC)[N][MAX_CHANNELS] = (real (*)[N][MAX_CHANNELS])(work + chunk * N * MAX_CHANNELS);
    real *const rest = work + 2 * chunk * N * MAX_CHANNELS;
    real (*restrict gh)[MAX_CHANNELS] = (real (*)[MAX_CHANNELS])rest;
    real (*restrict gA)[MAX_CHANNELS] = (real (*)[MAX_CHANNELS])(rest + N * MAX_CHANNELS);
    real (*restrict an)[MAX_CHANNELS] = (real (*)[MAX_CHANNELS])(rest + 2 * N * MAX_CHANNELS);
    real (*restrict a2)[MAX_CHANNELS] = (real (*)[MAX_CHANNELS])(rest + 3 * N * MAX_CHANNELS);
    real (*restrict h0)[MAX_CHANNELS] = (real (*)[MAX_CHANNELS])(rest + 4 * N * MAX_CHANNELS);
    real (*restrict DT)[MAX_CHANNELS] = (real (*)[MAX_CHANNELS])(rest + 5 * N * MAX_CHANNELS);
    real (*restrict SLOPE)[MAX_CHANNELS] = DT + chunk, (*restrict ACC)[MAX_CHANNELS] = DT + 2 * chunk;
    real skip[MAX_CHANNELS], bias[MAX_CHANNELS], gD[MAX_CHANNELS], db[N], dc[N];
    for (int64_t n = 0; n < N; n++)
        for (int e = 0; e < width; e++) {
            gh[n][e] = gA[n][e] = R(0.0);
            an[n][e] = A[n * E + e0 + e];
            a2[n][e] = an[n][e] * R(1.44269504088896341);
        }
    for (int e = 0; e < width; e++) {
        skip[e] = D ? D[e0 + e] : R(0.0);
        bias[e] = delta_bias[e0 + e];
        gD[e] = R(0.0);
    }
    const int64_t chunks = (T + chunk - 1) / chunk;
    for (int64_t index = chunks - 1; index >= 0; index--) {
        const int64_t t0 = index * chunk, k = T - t0 < chunk ? T - t0 : chunk;
        const real *saved = starts + index * N * E + e0;
        for (int64_t n = 0; n < N; n++)
            for (int e = 0; e < width; e++) h0[n][e] = saved[n * E + e];
        for (int64_t j = 0; j < k; j++) {  /* the chunk's forward again, keeping what the reverse reads */
            const int64_t t = t0 + j;
            const real *ut = u + t * E + e0, *b = Bm + t * bc_stride, *c = Cm + t * bc_stride;
            real (*restrict prev)[MAX_CHANNELS] = j ? H[j - 1] : h0;
            real du[MAX_CHANNELS], acc[MAX_CHANNELS];
            step_delta(width, E, e0, delta + t * delta_stride, delta_rank, delta_weight, bias, DT[j], SLOPE[j]);
            for (int e = 0; e < width; e++) {
                du[e] = DT[j][e] * ut[e];
                acc[e] = skip[e] * ut[e];
            }
            for (int64_t n = 0; n < N; n++) {
                const real bn = b[n], cn = c[n];
                real *restrict dec = DEC[j][n], *restrict hn = H[j][n];
                const real *restrict hp = prev[n], *restrict a2n = a2[n], *restrict dt = DT[j];
                #pragma omp simd
                for (int e = 0; e < width; e++) {
                    const real decay = DECAY2(dt[e] * a2n[e]);
                    const real state = decay * hp[e] + du[e] * bn;
                    dec[e] = decay;
                    hn[e] = state;
                    acc[e] += cn * state;
                }
            }
            for (int e = 0; e < width; e++) ACC[j][e] = acc[e];
        }
        for (int64_t j = k - 1; j >= 0; j--) {  /* the reverse recurrence */
            const int64_t t = t0 + j;
            const real *ut = u + t * E + e0, *b = Bm + t * bc_stride, *c = Cm + t * bc_stride;
            const real *gy = grad_y + t * E + e0;
            real (*restrict prev)[MAX_CHANNELS] = j ? H[j - 1] : h0;
            real g[MAX_CHANNELS], gu[MAX_CHANNELS], gdt[MAX_CHANNELS], gdu[MAX_CHANNELS], du[MAX_CHANNELS];
            if (z) {
                const real *zt = z + t * z_stride + e0;
                real *gz = grad_z + t * E + e0;
                for (int e = 0; e < width; e++) {
                    const real sig = R(1.0) / (R(1.0) + EXP(-zt[e]));
                    g[e] = gy[e] * zt[e] * sig;
                    gz[e] = gy[e] * ACC[j][e] * sig * (R(1.0) + zt[e] * (R(1.0) - sig));
                }
            } else {
                for (int e = 0; e < width; e++) g[e] = gy[e];
            }
            for (int e = 0; e < width; e++) {
                gD[e] += g[e] * ut[e];
                gu[e] = g[e] * skip[e];
                gdt[e] = gdu[e] = R(0.0);
                du[e] = DT[j][e] * ut[e];
            }
            for (int64_t n = 0; n < N; n++) {
                const real bn = b[n], cn = c[n];
                /* flat row pointers: gcc does not vectorise loads through the pointer-to-array types */
                real *restrict ghn = gh[n], *restrict gAn = gA[n];
                const real *restrict hp = prev[n], *restrict dec = DEC[j][n], *restrict hn = H[j][n];
                const real *restrict ann = an[n], *restrict dt = DT[j];
                real sb = R(0.0), sc = R(0.0);
                #pragma omp simd reduction(+ : sb, sc)
                for (int e = 0; e < width; e++) {
                    const real gs = ghn[e] + g[e] * cn;  /* dL/dh_t */
                    const real glog = gs * hp[e] * dec[e];  /* dL/d(delta_t A) */
                    sc += g[e] * hn[e];
                    sb += gs * du[e];
                    gdt[e] += glog * ann[e];
                    gAn[e] += glog * dt[e];
                    gdu[e] += gs * bn;
                    ghn[e] = gs * dec[e];  /* carried to step t - 1 */
                }
                db[n] = sb;
                dc[n] = sc;
            }
            for (int64_t n = 0; n < N; n++) {
                grad_B[t * N + n] = db[n];
                grad_C[t * N + n] = dc[n];
            }
            real *gur = grad_u + t * E + e0, *gdr = grad_delta + t * E + e0;
            for (int e = 0; e < width; e++) {
                gur[e] = gu[e] + gdu[e] * DT[j][e];
                gdr[e] = (gdt[e] + gdu[e] * ut[e]) * SLOPE[j][e];
            }
        }
    }
    for (int64_t n = 0; n < N; n++)
        for (int e = 0; e < width; e++) grad_A[n * E + e0 + e] = gA[n][e];
    for (int e = 0; e < width; e++) grad_D[e0 + e] = gD[e];
}

/* The inputs as for the forward, starts as it wrote them, grad_y (batch, T, E). Writes grad_u, grad_delta
 * (dL/d(delta + delta_bias) before softplus) and grad_z (when z) as (batch, T, E); grad_A (batch, N, E) and
 * grad_D (batch, E) per batch row; grad_B, grad_C (batch, blocks_per_row, T, N) per block. Returns 0, or -1
 * when a work buffer could not be allocated (nothing is then complete). */
int FN(selective_scan_backward)(int64_t batch, int64_t T, int64_t E, int64_t N, const real *u, const real *delta,
                                int64_t delta_stride, int64_t delta_rank, const real *delta_weight,
                                const real *delta_bias, const real *A, const real *Bm, const real *Cm,
                                int64_t bc_stride, const real *D, const real *z, int64_t z_stride,
                                const real *starts, int64_t chunk, const real *grad_y, real *grad_u,
                                real *grad_delta, real *grad_z, real *grad_A, real *grad_D, real *grad_B,
                                real *grad_C, int block, int threads) {
    if (block != 16 && block != 32 && block != 64) block = 16;
    const int64_t blocks_per_row = (E + block - 1) / block, chunks = (T + chunk - 1) / chunk;
    const size_t work_size = (size_t)(2 * chunk * N + 5 * N + 3 * chunk) * MAX_CHANNELS * sizeof(real);
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        real *work = malloc(work_size);
        if (!work) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t job = 0; job < batch * blocks_per_row; job++) {
            if (!work) continue;
            const int64_t row = job / blocks_per_row, e0 = (job % blocks_per_row) * block;
            const int64_t rows = row * T * E;
            const real *dr = delta + row * T * delta_stride, *br = Bm + row * T * bc_stride;
            const real *cr = Cm + row * T * bc_stride, *zr = z ? z + row * T * z_stride : 0;
            const real *sr = starts + row * chunks * N * E;
            real *gz = z ? grad_z + rows : 0, *gb = grad_B + job * T * N, *gc = grad_C + job * T * N;
            const int width = e0 + block > E ? (int)(E - e0) : block;
#define BACKWARD(w) backward_block(T, E, N, e0, w, u + rows, dr, delta_stride, delta_rank, delta_weight, \
                                   delta_bias, A, br, cr, bc_stride, D, zr, z_stride, sr, chunk, grad_y + rows, \
                                   grad_u + rows, grad_delta + rows, gz, grad_A + row * N * E, grad_D + row * E, \
                                   gb, gc, work)
            if (width == 64) BACKWARD(64);
            else if (width == 32) BACKWARD(32);
            else if (width == 16) BACKWARD(16);
            else BACKWARD(width);
#undef BACKWARD
        }
        free(work);
    }
    return failed ? -1 : 0;
}

#ifndef SCAN_DOUBLE
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
#endif
