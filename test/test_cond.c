/*
 * test_cond.c - fipc_cond: Python's Condition across processes.
 *
 * Every cross-process test forks plain children that report through their
 * exit status; waits inside children are bounded so that a lost wake-up
 * shows up as a failed check, not as a hung test.
 */
#include "common.h"
#include "futex_faults.h"

TestSuite(cond, .timeout = 60);

/* How long any handshake or in-child wait may take before a check fails:
 * far above anything a loaded two-core machine needs. */
#define LIMIT_NS FIPC_SEC(10)

/* Initialise a lock and a condition in place, asserting both succeed. */
static void init_lock_and_cond(fipc_lock *l, fipc_cond *c)
{
    cr_assert_eq(fipc_lock_init(l), 0);
    cr_assert_eq(fipc_cond_init(c), 0);
}

/* ---------------------------------------------------------------- */
/* Producer/consumer over a bounded buffer                          */
/* ---------------------------------------------------------------- */

#define PC_PRODUCERS 2
#define PC_CONSUMERS 2
#define PC_ITEMS     20000 /* per producer */
#define PC_CAP       8
#define PC_TOTAL     (PC_PRODUCERS * PC_ITEMS)

struct pc {
    fipc_lock lock;
    fipc_cond not_empty;
    fipc_cond not_full;
    uint32_t head, tail, count; /* guarded by lock */
    uint32_t producers_done;    /* guarded by lock */
    uint64_t buf[PC_CAP];
    /* Per consumer: how many items and their sum, sum of squares. */
    uint64_t got[PC_CONSUMERS], sum[PC_CONSUMERS], sumsq[PC_CONSUMERS];
    /* How many times each item was taken (must end as exactly once). */
    uint8_t seen[PC_TOTAL];
};

static bool pc_has_room(void *arg)
{
    struct pc *s = arg;
    return s->count < PC_CAP;
}

static bool pc_has_item_or_done(void *arg)
{
    struct pc *s = arg;
    return s->count > 0 || s->producers_done == PC_PRODUCERS;
}

static int pc_producer(int id, void *arg)
{
    struct pc *s = arg;
    for (uint32_t i = 0; i < PC_ITEMS; i++) {
        CHILD_CHECK(fipc_lock_acquire(&s->lock, LIMIT_NS) == 0, 1);
        CHILD_CHECK(fipc_cond_wait_for(&s->not_full, &s->lock, pc_has_room, s, LIMIT_NS) == 0, 2);
        CHILD_CHECK(s->count < PC_CAP, 3);
        /* Items are numbered 1..PC_TOTAL, producer id owning a block. */
        s->buf[s->tail] = (uint64_t)id * PC_ITEMS + i + 1;
        s->tail = (s->tail + 1) % PC_CAP;
        s->count++;
        CHILD_CHECK(fipc_cond_notify(&s->not_empty, 1) == 0, 4);
        CHILD_CHECK(fipc_lock_release(&s->lock) == 0, 5);
    }
    CHILD_CHECK(fipc_lock_acquire(&s->lock, LIMIT_NS) == 0, 6);
    s->producers_done++;
    /* Consumers waiting on an empty buffer must learn that no more come. */
    CHILD_CHECK(fipc_cond_notify_all(&s->not_empty) == 0, 7);
    CHILD_CHECK(fipc_lock_release(&s->lock) == 0, 8);
    return CHILD_OK;
}

static int pc_consumer(int id, void *arg)
{
    struct pc *s = arg;
    uint64_t last[PC_PRODUCERS] = {0};
    for (;;) {
        CHILD_CHECK(fipc_lock_acquire(&s->lock, LIMIT_NS) == 0, 20);
        CHILD_CHECK(
            fipc_cond_wait_for(&s->not_empty, &s->lock, pc_has_item_or_done, s, LIMIT_NS) == 0, 21);
        if (s->count == 0) {
            CHILD_CHECK(s->producers_done == PC_PRODUCERS, 22);
            CHILD_CHECK(fipc_lock_release(&s->lock) == 0, 23);
            break;
        }
        uint64_t v = s->buf[s->head];
        s->head = (s->head + 1) % PC_CAP;
        s->count--;
        CHILD_CHECK(fipc_cond_notify(&s->not_full, 1) == 0, 24);
        CHILD_CHECK(fipc_lock_release(&s->lock) == 0, 25);

        CHILD_CHECK(v >= 1 && v <= PC_TOTAL, 26);
        /* The buffer is FIFO, so one consumer sees each producer's items in
         * increasing order. */
        uint64_t producer = (v - 1) / PC_ITEMS;
        CHILD_CHECK(v > last[producer], 27);
        last[producer] = v;
        __atomic_fetch_add(&s->seen[v - 1], 1, __ATOMIC_RELAXED);
        s->got[id]++;
        s->sum[id] += v;
        s->sumsq[id] += v * v;
    }
    return CHILD_OK;
}

static int pc_child(int i, void *arg)
{
    return i < PC_PRODUCERS ? pc_producer(i, arg) : pc_consumer(i - PC_PRODUCERS, arg);
}

Test(cond, wait_for_moves_every_item_exactly_once_between_processes)
{
    struct pc *s = test_shared(sizeof *s);
    cr_assert_eq(fipc_lock_init(&s->lock), 0);
    cr_assert_eq(fipc_cond_init(&s->not_empty), 0);
    cr_assert_eq(fipc_cond_init(&s->not_full), 0);

    test_run_children(PC_PRODUCERS + PC_CONSUMERS, pc_child, s);

    uint64_t got = 0, sum = 0, sumsq = 0;
    for (int c = 0; c < PC_CONSUMERS; c++) {
        got += s->got[c];
        sum += s->sum[c];
        sumsq += s->sumsq[c];
    }
    uint64_t n = PC_TOTAL;
    cr_assert_eq(got, n);
    cr_assert_eq(sum, n * (n + 1) / 2);
    cr_assert_eq(sumsq, n * (n + 1) * (2 * n + 1) / 6);
    for (uint32_t i = 0; i < PC_TOTAL; i++)
        cr_assert_eq(s->seen[i], 1, "item %u taken %u times", i + 1, s->seen[i]);
    cr_assert_eq(s->count, 0);
    cr_assert_not(fipc_lock_locked(&s->lock));
    cr_assert_eq(fipc_cond_n_waiting(&s->not_empty), 0);
    cr_assert_eq(fipc_cond_n_waiting(&s->not_full), 0);
}

/* ---------------------------------------------------------------- */
/* notify(1) wakes exactly one waiter                               */
/* ---------------------------------------------------------------- */

#define NW_WAITERS 3

struct nw {
    fipc_lock *lock;
    fipc_cond *cond;
    uint32_t left;              /* waiters whose wait returned 0 */
    uint32_t woken[NW_WAITERS]; /* 1 once waiter i has returned */
};

static int nw_waiter(int i, void *arg)
{
    struct nw *s = arg;
    CHILD_CHECK(fipc_lock_acquire(s->lock, LIMIT_NS) == 0, 1);
    /* A raw wait, no predicate: the header promises wait returns 0 only
     * for a notify. */
    CHILD_CHECK(fipc_cond_wait(s->cond, s->lock, FIPC_SEC(30)) == 0, 2);
    CHILD_CHECK(fipc_lock_locked(s->lock), 3);
    __atomic_fetch_add(&s->left, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&s->woken[i], 1, __ATOMIC_RELEASE);
    CHILD_CHECK(fipc_lock_release(s->lock) == 0, 4);
    return CHILD_OK;
}

/* Wait (bounded) until fipc_cond_n_waiting(c) == want. */
static bool wait_n_waiting(const fipc_cond *c, int want)
{
    return TEST_WAIT_UNTIL(fipc_cond_n_waiting(c) == want, LIMIT_NS);
}

static bool still_running(pid_t pid)
{
    int status;
    return waitpid(pid, &status, WNOHANG) == 0;
}

/* Start NW_WAITERS nw_waiter children on a fresh lock and condition, and
 * return once all of them are registered and asleep in the wait. */
static struct nw *start_nw_waiters(pid_t pids[NW_WAITERS])
{
    struct nw *s = test_shared(sizeof *s);
    s->lock = fipc_lock_new(NULL);
    s->cond = fipc_cond_new(NULL);
    cr_assert_not_null(s->lock);
    cr_assert_not_null(s->cond);

    for (int i = 0; i < NW_WAITERS; i++)
        pids[i] = test_fork(nw_waiter, i, s);

    cr_assert(wait_n_waiting(s->cond, NW_WAITERS), "n_waiting stuck at %d",
              fipc_cond_n_waiting(s->cond));
    for (int i = 0; i < NW_WAITERS; i++)
        cr_assert(test_wait_sleeping(pids[i], LIMIT_NS), "waiter %d never slept", i);
    return s;
}

/* notify(n) (all of them, for n < 0) with the lock held, as a caller must. */
static void notify_locked(struct nw *s, int n)
{
    cr_assert_eq(fipc_lock_acquire(s->lock, LIMIT_NS), 0);
    if (n < 0)
        cr_assert_eq(fipc_cond_notify_all(s->cond), 0);
    else
        cr_assert_eq(fipc_cond_notify(s->cond, n), 0);
    cr_assert_eq(fipc_lock_release(s->lock), 0);
}

Test(cond, notify_one_wakes_exactly_one_of_three_sleepers)
{
    pid_t pids[NW_WAITERS];
    struct nw *s = start_nw_waiters(pids);
    notify_locked(s, 1);

    cr_assert(test_wait_until_at_least(&s->left, 1, LIMIT_NS), "no waiter woke");
    int one = -1;
    for (int i = 0; i < NW_WAITERS; i++)
        if (__atomic_load_n(&s->woken[i], __ATOMIC_ACQUIRE)) one = i;
    cr_assert_geq(one, 0);
    test_expect_ok(pids[one]);

    /* The other two must be back (or still) asleep, still registered. */
    int64_t limit = test_now_ns() + LIMIT_NS;
    while (fipc_cond_n_waiting(s->cond) != NW_WAITERS - 1) {
        cr_assert_eq(__atomic_load_n(&s->left, __ATOMIC_ACQUIRE), 1, "notify(1) released more");
        cr_assert_lt(test_now_ns(), limit, "n_waiting is %d, want 2", fipc_cond_n_waiting(s->cond));
        sched_yield();
    }
    for (int i = 0; i < NW_WAITERS; i++) {
        if (i == one) continue;
        cr_assert(test_wait_sleeping(pids[i], LIMIT_NS), "waiter %d not asleep", i);
        cr_assert(still_running(pids[i]), "waiter %d left after notify(1)", i);
    }
    /* A quiet period: a second wake-up, if notify(1) had released one,
     * would have had ample time to show in the counter. */
    int64_t end = test_now_ns() + FIPC_MSEC(100);
    while (test_now_ns() < end) {
        cr_assert_eq(__atomic_load_n(&s->left, __ATOMIC_ACQUIRE), 1);
        sched_yield();
    }
    cr_assert_eq(fipc_cond_n_waiting(s->cond), NW_WAITERS - 1);

    notify_locked(s, -1);
    for (int i = 0; i < NW_WAITERS; i++)
        if (i != one) test_expect_ok(pids[i]);
    cr_assert_eq(s->left, NW_WAITERS);
    cr_assert_eq(fipc_cond_n_waiting(s->cond), 0);
}

/* notify(n) with n > 1 wakes exactly n of the sleepers. */
Test(cond, notify_two_wakes_exactly_two_of_three_sleepers)
{
    pid_t pids[NW_WAITERS];
    struct nw *s = start_nw_waiters(pids);
    notify_locked(s, 2);

    cr_assert(test_wait_until_at_least(&s->left, 2, LIMIT_NS), "left = %u", s->left);
    cr_assert(wait_n_waiting(s->cond, 1), "n_waiting is %d", fipc_cond_n_waiting(s->cond));
    int rest = -1;
    for (int i = 0; i < NW_WAITERS; i++) {
        if (__atomic_load_n(&s->woken[i], __ATOMIC_ACQUIRE))
            test_expect_ok(pids[i]);
        else
            rest = i;
    }
    cr_assert_geq(rest, 0);
    cr_assert(test_wait_sleeping(pids[rest], LIMIT_NS));
    cr_assert(still_running(pids[rest]));
    cr_assert_eq(s->left, 2);

    notify_locked(s, 1);
    test_expect_ok(pids[rest]);
    cr_assert_eq(s->left, NW_WAITERS);
}

/* ---------------------------------------------------------------- */
/* A notify reaches only the waiters that were there before it      */
/* ---------------------------------------------------------------- */

struct late {
    fipc_lock *lock;
    fipc_cond *cond;
    uint32_t waiting; /* the early waiter holds the lock, about to wait */
};

/* The waiter that is there first: its wait must end in the notify. */
static int early_waiter(int i, void *arg)
{
    struct late *s = arg;
    test_child_setup(); /* it is stopped by the test */
    CHILD_CHECK(fipc_lock_acquire(s->lock, LIMIT_NS) == 0, 1);
    test_flag_set(&s->waiting, 1);
    CHILD_CHECK(fipc_cond_wait(s->cond, s->lock, LIMIT_NS) == 0, 2);
    CHILD_CHECK(fipc_lock_release(s->lock) == 0, 3);
    return CHILD_OK;
}

/* A waiter that starts after the notify: nothing is left for it. */
static int late_waiter(int i, void *arg)
{
    struct late *s = arg;
    test_child_setup();
    CHILD_CHECK(fipc_lock_acquire(s->lock, LIMIT_NS) == 0, 1);
    CHILD_CHECK(fipc_cond_wait(s->cond, s->lock, 0) == -EAGAIN, 2);
    CHILD_CHECK(fipc_cond_wait(s->cond, s->lock, FIPC_MSEC(50)) == -ETIMEDOUT, 3);
    CHILD_CHECK(fipc_lock_release(s->lock) == 0, 4);
    return CHILD_OK;
}

Test(cond, a_notify_is_not_taken_by_a_waiter_that_came_after_it)
{
    struct late *s = test_shared(sizeof *s);
    s->lock = fipc_lock_new(NULL);
    s->cond = fipc_cond_new(NULL);
    cr_assert_not_null(s->lock);
    cr_assert_not_null(s->cond);

    pid_t early = test_fork(early_waiter, 0, s);
    cr_assert(test_wait_until_at_least(&s->waiting, 1, LIMIT_NS));
    cr_assert(wait_n_waiting(s->cond, 1), "n_waiting is %d", fipc_cond_n_waiting(s->cond));
    cr_assert(test_wait_sleeping(early, LIMIT_NS), "the early waiter never slept");
    /* Hold the notified waiter off the CPU, so that every later waiter has
     * all the time it needs to take the wake-up in its place. */
    cr_assert_eq(kill(early, SIGSTOP), 0);
    cr_assert(test_wait_stopped(early, LIMIT_NS), "SIGSTOP never took effect");

    cr_assert_eq(fipc_lock_acquire(s->lock, LIMIT_NS), 0);
    cr_assert_eq(fipc_cond_notify(s->cond, 1), 0);
    cr_assert_eq(fipc_cond_n_waiting(s->cond), 0, "the early waiter is notified");
    /* The notifier's own next wait, as in any loop of notify then wait. */
    int r = fipc_cond_wait(s->cond, s->lock, 0);
    cr_assert_eq(r, -EAGAIN, "the notifier's wait(0) after its notify gave %d (%s)", r,
                 fipc_strerror(r));
    cr_assert_eq(fipc_lock_release(s->lock), 0);
    /* Another process that starts waiting now. */
    test_expect_ok(test_fork(late_waiter, 1, s));

    cr_assert_eq(kill(early, SIGCONT), 0);
    test_expect_ok(early);
    cr_assert_eq(fipc_cond_n_waiting(s->cond), 0);
}

/* Two processes take turns, each waiting for its turn with wait_for and
 * handing the turn over with notify(1): each notify finds the other one
 * waiting (or about to look at the turn), never only the notifier itself. */
#define PP_ROUNDS 20000

struct pingpong {
    fipc_lock lock;
    fipc_cond cond;
    int32_t turn;   /* guarded by lock */
    uint32_t moves; /* guarded by lock */
};

struct player {
    struct pingpong *s;
    int32_t me;
};

static bool my_turn(void *arg)
{
    struct player *p = arg;
    return p->s->turn == p->me;
}

static int pingpong_player(int i, void *arg)
{
    struct pingpong *s = arg;
    struct player me = {s, i};
    test_child_setup(); /* it waits FIPC_FOREVER */
    for (int k = 0; k < PP_ROUNDS; k++) {
        CHILD_CHECK(fipc_lock_acquire(&s->lock, FIPC_FOREVER) == 0, 1);
        CHILD_CHECK(fipc_cond_wait_for(&s->cond, &s->lock, my_turn, &me, FIPC_FOREVER) == 0, 2);
        s->turn = 1 - i;
        s->moves++;
        CHILD_CHECK(fipc_cond_notify(&s->cond, 1) == 0, 3);
        CHILD_CHECK(fipc_lock_release(&s->lock) == 0, 4);
    }
    return CHILD_OK;
}

Test(cond, two_processes_taking_turns_with_notify_one_never_stall)
{
    struct pingpong *s = test_shared(sizeof *s);
    init_lock_and_cond(&s->lock, &s->cond);
    pid_t pids[2];
    for (int i = 0; i < 2; i++)
        pids[i] = test_fork(pingpong_player, i, s);
    /* A lost turn leaves both asleep for good: they fail to end here. */
    test_reap_within(pids, 2, FIPC_SEC(40));
    cr_assert_eq(s->moves, 2 * PP_ROUNDS);
    cr_assert_eq(fipc_cond_n_waiting(&s->cond), 0);
}

/* A generation barrier on a lock and a condition, the way Python's
 * threading.Barrier is built: the last arrival advances the generation and
 * calls notify_all; the others wait for the generation to move on.  Every
 * notify_all must release every waiter of the generation it ends. */
#define GB_PARTIES 3
#define GB_ROUNDS  5000

struct genbar {
    fipc_lock lock;
    fipc_cond cond;
    uint32_t arrived, gen; /* guarded by lock */
};

struct genbar_wait {
    struct genbar *s;
    uint32_t gen;
};

static bool gen_moved(void *arg)
{
    struct genbar_wait *w = arg;
    return w->s->gen != w->gen;
}

static int genbar_party(int i, void *arg)
{
    struct genbar *s = arg;
    test_child_setup(); /* it waits FIPC_FOREVER */
    for (int k = 0; k < GB_ROUNDS; k++) {
        CHILD_CHECK(fipc_lock_acquire(&s->lock, FIPC_FOREVER) == 0, 1);
        struct genbar_wait w = {s, s->gen};
        if (++s->arrived == GB_PARTIES) {
            s->arrived = 0;
            s->gen++;
            CHILD_CHECK(fipc_cond_notify_all(&s->cond) == 0, 2);
        } else {
            CHILD_CHECK(fipc_cond_wait_for(&s->cond, &s->lock, gen_moved, &w, FIPC_FOREVER) == 0,
                        3);
            CHILD_CHECK(s->gen == w.gen + 1, 4);
        }
        CHILD_CHECK(fipc_lock_release(&s->lock) == 0, 5);
    }
    return CHILD_OK;
}

Test(cond, generation_barrier_on_notify_all_releases_every_round)
{
    struct genbar *s = test_shared(sizeof *s);
    init_lock_and_cond(&s->lock, &s->cond);
    pid_t pids[GB_PARTIES];
    for (int i = 0; i < GB_PARTIES; i++)
        pids[i] = test_fork(genbar_party, i, s);
    test_reap_within(pids, GB_PARTIES, FIPC_SEC(40));
    cr_assert_eq(s->gen, GB_ROUNDS);
    cr_assert_eq(fipc_cond_n_waiting(&s->cond), 0);
}

/* ---------------------------------------------------------------- */
/* Timeouts                                                          */
/* ---------------------------------------------------------------- */

Test(cond, wait_times_out_after_its_timeout_with_the_lock_held)
{
    fipc_lock l;
    fipc_cond c;
    init_lock_and_cond(&l, &c);

    cr_assert_eq(fipc_lock_acquire(&l, 0), 0);
    int64_t t0 = test_now_ns();
    int r = fipc_cond_wait(&c, &l, FIPC_MSEC(50));
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_eq(r, -ETIMEDOUT, "wait returned %d", r);
    cr_assert_geq(elapsed, FIPC_MSEC(50), "returned after %lld ns", (long long)elapsed);
    cr_assert(fipc_lock_locked(&l));
    cr_assert_eq(fipc_cond_n_waiting(&c), 0);
    cr_assert_eq(fipc_lock_release(&l), 0);
    cr_assert_not(fipc_lock_locked(&l));
}

Test(cond, wait_with_zero_timeout_gives_eagain_with_the_lock_held)
{
    fipc_lock l;
    fipc_cond c;
    init_lock_and_cond(&l, &c);

    cr_assert_eq(fipc_lock_acquire(&l, 0), 0);
    cr_assert_eq(fipc_cond_wait(&c, &l, 0), -EAGAIN);
    cr_assert(fipc_lock_locked(&l));
    cr_assert_eq(fipc_cond_n_waiting(&c), 0);
    cr_assert_eq(fipc_lock_release(&l), 0);
}

static bool pred_false(void *arg)
{
    int *calls = arg;
    (*calls)++;
    return false;
}

static bool pred_true(void *arg)
{
    int *calls = arg;
    (*calls)++;
    return true;
}

Test(cond, wait_for_times_out_when_predicate_stays_false)
{
    fipc_lock l;
    fipc_cond c;
    int calls = 0;
    init_lock_and_cond(&l, &c);

    cr_assert_eq(fipc_lock_acquire(&l, 0), 0);
    int64_t t0 = test_now_ns();
    int r = fipc_cond_wait_for(&c, &l, pred_false, &calls, FIPC_MSEC(50));
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_eq(r, -ETIMEDOUT, "wait_for returned %d", r);
    cr_assert_geq(elapsed, FIPC_MSEC(50));
    cr_assert_geq(calls, 1, "the predicate was never evaluated");
    cr_assert(fipc_lock_locked(&l));

    calls = 0;
    cr_assert_eq(fipc_cond_wait_for(&c, &l, pred_false, &calls, 0), -EAGAIN);
    cr_assert_geq(calls, 1);
    cr_assert(fipc_lock_locked(&l));
    cr_assert_eq(fipc_lock_release(&l), 0);
}

Test(cond, wait_for_returns_at_once_when_predicate_already_holds)
{
    fipc_lock l;
    fipc_cond c;
    int calls = 0;
    init_lock_and_cond(&l, &c);

    cr_assert_eq(fipc_lock_acquire(&l, 0), 0);
    /* Even a zero timeout succeeds: nothing needs to be waited for. */
    cr_assert_eq(fipc_cond_wait_for(&c, &l, pred_true, &calls, 0), 0);
    cr_assert_eq(calls, 1);
    cr_assert_eq(fipc_cond_wait_for(&c, &l, pred_true, &calls, FIPC_FOREVER), 0);
    cr_assert_eq(calls, 2);
    cr_assert(fipc_lock_locked(&l));
    cr_assert_eq(fipc_lock_release(&l), 0);
}

/* A notifier that keeps waking the condition must not extend wait_for's
 * deadline: the deadline covers the whole wait, not each sleep. */
struct storm {
    fipc_lock lock;
    fipc_cond cond;
    uint32_t stop;
    uint32_t notifies;
};

static int storm_notifier(int i, void *arg)
{
    struct storm *s = arg;
    int64_t end = test_now_ns() + FIPC_SEC(20);
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        CHILD_CHECK(test_now_ns() < end, 1);
        CHILD_CHECK(fipc_lock_acquire(&s->lock, LIMIT_NS) == 0, 2);
        CHILD_CHECK(fipc_cond_notify_all(&s->cond) == 0, 3);
        CHILD_CHECK(fipc_lock_release(&s->lock) == 0, 4);
        __atomic_fetch_add(&s->notifies, 1, __ATOMIC_RELEASE);
        usleep(2000); /* not a poll: the pace of the storm of notifies */
    }
    return CHILD_OK;
}

Test(cond, wait_for_keeps_one_deadline_across_wakeups)
{
    struct storm *s = test_shared(sizeof *s);
    int calls = 0;
    init_lock_and_cond(&s->lock, &s->cond);
    pid_t pid = test_fork(storm_notifier, 0, s);
    cr_assert(test_wait_until_at_least(&s->notifies, 1, LIMIT_NS));

    cr_assert_eq(fipc_lock_acquire(&s->lock, LIMIT_NS), 0);
    int64_t t0 = test_now_ns();
    int r = fipc_cond_wait_for(&s->cond, &s->lock, pred_false, &calls, FIPC_MSEC(200));
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_eq(fipc_lock_release(&s->lock), 0);
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    test_expect_ok(pid);

    cr_assert_eq(r, -ETIMEDOUT, "wait_for returned %d", r);
    cr_assert_geq(elapsed, FIPC_MSEC(200));
    /* Generous: a deadline restarted by each notify (every ~2 ms) would
     * never end while the notifier runs (up to 20 s). */
    cr_assert_lt(elapsed, FIPC_SEC(8), "wait_for took %lld ns", (long long)elapsed);
    cr_assert_geq(calls, 2, "the predicate was not re-checked after wake-ups");
}

/* A signal does not end a wait early: it resumes with the time left. */
static int signaller(int i, void *arg)
{
    uint32_t *stop = arg;
    pid_t parent = getppid();
    int64_t end = test_now_ns() + FIPC_SEC(20);
    while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
        CHILD_CHECK(test_now_ns() < end, 1);
        kill(parent, SIGUSR1);
        usleep(5000); /* not a poll: the pause between interruptions */
    }
    return CHILD_OK;
}

Test(cond, wait_is_not_cut_short_by_signals)
{
    test_catch_sigusr1();
    uint32_t *stop = test_shared(sizeof *stop);
    fipc_lock l;
    fipc_cond c;
    init_lock_and_cond(&l, &c);
    pid_t pid = test_fork(signaller, 0, stop);

    cr_assert_eq(fipc_lock_acquire(&l, 0), 0);
    int64_t t0 = test_now_ns();
    int r = fipc_cond_wait(&c, &l, FIPC_MSEC(150));
    int64_t elapsed = test_now_ns() - t0;
    __atomic_store_n(stop, 1, __ATOMIC_RELEASE);
    test_expect_ok(pid);
    cr_assert_eq(r, -ETIMEDOUT, "wait returned %d", r);
    cr_assert_geq(elapsed, FIPC_MSEC(150));
    cr_assert(fipc_lock_locked(&l));
    cr_assert_eq(fipc_lock_release(&l), 0);
}

/* ---------------------------------------------------------------- */
/* Killed between notify and wake                                    */
/* ---------------------------------------------------------------- */

/* A notifier killed after it notified but before it woke anyone leaves a
 * waiter asleep although it was notified.  The waiter still gets out: at
 * its one-second re-check, or when the next notify, which finds the dead
 * notifier's wakes still owed, makes them.  The notifier holds the lock when it
 * notifies, as it must, and so dies holding it: the waiter takes the lock
 * over and its wait reports -EOWNERDEAD, unless someone else took the lock
 * over first. */
struct dying_notify {
    fipc_lock *lock;
    fipc_cond *cond;
    bool no_recheck;   /* the waiter sleeps until woken, never re-checking */
    uint32_t waiting;  /* the waiter is about to wait; waiter is set */
    uint32_t returned; /* the waiter's wait returned wait_ret */
    int32_t wait_ret;
    pid_t waiter;
};

static int token_waiter_child(int i, void *arg)
{
    struct dying_notify *d = arg;
    test_child_setup(); /* it waits FIPC_FOREVER */
    if (d->no_recheck) fault_sleep_until_woken();
    CHILD_CHECK(fipc_lock_acquire(d->lock, LIMIT_NS) == 0, 1);
    d->waiter = getpid();
    __atomic_store_n(&d->waiting, 1, __ATOMIC_RELEASE);
    d->wait_ret = fipc_cond_wait(d->cond, d->lock, FIPC_FOREVER);
    __atomic_store_n(&d->returned, 1, __ATOMIC_RELEASE);
    CHILD_CHECK(fipc_lock_locked(d->lock), 2);
    CHILD_CHECK(fipc_lock_release(d->lock) == 0, 3);
    return CHILD_OK;
}

/* Notify the sleeping waiter under the lock, and be killed after the
 * notify changed the state but before the wake. */
static int notify_and_die_child(int i, void *arg)
{
    struct dying_notify *d = arg;
    test_child_setup();
    CHILD_CHECK(test_wait_until_at_least(&d->waiting, 1, LIMIT_NS), 1);
    /* The waiter registered before it let the lock go. */
    CHILD_CHECK(fipc_lock_acquire(d->lock, LIMIT_NS) == 0, 2);
    CHILD_CHECK(fipc_cond_n_waiting(d->cond) == 1, 3);
    CHILD_CHECK(test_wait_sleeping(d->waiter, LIMIT_NS), 4);
    fault_kill_at_next_wake();
    fipc_cond_notify(d->cond, 1);
    return CHILD_FAIL(5);
}

static struct dying_notify *new_dying_notify(bool no_recheck)
{
    struct dying_notify *d = test_shared(sizeof *d);
    d->lock = fipc_lock_new(NULL);
    d->cond = fipc_cond_new(NULL);
    cr_assert_not_null(d->lock);
    cr_assert_not_null(d->cond);
    d->no_recheck = no_recheck;
    return d;
}

/* The waiter was the one notified: nothing is left for a later wait. */
static void expect_no_token_left(struct dying_notify *d)
{
    cr_assert_eq(fipc_cond_n_waiting(d->cond), 0);
    cr_assert_eq(fipc_lock_acquire(d->lock, 0), 0);
    cr_assert_eq(fipc_cond_wait(d->cond, d->lock, 0), -EAGAIN, "a token was left behind");
    cr_assert_eq(fipc_lock_release(d->lock), 0);
}

Test(cond, waiter_leaves_when_the_notifier_dies_before_waking)
{
    struct dying_notify *d = new_dying_notify(false);
    pid_t pids[2];
    int status[2];
    pids[0] = test_fork(token_waiter_child, 0, d);
    pids[1] = test_fork(notify_and_die_child, 1, d);

    /* Nobody wakes the waiter: its re-check finds the token. */
    fault_reap_within(pids, status, 2, LIMIT_NS);
    fault_expect_killed(status[1], "the notifier");
    fault_expect_ok(status[0], "the waiter", LIMIT_NS);
    cr_assert_eq(d->wait_ret, -EOWNERDEAD,
                 "wait gave %d (%s), want the notifier's death on the lock", d->wait_ret,
                 fipc_strerror(d->wait_ret));
    expect_no_token_left(d);
}

Test(cond, waiter_leaves_when_the_notifier_dies_before_waking_and_another_notify_follows)
{
    /* Without its re-check, only the later notify can end the waiter's
     * sleep: it must wake although it finds nobody left to notify. */
    struct dying_notify *d = new_dying_notify(true);
    pid_t waiter = test_fork(token_waiter_child, 0, d);
    pid_t notifier = test_fork(notify_and_die_child, 1, d);
    int status;

    fault_reap_within(&notifier, &status, 1, LIMIT_NS);
    fault_expect_killed(status, "the notifier");
    cr_assert_eq(fipc_cond_n_waiting(d->cond), 0, "the dead notifier's token is out");
    cr_assert(test_wait_sleeping(waiter, LIMIT_NS), "the waiter is not asleep");
    cr_assert_eq(__atomic_load_n(&d->returned, __ATOMIC_ACQUIRE), 0,
                 "the waiter left without a wake (wait gave %d)", d->wait_ret);

    cr_assert_eq(fipc_lock_acquire(d->lock, LIMIT_NS), -EOWNERDEAD,
                 "the notifier died holding the lock");
    cr_assert_eq(fipc_cond_notify(d->cond, 1), 0);
    cr_assert_eq(fipc_lock_release(d->lock), 0);
    fault_reap_within(&waiter, &status, 1, LIMIT_NS);
    fault_expect_ok(status, "the waiter", LIMIT_NS);
    cr_assert_eq(d->wait_ret, 0, "wait gave %d (%s)", d->wait_ret, fipc_strerror(d->wait_ret));
    expect_no_token_left(d);
}

/* ---------------------------------------------------------------- */
/* Killed inside wait                                                */
/* ---------------------------------------------------------------- */

struct dead_waiter {
    fipc_lock *lock;
    fipc_cond *cond;
    uint32_t returned; /* waiters whose wait returned 0 */
};

/* Wait without limit; only a notify ends it (or SIGKILL). */
static int waiter_until_notified(int i, void *arg)
{
    struct dead_waiter *d = arg;
    test_child_setup(); /* it waits FIPC_FOREVER */
    CHILD_CHECK(fipc_lock_acquire(d->lock, LIMIT_NS) == 0, 1);
    CHILD_CHECK(fipc_cond_wait(d->cond, d->lock, FIPC_FOREVER) == 0, 2);
    test_flag_add(&d->returned);
    CHILD_CHECK(fipc_lock_release(d->lock) == 0, 3);
    return CHILD_OK;
}

static struct dead_waiter *new_dead_waiter(void)
{
    struct dead_waiter *d = test_shared(sizeof *d);
    d->lock = fipc_lock_new(NULL);
    d->cond = fipc_cond_new(NULL);
    cr_assert_not_null(d->lock);
    cr_assert_not_null(d->cond);
    return d;
}

/* Start a waiter_until_notified child and return once it sleeps in wait,
 * with want waiters counted. */
static pid_t start_sleeper(struct dead_waiter *d, int want)
{
    pid_t pid = test_fork(waiter_until_notified, 0, d);
    cr_assert(wait_n_waiting(d->cond, want), "n_waiting is %d, want %d",
              fipc_cond_n_waiting(d->cond), want);
    cr_assert(test_wait_sleeping(pid, LIMIT_NS), "the waiter never slept");
    return pid;
}

static void notify_under(struct dead_waiter *d, int n)
{
    cr_assert_eq(fipc_lock_acquire(d->lock, LIMIT_NS), 0);
    cr_assert_eq(n < 0 ? fipc_cond_notify_all(d->cond) : fipc_cond_notify(d->cond, n), 0);
    cr_assert_eq(fipc_lock_release(d->lock), 0);
}

/* Nothing of the dead is left: a new wait finds no wake-up. */
static void expect_nothing_left(struct dead_waiter *d)
{
    cr_assert_eq(fipc_cond_n_waiting(d->cond), 0, "n_waiting is %d", fipc_cond_n_waiting(d->cond));
    cr_assert_eq(fipc_lock_acquire(d->lock, LIMIT_NS), 0);
    int r = fipc_cond_wait(d->cond, d->lock, 0);
    cr_assert_eq(r, -EAGAIN, "wait(0) with no notify since it began gave %d (%s)", r,
                 fipc_strerror(r));
    cr_assert_eq(fipc_lock_release(d->lock), 0);
}

Test(cond, waiter_killed_in_wait_is_forgotten_once_notified)
{
    struct dead_waiter *d = new_dead_waiter();
    pid_t victim = start_sleeper(d, 1);
    test_kill_and_reap(victim);
    /* Nobody can tell it died: it still counts until a notify reaches it. */
    cr_assert_eq(fipc_cond_n_waiting(d->cond), 1);

    notify_under(d, -1);
    expect_nothing_left(d);

    /* The condition works as before for the living. */
    pid_t live = start_sleeper(d, 1);
    notify_under(d, 1);
    test_reap_within(&live, 1, LIMIT_NS);
    cr_assert_eq(d->returned, 1);
    expect_nothing_left(d);
}

/* The worst a dead waiter costs is one wake-up of one notify(n): make it
 * the only waiter of its generation not yet notified, with a live waiter
 * behind it, and two notify(1) release the live one. */
Test(cond, waiter_killed_in_wait_costs_at_most_one_wake_up)
{
    struct dead_waiter *d = new_dead_waiter();
    pid_t victim = start_sleeper(d, 1);
    pid_t first = start_sleeper(d, 2);
    test_kill_and_reap(victim);
    /* One of the two is notified: the live one, since the dead never takes
     * it; the dead one stays counted, not notified. */
    notify_under(d, 1);
    test_reap_within(&first, 1, LIMIT_NS);
    cr_assert_eq(fipc_cond_n_waiting(d->cond), 1);

    pid_t live = start_sleeper(d, 2);
    notify_under(d, 1);
    notify_under(d, 1);
    test_reap_within(&live, 1, LIMIT_NS);
    cr_assert_eq(d->returned, 2);
    expect_nothing_left(d);
}

/* ---------------------------------------------------------------- */
/* Misuse and edge cases                                             */
/* ---------------------------------------------------------------- */

Test(cond, wait_without_holding_the_lock_gives_eperm)
{
    fipc_lock l;
    fipc_cond c;
    int calls = 0;
    init_lock_and_cond(&l, &c);

    cr_assert_eq(fipc_cond_wait(&c, &l, FIPC_MSEC(10)), -EPERM);
    cr_assert_eq(fipc_cond_wait(&c, &l, 0), -EPERM);
    cr_assert_eq(fipc_cond_wait_for(&c, &l, pred_false, &calls, FIPC_MSEC(10)), -EPERM);
    cr_assert_not(fipc_lock_locked(&l));
    cr_assert_eq(fipc_cond_n_waiting(&c), 0);
}

static int hold_lock_until_stop(int i, void *arg)
{
    struct storm *s = arg;
    CHILD_CHECK(fipc_lock_acquire(&s->lock, LIMIT_NS) == 0, 1);
    __atomic_store_n(&s->notifies, 1, __ATOMIC_RELEASE);
    int64_t end = test_now_ns() + LIMIT_NS;
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        CHILD_CHECK(test_now_ns() < end, 2);
        sched_yield();
    }
    CHILD_CHECK(fipc_lock_release(&s->lock) == 0, 3);
    return CHILD_OK;
}

Test(cond, wait_on_a_lock_held_by_another_process_gives_eperm)
{
    struct storm *s = test_shared(sizeof *s);
    init_lock_and_cond(&s->lock, &s->cond);
    pid_t pid = test_fork(hold_lock_until_stop, 0, s);
    cr_assert(test_wait_until_at_least(&s->notifies, 1, LIMIT_NS));

    int r = fipc_cond_wait(&s->cond, &s->lock, FIPC_MSEC(10));
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    test_expect_ok(pid);
    cr_assert_eq(r, -EPERM, "wait returned %d", r);
    cr_assert_eq(fipc_cond_n_waiting(&s->cond), 0);
}

Test(cond, null_arguments_give_einval)
{
    fipc_lock l;
    fipc_cond c;
    int calls = 0;
    init_lock_and_cond(&l, &c);
    cr_assert_eq(fipc_lock_acquire(&l, 0), 0);

    cr_assert_eq(fipc_cond_init(NULL), -EINVAL);
    cr_assert_eq(fipc_cond_wait(NULL, &l, 0), -EINVAL);
    cr_assert_eq(fipc_cond_wait(&c, NULL, 0), -EINVAL);
    cr_assert_eq(fipc_cond_wait_for(NULL, &l, pred_true, &calls, 0), -EINVAL);
    cr_assert_eq(fipc_cond_wait_for(&c, NULL, pred_true, &calls, 0), -EINVAL);
    cr_assert_eq(fipc_cond_wait_for(&c, &l, NULL, &calls, 0), -EINVAL);
    cr_assert_eq(fipc_cond_notify(NULL, 1), -EINVAL);
    cr_assert_eq(fipc_cond_notify_all(NULL), -EINVAL);
    cr_assert_eq(fipc_cond_n_waiting(NULL), -EINVAL);
    cr_assert_eq(calls, 0);

    /* None of that disturbed the lock. */
    cr_assert(fipc_lock_locked(&l));
    cr_assert_eq(fipc_lock_release(&l), 0);
}

Test(cond, notify_without_waiters_returns_zero_and_is_not_remembered)
{
    fipc_lock *l = fipc_lock_new(NULL);
    fipc_cond *c = fipc_cond_new(NULL);
    cr_assert_not_null(l);
    cr_assert_not_null(c);
    cr_assert_eq(fipc_cond_n_waiting(c), 0);

    cr_assert_eq(fipc_cond_notify(c, 1), 0);
    cr_assert_eq(fipc_cond_notify(c, 5), 0);
    cr_assert_eq(fipc_cond_notify_all(c), 0);
    cr_assert_eq(fipc_lock_acquire(l, 0), 0);
    cr_assert_eq(fipc_cond_notify(c, 1), 0);
    cr_assert_eq(fipc_cond_notify_all(c), 0);

    /* A notify reaches only threads waiting at that moment: a later wait
     * finds no token left behind. */
    cr_assert_eq(fipc_cond_wait(c, l, 0), -EAGAIN);
    cr_assert_eq(fipc_cond_wait(c, l, FIPC_MSEC(20)), -ETIMEDOUT);
    cr_assert_eq(fipc_cond_n_waiting(c), 0);
    cr_assert_eq(fipc_lock_release(l), 0);
}
