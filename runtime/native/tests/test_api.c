/* The public API on a real model file: load from file and from memory (copied and in place),
 * outputs identical across threads 1/2, batch = single runs, the zero-copy buffers, kernel
 * override (option, environment variable, runtime switch) and refusals, errors, profile.
 *
 *   test_api FILE.ebnn [--dump OUTPUTS.f32]
 */
#include <math.h>

#include "edgebnn.h"
#include "testutil.h"

static uint8_t* read_file(const char* path, size_t* size) {
    FILE* f = fopen(path, "rb");
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t* data = malloc(*size + 128);
    if (fread(data, 1, *size, f) != *size) {
        free(data);
        data = NULL;
    }
    fclose(f);
    return data;
}

static ebnn_model* load_or_fail(const char* path, int threads, const char* kernel) {
    ebnn_load_options options;
    ebnn_load_options_init(&options);
    options.threads = threads;
    options.kernel = kernel;
    options.flags = EBNN_LOAD_PROFILE;
    ebnn_model* model = NULL;
    ebnn_error error;
    if (ebnn_model_load_file(path, &options, &model, &error) != EBNN_OK) {
        fail("load %s (threads %d, kernel %s): %s", path, threads, kernel ? kernel : "auto", error.message);
    }
    return model;
}

static float* run_batch(ebnn_model* model, const float* input, size_t batch) {
    float* out = calloc(batch * ebnn_model_output_size(model, 0), sizeof(float));
    if (ebnn_model_run(model, batch, &input, &out) != EBNN_OK) fail("run: %s", ebnn_model_last_error(model));
    return out;
}

static bool same(const float* a, const float* b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

static double max_difference(const float* a, const float* b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; ++i) {
        const double d = fabs((double)a[i] - b[i]);
        worst = d > worst ? d : worst;
    }
    return worst;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_api FILE.ebnn\n");
        return 2;
    }
    const char* path = argv[1];
    size_t size = 0;
    uint8_t* bytes = read_file(path, &size);
    if (bytes == NULL) {
        fprintf(stderr, "cannot read %s\n", path);
        return 2;
    }
    ebnn_model* model = load_or_fail(path, 1, NULL);
    if (model == NULL) return 1;
    const size_t in_size = ebnn_model_input_size(model, 0), out_size = ebnn_model_output_size(model, 0);
    const size_t batch = 3;
    float* input = calloc(batch * in_size, sizeof(float));
    rng r = {42};
    for (size_t i = 0; i < batch * in_size; ++i) input[i] = rng_float(&r) * 2.0f;
    float* reference = run_batch(model, input, batch);
    const char* dump = arg_value(argc, argv, "--dump", NULL);
    if (dump != NULL) { /* the outputs of the default kernel, for comparisons across machines */
        FILE* out = fopen(dump, "wb");
        if (out == NULL || fwrite(reference, sizeof(float), batch * out_size, out) != batch * out_size) {
            fail("cannot write %s", dump);
        }
        if (out != NULL) fclose(out);
    }

    /* batch = one sample after the other; the zero-copy path = run */
    for (size_t b = 0; b < batch; ++b) {
        float* one = run_batch(model, input + b * in_size, 1);
        if (!same(one, reference + b * out_size, out_size)) fail("sample %zu alone differs from the batch", b);
        free(one);
        memcpy(ebnn_model_input_buffer(model, 0), input + b * in_size, in_size * sizeof(float));
        if (ebnn_model_invoke(model) != EBNN_OK) fail("invoke");
        if (!same(ebnn_model_output_buffer(model, 0), reference + b * out_size, out_size)) {
            fail("the zero-copy buffers give other outputs (sample %zu)", b);
        }
    }

    /* from memory: copied, in place (aligned), refused when misaligned */
    ebnn_model* other;
    ebnn_error error;
    if (ebnn_model_load_memory(bytes, size, NULL, &other, &error) != EBNN_OK) {
        fail("load_memory: %s", error.message);
    } else {
        float* out = run_batch(other, input, batch);
        if (!same(out, reference, batch * out_size)) fail("load_memory gives other outputs");
        free(out);
        ebnn_model_free(other);
    }
    uint8_t* aligned = NULL;
    if (posix_memalign((void**)&aligned, EBNN_ALIGNMENT, size + EBNN_ALIGNMENT) != 0) return 1;
    memcpy(aligned, bytes, size);
    ebnn_load_options in_place;
    ebnn_load_options_init(&in_place);
    in_place.flags = EBNN_LOAD_IN_PLACE;
    if (ebnn_model_load_memory(aligned, size, &in_place, &other, &error) != EBNN_OK) {
        fail("in-place load: %s", error.message);
    } else {
        float* out = run_batch(other, input, batch);
        if (!same(out, reference, batch * out_size)) fail("the in-place model gives other outputs");
        free(out);
        ebnn_model_free(other);
    }
    memmove(aligned + 8, aligned, size);
    if (ebnn_model_load_memory(aligned + 8, size, &in_place, &other, &error) != EBNN_ERROR_ARGUMENT ||
        strstr(error.message, "aligned") == NULL || other != NULL) {
        fail("a misaligned in-place load is not refused: '%s'", error.message);
    }
    free(aligned);

    /* threads: identical outputs; set_threads both ways */
    ebnn_model* two = load_or_fail(path, 2, NULL);
    if (two != NULL) {
        if (ebnn_model_threads(two) != 2) fail("threads() is %d, not 2", ebnn_model_threads(two));
        float* out = run_batch(two, input, batch);
        if (!same(out, reference, batch * out_size)) fail("2 threads give other outputs than 1");
        free(out);
        if (ebnn_model_set_threads(two, 1) != EBNN_OK) fail("set_threads(1)");
        out = run_batch(two, input, batch);
        if (!same(out, reference, batch * out_size)) fail("set_threads(1) gives other outputs");
        free(out);
        if (ebnn_model_set_threads(two, 0) != EBNN_ERROR_ARGUMENT || strstr(ebnn_model_last_error(two), "threads") == NULL) {
            fail("set_threads(0) is not refused");
        }
        ebnn_model_free(two);
    }

    /* kernels: every available one loads and agrees (exact for the bits, float within rounding) */
    char kernels[128];
    ebnn_available_kernels(kernels, sizeof(kernels));
    char list[128];
    snprintf(list, sizeof(list), "%s", kernels);
    for (char* name = strtok(list, " "); name != NULL; name = strtok(NULL, " ")) {
        ebnn_model* k = load_or_fail(path, 1, name);
        if (k == NULL) continue;
        if (strcmp(ebnn_model_kernel(k), name) != 0) fail("kernel %s reports %s", name, ebnn_model_kernel(k));
        float* out = run_batch(k, input, batch);
        const double d = max_difference(out, reference, batch * out_size);
        if (d > 1e-3) fail("kernel %s differs from auto by %g", name, d);
        free(out);
        if (ebnn_model_set_kernel(k, "scalar") != EBNN_OK || strcmp(ebnn_model_kernel(k), "scalar") != 0) {
            fail("set_kernel(scalar) from %s", name);
        }
        out = run_batch(k, input, batch);
        if (max_difference(out, reference, batch * out_size) > 1e-3) fail("after set_kernel(scalar) outputs differ");
        free(out);
        if (ebnn_model_set_kernel(k, "bogus") != EBNN_ERROR_KERNEL || strstr(ebnn_model_last_error(k), "bogus") == NULL) {
            fail("set_kernel(bogus) is not refused with a message");
        }
        if (strcmp(ebnn_model_kernel(k), "scalar") != 0) fail("a refused set_kernel changed the kernel");
        ebnn_model_free(k);
    }
    ebnn_load_options options;
    ebnn_load_options_init(&options);
    options.kernel = "bogus";
    if (ebnn_model_load_file(path, &options, &other, &error) != EBNN_ERROR_KERNEL ||
        strstr(error.message, "unknown kernel 'bogus'") == NULL) {
        fail("kernel=bogus gives '%s'", error.message);
    }
    options.kernel = strstr(kernels, "avx512") ? "neon" : "avx512";
    if (ebnn_model_load_file(path, &options, &other, &error) != EBNN_ERROR_KERNEL ||
        strstr(error.message, "available here") == NULL) {
        fail("an unavailable kernel gives '%s'", error.message);
    }
    setenv("EDGEBNN_NATIVE_KERNEL", "scalar", 1);
    ebnn_model* env = load_or_fail(path, 1, NULL);
    if (env != NULL && strcmp(ebnn_model_kernel(env), "scalar") != 0) fail("EDGEBNN_NATIVE_KERNEL=scalar ignored");
    ebnn_model_free(env);
    setenv("EDGEBNN_NATIVE_KERNEL", "sse9", 1);
    if (ebnn_model_load_file(path, NULL, &other, &error) != EBNN_ERROR_KERNEL ||
        strstr(error.message, "EDGEBNN_NATIVE_KERNEL") == NULL) {
        fail("EDGEBNN_NATIVE_KERNEL=sse9 gives '%s'", error.message);
    }
    unsetenv("EDGEBNN_NATIVE_KERNEL");

    /* errors of the API itself */
    if (ebnn_model_load_file("/nonexistent/model.ebnn", NULL, &other, &error) != EBNN_ERROR_IO ||
        strstr(error.message, "/nonexistent/model.ebnn") == NULL) {
        fail("a missing file gives '%s'", error.message);
    }
    if (ebnn_model_load_memory(NULL, 10, NULL, &other, &error) != EBNN_ERROR_ARGUMENT) fail("NULL data");
    if (ebnn_model_load_memory(bytes, size, NULL, NULL, &error) != EBNN_ERROR_ARGUMENT) fail("NULL model");
    if (ebnn_model_load_memory("JUNKJUNK", 8, NULL, &other, &error) != EBNN_ERROR_FORMAT ||
        strstr(error.message, "EBNN magic") == NULL) {
        fail("junk bytes give '%s'", error.message);
    }
    ebnn_load_options stale;
    ebnn_load_options_init(&stale);
    stale.struct_size = 8;
    if (ebnn_model_load_memory(bytes, size, &stale, &other, &error) != EBNN_ERROR_ARGUMENT) fail("struct_size");
    uint32_t dims[EBNN_MAX_RANK];
    size_t rank;
    if (ebnn_model_input_shape(model, 5, dims, &rank) != EBNN_ERROR_ARGUMENT) fail("input_shape(5)");
    if (ebnn_model_input_shape(model, 0, dims, &rank) != EBNN_OK || rank < 1 || dims[0] != 1) fail("input_shape(0)");
    if (ebnn_model_run(model, 1, NULL, NULL) != EBNN_ERROR_ARGUMENT) fail("run(NULL)");
    if (strcmp(ebnn_status_name(EBNN_ERROR_CHECKSUM), "checksum mismatch") != 0) fail("status_name");

    /* profile: every op ran batch + batch + 1 times... at least once, with a type */
    size_t timed = 0;
    for (size_t i = 0; i < ebnn_model_num_ops(model); ++i) {
        ebnn_op_info info;
        if (ebnn_model_op_info(model, i, &info) != EBNN_OK || info.type == NULL || info.calls == 0) {
            fail("op_info(%zu)", i);
        } else if (info.time_ns > 0) {
            ++timed;
        }
    }
    if (timed == 0) fail("no op was timed");
    ebnn_model_reset_profile(model);
    ebnn_op_info info;
    if (ebnn_model_num_ops(model) > 0 && (ebnn_model_op_info(model, 0, &info) != EBNN_OK || info.calls != 0)) {
        fail("reset_profile");
    }
    size_t meta_size = 0;
    const char* meta = ebnn_model_metadata(model, &meta_size);
    if (meta_size > 0 && meta[0] != '{') fail("metadata does not start with '{'");
    if (ebnn_model_memory(model) == 0) fail("memory() is 0");

    printf("%s: %zu ops, input %zu floats, output %zu floats, kernels %s, metadata %zu bytes: %s\n", path,
           ebnn_model_num_ops(model), in_size, out_size, kernels, meta_size, failures ? "FAILED" : "ok");
    ebnn_model_free(model);
    free(input);
    free(reference);
    free(bytes);
    return failures ? 1 : 0;
}
