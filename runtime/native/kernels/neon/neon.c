/* The aarch64 NEON (Advanced SIMD) kernel set. NEON is part of the aarch64 base architecture, so
   this file needs no extra flags and the set is always usable on aarch64 (src/cpu.c). Every kernel
   has the same contract as its scalar reference (kernels/scalar/scalar.c), which the sweeps of
   tests/test_kernels.c compare it against (run under qemu-aarch64 on an x86 host).

   - bgemm 4x8 (64-bit words): per step of 64 input bits, one load of the 8 channels' weight words
     (4 q registers of 2 channels x 64 bits), one ld1r per pixel, then per (pixel, channel pair)
     EOR + CNT (popcount per byte) + ADD into byte counters: 3 instructions per 128 binary MACs.
     Byte counters hold at most 8 per step, so they are folded (UADDLP/ADDP into 32-bit sums) every
     31 steps at most, never inside the inner loop.
   - bgemm32 4x16 (32-bit words, 17..32 channels per group mod 64): the same on 4 channels x 32 bits;
     bgemm16 8x16 (16-bit words, 1..16 channels per group mod 64, e.g. CIFAR ResNets' first stage).
   - fgemm 4x16: 16 accumulators, 4 k at a time (one q load of A per row, FMLA by lane); one row
     (DENSE) has its own loop instead of computing 3 rows for nothing.
   - depthwise row: 16, then 4 channels per step, scalar tail; bitpack: FCMLT + narrowing + pairwise
     adds (a NEON "movemask"), 64 or 16 floats at a time; binary max-pool: AND of 128-bit rows; the
     BCONV2D epilogues (4 channels per step, the reference's rounding). */
#include <arm_neon.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "../kernels.h"

#define BGEMM_MR 4
#define BGEMM_NR 8
#define BGEMM32_MR 4
#define BGEMM32_NR 16
#define FGEMM_MR 4
#define FGEMM_NR 16
/* byte counters: 8 per step at most, 31 * 8 = 248 < 256 */
#define MAX_STEPS 31

/* --- bgemm ------------------------------------------------------------------------------------ */

static inline uint8x16_t pop_acc(uint8x16_t acc, uint64x2_t x, uint64x2_t w) {
    return vaddq_u8(acc, vcntq_u8(vreinterpretq_u8_u64(veorq_u64(x, w))));
}

/* 2 x (2 channels x 16 byte counters) -> 4 channel sums, added to s */
static inline uint32x4_t fold2(uint32x4_t s, uint8x16_t a, uint8x16_t b) {
    const uint32x4_t pa = vpaddlq_u16(vpaddlq_u8(a)); /* [c0 lo, c0 hi, c1 lo, c1 hi] */
    const uint32x4_t pb = vpaddlq_u16(vpaddlq_u8(b));
    return vaddq_u32(s, vpaddq_u32(pa, pb)); /* [c0, c1, c2, c3] */
}

/* One-instruction loads the compiler would otherwise split (ldr + dup): a word broadcast to both
   lanes with post-increment (the memory operand is a byte array: it may alias anything). */
#define LD1R_U64(v, p)                                                                      \
    __asm__("ld1r {%0.2d}, [%1], #8" : "=w"(v), "+r"(p) : "m"(*(const uint8_t(*)[8])(const void*)(p)))
#define LD1R_U32(v, p)                                                                      \
    __asm__("ld1r {%0.4s}, [%1], #4" : "=w"(v), "+r"(p) : "m"(*(const uint8_t(*)[4])(const void*)(p)))

/* `n` steps of 64 input bits for 4 pixels x 8 channels: one ld1 of the weights (4 registers), one
   ld1r per pixel, 16 x (EOR, CNT, ADD). */
#define BGEMM_STEPS(n)                                                                         \
    for (size_t s_ = (n); s_ != 0; --s_) {                                                     \
        const uint64x2x4_t wv = vld1q_u64_x4(w);                                               \
        w += BGEMM_NR;                                                                         \
        uint64x2_t x;                                                                          \
        LD1R_U64(x, p0);                                                                       \
        a00 = pop_acc(a00, x, wv.val[0]), a01 = pop_acc(a01, x, wv.val[1]);                    \
        a02 = pop_acc(a02, x, wv.val[2]), a03 = pop_acc(a03, x, wv.val[3]);                    \
        LD1R_U64(x, p1);                                                                       \
        a10 = pop_acc(a10, x, wv.val[0]), a11 = pop_acc(a11, x, wv.val[1]);                    \
        a12 = pop_acc(a12, x, wv.val[2]), a13 = pop_acc(a13, x, wv.val[3]);                    \
        LD1R_U64(x, p2);                                                                       \
        a20 = pop_acc(a20, x, wv.val[0]), a21 = pop_acc(a21, x, wv.val[1]);                    \
        a22 = pop_acc(a22, x, wv.val[2]), a23 = pop_acc(a23, x, wv.val[3]);                    \
        LD1R_U64(x, p3);                                                                       \
        a30 = pop_acc(a30, x, wv.val[0]), a31 = pop_acc(a31, x, wv.val[1]);                    \
        a32 = pop_acc(a32, x, wv.val[2]), a33 = pop_acc(a33, x, wv.val[3]);                    \
    }

static void bgemm_neon(size_t taps, size_t cq, const uint64_t* const* rows,
                       const size_t* tap_offset, const uint64_t* w, int32_t* acc) {
    const uint8x16_t zero = vdupq_n_u8(0);
    uint8x16_t a00 = zero, a01 = zero, a02 = zero, a03 = zero;
    uint8x16_t a10 = zero, a11 = zero, a12 = zero, a13 = zero;
    uint8x16_t a20 = zero, a21 = zero, a22 = zero, a23 = zero;
    uint8x16_t a30 = zero, a31 = zero, a32 = zero, a33 = zero;
    uint32x4_t s00 = vdupq_n_u32(0), s01 = s00, s10 = s00, s11 = s00;
    uint32x4_t s20 = s00, s21 = s00, s30 = s00, s31 = s00;
#define FOLD()                                                  \
    do {                                                        \
        s00 = fold2(s00, a00, a01), s01 = fold2(s01, a02, a03); \
        s10 = fold2(s10, a10, a11), s11 = fold2(s11, a12, a13); \
        s20 = fold2(s20, a20, a21), s21 = fold2(s21, a22, a23); \
        s30 = fold2(s30, a30, a31), s31 = fold2(s31, a32, a33); \
        a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = zero;   \
        a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = zero;   \
    } while (0)
    if (taps * cq <= MAX_STEPS) { /* the usual case (e.g. 3x3 taps, <= 192 channels): one fold */
        for (size_t t = 0; t < taps; ++t) {
            const size_t off = tap_offset[t];
            const uint64_t *p0 = rows[0] + off, *p1 = rows[1] + off, *p2 = rows[2] + off, *p3 = rows[3] + off;
            BGEMM_STEPS(cq);
        }
    } else {
        size_t pending = 0; /* steps in the byte counters */
        for (size_t t = 0; t < taps; ++t) {
            const size_t off = tap_offset[t];
            const uint64_t *p0 = rows[0] + off, *p1 = rows[1] + off, *p2 = rows[2] + off, *p3 = rows[3] + off;
            for (size_t left = cq; left != 0;) {
                if (pending == MAX_STEPS) {
                    FOLD();
                    pending = 0;
                }
                const size_t n = left < MAX_STEPS - pending ? left : MAX_STEPS - pending;
                BGEMM_STEPS(n);
                pending += n, left -= n;
            }
        }
    }
    FOLD();
#undef FOLD
    uint32_t* out = (uint32_t*)(void*)acc; /* popcounts are >= 0: the same bits as int32 */
    vst1q_u32(out + 0, s00), vst1q_u32(out + 4, s01);
    vst1q_u32(out + 8, s10), vst1q_u32(out + 12, s11);
    vst1q_u32(out + 16, s20), vst1q_u32(out + 20, s21);
    vst1q_u32(out + 24, s30), vst1q_u32(out + 28, s31);
}

/* 32-bit words: 4 channels per q register; one fold gives the 4 channel sums directly */
static inline uint8x16_t pop_acc32(uint8x16_t acc, uint32x4_t x, uint32x4_t w) {
    return vaddq_u8(acc, vcntq_u8(vreinterpretq_u8_u32(veorq_u32(x, w))));
}

static inline uint32x4_t fold1(uint32x4_t s, uint8x16_t a) {
    return vaddq_u32(s, vpaddlq_u16(vpaddlq_u8(a)));
}

#define BGEMM32_STEPS(n)                                                                       \
    for (size_t s_ = (n); s_ != 0; --s_) {                                                     \
        const uint32x4x4_t wv = vld1q_u32_x4(w);                                               \
        w += BGEMM32_NR;                                                                       \
        uint32x4_t x;                                                                          \
        LD1R_U32(x, p0);                                                                       \
        a00 = pop_acc32(a00, x, wv.val[0]), a01 = pop_acc32(a01, x, wv.val[1]);                \
        a02 = pop_acc32(a02, x, wv.val[2]), a03 = pop_acc32(a03, x, wv.val[3]);                \
        LD1R_U32(x, p1);                                                                       \
        a10 = pop_acc32(a10, x, wv.val[0]), a11 = pop_acc32(a11, x, wv.val[1]);                \
        a12 = pop_acc32(a12, x, wv.val[2]), a13 = pop_acc32(a13, x, wv.val[3]);                \
        LD1R_U32(x, p2);                                                                       \
        a20 = pop_acc32(a20, x, wv.val[0]), a21 = pop_acc32(a21, x, wv.val[1]);                \
        a22 = pop_acc32(a22, x, wv.val[2]), a23 = pop_acc32(a23, x, wv.val[3]);                \
        LD1R_U32(x, p3);                                                                       \
        a30 = pop_acc32(a30, x, wv.val[0]), a31 = pop_acc32(a31, x, wv.val[1]);                \
        a32 = pop_acc32(a32, x, wv.val[2]), a33 = pop_acc32(a33, x, wv.val[3]);                \
    }

static void bgemm32_neon(size_t taps, size_t kq, const uint32_t* const* rows,
                         const size_t* tap_offset, const uint32_t* w, int32_t* acc) {
    const uint8x16_t zero = vdupq_n_u8(0);
    uint8x16_t a00 = zero, a01 = zero, a02 = zero, a03 = zero;
    uint8x16_t a10 = zero, a11 = zero, a12 = zero, a13 = zero;
    uint8x16_t a20 = zero, a21 = zero, a22 = zero, a23 = zero;
    uint8x16_t a30 = zero, a31 = zero, a32 = zero, a33 = zero;
    uint32x4_t s[4][4];
    for (size_t i = 0; i < 4; ++i)
        for (size_t v = 0; v < 4; ++v) s[i][v] = vdupq_n_u32(0);
#define FOLD32()                                                                        \
    do {                                                                                \
        s[0][0] = fold1(s[0][0], a00), s[0][1] = fold1(s[0][1], a01);                   \
        s[0][2] = fold1(s[0][2], a02), s[0][3] = fold1(s[0][3], a03);                   \
        s[1][0] = fold1(s[1][0], a10), s[1][1] = fold1(s[1][1], a11);                   \
        s[1][2] = fold1(s[1][2], a12), s[1][3] = fold1(s[1][3], a13);                   \
        s[2][0] = fold1(s[2][0], a20), s[2][1] = fold1(s[2][1], a21);                   \
        s[2][2] = fold1(s[2][2], a22), s[2][3] = fold1(s[2][3], a23);                   \
        s[3][0] = fold1(s[3][0], a30), s[3][1] = fold1(s[3][1], a31);                   \
        s[3][2] = fold1(s[3][2], a32), s[3][3] = fold1(s[3][3], a33);                   \
        a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = zero;                           \
        a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = zero;                           \
    } while (0)
    if (taps * kq <= MAX_STEPS) {
        for (size_t t = 0; t < taps; ++t) {
            const size_t off = tap_offset[t];
            const uint32_t *p0 = rows[0] + off, *p1 = rows[1] + off, *p2 = rows[2] + off, *p3 = rows[3] + off;
            BGEMM32_STEPS(kq);
        }
    } else {
        size_t pending = 0;
        for (size_t t = 0; t < taps; ++t) {
            const size_t off = tap_offset[t];
            const uint32_t *p0 = rows[0] + off, *p1 = rows[1] + off, *p2 = rows[2] + off, *p3 = rows[3] + off;
            for (size_t left = kq; left != 0;) {
                if (pending == MAX_STEPS) {
                    FOLD32();
                    pending = 0;
                }
                const size_t n = left < MAX_STEPS - pending ? left : MAX_STEPS - pending;
                BGEMM32_STEPS(n);
                pending += n, left -= n;
            }
        }
    }
    FOLD32();
#undef FOLD32
    uint32_t* out = (uint32_t*)(void*)acc;
    for (size_t i = 0; i < 4; ++i)
        for (size_t v = 0; v < 4; ++v) vst1q_u32(out + i * BGEMM32_NR + 4 * v, s[i][v]);
}

/* 16-bit words (1..16 channels per group mod 64): 8 pixels x 16 channels, 8 channels x 16 bits
   per q register; per step one ld1 (2 registers), one ld1r per pixel, 16 x (EOR, CNT, ADD). Each
   channel's two byte counters fold into one 16-bit sum with one UADDLP. */
#define BGEMM16_MR 8
#define BGEMM16_NR 16
#define LD1R_U16(v, p)                                                                      \
    __asm__("ld1r {%0.8h}, [%1], #2" : "=w"(v), "+r"(p) : "m"(*(const uint8_t(*)[2])(const void*)(p)))

static inline uint8x16_t pop_acc16(uint8x16_t acc, uint16x8_t x, uint16x8_t w) {
    return vaddq_u8(acc, vcntq_u8(vreinterpretq_u8_u16(veorq_u16(x, w))));
}

#define BGEMM16_ROW(i)                                                                         \
    do {                                                                                       \
        uint16x8_t x;                                                                          \
        LD1R_U16(x, p##i);                                                                     \
        a##i##0 = pop_acc16(a##i##0, x, wv.val[0]), a##i##1 = pop_acc16(a##i##1, x, wv.val[1]); \
    } while (0)
#define BGEMM16_STEPS(n)                                                                       \
    for (size_t s_ = (n); s_ != 0; --s_) {                                                     \
        const uint16x8x2_t wv = vld1q_u16_x2(w);                                               \
        w += BGEMM16_NR;                                                                       \
        BGEMM16_ROW(0); BGEMM16_ROW(1); BGEMM16_ROW(2); BGEMM16_ROW(3);                        \
        BGEMM16_ROW(4); BGEMM16_ROW(5); BGEMM16_ROW(6); BGEMM16_ROW(7);                        \
    }

static void bgemm16_neon(size_t taps, size_t kq, const uint16_t* const* rows,
                         const size_t* tap_offset, const uint16_t* w, int32_t* acc) {
    const uint8x16_t zero = vdupq_n_u8(0);
    uint8x16_t a00 = zero, a01 = zero, a10 = zero, a11 = zero, a20 = zero, a21 = zero;
    uint8x16_t a30 = zero, a31 = zero, a40 = zero, a41 = zero, a50 = zero, a51 = zero;
    uint8x16_t a60 = zero, a61 = zero, a70 = zero, a71 = zero;
    uint32_t sums[BGEMM16_MR * BGEMM16_NR] = {0};
#define FOLD16_ROW(i)                                                                          \
    do {                                                                                       \
        const uint16x8_t lo = vpaddlq_u8(a##i##0), hi = vpaddlq_u8(a##i##1);                   \
        uint32_t* s = sums + (i) * BGEMM16_NR;                                                 \
        vst1q_u32(s + 0, vaddw_u16(vld1q_u32(s + 0), vget_low_u16(lo)));                       \
        vst1q_u32(s + 4, vaddw_u16(vld1q_u32(s + 4), vget_high_u16(lo)));                      \
        vst1q_u32(s + 8, vaddw_u16(vld1q_u32(s + 8), vget_low_u16(hi)));                       \
        vst1q_u32(s + 12, vaddw_u16(vld1q_u32(s + 12), vget_high_u16(hi)));                    \
        a##i##0 = a##i##1 = zero;                                                              \
    } while (0)
#define FOLD16()                                                                              \
    do {                                                                                      \
        FOLD16_ROW(0); FOLD16_ROW(1); FOLD16_ROW(2); FOLD16_ROW(3);                           \
        FOLD16_ROW(4); FOLD16_ROW(5); FOLD16_ROW(6); FOLD16_ROW(7);                           \
    } while (0)
#define ROW_POINTERS                                                                           \
    const size_t off = tap_offset[t];                                                          \
    const uint16_t *p0 = rows[0] + off, *p1 = rows[1] + off, *p2 = rows[2] + off;              \
    const uint16_t *p3 = rows[3] + off, *p4 = rows[4] + off, *p5 = rows[5] + off;              \
    const uint16_t *p6 = rows[6] + off, *p7 = rows[7] + off
    if (taps * kq <= MAX_STEPS) {
        for (size_t t = 0; t < taps; ++t) {
            ROW_POINTERS;
            BGEMM16_STEPS(kq);
        }
    } else {
        size_t pending = 0;
        for (size_t t = 0; t < taps; ++t) {
            ROW_POINTERS;
            for (size_t left = kq; left != 0;) {
                if (pending == MAX_STEPS) {
                    FOLD16();
                    pending = 0;
                }
                const size_t n = left < MAX_STEPS - pending ? left : MAX_STEPS - pending;
                BGEMM16_STEPS(n);
                pending += n, left -= n;
            }
        }
    }
    FOLD16();
#undef FOLD16
#undef FOLD16_ROW
#undef ROW_POINTERS
    memcpy(acc, sums, sizeof(sums)); /* popcounts are >= 0: the same bits as int32 */
}

/* --- fgemm ------------------------------------------------------------------------------------ */

static inline float32x4_t clamp4(float32x4_t v, float32x4_t lo, float32x4_t hi) {
    return vminq_f32(vmaxq_f32(v, lo), hi);
}

static inline void store_row(float* c, size_t nc, float32x4_t v0, float32x4_t v1, float32x4_t v2,
                             float32x4_t v3) {
    if (nc == FGEMM_NR) {
        vst1q_f32(c, v0), vst1q_f32(c + 4, v1), vst1q_f32(c + 8, v2), vst1q_f32(c + 12, v3);
        return;
    }
    float tile[FGEMM_NR];
    vst1q_f32(tile, v0), vst1q_f32(tile + 4, v1), vst1q_f32(tile + 8, v2), vst1q_f32(tile + 12, v3);
    memcpy(c, tile, nc * sizeof(float));
}

/* one row of A (DENSE): 4 accumulators, 4 k per A load */
static void fgemm_row_neon(size_t nc, size_t kc, const float* a, const float* w, float* c, float lo,
                           float hi) {
    float32x4_t v0 = vld1q_f32(w), v1 = vld1q_f32(w + 4), v2 = vld1q_f32(w + 8), v3 = vld1q_f32(w + 12);
    w += FGEMM_NR;
    size_t k = 0;
#define ROW_STEP(lane)                                                                        \
    do {                                                                                      \
        v0 = vfmaq_laneq_f32(v0, vld1q_f32(w + 0), x, lane);                                  \
        v1 = vfmaq_laneq_f32(v1, vld1q_f32(w + 4), x, lane);                                  \
        v2 = vfmaq_laneq_f32(v2, vld1q_f32(w + 8), x, lane);                                  \
        v3 = vfmaq_laneq_f32(v3, vld1q_f32(w + 12), x, lane);                                 \
        w += FGEMM_NR;                                                                        \
    } while (0)
    for (; k + 4 <= kc; k += 4) {
        const float32x4_t x = vld1q_f32(a + k);
        ROW_STEP(0);
        ROW_STEP(1);
        ROW_STEP(2);
        ROW_STEP(3);
    }
#undef ROW_STEP
    for (; k < kc; ++k) {
        const float32x4_t x = vld1q_dup_f32(a + k);
        v0 = vfmaq_f32(v0, vld1q_f32(w + 0), x);
        v1 = vfmaq_f32(v1, vld1q_f32(w + 4), x);
        v2 = vfmaq_f32(v2, vld1q_f32(w + 8), x);
        v3 = vfmaq_f32(v3, vld1q_f32(w + 12), x);
        w += FGEMM_NR;
    }
    const float32x4_t vlo = vdupq_n_f32(lo), vhi = vdupq_n_f32(hi);
    store_row(c, nc, clamp4(v0, vlo, vhi), clamp4(v1, vlo, vhi), clamp4(v2, vlo, vhi), clamp4(v3, vlo, vhi));
}

static void fgemm_neon(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                       const float* w, float* c, size_t c_stride, float lo, float hi) {
    if (mr == 1) {
        fgemm_row_neon(nc, kc, a, w, c, lo, hi);
        return;
    }
    /* rows past mr repeat the last one (read, never written) */
    const float* a0 = a;
    const float* a1 = mr > 1 ? a0 + a_stride : a0;
    const float* a2 = mr > 2 ? a1 + a_stride : a1;
    const float* a3 = mr > 3 ? a2 + a_stride : a2;
    float32x4_t c00 = vld1q_f32(w), c01 = vld1q_f32(w + 4), c02 = vld1q_f32(w + 8), c03 = vld1q_f32(w + 12);
    float32x4_t c10 = c00, c11 = c01, c12 = c02, c13 = c03;
    float32x4_t c20 = c00, c21 = c01, c22 = c02, c23 = c03;
    float32x4_t c30 = c00, c31 = c01, c32 = c02, c33 = c03;
    w += FGEMM_NR;
    size_t k = 0;
#define STEP(lane)                                                                              \
    do {                                                                                        \
        const float32x4_t b0 = vld1q_f32(w), b1 = vld1q_f32(w + 4), b2 = vld1q_f32(w + 8),      \
                          b3 = vld1q_f32(w + 12);                                               \
        w += FGEMM_NR;                                                                          \
        c00 = vfmaq_laneq_f32(c00, b0, x0, lane), c01 = vfmaq_laneq_f32(c01, b1, x0, lane);     \
        c02 = vfmaq_laneq_f32(c02, b2, x0, lane), c03 = vfmaq_laneq_f32(c03, b3, x0, lane);     \
        c10 = vfmaq_laneq_f32(c10, b0, x1, lane), c11 = vfmaq_laneq_f32(c11, b1, x1, lane);     \
        c12 = vfmaq_laneq_f32(c12, b2, x1, lane), c13 = vfmaq_laneq_f32(c13, b3, x1, lane);     \
        c20 = vfmaq_laneq_f32(c20, b0, x2, lane), c21 = vfmaq_laneq_f32(c21, b1, x2, lane);     \
        c22 = vfmaq_laneq_f32(c22, b2, x2, lane), c23 = vfmaq_laneq_f32(c23, b3, x2, lane);     \
        c30 = vfmaq_laneq_f32(c30, b0, x3, lane), c31 = vfmaq_laneq_f32(c31, b1, x3, lane);     \
        c32 = vfmaq_laneq_f32(c32, b2, x3, lane), c33 = vfmaq_laneq_f32(c33, b3, x3, lane);     \
    } while (0)
    for (; k + 4 <= kc; k += 4) {
        const float32x4_t x0 = vld1q_f32(a0 + k), x1 = vld1q_f32(a1 + k);
        const float32x4_t x2 = vld1q_f32(a2 + k), x3 = vld1q_f32(a3 + k);
        STEP(0);
        STEP(1);
        STEP(2);
        STEP(3);
    }
    for (; k < kc; ++k) {
        const float32x4_t x0 = vld1q_dup_f32(a0 + k), x1 = vld1q_dup_f32(a1 + k);
        const float32x4_t x2 = vld1q_dup_f32(a2 + k), x3 = vld1q_dup_f32(a3 + k);
        STEP(0);
    }
#undef STEP
    const float32x4_t vlo = vdupq_n_f32(lo), vhi = vdupq_n_f32(hi);
#define ROW(i)                                                                                   \
    store_row(c + (i) * c_stride, nc, clamp4(c##i##0, vlo, vhi), clamp4(c##i##1, vlo, vhi),      \
              clamp4(c##i##2, vlo, vhi), clamp4(c##i##3, vlo, vhi))
    ROW(0);
    if (mr > 1) ROW(1);
    if (mr > 2) ROW(2);
    if (mr > 3) ROW(3);
#undef ROW
}

/* --- depthwise convolution, one output row ------------------------------------------------------ */

static void dwconv_row_neon(const ebnn_dw_params* p, const float* in, const float* w,
                            const float* bias, float* out, size_t oy) {
    const size_t C = p->channels;
    const float32x4_t vlo = vdupq_n_f32(p->lo), vhi = vdupq_n_f32(p->hi);
    /* the kernel rows inside the input: the same for the whole output row */
    size_t ky_first = p->kernel_h, ky_end = 0;
    for (size_t ky = 0; ky < p->kernel_h; ++ky) {
        const ptrdiff_t iy = (ptrdiff_t)(oy * p->stride_h + ky * p->dilation_h) - (ptrdiff_t)p->pad_top;
        if (iy >= 0 && iy < (ptrdiff_t)p->in_h) {
            if (ky_first == p->kernel_h) ky_first = ky;
            ky_end = ky + 1;
        }
    }
    for (size_t ox = 0; ox < p->out_w; ++ox) {
        float* o = out + ox * C;
        size_t kx_first = p->kernel_w, kx_end = 0;
        for (size_t kx = 0; kx < p->kernel_w; ++kx) {
            const ptrdiff_t ix = (ptrdiff_t)(ox * p->stride_w + kx * p->dilation_w) - (ptrdiff_t)p->pad_left;
            if (ix >= 0 && ix < (ptrdiff_t)p->in_w) {
                if (kx_first == p->kernel_w) kx_first = kx;
                kx_end = kx + 1;
            }
        }
        /* (strided taps between first and end are all inside: the valid range is contiguous) */
        size_t c = 0;
        for (; c + 16 <= C; c += 16) {
            float32x4_t v0 = vld1q_f32(bias + c), v1 = vld1q_f32(bias + c + 4);
            float32x4_t v2 = vld1q_f32(bias + c + 8), v3 = vld1q_f32(bias + c + 12);
            for (size_t ky = ky_first; ky < ky_end; ++ky) {
                const size_t iy = oy * p->stride_h + ky * p->dilation_h - p->pad_top;
                for (size_t kx = kx_first; kx < kx_end; ++kx) {
                    const size_t ix = ox * p->stride_w + kx * p->dilation_w - p->pad_left;
                    const float* x = in + (iy * p->in_w + ix) * C + c;
                    const float* k = w + (ky * p->kernel_w + kx) * C + c;
                    v0 = vfmaq_f32(v0, vld1q_f32(x), vld1q_f32(k));
                    v1 = vfmaq_f32(v1, vld1q_f32(x + 4), vld1q_f32(k + 4));
                    v2 = vfmaq_f32(v2, vld1q_f32(x + 8), vld1q_f32(k + 8));
                    v3 = vfmaq_f32(v3, vld1q_f32(x + 12), vld1q_f32(k + 12));
                }
            }
            vst1q_f32(o + c, clamp4(v0, vlo, vhi)), vst1q_f32(o + c + 4, clamp4(v1, vlo, vhi));
            vst1q_f32(o + c + 8, clamp4(v2, vlo, vhi)), vst1q_f32(o + c + 12, clamp4(v3, vlo, vhi));
        }
        for (; c + 4 <= C; c += 4) {
            float32x4_t v = vld1q_f32(bias + c);
            for (size_t ky = ky_first; ky < ky_end; ++ky) {
                const size_t iy = oy * p->stride_h + ky * p->dilation_h - p->pad_top;
                for (size_t kx = kx_first; kx < kx_end; ++kx) {
                    const size_t ix = ox * p->stride_w + kx * p->dilation_w - p->pad_left;
                    v = vfmaq_f32(v, vld1q_f32(in + (iy * p->in_w + ix) * C + c),
                                  vld1q_f32(w + (ky * p->kernel_w + kx) * C + c));
                }
            }
            vst1q_f32(o + c, clamp4(v, vlo, vhi));
        }
        for (; c < C; ++c) {
            float v = bias[c];
            for (size_t ky = ky_first; ky < ky_end; ++ky) {
                const size_t iy = oy * p->stride_h + ky * p->dilation_h - p->pad_top;
                for (size_t kx = kx_first; kx < kx_end; ++kx) {
                    const size_t ix = ox * p->stride_w + kx * p->dilation_w - p->pad_left;
                    v = __builtin_fmaf(in[(iy * p->in_w + ix) * C + c], w[(ky * p->kernel_w + kx) * C + c], v);
                }
            }
            v = v < p->lo ? p->lo : v;
            o[c] = v > p->hi ? p->hi : v;
        }
    }
}

/* --- bitpack ---------------------------------------------------------------------------------- */

/* 16 floats -> 16 bytes, 0xff where negative */
static inline uint8x16_t negative16(const float* x, const float* m, const float* b) {
    float32x4_t v0 = vld1q_f32(x), v1 = vld1q_f32(x + 4), v2 = vld1q_f32(x + 8), v3 = vld1q_f32(x + 12);
    if (m != NULL) { /* product and sum rounded separately, as the reference */
        v0 = vaddq_f32(vmulq_f32(v0, vld1q_f32(m)), vld1q_f32(b));
        v1 = vaddq_f32(vmulq_f32(v1, vld1q_f32(m + 4)), vld1q_f32(b + 4));
        v2 = vaddq_f32(vmulq_f32(v2, vld1q_f32(m + 8)), vld1q_f32(b + 8));
        v3 = vaddq_f32(vmulq_f32(v3, vld1q_f32(m + 12)), vld1q_f32(b + 12));
    }
    const float32x4_t zero = vdupq_n_f32(0.0f); /* ordered compare: NaN and -0.0 are not < 0 */
    const uint16x8_t lo = vcombine_u16(vmovn_u32(vcltq_f32(v0, zero)), vmovn_u32(vcltq_f32(v1, zero)));
    const uint16x8_t hi = vcombine_u16(vmovn_u32(vcltq_f32(v2, zero)), vmovn_u32(vcltq_f32(v3, zero)));
    return vcombine_u8(vmovn_u16(lo), vmovn_u16(hi));
}

/* 16 floats -> 16 bits, bit i = float i is negative */
static inline uint64_t pack16(const float* x, const float* m, const float* b) {
    static const uint8_t weights[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t bits = vandq_u8(negative16(x, m, b), vld1q_u8(weights));
    /* pairwise adds: byte k = the bits of floats 8k..8k+7 */
    const uint8x8_t s = vpadd_u8(vget_low_u8(bits), vget_high_u8(bits)); /* 8 bytes, 2 floats each */
    const uint8x8_t t = vpadd_u8(s, s);                                    /* 4 floats each */
    return vget_lane_u16(vreinterpret_u16_u8(vpadd_u8(t, t)), 0);
}

/* 64 floats -> one word, bit i = float i is negative */
static inline uint64_t pack64(const float* x, const float* m, const float* b) {
    static const uint8_t weights[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t bit = vld1q_u8(weights);
    const uint8x16_t n0 = vandq_u8(negative16(x, m, b), bit);
    const uint8x16_t n1 = vandq_u8(negative16(x + 16, m ? m + 16 : NULL, b ? b + 16 : NULL), bit);
    const uint8x16_t n2 = vandq_u8(negative16(x + 32, m ? m + 32 : NULL, b ? b + 32 : NULL), bit);
    const uint8x16_t n3 = vandq_u8(negative16(x + 48, m ? m + 48 : NULL, b ? b + 48 : NULL), bit);
    /* three pairwise adds sum each run of 8 bytes: byte k = the bits of floats 8k..8k+7 */
    const uint8x16_t s = vpaddq_u8(vpaddq_u8(n0, n1), vpaddq_u8(n2, n3));
    return vgetq_lane_u64(vreinterpretq_u64_u8(vpaddq_u8(s, s)), 0);
}

static void bitpack_neon(size_t rows, size_t n, const float* x, const float* m, const float* b,
                         uint64_t* out) {
    const size_t words = (n + 63) / 64, full = n / 64;
    const size_t tail16 = (n % 64) / 16, tail = n % 16; /* after the full words */
    for (size_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        uint64_t* o = out + r * words;
        for (size_t q = 0; q < full; ++q) {
            o[q] = pack64(xr + 64 * q, m ? m + 64 * q : NULL, b ? b + 64 * q : NULL);
        }
        if (full == words) continue;
        size_t c = 64 * full;
        uint64_t word = 0;
        for (size_t part = 0; part < tail16; ++part, c += 16) {
            word |= pack16(xr + c, m ? m + c : NULL, b ? b + c : NULL) << (16 * part);
        }
        if (tail != 0) { /* the last floats through zero-padded copies: 0 * 0 + 0 is not < 0 */
            float tx[16] = {0}, tm[16] = {0}, tb[16] = {0};
            memcpy(tx, xr + c, tail * sizeof(float));
            if (m != NULL) {
                memcpy(tm, m + c, tail * sizeof(float));
                memcpy(tb, b + c, tail * sizeof(float));
            }
            word |= pack16(tx, m ? tm : NULL, m ? tb : NULL) << (16 * tail16);
        }
        o[full] = word;
    }
}

/* --- BCONV2D epilogues ------------------------------------------------------------------------ */

/* float output: the scalar reference's operations in its order, 4 channels per step, channels
   outer (their multipliers and biases loaded once per tile), rows inner (unrolled for the kernels'
   MR); the clamps are compare + select (so that -0.0 stays -0.0 as in the reference) and skipped
   when they are the identity */
static inline __attribute__((always_inline)) void bconv_out_rows(
    size_t mr, size_t nc, size_t nr, const int32_t* acc, int32_t k, const int32_t* corr,
    const float* mult, const float* bias, int32_t dlo, int32_t dhi, float lo, float hi, float* out,
    size_t out_stride) {
    const int32x4_t vk = vdupq_n_s32(k), vdlo = vdupq_n_s32(dlo), vdhi = vdupq_n_s32(dhi);
    const float32x4_t vlo = vdupq_n_f32(lo), vhi = vdupq_n_f32(hi);
    const bool clamp_dot = dlo != INT32_MIN || dhi != INT32_MAX;
    const bool clamp_out = !(lo == -INFINITY && hi == INFINITY);
    size_t j = 0;
    for (; j + 4 <= nc; j += 4) {
        const float32x4_t m = vld1q_f32(mult + j), b = vld1q_f32(bias + j);
        for (size_t i = 0; i < mr; ++i) {
            int32x4_t dot = vmlsq_n_s32(vk, vld1q_s32(acc + i * nr + j), 2); /* k - 2 * popcount */
            if (corr != NULL) dot = vsubq_s32(dot, vld1q_s32(corr + i * nr + j));
            if (clamp_dot) dot = vminq_s32(vmaxq_s32(dot, vdlo), vdhi);
            float32x4_t y = vaddq_f32(vmulq_f32(vcvtq_f32_s32(dot), m), b);
            if (clamp_out) {
                y = vbslq_f32(vcltq_f32(y, vlo), vlo, y);
                y = vbslq_f32(vcgtq_f32(y, vhi), vhi, y);
            }
            vst1q_f32(out + i * out_stride + j, y);
        }
    }
    for (; j < nc; ++j) {
        for (size_t i = 0; i < mr; ++i) {
            int32_t dot = k - 2 * acc[i * nr + j] - (corr != NULL ? corr[i * nr + j] : 0);
            dot = dot < dlo ? dlo : dot;
            dot = dot > dhi ? dhi : dot;
            float y = (float)dot * mult[j];
            y = y + bias[j];
            y = y < lo ? lo : y;
            out[i * out_stride + j] = y > hi ? hi : y;
        }
    }
}

static void bconv_out_neon(size_t mr, size_t nc, size_t nr, const int32_t* acc, int32_t k,
                           const int32_t* corr, const float* mult, const float* bias, int32_t dlo,
                           int32_t dhi, float lo, float hi, float* out, size_t out_stride) {
    if (mr == 8) {
        bconv_out_rows(8, nc, nr, acc, k, corr, mult, bias, dlo, dhi, lo, hi, out, out_stride);
    } else if (mr == 4) {
        bconv_out_rows(4, nc, nr, acc, k, corr, mult, bias, dlo, dhi, lo, hi, out, out_stride);
    } else {
        bconv_out_rows(mr, nc, nr, acc, k, corr, mult, bias, dlo, dhi, lo, hi, out, out_stride);
    }
}

static void bconv_bits_neon(size_t mr, size_t nc, size_t nr, const int32_t* acc, int32_t k,
                            const int32_t* corr, const int32_t* thr, uint64_t* words) {
    static const uint32_t weights[4] = {1, 2, 4, 8};
    const uint32x4_t bit = vld1q_u32(weights);
    const int32x4_t vk = vdupq_n_s32(k);
    for (size_t i = 0; i < mr; ++i) {
        const int32_t* a = acc + i * nr;
        const int32_t* c = corr != NULL ? corr + i * nr : NULL;
        uint64_t word = 0;
        size_t j = 0;
        for (; j + 4 <= nc; j += 4) {
            int32x4_t dot = vsubq_s32(vk, vshlq_n_s32(vld1q_s32(a + j), 1));
            if (c != NULL) dot = vsubq_s32(dot, vld1q_s32(c + j));
            const uint32x4_t below = vandq_u32(vcltq_s32(dot, vld1q_s32(thr + j)), bit);
            word |= (uint64_t)vaddvq_u32(below) << j;
        }
        for (; j < nc; ++j) {
            const int32_t dot = k - 2 * a[j] - (c != NULL ? c[j] : 0);
            word |= (uint64_t)(dot < thr[j]) << j;
        }
        words[i] = word;
    }
}

/* --- binary max-pool, one output row ------------------------------------------------------------ */

static void bmaxpool_row_neon(const ebnn_bpool_params* p, const uint64_t* in, uint64_t* out, size_t oy) {
    const size_t cq = p->words;
    for (size_t ox = 0; ox < p->out_w; ++ox) {
        uint64_t* o = out + ox * cq;
        size_t q = 0;
        for (; q + 2 <= cq; q += 2) {
            uint64x2_t v = vdupq_n_u64(~0ull);
            for (size_t ky = 0; ky < p->kernel_h; ++ky) {
                const ptrdiff_t iy = (ptrdiff_t)(oy * p->stride_h + ky) - (ptrdiff_t)p->pad_top;
                if (iy < 0 || iy >= (ptrdiff_t)p->in_h) continue;
                for (size_t kx = 0; kx < p->kernel_w; ++kx) {
                    const ptrdiff_t ix = (ptrdiff_t)(ox * p->stride_w + kx) - (ptrdiff_t)p->pad_left;
                    if (ix < 0 || ix >= (ptrdiff_t)p->in_w) continue;
                    v = vandq_u64(v, vld1q_u64(in + ((size_t)iy * p->in_w + (size_t)ix) * cq + q));
                }
            }
            vst1q_u64(o + q, v);
        }
        for (; q < cq; ++q) {
            uint64_t v = ~0ull;
            for (size_t ky = 0; ky < p->kernel_h; ++ky) {
                const ptrdiff_t iy = (ptrdiff_t)(oy * p->stride_h + ky) - (ptrdiff_t)p->pad_top;
                if (iy < 0 || iy >= (ptrdiff_t)p->in_h) continue;
                for (size_t kx = 0; kx < p->kernel_w; ++kx) {
                    const ptrdiff_t ix = (ptrdiff_t)(ox * p->stride_w + kx) - (ptrdiff_t)p->pad_left;
                    if (ix < 0 || ix >= (ptrdiff_t)p->in_w) continue;
                    v &= in[((size_t)iy * p->in_w + (size_t)ix) * cq + q];
                }
            }
            o[q] = v;
        }
    }
}

const ebnn_kernels ebnn_kernels_neon = {
    .name = "neon",
    .bgemm_mr = BGEMM_MR,
    .bgemm_nr = BGEMM_NR,
    .bgemm = bgemm_neon,
    .bgemm32_mr = BGEMM32_MR,
    .bgemm32_nr = BGEMM32_NR,
    .bgemm32 = bgemm32_neon,
    .bgemm16_mr = BGEMM16_MR,
    .bgemm16_nr = BGEMM16_NR,
    .bgemm16 = bgemm16_neon,
    .fgemm_mr = FGEMM_MR,
    .fgemm_nr = FGEMM_NR,
    .fgemm = fgemm_neon,
    .dwconv_row = dwconv_row_neon,
    .bitpack = bitpack_neon,
    .bconv_out = bconv_out_neon,
    .bconv_bits = bconv_bits_neon,
    .bmaxpool_row = bmaxpool_row_neon,
};
