/* Kernel benchmark of the native runtime (driven by benchmarks/native_kernels.py).
 *
 *   bench_kernels roofline [seconds]
 *       tight xor-popcount-accumulate loops on data in L1, one per ISA, one thread: the
 *       G binary MAC/s ceiling a binary GEMM kernel of that ISA can reach on this core.
 *   bench_kernels model FILE [kernel] [threads] [runs] [warmup]
 *       loads an .ebnn file (formats/ebnn.py), runs it `runs` times after `warmup` runs and prints
 *       the median time of the whole model and of every op (JSON on one line).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgebnn.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_double(const void* a, const void* b) {
    const double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static double median(double* values, size_t n) {
    qsort(values, n, sizeof(double), compare_double);
    return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

/* 4 KiB of pseudo-random words: stays in L1 */
enum { ROOF_WORDS = 512 };
static void fill(uint64_t* data) {
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < ROOF_WORDS; ++i) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        data[i] = s;
    }
}

volatile uint64_t sink;

/* The roofline is the median rate of short chunks (~0.1 ms), like the layers' medians of short
   runs: a chunk during which the thread was descheduled (a shared machine) does not count. */
enum { MAX_CHUNKS = 1 << 16 };
static double chunk_rates[MAX_CHUNKS];

/* Each loop: one load feeds 8 (or 4) xor-popcount-add chains against register-held words. */
static double roof_scalar(const uint64_t* data, double seconds) {
    uint64_t w[8], a[8] = {0};
    memcpy(w, data + 100, sizeof(w));
    size_t chunks = 0;
    const double start = now_s();
    do {
        const double chunk_start = now_s();
        for (int r = 0; r < 16; ++r) {
            for (size_t i = 0; i < ROOF_WORDS; ++i) {
                const uint64_t x = data[i];
                for (int j = 0; j < 8; ++j) a[j] += (uint64_t)__builtin_popcountll(x ^ w[j]);
            }
        }
        chunk_rates[chunks++] = (double)(16) * ROOF_WORDS * 8 * 64 / (now_s() - chunk_start) / 1e9;
    } while (now_s() - start < seconds && chunks < MAX_CHUNKS);
    sink = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    return median(chunk_rates, chunks);
}

#if defined(__x86_64__)
__attribute__((target("popcnt"))) static double roof_popcnt(const uint64_t* data, double seconds) {
    uint64_t w[8], a[8] = {0};
    memcpy(w, data + 100, sizeof(w));
    size_t chunks = 0;
    const double start = now_s();
    do {
        const double chunk_start = now_s();
        for (int r = 0; r < 64; ++r) {
            for (size_t i = 0; i < ROOF_WORDS; ++i) {
                const uint64_t x = data[i];
                for (int j = 0; j < 8; ++j) a[j] += (uint64_t)__builtin_popcountll(x ^ w[j]);
            }
        }
        chunk_rates[chunks++] = (double)(64) * ROOF_WORDS * 8 * 64 / (now_s() - chunk_start) / 1e9;
    } while (now_s() - start < seconds && chunks < MAX_CHUNKS);
    sink = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    return median(chunk_rates, chunks);
}

/* 2 register-held weight vectors x 3 loaded vectors: 6 chains of byte counts (vpshufb nibble
   table, all in registers), folded into 64-bit sums by vpsadbw every 16 steps. */
__attribute__((target("avx2"))) static double roof_avx2(const uint64_t* data, double seconds) {
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                           2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    const __m256i w0 = _mm256_loadu_si256((const __m256i*)(const void*)(data + 200));
    const __m256i w1 = _mm256_loadu_si256((const __m256i*)(const void*)(data + 204));
    __m256i b[6], s = zero;
    for (int j = 0; j < 6; ++j) b[j] = zero;
    size_t chunks = 0;
    const double start = now_s();
#define POP8(v) _mm256_add_epi8(_mm256_shuffle_epi8(table, _mm256_and_si256(v, low)), \
                                _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), low)))
    do {
        const double chunk_start = now_s();
        for (int r = 0; r < 64; ++r) {
            for (size_t i = 0; i + 16 * 12 <= ROOF_WORDS; i += 16 * 12) { /* 16 steps < 31 */
                for (size_t k = i; k < i + 16 * 12; k += 12) {
                    for (int x = 0; x < 3; ++x) {
                        const __m256i v = _mm256_load_si256((const __m256i*)(const void*)(data + k + 4 * x));
                        b[2 * x] = _mm256_add_epi8(b[2 * x], POP8(_mm256_xor_si256(v, w0)));
                        b[2 * x + 1] = _mm256_add_epi8(b[2 * x + 1], POP8(_mm256_xor_si256(v, w1)));
                    }
                }
                for (int j = 0; j < 6; ++j) {
                    s = _mm256_add_epi64(s, _mm256_sad_epu8(b[j], zero));
                    b[j] = zero;
                }
            }
        }
        chunk_rates[chunks++] = (double)(64) * ((ROOF_WORDS / (16 * 12)) * 16 * 3) * 2 * 256 / (now_s() - chunk_start) / 1e9;
    } while (now_s() - start < seconds && chunks < MAX_CHUNKS);
#undef POP8
    uint64_t out[4];
    _mm256_storeu_si256((__m256i*)(void*)out, s);
    sink = out[0] + out[1] + out[2] + out[3];
    return median(chunk_rates, chunks);
}

__attribute__((target("avx512f,avx512vpopcntdq"))) static double roof_avx512(const uint64_t* data,
                                                                             double seconds) {
    __m512i w[8], a[8];
    for (int j = 0; j < 8; ++j) {
        w[j] = _mm512_loadu_si512((const void*)(data + 64 + 8 * j));
        a[j] = _mm512_setzero_si512();
    }
    size_t chunks = 0;
    const double start = now_s();
    do {
        const double chunk_start = now_s();
        for (int r = 0; r < 256; ++r) {
            for (size_t i = 0; i < ROOF_WORDS; i += 8) {
                const __m512i x = _mm512_load_si512((const void*)(data + i));
                for (int j = 0; j < 8; ++j) {
                    a[j] = _mm512_add_epi64(a[j], _mm512_popcnt_epi64(_mm512_xor_si512(x, w[j])));
                }
            }
        }
        chunk_rates[chunks++] = (double)(256) * (ROOF_WORDS / 8) * 8 * 512 / (now_s() - chunk_start) / 1e9;
    } while (now_s() - start < seconds && chunks < MAX_CHUNKS);
    __m512i total = a[0];
    for (int j = 1; j < 8; ++j) total = _mm512_add_epi64(total, a[j]);
    sink = (uint64_t)_mm512_reduce_add_epi64(total);
    return median(chunk_rates, chunks);
}
#endif

static int roofline(double seconds) {
    static uint64_t data[ROOF_WORDS] __attribute__((aligned(64)));
    fill(data);
    char kernels[128];
    ebnn_available_kernels(kernels, sizeof(kernels));
    printf("{\"roofline\": {\"scalar_portable\": %.2f", roof_scalar(data, seconds));
#if defined(__x86_64__)
    char features[512];
    ebnn_cpu_features(features, sizeof(features));
    if (strstr(features, "popcnt")) printf(", \"scalar_popcnt\": %.2f", roof_popcnt(data, seconds));
    if (strstr(kernels, "avx2")) printf(", \"avx2\": %.2f", roof_avx2(data, seconds));
    if (strstr(kernels, "avx512")) printf(", \"avx512\": %.2f", roof_avx512(data, seconds));
#endif
    printf("}, \"unit\": \"G binary MAC/s, 1 thread\"}\n");
    return 0;
}

/* The roofline of the ISA of a kernel set, measured in this process (a process may land on a
   busier or quieter core than another: compare rates measured side by side). */
static double isa_roofline(const char* kernel_name, double seconds) {
    static uint64_t data[ROOF_WORDS] __attribute__((aligned(64)));
    fill(data);
#if defined(__x86_64__)
    if (strcmp(kernel_name, "avx512") == 0) return roof_avx512(data, seconds);
    if (strcmp(kernel_name, "avx2") == 0) return roof_avx2(data, seconds);
#endif
    return roof_scalar(data, seconds);
}

static int model_bench(const char* path, const char* kernel, int threads, int runs, int warmup) {
    ebnn_load_options options;
    ebnn_load_options_init(&options);
    options.kernel = kernel;
    options.threads = threads;
    options.flags = EBNN_LOAD_PROFILE;
    ebnn_model* model;
    ebnn_error error;
    if (ebnn_model_load_file(path, &options, &model, &error) != EBNN_OK) {
        fprintf(stderr, "bench_kernels: %s\n", error.message);
        return 2;
    }
    const size_t n_ops = ebnn_model_num_ops(model);
    double* totals = calloc((size_t)runs, sizeof(double));
    double* op_times = calloc((size_t)runs * (n_ops ? n_ops : 1), sizeof(double));
    double* column = calloc((size_t)runs, sizeof(double));
    float* input = ebnn_model_input_buffer(model, 0);
    for (size_t i = 0; i < ebnn_model_input_size(model, 0); ++i) input[i] = (float)((i * 7919) % 13) - 6.0f;
    for (int r = 0; r < warmup; ++r) ebnn_model_invoke(model);
    const double roof_before = isa_roofline(ebnn_model_kernel(model), 0.05);
    for (int r = 0; r < runs; ++r) {
        ebnn_model_reset_profile(model);
        const double start = now_s();
        ebnn_model_invoke(model);
        totals[r] = (now_s() - start) * 1e3;
        for (size_t k = 0; k < n_ops; ++k) {
            ebnn_op_info info;
            ebnn_model_op_info(model, k, &info);
            op_times[(size_t)r * n_ops + k] = (double)info.time_ns / 1e6;
        }
    }
    const double roof_after = isa_roofline(ebnn_model_kernel(model), 0.05);
    printf("{\"kernel\": \"%s\", \"threads\": %d, \"runs\": %d, \"median_ms\": %.5f, "
           "\"isa_roofline_gmacs\": %.2f, \"ops\": [",
           ebnn_model_kernel(model), threads, runs, median(totals, (size_t)runs),
           roof_before > roof_after ? roof_before : roof_after);
    for (size_t k = 0; k < n_ops; ++k) {
        ebnn_op_info info;
        ebnn_model_op_info(model, k, &info);
        for (int r = 0; r < runs; ++r) column[r] = op_times[(size_t)r * n_ops + k];
        printf("%s{\"type\": \"%s\", \"name\": \"%s\", \"median_ms\": %.5f, \"binary_macs\": %llu, "
               "\"flops\": %llu}",
               k ? ", " : "", info.type, info.name, median(column, (size_t)runs),
               (unsigned long long)info.binary_macs, (unsigned long long)info.flops);
    }
    printf("]}\n");
    free(totals);
    free(op_times);
    free(column);
    ebnn_model_free(model);
    return 0;
}

int main(int argc, char** argv) {
    if (argc >= 2 && strcmp(argv[1], "roofline") == 0) {
        return roofline(argc >= 3 ? atof(argv[2]) : 0.3);
    }
    if (argc >= 3 && strcmp(argv[1], "model") == 0) {
        const char* kernel = argc >= 4 ? argv[3] : NULL;
        const int threads = argc >= 5 ? atoi(argv[4]) : 1;
        const int runs = argc >= 6 ? atoi(argv[5]) : 20;
        const int warmup = argc >= 7 ? atoi(argv[6]) : 3;
        if (threads < 1 || runs < 1 || warmup < 0) {
            fprintf(stderr, "bench_kernels: threads and runs must be >= 1\n");
            return 2;
        }
        return model_bench(argv[2], kernel, threads, runs, warmup);
    }
    fprintf(stderr,
            "usage: bench_kernels roofline [seconds]\n"
            "       bench_kernels model FILE.ebnn [kernel] [threads] [runs] [warmup]\n");
    return 2;
}
