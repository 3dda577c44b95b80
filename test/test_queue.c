/*
 * test_queue.c - fipc_queue: bounded queues of byte messages shared by
 * processes.
 *
 * The contract every queue keeps (queue_contract.h) runs on every cell of
 * {MPMC, SPSC} x {capacity 64, 100, 3} x {put/get, put_many/get_many}:
 * exactly-once delivery in per-producer order under stress, laps and the
 * 32- and 64-bit wraps, message lengths, bad input, timeouts, sleepers
 * woken by the other side, close and its race with put, signals, and a
 * second mapping.  Here besides: the seeds' examples (a child's message
 * reaching its parent, 10 producers and 10 consumers on Queue(3)), bad
 * arguments to create and NULL snapshots, how an SPSC put racing with
 * close settles, the death of a sleeping producer or consumer, and a death
 * between changing the ring and waking the other side.
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 * The stress counts may be scaled with FIPC_TEST_SCALE (e.g. 0.1).
 */
#include "common.h"
#include "futex_faults.h"
#include "test_hooks.h"

TestSuite(queue, .timeout = 240);

/* ---- The contract, for fipc_queue ---- */

#define QC_SUITE    queue
#define QC_T        fipc_queue
#define QC(verb)    fipc_queue_##verb
#define QC_RAW(q)   (q)
#define QC_JOINABLE 0
#include "queue_contract.h"

/* ---- Helpers of the tests below ---- */

static fipc_queue *new_queue(size_t capacity, size_t max_item, unsigned flags)
{
    fipc_queue *q = NULL;
    int r = fipc_queue_create(&q, NULL, capacity, max_item, flags);
    cr_assert_eq(r, 0, "fipc_queue_create: %s", fipc_strerror(r));
    cr_assert_not_null(q);
    return q;
}

/* Put a NUL-terminated string, without the NUL, expecting success. */
static void put_str(fipc_queue *q, const char *s)
{
    int r = fipc_queue_put(q, s, strlen(s), 0);
    cr_assert_eq(r, 0, "put \"%s\": %s", s, fipc_strerror(r));
}

/* Get one message with timeout 0 and assert it is the string s. */
static void get_expect_str(fipc_queue *q, const char *s)
{
    char buf[256];
    size_t cap = fipc_queue_max_item(q);
    cr_assert_leq(cap, sizeof buf);
    size_t len = 9999;
    int r = fipc_queue_get(q, buf, cap, &len, 0);
    cr_assert_eq(r, 0, "get (expecting \"%s\"): %s", s, fipc_strerror(r));
    cr_assert_eq(len, strlen(s), "got %zu bytes, expected \"%s\"", len, s);
    cr_assert(memcmp(buf, s, len) == 0, "got \"%.*s\", expected \"%s\"", (int)len, buf, s);
}

/* ---- A child puts, the parent gets ---- */

#define HELLO "[Fri May 11 17:28:43 2018, from Eva, hello]"

static int hello_child(void *arg)
{
    fipc_queue *q = arg;
    char msg[128];
    int n = snprintf(msg, sizeof msg, "%s pid %d", HELLO, (int)getpid());
    CHILD_CHECK(fipc_queue_put(q, msg, (size_t)n, HANDSHAKE_NS) == 0, 1);
    return CHILD_OK;
}

Test(queue, message_put_by_a_child_process_is_got_by_the_parent)
{
    fipc_queue *q = new_queue(8, 128, 0);
    fipc_process *p = NULL;
    cr_assert_eq(fipc_process_start(&p, hello_child, q, NULL), 0);
    char buf[128], want[128];
    size_t len = 0;
    int r = fipc_queue_get(q, buf, sizeof buf, &len, HANDSHAKE_NS);
    cr_assert_eq(r, 0, "get: %s", fipc_strerror(r));
    int n = snprintf(want, sizeof want, "%s pid %d", HELLO, (int)fipc_process_pid(p));
    cr_assert_eq(len, (size_t)n);
    cr_assert(memcmp(buf, want, len) == 0, "got \"%.*s\"", (int)len, buf);
    test_process_expect_ok(p);
    cr_assert(fipc_queue_empty(q));
}

/* ---- 10 producers and 10 consumers on Queue(3) ---- */

#define TEN          10
#define TEN_MESSAGES 50 /* per producer; a few suffice to fill Queue(3) often */

struct ten {
    fipc_queue *q;
    uint32_t seen[TEN][TEN_MESSAGES]; /* atomic; how often each message arrived */
};

struct ten_arg {
    struct ten *t;
    int i;
};

static int ten_producer(void *arg)
{
    struct ten_arg *a = arg;
    for (int k = 0; k < TEN_MESSAGES; k++) {
        char msg[64];
        int n = snprintf(msg, sizeof msg, "%d:%d(put) pid %d", a->i, k, (int)getpid());
        CHILD_CHECK(fipc_queue_put(a->t->q, msg, (size_t)n, HANDSHAKE_NS) == 0, 1);
    }
    return CHILD_OK;
}

static int ten_consumer(void *arg)
{
    struct ten_arg *a = arg;
    for (int k = 0; k < TEN_MESSAGES; k++) {
        char buf[65];
        size_t len = 0;
        CHILD_CHECK(fipc_queue_get(a->t->q, buf, 64, &len, HANDSHAKE_NS) == 0, 1);
        CHILD_CHECK(len > 0 && len <= 64, 2);
        buf[len] = '\0';
        int producer = -1, seq = -1;
        CHILD_CHECK(sscanf(buf, "%d:%d(put)", &producer, &seq) == 2, 3);
        CHILD_CHECK(producer >= 0 && producer < TEN && seq >= 0 && seq < TEN_MESSAGES, 4);
        __atomic_fetch_add(&a->t->seen[producer][seq], 1, __ATOMIC_RELAXED);
    }
    return CHILD_OK;
}

Test(queue, ten_producers_and_ten_consumers_on_queue_of_3_deliver_each_message_once)
{
    struct ten *t = test_shared(sizeof *t);
    t->q = new_queue(3, 64, 0);
    struct ten_arg args[TEN];
    fipc_process *producers[TEN], *consumers[TEN];
    for (int i = 0; i < TEN; i++) {
        args[i] = (struct ten_arg){.t = t, .i = i};
        cr_assert_eq(fipc_process_start(&producers[i], ten_producer, &args[i], NULL), 0);
    }
    for (int i = 0; i < TEN; i++)
        cr_assert_eq(fipc_process_start(&consumers[i], ten_consumer, &args[i], NULL), 0);
    for (int i = 0; i < TEN; i++)
        test_process_expect_ok(producers[i]);
    for (int i = 0; i < TEN; i++)
        test_process_expect_ok(consumers[i]);
    for (int i = 0; i < TEN; i++)
        for (int k = 0; k < TEN_MESSAGES; k++)
            cr_assert_eq(t->seen[i][k], 1, "message %d of producer %d arrived %u times", k, i,
                         t->seen[i][k]);
    cr_assert(fipc_queue_empty(t->q));
}

/* ---- Bad arguments to create, and a NULL queue ---- */

Test(queue, create_rejects_zero_capacity_or_max_item_and_bad_arguments_with_einval)
{
    fipc_queue *q = NULL;
    cr_assert_eq(fipc_queue_create(&q, NULL, 0, 16, 0), -EINVAL);
    cr_assert_eq(fipc_queue_create(&q, NULL, 4, 0, 0), -EINVAL);
    cr_assert_eq(fipc_queue_create(NULL, NULL, 4, 16, 0), -EINVAL);
    cr_assert_eq(fipc_queue_create(&q, NULL, FIPC_QUEUE_CAPACITY_MAX + 1, 16, 0), -EINVAL);
    cr_assert_eq(fipc_queue_create(&q, NULL, 4, FIPC_QUEUE_ITEM_MAX + 1, 0), -EINVAL);
    cr_assert_eq(fipc_queue_create(&q, NULL, 4, 16, 0x80000000u), -EINVAL);
    cr_assert_null(q, "no failed create wrote a queue");
}

Test(queue, null_queue_gives_einval_and_empty_snapshots)
{
    char buf[16] = "x";
    size_t len, lens[2];
    struct iovec iov = {.iov_base = buf, .iov_len = 1};
    cr_assert_eq(fipc_queue_put(NULL, buf, 1, 0), -EINVAL);
    cr_assert_eq(fipc_queue_get(NULL, buf, sizeof buf, &len, 0), -EINVAL);
    cr_assert_eq(fipc_queue_put_many(NULL, &iov, 1, 0), -EINVAL);
    cr_assert_eq(fipc_queue_get_many(NULL, buf, 8, lens, 2, 0), -EINVAL);
    cr_assert_eq(fipc_queue_close(NULL), -EINVAL);
    cr_assert_eq(fipc_queue_qsize(NULL), 0);
    cr_assert_not(fipc_queue_empty(NULL));
    cr_assert_not(fipc_queue_full(NULL));
    cr_assert_not(fipc_queue_closed(NULL));
    cr_assert_eq(fipc_queue_capacity(NULL), 0);
    cr_assert_eq(fipc_queue_max_item(NULL), 0);
}

/* ---- SPSC close: how a put racing with close settles ----
 *
 * An SPSC put publishes first and looks at closed afterwards; finding the
 * queue closed, it settles with the consumer.  fipc__queue_spsc_put_late
 * is such a put (it skips the check of closed that comes first) and runs a
 * callback between publishing and settling, so these tests play each order
 * deterministically, at the start of the position space and just below
 * the wraps of the word that records the outcome and of positions. */

static void expect_get(fipc_queue *q, uint64_t want)
{
    uint64_t got = 0;
    size_t len = 0;
    int r = fipc_queue_get(q, &got, 8, &len, 0);
    cr_assert_eq(r, 0, "get: %s", fipc_strerror(r));
    cr_assert_eq(len, 8);
    cr_assert_eq(got, want, "got %#llx, want %#llx", (unsigned long long)got,
                 (unsigned long long)want);
}

static void expect_epipe(fipc_queue *q)
{
    uint64_t got;
    size_t len;
    cr_assert_eq(fipc_queue_get(q, &got, 8, &len, 0), -EPIPE);
}

/* An SPSC queue started at position start, holding one message (0xa),
 * then closed. */
static fipc_queue *closed_spsc_holding_a(uint64_t start)
{
    fipc_queue *q = new_queue(4, 8, FIPC_QUEUE_SPSC);
    fipc__queue_rebase(q, start);
    uint64_t a = 0xa;
    cr_assert_eq(fipc_queue_put(q, &a, 8, 0), 0);
    cr_assert_eq(fipc_queue_close(q), 0);
    return q;
}

/* The late put (one message, or a batch of two) settles first: its
 * messages count, the consumer reads them one get at a time and only then
 * reports -EPIPE. */
static void spsc_late_put_settles_first(uint64_t start, size_t n)
{
    fipc_queue *q = closed_spsc_holding_a(start);
    uint64_t b[2] = {0xb0, 0xb1};
    struct iovec late[2] = {{&b[0], 8}, {&b[1], 8}};
    cr_assert_eq(fipc__queue_spsc_put_late(q, late, n, NULL, NULL, NULL), (int)n,
                 "start %#llx, %zu", (unsigned long long)start, n);
    cr_assert_eq(fipc_queue_qsize(q), 1 + n);
    expect_get(q, 0xa);
    for (size_t i = 0; i < n; i++)
        expect_get(q, b[i]);
    expect_epipe(q);
    expect_epipe(q);
    cr_assert_eq(fipc_queue_put(q, &b[0], 8, 0), -EPIPE);
    cr_assert_eq(fipc_queue_qsize(q), 0);
}

/* The consumer settles first, with nothing read: it has reported -EPIPE
 * at the late put's position, so the put fails and its messages, though
 * written into their slots, are never read, however often it asks again. */
static void spsc_consumer_settles_first(uint64_t start, size_t n)
{
    fipc_queue *q = closed_spsc_holding_a(start);
    uint64_t c[2] = {0xc0, 0xc1};
    struct iovec late[2] = {{&c[0], 8}, {&c[1], 8}};
    expect_get(q, 0xa);
    expect_epipe(q);
    cr_assert_eq(fipc__queue_spsc_put_late(q, late, n, NULL, NULL, NULL), -EPIPE,
                 "start %#llx, %zu", (unsigned long long)start, n);
    expect_epipe(q);
    cr_assert_eq(fipc_queue_qsize(q), 0);
    cr_assert(fipc_queue_empty(q));
}

/* Between the late put's publication and its settlement, the consumer
 * reads its messages and then reports -EPIPE after them: the put counts. */
struct drain_then_seal {
    fipc_queue *q;
    uint64_t want[2];
    size_t n;
};

static void drain_then_seal(void *arg)
{
    struct drain_then_seal *d = arg;
    for (size_t i = 0; i < d->n; i++)
        expect_get(d->q, d->want[i]);
    expect_epipe(d->q);
}

static void spsc_consumer_reads_then_settles(uint64_t start, size_t n)
{
    fipc_queue *q = closed_spsc_holding_a(start);
    uint64_t c[2] = {0xc0, 0xc1};
    struct iovec late[2] = {{&c[0], 8}, {&c[1], 8}};
    expect_get(q, 0xa);
    struct drain_then_seal d = {q, {c[0], c[1]}, n};
    cr_assert_eq(fipc__queue_spsc_put_late(q, late, n, NULL, drain_then_seal, &d), (int)n,
                 "start %#llx, %zu: the consumer got the messages, so the put succeeded",
                 (unsigned long long)start, n);
    expect_epipe(q);
    cr_assert_eq(fipc_queue_qsize(q), 0);
}

static const uint64_t settle_starts[] = {
    0, ((uint64_t)1 << 62) - 1, /* the outcome word keeps 62 bits of position */
    ((uint64_t)1 << 32) - 1,    /* slot turns wrap */
    UINT64_MAX,                 /* positions wrap */
};
#define N_SETTLE_STARTS (sizeof settle_starts / sizeof *settle_starts)

/* Each with one message (the confirm of fipc_queue_put's fast path) and
 * with a batch of two. */
Test(queue, spsc_put_racing_close_counts_when_the_producer_settles_first)
{
    for (size_t n = 1; n <= 2; n++)
        for (size_t i = 0; i < N_SETTLE_STARTS; i++)
            spsc_late_put_settles_first(settle_starts[i], n);
}

Test(queue, spsc_put_racing_close_fails_when_the_consumer_settles_first)
{
    for (size_t n = 1; n <= 2; n++)
        for (size_t i = 0; i < N_SETTLE_STARTS; i++)
            spsc_consumer_settles_first(settle_starts[i], n);
}

Test(queue, spsc_put_racing_close_counts_when_the_consumer_read_it_before_settling)
{
    for (size_t n = 1; n <= 2; n++)
        for (size_t i = 0; i < N_SETTLE_STARTS; i++)
            spsc_consumer_reads_then_settles(settle_starts[i], n);
}

/* ---- Death of a sleeping producer or consumer ---- */

struct death {
    fipc_queue *q;
    uint32_t started; /* atomic */
    uint32_t got;     /* messages the survivor received */
};

/* Sleeps in get until killed; returning at all is a failure. */
static int doomed_consumer(int i, void *arg)
{
    struct death *d = arg;
    test_child_setup();
    test_flag_add(&d->started);
    char buf[16];
    size_t len;
    fipc_queue_get(d->q, buf, sizeof buf, &len, FIPC_FOREVER);
    return CHILD_FAIL(1);
}

#define DEATH_MESSAGES 10

static int surviving_consumer(int i, void *arg)
{
    struct death *d = arg;
    test_child_setup();
    test_flag_add(&d->started);
    for (int k = 0; k < DEATH_MESSAGES; k++) {
        char buf[16], want[16];
        size_t len = 0;
        CHILD_CHECK(fipc_queue_get(d->q, buf, sizeof buf, &len, HANDSHAKE_NS) == 0, 1);
        int n = snprintf(want, sizeof want, "msg %d", k);
        CHILD_CHECK(len == (size_t)n && memcmp(buf, want, len) == 0, 2);
        test_flag_add(&d->got);
    }
    return CHILD_OK;
}

Test(queue, consumer_killed_asleep_in_get_does_not_stop_another_consumer)
{
    struct death *d = test_shared(sizeof *d);
    d->q = new_queue(4, 16, 0);
    pid_t doomed = test_fork(doomed_consumer, 0, d);
    cr_assert(test_wait_until_at_least(&d->started, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(doomed, HANDSHAKE_NS));
    pid_t survivor = test_fork(surviving_consumer, 1, d);
    cr_assert(test_wait_until_at_least(&d->started, 2, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(survivor, HANDSHAKE_NS));
    test_kill_and_reap(doomed);

    /* The survivor, asleep too, must be woken for every message. */
    for (int k = 0; k < DEATH_MESSAGES; k++) {
        char msg[16];
        int n = snprintf(msg, sizeof msg, "msg %d", k);
        cr_assert_eq(fipc_queue_put(d->q, msg, (size_t)n, HANDSHAKE_NS), 0);
        if (k % 3 == 0) /* now and then, let it fall asleep again first */
            cr_assert(test_wait_until_at_least(&d->got, (uint32_t)k + 1, HANDSHAKE_NS));
    }
    test_expect_ok(survivor);
    cr_assert_eq(d->got, DEATH_MESSAGES);

    /* No slot was lost to the dead consumer: the whole capacity still works. */
    size_t cap = fipc_queue_capacity(d->q);
    for (size_t k = 0; k < cap; k++)
        cr_assert_eq(fipc_queue_put(d->q, "fill", 4, 0), 0);
    cr_assert_eq(fipc_queue_put(d->q, "over", 4, 0), -EAGAIN);
    for (size_t k = 0; k < cap; k++)
        get_expect_str(d->q, "fill");
    cr_assert(fipc_queue_empty(d->q));
}

static int doomed_producer(int i, void *arg)
{
    struct death *d = arg;
    test_child_setup();
    test_flag_add(&d->started);
    fipc_queue_put(d->q, "doomed", 6, FIPC_FOREVER);
    return CHILD_FAIL(1);
}

static int surviving_producer(int i, void *arg)
{
    struct death *d = arg;
    test_child_setup();
    test_flag_add(&d->started);
    CHILD_CHECK(fipc_queue_put(d->q, "survivor", 8, HANDSHAKE_NS) == 0, 1);
    return CHILD_OK;
}

Test(queue, producer_killed_asleep_on_a_full_queue_does_not_stop_other_producers)
{
    struct death *d = test_shared(sizeof *d);
    d->q = new_queue(4, 16, 0);
    size_t cap = fipc_queue_capacity(d->q);
    for (size_t k = 0; k < cap; k++)
        put_str(d->q, "old");
    pid_t doomed = test_fork(doomed_producer, 0, d);
    cr_assert(test_wait_until_at_least(&d->started, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(doomed, HANDSHAKE_NS));
    pid_t survivor = test_fork(surviving_producer, 1, d);
    cr_assert(test_wait_until_at_least(&d->started, 2, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(survivor, HANDSHAKE_NS));
    test_kill_and_reap(doomed);

    /* Making room must wake the surviving producer. */
    get_expect_str(d->q, "old");
    test_expect_ok(survivor);
    for (size_t k = 1; k < cap; k++)
        get_expect_str(d->q, "old");
    get_expect_str(d->q, "survivor");
    char buf[16];
    size_t len;
    cr_assert_eq(fipc_queue_get(d->q, buf, sizeof buf, &len, 0), -EAGAIN,
                 "the killed producer put nothing");

    /* The queue still works at full capacity for everyone else. */
    for (size_t k = 0; k < cap; k++)
        cr_assert_eq(fipc_queue_put(d->q, "fill", 4, 0), 0);
    cr_assert_eq(fipc_queue_put(d->q, "over", 4, 0), -EAGAIN);
    for (size_t k = 0; k < cap; k++)
        get_expect_str(d->q, "fill");
}

/* ---- Killed between changing the ring and waking ---- */

/* A put or get that dies after moving the ring on but before waking the
 * other side leaves a sleeper whose condition holds and whom nobody will
 * wake: its sleep ends at the one-second re-check, which finds the ring
 * moved.  Each case runs in MPMC and SPSC mode, on Queue(3) (4 slots, so
 * a producer is also held back by head). */

struct dying_side {
    fipc_queue *q;
    uint32_t started; /* the sleeper is about to block; sleeper is set */
    pid_t sleeper;
};

static int item_sleeper_child(int i, void *arg)
{
    struct dying_side *d = arg;
    test_child_setup();
    d->sleeper = getpid();
    test_flag_add(&d->started);
    char buf[16];
    size_t len = 0;
    CHILD_CHECK(fipc_queue_get(d->q, buf, sizeof buf, &len, FIPC_FOREVER) == 0, 1);
    CHILD_CHECK(len == 4 && memcmp(buf, "late", 4) == 0, 2);
    return CHILD_OK;
}

/* Put once the consumer sleeps, and be killed after the slot was filled
 * but before the wake. */
static int put_and_die_child(int i, void *arg)
{
    struct dying_side *d = arg;
    test_child_setup();
    CHILD_CHECK(test_wait_until_at_least(&d->started, 1, HANDSHAKE_NS), 1);
    CHILD_CHECK(test_wait_sleeping(d->sleeper, HANDSHAKE_NS), 2);
    fault_kill_at_next_wake();
    fipc_queue_put(d->q, "late", 4, 0);
    return CHILD_FAIL(3);
}

static void consumer_gets_the_item_when_the_producer_dies(unsigned flags)
{
    struct dying_side *d = test_shared(sizeof *d);
    d->q = new_queue(3, 16, flags);
    pid_t pids[2];
    int status[2];
    pids[0] = test_fork(item_sleeper_child, 0, d);
    pids[1] = test_fork(put_and_die_child, 1, d);

    fault_reap_within(pids, status, 2, FIPC_SEC(10));
    fault_expect_killed(status[1], "the producer");
    fault_expect_ok(status[0], "the consumer", FIPC_SEC(10));
    cr_assert(fipc_queue_empty(d->q), "the item was got once");
}

Test(queue, sleeping_consumer_gets_the_item_when_the_producer_dies_before_waking)
{
    consumer_gets_the_item_when_the_producer_dies(0);
}

Test(queue, sleeping_spsc_consumer_gets_the_item_when_the_producer_dies_before_waking)
{
    consumer_gets_the_item_when_the_producer_dies(FIPC_QUEUE_SPSC);
}

static int room_sleeper_child(int i, void *arg)
{
    struct dying_side *d = arg;
    test_child_setup();
    d->sleeper = getpid();
    test_flag_add(&d->started);
    CHILD_CHECK(fipc_queue_put(d->q, "late", 4, FIPC_FOREVER) == 0, 1);
    return CHILD_OK;
}

/* Get once the producer sleeps, and be killed after the slot was freed but
 * before the wake. */
static int get_and_die_child(int i, void *arg)
{
    struct dying_side *d = arg;
    test_child_setup();
    CHILD_CHECK(test_wait_until_at_least(&d->started, 1, HANDSHAKE_NS), 1);
    CHILD_CHECK(test_wait_sleeping(d->sleeper, HANDSHAKE_NS), 2);
    fault_kill_at_next_wake();
    char buf[16];
    size_t len;
    fipc_queue_get(d->q, buf, sizeof buf, &len, 0);
    return CHILD_FAIL(3);
}

static void producer_gets_room_when_the_consumer_dies(unsigned flags)
{
    struct dying_side *d = test_shared(sizeof *d);
    d->q = new_queue(3, 16, flags);
    put_str(d->q, "one");
    put_str(d->q, "two");
    put_str(d->q, "three");
    pid_t pids[2];
    int status[2];
    pids[0] = test_fork(room_sleeper_child, 0, d);
    pids[1] = test_fork(get_and_die_child, 1, d);

    fault_reap_within(pids, status, 2, FIPC_SEC(10));
    fault_expect_killed(status[1], "the consumer");
    fault_expect_ok(status[0], "the producer", FIPC_SEC(10));
    /* "one" went with the dead consumer. */
    get_expect_str(d->q, "two");
    get_expect_str(d->q, "three");
    get_expect_str(d->q, "late");
    cr_assert(fipc_queue_empty(d->q));
}

Test(queue, sleeping_producer_gets_room_when_the_consumer_dies_before_waking)
{
    producer_gets_room_when_the_consumer_dies(0);
}

Test(queue, sleeping_spsc_producer_gets_room_when_the_consumer_dies_before_waking)
{
    producer_gets_room_when_the_consumer_dies(FIPC_QUEUE_SPSC);
}
