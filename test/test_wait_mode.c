/*
 * test_wait_mode.c - the per-object wait modes (enum fipc_wait_mode):
 * FIPC_WAIT_ADAPTIVE, FIPC_WAIT_SPIN and FIPC_WAIT_SLEEP on queues (MPMC
 * and SPSC), JoinableQueues, semaphores and events.
 *
 * In every mode: a ping-pong between two processes keeps exact order and
 * count, timeouts end the wait, close ends a waiting get, bad arguments
 * are -EINVAL.  Then what tells the modes apart, seen from outside the
 * waiter: a waiter in FIPC_WAIT_SPIN never sleeps in the kernel (its
 * /proc state stays R), one in FIPC_WAIT_SLEEP does; a queue waiter that
 * spins still passes a dead producer's claim.
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 */
#include <signal.h>
#include <sys/wait.h>

#include "common.h"
#include "test_hooks.h"
#include "waitable.h"

TestSuite(wait_mode, .timeout = 120);

static const enum fipc_wait_mode modes[] = {FIPC_WAIT_ADAPTIVE, FIPC_WAIT_SPIN, FIPC_WAIT_SLEEP};
#define NMODES (sizeof modes / sizeof modes[0])

static fipc_arena *arena(void)
{
    static fipc_arena *a;
    if (!a) cr_assert_eq(fipc_arena_create(&a, "wait_mode", 16 << 20), 0);
    return a;
}

/* ---- ping-pong in every mode ---- */

/* Round trips per ping-pong.  Fewer where both sides poll: on a loaded
 * two-CPU machine two pollers may share a CPU, and then every hand-off
 * waits for the scheduler to switch between them. */
#define ROUNDS      20000
#define SPIN_ROUNDS 500

static uint32_t rounds(enum fipc_wait_mode mode)
{
    return mode == FIPC_WAIT_SPIN ? SPIN_ROUNDS : ROUNDS;
}

struct qpair {
    fipc_queue *ping, *pong;
    uint32_t rounds;
};

static int queue_ponger(int i, void *arg)
{
    (void)i;
    struct qpair *p = arg;
    test_child_setup();
    for (uint32_t n = 0; n < p->rounds; n++) {
        uint32_t v;
        size_t len;
        CHILD_CHECK(fipc_queue_get(p->ping, &v, sizeof v, &len, FIPC_FOREVER) == 0, 1);
        CHILD_CHECK(len == sizeof v && v == n, 2);
        v = ~n;
        CHILD_CHECK(fipc_queue_put(p->pong, &v, sizeof v, FIPC_FOREVER) == 0, 3);
    }
    return CHILD_OK;
}

static void queue_pingpong(unsigned flags, enum fipc_wait_mode mode)
{
    struct qpair *p = test_shared(sizeof *p);
    cr_assert_eq(fipc_queue_create(&p->ping, arena(), 1, sizeof(uint32_t), flags), 0);
    cr_assert_eq(fipc_queue_create(&p->pong, arena(), 1, sizeof(uint32_t), flags), 0);
    cr_assert_eq(fipc_queue_set_wait_mode(p->ping, mode), 0);
    cr_assert_eq(fipc_queue_set_wait_mode(p->pong, mode), 0);
    p->rounds = rounds(mode);
    pid_t pid = test_fork(queue_ponger, 0, p);
    for (uint32_t n = 0; n < p->rounds; n++) {
        uint32_t v = n;
        size_t len;
        cr_assert_eq(fipc_queue_put(p->ping, &v, sizeof v, FIPC_FOREVER), 0);
        cr_assert_eq(fipc_queue_get(p->pong, &v, sizeof v, &len, FIPC_FOREVER), 0);
        cr_assert(len == sizeof v && v == ~n, "round %u: got %u", n, v);
    }
    test_expect_ok(pid);
}

Test(wait_mode, queue_pingpong_keeps_order_in_every_mode)
{
    for (size_t m = 0; m < NMODES; m++) {
        queue_pingpong(0, modes[m]);
        queue_pingpong(FIPC_QUEUE_SPSC, modes[m]);
    }
}

struct jpair {
    fipc_jqueue *ping, *pong;
    uint32_t rounds;
};

static int jqueue_ponger(int i, void *arg)
{
    (void)i;
    struct jpair *p = arg;
    test_child_setup();
    for (uint32_t n = 0; n < p->rounds; n++) {
        uint32_t v;
        size_t len;
        CHILD_CHECK(fipc_jqueue_get(p->ping, &v, sizeof v, &len, FIPC_FOREVER) == 0, 1);
        CHILD_CHECK(len == sizeof v && v == n, 2);
        CHILD_CHECK(fipc_jqueue_task_done(p->ping) == 0, 3);
        CHILD_CHECK(fipc_jqueue_put(p->pong, &v, sizeof v, FIPC_FOREVER) == 0, 4);
    }
    return CHILD_OK;
}

Test(wait_mode, jqueue_pingpong_counts_right_in_every_mode)
{
    for (size_t m = 0; m < NMODES; m++) {
        struct jpair *p = test_shared(sizeof *p);
        cr_assert_eq(fipc_jqueue_create(&p->ping, arena(), 1, sizeof(uint32_t), 0), 0);
        cr_assert_eq(fipc_jqueue_create(&p->pong, arena(), 1, sizeof(uint32_t), 0), 0);
        cr_assert_eq(fipc_jqueue_set_wait_mode(p->ping, modes[m]), 0);
        cr_assert_eq(fipc_jqueue_set_wait_mode(p->pong, modes[m]), 0);
        p->rounds = rounds(modes[m]) / 4;
        pid_t pid = test_fork(jqueue_ponger, 0, p);
        for (uint32_t n = 0; n < p->rounds; n++) {
            uint32_t v = n;
            size_t len;
            cr_assert_eq(fipc_jqueue_put(p->ping, &v, sizeof v, FIPC_FOREVER), 0);
            cr_assert_eq(fipc_jqueue_get(p->pong, &v, sizeof v, &len, FIPC_FOREVER), 0);
            cr_assert_eq(v, n);
            cr_assert_eq(fipc_jqueue_task_done(p->pong), 0);
        }
        test_expect_ok(pid);
        cr_assert_eq(fipc_jqueue_join(p->ping, 0), 0);
        cr_assert_eq(fipc_jqueue_join(p->pong, 0), 0);
    }
}

struct spair {
    fipc_sem ping, pong;
    fipc_event ev[2];
    uint32_t turns; /* written by whoever holds the turn */
    uint32_t rounds;
};

static int sem_ponger(int i, void *arg)
{
    (void)i;
    struct spair *p = arg;
    test_child_setup();
    for (uint32_t n = 0; n < p->rounds; n++) {
        CHILD_CHECK(fipc_sem_acquire(&p->ping, FIPC_FOREVER) == 0, 1);
        CHILD_CHECK(p->turns == 2 * n + 1, 2);
        p->turns++;
        CHILD_CHECK(fipc_sem_release(&p->pong) == 0, 3);
    }
    return CHILD_OK;
}

Test(wait_mode, sem_pingpong_hands_every_unit_over_in_every_mode)
{
    for (size_t m = 0; m < NMODES; m++) {
        struct spair *p = test_shared(sizeof *p);
        cr_assert_eq(fipc_sem_init(&p->ping, 0), 0);
        cr_assert_eq(fipc_sem_init(&p->pong, 0), 0);
        cr_assert_eq(fipc_sem_set_wait_mode(&p->ping, modes[m]), 0);
        cr_assert_eq(fipc_sem_set_wait_mode(&p->pong, modes[m]), 0);
        p->rounds = rounds(modes[m]);
        pid_t pid = test_fork(sem_ponger, 0, p);
        for (uint32_t n = 0; n < p->rounds; n++) {
            p->turns++;
            cr_assert_eq(fipc_sem_release(&p->ping), 0);
            cr_assert_eq(fipc_sem_acquire(&p->pong, FIPC_FOREVER), 0);
            cr_assert_eq(p->turns, 2 * n + 2);
        }
        test_expect_ok(pid);
        cr_assert_eq(fipc_sem_acquire(&p->ping, 0), -EAGAIN);
        cr_assert_eq(fipc_sem_acquire(&p->pong, 0), -EAGAIN);
    }
}

/* Events alternate: ev[0] set by the parent for round n, cleared by the
 * child; ev[1] the other way. */
static int event_ponger(int i, void *arg)
{
    (void)i;
    struct spair *p = arg;
    test_child_setup();
    for (uint32_t n = 0; n < p->rounds; n++) {
        CHILD_CHECK(fipc_event_wait(&p->ev[0], FIPC_FOREVER) == 0, 1);
        CHILD_CHECK(fipc_event_clear(&p->ev[0]) == 0, 2);
        CHILD_CHECK(p->turns == 2 * n + 1, 3);
        p->turns++;
        CHILD_CHECK(fipc_event_set(&p->ev[1]) == 0, 4);
    }
    return CHILD_OK;
}

Test(wait_mode, event_pingpong_releases_every_wait_in_every_mode)
{
    for (size_t m = 0; m < NMODES; m++) {
        struct spair *p = test_shared(sizeof *p);
        for (int e = 0; e < 2; e++) {
            cr_assert_eq(fipc_event_init(&p->ev[e]), 0);
            cr_assert_eq(fipc_event_set_wait_mode(&p->ev[e], modes[m]), 0);
        }
        p->rounds = rounds(modes[m]) / 4;
        pid_t pid = test_fork(event_ponger, 0, p);
        for (uint32_t n = 0; n < p->rounds; n++) {
            p->turns++;
            cr_assert_eq(fipc_event_set(&p->ev[0]), 0);
            cr_assert_eq(fipc_event_wait(&p->ev[1], FIPC_FOREVER), 0);
            cr_assert_eq(fipc_event_clear(&p->ev[1]), 0);
            cr_assert_eq(p->turns, 2 * n + 2);
        }
        test_expect_ok(pid);
    }
}

/* ---- timeouts and close in every mode ---- */

/* At least the timeout passes before -ETIMEDOUT (no upper bound: the
 * machine may be loaded). */
#define TIMEOUT_NS FIPC_MSEC(20)

Test(wait_mode, timed_waits_time_out_in_every_mode)
{
    for (size_t m = 0; m < NMODES; m++) {
        fipc_queue *q;
        cr_assert_eq(fipc_queue_create(&q, arena(), 1, sizeof(int), 0), 0);
        cr_assert_eq(fipc_queue_set_wait_mode(q, modes[m]), 0);
        int v = 1;
        size_t len;
        int64_t t0 = test_now_ns();
        cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, TIMEOUT_NS), -ETIMEDOUT);
        cr_assert_geq(test_now_ns() - t0, TIMEOUT_NS);
        cr_assert_eq(fipc_queue_put(q, &v, sizeof v, 0), 0);
        t0 = test_now_ns();
        cr_assert_eq(fipc_queue_put(q, &v, sizeof v, TIMEOUT_NS), -ETIMEDOUT);
        cr_assert_geq(test_now_ns() - t0, TIMEOUT_NS);
        cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, 0), 0);
        cr_assert_eq(v, 1);

        fipc_sem *s = fipc_sem_new(arena(), 0);
        cr_assert_not_null(s);
        cr_assert_eq(fipc_sem_set_wait_mode(s, modes[m]), 0);
        t0 = test_now_ns();
        cr_assert_eq(fipc_sem_acquire(s, TIMEOUT_NS), -ETIMEDOUT);
        cr_assert_geq(test_now_ns() - t0, TIMEOUT_NS);

        fipc_event *e = fipc_event_new(arena());
        cr_assert_not_null(e);
        cr_assert_eq(fipc_event_set_wait_mode(e, modes[m]), 0);
        t0 = test_now_ns();
        cr_assert_eq(fipc_event_wait(e, TIMEOUT_NS), -ETIMEDOUT);
        cr_assert_geq(test_now_ns() - t0, TIMEOUT_NS);
    }
}

struct closing {
    fipc_queue *q;
    uint32_t waiting;
};

static int get_until_epipe(int i, void *arg)
{
    (void)i;
    struct closing *c = arg;
    test_child_setup();
    test_flag_set(&c->waiting, 1);
    int v;
    size_t len;
    CHILD_CHECK(fipc_queue_get(c->q, &v, sizeof v, &len, FIPC_FOREVER) == -EPIPE, 1);
    return CHILD_OK;
}

Test(wait_mode, close_ends_a_waiting_get_in_every_mode)
{
    for (size_t m = 0; m < NMODES; m++) {
        struct closing *c = test_shared(sizeof *c);
        cr_assert_eq(fipc_queue_create(&c->q, arena(), 4, sizeof(int), 0), 0);
        cr_assert_eq(fipc_queue_set_wait_mode(c->q, modes[m]), 0);
        pid_t pid = test_fork(get_until_epipe, 0, c);
        cr_assert(test_wait_until_at_least(&c->waiting, 1, HANDSHAKE_NS));
        cr_assert_eq(fipc_queue_close(c->q), 0);
        test_expect_ok(pid);
    }
}

/* ---- what tells the modes apart ---- */

struct waiter {
    fipc_queue *q;
    fipc_sem *s;
    uint32_t waiting;
};

static int wait_on_queue(int i, void *arg)
{
    (void)i;
    struct waiter *w = arg;
    test_child_setup();
    test_flag_set(&w->waiting, 1);
    int v;
    size_t len;
    CHILD_CHECK(fipc_queue_get(w->q, &v, sizeof v, &len, FIPC_FOREVER) == 0 && v == 7, 1);
    return CHILD_OK;
}

static int wait_on_sem(int i, void *arg)
{
    (void)i;
    struct waiter *w = arg;
    test_child_setup();
    test_flag_set(&w->waiting, 1);
    CHILD_CHECK(fipc_sem_acquire(w->s, FIPC_FOREVER) == 0, 1);
    return CHILD_OK;
}

/* The child's /proc state, sampled while it waits: how often it slept. */
static unsigned sleeps_seen(pid_t pid, unsigned samples)
{
    unsigned asleep = 0;
    for (unsigned k = 0; k < samples; k++) {
        asleep += test_pid_sleeping(pid);
        /* Not a wait for a condition: the samples are spread over 50 ms
         * of the child's wait, the span in which it must never sleep. */
        usleep(1000);
    }
    return asleep;
}

Test(wait_mode, a_spinning_waiter_never_sleeps_and_a_sleeping_one_does)
{
    int (*fns[])(int, void *) = {wait_on_queue, wait_on_sem};
    for (int f = 0; f < 2; f++) {
        for (int spin = 0; spin < 2; spin++) {
            enum fipc_wait_mode mode = spin ? FIPC_WAIT_SPIN : FIPC_WAIT_SLEEP;
            struct waiter *w = test_shared(sizeof *w);
            cr_assert_eq(fipc_queue_create(&w->q, arena(), 4, sizeof(int), 0), 0);
            w->s = fipc_sem_new(arena(), 0);
            cr_assert_not_null(w->s);
            cr_assert_eq(fipc_queue_set_wait_mode(w->q, mode), 0);
            cr_assert_eq(fipc_sem_set_wait_mode(w->s, mode), 0);
            pid_t pid = test_fork(fns[f], 0, w);
            cr_assert(test_wait_until_at_least(&w->waiting, 1, HANDSHAKE_NS));
            if (spin) {
                /* Polling: runnable all along, never asleep in a futex. */
                cr_assert_eq(sleeps_seen(pid, 50), 0, "a spinning waiter slept");
            } else {
                cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS), "the waiter never slept");
            }
            int v = 7;
            cr_assert_eq(fipc_queue_put(w->q, &v, sizeof v, 0), 0);
            cr_assert_eq(fipc_sem_release(w->s), 0);
            test_expect_ok(pid);
        }
    }
}

static int put_claim_and_die(int i, void *arg)
{
    (void)i;
    struct fipc__put_claim c;
    int v = 0;
    struct iovec it = {&v, sizeof v};
    CHILD_CHECK(fipc__queue_put_claim(arg, &it, 1, &c) == 1, 1);
    raise(SIGKILL);
    return CHILD_FAIL(2);
}

Test(wait_mode, a_spinning_consumer_passes_a_dead_producers_claim)
{
    struct waiter *w = test_shared(sizeof *w);
    cr_assert_eq(fipc_queue_create(&w->q, arena(), 4, sizeof(int), 0), 0);
    cr_assert_eq(fipc_queue_set_wait_mode(w->q, FIPC_WAIT_SPIN), 0);
    pid_t dead = test_fork(put_claim_and_die, 0, w->q);
    int status;
    cr_assert_eq(waitpid(dead, &status, 0), dead);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    int v = 7;
    cr_assert_eq(fipc_queue_put(w->q, &v, sizeof v, 0), 0);
    /* The spinning get stops at the dead claim, repairs it in a patient
     * try, and receives 7. */
    pid_t pid = test_fork(wait_on_queue, 0, w);
    test_expect_ok(pid);
}

/* ---- bad input ---- */

Test(wait_mode, bad_arguments_are_einval)
{
    fipc_queue *q;
    cr_assert_eq(fipc_queue_create(&q, arena(), 4, sizeof(int), 0), 0);
    fipc_jqueue *j;
    cr_assert_eq(fipc_jqueue_create(&j, arena(), 4, sizeof(int), 0), 0);
    fipc_sem *s = fipc_sem_new(arena(), 0);
    fipc_event *e = fipc_event_new(arena());
    cr_assert(s && e);
    cr_assert_eq(fipc_queue_set_wait_mode(NULL, FIPC_WAIT_SPIN), -EINVAL);
    cr_assert_eq(fipc_jqueue_set_wait_mode(NULL, FIPC_WAIT_SPIN), -EINVAL);
    cr_assert_eq(fipc_sem_set_wait_mode(NULL, FIPC_WAIT_SPIN), -EINVAL);
    cr_assert_eq(fipc_event_set_wait_mode(NULL, FIPC_WAIT_SPIN), -EINVAL);
    const int bad[] = {-1, 3, 1000};
    for (int b = 0; b < 3; b++) {
        enum fipc_wait_mode m = (enum fipc_wait_mode)bad[b];
        cr_assert_eq(fipc_queue_set_wait_mode(q, m), -EINVAL);
        cr_assert_eq(fipc_jqueue_set_wait_mode(j, m), -EINVAL);
        cr_assert_eq(fipc_sem_set_wait_mode(s, m), -EINVAL);
        cr_assert_eq(fipc_event_set_wait_mode(e, m), -EINVAL);
    }
    /* Nothing changed: the objects work as before. */
    cr_assert_eq(fipc_sem_release(s), 0);
    cr_assert_eq(fipc_sem_acquire(s, FIPC_MSEC(100)), 0);
    cr_assert_eq(fipc_event_set(e), 0);
    cr_assert_eq(fipc_event_wait(e, FIPC_MSEC(100)), 0);
    int v = 3;
    size_t len;
    cr_assert_eq(fipc_queue_put(q, &v, sizeof v, 0), 0);
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, FIPC_MSEC(100)), 0);
}

/* A peer's garbage in the mode bits is a mode too: the waiter still
 * waits, and the counts around it stay right. */
Test(wait_mode, a_sem_whose_mode_bits_a_peer_wrote_still_works)
{
    fipc_sem *s = fipc_sem_new(arena(), 0);
    cr_assert_not_null(s);
    uint32_t *waiters = (uint32_t *)s + 1; /* lib/sem.c: value, waiters, ... */
    *waiters = 3u << 30;
    cr_assert_eq(fipc_sem_acquire(s, FIPC_MSEC(5)), -ETIMEDOUT);
    cr_assert_eq(fipc_sem_release(s), 0);
    cr_assert_eq(fipc_sem_acquire(s, FIPC_MSEC(100)), 0);
}

/* An io_uring or wait_any arm spins before it registers, for an item about
 * to come from the other CPU; a loop that arms before it asks its partner
 * for anything spins in vain each time, and after FIPC_SPIN_MISSES such
 * arms in a row the thread's spin is off for a while. */
Test(wait_mode, arms_that_spin_in_vain_turn_the_spin_off)
{
    fipc_queue *q;
    cr_assert_eq(fipc_queue_create(&q, arena(), 4, 8, 0), 0);
    struct fipc__spin_state *t = fipc__spin_self();
    t->ready = false; /* start from the budget a thread starts with */
    for (int n = 0; n < FIPC_SPIN_MISSES; n++) {
        cr_assert_eq(t->off, 0, "arm %d", n);
        struct fipc__arm w = {.fd = -1};
        cr_assert_eq(fipc__queue_arm(q, FIPC_READABLE, &w), 0);
        cr_assert_eq(w.word, &q->not_empty.epoch);
    }
    cr_assert_gt(t->off, 0);
    cr_assert_eq(t->budget_ns, 0);
}
