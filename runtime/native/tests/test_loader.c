/* Loader robustness: truncated files, random bit flips (checksum on, off, and recomputed so that
 * the structural checks see the damage), absurd values in every header/table field, wrong
 * versions. Every load must end in a clean error code with a message, or in a model that runs
 * (on zeros and on random inputs) without a crash. Built with -fsanitize=address,undefined by
 * `make SAN=1` (tests/native/test_loader_fuzz.py).
 *
 *   test_loader [--seed S] [--flips N] FILE.ebnn ...
 */
#include "internal.h"
#include "testutil.h"

typedef struct counts {
    size_t refused, loaded;
} counts;

static uint32_t crc32_of(const uint8_t* data, size_t size) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < size; ++i) {
        const uint8_t byte = (i >= 24 && i < 28) ? 0 : data[i];
        crc ^= byte;
        for (int k = 0; k < 8; ++k) crc = (crc & 1) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
    }
    return crc ^ 0xFFFFFFFFu;
}

static void put32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t* p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Make the stored checksum (and file size when asked) match the bytes again. */
static void fix_header(uint8_t* data, size_t size, bool fix_size) {
    if (size < 64) return;
    if (fix_size) {
        put32(data + 16, (uint32_t)size);
        put32(data + 20, 0);
    }
    put32(data + 24, crc32_of(data, size < get32(data + 16) ? size : get32(data + 16)));
}

static void run_model(ebnn_model* model, rng* r) {
    float* in[EBNN_MAX_GRAPH_IO];
    float* out[EBNN_MAX_GRAPH_IO];
    const size_t n_in = ebnn_model_num_inputs(model), n_out = ebnn_model_num_outputs(model);
    for (size_t i = 0; i < n_in; ++i) {
        const size_t n = ebnn_model_input_size(model, i);
        in[i] = calloc(2 * n + 1, sizeof(float));
        for (size_t j = n; j < 2 * n; ++j) in[i][j] = rng_float(r) * 3.0f;
    }
    for (size_t i = 0; i < n_out; ++i) out[i] = calloc(2 * ebnn_model_output_size(model, i) + 1, sizeof(float));
    if (ebnn_model_run(model, 2, (const float* const*)in, out) != EBNN_OK) {
        fail("a loaded model failed to run: %s", ebnn_model_last_error(model));
    }
    for (size_t i = 0; i < n_in; ++i) free(in[i]);
    for (size_t i = 0; i < n_out; ++i) free(out[i]);
}

static ebnn_status try_load(const uint8_t* data, size_t size, uint32_t flags, rng* r, counts* c) {
    ebnn_load_options options;
    ebnn_load_options_init(&options);
    options.flags = flags;
    options.max_memory = 64u << 20;
    options.kernel = (rng_next(r) & 1) ? NULL : "scalar";
    options.threads = (int)rng_range(r, 1, 2);
    ebnn_model* model = (ebnn_model*)(uintptr_t)1;
    ebnn_error error;
    memset(&error, 0x55, sizeof(error));
    const ebnn_status status = ebnn_model_load_memory(data, size, &options, &model, &error);
    if (status != EBNN_OK) {
        if (model != NULL) fail("a failed load left a model pointer");
        if (error.status != status) fail("error.status %d != returned %d", error.status, status);
        if (error.message[0] == '\0' || memchr(error.message, '\0', sizeof(error.message)) == NULL) {
            fail("a failed load (status %d) has no message", status);
        }
        c->refused++;
        return status;
    }
    run_model(model, r);
    ebnn_model_free(model);
    c->loaded++;
    return status;
}

static void fuzz_file(const char* path, uint64_t seed, size_t flips) {
    FILE* f = fopen(path, "rb");
    if (f == NULL) {
        fail("cannot open %s", path);
        return;
    }
    fseek(f, 0, SEEK_END);
    const size_t size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t* original = malloc(size);
    uint8_t* copy = malloc(size + 64);
    if (fread(original, 1, size, f) != size) fail("cannot read %s", path);
    fclose(f);
    rng r = {seed};
    counts valid = {0, 0}, truncated = {0, 0}, refit = {0, 0}, checked = {0, 0}, unchecked = {0, 0},
           recrc = {0, 0}, fields = {0, 0};

    if (try_load(original, size, 0, &r, &valid) != EBNN_OK) fail("%s: the valid file does not load", path);
    if (try_load(original, size, EBNN_LOAD_NO_CHECKSUM, &r, &valid) != EBNN_OK) fail("%s: no-checksum load", path);

    /* truncated: always refused */
    const size_t step = size > 600 ? size / 300 : 1;
    for (size_t n = 0; n < size; n += (n < 128 ? 1 : step)) {
        memcpy(copy, original, n);
        if (try_load(copy, n, 0, &r, &truncated) == EBNN_OK) fail("%s truncated to %zu loads", path, n);
        if (try_load(copy, n, EBNN_LOAD_NO_CHECKSUM, &r, &truncated) == EBNN_OK) {
            fail("%s truncated to %zu loads without checksum", path, n);
        }
        /* the same bytes with a header that claims them (size and checksum fixed) */
        if (n >= 64) {
            fix_header(copy, n, true);
            try_load(copy, n, 0, &r, &refit);
        }
    }

    for (size_t i = 0; i < flips; ++i) {
        /* one flipped bit with the checksum on: always refused */
        memcpy(copy, original, size);
        const size_t bit = rng_range(&r, 0, size * 8 - 1);
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        const ebnn_status status = try_load(copy, size, 0, &r, &checked);
        if (status == EBNN_OK) fail("%s: bit %zu flipped loads with the checksum on", path, bit);
        /* 1..8 flips with the checksum off, and with the checksum recomputed */
        memcpy(copy, original, size);
        const size_t n_flips = rng_range(&r, 1, 8);
        for (size_t k = 0; k < n_flips; ++k) {
            /* mostly in the structure (header, tables, ops), sometimes anywhere */
            const size_t limit = (rng_next(&r) & 3) ? (size < 2048 ? size : 2048) : size;
            const size_t b = rng_range(&r, 0, limit * 8 - 1);
            copy[b / 8] ^= (uint8_t)(1u << (b % 8));
        }
        try_load(copy, size, EBNN_LOAD_NO_CHECKSUM, &r, &unchecked);
        fix_header(copy, size, false);
        try_load(copy, size, 0, &r, &recrc);
    }

    /* absurd values in every 32-bit word of the structure, checksum recomputed */
    static const uint32_t values[] = {0, 1, 2, 3, 7, 63, 64, 65, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF,
                                      0x80000000u, 0xFFFFFFFEu, 0xFFFFFFFFu};
    const size_t structure = size < 1536 ? size : 1536;
    for (size_t pos = 0; pos + 4 <= structure; pos += 4) {
        if (pos >= 24 && pos < 28) continue;
        for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); ++v) {
            if ((rng_next(&r) & 3) != 0) continue; /* a quarter of the grid per seed */
            memcpy(copy, original, size);
            put32(copy + pos, values[v]);
            fix_header(copy, size, false);
            try_load(copy, size, 0, &r, &fields);
        }
    }

    /* versions */
    counts versions = {0, 0};
    memcpy(copy, original, size);
    copy[4] = 2, copy[5] = 0;
    fix_header(copy, size, false);
    ebnn_error error;
    ebnn_model* model;
    if (ebnn_model_load_memory(copy, size, NULL, &model, &error) != EBNN_ERROR_VERSION ||
        strstr(error.message, "newer") == NULL) {
        fail("%s: major version 2 gives status %d '%s'", path, error.status, error.message);
    }
    versions.refused++;
    copy[4] = 0;
    fix_header(copy, size, false);
    if (ebnn_model_load_memory(copy, size, NULL, &model, &error) != EBNN_ERROR_VERSION) {
        fail("%s: major version 0 gives status %d", path, error.status);
    }
    versions.refused++;
    /* a newer minor version loads */
    memcpy(copy, original, size);
    copy[6] = 7;
    fix_header(copy, size, false);
    if (try_load(copy, size, 0, &r, &versions) != EBNN_OK) fail("%s: minor version 7 is refused", path);
    /* a file size far beyond the buffer */
    memcpy(copy, original, size);
    put32(copy + 16, 0xFFFFFFF0u), put32(copy + 20, 0x7FFFFFFFu);
    if (ebnn_model_load_memory(copy, size, NULL, &model, &error) != EBNN_ERROR_FORMAT ||
        strstr(error.message, "truncated") == NULL) {
        fail("%s: a huge file_size gives '%s'", path, error.message);
    }
    /* a bit flip anywhere gives the checksum message (when it is not in the first 24 bytes) */
    memcpy(copy, original, size);
    copy[size - 1] ^= 0x10;
    if (ebnn_model_load_memory(copy, size, NULL, &model, &error) != EBNN_ERROR_CHECKSUM ||
        strstr(error.message, "checksum mismatch") == NULL) {
        fail("%s: a flipped last byte gives '%s'", path, error.message);
    }

    printf("%s (%zu bytes): valid %zu loaded; truncated %zu refused; truncated+refit header %zu "
           "refused / %zu loaded; 1 flip + checksum %zu refused; flips, no checksum %zu refused / %zu "
           "loaded+ran; flips + recomputed checksum %zu refused / %zu loaded+ran; absurd fields %zu "
           "refused / %zu loaded+ran; versions ok\n",
           path, size, valid.loaded, truncated.refused, refit.refused, refit.loaded, checked.refused,
           unchecked.refused, unchecked.loaded, recrc.refused, recrc.loaded, fields.refused,
           fields.loaded);
    free(original);
    free(copy);
}

int main(int argc, char** argv) {
    const uint64_t seed = strtoull(arg_value(argc, argv, "--seed", "1"), NULL, 10);
    const size_t flips = strtoull(arg_value(argc, argv, "--flips", "300"), NULL, 10);
    size_t files = 0;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--seed") == 0 || strcmp(argv[i], "--flips") == 0) {
            ++i;
            continue;
        }
        fuzz_file(argv[i], seed + (uint64_t)i, flips);
        ++files;
    }
    if (files == 0) {
        fprintf(stderr, "usage: test_loader [--seed S] [--flips N] FILE.ebnn ...\n");
        return 2;
    }
    printf("%zu file(s): %s\n", files, failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
