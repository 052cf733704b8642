/* Internal structures of the native runtime: tensors, ops, the model. */
#ifndef EBNN_INTERNAL_H_
#define EBNN_INTERNAL_H_

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../include/edgebnn.h"
#include "../kernels/kernels.h"
#include "format.h"
#include "pool.h"

#define EBNN_DEFAULT_MAX_MEMORY (1ull << 30)

typedef struct ebnn_tensor {
    uint8_t dtype; /* enum ebnn_dtype */
    uint8_t rank;
    bool is_const;
    uint32_t dims[EBNN_MAX_RANK];
    size_t elems;     /* product of dims (1 for a scalar) */
    size_t rows;      /* bits: product of all dims but the last */
    size_t row_len;   /* bits: the last dim */
    size_t words;     /* bits: 64-bit words per row */
    size_t bytes;     /* runtime storage: 4 * elems, or 8 * rows * words for bits */
    const void* data; /* constants: f32 / i32 data in the file buffer (aligned) */
    uint64_t* bits64; /* constants of dtype bits: rows of 64-bit words (owned) */
    size_t offset;    /* activations: offset in the arena */
    int first, last;  /* activations: producing op (-1: graph input), last reading op */
    const char* name;
    uint32_t name_len;
} ebnn_tensor;

typedef struct ebnn_op ebnn_op;
typedef struct ebnn_model ebnn_model;

/* The implementation of one op type (ops_*.c). check validates the op against its tensors at load
   time (writes an error and returns non-OK); prepare builds kernel-specific state (packed
   weights) and its scratch size; run cannot fail. */
typedef struct ebnn_op_impl {
    const char* name;
    ebnn_status (*check)(ebnn_model* model, ebnn_op* op);
    ebnn_status (*prepare)(ebnn_model* model, ebnn_op* op);
    void (*run)(ebnn_model* model, ebnn_op* op);
    void (*release)(ebnn_op* op);
} ebnn_op_impl;

struct ebnn_op {
    uint16_t code;
    uint32_t n_inputs;
    int32_t* inputs; /* tensor indices, -1 for absent */
    int32_t output;
    int32_t ip[EBNN_P_COUNT]; /* int params by id (defaults filled in) */
    float fp[EBNN_P_COUNT];   /* float params by id */
    bool given[EBNN_P_COUNT];
    const char* name; /* points into the file (name_len bytes) */
    uint32_t name_len;
    char* name_owned; /* the same, NUL-terminated */
    const ebnn_op_impl* impl;
    void* state;             /* prepare's result, freed by release */
    size_t scratch_per_thread; /* bytes of scratch each thread needs in run */
    size_t scratch_shared;     /* bytes of scratch shared by all threads */
    size_t packed_bytes;       /* memory of packed weights (for ebnn_model_memory) */
    uint64_t time_ns, calls;
    uint64_t binary_macs, flops;
    int index;
};

struct ebnn_model {
    /* the file */
    uint8_t* owned_file; /* our copy (NULL when loaded in place) */
    const uint8_t* file;
    size_t file_size;
    const char* metadata;
    size_t metadata_size;
    /* the graph */
    ebnn_tensor* tensors;
    size_t n_tensors;
    ebnn_op* ops;
    size_t n_ops;
    int32_t* graph_inputs;
    size_t n_graph_inputs;
    int32_t* graph_outputs;
    size_t n_graph_outputs;
    /* execution */
    const ebnn_kernels* kernels;
    ebnn_pool* pool;
    int threads;
    uint8_t* arena; /* activations */
    size_t arena_bytes;
    uint8_t* scratch; /* per-op scratch: shared part, then one part per thread */
    size_t scratch_bytes;
    size_t scratch_shared_max, scratch_thread_max;
    uint64_t max_memory;
    bool profiling;
    bool markers; /* EBNN_LOAD_MARKERS: ebnn_count_marker around every op */
    char error[512];
};

/* Errors. */
ebnn_status ebnn_fail(char* buffer, size_t size, ebnn_status status, const char* format, ...)
    __attribute__((format(printf, 4, 5)));
#define MODEL_FAIL(model, status, ...) ebnn_fail((model)->error, sizeof((model)->error), status, __VA_ARGS__)
/* "op 3 (BCONV2D 'name')" */
void ebnn_op_label(const ebnn_model* model, const ebnn_op* op, char* buffer, size_t size);
ebnn_status ebnn_op_fail(ebnn_model* model, const ebnn_op* op, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

/* Loading (loader.c): parse + validate the file into model (tensors, ops, graph). */
ebnn_status ebnn_parse(ebnn_model* model, uint32_t flags);
const ebnn_op_impl* ebnn_op_impl_for(uint16_t code);
const char* ebnn_op_type_name(uint16_t code);

/* Shared by ops (ops_binary.c, ops_misc.c). */
ebnn_status ebnn_prepare_bits_constants(ebnn_model* model);
ebnn_status ebnn_pool_geometry_check(ebnn_model* model, ebnn_op* op, const ebnn_tensor* x,
                                     uint32_t dims[4]);

/* Kernels (cpu.c). */
ebnn_status ebnn_select_kernels(const char* name, const ebnn_kernels** kernels, char* error,
                                size_t error_size);

/* Memory (plan.c). */
ebnn_status ebnn_plan_memory(ebnn_model* model);
ebnn_status ebnn_alloc_scratch(ebnn_model* model);
void* ebnn_aligned_alloc(size_t bytes); /* 64-byte aligned, zeroed; NULL on failure or 0 bytes */
void ebnn_aligned_free(void* pointer);

/* Data access for ops. */
static inline ebnn_tensor* op_in(ebnn_model* m, const ebnn_op* op, size_t i) {
    return (i < op->n_inputs && op->inputs[i] >= 0) ? &m->tensors[op->inputs[i]] : NULL;
}
static inline ebnn_tensor* op_out(ebnn_model* m, const ebnn_op* op) { return &m->tensors[op->output]; }
static inline void* tensor_data(ebnn_model* m, const ebnn_tensor* t) {
    if (t->is_const) return t->dtype == EBNN_BITS ? (void*)t->bits64 : (void*)t->data;
    return m->arena + t->offset;
}
static inline void* thread_scratch(ebnn_model* m, size_t thread) {
    return m->scratch + m->scratch_shared_max + thread * m->scratch_thread_max;
}
static inline void* shared_scratch(ebnn_model* m) { return m->scratch; }

/* Overflow-safe size arithmetic: false on overflow. */
static inline bool mul_size(size_t a, size_t b, size_t* out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool add_size(size_t a, size_t b, size_t* out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }
static inline size_t div_up(size_t x, size_t to) { return (x + to - 1) / to; }
static inline size_t min_size(size_t a, size_t b) { return a < b ? a : b; }
static inline size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* Conv/pool geometry helper: output size or 0 when the kernel does not fit. */
size_t ebnn_out_size(size_t in, size_t kernel, size_t stride, size_t dilation, size_t before,
                     size_t after);

/* Op implementations (ops_binary.c, ops_conv.c, ops_misc.c). */
extern const ebnn_op_impl ebnn_impl_quantize, ebnn_impl_dequantize, ebnn_impl_bconv2d,
    ebnn_impl_bmaxpool2d, ebnn_impl_conv2d, ebnn_impl_dense, ebnn_impl_elementwise,
    ebnn_impl_concat, ebnn_impl_maxpool2d, ebnn_impl_avgpool2d, ebnn_impl_reduce, ebnn_impl_pad,
    ebnn_impl_clip, ebnn_impl_prelu, ebnn_impl_reshape, ebnn_impl_transpose, ebnn_impl_softmax,
    ebnn_impl_sign;

/* The binary convolution driver, shared with the kernel tests and benchmarks (ops_binary.c). */
typedef struct ebnn_bconv_geometry {
    size_t in_h, in_w, in_c, out_h, out_w, out_c, groups;
    size_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
    size_t pad_top, pad_bottom, pad_left, pad_right;
    int pad_value; /* 1: +1, 0: zero */
} ebnn_bconv_geometry;

typedef struct ebnn_bconv_plan ebnn_bconv_plan;
/* filter: [O][KH][KW] rows of ceil(Cg/64) words (the tensor's bits64). */
ebnn_status ebnn_bconv_plan_create(const ebnn_bconv_geometry* g, const uint64_t* filter,
                                   const ebnn_kernels* kernels, ebnn_bconv_plan** plan,
                                   size_t* shared_scratch, size_t* thread_scratch,
                                   size_t* packed_bytes);
void ebnn_bconv_plan_free(ebnn_bconv_plan* plan);
/* Raw dot products: dots[(oy * OW + ox) * O + o] (int32). */
void ebnn_bconv_run_dots(const ebnn_bconv_plan* plan, const uint64_t* input, int32_t* dots,
                         ebnn_pool* pool, void* shared, void* per_thread, size_t thread_stride);

#endif /* EBNN_INTERNAL_H_ */
