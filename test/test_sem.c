/*
 * test_sem.c - fipc_sem: counting and bounded semaphores shared by
 * processes.
 *
 * The lock contract (lock_contract.h) runs on a bounded and an unbounded
 * semaphore of one unit: exclusion under 4 hammering processes, timeouts,
 * signals, wake-ups, release-then-die, a death between release and wake,
 * NULL arguments, and for the bounded one a release nobody acquired.
 * Here besides: what only a counting semaphore does: the KTV-room seed (at
 * most 3 inside), units handed from a producer to a consumer, two
 * releases for three sleepers, values and bounds.
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 */
#include "common.h"
#include "futex_faults.h"

TestSuite(sem, .timeout = 60);

#define LC_SUITE sem
#include "lock_contract.h"

LOCK_CONTRACT(bsem1)
LOCK_CONTRACT(sem1)

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

Test(sem, ktv_room_never_holds_more_than_3_singers)
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

Test(sem, every_unit_released_by_a_producer_is_acquired_by_a_consumer)
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

Test(sem, two_releases_let_exactly_two_of_three_sleepers_through)
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

/* ---- Values, bounds and bad calls ---- */

Test(sem, value_counts_acquires_and_releases)
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

Test(sem, bounded_release_above_the_initial_value_gives_eoverflow_and_changes_nothing)
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

Test(sem, release_at_the_maximum_value_gives_eoverflow)
{
    fipc_sem s;
    cr_assert_eq(fipc_sem_init(&s, FIPC_SEM_VALUE_MAX), 0);
    cr_assert_eq(fipc_sem_value(&s), (int)FIPC_SEM_VALUE_MAX);
    cr_assert_eq(fipc_sem_release(&s), -EOVERFLOW);
    cr_assert_eq(fipc_sem_value(&s), (int)FIPC_SEM_VALUE_MAX);
}

Test(sem, init_above_the_maximum_value_gives_einval)
{
    fipc_sem s;
    cr_assert_eq(fipc_sem_init(&s, FIPC_SEM_VALUE_MAX + 1u), -EINVAL);
    cr_assert_eq(fipc_sem_init(&s, UINT32_MAX), -EINVAL);
    cr_assert_eq(fipc_sem_init_bounded(&s, FIPC_SEM_VALUE_MAX + 1u), -EINVAL);
    cr_assert_null(fipc_sem_new(NULL, FIPC_SEM_VALUE_MAX + 1u));
    cr_assert_null(fipc_sem_new_bounded(NULL, FIPC_SEM_VALUE_MAX + 1u));
}
