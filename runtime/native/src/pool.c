/* The model's thread pool.
 *
 * A job is posted by the calling thread, which also runs tasks. Workers spin briefly for the next
 * job (ops follow each other within microseconds; waking a sleeping thread costs 0.05 to 1 ms,
 * more in a VM), then sleep on a condition variable. Tasks are claimed with an atomic counter, so
 * uneven tasks balance themselves.
 *
 * A worker "enters" a job under the mutex only while the job is open; the caller closes the job
 * when it has claimed the last task, then waits only for the workers that entered. A worker that
 * was descheduled (a shared machine) and wakes up late finds the job closed and never touches it,
 * so it cannot delay the caller. */
#define _POSIX_C_SOURCE 200809L
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

enum { SPIN_NS = 1000000, SPIN_CHECK = 128 };

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

typedef struct worker {
    struct ebnn_pool* pool;
    size_t index;
} worker;

struct ebnn_pool {
    size_t threads;
    pthread_t* handles;
    worker* workers;
    size_t started;
    pthread_mutex_t mutex;
    pthread_cond_t wake, done;
    atomic_uint_fast64_t generation; /* incremented for every job (and for stop) */
    atomic_size_t next_task;
    atomic_size_t active; /* workers inside the current job (changed under the mutex) */
    bool open;            /* the current job accepts workers (under the mutex) */
    bool stop;            /* under the mutex */
    size_t tasks;
    ebnn_task_fn task;
    void* context;
};

static void run_tasks(struct ebnn_pool* pool, size_t thread) {
    for (;;) {
        const size_t t = atomic_fetch_add_explicit(&pool->next_task, 1, memory_order_relaxed);
        if (t >= pool->tasks) break;
        pool->task(pool->context, t, thread);
    }
}

static void* worker_main(void* argument) {
    worker* self = argument;
    struct ebnn_pool* pool = self->pool;
    uint_fast64_t seen = 0;
    for (;;) {
        uint_fast64_t now = atomic_load_explicit(&pool->generation, memory_order_acquire);
        const uint64_t start = now == seen ? now_ns() : 0;
        for (unsigned spin = 1; now == seen; ++spin) {
            CPU_RELAX();
            now = atomic_load_explicit(&pool->generation, memory_order_acquire);
            if (spin % SPIN_CHECK == 0 && now_ns() - start > SPIN_NS) break;
        }
        pthread_mutex_lock(&pool->mutex);
        while ((now = atomic_load(&pool->generation)) == seen && !pool->stop) {
            pthread_cond_wait(&pool->wake, &pool->mutex);
        }
        seen = now;
        if (pool->stop) {
            pthread_mutex_unlock(&pool->mutex);
            return NULL;
        }
        const bool enter = pool->open;
        if (enter) atomic_fetch_add(&pool->active, 1);
        pthread_mutex_unlock(&pool->mutex);
        if (!enter) continue; /* woke up after the caller closed the job */
        run_tasks(pool, self->index);
        pthread_mutex_lock(&pool->mutex);
        if (atomic_fetch_sub(&pool->active, 1) == 1) pthread_cond_signal(&pool->done);
        pthread_mutex_unlock(&pool->mutex);
    }
}

int ebnn_pool_create(size_t threads, ebnn_pool** out) {
    *out = NULL;
    if (threads < 2) return -1;
    struct ebnn_pool* pool = calloc(1, sizeof(*pool));
    if (pool == NULL) return -1;
    pool->threads = threads;
    pool->handles = calloc(threads, sizeof(pthread_t));
    pool->workers = calloc(threads, sizeof(worker));
    if (pool->handles == NULL || pool->workers == NULL) {
        free(pool->handles);
        free(pool->workers);
        free(pool);
        return -1;
    }
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->next_task, 0);
    atomic_init(&pool->active, 0);
    for (size_t i = 1; i < threads; ++i) {
        pool->workers[i].pool = pool;
        pool->workers[i].index = i;
        if (pthread_create(&pool->handles[i], NULL, worker_main, &pool->workers[i]) != 0) {
            ebnn_pool_destroy(pool);
            return -1;
        }
        pool->started = i;
    }
    *out = pool;
    return 0;
}

void ebnn_pool_destroy(ebnn_pool* pool) {
    if (pool == NULL) return;
    pthread_mutex_lock(&pool->mutex);
    pool->stop = true;
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (size_t i = 1; i <= pool->started; ++i) pthread_join(pool->handles[i], NULL);
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    free(pool->handles);
    free(pool->workers);
    free(pool);
}

size_t ebnn_pool_threads(const ebnn_pool* pool) { return pool == NULL ? 1 : pool->threads; }

void ebnn_pool_run(ebnn_pool* pool, size_t tasks, ebnn_task_fn task, void* context) {
    if (pool == NULL || tasks <= 1) {
        for (size_t t = 0; t < tasks; ++t) task(context, t, 0);
        return;
    }
    pthread_mutex_lock(&pool->mutex);
    pool->task = task;
    pool->context = context;
    pool->tasks = tasks;
    atomic_store_explicit(&pool->next_task, 0, memory_order_relaxed);
    pool->open = true;
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    run_tasks(pool, 0);
    /* every task is claimed: no new worker may enter; wait for those inside */
    pthread_mutex_lock(&pool->mutex);
    pool->open = false;
    pthread_mutex_unlock(&pool->mutex);
    const uint64_t start = now_ns();
    for (unsigned spin = 1; atomic_load_explicit(&pool->active, memory_order_acquire) != 0; ++spin) {
        CPU_RELAX();
        if (spin % SPIN_CHECK == 0 && now_ns() - start > SPIN_NS) break;
    }
    pthread_mutex_lock(&pool->mutex);
    while (atomic_load(&pool->active) != 0) pthread_cond_wait(&pool->done, &pool->mutex);
    pthread_mutex_unlock(&pool->mutex);
}
