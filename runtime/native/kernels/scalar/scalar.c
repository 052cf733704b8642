/* The scalar kernel set: portable C (no ISA flags), the reference every SIMD kernel is tested
   against, and the kernels of any CPU without a SIMD set (the 32-bit armv7 build). */
#include <string.h>

#include "../kernels.h"

#define BGEMM_MR 4
#define BGEMM_NR 8
#define FGEMM_MR 4
#define FGEMM_NR 8

static void bgemm_scalar(size_t taps, size_t cq, const uint64_t* const* rows,
                         const size_t* tap_offset, const uint64_t* w, int32_t* acc) {
    int32_t sum[BGEMM_MR][BGEMM_NR];
    memset(sum, 0, sizeof(sum));
    for (size_t t = 0; t < taps; ++t) {
        for (size_t q = 0; q < cq; ++q) {
            const uint64_t* wq = w + (t * cq + q) * BGEMM_NR;
            for (size_t i = 0; i < BGEMM_MR; ++i) {
                const uint64_t x = rows[i][tap_offset[t] + q];
                for (size_t j = 0; j < BGEMM_NR; ++j) {
                    sum[i][j] += __builtin_popcountll(x ^ wq[j]);
                }
            }
        }
    }
    memcpy(acc, sum, sizeof(sum));
}

static void fgemm_scalar(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                         const float* w, float* c, size_t c_stride, float lo, float hi) {
    for (size_t i = 0; i < mr; ++i) {
        float sum[FGEMM_NR];
        for (size_t j = 0; j < FGEMM_NR; ++j) sum[j] = w[j];
        const float* ai = a + i * a_stride;
        for (size_t k = 0; k < kc; ++k) {
            const float* wk = w + FGEMM_NR + k * FGEMM_NR;
            for (size_t j = 0; j < FGEMM_NR; ++j) sum[j] += ai[k] * wk[j];
        }
        for (size_t j = 0; j < nc; ++j) {
            float y = sum[j] < lo ? lo : sum[j];
            c[i * c_stride + j] = y > hi ? hi : y;
        }
    }
}

static void dwconv_row_scalar(const ebnn_dw_params* p, const float* in, const float* w,
                              const float* bias, float* out, size_t oy) {
    const size_t C = p->channels;
    for (size_t ox = 0; ox < p->out_w; ++ox) {
        float* o = out + ox * C;
        for (size_t c = 0; c < C; ++c) o[c] = bias[c];
        for (size_t ky = 0; ky < p->kernel_h; ++ky) {
            const ptrdiff_t iy = (ptrdiff_t)(oy * p->stride_h + ky * p->dilation_h) - (ptrdiff_t)p->pad_top;
            if (iy < 0 || iy >= (ptrdiff_t)p->in_h) continue;
            for (size_t kx = 0; kx < p->kernel_w; ++kx) {
                const ptrdiff_t ix =
                    (ptrdiff_t)(ox * p->stride_w + kx * p->dilation_w) - (ptrdiff_t)p->pad_left;
                if (ix < 0 || ix >= (ptrdiff_t)p->in_w) continue;
                const float* x = in + ((size_t)iy * p->in_w + (size_t)ix) * C;
                const float* wt = w + (ky * p->kernel_w + kx) * C;
                for (size_t c = 0; c < C; ++c) o[c] += x[c] * wt[c];
            }
        }
        for (size_t c = 0; c < C; ++c) {
            float y = o[c] < p->lo ? p->lo : o[c];
            o[c] = y > p->hi ? p->hi : y;
        }
    }
}

static void bitpack_scalar(size_t rows, size_t n, const float* x, const float* m, const float* b,
                           uint64_t* out) {
    const size_t words = (n + 63) / 64;
    for (size_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        uint64_t* o = out + r * words;
        for (size_t q = 0; q < words; ++q) {
            uint64_t word = 0;
            const size_t end = n - q * 64 < 64 ? n - q * 64 : 64;
            for (size_t bit = 0; bit < end; ++bit) {
                const size_t c = q * 64 + bit;
                float y = xr[c];
                if (m != NULL) {
                    y = y * m[c];
                    y = y + b[c];
                }
                word |= (uint64_t)(y < 0.0f) << bit;
            }
            o[q] = word;
        }
    }
}

#define EBNN_BCONV_OUT_NAME bconv_out_scalar
#include "../common/bconv_out.inc"

static void bconv_bits_scalar(size_t mr, size_t nc, size_t nr, const int32_t* acc, int32_t k,
                              const int32_t* corr, const int32_t* thr, uint64_t* words) {
    for (size_t i = 0; i < mr; ++i) {
        uint64_t word = 0;
        for (size_t j = 0; j < nc; ++j) {
            const int32_t dot = k - 2 * acc[i * nr + j] - (corr != NULL ? corr[i * nr + j] : 0);
            word |= (uint64_t)(dot < thr[j]) << j;
        }
        words[i] = word;
    }
}

static void bmaxpool_row_scalar(const ebnn_bpool_params* p, const uint64_t* in, uint64_t* out,
                                size_t oy) {
    const size_t cq = p->words;
    for (size_t ox = 0; ox < p->out_w; ++ox) {
        uint64_t* o = out + ox * cq;
        for (size_t q = 0; q < cq; ++q) o[q] = ~0ull;
        for (size_t ky = 0; ky < p->kernel_h; ++ky) {
            const ptrdiff_t iy = (ptrdiff_t)(oy * p->stride_h + ky) - (ptrdiff_t)p->pad_top;
            if (iy < 0 || iy >= (ptrdiff_t)p->in_h) continue;
            for (size_t kx = 0; kx < p->kernel_w; ++kx) {
                const ptrdiff_t ix = (ptrdiff_t)(ox * p->stride_w + kx) - (ptrdiff_t)p->pad_left;
                if (ix < 0 || ix >= (ptrdiff_t)p->in_w) continue;
                /* max of +-1 is -1 only when all are -1: AND of the bits */
                const uint64_t* cell = in + ((size_t)iy * p->in_w + (size_t)ix) * cq;
                for (size_t q = 0; q < cq; ++q) o[q] &= cell[q];
            }
        }
    }
}

const ebnn_kernels ebnn_kernels_scalar = {
    .name = "scalar",
    .bgemm_mr = BGEMM_MR,
    .bgemm_nr = BGEMM_NR,
    .bgemm = bgemm_scalar,
    .fgemm_mr = FGEMM_MR,
    .fgemm_nr = FGEMM_NR,
    .fgemm = fgemm_scalar,
    .dwconv_row = dwconv_row_scalar,
    .bitpack = bitpack_scalar,
    .bconv_out = bconv_out_scalar,
    .bconv_bits = bconv_bits_scalar,
    .bmaxpool_row = bmaxpool_row_scalar,
};
