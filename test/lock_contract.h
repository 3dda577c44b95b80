/*
 * lock_contract.h - what every lock keeps: one body per behaviour, run on
 * each variant through a small adapter, as Concurrency Kit's validators run
 * every lock through its adapter.
 *
 * The variants (LC_VARIANTS) and the behaviours that apply to each:
 *
 *   variant  what                       core  checked release  owner
 *   lock     fipc_lock                   x          x            x
 *   rlock    fipc_rlock, entered twice   x          x            x
 *            by every holder
 *   bsem1    bounded fipc_sem of 1       x          x
 *   sem1     fipc_sem of 1               x
 *
 *   core     exclusion under 4 hammering processes (in an arena, the
 *            default arena, memory set up with init), snapshots, timeouts,
 *            signals, a release waking a sleeper, release-then-die, a death
 *            between release and wake, NULL arguments
 *   checked  a release nobody acquired is refused (-EPERM for a lock,
 *            -EOVERFLOW for a bounded semaphore) and changes nothing
 *   owner    owner death (SIGKILL, and a thread that exits holding it) gives
 *            the next acquirer -EOWNERDEAD, a sleeping waiter within 2 s
 *            even while the dead holder is not reaped; a stopped holder is
 *            not taken for dead; the owner record is written only without
 *            a robust list; a release by another process or thread is
 *            -EPERM.  A semaphore has no owner, so none of this applies to
 *            it.
 *
 * Built with LC_NO_ROBUST_LIST (see below), every behaviour runs again on
 * the path where no robust list is used.
 *
 * A test file defines LC_SUITE, includes common.h and futex_faults.h, then
 * this header, and expands LOCK_CONTRACT(variant) for each of its variants:
 * one test per behaviour, named <variant>__<behaviour>.  A new variant is an
 * adapter and a row of LC_VARIANTS.
 *
 * Children report through their exit status (CHILD_CHECK); the parent
 * asserts on it.  The hammer's count follows test_scaled().
 */
#ifndef FIPC_TEST_LOCK_CONTRACT_H
#define FIPC_TEST_LOCK_CONTRACT_H

#ifndef LC_SUITE
#error "define LC_SUITE before lock_contract.h"
#endif

#include "test_hooks.h"

/* A file built with LC_NO_ROBUST_LIST runs its tests on the path that
 * finds a dead owner without the kernel's robust list: every thread of the
 * test program and of its children finds no list to link into, as on a C
 * library whose list fipc cannot use, and a waiter's liveness check of the
 * recorded owner is what recovers the lock. */
#ifdef LC_NO_ROBUST_LIST
#define LC_ROBUST false
__attribute__((constructor)) static void lc_force_no_robust_list(void)
{
    fipc__lock_force_no_robust_list();
}
#else
#define LC_ROBUST true
#endif

/* ---- Adapters ---- */

struct lc_ops {
    const char *name;
    size_t size;                    /* of the object, for init in memory of one's own */
    int (*init)(void *l);           /* set up a free object of size bytes at l */
    void *(*new_in)(fipc_arena *a); /* a free object in arena a (NULL: the default) */
    int (*acquire)(void *l, int64_t timeout_ns);
    int (*release)(void *l);
    bool (*held)(const void *l);    /* locked(), or the value is 0 */
    bool (*null_snapshot_ok)(void); /* the snapshot of NULL is what the header says */
    int depth;                      /* how often a holder enters: 2 for rlock */
    bool owned;                     /* has an owner, recovered after its death */
    int unheld_release;             /* a release nobody acquired: -EPERM, -EOVERFLOW, 0 */
    int self_acquire;               /* a timed acquire by the owner: -EDEADLK, or 0 */
};

/* The calls of fipc_lock and fipc_rlock, which have the same shape. */
#define LC_LOCK_CALLS_(t)                                                                          \
    static inline int lc_##t##_init(void *l)                                                       \
    {                                                                                              \
        return fipc_##t##_init(l);                                                                 \
    }                                                                                              \
    static inline void *lc_##t##_new(fipc_arena *a)                                                \
    {                                                                                              \
        return fipc_##t##_new(a);                                                                  \
    }                                                                                              \
    static inline int lc_##t##_acquire(void *l, int64_t timeout_ns)                                \
    {                                                                                              \
        return fipc_##t##_acquire(l, timeout_ns);                                                  \
    }                                                                                              \
    static inline int lc_##t##_release(void *l)                                                    \
    {                                                                                              \
        return fipc_##t##_release(l);                                                              \
    }                                                                                              \
    static inline bool lc_##t##_held(const void *l)                                                \
    {                                                                                              \
        return fipc_##t##_locked(l);                                                               \
    }                                                                                              \
    static inline bool lc_##t##_null(void)                                                         \
    {                                                                                              \
        return !fipc_##t##_locked(NULL);                                                           \
    }
LC_LOCK_CALLS_(lock)
LC_LOCK_CALLS_(rlock)

/* A semaphore of one unit, bounded or not. */
static inline int lc_bsem1_init(void *s)
{
    return fipc_sem_init_bounded(s, 1);
}

static inline void *lc_bsem1_new(fipc_arena *a)
{
    return fipc_sem_new_bounded(a, 1);
}

static inline int lc_sem1_init(void *s)
{
    return fipc_sem_init(s, 1);
}

static inline void *lc_sem1_new(fipc_arena *a)
{
    return fipc_sem_new(a, 1);
}

static inline int lc_sem_acquire(void *s, int64_t timeout_ns)
{
    return fipc_sem_acquire(s, timeout_ns);
}

static inline int lc_sem_release(void *s)
{
    return fipc_sem_release(s);
}

/* Held: no unit left. */
static inline bool lc_sem_held(const void *s)
{
    return fipc_sem_value(s) == 0;
}

static inline bool lc_sem_null(void)
{
    return fipc_sem_value(NULL) == -EINVAL;
}

/* name, the adapter's prefix for init and new, and for the calls; size,
 * depth, whether it has an owner, what a release nobody acquired gives,
 * what a timed acquire by the owner gives (a semaphore has none: 0). */
#define LC_VARIANTS(X)                                                                             \
    X(lock, lock, lock, sizeof(fipc_lock), 1, true, -EPERM, -EDEADLK)                              \
    X(rlock, rlock, rlock, sizeof(fipc_rlock), 2, true, -EPERM, 0)                                 \
    X(bsem1, bsem1, sem, sizeof(fipc_sem), 1, false, -EOVERFLOW, 0)                                \
    X(sem1, sem1, sem, sizeof(fipc_sem), 1, false, 0, 0)

#define LC_OPS_(v, mk, call, sz, dep, own, unheld, self)                                           \
    __attribute__((unused)) static const struct lc_ops lc_##v = {                                  \
        .name = #v,                                                                                \
        .size = sz,                                                                                \
        .init = lc_##mk##_init,                                                                    \
        .new_in = lc_##mk##_new,                                                                   \
        .acquire = lc_##call##_acquire,                                                            \
        .release = lc_##call##_release,                                                            \
        .held = lc_##call##_held,                                                                  \
        .null_snapshot_ok = lc_##call##_null,                                                      \
        .depth = dep,                                                                              \
        .owned = own,                                                                              \
        .unheld_release = unheld,                                                                  \
        .self_acquire = self,                                                                      \
    };
LC_VARIANTS(LC_OPS_)

/* ---- The behaviours, by group ---- */

#define LC_CORE(X, v)                                                                              \
    X(v, counter_stays_exact_under_4_processes_in_an_arena)                                        \
    X(v, counter_stays_exact_under_4_processes_in_the_default_arena)                               \
    X(v, counter_stays_exact_under_4_processes_in_shared_memory_set_up_with_init)                  \
    X(v, fresh_one_is_free_and_held_follows_acquire_and_release)                                   \
    X(v, acquire_times_out_while_another_process_holds_it)                                         \
    X(v, timed_acquire_is_not_cut_short_by_signals)                                                \
    X(v, release_wakes_a_process_asleep_in_acquire)                                                \
    X(v, acquire_gets_0_after_the_holder_released_and_died)                                        \
    X(v, waiter_gets_it_when_the_holder_dies_between_release_and_wake)                             \
    X(v, null_arguments_give_einval)

#define LC_CHECKED(X, v) X(v, release_nobody_acquired_is_refused_and_changes_nothing)

#define LC_OWNER(X, v)                                                                             \
    X(v, acquire_gives_eownerdead_after_the_holder_is_killed)                                      \
    X(v, sleeping_waiter_is_woken_with_eownerdead_when_the_holder_is_killed)                       \
    X(v, waiter_gets_eownerdead_within_2_s_of_the_kill_of_an_unreaped_holder)                      \
    X(v, a_stopped_holder_is_not_taken_for_dead)                                                   \
    X(v, acquire_gives_eownerdead_after_the_holder_thread_exits)                                   \
    X(v, owner_record_is_written_only_without_a_robust_list)                                       \
    X(v, release_by_another_process_gives_eperm_and_keeps_it_held)                                 \
    X(v, release_by_another_thread_gives_eperm_and_keeps_it_held)

/* The groups of each variant (the table at the top). */
#define LC_GROUPS_lock(X)  LC_CORE(X, lock) LC_CHECKED(X, lock) LC_OWNER(X, lock)
#define LC_GROUPS_rlock(X) LC_CORE(X, rlock) LC_CHECKED(X, rlock) LC_OWNER(X, rlock)
#define LC_GROUPS_bsem1(X) LC_CORE(X, bsem1) LC_CHECKED(X, bsem1)
#define LC_GROUPS_sem1(X)  LC_CORE(X, sem1)

#define LC_TEST_(v, b)                                                                             \
    Test(LC_SUITE, v##__##b)                                                                       \
    {                                                                                              \
        lc_##b(&lc_##v);                                                                           \
    }

/* Every behaviour that applies to variant v, as one test each. */
#define LOCK_CONTRACT(v) LC_GROUPS_##v(LC_TEST_)

/* ---- Entering and leaving as a holder does ---- */

#define LC_HAMMER_PROCS 4
#define LC_HAMMER_ITERS 200000
#define LC_TIMEOUT_NS   FIPC_MSEC(50)
#define LC_SIGNALED_NS  FIPC_MSEC(200)
/* Upper bound on how long a timed acquire may overrun its timeout: only a
 * hang, never a slow machine, should reach it. */
#define LC_OVERRUN_NS FIPC_SEC(10)

/* Take l as a holder does: once, blocking, then depth - 1 times more
 * (nested, which must not block).  0, or the first failure. */
static int lc_enter(const struct lc_ops *o, void *l, int64_t timeout_ns)
{
    int r = o->acquire(l, timeout_ns);
    for (int d = 1; d < o->depth && r == 0; d++)
        r = o->acquire(l, 0);
    return r;
}

/* Leave l: depth releases.  0, or the first failure. */
static int lc_leave(const struct lc_ops *o, void *l)
{
    int r = 0;
    for (int d = 0; d < o->depth && r == 0; d++)
        r = o->release(l);
    return r;
}

static void *lc_new(const struct lc_ops *o)
{
    void *l = o->new_in(NULL);
    cr_assert_not_null(l, "%s: new in the default arena", o->name);
    return l;
}

/* ---- Exclusion: a non-atomic counter under the lock stays exact ---- */

struct lc_hammer {
    const struct lc_ops *o;
    void *lock;
    volatile uint64_t *counter; /* volatile: every ++ is a separate load and store */
    uint64_t iters;
};

static int lc_hammer_child(int i, void *arg)
{
    struct lc_hammer *h = arg;
    const struct lc_ops *o = h->o;
    test_child_setup();
    for (uint64_t k = 0; k < h->iters; k++) {
        CHILD_CHECK(o->acquire(h->lock, FIPC_FOREVER) == 0, 1);
        for (int d = 1; d < o->depth; d++)
            CHILD_CHECK(o->acquire(h->lock, 0) == 0, 2);
        *h->counter = *h->counter + 1;
        for (int d = 1; d < o->depth; d++)
            CHILD_CHECK(o->release(h->lock) == 0, 3);
        /* Still held (once, if nested): this one must stay exclusive too. */
        *h->counter = *h->counter + 1;
        CHILD_CHECK(o->release(h->lock) == 0, 4);
    }
    return CHILD_OK;
}

static void lc_hammer(const struct lc_ops *o, void *lock, volatile uint64_t *counter)
{
    struct lc_hammer h = {.o = o, .lock = lock, .counter = counter};
    h.iters = test_scaled(LC_HAMMER_ITERS);
    uint64_t want = 2 * LC_HAMMER_PROCS * h.iters;
    pid_t pids[LC_HAMMER_PROCS];
    *counter = 0;
    for (int i = 0; i < LC_HAMMER_PROCS; i++)
        pids[i] = test_fork(lc_hammer_child, i, &h);
    test_reap_within(pids, LC_HAMMER_PROCS, FIPC_SEC(90));
    cr_assert_eq(*counter, want, "counter %llu, want %llu", (unsigned long long)*counter,
                 (unsigned long long)want);
    cr_assert_not(o->held(lock), "still held after every child released it");
}

static void lc_counter_stays_exact_under_4_processes_in_an_arena(const struct lc_ops *o)
{
    fipc_arena *a;
    cr_assert_eq(fipc_arena_create(&a, "lock-contract", 1 << 20), 0);
    void *l = o->new_in(a);
    cr_assert_not_null(l);
    uint64_t *counter = fipc_arena_alloc(a, sizeof *counter, 64);
    cr_assert_not_null(counter);
    lc_hammer(o, l, counter);
    fipc_arena_close(a);
}

static void lc_counter_stays_exact_under_4_processes_in_the_default_arena(const struct lc_ops *o)
{
    lc_hammer(o, lc_new(o), test_shared(sizeof(uint64_t)));
}

static void
lc_counter_stays_exact_under_4_processes_in_shared_memory_set_up_with_init(const struct lc_ops *o)
{
    struct {
        _Alignas(64) unsigned char lock[64];
        _Alignas(64) uint64_t counter;
    } *m = test_shared(sizeof *m);
    cr_assert_leq(o->size, sizeof m->lock);
    cr_assert_eq(o->init(m->lock), 0);
    lc_hammer(o, m->lock, &m->counter);
}

/* ---- Snapshots ---- */

static void lc_fresh_one_is_free_and_held_follows_acquire_and_release(const struct lc_ops *o)
{
    void *l = lc_new(o);
    cr_assert_not(o->held(l));
    cr_assert_eq(lc_enter(o, l, 0), 0);
    cr_assert(o->held(l));
    cr_assert_eq(lc_leave(o, l), 0);
    cr_assert_not(o->held(l));
    cr_assert_eq(lc_enter(o, l, FIPC_FOREVER), 0, "a free one is taken at once");
    cr_assert(o->held(l));
    cr_assert_eq(lc_leave(o, l), 0);
    cr_assert_not(o->held(l));
}

/* ---- A holder in another process ---- */

struct lc_holder {
    const struct lc_ops *o;
    void *lock;
    /* Enter and leave once before entering for good: a thread's first
     * acquire takes the slow path (it fetches the thread's id and robust
     * list), so only a warmed-up holder shows what the fast path records. */
    bool warm;
    int32_t enter_ret;
    uint32_t held;    /* set by the holder once it is in */
    uint32_t release; /* set by the parent: leave now */
};

/* Enter as h says, warmed up or not; 0, or the first failure. */
static int lc_warm_enter(struct lc_holder *h, int64_t timeout_ns)
{
    int r = 0;
    if (h->warm && (r = lc_enter(h->o, h->lock, 0)) == 0) r = lc_leave(h->o, h->lock);
    return r == 0 ? lc_enter(h->o, h->lock, timeout_ns) : r;
}

/* Enter, say so, stay until told to leave (or killed). */
static int lc_holder_child(int i, void *arg)
{
    struct lc_holder *h = arg;
    test_child_setup();
    int r = lc_warm_enter(h, 0);
    h->enter_ret = r;
    test_flag_set(&h->held, 1);
    CHILD_CHECK(r == 0, 1);
    CHILD_CHECK(test_wait_until_at_least(&h->release, 1, HANDSHAKE_NS), 2);
    CHILD_CHECK(lc_leave(h->o, h->lock) == 0, 3);
    return CHILD_OK;
}

static struct lc_holder *lc_new_holder(const struct lc_ops *o)
{
    struct lc_holder *h = test_shared(sizeof *h);
    h->o = o;
    h->lock = lc_new(o);
    return h;
}

static pid_t lc_start_holder(struct lc_holder *h)
{
    pid_t pid = test_fork(lc_holder_child, 0, h);
    cr_assert(test_wait_until_at_least(&h->held, 1, HANDSHAKE_NS), "the holder never ran");
    cr_assert_eq(h->enter_ret, 0, "the holder's acquire gave %d", h->enter_ret);
    return pid;
}

static void lc_finish_holder(struct lc_holder *h, pid_t pid)
{
    test_flag_set(&h->release, 1);
    test_reap_within(&pid, 1, REAP_NS);
}

static void lc_expect_timed_out(int r, int64_t elapsed, int64_t timeout_ns)
{
    cr_assert_eq(r, -ETIMEDOUT, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert_geq(elapsed, timeout_ns, "gave up after %lld ns of %lld", (long long)elapsed,
                  (long long)timeout_ns);
    cr_assert_lt(elapsed, timeout_ns + LC_OVERRUN_NS, "returned only after %lld ns",
                 (long long)elapsed);
}

static void lc_acquire_times_out_while_another_process_holds_it(const struct lc_ops *o)
{
    struct lc_holder *h = lc_new_holder(o);
    pid_t pid = lc_start_holder(h);

    int64_t t0 = test_now_ns();
    int r = o->acquire(h->lock, LC_TIMEOUT_NS);
    lc_expect_timed_out(r, test_now_ns() - t0, LC_TIMEOUT_NS);
    r = o->acquire(h->lock, 0);
    cr_assert_eq(r, -EAGAIN, "acquire(0) gave %d (%s)", r, fipc_strerror(r));
    cr_assert(o->held(h->lock));

    lc_finish_holder(h, pid);
    cr_assert_not(o->held(h->lock));
    cr_assert_eq(o->acquire(h->lock, 0), 0, "free again once the holder left");
    cr_assert_eq(o->release(h->lock), 0);
}

static void lc_timed_acquire_is_not_cut_short_by_signals(const struct lc_ops *o)
{
    struct lc_holder *h = lc_new_holder(o);
    pid_t pid = lc_start_holder(h);
    struct test_pester p = {0};
    test_pester_start(&p);
    int64_t t0 = test_now_ns();
    int r = o->acquire(h->lock, LC_SIGNALED_NS);
    int64_t elapsed = test_now_ns() - t0;
    test_pester_stop(&p);
    lc_expect_timed_out(r, elapsed, LC_SIGNALED_NS);
    lc_finish_holder(h, pid);
}

/* ---- Sleepers ---- */

struct lc_sleeper {
    const struct lc_ops *o;
    void *lock;
    uint32_t ready, inside;
};

static int lc_sleeper_child(int i, void *arg)
{
    struct lc_sleeper *w = arg;
    test_child_setup();
    /* Only a release's wake may end the sleep, not the re-check. */
    fault_sleep_until_woken();
    test_flag_set(&w->ready, 1);
    CHILD_CHECK(lc_enter(w->o, w->lock, FIPC_FOREVER) == 0, 1);
    test_flag_set(&w->inside, 1);
    CHILD_CHECK(lc_leave(w->o, w->lock) == 0, 2);
    return CHILD_OK;
}

static void lc_release_wakes_a_process_asleep_in_acquire(const struct lc_ops *o)
{
    struct lc_sleeper *w = test_shared(sizeof *w);
    w->o = o;
    w->lock = lc_new(o);
    cr_assert_eq(lc_enter(o, w->lock, 0), 0);
    pid_t pid = test_fork(lc_sleeper_child, 0, w);
    cr_assert(test_wait_until_at_least(&w->ready, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS), "the waiter never went to sleep");
    cr_assert_eq(test_flag_get(&w->inside), 0, "got in while held");
    cr_assert_eq(lc_leave(o, w->lock), 0);
    test_reap_within(&pid, 1, REAP_NS);
    cr_assert_not(o->held(w->lock));
}

/* ---- Release, then die ---- */

static int lc_release_then_wait_child(int i, void *arg)
{
    struct lc_holder *h = arg;
    test_child_setup();
    int r = lc_enter(h->o, h->lock, 0);
    if (r == 0) r = lc_leave(h->o, h->lock);
    h->enter_ret = r;
    test_flag_set(&h->held, 1);
    for (;;) /* until killed */
        pause();
    return CHILD_OK; /* not reached */
}

static void *lc_release_then_exit_thread(void *arg)
{
    struct lc_holder *h = arg;
    int r = lc_enter(h->o, h->lock, 0);
    if (r == 0) r = lc_leave(h->o, h->lock);
    return (void *)(intptr_t)r;
}

static void lc_acquire_gets_0_after_the_holder_released_and_died(const struct lc_ops *o)
{
    struct lc_holder *h = lc_new_holder(o);
    pid_t pid = test_fork(lc_release_then_wait_child, 0, h);
    cr_assert(test_wait_until_at_least(&h->held, 1, HANDSHAKE_NS), "the holder never ran");
    cr_assert_eq(h->enter_ret, 0, "the holder's acquire or release gave %d", h->enter_ret);
    test_kill_and_reap(pid);
    int r = o->acquire(h->lock, FIPC_SEC(5));
    cr_assert_eq(r, 0, "acquire gave %d (%s): no death of a holder to report", r, fipc_strerror(r));
    cr_assert_eq(o->release(h->lock), 0);

    pthread_t t;
    void *ret;
    cr_assert_eq(pthread_create(&t, NULL, lc_release_then_exit_thread, h), 0);
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_eq((intptr_t)ret, 0, "the thread's acquire or release gave %d", (int)(intptr_t)ret);
    r = o->acquire(h->lock, FIPC_SEC(5));
    cr_assert_eq(r, 0, "acquire after the thread gave %d (%s)", r, fipc_strerror(r));
    cr_assert_eq(o->release(h->lock), 0);
    cr_assert_not(o->held(h->lock));
}

/* ---- Killed between release and wake ---- */

struct lc_dying_release {
    const struct lc_ops *o;
    void *lock;
    uint32_t held;    /* the holder is in */
    uint32_t waiting; /* the waiter is about to block; waiter is set */
    pid_t waiter;
};

/* Enter, let the waiter fall asleep, then leave and be killed after the
 * last release changed the word but before its wake. */
static int lc_release_and_die_child(int i, void *arg)
{
    struct lc_dying_release *d = arg;
    test_child_setup();
    CHILD_CHECK(lc_enter(d->o, d->lock, 0) == 0, 1);
    test_flag_set(&d->held, 1);
    CHILD_CHECK(test_wait_until_at_least(&d->waiting, 1, HANDSHAKE_NS), 2);
    CHILD_CHECK(test_wait_sleeping(d->waiter, HANDSHAKE_NS), 3);
    for (int k = 1; k < d->o->depth; k++) /* the inner levels wake nobody */
        CHILD_CHECK(d->o->release(d->lock) == 0, 4);
    fault_kill_at_next_wake();
    d->o->release(d->lock);
    return CHILD_FAIL(5);
}

static int lc_wait_after_dying_release_child(int i, void *arg)
{
    struct lc_dying_release *d = arg;
    test_child_setup();
    /* A lock's releaser keeps the lock in its robust list's list_op_pending
     * until after the wake; dying in between, it leaves the kernel a
     * pending unlock of a free word, and the kernel wakes one waiter in its
     * place: no re-check is needed, so none is allowed.  A semaphore, or a
     * lock without a robust list, has no such list: its sleeper is saved
     * by the re-check. */
    if (d->o->owned && LC_ROBUST) fault_sleep_until_woken();
    d->waiter = getpid();
    test_flag_set(&d->waiting, 1);
    /* 0, not -EOWNERDEAD: the holder had released it when it died. */
    CHILD_CHECK(d->o->acquire(d->lock, FIPC_FOREVER) == 0, 1);
    CHILD_CHECK(d->o->release(d->lock) == 0, 2);
    return CHILD_OK;
}

static void lc_waiter_gets_it_when_the_holder_dies_between_release_and_wake(const struct lc_ops *o)
{
    struct lc_dying_release *d = test_shared(sizeof *d);
    d->o = o;
    d->lock = lc_new(o);
    pid_t pids[2];
    int status[2];
    pids[0] = test_fork(lc_release_and_die_child, 0, d);
    cr_assert(test_wait_until_at_least(&d->held, 1, HANDSHAKE_NS), "the holder never ran");
    pids[1] = test_fork(lc_wait_after_dying_release_child, 1, d);

    fault_reap_within(pids, status, 2, FIPC_SEC(10));
    fault_expect_killed(status[0], "the holder");
    fault_expect_ok(status[1], "the waiter", FIPC_SEC(10));
    cr_assert_not(o->held(d->lock));
    cr_assert_eq(o->acquire(d->lock, 0), 0, "no death recorded for a released lock");
    cr_assert_eq(o->release(d->lock), 0);
}

/* ---- Bad calls ---- */

static void lc_null_arguments_give_einval(const struct lc_ops *o)
{
    cr_assert_eq(o->init(NULL), -EINVAL);
    cr_assert_eq(o->acquire(NULL, 0), -EINVAL);
    cr_assert_eq(o->acquire(NULL, FIPC_MSEC(10)), -EINVAL);
    cr_assert_eq(o->acquire(NULL, FIPC_FOREVER), -EINVAL);
    cr_assert_eq(o->release(NULL), -EINVAL);
    cr_assert(o->null_snapshot_ok(), "the snapshot of NULL");
}

static void lc_release_nobody_acquired_is_refused_and_changes_nothing(const struct lc_ops *o)
{
    void *l = lc_new(o);
    int want = o->unheld_release;
    cr_assert_eq(o->release(l), want, "%s", fipc_strerror(want));
    cr_assert_not(o->held(l));
    cr_assert_eq(lc_enter(o, l, 0), 0, "the refused release broke nothing");
    cr_assert_eq(lc_leave(o, l), 0);
    cr_assert_eq(o->release(l), want, "one release too many");
    cr_assert_not(o->held(l));
    cr_assert_eq(o->acquire(l, 0), 0, "and banked nothing: taken once...");
    cr_assert_eq(o->acquire(l, 0), o->depth > 1 ? 0 : -EAGAIN, "...and not twice");
    cr_assert_eq(lc_leave(o, l), 0);
    cr_assert_not(o->held(l));
}

/* ---- Owner death ---- */

/* The owner group's behaviours, which a file whose variants have no owner
 * (test_sem.c) leaves unused. */
#define LC_OWNER_BEHAVIOUR static __attribute__((unused))

static void lc_eownerdead_after_killing(const struct lc_ops *o, bool warm)
{
    struct lc_holder *h = lc_new_holder(o);
    h->warm = warm;
    test_kill_and_reap(lc_start_holder(h));

    int r = o->acquire(h->lock, FIPC_SEC(5));
    cr_assert_eq(r, -EOWNERDEAD, "acquire (%s holder) gave %d (%s)", warm ? "warm" : "cold", r,
                 fipc_strerror(r));
    cr_assert(o->held(h->lock), "-EOWNERDEAD means the caller holds it");
    /* ...as its owner: a Lock refuses it a second time, an RLock nests. */
    cr_assert_eq(o->acquire(h->lock, FIPC_MSEC(1)), o->self_acquire);
    if (o->self_acquire == 0) cr_assert_eq(o->release(h->lock), 0);
    /* Held once: the dead holder's nesting died with it. */
    cr_assert_eq(o->release(h->lock), 0);
    cr_assert_not(o->held(h->lock), "the dead holder's levels passed to its heir");
    cr_assert_eq(o->release(h->lock), -EPERM);
    cr_assert_eq(o->acquire(h->lock, 0), 0, "the death is reported only once");
    cr_assert_eq(o->release(h->lock), 0);
    /* And it works normally in other processes again. */
    struct lc_holder *again = test_shared(sizeof *again);
    *again = (struct lc_holder){.o = o, .lock = h->lock, .warm = true};
    lc_finish_holder(again, lc_start_holder(again));
    cr_assert_not(o->held(h->lock));
}

LC_OWNER_BEHAVIOUR void
lc_acquire_gives_eownerdead_after_the_holder_is_killed(const struct lc_ops *o)
{
    lc_eownerdead_after_killing(o, false);
    lc_eownerdead_after_killing(o, true);
}

struct lc_death_wait {
    struct lc_holder h;
    uint32_t waiter_ready, waiter_done;
    int32_t waiter_ret;
};

static int lc_dead_owner_waiter_child(int i, void *arg)
{
    struct lc_death_wait *d = arg;
    const struct lc_ops *o = d->h.o;
    test_child_setup();
    /* Woken by the kernel, which walks the dead holder's robust list, and
     * by nothing else.  Without a robust list, by its own liveness check of
     * the recorded holder, which needs its sleeps' time limits. */
    if (LC_ROBUST) fault_sleep_until_woken();
    test_flag_set(&d->waiter_ready, 1);
    int r = o->acquire(d->h.lock, HANDSHAKE_NS);
    d->waiter_ret = r;
    test_flag_set(&d->waiter_done, 1);
    CHILD_CHECK(r == -EOWNERDEAD, 1);
    CHILD_CHECK(o->held(d->h.lock), 2);
    CHILD_CHECK(o->release(d->h.lock) == 0, 3);
    CHILD_CHECK(!o->held(d->h.lock), 4);
    return CHILD_OK;
}

LC_OWNER_BEHAVIOUR void
lc_sleeping_waiter_is_woken_with_eownerdead_when_the_holder_is_killed(const struct lc_ops *o)
{
    struct lc_death_wait *d = test_shared(sizeof *d);
    d->h.o = o;
    d->h.lock = lc_new(o);
    d->h.warm = true;
    pid_t holder = lc_start_holder(&d->h);
    pid_t waiter = test_fork(lc_dead_owner_waiter_child, 0, d);
    cr_assert(test_wait_until_at_least(&d->waiter_ready, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(waiter, HANDSHAKE_NS), "the waiter never went to sleep");
    cr_assert_eq(test_flag_get(&d->waiter_done), 0,
                 "the waiter got in while it was held (acquire gave %d)", d->waiter_ret);
    test_kill_and_reap(holder);
    test_reap_within(&waiter, 1, REAP_NS);
    cr_assert_eq(d->waiter_ret, -EOWNERDEAD, "the waiter's acquire gave %d (%s)", d->waiter_ret,
                 fipc_strerror(d->waiter_ret));
    cr_assert_eq(o->acquire(d->h.lock, 0), 0, "the waiter released it");
    cr_assert_eq(o->release(d->h.lock), 0);
}

/* The bound on how soon a waiter learns of its holder's death: the design
 * is about 30 ms without a robust list (docs/lock.md) and at once with
 * one; generous for a loaded machine. */
#define LC_DEATH_FOUND_NS FIPC_SEC(2)

struct lc_timed_death {
    struct lc_holder h;
    uint32_t waiter_ready;
    int32_t waiter_ret;
    int64_t waiter_done_ns; /* CLOCK_MONOTONIC, when its acquire returned */
};

static int lc_timed_waiter_child(int i, void *arg)
{
    struct lc_timed_death *d = arg;
    const struct lc_ops *o = d->h.o;
    test_child_setup();
    test_flag_set(&d->waiter_ready, 1);
    int r = o->acquire(d->h.lock, HANDSHAKE_NS);
    d->waiter_done_ns = test_now_ns();
    d->waiter_ret = r;
    CHILD_CHECK(r == -EOWNERDEAD, 1);
    CHILD_CHECK(o->release(d->h.lock) == 0, 2);
    return CHILD_OK;
}

/* Killed and left unreaped: a zombie is as dead as a reaped process. */
LC_OWNER_BEHAVIOUR void
lc_waiter_gets_eownerdead_within_2_s_of_the_kill_of_an_unreaped_holder(const struct lc_ops *o)
{
    struct lc_timed_death *d = test_shared(sizeof *d);
    d->h.o = o;
    d->h.lock = lc_new(o);
    d->h.warm = true;
    pid_t holder = lc_start_holder(&d->h);
    pid_t waiter = test_fork(lc_timed_waiter_child, 0, d);
    cr_assert(test_wait_until_at_least(&d->waiter_ready, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(waiter, HANDSHAKE_NS), "the waiter never went to sleep");
    int64_t t0 = test_now_ns();
    cr_assert_eq(kill(holder, SIGKILL), 0);
    test_reap_within(&waiter, 1, REAP_NS);
    int64_t took = d->waiter_done_ns - t0;
    int status;
    cr_assert_eq(waitpid(holder, &status, 0), holder);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    cr_assert_eq(d->waiter_ret, -EOWNERDEAD, "the waiter's acquire gave %d (%s)", d->waiter_ret,
                 fipc_strerror(d->waiter_ret));
    cr_assert_lt(took, LC_DEATH_FOUND_NS, "the waiter got it %lld ms after the kill",
                 (long long)(took / 1000000));
}

/* How long a waiter waits for a stopped holder: many checks' worth. */
#define LC_STOPPED_NS FIPC_MSEC(300)

/* A stopped process is as alive as a slow one: the waiter's checks must
 * find it alive however often they look, and the acquire times out. */
LC_OWNER_BEHAVIOUR void lc_a_stopped_holder_is_not_taken_for_dead(const struct lc_ops *o)
{
    struct lc_holder *h = lc_new_holder(o);
    h->warm = true;
    pid_t pid = lc_start_holder(h);
    cr_assert_eq(kill(pid, SIGSTOP), 0);
    cr_assert(test_wait_stopped(pid, HANDSHAKE_NS), "the holder never stopped");
    uint64_t checks = fipc__lock_owner_check_count();
    int64_t t0 = test_now_ns();
    int r = o->acquire(h->lock, LC_STOPPED_NS);
    lc_expect_timed_out(r, test_now_ns() - t0, LC_STOPPED_NS);
    uint64_t made = fipc__lock_owner_check_count() - checks;
    if (LC_ROBUST)
        cr_assert_eq(made, 0, "a holder with a robust list records nothing to check");
    else
        cr_assert_geq(made, 1, "the waiter never checked the stopped holder");
    cr_assert(o->held(h->lock));
    cr_assert_eq(kill(pid, SIGCONT), 0);
    lc_finish_holder(h, pid);
    cr_assert_not(o->held(h->lock));
}

/* Bytes 8..15 of a lock (docs/lock.md, Layout). */
static uint64_t lc_owner_record(const void *l)
{
    return __atomic_load_n((const uint64_t *)l + 1, __ATOMIC_RELAXED);
}

/* The record is what the liveness check reads: written by an owner without
 * a robust list (so the forced path is really taken), never by one with a
 * robust list (whose fast path gains no store), and cleared by release. */
LC_OWNER_BEHAVIOUR void
lc_owner_record_is_written_only_without_a_robust_list(const struct lc_ops *o)
{
    void *l = lc_new(o);
    for (int round = 0; round < 2; round++) { /* the first use, then warm */
        cr_assert_eq(lc_enter(o, l, 0), 0);
        uint64_t rec = lc_owner_record(l);
        if (LC_ROBUST)
            cr_assert_eq(rec, 0, "record %#llx", (unsigned long long)rec);
        else
            cr_assert_eq(rec & 0x3fffffff, (uint64_t)syscall(SYS_gettid), "record %#llx",
                         (unsigned long long)rec);
        cr_assert_eq(lc_leave(o, l), 0);
        cr_assert_eq(lc_owner_record(l), 0, "release clears the record");
    }
}

static void *lc_enter_and_exit_thread(void *arg)
{
    return (void *)(intptr_t)lc_warm_enter(arg, 0);
}

static void lc_eownerdead_after_thread_exit(const struct lc_ops *o, bool warm)
{
    struct lc_holder h = {.o = o, .lock = lc_new(o), .warm = warm};
    pthread_t t;
    void *ret;
    cr_assert_eq(pthread_create(&t, NULL, lc_enter_and_exit_thread, &h), 0);
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_eq((intptr_t)ret, 0, "the thread's acquire gave %d", (int)(intptr_t)ret);

    int r = o->acquire(h.lock, FIPC_SEC(5));
    cr_assert_eq(r, -EOWNERDEAD, "acquire (%s thread) gave %d (%s)", warm ? "warm" : "cold", r,
                 fipc_strerror(r));
    cr_assert_eq(o->release(h.lock), 0);
    cr_assert_not(o->held(h.lock), "the dead thread's levels passed to its heir");
    cr_assert_eq(o->acquire(h.lock, 0), 0, "the death is reported only once");
    cr_assert_eq(o->release(h.lock), 0);
}

LC_OWNER_BEHAVIOUR void
lc_acquire_gives_eownerdead_after_the_holder_thread_exits(const struct lc_ops *o)
{
    lc_eownerdead_after_thread_exit(o, false);
    lc_eownerdead_after_thread_exit(o, true);
}

/* ---- Release by a non-owner ---- */

static int lc_release_not_owner_child(int i, void *arg)
{
    struct lc_holder *h = arg;
    const struct lc_ops *o = h->o;
    test_child_setup();
    for (int d = 0; d < o->depth; d++)
        CHILD_CHECK(o->release(h->lock) == -EPERM, 1);
    CHILD_CHECK(o->held(h->lock), 2);
    CHILD_CHECK(o->acquire(h->lock, 0) == -EAGAIN, 3);
    return CHILD_OK;
}

LC_OWNER_BEHAVIOUR void
lc_release_by_another_process_gives_eperm_and_keeps_it_held(const struct lc_ops *o)
{
    struct lc_holder *h = lc_new_holder(o);
    cr_assert_eq(lc_enter(o, h->lock, 0), 0);
    test_expect_ok(test_fork(lc_release_not_owner_child, 0, h));
    cr_assert(o->held(h->lock));
    cr_assert_eq(lc_leave(o, h->lock), 0, "the owner can still leave, as often as it entered");
    cr_assert_not(o->held(h->lock), "the non-owner's releases counted for nothing");
    cr_assert_eq(o->release(h->lock), -EPERM);
}

static void *lc_release_from_thread(void *arg)
{
    struct lc_holder *h = arg;
    return (void *)(intptr_t)h->o->release(h->lock);
}

LC_OWNER_BEHAVIOUR void
lc_release_by_another_thread_gives_eperm_and_keeps_it_held(const struct lc_ops *o)
{
    struct lc_holder h = {.o = o, .lock = lc_new(o)};
    cr_assert_eq(lc_enter(o, h.lock, 0), 0);
    for (int d = 0; d < o->depth; d++) {
        pthread_t t;
        void *ret;
        cr_assert_eq(pthread_create(&t, NULL, lc_release_from_thread, &h), 0);
        cr_assert_eq(pthread_join(t, &ret), 0);
        cr_assert_eq((intptr_t)ret, -EPERM, "release from another thread gave %d",
                     (int)(intptr_t)ret);
    }
    cr_assert(o->held(h.lock));
    cr_assert_eq(lc_leave(o, h.lock), 0);
    cr_assert_not(o->held(h.lock));
}

#endif
