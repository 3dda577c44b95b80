/*
 * test_sem.c - fipc_sem: counting and bounded semaphores shared by
 * processes.  The KTV-room seed (at most 3 inside), exclusion with a
 * Semaphore(1), units handed from a producer to a consumer, timeouts,
 * wake-ups of sleepers, and the error codes.
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 */
#include "common.h"
#include "futex_faults.h"

#include <pthread.h>

/* ---- The KTV-room seed: Semaphore(3), ten singers ---- */

#define SINGERS    10
#define ROOM_SEATS 3

struct ktv {
    fipc_sem *sem;
    uint32_t ready, go;
    uint32_t inside;     /* atomic */
    uint32_t high_water; /* atomic maximum of inside */
    uint32_t visits;     /* atomic */
};

static void raise_high_water(uint32_t *hw, uint32_t v)
{
    uint32_t cur = __atomic_load_n(hw, __ATOMIC_RELAXED);
    while (cur < v &&
           !__atomic_compare_exchange_n(hw, &cur, v, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        ;
}

static int singer_child(int i, void *arg)
{
    struct ktv *k = arg;
    test_child_setup();
    __atomic_fetch_add(&k->ready, 1, __ATOMIC_ACQ_REL);
    CHILD_CHECK(test_wait_until_at_least(&k->go, 1, HANDSHAKE_NS), 1);
    for (int round = 0; round < 20; round++) {
        CHILD_CHECK(fipc_sem_acquire(k->sem, FIPC_FOREVER) == 0, 2);
        uint32_t now = __atomic_add_fetch(&k->inside, 1, __ATOMIC_ACQ_REL);
        raise_high_water(&k->high_water, now);
        __atomic_fetch_add(&k->visits, 1, __ATOMIC_RELAXED);
        /* Sing a little: yield so the others get a chance to crowd in. */
        for (int y = 0; y < 50; y++)
            sched_yield();
        __atomic_sub_fetch(&k->inside, 1, __ATOMIC_ACQ_REL);
        CHILD_CHECK(fipc_sem_release(k->sem) == 0, 3);
    }
    return CHILD_OK;
}

Test(sem, ktv_room_never_holds_more_than_3_singers, .timeout = 60)
{
    struct ktv *k = test_shared(sizeof *k);
    k->sem = fipc_sem_new(NULL, ROOM_SEATS);
    cr_assert_not_null(k->sem);

    pid_t pids[SINGERS];
    for (int i = 0; i < SINGERS; i++)
        pids[i] = test_fork(singer_child, i, k);
    cr_assert(test_wait_until_at_least(&k->ready, SINGERS, HANDSHAKE_NS));
    test_flag_set(&k->go, 1);
    test_reap_within(pids, SINGERS, REAP_NS);

    cr_assert_eq(k->visits, SINGERS * 20);
    cr_assert_leq(k->high_water, ROOM_SEATS, "%u singers were inside at once", k->high_water);
    cr_assert_geq(k->high_water, 1);
    cr_assert_eq(k->inside, 0);
    cr_assert_eq(fipc_sem_value(k->sem), ROOM_SEATS, "every seat was given back");
}

/* ---- Semaphore(1) as a mutex around a non-atomic counter ---- */

#define HAMMER_PROCS 4
#define HAMMER_ITERS 50000

struct hammer {
    fipc_sem *sem;
    volatile uint64_t *counter;
};

static int sem_hammer_child(int i, void *arg)
{
    struct hammer *h = arg;
    test_child_setup();
    for (int k = 0; k < HAMMER_ITERS; k++) {
        CHILD_CHECK(fipc_sem_acquire(h->sem, FIPC_FOREVER) == 0, 1);
        *h->counter = *h->counter + 1;
        CHILD_CHECK(fipc_sem_release(h->sem) == 0, 2);
    }
    return CHILD_OK;
}

static void run_hammer(fipc_sem *sem, volatile uint64_t *counter)
{
    struct hammer h = {.sem = sem, .counter = counter};
    pid_t pids[HAMMER_PROCS];
    for (int i = 0; i < HAMMER_PROCS; i++)
        pids[i] = test_fork(sem_hammer_child, i, &h);
    test_reap_within(pids, HAMMER_PROCS, FIPC_SEC(50));
    cr_assert_eq(*counter, (uint64_t)HAMMER_PROCS * HAMMER_ITERS, "counter %llu",
                 (unsigned long long)*counter);
    cr_assert_eq(fipc_sem_value(sem), 1);
}

Test(sem, binary_semaphore_keeps_a_counter_exact_across_4_processes, .timeout = 60)
{
    struct {
        fipc_sem sem;
        _Alignas(64) uint64_t counter;
    } *m = test_shared(sizeof *m);
    cr_assert_eq(fipc_sem_init(&m->sem, 1), 0);
    run_hammer(&m->sem, &m->counter);
}

Test(sem, bounded_binary_semaphore_keeps_a_counter_exact_across_4_processes, .timeout = 60)
{
    fipc_sem *s = fipc_sem_new_bounded(NULL, 1);
    cr_assert_not_null(s);
    run_hammer(s, test_shared(sizeof(uint64_t)));
}

/* ---- Producer and consumer ---- */

#define UNITS 100000

static int producer_child(int i, void *arg)
{
    fipc_sem *s = arg;
    test_child_setup();
    for (int k = 0; k < UNITS; k++) {
        CHILD_CHECK(fipc_sem_release(s) == 0, 1);
        if (k % 1000 == 0) sched_yield(); /* let the consumer drain to 0 and sleep now and then */
    }
    return CHILD_OK;
}

static int consumer_child(int i, void *arg)
{
    fipc_sem *s = arg;
    test_child_setup();
    for (int k = 0; k < UNITS; k++)
        CHILD_CHECK(fipc_sem_acquire(s, FIPC_FOREVER) == 0, 1);
    return CHILD_OK;
}

Test(sem, every_unit_released_by_a_producer_is_acquired_by_a_consumer, .timeout = 60)
{
    fipc_sem *s = fipc_sem_new(NULL, 0);
    cr_assert_not_null(s);
    pid_t pids[2];
    pids[0] = test_fork(consumer_child, 0, s);
    pids[1] = test_fork(producer_child, 0, s);
    test_reap_within(pids, 2, REAP_NS);
    cr_assert_eq(fipc_sem_value(s), 0);
    cr_assert_eq(fipc_sem_acquire(s, 0), -EAGAIN, "no unit left over");
}

/* ---- Sleepers ---- */

struct sleepers {
    fipc_sem *sem;
    uint32_t started;
    uint32_t passed;
    uint32_t done[8]; /* done[i]: sleeper i got its unit */
};

static int sleeper_child(int i, void *arg)
{
    struct sleepers *s = arg;
    test_child_setup();
    __atomic_fetch_add(&s->started, 1, __ATOMIC_ACQ_REL);
    CHILD_CHECK(fipc_sem_acquire(s->sem, FIPC_FOREVER) == 0, 1);
    test_flag_set(&s->done[i], 1);
    __atomic_fetch_add(&s->passed, 1, __ATOMIC_ACQ_REL);
    return CHILD_OK;
}

Test(sem, release_wakes_a_process_asleep_in_acquire, .timeout = 60)
{
    struct sleepers *s = test_shared(sizeof *s);
    s->sem = fipc_sem_new(NULL, 0);
    cr_assert_not_null(s->sem);
    pid_t pid = test_fork(sleeper_child, 0, s);
    cr_assert(test_wait_until_at_least(&s->started, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS), "the sleeper never slept");
    cr_assert_eq(__atomic_load_n(&s->passed, __ATOMIC_ACQUIRE), 0, "passed a sem at 0");
    cr_assert_eq(fipc_sem_release(s->sem), 0);
    test_reap_within(&pid, 1, REAP_NS);
    cr_assert_eq(fipc_sem_value(s->sem), 0);
}

Test(sem, two_releases_let_exactly_two_of_three_sleepers_through, .timeout = 60)
{
    struct sleepers *s = test_shared(sizeof *s);
    s->sem = fipc_sem_new(NULL, 0);
    cr_assert_not_null(s->sem);
    pid_t pids[3];
    for (int i = 0; i < 3; i++)
        pids[i] = test_fork(sleeper_child, i, s);
    cr_assert(test_wait_until_at_least(&s->started, 3, HANDSHAKE_NS));
    for (int i = 0; i < 3; i++)
        cr_assert(test_wait_sleeping(pids[i], HANDSHAKE_NS), "sleeper %d never slept", i);

    cr_assert_eq(fipc_sem_release(s->sem), 0);
    cr_assert_eq(fipc_sem_release(s->sem), 0);
    cr_assert(test_wait_until_at_least(&s->passed, 2, HANDSHAKE_NS), "only %u passed", s->passed);
    /* The one left must be asleep again, not through: both units are taken. */
    int left = -1;
    for (int i = 0; i < 3; i++)
        if (!__atomic_load_n(&s->done[i], __ATOMIC_ACQUIRE)) left = i;
    cr_assert_neq(left, -1, "all three passed on two units");
    cr_assert(test_wait_sleeping(pids[left], HANDSHAKE_NS));
    cr_assert_eq(__atomic_load_n(&s->passed, __ATOMIC_ACQUIRE), 2);
    cr_assert_eq(fipc_sem_value(s->sem), 0);

    cr_assert_eq(fipc_sem_release(s->sem), 0);
    test_reap_within(pids, 3, REAP_NS);
    cr_assert_eq(s->passed, 3);
    cr_assert_eq(fipc_sem_value(s->sem), 0);
}

/* ---- Killed between release and wake ---- */

struct dying_release {
    fipc_sem *sem;
    uint32_t started; /* the sleeper is about to block; sleeper is set */
    pid_t sleeper;
};

static int unit_sleeper_child(int i, void *arg)
{
    struct dying_release *d = arg;
    test_child_setup();
    d->sleeper = getpid();
    test_flag_set(&d->started, 1);
    CHILD_CHECK(fipc_sem_acquire(d->sem, FIPC_FOREVER) == 0, 1);
    return CHILD_OK;
}

/* Release once the sleeper sleeps, and be killed after the unit was added
 * but before the wake. */
static int release_and_die_child(int i, void *arg)
{
    struct dying_release *d = arg;
    test_child_setup();
    CHILD_CHECK(test_wait_until_at_least(&d->started, 1, HANDSHAKE_NS), 1);
    CHILD_CHECK(test_wait_sleeping(d->sleeper, HANDSHAKE_NS), 2);
    fault_kill_at_next_wake();
    fipc_sem_release(d->sem);
    return CHILD_FAIL(3);
}

/* The value is 1 and nobody will wake the sleeper: its sleep ends at the
 * one-second re-check, which finds the unit. */
Test(sem, sleeper_gets_the_unit_when_the_releaser_dies_before_waking, .timeout = 60)
{
    struct dying_release *d = test_shared(sizeof *d);
    d->sem = fipc_sem_new(NULL, 0);
    cr_assert_not_null(d->sem);
    pid_t pids[2];
    int status[2];
    pids[0] = test_fork(unit_sleeper_child, 0, d);
    pids[1] = test_fork(release_and_die_child, 1, d);

    fault_reap_within(pids, status, 2, FIPC_SEC(10));
    fault_expect_killed(status[1], "the releaser");
    fault_expect_ok(status[0], "the sleeper", FIPC_SEC(10));
    cr_assert_eq(fipc_sem_value(d->sem), 0, "the one unit was taken once");
}

/* ---- Timeouts ---- */

Test(sem, acquire_times_out_after_50ms_at_zero, .timeout = 30)
{
    fipc_sem *s = fipc_sem_new(NULL, 0);
    cr_assert_not_null(s);
    int64_t t0 = test_now_ns();
    int r = fipc_sem_acquire(s, FIPC_MSEC(50));
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_eq(r, -ETIMEDOUT, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert_geq(elapsed, FIPC_MSEC(50), "gave up after %lld ns", (long long)elapsed);
    cr_assert_lt(elapsed, FIPC_SEC(5), "took %lld ns", (long long)elapsed);
    cr_assert_eq(fipc_sem_value(s), 0);
}

Test(sem, acquire_with_zero_timeout_fails_with_eagain_at_once_at_zero, .timeout = 30)
{
    fipc_sem *s = fipc_sem_new(NULL, 0);
    cr_assert_not_null(s);
    int64_t t0 = test_now_ns();
    int r = fipc_sem_acquire(s, 0);
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_eq(r, -EAGAIN, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert_lt(elapsed, FIPC_SEC(1), "took %lld ns", (long long)elapsed);
    cr_assert_eq(fipc_sem_value(s), 0);
}

Test(sem, timed_acquire_is_not_cut_short_by_signals, .timeout = 30)
{
    fipc_sem *s = fipc_sem_new(NULL, 0);
    cr_assert_not_null(s);
    struct test_pester p = {0};
    test_pester_start(&p);

    int64_t t0 = test_now_ns();
    int r = fipc_sem_acquire(s, FIPC_MSEC(200));
    int64_t elapsed = test_now_ns() - t0;
    test_pester_stop(&p);
    cr_assert_eq(r, -ETIMEDOUT, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert_geq(elapsed, FIPC_MSEC(200), "gave up after %lld ns", (long long)elapsed);
}

/* ---- Values, bounds and bad calls ---- */

Test(sem, value_counts_acquires_and_releases, .timeout = 30)
{
    fipc_sem s;
    cr_assert_eq(fipc_sem_init(&s, 2), 0);
    cr_assert_eq(fipc_sem_value(&s), 2);
    cr_assert_eq(fipc_sem_acquire(&s, 0), 0);
    cr_assert_eq(fipc_sem_acquire(&s, FIPC_FOREVER), 0);
    cr_assert_eq(fipc_sem_value(&s), 0);
    cr_assert_eq(fipc_sem_acquire(&s, 0), -EAGAIN);
    cr_assert_eq(fipc_sem_release(&s), 0);
    cr_assert_eq(fipc_sem_release(&s), 0);
    cr_assert_eq(fipc_sem_release(&s), 0, "an unbounded semaphore may exceed its start");
    cr_assert_eq(fipc_sem_value(&s), 3);
}

Test(sem, bounded_release_above_the_initial_value_gives_eoverflow_and_changes_nothing,
     .timeout = 30)
{
    fipc_sem *s = fipc_sem_new_bounded(NULL, 3);
    cr_assert_not_null(s);
    cr_assert_eq(fipc_sem_release(s), -EOVERFLOW);
    cr_assert_eq(fipc_sem_value(s), 3);
    cr_assert_eq(fipc_sem_acquire(s, 0), 0);
    cr_assert_eq(fipc_sem_value(s), 2);
    cr_assert_eq(fipc_sem_release(s), 0);
    cr_assert_eq(fipc_sem_release(s), -EOVERFLOW);
    cr_assert_eq(fipc_sem_value(s), 3);

    fipc_sem b;
    cr_assert_eq(fipc_sem_init_bounded(&b, 0), 0);
    cr_assert_eq(fipc_sem_release(&b), -EOVERFLOW, "a bounded sem at 0 starts full");
    cr_assert_eq(fipc_sem_value(&b), 0);
    cr_assert_eq(fipc_sem_acquire(&b, 0), -EAGAIN);
}

Test(sem, release_at_the_maximum_value_gives_eoverflow, .timeout = 30)
{
    fipc_sem s;
    cr_assert_eq(fipc_sem_init(&s, FIPC_SEM_VALUE_MAX), 0);
    cr_assert_eq(fipc_sem_value(&s), (int)FIPC_SEM_VALUE_MAX);
    cr_assert_eq(fipc_sem_release(&s), -EOVERFLOW);
    cr_assert_eq(fipc_sem_value(&s), (int)FIPC_SEM_VALUE_MAX);
}

Test(sem, init_above_the_maximum_value_gives_einval, .timeout = 30)
{
    fipc_sem s;
    cr_assert_eq(fipc_sem_init(&s, FIPC_SEM_VALUE_MAX + 1u), -EINVAL);
    cr_assert_eq(fipc_sem_init(&s, UINT32_MAX), -EINVAL);
    cr_assert_eq(fipc_sem_init_bounded(&s, FIPC_SEM_VALUE_MAX + 1u), -EINVAL);
    cr_assert_null(fipc_sem_new(NULL, FIPC_SEM_VALUE_MAX + 1u));
    cr_assert_null(fipc_sem_new_bounded(NULL, FIPC_SEM_VALUE_MAX + 1u));
}

Test(sem, null_arguments_give_einval, .timeout = 30)
{
    cr_assert_eq(fipc_sem_init(NULL, 1), -EINVAL);
    cr_assert_eq(fipc_sem_init_bounded(NULL, 1), -EINVAL);
    cr_assert_eq(fipc_sem_acquire(NULL, 0), -EINVAL);
    cr_assert_eq(fipc_sem_acquire(NULL, FIPC_MSEC(10)), -EINVAL);
    cr_assert_eq(fipc_sem_acquire(NULL, FIPC_FOREVER), -EINVAL);
    cr_assert_eq(fipc_sem_release(NULL), -EINVAL);
    cr_assert_eq(fipc_sem_value(NULL), -EINVAL);
}
