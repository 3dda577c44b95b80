/*
 * test_lock.c - fipc_lock: mutual exclusion across processes, timeouts,
 * recovery after the holder dies, and the error codes of bad calls.
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 * Children also ask for SIGKILL when the test process dies, so a failed
 * assertion in the parent never leaves one running.
 */
#include "common.h"
#include "futex_faults.h"

#include <fcntl.h>
#include <pthread.h>

#define HAMMER_PROCS 4
#define HAMMER_ITERS 200000

/* ---- Exclusion: a non-atomic counter under the lock stays exact ---- */

struct hammer {
    fipc_lock *lock;
    volatile uint64_t *counter; /* volatile: every ++ is a separate load and store */
};

static int hammer_child(int i, void *arg)
{
    struct hammer *h = arg;
    test_child_setup();
    for (int k = 0; k < HAMMER_ITERS; k++) {
        CHILD_CHECK(fipc_lock_acquire(h->lock, FIPC_FOREVER) == 0, 1);
        *h->counter = *h->counter + 1;
        CHILD_CHECK(fipc_lock_release(h->lock) == 0, 2);
    }
    return CHILD_OK;
}

static void run_hammer(fipc_lock *lock, volatile uint64_t *counter)
{
    struct hammer h = {.lock = lock, .counter = counter};
    pid_t pids[HAMMER_PROCS];
    *counter = 0;
    for (int i = 0; i < HAMMER_PROCS; i++)
        pids[i] = test_fork(hammer_child, i, &h);
    test_reap_within(pids, HAMMER_PROCS, FIPC_SEC(80));
    cr_assert_eq(*counter, (uint64_t)HAMMER_PROCS * HAMMER_ITERS, "counter %llu, want %llu",
                 (unsigned long long)*counter, (unsigned long long)HAMMER_PROCS * HAMMER_ITERS);
    cr_assert_not(fipc_lock_locked(lock), "lock still held after every child released it");
}

Test(lock, counter_exact_with_4_processes_x_200000_increments_in_arena, .timeout = 100)
{
    fipc_arena *a;
    cr_assert_eq(fipc_arena_create(&a, "test_lock", 1 << 20), 0);
    fipc_lock *l = fipc_lock_new(a);
    cr_assert_not_null(l);
    uint64_t *counter = fipc_arena_alloc(a, sizeof *counter, 64);
    cr_assert_not_null(counter);
    run_hammer(l, counter);
    fipc_arena_close(a);
}

Test(lock, counter_exact_with_4_processes_x_200000_increments_in_default_arena, .timeout = 100)
{
    fipc_lock *l = fipc_lock_new(NULL);
    cr_assert_not_null(l);
    uint64_t *counter = test_shared(sizeof *counter);
    run_hammer(l, counter);
}

Test(lock, counter_exact_with_4_processes_x_200000_increments_on_mmap_init, .timeout = 100)
{
    struct {
        fipc_lock lock;
        _Alignas(64) uint64_t counter;
    } *m = test_shared(sizeof *m);
    cr_assert_eq(fipc_lock_init(&m->lock), 0);
    run_hammer(&m->lock, &m->counter);
}

/* ---- The ticket-sale seed: one ticket in a file, ten buyers ---- */

#define BUYERS 10

struct ticket_sale {
    fipc_lock *lock;
    char path[64];
    uint32_t ready, go;
    uint32_t attempts;  /* under the lock */
    uint32_t purchases; /* under the lock */
};

static int read_count(const char *path, long *count)
{
    char buf[32];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    char *end;
    *count = strtol(buf, &end, 10);
    return end == buf ? -1 : 0;
}

static int write_count(const char *path, long count)
{
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld", count);
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, buf, (size_t)len);
    close(fd);
    return n == len ? 0 : -1;
}

static int buyer_child(int i, void *arg)
{
    struct ticket_sale *s = arg;
    long count;
    test_child_setup();
    /* Everyone looks at the tickets first, as in the seed, then they all
     * rush to buy at once. */
    CHILD_CHECK(read_count(s->path, &count) == 0, 1);
    __atomic_fetch_add(&s->ready, 1, __ATOMIC_ACQ_REL);
    CHILD_CHECK(test_wait_until_at_least(&s->go, 1, HANDSHAKE_NS), 2);

    CHILD_CHECK(fipc_lock_acquire(s->lock, FIPC_FOREVER) == 0, 3);
    CHILD_CHECK(read_count(s->path, &count) == 0, 4);
    s->attempts++;
    /* Widen the window between read and write: without exclusion, another
     * buyer would read the same "1" here. */
    sched_yield();
    if (count > 0) {
        count--;
        s->purchases++;
    }
    sched_yield();
    CHILD_CHECK(write_count(s->path, count) == 0, 5);
    CHILD_CHECK(fipc_lock_release(s->lock) == 0, 6);
    return CHILD_OK;
}

Test(lock, ticket_sale_sells_the_one_ticket_exactly_once, .timeout = 60)
{
    struct ticket_sale *s = test_shared(sizeof *s);
    s->lock = fipc_lock_new(NULL);
    cr_assert_not_null(s->lock);
    strcpy(s->path, "/tmp/fipc_ticket_XXXXXX");
    int fd = mkstemp(s->path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    close(fd);
    cr_assert_eq(write_count(s->path, 1), 0);

    pid_t pids[BUYERS];
    for (int i = 0; i < BUYERS; i++)
        pids[i] = test_fork(buyer_child, i, s);
    cr_assert(test_wait_until_at_least(&s->ready, BUYERS, HANDSHAKE_NS), "only %u buyers got ready",
              s->ready);
    test_flag_set(&s->go, 1);
    test_reap_within(pids, BUYERS, REAP_NS);

    long count = -1;
    cr_assert_eq(read_count(s->path, &count), 0);
    unlink(s->path);
    cr_assert_eq(s->attempts, BUYERS, "%u buyers tried, want %d", s->attempts, BUYERS);
    cr_assert_eq(s->purchases, 1, "%u tickets sold, want exactly 1", s->purchases);
    cr_assert_eq(count, 0, "file holds %ld tickets, want 0", count);
}

/* ---- A holder in another process ---- */

struct holder {
    fipc_lock *lock;
    int32_t acquire_ret;
    uint32_t held;    /* set by the holder once acquire returned */
    uint32_t release; /* set by the parent: let go now */
};

/* Take the lock, say so, keep it until told to release (or killed). */
static int holder_child(int i, void *arg)
{
    struct holder *h = arg;
    test_child_setup();
    int r = fipc_lock_acquire(h->lock, 0);
    h->acquire_ret = r;
    test_flag_set(&h->held, 1);
    CHILD_CHECK(r == 0, 1);
    CHILD_CHECK(test_wait_until_at_least(&h->release, 1, FIPC_SEC(50)), 2);
    CHILD_CHECK(fipc_lock_release(h->lock) == 0, 3);
    return CHILD_OK;
}

static pid_t start_holder(struct holder *h)
{
    pid_t pid = test_fork(holder_child, 0, h);
    cr_assert(test_wait_until_at_least(&h->held, 1, HANDSHAKE_NS), "holder never ran");
    cr_assert_eq(h->acquire_ret, 0, "holder's acquire gave %d", h->acquire_ret);
    return pid;
}

static void finish_holder(struct holder *h, pid_t pid)
{
    test_flag_set(&h->release, 1);
    test_expect_ok(pid);
}

static struct holder *new_holder(void)
{
    struct holder *h = test_shared(sizeof *h);
    h->lock = fipc_lock_new(NULL);
    cr_assert_not_null(h->lock);
    return h;
}

Test(lock, acquire_times_out_after_50ms_when_held_by_another_process, .timeout = 60)
{
    struct holder *h = new_holder();
    pid_t pid = start_holder(h);

    int64_t t0 = test_now_ns();
    int r = fipc_lock_acquire(h->lock, FIPC_MSEC(50));
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_eq(r, -ETIMEDOUT, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert_geq(elapsed, FIPC_MSEC(50), "gave up after %lld ns", (long long)elapsed);
    cr_assert_lt(elapsed, FIPC_SEC(5), "took %lld ns", (long long)elapsed);

    finish_holder(h, pid);
    cr_assert_eq(fipc_lock_acquire(h->lock, 0), 0, "free again once the holder let go");
    cr_assert_eq(fipc_lock_release(h->lock), 0);
}

Test(lock, acquire_with_zero_timeout_fails_with_eagain_at_once_when_held, .timeout = 60)
{
    struct holder *h = new_holder();
    pid_t pid = start_holder(h);

    int64_t t0 = test_now_ns();
    int r = fipc_lock_acquire(h->lock, 0);
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_eq(r, -EAGAIN, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert_lt(elapsed, FIPC_SEC(1), "took %lld ns", (long long)elapsed);
    cr_assert(fipc_lock_locked(h->lock));

    finish_holder(h, pid);
}

Test(lock, timed_acquire_is_not_cut_short_by_signals, .timeout = 60)
{
    struct holder *h = new_holder();
    pid_t pid = start_holder(h);

    struct test_pester p = {0};
    test_pester_start(&p);

    int64_t t0 = test_now_ns();
    int r = fipc_lock_acquire(h->lock, FIPC_MSEC(200));
    int64_t elapsed = test_now_ns() - t0;

    test_pester_stop(&p);
    cr_assert_eq(r, -ETIMEDOUT, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert_geq(elapsed, FIPC_MSEC(200), "gave up after %lld ns", (long long)elapsed);
    finish_holder(h, pid);
}

struct sleeper {
    fipc_lock *lock;
    uint32_t ready, done;
};

static int sleeper_child(int i, void *arg)
{
    struct sleeper *w = arg;
    test_child_setup();
    test_flag_set(&w->ready, 1);
    CHILD_CHECK(fipc_lock_acquire(w->lock, FIPC_FOREVER) == 0, 1);
    test_flag_set(&w->done, 1);
    CHILD_CHECK(fipc_lock_release(w->lock) == 0, 2);
    return CHILD_OK;
}

Test(lock, release_wakes_a_process_asleep_in_acquire, .timeout = 60)
{
    struct sleeper *w = test_shared(sizeof *w);
    w->lock = fipc_lock_new(NULL);
    cr_assert_not_null(w->lock);
    cr_assert_eq(fipc_lock_acquire(w->lock, 0), 0);

    pid_t pid = test_fork(sleeper_child, 0, w);
    cr_assert(test_wait_until_at_least(&w->ready, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS), "the waiter never went to sleep");
    cr_assert_eq(__atomic_load_n(&w->done, __ATOMIC_ACQUIRE), 0, "got in while held");
    cr_assert_eq(fipc_lock_release(w->lock), 0);
    test_reap_within(&pid, 1, REAP_NS);
    cr_assert_not(fipc_lock_locked(w->lock));
}

/* ---- Owner death ---- */

Test(lock, acquire_gives_eownerdead_after_the_holder_is_killed, .timeout = 60)
{
    struct holder *h = new_holder();
    pid_t pid = start_holder(h);
    test_kill_and_reap(pid);

    int r = fipc_lock_acquire(h->lock, FIPC_SEC(5));
    cr_assert_eq(r, -EOWNERDEAD, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert(fipc_lock_locked(h->lock), "-EOWNERDEAD means the caller holds the lock");
    cr_assert_eq(fipc_lock_acquire(h->lock, FIPC_MSEC(1)), -EDEADLK, "and holds it as its owner");
    cr_assert_eq(fipc_lock_release(h->lock), 0);
    cr_assert_not(fipc_lock_locked(h->lock));
    cr_assert_eq(fipc_lock_acquire(h->lock, 0), 0, "the death is reported only once");
    cr_assert_eq(fipc_lock_release(h->lock), 0);
}

static int acquire_once_child(int i, void *arg)
{
    fipc_lock *l = arg;
    test_child_setup();
    CHILD_CHECK(fipc_lock_acquire(l, 0) == 0, 1);
    CHILD_CHECK(fipc_lock_release(l) == 0, 2);
    return CHILD_OK;
}

Test(lock, lock_works_normally_in_other_processes_after_owner_death_recovery, .timeout = 60)
{
    struct holder *h = new_holder();
    test_kill_and_reap(start_holder(h));
    cr_assert_eq(fipc_lock_acquire(h->lock, FIPC_SEC(5)), -EOWNERDEAD);
    cr_assert_eq(fipc_lock_release(h->lock), 0);
    test_expect_ok(test_fork(acquire_once_child, 0, h->lock));
    test_expect_ok(test_fork(acquire_once_child, 1, h->lock));
}

struct death_wait {
    struct holder h;
    uint32_t waiter_ready, waiter_done;
    int32_t waiter_ret;
    int64_t woke_ns;
};

static int dead_owner_waiter_child(int i, void *arg)
{
    struct death_wait *d = arg;
    test_child_setup();
    test_flag_set(&d->waiter_ready, 1);
    int r = fipc_lock_acquire(d->h.lock, FIPC_SEC(30));
    d->woke_ns = test_now_ns();
    d->waiter_ret = r;
    test_flag_set(&d->waiter_done, 1);
    CHILD_CHECK(r == -EOWNERDEAD, 1);
    CHILD_CHECK(fipc_lock_locked(d->h.lock), 2);
    CHILD_CHECK(fipc_lock_release(d->h.lock) == 0, 3);
    return CHILD_OK;
}

Test(lock, sleeping_waiter_gets_eownerdead_promptly_when_the_holder_is_killed, .timeout = 60)
{
    struct death_wait *d = test_shared(sizeof *d);
    d->h.lock = fipc_lock_new(NULL);
    cr_assert_not_null(d->h.lock);
    pid_t holder = start_holder(&d->h);

    pid_t waiter = test_fork(dead_owner_waiter_child, 0, d);
    cr_assert(test_wait_until_at_least(&d->waiter_ready, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(waiter, HANDSHAKE_NS), "the waiter never went to sleep");
    cr_assert_eq(__atomic_load_n(&d->waiter_done, __ATOMIC_ACQUIRE), 0,
                 "the waiter got in while the lock was held (ret %d)", d->waiter_ret);

    int64_t killed_ns = test_now_ns();
    test_kill_and_reap(holder);
    cr_assert(test_wait_until_at_least(&d->waiter_done, 1, FIPC_SEC(10)),
              "the waiter was not woken by the holder's death");
    int64_t delay = d->woke_ns - killed_ns;
    cr_assert_eq(d->waiter_ret, -EOWNERDEAD, "waiter's acquire gave %d (%s)", d->waiter_ret,
                 fipc_strerror(d->waiter_ret));
    cr_assert_lt(delay, FIPC_SEC(2), "the waiter woke %lld ns after the death", (long long)delay);
    test_expect_ok(waiter);
    cr_assert_eq(fipc_lock_acquire(d->h.lock, 0), 0, "the waiter released the lock");
    cr_assert_eq(fipc_lock_release(d->h.lock), 0);
}

static void *take_lock_and_exit(void *arg)
{
    return (void *)(intptr_t)fipc_lock_acquire(arg, 0);
}

Test(lock, acquire_gives_eownerdead_after_the_holder_thread_exits, .timeout = 60)
{
    fipc_lock *l = fipc_lock_new(NULL);
    cr_assert_not_null(l);
    pthread_t t;
    void *ret;
    cr_assert_eq(pthread_create(&t, NULL, take_lock_and_exit, l), 0);
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_eq((intptr_t)ret, 0, "the thread's acquire gave %d", (int)(intptr_t)ret);

    int r = fipc_lock_acquire(l, FIPC_SEC(5));
    cr_assert_eq(r, -EOWNERDEAD, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert_eq(fipc_lock_release(l), 0);
    cr_assert_eq(fipc_lock_acquire(l, 0), 0);
    cr_assert_eq(fipc_lock_release(l), 0);
}

/* ---- Killed between release and wake ---- */

struct dying_release {
    fipc_lock *lock;
    uint32_t held;    /* the holder has the lock */
    uint32_t waiting; /* the waiter is about to block; waiter is set */
    pid_t waiter;
};

/* Take the lock, let the waiter fall asleep on it, then release it and be
 * killed after the exchange freed the word but before the wake. */
static int release_and_die_child(int i, void *arg)
{
    struct dying_release *d = arg;
    test_child_setup();
    CHILD_CHECK(fipc_lock_acquire(d->lock, 0) == 0, 1);
    test_flag_set(&d->held, 1);
    CHILD_CHECK(test_wait_until_at_least(&d->waiting, 1, HANDSHAKE_NS), 2);
    CHILD_CHECK(test_wait_sleeping(d->waiter, HANDSHAKE_NS), 3);
    fault_kill_at_next_wake();
    fipc_lock_release(d->lock);
    return CHILD_FAIL(4);
}

static int wait_for_the_kernel_child(int i, void *arg)
{
    struct dying_release *d = arg;
    test_child_setup();
    /* No re-check after a second: only a wake can end this sleep, and the
     * only one left to make it is the kernel's. */
    fault_sleep_until_woken();
    d->waiter = getpid();
    test_flag_set(&d->waiting, 1);
    /* 0, not -EOWNERDEAD: the holder had released the lock when it died. */
    CHILD_CHECK(fipc_lock_acquire(d->lock, FIPC_FOREVER) == 0, 1);
    CHILD_CHECK(fipc_lock_release(d->lock) == 0, 2);
    return CHILD_OK;
}

/* The releaser keeps the lock in its robust list's list_op_pending until
 * after the wake; dying in between, it leaves the kernel a pending unlock of
 * a free word, and the kernel wakes one waiter in its place. */
Test(lock, waiter_gets_the_lock_when_the_holder_dies_between_release_and_wake, .timeout = 60)
{
    struct dying_release *d = test_shared(sizeof *d);
    d->lock = fipc_lock_new(NULL);
    cr_assert_not_null(d->lock);
    pid_t pids[2];
    int status[2];
    pids[0] = test_fork(release_and_die_child, 0, d);
    cr_assert(test_wait_until_at_least(&d->held, 1, HANDSHAKE_NS), "the holder never ran");
    pids[1] = test_fork(wait_for_the_kernel_child, 1, d);

    fault_reap_within(pids, status, 2, FIPC_SEC(10));
    fault_expect_killed(status[0], "the holder");
    fault_expect_ok(status[1], "the waiter", FIPC_SEC(10));
    cr_assert_not(fipc_lock_locked(d->lock));
    cr_assert_eq(fipc_lock_acquire(d->lock, 0), 0, "no owner death recorded for a released lock");
    cr_assert_eq(fipc_lock_release(d->lock), 0);
}

/* ---- Ownership and bad calls ---- */

Test(lock, new_lock_is_released_and_locked_tracks_acquire_and_release, .timeout = 30)
{
    fipc_lock *l = fipc_lock_new(NULL);
    cr_assert_not_null(l);
    cr_assert_not(fipc_lock_locked(l));
    cr_assert_eq(fipc_lock_acquire(l, 0), 0);
    cr_assert(fipc_lock_locked(l));
    cr_assert_eq(fipc_lock_release(l), 0);
    cr_assert_not(fipc_lock_locked(l));
    cr_assert_eq(fipc_lock_acquire(l, FIPC_FOREVER), 0, "a free lock is taken at once");
    cr_assert_eq(fipc_lock_release(l), 0);
}

Test(lock, null_arguments_give_einval, .timeout = 30)
{
    cr_assert_eq(fipc_lock_init(NULL), -EINVAL);
    cr_assert_eq(fipc_lock_acquire(NULL, 0), -EINVAL);
    cr_assert_eq(fipc_lock_acquire(NULL, FIPC_MSEC(10)), -EINVAL);
    cr_assert_eq(fipc_lock_acquire(NULL, FIPC_FOREVER), -EINVAL);
    cr_assert_eq(fipc_lock_release(NULL), -EINVAL);
    cr_assert_not(fipc_lock_locked(NULL));
}

Test(lock, release_of_an_unheld_lock_gives_eperm, .timeout = 30)
{
    fipc_lock *l = fipc_lock_new(NULL);
    cr_assert_not_null(l);
    cr_assert_eq(fipc_lock_release(l), -EPERM);
    cr_assert_eq(fipc_lock_acquire(l, 0), 0);
    cr_assert_eq(fipc_lock_release(l), 0);
    cr_assert_eq(fipc_lock_release(l), -EPERM, "a second release is not allowed");
    cr_assert_not(fipc_lock_locked(l));
}

static int release_not_owner_child(int i, void *arg)
{
    fipc_lock *l = arg;
    test_child_setup();
    CHILD_CHECK(fipc_lock_release(l) == -EPERM, 1);
    CHILD_CHECK(fipc_lock_locked(l), 2);
    CHILD_CHECK(fipc_lock_acquire(l, 0) == -EAGAIN, 3);
    return CHILD_OK;
}

Test(lock, release_by_another_process_gives_eperm_and_keeps_the_lock_held, .timeout = 30)
{
    fipc_lock *l = fipc_lock_new(NULL);
    cr_assert_not_null(l);
    cr_assert_eq(fipc_lock_acquire(l, 0), 0);
    test_expect_ok(test_fork(release_not_owner_child, 0, l));
    cr_assert(fipc_lock_locked(l));
    cr_assert_eq(fipc_lock_release(l), 0, "the owner can still release it");
}

static void *release_from_thread(void *arg)
{
    return (void *)(intptr_t)fipc_lock_release(arg);
}

Test(lock, release_by_another_thread_gives_eperm, .timeout = 30)
{
    fipc_lock *l = fipc_lock_new(NULL);
    cr_assert_not_null(l);
    cr_assert_eq(fipc_lock_acquire(l, 0), 0);
    pthread_t t;
    void *ret;
    cr_assert_eq(pthread_create(&t, NULL, release_from_thread, l), 0);
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_eq((intptr_t)ret, -EPERM, "release from another thread gave %d", (int)(intptr_t)ret);
    cr_assert(fipc_lock_locked(l));
    cr_assert_eq(fipc_lock_release(l), 0);
}

Test(lock, acquire_of_a_lock_the_caller_holds_gives_eagain_or_edeadlk, .timeout = 30)
{
    fipc_lock *l = fipc_lock_new(NULL);
    cr_assert_not_null(l);
    cr_assert_eq(fipc_lock_acquire(l, 0), 0);
    cr_assert_eq(fipc_lock_acquire(l, 0), -EAGAIN, "a try-lock fails, as Python's does");
    cr_assert_eq(fipc_lock_acquire(l, FIPC_MSEC(10)), -EDEADLK);
    cr_assert_eq(fipc_lock_acquire(l, FIPC_FOREVER), -EDEADLK, "must not hang");
    cr_assert(fipc_lock_locked(l));
    cr_assert_eq(fipc_lock_release(l), 0, "one release frees it: no recursion");
    cr_assert_not(fipc_lock_locked(l));
}
