/*
 * classify: a Fashion-MNIST classifier in one C file, with the model compiled in.
 *
 *   make                                  # build/<arch>/classify with a default fmnist-bnn (README.md)
 *   make image N=0                        # build/image0.pgm: test image 0 from the dataset
 *   build/x86_64/classify build/image0.pgm
 *   class 9 (Ankle boot)
 *   scores -3.51 ... (one per class)
 *
 * The model is the C array written by `edgebnn convert M.onnx -o M.ebnn --target native --embed c`
 * (M.h / M.c, 64-byte aligned): loaded in place (EBNN_LOAD_IN_PLACE, no copy of the weights) with
 * libedgebnn.a. The image is a 28x28 8-bit PGM (P5) or 784 raw bytes; the pixels are normalised
 * as the model's deploy metadata says ((pixel / 255 - mean) / std), the class names come from it
 * too. C11, libc + the library.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgebnn.h"
#include MODEL_HEADER /* -DMODEL_HEADER='"fmnist-bnn.h"' -DMODEL_DATA=fmnist_bnn (the Makefile) */

#define CONCAT2(a, b) a##b
#define CONCAT(a, b) CONCAT2(a, b)
#define MODEL_LEN CONCAT(MODEL_DATA, _len)

enum { MAX_PIXELS = 1 << 20, MAX_LABELS = 64, MAX_LABEL = 64 };

/* The image as bytes: a binary PGM ("P5 W H 255", comments allowed) or exactly `want` raw bytes. */
static unsigned char* read_image(const char* path, size_t want, size_t* width, size_t* height) {
    FILE* f = fopen(path, "rb");
    if (f == NULL) return NULL;
    unsigned char* data = malloc(MAX_PIXELS + 64);
    size_t n = data ? fread(data, 1, MAX_PIXELS + 64, f) : 0;
    fclose(f);
    if (data == NULL) return NULL;
    if (n >= 2 && data[0] == 'P' && data[1] == '5') {
        size_t fields[3], pos = 2;
        for (int i = 0; i < 3; ++i) {
            while (pos < n && (isspace(data[pos]) || data[pos] == '#')) {
                if (data[pos] == '#') {
                    while (pos < n && data[pos] != '\n') ++pos;
                } else {
                    ++pos;
                }
            }
            size_t value = 0, digits = 0;
            while (pos < n && isdigit(data[pos]) && digits < 7) value = value * 10 + (size_t)(data[pos++] - '0'), ++digits;
            if (digits == 0) goto bad;
            fields[i] = value;
        }
        if (pos >= n || !isspace(data[pos]) || fields[2] != 255) goto bad;
        ++pos; /* one whitespace byte, then the pixels */
        if (n - pos < fields[0] * fields[1]) goto bad;
        memmove(data, data + pos, fields[0] * fields[1]);
        *width = fields[0], *height = fields[1];
        return data;
    }
    if (n == want) { /* raw: the model's own size */
        *width = *height = 0;
        return data;
    }
bad:
    free(data);
    return NULL;
}

/* A number array `"key": [a, b, ...]` in the metadata JSON (edgebnn writes it), up to `max`. */
static size_t json_numbers(const char* json, size_t size, const char* key, float* out, size_t max) {
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\"", key);
    char* text = malloc(size + 1);
    if (text == NULL) return 0;
    memcpy(text, json, size);
    text[size] = '\0';
    size_t count = 0;
    const char* p = strstr(text, pattern);
    if (p != NULL && (p = strchr(p + strlen(pattern), '[')) != NULL) {
        ++p;
        while (count < max) {
            char* end;
            const float value = strtof(p, &end);
            if (end == p) break;
            out[count++] = value;
            p = end;
            while (*p == ' ' || *p == ',' || *p == '\n') ++p;
        }
    }
    free(text);
    return count;
}

/* The class names of `"labels": ["a", "b", ...]` (simple strings, no escapes needed here). */
static size_t json_labels(const char* json, size_t size, char labels[][MAX_LABEL], size_t max) {
    const char* end = json + size;
    const char* p = json;
    for (; p + 8 <= end && memcmp(p, "\"labels\"", 8) != 0; ++p) {
    }
    if (p + 8 > end) return 0;
    for (p += 8; p < end && *p != '['; ++p) {
    }
    size_t count = 0;
    while (p < end && *p != ']' && count < max) {
        if (*p++ != '"') continue;
        size_t length = 0;
        while (p < end && *p != '"') {
            if (length + 1 < MAX_LABEL) labels[count][length++] = *p;
            ++p;
        }
        labels[count++][length] = '\0';
        ++p;
    }
    return count;
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s IMAGE.pgm|IMAGE.raw\n", argv[0]);
        return 2;
    }
    ebnn_load_options options;
    ebnn_load_options_init(&options);
    options.flags |= EBNN_LOAD_IN_PLACE; /* the array is 64-byte aligned and const: no copy */
    ebnn_model* model;
    ebnn_error error;
    if (ebnn_model_load_memory(MODEL_DATA, MODEL_LEN, &options, &model, &error) != EBNN_OK) {
        fprintf(stderr, "classify: cannot load the model: %s\n", error.message);
        return 2;
    }
    uint32_t dims[EBNN_MAX_RANK];
    size_t rank;
    ebnn_model_input_shape(model, 0, dims, &rank);
    const size_t pixels = ebnn_model_input_size(model, 0);
    if (rank != 4 || dims[3] != 1) {
        fprintf(stderr, "classify: the model's input is not one grey image (NHWC, 1 channel)\n");
        ebnn_model_free(model);
        return 2;
    }
    size_t width, height;
    unsigned char* image = read_image(argv[1], pixels, &width, &height);
    if (image == NULL || (width != 0 && (width != dims[2] || height != dims[1]))) {
        fprintf(stderr, "classify: %s is not a %ux%u 8-bit PGM or %zu raw bytes\n", argv[1], dims[2], dims[1],
                pixels);
        free(image);
        ebnn_model_free(model);
        return 2;
    }

    size_t meta_size;
    const char* meta = ebnn_model_metadata(model, &meta_size);
    float mean = 0.0f, std = 1.0f;
    if (json_numbers(meta, meta_size, "mean", &mean, 1) != 1 || json_numbers(meta, meta_size, "std", &std, 1) != 1) {
        mean = 0.0f, std = 1.0f;
        fprintf(stderr, "classify: note: the model records no normalisation; using pixel / 255\n");
    }
    float* input = ebnn_model_input_buffer(model, 0);
    for (size_t i = 0; i < pixels; ++i) input[i] = ((float)image[i] / 255.0f - mean) / std;
    free(image);

    if (ebnn_model_invoke(model) != EBNN_OK) {
        fprintf(stderr, "classify: %s\n", ebnn_model_last_error(model));
        ebnn_model_free(model);
        return 1;
    }
    const float* scores = ebnn_model_output_buffer(model, 0);
    const size_t classes = ebnn_model_output_size(model, 0);
    size_t best = 0;
    for (size_t c = 1; c < classes; ++c) best = scores[c] > scores[best] ? c : best;
    static char labels[MAX_LABELS][MAX_LABEL];
    const size_t named = json_labels(meta, meta_size, labels, MAX_LABELS);
    printf("class %zu (%s)\nscores", best, best < named ? labels[best] : "unnamed");
    for (size_t c = 0; c < classes; ++c) printf(" %.9g", (double)scores[c]);
    printf("\n");
    ebnn_model_free(model);
    return 0;
}
