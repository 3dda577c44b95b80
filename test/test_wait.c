/*
 * test_wait.c - fipc_wait_any: three queues, an event and a child process
 * with the right index each time; the lowest ready index; every kind of
 * object woken by another process; timeouts (0 is -EAGAIN, > 0 is
 * -ETIMEDOUT); FIPC_WAIT_MAX objects and one past it; bad inputs; a set
 * whose object would have been made ready by a process that is SIGKILLed
 * (the wait ends on its timeout, or on the process's exit); and the same
 * waits where io_uring lacks futex operations (the test hook).  Pipe ends
 * (fipc_waitable_conn): woken by another process's send, by the close of
 * the other end's last holder and by its SIGKILL, alone (poll), beside
 * futex words (io_uring) and without io_uring futex operations; ready at
 * once with a message or at EOF; the right index among several pipes;
 * timeouts; the send-only end; a stream of messages taken only through
 * wait_any, exact.
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 */
#include "common.h"
#include "conn_impl.h"
#include "queue_impl.h"
#include "test_hooks.h"
#include "waitable.h"

TestSuite(wait, .timeout = 120);

/* ---- Helpers ---- */

static fipc_queue *new_queue(size_t capacity, size_t max_item)
{
    fipc_queue *q = NULL;
    int r = fipc_queue_create(&q, NULL, capacity, max_item, 0);
    cr_assert_eq(r, 0, "fipc_queue_create: %s", fipc_strerror(r));
    return q;
}

static fipc_jqueue *new_jqueue(size_t capacity, size_t max_item)
{
    fipc_jqueue *q = NULL;
    int r = fipc_jqueue_create(&q, NULL, capacity, max_item, 0);
    cr_assert_eq(r, 0, "fipc_jqueue_create: %s", fipc_strerror(r));
    return q;
}

/* What a child does to the objects of struct scene, once told. */
enum action {
    ACT_NONE,
    ACT_PUT_Q2,
    ACT_SET_EVENT,
    ACT_EXIT,
    ACT_RELEASE_SEM,
    ACT_TASK_DONE,
    ACT_GET_FULL,
};

struct scene {
    fipc_queue *q[3];
    fipc_event *e;
    fipc_sem *s;
    fipc_jqueue *j;
    fipc_queue *full;
    uint32_t go;      /* the parent tells the child to act */
    uint32_t act;     /* what to do */
    uint32_t started; /* the child runs */
};

static int actor(void *arg)
{
    struct scene *sc = arg;
    test_flag_add(&sc->started);
    CHILD_CHECK(test_wait_until_at_least(&sc->go, 1, HANDSHAKE_NS), 1);
    uint32_t x = 7, buf[2];
    size_t len;
    switch (test_flag_get(&sc->act)) {
    case ACT_PUT_Q2:
        CHILD_CHECK(fipc_queue_put(sc->q[2], &x, sizeof x, 0) == 0, 2);
        break;
    case ACT_SET_EVENT:
        CHILD_CHECK(fipc_event_set(sc->e) == 0, 3);
        break;
    case ACT_RELEASE_SEM:
        CHILD_CHECK(fipc_sem_release(sc->s) == 0, 4);
        break;
    case ACT_TASK_DONE:
        CHILD_CHECK(fipc_jqueue_get(sc->j, buf, sizeof buf, &len, 0) == 0, 5);
        CHILD_CHECK(fipc_jqueue_task_done(sc->j) == 0, 6);
        break;
    case ACT_GET_FULL:
        CHILD_CHECK(fipc_queue_get(sc->full, buf, sizeof buf, &len, 0) == 0, 7);
        break;
    case ACT_EXIT:
        break;
    }
    /* Stays until told again, unless its exit is the act. */
    if (test_flag_get(&sc->act) != ACT_EXIT)
        CHILD_CHECK(test_wait_until_at_least(&sc->go, 2, HANDSHAKE_NS), 8);
    return CHILD_OK;
}

static struct scene *new_scene(void)
{
    struct scene *sc = test_shared(sizeof *sc);
    for (int i = 0; i < 3; i++)
        sc->q[i] = new_queue(4, 8);
    sc->e = fipc_event_new(NULL);
    sc->s = fipc_sem_new(NULL, 0);
    sc->j = new_jqueue(4, 8);
    sc->full = new_queue(1, 8);
    cr_assert(sc->e && sc->s);
    uint32_t x = 1;
    cr_assert_eq(fipc_jqueue_put(sc->j, &x, sizeof x, 0), 0);
    cr_assert_eq(fipc_queue_put(sc->full, &x, sizeof x, 0), 0);
    return sc;
}

static fipc_process *start_actor(struct scene *sc, enum action act)
{
    test_flag_set(&sc->act, act);
    fipc_process *p = NULL;
    int r = fipc_process_start(&p, actor, sc, NULL);
    cr_assert_eq(r, 0, "fipc_process_start: %s", fipc_strerror(r));
    cr_assert(test_wait_until_at_least(&sc->started, 1, HANDSHAKE_NS));
    return p;
}

/* The set of the issue: three queues, an event, the child. */
static size_t classic_set(struct scene *sc, fipc_process *p, fipc_waitable *w)
{
    w[0] = fipc_waitable_queue(sc->q[0], FIPC_READABLE);
    w[1] = fipc_waitable_queue(sc->q[1], FIPC_READABLE);
    w[2] = fipc_waitable_queue(sc->q[2], FIPC_READABLE);
    w[3] = fipc_waitable_event(sc->e);
    w[4] = fipc_waitable_process(p);
    return 5;
}

/* Start a child that does act, wait on the classic set (plus the sem, the
 * join and the full queue), and return what wait_any answered; the child
 * is told to leave and joined. */
static int wait_for_act(enum action act, bool with_process)
{
    struct scene *sc = new_scene();
    fipc_process *p = start_actor(sc, act);
    fipc_waitable w[8];
    size_t n = classic_set(sc, p, w);
    w[n++] = fipc_waitable_sem(sc->s);
    w[n++] = fipc_waitable_jqueue(sc->j, FIPC_JOINED);
    w[n++] = fipc_waitable_queue(sc->full, FIPC_WRITABLE);
    if (!with_process) w[4] = fipc_waitable_queue(sc->q[0], FIPC_READABLE);
    cr_assert_eq(fipc_wait_any(w, n, 0), -EAGAIN, "nothing is ready yet");
    test_flag_set(&sc->go, 1);
    int r = fipc_wait_any(w, n, HANDSHAKE_NS);
    test_flag_set(&sc->go, 2);
    test_process_expect_ok(p);
    return r;
}

/* ---- The right index ---- */

Test(wait, a_put_by_a_child_is_index_2)
{
    cr_assert_eq(wait_for_act(ACT_PUT_Q2, true), 2);
}

Test(wait, an_event_set_by_a_child_is_index_3)
{
    cr_assert_eq(wait_for_act(ACT_SET_EVENT, true), 3);
}

Test(wait, the_child_exiting_is_index_4)
{
    cr_assert_eq(wait_for_act(ACT_EXIT, true), 4);
}

Test(wait, a_sem_released_by_a_child_is_index_5)
{
    cr_assert_eq(wait_for_act(ACT_RELEASE_SEM, true), 5);
    cr_assert_eq(wait_for_act(ACT_RELEASE_SEM, false), 5, "without a process: futex_waitv");
}

Test(wait, a_join_completed_by_a_child_is_index_6)
{
    cr_assert_eq(wait_for_act(ACT_TASK_DONE, true), 6);
    cr_assert_eq(wait_for_act(ACT_TASK_DONE, false), 6);
}

Test(wait, room_made_by_a_child_is_index_7)
{
    cr_assert_eq(wait_for_act(ACT_GET_FULL, true), 7);
    cr_assert_eq(wait_for_act(ACT_GET_FULL, false), 7);
}

Test(wait, without_io_uring_futex_operations_every_index_still_comes)
{
    fipc__uring_pretend_unsupported(true);
    cr_assert_eq(wait_for_act(ACT_PUT_Q2, true), 2);
    cr_assert_eq(wait_for_act(ACT_SET_EVENT, true), 3);
    cr_assert_eq(wait_for_act(ACT_EXIT, true), 4);
    cr_assert_eq(wait_for_act(ACT_TASK_DONE, true), 6);
    fipc__uring_pretend_unsupported(false);
}

Test(wait, the_lowest_ready_index_wins)
{
    struct scene *sc = new_scene();
    fipc_process *p = start_actor(sc, ACT_EXIT);
    test_flag_set(&sc->go, 1);
    cr_assert_eq(fipc_process_join(p, HANDSHAKE_NS), 0);
    fipc_waitable w[5];
    size_t n = classic_set(sc, p, w);
    cr_assert_eq(fipc_wait_any(w, n, 0), 4, "only the process");
    cr_assert_eq(fipc_event_set(sc->e), 0);
    cr_assert_eq(fipc_wait_any(w, n, 0), 3);
    uint32_t x = 1;
    cr_assert_eq(fipc_queue_put(sc->q[1], &x, sizeof x, 0), 0);
    cr_assert_eq(fipc_wait_any(w, n, FIPC_FOREVER), 1);
    cr_assert_eq(fipc_queue_close(sc->q[0]), 0);
    cr_assert_eq(fipc_wait_any(w, n, 0), 0, "a closed queue is readable");
    fipc_process_free(p);
}

/* A ready set costs the other side nothing: the first look registers
 * nothing, so a producer's next put makes no system call. */
Test(wait, a_poll_registers_nothing)
{
    fipc_queue *q = new_queue(4, 8);
    fipc_waitable w = fipc_waitable_queue(q, FIPC_READABLE);
    cr_assert_eq(fipc_wait_any(&w, 1, 0), -EAGAIN);
    cr_assert_eq(q->not_empty.sleepers, 0);
    cr_assert_eq(fipc_wait_any(&w, 1, FIPC_MSEC(1)), -ETIMEDOUT);
    cr_assert_eq(q->not_empty.sleepers, 1, "a wait that slept registered");
    uint32_t x = 1;
    cr_assert_eq(fipc_queue_put(q, &x, sizeof x, 0), 0);
    cr_assert_eq(q->not_empty.sleepers, 0, "and the put took it back");
    cr_assert_eq(fipc_wait_any(&w, 1, FIPC_FOREVER), 0);
}

/* ---- Timeouts ---- */

Test(wait, timeout_0_is_eagain_and_a_positive_timeout_is_etimedout_after_it)
{
    struct scene *sc = new_scene();
    fipc_process *p = start_actor(sc, ACT_NONE);
    fipc_waitable w[5];
    size_t n = classic_set(sc, p, w);
    cr_assert_eq(fipc_wait_any(w, n, 0), -EAGAIN);
    int64_t t0 = test_now_ns();
    cr_assert_eq(fipc_wait_any(w, n, FIPC_MSEC(80)), -ETIMEDOUT);
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_geq(elapsed, FIPC_MSEC(80), "returned after %lld ns", (long long)elapsed);
    /* Futex words only. */
    t0 = test_now_ns();
    cr_assert_eq(fipc_wait_any(w, 4, FIPC_MSEC(80)), -ETIMEDOUT);
    cr_assert_geq(test_now_ns() - t0, FIPC_MSEC(80));
    /* The process only. */
    t0 = test_now_ns();
    cr_assert_eq(fipc_wait_any(&w[4], 1, FIPC_MSEC(80)), -ETIMEDOUT);
    cr_assert_geq(test_now_ns() - t0, FIPC_MSEC(80));
    test_flag_set(&sc->go, 2);
    test_process_expect_ok(p);
}

/* ---- The maximum number of objects ---- */

struct many {
    fipc_event *e[FIPC_WAIT_MAX + 1];
    uint32_t go;
};

static int set_last(int i, void *arg)
{
    struct many *m = arg;
    test_child_setup();
    CHILD_CHECK(test_wait_until_at_least(&m->go, 1, HANDSHAKE_NS), 1);
    CHILD_CHECK(fipc_event_set(m->e[FIPC_WAIT_MAX - 1]) == 0, 2);
    return CHILD_OK;
}

Test(wait, fipc_wait_max_objects_and_one_past_it)
{
    cr_assert_geq(FIPC_WAIT_MAX, 64, "the contract's minimum");
    struct many *m = test_shared(sizeof *m);
    fipc_waitable w[FIPC_WAIT_MAX + 1];
    for (int i = 0; i < FIPC_WAIT_MAX + 1; i++) {
        m->e[i] = fipc_event_new(NULL);
        cr_assert_not_null(m->e[i]);
        w[i] = fipc_waitable_event(m->e[i]);
    }
    cr_assert_eq(fipc_wait_any(w, FIPC_WAIT_MAX + 1, 0), -EINVAL, "one past the maximum");
    cr_assert_eq(fipc_wait_any(w, FIPC_WAIT_MAX + 1, FIPC_FOREVER), -EINVAL);
    cr_assert_eq(fipc_wait_any(w, FIPC_WAIT_MAX, 0), -EAGAIN);
    pid_t pid = test_fork(set_last, 0, m);
    test_flag_set(&m->go, 1);
    cr_assert_eq(fipc_wait_any(w, FIPC_WAIT_MAX, HANDSHAKE_NS), FIPC_WAIT_MAX - 1);
    test_expect_ok(pid);

    /* The same with a process in the set (io_uring: a FUTEX_WAITV of 127
     * words beside the pidfd). */
    cr_assert_eq(fipc_event_clear(m->e[FIPC_WAIT_MAX - 1]), 0);
    struct scene *sc = new_scene();
    fipc_process *p = start_actor(sc, ACT_EXIT);
    w[0] = fipc_waitable_process(p);
    cr_assert_eq(fipc_wait_any(w, FIPC_WAIT_MAX, 0), -EAGAIN);
    test_flag_set(&sc->go, 1);
    cr_assert_eq(fipc_wait_any(w, FIPC_WAIT_MAX, HANDSHAKE_NS), 0);
    test_process_expect_ok(p);
}

/* ---- Bad inputs ---- */

Test(wait, bad_inputs_are_einval)
{
    fipc_queue *q = new_queue(4, 8);
    fipc_jqueue *j = new_jqueue(4, 8);
    fipc_waitable good = fipc_waitable_queue(q, FIPC_READABLE);
    cr_assert_eq(fipc_wait_any(NULL, 1, 0), -EINVAL);
    cr_assert_eq(fipc_wait_any(&good, 0, 0), -EINVAL);
    fipc_waitable w[2] = {good, {0}};
    cr_assert_eq(fipc_wait_any(w, 2, FIPC_FOREVER), -EINVAL, "a zeroed waitable");
    w[1] = fipc_waitable_queue(NULL, FIPC_READABLE);
    cr_assert_eq(fipc_wait_any(w, 2, FIPC_FOREVER), -EINVAL, "a NULL queue");
    w[1] = fipc_waitable_event(NULL);
    cr_assert_eq(fipc_wait_any(w, 2, FIPC_FOREVER), -EINVAL);
    w[1] = fipc_waitable_sem(NULL);
    cr_assert_eq(fipc_wait_any(w, 2, FIPC_FOREVER), -EINVAL);
    w[1] = fipc_waitable_process(NULL);
    cr_assert_eq(fipc_wait_any(w, 2, FIPC_FOREVER), -EINVAL);
    w[1] = fipc_waitable_jqueue(NULL, FIPC_JOINED);
    cr_assert_eq(fipc_wait_any(w, 2, FIPC_FOREVER), -EINVAL);
    w[1] = fipc_waitable_queue(q, FIPC_JOINED);
    cr_assert_eq(fipc_wait_any(w, 2, FIPC_FOREVER), -EINVAL, "a queue has no join");
    w[1] = fipc_waitable_queue(q, FIPC_READABLE | FIPC_WRITABLE);
    cr_assert_eq(fipc_wait_any(w, 2, FIPC_FOREVER), -EINVAL, "one direction per waitable");
    w[1] = fipc_waitable_jqueue(j, 0);
    cr_assert_eq(fipc_wait_any(w, 2, FIPC_FOREVER), -EINVAL);
    cr_assert_eq(q->not_empty.sleepers, 0, "a refused call registers nothing");
    /* A pointer to something that is not a queue. */
    fipc_event *e = fipc_event_new(NULL);
    w[1] = fipc_waitable_queue((fipc_queue *)e, FIPC_READABLE);
    cr_assert_eq(fipc_wait_any(w, 2, FIPC_FOREVER), -EINVAL, "not a queue");
}

/* ---- Death: the process that would make an object ready is killed ---- */

struct doomed {
    fipc_event *e;
    uint32_t started;
};

/* Would set the event after a long while, but is killed first. */
static int late_setter(void *arg)
{
    struct doomed *d = arg;
    test_flag_add(&d->started);
    for (;;)
        pause();
    fipc_event_set(d->e);
    return 0;
}

Test(wait, the_setter_sigkilled_ends_the_wait_on_its_exit_or_on_the_timeout)
{
    struct doomed *d = test_shared(sizeof *d);
    d->e = fipc_event_new(NULL);
    fipc_process *p = NULL;
    cr_assert_eq(fipc_process_start(&p, late_setter, d, NULL), 0);
    cr_assert(test_wait_until_at_least(&d->started, 1, HANDSHAKE_NS));
    fipc_waitable w[2] = {fipc_waitable_event(d->e), fipc_waitable_process(p)};
    cr_assert_eq(fipc_wait_any(w, 2, 0), -EAGAIN);
    cr_assert_eq(fipc_process_kill(p), 0);
    /* With the process in the set: its exit ends the wait. */
    cr_assert_eq(fipc_wait_any(w, 2, HANDSHAKE_NS), 1);
    int code = 0;
    cr_assert_eq(fipc_process_exitcode(p, &code), 0);
    cr_assert_eq(code, -SIGKILL);
    /* Without it: the timeout does, never a hang. */
    int64_t t0 = test_now_ns();
    cr_assert_eq(fipc_wait_any(w, 1, FIPC_MSEC(100)), -ETIMEDOUT);
    cr_assert_geq(test_now_ns() - t0, FIPC_MSEC(100));
    fipc_process_free(p);
}

/* A process killed between a change and its wake (here: the word changed
 * by hand, no wake made) delays the waiter by FUTEX_RECHECK_NS at most. */
Test(wait, a_change_whose_wake_never_comes_is_seen_on_the_recheck)
{
    fipc_sem *s = fipc_sem_new(NULL, 0);
    fipc_waitable w = fipc_waitable_sem(s);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        test_child_setup();
        /* Once the waiter sleeps, so that only its recheck can see this. */
        if (!test_wait_sleeping(getppid(), HANDSHAKE_NS)) _exit(1);
        /* What a release killed before its wake leaves: the value up, no
         * wake. */
        __atomic_store_n((uint32_t *)s, 1, __ATOMIC_SEQ_CST);
        _exit(0);
    }
    int64_t t0 = test_now_ns();
    cr_assert_eq(fipc_wait_any(&w, 1, HANDSHAKE_NS), 0);
    cr_assert_lt(test_now_ns() - t0, FIPC_SEC(10), "seen on a recheck, not at the timeout");
    test_expect_ok(pid);
}

/* ---- A producer that died holding a claim ---- */

static int claim_put_and_die(int i, void *arg)
{
    fipc_queue *q = arg;
    struct fipc__put_claim c;
    int v = 0;
    struct iovec it = {&v, sizeof v};
    CHILD_CHECK(fipc__queue_put_claim(q, &it, 1, &c) == 1, 1);
    raise(SIGKILL);
    return CHILD_FAIL(2);
}

/* The item behind a dead producer's claim: wait_any's sleeps are short
 * while the claim is in the way, and each look repairs it in time. */
Test(wait, the_item_behind_the_claim_of_a_producer_killed_mid_put_is_seen)
{
    fipc_queue *q = new_queue(4, 8);
    pid_t pid = test_fork(claim_put_and_die, 0, q);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    uint64_t x = 78, y = 0;
    size_t len;
    cr_assert_eq(fipc_queue_put(q, &x, sizeof x, 0), 0);
    fipc_waitable w = fipc_waitable_queue(q, FIPC_READABLE);
    int64_t t0 = test_now_ns();
    while (fipc_queue_get(q, &y, sizeof y, &len, 0) != 0) {
        cr_assert_eq(fipc_wait_any(&w, 1, HANDSHAKE_NS), 0);
        cr_assert_lt(test_now_ns() - t0, HANDSHAKE_NS);
    }
    cr_assert_eq(y, 78);
}

/* ---- Exact results under producers in other processes ---- */

#define STREAMS 3

struct streams {
    fipc_queue *q[STREAMS];
    uint64_t per;
    uint32_t stop; /* the bystander process may leave */
};

static int stream_producer(int i, void *arg)
{
    struct streams *st = arg;
    test_child_setup();
    unsigned seed = 99u + (unsigned)i;
    for (uint64_t k = 0; k < st->per; k++) {
        uint64_t x = ((uint64_t)i << 40) | k;
        CHILD_CHECK(fipc_queue_put(st->q[i], &x, sizeof x, FIPC_FOREVER) == 0, 1);
        unsigned r = rand_r(&seed);
        if (r % 256 == 0) sched_yield();
    }
    return CHILD_OK;
}

static int bystander(void *arg)
{
    struct streams *st = arg;
    return test_wait_until_at_least(&st->stop, 1, FIPC_SEC(120)) ? 0 : 1;
}

/* Three producers, one queue each; the waiter takes from whichever queue
 * wait_any names until every item came: exact count, order and checksum
 * per queue.  with_process: a live process in the set too (the io_uring
 * sleep beside its pidfd); force_fallback: as without io_uring futex
 * operations. */
static void streams_exact(uint64_t per, bool with_process, bool force_fallback)
{
    struct streams *st = test_shared(sizeof *st);
    st->per = per;
    for (int i = 0; i < STREAMS; i++)
        st->q[i] = new_queue(16, 8);
    fipc_process *p = NULL;
    fipc_waitable w[STREAMS + 1];
    for (int i = 0; i < STREAMS; i++)
        w[i] = fipc_waitable_queue(st->q[i], FIPC_READABLE);
    size_t n = STREAMS;
    if (with_process) {
        cr_assert_eq(fipc_process_start(&p, bystander, st, NULL), 0);
        w[n++] = fipc_waitable_process(p);
    }
    fipc__uring_pretend_unsupported(force_fallback);
    pid_t pids[STREAMS];
    for (int i = 0; i < STREAMS; i++)
        pids[i] = test_fork(stream_producer, i, st);
    uint64_t next[STREAMS] = {0}, sum = 0, want_sum = 0, got = 0, wakes = 0;
    for (int i = 0; i < STREAMS; i++)
        for (uint64_t k = 0; k < per; k++)
            want_sum += ((uint64_t)i << 40) | k;
    while (got < STREAMS * per) {
        int i = fipc_wait_any(w, n, HANDSHAKE_NS);
        cr_assert(i >= 0 && i < STREAMS, "wait_any: %d with %llu of %llu taken", i,
                  (unsigned long long)got, (unsigned long long)(STREAMS * per));
        wakes++;
        uint64_t x;
        size_t len;
        while (fipc_queue_get(st->q[i], &x, sizeof x, &len, 0) == 0) {
            cr_assert_eq(x >> 40, (uint64_t)i, "an item of queue %d in queue %d", (int)(x >> 40),
                         i);
            cr_assert_eq(x & ((1ull << 40) - 1), next[i], "queue %d out of order", i);
            next[i]++;
            got++;
            sum += x;
        }
    }
    for (int i = 0; i < STREAMS; i++)
        test_expect_ok(pids[i]);
    cr_assert_eq(sum, want_sum, "checksum");
    cr_assert_eq(fipc_wait_any(w, STREAMS, 0), -EAGAIN, "nothing left");
    fipc__uring_pretend_unsupported(false);
    if (p) {
        test_flag_set(&st->stop, 1);
        test_process_expect_ok(p);
    }
    cr_log_info("%llu items, %llu returns of wait_any", (unsigned long long)got,
                (unsigned long long)wakes);
}

Test(wait, three_producers_exact_results_through_futex_waitv)
{
    streams_exact(test_scaled(100000), false, false);
}

Test(wait, three_producers_exact_results_with_a_process_in_the_set)
{
    streams_exact(test_scaled(20000), true, false);
}

Test(wait, three_producers_exact_results_with_a_process_in_the_set_without_io_uring)
{
    streams_exact(test_scaled(20000), true, true);
}

/* ---- Pipe ends ---- */

/* How the set around the conn sleeps: the conn alone (poll on its
 * descriptor), beside a queue and an event (io_uring: FUTEX_WAITV beside a
 * POLL_ADD), or the same as without io_uring futex operations (futex_waitv,
 * the conn looked at every 10 ms). */
enum conn_mode { CM_ALONE, CM_MIXED, CM_FALLBACK };

/* What the process holding the other end does once the waiter sleeps. */
enum conn_act { CA_SEND, CA_CLOSE, CA_KILL };

struct conn_scene {
    fipc_queue *q;
    fipc_event *e;
    uint32_t go; /* the parent has looked: the child may leave */
};

/* The set for mode, the conn at the index returned. */
static int conn_set(struct conn_scene *sc, fipc_conn *c, enum conn_mode mode, fipc_waitable *w,
                    size_t *n)
{
    if (mode == CM_ALONE) {
        w[0] = fipc_waitable_conn(c);
        *n = 1;
        return 0;
    }
    w[0] = fipc_waitable_queue(sc->q, FIPC_READABLE);
    w[1] = fipc_waitable_event(sc->e);
    w[2] = fipc_waitable_conn(c);
    *n = 3;
    return 2;
}

static struct conn_scene *new_conn_scene(void)
{
    struct conn_scene *sc = test_shared(sizeof *sc);
    sc->q = new_queue(4, 8);
    sc->e = fipc_event_new(NULL);
    cr_assert_not_null(sc->e);
    return sc;
}

/* A child holds the only copy of b and acts once the parent sleeps in
 * fipc_wait_any on a; the wait must end with the conn's index, and recv
 * then finds the message, or EOF. */
static void conn_woken_by(enum conn_act act, enum conn_mode mode)
{
    struct conn_scene *sc = new_conn_scene();
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    struct conn_dir *d = a->in; /* shared: mapped while the child holds b */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        test_child_setup();
        fipc_conn_close(a);
        /* Once the waiter sleeps registered, so that its wake is what is
         * tested (a wait that spun, or slept unregistered, fails here). */
        CHILD_CHECK(TEST_WAIT_UNTIL(__atomic_load_n(&d->fd_wait, __ATOMIC_ACQUIRE) == 1 &&
                                        test_pid_sleeping(getppid()),
                                    HANDSHAKE_NS),
                    1);
        if (act == CA_KILL) raise(SIGKILL);
        if (act == CA_SEND) CHILD_CHECK(fipc_conn_send(b, "hi", 2) == 0, 2);
        if (act == CA_SEND) CHILD_CHECK(test_wait_until_at_least(&sc->go, 1, HANDSHAKE_NS), 3);
        fipc_conn_close(b);
        _exit(0);
    }
    fipc_conn_close(b);
    fipc_waitable w[3];
    size_t n;
    int want = conn_set(sc, a, mode, w, &n);
    fipc__uring_pretend_unsupported(mode == CM_FALLBACK);
    cr_assert_eq(fipc_wait_any(w, n, 0), -EAGAIN, "nothing yet");
    cr_assert_eq(fipc_wait_any(w, n, HANDSHAKE_NS), want);
    fipc__uring_pretend_unsupported(false);
    /* How soon after the act is not asserted (the machine may be loaded);
     * that the wait slept registered is, above, and that the descriptor it
     * sleeps on wakes is, in the arm's own test below. */
    char buf[8];
    if (act == CA_SEND) {
        cr_assert_eq(a->in->fd_wait, 0, "the send took the wait's registration back");
        cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), 2);
        cr_assert_eq(memcmp(buf, "hi", 2), 0);
        cr_assert_eq(fipc_wait_any(w, n, 0), -EAGAIN, "taken: not ready any more");
        test_flag_set(&sc->go, 1);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    if (act == CA_KILL)
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    else
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    if (act != CA_SEND) cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EPIPE);
    /* The other end gone: ready for good. */
    cr_assert_eq(fipc_wait_any(w, n, 0), want);
    cr_assert_eq(fipc_wait_any(w, n, HANDSHAKE_NS), want);
    fipc_conn_close(a);
}

Test(wait, a_conn_is_woken_by_a_send_from_another_process)
{
    conn_woken_by(CA_SEND, CM_ALONE);
    conn_woken_by(CA_SEND, CM_MIXED);
    conn_woken_by(CA_SEND, CM_FALLBACK);
}

Test(wait, a_conn_is_woken_by_the_close_of_the_other_ends_last_holder)
{
    conn_woken_by(CA_CLOSE, CM_ALONE);
    conn_woken_by(CA_CLOSE, CM_MIXED);
    conn_woken_by(CA_CLOSE, CM_FALLBACK);
}

Test(wait, a_conn_is_woken_by_the_sigkill_of_the_other_ends_holder)
{
    conn_woken_by(CA_KILL, CM_ALONE);
    conn_woken_by(CA_KILL, CM_MIXED);
    conn_woken_by(CA_KILL, CM_FALLBACK);
}

/* The arm itself (waitable.h): the descriptor it names is not readable
 * while nothing changed, and becomes readable at the next send from
 * another process, and again once that process is SIGKILLed. */
Test(wait, the_conns_arm_names_a_descriptor_that_a_send_and_a_death_make_readable)
{
    struct conn_scene *sc = new_conn_scene();
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        test_child_setup();
        fipc_conn_close(a);
        CHILD_CHECK(test_wait_until_at_least(&sc->go, 1, HANDSHAKE_NS), 1);
        CHILD_CHECK(fipc_conn_send(b, "m", 1) == 0, 2);
        for (;;)
            pause();
    }
    fipc_conn_close(b);
    struct fipc__arm w = {.word = NULL, .fd = -1};
    cr_assert_eq(fipc__conn_arm(a, FIPC__ARM_PEEK, &w), 0);
    cr_assert_eq(a->in->fd_wait, 0, "a peek registers nothing");
    cr_assert_eq(fipc__conn_arm(a, 0, &w), 0);
    cr_assert_null(w.word, "no futex word");
    cr_assert_geq(w.fd, 0);
    cr_assert_eq(a->in->fd_wait, 1);
    struct pollfd p = {.fd = w.fd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 0), 0, "nothing happened yet");
    test_flag_set(&sc->go, 1);
    cr_assert_eq(poll(&p, 1, (int)(HANDSHAKE_NS / 1000000)), 1, "the send wakes the descriptor");
    cr_assert(p.revents & POLLIN);
    cr_assert_eq(fipc__conn_arm(a, 0, &w), 1, "and the arm finds the message");
    char buf[4];
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), 1);
    w = (struct fipc__arm){.word = NULL, .fd = -1};
    cr_assert_eq(fipc__conn_arm(a, 0, &w), 0, "taken: armed again");
    cr_assert_eq(poll(&p, 1, 0), 0, "the arm drained the eventfd");
    cr_assert_eq(kill(pid, SIGKILL), 0);
    cr_assert_eq(poll(&p, 1, (int)(HANDSHAKE_NS / 1000000)), 1, "the death wakes it");
    waitpid(pid, NULL, 0);
    cr_assert_eq(fipc__conn_arm(a, FIPC__ARM_PEEK, &w), 1, "EOF is ready");
    cr_assert_eq(fipc__conn_arm(a, 0, &w), 1);
    cr_assert_eq(fipc__conn_arm(NULL, 0, &w), -EINVAL);
    fipc_conn_close(a);
}

/* EOF only once every holder of the other end is gone: a child holding a
 * copy keeps the conn waiting until it leaves. */
Test(wait, a_conn_waits_while_any_holder_of_the_other_end_is_left)
{
    struct conn_scene *sc = new_conn_scene();
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, true), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        test_child_setup();
        fipc_conn_close(a);
        CHILD_CHECK(test_wait_until_at_least(&sc->go, 1, HANDSHAKE_NS), 1);
        _exit(0); /* its copy of b closes with it */
    }
    fipc_conn_close(b);
    fipc_waitable w = fipc_waitable_conn(a);
    cr_assert_eq(fipc_wait_any(&w, 1, FIPC_MSEC(30)), -ETIMEDOUT, "a holder is left");
    test_flag_set(&sc->go, 1);
    cr_assert_eq(fipc_wait_any(&w, 1, HANDSHAKE_NS), 0);
    test_expect_ok(pid);
    char buf[4];
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EPIPE);
    fipc_conn_close(a);
}

Test(wait, a_conn_with_a_message_or_at_eof_is_ready_at_once)
{
    struct conn_scene *sc = new_conn_scene();
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    fipc_waitable w[3];
    size_t n;
    int want = conn_set(sc, a, CM_MIXED, w, &n);
    cr_assert_eq(fipc_conn_send(b, "four", 4), 0);
    cr_assert_eq(fipc_wait_any(&w[want], 1, 0), 0);
    cr_assert_eq(fipc_wait_any(&w[want], 1, FIPC_FOREVER), 0);
    cr_assert_eq(fipc_wait_any(w, n, FIPC_FOREVER), want);
    cr_assert_eq(a->in->fd_wait, 0, "a ready conn registers nothing");
    char buf[8];
    cr_assert_eq(fipc_conn_recv(a, buf, 2, 0), -EMSGSIZE);
    cr_assert_eq(fipc_wait_any(w, n, 0), want, "a message too long for the buffer stays");
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), 4);
    cr_assert_eq(fipc_wait_any(w, n, 0), -EAGAIN);
    /* The lowest ready index wins. */
    cr_assert_eq(fipc_conn_send(b, "", 0), 0);
    cr_assert_eq(fipc_event_set(sc->e), 0);
    cr_assert_eq(fipc_wait_any(w, n, FIPC_FOREVER), 1);
    cr_assert_eq(fipc_event_clear(sc->e), 0);
    cr_assert_eq(fipc_wait_any(w, n, FIPC_FOREVER), want, "an empty message counts");
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), 0);
    /* EOF: the other end's only holder closed it. */
    cr_assert_eq(fipc_conn_close(b), 0);
    cr_assert_eq(fipc_wait_any(&w[want], 1, 0), 0);
    cr_assert_eq(fipc_wait_any(w, n, 0), want);
    cr_assert_eq(fipc_wait_any(w, n, FIPC_FOREVER), want);
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EPIPE, "and recv says so");
    cr_assert_eq(fipc_wait_any(w, n, FIPC_FOREVER), want, "for good");
    fipc_conn_close(a);
}

Test(wait, a_conn_times_out_and_its_registration_costs_one_send_one_write)
{
    struct conn_scene *sc = new_conn_scene();
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, true), 0);
    fipc_waitable w[3];
    size_t n;
    int want = conn_set(sc, a, CM_MIXED, w, &n);
    cr_assert_eq(fipc_wait_any(&w[want], 1, 0), -EAGAIN);
    cr_assert_eq(fipc_wait_any(w, n, 0), -EAGAIN);
    cr_assert_eq(a->in->fd_wait, 0, "a poll registers nothing");
    cr_assert_eq(a->in->fd_mode, 0);
    for (int round = 0; round < 2; round++) {
        int64_t t0 = test_now_ns();
        if (round == 0)
            cr_assert_eq(fipc_wait_any(&w[want], 1, FIPC_MSEC(80)), -ETIMEDOUT, "alone");
        else
            cr_assert_eq(fipc_wait_any(w, n, FIPC_MSEC(80)), -ETIMEDOUT, "beside words");
        cr_assert_geq(test_now_ns() - t0, FIPC_MSEC(80));
        cr_assert_eq(a->in->fd_wait, 1, "a wait that slept registered");
        cr_assert_eq(fipc_conn_send(b, "x", 1), 0);
        cr_assert_eq(a->in->fd_wait, 0, "and the send took it back");
        cr_assert_eq(fipc_wait_any(w, n, FIPC_FOREVER), want);
        char buf[4];
        cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), 1);
    }
    /* wait_any does not turn the descriptor mode on: a recv that runs dry
     * costs no eventfd work. */
    cr_assert_eq(a->in->fd_mode, 0);
    /* The other direction of the duplex pipe is its own waitable. */
    fipc_waitable wb = fipc_waitable_conn(b);
    cr_assert_eq(fipc_wait_any(&wb, 1, 0), -EAGAIN);
    cr_assert_eq(fipc_conn_send(a, "y", 1), 0);
    cr_assert_eq(fipc_wait_any(&wb, 1, FIPC_FOREVER), 0);
    fipc_conn_close(a);
    fipc_conn_close(b);
}

Test(wait, a_conn_that_does_not_receive_or_is_null_is_einval)
{
    fipc_queue *q = new_queue(4, 8);
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    fipc_waitable w[2] = {fipc_waitable_queue(q, FIPC_READABLE), fipc_waitable_conn(NULL)};
    cr_assert_eq(fipc_wait_any(w, 2, 0), -EINVAL);
    cr_assert_eq(fipc_wait_any(w, 2, FIPC_FOREVER), -EINVAL);
    w[1] = fipc_waitable_conn(b);
    cr_assert_eq(fipc_wait_any(w, 2, 0), -EINVAL, "b only sends");
    cr_assert_eq(fipc_wait_any(w, 2, FIPC_FOREVER), -EINVAL);
    cr_assert_eq(fipc_wait_any(&w[1], 1, FIPC_FOREVER), -EINVAL);
    w[1] = fipc_waitable_conn(a);
    w[1].what_ = FIPC_READABLE;
    cr_assert_eq(fipc_wait_any(w, 2, FIPC_FOREVER), -EINVAL, "a conn takes no what");
    cr_assert_eq(a->in->fd_wait, 0, "a refused call registers nothing");
    fipc_conn_close(a);
    fipc_conn_close(b);
}

/* Several pipes in one set, beside a queue: the index of the one whose
 * peer acted, and the lowest of those ready. */
Test(wait, the_conn_that_got_a_message_or_eof_among_several_is_the_index)
{
    enum { PIPES = 4 };
    struct conn_scene *sc = new_conn_scene();
    fipc_conn *a[PIPES], *b[PIPES];
    for (int i = 0; i < PIPES; i++)
        cr_assert_eq(fipc_pipe(&a[i], &b[i], false), 0);
    struct conn_dir *d3 = a[3]->in;
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        test_child_setup();
        for (int i = 0; i < PIPES; i++)
            fipc_conn_close(a[i]);
        CHILD_CHECK(TEST_WAIT_UNTIL(__atomic_load_n(&d3->fd_wait, __ATOMIC_ACQUIRE) == 1 &&
                                        test_pid_sleeping(getppid()),
                                    HANDSHAKE_NS),
                    1);
        CHILD_CHECK(fipc_conn_send(b[3], "three", 5) == 0, 2);
        CHILD_CHECK(test_wait_until_at_least(&sc->go, 1, HANDSHAKE_NS), 3);
        CHILD_CHECK(fipc_conn_send(b[3], "again", 5) == 0, 4);
        fipc_conn_close(b[1]); /* EOF of pipe 1, after pipe 3's message */
        CHILD_CHECK(test_wait_until_at_least(&sc->go, 2, HANDSHAKE_NS), 5);
        _exit(0);
    }
    for (int i = 0; i < PIPES; i++)
        fipc_conn_close(b[i]);
    fipc_waitable w[PIPES + 1] = {fipc_waitable_conn(a[0]), fipc_waitable_conn(a[1]),
                                  fipc_waitable_queue(sc->q, FIPC_READABLE),
                                  fipc_waitable_conn(a[2]), fipc_waitable_conn(a[3])};
    cr_assert_eq(fipc_wait_any(w, PIPES + 1, 0), -EAGAIN);
    cr_assert_eq(fipc_wait_any(w, PIPES + 1, HANDSHAKE_NS), 4, "pipe 3's message");
    char buf[8];
    cr_assert_eq(fipc_conn_recv(a[3], buf, sizeof buf, 0), 5);
    cr_assert_eq(fipc_wait_any(w, PIPES + 1, 0), -EAGAIN, "taken");
    test_flag_set(&sc->go, 1);
    cr_assert_eq(fipc_wait_any(&w[1], 1, HANDSHAKE_NS), 0, "pipe 1's EOF comes");
    cr_assert_eq(fipc_wait_any(w, PIPES + 1, 0), 1, "and is lower than pipe 3's message");
    cr_assert_eq(fipc_conn_recv(a[1], buf, sizeof buf, 0), -EPIPE);
    w[1] = w[0];
    cr_assert_eq(fipc_wait_any(w, PIPES + 1, FIPC_FOREVER), 4);
    cr_assert_eq(fipc_conn_recv(a[3], buf, sizeof buf, 0), 5);
    cr_assert_eq(fipc_wait_any(w, PIPES + 1, 0), -EAGAIN, "pipes 0, 2 and 3 are quiet");
    test_flag_set(&sc->go, 2);
    test_expect_ok(pid);
    cr_assert_eq(fipc_wait_any(w, PIPES + 1, HANDSHAKE_NS), 0, "the child's end: every EOF");
    cr_assert_eq(fipc_wait_any(&w[3], 1, 0), 0);
    for (int i = 0; i < PIPES; i++)
        fipc_conn_close(a[i]);
}

/* ---- A stream through a conn, taken only through wait_any ---- */

struct conn_stream {
    fipc_conn *b;
    uint64_t n;
};

/* Message k: its length (1 to 300 bytes) and bytes depend on k. */
static size_t cs_len(uint64_t k)
{
    return (size_t)((k * 2654435761u) % 300) + 1;
}

static void cs_fill(unsigned char *m, uint64_t k, size_t len)
{
    for (size_t i = 0; i < len; i++)
        m[i] = (unsigned char)(k * 31 + i);
}

static int conn_stream_sender(int i, void *arg)
{
    struct conn_stream *cs = arg;
    (void)i;
    test_child_setup();
    unsigned seed = 5;
    unsigned char m[300];
    for (uint64_t k = 0; k < cs->n; k++) {
        size_t len = cs_len(k);
        cs_fill(m, k, len);
        CHILD_CHECK(fipc_conn_send(cs->b, m, len) == 0, 1);
        /* Pauses at random, so that the receiver often runs dry and
         * sleeps. */
        unsigned r = rand_r(&seed);
        if (r % 16 == 0) sched_yield();
        if (r % 4096 == 0) usleep(200);
    }
    fipc_conn_close(cs->b); /* EOF ends the stream */
    return CHILD_OK;
}

/* Every message, in order and whole, then EOF: a receiver that only waits
 * in fipc_wait_any never sleeps past a message. */
static void conn_stream_exact(uint64_t per, enum conn_mode mode)
{
    struct conn_scene *sc = new_conn_scene();
    struct conn_stream *cs = test_shared(sizeof *cs);
    fipc_conn *a;
    cr_assert_eq(fipc_pipe(&a, &cs->b, false), 0);
    cs->n = per;
    fipc__uring_pretend_unsupported(mode == CM_FALLBACK);
    pid_t pid = test_fork(conn_stream_sender, 0, cs);
    fipc_conn_close(cs->b);
    fipc_waitable w[3];
    size_t n;
    int want = conn_set(sc, a, mode, w, &n);
    uint64_t k = 0, wakes = 0;
    unsigned char m[300], expect[300];
    bool eof = false;
    while (!eof) {
        int i = fipc_wait_any(w, n, HANDSHAKE_NS);
        cr_assert_eq(i, want, "wait_any: %d with %llu of %llu taken", i, (unsigned long long)k,
                     (unsigned long long)per);
        wakes++;
        ssize_t r;
        while ((r = fipc_conn_recv(a, m, sizeof m, 0)) >= 0) {
            cr_assert_lt(k, per, "more messages than sent");
            size_t len = cs_len(k);
            cr_assert_eq((size_t)r, len, "message %llu's length", (unsigned long long)k);
            cs_fill(expect, k, len);
            cr_assert_eq(memcmp(m, expect, len), 0, "message %llu torn", (unsigned long long)k);
            k++;
        }
        eof = r == -EPIPE;
        cr_assert(r == -EAGAIN || eof, "recv: %zd", r);
    }
    fipc__uring_pretend_unsupported(false);
    cr_assert_eq(k, per, "every message, then EOF");
    test_expect_ok(pid);
    fipc_conn_close(a);
    cr_log_info("%llu messages, %llu returns of wait_any", (unsigned long long)k,
                (unsigned long long)wakes);
}

Test(wait, a_stream_through_a_conn_exact_through_poll)
{
    conn_stream_exact(test_scaled(200000), CM_ALONE);
}

Test(wait, a_stream_through_a_conn_exact_beside_futex_words)
{
    conn_stream_exact(test_scaled(50000), CM_MIXED);
}

Test(wait, a_stream_through_a_conn_exact_without_io_uring)
{
    conn_stream_exact(test_scaled(50000), CM_FALLBACK);
}
