/*
 * edgebnn native runtime: a small C API over bit-packed binary neural networks (.ebnn files).
 *
 *     ebnn_error error;
 *     ebnn_model* model;
 *     if (ebnn_model_load_file("m.ebnn", NULL, &model, &error) != EBNN_OK) {
 *         fprintf(stderr, "%s\n", error.message);
 *         return 2;
 *     }
 *     const float* input = image;            // NHWC float32, ebnn_model_input_size(model, 0) floats
 *     float scores[10];
 *     if (ebnn_model_run(model, 1, &input, (float* const[]){scores}) != EBNN_OK)
 *         fprintf(stderr, "%s\n", ebnn_model_last_error(model));
 *     ebnn_model_free(model);
 *
 * The format is docs/native-format.md, the engine docs/native-runtime.md. The library has no
 * global mutable state: every model owns its memory, its kernels and its thread pool, so models
 * may be used from different threads at the same time (one call at a time per model).
 * C11; libc, libm and pthreads only.
 */
#ifndef EDGEBNN_H_
#define EDGEBNN_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define EBNN_API __attribute__((visibility("default")))
#else
#define EBNN_API
#endif

#define EBNN_VERSION "0.1.0"
#define EBNN_FORMAT_MAJOR 1
#define EBNN_FORMAT_MINOR 0
#define EBNN_MAX_RANK 4
/* Constants are 64-byte aligned inside the file: load in place from a buffer aligned like this. */
#define EBNN_ALIGNMENT 64

typedef enum ebnn_status {
    EBNN_OK = 0,
    EBNN_ERROR_ARGUMENT = 1,    /* a bad argument to an API call (NULL, index out of range, size) */
    EBNN_ERROR_IO = 2,          /* the file cannot be opened or read */
    EBNN_ERROR_FORMAT = 3,      /* not a valid .ebnn file: truncated, out of bounds, inconsistent */
    EBNN_ERROR_VERSION = 4,     /* a format version this library cannot read */
    EBNN_ERROR_CHECKSUM = 5,    /* the content does not match its checksum */
    EBNN_ERROR_UNSUPPORTED = 6, /* valid, but not supported here (e.g. a big-endian host) */
    EBNN_ERROR_MEMORY = 7,      /* out of memory, or over the max_memory load option */
    EBNN_ERROR_KERNEL = 8,      /* an unknown kernel name, or one this CPU or build lacks */
    EBNN_ERROR_THREAD = 9       /* threads cannot be created */
} ebnn_status;

/* The error of a call that has no model yet (loading); every field is set by the failing call. */
typedef struct ebnn_error {
    ebnn_status status;
    char message[512];
} ebnn_error;

/* Load flags. */
#define EBNN_LOAD_NO_CHECKSUM 1u /* skip the CRC-32 check (tests reach the structural checks) */
#define EBNN_LOAD_IN_PLACE 2u    /* use the caller's buffer without copying: it must stay valid and
                                    unchanged until ebnn_model_free, and be EBNN_ALIGNMENT-aligned */
#define EBNN_LOAD_PROFILE 4u     /* time every op (ebnn_model_op_info) */
#define EBNN_LOAD_MARKERS 8u     /* call ebnn_count_marker at the start of every inference, after
                                    every op and at the end (for an instruction counter; also set
                                    by the environment variable EDGEBNN_NATIVE_MARKERS=1) */

typedef struct ebnn_load_options {
    uint32_t struct_size; /* sizeof(ebnn_load_options): set by ebnn_load_options_init */
    uint32_t flags;       /* EBNN_LOAD_* */
    int threads;          /* threads of the model's pool (>= 1; 0 means 1) */
    const char* kernel;   /* "scalar", "avx2", "avx512" ("neon" later), or NULL / "auto": the
                             environment variable EDGEBNN_NATIVE_KERNEL, else the best available */
    uint64_t max_memory;  /* activation + scratch bytes allowed; 0 means 1 GiB */
} ebnn_load_options;

typedef struct ebnn_model ebnn_model;

typedef struct ebnn_op_info {
    const char* type;  /* "BCONV2D", ... */
    const char* name;  /* from the file, "" when unnamed */
    uint64_t time_ns;  /* total time in this op since the last reset (EBNN_LOAD_PROFILE) */
    uint64_t calls;
    uint64_t binary_macs; /* per call (BCONV2D), else 0 */
    uint64_t flops;       /* float multiply-adds x 2 per call (CONV2D, DENSE), else 0 */
} ebnn_op_info;

EBNN_API void ebnn_load_options_init(ebnn_load_options* options);

/* Load a model. On failure *model is NULL and error (may be NULL) holds the status and a message. */
EBNN_API ebnn_status ebnn_model_load_file(const char* path, const ebnn_load_options* options,
                                          ebnn_model** model, ebnn_error* error);
EBNN_API ebnn_status ebnn_model_load_memory(const void* data, size_t size,
                                            const ebnn_load_options* options,
                                            ebnn_model** model, ebnn_error* error);
EBNN_API void ebnn_model_free(ebnn_model* model);

/* The message of the model's last failed call ("" if none). */
EBNN_API const char* ebnn_model_last_error(const ebnn_model* model);

EBNN_API size_t ebnn_model_num_inputs(const ebnn_model* model);
EBNN_API size_t ebnn_model_num_outputs(const ebnn_model* model);
/* The shape of one sample (dims[0] == 1), NHWC for images; rank written to *rank. */
EBNN_API ebnn_status ebnn_model_input_shape(const ebnn_model* model, size_t index,
                                            uint32_t dims[EBNN_MAX_RANK], size_t* rank);
EBNN_API ebnn_status ebnn_model_output_shape(const ebnn_model* model, size_t index,
                                             uint32_t dims[EBNN_MAX_RANK], size_t* rank);
/* Floats per sample of an input / output (0 for a bad index). */
EBNN_API size_t ebnn_model_input_size(const ebnn_model* model, size_t index);
EBNN_API size_t ebnn_model_output_size(const ebnn_model* model, size_t index);

/* Run `batch` samples: inputs[i] holds batch * input_size(i) floats, outputs[j] receives
   batch * output_size(j) floats (sample after sample). */
EBNN_API ebnn_status ebnn_model_run(ebnn_model* model, size_t batch, const float* const* inputs,
                                    float* const* outputs);

/* Zero-copy use (one sample): write the input buffers, invoke, read the output buffers. The
   buffers belong to the model and stay valid until it is freed. */
EBNN_API float* ebnn_model_input_buffer(ebnn_model* model, size_t index);
EBNN_API const float* ebnn_model_output_buffer(const ebnn_model* model, size_t index);
EBNN_API ebnn_status ebnn_model_invoke(ebnn_model* model);

/* Threads of the model's own pool (1 = run in the calling thread). */
EBNN_API ebnn_status ebnn_model_set_threads(ebnn_model* model, int threads);
EBNN_API int ebnn_model_threads(const ebnn_model* model);
/* Choose the kernels (same names as ebnn_load_options.kernel); weights are repacked. */
EBNN_API ebnn_status ebnn_model_set_kernel(ebnn_model* model, const char* kernel);
EBNN_API const char* ebnn_model_kernel(const ebnn_model* model);

/* The deploy metadata JSON of the file (not NUL-terminated; size 0 when absent). */
EBNN_API const char* ebnn_model_metadata(const ebnn_model* model, size_t* size);

/* Per-op information and timing. */
EBNN_API size_t ebnn_model_num_ops(const ebnn_model* model);
EBNN_API ebnn_status ebnn_model_op_info(const ebnn_model* model, size_t index, ebnn_op_info* info);
EBNN_API void ebnn_model_set_profiling(ebnn_model* model, int enabled);
EBNN_API void ebnn_model_reset_profile(ebnn_model* model);
/* Bytes of activation memory, scratch memory and packed weights the model holds. */
EBNN_API uint64_t ebnn_model_memory(const ebnn_model* model);

/* The library: version, CPU features ("avx2 fma avx512f ..."), kernels usable on this CPU in
   order of preference ("avx512 avx2 scalar"). Strings go to buffer (NUL-terminated, truncated
   to size); the return value is the full length. */
EBNN_API const char* ebnn_version(void);
EBNN_API size_t ebnn_cpu_features(char* buffer, size_t size);
EBNN_API size_t ebnn_available_kernels(char* buffer, size_t size);
EBNN_API const char* ebnn_status_name(ebnn_status status);

/* Instruction-count markers. On aarch64 each kind is one HINT instruction (HINT #0x70 + kind), a
   NOP on every CPU, that the QEMU plugin of devices/plugins/ watches to count the guest
   instructions between markers exactly; elsewhere the call does nothing. A model loaded with
   EBNN_LOAD_MARKERS marks BEGIN, OP (after each op) and END of every inference; a caller may put
   its own WINDOW_BEGIN / WINDOW_END around any code (e.g. one invoke of another runtime). */
#define EBNN_MARK_BEGIN 0
#define EBNN_MARK_OP 1
#define EBNN_MARK_END 2
#define EBNN_MARK_WINDOW_BEGIN 3
#define EBNN_MARK_WINDOW_END 4
EBNN_API void ebnn_count_marker(int kind);

#ifdef __cplusplus
}
#endif
#endif /* EDGEBNN_H_ */
