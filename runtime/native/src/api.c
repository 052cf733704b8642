/* The public API (include/edgebnn.h): loading, running, threads, kernels, profiling. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "internal.h"

const char* ebnn_version(void) { return EBNN_VERSION; }

const char* ebnn_status_name(ebnn_status status) {
    switch (status) {
        case EBNN_OK: return "ok";
        case EBNN_ERROR_ARGUMENT: return "invalid argument";
        case EBNN_ERROR_IO: return "I/O error";
        case EBNN_ERROR_FORMAT: return "invalid model file";
        case EBNN_ERROR_VERSION: return "unsupported format version";
        case EBNN_ERROR_CHECKSUM: return "checksum mismatch";
        case EBNN_ERROR_UNSUPPORTED: return "unsupported";
        case EBNN_ERROR_MEMORY: return "out of memory";
        case EBNN_ERROR_KERNEL: return "kernel not available";
        case EBNN_ERROR_THREAD: return "cannot create threads";
    }
    return "unknown status";
}

void ebnn_load_options_init(ebnn_load_options* options) {
    if (options == NULL) return;
    memset(options, 0, sizeof(*options));
    options->struct_size = sizeof(*options);
    options->threads = 1;
}

static void set_error(ebnn_error* error, ebnn_status status, const char* message) {
    if (error == NULL) return;
    error->status = status;
    snprintf(error->message, sizeof(error->message), "%.500s", message);
}

static void release_ops(ebnn_model* model) {
    for (size_t i = 0; i < model->n_ops; ++i) {
        ebnn_op* op = &model->ops[i];
        if (op->impl != NULL && op->state != NULL) op->impl->release(op);
    }
}

void ebnn_model_free(ebnn_model* model) {
    if (model == NULL) return;
    ebnn_pool_destroy(model->pool);
    release_ops(model);
    for (size_t i = 0; i < model->n_ops; ++i) {
        free(model->ops[i].inputs);
        free(model->ops[i].name_owned);
    }
    for (size_t i = 0; i < model->n_tensors; ++i) ebnn_aligned_free(model->tensors[i].bits64);
    free(model->ops);
    free(model->tensors);
    free(model->graph_inputs);
    free(model->graph_outputs);
    ebnn_aligned_free(model->arena);
    ebnn_aligned_free(model->scratch);
    ebnn_aligned_free(model->owned_file);
    free(model);
}

static ebnn_status prepare_ops(ebnn_model* model) {
    for (size_t i = 0; i < model->n_ops; ++i) {
        ebnn_op* op = &model->ops[i];
        op->scratch_per_thread = op->scratch_shared = op->packed_bytes = 0;
        ebnn_status status = op->impl->prepare(model, op);
        if (status != EBNN_OK) return status;
    }
    return ebnn_alloc_scratch(model);
}

static ebnn_status make_pool(ebnn_model* model, int threads) {
    ebnn_pool_destroy(model->pool);
    model->pool = NULL;
    model->threads = 1;
    if (threads > 1) {
        if (ebnn_pool_create((size_t)threads, &model->pool) != 0) {
            return MODEL_FAIL(model, EBNN_ERROR_THREAD, "cannot create %d threads", threads);
        }
        model->threads = threads;
    }
    return EBNN_OK;
}

static bool little_endian_host(void) {
    const uint32_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* The model takes `file` (owned: freed with the model, or the caller's in-place buffer). */
static ebnn_status load(const uint8_t* file, size_t size, uint8_t* owned,
                        const ebnn_load_options* options, ebnn_model** out, ebnn_error* error) {
    ebnn_load_options defaults;
    ebnn_load_options_init(&defaults);
    if (options == NULL) options = &defaults;
    ebnn_model* model = calloc(1, sizeof(*model));
    if (model == NULL) {
        ebnn_aligned_free(owned);
        set_error(error, EBNN_ERROR_MEMORY, "out of memory");
        return EBNN_ERROR_MEMORY;
    }
    model->owned_file = owned;
    model->file = file;
    model->file_size = size;
    model->max_memory = options->max_memory ? options->max_memory : EBNN_DEFAULT_MAX_MEMORY;
    model->profiling = (options->flags & EBNN_LOAD_PROFILE) != 0;
    const char* markers = getenv("EDGEBNN_NATIVE_MARKERS");
    model->markers = (options->flags & EBNN_LOAD_MARKERS) != 0 ||
                     (markers != NULL && strcmp(markers, "1") == 0);
    ebnn_status status = EBNN_OK;
    if (!little_endian_host()) {
        status = MODEL_FAIL(model, EBNN_ERROR_UNSUPPORTED, "big-endian hosts are not supported");
    }
    if (status == EBNN_OK && (options->threads < 0 || options->threads > 1024)) {
        status = MODEL_FAIL(model, EBNN_ERROR_ARGUMENT, "threads must be 1 to 1024, got %d", options->threads);
    }
    if (status == EBNN_OK) {
        status = ebnn_select_kernels(options->kernel, &model->kernels, model->error, sizeof(model->error));
    }
    if (status == EBNN_OK) status = ebnn_parse(model, options->flags);
    if (status == EBNN_OK) status = ebnn_prepare_bits_constants(model);
    if (status == EBNN_OK) status = ebnn_plan_memory(model);
    if (status == EBNN_OK) {
        model->threads = options->threads > 1 ? options->threads : 1;
        status = prepare_ops(model);
    }
    if (status == EBNN_OK) status = make_pool(model, options->threads > 1 ? options->threads : 1);
    if (status != EBNN_OK) {
        set_error(error, status, model->error);
        ebnn_model_free(model);
        *out = NULL;
        return status;
    }
    model->error[0] = '\0';
    set_error(error, EBNN_OK, "");
    *out = model;
    return EBNN_OK;
}

ebnn_status ebnn_model_load_memory(const void* data, size_t size, const ebnn_load_options* options,
                                   ebnn_model** model, ebnn_error* error) {
    if (model == NULL) {
        set_error(error, EBNN_ERROR_ARGUMENT, "model (the output pointer) is NULL");
        return EBNN_ERROR_ARGUMENT;
    }
    *model = NULL;
    if (data == NULL && size > 0) {
        set_error(error, EBNN_ERROR_ARGUMENT, "data is NULL");
        return EBNN_ERROR_ARGUMENT;
    }
    if (options != NULL && options->struct_size != sizeof(ebnn_load_options)) {
        set_error(error, EBNN_ERROR_ARGUMENT,
                  "options.struct_size does not match this library (call ebnn_load_options_init)");
        return EBNN_ERROR_ARGUMENT;
    }
    if (options != NULL && (options->flags & EBNN_LOAD_IN_PLACE)) {
        if ((uintptr_t)data % EBNN_ALIGNMENT != 0) {
            char message[160];
            snprintf(message, sizeof(message),
                     "in-place loading needs a buffer aligned to %d bytes (this one is off by %u)",
                     EBNN_ALIGNMENT, (unsigned)((uintptr_t)data % EBNN_ALIGNMENT));
            set_error(error, EBNN_ERROR_ARGUMENT, message);
            return EBNN_ERROR_ARGUMENT;
        }
        return load(data, size, NULL, options, model, error);
    }
    uint8_t* copy = ebnn_aligned_alloc(size > 0 ? size : 1);
    if (copy == NULL) {
        set_error(error, EBNN_ERROR_MEMORY, "out of memory for a copy of the model");
        return EBNN_ERROR_MEMORY;
    }
    if (size > 0) memcpy(copy, data, size);
    return load(copy, size, copy, options, model, error);
}

ebnn_status ebnn_model_load_file(const char* path, const ebnn_load_options* options,
                                 ebnn_model** model, ebnn_error* error) {
    char message[600];
    if (model == NULL || path == NULL) {
        set_error(error, EBNN_ERROR_ARGUMENT, "path or model (the output pointer) is NULL");
        return EBNN_ERROR_ARGUMENT;
    }
    *model = NULL;
    if (options != NULL && options->struct_size != sizeof(ebnn_load_options)) {
        set_error(error, EBNN_ERROR_ARGUMENT,
                  "options.struct_size does not match this library (call ebnn_load_options_init)");
        return EBNN_ERROR_ARGUMENT;
    }
    FILE* f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(message, sizeof(message), "cannot open %.400s: %s", path, strerror(errno));
        set_error(error, EBNN_ERROR_IO, message);
        return EBNN_ERROR_IO;
    }
    struct stat info;
    long length = -1;
    if (fstat(fileno(f), &info) == 0 && S_ISREG(info.st_mode) && fseek(f, 0, SEEK_END) == 0) {
        length = ftell(f);
    }
    if (length < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        snprintf(message, sizeof(message), "cannot read %.400s (not a regular file?)", path);
        set_error(error, EBNN_ERROR_IO, message);
        return EBNN_ERROR_IO;
    }
    uint8_t* buffer = ebnn_aligned_alloc(length > 0 ? (size_t)length : 1);
    if (buffer == NULL) {
        fclose(f);
        set_error(error, EBNN_ERROR_MEMORY, "out of memory for the model file");
        return EBNN_ERROR_MEMORY;
    }
    const size_t got = length > 0 ? fread(buffer, 1, (size_t)length, f) : 0;
    fclose(f);
    if (got != (size_t)length) {
        ebnn_aligned_free(buffer);
        snprintf(message, sizeof(message), "cannot read %.400s", path);
        set_error(error, EBNN_ERROR_IO, message);
        return EBNN_ERROR_IO;
    }
    ebnn_load_options local;
    if (options != NULL) {
        local = *options;
        local.flags &= ~EBNN_LOAD_IN_PLACE;
        options = &local;
    }
    ebnn_status status = load(buffer, got, buffer, options, model, error);
    if (status != EBNN_OK && error != NULL) {
        snprintf(message, sizeof(message), "%.200s: %.390s", path, error->message);
        snprintf(error->message, sizeof(error->message), "%.500s", message);
    }
    return status;
}

const char* ebnn_model_last_error(const ebnn_model* model) {
    return model == NULL ? "model is NULL" : model->error;
}

size_t ebnn_model_num_inputs(const ebnn_model* model) { return model ? model->n_graph_inputs : 0; }
size_t ebnn_model_num_outputs(const ebnn_model* model) { return model ? model->n_graph_outputs : 0; }

static const ebnn_tensor* io_tensor(const ebnn_model* model, size_t index, bool output) {
    if (model == NULL) return NULL;
    if (output) return index < model->n_graph_outputs ? &model->tensors[model->graph_outputs[index]] : NULL;
    return index < model->n_graph_inputs ? &model->tensors[model->graph_inputs[index]] : NULL;
}

static ebnn_status shape_of(const ebnn_tensor* t, uint32_t dims[EBNN_MAX_RANK], size_t* rank) {
    if (t == NULL || dims == NULL || rank == NULL) return EBNN_ERROR_ARGUMENT;
    memcpy(dims, t->dims, sizeof(t->dims));
    *rank = t->rank;
    return EBNN_OK;
}

ebnn_status ebnn_model_input_shape(const ebnn_model* model, size_t index, uint32_t dims[EBNN_MAX_RANK],
                                   size_t* rank) {
    return shape_of(io_tensor(model, index, false), dims, rank);
}
ebnn_status ebnn_model_output_shape(const ebnn_model* model, size_t index, uint32_t dims[EBNN_MAX_RANK],
                                    size_t* rank) {
    return shape_of(io_tensor(model, index, true), dims, rank);
}
size_t ebnn_model_input_size(const ebnn_model* model, size_t index) {
    const ebnn_tensor* t = io_tensor(model, index, false);
    return t ? t->elems : 0;
}
size_t ebnn_model_output_size(const ebnn_model* model, size_t index) {
    const ebnn_tensor* t = io_tensor(model, index, true);
    return t ? t->elems : 0;
}

float* ebnn_model_input_buffer(ebnn_model* model, size_t index) {
    const ebnn_tensor* t = io_tensor(model, index, false);
    return t ? (float*)(void*)(model->arena + t->offset) : NULL;
}
const float* ebnn_model_output_buffer(const ebnn_model* model, size_t index) {
    const ebnn_tensor* t = io_tensor(model, index, true);
    return t ? (const float*)(const void*)(model->arena + t->offset) : NULL;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Not inlined and not optimised away: the plugin counts up to the HINT inside. */
__attribute__((noinline)) void ebnn_count_marker(int kind) {
#if defined(__aarch64__)
    switch (kind) {
        case EBNN_MARK_BEGIN: __asm__ __volatile__("hint #0x70" ::: "memory"); break;
        case EBNN_MARK_OP: __asm__ __volatile__("hint #0x71" ::: "memory"); break;
        case EBNN_MARK_END: __asm__ __volatile__("hint #0x72" ::: "memory"); break;
        case EBNN_MARK_WINDOW_BEGIN: __asm__ __volatile__("hint #0x73" ::: "memory"); break;
        case EBNN_MARK_WINDOW_END: __asm__ __volatile__("hint #0x74" ::: "memory"); break;
        default: break;
    }
#else
    __asm__ __volatile__("" ::"r"(kind) : "memory");
#endif
}

ebnn_status ebnn_model_invoke(ebnn_model* model) {
    if (model == NULL) return EBNN_ERROR_ARGUMENT;
    if (model->markers) ebnn_count_marker(EBNN_MARK_BEGIN);
    for (size_t i = 0; i < model->n_ops; ++i) {
        ebnn_op* op = &model->ops[i];
        if (model->profiling) {
            const uint64_t start = now_ns();
            op->impl->run(model, op);
            op->time_ns += now_ns() - start;
            op->calls += 1;
        } else {
            op->impl->run(model, op);
        }
        if (model->markers) ebnn_count_marker(EBNN_MARK_OP);
    }
    if (model->markers) ebnn_count_marker(EBNN_MARK_END);
    return EBNN_OK;
}

ebnn_status ebnn_model_run(ebnn_model* model, size_t batch, const float* const* inputs,
                           float* const* outputs) {
    if (model == NULL) return EBNN_ERROR_ARGUMENT;
    if (inputs == NULL || outputs == NULL) {
        return MODEL_FAIL(model, EBNN_ERROR_ARGUMENT, "inputs and outputs must not be NULL");
    }
    for (size_t i = 0; i < model->n_graph_inputs; ++i) {
        if (inputs[i] == NULL && batch > 0) return MODEL_FAIL(model, EBNN_ERROR_ARGUMENT, "input %zu is NULL", i);
    }
    for (size_t i = 0; i < model->n_graph_outputs; ++i) {
        if (outputs[i] == NULL && batch > 0) return MODEL_FAIL(model, EBNN_ERROR_ARGUMENT, "output %zu is NULL", i);
    }
    for (size_t b = 0; b < batch; ++b) {
        for (size_t i = 0; i < model->n_graph_inputs; ++i) {
            const ebnn_tensor* t = io_tensor(model, i, false);
            memcpy(model->arena + t->offset, inputs[i] + b * t->elems, t->elems * sizeof(float));
        }
        ebnn_model_invoke(model);
        for (size_t i = 0; i < model->n_graph_outputs; ++i) {
            const ebnn_tensor* t = io_tensor(model, i, true);
            memcpy(outputs[i] + b * t->elems, model->arena + t->offset, t->elems * sizeof(float));
        }
    }
    model->error[0] = '\0';
    return EBNN_OK;
}

ebnn_status ebnn_model_set_threads(ebnn_model* model, int threads) {
    if (model == NULL) return EBNN_ERROR_ARGUMENT;
    if (threads < 1 || threads > 1024) {
        return MODEL_FAIL(model, EBNN_ERROR_ARGUMENT, "threads must be 1 to 1024, got %d", threads);
    }
    if (threads == model->threads) return EBNN_OK;
    const int previous = model->threads;
    model->threads = threads;
    ebnn_status status = ebnn_alloc_scratch(model);
    if (status == EBNN_OK) status = make_pool(model, threads);
    if (status != EBNN_OK) { /* back to what worked */
        char message[sizeof(model->error)];
        memcpy(message, model->error, sizeof(message));
        model->threads = previous;
        ebnn_alloc_scratch(model);
        make_pool(model, previous);
        memcpy(model->error, message, sizeof(message));
        return status;
    }
    return EBNN_OK;
}

int ebnn_model_threads(const ebnn_model* model) { return model ? model->threads : 0; }

ebnn_status ebnn_model_set_kernel(ebnn_model* model, const char* kernel) {
    if (model == NULL) return EBNN_ERROR_ARGUMENT;
    const ebnn_kernels* chosen;
    ebnn_status status = ebnn_select_kernels(kernel, &chosen, model->error, sizeof(model->error));
    if (status != EBNN_OK) return status;
    if (chosen == model->kernels) return EBNN_OK;
    const ebnn_kernels* previous = model->kernels;
    model->kernels = chosen;
    status = prepare_ops(model);
    if (status != EBNN_OK) {
        char message[sizeof(model->error)];
        memcpy(message, model->error, sizeof(message));
        model->kernels = previous;
        prepare_ops(model);
        memcpy(model->error, message, sizeof(message));
    }
    return status;
}

const char* ebnn_model_kernel(const ebnn_model* model) {
    return model && model->kernels ? model->kernels->name : "";
}

const char* ebnn_model_metadata(const ebnn_model* model, size_t* size) {
    if (size != NULL) *size = model ? model->metadata_size : 0;
    return model && model->metadata ? model->metadata : "";
}

size_t ebnn_model_num_ops(const ebnn_model* model) { return model ? model->n_ops : 0; }

ebnn_status ebnn_model_op_info(const ebnn_model* model, size_t index, ebnn_op_info* info) {
    if (model == NULL || info == NULL || index >= model->n_ops) return EBNN_ERROR_ARGUMENT;
    const ebnn_op* op = &model->ops[index];
    info->type = ebnn_op_type_name(op->code);
    info->name = op->name_owned != NULL ? op->name_owned : "";
    info->time_ns = op->time_ns;
    info->calls = op->calls;
    info->binary_macs = op->binary_macs;
    info->flops = op->flops;
    return EBNN_OK;
}

void ebnn_model_set_profiling(ebnn_model* model, int enabled) {
    if (model != NULL) model->profiling = enabled != 0;
}

void ebnn_model_reset_profile(ebnn_model* model) {
    if (model == NULL) return;
    for (size_t i = 0; i < model->n_ops; ++i) model->ops[i].time_ns = model->ops[i].calls = 0;
}

uint64_t ebnn_model_memory(const ebnn_model* model) {
    if (model == NULL) return 0;
    uint64_t total = model->arena_bytes + model->scratch_bytes;
    for (size_t i = 0; i < model->n_ops; ++i) total += model->ops[i].packed_bytes;
    for (size_t i = 0; i < model->n_tensors; ++i) {
        if (model->tensors[i].bits64 != NULL) total += model->tensors[i].bytes;
    }
    return total;
}
