/*
 * pool_map.c - 500 tiny tasks: one Process each, then Pool(6).map.
 *
 * The C version of the classic multiprocessing Pool program: func1 adds
 * i to itself five times.  First 500 processes are started and joined,
 * one per task; then a pool of six workers maps the same function over
 * range(500).  Both are timed; the pool only forks six processes, so it
 * usually takes a small fraction of the time (the times are printed, not
 * checked: they depend on the machine).
 *
 * Exits 0 only if every process exited 0 and every mapped result is 5 * i.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <fipc.h>

#define TASKS 500

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long func1(long i)
{
    long num = 0;
    for (int j = 0; j < 5; j++)
        num += i;
    return num;
}

/* As a Process target: the work, and nothing to return. */
static int func1_process(void *arg)
{
    volatile long num = func1((long)(intptr_t)arg);
    (void)num;
    return 0;
}

/* As a pool task: a long in, a long out. */
static int func1_task(const void *arg, size_t arg_len, void *result, size_t *result_len)
{
    long i;
    memcpy(&i, arg, sizeof i);
    long num = func1(i);
    memcpy(result, &num, sizeof num);
    *result_len = sizeof num;
    return 0;
}

int main(void)
{
    fipc_pool *pool;
    int r = fipc_pool_create(&pool, &(fipc_pool_opts){.processes = 6});
    if (r < 0) {
        fprintf(stderr, "pool: %s\n", fipc_strerror(r));
        return 1;
    }

    static fipc_process *p_list[TASKS];
    double start_time = now_s();
    for (long i = 0; i < TASKS; i++) {
        r = fipc_process_start(&p_list[i], func1_process, (void *)(intptr_t)i, NULL);
        if (r < 0) {
            fprintf(stderr, "start: %s\n", fipc_strerror(r));
            return 1;
        }
    }
    int bad = 0;
    for (int i = 0; i < TASKS; i++) {
        int code = -1;
        fipc_process_join(p_list[i], FIPC_FOREVER);
        if (fipc_process_exitcode(p_list[i], &code) < 0 || code != 0)
            bad++;
        fipc_process_free(p_list[i]);
    }
    double end_time = now_s();
    printf("500 processes: %.4f s\n", end_time - start_time);

    static long args[TASKS], results[TASKS];
    for (long i = 0; i < TASKS; i++)
        args[i] = i;
    double s_time = now_s();
    r = fipc_pool_map(pool, func1_task, args, TASKS, sizeof *args, results, sizeof *results, 0);
    double e_time = now_s();
    printf("Pool(6).map:   %.4f s\n", e_time - s_time);
    if (r < 0) {
        fprintf(stderr, "map: %s\n", fipc_strerror(r));
        return 1;
    }
    for (long i = 0; i < TASKS; i++)
        if (results[i] != 5 * i)
            bad++;
    fipc_pool_close(pool);
    fipc_pool_join(pool);
    fipc_pool_free(pool);
    return bad == 0 ? 0 : 1;
}
