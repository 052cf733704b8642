/* Small helpers of the C test programs: a seeded PRNG, failure counting, kernel set lookup. */
#ifndef EBNN_TESTUTIL_H_
#define EBNN_TESTUTIL_H_

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rng {
    uint64_t s;
} rng;

static inline uint64_t rng_next(rng* r) { /* splitmix64 */
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* uniform in [lo, hi] */
static inline size_t rng_range(rng* r, size_t lo, size_t hi) {
    return lo + (size_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}
static inline float rng_float(rng* r) { /* in [-1, 1) */
    return (float)((double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static int failures = 0;
static void fail(const char* format, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char* format, ...) {
    va_list args;
    va_start(args, format);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
    if (++failures > 50) {
        fprintf(stderr, "too many failures\n");
        exit(1);
    }
}

static inline const char* arg_value(int argc, char** argv, const char* name, const char* fallback) {
    for (int i = 1; i + 1 < argc; ++i) {
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    }
    return fallback;
}

#endif
