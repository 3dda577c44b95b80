/*
 * test_rlock.c - fipc_rlock: a recursive lock shared by processes.
 *
 * The lock contract (lock_contract.h) runs on fipc_rlock with every holder
 * entering twice: exclusion (also while nested), timeouts, signals,
 * wake-ups, owner death (the dead holder's levels die with it),
 * release-then-die, a death between release and wake, releases by
 * non-owners and NULL arguments.  Here besides: what only a recursive lock
 * does, nesting to any depth and releasing level by level.
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 */
#include "common.h"
#include "futex_faults.h"

TestSuite(rlock, .timeout = 120);

#define LC_SUITE rlock
#include "lock_contract.h"

LOCK_CONTRACT(rlock)

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

Test(rlock, lock_is_free_only_after_as_many_releases_as_acquires)
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

Test(rlock, owner_can_reacquire_with_any_timeout)
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

Test(rlock, inner_release_keeps_a_sleeper_out_and_the_last_release_lets_it_in)
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
