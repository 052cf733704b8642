/* Binary ops: QUANTIZE (bitpacking, optionally through a per-channel affine), DEQUANTIZE,
   BCONV2D and BMAXPOOL2D.

   BCONV2D runs as an "indirect" binary GEMM (docs/native-runtime.md):
   1. staging: the bit-packed input is copied into a padded buffer per group, [Hp][Wp][cq] words,
      whose padding is all-zero words (= +1: one-padding for free). Skipped when there is one group
      and no padding (the input is used in place).
   2. tiles of MT output pixels x NB output channels are spread over the model's threads; for each
      MR pixels x NR channels the kernel set's bgemm computes popcount(x xor w) over all taps from
      per-pixel row pointers (no im2col copy), with weights packed per NR block at load time.
   3. the epilogue turns the popcounts into dot = K - 2 * popcount, subtracts the zero-padding
      correction on border pixels (pad_value 0: sum of the out-of-bounds taps' +1 contributions,
      precomputed per channel and tap), then writes floats (clamp, multiplier, bias, clamp) or bits
      (dot < threshold). */
#include <stdlib.h>

#include "ops_common.h"

enum { PARALLEL_MIN_ELEMENTS = 1 << 15 };

/* --- bits constants: the file's 32-bit words -> 64-bit rows ---------------------------------- */

static uint64_t* bits_rows64(const ebnn_tensor* t) {
    uint64_t* rows = ebnn_aligned_alloc(t->bytes);
    if (rows == NULL) return NULL;
    const uint8_t* src = t->data;
    const size_t words32 = div_up(t->row_len, 32);
    const size_t tail = t->row_len % 64;
    for (size_t r = 0; r < t->rows; ++r) {
        for (size_t w = 0; w < words32; ++w) {
            const uint8_t* p = src + 4 * (r * words32 + w);
            const uint64_t v = (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) |
                               ((uint64_t)p[3] << 24);
            rows[r * t->words + w / 2] |= v << (32 * (w % 2));
        }
        /* the format keeps unused high bits 0; enforce it so a corrupt file cannot break kernels */
        if (tail != 0) rows[r * t->words + t->words - 1] &= (1ull << tail) - 1;
    }
    return rows;
}

ebnn_status ebnn_prepare_bits_constants(ebnn_model* model) {
    for (size_t i = 0; i < model->n_tensors; ++i) {
        ebnn_tensor* t = &model->tensors[i];
        if (!t->is_const || t->dtype != EBNN_BITS || t->bits64 != NULL) continue;
        t->bits64 = bits_rows64(t);
        if (t->bits64 == NULL) {
            return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "out of memory for tensor %zu", i);
        }
    }
    return EBNN_OK;
}

/* --- QUANTIZE ------------------------------------------------------------------------------- */

typedef struct quantize_state {
    float *mult, *bias; /* NULL: plain sign */
} quantize_state;

static ebnn_status quantize_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor *x, *m, *b;
    TRY(need_input(model, op, 0, EBNN_F32, -1, -1, "x", &x));
    CHECK(x->rank >= 1, "x needs at least one axis");
    const size_t C = x->dims[x->rank - 1];
    TRY(optional_vector(model, op, 1, EBNN_F32, C, "multiplier", &m));
    TRY(optional_vector(model, op, 2, EBNN_F32, C, "bias", &b));
    return expect_output(model, op, EBNN_BITS, x->rank, x->dims);
}

static void quantize_release(ebnn_op* op) {
    quantize_state* s = op->state;
    if (s != NULL) {
        ebnn_aligned_free(s->mult);
        ebnn_aligned_free(s->bias);
    }
    free(s);
    op->state = NULL;
}

static ebnn_status quantize_prepare(ebnn_model* model, ebnn_op* op) {
    quantize_release(op);
    quantize_state* s = calloc(1, sizeof(*s));
    if (s == NULL) return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "out of memory");
    op->state = s;
    const ebnn_tensor* x = op_in(model, op, 0);
    const ebnn_tensor* m = op_in(model, op, 1);
    const ebnn_tensor* b = op_in(model, op, 2);
    if (m == NULL && b == NULL) return EBNN_OK;
    const size_t C = x->dims[x->rank - 1];
    s->mult = ebnn_aligned_alloc(C * sizeof(float));
    s->bias = ebnn_aligned_alloc(C * sizeof(float));
    if (s->mult == NULL || s->bias == NULL) return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "out of memory");
    for (size_t c = 0; c < C; ++c) {
        s->mult[c] = m != NULL ? ((const float*)tensor_data(model, m))[c] : 1.0f;
        s->bias[c] = b != NULL ? ((const float*)tensor_data(model, b))[c] : 0.0f;
    }
    op->packed_bytes = 2 * C * sizeof(float);
    return EBNN_OK;
}

typedef struct quantize_job {
    const ebnn_kernels* k;
    const float* x;
    uint64_t* y;
    const float *m, *b;
    size_t rows, n, words, chunk;
} quantize_job;

static void quantize_task(void* context, size_t task, size_t thread) {
    (void)thread;
    const quantize_job* j = context;
    const size_t r0 = task * j->chunk, r1 = min_size(j->rows, r0 + j->chunk);
    j->k->bitpack(r1 - r0, j->n, j->x + r0 * j->n, j->m, j->b, j->y + r0 * j->words);
}

static void quantize_run(ebnn_model* model, ebnn_op* op) {
    const quantize_state* s = op->state;
    const ebnn_tensor* x = op_in(model, op, 0);
    const ebnn_tensor* o = op_out(model, op);
    quantize_job j = {.k = model->kernels, .x = tensor_data(model, x), .y = tensor_data(model, o),
                      .m = s->mult, .b = s->bias, .rows = o->rows, .n = o->row_len,
                      .words = o->words};
    const size_t threads = ebnn_pool_threads(model->pool);
    size_t tasks = x->elems >= PARALLEL_MIN_ELEMENTS ? min_size(o->rows, 2 * threads) : 1;
    j.chunk = div_up(o->rows, tasks);
    tasks = div_up(o->rows, j.chunk);
    ebnn_pool_run(tasks > 1 ? model->pool : NULL, tasks, quantize_task, &j);
}

const ebnn_op_impl ebnn_impl_quantize = {"QUANTIZE", quantize_check, quantize_prepare, quantize_run,
                                         quantize_release};

/* --- DEQUANTIZE ----------------------------------------------------------------------------- */

static ebnn_status dequantize_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor* x;
    TRY(need_input(model, op, 0, EBNN_BITS, -1, -1, "x", &x));
    return expect_output(model, op, EBNN_F32, x->rank, x->dims);
}

static void dequantize_run(ebnn_model* model, ebnn_op* op) {
    const ebnn_tensor* x = op_in(model, op, 0);
    const uint64_t* in = tensor_data(model, x);
    float* y = tensor_data(model, op_out(model, op));
    for (size_t r = 0; r < x->rows; ++r) {
        const uint64_t* row = in + r * x->words;
        float* out = y + r * x->row_len;
        for (size_t c = 0; c < x->row_len; ++c) out[c] = (row[c / 64] >> (c % 64)) & 1 ? -1.0f : 1.0f;
    }
}

const ebnn_op_impl ebnn_impl_dequantize = {"DEQUANTIZE", dequantize_check, no_prepare,
                                           dequantize_run, no_release};

/* --- BMAXPOOL2D ----------------------------------------------------------------------------- */

static ebnn_status bmaxpool_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor* x;
    TRY(need_input(model, op, 0, EBNN_BITS, 4, 0, "x", &x));
    uint32_t dims[4];
    TRY(ebnn_pool_geometry_check(model, op, x, dims));
    return expect_output(model, op, EBNN_BITS, 4, dims);
}

static void bmaxpool_run(ebnn_model* model, ebnn_op* op) {
    const ebnn_tensor* x = op_in(model, op, 0);
    const ebnn_tensor* o = op_out(model, op);
    const uint64_t* in = tensor_data(model, x);
    uint64_t* y = tensor_data(model, o);
    const ebnn_bpool_params p = {
        .in_h = x->dims[1], .in_w = x->dims[2], .words = x->words, .out_w = o->dims[2],
        .kernel_h = (size_t)op->ip[EBNN_P_KERNEL_H], .kernel_w = (size_t)op->ip[EBNN_P_KERNEL_W],
        .stride_h = (size_t)op->ip[EBNN_P_STRIDE_H], .stride_w = (size_t)op->ip[EBNN_P_STRIDE_W],
        .pad_top = (size_t)op->ip[EBNN_P_PAD_TOP], .pad_left = (size_t)op->ip[EBNN_P_PAD_LEFT]};
    const ebnn_bmaxpool_row_fn row = model->kernels->bmaxpool_row != NULL
                                         ? model->kernels->bmaxpool_row
                                         : ebnn_kernels_scalar.bmaxpool_row;
    const size_t row_words = o->dims[2] * x->words;
    for (size_t oy = 0; oy < o->dims[1]; ++oy) row(&p, in, y + oy * row_words, oy);
}

const ebnn_op_impl ebnn_impl_bmaxpool2d = {"BMAXPOOL2D", bmaxpool_check, no_prepare, bmaxpool_run,
                                           no_release};

/* --- the binary convolution driver ----------------------------------------------------------- */

struct ebnn_bconv_plan {
    ebnn_bconv_geometry g;
    const ebnn_kernels* k;
    size_t cg, og, cq, in_words, taps, mr, nr, blocks, block_words;
    unsigned word_bits;   /* of the kernel: 64 (bgemm), 32 (bgemm32) or 16 (bgemm16) */
    bool half;            /* word_bits < 64: kq = ceil(cg / word_bits) narrow words per pixel */
    size_t kq;
    int32_t kbits; /* K = taps * cg */
    size_t hp, wp, plane; /* staged buffer per group: hp * wp * cq words */
    bool staged;
    void* packed;         /* [G][blocks][taps * cq * NR] 64-bit words, or taps * kq * NR narrow words */
    size_t* tap_offset;   /* words from a pixel's first tap */
    int32_t* wsum;        /* zero padding: [O][taps] */
    size_t mt, nb;        /* task tile: pixels, channels (multiple of 64 and NR) */
    size_t out_words;     /* bits output: words per pixel */
};

/* Scratch of one thread: the row pointers of a tile's MT pixels (+ MR repeats of the last) as
   64-bit and as 32-bit words, MR x NR accumulators, MR x NR corrections, MR words, then MT x
   out_words words of bit output. */
static size_t thread_scratch_bytes(const ebnn_bconv_plan* p) {
    return round_up((p->mt + p->mr) * 2 * sizeof(void*) + 2 * p->mr * p->nr * sizeof(int32_t) +
                        p->mr * sizeof(uint64_t), 64) +
           p->mt * p->out_words * sizeof(uint64_t);
}

void ebnn_bconv_plan_free(ebnn_bconv_plan* plan) {
    if (plan == NULL) return;
    ebnn_aligned_free(plan->packed);
    free(plan->tap_offset);
    free(plan->wsum);
    free(plan);
}

ebnn_status ebnn_bconv_plan_create(const ebnn_bconv_geometry* g, const uint64_t* filter,
                                   const ebnn_kernels* kernels, ebnn_bconv_plan** out,
                                   size_t* shared_scratch, size_t* thread_scratch,
                                   size_t* packed_bytes) {
    *out = NULL;
    /* the tiling and the bit-output epilogue need NR to divide 64 (kernels.h) */
    if (kernels->bgemm_nr == 0 || kernels->bgemm_nr > 64 || 64 % kernels->bgemm_nr != 0 ||
        kernels->bgemm_mr == 0 || kernels->bgemm_mr > EBNN_MAX_MR ||
        (kernels->bgemm32 != NULL &&
         (kernels->bgemm32_nr == 0 || kernels->bgemm32_nr > 64 || 64 % kernels->bgemm32_nr != 0 ||
          kernels->bgemm32_mr == 0 || kernels->bgemm32_mr > EBNN_MAX_MR)) ||
        (kernels->bgemm16 != NULL &&
         (kernels->bgemm16_nr == 0 || kernels->bgemm16_nr > 64 || 64 % kernels->bgemm16_nr != 0 ||
          kernels->bgemm16_mr == 0 || kernels->bgemm16_mr > EBNN_MAX_MR))) {
        return EBNN_ERROR_UNSUPPORTED;
    }
    ebnn_bconv_plan* p = calloc(1, sizeof(*p));
    if (p == NULL) return EBNN_ERROR_MEMORY;
    p->g = *g;
    p->k = kernels;
    p->cg = g->in_c / g->groups;
    p->og = g->out_c / g->groups;
    p->cq = div_up(p->cg, 64);
    p->in_words = div_up(g->in_c, 64);
    p->taps = g->kernel_h * g->kernel_w;
    p->kbits = (int32_t)(p->taps * p->cg);
    /* a 64-bit word would be at most half (a quarter) full: the narrow kernels when the set has them */
    p->word_bits = 64;
    if (kernels->bgemm16 != NULL && p->cg % 64 != 0 && p->cg % 64 <= 16) {
        p->word_bits = 16;
    } else if (kernels->bgemm32 != NULL && p->cg % 64 != 0 && p->cg % 64 <= 32) {
        p->word_bits = 32;
    }
    p->half = p->word_bits < 64;
    p->kq = div_up(p->cg, p->word_bits);
    p->mr = p->word_bits == 16 ? kernels->bgemm16_mr : p->half ? kernels->bgemm32_mr : kernels->bgemm_mr;
    p->nr = p->word_bits == 16 ? kernels->bgemm16_nr : p->half ? kernels->bgemm32_nr : kernels->bgemm_nr;
    p->blocks = div_up(p->og, p->nr);
    p->block_words = p->taps * (p->half ? p->kq : p->cq) * p->nr; /* in words of the kernel */
    const size_t word_bytes = p->word_bits / 8;
    p->out_words = div_up(g->out_c, 64);
    const bool padded = g->pad_top || g->pad_bottom || g->pad_left || g->pad_right;
    p->staged = g->groups > 1 || padded;
    p->hp = g->in_h + g->pad_top + g->pad_bottom;
    p->wp = g->in_w + g->pad_left + g->pad_right;
    size_t staged_bytes = 0;
    if (!mul_size(p->hp, p->wp, &p->plane) || !mul_size(p->plane, p->cq, &p->plane) ||
        !mul_size(p->plane, g->groups * sizeof(uint64_t), &staged_bytes)) {
        free(p);
        return EBNN_ERROR_MEMORY;
    }
    p->tap_offset = calloc(p->taps, sizeof(size_t));
    size_t packed_count;
    bool ok = p->tap_offset != NULL &&
              mul_size(g->groups * p->blocks, p->block_words, &packed_count) &&
              mul_size(packed_count, word_bytes, packed_bytes);
    if (ok) p->packed = ebnn_aligned_alloc(*packed_bytes);
    if (!ok || p->packed == NULL) {
        ebnn_bconv_plan_free(p);
        return EBNN_ERROR_MEMORY;
    }
    for (size_t ky = 0; ky < g->kernel_h; ++ky) {
        for (size_t kx = 0; kx < g->kernel_w; ++kx) {
            /* in 64-bit words of the staged buffer (narrow words: 64 / word_bits times as many) */
            p->tap_offset[ky * g->kernel_w + kx] =
                (ky * g->dilation_h * p->wp + kx * g->dilation_w) * p->cq * (64 / p->word_bits);
        }
    }
    /* filter rows: [O][KH][KW] of cq words */
    for (size_t grp = 0; grp < g->groups; ++grp) {
        for (size_t b = 0; b < p->blocks; ++b) {
            for (size_t j = 0; j < p->nr; ++j) {
                const size_t o = b * p->nr + j;
                if (o >= p->og) continue;
                const uint64_t* w = filter + (grp * p->og + o) * p->taps * p->cq;
                if (p->word_bits == 32) {
                    uint32_t* block = (uint32_t*)p->packed + (grp * p->blocks + b) * p->block_words;
                    for (size_t t = 0; t < p->taps; ++t) {
                        for (size_t q = 0; q < p->kq; ++q) {
                            block[(t * p->kq + q) * p->nr + j] = (uint32_t)(w[t * p->cq + q / 2] >> (32 * (q % 2)));
                        }
                    }
                } else if (p->word_bits == 16) {
                    uint16_t* block = (uint16_t*)p->packed + (grp * p->blocks + b) * p->block_words;
                    for (size_t t = 0; t < p->taps; ++t) {
                        for (size_t q = 0; q < p->kq; ++q) {
                            block[(t * p->kq + q) * p->nr + j] = (uint16_t)(w[t * p->cq + q / 4] >> (16 * (q % 4)));
                        }
                    }
                } else {
                    uint64_t* block = (uint64_t*)p->packed + (grp * p->blocks + b) * p->block_words;
                    for (size_t t = 0; t < p->taps; ++t) {
                        for (size_t q = 0; q < p->cq; ++q) block[(t * p->cq + q) * p->nr + j] = w[t * p->cq + q];
                    }
                }
            }
        }
    }
    if (g->pad_value == 0 && padded) {
        p->wsum = calloc(g->out_c * p->taps, sizeof(int32_t));
        if (p->wsum == NULL) {
            ebnn_bconv_plan_free(p);
            return EBNN_ERROR_MEMORY;
        }
        for (size_t o = 0; o < g->out_c; ++o) {
            for (size_t t = 0; t < p->taps; ++t) {
                int32_t ones = 0;
                for (size_t q = 0; q < p->cq; ++q) ones += __builtin_popcountll(filter[(o * p->taps + t) * p->cq + q]);
                p->wsum[o * p->taps + t] = (int32_t)p->cg - 2 * ones;
            }
        }
    }
    /* tiles: pixels per task a multiple of MR, channels per task a multiple of 64 (bits output
       writes whole words) */
    p->mt = p->mr * max_size(1, 96 / p->mr);
    p->nb = 64;
    *shared_scratch = p->staged ? staged_bytes : 0;
    *thread_scratch = thread_scratch_bytes(p);
    *out = p;
    return EBNN_OK;
}

enum bconv_mode { MODE_DOTS, MODE_FLOAT, MODE_BITS };

typedef struct bconv_job {
    const ebnn_bconv_plan* p;
    const uint64_t* input; /* staged (or the input itself) */
    enum bconv_mode mode;
    void* out;
    const float *mult, *bias;
    const int32_t* threshold;
    int32_t dlo, dhi;
    float lo, hi;
    uint8_t* per_thread;
    size_t thread_stride;
    size_t mtiles, nchunks;
    bool groups_in_task; /* bits output whose groups share words: one task does all groups */
} bconv_job;

/* Zero-padding correction of pixel (oy, ox) for channels [c0, c0 + n); false for interior pixels. */
static bool border_correction(const ebnn_bconv_plan* p, size_t oy, size_t ox, size_t c0, size_t n,
                              int32_t* corr) {
    const ebnn_bconv_geometry* g = &p->g;
    const ptrdiff_t y0 = (ptrdiff_t)(oy * g->stride_h) - (ptrdiff_t)g->pad_top;
    const ptrdiff_t x0 = (ptrdiff_t)(ox * g->stride_w) - (ptrdiff_t)g->pad_left;
    const ptrdiff_t y1 = y0 + (ptrdiff_t)((g->kernel_h - 1) * g->dilation_h);
    const ptrdiff_t x1 = x0 + (ptrdiff_t)((g->kernel_w - 1) * g->dilation_w);
    if (y0 >= 0 && x0 >= 0 && y1 < (ptrdiff_t)g->in_h && x1 < (ptrdiff_t)g->in_w) return false;
    for (size_t ky = 0; ky < g->kernel_h; ++ky) {
        const ptrdiff_t iy = y0 + (ptrdiff_t)(ky * g->dilation_h);
        const bool row_out = iy < 0 || iy >= (ptrdiff_t)g->in_h;
        for (size_t kx = 0; kx < g->kernel_w; ++kx) {
            const ptrdiff_t ix = x0 + (ptrdiff_t)(kx * g->dilation_w);
            if (!row_out && ix >= 0 && ix < (ptrdiff_t)g->in_w) continue;
            const size_t t = ky * g->kernel_w + kx;
            for (size_t j = 0; j < n; ++j) corr[j] += p->wsum[(c0 + j) * p->taps + t];
        }
    }
    return true;
}

static void bconv_tile(const bconv_job* job, size_t grp, size_t m0, size_t mcount, size_t b0,
                       size_t b1, uint8_t* scratch, uint64_t* tile_bits) {
    const ebnn_bconv_plan* p = job->p;
    const ebnn_bconv_geometry* g = &p->g;
    const size_t n_rows = p->mt + p->mr;
    const uint64_t** rows = (const uint64_t**)(void*)scratch;
    /* the narrow kernels' row pointers share one array (its memory holds one type per plan) */
    const uint32_t** rows32 = (const uint32_t**)(void*)(scratch + n_rows * sizeof(void*));
    const uint16_t** rows16 = (const uint16_t**)(void*)(scratch + n_rows * sizeof(void*));
    int32_t* acc = (int32_t*)(void*)(scratch + 2 * n_rows * sizeof(void*));
    int32_t* corr = acc + p->mr * p->nr;
    uint64_t* words = (uint64_t*)(void*)(corr + p->mr * p->nr);
    const uint64_t* base = job->input + (p->staged ? grp * p->plane : grp * p->cq);
    const size_t pixel_words = p->staged ? p->cq : p->in_words;
    const size_t row_words = p->staged ? p->wp * p->cq : g->in_w * p->in_words;
    const size_t OW = g->out_w;
    /* the first tap of every pixel of the tile, once for all blocks (no division in the loop) */
    size_t oy = m0 / OW, ox = m0 % OW;
    for (size_t r = 0; r < n_rows; ++r) {
        if (r < mcount) {
            rows[r] = base + oy * g->stride_h * row_words + ox * g->stride_w * pixel_words;
            if (++ox == OW) ox = 0, ++oy;
        } else {
            rows[r] = rows[mcount - 1]; /* a last partial MR group repeats its last pixel */
        }
        /* the same rows as 32-bit (16-bit) words (little-endian: word 2q holds bits 64q..64q+31);
           the kernel reads them with may-alias loads */
        if (p->word_bits == 16) {
            rows16[r] = (const uint16_t*)(const void*)rows[r];
        } else {
            rows32[r] = (const uint32_t*)(const void*)rows[r];
        }
    }
    for (size_t b = b0; b < b1; ++b) {
        const size_t block = (grp * p->blocks + b) * p->block_words;
        const size_t c0 = grp * p->og + b * p->nr; /* first output channel of the block */
        const size_t nc = min_size(p->nr, p->og - b * p->nr);
        for (size_t i = 0; i < mcount; i += p->mr) {
            const size_t n = min_size(p->mr, mcount - i);
            if (p->word_bits == 16) {
                p->k->bgemm16(p->taps, p->kq, rows16 + i, p->tap_offset, (const uint16_t*)p->packed + block, acc);
            } else if (p->half) {
                p->k->bgemm32(p->taps, p->kq, rows32 + i, p->tap_offset, (const uint32_t*)p->packed + block, acc);
            } else {
                p->k->bgemm(p->taps, p->cq, rows + i, p->tap_offset, (const uint64_t*)p->packed + block, acc);
            }
            bool any_border = false;
            if (p->wsum != NULL) {
                memset(corr, 0, n * p->nr * sizeof(int32_t));
                for (size_t r = 0; r < n; ++r) {
                    const size_t m = m0 + i + r;
                    any_border |= border_correction(p, m / OW, m % OW, c0, nc, corr + r * p->nr);
                }
            }
            const int32_t* correction = any_border ? corr : NULL;
            if (job->mode == MODE_FLOAT) {
                float* out = (float*)job->out + (m0 + i) * g->out_c + c0;
                p->k->bconv_out(n, nc, p->nr, acc, p->kbits, correction, job->mult + c0, job->bias + c0,
                                job->dlo, job->dhi, job->lo, job->hi, out, g->out_c);
            } else if (job->mode == MODE_BITS) {
                /* nc <= NR <= 64 bits; with groups a block may straddle two words */
                p->k->bconv_bits(n, nc, p->nr, acc, p->kbits, correction, job->threshold + c0, words);
                const size_t shift = c0 % 64;
                for (size_t r = 0; r < n; ++r) {
                    uint64_t* row = tile_bits + (i + r) * p->out_words + c0 / 64;
                    row[0] |= words[r] << shift;
                    if (shift != 0 && shift + nc > 64) row[1] |= words[r] >> (64 - shift);
                }
            } else {
                for (size_t r = 0; r < n; ++r) {
                    int32_t* out = (int32_t*)job->out + (m0 + i + r) * g->out_c + c0;
                    for (size_t j = 0; j < nc; ++j) {
                        out[j] = p->kbits - 2 * acc[r * p->nr + j] - (correction ? correction[r * p->nr + j] : 0);
                    }
                }
            }
        }
    }
}

static void bconv_task(void* context, size_t task, size_t thread) {
    const bconv_job* job = context;
    const ebnn_bconv_plan* p = job->p;
    const ebnn_bconv_geometry* g = &p->g;
    uint8_t* scratch = job->per_thread + thread * job->thread_stride;
    uint64_t* tile_bits =
        (uint64_t*)(void*)(scratch + thread_scratch_bytes(p) - p->mt * p->out_words * sizeof(uint64_t));
    const size_t M = g->out_h * g->out_w;
    const size_t chunk = task % job->nchunks;
    const size_t mtile = (task / job->nchunks) % job->mtiles;
    const size_t m0 = mtile * p->mt, mcount = min_size(p->mt, M - m0);
    size_t g0 = task / (job->nchunks * job->mtiles), g1 = g0 + 1;
    if (job->groups_in_task) g0 = 0, g1 = g->groups;
    if (job->mode == MODE_BITS) memset(tile_bits, 0, mcount * p->out_words * sizeof(uint64_t));
    size_t c_first = SIZE_MAX, c_last = 0;
    for (size_t grp = g0; grp < g1; ++grp) {
        const size_t blocks_per_chunk = p->nb / p->nr;
        const size_t b0 = job->groups_in_task ? 0 : chunk * blocks_per_chunk;
        const size_t b1 = job->groups_in_task ? p->blocks : min_size(p->blocks, b0 + blocks_per_chunk);
        bconv_tile(job, grp, m0, mcount, b0, b1, scratch, tile_bits);
        c_first = min_size(c_first, grp * p->og + b0 * p->nr);
        c_last = max_size(c_last, grp * p->og + min_size(p->og, b1 * p->nr));
    }
    if (job->mode == MODE_BITS) {
        /* whole words [c_first / 64, ceil(c_last / 64)) belong to this task */
        const size_t w0 = c_first / 64, w1 = div_up(c_last, 64);
        uint64_t* out = job->out;
        for (size_t i = 0; i < mcount; ++i) {
            memcpy(out + (m0 + i) * p->out_words + w0, tile_bits + i * p->out_words + w0,
                   (w1 - w0) * sizeof(uint64_t));
        }
    }
}

typedef struct stage_job {
    const ebnn_bconv_plan* p;
    const uint64_t* input;
    uint64_t* staged;
} stage_job;

static void stage_row(void* context, size_t task, size_t thread) {
    (void)thread;
    const stage_job* s = context;
    const ebnn_bconv_plan* p = s->p;
    const ebnn_bconv_geometry* g = &p->g;
    const size_t grp = task / p->hp, yp = task % p->hp;
    uint64_t* dst = s->staged + grp * p->plane + yp * p->wp * p->cq;
    if (yp < g->pad_top || yp >= g->pad_top + g->in_h) {
        memset(dst, 0, p->wp * p->cq * sizeof(uint64_t));
        return;
    }
    /* only the left and right padding need zeros */
    memset(dst, 0, g->pad_left * p->cq * sizeof(uint64_t));
    memset(dst + (g->pad_left + g->in_w) * p->cq, 0, g->pad_right * p->cq * sizeof(uint64_t));
    const size_t y = yp - g->pad_top;
    if (g->groups == 1) { /* the row's pixels are contiguous in both layouts */
        memcpy(dst + g->pad_left * p->cq, s->input + y * g->in_w * p->in_words,
               g->in_w * p->in_words * sizeof(uint64_t));
        return;
    }
    for (size_t x = 0; x < g->in_w; ++x) {
        const uint64_t* src = s->input + (y * g->in_w + x) * p->in_words;
        uint64_t* d = dst + (x + g->pad_left) * p->cq;
        /* bits [grp * cg, (grp + 1) * cg) of the pixel, realigned to bit 0 */
        for (size_t q = 0; q < p->cq; ++q) {
            const size_t bit = grp * p->cg + q * 64, word = bit / 64, shift = bit % 64;
            uint64_t v = src[word] >> shift;
            if (shift != 0 && word + 1 < p->in_words) v |= src[word + 1] << (64 - shift);
            const size_t left = p->cg - q * 64;
            if (left < 64) v &= (1ull << left) - 1;
            d[q] = v;
        }
    }
}

static void bconv_execute(const ebnn_bconv_plan* p, const uint64_t* input, bconv_job* job,
                          ebnn_pool* pool, void* shared, void* per_thread, size_t thread_stride) {
    const ebnn_bconv_geometry* g = &p->g;
    if (p->staged) {
        stage_job s = {.p = p, .input = input, .staged = shared};
        const bool big = p->plane * g->groups >= (1u << 14);
        ebnn_pool_run(big ? pool : NULL, g->groups * p->hp, stage_row, &s);
        job->input = shared;
    } else {
        job->input = input;
    }
    job->p = p;
    job->per_thread = per_thread;
    job->thread_stride = thread_stride;
    const size_t M = g->out_h * g->out_w;
    job->mtiles = div_up(M, p->mt);
    job->groups_in_task = job->mode == MODE_BITS && g->groups > 1 && p->og % 64 != 0;
    job->nchunks = job->groups_in_task ? 1 : div_up(p->og, p->nb);
    const size_t tasks = job->mtiles * job->nchunks * (job->groups_in_task ? 1 : g->groups);
    ebnn_pool_run(pool, tasks, bconv_task, job);
}

void ebnn_bconv_run_dots(const ebnn_bconv_plan* plan, const uint64_t* input, int32_t* dots,
                         ebnn_pool* pool, void* shared, void* per_thread, size_t thread_stride) {
    bconv_job job;
    memset(&job, 0, sizeof(job));
    job.mode = MODE_DOTS;
    job.out = dots;
    bconv_execute(plan, input, &job, pool, shared, per_thread, thread_stride);
}

/* --- BCONV2D op ------------------------------------------------------------------------------ */

typedef struct bconv_state {
    ebnn_bconv_plan* plan;
    float *mult, *bias; /* float output: full vectors (defaults filled in) */
} bconv_state;

static void bconv_geometry_of(ebnn_model* model, const ebnn_op* op, ebnn_bconv_geometry* g) {
    const ebnn_tensor* x = op_in(model, op, 0);
    const ebnn_tensor* w = op_in(model, op, 1);
    const ebnn_tensor* o = op_out(model, op);
    g->in_h = x->dims[1], g->in_w = x->dims[2], g->in_c = x->dims[3];
    g->out_h = o->dims[1], g->out_w = o->dims[2], g->out_c = o->dims[3];
    g->groups = (size_t)op->ip[EBNN_P_GROUPS];
    g->kernel_h = w->dims[1], g->kernel_w = w->dims[2];
    g->stride_h = (size_t)op->ip[EBNN_P_STRIDE_H], g->stride_w = (size_t)op->ip[EBNN_P_STRIDE_W];
    g->dilation_h = (size_t)op->ip[EBNN_P_DILATION_H], g->dilation_w = (size_t)op->ip[EBNN_P_DILATION_W];
    g->pad_top = (size_t)op->ip[EBNN_P_PAD_TOP], g->pad_bottom = (size_t)op->ip[EBNN_P_PAD_BOTTOM];
    g->pad_left = (size_t)op->ip[EBNN_P_PAD_LEFT], g->pad_right = (size_t)op->ip[EBNN_P_PAD_RIGHT];
    g->pad_value = op->ip[EBNN_P_PAD_VALUE];
}

static ebnn_status bconv_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor *x, *w, *m, *b, *t;
    TRY(need_input(model, op, 0, EBNN_BITS, 4, 0, "x", &x));
    TRY(need_input(model, op, 1, EBNN_BITS, 4, 1, "filter", &w));
    const uint32_t groups = (uint32_t)op->ip[EBNN_P_GROUPS];
    CHECK(x->dims[3] % groups == 0 && w->dims[0] % groups == 0 && x->dims[3] / groups == w->dims[3],
          "filter [%u,%u,%u,%u] with groups=%u does not fit %u input channels", w->dims[0],
          w->dims[1], w->dims[2], w->dims[3], groups, x->dims[3]);
    const uint32_t O = w->dims[0];
    TRY(optional_vector(model, op, 2, EBNN_F32, O, "multiplier", &m));
    TRY(optional_vector(model, op, 3, EBNN_F32, O, "bias", &b));
    TRY(optional_vector(model, op, 4, EBNN_I32, O, "threshold", &t));
    CHECK(op->ip[EBNN_P_CLAMP_MIN] <= op->ip[EBNN_P_CLAMP_MAX], "clamp_min %d is larger than clamp_max %d",
          op->ip[EBNN_P_CLAMP_MIN], op->ip[EBNN_P_CLAMP_MAX]);
    if (t != NULL) {
        CHECK(m == NULL && b == NULL, "bit output (threshold) takes no multiplier or bias");
        CHECK(!op->given[EBNN_P_CLAMP_MIN] && !op->given[EBNN_P_CLAMP_MAX] &&
                  !op->given[EBNN_P_OUT_MIN] && !op->given[EBNN_P_OUT_MAX],
              "bit output (threshold) takes no clamp_min/clamp_max/out_min/out_max");
    }
    /* K = KH * KW * Cg must fit int32 with room for 2 * popcount */
    const uint64_t kbits = (uint64_t)w->dims[1] * w->dims[2] * w->dims[3];
    CHECK(kbits < (1u << 29), "the filter has %llu taps x channels, more than 2^29",
          (unsigned long long)kbits);
    const size_t oh = ebnn_out_size(x->dims[1], w->dims[1], (size_t)op->ip[EBNN_P_STRIDE_H],
                                    (size_t)op->ip[EBNN_P_DILATION_H], (size_t)op->ip[EBNN_P_PAD_TOP],
                                    (size_t)op->ip[EBNN_P_PAD_BOTTOM]);
    const size_t ow = ebnn_out_size(x->dims[2], w->dims[2], (size_t)op->ip[EBNN_P_STRIDE_W],
                                    (size_t)op->ip[EBNN_P_DILATION_W], (size_t)op->ip[EBNN_P_PAD_LEFT],
                                    (size_t)op->ip[EBNN_P_PAD_RIGHT]);
    CHECK(oh > 0 && ow > 0, "the kernel is larger than the padded input");
    const uint32_t dims[4] = {1, (uint32_t)oh, (uint32_t)ow, O};
    TRY(expect_output(model, op, t != NULL ? EBNN_BITS : EBNN_F32, 4, dims));
    op->binary_macs = (uint64_t)oh * ow * O * kbits;
    return EBNN_OK;
}

static void bconv_release(ebnn_op* op) {
    bconv_state* s = op->state;
    if (s != NULL) {
        ebnn_bconv_plan_free(s->plan);
        ebnn_aligned_free(s->mult);
        ebnn_aligned_free(s->bias);
    }
    free(s);
    op->state = NULL;
}

static ebnn_status bconv_prepare(ebnn_model* model, ebnn_op* op) {
    bconv_release(op);
    bconv_state* s = calloc(1, sizeof(*s));
    if (s == NULL) return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "out of memory");
    op->state = s;
    ebnn_bconv_geometry g;
    bconv_geometry_of(model, op, &g);
    size_t packed = 0;
    if (ebnn_bconv_plan_create(&g, op_in(model, op, 1)->bits64, model->kernels, &s->plan,
                               &op->scratch_shared, &op->scratch_per_thread, &packed) != EBNN_OK) {
        return ebnn_op_fail(model, op, "out of memory for the packed filter");
    }
    op->packed_bytes = packed;
    if (op_in(model, op, 4) == NULL) {
        const ebnn_tensor* m = op_in(model, op, 2);
        const ebnn_tensor* b = op_in(model, op, 3);
        s->mult = ebnn_aligned_alloc(g.out_c * sizeof(float));
        s->bias = ebnn_aligned_alloc(g.out_c * sizeof(float));
        if (s->mult == NULL || s->bias == NULL) return ebnn_op_fail(model, op, "out of memory");
        for (size_t c = 0; c < g.out_c; ++c) {
            s->mult[c] = m != NULL ? ((const float*)tensor_data(model, m))[c] : 1.0f;
            s->bias[c] = b != NULL ? ((const float*)tensor_data(model, b))[c] : 0.0f;
        }
        op->packed_bytes += 2 * g.out_c * sizeof(float);
    }
    return EBNN_OK;
}

static void bconv_run(ebnn_model* model, ebnn_op* op) {
    const bconv_state* s = op->state;
    bconv_job job;
    memset(&job, 0, sizeof(job));
    const ebnn_tensor* t = op_in(model, op, 4);
    job.out = tensor_data(model, op_out(model, op));
    if (t != NULL) {
        job.mode = MODE_BITS;
        job.threshold = tensor_data(model, t);
    } else {
        job.mode = MODE_FLOAT;
        job.mult = s->mult;
        job.bias = s->bias;
        job.dlo = op->ip[EBNN_P_CLAMP_MIN];
        job.dhi = op->ip[EBNN_P_CLAMP_MAX];
        job.lo = op->fp[EBNN_P_OUT_MIN];
        job.hi = op->fp[EBNN_P_OUT_MAX];
    }
    const bool parallel = op->binary_macs >= (1u << 20);
    bconv_execute(s->plan, tensor_data(model, op_in(model, op, 0)), &job, parallel ? model->pool : NULL,
                  shared_scratch(model), thread_scratch(model, 0), model->scratch_thread_max);
}

const ebnn_op_impl ebnn_impl_bconv2d = {"BCONV2D", bconv_check, bconv_prepare, bconv_run,
                                        bconv_release};
