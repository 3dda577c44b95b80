/*
 * test_queue.c - fipc_queue: bounded queues of byte messages shared by
 * processes.  The seeds' Queue(3) walk-through, a child's message reaching
 * its parent, 10 producers and 10 consumers on Queue(3), the
 * producer/consumer model ended by close instead of sentinels, stress runs
 * that check every message arrives once, intact and in per-producer order
 * (MPMC, SPSC and batched), bad input, timeouts, close, the death of a
 * sleeping producer or consumer, and batch counts.
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 * The stress counts may be scaled down with FIPC_TEST_SCALE (e.g. 0.1);
 * unset, each producer sends 1,000,000 messages.
 */
#include "common.h"
#include "futex_faults.h"
#include "queue_impl.h"

#include <pthread.h>

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

/* ---- The seeds' Queue(3) walk-through ---- */

static void walk_through_queue_of_3(unsigned flags)
{
    fipc_queue *q = new_queue(3, 32, flags);
    cr_assert_eq(fipc_queue_capacity(q), 3);
    cr_assert_eq(fipc_queue_max_item(q), 32);
    cr_assert(fipc_queue_empty(q));
    cr_assert_not(fipc_queue_full(q));
    cr_assert_eq(fipc_queue_qsize(q), 0);

    put_str(q, "first");
    cr_assert_eq(fipc_queue_qsize(q), 1);
    cr_assert_not(fipc_queue_empty(q));
    put_str(q, "second");
    cr_assert_eq(fipc_queue_qsize(q), 2);
    cr_assert_not(fipc_queue_full(q));
    put_str(q, "third");
    cr_assert_eq(fipc_queue_qsize(q), 3);
    cr_assert(fipc_queue_full(q), "Queue(3) holding 3 items is full");

    /* put_nowait on a full queue: Python's Full, here -EAGAIN. */
    cr_assert_eq(fipc_queue_put(q, "fourth", 6, 0), -EAGAIN);
    cr_assert_eq(fipc_queue_qsize(q), 3, "the refused put enqueued nothing");

    get_expect_str(q, "first");
    cr_assert_not(fipc_queue_full(q));
    cr_assert_eq(fipc_queue_qsize(q), 2);
    get_expect_str(q, "second");
    cr_assert_eq(fipc_queue_qsize(q), 1);
    get_expect_str(q, "third");
    cr_assert_eq(fipc_queue_qsize(q), 0);

    /* get_nowait on an empty queue: Python's Empty, here -EAGAIN. */
    char buf[32];
    size_t len = 0;
    cr_assert_eq(fipc_queue_get(q, buf, sizeof buf, &len, 0), -EAGAIN);
    cr_assert(fipc_queue_empty(q));
    cr_assert_not(fipc_queue_full(q));
    cr_assert_not(fipc_queue_closed(q));

    /* A second lap around the ring keeps the same bound and order. */
    put_str(q, "fourth");
    put_str(q, "fifth");
    put_str(q, "sixth");
    cr_assert(fipc_queue_full(q));
    cr_assert_eq(fipc_queue_put(q, "seventh", 7, 0), -EAGAIN);
    get_expect_str(q, "fourth");
    put_str(q, "seventh");
    get_expect_str(q, "fifth");
    get_expect_str(q, "sixth");
    get_expect_str(q, "seventh");
    cr_assert(fipc_queue_empty(q));
}

Test(queue, queue_of_3_fills_after_3_puts_and_gives_them_back_in_fifo_order, .timeout = 30)
{
    walk_through_queue_of_3(0);
}

Test(queue, spsc_queue_of_3_fills_after_3_puts_and_gives_them_back_in_fifo_order, .timeout = 30)
{
    walk_through_queue_of_3(FIPC_QUEUE_SPSC);
}

Test(queue, zero_length_message_round_trips_with_length_0, .timeout = 30)
{
    fipc_queue *q = new_queue(4, 16, 0);
    cr_assert_eq(fipc_queue_put(q, NULL, 0, 0), 0);
    cr_assert_eq(fipc_queue_put(q, "x", 0, 0), 0);
    put_str(q, "after");
    cr_assert_eq(fipc_queue_qsize(q), 3);
    char buf[16];
    size_t len = 99;
    cr_assert_eq(fipc_queue_get(q, buf, sizeof buf, &len, 0), 0);
    cr_assert_eq(len, 0);
    len = 99;
    cr_assert_eq(fipc_queue_get(q, buf, sizeof buf, &len, 0), 0);
    cr_assert_eq(len, 0);
    get_expect_str(q, "after");
}

Test(queue, full_max_item_message_round_trips_intact, .timeout = 30)
{
    enum { MAX = 4096 };
    fipc_queue *q = new_queue(2, MAX, 0);
    static unsigned char out[MAX], in[MAX];
    for (size_t i = 0; i < MAX; i++)
        out[i] = (unsigned char)(i * 7 + 3);
    cr_assert_eq(fipc_queue_put(q, out, MAX, 0), 0);
    size_t len = 0;
    cr_assert_eq(fipc_queue_get(q, in, MAX, &len, 0), 0);
    cr_assert_eq(len, MAX);
    cr_assert(memcmp(in, out, MAX) == 0);
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

Test(queue, message_put_by_a_child_process_is_got_by_the_parent, .timeout = 60)
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

Test(queue, ten_producers_and_ten_consumers_on_queue_of_3_deliver_each_message_once, .timeout = 120)
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

/* ---- Producer/consumer model: close instead of sentinels ---- */

#define PC_PRODUCERS 3
#define PC_CONSUMERS 2
#define PC_ITEMS     2000 /* per producer */

struct pc {
    fipc_queue *q;
    uint32_t eaten[PC_PRODUCERS][PC_ITEMS]; /* atomic */
    uint32_t per_consumer[PC_CONSUMERS];    /* written by its consumer only */
};

static int pc_producer(int i, void *arg)
{
    struct pc *pc = arg;
    test_child_setup();
    for (int k = 0; k < PC_ITEMS; k++) {
        char bun[32];
        int n = snprintf(bun, sizeof bun, "bun %d %d", i, k);
        CHILD_CHECK(fipc_queue_put(pc->q, bun, (size_t)n, HANDSHAKE_NS) == 0, 1);
    }
    return CHILD_OK;
}

static int pc_consumer(int i, void *arg)
{
    struct pc *pc = arg;
    test_child_setup();
    for (;;) {
        char buf[33];
        size_t len = 0;
        int r = fipc_queue_get(pc->q, buf, 32, &len, FIPC_FOREVER);
        if (r == -EPIPE) break;
        CHILD_CHECK(r == 0, 1);
        CHILD_CHECK(len <= 32, 2);
        buf[len] = '\0';
        int producer = -1, k = -1;
        CHILD_CHECK(sscanf(buf, "bun %d %d", &producer, &k) == 2, 3);
        CHILD_CHECK(producer >= 0 && producer < PC_PRODUCERS && k >= 0 && k < PC_ITEMS, 4);
        __atomic_fetch_add(&pc->eaten[producer][k], 1, __ATOMIC_RELAXED);
        pc->per_consumer[i]++;
    }
    /* -EPIPE only once drained, and it stays that way. */
    CHILD_CHECK(fipc_queue_closed(pc->q), 5);
    CHILD_CHECK(fipc_queue_empty(pc->q), 6);
    char buf[32];
    size_t len;
    CHILD_CHECK(fipc_queue_get(pc->q, buf, sizeof buf, &len, 0) == -EPIPE, 7);
    return CHILD_OK;
}

Test(queue, consumers_eat_every_item_once_and_stop_with_epipe_after_close, .timeout = 120)
{
    struct pc *pc = test_shared(sizeof *pc);
    pc->q = new_queue(8, 32, 0);
    pid_t consumers[PC_CONSUMERS], producers[PC_PRODUCERS];
    for (int i = 0; i < PC_CONSUMERS; i++)
        consumers[i] = test_fork(pc_consumer, i, pc);
    for (int i = 0; i < PC_PRODUCERS; i++)
        producers[i] = test_fork(pc_producer, i, pc);
    for (int i = 0; i < PC_PRODUCERS; i++)
        test_expect_ok(producers[i]);
    cr_assert_eq(fipc_queue_close(pc->q), 0);
    for (int i = 0; i < PC_CONSUMERS; i++)
        test_expect_ok(consumers[i]);

    uint32_t total = 0;
    for (int i = 0; i < PC_CONSUMERS; i++)
        total += pc->per_consumer[i];
    cr_assert_eq(total, PC_PRODUCERS * PC_ITEMS);
    for (int i = 0; i < PC_PRODUCERS; i++)
        for (int k = 0; k < PC_ITEMS; k++)
            cr_assert_eq(pc->eaten[i][k], 1, "bun %d of producer %d eaten %u times", k, i,
                         pc->eaten[i][k]);
}

/* ---- Stress: exactly once, intact, in per-producer order ---- */

#define STRESS_MAX_ITEM 64
#define STRESS_HEAD     16 /* producer, checksum, sequence */
#define STRESS_MAX_PROC 4
#define STRESS_BATCH    32

struct stress_head {
    uint32_t producer;
    uint32_t sum;
    uint64_t seq;
};
_Static_assert(sizeof(struct stress_head) == STRESS_HEAD, "message header layout");

struct stress_tally {
    uint64_t count[STRESS_MAX_PROC];  /* messages of each producer */
    uint64_t seqsum[STRESS_MAX_PROC]; /* sum of their sequence numbers */
};

struct stress {
    fipc_queue *q;
    int producers;
    uint64_t per_producer;
    bool batched;
    /* The first failed consumer check (atomic); that consumer also closes
     * the queue so the producers stop at once instead of blocking. */
    int failure;
    /* Written by consumer c only; read by the parent after joining. */
    struct stress_tally tally[STRESS_MAX_PROC];
    /* One bit per (producer, seq), set with an atomic or: a second arrival
     * of a message finds its bit set. */
    uint64_t *seen;
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* The length of message seq of producer p: 16..64 bytes, varied. */
static size_t stress_len(uint32_t p, uint64_t seq)
{
    return STRESS_HEAD +
           (size_t)(mix64(((uint64_t)p << 48) ^ seq) % (STRESS_MAX_ITEM - STRESS_HEAD + 1));
}

/* FNV-1a over the message, its checksum field counted as zero. */
static uint32_t stress_sum(const unsigned char *m, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (i >= 4 && i < 8) ? 0 : m[i];
        h = (h ^ c) * 16777619u;
    }
    return h;
}

static size_t stress_make(unsigned char *m, uint32_t p, uint64_t seq)
{
    size_t len = stress_len(p, seq);
    struct stress_head h = {.producer = p, .sum = 0, .seq = seq};
    memcpy(m, &h, sizeof h);
    uint64_t r = mix64(seq * 2654435761u + p);
    for (size_t i = STRESS_HEAD; i < len; i++)
        m[i] = (unsigned char)(r >> ((i % 8) * 8)) ^ (unsigned char)i;
    h.sum = stress_sum(m, len);
    memcpy(m, &h, sizeof h);
    return len;
}

/* Check one received message; 0, or the number of the failed check. */
static int stress_check(struct stress *s, int consumer, int64_t *last, const unsigned char *m,
                        size_t len)
{
    if (len < STRESS_HEAD || len > STRESS_MAX_ITEM) return 20;
    struct stress_head h;
    memcpy(&h, m, sizeof h);
    if (h.producer >= (uint32_t)s->producers) return 21;
    if (h.seq >= s->per_producer) return 22;
    if (len != stress_len(h.producer, h.seq)) return 23;
    if (h.sum != stress_sum(m, len)) return 24;
    /* Per-producer FIFO as seen by this consumer. */
    if ((int64_t)h.seq <= last[h.producer]) return 25;
    last[h.producer] = (int64_t)h.seq;
    uint64_t bit = h.producer * s->per_producer + h.seq;
    uint64_t old = __atomic_fetch_or(&s->seen[bit / 64], 1ull << (bit % 64), __ATOMIC_RELAXED);
    if (old & (1ull << (bit % 64))) return 26;
    s->tally[consumer].count[h.producer]++;
    s->tally[consumer].seqsum[h.producer] += h.seq;
    return 0;
}

static int stress_fail(struct stress *s, int code)
{
    int none = 0;
    __atomic_compare_exchange_n(&s->failure, &none, code, false, __ATOMIC_ACQ_REL,
                                __ATOMIC_RELAXED);
    fipc_queue_close(s->q);
    return code;
}

static int stress_producer(int i, void *arg)
{
    struct stress *s = arg;
    test_child_setup();
    uint32_t p = (uint32_t)i;
    if (!s->batched) {
        unsigned char m[STRESS_MAX_ITEM];
        for (uint64_t seq = 0; seq < s->per_producer; seq++) {
            size_t len = stress_make(m, p, seq);
            CHILD_CHECK(fipc_queue_put(s->q, m, len, HANDSHAKE_NS) == 0, 1);
        }
        return CHILD_OK;
    }
    static unsigned char m[STRESS_BATCH][STRESS_MAX_ITEM];
    struct iovec iov[STRESS_BATCH];
    uint64_t seq = 0;
    while (seq < s->per_producer) {
        uint64_t n = 1 + mix64(seq ^ ((uint64_t)p << 40)) % STRESS_BATCH;
        if (n > s->per_producer - seq) n = s->per_producer - seq;
        for (uint64_t k = 0; k < n; k++) {
            iov[k].iov_base = m[k];
            iov[k].iov_len = stress_make(m[k], p, seq + k);
        }
        int r = fipc_queue_put_many(s->q, iov, (size_t)n, HANDSHAKE_NS);
        CHILD_CHECK(r >= 1 && (uint64_t)r <= n, 2);
        seq += (uint64_t)r; /* the rest go out again with the next call */
    }
    return CHILD_OK;
}

static int stress_consumer(int i, void *arg)
{
    struct stress *s = arg;
    test_child_setup();
    int64_t last[STRESS_MAX_PROC];
    for (int p = 0; p < STRESS_MAX_PROC; p++)
        last[p] = -1;
    static unsigned char m[STRESS_BATCH][STRESS_MAX_ITEM];
    size_t lens[STRESS_BATCH];
    uint64_t calls = 0;
    for (;;) {
        int r;
        if (!s->batched) {
            /* cap == max_item exactly: the smallest buffer allowed. */
            r = fipc_queue_get(s->q, m[0], STRESS_MAX_ITEM, &lens[0], HANDSHAKE_NS);
            if (r == 0) r = 1;
        } else {
            size_t n = 1 + (size_t)(mix64(calls++ ^ ((uint64_t)i << 40)) % STRESS_BATCH);
            r = fipc_queue_get_many(s->q, m, STRESS_MAX_ITEM, lens, n, HANDSHAKE_NS);
            if (r > 0 && (size_t)r > n) return stress_fail(s, 3);
        }
        if (r == -EPIPE) break;
        if (r < 1) return stress_fail(s, 4);
        for (int k = 0; k < r; k++) {
            int bad = stress_check(s, i, last, m[k], lens[k]);
            if (bad) return stress_fail(s, bad);
        }
    }
    return CHILD_OK;
}

static void run_stress(int producers, int consumers, size_t capacity, unsigned flags, bool batched)
{
    cr_assert(producers <= STRESS_MAX_PROC && consumers <= STRESS_MAX_PROC);
    struct stress *s = test_shared(sizeof *s);
    s->q = new_queue(capacity, STRESS_MAX_ITEM, flags);
    s->producers = producers;
    s->per_producer = test_scaled(1000000);
    s->batched = batched;
    uint64_t bits = (uint64_t)producers * s->per_producer;
    s->seen = test_shared((bits + 63) / 64 * sizeof(uint64_t));

    pid_t cons[STRESS_MAX_PROC], prods[STRESS_MAX_PROC];
    for (int i = 0; i < consumers; i++)
        cons[i] = test_fork(stress_consumer, i, s);
    for (int i = 0; i < producers; i++)
        prods[i] = test_fork(stress_producer, i, s);
    int pstatus[STRESS_MAX_PROC];
    for (int i = 0; i < producers; i++)
        cr_assert_eq(waitpid(prods[i], &pstatus[i], 0), prods[i]);
    /* Every message is in; consumers drain the rest and then see -EPIPE. */
    cr_assert_eq(fipc_queue_close(s->q), 0);
    for (int i = 0; i < consumers; i++)
        test_expect_ok(cons[i]);
    for (int i = 0; i < producers; i++)
        cr_assert(WIFEXITED(pstatus[i]) && WEXITSTATUS(pstatus[i]) == 0, "producer %d: status %#x",
                  i, pstatus[i]);

    uint64_t n = s->per_producer;
    for (int p = 0; p < producers; p++) {
        uint64_t count = 0, seqsum = 0;
        for (int c = 0; c < consumers; c++) {
            count += s->tally[c].count[p];
            seqsum += s->tally[c].seqsum[p];
        }
        cr_assert_eq(count, n, "producer %d: %llu of %llu messages arrived", p,
                     (unsigned long long)count, (unsigned long long)n);
        cr_assert_eq(seqsum, n * (n - 1) / 2, "producer %d: sequence sum %llu", p,
                     (unsigned long long)seqsum);
    }
    for (uint64_t w = 0; w < bits / 64; w++)
        cr_assert_eq(s->seen[w], ~0ull, "messages missing near bit %llu",
                     (unsigned long long)w * 64);
    if (bits % 64) cr_assert_eq(s->seen[bits / 64], (1ull << (bits % 64)) - 1);
    cr_assert(fipc_queue_empty(s->q));
    cr_assert_eq(fipc_queue_qsize(s->q), 0);
}

Test(queue, stress_1_producer_1_consumer_delivers_every_message_once_in_order, .timeout = 240)
{
    run_stress(1, 1, 64, 0, false);
}

Test(queue, stress_spsc_1_producer_1_consumer_delivers_every_message_once_in_order, .timeout = 240)
{
    run_stress(1, 1, 100, FIPC_QUEUE_SPSC, false); /* 100: not a power of two */
}

Test(queue, stress_2_producers_2_consumers_deliver_every_message_once_in_order, .timeout = 240)
{
    run_stress(2, 2, 100, 0, false);
}

Test(queue, stress_4_producers_4_consumers_deliver_every_message_once_in_order, .timeout = 240)
{
    run_stress(4, 4, 64, 0, false);
}

Test(queue, stress_batches_2_producers_2_consumers_deliver_every_message_once_in_order,
     .timeout = 240)
{
    run_stress(2, 2, 64, 0, true);
}

/* ---- Bad input ---- */

Test(queue, create_rejects_zero_capacity_or_max_item_and_bad_arguments_with_einval, .timeout = 30)
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

Test(queue, put_longer_than_max_item_fails_with_emsgsize_and_enqueues_nothing, .timeout = 30)
{
    fipc_queue *q = new_queue(4, 8, 0);
    char big[9] = "123456789";
    cr_assert_eq(fipc_queue_put(q, big, 9, 0), -EMSGSIZE);
    cr_assert_eq(fipc_queue_put(q, big, 9, FIPC_MSEC(10)), -EMSGSIZE);
    cr_assert_eq(fipc_queue_qsize(q), 0);
    cr_assert(fipc_queue_empty(q));
    char buf[8];
    size_t len;
    cr_assert_eq(fipc_queue_get(q, buf, sizeof buf, &len, 0), -EAGAIN);
    /* Exactly max_item is fine. */
    cr_assert_eq(fipc_queue_put(q, big, 8, 0), 0);
    cr_assert_eq(fipc_queue_get(q, buf, sizeof buf, &len, 0), 0);
    cr_assert_eq(len, 8);
    cr_assert(memcmp(buf, big, 8) == 0);
}

Test(queue, put_with_null_item_and_nonzero_length_fails_with_einval, .timeout = 30)
{
    fipc_queue *q = new_queue(4, 8, 0);
    cr_assert_eq(fipc_queue_put(q, NULL, 1, 0), -EINVAL);
    cr_assert_eq(fipc_queue_qsize(q), 0);
}

Test(queue, get_with_cap_below_max_item_fails_with_einval_and_takes_nothing, .timeout = 30)
{
    fipc_queue *q = new_queue(4, 16, 0);
    put_str(q, "short");
    char buf[16];
    size_t len = 77;
    /* The message would fit, but cap < max_item is refused all the same. */
    cr_assert_eq(fipc_queue_get(q, buf, 15, &len, 0), -EINVAL);
    cr_assert_eq(fipc_queue_get(q, buf, 15, &len, FIPC_MSEC(10)), -EINVAL);
    cr_assert_eq(fipc_queue_get(q, NULL, 16, &len, 0), -EINVAL);
    cr_assert_eq(fipc_queue_get(q, buf, 16, NULL, 0), -EINVAL);
    cr_assert_eq(fipc_queue_qsize(q), 1, "the message is still there");
    get_expect_str(q, "short");
}

Test(queue, null_queue_gives_einval_and_empty_snapshots, .timeout = 30)
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

Test(queue, get_many_with_stride_below_max_item_fails_with_einval_and_takes_nothing, .timeout = 30)
{
    fipc_queue *q = new_queue(4, 16, 0);
    put_str(q, "one");
    put_str(q, "two");
    char buf[4 * 16];
    size_t lens[4];
    cr_assert_eq(fipc_queue_get_many(q, buf, 15, lens, 4, 0), -EINVAL);
    cr_assert_eq(fipc_queue_get_many(q, buf, 15, lens, 4, FIPC_MSEC(10)), -EINVAL);
    cr_assert_eq(fipc_queue_qsize(q), 2, "nothing was taken");
    get_expect_str(q, "one");
    get_expect_str(q, "two");
}

Test(queue, put_many_with_one_oversized_item_fails_with_emsgsize_and_enqueues_nothing,
     .timeout = 30)
{
    fipc_queue *q = new_queue(8, 8, 0);
    char ok[8] = "abcdefgh", big[9] = "ABCDEFGHI";
    struct iovec iov[3] = {
        {.iov_base = ok, .iov_len = 8},
        {.iov_base = big, .iov_len = 9},
        {.iov_base = ok, .iov_len = 1},
    };
    cr_assert_eq(fipc_queue_put_many(q, iov, 3, 0), -EMSGSIZE);
    cr_assert_eq(fipc_queue_qsize(q), 0, "the valid items before it were not enqueued either");
    char buf[8];
    size_t len;
    cr_assert_eq(fipc_queue_get(q, buf, sizeof buf, &len, 0), -EAGAIN);
}

/* ---- Timeouts ---- */

Test(queue, put_on_a_full_queue_times_out_after_50ms, .timeout = 30)
{
    fipc_queue *q = new_queue(2, 8, 0);
    put_str(q, "a");
    put_str(q, "b");
    int64_t t0 = test_now_ns();
    int r = fipc_queue_put(q, "c", 1, FIPC_MSEC(50));
    int64_t dt = test_now_ns() - t0;
    cr_assert_eq(r, -ETIMEDOUT, "put: %s", fipc_strerror(r));
    cr_assert_geq(dt, FIPC_MSEC(50), "returned after %lld ns", (long long)dt);
    cr_assert_lt(dt, FIPC_SEC(5), "returned after %lld ns", (long long)dt);
    cr_assert_eq(fipc_queue_qsize(q), 2);
    get_expect_str(q, "a");
    get_expect_str(q, "b");
}

Test(queue, get_on_an_empty_queue_times_out_after_50ms, .timeout = 30)
{
    fipc_queue *q = new_queue(2, 8, 0);
    char buf[8];
    size_t len;
    int64_t t0 = test_now_ns();
    int r = fipc_queue_get(q, buf, sizeof buf, &len, FIPC_MSEC(50));
    int64_t dt = test_now_ns() - t0;
    cr_assert_eq(r, -ETIMEDOUT, "get: %s", fipc_strerror(r));
    cr_assert_geq(dt, FIPC_MSEC(50), "returned after %lld ns", (long long)dt);
    cr_assert_lt(dt, FIPC_SEC(5), "returned after %lld ns", (long long)dt);
}

Test(queue, batch_calls_time_out_after_50ms, .timeout = 30)
{
    fipc_queue *q = new_queue(1, 8, 0);
    char buf[2 * 8];
    size_t lens[2];
    int64_t t0 = test_now_ns();
    int r = fipc_queue_get_many(q, buf, 8, lens, 2, FIPC_MSEC(50));
    int64_t dt = test_now_ns() - t0;
    cr_assert_eq(r, -ETIMEDOUT, "get_many: %s", fipc_strerror(r));
    cr_assert_geq(dt, FIPC_MSEC(50));
    cr_assert_lt(dt, FIPC_SEC(5));

    put_str(q, "x");
    struct iovec iov[2] = {{.iov_base = "y", .iov_len = 1}, {.iov_base = "z", .iov_len = 1}};
    t0 = test_now_ns();
    r = fipc_queue_put_many(q, iov, 2, FIPC_MSEC(50));
    dt = test_now_ns() - t0;
    cr_assert_eq(r, -ETIMEDOUT, "put_many: %s", fipc_strerror(r));
    cr_assert_geq(dt, FIPC_MSEC(50));
    cr_assert_lt(dt, FIPC_SEC(5));
    cr_assert_eq(fipc_queue_qsize(q), 1);
}

/* ---- Close ---- */

struct sleeper {
    fipc_queue *q;
    uint32_t started; /* atomic: children about to block */
};

static int get_until_epipe_child(int i, void *arg)
{
    struct sleeper *s = arg;
    test_child_setup();
    test_flag_add(&s->started);
    char buf[16];
    size_t len;
    int r = fipc_queue_get(s->q, buf, sizeof buf, &len, FIPC_FOREVER);
    CHILD_CHECK(r == -EPIPE, 1);
    return CHILD_OK;
}

static void close_wakes_sleeping_consumers(int consumers, unsigned flags)
{
    struct sleeper *s = test_shared(sizeof *s);
    s->q = new_queue(4, 16, flags);
    pid_t pids[2];
    for (int i = 0; i < consumers; i++)
        pids[i] = test_fork(get_until_epipe_child, i, s);
    cr_assert(test_wait_until_at_least(&s->started, (uint32_t)consumers, HANDSHAKE_NS));
    for (int i = 0; i < consumers; i++)
        cr_assert(test_wait_sleeping(pids[i], HANDSHAKE_NS), "consumer %d never slept", i);
    cr_assert_not(fipc_queue_closed(s->q));
    cr_assert_eq(fipc_queue_close(s->q), 0);
    cr_assert(fipc_queue_closed(s->q));
    for (int i = 0; i < consumers; i++)
        test_expect_ok(pids[i]);
}

Test(queue, close_wakes_two_consumers_asleep_in_get_with_epipe, .timeout = 60)
{
    close_wakes_sleeping_consumers(2, 0);
}

Test(queue, close_wakes_the_spsc_consumer_asleep_in_get_with_epipe, .timeout = 60)
{
    close_wakes_sleeping_consumers(1, FIPC_QUEUE_SPSC);
}

static int put_until_epipe_child(int i, void *arg)
{
    struct sleeper *s = arg;
    test_child_setup();
    test_flag_add(&s->started);
    int r = fipc_queue_put(s->q, "late", 4, FIPC_FOREVER);
    CHILD_CHECK(r == -EPIPE, 1);
    return CHILD_OK;
}

static void close_wakes_a_sleeping_producer(unsigned flags)
{
    struct sleeper *s = test_shared(sizeof *s);
    s->q = new_queue(2, 16, flags);
    put_str(s->q, "one");
    put_str(s->q, "two");
    pid_t pid = test_fork(put_until_epipe_child, 0, s);
    cr_assert(test_wait_until_at_least(&s->started, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS), "producer never slept");
    cr_assert_eq(fipc_queue_close(s->q), 0);
    test_expect_ok(pid);
    /* The woken put enqueued nothing; what was in is still drained. */
    cr_assert_eq(fipc_queue_qsize(s->q), 2);
    get_expect_str(s->q, "one");
    get_expect_str(s->q, "two");
    char buf[16];
    size_t len;
    cr_assert_eq(fipc_queue_get(s->q, buf, sizeof buf, &len, 0), -EPIPE);
}

Test(queue, close_wakes_a_producer_asleep_on_a_full_queue_with_epipe, .timeout = 60)
{
    close_wakes_a_sleeping_producer(0);
}

Test(queue, close_wakes_the_spsc_producer_asleep_on_a_full_queue_with_epipe, .timeout = 60)
{
    close_wakes_a_sleeping_producer(FIPC_QUEUE_SPSC);
}

static void after_close_puts_fail_and_gets_drain(unsigned flags)
{
    fipc_queue *q = new_queue(4, 16, flags);
    put_str(q, "one");
    put_str(q, "two");
    cr_assert_eq(fipc_queue_close(q), 0);
    cr_assert(fipc_queue_closed(q));
    cr_assert_eq(fipc_queue_close(q), 0, "close is idempotent");
    cr_assert(fipc_queue_closed(q));

    cr_assert_eq(fipc_queue_put(q, "three", 5, 0), -EPIPE);
    cr_assert_eq(fipc_queue_put(q, "three", 5, FIPC_FOREVER), -EPIPE);
    struct iovec iov = {.iov_base = "four", .iov_len = 4};
    cr_assert_eq(fipc_queue_put_many(q, &iov, 1, FIPC_FOREVER), -EPIPE);
    cr_assert_eq(fipc_queue_qsize(q), 2);

    get_expect_str(q, "one");
    get_expect_str(q, "two");
    char buf[2 * 16];
    size_t len, lens[2];
    cr_assert_eq(fipc_queue_get(q, buf, 16, &len, 0), -EPIPE);
    cr_assert_eq(fipc_queue_get(q, buf, 16, &len, FIPC_MSEC(10)), -EPIPE);
    cr_assert_eq(fipc_queue_get(q, buf, 16, &len, FIPC_FOREVER), -EPIPE);
    cr_assert_eq(fipc_queue_get_many(q, buf, 16, lens, 2, FIPC_FOREVER), -EPIPE);
    cr_assert(fipc_queue_empty(q));
    cr_assert(fipc_queue_closed(q));
}

Test(queue, after_close_put_fails_with_epipe_and_gets_drain_then_fail_with_epipe, .timeout = 30)
{
    after_close_puts_fail_and_gets_drain(0);
}

Test(queue, after_close_spsc_put_fails_with_epipe_and_gets_drain_then_fail_with_epipe,
     .timeout = 30)
{
    after_close_puts_fail_and_gets_drain(FIPC_QUEUE_SPSC);
}

Test(queue, close_is_seen_by_other_processes_that_map_the_queue, .timeout = 60)
{
    struct sleeper *s = test_shared(sizeof *s);
    s->q = new_queue(4, 16, 0);
    put_str(s->q, "left");
    cr_assert_eq(fipc_queue_close(s->q), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        CHILD_CHECK(fipc_queue_closed(s->q), 1);
        CHILD_CHECK(fipc_queue_put(s->q, "x", 1, 0) == -EPIPE, 2);
        char buf[16];
        size_t len = 0;
        CHILD_CHECK(fipc_queue_get(s->q, buf, sizeof buf, &len, 0) == 0, 3);
        CHILD_CHECK(len == 4 && memcmp(buf, "left", 4) == 0, 4);
        CHILD_CHECK(fipc_queue_get(s->q, buf, sizeof buf, &len, 0) == -EPIPE, 5);
        _exit(CHILD_OK);
    }
    test_expect_ok(pid);
}

/* ---- Close racing with put: no successful put is stranded ---- */

#define RACE_ROUNDS 150
#define RACE_ITEM   (64 << 10) /* a long copy widens the window inside put */

struct race {
    fipc_queue *q;
    uint32_t puts; /* puts that returned 0; written by the producer */
    uint32_t gets; /* gets that returned 0; written by the consumer */
};

static int race_producer(int i, void *arg)
{
    struct race *rc = arg;
    test_child_setup();
    static unsigned char m[RACE_ITEM];
    int r;
    while ((r = fipc_queue_put(rc->q, m, sizeof m, HANDSHAKE_NS)) == 0)
        __atomic_fetch_add(&rc->puts, 1, __ATOMIC_RELEASE);
    CHILD_CHECK(r == -EPIPE, 1);
    return CHILD_OK;
}

static int race_consumer(int i, void *arg)
{
    struct race *rc = arg;
    test_child_setup();
    static unsigned char m[RACE_ITEM];
    size_t len;
    int r;
    while ((r = fipc_queue_get(rc->q, m, sizeof m, &len, HANDSHAKE_NS)) == 0)
        __atomic_fetch_add(&rc->gets, 1, __ATOMIC_RELEASE);
    CHILD_CHECK(r == -EPIPE, 1);
    return CHILD_OK;
}

/* Close at varied moments while a producer streams long messages to a
 * consumer: every put that returned 0 must reach the consumer before its
 * -EPIPE, however the close falls between a put's check of closed and its
 * publication. */
static void close_racing_put_strands_nothing(unsigned flags)
{
    struct race *rc = test_shared(sizeof *rc);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < RACE_ROUNDS; round++) {
        /* An arena per round, so the rounds' rings do not pile up. */
        fipc_arena *a = NULL;
        cr_assert_eq(fipc_arena_create(&a, "close-race", 4 * RACE_ITEM), 0);
        memset(rc, 0, sizeof *rc);
        cr_assert_eq(fipc_queue_create(&rc->q, a, 2, RACE_ITEM, flags), 0);
        pid_t cons = test_fork(race_consumer, 0, rc);
        pid_t prod = test_fork(race_producer, 0, rc);
        /* Let a few messages through, then close after a varied delay. */
        cr_assert(test_wait_until_at_least(&rc->gets, 1 + round % 3, HANDSHAKE_NS));
        rng = mix64(rng + (uint64_t)round);
        for (volatile uint64_t spin = rng % 200000; spin > 0; spin--)
            ;
        cr_assert_eq(fipc_queue_close(rc->q), 0);
        test_expect_ok(prod);
        test_expect_ok(cons);
        cr_assert_eq(rc->gets, rc->puts,
                     "round %d: %u puts returned 0 but the consumer got %u before -EPIPE", round,
                     rc->puts, rc->gets);
        /* Nothing is left to get.  (Not checked through qsize: a put that
         * lost the race to close leaves a tombstone that qsize counts
         * until a get skips it; reported to the queue's author.) */
        static unsigned char left[RACE_ITEM];
        size_t len;
        int r = fipc_queue_get(rc->q, left, sizeof left, &len, 0);
        cr_assert_eq(r, -EPIPE, "round %d: a message was left behind (get gave %d)", round, r);
        fipc_arena_close(a);
    }
}

Test(queue, close_racing_put_never_strands_a_message_whose_put_succeeded, .timeout = 120)
{
    close_racing_put_strands_nothing(0);
}

Test(queue, spsc_close_racing_put_never_strands_a_message_whose_put_succeeded, .timeout = 120)
{
    close_racing_put_strands_nothing(FIPC_QUEUE_SPSC);
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

/* The late put (a batch of two) settles first: its messages count, the
 * consumer reads them one get at a time and only then reports -EPIPE. */
static void spsc_late_put_settles_first(uint64_t start)
{
    fipc_queue *q = closed_spsc_holding_a(start);
    uint64_t b[2] = {0xb0, 0xb1};
    struct iovec late[2] = {{&b[0], 8}, {&b[1], 8}};
    cr_assert_eq(fipc__queue_spsc_put_late(q, late, 2, NULL, NULL, NULL), 2, "start %#llx",
                 (unsigned long long)start);
    cr_assert_eq(fipc_queue_qsize(q), 3);
    expect_get(q, 0xa);
    expect_get(q, b[0]);
    expect_get(q, b[1]);
    expect_epipe(q);
    expect_epipe(q);
    cr_assert_eq(fipc_queue_put(q, &b[0], 8, 0), -EPIPE);
    cr_assert_eq(fipc_queue_qsize(q), 0);
}

/* The consumer settles first, with nothing read: it has reported -EPIPE
 * at the late put's position, so the put fails and its messages, though
 * written into their slots, are never read, however often it asks again. */
static void spsc_consumer_settles_first(uint64_t start)
{
    fipc_queue *q = closed_spsc_holding_a(start);
    uint64_t c[2] = {0xc0, 0xc1};
    struct iovec late[2] = {{&c[0], 8}, {&c[1], 8}};
    expect_get(q, 0xa);
    expect_epipe(q);
    cr_assert_eq(fipc__queue_spsc_put_late(q, late, 2, NULL, NULL, NULL), -EPIPE, "start %#llx",
                 (unsigned long long)start);
    expect_epipe(q);
    cr_assert_eq(fipc_queue_qsize(q), 0);
    cr_assert(fipc_queue_empty(q));
}

/* Between the late put's publication and its settlement, the consumer
 * reads its messages and then reports -EPIPE after them: the put counts. */
struct drain_then_seal {
    fipc_queue *q;
    uint64_t want[2];
};

static void drain_then_seal(void *arg)
{
    struct drain_then_seal *d = arg;
    expect_get(d->q, d->want[0]);
    expect_get(d->q, d->want[1]);
    expect_epipe(d->q);
}

static void spsc_consumer_reads_then_settles(uint64_t start)
{
    fipc_queue *q = closed_spsc_holding_a(start);
    uint64_t c[2] = {0xc0, 0xc1};
    struct iovec late[2] = {{&c[0], 8}, {&c[1], 8}};
    expect_get(q, 0xa);
    struct drain_then_seal d = {q, {c[0], c[1]}};
    cr_assert_eq(fipc__queue_spsc_put_late(q, late, 2, NULL, drain_then_seal, &d), 2,
                 "start %#llx: the consumer got the messages, so the put succeeded",
                 (unsigned long long)start);
    expect_epipe(q);
    cr_assert_eq(fipc_queue_qsize(q), 0);
}

static const uint64_t settle_starts[] = {
    0,
    ((uint64_t)1 << 62) - 1, /* the outcome word keeps 62 bits of position */
    ((uint64_t)1 << 32) - 1, /* slot turns wrap */
    UINT64_MAX,              /* positions wrap */
};
#define N_SETTLE_STARTS (sizeof settle_starts / sizeof *settle_starts)

Test(queue, spsc_put_racing_close_counts_when_the_producer_settles_first, .timeout = 30)
{
    for (size_t i = 0; i < N_SETTLE_STARTS; i++)
        spsc_late_put_settles_first(settle_starts[i]);
}

Test(queue, spsc_put_racing_close_fails_when_the_consumer_settles_first, .timeout = 30)
{
    for (size_t i = 0; i < N_SETTLE_STARTS; i++)
        spsc_consumer_settles_first(settle_starts[i]);
}

Test(queue, spsc_put_racing_close_counts_when_the_consumer_read_it_before_settling,
     .timeout = 30)
{
    for (size_t i = 0; i < N_SETTLE_STARTS; i++)
        spsc_consumer_reads_then_settles(settle_starts[i]);
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

Test(queue, consumer_killed_asleep_in_get_does_not_stop_another_consumer, .timeout = 60)
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

Test(queue, producer_killed_asleep_on_a_full_queue_does_not_stop_other_producers, .timeout = 60)
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

/* ---- Batches ---- */

Test(queue, put_many_moves_as_many_as_there_are_free_slots_in_order, .timeout = 30)
{
    fipc_queue *q = new_queue(4, 8, 0);
    put_str(q, "m0");
    static const char *names[8] = {"b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"};
    struct iovec iov[8];
    for (int i = 0; i < 8; i++)
        iov[i] = (struct iovec){.iov_base = (void *)names[i], .iov_len = 2};

    /* 3 free slots: 3 of 8 go in, the first 3. */
    cr_assert_eq(fipc_queue_put_many(q, iov, 8, 0), 3);
    cr_assert(fipc_queue_full(q));
    cr_assert_eq(fipc_queue_put_many(q, iov + 3, 5, 0), -EAGAIN);

    char buf[8 * 8];
    size_t lens[8];
    cr_assert_eq(fipc_queue_get_many(q, buf, 8, lens, 8, 0), 4, "all 4 come out at once");
    const char *want[4] = {"m0", "b0", "b1", "b2"};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(lens[i], 2);
        cr_assert(memcmp(buf + i * 8, want[i], 2) == 0, "item %d is %.2s, expected %s", i,
                  buf + i * 8, want[i]);
    }
    cr_assert(fipc_queue_empty(q));
    cr_assert_eq(fipc_queue_get_many(q, buf, 8, lens, 8, 0), -EAGAIN);

    /* The rest of the batch continues where the first call stopped. */
    cr_assert_eq(fipc_queue_put_many(q, iov + 3, 5, 0), 4);
    cr_assert_eq(fipc_queue_put_many(q, iov + 7, 1, 0), -EAGAIN);
    /* get_many takes only what was asked for, and leaves the rest in order. */
    cr_assert_eq(fipc_queue_get_many(q, buf, 8, lens, 3, 0), 3);
    for (int i = 0; i < 3; i++)
        cr_assert(lens[i] == 2 && memcmp(buf + i * 8, names[3 + i], 2) == 0, "item %d", i);
    cr_assert_eq(fipc_queue_put_many(q, iov + 7, 1, 0), 1);
    cr_assert_eq(fipc_queue_get_many(q, buf, 8, lens, 8, 0), 2);
    cr_assert(lens[0] == 2 && memcmp(buf, "b6", 2) == 0);
    cr_assert(lens[1] == 2 && memcmp(buf + 8, "b7", 2) == 0);
    cr_assert(fipc_queue_empty(q));
}

Test(queue, get_many_moves_fewer_than_asked_when_fewer_are_queued, .timeout = 30)
{
    fipc_queue *q = new_queue(8, 16, 0);
    put_str(q, "alpha");
    put_str(q, "be");
    put_str(q, "");
    char buf[5 * 20];
    size_t lens[5] = {99, 99, 99, 99, 99};
    /* A stride larger than max_item is fine. */
    cr_assert_eq(fipc_queue_get_many(q, buf, 20, lens, 5, 0), 3);
    cr_assert(lens[0] == 5 && memcmp(buf, "alpha", 5) == 0);
    cr_assert(lens[1] == 2 && memcmp(buf + 20, "be", 2) == 0);
    cr_assert_eq(lens[2], 0);
    cr_assert(fipc_queue_empty(q));
}

struct batch_wait {
    fipc_queue *q;
    uint32_t started;
};

static int get_many_sleeper(int i, void *arg)
{
    struct batch_wait *b = arg;
    test_child_setup();
    test_flag_add(&b->started);
    char buf[4 * 8];
    size_t lens[4];
    int r = fipc_queue_get_many(b->q, buf, 8, lens, 4, HANDSHAKE_NS);
    CHILD_CHECK(r >= 1 && r <= 2, 1);
    CHILD_CHECK(lens[0] == 2 && memcmp(buf, "p0", 2) == 0, 2);
    if (r == 2) CHILD_CHECK(lens[1] == 2 && memcmp(buf + 8, "p1", 2) == 0, 3);
    return CHILD_OK;
}

Test(queue, get_many_asleep_on_an_empty_queue_wakes_for_a_put, .timeout = 60)
{
    struct batch_wait *b = test_shared(sizeof *b);
    b->q = new_queue(4, 8, 0);
    pid_t pid = test_fork(get_many_sleeper, 0, b);
    cr_assert(test_wait_until_at_least(&b->started, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS));
    struct iovec iov[2] = {{.iov_base = "p0", .iov_len = 2}, {.iov_base = "p1", .iov_len = 2}};
    cr_assert_eq(fipc_queue_put_many(b->q, iov, 2, 0), 2);
    test_expect_ok(pid);
}

static int put_many_sleeper(int i, void *arg)
{
    struct batch_wait *b = arg;
    test_child_setup();
    test_flag_add(&b->started);
    struct iovec iov[3] = {{.iov_base = "q0", .iov_len = 2},
                           {.iov_base = "q1", .iov_len = 2},
                           {.iov_base = "q2", .iov_len = 2}};
    int r = fipc_queue_put_many(b->q, iov, 3, HANDSHAKE_NS);
    CHILD_CHECK(r >= 1 && r <= 3, 1);
    return 10 + r; /* the parent checks how many went in */
}

Test(queue, put_many_asleep_on_a_full_queue_wakes_when_a_slot_frees, .timeout = 60)
{
    struct batch_wait *b = test_shared(sizeof *b);
    b->q = new_queue(2, 8, 0);
    put_str(b->q, "f0");
    put_str(b->q, "f1");
    pid_t pid = test_fork(put_many_sleeper, 0, b);
    cr_assert(test_wait_until_at_least(&b->started, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS));
    get_expect_str(b->q, "f0");
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    cr_assert_neq(WEXITSTATUS(status), 1, "put_many failed");
    int moved = WEXITSTATUS(status) - 10;
    cr_assert_eq(moved, 1, "one free slot, yet put_many reported %d", moved);
    get_expect_str(b->q, "f1");
    get_expect_str(b->q, "q0");
    cr_assert(fipc_queue_empty(b->q));
}

/* ---- Signals never cut a wait short ---- */

/* The pester's action after its 20th signal: put one message. */
static void put_late(void *q)
{
    fipc_queue_put(q, "late", 4, 0);
}

Test(queue, timed_get_and_put_are_not_cut_short_by_signals, .timeout = 30)
{
    fipc_queue *q = new_queue(1, 8, 0);
    struct test_pester p = {0};
    test_pester_start(&p);
    char buf[8];
    size_t len;
    int64_t t0 = test_now_ns();
    int rg = fipc_queue_get(q, buf, sizeof buf, &len, FIPC_MSEC(200));
    int64_t dg = test_now_ns() - t0;
    put_str(q, "full");
    t0 = test_now_ns();
    int rp = fipc_queue_put(q, "more", 4, FIPC_MSEC(200));
    int64_t dp = test_now_ns() - t0;
    test_pester_stop(&p);
    cr_assert_eq(rg, -ETIMEDOUT, "get: %s", fipc_strerror(rg));
    cr_assert_geq(dg, FIPC_MSEC(200), "get gave up after %lld ns", (long long)dg);
    cr_assert_eq(rp, -ETIMEDOUT, "put: %s", fipc_strerror(rp));
    cr_assert_geq(dp, FIPC_MSEC(200), "put gave up after %lld ns", (long long)dp);
}

Test(queue, get_forever_survives_signals_and_returns_the_message, .timeout = 30)
{
    fipc_queue *q = new_queue(2, 8, 0);
    struct test_pester p = {.then = put_late, .arg = q};
    test_pester_start(&p);
    char buf[8];
    size_t len = 0;
    int r = fipc_queue_get(q, buf, sizeof buf, &len, FIPC_FOREVER);
    test_pester_stop(&p);
    cr_assert_eq(r, 0, "get: %s", fipc_strerror(r));
    cr_assert(len == 4 && memcmp(buf, "late", 4) == 0);
}

/* ---- Offsets only: a second mapping at another address ---- */

struct remap {
    fipc_arena *arena;
    fipc_queue *q;     /* parent to child, at the parent's (and inherited) address */
    fipc_queue *reply; /* child to parent */
    uint32_t started;
};

/* Map the arena again, find the queue at its new address, sleep in get
 * there until the parent puts through the old address, and answer. */
static int remapped_consumer(int i, void *arg)
{
    struct remap *m = arg;
    test_child_setup();
    fipc_arena *again = NULL;
    CHILD_CHECK(fipc_arena_attach(&again, fipc_arena_fd(m->arena)) == 0, 1);
    fipc_queue *q = fipc_arena_lookup(again, "queue");
    fipc_queue *reply = fipc_arena_lookup(again, "reply");
    CHILD_CHECK(q != NULL && reply != NULL, 2);
    CHILD_CHECK(q != m->q, 3); /* really another address */
    CHILD_CHECK(fipc_queue_capacity(q) == 4 && fipc_queue_max_item(q) == 16, 4);
    test_flag_add(&m->started);
    char buf[16];
    size_t len = 0;
    CHILD_CHECK(fipc_queue_get(q, buf, sizeof buf, &len, HANDSHAKE_NS) == 0, 5);
    CHILD_CHECK(len == 4 && memcmp(buf, "ping", 4) == 0, 6);
    CHILD_CHECK(fipc_queue_put(reply, "pong", 4, HANDSHAKE_NS) == 0, 7);
    return CHILD_OK;
}

Test(queue, queue_works_through_a_second_mapping_of_its_arena, .timeout = 60)
{
    struct remap *m = test_shared(sizeof *m);
    cr_assert_eq(fipc_arena_create(&m->arena, "test-queue", 1 << 20), 0);
    cr_assert_eq(fipc_queue_create(&m->q, m->arena, 4, 16, 0), 0);
    cr_assert_eq(fipc_queue_create(&m->reply, m->arena, 4, 16, 0), 0);
    cr_assert_eq(fipc_arena_publish(m->arena, "queue", m->q), 0);
    cr_assert_eq(fipc_arena_publish(m->arena, "reply", m->reply), 0);
    pid_t pid = test_fork(remapped_consumer, 0, m);
    cr_assert(test_wait_until_at_least(&m->started, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS));
    put_str(m->q, "ping");
    char buf[16];
    size_t len = 0;
    int r = fipc_queue_get(m->reply, buf, sizeof buf, &len, HANDSHAKE_NS);
    cr_assert_eq(r, 0, "get: %s", fipc_strerror(r));
    cr_assert(len == 4 && memcmp(buf, "pong", 4) == 0);
    test_expect_ok(pid);
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

Test(queue, sleeping_consumer_gets_the_item_when_the_producer_dies_before_waking, .timeout = 60)
{
    consumer_gets_the_item_when_the_producer_dies(0);
}

Test(queue, sleeping_spsc_consumer_gets_the_item_when_the_producer_dies_before_waking,
     .timeout = 60)
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

Test(queue, sleeping_producer_gets_room_when_the_consumer_dies_before_waking, .timeout = 60)
{
    producer_gets_room_when_the_consumer_dies(0);
}

Test(queue, sleeping_spsc_producer_gets_room_when_the_consumer_dies_before_waking, .timeout = 60)
{
    producer_gets_room_when_the_consumer_dies(FIPC_QUEUE_SPSC);
}

/* ---- Wrap-around ---- */

/* Slot turns are 32-bit and positions 64-bit: start the queue just below
 * each wrap and push messages across it, with batches, a full ring and
 * close, and check that order and contents survive. */
static void run_across(uint64_t start, unsigned flags)
{
    fipc_queue *q = new_queue(3, 16, flags);
    fipc__queue_rebase(q, start);
    char buf[4 * 16];
    size_t lens[4];
    uint64_t next_put = 0, next_get = 0;
    for (int round = 0; round < 40; round++) {
        /* Fill the ring (a batch, then single puts), then drain it. */
        uint64_t v[2] = {next_put, next_put + 1};
        struct iovec iov[2] = {{&v[0], 8}, {&v[1], 8}};
        int r = fipc_queue_put_many(q, iov, 2, 0);
        cr_assert_eq(r, 2, "round %d: put_many gave %d", round, r);
        next_put += 2;
        uint64_t w = next_put++;
        cr_assert_eq(fipc_queue_put(q, &w, 8, 0), 0, "round %d", round);
        cr_assert(fipc_queue_full(q), "round %d: a Queue(3) holding 3 is full", round);
        cr_assert_eq(fipc_queue_put(q, &w, 8, 0), -EAGAIN);
        r = fipc_queue_get_many(q, buf, 16, lens, 4, 0);
        cr_assert_eq(r, 3, "round %d: get_many gave %d", round, r);
        for (int i = 0; i < r; i++) {
            uint64_t got;
            memcpy(&got, buf + i * 16, 8);
            cr_assert_eq(lens[i], 8);
            cr_assert_eq(got, next_get, "round %d: got %llu, want %llu", round,
                         (unsigned long long)got, (unsigned long long)next_get);
            next_get++;
        }
        cr_assert(fipc_queue_empty(q));
    }
    uint64_t last = next_put;
    cr_assert_eq(fipc_queue_put(q, &last, 8, 0), 0);
    cr_assert_eq(fipc_queue_close(q), 0);
    cr_assert_eq(fipc_queue_put(q, &last, 8, 0), -EPIPE);
    uint64_t got;
    size_t len;
    cr_assert_eq(fipc_queue_get(q, &got, 16, &len, 0), 0);
    cr_assert_eq(got, last);
    cr_assert_eq(fipc_queue_get(q, &got, 16, &len, 0), -EPIPE);
}

Test(queue, messages_cross_the_32_bit_turn_wrap_in_order, .timeout = 30)
{
    run_across(((uint64_t)1 << 32) - 50, 0);
}

Test(queue, spsc_messages_cross_the_32_bit_turn_wrap_in_order, .timeout = 30)
{
    run_across(((uint64_t)1 << 32) - 50, FIPC_QUEUE_SPSC);
}

Test(queue, messages_cross_the_64_bit_position_wrap_in_order, .timeout = 30)
{
    run_across(UINT64_MAX - 50, 0);
    run_across(UINT64_MAX - 50, FIPC_QUEUE_SPSC);
}
