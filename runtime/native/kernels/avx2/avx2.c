/* The AVX2 kernel set (AVX2 + FMA; compiled with those flags only for this file).
   - bgemm 4x8: popcount with the vpshufb nibble table; byte counts accumulate in 8 ymm registers
     for up to 31 steps of 64 bits (8 per byte per step, < 256), then vpsadbw folds them into
     64-bit sums.
   - fgemm 6x16: 12 ymm accumulators, broadcast A, two B vectors, FMA.
   - depthwise row: 8 channels per vector, masked tails. Bitpack: vcmpps + vmovmskps. */
#include <immintrin.h>
#include <string.h>

#include "../kernels.h"

#define BGEMM_MR 4
#define FGEMM_MR 6

static inline __m256i popcount_bytes(__m256i v, __m256i table, __m256i low) {
    const __m256i lo = _mm256_and_si256(v, low);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(table, lo), _mm256_shuffle_epi8(table, hi));
}

#define STEP(i)                                                                                  \
    do {                                                                                         \
        const __m256i x = _mm256_set1_epi64x((long long)p##i[q]);                                \
        b##i##0 = _mm256_add_epi8(b##i##0, popcount_bytes(_mm256_xor_si256(x, w0), table, low)); \
        b##i##1 = _mm256_add_epi8(b##i##1, popcount_bytes(_mm256_xor_si256(x, w1), table, low)); \
    } while (0)
#define FOLD(i)                                                           \
    do {                                                                  \
        s##i##0 = _mm256_add_epi64(s##i##0, _mm256_sad_epu8(b##i##0, zero)); \
        s##i##1 = _mm256_add_epi64(s##i##1, _mm256_sad_epu8(b##i##1, zero)); \
        b##i##0 = zero;                                                   \
        b##i##1 = zero;                                                   \
    } while (0)

static inline void store_sums(int32_t* out, __m256i s0, __m256i s1) {
    /* 2 x 4 64-bit sums -> 8 int32 */
    const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    const __m128i lo = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(s0, idx));
    const __m128i hi = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(s1, idx));
    _mm_storeu_si128((__m128i*)out, lo);
    _mm_storeu_si128((__m128i*)(out + 4), hi);
}

static void bgemm_avx2(size_t taps, size_t cq, const uint64_t* const* rows,
                       const size_t* tap_offset, const uint64_t* w, int32_t* acc) {
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                           2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    __m256i b00 = zero, b01 = zero, b10 = zero, b11 = zero, b20 = zero, b21 = zero, b30 = zero,
            b31 = zero;
    __m256i s00 = zero, s01 = zero, s10 = zero, s11 = zero, s20 = zero, s21 = zero, s30 = zero,
            s31 = zero;
    unsigned steps = 0;
    for (size_t t = 0; t < taps; ++t) {
        const size_t off = tap_offset[t];
        const uint64_t* p0 = rows[0] + off;
        const uint64_t* p1 = rows[1] + off;
        const uint64_t* p2 = rows[2] + off;
        const uint64_t* p3 = rows[3] + off;
        for (size_t q = 0; q < cq; ++q) {
            const __m256i w0 = _mm256_load_si256((const __m256i*)(const void*)(w + 0));
            const __m256i w1 = _mm256_load_si256((const __m256i*)(const void*)(w + 4));
            w += 8;
            STEP(0);
            STEP(1);
            STEP(2);
            STEP(3);
            if (++steps == 31) {
                FOLD(0);
                FOLD(1);
                FOLD(2);
                FOLD(3);
                steps = 0;
            }
        }
    }
    FOLD(0);
    FOLD(1);
    FOLD(2);
    FOLD(3);
    store_sums(acc + 0, s00, s01);
    store_sums(acc + 8, s10, s11);
    store_sums(acc + 16, s20, s21);
    store_sums(acc + 24, s30, s31);
}

/* 4 x 16 on 32-bit words (layers with 32 channels per group): 8 channels per ymm; the byte counts
   fold into 32-bit lanes with vpmaddubsw + vpmaddwd. */
#define STEP32(i)                                                                                \
    do {                                                                                         \
        int word_;                                                                               \
        memcpy(&word_, rows[i] + off + q, sizeof(word_)); /* 64-bit rows read as 32-bit words */ \
        const __m256i x = _mm256_set1_epi32(word_);                                              \
        b##i##0 = _mm256_add_epi8(b##i##0, popcount_bytes(_mm256_xor_si256(x, w0), table, low)); \
        b##i##1 = _mm256_add_epi8(b##i##1, popcount_bytes(_mm256_xor_si256(x, w1), table, low)); \
    } while (0)
#define FOLD32(i)                                                                              \
    do {                                                                                       \
        s##i##0 = _mm256_add_epi32(s##i##0, _mm256_madd_epi16(_mm256_maddubs_epi16(b##i##0, ones8), ones16)); \
        s##i##1 = _mm256_add_epi32(s##i##1, _mm256_madd_epi16(_mm256_maddubs_epi16(b##i##1, ones8), ones16)); \
        b##i##0 = zero;                                                                        \
        b##i##1 = zero;                                                                        \
    } while (0)

static void bgemm32_avx2(size_t taps, size_t kq, const uint32_t* const* rows,
                         const size_t* tap_offset, const uint32_t* w, int32_t* acc) {
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                           2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    const __m256i zero = _mm256_setzero_si256();
    __m256i b00 = zero, b01 = zero, b10 = zero, b11 = zero, b20 = zero, b21 = zero, b30 = zero,
            b31 = zero;
    __m256i s00 = zero, s01 = zero, s10 = zero, s11 = zero, s20 = zero, s21 = zero, s30 = zero,
            s31 = zero;
    unsigned steps = 0;
    for (size_t t = 0; t < taps; ++t) {
        const size_t off = tap_offset[t];
        for (size_t q = 0; q < kq; ++q) {
            const __m256i w0 = _mm256_load_si256((const __m256i*)(const void*)(w + 0));
            const __m256i w1 = _mm256_load_si256((const __m256i*)(const void*)(w + 8));
            w += 16;
            STEP32(0);
            STEP32(1);
            STEP32(2);
            STEP32(3);
            if (++steps == 31) {
                FOLD32(0);
                FOLD32(1);
                FOLD32(2);
                FOLD32(3);
                steps = 0;
            }
        }
    }
    FOLD32(0);
    FOLD32(1);
    FOLD32(2);
    FOLD32(3);
    _mm256_storeu_si256((__m256i*)(void*)(acc + 0), s00), _mm256_storeu_si256((__m256i*)(void*)(acc + 8), s01);
    _mm256_storeu_si256((__m256i*)(void*)(acc + 16), s10), _mm256_storeu_si256((__m256i*)(void*)(acc + 24), s11);
    _mm256_storeu_si256((__m256i*)(void*)(acc + 32), s20), _mm256_storeu_si256((__m256i*)(void*)(acc + 40), s21);
    _mm256_storeu_si256((__m256i*)(void*)(acc + 48), s30), _mm256_storeu_si256((__m256i*)(void*)(acc + 56), s31);
}

static inline __m256i tail_mask(size_t n) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n > 8 ? 8 : n)), lanes);
}

static void fgemm_avx2(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                       const float* w, float* c, size_t c_stride, float lo, float hi) {
    const float* a0 = a;
    const float* a1 = mr > 1 ? a0 + a_stride : a0;
    const float* a2 = mr > 2 ? a1 + a_stride : a1;
    const float* a3 = mr > 3 ? a2 + a_stride : a2;
    const float* a4 = mr > 4 ? a3 + a_stride : a3;
    const float* a5 = mr > 5 ? a4 + a_stride : a4;
    float* c0 = c;
    float* c1 = mr > 1 ? c0 + c_stride : c0;
    float* c2 = mr > 2 ? c1 + c_stride : c1;
    float* c3 = mr > 3 ? c2 + c_stride : c2;
    float* c4 = mr > 4 ? c3 + c_stride : c3;
    float* c5 = mr > 5 ? c4 + c_stride : c4;
    __m256 v00 = _mm256_load_ps(w), v01 = _mm256_load_ps(w + 8);
    __m256 v10 = v00, v11 = v01, v20 = v00, v21 = v01, v30 = v00, v31 = v01, v40 = v00, v41 = v01,
           v50 = v00, v51 = v01;
    w += 16;
    for (size_t k = 0; k < kc; ++k) {
        const __m256 b0 = _mm256_load_ps(w), b1 = _mm256_load_ps(w + 8);
        w += 16;
        __m256 x;
        x = _mm256_broadcast_ss(a0 + k), v00 = _mm256_fmadd_ps(x, b0, v00), v01 = _mm256_fmadd_ps(x, b1, v01);
        x = _mm256_broadcast_ss(a1 + k), v10 = _mm256_fmadd_ps(x, b0, v10), v11 = _mm256_fmadd_ps(x, b1, v11);
        x = _mm256_broadcast_ss(a2 + k), v20 = _mm256_fmadd_ps(x, b0, v20), v21 = _mm256_fmadd_ps(x, b1, v21);
        x = _mm256_broadcast_ss(a3 + k), v30 = _mm256_fmadd_ps(x, b0, v30), v31 = _mm256_fmadd_ps(x, b1, v31);
        x = _mm256_broadcast_ss(a4 + k), v40 = _mm256_fmadd_ps(x, b0, v40), v41 = _mm256_fmadd_ps(x, b1, v41);
        x = _mm256_broadcast_ss(a5 + k), v50 = _mm256_fmadd_ps(x, b0, v50), v51 = _mm256_fmadd_ps(x, b1, v51);
    }
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
#define CLAMP(v) v = _mm256_min_ps(_mm256_max_ps(v, vlo), vhi)
    CLAMP(v00), CLAMP(v01), CLAMP(v10), CLAMP(v11), CLAMP(v20), CLAMP(v21);
    CLAMP(v30), CLAMP(v31), CLAMP(v40), CLAMP(v41), CLAMP(v50), CLAMP(v51);
#undef CLAMP
    if (nc == 16) {
        _mm256_storeu_ps(c5, v50), _mm256_storeu_ps(c5 + 8, v51);
        _mm256_storeu_ps(c4, v40), _mm256_storeu_ps(c4 + 8, v41);
        _mm256_storeu_ps(c3, v30), _mm256_storeu_ps(c3 + 8, v31);
        _mm256_storeu_ps(c2, v20), _mm256_storeu_ps(c2 + 8, v21);
        _mm256_storeu_ps(c1, v10), _mm256_storeu_ps(c1 + 8, v11);
        _mm256_storeu_ps(c0, v00), _mm256_storeu_ps(c0 + 8, v01);
        return;
    }
    const __m256i m0 = tail_mask(nc), m1 = tail_mask(nc > 8 ? nc - 8 : 0);
    _mm256_maskstore_ps(c5, m0, v50), _mm256_maskstore_ps(c5 + 8, m1, v51);
    _mm256_maskstore_ps(c4, m0, v40), _mm256_maskstore_ps(c4 + 8, m1, v41);
    _mm256_maskstore_ps(c3, m0, v30), _mm256_maskstore_ps(c3 + 8, m1, v31);
    _mm256_maskstore_ps(c2, m0, v20), _mm256_maskstore_ps(c2 + 8, m1, v21);
    _mm256_maskstore_ps(c1, m0, v10), _mm256_maskstore_ps(c1 + 8, m1, v11);
    _mm256_maskstore_ps(c0, m0, v00), _mm256_maskstore_ps(c0 + 8, m1, v01);
}

/* 8 x 8: one ymm per row, for layers with <= 8 output channels. */
static void fgemm_narrow_avx2(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                              const float* w, float* c, size_t c_stride, float lo, float hi) {
    enum { MR = 8 };
    const float* ap[MR];
    float* cp[MR];
    ap[0] = a;
    cp[0] = c;
    for (size_t i = 1; i < MR; ++i) {
        ap[i] = i < mr ? ap[i - 1] + a_stride : ap[i - 1];
        cp[i] = i < mr ? cp[i - 1] + c_stride : cp[i - 1];
    }
    const __m256 bias = _mm256_load_ps(w);
    __m256 v0 = bias, v1 = bias, v2 = bias, v3 = bias, v4 = bias, v5 = bias, v6 = bias, v7 = bias;
    const float *a0 = ap[0], *a1 = ap[1], *a2 = ap[2], *a3 = ap[3], *a4 = ap[4], *a5 = ap[5];
    const float *a6 = ap[6], *a7 = ap[7];
    w += 8;
    for (size_t k = 0; k < kc; ++k) {
        const __m256 b = _mm256_load_ps(w);
        w += 8;
        v0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + k), b, v0);
        v1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a1 + k), b, v1);
        v2 = _mm256_fmadd_ps(_mm256_broadcast_ss(a2 + k), b, v2);
        v3 = _mm256_fmadd_ps(_mm256_broadcast_ss(a3 + k), b, v3);
        v4 = _mm256_fmadd_ps(_mm256_broadcast_ss(a4 + k), b, v4);
        v5 = _mm256_fmadd_ps(_mm256_broadcast_ss(a5 + k), b, v5);
        v6 = _mm256_fmadd_ps(_mm256_broadcast_ss(a6 + k), b, v6);
        v7 = _mm256_fmadd_ps(_mm256_broadcast_ss(a7 + k), b, v7);
    }
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    const __m256i m = tail_mask(nc);
    const __m256 v[MR] = {v0, v1, v2, v3, v4, v5, v6, v7};
    for (size_t i = MR; i-- > 0;) _mm256_maskstore_ps(cp[i], m, _mm256_min_ps(_mm256_max_ps(v[i], vlo), vhi));
}

static void dwconv_row_avx2(const ebnn_dw_params* p, const float* in, const float* w,
                            const float* bias, float* out, size_t oy) {
    const size_t C = p->channels;
    const ptrdiff_t y0 = (ptrdiff_t)(oy * p->stride_h) - (ptrdiff_t)p->pad_top;
    const __m256 vlo = _mm256_set1_ps(p->lo), vhi = _mm256_set1_ps(p->hi);
    for (size_t ox = 0; ox < p->out_w; ++ox) {
        const ptrdiff_t x0 = (ptrdiff_t)(ox * p->stride_w) - (ptrdiff_t)p->pad_left;
        for (size_t c = 0; c < C; c += 8) {
            const __m256i m = tail_mask(C - c);
            __m256 acc = _mm256_maskload_ps(bias + c, m);
            for (size_t ky = 0; ky < p->kernel_h; ++ky) {
                const ptrdiff_t iy = y0 + (ptrdiff_t)(ky * p->dilation_h);
                if (iy < 0 || iy >= (ptrdiff_t)p->in_h) continue;
                for (size_t kx = 0; kx < p->kernel_w; ++kx) {
                    const ptrdiff_t ix = x0 + (ptrdiff_t)(kx * p->dilation_w);
                    if (ix < 0 || ix >= (ptrdiff_t)p->in_w) continue;
                    const __m256 x = _mm256_maskload_ps(in + ((size_t)iy * p->in_w + (size_t)ix) * C + c, m);
                    const __m256 k = _mm256_maskload_ps(w + (ky * p->kernel_w + kx) * C + c, m);
                    acc = _mm256_fmadd_ps(x, k, acc);
                }
            }
            acc = _mm256_min_ps(_mm256_max_ps(acc, vlo), vhi);
            _mm256_maskstore_ps(out + ox * C + c, m, acc);
        }
    }
}

static void bitpack_avx2(size_t rows, size_t n, const float* x, const float* m, const float* b,
                         uint64_t* out) {
    const size_t words = (n + 63) / 64;
    const __m256 zero = _mm256_setzero_ps();
    for (size_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        uint64_t* o = out + r * words;
        for (size_t q = 0; q < words; ++q) {
            uint64_t word = 0;
            for (size_t part = 0; part < 8; ++part) {
                const size_t c = q * 64 + part * 8;
                if (c >= n) break;
                const __m256i mask = tail_mask(n - c);
                __m256 v = _mm256_maskload_ps(xr + c, mask);
                if (m != NULL) {
                    v = _mm256_mul_ps(v, _mm256_maskload_ps(m + c, mask));
                    v = _mm256_add_ps(v, _mm256_maskload_ps(b + c, mask));
                }
                /* masked-off lanes load 0.0, which is not < 0 */
                const unsigned negative = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ));
                word |= (uint64_t)negative << (8 * part);
            }
            o[q] = word;
        }
    }
}

#define EBNN_BCONV_OUT_NAME bconv_out_avx2
#include "../common/bconv_out.inc"

static void bconv_bits_avx2(size_t mr, size_t nc, size_t nr, const int32_t* acc, int32_t k,
                            const int32_t* corr, const int32_t* thr, uint64_t* words) {
    const __m256i vk = _mm256_set1_epi32(k);
    for (size_t i = 0; i < mr; ++i) {
        uint64_t word = 0;
        for (size_t j = 0; j < nc; j += 8) {
            const __m256i m = tail_mask(nc - j);
            __m256i dot = _mm256_sub_epi32(vk, _mm256_slli_epi32(_mm256_maskload_epi32(acc + i * nr + j, m), 1));
            if (corr != NULL) dot = _mm256_sub_epi32(dot, _mm256_maskload_epi32(corr + i * nr + j, m));
            const __m256i below = _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_maskload_epi32(thr + j, m), dot), m);
            word |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(below)) << j;
        }
        words[i] = word;
    }
}

const ebnn_kernels ebnn_kernels_avx2 = {
    .name = "avx2",
    .bgemm_mr = BGEMM_MR,
    .bgemm_nr = 8,
    .bgemm = bgemm_avx2,
    .bgemm32_mr = BGEMM_MR,
    .bgemm32_nr = 16,
    .bgemm32 = bgemm32_avx2,
    .fgemm_mr = FGEMM_MR,
    .fgemm_nr = 16,
    .fgemm = fgemm_avx2,
    .fgemm_narrow_mr = 8,
    .fgemm_narrow_nr = 8,
    .fgemm_narrow = fgemm_narrow_avx2,
    .dwconv_row = dwconv_row_avx2,
    .bitpack = bitpack_avx2,
    .bconv_out = bconv_out_avx2,
    .bconv_bits = bconv_bits_avx2,
};
