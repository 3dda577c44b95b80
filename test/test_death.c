/*
 * test_death.c - what a SIGKILL at each kind of moment does to the others,
 * primitive by primitive: one test per sentence of docs/death.md, named
 * after it and marked with the sentence's anchor.  Sentences that other
 * suites already prove name those tests in docs/death.md instead.
 *
 * Deaths at one exact instruction come from futex_faults.h (a process that
 * kills itself at its next futex wake, or as soon as a wake ends one of its
 * sleeps) or from the test seams of lib/test_hooks.h (a put or get that
 * stops after its claim); the process then really dies by SIGKILL.  Every
 * wait is on a condition (a shared flag, a pidfd, a process's state), and
 * every bound is generous: DEATH_BOUND_NS where the design promises 100 ms
 * or less.
 */
#include <criterion/criterion.h>

#include "common.h"
#include "futex_faults.h"

#include <sys/mman.h>

#include "jqueue_impl.h"
#include "ring_mpmc.h"
#include "ring_spsc.h"
#include "test_hooks.h"

TestSuite(death, .timeout = 120);

/* The bound asserted where the design says 100 ms (or less): a loaded
 * two-core machine, or a sanitizer build, may not run a process for a
 * while, so only a stall that the design does not allow should reach it. */
#define DEATH_BOUND_NS FIPC_SEC(2)

/* How long a child that must end by itself may take (then it is killed and
 * its test fails). */
#define DEATH_REAP_NS FIPC_SEC(20)

static fipc_arena *test_arena(void)
{
    static fipc_arena *a;
    if (!a) cr_assert_eq(fipc_arena_create(&a, "death", 8 << 20), 0);
    return a;
}

/* Zeroed memory in the arena, shared with forked children. */
static void *shared(size_t size)
{
    void *p = fipc_arena_alloc(test_arena(), size, 64);
    cr_assert_not_null(p);
    return p;
}

static int64_t now_ns(void)
{
    return test_now_ns();
}

static void store_time(int64_t *at)
{
    __atomic_store_n(at, now_ns(), __ATOMIC_RELEASE);
}

static int64_t load_time(const int64_t *at)
{
    return __atomic_load_n(at, __ATOMIC_ACQUIRE);
}

/* Reap the n children in pids (each must end by itself within
 * DEATH_REAP_NS); status[i] receives child i's status. */
static void reap(const pid_t *pids, int *status, int n)
{
    fault_reap_within(pids, status, n, DEATH_REAP_NS);
}

static void expect_ok(int status, const char *who)
{
    fault_expect_ok(status, who, DEATH_REAP_NS);
}

static void expect_sigkill(int status, const char *who)
{
    cr_assert_neq(status, FAULT_STILL_RUNNING, "%s never died", who);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "%s did not die of SIGKILL: exit status %d, signal %d", who,
              WIFEXITED(status) ? WEXITSTATUS(status) : -1,
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* Whether pid has ended within limit_ns (then it is reaped into *status). */
static bool ended_within(pid_t pid, int64_t limit_ns, int *status)
{
    bool done = false;
    return test_reap_until(&pid, status, &done, 1, now_ns() + limit_ns) == 0;
}

static void expect_within_bound(int64_t from, int64_t to, const char *what)
{
    cr_assert(from != 0 && to != 0, "%s: no time recorded", what);
    double ms = (double)(to - from) / 1e6;
    cr_log_info("%s after %.1f ms", what, ms);
    cr_assert(to - from < DEATH_BOUND_NS, "%s only after %.1f ms", what, ms);
}

/* ==== Lock and RLock ===================================================== */

struct lk_ops {
    const char *name;
    void *(*make)(void);
    int (*acquire)(void *l, int64_t timeout_ns);
    int (*release)(void *l);
};

static void *lk_lock_new(void)
{
    return fipc_lock_new(test_arena());
}

static int lk_lock_acquire(void *l, int64_t t)
{
    return fipc_lock_acquire(l, t);
}

static int lk_lock_release(void *l)
{
    return fipc_lock_release(l);
}

static void *lk_rlock_new(void)
{
    return fipc_rlock_new(test_arena());
}

static int lk_rlock_acquire(void *l, int64_t t)
{
    return fipc_rlock_acquire(l, t);
}

static int lk_rlock_release(void *l)
{
    return fipc_rlock_release(l);
}

static const struct lk_ops lk_ops[] = {
    {"lock", lk_lock_new, lk_lock_acquire, lk_lock_release},
    {"rlock", lk_rlock_new, lk_rlock_acquire, lk_rlock_release},
};

struct lk_waiters {
    const struct lk_ops *o;
    void *lock;
    int64_t b_got; /* when waiter B acquired */
};

/* Waiter A: sleeps in acquire until it is killed (or, with kill_woken,
 * until a wake ends its sleep: then it dies before it retakes the lock). */
static int lk_waiter_a(int kill_woken, void *arg)
{
    struct lk_waiters *w = arg;
    test_child_setup();
    /* Woken by a release only: its place in the futex queue, ahead of B,
     * stays put (a capped sleep that ends would requeue it behind B). */
    fault_sleep_until_woken();
    if (kill_woken) fault_kill_when_woken();
    w->o->acquire(w->lock, FIPC_FOREVER);
    return CHILD_FAIL(1); /* never gets it */
}

/* Waiter B: woken by a real wake only (no re-check), takes the lock. */
static int lk_waiter_b(int i, void *arg)
{
    struct lk_waiters *w = arg;
    test_child_setup();
    fault_sleep_until_woken();
    CHILD_CHECK(w->o->acquire(w->lock, FIPC_FOREVER) == 0, 1);
    store_time(&w->b_got);
    CHILD_CHECK(w->o->release(w->lock) == 0, 2);
    return CHILD_OK;
}

static void lk_two_waiters(const struct lk_ops *o, bool kill_woken)
{
    struct lk_waiters *w = shared(sizeof *w);
    w->o = o;
    w->lock = o->make();
    cr_assert_not_null(w->lock);
    cr_assert_eq(o->acquire(w->lock, 0), 0);
    pid_t pids[2], a, b;
    int status[2];
    pids[0] = a = test_fork(lk_waiter_a, kill_woken, w);
    cr_assert(test_wait_sleeping(a, HANDSHAKE_NS), "%s: A never slept", o->name);
    pids[1] = b = test_fork(lk_waiter_b, 0, w);
    cr_assert(test_wait_sleeping(b, HANDSHAKE_NS), "%s: B never slept", o->name);
    if (!kill_woken) test_kill_and_reap(a);
    int64_t t0 = now_ns();
    cr_assert_eq(o->release(w->lock), 0);
    if (kill_woken) {
        reap(pids, status, 2);
        expect_sigkill(status[0], "waiter A");
        expect_ok(status[1], "waiter B");
    } else {
        reap(&b, status, 1);
        expect_ok(status[0], "waiter B");
    }
    expect_within_bound(t0, load_time(&w->b_got), o->name);
    cr_assert_eq(o->acquire(w->lock, 0), 0, "%s: free, and no death to report", o->name);
    cr_assert_eq(o->release(w->lock), 0);
}

/* docs/death.md: lock-waiter-dies */
Test(death, lock_a_waiter_killed_asleep_leaves_the_next_release_to_another_waiter)
{
    for (size_t i = 0; i < sizeof lk_ops / sizeof lk_ops[0]; i++)
        lk_two_waiters(&lk_ops[i], false);
}

/* docs/death.md: lock-woken-dies */
Test(death, lock_a_waiter_killed_when_woken_before_it_retakes_the_lock_passes_the_wake_on)
{
    for (size_t i = 0; i < sizeof lk_ops / sizeof lk_ops[0]; i++)
        lk_two_waiters(&lk_ops[i], true);
}

/* A child made by a raw clone: the kernel gives it no robust list and the
 * C library does not know it exists.  It takes the lock and dies. */
static int lk_take_in_raw_clone_and_die(void *lock)
{
    if (fipc_lock_acquire(lock, 0) != 0) return 1;
    syscall(SYS_kill, syscall(SYS_getpid), SIGKILL);
    return 2;
}

/* docs/death.md: lock-no-robust-list */
Test(death, lock_held_by_a_thread_without_a_robust_list_that_died_is_recovered)
{
    fipc_lock *l = fipc_lock_new(test_arena());
    long pid = syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
    cr_assert_geq(pid, 0, "clone: %s", strerror(errno));
    if (pid == 0) _exit(lk_take_in_raw_clone_and_die(l));
    int status;
    cr_assert_eq(waitpid((pid_t)pid, &status, 0), (pid_t)pid);
    expect_sigkill(status, "the raw clone child");
    /* The word still names the dead thread: only a waiter's liveness
     * check finds it gone. */
    cr_assert(fipc_lock_locked(l));
    cr_assert_eq(fipc_lock_acquire(l, 0), -EAGAIN);
    int64_t t0 = now_ns();
    cr_assert_eq(fipc_lock_acquire(l, DEATH_BOUND_NS), -EOWNERDEAD);
    expect_within_bound(t0, now_ns(), "lock");
    cr_assert_eq(fipc_lock_release(l), 0);
    cr_assert_eq(fipc_lock_acquire(l, 0), 0);
    cr_assert_eq(fipc_lock_release(l), 0);
}

/* ==== Semaphore ========================================================== */

struct sem_case {
    fipc_sem *s;
    uint32_t in;    /* children that hold their unit (holder) */
    uint32_t got;   /* children that took a unit (waiters) */
    int64_t got_at; /* when the first did */
};

static int sem_take_and_die(int i, void *arg)
{
    struct sem_case *c = arg;
    test_child_setup();
    CHILD_CHECK(fipc_sem_acquire(c->s, 0) == 0, 1);
    raise(SIGKILL);
    return CHILD_FAIL(2);
}

/* docs/death.md: sem-holder-dies */
Test(death, sem_a_unit_held_by_a_process_that_died_is_lost_until_someone_releases_it)
{
    for (int bounded = 0; bounded <= 1; bounded++) {
        struct sem_case *c = shared(sizeof *c);
        c->s = bounded ? fipc_sem_new_bounded(test_arena(), 1) : fipc_sem_new(test_arena(), 1);
        cr_assert_not_null(c->s);
        int status;
        pid_t pid = test_fork(sem_take_and_die, 0, c);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        expect_sigkill(status, "the holder");
        /* No owner: nothing marks the unit as a dead one's. */
        cr_assert_eq(fipc_sem_value(c->s), 0);
        cr_assert_eq(fipc_sem_acquire(c->s, FIPC_MSEC(100)), -ETIMEDOUT);
        /* Anyone may release it on the dead holder's behalf; a bounded
         * semaphore still counts it within its bound. */
        cr_assert_eq(fipc_sem_release(c->s), 0);
        cr_assert_eq(fipc_sem_value(c->s), 1);
        if (bounded) cr_assert_eq(fipc_sem_release(c->s), -EOVERFLOW);
        cr_assert_eq(fipc_sem_acquire(c->s, 0), 0);
    }
}

static int sem_sleep_until_killed(int i, void *arg)
{
    struct sem_case *c = arg;
    test_child_setup();
    fipc_sem_acquire(c->s, FIPC_FOREVER);
    return CHILD_FAIL(1);
}

static int sem_take_when_woken(int i, void *arg)
{
    struct sem_case *c = arg;
    test_child_setup();
    fault_sleep_until_woken(); /* only the release's wake gets it out */
    CHILD_CHECK(fipc_sem_acquire(c->s, FIPC_FOREVER) == 0, 1);
    store_time(&c->got_at);
    return CHILD_OK;
}

/* docs/death.md: sem-waiter-dies */
Test(death, sem_a_waiter_killed_asleep_leaves_the_next_release_to_another_waiter)
{
    struct sem_case *c = shared(sizeof *c);
    c->s = fipc_sem_new(test_arena(), 0);
    pid_t a = test_fork(sem_sleep_until_killed, 0, c);
    cr_assert(test_wait_sleeping(a, HANDSHAKE_NS));
    pid_t b = test_fork(sem_take_when_woken, 0, c);
    cr_assert(test_wait_sleeping(b, HANDSHAKE_NS));
    test_kill_and_reap(a);
    int64_t t0 = now_ns();
    cr_assert_eq(fipc_sem_release(c->s), 0);
    int status;
    reap(&b, &status, 1);
    expect_ok(status, "waiter B");
    expect_within_bound(t0, load_time(&c->got_at), "the release reached B");
    cr_assert_eq(fipc_sem_value(c->s), 0);
}

/* Sleeps in acquire; dies if a wake ends one of its sleeps (before it can
 * take the unit); takes the unit if it finds it at a re-check. */
static int sem_die_if_woken(int i, void *arg)
{
    struct sem_case *c = arg;
    test_child_setup();
    fault_kill_when_woken();
    test_flag_add(&c->in);
    CHILD_CHECK(fipc_sem_acquire(c->s, HANDSHAKE_NS) == 0, 1);
    store_time(&c->got_at);
    test_flag_add(&c->got);
    return CHILD_OK;
}

/* docs/death.md: sem-woken-dies */
Test(death, sem_a_waiter_killed_when_woken_before_it_takes_the_unit_delays_the_others_100ms_at_most)
{
    int played = 0;
    for (int round = 0; round < 10 && played < 3; round++) {
        struct sem_case *c = shared(sizeof *c);
        c->s = fipc_sem_new(test_arena(), 0);
        pid_t pids[2];
        for (int i = 0; i < 2; i++) {
            pids[i] = test_fork(sem_die_if_woken, i, c);
            cr_assert(test_wait_sleeping(pids[i], HANDSHAKE_NS));
        }
        int64_t t0 = now_ns();
        cr_assert_eq(fipc_sem_release(c->s), 0); /* wakes one: it dies */
        cr_assert(test_wait_until_at_least(&c->got, 1, DEATH_REAP_NS), "nobody took the unit");
        int64_t got = load_time(&c->got_at);
        /* One took the unit and ends; the other was killed by the wake (a
         * round in which the wake found nobody queued plays nothing). */
        int status[2];
        bool ended[2];
        for (int i = 0; i < 2; i++)
            ended[i] = ended_within(pids[i], FIPC_SEC(1), &status[i]);
        int killed = 0, ok = 0;
        for (int i = 0; i < 2; i++) {
            if (!ended[i]) {
                test_kill_and_reap(pids[i]);
                continue;
            }
            if (WIFSIGNALED(status[i]) && WTERMSIG(status[i]) == SIGKILL)
                killed++;
            else
                ok += WIFEXITED(status[i]) && WEXITSTATUS(status[i]) == 0;
        }
        cr_assert_eq(ok, 1, "exactly one took the one unit");
        cr_assert_eq(fipc_sem_value(c->s), 0);
        if (killed == 1) {
            played++;
            expect_within_bound(t0, got, "the survivor took the unit");
        }
    }
    cr_assert(played > 0, "no round had its woken waiter killed");
}

/* ==== Event ============================================================== */

struct ev_case {
    fipc_event *e;
    int64_t b_back;
};

static int ev_sleep_until_killed(int i, void *arg)
{
    struct ev_case *c = arg;
    test_child_setup();
    fipc_event_wait(c->e, FIPC_FOREVER);
    return CHILD_FAIL(1);
}

static int ev_wait_until_woken(int i, void *arg)
{
    struct ev_case *c = arg;
    test_child_setup();
    fault_sleep_until_woken();
    CHILD_CHECK(fipc_event_wait(c->e, FIPC_FOREVER) == 0, 1);
    store_time(&c->b_back);
    return CHILD_OK;
}

/* docs/death.md: event-waiter-dies */
Test(death, event_a_waiter_killed_asleep_changes_nothing_for_the_others)
{
    struct ev_case *c = shared(sizeof *c);
    c->e = fipc_event_new(test_arena());
    pid_t a = test_fork(ev_sleep_until_killed, 0, c);
    cr_assert(test_wait_sleeping(a, HANDSHAKE_NS));
    pid_t b = test_fork(ev_wait_until_woken, 0, c);
    cr_assert(test_wait_sleeping(b, HANDSHAKE_NS));
    test_kill_and_reap(a);
    int64_t t0 = now_ns();
    cr_assert_eq(fipc_event_set(c->e), 0);
    int status;
    reap(&b, &status, 1);
    expect_ok(status, "waiter B");
    expect_within_bound(t0, load_time(&c->b_back), "the set woke B");
}

/* ==== Condition ========================================================== */

struct cv_case {
    fipc_lock *l;
    fipc_cond *c;
    int64_t b_back;
};

static int cv_wait_and_die_when_woken(int i, void *arg)
{
    struct cv_case *c = arg;
    test_child_setup();
    CHILD_CHECK(fipc_lock_acquire(c->l, HANDSHAKE_NS) == 0, 1);
    /* From here on, the cond's sleep: it ends by the notify's wake only (a
     * re-check could take the wake-up first), and then the process dies. */
    fault_sleep_until_woken();
    fault_kill_when_woken();
    fipc_cond_wait(c->c, c->l, HANDSHAKE_NS);
    return CHILD_FAIL(2);
}

static int cv_wait(int i, void *arg)
{
    struct cv_case *c = arg;
    test_child_setup();
    CHILD_CHECK(fipc_lock_acquire(c->l, HANDSHAKE_NS) == 0, 1);
    CHILD_CHECK(fipc_cond_wait(c->c, c->l, HANDSHAKE_NS) == 0, 2);
    store_time(&c->b_back);
    CHILD_CHECK(fipc_lock_release(c->l) == 0, 3);
    return CHILD_OK;
}

/* docs/death.md: cond-woken-dies */
Test(death, cond_a_waiter_killed_when_woken_leaves_its_wake_up_to_a_live_waiter)
{
    struct cv_case *c = shared(sizeof *c);
    c->l = fipc_lock_new(test_arena());
    c->c = fipc_cond_new(test_arena());
    pid_t pids[2];
    int status[2];
    pids[0] = test_fork(cv_wait_and_die_when_woken, 0, c);
    cr_assert(test_wait_sleeping(pids[0], HANDSHAKE_NS));
    pids[1] = test_fork(cv_wait, 1, c);
    cr_assert(test_wait_sleeping(pids[1], HANDSHAKE_NS));
    cr_assert(TEST_WAIT_UNTIL(fipc_cond_n_waiting(c->c) == 2, HANDSHAKE_NS));
    cr_assert_eq(fipc_lock_acquire(c->l, HANDSHAKE_NS), 0);
    int64_t t0 = now_ns();
    cr_assert_eq(fipc_cond_notify(c->c, 1), 0);
    cr_assert_eq(fipc_lock_release(c->l), 0);
    reap(pids, status, 2);
    expect_sigkill(status[0], "the waiter killed when woken");
    expect_ok(status[1], "the live waiter");
    expect_within_bound(t0, load_time(&c->b_back), "the live waiter returned");
    /* The dead waiter never held the lock again: no death to report. */
    cr_assert_eq(fipc_lock_acquire(c->l, 0), 0);
    cr_assert_eq(fipc_lock_release(c->l), 0);
}

/* ==== Barrier ============================================================ */

struct bar_case {
    fipc_barrier *b;
    int64_t last_in;  /* when the last party called wait */
    int64_t first_at; /* when the first party returned */
    int32_t first_ret;
};

static int bar_first(int i, void *arg)
{
    struct bar_case *c = arg;
    test_child_setup();
    int r = fipc_barrier_wait(c->b, HANDSHAKE_NS);
    c->first_ret = r;
    store_time(&c->first_at);
    CHILD_CHECK(r >= 0, 1);
    return CHILD_OK;
}

static int bar_last_dies_before_waking(int i, void *arg)
{
    struct bar_case *c = arg;
    test_child_setup();
    store_time(&c->last_in);
    fault_kill_at_next_wake();
    fipc_barrier_wait(c->b, HANDSHAKE_NS);
    return CHILD_FAIL(1);
}

/* docs/death.md: barrier-release-dies */
Test(death,
     barrier_last_party_killed_between_releasing_the_round_and_waking_delays_it_100ms_at_most)
{
    struct bar_case *c = shared(sizeof *c);
    c->b = fipc_barrier_new(test_arena(), 2);
    pid_t pids[2];
    int status[2];
    pids[0] = test_fork(bar_first, 0, c);
    cr_assert(test_wait_sleeping(pids[0], HANDSHAKE_NS));
    pids[1] = test_fork(bar_last_dies_before_waking, 1, c);
    reap(pids, status, 2);
    fault_expect_killed(status[1], "the last party");
    expect_ok(status[0], "the first party");
    cr_assert_geq(c->first_ret, 0, "released, with its index");
    expect_within_bound(load_time(&c->last_in), load_time(&c->first_at),
                        "the sleeper saw its round released");
    cr_assert_not(fipc_barrier_broken(c->b));
}

/* ==== Queue ============================================================== */

static fipc_queue *new_queue(size_t capacity, size_t max_item, unsigned flags)
{
    fipc_queue *q;
    cr_assert_eq(fipc_queue_create(&q, test_arena(), capacity, max_item, flags), 0);
    return q;
}

static void put_int(fipc_queue *q, int v)
{
    cr_assert_eq(fipc_queue_put(q, &v, sizeof v, 0), 0, "put %d", v);
}

static int get_int(fipc_queue *q, int64_t timeout_ns)
{
    int v = -1;
    size_t len = 0;
    int r = fipc_queue_get(q, &v, sizeof v, &len, timeout_ns);
    cr_assert_eq(r, 0, "get gave %d (%s)", r, fipc_strerror(r));
    cr_assert_eq(len, sizeof v);
    return v;
}

static int get_r(fipc_queue *q, int64_t timeout_ns)
{
    int v;
    size_t len;
    return fipc_queue_get(q, &v, sizeof v, &len, timeout_ns);
}

/* A producer killed between claiming i positions and publishing them. */
static int put_claim_and_die(int i, void *arg)
{
    struct fipc__put_claim c;
    int v[8] = {0};
    struct iovec its[8];
    for (int x = 0; x < 8; x++)
        its[x] = (struct iovec){&v[x], sizeof v[x]};
    CHILD_CHECK(i <= 8 && fipc__queue_put_claim(arg, its, (size_t)i, &c) == i, 1);
    raise(SIGKILL);
    return CHILD_FAIL(2);
}

/* A consumer killed between claiming i messages and releasing them. */
static int get_claim_and_die(int i, void *arg)
{
    CHILD_CHECK(fipc__queue_mpmc_get_claim_only(arg, (size_t)i) == i, 1);
    raise(SIGKILL);
    return CHILD_FAIL(2);
}

static void play_death(int (*fn)(int, void *), int i, void *arg)
{
    int status;
    pid_t pid = test_fork(fn, i, arg);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    expect_sigkill(status, "the dying process");
}

struct q_case {
    fipc_queue *q;
    uint32_t got;
    int32_t value;
    int64_t got_at;
};

static int q_get_die_when_woken(int i, void *arg)
{
    struct q_case *c = arg;
    test_child_setup();
    fault_sleep_until_woken(); /* a re-check could take the item first */
    fault_kill_when_woken();
    get_r(c->q, HANDSHAKE_NS);
    return CHILD_FAIL(1);
}

static int q_get_when_woken(int i, void *arg)
{
    struct q_case *c = arg;
    test_child_setup();
    fault_sleep_until_woken(); /* out by the put's wake, not a re-check */
    int v = -1;
    size_t len;
    CHILD_CHECK(fipc_queue_get(c->q, &v, sizeof v, &len, FIPC_FOREVER) == 0, 1);
    c->value = v;
    store_time(&c->got_at);
    return CHILD_OK;
}

static int q_put_die_when_woken(int i, void *arg)
{
    struct q_case *c = arg;
    test_child_setup();
    fault_sleep_until_woken();
    fault_kill_when_woken();
    int v = 100;
    fipc_queue_put(c->q, &v, sizeof v, HANDSHAKE_NS);
    return CHILD_FAIL(1);
}

static int q_put_when_woken(int i, void *arg)
{
    struct q_case *c = arg;
    test_child_setup();
    fault_sleep_until_woken();
    int v = 200;
    CHILD_CHECK(fipc_queue_put(c->q, &v, sizeof v, FIPC_FOREVER) == 0, 1);
    store_time(&c->got_at);
    return CHILD_OK;
}

/* docs/death.md: queue-woken-dies */
Test(death, queue_a_waiter_killed_when_woken_before_it_takes_the_item_stalls_no_other_waiter)
{
    /* Consumers asleep on an empty queue; a put wakes them all. */
    struct q_case *c = shared(sizeof *c);
    c->q = new_queue(4, sizeof(int), 0);
    pid_t pids[2];
    int status[2];
    pids[0] = test_fork(q_get_die_when_woken, 0, c);
    cr_assert(test_wait_sleeping(pids[0], HANDSHAKE_NS));
    pids[1] = test_fork(q_get_when_woken, 1, c);
    cr_assert(test_wait_sleeping(pids[1], HANDSHAKE_NS));
    int64_t t0 = now_ns();
    put_int(c->q, 7);
    reap(pids, status, 2);
    expect_sigkill(status[0], "the consumer killed when woken");
    expect_ok(status[1], "the live consumer");
    cr_assert_eq(c->value, 7);
    expect_within_bound(t0, load_time(&c->got_at), "the live consumer got the item");
    cr_assert(fipc_queue_empty(c->q));

    /* Producers asleep on a full queue; a get wakes them all. */
    c = shared(sizeof *c);
    c->q = new_queue(2, sizeof(int), 0);
    put_int(c->q, 1);
    put_int(c->q, 2);
    pids[0] = test_fork(q_put_die_when_woken, 0, c);
    cr_assert(test_wait_sleeping(pids[0], HANDSHAKE_NS));
    pids[1] = test_fork(q_put_when_woken, 1, c);
    cr_assert(test_wait_sleeping(pids[1], HANDSHAKE_NS));
    t0 = now_ns();
    cr_assert_eq(get_int(c->q, 0), 1);
    reap(pids, status, 2);
    expect_sigkill(status[0], "the producer killed when woken");
    expect_ok(status[1], "the live producer");
    expect_within_bound(t0, load_time(&c->got_at), "the live producer put its item");
    cr_assert_eq(get_int(c->q, 0), 2);
    cr_assert_eq(get_int(c->q, 0), 200);
    cr_assert_eq(get_r(c->q, 0), -EAGAIN);
}

/* docs/death.md: queue-put-claim-dies */
Test(death, queue_mpmc_a_producer_killed_between_claim_and_publish_is_passed_within_100ms)
{
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    play_death(put_claim_and_die, 1, q);
    put_int(q, 1);
    int64_t t0 = now_ns();
    cr_assert_eq(get_int(q, DEATH_REAP_NS), 1);
    expect_within_bound(t0, now_ns(), "the consumer passed the dead claim");
    cr_assert_eq(get_r(q, 0), -EAGAIN);
}

/* docs/death.md: queue-get-claim-dies */
Test(death, queue_mpmc_a_consumer_killed_between_claim_and_release_is_passed_within_100ms)
{
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    for (int i = 0; i < 4; i++)
        put_int(q, i);
    play_death(get_claim_and_die, 1, q); /* inside the get of message 0 */
    for (int i = 1; i < 4; i++)
        cr_assert_eq(get_int(q, 0), i);
    int v = 4;
    int64_t t0 = now_ns();
    cr_assert_eq(fipc_queue_put(q, &v, sizeof v, DEATH_REAP_NS), 0);
    expect_within_bound(t0, now_ns(), "the producer passed the dead consumer's slot");
    /* Message 0 was put again in the dead consumer's place, before 4. */
    cr_assert_eq(get_int(q, 0), 0);
    cr_assert_eq(get_int(q, 0), 4);
    cr_assert_eq(get_r(q, 0), -EAGAIN);
}

static int get_one_and_die(int i, void *arg)
{
    int v = -1;
    size_t len;
    CHILD_CHECK(fipc_queue_get(arg, &v, sizeof v, &len, 0) == 0 && v == i, 1);
    raise(SIGKILL);
    return CHILD_FAIL(2);
}

/* docs/death.md: queue-after-get-dies */
Test(death, queue_a_consumer_killed_after_its_get_returned_takes_only_that_message)
{
    for (unsigned flags = 0; flags <= FIPC_QUEUE_SPSC; flags += FIPC_QUEUE_SPSC) {
        fipc_queue *q = new_queue(4, sizeof(int), flags);
        for (int i = 0; i < 4; i++)
            put_int(q, i);
        play_death(get_one_and_die, 0, q);
        cr_assert_eq(fipc_queue_qsize(q), 3);
        for (int i = 1; i < 4; i++)
            cr_assert_eq(get_int(q, 0), i);
        put_int(q, 4);
        cr_assert_eq(get_int(q, 0), 4);
        cr_assert_eq(get_r(q, 0), -EAGAIN);
    }
}

/* An SPSC producer killed after copying its message, before publishing. */
static int spsc_copy_and_die(int i, void *arg)
{
    struct fipc__put_claim c;
    int v = 666;
    struct iovec it = {&v, sizeof v};
    CHILD_CHECK(fipc__queue_put_claim(arg, &it, 1, &c) == 1, 1);
    spsc_put_copy(c.g, &c.claim, &it);
    raise(SIGKILL);
    return CHILD_FAIL(2);
}

/* An SPSC consumer killed after copying a message out, before releasing
 * its slot. */
static int spsc_read_and_die(int i, void *arg)
{
    fipc_queue *q = arg;
    const struct geom *g = fipc__queue_view(q);
    CHILD_CHECK(g != NULL, 1);
    uint64_t pos = q->head;
    CHILD_CHECK(spsc_full_from(g, pos, 1) == 1, 2);
    const struct slot *s = slot_at(g, pos);
    CHILD_CHECK(s->len == sizeof(int), 3);
    unsigned char buf[64];
    size_t len;
    const struct get_buf b = {buf, sizeof buf, &len};
    slot_copy_out(&b, 0, s, sizeof(int));
    int v;
    memcpy(&v, buf, sizeof v);
    CHILD_CHECK(v == i, 4);
    raise(SIGKILL);
    return CHILD_FAIL(5);
}

/* docs/death.md: spsc-unpublished-dies */
Test(death, queue_spsc_a_side_killed_before_handing_its_slot_over_leaves_it_to_its_replacement)
{
    fipc_queue *q = new_queue(4, sizeof(int), FIPC_QUEUE_SPSC);
    put_int(q, 1);
    play_death(spsc_copy_and_die, 0, q);
    put_int(q, 2); /* the replacement producer writes the same slot again */
    play_death(spsc_read_and_die, 1, q);
    /* The replacement consumer reads message 1 again: its first reader
     * never returned it. */
    cr_assert_eq(get_int(q, 0), 1);
    cr_assert_eq(get_int(q, 0), 2);
    cr_assert_eq(get_r(q, 0), -EAGAIN);
}

/* ---- the guarantees of include/fipc/queue.h ---- */

/* docs/death.md: queue-snapshot-dead-put */
Test(death, queue_not_empty_over_a_dead_claim_means_a_waiting_get_passes_it)
{
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    play_death(put_claim_and_die, 1, q);
    cr_assert_eq(fipc_queue_qsize(q), 1, "the dead claim counts");
    cr_assert_not(fipc_queue_empty(q));
    /* A get that waits passes it (it finds no message behind it). */
    int64_t end = now_ns() + DEATH_REAP_NS;
    while (!fipc_queue_empty(q) && now_ns() < end)
        cr_assert_eq(get_r(q, FIPC_MSEC(100)), -ETIMEDOUT);
    cr_assert(fipc_queue_empty(q), "the dead claim was never passed");
    put_int(q, 5);
    cr_assert_eq(get_int(q, 0), 5);

    /* full() over a dead claim: a waiting get returns what is behind it. */
    play_death(put_claim_and_die, 1, q);
    for (int i = 0; i < 3; i++)
        put_int(q, i);
    cr_assert(fipc_queue_full(q));
    int v = 9;
    cr_assert_eq(fipc_queue_put(q, &v, sizeof v, 0), -EAGAIN);
    cr_assert_eq(get_int(q, DEATH_REAP_NS), 0);
    cr_assert_eq(fipc_queue_qsize(q), 2);
    cr_assert_eq(get_int(q, 0), 1);
    cr_assert_eq(get_int(q, 0), 2);
    cr_assert(fipc_queue_empty(q));
}

/* docs/death.md: queue-snapshot-dead-get */
Test(death, queue_empty_over_a_dead_consumers_slot_means_a_waiting_put_succeeds)
{
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    for (int i = 0; i < 4; i++)
        put_int(q, i);
    play_death(get_claim_and_die, 1, q);
    for (int i = 1; i < 4; i++)
        cr_assert_eq(get_int(q, 0), i);
    cr_assert(fipc_queue_empty(q));
    cr_assert_eq(fipc_queue_qsize(q), 0);
    int v = 4;
    /* The first call that does not wait finds no room (the claim's grace
     * period starts there)... */
    cr_assert_eq(fipc_queue_put(q, &v, sizeof v, 0), -EAGAIN);
    /* ...one that waits passes it: message 0 is put again, then 4. */
    cr_assert_eq(fipc_queue_put(q, &v, sizeof v, DEATH_REAP_NS), 0);
    cr_assert_eq(fipc_queue_qsize(q), 2);
    cr_assert_not(fipc_queue_full(q));
    for (int i = 5; i < 7; i++)
        put_int(q, i);
    cr_assert(fipc_queue_full(q));
    cr_assert_eq(get_int(q, 0), 0);
    for (int i = 4; i < 7; i++)
        cr_assert_eq(get_int(q, 0), i);
    cr_assert(fipc_queue_empty(q));
}

/* Call a put or get that does not wait until it gives other than -EAGAIN,
 * for DEATH_BOUND_NS at most; its result. */
static int put_nowait_until_done(fipc_queue *q, int v)
{
    int r;
    int64_t end = now_ns() + DEATH_BOUND_NS;
    while ((r = fipc_queue_put(q, &v, sizeof v, 0)) == -EAGAIN && now_ns() < end)
        sched_yield();
    return r;
}

static int get_nowait_until_done(fipc_queue *q, int *v)
{
    int r;
    size_t len;
    int64_t end = now_ns() + DEATH_BOUND_NS;
    while ((r = fipc_queue_get(q, v, sizeof *v, &len, 0)) == -EAGAIN && now_ns() < end)
        sched_yield();
    return r;
}

/* docs/death.md: queue-nowait-repairs */
Test(death, queue_mpmc_calls_that_do_not_wait_pass_a_dead_claim_after_its_grace_period)
{
    /* A get behind a dead producer's claim. */
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    play_death(put_claim_and_die, 2, q);
    put_int(q, 1);
    int v = -1;
    int64_t t0 = now_ns();
    cr_assert_eq(get_nowait_until_done(q, &v), 0);
    expect_within_bound(t0, now_ns(), "gets that do not wait passed the dead claim");
    cr_assert_eq(v, 1);
    cr_assert_eq(get_r(q, 0), -EAGAIN);
    cr_assert(fipc_queue_empty(q));

    /* A put behind a dead consumer's claim. */
    q = new_queue(4, sizeof(int), 0);
    for (int i = 0; i < 4; i++)
        put_int(q, i);
    play_death(get_claim_and_die, 1, q);
    for (int i = 1; i < 4; i++)
        cr_assert_eq(get_int(q, 0), i);
    t0 = now_ns();
    cr_assert_eq(put_nowait_until_done(q, 4), 0);
    expect_within_bound(t0, now_ns(), "puts that do not wait passed the dead claim");
    cr_assert_eq(get_int(q, 0), 0);
    cr_assert_eq(get_int(q, 0), 4);
    cr_assert_eq(get_r(q, 0), -EAGAIN);
}

/* docs/death.md: queue-snapshot-spsc */
Test(death, queue_spsc_full_over_a_dead_consumers_stale_head_still_lets_a_put_and_a_get_proceed)
{
    fipc_queue *q = new_queue(4, sizeof(int), FIPC_QUEUE_SPSC);
    for (int i = 0; i < 4; i++)
        put_int(q, i);
    int v[4];
    size_t lens[4];
    cr_assert_eq(fipc_queue_get_many(q, v, sizeof v[0], lens, 4, 0), 4);
    /* The consumer released the four slots and died before storing head. */
    q->head = 0;
    cr_assert(fipc_queue_full(q), "a stale head makes it read full");
    /* Yet a put proceeds (the slots are free)... */
    put_int(q, 4);
    /* ...and the replacement consumer's get finds the true position. */
    cr_assert_eq(get_int(q, 0), 4);
    cr_assert(fipc_queue_empty(q));
    cr_assert_eq(get_r(q, 0), -EAGAIN);

    /* A producer that died before storing tail: the message is missing
     * from qsize until the next put, and a get returns it. */
    put_int(q, 5);
    q->tail -= 1;
    cr_assert(fipc_queue_empty(q));
    cr_assert_eq(get_int(q, 0), 5);
    put_int(q, 6);
    cr_assert_eq(fipc_queue_qsize(q), 1);
    cr_assert_eq(get_int(q, 0), 6);
}

static int get_forever_until_epipe(int i, void *arg)
{
    fipc_queue *q = arg;
    test_child_setup();
    int got = 0, r, v;
    size_t len;
    while ((r = fipc_queue_get(q, &v, sizeof v, &len, FIPC_FOREVER)) == 0)
        got++;
    CHILD_CHECK(r == -EPIPE, 1);
    CHILD_CHECK(got == i, 2);
    return CHILD_OK;
}

/* docs/death.md: queue-close-epipe */
Test(death, queue_after_close_a_waiting_get_ends_in_epipe_whoever_died)
{
    /* MPMC: a dead producer's claim, then close: a FIPC_FOREVER drain. */
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    play_death(put_claim_and_die, 1, q);
    put_int(q, 1);
    cr_assert_eq(fipc_queue_close(q), 0);
    pid_t pid = test_fork(get_forever_until_epipe, 1, q);
    int status;
    reap(&pid, &status, 1);
    expect_ok(status, "the draining consumer");

    /* MPMC: a dead consumer's claim, then close: no put comes round to
     * put its message 1 again, so the get that finds the queue drained
     * takes it (docs/death.md: queue-mid-get-closed), once. */
    q = new_queue(4, sizeof(int), 0);
    put_int(q, 1);
    put_int(q, 2);
    play_death(get_claim_and_die, 1, q);
    cr_assert_eq(fipc_queue_close(q), 0);
    cr_assert_eq(get_int(q, DEATH_REAP_NS), 2);
    cr_assert_eq(get_int(q, DEATH_REAP_NS), 1);
    cr_assert_eq(get_r(q, DEATH_REAP_NS), -EPIPE);
    cr_assert_eq(get_r(q, 0), -EPIPE);

    /* The same with timeout 0, and a batch get that has room for both of
     * a dead batch's messages. */
    q = new_queue(4, sizeof(int), 0);
    put_int(q, 1);
    put_int(q, 2);
    put_int(q, 3);
    play_death(get_claim_and_die, 2, q);
    cr_assert_eq(fipc_queue_close(q), 0);
    cr_assert_eq(get_int(q, 0), 3);
    int vs[4];
    size_t lens[4];
    cr_assert_eq(fipc_queue_get_many(q, vs, sizeof vs[0], lens, 4, 0), 2);
    cr_assert(vs[0] == 1 && vs[1] == 2 && lens[0] == sizeof(int) && lens[1] == sizeof(int));
    cr_assert_eq(get_r(q, 0), -EPIPE);

    /* SPSC: a producer that died before storing tail, then close. */
    q = new_queue(4, sizeof(int), FIPC_QUEUE_SPSC);
    put_int(q, 1);
    put_int(q, 2);
    q->tail -= 1;
    cr_assert_eq(fipc_queue_close(q), 0);
    pid = test_fork(get_forever_until_epipe, 2, q);
    reap(&pid, &status, 1);
    expect_ok(status, "the draining SPSC consumer");

    /* SPSC: a producer killed before publishing, then close. */
    q = new_queue(4, sizeof(int), FIPC_QUEUE_SPSC);
    put_int(q, 1);
    play_death(spsc_copy_and_die, 0, q);
    cr_assert_eq(fipc_queue_close(q), 0);
    pid = test_fork(get_forever_until_epipe, 1, q);
    reap(&pid, &status, 1);
    expect_ok(status, "the draining SPSC consumer");
}

/*
 * docs/death.md: queue-close-epipe-nowait (disabled: fails).
 *
 * Defect in lib/ring_mpmc.h / lib/queue.c: after close, a get with
 * timeout_ns == 0 in front of a claim whose producer died returns -EAGAIN
 * on every call, never -EPIPE: such calls never repair (they do not wait),
 * and mpmc_closed_and_drained needs head == tail, which the dead claim
 * keeps apart.  A consumer that drains a closed queue with non-blocking
 * gets spins for ever, unless some call that waits passes the claim.
 */
Test(death, queue_after_close_a_nonblocking_get_ends_in_epipe_over_a_dead_claim)
{
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    play_death(put_claim_and_die, 1, q);
    put_int(q, 1);
    cr_assert_eq(fipc_queue_close(q), 0);
    int got = 0, r = 0;
    int64_t end = now_ns() + DEATH_BOUND_NS;
    while (now_ns() < end && (r = get_r(q, 0)) != -EPIPE) {
        cr_assert(r == 0 || r == -EAGAIN, "get gave %d", r);
        got += r == 0;
        sched_yield();
    }
    cr_assert_eq(r, -EPIPE, "still %d after %lld ms of non-blocking gets", r,
                 (long long)(DEATH_BOUND_NS / 1000000));
    cr_assert_eq(got, 1);
}

/* docs/death.md: queue-exactly-once */
Test(death, queue_every_put_that_returned_0_is_delivered_once_around_dead_producers)
{
    fipc_queue *q = new_queue(16, sizeof(int), 0);
    int next = 0, want = 0;
    for (int round = 0; round < 4; round++) {
        put_int(q, next++);
        play_death(put_claim_and_die, 1 + round % 2, q);
        put_int(q, next++);
    }
    while (want < next)
        cr_assert_eq(get_int(q, DEATH_REAP_NS), want++, "in order, each once");
    cr_assert(fipc_queue_empty(q));
    cr_assert_eq(get_r(q, FIPC_MSEC(50)), -ETIMEDOUT, "nothing of the dead puts");
}

/*
 * docs/death.md: queue-exactly-once-mid-get (disabled: fails).
 *
 * Defect in lib/ring_mpmc.c (repair of a get's claim): an MPMC consumer
 * killed between claiming a message and returning it from get takes the
 * message with it: the repair releases its slot without the message being
 * delivered to anyone, although the put returned 0 and no get that
 * received it returned.  include/fipc/queue.h states this exception; the
 * sentence of issue 9 ("unless the consumer that received it died after
 * its get returned") does not hold for MPMC.  SPSC keeps it
 * (queue_spsc_a_side_killed_before_handing_its_slot_over_...).
 */
Test(death, queue_mpmc_a_message_whose_consumer_died_inside_get_is_delivered_to_another)
{
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    put_int(q, 1);
    put_int(q, 2);
    play_death(get_claim_and_die, 1, q); /* inside the get of message 1 */
    cr_assert_eq(get_int(q, 0), 2);
    /* The producers of the next lap reach the dead consumer's slot: a put
     * that waits there puts message 1 again, behind 3 and 4. */
    put_int(q, 3);
    put_int(q, 4);
    int v = 5;
    int64_t t0 = now_ns();
    cr_assert_eq(fipc_queue_put(q, &v, sizeof v, DEATH_REAP_NS), 0);
    expect_within_bound(t0, now_ns(), "the put passed the dead consumer's slot");
    cr_assert_eq(get_int(q, 0), 3);
    cr_assert_eq(get_int(q, 0), 4);
    cr_assert_eq(get_int(q, 0), 1, "message 1 was lost");
    cr_assert_eq(get_int(q, 0), 5);
    cr_assert_eq(get_r(q, 0), -EAGAIN);
}

struct crowd {
    fipc_queue *q;
    uint32_t ready, go;
};

/* Put one message (taking a claimer record) and keep the record, alive,
 * until told to go. */
static int put_and_hold_a_record(int i, void *arg)
{
    struct crowd *c = arg;
    test_child_setup();
    int v = i;
    CHILD_CHECK(fipc_queue_put(c->q, &v, sizeof v, 0) == 0, 1);
    test_flag_add(&c->ready);
    CHILD_CHECK(test_wait_until_at_least(&c->go, 1, HANDSHAKE_NS), 2);
    return CHILD_OK;
}

/* More live holders than a block of records: the records grow, every
 * holder has one, and a dead claim is repaired as ever. */
enum { CROWD = 2 * QUEUE_CLAIMERS + 8 };

/* docs/death.md: queue-records-grow */
Test(death, queue_mpmc_with_more_live_holders_than_a_block_of_records_a_dead_claim_is_repaired)
{
    struct crowd *c = shared(sizeof *c);
    c->q = new_queue(2 * CROWD, sizeof(int), 0);
    pid_t pids[CROWD];
    for (int i = 0; i < CROWD; i++)
        pids[i] = test_fork(put_and_hold_a_record, i, c);
    cr_assert(test_wait_until_at_least(&c->ready, CROWD, HANDSHAKE_NS));
    /* Every holder lives: this thread still gets a record of its own. */
    put_int(c->q, 1000);
    const struct geom *g = fipc__queue_view(c->q);
    cr_assert(g && g->me, "this thread has a record");
    cr_assert_eq(c->q->unrecorded, 0);
    cr_assert_eq(c->q->records, CROWD + 1, "one record per holder, no more");
    /* A producer that dies mid-claim, with a record too. */
    play_death(put_claim_and_die, 1, c->q);
    cr_assert_eq(c->q->unrecorded, 0);
    for (int i = 0; i <= CROWD; i++)
        get_int(c->q, 0);
    /* The dead claim is passed by a get that waits, while every holder
     * still lives. */
    put_int(c->q, 2000);
    cr_assert_eq(fipc_queue_qsize(c->q), 2, "the dead claim and 2000");
    int64_t t0 = now_ns();
    cr_assert_eq(get_int(c->q, DEATH_REAP_NS), 2000);
    expect_within_bound(t0, now_ns(), "the get passed the dead claim");
    cr_assert(fipc_queue_empty(c->q));
    test_flag_set(&c->go, 1);
    for (int i = 0; i < CROWD; i++)
        test_expect_ok(pids[i]);
}

/* docs/death.md: queue-records-full */
Test(death, queue_mpmc_once_a_thread_found_no_room_for_more_records_no_dead_claim_is_repaired)
{
    fipc_arena *a;
    cr_assert_eq(fipc_arena_create(&a, "full", 1 << 20), 0);
    struct crowd *c = fipc_arena_alloc(a, sizeof *c, 64);
    cr_assert_not_null(c);
    cr_assert_eq(fipc_queue_create(&c->q, a, 2 * QUEUE_CLAIMERS, sizeof(int), 0), 0);
    /* The arena has no room left for a block of records. */
    size_t left = fipc_arena_size(a) - fipc_arena_used(a);
    cr_assert_not_null(fipc_arena_alloc(a, left - 64, 64));
    cr_assert_lt(fipc_arena_size(a) - fipc_arena_used(a), sizeof(struct claimer_block));
    pid_t pids[QUEUE_CLAIMERS];
    for (int i = 0; i < QUEUE_CLAIMERS; i++)
        pids[i] = test_fork(put_and_hold_a_record, i, c);
    cr_assert(test_wait_until_at_least(&c->ready, QUEUE_CLAIMERS, HANDSHAKE_NS));
    /* Every record is held by a live process, and no block fits: this
     * thread claims without a record. */
    put_int(c->q, 1000);
    cr_assert_eq(c->q->unrecorded, 1);
    cr_assert_eq(c->q->more, 0);
    play_death(put_claim_and_die, 1, c->q);
    test_flag_set(&c->go, 1);
    for (int i = 0; i < QUEUE_CLAIMERS; i++)
        test_expect_ok(pids[i]);
    for (int i = 0; i <= QUEUE_CLAIMERS; i++)
        get_int(c->q, 0);
    /* The dead claim is never passed, however long a get waits. */
    cr_assert_eq(fipc_queue_qsize(c->q), 1);
    cr_assert_eq(get_r(c->q, FIPC_MSEC(200)), -ETIMEDOUT);
    cr_assert_eq(fipc_queue_qsize(c->q), 1);
    fipc_arena_close(a);
}

/* ==== JoinableQueue ====================================================== */

static void jq_producer_dies(unsigned flags);

/* More producer threads than a block of records, putting while a joiner
 * waits: their tallies, in the records the queue added, count, and take
 * the joiners' lock as the first block's do. */
struct jcrowd {
    fipc_jqueue *j;
    uint32_t ready, go, joined;
    int join_r;
};

static void *jq_put_and_hold_a_record(void *arg)
{
    struct jcrowd *c = arg;
    int v = 7;
    intptr_t r = fipc_jqueue_put(c->j, &v, sizeof v, 0);
    test_flag_add(&c->ready);
    if (!test_wait_until_at_least(&c->go, 1, HANDSHAKE_NS)) r = -ETIMEDOUT;
    return (void *)r;
}

static void *jq_join(void *arg)
{
    struct jcrowd *c = arg;
    c->join_r = fipc_jqueue_join(c->j, DEATH_REAP_NS);
    test_flag_add(&c->joined);
    return NULL;
}

/* docs/death.md: queue-records-grow */
Test(death, jqueue_with_more_producer_threads_than_a_block_of_records_counts_every_item)
{
    struct jcrowd *c = shared(sizeof *c);
    cr_assert_eq(fipc_jqueue_create(&c->j, test_arena(), 2 * CROWD, sizeof(int), 0), 0);
    fipc_queue *q = fipc_jqueue_queue(c->j);
    int v = 1;
    size_t len;
    cr_assert_eq(fipc_jqueue_put(c->j, &v, sizeof v, 0), 0); /* record 0 */
    const struct geom *g = fipc__queue_view(q);
    cr_assert(g && g->me == claimers_of(g));
    pthread_t joiner, t[CROWD];
    cr_assert_eq(pthread_create(&joiner, NULL, jq_join, c), 0);
    /* The joiner locks the counts (jqueue.c): every record's tally. */
    cr_assert(TEST_WAIT_UNTIL(__atomic_load_n(&g->me->tally, __ATOMIC_ACQUIRE) & TALLY_LOCKED,
                              HANDSHAKE_NS));
    for (int i = 0; i < CROWD; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, jq_put_and_hold_a_record, c), 0);
    cr_assert(test_wait_until_at_least(&c->ready, CROWD, HANDSHAKE_NS));
    cr_assert_eq(q->unrecorded, 0);
    cr_assert_eq(q->records, CROWD + 2, "this thread's, the joiner's and the producers'");
    /* The records of the added blocks took the joiners' lock bit too. */
    unsigned blocks = 0, locked = 0, all = 0;
    for (struct claimer *b = claimers_of(g); b; b = claimers_next(g, b, &blocks))
        for (int k = 0; k < QUEUE_CLAIMERS; k++, all++)
            locked += (b[k].tally & TALLY_LOCKED) != 0;
    cr_assert_eq(blocks, (CROWD + 2 + QUEUE_CLAIMERS - 1) / QUEUE_CLAIMERS - 1);
    cr_assert_eq(locked, all);
    cr_assert_eq(fipc_jqueue_unfinished(c->j), CROWD + 1);
    for (int i = 0; i < CROWD + 1; i++) {
        cr_assert_eq(fipc_jqueue_get(c->j, &v, sizeof v, &len, 0), 0);
        cr_assert_eq(__atomic_load_n(&c->joined, __ATOMIC_ACQUIRE), 0, "joined at %d", i);
        cr_assert_eq(fipc_jqueue_task_done(c->j), 0);
    }
    cr_assert(test_wait_until_at_least(&c->joined, 1, HANDSHAKE_NS));
    cr_assert_eq(c->join_r, 0);
    cr_assert_eq(fipc_jqueue_unfinished(c->j), 0);
    cr_assert_eq(fipc_jqueue_task_done(c->j), -EOVERFLOW);
    test_flag_set(&c->go, 1);
    for (int i = 0; i < CROWD; i++) {
        void *r;
        cr_assert_eq(pthread_join(t[i], &r), 0);
        cr_assert_eq((intptr_t)r, 0, "thread %d", i);
    }
    cr_assert_eq(pthread_join(joiner, NULL), 0);
}

/* A jqueue producer killed after counting its item, before publishing. */
static int jq_count_and_die(int i, void *arg)
{
    int v = 666;
    struct iovec it = {&v, sizeof v};
    CHILD_CHECK(fipc__jqueue_put_counted_only(arg, &it, 1) == 1, 1);
    raise(SIGKILL);
    return CHILD_FAIL(2);
}

/* docs/death.md: jqueue-put-claim-dies */
Test(death, jqueue_a_producer_killed_inside_put_counts_for_nothing_and_stalls_no_get)
{
    for (unsigned flags = 0; flags <= FIPC_QUEUE_SPSC; flags += FIPC_QUEUE_SPSC)
        jq_producer_dies(flags);
}

static void jq_producer_dies(unsigned flags)
{
    fipc_jqueue *j;
    cr_assert_eq(fipc_jqueue_create(&j, test_arena(), 4, sizeof(int), flags), 0);
    play_death(jq_count_and_die, 0, j);
    /* Counted until the repair (MPMC) or the next put (SPSC) says better. */
    cr_assert_eq(fipc_jqueue_unfinished(j), 1);
    int v = 1;
    cr_assert_eq(fipc_jqueue_put(j, &v, sizeof v, 0), 0);
    size_t len;
    v = -1;
    /* MPMC: the get waits out the repair and passes the dead put's
     * counted tombstone, which counts it done. */
    cr_assert_eq(fipc_jqueue_get(j, &v, sizeof v, &len, DEATH_REAP_NS), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(fipc_jqueue_unfinished(j), 1);
    cr_assert_eq(fipc_jqueue_task_done(j), 0);
    /* The dead put counts for nothing: the one real item done is all. */
    cr_assert_eq(fipc_jqueue_unfinished(j), 0);
    cr_assert_eq(fipc_jqueue_join(j, 0), 0);
    cr_assert_eq(fipc_jqueue_task_done(j), -EOVERFLOW);
    /* And close still ends every get in -EPIPE. */
    cr_assert_eq(fipc_jqueue_close(j), 0);
    cr_assert_eq(fipc_jqueue_get(j, &v, sizeof v, &len, DEATH_REAP_NS), -EPIPE);
}

/* A 4-slot MPMC JoinableQueue holding, at position 0, a dead producer's
 * counted item already repaired into a counted tombstone (the slot as the
 * repair leaves it: death/jqueue_a_producer_killed_inside_put_...), at 1
 * the item 11, and then the items of extra[] (n of them). */
static fipc_jqueue *jqueue_tombstone_then_11(const int *extra, int n)
{
    fipc_jqueue *j;
    cr_assert_eq(fipc_jqueue_create(&j, test_arena(), 4, sizeof(int), 0), 0);
    const struct geom *g = fipc__queue_view(fipc_jqueue_queue(j));
    cr_assert_not_null(g);
    int v = 10;
    cr_assert_eq(fipc_jqueue_put(j, &v, sizeof v, 0), 0);
    slot_at(g, 0)->len = TOMBSTONE_COUNTED;
    v = 11;
    cr_assert_eq(fipc_jqueue_put(j, &v, sizeof v, 0), 0);
    for (int i = 0; i < n; i++)
        cr_assert_eq(fipc_jqueue_put(j, &extra[i], sizeof extra[i], 0), 0);
    return j;
}

/* docs/death.md: jqueue-get-claim-dies */
Test(death, jqueue_an_item_whose_consumer_died_inside_get_is_delivered_again_and_counted_once)
{
    fipc_jqueue *j = jqueue_tombstone_then_11(NULL, 0);
    fipc_queue *q = fipc_jqueue_queue(j);
    int v;
    size_t len;
    cr_assert_eq(fipc_jqueue_unfinished(j), 2);
    /* A consumer dies inside a get of both. */
    play_death(get_claim_and_die, 2, q);
    /* The producers of the next lap reach its slots: both are put again,
     * as they were. */
    for (v = 12; v < 14; v++)
        cr_assert_eq(fipc_jqueue_put(j, &v, sizeof v, 0), 0);
    cr_assert_eq(fipc_jqueue_get(j, &v, sizeof v, &len, 0), 0);
    cr_assert_eq(v, 12);
    cr_assert_eq(fipc_jqueue_task_done(j), 0);
    v = 14;
    cr_assert_eq(fipc_jqueue_put(j, &v, sizeof v, DEATH_REAP_NS), 0);
    cr_assert_eq(fipc_jqueue_unfinished(j), 4);
    int want[] = {13, 11, 14}; /* the counted tombstone is passed before 11 */
    for (int i = 0; i < 3; i++) {
        v = -1;
        cr_assert_eq(fipc_jqueue_get(j, &v, sizeof v, &len, 0), 0);
        cr_assert_eq(v, want[i]);
        cr_assert_eq(fipc_jqueue_task_done(j), 0);
    }
    cr_assert_eq(fipc_jqueue_get(j, &v, sizeof v, &len, 0), -EAGAIN);
    /* Each counted exactly once: the tombstone by the get that passed it. */
    cr_assert_eq(fipc_jqueue_unfinished(j), 0);
    cr_assert_eq(fipc_jqueue_join(j, 0), 0);
    cr_assert_eq(fipc_jqueue_task_done(j), -EOVERFLOW);
}

static int join_forever(int i, void *arg)
{
    (void)i;
    test_child_setup();
    fipc_jqueue_join(arg, FIPC_FOREVER);
    return CHILD_FAIL(1); /* killed while it waits */
}

/* docs/death.md: jqueue-joiner-dies */
Test(death, jqueue_a_joiner_killed_while_registered_is_counted_out_at_the_next_zero)
{
    fipc_jqueue *j;
    cr_assert_eq(fipc_jqueue_create(&j, test_arena(), 4, sizeof(int), 0), 0);
    int v = 1;
    size_t len;
    cr_assert_eq(fipc_jqueue_put(j, &v, sizeof v, 0), 0);
    pid_t pid = test_fork(join_forever, 0, j);
    bool locked;
    /* Registered, and past set_locked (both under the joiners' lock). */
    cr_assert(TEST_WAIT_UNTIL(fipc__jqueue_joiners(j, &locked) == 1 && locked, HANDSHAKE_NS),
              "the joiner never registered");
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    expect_sigkill(status, "the joiner");
    /* Still counted: the counts go through the lock, and stay right. */
    cr_assert_eq(fipc__jqueue_joiners(j, &locked), 1);
    cr_assert(locked);
    v = 2;
    cr_assert_eq(fipc_jqueue_put(j, &v, sizeof v, 0), 0);
    cr_assert_eq(fipc_jqueue_unfinished(j), 2);
    for (int i = 1; i <= 2; i++) {
        cr_assert_eq(fipc_jqueue_get(j, &v, sizeof v, &len, 0), 0);
        cr_assert_eq(v, i);
        cr_assert_eq(fipc_jqueue_task_done(j), 0);
    }
    /* The zero counted every registered joiner out, the dead one too:
     * the counts are off the lock again. */
    cr_assert_eq(fipc__jqueue_joiners(j, &locked), 0);
    cr_assert(!locked);
    cr_assert_eq(fipc_jqueue_unfinished(j), 0);
    cr_assert_eq(fipc_jqueue_join(j, 0), 0);
    /* And a join after it still waits for the next zero. */
    cr_assert_eq(fipc_jqueue_put(j, &v, sizeof v, 0), 0);
    cr_assert_eq(fipc_jqueue_join(j, FIPC_MSEC(1)), -ETIMEDOUT);
    cr_assert_eq(fipc__jqueue_joiners(j, &locked), 0);
    cr_assert(!locked);
    cr_assert_eq(fipc_jqueue_get(j, &v, sizeof v, &len, 0), 0);
    cr_assert_eq(fipc_jqueue_task_done(j), 0);
    cr_assert_eq(fipc_jqueue_join(j, 0), 0);
}

/* docs/death.md: queue-mid-get-closed, for a JoinableQueue */
Test(death, jqueue_items_of_a_consumer_dead_inside_get_go_to_the_drain_after_close_counted_once)
{
    /* A counted tombstone and an item, claimed by a consumer that dies;
     * then close: no producer comes round to put them again. */
    fipc_jqueue *j = jqueue_tombstone_then_11((const int[]){12}, 1);
    int v;
    size_t len;
    play_death(get_claim_and_die, 2, fipc_jqueue_queue(j));
    cr_assert_eq(fipc_jqueue_close(j), 0);
    cr_assert_eq(fipc_jqueue_unfinished(j), 3);
    int want[] = {12, 11};
    for (int i = 0; i < 2; i++) {
        v = -1;
        cr_assert_eq(fipc_jqueue_get(j, &v, sizeof v, &len, DEATH_REAP_NS), 0);
        cr_assert_eq(v, want[i]);
        cr_assert_eq(fipc_jqueue_task_done(j), 0);
    }
    cr_assert_eq(fipc_jqueue_get(j, &v, sizeof v, &len, DEATH_REAP_NS), -EPIPE);
    /* The tombstone counted done by the get that passed it. */
    cr_assert_eq(fipc_jqueue_unfinished(j), 0);
    cr_assert_eq(fipc_jqueue_join(j, 0), 0);
    cr_assert_eq(fipc_jqueue_task_done(j), -EOVERFLOW);
}

/* ==== Arena ============================================================== */

/* The directory's lock lies 32 bytes into the arena (docs/arena.md, Layout
 * of the file); it has a fipc_lock's layout. */
#define DIR_LOCK_OFFSET 32

/* This process's own mapping of a's file (not a's): what a peer that
 * attached the arena sees. */
static char *map_again(fipc_arena *a)
{
    void *p = mmap(NULL, fipc_arena_size(a), PROT_READ | PROT_WRITE, MAP_SHARED, fipc_arena_fd(a),
                   0);
    cr_assert(p != MAP_FAILED);
    return p;
}

struct ar_case {
    char *base; /* a second mapping, made before the fork */
    uint32_t held;
};

static int ar_hold_and_die(int i, void *arg)
{
    struct ar_case *c = arg;
    test_child_setup();
    CHILD_CHECK(fipc_lock_acquire((fipc_lock *)(c->base + DIR_LOCK_OFFSET), 0) == 0, 1);
    raise(SIGKILL);
    return CHILD_FAIL(2);
}

static int ar_hold_and_stop(int i, void *arg)
{
    struct ar_case *c = arg;
    test_child_setup();
    fipc_lock *l = (fipc_lock *)(c->base + DIR_LOCK_OFFSET);
    CHILD_CHECK(fipc_lock_acquire(l, 0) == 0, 1);
    test_flag_set(&c->held, 1);
    raise(SIGSTOP);
    CHILD_CHECK(fipc_lock_release(l) == 0, 2);
    return CHILD_OK;
}

static void expect_publish_times_out(fipc_arena *a, const char *key, void *obj)
{
    int64_t t0 = now_ns();
    int r = fipc_arena_publish(a, key, obj);
    int64_t took = now_ns() - t0;
    cr_assert_eq(r, -ETIMEDOUT, "publish gave %d (%s)", r, fipc_strerror(r));
    cr_assert_geq(took, FIPC_ARENA_DIR_WAIT_NS, "gave up after %lld ns", (long long)took);
    cr_assert_lt(took, FIPC_ARENA_DIR_WAIT_NS + DEATH_REAP_NS);
    cr_assert_null(fipc_arena_lookup(a, key), "nothing was published");
}

/* docs/death.md: arena-holder-dies */
Test(death, arena_a_process_killed_inside_publish_leaves_the_directory_to_the_next_publish)
{
    fipc_arena *a;
    cr_assert_eq(fipc_arena_create(&a, "dir", 1 << 20), 0);
    struct ar_case *c = test_shared(sizeof *c);
    c->base = map_again(a);
    play_death(ar_hold_and_die, 0, c);
    void *obj = fipc_arena_alloc(a, 64, 0);
    int64_t t0 = now_ns();
    cr_assert_eq(fipc_arena_publish(a, "after", obj), 0);
    expect_within_bound(t0, now_ns(), "publish after the holder's death");
    cr_assert_eq(fipc_arena_lookup(a, "after"), obj);
    munmap(c->base, fipc_arena_size(a));
    fipc_arena_close(a);
}

/* docs/death.md: arena-holder-stopped */
Test(death, arena_publish_gives_etimedout_while_a_stopped_process_holds_the_directory)
{
    fipc_arena *a;
    cr_assert_eq(fipc_arena_create(&a, "dir", 1 << 20), 0);
    void *before = fipc_arena_alloc(a, 64, 0), *obj = fipc_arena_alloc(a, 64, 0);
    cr_assert_eq(fipc_arena_publish(a, "before", before), 0);
    struct ar_case *c = test_shared(sizeof *c);
    c->base = map_again(a);
    pid_t pid = test_fork(ar_hold_and_stop, 0, c);
    cr_assert(test_wait_until_at_least(&c->held, 1, HANDSHAKE_NS));
    cr_assert(test_wait_stopped(pid, HANDSHAKE_NS));
    expect_publish_times_out(a, "during", obj);
    /* lookup takes no lock. */
    int64_t t0 = now_ns();
    cr_assert_eq(fipc_arena_lookup(a, "before"), before);
    cr_assert_lt(now_ns() - t0, FIPC_ARENA_DIR_WAIT_NS, "lookup waited for the lock");
    cr_assert_eq(kill(pid, SIGCONT), 0);
    int status;
    reap(&pid, &status, 1);
    expect_ok(status, "the holder");
    cr_assert_eq(fipc_arena_publish(a, "during", obj), 0);
    cr_assert_eq(fipc_arena_lookup(a, "during"), obj);
    munmap(c->base, fipc_arena_size(a));
    fipc_arena_close(a);
}

/* docs/death.md: arena-lock-forged */
Test(death, arena_publish_gives_etimedout_on_a_directory_lock_word_a_peer_forged)
{
    fipc_arena *a;
    cr_assert_eq(fipc_arena_create(&a, "dir", 1 << 20), 0);
    void *before = fipc_arena_alloc(a, 64, 0), *obj = fipc_arena_alloc(a, 64, 0);
    cr_assert_eq(fipc_arena_publish(a, "before", before), 0);
    char *base = map_again(a);
    uint32_t *word = (uint32_t *)(base + DIR_LOCK_OFFSET);
    /* An owner that does not exist, one with WAITERS set, and the caller's
     * own id (which its private record does not back). */
    const uint32_t forged[] = {0x3fffffffu, 0x80000000u | 12345u, (uint32_t)syscall(SYS_gettid)};
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
        __atomic_store_n(word, forged[i], __ATOMIC_RELEASE);
        expect_publish_times_out(a, "during", obj);
        cr_assert_eq(fipc_arena_lookup(a, "before"), before);
    }
    __atomic_store_n(word, 0, __ATOMIC_RELEASE);
    cr_assert_eq(fipc_arena_publish(a, "during", obj), 0);
    cr_assert_eq(fipc_arena_lookup(a, "during"), obj);
    munmap(base, fipc_arena_size(a));
    fipc_arena_close(a);
}

struct ar_pub {
    fipc_arena *a;
    uint64_t *obj;
};

static int ar_publish_and_die(int i, void *arg)
{
    struct ar_pub *p = arg;
    uint64_t *obj = fipc_arena_alloc(p->a, sizeof *obj, 0);
    CHILD_CHECK(obj != NULL, 1);
    *obj = 0xfeed;
    CHILD_CHECK(fipc_arena_publish(p->a, "child", obj) == 0, 2);
    p->obj = obj;
    raise(SIGKILL); /* without fipc_arena_close */
    return CHILD_FAIL(3);
}

/* docs/death.md: arena-user-dies */
Test(death, arena_a_process_killed_without_close_leaves_what_it_allocated_and_published)
{
    fipc_arena *a;
    cr_assert_eq(fipc_arena_create(&a, "user", 1 << 20), 0);
    struct ar_pub *p = test_shared(sizeof *p);
    p->a = a;
    play_death(ar_publish_and_die, 0, p);
    uint64_t *obj = fipc_arena_lookup(a, "child");
    cr_assert_eq(obj, p->obj);
    cr_assert_eq(*obj, 0xfeed);
    cr_assert_eq(fipc_arena_publish(a, "parent", obj), 0);
    fipc_arena_close(a);
}
