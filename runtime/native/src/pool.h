/* A thread pool owned by one model: the caller and threads-1 workers split a job of n tasks. */
#ifndef EBNN_POOL_H_
#define EBNN_POOL_H_

#include <stddef.h>

typedef struct ebnn_pool ebnn_pool;
/* task runs once for every index < tasks; thread < ebnn_pool_threads(pool) names the thread
   (0 is the caller) so that a task can use that thread's scratch memory. */
typedef void (*ebnn_task_fn)(void* context, size_t task, size_t thread);

/* 0 on success; threads >= 2 (a model with 1 thread has no pool). */
int ebnn_pool_create(size_t threads, ebnn_pool** pool);
void ebnn_pool_destroy(ebnn_pool* pool);
size_t ebnn_pool_threads(const ebnn_pool* pool); /* 1 for NULL */
/* Runs the job and returns when every task is done. pool may be NULL (runs inline). */
void ebnn_pool_run(ebnn_pool* pool, size_t tasks, ebnn_task_fn task, void* context);

#endif
