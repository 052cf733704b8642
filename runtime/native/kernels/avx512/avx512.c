/* The AVX-512 kernel set (F, BW, VL, VPOPCNTDQ; compiled with those flags only for this file, and
   chosen at run time only when cpuid + xgetbv say the CPU and the OS support them).
   - bgemm 6x32: 24 zmm accumulators of 8 x 64-bit popcount sums; per 64 bits of K one broadcast of
     the pixel word, four weight vectors (8 channels each), xor + vpopcntq + add.
   - fgemm 8x32: 16 zmm accumulators, broadcast A, two B vectors, FMA.
   - depthwise row: 16 channels per vector, masked tails. Bitpack: vcmpps into mask registers. */
#include <immintrin.h>
#include <string.h>

#include "../kernels.h"

#define BGEMM_MR 6
#define FGEMM_MR 8

#define POP(acc, x, w) acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(x, w)))
#define ROW4(i)                     \
    do {                            \
        const __m512i x = _mm512_set1_epi64((long long)p##i[q]); \
        POP(c##i##0, x, w0);        \
        POP(c##i##1, x, w1);        \
        POP(c##i##2, x, w2);        \
        POP(c##i##3, x, w3);        \
    } while (0)
#define STORE4(i)                                                                         \
    do {                                                                                  \
        _mm256_storeu_si256((__m256i*)(acc + (i) * 32 + 0), _mm512_cvtepi64_epi32(c##i##0));  \
        _mm256_storeu_si256((__m256i*)(acc + (i) * 32 + 8), _mm512_cvtepi64_epi32(c##i##1));  \
        _mm256_storeu_si256((__m256i*)(acc + (i) * 32 + 16), _mm512_cvtepi64_epi32(c##i##2)); \
        _mm256_storeu_si256((__m256i*)(acc + (i) * 32 + 24), _mm512_cvtepi64_epi32(c##i##3)); \
    } while (0)

static void bgemm_avx512(size_t taps, size_t cq, const uint64_t* const* rows,
                         const size_t* tap_offset, const uint64_t* w, int32_t* acc) {
    __m512i c00 = _mm512_setzero_si512(), c01 = c00, c02 = c00, c03 = c00;
    __m512i c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m512i c20 = c00, c21 = c00, c22 = c00, c23 = c00;
    __m512i c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    __m512i c40 = c00, c41 = c00, c42 = c00, c43 = c00;
    __m512i c50 = c00, c51 = c00, c52 = c00, c53 = c00;
    for (size_t t = 0; t < taps; ++t) {
        const size_t off = tap_offset[t];
        const uint64_t* p0 = rows[0] + off;
        const uint64_t* p1 = rows[1] + off;
        const uint64_t* p2 = rows[2] + off;
        const uint64_t* p3 = rows[3] + off;
        const uint64_t* p4 = rows[4] + off;
        const uint64_t* p5 = rows[5] + off;
        for (size_t q = 0; q < cq; ++q) {
            const __m512i w0 = _mm512_load_si512((const void*)(w + 0));
            const __m512i w1 = _mm512_load_si512((const void*)(w + 8));
            const __m512i w2 = _mm512_load_si512((const void*)(w + 16));
            const __m512i w3 = _mm512_load_si512((const void*)(w + 24));
            w += 32;
            ROW4(0);
            ROW4(1);
            ROW4(2);
            ROW4(3);
            ROW4(4);
            ROW4(5);
        }
    }
    STORE4(0);
    STORE4(1);
    STORE4(2);
    STORE4(3);
    STORE4(4);
    STORE4(5);
}

/* 12 x 32 on 32-bit words: 16 channels per zmm, vpopcntd, 24 accumulators (the layers with 32
   channels per group: a 64-bit word would be half empty). */
#define POP32(acc, x, w) acc = _mm512_add_epi32(acc, _mm512_popcnt_epi32(_mm512_xor_si512(x, w)))
#define ROW32(i)                                                                   \
    do {                                                                           \
        const __m512i x = _mm512_broadcastd_epi32(_mm_loadu_si32(rows[i] + off + q)); \
        POP32(c##i##0, x, w0);                                                     \
        POP32(c##i##1, x, w1);                                                     \
    } while (0)
#define STORE32(i)                                                     \
    do {                                                               \
        _mm512_storeu_si512((void*)(acc + (i) * 32 + 0), c##i##0);     \
        _mm512_storeu_si512((void*)(acc + (i) * 32 + 16), c##i##1);    \
    } while (0)

static void bgemm32_avx512(size_t taps, size_t kq, const uint32_t* const* rows,
                           const size_t* tap_offset, const uint32_t* w, int32_t* acc) {
    const __m512i z = _mm512_setzero_si512();
    __m512i c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z;
    __m512i c40 = z, c41 = z, c50 = z, c51 = z, c60 = z, c61 = z, c70 = z, c71 = z;
    __m512i c80 = z, c81 = z, c90 = z, c91 = z, c100 = z, c101 = z, c110 = z, c111 = z;
    for (size_t t = 0; t < taps; ++t) {
        const size_t off = tap_offset[t];
        for (size_t q = 0; q < kq; ++q) {
            const __m512i w0 = _mm512_load_si512((const void*)(w + 0));
            const __m512i w1 = _mm512_load_si512((const void*)(w + 16));
            w += 32;
            ROW32(0);
            ROW32(1);
            ROW32(2);
            ROW32(3);
            ROW32(4);
            ROW32(5);
            ROW32(6);
            ROW32(7);
            ROW32(8);
            ROW32(9);
            ROW32(10);
            ROW32(11);
        }
    }
    STORE32(0);
    STORE32(1);
    STORE32(2);
    STORE32(3);
    STORE32(4);
    STORE32(5);
    STORE32(6);
    STORE32(7);
    STORE32(8);
    STORE32(9);
    STORE32(10);
    STORE32(11);
}

static inline __mmask16 tail_mask(size_t n) {
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

static void fgemm_avx512(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                         const float* w, float* c, size_t c_stride, float lo, float hi) {
    /* rows past mr repeat the last row (computed, stored to the same place with the same values) */
    const float* a0 = a;
    const float* a1 = mr > 1 ? a0 + a_stride : a0;
    const float* a2 = mr > 2 ? a1 + a_stride : a1;
    const float* a3 = mr > 3 ? a2 + a_stride : a2;
    const float* a4 = mr > 4 ? a3 + a_stride : a3;
    const float* a5 = mr > 5 ? a4 + a_stride : a4;
    const float* a6 = mr > 6 ? a5 + a_stride : a5;
    const float* a7 = mr > 7 ? a6 + a_stride : a6;
    float* c0 = c;
    float* c1 = mr > 1 ? c0 + c_stride : c0;
    float* c2 = mr > 2 ? c1 + c_stride : c1;
    float* c3 = mr > 3 ? c2 + c_stride : c2;
    float* c4 = mr > 4 ? c3 + c_stride : c3;
    float* c5 = mr > 5 ? c4 + c_stride : c4;
    float* c6 = mr > 6 ? c5 + c_stride : c5;
    float* c7 = mr > 7 ? c6 + c_stride : c6;
    __m512 v00 = _mm512_load_ps(w), v01 = _mm512_load_ps(w + 16);
    __m512 v10 = v00, v11 = v01, v20 = v00, v21 = v01, v30 = v00, v31 = v01;
    __m512 v40 = v00, v41 = v01, v50 = v00, v51 = v01, v60 = v00, v61 = v01, v70 = v00, v71 = v01;
    w += 32;
    for (size_t k = 0; k < kc; ++k) {
        const __m512 b0 = _mm512_load_ps(w), b1 = _mm512_load_ps(w + 16);
        w += 32;
        __m512 x;
        x = _mm512_set1_ps(a0[k]), v00 = _mm512_fmadd_ps(x, b0, v00), v01 = _mm512_fmadd_ps(x, b1, v01);
        x = _mm512_set1_ps(a1[k]), v10 = _mm512_fmadd_ps(x, b0, v10), v11 = _mm512_fmadd_ps(x, b1, v11);
        x = _mm512_set1_ps(a2[k]), v20 = _mm512_fmadd_ps(x, b0, v20), v21 = _mm512_fmadd_ps(x, b1, v21);
        x = _mm512_set1_ps(a3[k]), v30 = _mm512_fmadd_ps(x, b0, v30), v31 = _mm512_fmadd_ps(x, b1, v31);
        x = _mm512_set1_ps(a4[k]), v40 = _mm512_fmadd_ps(x, b0, v40), v41 = _mm512_fmadd_ps(x, b1, v41);
        x = _mm512_set1_ps(a5[k]), v50 = _mm512_fmadd_ps(x, b0, v50), v51 = _mm512_fmadd_ps(x, b1, v51);
        x = _mm512_set1_ps(a6[k]), v60 = _mm512_fmadd_ps(x, b0, v60), v61 = _mm512_fmadd_ps(x, b1, v61);
        x = _mm512_set1_ps(a7[k]), v70 = _mm512_fmadd_ps(x, b0, v70), v71 = _mm512_fmadd_ps(x, b1, v71);
    }
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
#define CLAMP(v) v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi)
    CLAMP(v00), CLAMP(v01), CLAMP(v10), CLAMP(v11), CLAMP(v20), CLAMP(v21), CLAMP(v30), CLAMP(v31);
    CLAMP(v40), CLAMP(v41), CLAMP(v50), CLAMP(v51), CLAMP(v60), CLAMP(v61), CLAMP(v70), CLAMP(v71);
#undef CLAMP
    const __mmask16 m0 = tail_mask(nc), m1 = tail_mask(nc > 16 ? nc - 16 : 0);
    /* from the last row down, so that repeated rows end with row 0's values in row 0 */
    _mm512_mask_storeu_ps(c7, m0, v70), _mm512_mask_storeu_ps(c7 + 16, m1, v71);
    _mm512_mask_storeu_ps(c6, m0, v60), _mm512_mask_storeu_ps(c6 + 16, m1, v61);
    _mm512_mask_storeu_ps(c5, m0, v50), _mm512_mask_storeu_ps(c5 + 16, m1, v51);
    _mm512_mask_storeu_ps(c4, m0, v40), _mm512_mask_storeu_ps(c4 + 16, m1, v41);
    _mm512_mask_storeu_ps(c3, m0, v30), _mm512_mask_storeu_ps(c3 + 16, m1, v31);
    _mm512_mask_storeu_ps(c2, m0, v20), _mm512_mask_storeu_ps(c2 + 16, m1, v21);
    _mm512_mask_storeu_ps(c1, m0, v10), _mm512_mask_storeu_ps(c1 + 16, m1, v11);
    _mm512_mask_storeu_ps(c0, m0, v00), _mm512_mask_storeu_ps(c0 + 16, m1, v01);
}

/* 12 x 16: one zmm per row, for layers with <= 16 output channels. */
static void fgemm_narrow_avx512(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                                const float* w, float* c, size_t c_stride, float lo, float hi) {
    enum { MR = 12 };
    const float* ap[MR];
    float* cp[MR];
    ap[0] = a;
    cp[0] = c;
    for (size_t i = 1; i < MR; ++i) {
        ap[i] = i < mr ? ap[i - 1] + a_stride : ap[i - 1];
        cp[i] = i < mr ? cp[i - 1] + c_stride : cp[i - 1];
    }
    const __m512 bias = _mm512_load_ps(w);
    __m512 v0 = bias, v1 = bias, v2 = bias, v3 = bias, v4 = bias, v5 = bias;
    __m512 v6 = bias, v7 = bias, v8 = bias, v9 = bias, v10 = bias, v11 = bias;
    const float *a0 = ap[0], *a1 = ap[1], *a2 = ap[2], *a3 = ap[3], *a4 = ap[4], *a5 = ap[5];
    const float *a6 = ap[6], *a7 = ap[7], *a8 = ap[8], *a9 = ap[9], *a10 = ap[10], *a11 = ap[11];
    w += 16;
    for (size_t k = 0; k < kc; ++k) {
        const __m512 b = _mm512_load_ps(w);
        w += 16;
        v0 = _mm512_fmadd_ps(_mm512_set1_ps(a0[k]), b, v0);
        v1 = _mm512_fmadd_ps(_mm512_set1_ps(a1[k]), b, v1);
        v2 = _mm512_fmadd_ps(_mm512_set1_ps(a2[k]), b, v2);
        v3 = _mm512_fmadd_ps(_mm512_set1_ps(a3[k]), b, v3);
        v4 = _mm512_fmadd_ps(_mm512_set1_ps(a4[k]), b, v4);
        v5 = _mm512_fmadd_ps(_mm512_set1_ps(a5[k]), b, v5);
        v6 = _mm512_fmadd_ps(_mm512_set1_ps(a6[k]), b, v6);
        v7 = _mm512_fmadd_ps(_mm512_set1_ps(a7[k]), b, v7);
        v8 = _mm512_fmadd_ps(_mm512_set1_ps(a8[k]), b, v8);
        v9 = _mm512_fmadd_ps(_mm512_set1_ps(a9[k]), b, v9);
        v10 = _mm512_fmadd_ps(_mm512_set1_ps(a10[k]), b, v10);
        v11 = _mm512_fmadd_ps(_mm512_set1_ps(a11[k]), b, v11);
    }
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    const __mmask16 m = tail_mask(nc);
    const __m512 v[MR] = {v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11};
    for (size_t i = MR; i-- > 0;) _mm512_mask_storeu_ps(cp[i], m, _mm512_min_ps(_mm512_max_ps(v[i], vlo), vhi));
}

static void dwconv_row_avx512(const ebnn_dw_params* p, const float* in, const float* w,
                              const float* bias, float* out, size_t oy) {
    const size_t C = p->channels;
    const ptrdiff_t y0 = (ptrdiff_t)(oy * p->stride_h) - (ptrdiff_t)p->pad_top;
    const __m512 vlo = _mm512_set1_ps(p->lo), vhi = _mm512_set1_ps(p->hi);
    for (size_t ox = 0; ox < p->out_w; ++ox) {
        const ptrdiff_t x0 = (ptrdiff_t)(ox * p->stride_w) - (ptrdiff_t)p->pad_left;
        for (size_t c = 0; c < C; c += 16) {
            const __mmask16 m = tail_mask(C - c);
            __m512 acc = _mm512_maskz_loadu_ps(m, bias + c);
            for (size_t ky = 0; ky < p->kernel_h; ++ky) {
                const ptrdiff_t iy = y0 + (ptrdiff_t)(ky * p->dilation_h);
                if (iy < 0 || iy >= (ptrdiff_t)p->in_h) continue;
                for (size_t kx = 0; kx < p->kernel_w; ++kx) {
                    const ptrdiff_t ix = x0 + (ptrdiff_t)(kx * p->dilation_w);
                    if (ix < 0 || ix >= (ptrdiff_t)p->in_w) continue;
                    const __m512 x = _mm512_maskz_loadu_ps(m, in + ((size_t)iy * p->in_w + (size_t)ix) * C + c);
                    const __m512 k = _mm512_maskz_loadu_ps(m, w + (ky * p->kernel_w + kx) * C + c);
                    acc = _mm512_fmadd_ps(x, k, acc);
                }
            }
            acc = _mm512_min_ps(_mm512_max_ps(acc, vlo), vhi);
            _mm512_mask_storeu_ps(out + ox * C + c, m, acc);
        }
    }
}

static void bitpack_avx512(size_t rows, size_t n, const float* x, const float* m, const float* b,
                           uint64_t* out) {
    const size_t words = (n + 63) / 64;
    const __m512 zero = _mm512_setzero_ps();
    for (size_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        uint64_t* o = out + r * words;
        for (size_t q = 0; q < words; ++q) {
            uint64_t word = 0;
            for (size_t part = 0; part < 4; ++part) {
                const size_t c = q * 64 + part * 16;
                if (c >= n) break;
                const __mmask16 mask = tail_mask(n - c);
                __m512 v = _mm512_maskz_loadu_ps(mask, xr + c);
                if (m != NULL) {
                    v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mask, m + c));
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, b + c));
                }
                const __mmask16 negative = _mm512_mask_cmp_ps_mask(mask, v, zero, _CMP_LT_OQ);
                word |= (uint64_t)negative << (16 * part);
            }
            o[q] = word;
        }
    }
}

#define EBNN_BCONV_OUT_NAME bconv_out_avx512
#include "../common/bconv_out.inc"

static void bconv_bits_avx512(size_t mr, size_t nc, size_t nr, const int32_t* acc, int32_t k,
                              const int32_t* corr, const int32_t* thr, uint64_t* words) {
    const __m512i vk = _mm512_set1_epi32(k);
    for (size_t i = 0; i < mr; ++i) {
        uint64_t word = 0;
        for (size_t j = 0; j < nc; j += 16) {
            const __mmask16 m = tail_mask(nc - j);
            __m512i dot = _mm512_sub_epi32(vk, _mm512_slli_epi32(_mm512_maskz_loadu_epi32(m, acc + i * nr + j), 1));
            if (corr != NULL) dot = _mm512_sub_epi32(dot, _mm512_maskz_loadu_epi32(m, corr + i * nr + j));
            const __mmask16 bits = _mm512_mask_cmplt_epi32_mask(m, dot, _mm512_maskz_loadu_epi32(m, thr + j));
            word |= (uint64_t)bits << j;
        }
        words[i] = word;
    }
}

const ebnn_kernels ebnn_kernels_avx512 = {
    .name = "avx512",
    .bgemm_mr = BGEMM_MR,
    .bgemm_nr = 32,
    .bgemm = bgemm_avx512,
    .bgemm32_mr = 12,
    .bgemm32_nr = 32,
    .bgemm32 = bgemm32_avx512,
    .fgemm_mr = FGEMM_MR,
    .fgemm_nr = 32,
    .fgemm = fgemm_avx512,
    .fgemm_narrow_mr = 12,
    .fgemm_narrow_nr = 16,
    .fgemm_narrow = fgemm_narrow_avx512,
    .dwconv_row = dwconv_row_avx512,
    .bitpack = bitpack_avx512,
    .bconv_out = bconv_out_avx512,
    .bconv_bits = bconv_bits_avx512,
};
