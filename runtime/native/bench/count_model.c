/* A model's inferences with instruction-count markers, for the QEMU plugin of devices/plugins
 * (no Python, no emulated Pi needed):
 *
 *   qemu-aarch64 -cpu cortex-a72 -L /usr/aarch64-linux-gnu \
 *       -plugin devices/plugins/build/libinsncount.so,out=counts.json \
 *       runtime/native/build/aarch64/count_model model.ebnn --runs 3 [--kernel scalar]
 *
 * loads the model with EBNN_LOAD_MARKERS (BEGIN, OP after each op, END per inference), fills its
 * input with a fixed pattern and invokes it --runs times; prints the ops' types, names and binary
 * MACs per call (one line each), which devices.counting / benchmarks/native_arm.py pair with the
 * counts. */
#include <stdio.h>
#include <stdlib.h>

#include <string.h>

#include "edgebnn.h"

static const char* arg_value(int argc, char** argv, const char* name, const char* fallback) {
    for (int i = 2; i + 1 < argc; ++i) {
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    }
    return fallback;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: count_model MODEL.ebnn [--runs N] [--kernel NAME]\n");
        return 2;
    }
    ebnn_load_options options;
    ebnn_load_options_init(&options);
    options.flags |= EBNN_LOAD_MARKERS;
    options.kernel = arg_value(argc, argv, "--kernel", NULL);
    const int runs = atoi(arg_value(argc, argv, "--runs", "3"));
    ebnn_model* model;
    ebnn_error error;
    if (ebnn_model_load_file(argv[1], &options, &model, &error) != EBNN_OK) {
        fprintf(stderr, "count_model: %s\n", error.message);
        return 2;
    }
    for (size_t i = 0; i < ebnn_model_num_inputs(model); ++i) {
        float* x = ebnn_model_input_buffer(model, i);
        uint32_t state = 1234u + (uint32_t)i; /* a fixed pattern in [-2, 2) */
        for (size_t k = 0; k < ebnn_model_input_size(model, i); ++k) {
            state = state * 1664525u + 1013904223u;
            x[k] = (float)(state >> 8) / (float)(1u << 24) * 4.0f - 2.0f;
        }
    }
    for (int run = 0; run < runs; ++run) ebnn_model_invoke(model);
    printf("kernel %s\n", ebnn_model_kernel(model));
    for (size_t i = 0; i < ebnn_model_num_ops(model); ++i) {
        ebnn_op_info info;
        ebnn_model_op_info(model, i, &info);
        printf("op %zu %s %s %llu\n", i, info.type, info.name[0] ? info.name : "-",
               (unsigned long long)info.binary_macs);
    }
    ebnn_model_free(model);
    return 0;
}
