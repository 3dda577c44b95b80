/*
 * fipc/pool.h - Python's multiprocessing.Pool: tasks run by forked workers.
 *
 * A pool forks its workers (daemon children: they die with the pool, and a
 * task that starts a Process gets -EPERM) and hands them tasks through an
 * MPMC fipc_queue in an arena of its own; results come back through a
 * second queue.  While the workers are busy, neither side makes a system
 * call per task.  Two threads of the parent serve the pool: a collector
 * that takes the results, runs the callbacks (one at a time, in completion
 * order) and wakes whoever waits, and a watcher that sees a worker die
 * (through a pidfd), fails the task that worker held with -ECHILD and
 * starts a replacement.  No call of the pool waits on a worker that has
 * died.  See docs/pool.md for the design and the differences from Python.
 *
 * A task is a function of the program that created the pool (workers are
 * forks of it, so its address is valid in them): it reads arg_len bytes at
 * arg, writes up to *result_len bytes (which comes in as the capacity) at
 * result, stores the length written in *result_len and returns 0, or a
 * non-zero failure code, which get and the error callback report as is
 * (a negative errno keeps fipc's convention; -ECHILD, -ECANCELED and
 * -EMSGSIZE then mean what the pool means by them).
 *
 * A pool belongs to the process that created it; any of its threads may
 * use it, also several at once.
 */
#ifndef FIPC_POOL_H
#define FIPC_POOL_H

#include <fipc/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fipc_pool fipc_pool;
typedef struct fipc_result fipc_result;

typedef int (*fipc_task_fn)(const void *arg, size_t arg_len, void *result, size_t *result_len);

/* Run in the parent by the pool's collector thread: status 0 with the
 * result (for a map, result is NULL and the results are in the caller's
 * array), or the failure code with result NULL.  One at a time, in the
 * order the tasks completed; a callback should not block for long, since
 * no other result is delivered meanwhile. */
typedef void (*fipc_callback)(void *user, int status, const void *result, size_t result_len);

/* Defaults for the sizes of fipc_pool_opts (0 selects them). */
#define FIPC_POOL_MAX_ARG_DEFAULT    4096u
#define FIPC_POOL_MAX_RESULT_DEFAULT 4096u

typedef struct fipc_pool_opts {
    unsigned processes;             /* workers; 0: the CPUs online */
    int (*initializer)(void *arg);  /* run by each worker first; non-zero: failed */
    void *initarg;                  /* passed to initializer */
    unsigned long maxtasksperchild; /* 0: no limit; else replaced after that many */
    size_t max_arg;                 /* longest argument (a map chunk's); 0: default */
    size_t max_result;              /* longest result (a map chunk's); 0: default */
} fipc_pool_opts;

/* Start a pool and wait until every worker has run its initializer.  opts
 * may be NULL.  Errors: -EINVAL (out NULL, more than 1024 processes, a
 * size above what a queue message holds); -ENOMEM; -EPERM (the caller is
 * a daemon child); fork and thread failures (-EAGAIN ...); if an
 * initializer fails, no pool: its return value when that is a negative
 * errno, -EIO for another non-zero value, -ECHILD when the worker died in
 * it. */
FIPC_EXPORT int fipc_pool_create(fipc_pool **out, const fipc_pool_opts *opts);

/* Run fn on arg in a worker and wait for it: 0 with the result in
 * result[0..*result_len); the task's failure code; -ECHILD (the worker died
 * in it); -EMSGSIZE (arg_len > max_arg, nothing run; or a result longer
 * than result_cap or than the task's capacity); -EPIPE (closed); -ECANCELED
 * (terminated meanwhile); -EINVAL (pool or fn NULL, arg NULL with
 * arg_len > 0, result NULL with result_cap > 0); -EDEADLK from a callback.
 * result_len may be NULL. */
FIPC_EXPORT int fipc_pool_apply(fipc_pool *pool, fipc_task_fn fn, const void *arg, size_t arg_len,
                                void *result, size_t result_cap, size_t *result_len);

/* Queue fn(arg) and return at once; arg is copied.  cb (status 0) or err_cb
 * (failure) runs in the parent when it completes; either may be NULL.
 * out may be NULL (nobody waits for it: the pool frees the result once
 * its callback has run); else release *out with fipc_result_free.  0;
 * -EINVAL, -EMSGSIZE, -EPIPE as for apply; -ENOMEM. */
FIPC_EXPORT int fipc_pool_apply_async(fipc_pool *pool, fipc_task_fn fn, const void *arg,
                                      size_t arg_len, fipc_callback cb, fipc_callback err_cb,
                                      void *user, fipc_result **out);

/* fn on each of the n arguments of arg_size bytes at args, results (each
 * up to result_size bytes, written in place) at results + i * result_size,
 * in input order.  Tasks travel in chunks of chunksize arguments (0: as
 * Python picks, n / (4 * processes) rounded up; either way no more than
 * max_arg and max_result hold).  0 once all succeeded; the first failure
 * otherwise (-ECHILD if a worker died in a chunk), without waiting for the
 * other chunks, which then no longer write to results.  n == 0 is 0.
 * -EINVAL (NULL pool, fn, args or results; arg_size or result_size 0);
 * -EMSGSIZE (arg_size > max_arg or result_size > max_result); -EPIPE;
 * -ECANCELED; -EDEADLK from a callback. */
FIPC_EXPORT int fipc_pool_map(fipc_pool *pool, fipc_task_fn fn, const void *args, size_t n,
                              size_t arg_size, void *results, size_t result_size, size_t chunksize);

/* map without waiting: args are copied; results must stay valid until the
 * result is ready or freed.  cb / err_cb run once, for the whole map. */
FIPC_EXPORT int fipc_pool_map_async(fipc_pool *pool, fipc_task_fn fn, const void *args, size_t n,
                                    size_t arg_size, void *results, size_t result_size,
                                    size_t chunksize, fipc_callback cb, fipc_callback err_cb,
                                    void *user, fipc_result **out);

/* Wait until the result is ready (its callback has run), then: 0 with the
 * result copied to buf and its length in *len (for a map: nothing copied,
 * *len is n * result_size; buf may be NULL); the task's failure code;
 * -EMSGSIZE (cap too small: nothing copied, the result stays);
 * -EAGAIN (timeout_ns 0) or -ETIMEDOUT while pending; -EINVAL (r NULL, or
 * buf NULL with cap > 0); -EDEADLK from a callback, for a pending result.
 * len may be NULL. */
FIPC_EXPORT int fipc_result_get(fipc_result *r, void *buf, size_t cap, size_t *len,
                                int64_t timeout_ns);

/* Wait until ready: 0; -EAGAIN/-ETIMEDOUT; -EINVAL; -EDEADLK as get. */
FIPC_EXPORT int fipc_result_wait(fipc_result *r, int64_t timeout_ns);

/* Whether it is ready; whether it is ready and succeeded.  false for NULL. */
FIPC_EXPORT bool fipc_result_ready(fipc_result *r);
FIPC_EXPORT bool fipc_result_successful(fipc_result *r);

/* Release a result.  A pending one still runs its callback, but writes no
 * more into a map's results once this returns.  NULL is ignored. */
FIPC_EXPORT void fipc_result_free(fipc_result *r);

/* No more submissions (they get -EPIPE); the workers finish what is queued
 * and exit.  0, idempotent; -EINVAL for NULL. */
FIPC_EXPORT int fipc_pool_close(fipc_pool *pool);

/* Kill the workers now and fail every unfinished result with -ECANCELED
 * (its error callback runs); returns once the workers are reaped and the
 * callbacks have run.  0, idempotent; -EINVAL; -EDEADLK from a callback. */
FIPC_EXPORT int fipc_pool_terminate(fipc_pool *pool);

/* After close or terminate: wait until every worker has exited and every
 * callback has run (workers that die meanwhile are replaced while tasks
 * remain, so this ends).  0; -EINVAL (NULL, or neither closed nor
 * terminated, as Python's ValueError); -EDEADLK from a callback. */
FIPC_EXPORT int fipc_pool_join(fipc_pool *pool);

/* Terminate (unless joined), join and release the pool; results not yet
 * freed stay valid to read and free.  NULL is ignored; from a callback it
 * does nothing. */
FIPC_EXPORT void fipc_pool_free(fipc_pool *pool);

/* The number of workers; a snapshot of the pids running now (up to n,
 * returns how many).  0 for NULL. */
FIPC_EXPORT unsigned fipc_pool_processes(const fipc_pool *pool);
FIPC_EXPORT size_t fipc_pool_pids(fipc_pool *pool, int *pids, size_t n);

#ifdef __cplusplus
}
#endif
#endif
