/*
 * test_pool.c - fipc_pool: tasks in forked workers, results in order,
 * callbacks in the parent, and a worker's death costing only its task.
 *
 * Tasks talk to the test through a MAP_SHARED page mapped before the pool
 * is created (the workers are forks, so they see it): a task says it has
 * started by a counter, and waits for the test on an event there.
 */
#include "common.h"
#include "test_hooks.h"

TestSuite(pool, .timeout = 240);

struct shared {
    fipc_event go;       /* set by the test: blocked tasks may go on */
    fipc_barrier meet;   /* tasks that must run at the same time */
    uint32_t started;    /* tasks that have started */
    uint32_t victim_pid; /* the pid of the task that is to be killed */
    uint32_t init_runs;  /* initializers run */
};

static struct shared *sh;

static void shared_setup(unsigned parties)
{
    sh = test_shared(sizeof *sh);
    cr_assert_eq(fipc_event_init(&sh->go), 0);
    cr_assert_eq(fipc_barrier_init(&sh->meet, parties ? parties : 1), 0);
}

static fipc_pool *make_pool(unsigned processes, unsigned long maxtasks)
{
    fipc_pool_opts o = {.processes = processes, .maxtasksperchild = maxtasks};
    fipc_pool *p = NULL;
    int r = fipc_pool_create(&p, &o);
    cr_assert_eq(r, 0, "create: %s", fipc_strerror(r));
    return p;
}

/* ---- tasks ---- */

static int square(const void *arg, size_t len, void *res, size_t *res_len)
{
    int32_t x;
    memcpy(&x, arg, sizeof x);
    int64_t y = (int64_t)x * x;
    memcpy(res, &y, sizeof y);
    *res_len = sizeof y;
    return 0;
}

static int my_pid(const void *arg, size_t len, void *res, size_t *res_len)
{
    int32_t pid = getpid();
    memcpy(res, &pid, sizeof pid);
    *res_len = sizeof pid;
    return 0;
}

/* Runs only once every party has arrived: they are in different workers. */
static int meet_then_pid(const void *arg, size_t len, void *res, size_t *res_len)
{
    if (fipc_barrier_wait(&sh->meet, HANDSHAKE_NS) < 0) return -ETIMEDOUT;
    return my_pid(arg, len, res, res_len);
}

/* Says it started, then waits for the test (which may kill it meanwhile). */
static int victim(const void *arg, size_t len, void *res, size_t *res_len)
{
    test_flag_set(&sh->victim_pid, (uint32_t)getpid());
    test_flag_add(&sh->started);
    fipc_event_wait(&sh->go, FIPC_FOREVER);
    *res_len = 0;
    return 0;
}

static int crash(const void *arg, size_t len, void *res, size_t *res_len)
{
    int how;
    memcpy(&how, arg, sizeof how);
    test_flag_add(&sh->started);
    if (how == 1) {
        /* A real fault, not a raise (and not a null store, which UBSan
         * would report instead of letting it fault). */
        int *nowhere = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        *(volatile int *)nowhere = 1;
    } else
        _exit(3);
    return 0;
}

/* Square, except that the argument 777 kills its worker. */
static int square_or_die(const void *arg, size_t len, void *res, size_t *res_len)
{
    int32_t x;
    memcpy(&x, arg, sizeof x);
    if (x == 777) raise(SIGKILL);
    return square(arg, len, res, res_len);
}

static int blocked(const void *arg, size_t len, void *res, size_t *res_len)
{
    test_flag_add(&sh->started);
    fipc_event_wait(&sh->go, FIPC_FOREVER);
    *res_len = 0;
    return 0;
}

static int fails(const void *arg, size_t len, void *res, size_t *res_len)
{
    return -ENOENT;
}

static int too_long(const void *arg, size_t len, void *res, size_t *res_len)
{
    *res_len += 1;
    return 0;
}

static int echo(const void *arg, size_t len, void *res, size_t *res_len)
{
    memcpy(res, arg, len);
    *res_len = len;
    return 0;
}

static int child_noop(void *arg)
{
    return 0;
}

static int starts_process(const void *arg, size_t len, void *res, size_t *res_len)
{
    fipc_process *p;
    int r = fipc_process_start(&p, child_noop, NULL, NULL);
    if (r == 0) {
        fipc_process_join(p, FIPC_FOREVER);
        fipc_process_free(p);
    }
    memcpy(res, &r, sizeof r);
    *res_len = sizeof r;
    return 0;
}

static int per_process_value;

static int init_sets_value(void *arg)
{
    per_process_value = *(int *)arg;
    test_flag_add(&sh->init_runs);
    return 0;
}

static int read_value(const void *arg, size_t len, void *res, size_t *res_len)
{
    memcpy(res, &per_process_value, sizeof(int));
    *res_len = sizeof(int);
    return 0;
}

static int init_fails(void *arg)
{
    return -ENOTSUP;
}

static int init_fails_positive(void *arg)
{
    return 1;
}

static int init_dies(void *arg)
{
    raise(SIGKILL);
    return 0;
}

/* ---- running tasks ---- */

Test(pool, processes_zero_means_the_cpus_online)
{
    fipc_pool *p = make_pool(0, 0);
    cr_assert_eq(fipc_pool_processes(p), (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
    fipc_pool_free(p);
}

Test(pool, tasks_run_in_as_many_processes_as_the_pool_has)
{
    shared_setup(3);
    fipc_pool *p = make_pool(3, 0);
    int32_t args[3] = {0}, pids[3];
    /* Each task waits for the other two: three workers run them at once. */
    cr_assert_eq(
        fipc_pool_map(p, meet_then_pid, args, 3, sizeof(int32_t), pids, sizeof(int32_t), 1), 0);
    cr_assert(pids[0] != pids[1] && pids[1] != pids[2] && pids[0] != pids[2]);
    for (int i = 0; i < 3; i++)
        cr_assert(pids[i] != getpid());
    fipc_pool_free(p);
}

Test(pool, map_of_100000_tiny_tasks_gives_every_result_in_order)
{
    fipc_pool *p = make_pool(4, 0);
    size_t n = 100000;
    int32_t *args = malloc(n * sizeof *args);
    int64_t *res = calloc(n, sizeof *res);
    for (size_t i = 0; i < n; i++)
        args[i] = (int32_t)i - 50000;
    cr_assert_eq(fipc_pool_map(p, square, args, n, sizeof *args, res, sizeof *res, 0), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(res[i], (int64_t)args[i] * args[i], "result %zu", i);
    /* chunksize 1 and a chunksize that does not divide n as well */
    memset(res, 0, n * sizeof *res);
    cr_assert_eq(fipc_pool_map(p, square, args, 1000, sizeof *args, res, sizeof *res, 1), 0);
    cr_assert_eq(
        fipc_pool_map(p, square, args + 1000, 9999, sizeof *args, res + 1000, sizeof *res, 7), 0);
    for (size_t i = 0; i < 10999; i++)
        cr_assert_eq(res[i], (int64_t)args[i] * args[i], "result %zu", i);
    free(args);
    free(res);
    fipc_pool_free(p);
}

Test(pool, chunksize_zero_picks_chunks_as_python_does)
{
    /* 2 processes, 100 arguments: divmod(100, 8) = (12, 4), so chunks of 13,
     * 8 of them; with maxtasksperchild = 1 every chunk has its own pid. */
    fipc_pool *p = make_pool(2, 1);
    int32_t args[100] = {0}, pids[100];
    cr_assert_eq(fipc_pool_map(p, my_pid, args, 100, sizeof *args, pids, sizeof *pids, 0), 0);
    int chunks = 1;
    for (int i = 1; i < 100; i++) {
        if (pids[i] != pids[i - 1]) chunks++;
        if (i % 13 != 0)
            cr_assert_eq(pids[i], pids[i - 1], "argument %d is in the chunk of %d", i, i - 1);
    }
    cr_assert_eq(chunks, 8);
    fipc_pool_free(p);
}

Test(pool, map_of_nothing_is_zero)
{
    fipc_pool *p = make_pool(1, 0);
    int32_t a;
    int64_t r;
    cr_assert_eq(fipc_pool_map(p, square, &a, 0, sizeof a, &r, sizeof r, 0), 0);
    fipc_pool_free(p);
}

Test(pool, apply_ten_times_in_a_row)
{
    fipc_pool *p = make_pool(2, 0);
    for (int32_t i = 0; i < 10; i++) {
        int64_t y = -1;
        size_t len = 0;
        cr_assert_eq(fipc_pool_apply(p, square, &i, sizeof i, &y, sizeof y, &len), 0);
        cr_assert_eq(len, sizeof y);
        cr_assert_eq(y, (int64_t)i * i);
    }
    fipc_pool_free(p);
}

Test(pool, apply_async_ten_then_close_join_then_get_in_submission_order)
{
    fipc_pool *p = make_pool(3, 0);
    fipc_result *r[10];
    for (int32_t i = 0; i < 10; i++)
        cr_assert_eq(fipc_pool_apply_async(p, square, &i, sizeof i, NULL, NULL, NULL, &r[i]), 0);
    cr_assert_eq(fipc_pool_close(p), 0);
    cr_assert_eq(fipc_pool_join(p), 0);
    for (int32_t i = 0; i < 10; i++) {
        cr_assert(fipc_result_ready(r[i]));
        cr_assert(fipc_result_successful(r[i]));
        int64_t y;
        size_t len;
        cr_assert_eq(fipc_result_get(r[i], &y, sizeof y, &len, 0), 0);
        cr_assert_eq(y, (int64_t)i * i);
        fipc_result_free(r[i]);
    }
    fipc_pool_free(p);
}

Test(pool, a_task_failure_code_reaches_get_and_the_error_callback)
{
    fipc_pool *p = make_pool(1, 0);
    cr_assert_eq(fipc_pool_apply(p, fails, NULL, 0, NULL, 0, NULL), -ENOENT);
    int32_t args[50] = {0};
    int64_t res[50];
    cr_assert_eq(fipc_pool_map(p, fails, args, 50, sizeof *args, res, sizeof *res, 0), -ENOENT);
    fipc_pool_free(p);
}

/* ---- callbacks ---- */

struct cb_log {
    pid_t parent;
    pthread_t test_thread;
    uint32_t in_callback; /* set while one runs: they must not overlap */
    bool overlap, wrong_process, on_test_thread;
    int order[16];
    int n;
    uint32_t *counts;
    uint32_t errors;
};

static struct cb_log cblog;

static void cb_check(void)
{
    if (__atomic_exchange_n(&cblog.in_callback, 1, __ATOMIC_ACQ_REL)) cblog.overlap = true;
    if (getpid() != cblog.parent) cblog.wrong_process = true;
    if (pthread_equal(pthread_self(), cblog.test_thread)) cblog.on_test_thread = true;
}

static void cb_count(void *user, int status, const void *res, size_t len)
{
    cb_check();
    int64_t y;
    memcpy(&y, res, sizeof y);
    uintptr_t i = (uintptr_t)user;
    if (status != 0 || len != sizeof y || y != (int64_t)i * (int64_t)i) cblog.errors++;
    cblog.counts[i]++;
    __atomic_store_n(&cblog.in_callback, 0, __ATOMIC_RELEASE);
}

static void cb_order(void *user, int status, const void *res, size_t len)
{
    cb_check();
    cblog.order[cblog.n++] = (int)(uintptr_t)user;
    if (status != 0) cblog.errors++;
    __atomic_store_n(&cblog.in_callback, 0, __ATOMIC_RELEASE);
}

static void cb_err(void *user, int status, const void *res, size_t len)
{
    cb_check();
    cblog.order[cblog.n++] = status;
    __atomic_store_n(&cblog.in_callback, 0, __ATOMIC_RELEASE);
}

Test(pool, ten_thousand_callbacks_run_each_exactly_once_in_the_parent_before_join_returns)
{
    size_t n = 10000;
    cblog = (struct cb_log){.parent = getpid(), .test_thread = pthread_self()};
    cblog.counts = calloc(n, sizeof *cblog.counts);
    fipc_pool *p = make_pool(4, 0);
    for (uintptr_t i = 0; i < n; i++) {
        int32_t x = (int32_t)i;
        cr_assert_eq(
            fipc_pool_apply_async(p, square, &x, sizeof x, cb_count, NULL, (void *)i, NULL), 0);
    }
    cr_assert_eq(fipc_pool_close(p), 0);
    cr_assert_eq(fipc_pool_join(p), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(cblog.counts[i], 1, "callback %zu ran %u times", i, cblog.counts[i]);
    cr_assert_eq(cblog.errors, 0);
    cr_assert(!cblog.overlap && !cblog.wrong_process && !cblog.on_test_thread);
    fipc_pool_free(p);
    free(cblog.counts);
}

Test(pool, callbacks_run_in_completion_order_one_at_a_time)
{
    shared_setup(0);
    cblog = (struct cb_log){.parent = getpid(), .test_thread = pthread_self()};
    fipc_pool *p = make_pool(2, 0);
    fipc_result *slow;
    int32_t x = 3;
    /* Submitted first, completes last: it waits for the test. */
    cr_assert_eq(fipc_pool_apply_async(p, blocked, NULL, 0, cb_order, NULL, (void *)1, &slow), 0);
    cr_assert(TEST_WAIT_UNTIL(test_flag_get(&sh->started) == 1, HANDSHAKE_NS));
    cr_assert_eq(fipc_pool_apply_async(p, square, &x, sizeof x, cb_order, NULL, (void *)2, NULL),
                 0);
    cr_assert_eq(fipc_pool_apply_async(p, fails, NULL, 0, NULL, cb_err, NULL, NULL), 0);
    /* Both ran and called back while the first still blocks. */
    cr_assert(TEST_WAIT_UNTIL(__atomic_load_n(&cblog.n, __ATOMIC_ACQUIRE) == 2, HANDSHAKE_NS));
    cr_assert(!fipc_result_ready(slow));
    cr_assert_eq(fipc_result_wait(slow, 0), -EAGAIN);
    cr_assert_eq(fipc_result_get(slow, NULL, 0, NULL, FIPC_MSEC(1)), -ETIMEDOUT);
    fipc_event_set(&sh->go);
    cr_assert_eq(fipc_pool_close(p), 0);
    cr_assert_eq(fipc_pool_join(p), 0);
    cr_assert_eq(cblog.n, 3);
    cr_assert(cblog.order[0] == 2 || cblog.order[1] == 2);
    cr_assert(cblog.order[0] == -ENOENT || cblog.order[1] == -ENOENT);
    cr_assert_eq(cblog.order[2], 1);
    cr_assert(!cblog.overlap && !cblog.wrong_process && !cblog.on_test_thread);
    cr_assert_eq(fipc_result_get(slow, NULL, 0, NULL, 0), 0);
    fipc_result_free(slow);
    fipc_pool_free(p);
}

static void cb_map(void *user, int status, const void *res, size_t len)
{
    cb_check();
    cblog.order[cblog.n++] = status;
    cblog.order[cblog.n++] = (int)len;
    __atomic_store_n(&cblog.in_callback, 0, __ATOMIC_RELEASE);
}

Test(pool, map_async_calls_back_once_for_the_whole_map)
{
    cblog = (struct cb_log){.parent = getpid(), .test_thread = pthread_self()};
    fipc_pool *p = make_pool(2, 0);
    int32_t args[1000];
    int64_t res[1000];
    for (int i = 0; i < 1000; i++)
        args[i] = i;
    fipc_result *r;
    cr_assert_eq(fipc_pool_map_async(p, square, args, 1000, sizeof *args, res, sizeof *res, 0,
                                     cb_map, cb_map, NULL, &r),
                 0);
    size_t len = 0;
    cr_assert_eq(fipc_result_get(r, NULL, 0, &len, HANDSHAKE_NS), 0);
    cr_assert_eq(len, sizeof res);
    cr_assert_eq(cblog.n, 2, "the callback ran before get returned");
    cr_assert_eq(cblog.order[0], 0);
    cr_assert_eq(cblog.order[1], (int)sizeof res);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(res[i], (int64_t)i * i);
    fipc_result_free(r);
    fipc_pool_free(p);
}

static void cb_submits(void *user, int status, const void *res, size_t len)
{
    fipc_pool *p = user;
    int32_t x = 5;
    cblog.order[0] = fipc_pool_apply(p, square, &x, sizeof x, NULL, 0, NULL);
    cblog.order[1] = fipc_pool_join(p);
    cblog.order[2] = fipc_pool_apply_async(p, square, &x, sizeof x, cb_order, NULL, (void *)9,
                                           NULL);
    cblog.n = 3;
}

Test(pool, a_callback_may_submit_but_not_wait)
{
    cblog = (struct cb_log){.parent = getpid(), .test_thread = pthread_self()};
    fipc_pool *p = make_pool(1, 0);
    int32_t x = 2;
    cr_assert_eq(fipc_pool_apply_async(p, square, &x, sizeof x, cb_submits, NULL, p, NULL), 0);
    cr_assert(TEST_WAIT_UNTIL(__atomic_load_n(&cblog.n, __ATOMIC_ACQUIRE) >= 3, HANDSHAKE_NS));
    cr_assert_eq(cblog.order[0], -EDEADLK);
    cr_assert_eq(cblog.order[1], -EINVAL); /* not closed: as Python */
    cr_assert_eq(cblog.order[2], 0);
    cr_assert_eq(fipc_pool_close(p), 0);
    cr_assert_eq(fipc_pool_join(p), 0);
    cr_assert_eq(cblog.n, 4);
    cr_assert_eq(cblog.order[3], 9);
    fipc_pool_free(p);
}

/* ---- death ---- */

static bool has_pid(const int *pids, size_t n, int pid)
{
    for (size_t i = 0; i < n; i++)
        if (pids[i] == pid) return true;
    return false;
}

/* Run victim (or crash(how)) next to 20 squares; kill it if asked. */
static void death_case(int how)
{
    shared_setup(0);
    fipc_pool *p = make_pool(3, 0);
    int before[3];
    cr_assert(TEST_WAIT_UNTIL(fipc_pool_pids(p, before, 3) == 3, HANDSHAKE_NS));
    fipc_result *v;
    if (how < 0)
        cr_assert_eq(fipc_pool_apply_async(p, victim, NULL, 0, NULL, NULL, NULL, &v), 0);
    else
        cr_assert_eq(fipc_pool_apply_async(p, crash, &how, sizeof how, NULL, NULL, NULL, &v), 0);
    cr_assert(TEST_WAIT_UNTIL(test_flag_get(&sh->started) == 1, HANDSHAKE_NS));
    int dead = 0;
    if (how < 0) {
        dead = (int)test_flag_get(&sh->victim_pid);
        cr_assert(has_pid(before, 3, dead));
        cr_assert_eq(kill(dead, SIGKILL), 0);
    }
    fipc_result *r[20];
    for (int32_t i = 0; i < 20; i++)
        cr_assert_eq(fipc_pool_apply_async(p, square, &i, sizeof i, NULL, NULL, NULL, &r[i]), 0);
    cr_assert_eq(fipc_result_get(v, NULL, 0, NULL, HANDSHAKE_NS), -ECHILD);
    cr_assert(!fipc_result_successful(v));
    for (int32_t i = 0; i < 20; i++) {
        int64_t y;
        cr_assert_eq(fipc_result_get(r[i], &y, sizeof y, NULL, HANDSHAKE_NS), 0);
        cr_assert_eq(y, (int64_t)i * i);
        fipc_result_free(r[i]);
    }
    /* The pool keeps its size: a replacement for the dead worker. */
    int now[3];
    cr_assert(TEST_WAIT_UNTIL(fipc_pool_pids(p, now, 3) == 3 && !(dead && has_pid(now, 3, dead)),
                              HANDSHAKE_NS));
    int64_t y;
    int32_t x = 12;
    cr_assert_eq(fipc_pool_apply(p, square, &x, sizeof x, &y, sizeof y, NULL), 0);
    cr_assert_eq(y, 144);
    fipc_result_free(v);
    cr_assert_eq(fipc_pool_close(p), 0);
    cr_assert_eq(fipc_pool_join(p), 0);
    fipc_pool_free(p);
}

Test(pool, a_worker_sigkilled_mid_task_fails_that_task_with_echild_and_the_pool_goes_on)
{
    death_case(-1);
}

Test(pool, a_task_that_segfaults_fails_with_echild_and_the_pool_goes_on)
{
    death_case(1);
}

Test(pool, a_task_that_calls_exit_fails_with_echild_and_the_pool_goes_on)
{
    death_case(2);
}

Test(pool, a_map_whose_chunk_was_lost_fails_with_echild)
{
    fipc_pool *p = make_pool(2, 0);
    size_t n = 2000;
    int32_t *args = malloc(n * sizeof *args);
    int64_t *res = calloc(n, sizeof *res);
    for (size_t i = 0; i < n; i++)
        args[i] = (int32_t)i;
    cr_assert_eq(fipc_pool_map(p, square_or_die, args, n, sizeof *args, res, sizeof *res, 10),
                 -ECHILD);
    /* The pool goes on: the same map without the fatal argument. */
    args[777] = 1;
    cr_assert_eq(fipc_pool_map(p, square_or_die, args, n, sizeof *args, res, sizeof *res, 10), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(res[i], (int64_t)args[i] * args[i]);
    free(args);
    free(res);
    fipc_pool_free(p);
}

/* lib/pool.c's seam: runs in a worker just after its get took a task. */
extern void (*fipc__pool_after_get)(const void *args, size_t len);

static void die_on_555(const void *args, size_t len)
{
    int32_t x;
    memcpy(&x, args, sizeof x);
    if (x == 555) raise(SIGKILL);
}

Test(pool, a_task_lost_with_a_worker_that_died_inside_get_fails_with_echild)
{
    fipc__pool_after_get = die_on_555; /* the workers inherit it */
    fipc_pool *p = make_pool(2, 0);
    int32_t x = 555, y = 5;
    int64_t out;
    /* The worker dies before its slot names the task: only the sweep
     * finds it, as the one task handed out that nobody holds. */
    fipc_result *r;
    cr_assert_eq(fipc_pool_apply_async(p, square, &x, sizeof x, NULL, NULL, NULL, &r), 0);
    cr_assert_eq(fipc_result_get(r, &out, sizeof out, NULL, HANDSHAKE_NS), -ECHILD);
    fipc_result_free(r);
    cr_assert_eq(fipc_pool_apply(p, square, &y, sizeof y, &out, sizeof out, NULL), 0);
    cr_assert_eq(out, 25);
    /* The same inside a map, with other chunks around it. */
    int32_t args[1000];
    int64_t res[1000];
    for (int i = 0; i < 1000; i++)
        args[i] = i;
    cr_assert_eq(fipc_pool_map(p, square, args, 1000, sizeof *args, res, sizeof *res, 1), -ECHILD);
    args[555] = 0;
    cr_assert_eq(fipc_pool_map(p, square, args, 1000, sizeof *args, res, sizeof *res, 1), 0);
    cr_assert_eq(fipc_pool_close(p), 0);
    cr_assert_eq(fipc_pool_join(p), 0);
    fipc_pool_free(p);
}

/* lib/pool.c's seam: runs in a worker before each get of a task. */
extern void (*fipc__pool_before_get)(fipc_queue *tasks);

static void claim_then_die(fipc_queue *tasks)
{
    uint32_t armed = 1;
    /* Once: the test arms it after the first map. */
    if (__atomic_compare_exchange_n(&sh->started, &armed, 2, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        /* Wait for a task to claim, as a get does, then die holding the
         * claim: the queue keeps its slot until a producer that waits
         * repairs it, putting the task again. */
        while (fipc__queue_mpmc_get_claim_only(tasks, 1) != 1)
            sched_yield();
        raise(SIGKILL);
    }
}

Test(pool, a_worker_killed_holding_a_claim_in_get_neither_loses_the_pool_nor_the_ring_slot)
{
    shared_setup(0);
    fipc__pool_before_get = claim_then_die;
    /* One worker: asleep in get when the hook is armed, it takes the first
     * task of the next map, runs it, then claims the second and dies. */
    fipc_pool *p = make_pool(1, 0);
    enum { N = 2000 }; /* far more than the task queue's slots: the ring wraps */
    static int32_t args[N];
    static int64_t res[N];
    for (int i = 0; i < N; i++)
        args[i] = i;
    cr_assert_eq(fipc_pool_map(p, square, args, N, sizeof *args, res, sizeof *res, 1), 0);
    test_flag_set(&sh->started, 1); /* the next get of some worker claims and dies */
    fipc_result *r;
    cr_assert_eq(fipc_pool_map_async(p, square, args, N, sizeof *args, res, sizeof *res, 1, NULL,
                                     NULL, NULL, &r),
                 0);
    cr_assert_eq(fipc_result_wait(r, HANDSHAKE_NS), 0, "the map hangs");
    /* The queue puts the claimed task again once the ring comes round to
     * its slot (docs/death.md, queue-exactly-once-mid-get), so another worker may
     * run it before the pool's sweep gives it up: the map succeeds, with
     * every result right, or fails with -ECHILD; it never hangs. */
    int e = fipc_result_get(r, NULL, 0, NULL, 0);
    cr_assert(e == 0 || e == -ECHILD, "the map: %s", fipc_strerror(e));
    for (int i = 0; e == 0 && i < N; i++)
        cr_assert_eq(res[i], (int64_t)i * i, "result %d", i);
    fipc_result_free(r);
    cr_assert_eq(test_flag_get(&sh->started), 2);
    /* Every slot of the ring is used again. */
    for (int round = 0; round < 3; round++) {
        memset(res, 0, sizeof res);
        cr_assert_eq(fipc_pool_map_async(p, square, args, N, sizeof *args, res, sizeof *res, 1,
                                         NULL, NULL, NULL, &r),
                     0);
        cr_assert_eq(fipc_result_wait(r, HANDSHAKE_NS), 0, "round %d hangs", round);
        cr_assert_eq(fipc_result_get(r, NULL, 0, NULL, 0), 0);
        fipc_result_free(r);
        for (int i = 0; i < N; i++)
            cr_assert_eq(res[i], (int64_t)i * i);
    }
    cr_assert_eq(fipc_pool_close(p), 0);
    cr_assert_eq(fipc_pool_join(p), 0);
    fipc_pool_free(p);
}

/* Dies once, armed by the test, in the get of whichever worker holds the
 * lead then (the hook runs with it held). */
static void die_holding_the_lead(fipc_queue *tasks)
{
    (void)tasks;
    uint32_t armed = 1;
    if (__atomic_compare_exchange_n(&sh->started, &armed, 2, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        raise(SIGKILL);
}

Test(pool, a_worker_killed_holding_the_lead_passes_it_on_and_every_task_still_runs)
{
    shared_setup(2);
    fipc__pool_before_get = die_holding_the_lead;
    fipc_pool *p = make_pool(2, 0);
    int32_t x = 7;
    int64_t out;
    cr_assert_eq(fipc_pool_apply(p, square, &x, sizeof x, &out, sizeof out, NULL), 0);
    /* The next worker to take the lead dies with it: the one waiting in
     * get has left it once this task is taken. */
    test_flag_set(&sh->started, 1);
    cr_assert_eq(fipc_pool_apply(p, square, &x, sizeof x, &out, sizeof out, NULL), 0);
    cr_assert_eq(out, 49);
    enum { N = 1000 };
    static int32_t args[N];
    static int64_t res[N];
    for (int i = 0; i < N; i++)
        args[i] = i;
    fipc_result *r;
    cr_assert_eq(fipc_pool_map_async(p, square, args, N, sizeof *args, res, sizeof *res, 1, NULL,
                                     NULL, NULL, &r),
                 0);
    cr_assert_eq(fipc_result_wait(r, HANDSHAKE_NS), 0, "the map hangs");
    cr_assert_eq(fipc_result_get(r, NULL, 0, NULL, 0), 0);
    fipc_result_free(r);
    for (int i = 0; i < N; i++)
        cr_assert_eq(res[i], (int64_t)i * i, "result %d", i);
    cr_assert_eq(test_flag_get(&sh->started), 2, "the hook never ran");
    /* The lead still moves from worker to worker: two tasks that wait for
     * each other run at once, in both workers (the survivor and the
     * replacement). */
    int32_t two[2] = {0}, pids[2];
    cr_assert_eq(fipc_pool_map_async(p, meet_then_pid, two, 2, sizeof(int32_t), pids,
                                     sizeof(int32_t), 1, NULL, NULL, NULL, &r),
                 0);
    cr_assert_eq(fipc_result_wait(r, HANDSHAKE_NS), 0, "the pair hangs");
    cr_assert_eq(fipc_result_get(r, NULL, 0, NULL, 0), 0);
    fipc_result_free(r);
    cr_assert_neq(pids[0], pids[1]);
    cr_assert_eq(fipc_pool_close(p), 0);
    cr_assert_eq(fipc_pool_join(p), 0);
    fipc_pool_free(p);
}

Test(pool, a_task_submitted_while_another_runs_starts_without_waiting_for_it)
{
    shared_setup(0);
    fipc_pool *p = make_pool(2, 0);
    int32_t x = 3;
    fipc_result *slow, *quick;
    cr_assert_eq(fipc_pool_apply_async(p, blocked, &x, sizeof x, NULL, NULL, NULL, &slow), 0);
    while (test_flag_get(&sh->started) < 1)
        sched_yield();
    /* The worker running the blocked task took it from get, so it has
     * handed the lead on: the other worker waits in get for this one. */
    cr_assert_eq(fipc_pool_apply_async(p, square, &x, sizeof x, NULL, NULL, NULL, &quick), 0);
    int64_t out;
    cr_assert_eq(fipc_result_get(quick, &out, sizeof out, NULL, HANDSHAKE_NS), 0);
    cr_assert_eq(out, 9);
    cr_assert_not(fipc_result_ready(slow));
    fipc_event_set(&sh->go);
    cr_assert_eq(fipc_result_get(slow, NULL, 0, NULL, HANDSHAKE_NS), 0);
    fipc_result_free(quick);
    fipc_result_free(slow);
    cr_assert_eq(fipc_pool_close(p), 0);
    cr_assert_eq(fipc_pool_join(p), 0);
    fipc_pool_free(p);
}

struct killer {
    fipc_pool *pool;
    uint32_t stop;
    int kills;
};

static void *kill_at_random(void *arg)
{
    struct killer *k = arg;
    unsigned seed = 12345;
    while (!test_flag_get(&k->stop)) {
        int pids[8];
        size_t n = fipc_pool_pids(k->pool, pids, 8);
        if (n > 0 && kill(pids[rand_r(&seed) % n], SIGKILL) == 0) k->kills++;
        usleep(500 + rand_r(&seed) % 3000); /* pacing the kills, not a wait */
    }
    return NULL;
}

Test(pool, killing_workers_at_random_during_a_map_never_hangs_it)
{
    fipc_pool *p = make_pool(4, 0);
    size_t n = 10000;
    int32_t *args = malloc(n * sizeof *args);
    int64_t *res = calloc(n, sizeof *res);
    for (size_t i = 0; i < n; i++)
        args[i] = (int32_t)i;
    struct killer k = {.pool = p};
    pthread_t t;
    pthread_create(&t, NULL, kill_at_random, &k);
    int failed = 0, ok = 0;
    /* At least 20 rounds, and on until a kill has cost some map a chunk
     * (most kills find a worker between tasks, which costs nothing). */
    for (int round = 0; round < 20 || (failed == 0 && round < 400); round++) {
        fipc_result *r;
        int e = fipc_pool_map_async(p, square, args, n, sizeof *args, res, sizeof *res, 5, NULL,
                                    NULL, NULL, &r);
        cr_assert_eq(e, 0, "round %d: %s", round, fipc_strerror(e));
        cr_assert_eq(fipc_result_wait(r, HANDSHAKE_NS), 0, "round %d hangs", round);
        e = fipc_result_get(r, NULL, 0, NULL, 0);
        cr_assert(e == 0 || e == -ECHILD, "round %d: %s", round, fipc_strerror(e));
        if (e == 0) {
            ok++;
            for (size_t i = 0; i < n; i++)
                cr_assert_eq(res[i], (int64_t)i * (int64_t)i);
        } else {
            failed++;
        }
        fipc_result_free(r);
    }
    test_flag_set(&k.stop, 1);
    pthread_join(t, NULL);
    cr_assert(k.kills > 0);
    cr_assert(failed > 0, "no map lost a chunk in %d kills", k.kills);
    /* With the killing over, the pool is whole again. */
    cr_assert_eq(fipc_pool_map(p, square, args, n, sizeof *args, res, sizeof *res, 0), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(res[i], (int64_t)i * (int64_t)i);
    cr_assert_eq(fipc_pool_close(p), 0);
    cr_assert_eq(fipc_pool_join(p), 0);
    fipc_pool_free(p);
    free(args);
    free(res);
}

/* ---- ending a pool ---- */

Test(pool, terminate_under_load_returns_cancels_the_rest_and_leaves_no_worker)
{
    shared_setup(0);
    fipc_pool *p = make_pool(3, 0);
    enum { N = 500 };
    static fipc_result *r[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(fipc_pool_apply_async(p, blocked, NULL, 0, NULL, NULL, NULL, &r[i]), 0);
    cr_assert(TEST_WAIT_UNTIL(test_flag_get(&sh->started) == 3, HANDSHAKE_NS));
    int pids[3];
    cr_assert_eq(fipc_pool_pids(p, pids, 3), 3);
    cr_assert_eq(fipc_pool_terminate(p), 0);
    for (int i = 0; i < 3; i++)
        cr_assert(kill(pids[i], 0) < 0 && errno == ESRCH, "worker %d still runs", pids[i]);
    cr_assert_eq(fipc_pool_pids(p, pids, 3), 0);
    for (int i = 0; i < N; i++) {
        cr_assert(fipc_result_ready(r[i]));
        cr_assert_eq(fipc_result_get(r[i], NULL, 0, NULL, 0), -ECANCELED);
        fipc_result_free(r[i]);
    }
    int32_t x = 1;
    cr_assert_eq(fipc_pool_apply_async(p, square, &x, sizeof x, NULL, NULL, NULL, NULL), -EPIPE);
    cr_assert_eq(fipc_pool_join(p), 0);
    cr_assert_eq(fipc_pool_terminate(p), 0);
    fipc_pool_free(p);
}

Test(pool, submitting_after_close_is_epipe_and_join_needs_close)
{
    fipc_pool *p = make_pool(2, 0);
    cr_assert_eq(fipc_pool_join(p), -EINVAL);
    cr_assert_eq(fipc_pool_close(p), 0);
    cr_assert_eq(fipc_pool_close(p), 0);
    int32_t x = 1, a[4] = {0};
    int64_t y, res[4];
    cr_assert_eq(fipc_pool_apply(p, square, &x, sizeof x, &y, sizeof y, NULL), -EPIPE);
    cr_assert_eq(fipc_pool_apply_async(p, square, &x, sizeof x, NULL, NULL, NULL, NULL), -EPIPE);
    cr_assert_eq(fipc_pool_map(p, square, a, 4, sizeof *a, res, sizeof *res, 0), -EPIPE);
    cr_assert_eq(fipc_pool_join(p), 0);
    cr_assert_eq(fipc_pool_join(p), 0);
    fipc_pool_free(p);
}

Test(pool, close_lets_queued_tasks_finish)
{
    fipc_pool *p = make_pool(2, 0);
    enum { N = 3000 }; /* more than the task queue holds: some wait in the backlog */
    static fipc_result *r[N];
    for (int32_t i = 0; i < N; i++)
        cr_assert_eq(fipc_pool_apply_async(p, square, &i, sizeof i, NULL, NULL, NULL, &r[i]), 0);
    cr_assert_eq(fipc_pool_close(p), 0);
    cr_assert_eq(fipc_pool_join(p), 0);
    for (int32_t i = 0; i < N; i++) {
        int64_t y;
        cr_assert_eq(fipc_result_get(r[i], &y, sizeof y, NULL, 0), 0);
        cr_assert_eq(y, (int64_t)i * i);
        fipc_result_free(r[i]);
    }
    fipc_pool_free(p);
}

Test(pool, maxtasksperchild_one_runs_each_task_in_a_different_pid)
{
    fipc_pool *p = make_pool(2, 1);
    enum { N = 20 };
    int32_t args[N] = {0}, pids[N];
    cr_assert_eq(fipc_pool_map(p, my_pid, args, N, sizeof *args, pids, sizeof *pids, 1), 0);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < i; j++)
            cr_assert_neq(pids[i], pids[j], "tasks %d and %d in pid %d", j, i, pids[i]);
    fipc_pool_free(p);
}

Test(pool, free_without_close_ends_the_workers)
{
    shared_setup(0);
    fipc_pool *p = make_pool(2, 0);
    fipc_result *r;
    cr_assert_eq(fipc_pool_apply_async(p, blocked, NULL, 0, NULL, NULL, NULL, &r), 0);
    cr_assert(TEST_WAIT_UNTIL(test_flag_get(&sh->started) == 1, HANDSHAKE_NS));
    int pids[2];
    cr_assert_eq(fipc_pool_pids(p, pids, 2), 2);
    fipc_pool_free(p);
    for (int i = 0; i < 2; i++)
        cr_assert(kill(pids[i], 0) < 0 && errno == ESRCH);
    /* The result outlives the pool. */
    cr_assert_eq(fipc_result_get(r, NULL, 0, NULL, 0), -ECANCELED);
    fipc_result_free(r);
}

/* ---- initializers ---- */

Test(pool, the_initializer_runs_once_in_each_worker)
{
    shared_setup(0);
    int v = 42;
    fipc_pool_opts o = {.processes = 3, .initializer = init_sets_value, .initarg = &v};
    fipc_pool *p;
    cr_assert_eq(fipc_pool_create(&p, &o), 0);
    cr_assert_eq(test_flag_get(&sh->init_runs), 3);
    int got;
    cr_assert_eq(fipc_pool_apply(p, read_value, NULL, 0, &got, sizeof got, NULL), 0);
    cr_assert_eq(got, 42);
    cr_assert_eq(per_process_value, 0, "the initializer ran in the parent");
    fipc_pool_free(p);
}

Test(pool, an_initializer_that_fails_fails_create_with_its_error)
{
    fipc_pool_opts o = {.processes = 3, .initializer = init_fails};
    fipc_pool *p = NULL;
    cr_assert_eq(fipc_pool_create(&p, &o), -ENOTSUP);
    cr_assert_null(p);
    o.initializer = init_fails_positive;
    cr_assert_eq(fipc_pool_create(&p, &o), -EIO);
    o.initializer = init_dies;
    cr_assert_eq(fipc_pool_create(&p, &o), -ECHILD);
    cr_assert_null(p);
}

static int init_fails_after_two(void *arg)
{
    uint32_t runs = __atomic_fetch_add(&sh->init_runs, 1, __ATOMIC_ACQ_REL);
    return runs < 2 ? 0 : -ENOTSUP;
}

Test(pool, a_replacement_whose_initializer_fails_fails_the_tasks_without_a_respawn_loop)
{
    shared_setup(0);
    /* Two workers initialise; each retires after a task, and the
     * replacements' initializers fail. */
    fipc_pool_opts o = {.processes = 2, .initializer = init_fails_after_two, .maxtasksperchild = 1};
    fipc_pool *p;
    cr_assert_eq(fipc_pool_create(&p, &o), 0);
    int32_t args[10] = {0}, pids[10];
    cr_assert_eq(fipc_pool_map(p, my_pid, args, 10, sizeof *args, pids, sizeof *pids, 1), -ENOTSUP);
    cr_assert_eq(fipc_pool_apply(p, my_pid, NULL, 0, pids, sizeof pids, NULL), -ENOTSUP);
    cr_assert_leq(test_flag_get(&sh->init_runs), 4);
    cr_assert_eq(fipc_pool_pids(p, pids, 2), 0);
    cr_assert_eq(fipc_pool_close(p), 0);
    cr_assert_eq(fipc_pool_join(p), 0);
    fipc_pool_free(p);
}

/* ---- limits and bad input ---- */

Test(pool, oversize_arguments_are_emsgsize_at_submission)
{
    fipc_pool_opts o = {.processes = 1, .max_arg = 16, .max_result = 8};
    fipc_pool *p;
    cr_assert_eq(fipc_pool_create(&p, &o), 0);
    char big[17] = "0123456789abcdef", out[32];
    size_t len;
    cr_assert_eq(fipc_pool_apply_async(p, echo, big, 17, NULL, NULL, NULL, NULL), -EMSGSIZE);
    cr_assert_eq(fipc_pool_apply(p, echo, big, 17, out, sizeof out, &len), -EMSGSIZE);
    cr_assert_eq(fipc_pool_map(p, echo, big, 1, 17, out, 8, 0), -EMSGSIZE);
    cr_assert_eq(fipc_pool_map(p, echo, big, 1, 4, out, 9, 0), -EMSGSIZE);
    /* A result longer than the task's capacity, or than the caller's. */
    cr_assert_eq(fipc_pool_apply(p, too_long, NULL, 0, out, sizeof out, &len), -EMSGSIZE);
    cr_assert_eq(fipc_pool_apply(p, echo, big, 8, out, 4, &len), -EMSGSIZE);
    cr_assert_eq(fipc_pool_apply(p, echo, big, 8, out, 8, &len), 0);
    cr_assert_eq(len, 8);
    cr_assert_eq(memcmp(out, big, 8), 0);
    /* Chunks shrink to what max_arg and max_result hold. */
    int32_t a[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    int32_t r[10];
    cr_assert_eq(fipc_pool_map(p, echo, a, 10, 4, r, 4, 100), 0);
    cr_assert_eq(memcmp(a, r, sizeof a), 0);
    fipc_pool_free(p);
}

Test(pool, bad_input_is_einval)
{
    fipc_pool *p;
    cr_assert_eq(fipc_pool_create(NULL, NULL), -EINVAL);
    fipc_pool_opts huge = {.processes = 1, .max_arg = FIPC_QUEUE_ITEM_MAX};
    cr_assert_eq(fipc_pool_create(&p, &huge), -EINVAL);
    p = make_pool(1, 0);
    int32_t x = 0, a[2] = {0};
    int64_t y, r[2];
    cr_assert_eq(fipc_pool_apply(NULL, square, &x, sizeof x, &y, sizeof y, NULL), -EINVAL);
    cr_assert_eq(fipc_pool_apply(p, NULL, &x, sizeof x, &y, sizeof y, NULL), -EINVAL);
    cr_assert_eq(fipc_pool_apply(p, square, NULL, 4, &y, sizeof y, NULL), -EINVAL);
    cr_assert_eq(fipc_pool_apply(p, square, &x, sizeof x, NULL, 8, NULL), -EINVAL);
    cr_assert_eq(fipc_pool_apply_async(NULL, square, &x, 4, NULL, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(fipc_pool_apply_async(p, NULL, &x, 4, NULL, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(fipc_pool_map(NULL, square, a, 2, 4, r, 8, 0), -EINVAL);
    cr_assert_eq(fipc_pool_map(p, NULL, a, 2, 4, r, 8, 0), -EINVAL);
    cr_assert_eq(fipc_pool_map(p, square, NULL, 2, 4, r, 8, 0), -EINVAL);
    cr_assert_eq(fipc_pool_map(p, square, a, 2, 4, NULL, 8, 0), -EINVAL);
    cr_assert_eq(fipc_pool_map(p, square, a, 2, 0, r, 8, 0), -EINVAL);
    cr_assert_eq(fipc_pool_map(p, square, a, 2, 4, r, 0, 0), -EINVAL);
    cr_assert_eq(fipc_pool_map_async(p, square, a, 2, 0, r, 8, 0, NULL, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(fipc_result_get(NULL, NULL, 0, NULL, 0), -EINVAL);
    cr_assert_eq(fipc_result_wait(NULL, 0), -EINVAL);
    cr_assert(!fipc_result_ready(NULL));
    cr_assert(!fipc_result_successful(NULL));
    fipc_result_free(NULL);
    cr_assert_eq(fipc_pool_close(NULL), -EINVAL);
    cr_assert_eq(fipc_pool_join(NULL), -EINVAL);
    cr_assert_eq(fipc_pool_terminate(NULL), -EINVAL);
    cr_assert_eq(fipc_pool_processes(NULL), 0);
    cr_assert_eq(fipc_pool_pids(NULL, (int *)a, 2), 0);
    fipc_pool_free(NULL);
    fipc_result *res;
    cr_assert_eq(fipc_pool_apply_async(p, square, &x, sizeof x, NULL, NULL, NULL, &res), 0);
    cr_assert_eq(fipc_result_get(res, NULL, 8, NULL, HANDSHAKE_NS), -EINVAL);
    cr_assert_eq(fipc_result_wait(res, HANDSHAKE_NS), 0);
    fipc_result_free(res);
    fipc_pool_free(p);
}

static int blocked_signals(const void *arg, size_t len, void *res, size_t *res_len)
{
    sigset_t now;
    pthread_sigmask(SIG_SETMASK, NULL, &now);
    int mask = sigismember(&now, SIGTERM) | sigismember(&now, SIGUSR1) << 1;
    memcpy(res, &mask, sizeof mask);
    *res_len = sizeof mask;
    return 0;
}

Test(pool, workers_have_the_signal_mask_of_the_thread_that_created_the_pool)
{
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, &old);
    fipc_pool *p = make_pool(1, 0);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    int mask = -1;
    cr_assert_eq(fipc_pool_apply(p, blocked_signals, NULL, 0, &mask, sizeof mask, NULL), 0);
    cr_assert_eq(mask, 2, "SIGTERM must reach a worker, SIGUSR1 stays blocked as in the creator");
    fipc_pool_free(p);
}

/* ---- where pools may live ---- */

Test(pool, a_task_that_starts_a_process_gets_eperm)
{
    fipc_pool *p = make_pool(1, 0);
    int r = 0;
    cr_assert_eq(fipc_pool_apply(p, starts_process, NULL, 0, &r, sizeof r, NULL), 0);
    cr_assert_eq(r, -EPERM);
    fipc_pool_free(p);
}

static int pool_in_child(int i, void *arg)
{
    test_child_setup();
    fipc_pool *p;
    CHILD_CHECK(fipc_pool_create(&p, &(fipc_pool_opts){.processes = 2}) == 0, 1);
    int32_t args[100];
    int64_t res[100];
    for (int j = 0; j < 100; j++)
        args[j] = j;
    CHILD_CHECK(fipc_pool_map(p, square, args, 100, sizeof *args, res, sizeof *res, 0) == 0, 2);
    for (int j = 0; j < 100; j++)
        CHILD_CHECK(res[j] == (int64_t)j * j, 3);
    CHILD_CHECK(fipc_pool_close(p) == 0 && fipc_pool_join(p) == 0, 4);
    fipc_pool_free(p);
    return CHILD_OK;
}

Test(pool, a_pool_created_in_a_forked_child_works)
{
    test_expect_ok(test_fork(pool_in_child, 0, NULL));
}
