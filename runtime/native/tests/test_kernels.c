/* Kernel sweeps: every kernel set this CPU can run, on random shapes, against obviously-right
 * references written here (bit-exact for binary accumulations and bitpacking, float within
 * rounding). Covers the micro-kernels and the binary convolution driver (staging, groups,
 * indirection, zero-padding correction, threads).
 *
 *   test_kernels [--seed S] [--iterations N] [--kernels "avx512 avx2 scalar"]
 */
#include <math.h>

#include "internal.h"
#include "testutil.h"

static const ebnn_kernels* kernel_set(const char* name) {
    const ebnn_kernels* k = NULL;
    char error[256];
    return ebnn_select_kernels(name, &k, error, sizeof(error)) == EBNN_OK ? k : NULL;
}

/* --- bgemm micro-kernel --------------------------------------------------------------------- */

static void test_bgemm(const ebnn_kernels* k, rng* r, size_t iterations) {
    for (size_t it = 0; it < iterations; ++it) {
        /* sometimes more than 31 words per tap: SIMD byte counters fold inside a tap */
        const size_t taps = rng_range(r, 1, 49), cq = it % 8 == 7 ? rng_range(r, 30, 70) : rng_range(r, 1, 6);
        const size_t span = 64 + taps * 8 + cq;
        uint64_t* data = ebnn_aligned_alloc(span * sizeof(uint64_t) * 2);
        uint64_t* w = ebnn_aligned_alloc(taps * cq * k->bgemm_nr * sizeof(uint64_t));
        size_t* offsets = calloc(taps, sizeof(size_t));
        const uint64_t** rows = calloc(k->bgemm_mr, sizeof(uint64_t*));
        int32_t* acc = calloc(k->bgemm_mr * k->bgemm_nr, sizeof(int32_t));
        for (size_t i = 0; i < span * 2; ++i) data[i] = rng_next(r) & (rng_next(r) | rng_next(r));
        for (size_t i = 0; i < taps * cq * k->bgemm_nr; ++i) w[i] = rng_next(r);
        for (size_t t = 0; t < taps; ++t) offsets[t] = rng_range(r, 0, span - cq);
        for (size_t i = 0; i < k->bgemm_mr; ++i) rows[i] = data + rng_range(r, 0, span);
        k->bgemm(taps, cq, rows, offsets, w, acc);
        for (size_t i = 0; i < k->bgemm_mr; ++i) {
            for (size_t j = 0; j < k->bgemm_nr; ++j) {
                int32_t want = 0;
                for (size_t t = 0; t < taps; ++t)
                    for (size_t q = 0; q < cq; ++q)
                        want += __builtin_popcountll(rows[i][offsets[t] + q] ^ w[(t * cq + q) * k->bgemm_nr + j]);
                if (acc[i * k->bgemm_nr + j] != want) {
                    fail("%s bgemm taps=%zu cq=%zu [%zu][%zu]: %d != %d", k->name, taps, cq, i, j,
                         acc[i * k->bgemm_nr + j], want);
                }
            }
        }
        ebnn_aligned_free(data);
        ebnn_aligned_free(w);
        free(offsets);
        free(rows);
        free(acc);
    }
}

static void test_bgemm32(const ebnn_kernels* k, rng* r, size_t iterations) {
    if (k->bgemm32 == NULL) return;
    for (size_t it = 0; it < iterations; ++it) {
        const size_t taps = rng_range(r, 1, 49), kq = it % 8 == 7 ? rng_range(r, 30, 70) : rng_range(r, 1, 5);
        const size_t span = 64 + taps * 8 + kq;
        uint32_t* data = ebnn_aligned_alloc(span * sizeof(uint32_t) * 2);
        uint32_t* w = ebnn_aligned_alloc(taps * kq * k->bgemm32_nr * sizeof(uint32_t));
        size_t* offsets = calloc(taps, sizeof(size_t));
        const uint32_t** rows = calloc(k->bgemm32_mr, sizeof(uint32_t*));
        int32_t* acc = calloc(k->bgemm32_mr * k->bgemm32_nr, sizeof(int32_t));
        for (size_t i = 0; i < span * 2; ++i) data[i] = (uint32_t)rng_next(r);
        for (size_t i = 0; i < taps * kq * k->bgemm32_nr; ++i) w[i] = (uint32_t)rng_next(r);
        for (size_t t = 0; t < taps; ++t) offsets[t] = rng_range(r, 0, span - kq);
        for (size_t i = 0; i < k->bgemm32_mr; ++i) rows[i] = data + rng_range(r, 0, span);
        k->bgemm32(taps, kq, rows, offsets, w, acc);
        for (size_t i = 0; i < k->bgemm32_mr; ++i) {
            for (size_t j = 0; j < k->bgemm32_nr; ++j) {
                int32_t want = 0;
                for (size_t t = 0; t < taps; ++t)
                    for (size_t q = 0; q < kq; ++q)
                        want += __builtin_popcount(rows[i][offsets[t] + q] ^ w[(t * kq + q) * k->bgemm32_nr + j]);
                if (acc[i * k->bgemm32_nr + j] != want) {
                    fail("%s bgemm32 taps=%zu kq=%zu [%zu][%zu]: %d != %d", k->name, taps, kq, i, j,
                         acc[i * k->bgemm32_nr + j], want);
                }
            }
        }
        ebnn_aligned_free(data);
        ebnn_aligned_free(w);
        free(offsets);
        free(rows);
        free(acc);
    }
}

static void test_bgemm16(const ebnn_kernels* k, rng* r, size_t iterations) {
    if (k->bgemm16 == NULL) return;
    for (size_t it = 0; it < iterations; ++it) {
        const size_t taps = rng_range(r, 1, 49), kq = it % 8 == 7 ? rng_range(r, 30, 70) : rng_range(r, 1, 5);
        const size_t span = 64 + taps * 8 + kq;
        uint16_t* data = ebnn_aligned_alloc(span * sizeof(uint16_t) * 2);
        uint16_t* w = ebnn_aligned_alloc(taps * kq * k->bgemm16_nr * sizeof(uint16_t));
        size_t* offsets = calloc(taps, sizeof(size_t));
        const uint16_t** rows = calloc(k->bgemm16_mr, sizeof(uint16_t*));
        int32_t* acc = calloc(k->bgemm16_mr * k->bgemm16_nr, sizeof(int32_t));
        for (size_t i = 0; i < span * 2; ++i) data[i] = (uint16_t)rng_next(r);
        for (size_t i = 0; i < taps * kq * k->bgemm16_nr; ++i) w[i] = (uint16_t)rng_next(r);
        for (size_t t = 0; t < taps; ++t) offsets[t] = rng_range(r, 0, span - kq);
        for (size_t i = 0; i < k->bgemm16_mr; ++i) rows[i] = data + rng_range(r, 0, span);
        k->bgemm16(taps, kq, rows, offsets, w, acc);
        for (size_t i = 0; i < k->bgemm16_mr; ++i) {
            for (size_t j = 0; j < k->bgemm16_nr; ++j) {
                int32_t want = 0;
                for (size_t t = 0; t < taps; ++t)
                    for (size_t q = 0; q < kq; ++q)
                        want += __builtin_popcount((unsigned)(rows[i][offsets[t] + q] ^ w[(t * kq + q) * k->bgemm16_nr + j]));
                if (acc[i * k->bgemm16_nr + j] != want) {
                    fail("%s bgemm16 taps=%zu kq=%zu [%zu][%zu]: %d != %d", k->name, taps, kq, i, j,
                         acc[i * k->bgemm16_nr + j], want);
                }
            }
        }
        ebnn_aligned_free(data);
        ebnn_aligned_free(w);
        free(offsets);
        free(rows);
        free(acc);
    }
}

/* --- binary convolution driver ---------------------------------------------------------------- */

static int bit_of(const uint64_t* row, size_t c) { return (int)((row[c / 64] >> (c % 64)) & 1); }

/* The obviously-right binary convolution: +-1 values, explicit padding rule. */
static int32_t reference_dot(const ebnn_bconv_geometry* g, const uint64_t* in, const uint64_t* filter,
                             size_t oy, size_t ox, size_t o) {
    const size_t cg = g->in_c / g->groups, og = g->out_c / g->groups, grp = o / og;
    const size_t in_words = (g->in_c + 63) / 64, cq = (cg + 63) / 64;
    int32_t dot = 0;
    for (size_t ky = 0; ky < g->kernel_h; ++ky) {
        for (size_t kx = 0; kx < g->kernel_w; ++kx) {
            const long iy = (long)(oy * g->stride_h + ky * g->dilation_h) - (long)g->pad_top;
            const long ix = (long)(ox * g->stride_w + kx * g->dilation_w) - (long)g->pad_left;
            const bool inside = iy >= 0 && iy < (long)g->in_h && ix >= 0 && ix < (long)g->in_w;
            const uint64_t* wrow = filter + ((o * g->kernel_h + ky) * g->kernel_w + kx) * cq;
            for (size_t c = 0; c < cg; ++c) {
                const int w = bit_of(wrow, c) ? -1 : 1;
                if (inside) {
                    const uint64_t* xrow = in + ((size_t)iy * g->in_w + (size_t)ix) * in_words;
                    dot += (bit_of(xrow, grp * cg + c) ? -1 : 1) * w;
                } else if (g->pad_value == 1) {
                    dot += w;
                }
            }
        }
    }
    return dot;
}

static void random_bits(rng* r, uint64_t* words, size_t rows, size_t length) {
    const size_t per_row = (length + 63) / 64;
    for (size_t i = 0; i < rows; ++i) {
        for (size_t q = 0; q < per_row; ++q) {
            uint64_t v = rng_next(r);
            const size_t left = length - q * 64;
            if (left < 64) v &= (1ull << left) - 1;
            words[i * per_row + q] = v;
        }
    }
}

static void test_bconv(const ebnn_kernels* k, rng* r, size_t iterations, ebnn_pool* pool) {
    for (size_t it = 0; it < iterations; ++it) {
        ebnn_bconv_geometry g;
        memset(&g, 0, sizeof(g));
        const size_t group_choices[] = {1, 1, 1, 2, 3, 4};
        g.groups = group_choices[rng_range(r, 0, 5)];
        /* channels 1..300, not multiples of 32 or 64 most of the time */
        g.in_c = g.groups * rng_range(r, 1, 300 / g.groups);
        g.out_c = g.groups * rng_range(r, 1, 200 / g.groups);
        g.kernel_h = rng_range(r, 1, 7);
        g.kernel_w = rng_range(r, 1, 7);
        if (rng_range(r, 0, 2) == 0) g.kernel_w = g.kernel_h;
        g.stride_h = rng_range(r, 1, 2);
        g.stride_w = rng_range(r, 1, 2);
        g.dilation_h = rng_range(r, 1, 2);
        g.dilation_w = rng_range(r, 1, 2);
        g.pad_top = rng_range(r, 0, g.kernel_h - 1);
        g.pad_bottom = rng_range(r, 0, g.kernel_h - 1);
        g.pad_left = rng_range(r, 0, g.kernel_w - 1);
        g.pad_right = rng_range(r, 0, g.kernel_w - 1);
        g.pad_value = (int)rng_range(r, 0, 1);
        const size_t eff_h = (g.kernel_h - 1) * g.dilation_h + 1, eff_w = (g.kernel_w - 1) * g.dilation_w + 1;
        g.in_h = rng_range(r, eff_h > g.pad_top + g.pad_bottom ? eff_h - g.pad_top - g.pad_bottom : 1, 13);
        g.in_w = rng_range(r, eff_w > g.pad_left + g.pad_right ? eff_w - g.pad_left - g.pad_right : 1, 13);
        if (g.in_h + g.pad_top + g.pad_bottom < eff_h) g.in_h = eff_h;
        if (g.in_w + g.pad_left + g.pad_right < eff_w) g.in_w = eff_w;
        g.out_h = ebnn_out_size(g.in_h, g.kernel_h, g.stride_h, g.dilation_h, g.pad_top, g.pad_bottom);
        g.out_w = ebnn_out_size(g.in_w, g.kernel_w, g.stride_w, g.dilation_w, g.pad_left, g.pad_right);
        const size_t cg = g.in_c / g.groups, cq = (cg + 63) / 64, in_words = (g.in_c + 63) / 64;
        const size_t taps = g.kernel_h * g.kernel_w;
        uint64_t* in = ebnn_aligned_alloc(g.in_h * g.in_w * in_words * sizeof(uint64_t));
        uint64_t* filter = ebnn_aligned_alloc(g.out_c * taps * cq * sizeof(uint64_t));
        random_bits(r, in, g.in_h * g.in_w, g.in_c);
        random_bits(r, filter, g.out_c * taps, cg);
        ebnn_bconv_plan* plan;
        size_t shared, per_thread, packed;
        if (ebnn_bconv_plan_create(&g, filter, k, &plan, &shared, &per_thread, &packed) != EBNN_OK) {
            fail("%s: plan_create failed", k->name);
            continue;
        }
        per_thread = round_up(per_thread, 64);
        const size_t threads = ebnn_pool_threads(pool);
        uint8_t* shared_buf = ebnn_aligned_alloc(shared > 0 ? shared : 64);
        uint8_t* thread_buf = ebnn_aligned_alloc(per_thread * threads);
        const size_t M = g.out_h * g.out_w;
        int32_t* dots = calloc(M * g.out_c, sizeof(int32_t));
        ebnn_bconv_run_dots(plan, in, dots, pool, shared_buf, thread_buf, per_thread);
        size_t bad = 0;
        for (size_t oy = 0; oy < g.out_h; ++oy)
            for (size_t ox = 0; ox < g.out_w; ++ox)
                for (size_t o = 0; o < g.out_c; ++o) {
                    const int32_t want = reference_dot(&g, in, filter, oy, ox, o);
                    const int32_t got = dots[(oy * g.out_w + ox) * g.out_c + o];
                    if (got != want && bad++ < 3) {
                        fail("%s bconv %zux%zux%zu -> %zu k%zux%zu s%zu,%zu d%zu,%zu pads %zu,%zu,%zu,%zu "
                             "value %d groups %zu threads %zu: (%zu,%zu,%zu) %d != %d",
                             k->name, g.in_h, g.in_w, g.in_c, g.out_c, g.kernel_h, g.kernel_w,
                             g.stride_h, g.stride_w, g.dilation_h, g.dilation_w, g.pad_top,
                             g.pad_bottom, g.pad_left, g.pad_right, g.pad_value, g.groups, threads,
                             oy, ox, o, got, want);
                    }
                }
        free(dots);
        ebnn_aligned_free(shared_buf);
        ebnn_aligned_free(thread_buf);
        ebnn_bconv_plan_free(plan);
        ebnn_aligned_free(in);
        ebnn_aligned_free(filter);
    }
}

/* --- float kernels ---------------------------------------------------------------------------- */

static void test_fgemm(const ebnn_kernels* set, rng* r, size_t iterations, bool narrow) {
    if (narrow && set->fgemm_narrow == NULL) return;
    struct {
        const char* name;
        size_t fgemm_mr, fgemm_nr;
        ebnn_fgemm_fn fgemm;
    } kernel = {set->name, narrow ? set->fgemm_narrow_mr : set->fgemm_mr,
                narrow ? set->fgemm_narrow_nr : set->fgemm_nr, narrow ? set->fgemm_narrow : set->fgemm};
    const __typeof__(kernel)* k = &kernel;
    for (size_t it = 0; it < iterations; ++it) {
        const size_t mr = rng_range(r, 1, k->fgemm_mr), nc = rng_range(r, 1, k->fgemm_nr);
        const size_t kc = rng_range(r, 0, 300), a_stride = kc + rng_range(r, 0, 3), c_stride = nc + rng_range(r, 0, 5);
        float* a = calloc(mr * a_stride + 1, sizeof(float));
        float* w = ebnn_aligned_alloc((kc + 1) * k->fgemm_nr * sizeof(float));
        float* c = calloc(mr * c_stride + 8, sizeof(float));
        for (size_t i = 0; i < mr * a_stride; ++i) a[i] = rng_float(r);
        for (size_t i = 0; i < (kc + 1) * k->fgemm_nr; ++i) w[i] = rng_float(r);
        for (size_t i = 0; i < mr * c_stride + 8; ++i) c[i] = 1234.5f;
        const float lo = rng_range(r, 0, 1) ? -INFINITY : -0.5f, hi = rng_range(r, 0, 1) ? INFINITY : 0.75f;
        k->fgemm(mr, nc, kc, a, a_stride, w, c, c_stride, lo, hi);
        for (size_t i = 0; i < mr * c_stride + 8; ++i) {
            const size_t row = i / c_stride, col = i % c_stride;
            if (row < mr && col < nc) {
                double sum = w[col], magnitude = fabs((double)w[col]);
                for (size_t q = 0; q < kc; ++q) {
                    sum += (double)a[row * a_stride + q] * w[k->fgemm_nr + q * k->fgemm_nr + col];
                    magnitude += fabs((double)a[row * a_stride + q] * w[k->fgemm_nr + q * k->fgemm_nr + col]);
                }
                sum = sum < lo ? lo : sum > hi ? hi : sum;
                if (fabs(c[i] - sum) > 1e-5 * magnitude + 1e-6) {
                    fail("%s fgemm mr=%zu nc=%zu kc=%zu [%zu][%zu]: %g != %g", k->name, mr, nc, kc, row,
                         col, (double)c[i], sum);
                }
            } else if (c[i] != 1234.5f) {
                fail("%s fgemm mr=%zu nc=%zu kc=%zu wrote outside its tile at %zu", k->name, mr, nc, kc, i);
            }
        }
        free(a);
        ebnn_aligned_free(w);
        free(c);
    }
}

static void test_dwconv(const ebnn_kernels* k, rng* r, size_t iterations) {
    for (size_t it = 0; it < iterations; ++it) {
        ebnn_dw_params p;
        p.channels = rng_range(r, 1, 70);
        p.kernel_h = rng_range(r, 1, 5), p.kernel_w = rng_range(r, 1, 5);
        p.stride_h = rng_range(r, 1, 2), p.stride_w = rng_range(r, 1, 2);
        p.dilation_h = rng_range(r, 1, 2), p.dilation_w = rng_range(r, 1, 2);
        p.pad_top = rng_range(r, 0, p.kernel_h - 1), p.pad_left = rng_range(r, 0, p.kernel_w - 1);
        const size_t pad_bottom = rng_range(r, 0, p.kernel_h - 1), pad_right = rng_range(r, 0, p.kernel_w - 1);
        p.in_h = rng_range(r, (p.kernel_h - 1) * p.dilation_h + 1, 12);
        p.in_w = rng_range(r, (p.kernel_w - 1) * p.dilation_w + 1, 12);
        const size_t out_h = ebnn_out_size(p.in_h, p.kernel_h, p.stride_h, p.dilation_h, p.pad_top, pad_bottom);
        p.out_w = ebnn_out_size(p.in_w, p.kernel_w, p.stride_w, p.dilation_w, p.pad_left, pad_right);
        p.lo = rng_range(r, 0, 1) ? -INFINITY : 0.0f;
        p.hi = rng_range(r, 0, 1) ? INFINITY : 6.0f;
        const size_t C = p.channels, taps = p.kernel_h * p.kernel_w;
        float* in = calloc(p.in_h * p.in_w * C, sizeof(float));
        float* w = calloc(taps * C, sizeof(float));
        float* bias = calloc(C, sizeof(float));
        float* out = calloc(p.out_w * C, sizeof(float));
        for (size_t i = 0; i < p.in_h * p.in_w * C; ++i) in[i] = rng_float(r) * 4.0f;
        for (size_t i = 0; i < taps * C; ++i) w[i] = rng_float(r);
        for (size_t i = 0; i < C; ++i) bias[i] = rng_float(r);
        for (size_t oy = 0; oy < out_h; ++oy) {
            k->dwconv_row(&p, in, w, bias, out, oy);
            for (size_t ox = 0; ox < p.out_w; ++ox) {
                for (size_t c = 0; c < C; ++c) {
                    double sum = bias[c], magnitude = fabs((double)bias[c]);
                    for (size_t ky = 0; ky < p.kernel_h; ++ky)
                        for (size_t kx = 0; kx < p.kernel_w; ++kx) {
                            const long iy = (long)(oy * p.stride_h + ky * p.dilation_h) - (long)p.pad_top;
                            const long ix = (long)(ox * p.stride_w + kx * p.dilation_w) - (long)p.pad_left;
                            if (iy < 0 || ix < 0 || iy >= (long)p.in_h || ix >= (long)p.in_w) continue;
                            const double v = (double)in[((size_t)iy * p.in_w + (size_t)ix) * C + c] * w[(ky * p.kernel_w + kx) * C + c];
                            sum += v;
                            magnitude += fabs(v);
                        }
                    sum = sum < p.lo ? p.lo : sum > p.hi ? p.hi : sum;
                    if (fabs(out[ox * C + c] - sum) > 1e-5 * magnitude + 1e-6) {
                        fail("%s dwconv C=%zu k%zux%zu (%zu,%zu,%zu): %g != %g", k->name, C, p.kernel_h,
                             p.kernel_w, oy, ox, c, (double)out[ox * C + c], sum);
                    }
                }
            }
        }
        free(in);
        free(w);
        free(bias);
        free(out);
    }
}

static void test_bitpack(const ebnn_kernels* k, rng* r, size_t iterations) {
    for (size_t it = 0; it < iterations; ++it) {
        const size_t rows = rng_range(r, 1, 5), n = rng_range(r, 1, 300), words = (n + 63) / 64;
        const bool affine = rng_range(r, 0, 1);
        float* x = calloc(rows * n, sizeof(float));
        float* m = calloc(n, sizeof(float));
        float* b = calloc(n, sizeof(float));
        uint64_t* out = calloc(rows * words, sizeof(uint64_t));
        for (size_t i = 0; i < rows * n; ++i) {
            const size_t kind = rng_range(r, 0, 9);
            x[i] = kind == 0 ? 0.0f : kind == 1 ? -0.0f : kind == 2 ? NAN : rng_float(r);
        }
        for (size_t i = 0; i < n; ++i) {
            m[i] = rng_float(r) * 3.0f;
            b[i] = rng_float(r);
        }
        k->bitpack(rows, n, x, affine ? m : NULL, affine ? b : NULL, out);
        for (size_t row = 0; row < rows; ++row) {
            for (size_t q = 0; q < words; ++q) {
                uint64_t want = 0;
                for (size_t bit = 0; bit < 64 && q * 64 + bit < n; ++bit) {
                    const size_t c = q * 64 + bit;
                    volatile float y = x[row * n + c];
                    if (affine) {
                        y = y * m[c];
                        y = y + b[c];
                    }
                    want |= (uint64_t)(y < 0.0f) << bit;
                }
                if (out[row * words + q] != want) {
                    fail("%s bitpack n=%zu affine=%d row %zu word %zu: %016" PRIx64 " != %016" PRIx64,
                         k->name, n, affine, row, q, out[row * words + q], want);
                }
            }
        }
        free(x);
        free(m);
        free(b);
        free(out);
    }
}

static void test_bconv_out(const ebnn_kernels* k, rng* r, size_t iterations) {
    for (size_t it = 0; it < iterations; ++it) {
        const size_t nr = k->bgemm_nr, mr = rng_range(r, 1, k->bgemm_mr), nc = rng_range(r, 1, nr);
        const size_t out_stride = nc + rng_range(r, 0, 9);
        const int32_t kbits = (int32_t)rng_range(r, 1, 5000);
        int32_t *acc = calloc(mr * nr, sizeof(int32_t)), *corr = calloc(mr * nr, sizeof(int32_t));
        float *mult = calloc(nc, sizeof(float)), *bias = calloc(nc, sizeof(float));
        float* out = calloc(mr * out_stride, sizeof(float));
        for (size_t i = 0; i < mr * out_stride; ++i) out[i] = 777.0f;
        for (size_t i = 0; i < mr * nr; ++i) {
            acc[i] = (int32_t)rng_range(r, 0, (size_t)kbits);
            corr[i] = (int32_t)rng_range(r, 0, 40) - 20;
        }
        for (size_t j = 0; j < nc; ++j) {
            mult[j] = rng_float(r);
            bias[j] = rng_float(r) * 10.0f;
        }
        const bool with_corr = rng_range(r, 0, 1);
        const int32_t dlo = rng_range(r, 0, 1) ? INT32_MIN : 0, dhi = rng_range(r, 0, 1) ? INT32_MAX : 6;
        const float lo = rng_range(r, 0, 1) ? -INFINITY : 0.0f, hi = INFINITY;
        k->bconv_out(mr, nc, nr, acc, kbits, with_corr ? corr : NULL, mult, bias, dlo, dhi, lo, hi, out, out_stride);
        for (size_t i = 0; i < mr; ++i) {
            for (size_t j = 0; j < out_stride; ++j) {
                if (j >= nc) {
                    if (out[i * out_stride + j] != 777.0f) fail("%s bconv_out wrote outside its tile", k->name);
                    continue;
                }
                int32_t dot = kbits - 2 * acc[i * nr + j] - (with_corr ? corr[i * nr + j] : 0);
                dot = dot < dlo ? dlo : dot > dhi ? dhi : dot;
                volatile float y = (float)dot * mult[j];
                y = y + bias[j];
                const float want = y < lo ? lo : y > hi ? hi : y;
                if (memcmp(&want, &out[i * out_stride + j], sizeof(float)) != 0) {
                    fail("%s bconv_out [%zu][%zu]: %.9g != %.9g", k->name, i, j, (double)out[i * out_stride + j], (double)want);
                }
            }
        }
        free(acc), free(corr), free(mult), free(bias), free(out);
    }
}

static void test_bconv_bits(const ebnn_kernels* k, rng* r, size_t iterations) {
    for (size_t it = 0; it < iterations; ++it) {
        const size_t nr = k->bgemm_nr, mr = rng_range(r, 1, k->bgemm_mr), nc = rng_range(r, 1, nr);
        const int32_t kbits = (int32_t)rng_range(r, 1, 3000);
        int32_t acc[EBNN_MAX_MR * 64], corr[EBNN_MAX_MR * 64], thr[64];
        uint64_t words[EBNN_MAX_MR];
        for (size_t i = 0; i < mr * nr; ++i) {
            acc[i] = (int32_t)rng_range(r, 0, (size_t)kbits);
            corr[i] = (int32_t)rng_range(r, 0, 40) - 20;
        }
        for (size_t j = 0; j < nc; ++j) {
            const size_t kind = rng_range(r, 0, 9);
            thr[j] = kind == 0 ? INT32_MIN : kind == 1 ? INT32_MAX : kbits - 2 * acc[j] + (int32_t)rng_range(r, 0, 4) - 2;
        }
        const bool with_corr = rng_range(r, 0, 1);
        k->bconv_bits(mr, nc, nr, acc, kbits, with_corr ? corr : NULL, thr, words);
        for (size_t i = 0; i < mr; ++i) {
            uint64_t want = 0;
            for (size_t j = 0; j < nc; ++j) {
                const int32_t dot = kbits - 2 * acc[i * nr + j] - (with_corr ? corr[i * nr + j] : 0);
                want |= (uint64_t)(dot < thr[j]) << j;
            }
            if (words[i] != want) fail("%s bconv_bits nc=%zu row %zu: %016" PRIx64 " != %016" PRIx64, k->name, nc, i, words[i], want);
        }
    }
}

static void test_bmaxpool(const ebnn_kernels* k, rng* r, size_t iterations) {
    if (k->bmaxpool_row == NULL) return;
    for (size_t it = 0; it < iterations; ++it) {
        ebnn_bpool_params p;
        p.words = rng_range(r, 1, 7);
        p.kernel_h = rng_range(r, 1, 4), p.kernel_w = rng_range(r, 1, 4);
        p.stride_h = rng_range(r, 1, 3), p.stride_w = rng_range(r, 1, 3);
        p.pad_top = rng_range(r, 0, p.kernel_h - 1), p.pad_left = rng_range(r, 0, p.kernel_w - 1);
        const size_t pad_bottom = rng_range(r, 0, p.kernel_h - 1), pad_right = rng_range(r, 0, p.kernel_w - 1);
        p.in_h = rng_range(r, p.kernel_h, 11), p.in_w = rng_range(r, p.kernel_w, 11);
        const size_t out_h = ebnn_out_size(p.in_h, p.kernel_h, p.stride_h, 1, p.pad_top, pad_bottom);
        p.out_w = ebnn_out_size(p.in_w, p.kernel_w, p.stride_w, 1, p.pad_left, pad_right);
        const size_t cells = p.in_h * p.in_w * p.words;
        uint64_t* in = ebnn_aligned_alloc(cells * sizeof(uint64_t));
        uint64_t* out = calloc(p.out_w * p.words + 1, sizeof(uint64_t));
        /* mostly ones, so that ANDs over a window are not all zero */
        for (size_t i = 0; i < cells; ++i) in[i] = rng_next(r) | rng_next(r) | rng_next(r);
        for (size_t oy = 0; oy < out_h; ++oy) {
            out[p.out_w * p.words] = 0x5a5a5a5a5a5a5a5aull;
            k->bmaxpool_row(&p, in, out, oy);
            if (out[p.out_w * p.words] != 0x5a5a5a5a5a5a5a5aull) fail("%s bmaxpool wrote past its row", k->name);
            for (size_t ox = 0; ox < p.out_w; ++ox) {
                for (size_t q = 0; q < p.words; ++q) {
                    uint64_t want = ~0ull;
                    for (size_t ky = 0; ky < p.kernel_h; ++ky)
                        for (size_t kx = 0; kx < p.kernel_w; ++kx) {
                            const long iy = (long)(oy * p.stride_h + ky) - (long)p.pad_top;
                            const long ix = (long)(ox * p.stride_w + kx) - (long)p.pad_left;
                            if (iy < 0 || ix < 0 || iy >= (long)p.in_h || ix >= (long)p.in_w) continue;
                            want &= in[((size_t)iy * p.in_w + (size_t)ix) * p.words + q];
                        }
                    if (out[ox * p.words + q] != want) {
                        fail("%s bmaxpool k%zux%zu s%zu,%zu (%zu,%zu,%zu): %016" PRIx64 " != %016" PRIx64,
                             k->name, p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, oy, ox, q,
                             out[ox * p.words + q], want);
                    }
                }
            }
        }
        ebnn_aligned_free(in);
        free(out);
    }
}

int main(int argc, char** argv) {
    const uint64_t seed = strtoull(arg_value(argc, argv, "--seed", "1"), NULL, 10);
    const size_t iterations = strtoull(arg_value(argc, argv, "--iterations", "60"), NULL, 10);
    char available[128];
    ebnn_available_kernels(available, sizeof(available));
    const char* names = arg_value(argc, argv, "--kernels", available);
    ebnn_pool* pool = NULL;
    if (ebnn_pool_create(2, &pool) != 0) {
        fprintf(stderr, "cannot create threads\n");
        return 1;
    }
    char list[128];
    snprintf(list, sizeof(list), "%s", names);
    size_t sets = 0;
    for (char* name = strtok(list, " "); name != NULL; name = strtok(NULL, " ")) {
        const ebnn_kernels* k = kernel_set(name);
        if (k == NULL) {
            fail("kernel set '%s' is not available here (available: %s)", name, available);
            continue;
        }
        rng r = {seed * 7919 + 17};
        const int before = failures;
        test_bgemm(k, &r, iterations * 2);
        test_bgemm32(k, &r, iterations);
        test_bgemm16(k, &r, iterations);
        test_bconv(k, &r, iterations, NULL);
        test_bconv(k, &r, iterations / 2 + 1, pool);
        test_fgemm(k, &r, iterations * 2, false);
        test_fgemm(k, &r, iterations, true);
        test_dwconv(k, &r, iterations);
        test_bitpack(k, &r, iterations * 2);
        test_bconv_out(k, &r, iterations * 2);
        test_bconv_bits(k, &r, iterations * 4);
        test_bmaxpool(k, &r, iterations);
        printf("%s: bgemm %zu, bconv %zu (1 and 2 threads), fgemm %zu, dwconv %zu, bitpack %zu, "
               "bconv_out %zu, bconv_bits %zu, bmaxpool %zu cases: %s\n",
               k->name, iterations * 2, iterations + iterations / 2 + 1, iterations * 2, iterations,
               iterations * 2, iterations * 2, iterations * 4, k->bmaxpool_row != NULL ? iterations : 0,
               failures == before ? "ok" : "FAILED");
        ++sets;
    }
    ebnn_pool_destroy(pool);
    printf("%zu kernel set(s), seed %" PRIu64 ": %s\n", sets, seed, failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
