/* CPU features (cpuid + xgetbv on x86-64; NEON is architectural on aarch64) and the choice of a
   kernel set. Computed on every call: the library keeps no global state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

typedef struct cpu_features {
    bool popcnt, avx, avx2, fma, bmi2, avx512f, avx512bw, avx512vl, avx512dq, avx512vpopcntdq,
        avx512bitalg, avx512vnni, os_ymm, os_zmm, neon;
} cpu_features;

static cpu_features detect(void) {
    cpu_features f;
    memset(&f, 0, sizeof(f));
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    f.popcnt = (c >> 23) & 1;
    f.fma = (c >> 12) & 1;
    f.avx = (c >> 28) & 1;
    const bool osxsave = (c >> 27) & 1;
    if (osxsave) {
        unsigned lo, hi;
        __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        (void)hi;
        f.os_ymm = (lo & 0x6) == 0x6;   /* XMM and YMM state */
        f.os_zmm = (lo & 0xe6) == 0xe6; /* + opmask, ZMM_Hi256, Hi16_ZMM */
    }
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f.avx2 = (b >> 5) & 1;
        f.bmi2 = (b >> 8) & 1;
        f.avx512f = (b >> 16) & 1;
        f.avx512dq = (b >> 17) & 1;
        f.avx512bw = (b >> 30) & 1;
        f.avx512vl = (b >> 31) & 1;
        f.avx512vnni = (c >> 11) & 1;
        f.avx512bitalg = (c >> 12) & 1;
        f.avx512vpopcntdq = (c >> 14) & 1;
    }
#elif defined(__aarch64__)
    f.neon = true; /* Advanced SIMD is part of the aarch64 base architecture */
#endif
    return f;
}

typedef struct kernel_entry {
    const char* name;
    const ebnn_kernels* kernels; /* NULL: not in this build */
    bool (*usable)(const cpu_features*);
    const char* needs;
} kernel_entry;

#if defined(__x86_64__)
static bool avx512_usable(const cpu_features* f) {
    return f->avx512f && f->avx512bw && f->avx512vl && f->avx512vpopcntdq && f->avx2 && f->fma &&
           f->os_zmm;
}
static bool avx2_usable(const cpu_features* f) { return f->avx2 && f->fma && f->os_ymm; }
#endif
static bool always(const cpu_features* f) {
    (void)f;
    return true;
}
static bool never(const cpu_features* f) {
    (void)f;
    return false;
}

/* In order of preference. */
static const kernel_entry KERNELS[] = {
#if defined(__x86_64__)
    {"avx512", &ebnn_kernels_avx512, avx512_usable,
     "AVX-512 F/BW/VL/VPOPCNTDQ with OS support for ZMM state"},
    {"avx2", &ebnn_kernels_avx2, avx2_usable, "AVX2 and FMA with OS support for YMM state"},
#else
    {"avx512", NULL, never, "an x86-64 CPU"},
    {"avx2", NULL, never, "an x86-64 CPU"},
#endif
#if defined(__aarch64__)
    {"neon", &ebnn_kernels_neon, always, ""},
#elif defined(__arm__)
    {"neon", NULL, never, "the aarch64 build of the library; this 32-bit armv7 build has the scalar kernels only"},
#else
    {"neon", NULL, never, "an aarch64 CPU"},
#endif
    {"scalar", &ebnn_kernels_scalar, always, ""},
};
enum { N_KERNELS = sizeof(KERNELS) / sizeof(KERNELS[0]) };

static size_t put(char* buffer, size_t size, size_t length, const char* text) {
    const size_t n = strlen(text);
    if (buffer != NULL && size > 0 && length < size - 1) {
        const size_t room = size - 1 - length;
        memcpy(buffer + length, text, n < room ? n : room);
        buffer[length + (n < room ? n : room)] = '\0';
    }
    return length + n;
}

size_t ebnn_available_kernels(char* buffer, size_t size) {
    const cpu_features f = detect();
    size_t length = 0;
    if (buffer != NULL && size > 0) buffer[0] = '\0';
    for (size_t i = 0; i < N_KERNELS; ++i) {
        if (KERNELS[i].kernels != NULL && KERNELS[i].usable(&f)) {
            if (length > 0) length = put(buffer, size, length, " ");
            length = put(buffer, size, length, KERNELS[i].name);
        }
    }
    return length;
}

size_t ebnn_cpu_features(char* buffer, size_t size) {
    const cpu_features f = detect();
    const struct {
        bool on;
        const char* name;
    } list[] = {
        {f.popcnt, "popcnt"},     {f.avx, "avx"},
        {f.avx2, "avx2"},         {f.fma, "fma"},
        {f.bmi2, "bmi2"},         {f.avx512f, "avx512f"},
        {f.avx512dq, "avx512dq"}, {f.avx512bw, "avx512bw"},
        {f.avx512vl, "avx512vl"}, {f.avx512vpopcntdq, "avx512vpopcntdq"},
        {f.avx512bitalg, "avx512bitalg"}, {f.avx512vnni, "avx512vnni"},
        {f.os_ymm, "os_ymm"},     {f.os_zmm, "os_zmm"},
        {f.neon, "neon"},
    };
    size_t length = 0;
    if (buffer != NULL && size > 0) buffer[0] = '\0';
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); ++i) {
        if (!list[i].on) continue;
        if (length > 0) length = put(buffer, size, length, " ");
        length = put(buffer, size, length, list[i].name);
    }
    return length;
}

ebnn_status ebnn_select_kernels(const char* name, const ebnn_kernels** out, char* error,
                                size_t error_size) {
    const cpu_features f = detect();
    const char* source = "the kernel option";
    if (name == NULL || name[0] == '\0' || strcmp(name, "auto") == 0) {
        const char* env = getenv("EDGEBNN_NATIVE_KERNEL");
        if (env != NULL && env[0] != '\0' && strcmp(env, "auto") != 0) {
            name = env;
            source = "EDGEBNN_NATIVE_KERNEL";
        } else {
            name = NULL;
        }
    }
    if (name == NULL) {
        for (size_t i = 0; i < N_KERNELS; ++i) {
            if (KERNELS[i].kernels != NULL && KERNELS[i].usable(&f)) {
                *out = KERNELS[i].kernels;
                return EBNN_OK;
            }
        }
    }
    char available[128];
    ebnn_available_kernels(available, sizeof(available));
    for (size_t i = 0; name != NULL && i < N_KERNELS; ++i) {
        if (strcmp(name, KERNELS[i].name) != 0) continue;
        if (KERNELS[i].kernels == NULL || !KERNELS[i].usable(&f)) {
            return ebnn_fail(error, error_size, EBNN_ERROR_KERNEL,
                             "%s asks for kernel '%s', which %s (it needs %s); available here: %s",
                             source, name,
                             KERNELS[i].kernels == NULL ? "this build of the library lacks"
                                                        : "this CPU cannot run",
                             KERNELS[i].needs, available);
        }
        *out = KERNELS[i].kernels;
        return EBNN_OK;
    }
    return ebnn_fail(error, error_size, EBNN_ERROR_KERNEL,
                     "%s asks for unknown kernel '%.40s'; choose auto, scalar, avx2, avx512 or neon "
                     "(available here: %s)",
                     source, name == NULL ? "" : name, available);
}
