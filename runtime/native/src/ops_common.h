/* Helpers shared by the op implementations: load-time checks and shapes. */
#ifndef EBNN_OPS_COMMON_H_
#define EBNN_OPS_COMMON_H_

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CHECK(cond, ...)                                             \
    do {                                                             \
        if (!(cond)) return ebnn_op_fail(model, op, __VA_ARGS__);    \
    } while (0)

static inline const char* dtype_name(uint8_t dtype) {
    return dtype == EBNN_F32 ? "f32" : dtype == EBNN_BITS ? "bits" : dtype == EBNN_I32 ? "i32" : "?";
}

static inline void shape_text(size_t rank, const uint32_t* dims, char* buffer, size_t size) {
    size_t n = (size_t)snprintf(buffer, size, "[");
    for (size_t i = 0; i < rank && n < size; ++i) {
        n += (size_t)snprintf(buffer + n, size - n, i ? ",%u" : "%u", dims[i]);
    }
    if (n < size) snprintf(buffer + n, size - n, "]");
}

/* The input i with the given dtype (and rank when rank >= 0, constness when constant >= 0). */
static inline ebnn_status need_input(ebnn_model* model, ebnn_op* op, size_t i, uint8_t dtype,
                                     int rank, int constant, const char* what,
                                     ebnn_tensor** out) {
    *out = NULL;
    ebnn_tensor* t = op_in(model, op, i);
    CHECK(t != NULL, "input %zu (%s) is required", i, what);
    CHECK(t->dtype == dtype, "input %zu (%s) must be %s, got %s", i, what, dtype_name(dtype),
          dtype_name(t->dtype));
    CHECK(rank < 0 || t->rank == rank, "input %zu (%s) must have rank %d, got %u", i, what, rank,
          t->rank);
    CHECK(constant < 0 || t->is_const == (constant != 0), "input %zu (%s) must be %s", i, what,
          constant ? "a constant" : "an activation");
    *out = t;
    return EBNN_OK;
}

/* An optional per-channel vector of `length` elements (shape [length], or any shape of that size
   ending in length); *out is NULL when absent. */
static inline ebnn_status optional_vector(ebnn_model* model, ebnn_op* op, size_t i, uint8_t dtype,
                                          size_t length, const char* what, ebnn_tensor** out) {
    ebnn_tensor* t = op_in(model, op, i);
    *out = t;
    if (t == NULL) return EBNN_OK;
    CHECK(t->dtype == dtype && t->elems == length && t->rank >= 1 &&
              t->dims[t->rank - 1] == length,
          "input %zu (%s) must be %s of shape [%zu]", i, what, dtype_name(dtype), length);
    return EBNN_OK;
}

/* The output must have exactly this dtype and shape. */
static inline ebnn_status expect_output(ebnn_model* model, ebnn_op* op, uint8_t dtype, size_t rank,
                                        const uint32_t* dims) {
    ebnn_tensor* o = op_out(model, op);
    char want[64], got[64];
    shape_text(rank, dims, want, sizeof(want));
    shape_text(o->rank, o->dims, got, sizeof(got));
    CHECK(o->dtype == dtype, "the output is %s, the file says %s", dtype_name(dtype),
          dtype_name(o->dtype));
    bool same = o->rank == rank;
    for (size_t d = 0; same && d < rank; ++d) same = o->dims[d] == dims[d];
    CHECK(same, "output shape %s does not match the computed %s", got, want);
    return EBNN_OK;
}

#define TRY(expr)                                  \
    do {                                           \
        ebnn_status status_ = (expr);              \
        if (status_ != EBNN_OK) return status_;    \
    } while (0)

static inline float clampf(float x, float lo, float hi) {
    x = x < lo ? lo : x;
    return x > hi ? hi : x;
}

/* Shapes right-aligned to rank 4 (leading 1s). */
static inline void dims4(const ebnn_tensor* t, size_t out[4]) {
    for (int d = 0; d < 4; ++d) out[d] = 1;
    for (int d = 0; d < t->rank; ++d) out[4 - t->rank + d] = t->dims[d];
}

static inline ebnn_status no_prepare(ebnn_model* model, ebnn_op* op) {
    (void)model;
    (void)op;
    return EBNN_OK;
}
static inline void no_release(ebnn_op* op) { (void)op; }

#endif
