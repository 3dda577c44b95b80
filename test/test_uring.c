/*
 * test_uring.c - the io_uring preparers of fipc/uring.h: for every object,
 * a prepared wait that completes on another process's change and a NOP
 * when the object is ready already; no lost wake-up under two producers in
 * other processes (1,000,000 items, exact count and checksum), and in
 * DEFER_TASKRUN and SQPOLL rings (200,000 each); cancel, a
 * linked timeout, close waking every prepared wait in several rings, a
 * ring torn down with waits pending, the error codes, the forced "kernel
 * without io_uring futex operations" path, a producer killed holding a
 * claim, and a setter killed before it sets (the loop ends on its pidfd or
 * a linked timeout).
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 * The stress count may be scaled with FIPC_TEST_SCALE (e.g. 0.1).
 */
#include <fcntl.h> /* liburing 2.3's header needs AT_FDCWD */
#include <liburing.h>

#include "common.h"
#include "queue_impl.h"
#include "test_hooks.h"

TestSuite(uring, .timeout = 300);

/* ---- Helpers ---- */

/* Skip (with a message) where the kernel really lacks the operations; the
 * forced path is tested on every kernel (the hook). */
static void need_futex_ops(void)
{
    struct io_uring_probe *p = io_uring_get_probe();
    bool ok = p && io_uring_opcode_supported(p, 51) && io_uring_opcode_supported(p, 53);
    if (p) io_uring_free_probe(p);
    if (!ok) cr_skip_test("this kernel has no io_uring futex operations (Linux 6.7+)");
}

static void ring_init_flags(struct io_uring *ring, unsigned entries, unsigned flags)
{
    int r = io_uring_queue_init(entries, ring, flags);
    cr_assert_eq(r, 0, "io_uring_queue_init(flags %#x): %s", flags, strerror(-r));
}

static void ring_init(struct io_uring *ring, unsigned entries)
{
    ring_init_flags(ring, entries, 0);
}

static struct io_uring_sqe *sqe_of(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    cr_assert_not_null(sqe, "the SQ ring is full");
    return sqe;
}

/* Wait at most limit_ns for a completion: true with *res and *ud set, and
 * the CQE consumed; false on timeout. */
static bool next_cqe(struct io_uring *ring, int64_t limit_ns, int *res, uint64_t *ud)
{
    struct __kernel_timespec ts = {.tv_sec = limit_ns / 1000000000,
                                   .tv_nsec = limit_ns % 1000000000};
    struct io_uring_cqe *cqe;
    for (;;) {
        int r = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
        if (r == -EINTR) continue;
        if (r == -ETIME) return false;
        cr_assert_eq(r, 0, "io_uring_wait_cqe_timeout: %s", strerror(-r));
        break;
    }
    *res = cqe->res;
    *ud = cqe->user_data;
    io_uring_cqe_seen(ring, cqe);
    return true;
}

/* Whether a completion is there already (none is consumed). */
static bool cqe_ready(struct io_uring *ring)
{
    struct io_uring_cqe *cqe;
    return io_uring_peek_cqe(ring, &cqe) == 0;
}

static void submit(struct io_uring *ring, int n)
{
    int r = io_uring_submit(ring);
    cr_assert_eq(r, n, "io_uring_submit: %d", r);
}

static fipc_queue *new_queue(size_t capacity, size_t max_item, unsigned flags)
{
    fipc_queue *q = NULL;
    int r = fipc_queue_create(&q, NULL, capacity, max_item, flags);
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

/* ---- For every object: ready at once, or completed by another process ---- */

enum target_kind {
    T_QUEUE_READ,
    T_QUEUE_WRITE,
    T_SPSC_READ,
    T_SPSC_WRITE,
    T_JQUEUE_READ,
    T_JQUEUE_WRITE,
    T_JQUEUE_JOIN,
    T_EVENT,
    T_SEM,
};

struct target {
    enum target_kind kind;
    fipc_queue *q;
    fipc_jqueue *j;
    fipc_event *e;
    fipc_sem *s;
};

/* A target that is not ready (ready: one that is). */
static struct target make_target(enum target_kind kind, bool ready)
{
    struct target t = {.kind = kind};
    uint32_t x = 1;
    switch (kind) {
    case T_QUEUE_READ:
    case T_SPSC_READ:
        t.q = new_queue(2, 8, kind == T_SPSC_READ ? FIPC_QUEUE_SPSC : 0);
        if (ready) cr_assert_eq(fipc_queue_put(t.q, &x, sizeof x, 0), 0);
        break;
    case T_QUEUE_WRITE:
    case T_SPSC_WRITE:
        t.q = new_queue(2, 8, kind == T_SPSC_WRITE ? FIPC_QUEUE_SPSC : 0);
        cr_assert_eq(fipc_queue_put(t.q, &x, sizeof x, 0), 0);
        if (!ready) cr_assert_eq(fipc_queue_put(t.q, &x, sizeof x, 0), 0);
        break;
    case T_JQUEUE_READ:
        t.j = new_jqueue(2, 8);
        if (ready) cr_assert_eq(fipc_jqueue_put(t.j, &x, sizeof x, 0), 0);
        break;
    case T_JQUEUE_WRITE:
        t.j = new_jqueue(2, 8);
        cr_assert_eq(fipc_jqueue_put(t.j, &x, sizeof x, 0), 0);
        if (!ready) cr_assert_eq(fipc_jqueue_put(t.j, &x, sizeof x, 0), 0);
        break;
    case T_JQUEUE_JOIN:
        t.j = new_jqueue(2, 8);
        if (!ready) cr_assert_eq(fipc_jqueue_put(t.j, &x, sizeof x, 0), 0);
        break;
    case T_EVENT:
        t.e = fipc_event_new(NULL);
        cr_assert_not_null(t.e);
        if (ready) cr_assert_eq(fipc_event_set(t.e), 0);
        break;
    case T_SEM:
        t.s = fipc_sem_new(NULL, ready ? 1 : 0);
        cr_assert_not_null(t.s);
        break;
    }
    return t;
}

static int prep_target(struct io_uring_sqe *sqe, const struct target *t)
{
    switch (t->kind) {
    case T_QUEUE_READ:
    case T_SPSC_READ:
        return fipc_queue_prep_wait(sqe, t->q, FIPC_READABLE);
    case T_QUEUE_WRITE:
    case T_SPSC_WRITE:
        return fipc_queue_prep_wait(sqe, t->q, FIPC_WRITABLE);
    case T_JQUEUE_READ:
        return fipc_jqueue_prep_wait(sqe, t->j, FIPC_READABLE);
    case T_JQUEUE_WRITE:
        return fipc_jqueue_prep_wait(sqe, t->j, FIPC_WRITABLE);
    case T_JQUEUE_JOIN:
        return fipc_jqueue_prep_join(sqe, t->j);
    case T_EVENT:
        return fipc_event_prep_wait(sqe, t->e);
    case T_SEM:
        return fipc_sem_prep_wait(sqe, t->s);
    }
    return -1;
}

/* The change that makes the target ready, made in the child: 0 if it
 * worked. */
static int change_target(const struct target *t)
{
    uint32_t x = 2, buf[2];
    size_t len;
    switch (t->kind) {
    case T_QUEUE_READ:
    case T_SPSC_READ:
        return fipc_queue_put(t->q, &x, sizeof x, 0);
    case T_QUEUE_WRITE:
    case T_SPSC_WRITE:
        return fipc_queue_get(t->q, buf, sizeof buf, &len, 0);
    case T_JQUEUE_READ:
        return fipc_jqueue_put(t->j, &x, sizeof x, 0);
    case T_JQUEUE_WRITE:
        return fipc_jqueue_get(t->j, buf, sizeof buf, &len, 0);
    case T_JQUEUE_JOIN:
        if (fipc_jqueue_get(t->j, buf, sizeof buf, &len, 0) != 0) return -1;
        return fipc_jqueue_task_done(t->j);
    case T_EVENT:
        return fipc_event_set(t->e);
    case T_SEM:
        return fipc_sem_release(t->s);
    }
    return -1;
}

/* The non-blocking call the loop makes after the completion: 0 if it
 * succeeded. */
static int use_target(const struct target *t)
{
    uint32_t x = 3, buf[2];
    size_t len;
    switch (t->kind) {
    case T_QUEUE_READ:
    case T_SPSC_READ:
        return fipc_queue_get(t->q, buf, sizeof buf, &len, 0);
    case T_QUEUE_WRITE:
    case T_SPSC_WRITE:
        return fipc_queue_put(t->q, &x, sizeof x, 0);
    case T_JQUEUE_READ:
        return fipc_jqueue_get(t->j, buf, sizeof buf, &len, 0);
    case T_JQUEUE_WRITE:
        return fipc_jqueue_put(t->j, &x, sizeof x, 0);
    case T_JQUEUE_JOIN:
        return fipc_jqueue_join(t->j, 0);
    case T_EVENT:
        return fipc_event_wait(t->e, 0);
    case T_SEM:
        return fipc_sem_acquire(t->s, 0);
    }
    return -1;
}

struct go {
    uint32_t go;
    const struct target *t;
};

static int changer(int i, void *arg)
{
    struct go *g = arg;
    test_child_setup();
    CHILD_CHECK(test_wait_until_at_least(&g->go, 1, HANDSHAKE_NS), 1);
    CHILD_CHECK(change_target(g->t) == 0, 2);
    return CHILD_OK;
}

static void ready_object_gives_a_nop(enum target_kind kind)
{
    need_futex_ops();
    struct io_uring ring;
    ring_init(&ring, 4);
    struct target t = make_target(kind, true);
    struct io_uring_sqe *sqe = sqe_of(&ring);
    cr_assert_eq(prep_target(sqe, &t), 1, "a ready object answers 1");
    cr_assert_eq(sqe->opcode, IORING_OP_NOP);
    sqe->user_data = 42;
    submit(&ring, 1);
    int res;
    uint64_t ud;
    cr_assert(next_cqe(&ring, HANDSHAKE_NS, &res, &ud), "the NOP completes at once");
    cr_assert_eq(ud, 42);
    cr_assert_eq(res, 0);
    cr_assert_eq(use_target(&t), 0, "and the object is ready");
    io_uring_queue_exit(&ring);
}

static void change_by_another_process_completes_the_wait(enum target_kind kind)
{
    need_futex_ops();
    struct io_uring ring;
    ring_init(&ring, 4);
    struct target t = make_target(kind, false);
    cr_assert_neq(use_target(&t), 0, "not ready to begin with");
    struct go *g = test_shared(sizeof *g);
    g->t = &t; /* the child inherits the same addresses */
    pid_t pid = test_fork(changer, 0, g);

    struct io_uring_sqe *sqe = sqe_of(&ring);
    cr_assert_eq(prep_target(sqe, &t), 0, "a wait is prepared");
    cr_assert_eq(sqe->opcode, 51, "an IORING_OP_FUTEX_WAIT");
    sqe->user_data = 7;
    submit(&ring, 1);
    cr_assert_not(cqe_ready(&ring), "nothing completes before the change");
    test_flag_set(&g->go, 1);

    /* A completion means "look again": a put seen mid-way (its claim in
     * the way) gives a short timeout first, then the loop prepares again. */
    int64_t t0 = test_now_ns();
    for (;;) {
        int res;
        uint64_t ud;
        cr_assert(next_cqe(&ring, HANDSHAKE_NS, &res, &ud), "the change completes the wait");
        cr_assert_eq(ud, 7);
        cr_assert(res == 0 || res == -EAGAIN || res == -ETIME, "res %d", res);
        if (use_target(&t) == 0) break;
        cr_assert_lt(test_now_ns() - t0, HANDSHAKE_NS, "never ready");
        sqe = sqe_of(&ring);
        cr_assert_geq(prep_target(sqe, &t), 0);
        sqe->user_data = 7;
        submit(&ring, 1);
    }
    test_expect_ok(pid);
    io_uring_queue_exit(&ring);
}

#define OBJECT_TESTS(name, kind)                                                                   \
    Test(uring, name##_ready_gives_a_nop)                                                          \
    {                                                                                              \
        ready_object_gives_a_nop(kind);                                                            \
    }                                                                                              \
    Test(uring, name##_change_by_another_process_completes_the_wait)                               \
    {                                                                                              \
        change_by_another_process_completes_the_wait(kind);                                        \
    }

OBJECT_TESTS(queue_readable, T_QUEUE_READ)
OBJECT_TESTS(queue_writable, T_QUEUE_WRITE)
OBJECT_TESTS(spsc_queue_readable, T_SPSC_READ)
OBJECT_TESTS(spsc_queue_writable, T_SPSC_WRITE)
OBJECT_TESTS(jqueue_readable, T_JQUEUE_READ)
OBJECT_TESTS(jqueue_writable, T_JQUEUE_WRITE)
OBJECT_TESTS(jqueue_join, T_JQUEUE_JOIN)
OBJECT_TESTS(event, T_EVENT)
OBJECT_TESTS(sem, T_SEM)

/* The change that completes a wait also takes the registration back: the
 * next change finds nobody registered and makes no system call. */
Test(uring, a_completed_wait_leaves_no_registration_behind)
{
    need_futex_ops();
    struct io_uring ring;
    ring_init(&ring, 4);
    fipc_queue *q = new_queue(8, 8, 0);
    cr_assert_eq(fipc_queue_prep_wait(sqe_of(&ring), q, FIPC_READABLE), 0);
    submit(&ring, 1);
    cr_assert_eq(q->not_empty.sleepers, 1, "the wait registered");
    uint32_t x = 1;
    cr_assert_eq(fipc_queue_put(q, &x, sizeof x, 0), 0);
    cr_assert_eq(q->not_empty.sleepers, 0, "the put that woke it cleared the flag");
    int res;
    uint64_t ud;
    cr_assert(next_cqe(&ring, HANDSHAKE_NS, &res, &ud));
    cr_assert_eq(res, 0, "woken by the put");

    fipc_sem *s = fipc_sem_new(NULL, 0);
    cr_assert_eq(fipc_sem_prep_wait(sqe_of(&ring), s), 0);
    submit(&ring, 1);
    cr_assert_eq(fipc_sem_release(s), 0);
    cr_assert(next_cqe(&ring, HANDSHAKE_NS, &res, &ud));
    uint32_t outside = ((uint32_t *)s)[3];
    cr_assert_eq(outside & 1, 0, "the release that woke it cleared the flag");

    fipc_event *e = fipc_event_new(NULL);
    cr_assert_eq(fipc_event_prep_wait(sqe_of(&ring), e), 0);
    submit(&ring, 1);
    cr_assert_eq(fipc_event_set(e), 0);
    cr_assert(next_cqe(&ring, HANDSHAKE_NS, &res, &ud));
    cr_assert_eq(((uint32_t *)e)[0] & 0x80000000u, 0, "the set cleared the flag");
    cr_assert_eq(fipc_event_clear(e), 0);
    cr_assert_eq(fipc_event_wait(e, 0), -EAGAIN, "a set, a clear: clear again");

    fipc_jqueue *j = new_jqueue(4, 8);
    cr_assert_eq(fipc_jqueue_put(j, &x, sizeof x, 0), 0);
    cr_assert_eq(fipc_jqueue_prep_join(sqe_of(&ring), j), 0);
    submit(&ring, 1);
    size_t len;
    uint32_t buf[2];
    cr_assert_eq(fipc_jqueue_get(j, buf, sizeof buf, &len, 0), 0);
    cr_assert_eq(fipc_jqueue_task_done(j), 0);
    cr_assert(next_cqe(&ring, HANDSHAKE_NS, &res, &ud));
    uint32_t *jw = (uint32_t *)((char *)j + 3 * 64);
    cr_assert_eq(jw[1], 0, "the task_done that woke it cleared the flag");
    io_uring_queue_exit(&ring);
}

/* An event set and cleared again between the prep and the submission: the
 * wait completes (the word changed), as a sleeper in fipc_event_wait
 * would be released. */
Test(uring, event_set_and_cleared_before_the_submission_completes_the_wait)
{
    need_futex_ops();
    struct io_uring ring;
    ring_init(&ring, 4);
    fipc_event *e = fipc_event_new(NULL);
    cr_assert_eq(fipc_event_prep_wait(sqe_of(&ring), e), 0);
    cr_assert_eq(fipc_event_set(e), 0);
    cr_assert_eq(fipc_event_clear(e), 0);
    submit(&ring, 1);
    int res;
    uint64_t ud;
    cr_assert(next_cqe(&ring, HANDSHAKE_NS, &res, &ud), "not lost");
    cr_assert_eq(res, -EAGAIN, "the word had changed: res %d", res);
    io_uring_queue_exit(&ring);
}

/* ---- No lost wake-up: a loop that only waits through prep_wait ---- */

#define HAMMER_PRODUCERS 2

struct hammer {
    fipc_queue *q;
    uint64_t per_producer;
    uint32_t started;
};

static uint64_t item_of(int producer, uint64_t i)
{
    return ((uint64_t)producer << 40) | i;
}

static int hammer_producer(int p, void *arg)
{
    struct hammer *h = arg;
    test_child_setup();
    test_flag_add(&h->started);
    unsigned seed = 12345u + (unsigned)p;
    for (uint64_t i = 0; i < h->per_producer; i++) {
        uint64_t x = item_of(p, i);
        CHILD_CHECK(fipc_queue_put(h->q, &x, sizeof x, FIPC_FOREVER) == 0, 1);
        /* Random pauses: the loop empties the queue and goes to sleep
         * often, and producers wake it at every moment of its cycle. */
        unsigned r = rand_r(&seed);
        if (r % 64 == 0)
            sched_yield();
        else if (r % 1024 == 1)
            usleep(r % 200);
        else
            for (volatile unsigned k = r % 128; k > 0; k--)
                ;
    }
    return CHILD_OK;
}

/* items in all through a queue made with flags, drained by a loop whose
 * ring is made with ring_flags. */
static void hammer_ring(unsigned flags, uint64_t items, unsigned ring_flags)
{
    need_futex_ops();
    struct hammer *h = test_shared(sizeof *h);
    h->q = new_queue(64, 8, flags);
    h->per_producer = test_scaled(items) / HAMMER_PRODUCERS;
    int producers = flags & FIPC_QUEUE_SPSC ? 1 : HAMMER_PRODUCERS;
    if (producers == 1) h->per_producer *= HAMMER_PRODUCERS;
    pid_t pids[HAMMER_PRODUCERS];
    for (int p = 0; p < producers; p++)
        pids[p] = test_fork(hammer_producer, p, h);

    struct io_uring ring;
    ring_init_flags(&ring, 4, ring_flags);
    uint64_t want = h->per_producer * (uint64_t)producers;
    uint64_t got = 0, sum = 0, want_sum = 0, waits = 0, nops = 0, timeouts = 0;
    uint64_t next[HAMMER_PRODUCERS] = {0};
    for (int p = 0; p < producers; p++)
        for (uint64_t i = 0; i < h->per_producer; i++)
            want_sum += item_of(p, i);
    while (got < want) {
        struct io_uring_sqe *sqe = sqe_of(&ring);
        int r = fipc_queue_prep_wait(sqe, h->q, FIPC_READABLE);
        cr_assert(r == 0 || r == 1, "prep_wait: %s", fipc_strerror(r));
        waits += r == 0;
        nops += r == 1;
        timeouts += sqe->opcode == IORING_OP_TIMEOUT;
        sqe->user_data = 1;
        submit(&ring, 1);
        int res;
        uint64_t ud;
        /* A completion must come while items are put: the wait never
         * sleeps past an item. */
        if (!next_cqe(&ring, HANDSHAKE_NS, &res, &ud))
            cr_assert_fail("no completion for %lld s with %zu items in the queue, %llu of %llu "
                           "taken: a lost wake-up",
                           (long long)(HANDSHAKE_NS / 1000000000), fipc_queue_qsize(h->q),
                           (unsigned long long)got, (unsigned long long)want);
        /* -ETIME: a producer's claim was in the way (a short timeout). */
        cr_assert(res == 0 || res == -EAGAIN || res == -ETIME, "res %d", res);
        uint64_t x;
        size_t len;
        while (fipc_queue_get(h->q, &x, sizeof x, &len, 0) == 0) {
            int p = (int)(x >> 40);
            cr_assert(p < producers && (x & ((1ull << 40) - 1)) == next[p],
                      "item %llx out of order", (unsigned long long)x);
            next[p]++;
            got++;
            sum += x;
        }
    }
    for (int p = 0; p < producers; p++)
        test_expect_ok(pids[p]);
    uint64_t x;
    size_t len;
    cr_assert_eq(fipc_queue_get(h->q, &x, sizeof x, &len, 0), -EAGAIN, "nothing more");
    cr_assert_eq(got, want);
    cr_assert_eq(sum, want_sum, "checksum");
    cr_log_info("%llu items, %llu waits prepared (%llu of them short timeouts: a claim in the "
                "way), %llu already ready",
                (unsigned long long)got, (unsigned long long)waits, (unsigned long long)timeouts,
                (unsigned long long)nops);
    io_uring_queue_exit(&ring);
}

static void hammer(unsigned flags)
{
    hammer_ring(flags, 1000000, 0);
}

Test(uring, no_lost_wakeup_under_two_hammering_producers_mpmc)
{
    hammer(0);
}

Test(uring, no_lost_wakeup_under_a_hammering_producer_spsc)
{
    hammer(FIPC_QUEUE_SPSC);
}

/* The ring set-ups event loops use: completions run as deferred task work
 * only when the loop waits (DEFER_TASKRUN), or a kernel thread submits
 * the waits (SQPOLL). */
Test(uring, no_lost_wakeup_in_a_defer_taskrun_ring)
{
    hammer_ring(0, 200000, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
}

Test(uring, no_lost_wakeup_in_an_sqpoll_ring)
{
    hammer_ring(0, 200000, IORING_SETUP_SQPOLL);
}

/* ---- Cancel, linked timeout, close, several rings, teardown ---- */

Test(uring, a_prepared_wait_can_be_cancelled)
{
    need_futex_ops();
    struct io_uring ring;
    ring_init(&ring, 4);
    fipc_queue *q = new_queue(4, 8, 0);
    struct io_uring_sqe *sqe = sqe_of(&ring);
    cr_assert_eq(fipc_queue_prep_wait(sqe, q, FIPC_READABLE), 0);
    sqe->user_data = 11;
    submit(&ring, 1);
    cr_assert_not(cqe_ready(&ring));
    sqe = sqe_of(&ring);
    io_uring_prep_cancel64(sqe, 11, 0);
    sqe->user_data = 12;
    submit(&ring, 1);
    bool seen_wait = false, seen_cancel = false;
    for (int i = 0; i < 2; i++) {
        int res;
        uint64_t ud;
        cr_assert(next_cqe(&ring, HANDSHAKE_NS, &res, &ud));
        if (ud == 11) {
            cr_assert_eq(res, -ECANCELED, "the wait: %d", res);
            seen_wait = true;
        } else {
            cr_assert_eq(ud, 12);
            /* 0, or how many it cancelled (1: this kernel's futex cancel
             * reports a count). */
            cr_assert(res == 0 || res == 1, "the cancel found it: %d", res);
            seen_cancel = true;
        }
    }
    cr_assert(seen_wait && seen_cancel);
    /* The registration it left costs the next put one wake, then the
     * queue works as before. */
    uint32_t x = 5;
    uint64_t y = 0;
    size_t len;
    cr_assert_eq(fipc_queue_put(q, &x, sizeof x, 0), 0);
    cr_assert_eq(q->not_empty.sleepers, 0);
    cr_assert_eq(fipc_queue_get(q, &y, sizeof y, &len, 0), 0);
    cr_assert_eq(y, 5);
    io_uring_queue_exit(&ring);
}

Test(uring, a_linked_timeout_ends_a_wait_on_an_idle_queue)
{
    need_futex_ops();
    struct io_uring ring;
    ring_init(&ring, 4);
    fipc_queue *q = new_queue(4, 8, 0);
    struct io_uring_sqe *sqe = sqe_of(&ring);
    cr_assert_eq(fipc_queue_prep_wait(sqe, q, FIPC_READABLE), 0);
    sqe->user_data = 21;
    sqe->flags |= IOSQE_IO_LINK;
    struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 20000000};
    sqe = sqe_of(&ring);
    io_uring_prep_link_timeout(sqe, &ts, 0);
    sqe->user_data = 22;
    int64_t t0 = test_now_ns();
    submit(&ring, 2);
    int res[2];
    uint64_t ud[2];
    cr_assert(next_cqe(&ring, HANDSHAKE_NS, &res[0], &ud[0]));
    cr_assert(next_cqe(&ring, HANDSHAKE_NS, &res[1], &ud[1]));
    int64_t elapsed = test_now_ns() - t0;
    for (int i = 0; i < 2; i++) {
        if (ud[i] == 21)
            cr_assert_eq(res[i], -ECANCELED, "the wait: %d", res[i]);
        else
            /* -ETIME, or the count its cancel of the wait returned (1:
             * this kernel's futex cancel reports a count). */
            cr_assert(ud[i] == 22 && (res[i] == -ETIME || res[i] == 1), "the timeout: %llu %d",
                      (unsigned long long)ud[i], res[i]);
    }
    cr_assert_geq(elapsed, 15000000, "the timeout ended it, not something else");
    io_uring_queue_exit(&ring);
}

Test(uring, a_linked_timeout_does_not_fire_when_the_put_comes_first)
{
    need_futex_ops();
    struct io_uring ring;
    ring_init(&ring, 4);
    fipc_queue *q = new_queue(4, 8, 0);
    struct io_uring_sqe *sqe = sqe_of(&ring);
    cr_assert_eq(fipc_queue_prep_wait(sqe, q, FIPC_READABLE), 0);
    sqe->user_data = 31;
    sqe->flags |= IOSQE_IO_LINK;
    struct __kernel_timespec ts = {.tv_sec = 60, .tv_nsec = 0};
    sqe = sqe_of(&ring);
    io_uring_prep_link_timeout(sqe, &ts, 0);
    sqe->user_data = 32;
    submit(&ring, 2);
    uint32_t x = 1;
    cr_assert_eq(fipc_queue_put(q, &x, sizeof x, 0), 0);
    for (int i = 0; i < 2; i++) {
        int res;
        uint64_t ud;
        cr_assert(next_cqe(&ring, HANDSHAKE_NS, &res, &ud));
        if (ud == 31)
            cr_assert_eq(res, 0, "woken by the put: %d", res);
        else
            cr_assert_eq(res, -ECANCELED, "the timeout was cancelled: %d", res);
    }
    io_uring_queue_exit(&ring);
}

#define CLOSE_RINGS 3

struct closer {
    fipc_queue *q;
    uint32_t go;
};

static int close_child(int i, void *arg)
{
    struct closer *c = arg;
    test_child_setup();
    CHILD_CHECK(test_wait_until_at_least(&c->go, 1, HANDSHAKE_NS), 1);
    CHILD_CHECK(fipc_queue_close(c->q) == 0, 2);
    return CHILD_OK;
}

/* Waits for readable on an empty queue and for writable on a full one, in
 * three rings: the close by another process completes all of them, and the
 * queue is then ready both ways. */
Test(uring, close_by_another_process_completes_every_prepared_wait_in_several_rings)
{
    need_futex_ops();
    struct closer *c = test_shared(sizeof *c);
    c->q = new_queue(2, 8, 0);
    fipc_queue *full = new_queue(2, 8, 0);
    uint32_t x = 1;
    cr_assert_eq(fipc_queue_put(full, &x, sizeof x, 0), 0);
    cr_assert_eq(fipc_queue_put(full, &x, sizeof x, 0), 0);
    struct io_uring rings[CLOSE_RINGS];
    for (int i = 0; i < CLOSE_RINGS; i++) {
        ring_init(&rings[i], 4);
        struct io_uring_sqe *sqe = sqe_of(&rings[i]);
        cr_assert_eq(fipc_queue_prep_wait(sqe, c->q, FIPC_READABLE), 0);
        sqe->user_data = 100 + i;
        submit(&rings[i], 1);
    }
    /* The full queue is closed by this process, after the other. */
    struct io_uring_sqe *sqe = sqe_of(&rings[0]);
    cr_assert_eq(fipc_queue_prep_wait(sqe, full, FIPC_WRITABLE), 0);
    sqe->user_data = 200;
    submit(&rings[0], 1);
    pid_t pid = test_fork(close_child, 0, c);
    test_flag_set(&c->go, 1);
    for (int i = 0; i < CLOSE_RINGS; i++) {
        int res;
        uint64_t ud;
        cr_assert(next_cqe(&rings[i], HANDSHAKE_NS, &res, &ud), "ring %d woken by close", i);
        cr_assert_eq(ud, 100u + (unsigned)i);
    }
    test_expect_ok(pid);
    cr_assert_eq(fipc_queue_close(full), 0);
    int res;
    uint64_t ud;
    cr_assert(next_cqe(&rings[0], HANDSHAKE_NS, &res, &ud), "the writable wait woken by close");
    cr_assert_eq(ud, 200);
    /* Closed: ready both ways, so preparing again gives a NOP. */
    cr_assert_eq(fipc_queue_prep_wait(sqe_of(&rings[1]), c->q, FIPC_READABLE), 1);
    cr_assert_eq(fipc_queue_prep_wait(sqe_of(&rings[1]), c->q, FIPC_WRITABLE), 1);
    cr_assert_eq(fipc_queue_prep_wait(sqe_of(&rings[1]), full, FIPC_WRITABLE), 1);
    uint64_t y;
    size_t len;
    int g = fipc_queue_get(c->q, &y, sizeof y, &len, 0);
    cr_assert_eq(g, -EPIPE, "get: %s", fipc_strerror(g));
    for (int i = 0; i < CLOSE_RINGS; i++)
        io_uring_queue_exit(&rings[i]);
}

struct teardown {
    fipc_queue *q;
    uint32_t waiting;
};

/* A child whose ring holds waits on every kind of object when it exits. */
static int exit_with_waits(int i, void *arg)
{
    struct teardown *t = arg;
    test_child_setup();
    struct io_uring ring;
    CHILD_CHECK(io_uring_queue_init(8, &ring, 0) == 0, 1);
    CHILD_CHECK(fipc_queue_prep_wait(io_uring_get_sqe(&ring), t->q, FIPC_READABLE) == 0, 2);
    CHILD_CHECK(io_uring_submit(&ring) == 1, 3);
    test_flag_set(&t->waiting, 1);
    _exit(CHILD_OK); /* the ring goes with the process */
}

/* A ring torn down with waits pending (io_uring_queue_exit, or its process
 * exiting): the waits are cancelled, their registrations cost the next put
 * one wake, and the queue works as before, for a new ring too. */
Test(uring, a_ring_torn_down_with_waits_pending_leaves_the_objects_working)
{
    need_futex_ops();
    struct teardown *t = test_shared(sizeof *t);
    t->q = new_queue(4, 8, 0);
    fipc_event *e = fipc_event_new(NULL);
    fipc_sem *s = fipc_sem_new(NULL, 0);
    struct io_uring ring;
    ring_init(&ring, 8);
    cr_assert_eq(fipc_queue_prep_wait(sqe_of(&ring), t->q, FIPC_READABLE), 0);
    cr_assert_eq(fipc_event_prep_wait(sqe_of(&ring), e), 0);
    cr_assert_eq(fipc_sem_prep_wait(sqe_of(&ring), s), 0);
    submit(&ring, 3);
    io_uring_queue_exit(&ring);

    pid_t pid = test_fork(exit_with_waits, 0, t);
    test_expect_ok(pid);
    cr_assert_eq(test_flag_get(&t->waiting), 1);

    uint32_t x = 9;
    uint64_t y;
    size_t len;
    cr_assert_eq(fipc_queue_put(t->q, &x, sizeof x, 0), 0);
    cr_assert_eq(t->q->not_empty.sleepers, 0, "one wake took the stale registrations");
    int g = fipc_queue_get(t->q, &y, sizeof y, &len, 0);
    cr_assert_eq(g, 0, "get: %s", fipc_strerror(g));
    cr_assert_eq(fipc_event_set(e), 0);
    cr_assert_eq(fipc_sem_release(s), 0);
    cr_assert_eq(fipc_sem_acquire(s, 0), 0);

    ring_init(&ring, 4);
    struct io_uring_sqe *sqe = sqe_of(&ring);
    cr_assert_eq(fipc_queue_prep_wait(sqe, t->q, FIPC_READABLE), 0);
    sqe->user_data = 5;
    submit(&ring, 1);
    cr_assert_eq(fipc_queue_put(t->q, &x, sizeof x, 0), 0);
    int res;
    uint64_t ud;
    cr_assert(next_cqe(&ring, HANDSHAKE_NS, &res, &ud), "a new ring waits as before");
    cr_assert_eq(ud, 5);
    io_uring_queue_exit(&ring);
}

/* ---- Error codes ---- */

static bool untouched(const struct io_uring_sqe *sqe)
{
    const unsigned char *b = (const unsigned char *)sqe;
    for (size_t i = 0; i < sizeof *sqe; i++)
        if (b[i] != 0xa5) return false;
    return true;
}

Test(uring, bad_arguments_are_einval_and_leave_the_sqe_untouched)
{
    need_futex_ops();
    fipc_queue *q = new_queue(4, 8, 0);
    fipc_jqueue *j = new_jqueue(4, 8);
    fipc_event *e = fipc_event_new(NULL);
    fipc_sem *s = fipc_sem_new(NULL, 0);
    struct io_uring_sqe sqe;
    memset(&sqe, 0xa5, sizeof sqe);

    cr_assert_eq(fipc_queue_prep_wait(NULL, q, FIPC_READABLE), -EINVAL);
    cr_assert_eq(fipc_queue_prep_wait(&sqe, NULL, FIPC_READABLE), -EINVAL);
    cr_assert_eq(fipc_queue_prep_wait(&sqe, q, 0), -EINVAL);
    cr_assert_eq(fipc_queue_prep_wait(&sqe, q, FIPC_READABLE | FIPC_WRITABLE), -EINVAL,
                 "one direction per wait");
    cr_assert_eq(fipc_queue_prep_wait(&sqe, q, FIPC_JOINED), -EINVAL);
    cr_assert_eq(fipc_jqueue_prep_wait(NULL, j, FIPC_READABLE), -EINVAL);
    cr_assert_eq(fipc_jqueue_prep_wait(&sqe, NULL, FIPC_READABLE), -EINVAL);
    cr_assert_eq(fipc_jqueue_prep_wait(&sqe, j, FIPC_JOINED), -EINVAL, "join has its own call");
    cr_assert_eq(fipc_jqueue_prep_wait(&sqe, j, 8), -EINVAL);
    cr_assert_eq(fipc_jqueue_prep_join(NULL, j), -EINVAL);
    cr_assert_eq(fipc_jqueue_prep_join(&sqe, NULL), -EINVAL);
    cr_assert_eq(fipc_event_prep_wait(NULL, e), -EINVAL);
    cr_assert_eq(fipc_event_prep_wait(&sqe, NULL), -EINVAL);
    cr_assert_eq(fipc_sem_prep_wait(NULL, s), -EINVAL);
    cr_assert_eq(fipc_sem_prep_wait(&sqe, NULL), -EINVAL);
    cr_assert(untouched(&sqe));
    cr_assert_eq(q->not_empty.sleepers, 0, "a refused call registers nothing");
}

Test(uring, a_queue_a_peer_overwrote_is_eproto)
{
    need_futex_ops();
    fipc_queue *q = new_queue(4, 8, 0);
    q->capacity = 1ull << 60; /* more than the arena holds */
    /* In a new process, which has no view of q yet and must validate it
     * (this one may keep the view it made at creation). */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct io_uring_sqe sqe;
        memset(&sqe, 0xa5, sizeof sqe);
        CHILD_CHECK(fipc_queue_prep_wait(&sqe, q, FIPC_READABLE) == -EPROTO, 1);
        CHILD_CHECK(untouched(&sqe), 2);
        _exit(CHILD_OK);
    }
    test_expect_ok(pid);
}

/* The forced "kernel without io_uring futex operations" path: every
 * preparer answers -EOPNOTSUPP, before checking anything else, and touches
 * nothing. */
Test(uring, without_io_uring_futex_operations_every_preparer_is_eopnotsupp)
{
    fipc_queue *q = new_queue(4, 8, 0);
    fipc_jqueue *j = new_jqueue(4, 8);
    fipc_event *e = fipc_event_new(NULL);
    fipc_sem *s = fipc_sem_new(NULL, 1);
    struct io_uring_sqe sqe;
    memset(&sqe, 0xa5, sizeof sqe);
    fipc__uring_pretend_unsupported(true);
    cr_assert_eq(fipc_queue_prep_wait(&sqe, q, FIPC_READABLE), -EOPNOTSUPP);
    cr_assert_eq(fipc_queue_prep_wait(&sqe, q, FIPC_WRITABLE), -EOPNOTSUPP);
    cr_assert_eq(fipc_jqueue_prep_wait(&sqe, j, FIPC_READABLE), -EOPNOTSUPP);
    cr_assert_eq(fipc_jqueue_prep_join(&sqe, j), -EOPNOTSUPP);
    cr_assert_eq(fipc_event_prep_wait(&sqe, e), -EOPNOTSUPP);
    cr_assert_eq(fipc_sem_prep_wait(&sqe, s), -EOPNOTSUPP, "even when ready");
    cr_assert(untouched(&sqe));
    cr_assert_eq(q->not_empty.sleepers, 0, "nothing registered");
    cr_assert_eq(fipc_queue_prep_wait(NULL, q, FIPC_READABLE), -EINVAL, "NULL is still EINVAL");
    fipc__uring_pretend_unsupported(false);
    cr_assert_eq(fipc_sem_prep_wait(&sqe, s), 1, "supported again");
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

/* An MPMC producer killed between its claim and its publish leaves a hole
 * at head with an item behind it.  A loop that only prepares and gets with
 * timeout 0 still passes it: while the claim is in the way, the SQE is a
 * short timeout, and the prepare after it repairs the claim of the dead. */
Test(uring, a_loop_passes_the_claim_of_a_producer_killed_mid_put)
{
    need_futex_ops();
    fipc_queue *q = new_queue(4, 8, 0);
    pid_t pid = test_fork(claim_put_and_die, 0, q);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    uint64_t x = 77, y = 0;
    size_t len;
    cr_assert_eq(fipc_queue_put(q, &x, sizeof x, 0), 0);
    struct io_uring ring;
    ring_init(&ring, 4);
    int64_t t0 = test_now_ns();
    int timeouts = 0;
    for (;;) {
        int g = fipc_queue_get(q, &y, sizeof y, &len, 0);
        if (g == 0) break;
        cr_assert_eq(g, -EAGAIN);
        struct io_uring_sqe *sqe = sqe_of(&ring);
        int r = fipc_queue_prep_wait(sqe, q, FIPC_READABLE);
        cr_assert(r == 0 || r == 1, "prep: %d", r);
        timeouts += sqe->opcode == IORING_OP_TIMEOUT;
        submit(&ring, 1);
        int res;
        uint64_t ud;
        cr_assert(next_cqe(&ring, HANDSHAKE_NS, &res, &ud),
                  "the loop was never told to look again");
        cr_assert_lt(test_now_ns() - t0, HANDSHAKE_NS);
    }
    cr_assert_eq(y, 77);
    cr_assert_gt(timeouts, 0, "the claim was in the way for a while");
    cr_log_info("passed the dead claim after %.1f ms, %d timeouts",
                (double)(test_now_ns() - t0) / 1e6, timeouts);
    io_uring_queue_exit(&ring);
}

/* ---- Death: the process that would make the object ready is killed ---- */

struct doomed {
    fipc_event *e;
    uint32_t started;
};

static int late_setter(int i, void *arg)
{
    struct doomed *d = arg;
    test_child_setup();
    test_flag_add(&d->started);
    for (;;)
        pause(); /* killed before it ever sets */
    fipc_event_set(d->e);
    return CHILD_OK;
}

/* The loop waits on the event beside the setter's pidfd (and, in a second
 * ring, with a linked timeout alone): the kill ends both waits, neither
 * hangs, and the event was never set. */
Test(uring, a_setter_sigkilled_ends_the_loop_on_its_pidfd_or_on_a_linked_timeout)
{
    need_futex_ops();
    struct doomed *d = test_shared(sizeof *d);
    d->e = fipc_event_new(NULL);
    pid_t pid = test_fork(late_setter, 0, d);
    cr_assert(test_wait_until_at_least(&d->started, 1, HANDSHAKE_NS));
    int pidfd = test_pidfd_open(pid);
    cr_assert_geq(pidfd, 0);

    struct io_uring ring, timed;
    ring_init(&ring, 4);
    ring_init(&timed, 4);
    struct io_uring_sqe *sqe = sqe_of(&ring);
    cr_assert_eq(fipc_event_prep_wait(sqe, d->e), 0);
    sqe->user_data = 1;
    sqe = sqe_of(&ring);
    io_uring_prep_poll_add(sqe, pidfd, POLLIN);
    sqe->user_data = 2;
    submit(&ring, 2);

    sqe = sqe_of(&timed);
    cr_assert_eq(fipc_event_prep_wait(sqe, d->e), 0);
    sqe->user_data = 3;
    sqe->flags |= IOSQE_IO_LINK;
    struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100000000};
    sqe = sqe_of(&timed);
    io_uring_prep_link_timeout(sqe, &ts, 0);
    sqe->user_data = 4;
    submit(&timed, 2);

    cr_assert_eq(kill(pid, SIGKILL), 0);
    int res;
    uint64_t ud;
    cr_assert(next_cqe(&ring, HANDSHAKE_NS, &res, &ud), "the loop hangs");
    cr_assert_eq(ud, 2, "the pidfd, not the event");
    cr_assert(res & POLLIN);
    test_kill_and_reap(pid);
    bool wait_ended = false;
    for (int i = 0; i < 2; i++) {
        cr_assert(next_cqe(&timed, HANDSHAKE_NS, &res, &ud), "the timed loop hangs");
        if (ud == 3) {
            cr_assert_eq(res, -ECANCELED, "ended by its timeout: %d", res);
            wait_ended = true;
        }
    }
    cr_assert(wait_ended);
    cr_assert_not(fipc_event_is_set(d->e));
    close(pidfd);
    io_uring_queue_exit(&ring);
    io_uring_queue_exit(&timed);
}
