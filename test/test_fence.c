/*
 * test_fence.c - the asymmetric fences of the sleep/wake handshakes
 * (lib/fence.h): the side that changes a queue or pipe pays a compiler
 * barrier, the side about to sleep a membarrier system call.
 *
 * A lost wake-up would normally cost the sleeper one re-check
 * (FUTEX_RECHECK_NS, 80 ms) and go unseen; these tests raise the re-check
 * to an hour first (a seam of the test library, inherited by the forked
 * children), so that a lost wake-up hangs the test instead.  Every
 * hand-off goes through a sleep (FIPC_WAIT_SLEEP), between a process whose
 * fences are light (registered for membarrier) and one whose fences are
 * full, as in a process that has not registered yet, both ways round, and
 * between two light ones.
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 */
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "common.h"
#include "fence.h"
#include "test_hooks.h"

TestSuite(fence, .timeout = 240);

#define ROUNDS 4000
#define STREAM 50000

static fipc_arena *arena(void)
{
    static fipc_arena *a;
    if (!a) cr_assert_eq(fipc_arena_create(&a, "fence", 16 << 20), 0);
    return a;
}

static void lost_wakeups_hang(void)
{
    fipc__futex_recheck_ns = FIPC_SEC(3600);
}

static bool kernel_has_global_expedited(void)
{
    int cmds = (int)syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    return cmds >= 0 && (cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
           (cmds & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED);
}

/* Whose fences are full: nobody, the child, or the parent. */
enum full { FULL_NONE, FULL_CHILD, FULL_PARENT };

/* A process with full fences, as one that has not registered yet.  (It
 * stays registered in the kernel; that only adds barriers.) */
static void use_full_fences(void)
{
    fipc__fence_registered = 0;
}

/* ---- registration ---- */

static int child_registered(int i, void *arg)
{
    (void)i;
    (void)arg;
    return load_relaxed(&fipc__fence_registered) == 1 ? CHILD_OK : CHILD_FAIL(1);
}

Test(fence, a_process_that_uses_a_queue_has_light_fences_and_its_children_too)
{
    fipc_queue *q;
    cr_assert_eq(fipc_queue_create(&q, arena(), 4, 8, FIPC_QUEUE_SPSC), 0);
    uint64_t v = 1;
    size_t len;
    cr_assert_eq(fipc_queue_put(q, &v, sizeof v, 0), 0);
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, 0), 0);
    if (!kernel_has_global_expedited()) {
        /* Nobody can register: every fence stays full. */
        cr_assert_eq(fipc__fence_registered, 0);
        return;
    }
    cr_assert_eq(fipc__fence_registered, 1);
    /* fork keeps the kernel's registration, and the flag with it. */
    test_expect_ok(test_fork(child_registered, 0, NULL));
}

/* ---- ping-pong, every hand-off through a sleep ---- */

struct qpair {
    fipc_queue *ping, *pong;
    enum full full;
};

static int queue_ponger(int i, void *arg)
{
    (void)i;
    struct qpair *p = arg;
    test_child_setup();
    if (p->full == FULL_CHILD) use_full_fences();
    for (uint32_t n = 0; n < ROUNDS; n++) {
        uint32_t v;
        size_t len;
        CHILD_CHECK(fipc_queue_get(p->ping, &v, sizeof v, &len, FIPC_FOREVER) == 0, 1);
        CHILD_CHECK(len == sizeof v && v == n, 2);
        v = ~n;
        CHILD_CHECK(fipc_queue_put(p->pong, &v, sizeof v, FIPC_FOREVER) == 0, 3);
    }
    return CHILD_OK;
}

static void queue_pingpong(unsigned flags, enum full full)
{
    struct qpair *p = test_shared(sizeof *p);
    cr_assert_eq(fipc_queue_create(&p->ping, arena(), 1, sizeof(uint32_t), flags), 0);
    cr_assert_eq(fipc_queue_create(&p->pong, arena(), 1, sizeof(uint32_t), flags), 0);
    cr_assert_eq(fipc_queue_set_wait_mode(p->ping, FIPC_WAIT_SLEEP), 0);
    cr_assert_eq(fipc_queue_set_wait_mode(p->pong, FIPC_WAIT_SLEEP), 0);
    p->full = full;
    int saved = fipc__fence_registered;
    pid_t pid = test_fork(queue_ponger, 0, p);
    if (full == FULL_PARENT) use_full_fences();
    for (uint32_t n = 0; n < ROUNDS; n++) {
        uint32_t v = n;
        size_t len;
        cr_assert_eq(fipc_queue_put(p->ping, &v, sizeof v, FIPC_FOREVER), 0);
        cr_assert_eq(fipc_queue_get(p->pong, &v, sizeof v, &len, FIPC_FOREVER), 0);
        cr_assert_eq(v, ~n);
    }
    fipc__fence_registered = saved;
    test_expect_ok(pid);
}

Test(fence, sleeping_queue_pingpongs_lose_no_wake_up_with_light_and_full_fences)
{
    lost_wakeups_hang();
    for (enum full f = FULL_NONE; f <= FULL_PARENT; f++) {
        queue_pingpong(FIPC_QUEUE_SPSC, f);
        queue_pingpong(0, f);
    }
}

/* ---- a stream through a small queue: both sides sleep, in turn ---- */

struct stream {
    fipc_queue *q;
    enum full full;
};

static int stream_producer(int i, void *arg)
{
    (void)i;
    struct stream *s = arg;
    test_child_setup();
    if (s->full == FULL_CHILD) use_full_fences();
    for (uint64_t n = 0; n < STREAM; n++)
        CHILD_CHECK(fipc_queue_put(s->q, &n, sizeof n, FIPC_FOREVER) == 0, 1);
    return CHILD_OK;
}

static void stream(unsigned flags, enum full full)
{
    struct stream *s = test_shared(sizeof *s);
    cr_assert_eq(fipc_queue_create(&s->q, arena(), 2, sizeof(uint64_t), flags), 0);
    cr_assert_eq(fipc_queue_set_wait_mode(s->q, FIPC_WAIT_SLEEP), 0);
    s->full = full;
    int saved = fipc__fence_registered;
    pid_t pid = test_fork(stream_producer, 0, s);
    if (full == FULL_PARENT) use_full_fences();
    for (uint64_t n = 0; n < STREAM; n++) {
        uint64_t v;
        size_t len;
        cr_assert_eq(fipc_queue_get(s->q, &v, sizeof v, &len, FIPC_FOREVER), 0);
        cr_assert_eq(v, n);
    }
    fipc__fence_registered = saved;
    test_expect_ok(pid);
}

Test(fence, a_stream_through_a_two_slot_queue_loses_no_wake_up)
{
    lost_wakeups_hang();
    for (enum full f = FULL_NONE; f <= FULL_PARENT; f++) {
        stream(FIPC_QUEUE_SPSC, f);
        stream(0, f);
    }
}

/* ---- a pipe ---- */

static int conn_ponger(int i, void *arg)
{
    fipc_conn **ends = arg;
    test_child_setup();
    fipc_conn_close(ends[0]);
    if (i == FULL_CHILD) use_full_fences();
    for (uint32_t n = 0; n < ROUNDS; n++) {
        uint32_t v;
        CHILD_CHECK(fipc_conn_recv(ends[1], &v, sizeof v, FIPC_FOREVER) == (ssize_t)sizeof v, 1);
        CHILD_CHECK(v == n, 2);
        v = ~n;
        CHILD_CHECK(fipc_conn_send(ends[1], &v, sizeof v) == 0, 3);
    }
    fipc_conn_close(ends[1]);
    return CHILD_OK;
}

Test(fence, pipe_pingpongs_lose_no_wake_up_with_light_and_full_fences)
{
    lost_wakeups_hang();
    for (enum full f = FULL_NONE; f <= FULL_PARENT; f++) {
        fipc_conn *ends[2];
        cr_assert_eq(fipc_pipe(&ends[0], &ends[1], true), 0);
        int saved = fipc__fence_registered;
        pid_t pid = test_fork(conn_ponger, (int)f, ends);
        fipc_conn_close(ends[1]);
        if (f == FULL_PARENT) use_full_fences();
        for (uint32_t n = 0; n < ROUNDS; n++) {
            uint32_t v = n;
            cr_assert_eq(fipc_conn_send(ends[0], &v, sizeof v), 0);
            cr_assert_eq(fipc_conn_recv(ends[0], &v, sizeof v, FIPC_FOREVER), (ssize_t)sizeof v);
            cr_assert_eq(v, ~n);
        }
        fipc__fence_registered = saved;
        test_expect_ok(pid);
        fipc_conn_close(ends[0]);
    }
}

/* ---- close racing with an SPSC put whose fence is light ---- */

struct race {
    fipc_queue *q;
    uint32_t started;
    uint64_t put_ok, got;
};

static int race_producer(int i, void *arg)
{
    struct race *r = arg;
    test_child_setup();
    if (i) use_full_fences();
    uint64_t ok = 0;
    test_flag_set(&r->started, 1);
    for (uint64_t n = 0;; n++) {
        int e = fipc_queue_put(r->q, &n, sizeof n, FIPC_FOREVER);
        if (e == -EPIPE) break;
        CHILD_CHECK(e == 0, 1);
        ok++;
    }
    store_release(&r->put_ok, ok);
    return CHILD_OK;
}

static int race_consumer(int i, void *arg)
{
    (void)i;
    struct race *r = arg;
    test_child_setup();
    uint64_t got = 0;
    for (;;) {
        uint64_t v;
        size_t len;
        int e = fipc_queue_get(r->q, &v, sizeof v, &len, FIPC_FOREVER);
        if (e == -EPIPE) break;
        CHILD_CHECK(e == 0 && v == got, 1);
        got++;
    }
    store_release(&r->got, got);
    return CHILD_OK;
}

/* Every put that returned 0 is got, every put that was -EPIPE is not: the
 * consumer's seal pairs its heavy fence with the put's light one (C2). */
Test(fence, close_settles_every_spsc_put_exactly_once)
{
    lost_wakeups_hang();
    for (int round = 0; round < 60; round++) {
        struct race *r = test_shared(sizeof *r);
        cr_assert_eq(fipc_queue_create(&r->q, arena(), 8, sizeof(uint64_t), FIPC_QUEUE_SPSC), 0);
        pid_t pids[2] = {test_fork(race_producer, round % 2, r), test_fork(race_consumer, 0, r)};
        cr_assert(test_wait_until_at_least(&r->started, 1, HANDSHAKE_NS));
        /* Let the stream run for a moment that varies from round to round. */
        for (volatile int spin = 0; spin < (round % 10) * 20000; spin++)
            ;
        cr_assert_eq(fipc_queue_close(r->q), 0);
        test_expect_ok(pids[0]);
        test_expect_ok(pids[1]);
        cr_assert_eq(load_acquire(&r->got), load_acquire(&r->put_ok), "round %d", round);
    }
}

/* ---- fence modes (eventcount.h): who pays follows who sleeps ---- */

static int sleeping_getter(int i, void *arg)
{
    (void)i;
    fipc_queue *q = *(fipc_queue **)arg;
    test_child_setup();
    uint64_t v;
    size_t len;
    for (int n = 0; n < 10; n++)
        CHILD_CHECK(fipc_queue_get(q, &v, sizeof v, &len, FIPC_FOREVER) == 0 && v == (uint64_t)n,
                    1);
    return CHILD_OK;
}

static uint32_t fence_state(const struct eventcount *ec)
{
    return load_relaxed(&ec->fences) & EC_STATE;
}

Test(fence, a_sleeper_that_never_spins_makes_the_notifiers_fence_until_they_find_none)
{
    lost_wakeups_hang();
    fipc_queue **q = test_shared(sizeof *q);
    cr_assert_eq(fipc_queue_create(q, arena(), 4, sizeof(uint64_t), FIPC_QUEUE_SPSC), 0);
    cr_assert_eq(fipc_queue_set_wait_mode(*q, FIPC_WAIT_SLEEP), 0);
    cr_assert_eq(fence_state(&(*q)->not_empty), EC_LIGHT);
    pid_t pid = test_fork(sleeping_getter, 0, q);
    for (uint64_t n = 0; n < 10; n++) {
        /* Wait until the getter sleeps, then hand it the next one. */
        cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS));
        cr_assert_eq(fipc_queue_put(*q, &n, sizeof n, FIPC_FOREVER), 0);
    }
    test_expect_ok(pid);
    /* A sleeper that sleeps at once moved the mode to FENCED (unless the
     * kernel has no membarrier, when every fence is full anyway). */
    if (fipc__fence_registered) cr_assert_eq(fence_state(&(*q)->not_empty), EC_FENCED);
    /* Notifications that find nobody asleep move it back. */
    for (uint64_t n = 0; n < 2 * EC_QUIET_NOTIFIES; n++) {
        uint64_t v;
        size_t len;
        cr_assert_eq(fipc_queue_put(*q, &n, sizeof n, 0), 0);
        cr_assert_eq(fipc_queue_get(*q, &v, sizeof v, &len, 0), 0);
        cr_assert_eq(v, n);
    }
    cr_assert_eq(fence_state(&(*q)->not_empty), EC_LIGHT);
}

/* A peer that wrote any value into the word: every call still works. */
Test(fence, a_fence_word_a_peer_overwrote_still_hands_over)
{
    lost_wakeups_hang();
    const uint32_t junk[] = {EC_SWITCHING, EC_STATE, 0xffffffffu, EC_FENCED | 0x40u};
    for (size_t k = 0; k < sizeof junk / sizeof junk[0]; k++) {
        struct stream *s = test_shared(sizeof *s);
        cr_assert_eq(fipc_queue_create(&s->q, arena(), 2, sizeof(uint64_t), FIPC_QUEUE_SPSC), 0);
        store_relaxed(&s->q->not_empty.fences, junk[k]);
        store_relaxed(&s->q->not_full.fences, junk[k]);
        s->full = FULL_NONE;
        pid_t pid = test_fork(stream_producer, 0, s);
        for (uint64_t n = 0; n < STREAM; n++) {
            uint64_t v;
            size_t len;
            cr_assert_eq(fipc_queue_get(s->q, &v, sizeof v, &len, FIPC_FOREVER), 0);
            cr_assert_eq(v, n);
        }
        test_expect_ok(pid);
    }
}
