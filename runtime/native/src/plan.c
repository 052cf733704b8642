/* Memory: 64-byte aligned allocations, the activation arena (tensors whose lifetimes do not
   overlap share bytes, greedy by size), and the scratch region (shared part + one per thread). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void* ebnn_aligned_alloc(size_t bytes) {
    if (bytes == 0) return NULL;
    const size_t rounded = round_up(bytes, 64);
    if (rounded < bytes) return NULL;
    void* p = NULL;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    memset(p, 0, rounded);
    return p;
}

void ebnn_aligned_free(void* pointer) { free(pointer); }

typedef struct placed {
    size_t tensor, offset, bytes;
    int first, last;
} placed;

static int by_size_desc(const void* a, const void* b) {
    const placed* x = a;
    const placed* y = b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    return x->tensor < y->tensor ? -1 : x->tensor > y->tensor;
}

ebnn_status ebnn_plan_memory(ebnn_model* model) {
    size_t n = 0;
    for (size_t i = 0; i < model->n_tensors; ++i) {
        const ebnn_tensor* t = &model->tensors[i];
        if (!t->is_const && t->first != INT_MAX && t->first <= (int)model->n_ops) ++n;
    }
    placed* items = calloc(n > 0 ? n : 1, sizeof(placed));
    if (items == NULL) return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < model->n_tensors; ++i) {
        const ebnn_tensor* t = &model->tensors[i];
        if (t->is_const || t->first == INT_MAX || t->first > (int)model->n_ops) continue;
        items[k].tensor = i;
        items[k].bytes = round_up(t->bytes, 64);
        items[k].first = t->first;
        /* graph inputs stay intact (the caller's buffer view), outputs until copied */
        items[k].last = t->first < 0 ? (int)model->n_ops : (t->last < t->first ? t->first : t->last);
        ++k;
    }
    qsort(items, n, sizeof(placed), by_size_desc);
    uint64_t total = 0;
    for (size_t i = 0; i < n; ++i) {
        /* the lowest offset that overlaps no placed tensor alive at the same time */
        size_t offset = 0;
        bool moved = true;
        while (moved) {
            moved = false;
            for (size_t j = 0; j < i; ++j) {
                const bool alive = items[j].first <= items[i].last && items[i].first <= items[j].last;
                if (!alive) continue;
                if (offset < items[j].offset + items[j].bytes && items[j].offset < offset + items[i].bytes) {
                    offset = items[j].offset + items[j].bytes;
                    moved = true;
                }
            }
        }
        items[i].offset = offset;
        if ((uint64_t)offset + items[i].bytes > total) total = (uint64_t)offset + items[i].bytes;
        model->tensors[items[i].tensor].offset = offset;
    }
    free(items);
    if (total > model->max_memory) {
        return MODEL_FAIL(model, EBNN_ERROR_MEMORY,
                          "the model needs %llu MiB of activation memory, more than the limit of "
                          "%llu MiB (load option max_memory)",
                          (unsigned long long)(total >> 20), (unsigned long long)(model->max_memory >> 20));
    }
    ebnn_aligned_free(model->arena);
    model->arena = ebnn_aligned_alloc(total > 0 ? (size_t)total : 64);
    if (model->arena == NULL) {
        return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "out of memory for %llu bytes of activations",
                          (unsigned long long)total);
    }
    model->arena_bytes = (size_t)total;
    return EBNN_OK;
}

ebnn_status ebnn_alloc_scratch(ebnn_model* model) {
    size_t shared = 0, per_thread = 0;
    for (size_t i = 0; i < model->n_ops; ++i) {
        shared = max_size(shared, model->ops[i].scratch_shared);
        per_thread = max_size(per_thread, model->ops[i].scratch_per_thread);
    }
    shared = round_up(shared, 64);
    per_thread = round_up(per_thread, 64);
    const size_t threads = (size_t)(model->threads > 0 ? model->threads : 1);
    size_t total;
    if (!mul_size(per_thread, threads, &total) || !add_size(total, shared, &total) ||
        (uint64_t)total + model->arena_bytes > model->max_memory) {
        return MODEL_FAIL(model, EBNN_ERROR_MEMORY,
                          "the model needs more scratch memory than the limit of %llu MiB "
                          "(load option max_memory)",
                          (unsigned long long)(model->max_memory >> 20));
    }
    ebnn_aligned_free(model->scratch);
    model->scratch = ebnn_aligned_alloc(total > 0 ? total : 64);
    if (model->scratch == NULL) return MODEL_FAIL(model, EBNN_ERROR_MEMORY, "out of memory for scratch");
    model->scratch_bytes = total;
    model->scratch_shared_max = shared;
    model->scratch_thread_max = per_thread;
    return EBNN_OK;
}
