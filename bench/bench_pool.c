/*
 * bench_pool.c - fipc_pool against Python's multiprocessing.Pool and
 * against forking one process per task.
 *
 * Groups (every task squares an int; ns per task, so the figure is also
 * the pool's per-task overhead):
 *   pool-map-100k        fipc_pool_map of 100,000 tasks (default chunksize)
 *                        against Pool.map(range(100000)) (bench_py_pool.py)
 *   pool-apply-async-10k 10,000 fipc_pool_apply_async with a callback, then
 *                        close and join, against Python's apply_async with a
 *                        callback, close, join
 *   pool-map-500-vs-fork fipc_pool_map of 500 tasks against what the seed
 *                        program does without a pool: fork 500 children,
 *                        one per task, then wait for them all
 * Both pools have POOL_PROCS workers, created before the clock starts.
 * Every result is checked; a wrong one fails the run.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fipc.h>

#define POOL_PROCS 4

#ifndef FIPC_BENCH_PY_POOL
#define FIPC_BENCH_PY_POOL "bench/bench_py_pool.py"
#endif

static int square(const void *arg, size_t len, void *res, size_t *res_len)
{
    int64_t x;
    memcpy(&x, arg, sizeof x);
    x *= x;
    memcpy(res, &x, sizeof x);
    *res_len = sizeof x;
    return 0;
}

static int make_pool(fipc_pool **p)
{
    int r = fipc_pool_create(p, &(fipc_pool_opts){.processes = POOL_PROCS});
    return r < 0 ? bench_fail("pool: %s", fipc_strerror(r)) : 0;
}

/* iters tasks through maps of up to `batch` tasks. */
static int run_map(struct bench_run *r, size_t batch)
{
    fipc_pool *p;
    if (make_pool(&p) < 0) return -1;
    int64_t *args = malloc(batch * sizeof *args), *res = malloc(batch * sizeof *res);
    if (!args || !res) return bench_fail("out of memory");
    for (size_t i = 0; i < batch; i++)
        args[i] = (int64_t)i;
    int64_t t0 = bench_now_ns();
    for (uint64_t done = 0; done < r->iters;) {
        size_t n = r->iters - done < batch ? (size_t)(r->iters - done) : batch;
        int e = fipc_pool_map(p, square, args, n, sizeof *args, res, sizeof *res, 0);
        if (e < 0) return bench_fail("map: %s", fipc_strerror(e));
        done += n;
    }
    r->ns = bench_now_ns() - t0;
    for (size_t i = 0; i < batch && i < r->iters; i++)
        if (res[i] != (int64_t)(i * i)) return bench_fail("result %zu is %" PRId64, i, res[i]);
    fipc_pool_free(p);
    free(args);
    free(res);
    return 0;
}

static int run_map_100k(struct bench_run *r)
{
    return run_map(r, 100000);
}

static int run_map_500(struct bench_run *r)
{
    return run_map(r, 500);
}

static uint64_t callbacks;
static int64_t callback_sum;

static void count_result(void *user, int status, const void *res, size_t len)
{
    int64_t y;
    memcpy(&y, res, sizeof y);
    callbacks++;
    callback_sum += y;
}

static int run_apply_async(struct bench_run *r)
{
    fipc_pool *p;
    if (make_pool(&p) < 0) return -1;
    callbacks = 0;
    callback_sum = 0;
    int64_t want = 0;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < r->iters; i++) {
        int64_t x = (int64_t)(i % 1000);
        int e = fipc_pool_apply_async(p, square, &x, sizeof x, count_result, NULL, NULL, NULL);
        if (e < 0) return bench_fail("apply_async: %s", fipc_strerror(e));
        want += x * x;
    }
    fipc_pool_close(p);
    fipc_pool_join(p);
    r->ns = bench_now_ns() - t0;
    if (callbacks != r->iters || callback_sum != want)
        return bench_fail("%" PRIu64 " callbacks, sum %" PRId64, callbacks, callback_sum);
    fipc_pool_free(p);
    return 0;
}

/* The seed's program without a pool: every task in a child of its own. */
static int run_fork_per_task(struct bench_run *r)
{
    enum { BATCH = 500 };
    static pid_t pids[BATCH];
    int64_t t0 = bench_now_ns();
    for (uint64_t done = 0; done < r->iters;) {
        size_t n = r->iters - done < BATCH ? (size_t)(r->iters - done) : BATCH;
        for (size_t i = 0; i < n; i++) {
            pids[i] = fork();
            if (pids[i] < 0) return bench_fail("fork: %s", strerror(errno));
            if (pids[i] == 0) {
                volatile int64_t y = (int64_t)i * (int64_t)i;
                (void)y;
                _exit(0);
            }
        }
        for (size_t i = 0; i < n; i++)
            if (bench_reap(pids[i], "task child") < 0) return -1;
        done += n;
    }
    r->ns = bench_now_ns() - t0;
    return 0;
}

/* The script does a fixed count (arg: "map 100000" or "apply_async 10000"),
 * whatever calibration asks for: one Python run takes long enough. */
struct py_pool_cfg {
    const char *kind;
    unsigned count;
};

static int run_python(struct bench_run *r)
{
    const struct py_pool_cfg *c = r->arg;
    char count[24], procs[16];
    snprintf(count, sizeof count, "%u", c->count);
    snprintf(procs, sizeof procs, "%d", POOL_PROCS);
    unsigned long long done;
    long long ns;
    if (bench_python(FIPC_BENCH_PY_POOL, c->kind, count, procs, &done, &ns) < 0) return -1;
    if (done != c->count)
        return bench_fail("%s counted %llu, not %u", FIPC_BENCH_PY_POOL, done, c->count);
    r->ns = ns;
    r->ops = done;
    return 0;
}

#define T           BENCH_TIME
#define AT_MOST     BENCH_GOAL_TIME_AT_MOST
#define PYCFG(k, n) (&(const struct py_pool_cfg){.kind = (k), .count = (n)})

static const struct bench_case pool_cases[] = {
    {.group = "pool-map-100k",
     .name = "python_pool_map",
     .unit = T,
     .op = "task",
     .fn = run_python,
     .arg = PYCFG("map", 100000),
     .min_iters = 100000},
    {.group = "pool-map-100k",
     .name = "fipc_pool_map",
     .baseline = "python_pool_map",
     .unit = T,
     .op = "task",
     .fn = run_map_100k,
     .min_iters = 100000,
     .goal = AT_MOST(1.0 / 20)},

    {.group = "pool-apply-async-10k",
     .name = "python_apply_async",
     .unit = T,
     .op = "task",
     .fn = run_python,
     .arg = PYCFG("apply_async", 10000),
     .min_iters = 10000},
    {.group = "pool-apply-async-10k",
     .name = "fipc_apply_async",
     .baseline = "python_apply_async",
     .unit = T,
     .op = "task",
     .fn = run_apply_async,
     .min_iters = 10000,
     .goal = AT_MOST(1.0 / 50)},

    {.group = "pool-map-500-vs-fork",
     .name = "fork_per_task",
     .unit = T,
     .op = "task",
     .fn = run_fork_per_task,
     .min_iters = 500},
    {.group = "pool-map-500-vs-fork",
     .name = "fipc_pool_map_500",
     .baseline = "fork_per_task",
     .unit = T,
     .op = "task",
     .fn = run_map_500,
     .min_iters = 500,
     .goal = AT_MOST(1.0 / 10)},
};

/* Without an interpreter the Python cases are left out, and so are the
 * fipc cases measured against them (their ratio would have no baseline). */
static struct bench_case active_cases[sizeof pool_cases / sizeof pool_cases[0]];

__attribute__((constructor)) static void bench_suite_pool(void)
{
    bool have_py = bench_executable_on_path(bench_python_exe()) &&
                   access(FIPC_BENCH_PY_POOL, R_OK) == 0;
    size_t n = 0;
    for (size_t i = 0; i < sizeof pool_cases / sizeof pool_cases[0]; i++) {
        const struct bench_case *c = &pool_cases[i];
        bool python_group = strncmp(c->group, "pool-map-100k", 13) == 0 ||
                            strncmp(c->group, "pool-apply-async", 16) == 0;
        if (python_group && !have_py) continue;
        active_cases[n++] = *c;
    }
    if (!have_py)
        fprintf(stderr,
                "fipc-bench: %s or %s not found: the Pool cases against Python are unavailable\n",
                bench_python_exe(), FIPC_BENCH_PY_POOL);
    bench_register(active_cases, n);
}
