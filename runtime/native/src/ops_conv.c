/* Float CONV2D (im2col tiles + the register-blocked GEMM micro-kernel, or the depthwise kernel)
   and DENSE. Weights are repacked at load time into the kernel set's panels (kernels.h). */
#include <stdlib.h>

#include "ops_common.h"

enum { IM2COL_TILE_BYTES = 64 * 1024, PARALLEL_MIN_MACS = 1 << 16 };

/* Pack B[k][n] (k < K, n < N; element (k, n) at b[n * b_n + k * b_k]) and bias[n] into panels. */
static float* pack_panels(size_t K, size_t N, size_t nr, const float* b, size_t b_n, size_t b_k,
                          const float* bias, size_t* bytes) {
    const size_t panels = div_up(N, nr);
    size_t count;
    if (!mul_size(panels, nr * (K + 1), &count) || !mul_size(count, sizeof(float), bytes)) return NULL;
    float* packed = ebnn_aligned_alloc(*bytes);
    if (packed == NULL) return NULL;
    for (size_t p = 0; p < panels; ++p) {
        float* panel = packed + p * nr * (K + 1);
        for (size_t j = 0; j < nr; ++j) {
            const size_t n = p * nr + j;
            if (n >= N) continue; /* zeros (ebnn_aligned_alloc clears) */
            panel[j] = bias != NULL ? bias[n] : 0.0f;
            for (size_t k = 0; k < K; ++k) panel[nr + k * nr + j] = b[n * b_n + k * b_k];
        }
    }
    return packed;
}

/* --- CONV2D --------------------------------------------------------------------------------- */

typedef struct conv_state {
    bool depthwise, direct; /* direct: 1x1, stride 1, no pads, one group: A is the input */
    size_t H, W, Cin, OH, OW, O, G, Cg, Og, KH, KW, K, sh, sw, dh, dw, pt, pl;
    size_t mr, nr, panels, mt;
    ebnn_fgemm_fn gemm;
    float* packed; /* GEMM: per group, `panels` panels; depthwise: [KH*KW][C] then bias[C] */
    float lo, hi;
} conv_state;

static ebnn_status conv_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor *x, *w, *bias;
    TRY(need_input(model, op, 0, EBNN_F32, 4, 0, "x", &x));
    TRY(need_input(model, op, 1, EBNN_F32, 4, 1, "filter", &w));
    const uint32_t groups = (uint32_t)op->ip[EBNN_P_GROUPS];
    CHECK(x->dims[3] % groups == 0 && w->dims[0] % groups == 0 && x->dims[3] / groups == w->dims[3],
          "filter [%u,%u,%u,%u] with groups=%u does not fit %u input channels", w->dims[0],
          w->dims[1], w->dims[2], w->dims[3], groups, x->dims[3]);
    TRY(optional_vector(model, op, 2, EBNN_F32, w->dims[0], "bias", &bias));
    const size_t oh = ebnn_out_size(x->dims[1], w->dims[1], (size_t)op->ip[EBNN_P_STRIDE_H],
                                    (size_t)op->ip[EBNN_P_DILATION_H], (size_t)op->ip[EBNN_P_PAD_TOP],
                                    (size_t)op->ip[EBNN_P_PAD_BOTTOM]);
    const size_t ow = ebnn_out_size(x->dims[2], w->dims[2], (size_t)op->ip[EBNN_P_STRIDE_W],
                                    (size_t)op->ip[EBNN_P_DILATION_W], (size_t)op->ip[EBNN_P_PAD_LEFT],
                                    (size_t)op->ip[EBNN_P_PAD_RIGHT]);
    CHECK(oh > 0 && ow > 0, "the kernel is larger than the padded input");
    const uint32_t dims[4] = {1, (uint32_t)oh, (uint32_t)ow, w->dims[0]};
    TRY(expect_output(model, op, EBNN_F32, 4, dims));
    op->flops = 2ull * oh * ow * w->dims[0] * w->dims[1] * w->dims[2] * w->dims[3];
    return EBNN_OK;
}

static void conv_release(ebnn_op* op) {
    conv_state* s = op->state;
    if (s != NULL) ebnn_aligned_free(s->packed);
    free(s);
    op->state = NULL;
}

static ebnn_status conv_prepare(ebnn_model* model, ebnn_op* op) {
    conv_release(op);
    const ebnn_tensor* x = op_in(model, op, 0);
    const ebnn_tensor* w = op_in(model, op, 1);
    const ebnn_tensor* bt = op_in(model, op, 2);
    const ebnn_tensor* o = op_out(model, op);
    conv_state* s = calloc(1, sizeof(*s));
    if (s == NULL) return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "out of memory");
    op->state = s;
    s->H = x->dims[1], s->W = x->dims[2], s->Cin = x->dims[3];
    s->OH = o->dims[1], s->OW = o->dims[2], s->O = o->dims[3];
    s->G = (size_t)op->ip[EBNN_P_GROUPS], s->Cg = s->Cin / s->G, s->Og = s->O / s->G;
    s->KH = w->dims[1], s->KW = w->dims[2], s->K = s->KH * s->KW * s->Cg;
    s->sh = (size_t)op->ip[EBNN_P_STRIDE_H], s->sw = (size_t)op->ip[EBNN_P_STRIDE_W];
    s->dh = (size_t)op->ip[EBNN_P_DILATION_H], s->dw = (size_t)op->ip[EBNN_P_DILATION_W];
    s->pt = (size_t)op->ip[EBNN_P_PAD_TOP], s->pl = (size_t)op->ip[EBNN_P_PAD_LEFT];
    s->lo = op->fp[EBNN_P_OUT_MIN], s->hi = op->fp[EBNN_P_OUT_MAX];
    const float* wd = tensor_data(model, w);
    const float* bias = bt != NULL ? tensor_data(model, bt) : NULL;
    s->depthwise = s->G == s->Cin && s->Cg == 1 && s->O == s->Cin && s->G > 1;
    if (s->depthwise) {
        const size_t taps = s->KH * s->KW, C = s->O;
        size_t bytes;
        if (!mul_size(taps + 1, C * sizeof(float), &bytes)) return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "too large");
        s->packed = ebnn_aligned_alloc(bytes);
        if (s->packed == NULL) return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "out of memory for weights");
        for (size_t c = 0; c < C; ++c) {
            for (size_t t = 0; t < taps; ++t) s->packed[t * C + c] = wd[c * taps + t];
            s->packed[taps * C + c] = bias != NULL ? bias[c] : 0.0f;
        }
        op->packed_bytes = bytes;
        return EBNN_OK;
    }
    const ebnn_kernels* k = model->kernels;
    const bool narrow = k->fgemm_narrow != NULL && s->Og <= k->fgemm_narrow_nr;
    s->mr = narrow ? k->fgemm_narrow_mr : k->fgemm_mr;
    s->nr = narrow ? k->fgemm_narrow_nr : k->fgemm_nr;
    s->gemm = narrow ? k->fgemm_narrow : k->fgemm;
    s->panels = div_up(s->Og, s->nr);
    s->direct = s->KH == 1 && s->KW == 1 && s->sh == 1 && s->sw == 1 && s->G == 1 &&
                op->ip[EBNN_P_PAD_TOP] == 0 && op->ip[EBNN_P_PAD_BOTTOM] == 0 && s->pl == 0 &&
                op->ip[EBNN_P_PAD_RIGHT] == 0;
    const size_t panel_floats = s->nr * (s->K + 1);
    size_t group_bytes = 0, total;
    if (!mul_size(s->G * s->panels, panel_floats * sizeof(float), &total)) {
        return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "conv weights too large");
    }
    s->packed = ebnn_aligned_alloc(total);
    if (s->packed == NULL) return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "out of memory for weights");
    for (size_t g = 0; g < s->G; ++g) {
        /* filter [O][KH][KW][Cg]: B[k][n] = filter[g*Og + n][k] with k = (ky*KW + kx)*Cg + c */
        float* panels = pack_panels(s->K, s->Og, s->nr, wd + g * s->Og * s->K, s->K, 1,
                                    bias != NULL ? bias + g * s->Og : NULL, &group_bytes);
        if (panels == NULL) return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "out of memory for weights");
        memcpy(s->packed + g * s->panels * panel_floats, panels, group_bytes);
        ebnn_aligned_free(panels);
    }
    op->packed_bytes = total;
    s->mt = s->mr;
    while (s->mt * 2 * s->K * sizeof(float) <= IM2COL_TILE_BYTES && s->mt < 256) s->mt *= 2;
    op->scratch_per_thread = s->direct ? 0 : s->mt * s->K * sizeof(float);
    return EBNN_OK;
}

typedef struct conv_job {
    const conv_state* s;
    const ebnn_kernels* k;
    const float* x;
    float* y;
    ebnn_model* model;
    size_t mtiles, nchunks, panels_per_chunk;
} conv_job;

static inline void copy_floats(float* restrict dst, const float* restrict src, size_t n) {
    if (n >= 16) {
        memcpy(dst, src, n * sizeof(float));
    } else {
        for (size_t i = 0; i < n; ++i) dst[i] = src[i]; /* the stems: 3 to 21 floats */
    }
}

static void im2col_tile(const conv_state* s, const float* x, size_t g, size_t m0, size_t rows, float* a) {
    const size_t span = s->KW * s->Cg; /* one kernel row of taps when it is contiguous */
    const bool rows_contiguous = s->dw == 1 && s->G == 1;
    for (size_t i = 0; i < rows; ++i) {
        const size_t m = m0 + i, oy = m / s->OW, ox = m % s->OW;
        float* row = a + i * s->K;
        const ptrdiff_t ix0 = (ptrdiff_t)(ox * s->sw) - (ptrdiff_t)s->pl;
        const bool cols_inside = ix0 >= 0 && ix0 + (ptrdiff_t)((s->KW - 1) * s->dw) < (ptrdiff_t)s->W;
        for (size_t ky = 0; ky < s->KH; ++ky) {
            const ptrdiff_t iy = (ptrdiff_t)(oy * s->sh + ky * s->dh) - (ptrdiff_t)s->pt;
            if (rows_contiguous && cols_inside && iy >= 0 && iy < (ptrdiff_t)s->H) {
                copy_floats(row + ky * span, x + ((size_t)iy * s->W + (size_t)ix0) * s->Cin, span);
                continue;
            }
            for (size_t kx = 0; kx < s->KW; ++kx) {
                const ptrdiff_t ix = (ptrdiff_t)(ox * s->sw + kx * s->dw) - (ptrdiff_t)s->pl;
                float* dst = row + (ky * s->KW + kx) * s->Cg;
                if (iy < 0 || iy >= (ptrdiff_t)s->H || ix < 0 || ix >= (ptrdiff_t)s->W) {
                    for (size_t c = 0; c < s->Cg; ++c) dst[c] = 0.0f;
                } else {
                    copy_floats(dst, x + ((size_t)iy * s->W + (size_t)ix) * s->Cin + g * s->Cg, s->Cg);
                }
            }
        }
    }
}

static void conv_gemm_task(void* context, size_t task, size_t thread) {
    const conv_job* j = context;
    const conv_state* s = j->s;
    const size_t chunk = task % j->nchunks;
    const size_t mtile = (task / j->nchunks) % j->mtiles;
    const size_t g = task / (j->nchunks * j->mtiles);
    const size_t M = s->OH * s->OW;
    const size_t m0 = mtile * s->mt, rows = min_size(s->mt, M - m0);
    const float* a;
    size_t a_stride;
    if (s->direct) {
        a = j->x + m0 * s->Cin;
        a_stride = s->Cin;
    } else {
        float* tile = thread_scratch(j->model, thread);
        im2col_tile(s, j->x, g, m0, rows, tile);
        a = tile;
        a_stride = s->K;
    }
    const size_t panel_floats = s->nr * (s->K + 1);
    const size_t p0 = chunk * j->panels_per_chunk, p1 = min_size(s->panels, p0 + j->panels_per_chunk);
    for (size_t p = p0; p < p1; ++p) {
        const float* panel = s->packed + (g * s->panels + p) * panel_floats;
        const size_t nc = min_size(s->nr, s->Og - p * s->nr);
        float* out = j->y + m0 * s->O + g * s->Og + p * s->nr;
        for (size_t i = 0; i < rows; i += s->mr) {
            s->gemm(min_size(s->mr, rows - i), nc, s->K, a + i * a_stride, a_stride, panel,
                    out + i * s->O, s->O, s->lo, s->hi);
        }
    }
}

typedef struct dw_job {
    const conv_state* s;
    const ebnn_kernels* k;
    ebnn_dw_params p;
    const float* x;
    float* y;
} dw_job;

static void dw_task(void* context, size_t oy, size_t thread) {
    (void)thread;
    const dw_job* j = context;
    const size_t taps = j->s->KH * j->s->KW;
    j->k->dwconv_row(&j->p, j->x, j->s->packed, j->s->packed + taps * j->s->O,
                     j->y + oy * j->s->OW * j->s->O, oy);
}

static void conv_run(ebnn_model* model, ebnn_op* op) {
    const conv_state* s = op->state;
    const float* x = tensor_data(model, op_in(model, op, 0));
    float* y = tensor_data(model, op_out(model, op));
    const size_t threads = ebnn_pool_threads(model->pool);
    const bool parallel = op->flops / 2 >= PARALLEL_MIN_MACS;
    if (s->depthwise) {
        dw_job j = {.s = s, .k = model->kernels, .x = x, .y = y};
        j.p = (ebnn_dw_params){.in_h = s->H, .in_w = s->W, .channels = s->O, .out_w = s->OW,
                               .kernel_h = s->KH, .kernel_w = s->KW, .stride_h = s->sh,
                               .stride_w = s->sw, .dilation_h = s->dh, .dilation_w = s->dw,
                               .pad_top = s->pt, .pad_left = s->pl, .lo = s->lo, .hi = s->hi};
        ebnn_pool_run(parallel ? model->pool : NULL, s->OH, dw_task, &j);
        return;
    }
    conv_job j = {.s = s, .k = model->kernels, .x = x, .y = y, .model = model};
    j.mtiles = div_up(s->OH * s->OW, s->mt);
    j.nchunks = 1;
    if (parallel && threads > 1 && j.mtiles * s->G < 2 * threads) {
        j.nchunks = min_size(s->panels, div_up(2 * threads, j.mtiles * s->G));
    }
    j.panels_per_chunk = div_up(s->panels, j.nchunks);
    j.nchunks = div_up(s->panels, j.panels_per_chunk);
    ebnn_pool_run(parallel ? model->pool : NULL, s->G * j.mtiles * j.nchunks, conv_gemm_task, &j);
}

const ebnn_op_impl ebnn_impl_conv2d = {"CONV2D", conv_check, conv_prepare, conv_run, conv_release};

/* --- DENSE ---------------------------------------------------------------------------------- */

typedef struct dense_state {
    size_t K, N, nr, panels;
    ebnn_fgemm_fn gemm;
    float* packed;
    float lo, hi;
} dense_state;

static ebnn_status dense_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor *x, *w, *bias;
    TRY(need_input(model, op, 0, EBNN_F32, -1, -1, "x", &x));
    TRY(need_input(model, op, 1, EBNN_F32, 2, 1, "weights", &w));
    CHECK(x->elems == w->dims[1], "x has %zu elements per sample, weights [%u,%u] need %u", x->elems,
          w->dims[0], w->dims[1], w->dims[1]);
    TRY(optional_vector(model, op, 2, EBNN_F32, w->dims[0], "bias", &bias));
    const uint32_t dims[2] = {1, w->dims[0]};
    TRY(expect_output(model, op, EBNN_F32, 2, dims));
    op->flops = 2ull * w->dims[0] * w->dims[1];
    return EBNN_OK;
}

static void dense_release(ebnn_op* op) {
    dense_state* s = op->state;
    if (s != NULL) ebnn_aligned_free(s->packed);
    free(s);
    op->state = NULL;
}

static ebnn_status dense_prepare(ebnn_model* model, ebnn_op* op) {
    dense_release(op);
    const ebnn_tensor* w = op_in(model, op, 1);
    const ebnn_tensor* bt = op_in(model, op, 2);
    dense_state* s = calloc(1, sizeof(*s));
    if (s == NULL) return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "out of memory");
    op->state = s;
    s->N = w->dims[0];
    s->K = w->dims[1];
    const ebnn_kernels* k = model->kernels;
    const bool narrow = k->fgemm_narrow != NULL && s->N <= k->fgemm_narrow_nr;
    s->nr = narrow ? k->fgemm_narrow_nr : k->fgemm_nr;
    s->gemm = narrow ? k->fgemm_narrow : k->fgemm;
    s->panels = div_up(s->N, s->nr);
    s->lo = op->fp[EBNN_P_OUT_MIN];
    s->hi = op->fp[EBNN_P_OUT_MAX];
    size_t bytes;
    s->packed = pack_panels(s->K, s->N, s->nr, tensor_data(model, w), s->K, 1,
                            bt != NULL ? tensor_data(model, bt) : NULL, &bytes);
    if (s->packed == NULL) return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "out of memory for weights");
    op->packed_bytes = bytes;
    return EBNN_OK;
}

typedef struct dense_job {
    const dense_state* s;
    const ebnn_kernels* k;
    const float* x;
    float* y;
} dense_job;

static void dense_task(void* context, size_t p, size_t thread) {
    (void)thread;
    const dense_job* j = context;
    const dense_state* s = j->s;
    s->gemm(1, min_size(s->nr, s->N - p * s->nr), s->K, j->x, s->K,
                s->packed + p * s->nr * (s->K + 1), j->y + p * s->nr, s->N, s->lo, s->hi);
}

static void dense_run(ebnn_model* model, ebnn_op* op) {
    const dense_state* s = op->state;
    dense_job j = {.s = s, .k = model->kernels, .x = tensor_data(model, op_in(model, op, 0)),
                   .y = tensor_data(model, op_out(model, op))};
    const bool parallel = s->N * s->K >= PARALLEL_MIN_MACS;
    ebnn_pool_run(parallel ? model->pool : NULL, s->panels, dense_task, &j);
}

const ebnn_op_impl ebnn_impl_dense = {"DENSE", dense_check, dense_prepare, dense_run, dense_release};
