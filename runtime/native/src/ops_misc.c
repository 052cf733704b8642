/* Float ops that are not convolutions: elementwise with broadcasting, CONCAT, pools, reductions,
   PAD, CLIP, PRELU, RESHAPE, TRANSPOSE, SOFTMAX, SIGN. Plain C (the loops vectorise with the
   baseline flags); they are a small part of a BNN's time. */
#include <float.h>
#include <stdlib.h>

#include "ops_common.h"

/* Large elementwise jobs are split in row chunks over the pool. */
enum { PARALLEL_MIN_ELEMENTS = 1 << 16 };

/* --- broadcasting -------------------------------------------------------------------------- */

typedef struct broadcast {
    size_t out[4];
    size_t sa[4], sb[4]; /* element strides of a and b in the output's index space (0: broadcast) */
    int kind;            /* 0 general, 1 same shape, 2 b scalar, 3 a scalar, 4 b per last axis */
} broadcast;

static bool make_broadcast(const ebnn_tensor* a, const ebnn_tensor* b, broadcast* bc) {
    size_t da[4], db[4];
    dims4(a, da);
    dims4(b, db);
    for (int d = 0; d < 4; ++d) {
        if (da[d] != db[d] && da[d] != 1 && db[d] != 1) return false;
        bc->out[d] = da[d] > db[d] ? da[d] : db[d];
    }
    size_t ea = 1, eb = 1;
    for (int d = 3; d >= 0; --d) {
        bc->sa[d] = da[d] == 1 ? 0 : ea;
        bc->sb[d] = db[d] == 1 ? 0 : eb;
        ea *= da[d];
        eb *= db[d];
    }
    const size_t total = bc->out[0] * bc->out[1] * bc->out[2] * bc->out[3];
    if (ea == total && eb == total) {
        bc->kind = 1;
    } else if (eb == 1 && ea == total) {
        bc->kind = 2;
    } else if (ea == 1 && eb == total) {
        bc->kind = 3;
    } else if (ea == total && db[0] == 1 && db[1] == 1 && db[2] == 1 && db[3] == bc->out[3]) {
        bc->kind = 4;
    } else {
        bc->kind = 0;
    }
    return true;
}

/* --- elementwise ADD SUB MUL DIV MAXIMUM MINIMUM -------------------------------------------- */

static ebnn_status elementwise_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor *a, *b;
    TRY(need_input(model, op, 0, EBNN_F32, -1, -1, "a", &a));
    TRY(need_input(model, op, 1, EBNN_F32, -1, -1, "b", &b));
    broadcast bc;
    char sa[64], sb[64];
    shape_text(a->rank, a->dims, sa, sizeof(sa));
    shape_text(b->rank, b->dims, sb, sizeof(sb));
    CHECK(make_broadcast(a, b, &bc), "shapes %s and %s do not broadcast", sa, sb);
    const size_t rank = a->rank > b->rank ? a->rank : b->rank;
    uint32_t dims[4];
    for (size_t d = 0; d < rank; ++d) dims[d] = (uint32_t)bc.out[4 - rank + d];
    return expect_output(model, op, EBNN_F32, rank, dims);
}

typedef struct elementwise_job {
    uint16_t code;
    const float *a, *b;
    float* y;
    broadcast bc;
    float lo, hi;
    size_t chunk; /* elements per task (kinds 1-3) or rows (kind 4) */
} elementwise_job;

#define APPLY(CODE, X, Y)                                                     \
    ((CODE) == EBNN_OP_ADD ? (X) + (Y)                                        \
     : (CODE) == EBNN_OP_SUB ? (X) - (Y)                                      \
     : (CODE) == EBNN_OP_MUL ? (X) * (Y)                                      \
     : (CODE) == EBNN_OP_DIV ? (X) / (Y)                                      \
     : (CODE) == EBNN_OP_MAXIMUM ? ((X) > (Y) ? (X) : (Y))                    \
                                : ((X) < (Y) ? (X) : (Y)))

#define ELEMENTWISE_LOOPS(CODE)                                                                   \
    do {                                                                                          \
        switch (job->bc.kind) {                                                                   \
            case 1: /* the clamp is the identity without bounds: a loop without it (residual ADDs) */ \
                if (unbounded) {                                                                  \
                    for (size_t i = begin; i < end; ++i) y[i] = APPLY(CODE, a[i], b[i]);          \
                } else {                                                                          \
                    for (size_t i = begin; i < end; ++i) y[i] = clampf(APPLY(CODE, a[i], b[i]), lo, hi); \
                }                                                                                 \
                break;                                                                            \
            case 2: {                                                                             \
                const float s = b[0];                                                             \
                for (size_t i = begin; i < end; ++i) y[i] = clampf(APPLY(CODE, a[i], s), lo, hi); \
                break;                                                                            \
            }                                                                                     \
            case 3: {                                                                             \
                const float s = a[0];                                                             \
                for (size_t i = begin; i < end; ++i) y[i] = clampf(APPLY(CODE, s, b[i]), lo, hi); \
                break;                                                                            \
            }                                                                                     \
            case 4: {                                                                             \
                const size_t C = job->bc.out[3];                                                  \
                for (size_t r = begin; r < end; ++r) {                                            \
                    const float* ar = a + r * C;                                                  \
                    float* yr = y + r * C;                                                        \
                    for (size_t c = 0; c < C; ++c) yr[c] = clampf(APPLY(CODE, ar[c], b[c]), lo, hi); \
                }                                                                                 \
                break;                                                                            \
            }                                                                                     \
            default: {                                                                            \
                const size_t* o = job->bc.out;                                                    \
                const size_t *sa = job->bc.sa, *sb = job->bc.sb;                                  \
                size_t i = 0;                                                                     \
                for (size_t d0 = 0; d0 < o[0]; ++d0)                                              \
                    for (size_t d1 = 0; d1 < o[1]; ++d1)                                          \
                        for (size_t d2 = 0; d2 < o[2]; ++d2)                                      \
                            for (size_t d3 = 0; d3 < o[3]; ++d3, ++i) {                           \
                                const float x = a[d0 * sa[0] + d1 * sa[1] + d2 * sa[2] + d3 * sa[3]]; \
                                const float z = b[d0 * sb[0] + d1 * sb[1] + d2 * sb[2] + d3 * sb[3]]; \
                                y[i] = clampf(APPLY(CODE, x, z), lo, hi);                         \
                            }                                                                     \
            }                                                                                     \
        }                                                                                         \
    } while (0)

static void elementwise_task(void* context, size_t task, size_t thread) {
    (void)thread;
    const elementwise_job* job = context;
    const float *a = job->a, *b = job->b;
    float* y = job->y;
    const float lo = job->lo, hi = job->hi;
    const bool unbounded = lo == -INFINITY && hi == INFINITY;
    size_t total = job->bc.out[0] * job->bc.out[1] * job->bc.out[2] * job->bc.out[3];
    if (job->bc.kind == 4) total /= job->bc.out[3];
    const size_t begin = task * job->chunk;
    const size_t end = job->bc.kind == 0 ? total : min_size(total, begin + job->chunk);
    switch (job->code) {
        case EBNN_OP_ADD: ELEMENTWISE_LOOPS(EBNN_OP_ADD); break;
        case EBNN_OP_SUB: ELEMENTWISE_LOOPS(EBNN_OP_SUB); break;
        case EBNN_OP_MUL: ELEMENTWISE_LOOPS(EBNN_OP_MUL); break;
        case EBNN_OP_DIV: ELEMENTWISE_LOOPS(EBNN_OP_DIV); break;
        case EBNN_OP_MAXIMUM: ELEMENTWISE_LOOPS(EBNN_OP_MAXIMUM); break;
        default: ELEMENTWISE_LOOPS(EBNN_OP_MINIMUM); break;
    }
}

static void elementwise_run(ebnn_model* model, ebnn_op* op) {
    elementwise_job job;
    job.code = op->code;
    job.a = tensor_data(model, op_in(model, op, 0));
    job.b = tensor_data(model, op_in(model, op, 1));
    job.y = tensor_data(model, op_out(model, op));
    make_broadcast(op_in(model, op, 0), op_in(model, op, 1), &job.bc);
    job.lo = op->fp[EBNN_P_OUT_MIN];
    job.hi = op->fp[EBNN_P_OUT_MAX];
    const size_t total = op_out(model, op)->elems;
    const size_t threads = ebnn_pool_threads(model->pool);
    size_t tasks = 1;
    if (job.bc.kind != 0 && total >= PARALLEL_MIN_ELEMENTS && threads > 1) tasks = threads * 4;
    size_t units = job.bc.kind == 4 ? total / job.bc.out[3] : total;
    job.chunk = job.bc.kind == 0 ? total : div_up(units, tasks);
    if (job.bc.kind != 0) tasks = div_up(units, job.chunk);
    ebnn_pool_run(tasks > 1 ? model->pool : NULL, tasks, elementwise_task, &job);
}

const ebnn_op_impl ebnn_impl_elementwise = {"elementwise", elementwise_check, no_prepare,
                                            elementwise_run, no_release};

/* --- PRELU ---------------------------------------------------------------------------------- */

static ebnn_status prelu_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor *x, *s;
    TRY(need_input(model, op, 0, EBNN_F32, -1, -1, "x", &x));
    TRY(need_input(model, op, 1, EBNN_F32, -1, -1, "slope", &s));
    broadcast bc;
    CHECK(s->rank <= x->rank && make_broadcast(x, s, &bc), "slope does not broadcast to x");
    size_t dx[4];
    dims4(x, dx);
    for (int d = 0; d < 4; ++d) CHECK(bc.out[d] == dx[d], "slope does not broadcast to x");
    return expect_output(model, op, EBNN_F32, x->rank, x->dims);
}

static void prelu_run(ebnn_model* model, ebnn_op* op) {
    const ebnn_tensor* xt = op_in(model, op, 0);
    const float* x = tensor_data(model, xt);
    const float* s = tensor_data(model, op_in(model, op, 1));
    float* y = tensor_data(model, op_out(model, op));
    broadcast bc;
    make_broadcast(xt, op_in(model, op, 1), &bc);
    if (bc.kind == 1) {
        for (size_t i = 0; i < xt->elems; ++i) y[i] = x[i] >= 0.0f ? x[i] : s[i] * x[i];
    } else if (bc.kind == 2) {
        const float k = s[0];
        for (size_t i = 0; i < xt->elems; ++i) y[i] = x[i] >= 0.0f ? x[i] : k * x[i];
    } else if (bc.kind == 4) {
        const size_t C = bc.out[3];
        for (size_t r = 0; r < xt->elems / C; ++r) {
            const float* xr = x + r * C;
            float* yr = y + r * C;
            for (size_t c = 0; c < C; ++c) yr[c] = xr[c] >= 0.0f ? xr[c] : s[c] * xr[c];
        }
    } else {
        size_t i = 0;
        for (size_t d0 = 0; d0 < bc.out[0]; ++d0)
            for (size_t d1 = 0; d1 < bc.out[1]; ++d1)
                for (size_t d2 = 0; d2 < bc.out[2]; ++d2)
                    for (size_t d3 = 0; d3 < bc.out[3]; ++d3, ++i) {
                        const float k = s[d0 * bc.sb[0] + d1 * bc.sb[1] + d2 * bc.sb[2] + d3 * bc.sb[3]];
                        y[i] = x[i] >= 0.0f ? x[i] : k * x[i];
                    }
    }
}

const ebnn_op_impl ebnn_impl_prelu = {"PRELU", prelu_check, no_prepare, prelu_run, no_release};

/* --- CLIP, SIGN, RESHAPE -------------------------------------------------------------------- */

static ebnn_status same_shape_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor* x;
    TRY(need_input(model, op, 0, EBNN_F32, -1, -1, "x", &x));
    CHECK(op->code != EBNN_OP_SIGN || x->rank >= 1, "x needs at least one axis");
    return expect_output(model, op, EBNN_F32, x->rank, x->dims);
}

static void clip_run(ebnn_model* model, ebnn_op* op) {
    const ebnn_tensor* xt = op_in(model, op, 0);
    const float* x = tensor_data(model, xt);
    float* y = tensor_data(model, op_out(model, op));
    const float lo = op->fp[EBNN_P_OUT_MIN], hi = op->fp[EBNN_P_OUT_MAX];
    for (size_t i = 0; i < xt->elems; ++i) y[i] = clampf(x[i], lo, hi);
}

static void sign_run(ebnn_model* model, ebnn_op* op) {
    const ebnn_tensor* xt = op_in(model, op, 0);
    const float* x = tensor_data(model, xt);
    float* y = tensor_data(model, op_out(model, op));
    for (size_t i = 0; i < xt->elems; ++i) y[i] = (float)((x[i] > 0.0f) - (x[i] < 0.0f));
}

const ebnn_op_impl ebnn_impl_clip = {"CLIP", same_shape_check, no_prepare, clip_run, no_release};
const ebnn_op_impl ebnn_impl_sign = {"SIGN", same_shape_check, no_prepare, sign_run, no_release};

static ebnn_status reshape_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor* x;
    TRY(need_input(model, op, 0, EBNN_F32, -1, -1, "x", &x));
    ebnn_tensor* o = op_out(model, op);
    CHECK(o->dtype == EBNN_F32, "the output must be f32");
    CHECK(o->elems == x->elems, "the output shape must hold the %zu elements of the input",
          x->elems);
    return EBNN_OK;
}

static void reshape_run(ebnn_model* model, ebnn_op* op) {
    const ebnn_tensor* xt = op_in(model, op, 0);
    memcpy(tensor_data(model, op_out(model, op)), tensor_data(model, xt), 4 * xt->elems);
}

const ebnn_op_impl ebnn_impl_reshape = {"RESHAPE", reshape_check, no_prepare, reshape_run,
                                        no_release};

/* --- CONCAT --------------------------------------------------------------------------------- */

static ebnn_status concat_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor* first;
    TRY(need_input(model, op, 0, EBNN_F32, -1, -1, "x0", &first));
    const int axis = op->ip[EBNN_P_AXIS];
    CHECK(axis < first->rank, "axis %d is out of range for rank %u", axis, first->rank);
    uint32_t dims[4];
    memcpy(dims, first->dims, sizeof(dims));
    uint64_t total = 0;
    for (size_t i = 0; i < op->n_inputs; ++i) {
        ebnn_tensor* x;
        TRY(need_input(model, op, i, EBNN_F32, first->rank, -1, "x", &x));
        for (int d = 0; d < first->rank; ++d) {
            CHECK(d == axis || x->dims[d] == first->dims[d],
                  "input %zu does not concatenate with input 0 on axis %d", i, axis);
        }
        total += x->dims[axis];
    }
    CHECK(total <= UINT32_MAX, "the concatenated axis is too long");
    dims[axis] = (uint32_t)total;
    return expect_output(model, op, EBNN_F32, first->rank, dims);
}

static void concat_run(ebnn_model* model, ebnn_op* op) {
    const ebnn_tensor* o = op_out(model, op);
    const int axis = op->ip[EBNN_P_AXIS];
    size_t outer = 1;
    for (int d = 0; d < axis; ++d) outer *= o->dims[d];
    const size_t out_inner = o->elems / outer;
    float* y = tensor_data(model, o);
    size_t offset = 0;
    for (size_t i = 0; i < op->n_inputs; ++i) {
        const ebnn_tensor* xt = op_in(model, op, i);
        const float* x = tensor_data(model, xt);
        const size_t inner = xt->elems / outer;
        for (size_t r = 0; r < outer; ++r) memcpy(y + r * out_inner + offset, x + r * inner, 4 * inner);
        offset += inner;
    }
}

const ebnn_op_impl ebnn_impl_concat = {"CONCAT", concat_check, no_prepare, concat_run, no_release};

/* --- MAXPOOL2D, AVGPOOL2D ------------------------------------------------------------------- */

/* Shared with BMAXPOOL2D (ops_binary.c): output shape + the window rule. */
ebnn_status ebnn_pool_geometry_check(ebnn_model* model, ebnn_op* op, const ebnn_tensor* x,
                                     uint32_t dims[4]) {
    const size_t kh = (size_t)op->ip[EBNN_P_KERNEL_H], kw = (size_t)op->ip[EBNN_P_KERNEL_W];
    const size_t sh = (size_t)op->ip[EBNN_P_STRIDE_H], sw = (size_t)op->ip[EBNN_P_STRIDE_W];
    const size_t pt = (size_t)op->ip[EBNN_P_PAD_TOP], pl = (size_t)op->ip[EBNN_P_PAD_LEFT];
    const size_t oh = ebnn_out_size(x->dims[1], kh, sh, 1, pt, (size_t)op->ip[EBNN_P_PAD_BOTTOM]);
    const size_t ow = ebnn_out_size(x->dims[2], kw, sw, 1, pl, (size_t)op->ip[EBNN_P_PAD_RIGHT]);
    CHECK(oh > 0 && ow > 0, "the kernel %zux%zu is larger than the padded input", kh, kw);
    CHECK(kh > pt && kw > pl && (oh - 1) * sh < x->dims[1] + pt && (ow - 1) * sw < x->dims[2] + pl,
          "a pooling window lies entirely in the padding");
    dims[0] = 1;
    dims[1] = (uint32_t)oh;
    dims[2] = (uint32_t)ow;
    dims[3] = x->dims[3];
    return EBNN_OK;
}

static ebnn_status pool_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor* x;
    TRY(need_input(model, op, 0, EBNN_F32, 4, 0, "x", &x));
    uint32_t dims[4];
    TRY(ebnn_pool_geometry_check(model, op, x, dims));
    return expect_output(model, op, EBNN_F32, 4, dims);
}

typedef struct pool_job {
    const float* x;
    float* y;
    size_t H, W, C, OH, OW, kh, kw, sh, sw, pt, pl;
    bool avg, include_pad;
} pool_job;

static void pool_row(void* context, size_t oy, size_t thread) {
    (void)thread;
    const pool_job* j = context;
    const ptrdiff_t y0 = (ptrdiff_t)(oy * j->sh) - (ptrdiff_t)j->pt;
    const size_t ky0 = y0 < 0 ? (size_t)(-y0) : 0;
    const size_t ky1 = min_size(j->kh, (size_t)((ptrdiff_t)j->H - y0));
    for (size_t ox = 0; ox < j->OW; ++ox) {
        const ptrdiff_t x0 = (ptrdiff_t)(ox * j->sw) - (ptrdiff_t)j->pl;
        const size_t kx0 = x0 < 0 ? (size_t)(-x0) : 0;
        const size_t kx1 = min_size(j->kw, (size_t)((ptrdiff_t)j->W - x0));
        float* out = j->y + (oy * j->OW + ox) * j->C;
        for (size_t c = 0; c < j->C; ++c) out[c] = j->avg ? 0.0f : -INFINITY;
        for (size_t ky = ky0; ky < ky1; ++ky) {
            for (size_t kx = kx0; kx < kx1; ++kx) {
                const float* in = j->x + ((size_t)(y0 + (ptrdiff_t)ky) * j->W + (size_t)(x0 + (ptrdiff_t)kx)) * j->C;
                if (j->avg) {
                    for (size_t c = 0; c < j->C; ++c) out[c] += in[c];
                } else {
                    for (size_t c = 0; c < j->C; ++c) out[c] = in[c] > out[c] ? in[c] : out[c];
                }
            }
        }
        if (j->avg) {
            const float count = j->include_pad ? (float)(j->kh * j->kw) : (float)((ky1 - ky0) * (kx1 - kx0));
            const float scale = 1.0f / count;
            for (size_t c = 0; c < j->C; ++c) out[c] *= scale;
        }
    }
}

static void pool_run(ebnn_model* model, ebnn_op* op) {
    const ebnn_tensor* x = op_in(model, op, 0);
    const ebnn_tensor* o = op_out(model, op);
    pool_job j = {
        .x = tensor_data(model, x), .y = tensor_data(model, o),
        .H = x->dims[1], .W = x->dims[2], .C = x->dims[3], .OH = o->dims[1], .OW = o->dims[2],
        .kh = (size_t)op->ip[EBNN_P_KERNEL_H], .kw = (size_t)op->ip[EBNN_P_KERNEL_W],
        .sh = (size_t)op->ip[EBNN_P_STRIDE_H], .sw = (size_t)op->ip[EBNN_P_STRIDE_W],
        .pt = (size_t)op->ip[EBNN_P_PAD_TOP], .pl = (size_t)op->ip[EBNN_P_PAD_LEFT],
        .avg = op->code == EBNN_OP_AVGPOOL2D, .include_pad = op->ip[EBNN_P_COUNT_INCLUDE_PAD] != 0,
    };
    const bool parallel = o->elems * j.kh * j.kw >= PARALLEL_MIN_ELEMENTS;
    ebnn_pool_run(parallel ? model->pool : NULL, j.OH, pool_row, &j);
}

const ebnn_op_impl ebnn_impl_maxpool2d = {"MAXPOOL2D", pool_check, no_prepare, pool_run, no_release};
const ebnn_op_impl ebnn_impl_avgpool2d = {"AVGPOOL2D", pool_check, no_prepare, pool_run, no_release};

/* --- MEAN, REDUCE_MAX, REDUCE_SUM ----------------------------------------------------------- */

static ebnn_status reduce_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor* x;
    TRY(need_input(model, op, 0, EBNN_F32, -1, -1, "x", &x));
    const int axes = op->ip[EBNN_P_AXES];
    CHECK((axes & 1) == 0, "axes mask %d reduces axis 0 (the batch axis)", axes);
    CHECK((axes >> x->rank) == 0, "axes mask %d names an axis beyond rank %u", axes, x->rank);
    const ebnn_tensor* o = op_out(model, op);
    uint32_t kept[4], removed[4];
    size_t n_removed = 0;
    for (int d = 0; d < x->rank; ++d) {
        kept[d] = (axes >> d) & 1 ? 1 : x->dims[d];
        if (!((axes >> d) & 1)) removed[n_removed++] = x->dims[d];
    }
    bool ok_kept = o->rank == x->rank, ok_removed = o->rank == n_removed;
    for (int d = 0; ok_kept && d < x->rank; ++d) ok_kept = o->dims[d] == kept[d];
    for (size_t d = 0; ok_removed && d < n_removed; ++d) ok_removed = o->dims[d] == removed[d];
    CHECK(o->dtype == EBNN_F32 && (ok_kept || ok_removed),
          "the output must be the input's shape with the reduced axes set to 1 or removed");
    return EBNN_OK;
}

static void reduce_run(ebnn_model* model, ebnn_op* op) {
    const ebnn_tensor* xt = op_in(model, op, 0);
    const float* x = tensor_data(model, xt);
    float* y = tensor_data(model, op_out(model, op));
    const int shift = 4 - xt->rank;
    const int axes = op->ip[EBNN_P_AXES] << shift;
    size_t d[4];
    dims4(xt, d);
    size_t so[4], e = 1; /* output strides (0 on reduced axes) */
    for (int k = 3; k >= 0; --k) {
        so[k] = (axes >> k) & 1 ? 0 : e;
        e *= (axes >> k) & 1 ? 1 : d[k];
    }
    const size_t out_elems = e;
    const bool is_max = op->code == EBNN_OP_REDUCE_MAX;
    for (size_t i = 0; i < out_elems; ++i) y[i] = is_max ? -INFINITY : 0.0f;
    if (axes == 0x6 && shift == 0) { /* NHWC global pooling: rows of C */
        const size_t pixels = d[1] * d[2], C = d[3];
        for (size_t n = 0; n < d[0]; ++n) {
            float* out = y + n * C;
            for (size_t p = 0; p < pixels; ++p) {
                const float* in = x + (n * pixels + p) * C;
                if (is_max) {
                    for (size_t c = 0; c < C; ++c) out[c] = in[c] > out[c] ? in[c] : out[c];
                } else {
                    for (size_t c = 0; c < C; ++c) out[c] += in[c];
                }
            }
        }
    } else {
        size_t i = 0;
        for (size_t a = 0; a < d[0]; ++a)
            for (size_t b = 0; b < d[1]; ++b)
                for (size_t c = 0; c < d[2]; ++c)
                    for (size_t k = 0; k < d[3]; ++k, ++i) {
                        float* out = y + a * so[0] + b * so[1] + c * so[2] + k * so[3];
                        *out = is_max ? (x[i] > *out ? x[i] : *out) : *out + x[i];
                    }
    }
    if (op->code == EBNN_OP_MEAN) {
        const float scale = 1.0f / (float)(xt->elems / out_elems);
        for (size_t i = 0; i < out_elems; ++i) y[i] *= scale;
    }
}

const ebnn_op_impl ebnn_impl_reduce = {"reduce", reduce_check, no_prepare, reduce_run, no_release};

/* --- PAD ------------------------------------------------------------------------------------ */

static ebnn_status pad_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor* x;
    TRY(need_input(model, op, 0, EBNN_F32, -1, -1, "x", &x));
    uint32_t dims[4] = {0, 0, 0, 0};
    for (int d = 0; d < 4; ++d) {
        const int before = op->ip[EBNN_P_PAD_BEFORE_0 + d], after = op->ip[EBNN_P_PAD_AFTER_0 + d];
        if (d >= x->rank || d == 0) {
            CHECK(before == 0 && after == 0, "pads are only allowed on axes 1..%d", x->rank - 1);
            if (d < x->rank) dims[d] = x->dims[d];
            continue;
        }
        if (op->ip[EBNN_P_MODE] == 1) {
            CHECK((uint32_t)before < x->dims[d] && (uint32_t)after < x->dims[d],
                  "reflect pads must be smaller than the padded axis (%u)", x->dims[d]);
        }
        const uint64_t size = (uint64_t)x->dims[d] + (uint64_t)before + (uint64_t)after;
        CHECK(size <= UINT32_MAX, "the padded axis %d is too long", d);
        dims[d] = (uint32_t)size;
    }
    return expect_output(model, op, EBNN_F32, x->rank, dims);
}

/* The input index of padded coordinate i (in [0, n + before + after)) or -1 for the constant. */
static ptrdiff_t pad_source(ptrdiff_t i, ptrdiff_t before, ptrdiff_t n, int mode) {
    ptrdiff_t j = i - before;
    if (j >= 0 && j < n) return j;
    if (mode == 0) return -1;
    if (mode == 2) return j < 0 ? 0 : n - 1;
    if (n == 1) return 0;
    while (j < 0 || j >= n) j = j < 0 ? -j : 2 * (n - 1) - j; /* reflect (edge not repeated) */
    return j;
}

static void pad_run(ebnn_model* model, ebnn_op* op) {
    const ebnn_tensor* xt = op_in(model, op, 0);
    const ebnn_tensor* o = op_out(model, op);
    const float* x = tensor_data(model, xt);
    float* y = tensor_data(model, o);
    size_t di[4], dout[4];
    dims4(xt, di);
    dims4(o, dout);
    const int shift = 4 - xt->rank;
    ptrdiff_t before[4] = {0, 0, 0, 0};
    for (int d = 0; d < xt->rank; ++d) before[d + shift] = op->ip[EBNN_P_PAD_BEFORE_0 + d];
    const int mode = op->ip[EBNN_P_MODE];
    const float value = op->fp[EBNN_P_VALUE];
    size_t i = 0;
    for (size_t a = 0; a < dout[0]; ++a) {
        const ptrdiff_t sa = pad_source((ptrdiff_t)a, before[0], (ptrdiff_t)di[0], mode);
        for (size_t b = 0; b < dout[1]; ++b) {
            const ptrdiff_t sb = pad_source((ptrdiff_t)b, before[1], (ptrdiff_t)di[1], mode);
            for (size_t c = 0; c < dout[2]; ++c) {
                const ptrdiff_t sc = pad_source((ptrdiff_t)c, before[2], (ptrdiff_t)di[2], mode);
                const bool outside = sa < 0 || sb < 0 || sc < 0;
                const float* row = outside ? NULL : x + (((size_t)sa * di[1] + (size_t)sb) * di[2] + (size_t)sc) * di[3];
                for (size_t k = 0; k < dout[3]; ++k, ++i) {
                    const ptrdiff_t sk = pad_source((ptrdiff_t)k, before[3], (ptrdiff_t)di[3], mode);
                    y[i] = (outside || sk < 0) ? value : row[sk];
                }
            }
        }
    }
}

const ebnn_op_impl ebnn_impl_pad = {"PAD", pad_check, no_prepare, pad_run, no_release};

/* --- TRANSPOSE ------------------------------------------------------------------------------ */

static ebnn_status transpose_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor* x;
    TRY(need_input(model, op, 0, EBNN_F32, -1, -1, "x", &x));
    uint32_t dims[4];
    bool seen[4] = {false, false, false, false};
    for (int d = 0; d < 4; ++d) {
        const bool given = op->given[EBNN_P_PERM_0 + d];
        CHECK(d < x->rank ? given : !given, "perm_0..perm_%d must be given (rank %u), no more",
              x->rank - 1, x->rank);
        if (d >= x->rank) continue;
        const int p = op->ip[EBNN_P_PERM_0 + d];
        CHECK(p < x->rank && !seen[p], "perm is not a permutation of the %u axes", x->rank);
        seen[p] = true;
        dims[d] = x->dims[p];
    }
    CHECK(x->rank == 0 || op->ip[EBNN_P_PERM_0] == 0, "perm_0 must be 0 (the batch axis)");
    return expect_output(model, op, EBNN_F32, x->rank, dims);
}

static void transpose_run(ebnn_model* model, ebnn_op* op) {
    const ebnn_tensor* xt = op_in(model, op, 0);
    const float* x = tensor_data(model, xt);
    float* y = tensor_data(model, op_out(model, op));
    const int rank = xt->rank;
    size_t in_stride[4] = {0, 0, 0, 0}, e = 1;
    for (int d = rank - 1; d >= 0; --d) {
        in_stride[d] = e;
        e *= xt->dims[d];
    }
    size_t od[4] = {1, 1, 1, 1}, os[4] = {0, 0, 0, 0};
    for (int d = 0; d < rank; ++d) {
        const int p = op->ip[EBNN_P_PERM_0 + d];
        od[4 - rank + d] = xt->dims[p];
        os[4 - rank + d] = in_stride[p];
    }
    size_t i = 0;
    for (size_t a = 0; a < od[0]; ++a)
        for (size_t b = 0; b < od[1]; ++b)
            for (size_t c = 0; c < od[2]; ++c)
                for (size_t k = 0; k < od[3]; ++k) y[i++] = x[a * os[0] + b * os[1] + c * os[2] + k * os[3]];
}

const ebnn_op_impl ebnn_impl_transpose = {"TRANSPOSE", transpose_check, no_prepare, transpose_run,
                                          no_release};

/* --- SOFTMAX -------------------------------------------------------------------------------- */

static ebnn_status softmax_check(ebnn_model* model, ebnn_op* op) {
    ebnn_tensor* x;
    TRY(need_input(model, op, 0, EBNN_F32, -1, -1, "x", &x));
    CHECK(x->rank >= 1, "x needs at least one axis");
    return expect_output(model, op, EBNN_F32, x->rank, x->dims);
}

static void softmax_run(ebnn_model* model, ebnn_op* op) {
    const ebnn_tensor* xt = op_in(model, op, 0);
    const float* x = tensor_data(model, xt);
    float* y = tensor_data(model, op_out(model, op));
    const size_t n = xt->dims[xt->rank - 1], rows = xt->elems / n;
    const float beta = op->fp[EBNN_P_BETA];
    for (size_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        float top = -INFINITY;
        for (size_t i = 0; i < n; ++i) top = xr[i] > top ? xr[i] : top;
        float sum = 0.0f;
        for (size_t i = 0; i < n; ++i) {
            yr[i] = expf(beta * (xr[i] - top));
            sum += yr[i];
        }
        const float scale = 1.0f / sum;
        for (size_t i = 0; i < n; ++i) yr[i] *= scale;
    }
}

const ebnn_op_impl ebnn_impl_softmax = {"SOFTMAX", softmax_check, no_prepare, softmax_run,
                                        no_release};
