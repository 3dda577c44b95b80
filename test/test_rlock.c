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

/* Built twice (test/meson.build): as suite rlock, and with LC_NO_ROBUST_LIST
 * as suite rlock_norobust, where no thread uses the kernel's robust list
 * and a dead owner is found by the waiters' liveness check
 * (lock_contract.h). */
#ifdef LC_NO_ROBUST_LIST
#define LC_SUITE rlock_norobust
#else
#define LC_SUITE rlock
#endif
TestSuite(LC_SUITE, .timeout = 120);

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

Test(LC_SUITE, lock_is_free_only_after_as_many_releases_as_acquires)
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

Test(LC_SUITE, owner_can_reacquire_with_any_timeout)
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

Test(LC_SUITE, inner_release_keeps_a_sleeper_out_and_the_last_release_lets_it_in)
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

/* ---- Children the C library did not make ---- */

struct fork_probe {
    fipc_rlock *lock; /* held once by the parent */
    int32_t acquire0, acquire10ms, release;
};

Test(LC_SUITE, a_child_of__Fork_does_not_enter_its_parents_lock)
{
    struct fork_probe *p = test_shared(sizeof *p);
    cr_assert_not_null(p->lock = fipc_rlock_new(NULL));
    cr_assert_eq(fipc_rlock_acquire(p->lock, FIPC_FOREVER), 0);
    pid_t pid = _Fork(); /* no atfork handler runs in the child */
    cr_assert_geq(pid, 0, "_Fork: %s", strerror(errno));
    if (pid == 0) {
        test_child_setup();
        p->acquire0 = fipc_rlock_acquire(p->lock, 0);
        p->acquire10ms = fipc_rlock_acquire(p->lock, FIPC_MSEC(10));
        p->release = fipc_rlock_release(p->lock);
        _exit(0);
    }
    test_expect_ok(pid);
    cr_assert_eq(p->acquire0, -EAGAIN, "the child's acquire gave %d", p->acquire0);
    cr_assert_eq(p->acquire10ms, -ETIMEDOUT, "the child's timed acquire gave %d", p->acquire10ms);
    cr_assert_eq(p->release, -EPERM, "the child's release gave %d", p->release);
    /* The parent took it once: one release frees it. */
    cr_assert_eq(fipc_rlock_release(p->lock), 0);
    cr_assert_not(fipc_rlock_locked(p->lock), "the child's calls changed the depth");
    test_expect_ok(test_fork(probe_child, PROBE_FREE, p->lock));
}

/* ---- What a peer writes into a held lock ---- */

static uint64_t canary[2] = {0x1111, 0x2222};

struct scribble {
    fipc_rlock *lock;
    uint32_t held, scribbled;
};

static int hold_twice_then_release_child(int i, void *arg)
{
    struct scribble *s = arg;
    test_child_setup();
    CHILD_CHECK(fipc_rlock_acquire(s->lock, 0) == 0, 1);
    CHILD_CHECK(fipc_rlock_acquire(s->lock, 0) == 0, 2);
    test_flag_set(&s->held, 1);
    CHILD_CHECK(test_wait_until_at_least(&s->scribbled, 1, HANDSHAKE_NS), 3);
    CHILD_CHECK(fipc_rlock_release(s->lock) == 0, 4);
    CHILD_CHECK(fipc_rlock_release(s->lock) == 0, 5);
    CHILD_CHECK(!fipc_rlock_locked(s->lock), 6);
    CHILD_CHECK(canary[0] == 0x1111 && canary[1] == 0x2222, 7);
    return CHILD_OK;
}

/* The robust links (bytes 24..39) of a lock another process holds are
 * overwritten with addresses of that process's private memory: its
 * releases write nothing there. */
Test(LC_SUITE, release_never_follows_links_a_peer_wrote)
{
    struct scribble *s = test_shared(sizeof *s);
    cr_assert_not_null(s->lock = fipc_rlock_new(NULL));
    pid_t pid = test_fork(hold_twice_then_release_child, 0, s);
    cr_assert(test_wait_until_at_least(&s->held, 1, HANDSHAKE_NS), "the holder never ran");
    uint64_t *w = (uint64_t *)s->lock;
    w[3] = (uint64_t)(uintptr_t)&canary[0];
    w[4] = (uint64_t)(uintptr_t)&canary[1] + 8;
    test_flag_set(&s->scribbled, 1);
    test_reap_within(&pid, 1, REAP_NS);
}

Test(LC_SUITE, a_depth_that_a_peer_zeroed_gives_eproto_and_changes_nothing)
{
    fipc_rlock *l = fipc_rlock_new(NULL);
    cr_assert_not_null(l);
    cr_assert_eq(fipc_rlock_acquire(l, 0), 0);
    uint32_t *depth = (uint32_t *)l + 1; /* docs/lock.md, Layout */
    cr_assert_eq(*depth, 1);
    *depth = 0;
    cr_assert_eq(fipc_rlock_release(l), -EPROTO);
    cr_assert(fipc_rlock_locked(l));
    *depth = 1;
    cr_assert_eq(fipc_rlock_release(l), 0);
    cr_assert_not(fipc_rlock_locked(l));
}
