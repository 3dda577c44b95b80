/*
 * test_rlock.c - fipc_rlock: a recursive lock shared by processes.  The
 * same exclusion and owner-death contract as fipc_lock, with nesting:
 * the owner may re-acquire, and the lock is free only after as many
 * releases as acquires.
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 */
#include "common.h"

#include <pthread.h>

#define HAMMER_PROCS 4
#define HAMMER_ITERS 200000

/* ---- Exclusion with nesting ---- */

struct hammer {
    fipc_rlock *lock;
    volatile uint64_t *counter;
};

static int nested_hammer_child(int i, void *arg)
{
    struct hammer *h = arg;
    test_child_setup();
    for (int k = 0; k < HAMMER_ITERS; k++) {
        CHILD_CHECK(fipc_rlock_acquire(h->lock, FIPC_FOREVER) == 0, 1);
        CHILD_CHECK(fipc_rlock_acquire(h->lock, 0) == 0, 2);
        *h->counter = *h->counter + 1;
        CHILD_CHECK(fipc_rlock_release(h->lock) == 0, 3);
        /* Still held once: the increment above must stay exclusive. */
        *h->counter = *h->counter + 1;
        CHILD_CHECK(fipc_rlock_release(h->lock) == 0, 4);
    }
    return CHILD_OK;
}

static void run_hammer(fipc_rlock *lock, volatile uint64_t *counter)
{
    struct hammer h = {.lock = lock, .counter = counter};
    uint64_t want = 2ull * HAMMER_PROCS * HAMMER_ITERS;
    pid_t pids[HAMMER_PROCS];
    *counter = 0;
    for (int i = 0; i < HAMMER_PROCS; i++)
        pids[i] = test_fork(nested_hammer_child, i, &h);
    test_reap_within(pids, HAMMER_PROCS, FIPC_SEC(80));
    cr_assert_eq(*counter, want, "counter %llu, want %llu", (unsigned long long)*counter,
                 (unsigned long long)want);
    cr_assert_not(fipc_rlock_locked(lock));
}

Test(rlock, counter_exact_with_4_processes_x_200000_nested_increments_in_arena, .timeout = 100)
{
    fipc_arena *a;
    cr_assert_eq(fipc_arena_create(&a, "test_rlock", 1 << 20), 0);
    fipc_rlock *l = fipc_rlock_new(a);
    cr_assert_not_null(l);
    uint64_t *counter = fipc_arena_alloc(a, sizeof *counter, 64);
    cr_assert_not_null(counter);
    run_hammer(l, counter);
    fipc_arena_close(a);
}

Test(rlock, counter_exact_with_4_processes_x_200000_nested_increments_on_mmap_init, .timeout = 100)
{
    struct {
        fipc_rlock lock;
        _Alignas(64) uint64_t counter;
    } *m = test_shared(sizeof *m);
    cr_assert_eq(fipc_rlock_init(&m->lock), 0);
    run_hammer(&m->lock, &m->counter);
}

/* ---- Recursion depth ---- */

/* Child i == 0 expects the lock free (takes and releases it); i == 1
 * expects it held by someone else. */
static int probe_child(int i, void *arg)
{
    fipc_rlock *l = arg;
    test_child_setup();
    if (i == 0) {
        CHILD_CHECK(fipc_rlock_acquire(l, 0) == 0, 1);
        CHILD_CHECK(fipc_rlock_release(l) == 0, 2);
    } else {
        CHILD_CHECK(fipc_rlock_locked(l), 3);
        CHILD_CHECK(fipc_rlock_acquire(l, 0) == -EAGAIN, 4);
        CHILD_CHECK(fipc_rlock_release(l) == -EPERM, 5);
    }
    return CHILD_OK;
}

#define PROBE_FREE 0
#define PROBE_HELD 1
#define DEPTH      1000

Test(rlock, lock_is_free_only_after_as_many_releases_as_acquires, .timeout = 60)
{
    fipc_rlock *l = fipc_rlock_new(NULL);
    cr_assert_not_null(l);
    for (int i = 0; i < DEPTH; i++)
        cr_assert_eq(fipc_rlock_acquire(l, 0), 0, "acquire %d", i + 1);
    cr_assert(fipc_rlock_locked(l));
    test_expect_ok(test_fork(probe_child, PROBE_HELD, l));

    for (int i = 0; i < DEPTH - 1; i++)
        cr_assert_eq(fipc_rlock_release(l), 0, "release %d", i + 1);
    cr_assert(fipc_rlock_locked(l), "one level is still held");
    test_expect_ok(test_fork(probe_child, PROBE_HELD, l));

    cr_assert_eq(fipc_rlock_release(l), 0);
    cr_assert_not(fipc_rlock_locked(l));
    test_expect_ok(test_fork(probe_child, PROBE_FREE, l));
    cr_assert_eq(fipc_rlock_release(l), -EPERM, "one release too many");
}

Test(rlock, owner_can_reacquire_with_any_timeout, .timeout = 30)
{
    fipc_rlock *l = fipc_rlock_new(NULL);
    cr_assert_not_null(l);
    cr_assert_eq(fipc_rlock_acquire(l, FIPC_FOREVER), 0);
    cr_assert_eq(fipc_rlock_acquire(l, FIPC_FOREVER), 0, "must not deadlock");
    cr_assert_eq(fipc_rlock_acquire(l, FIPC_MSEC(10)), 0);
    cr_assert_eq(fipc_rlock_acquire(l, 0), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(fipc_rlock_release(l), 0);
    cr_assert_not(fipc_rlock_locked(l));
}

struct sleeper {
    fipc_rlock *lock;
    uint32_t ready, done;
};

static int sleeper_child(int i, void *arg)
{
    struct sleeper *w = arg;
    test_child_setup();
    test_flag_set(&w->ready, 1);
    CHILD_CHECK(fipc_rlock_acquire(w->lock, FIPC_FOREVER) == 0, 1);
    test_flag_set(&w->done, 1);
    CHILD_CHECK(fipc_rlock_release(w->lock) == 0, 2);
    return CHILD_OK;
}

Test(rlock, inner_release_keeps_a_sleeper_out_and_the_last_release_lets_it_in, .timeout = 60)
{
    struct sleeper *w = test_shared(sizeof *w);
    w->lock = fipc_rlock_new(NULL);
    cr_assert_not_null(w->lock);
    cr_assert_eq(fipc_rlock_acquire(w->lock, 0), 0);
    cr_assert_eq(fipc_rlock_acquire(w->lock, 0), 0);

    pid_t pid = test_fork(sleeper_child, 0, w);
    cr_assert(test_wait_until_at_least(&w->ready, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS), "the waiter never went to sleep");
    cr_assert_eq(fipc_rlock_release(w->lock), 0);
    /* Still held once: the waiter, woken or not, must be asleep again. */
    cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS));
    cr_assert_eq(__atomic_load_n(&w->done, __ATOMIC_ACQUIRE), 0, "got in after one release");
    cr_assert_eq(fipc_rlock_release(w->lock), 0);
    test_reap_within(&pid, 1, REAP_NS);
    cr_assert_not(fipc_rlock_locked(w->lock));
}

/* ---- Ownership and bad calls ---- */

Test(rlock, null_arguments_give_einval, .timeout = 30)
{
    cr_assert_eq(fipc_rlock_init(NULL), -EINVAL);
    cr_assert_eq(fipc_rlock_acquire(NULL, 0), -EINVAL);
    cr_assert_eq(fipc_rlock_acquire(NULL, FIPC_MSEC(10)), -EINVAL);
    cr_assert_eq(fipc_rlock_acquire(NULL, FIPC_FOREVER), -EINVAL);
    cr_assert_eq(fipc_rlock_release(NULL), -EINVAL);
    cr_assert_not(fipc_rlock_locked(NULL));
}

Test(rlock, release_of_an_unheld_lock_gives_eperm, .timeout = 30)
{
    fipc_rlock *l = fipc_rlock_new(NULL);
    cr_assert_not_null(l);
    cr_assert_eq(fipc_rlock_release(l), -EPERM);
    cr_assert_not(fipc_rlock_locked(l));
    cr_assert_eq(fipc_rlock_acquire(l, 0), 0, "the failed release broke nothing");
    cr_assert_eq(fipc_rlock_release(l), 0);
}

Test(rlock, release_by_another_process_gives_eperm_and_keeps_the_lock_held, .timeout = 30)
{
    fipc_rlock *l = fipc_rlock_new(NULL);
    cr_assert_not_null(l);
    cr_assert_eq(fipc_rlock_acquire(l, 0), 0);
    cr_assert_eq(fipc_rlock_acquire(l, 0), 0);
    /* probe_child(PROBE_HELD) checks release == -EPERM in another process. */
    test_expect_ok(test_fork(probe_child, PROBE_HELD, l));
    cr_assert_eq(fipc_rlock_release(l), 0);
    test_expect_ok(test_fork(probe_child, PROBE_HELD, l));
    cr_assert_eq(fipc_rlock_release(l), 0);
    cr_assert_not(fipc_rlock_locked(l), "the non-owner's releases counted for nothing");
}

static void *release_from_thread(void *arg)
{
    return (void *)(intptr_t)fipc_rlock_release(arg);
}

Test(rlock, release_by_another_thread_gives_eperm, .timeout = 30)
{
    fipc_rlock *l = fipc_rlock_new(NULL);
    cr_assert_not_null(l);
    cr_assert_eq(fipc_rlock_acquire(l, 0), 0);
    pthread_t t;
    void *ret;
    cr_assert_eq(pthread_create(&t, NULL, release_from_thread, l), 0);
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_eq((intptr_t)ret, -EPERM, "release from another thread gave %d", (int)(intptr_t)ret);
    cr_assert(fipc_rlock_locked(l));
    cr_assert_eq(fipc_rlock_release(l), 0);
    cr_assert_not(fipc_rlock_locked(l));
}

/* ---- A holder in another process (holding twice) ---- */

struct holder {
    fipc_rlock *lock;
    int32_t acquire_ret;
    uint32_t held, release;
    uint32_t waiter_ready, waiter_done;
    int32_t waiter_ret;
    int64_t woke_ns;
};

static int holder_child(int i, void *arg)
{
    struct holder *h = arg;
    test_child_setup();
    int r = fipc_rlock_acquire(h->lock, 0);
    if (r == 0) r = fipc_rlock_acquire(h->lock, 0);
    h->acquire_ret = r;
    test_flag_set(&h->held, 1);
    CHILD_CHECK(r == 0, 1);
    CHILD_CHECK(test_wait_until_at_least(&h->release, 1, FIPC_SEC(50)), 2);
    CHILD_CHECK(fipc_rlock_release(h->lock) == 0, 3);
    CHILD_CHECK(fipc_rlock_release(h->lock) == 0, 4);
    return CHILD_OK;
}

static struct holder *new_holder(void)
{
    struct holder *h = test_shared(sizeof *h);
    h->lock = fipc_rlock_new(NULL);
    cr_assert_not_null(h->lock);
    return h;
}

static pid_t start_holder(struct holder *h)
{
    pid_t pid = test_fork(holder_child, 0, h);
    cr_assert(test_wait_until_at_least(&h->held, 1, HANDSHAKE_NS), "holder never ran");
    cr_assert_eq(h->acquire_ret, 0, "holder's acquire gave %d", h->acquire_ret);
    return pid;
}

Test(rlock, acquire_times_out_after_50ms_when_held_by_another_process, .timeout = 60)
{
    struct holder *h = new_holder();
    pid_t pid = start_holder(h);

    int64_t t0 = test_now_ns();
    int r = fipc_rlock_acquire(h->lock, FIPC_MSEC(50));
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_eq(r, -ETIMEDOUT, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert_geq(elapsed, FIPC_MSEC(50), "gave up after %lld ns", (long long)elapsed);
    cr_assert_lt(elapsed, FIPC_SEC(5), "took %lld ns", (long long)elapsed);

    t0 = test_now_ns();
    r = fipc_rlock_acquire(h->lock, 0);
    elapsed = test_now_ns() - t0;
    cr_assert_eq(r, -EAGAIN, "acquire(0) gave %d (%s)", r, fipc_strerror(r));
    cr_assert_lt(elapsed, FIPC_SEC(1), "acquire(0) took %lld ns", (long long)elapsed);

    test_flag_set(&h->release, 1);
    test_expect_ok(pid);
    cr_assert_eq(fipc_rlock_acquire(h->lock, 0), 0, "free after two releases by the holder");
    cr_assert_eq(fipc_rlock_release(h->lock), 0);
}

Test(rlock, acquire_gives_eownerdead_after_a_holder_that_nested_twice_is_killed, .timeout = 60)
{
    struct holder *h = new_holder();
    test_kill_and_reap(start_holder(h));

    int r = fipc_rlock_acquire(h->lock, FIPC_SEC(5));
    cr_assert_eq(r, -EOWNERDEAD, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert(fipc_rlock_locked(h->lock));
    /* The new owner holds it once: the dead owner's levels died with it. */
    cr_assert_eq(fipc_rlock_release(h->lock), 0);
    cr_assert_not(fipc_rlock_locked(h->lock), "the dead owner's nesting leaked to the heir");
    cr_assert_eq(fipc_rlock_release(h->lock), -EPERM);
    test_expect_ok(test_fork(probe_child, PROBE_FREE, h->lock));
    cr_assert_eq(fipc_rlock_acquire(h->lock, 0), 0, "the death is reported only once");
    cr_assert_eq(fipc_rlock_release(h->lock), 0);
}

static int dead_owner_waiter_child(int i, void *arg)
{
    struct holder *h = arg;
    test_child_setup();
    test_flag_set(&h->waiter_ready, 1);
    int r = fipc_rlock_acquire(h->lock, FIPC_SEC(30));
    h->woke_ns = test_now_ns();
    h->waiter_ret = r;
    test_flag_set(&h->waiter_done, 1);
    CHILD_CHECK(r == -EOWNERDEAD, 1);
    CHILD_CHECK(fipc_rlock_acquire(h->lock, 0) == 0, 2);
    CHILD_CHECK(fipc_rlock_release(h->lock) == 0, 3);
    CHILD_CHECK(fipc_rlock_release(h->lock) == 0, 4);
    CHILD_CHECK(!fipc_rlock_locked(h->lock), 5);
    return CHILD_OK;
}

Test(rlock, sleeping_waiter_gets_eownerdead_promptly_when_the_holder_is_killed, .timeout = 60)
{
    struct holder *h = new_holder();
    pid_t holder = start_holder(h);

    pid_t waiter = test_fork(dead_owner_waiter_child, 0, h);
    cr_assert(test_wait_until_at_least(&h->waiter_ready, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(waiter, HANDSHAKE_NS), "the waiter never went to sleep");
    cr_assert_eq(__atomic_load_n(&h->waiter_done, __ATOMIC_ACQUIRE), 0,
                 "the waiter got in while the lock was held (ret %d)", h->waiter_ret);

    int64_t killed_ns = test_now_ns();
    test_kill_and_reap(holder);
    cr_assert(test_wait_until_at_least(&h->waiter_done, 1, FIPC_SEC(10)),
              "the waiter was not woken by the holder's death");
    int64_t delay = h->woke_ns - killed_ns;
    cr_assert_eq(h->waiter_ret, -EOWNERDEAD, "waiter's acquire gave %d (%s)", h->waiter_ret,
                 fipc_strerror(h->waiter_ret));
    cr_assert_lt(delay, FIPC_SEC(2), "the waiter woke %lld ns after the death", (long long)delay);
    test_expect_ok(waiter);
}

static void *take_twice_and_exit(void *arg)
{
    int r = fipc_rlock_acquire(arg, 0);
    if (r == 0) r = fipc_rlock_acquire(arg, 0);
    return (void *)(intptr_t)r;
}

Test(rlock, acquire_gives_eownerdead_after_the_holder_thread_exits, .timeout = 60)
{
    fipc_rlock *l = fipc_rlock_new(NULL);
    cr_assert_not_null(l);
    pthread_t t;
    void *ret;
    cr_assert_eq(pthread_create(&t, NULL, take_twice_and_exit, l), 0);
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_eq((intptr_t)ret, 0, "the thread's acquire gave %d", (int)(intptr_t)ret);

    int r = fipc_rlock_acquire(l, FIPC_SEC(5));
    cr_assert_eq(r, -EOWNERDEAD, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert_eq(fipc_rlock_release(l), 0);
    cr_assert_not(fipc_rlock_locked(l));
}
