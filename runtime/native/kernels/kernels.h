/*
 * Micro-kernel interfaces (XNNPACK style): each ISA provides one small kernel per job, the scalar
 * set (kernels/scalar) is the portable reference that the SIMD sets are tested against
 * (tests/test_kernels.c). A kernel set is an immutable table; the model picks one at load time
 * (cpu.c: ebnn_select_kernels) and the op drivers (src/ops_*.c) call only through it.
 *
 * Adding an ISA (as kernels/neon/neon.c did for aarch64): write kernels/<isa>/<isa>.c implementing
 * these functions, export `const ebnn_kernels ebnn_kernels_<isa>`, add the file and its flags to
 * the Makefile's block of its architecture, and a line in cpu.c's table. Nothing else changes.
 *
 * Data layouts the kernels see:
 *  - bits: rows of 64-bit words, least significant bit first, bit 1 = -1 (the file's 32-bit words
 *    read two at a time on a little-endian host); unused high bits are 0.
 *  - binary GEMM weights ("bgemm panel"), per block of NR output channels:
 *        w[(t * cq + q) * NR + j] = word q of tap t of output channel (block * NR + j)
 *    channels past the end of the block are all-zero words.
 *  - float GEMM weights ("fgemm panel"), per block of NR output channels:
 *        w[j] = bias of channel j (NR floats), then w[NR + k * NR + j] = weight (k, j)
 */
#ifndef EBNN_KERNELS_H_
#define EBNN_KERNELS_H_

#include <stddef.h>
#include <stdint.h>

#define EBNN_MAX_MR 16
#define EBNN_MAX_NR 64

/* Binary GEMM over taps ("indirect" convolution): for i < MR and j < NR
 *     acc[i * NR + j] = sum_{t < taps} sum_{q < cq} popcount(rows[i][tap_offset[t] + q] ^ w[(t*cq+q)*NR + j])
 * rows has MR entries (the caller repeats the last valid row when fewer pixels remain); every
 * MR x NR accumulator is written. */
/* (NR must divide 64: a block of output channels never straddles a 64-bit word of bit output.) */
typedef void (*ebnn_bgemm_fn)(size_t taps, size_t cq, const uint64_t* const* rows,
                              const size_t* tap_offset, const uint64_t* w, int32_t* acc);

/* The same on 32-bit words (optional): for input channel counts (per group) with cg % 64 in
 * 1..32, where a 64-bit word would be half empty. rows point at 32-bit words (the staged 64-bit
 * rows read as 32-bit words, little-endian), tap offsets are in 32-bit words, and
 *     w[(t * kq + q) * NR + j] = 32-bit word q of tap t of output channel j of the block. */
typedef void (*ebnn_bgemm32_fn)(size_t taps, size_t kq, const uint32_t* const* rows,
                                const size_t* tap_offset, const uint32_t* w, int32_t* acc);

/* The same on 16-bit words (optional): for cg % 64 in 1..16 (e.g. the 16-channel stages of CIFAR
 * ResNets), where a 32-bit word would be half empty; rows, tap offsets and weights in 16-bit words
 * as for bgemm32. */
typedef void (*ebnn_bgemm16_fn)(size_t taps, size_t kq, const uint16_t* const* rows,
                                const size_t* tap_offset, const uint16_t* w, int32_t* acc);

/* Float GEMM with bias and clamp: for i < mr (<= MR) and j < nc (<= NR)
 *     c[i * c_stride + j] = clamp(w[j] + sum_{k < kc} a[i * a_stride + k] * w[NR + k * NR + j], lo, hi)
 * Strides are in floats. Rows i >= mr are neither read nor written. */
typedef void (*ebnn_fgemm_fn)(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                              const float* w, float* c, size_t c_stride, float lo, float hi);

/* Depthwise convolution, one output row, channel multiplier 1, zero padding. */
typedef struct ebnn_dw_params {
    size_t in_h, in_w, channels, out_w;
    size_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left;
    float lo, hi;
} ebnn_dw_params;
/* out[ox * C + c] = clamp(bias[c] + sum_{ky,kx inside} in[iy][ix][c] * w[(ky * KW + kx) * C + c])
 * for ox < out_w of output row oy; in is [in_h][in_w][C]. */
typedef void (*ebnn_dwconv_row_fn)(const ebnn_dw_params* p, const float* in, const float* w,
                                   const float* bias, float* out, size_t oy);

/* Bitpacking (QUANTIZE): rows of n floats -> rows of ceil(n/64) words; bit = (x*m[c] + b[c]) < 0
 * (product and sum rounded separately), or x < 0 when m and b are NULL (both or neither). */
typedef void (*ebnn_bitpack_fn)(size_t rows, size_t n, const float* x, const float* m,
                                const float* b, uint64_t* out);

/* BCONV2D epilogues, one MR x NR tile per call (acc and corr rows have stride nr):
 *     dot(i, j) = k - 2 * acc[i * nr + j] - (corr ? corr[i * nr + j] : 0)      for i < mr, j < nc
 * float:  out[i * out_stride + j] = clamp((float)clamp(dot, dlo, dhi) * mult[j] + bias[j], lo, hi)
 *         (the product and the sum rounded separately)
 * bits:   bit j of words[i] = dot(i, j) < thr[j]   (nc <= 64) */
typedef void (*ebnn_bconv_out_fn)(size_t mr, size_t nc, size_t nr, const int32_t* acc, int32_t k,
                                  const int32_t* corr, const float* mult, const float* bias,
                                  int32_t dlo, int32_t dhi, float lo, float hi, float* out,
                                  size_t out_stride);
typedef void (*ebnn_bconv_bits_fn)(size_t mr, size_t nc, size_t nr, const int32_t* acc, int32_t k,
                                   const int32_t* corr, const int32_t* thr, uint64_t* words);

/* Binary max-pool, one output row (BMAXPOOL2D): the max of +-1 values is -1 only when all are, so
 *     out[ox * words + q] = AND over the taps inside the input of in[iy][ix][q]   (all ones if none)
 * in is [in_h][in_w][words] 64-bit words. Optional (NULL: the scalar set's). */
typedef struct ebnn_bpool_params {
    size_t in_h, in_w, words, out_w;
    size_t kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
} ebnn_bpool_params;
typedef void (*ebnn_bmaxpool_row_fn)(const ebnn_bpool_params* p, const uint64_t* in, uint64_t* out,
                                     size_t oy);

typedef struct ebnn_kernels {
    const char* name;
    size_t bgemm_mr, bgemm_nr;
    ebnn_bgemm_fn bgemm;
    size_t bgemm32_mr, bgemm32_nr; /* optional (NULL): see ebnn_bgemm32_fn */
    ebnn_bgemm32_fn bgemm32;
    size_t bgemm16_mr, bgemm16_nr; /* optional (NULL): see ebnn_bgemm16_fn */
    ebnn_bgemm16_fn bgemm16;
    size_t fgemm_mr, fgemm_nr;
    ebnn_fgemm_fn fgemm;
    /* optional (NULL): a narrower float GEMM for layers with few output channels (stems, heads) */
    size_t fgemm_narrow_mr, fgemm_narrow_nr;
    ebnn_fgemm_fn fgemm_narrow;
    ebnn_dwconv_row_fn dwconv_row;
    ebnn_bitpack_fn bitpack;
    ebnn_bconv_out_fn bconv_out;
    ebnn_bconv_bits_fn bconv_bits;
    ebnn_bmaxpool_row_fn bmaxpool_row; /* optional (NULL): the scalar set's */
} ebnn_kernels;

extern const ebnn_kernels ebnn_kernels_scalar;
#if defined(__x86_64__) || defined(_M_X64)
extern const ebnn_kernels ebnn_kernels_avx2;
extern const ebnn_kernels ebnn_kernels_avx512;
#endif
#if defined(__aarch64__)
extern const ebnn_kernels ebnn_kernels_neon;
#endif

#endif /* EBNN_KERNELS_H_ */
