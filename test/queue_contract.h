/*
 * queue_contract.h - what every queue keeps, whatever its mode, capacity or
 * way of calling: one body per behaviour, run on every cell of the matrix
 *
 *   QC_MODES       the producers and consumers a queue is made for
 *   QC_CAPACITIES  a power of two, one that is not, and a tiny one that is not
 *   QC_CALLS       one message per call (put/get) or batches (put_many/get_many)
 *
 * for each family that includes this header (test_queue.c: fipc_queue;
 * test_jqueue.c: fipc_jqueue).  The matrix is the product of the three
 * lists: a new mode, capacity or way of calling is one more line in its
 * list, and every behaviour then runs on the new cells.
 *
 * Each cell gets one Criterion test per behaviour, named
 * <mode>_<capacity>_<calls>__<behaviour>, so that a failure names its cell
 * and --filter picks cells out (queue/spsc_... or jqueue/...__stress_...).
 *
 * A family file defines, before including this header:
 *   QC_SUITE     the Criterion suite (the family's name)
 *   QC_T         the object type (fipc_queue, fipc_jqueue)
 *   QC(verb)     the family's call for verb: QC(put) is fipc_queue_put, ...
 *   QC_RAW(q)    the struct fipc_queue underneath q, for the test seam
 *                fipc__queue_rebase (queue_impl.h)
 *   QC_JOINABLE  1 if the family counts unfinished items (task_done, join):
 *                then every behaviour also checks the count, the stress
 *                joins, and the join behaviours run too
 * and includes common.h, futex_faults.h and queue_impl.h.
 *
 * A child that sleeps until the other side acts calls
 * fault_sleep_until_woken() first: its futex sleeps then end only by a
 * real wake, not by the library's periodic re-check, so a lost wake-up
 * fails its cell (the child is still blocked when reaped) instead of
 * passing a second late.
 *
 * Children report through their exit status (CHILD_CHECK); the parent
 * asserts on it.  The stress counts follow test_scaled().
 */
#ifndef FIPC_TEST_QUEUE_CONTRACT_H
#define FIPC_TEST_QUEUE_CONTRACT_H

#if !defined(QC_SUITE) || !defined(QC_T) || !defined(QC) || !defined(QC_RAW) ||                    \
    !defined(QC_JOINABLE)
#error "define QC_SUITE, QC_T, QC(verb), QC_RAW(q) and QC_JOINABLE before queue_contract.h"
#endif

#include <limits.h>

/* ---- The matrix ---- */

/* name, flags, producers and consumers in the stress (SPSC: one of each). */
#define QC_MODES(X, ...)                                                                           \
    X(mpmc, 0, 3, 2, __VA_ARGS__)                                                                  \
    X(spsc, FIPC_QUEUE_SPSC, 1, 1, __VA_ARGS__)

/* capacity: a power of two; not one (the ring has 128 slots but holds
 * 100); and a tiny one that is not (4 slots, holding 3). */
#define QC_CAPACITIES(X, ...) X(64, __VA_ARGS__) X(100, __VA_ARGS__) X(3, __VA_ARGS__)

/* name, whether the calls are put_many/get_many. */
#define QC_CALLS(X, ...) X(single, false, __VA_ARGS__) X(batch, true, __VA_ARGS__)

/* The behaviours, each a function qc_<name>(const struct qc_variant *). */
#define QC_BEHAVIOURS(X)                                                                           \
    X(stress_across_the_wraps_delivers_every_message_once_intact_in_producer_order)                \
    X(fills_to_capacity_and_drains_in_fifo_order_lap_after_lap)                                    \
    X(messages_cross_the_32_bit_turn_wrap_in_order)                                                \
    X(messages_cross_the_64_bit_position_wrap_in_order)                                            \
    X(messages_of_every_length_up_to_max_item_round_trip_intact)                                   \
    X(bad_arguments_fail_with_their_code_and_lose_nothing)                                         \
    X(get_times_out_on_an_empty_queue)                                                             \
    X(put_times_out_on_a_full_queue_and_adds_nothing)                                              \
    X(get_asleep_on_an_empty_queue_wakes_for_a_put)                                                \
    X(put_asleep_on_a_full_queue_wakes_when_a_slot_frees)                                          \
    X(close_lets_getters_drain_everything_put_then_gives_epipe)                                    \
    X(close_wakes_getters_asleep_on_an_empty_queue_with_epipe)                                     \
    X(close_wakes_a_put_asleep_on_a_full_queue_with_epipe)                                         \
    X(close_racing_put_never_strands_a_message_whose_put_succeeded)                                \
    X(timed_calls_are_not_cut_short_by_signals)                                                    \
    X(get_forever_survives_signals_and_returns_the_message)                                        \
    X(put_forever_survives_signals_and_completes_once_a_slot_frees)                                \
    X(works_through_a_second_mapping_at_another_address)                                           \
    X(works_between_processes_that_map_it_at_different_addresses)

/* Behaviours of families that count unfinished items. */
#define QC_JOIN_BEHAVIOURS(X) X(join_waits_until_every_item_put_is_done)

/* One cell of the matrix. */
struct qc_variant {
    const char *name; /* mode_capacity_calls */
    unsigned flags;
    size_t capacity;
    bool batched;
    int producers, consumers;
};

/* Expand X(behaviour) into one Test per cell (expanded at the end). */
#define QC_EACH_CELL(b)                     QC_MODES(QC_MODE_, b)
#define QC_MODE_(m, fl, np, nc, b)          QC_CAPACITIES(QC_CAPACITY_, m, fl, np, nc, b)
#define QC_CAPACITY_(cap, m, fl, np, nc, b) QC_CALLS(QC_CELL_, cap, m, fl, np, nc, b)
#define QC_CELL_(k, bat, cap, m, fl, np, nc, b)                                                    \
    Test(QC_SUITE, m##_##cap##_##k##__##b)                                                         \
    {                                                                                              \
        static const struct qc_variant v = {#m "_" #cap "_" #k, fl, cap, bat, np, nc};             \
        qc_##b(&v);                                                                                \
    }

/* ---- Calling a queue the cell's way ---- */

#define QC_ITEM     16   /* max_item of the queues that carry 8-byte values */
#define QC_BIG_ITEM 4096 /* the largest max_item used */
#define QC_MAX_CAP  128  /* above every capacity in the matrix */
#define QC_MAX_PROC 4    /* above every mode's producers and consumers */
/* A positive return from put or get, which must never happen: the
 * helpers below report it as this (not an errno) instead of a count. */
#define QC_NOT_A_CODE INT_MIN
/* Upper bound on how long a timed call may overrun its timeout: only a
 * hang, never a slow machine, should reach it. */
#define QC_OVERRUN_NS FIPC_SEC(10)

static QC_T *qc_new_in(const struct qc_variant *v, fipc_arena *a, size_t max_item)
{
    QC_T *q = NULL;
    int r = QC(create)(&q, a, v->capacity, max_item, v->flags);
    cr_assert_eq(r, 0, "create: %s", fipc_strerror(r));
    cr_assert_not_null(q);
    return q;
}

static QC_T *qc_new(const struct qc_variant *v, size_t max_item)
{
    return qc_new_in(v, NULL, max_item);
}

/* Put up to n messages: one put of items[0], or one put_many.  How many
 * went in (>= 1), or the call's error. */
static int qc_send(const struct qc_variant *v, QC_T *q, const struct iovec *items, size_t n,
                   int64_t timeout_ns)
{
    if (v->batched) return QC(put_many)(q, items, n, timeout_ns);
    int r = QC(put)(q, items[0].iov_base, items[0].iov_len, timeout_ns);
    return r == 0 ? 1 : r < 0 ? r : QC_NOT_A_CODE;
}

/* Take up to n messages, message i into buf + i * stride: one get (with
 * cap = stride), or one get_many.  How many came out, or the error. */
static int qc_recv(const struct qc_variant *v, QC_T *q, void *buf, size_t stride, size_t *lens,
                   size_t n, int64_t timeout_ns)
{
    if (v->batched) return QC(get_many)(q, buf, stride, lens, n, timeout_ns);
    int r = QC(get)(q, buf, stride, &lens[0], timeout_ns);
    return r == 0 ? 1 : r < 0 ? r : QC_NOT_A_CODE;
}

/* Put the n 8-byte values first, first + 1, ... without waiting, as many
 * per call as the cell's calls take. */
static void qc_put_values(const struct qc_variant *v, QC_T *q, uint64_t first, size_t n)
{
    uint64_t val[QC_MAX_CAP];
    struct iovec iov[QC_MAX_CAP];
    cr_assert_leq(n, QC_MAX_CAP);
    for (size_t i = 0; i < n; i++) {
        val[i] = first + i;
        iov[i] = (struct iovec){&val[i], sizeof val[i]};
    }
    for (size_t done = 0; done < n;) {
        int r = qc_send(v, q, iov + done, n - done, 0);
        cr_assert(r >= 1 && (size_t)r <= n - done, "put of value %llu gave %d (%s)",
                  (unsigned long long)(first + done), r, fipc_strerror(r));
        done += (size_t)r;
    }
}

/* Get n values without waiting and assert they are first, first + 1, ... */
static void qc_expect_values(const struct qc_variant *v, QC_T *q, uint64_t first, size_t n)
{
    unsigned char buf[QC_MAX_CAP * QC_ITEM];
    size_t lens[QC_MAX_CAP];
    for (size_t done = 0; done < n;) {
        size_t want = n - done < QC_MAX_CAP ? n - done : QC_MAX_CAP;
        int r = qc_recv(v, q, buf, QC_ITEM, lens, want, 0);
        cr_assert(r >= 1 && (size_t)r <= want, "get of value %llu gave %d (%s)",
                  (unsigned long long)(first + done), r, fipc_strerror(r));
        for (int i = 0; i < r; i++, done++) {
            uint64_t got;
            cr_assert_eq(lens[i], sizeof got, "value %llu came with length %zu",
                         (unsigned long long)(first + done), lens[i]);
            memcpy(&got, buf + (size_t)i * QC_ITEM, sizeof got);
            cr_assert_eq(got, first + done, "got %llu, want %llu", (unsigned long long)got,
                         (unsigned long long)(first + done));
        }
    }
}

/* One more call finds nothing: expect code (-EAGAIN open, -EPIPE closed). */
static void qc_expect_nothing(const struct qc_variant *v, QC_T *q, int code, int64_t timeout_ns)
{
    static unsigned char buf[2 * QC_BIG_ITEM];
    size_t lens[2], stride = QC(max_item)(q);
    cr_assert_leq(stride, QC_BIG_ITEM);
    int r = qc_recv(v, q, buf, stride, lens, 2, timeout_ns);
    cr_assert_eq(r, code, "get gave %d (%s), want %s", r, fipc_strerror(r), fipc_strerror(code));
}

/* The checks on the unfinished count, for families that keep one. */
#if QC_JOINABLE
static void qc_expect_unfinished(QC_T *q, size_t n)
{
    size_t u = fipc_jqueue_unfinished(q);
    cr_assert_eq(u, n, "%zu items unfinished, want %zu", u, n);
}

/* Mark n items done the cell's way: n task_done calls, or one
 * task_done_many.  0 or the first error. */
static int qc_finish(const struct qc_variant *v, QC_T *q, size_t n)
{
    if (v->batched) return fipc_jqueue_task_done_many(q, n);
    for (size_t i = 0; i < n; i++) {
        int r = fipc_jqueue_task_done(q);
        if (r != 0) return r;
    }
    return 0;
}

/* Mark n items done and expect nothing unfinished after. */
static void qc_finish_all(const struct qc_variant *v, QC_T *q, size_t n)
{
    int r = qc_finish(v, q, n);
    cr_assert_eq(r, 0, "task_done: %s", fipc_strerror(r));
    qc_expect_unfinished(q, 0);
    cr_assert_eq(fipc_jqueue_join(q, 0), 0);
}
#else
static void qc_expect_unfinished(QC_T *q, size_t n)
{
    (void)q;
    (void)n;
}

static void qc_finish_all(const struct qc_variant *v, QC_T *q, size_t n)
{
    (void)v;
    (void)q;
    (void)n;
}
#endif

static uint64_t qc_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* Time a call: *elapsed gets how long expr took; evaluates to expr. */
#define QC_TIMED(elapsed, expr)                                                                    \
    ({                                                                                             \
        int64_t qc_t0_ = test_now_ns();                                                            \
        int qc_r_ = (expr);                                                                        \
        *(elapsed) = test_now_ns() - qc_t0_;                                                       \
        qc_r_;                                                                                     \
    })

/* A timed call that ran out: it gave -ETIMEDOUT, not before its time. */
static void qc_expect_timed_out(const char *what, int r, int64_t elapsed, int64_t timeout_ns)
{
    cr_assert_eq(r, -ETIMEDOUT, "%s gave %d (%s)", what, r, fipc_strerror(r));
    cr_assert_geq(elapsed, timeout_ns, "%s gave up after %lld ns of %lld", what, (long long)elapsed,
                  (long long)timeout_ns);
    cr_assert_lt(elapsed, timeout_ns + QC_OVERRUN_NS, "%s returned only after %lld ns", what,
                 (long long)elapsed);
}

/* ---- Stress: exactly once, intact, in per-producer order ---- */

#define QC_STRESS_MESSAGES 300000 /* per cell, shared among the producers */
#define QC_STRESS_MAX_ITEM 64
#define QC_STRESS_HEAD     16 /* producer, checksum, sequence */
#define QC_STRESS_BATCH    32
/* How long a stress cell may run before its children count as hung. */
#define QC_STRESS_LIMIT_NS FIPC_SEC(150)

struct qc_stress_head {
    uint32_t producer;
    uint32_t sum;
    uint64_t seq;
};
static_assert(sizeof(struct qc_stress_head) == QC_STRESS_HEAD, "message header layout");

struct qc_stress {
    QC_T *q;
    struct qc_variant v;
    uint64_t per_producer;
    /* The first failed consumer check; that consumer also closes the queue
     * so that the producers stop at once. */
    int failure; /* atomic */
    /* Counted by consumer c only; read by the parent after reaping it. */
    struct {
        uint64_t count[QC_MAX_PROC];  /* messages of each producer */
        uint64_t seqsum[QC_MAX_PROC]; /* the sum of their sequence numbers */
    } tally[QC_MAX_PROC];
    /* Messages of each producer finished: raised before task_done, read
     * by the producer after its join (atomic). */
    uint64_t done[QC_MAX_PROC];
    /* One bit per (producer, seq), set with an atomic or: a second arrival
     * of a message finds its bit set. */
    uint64_t *seen;
};

/* The length of message seq of producer p: 16..64 bytes, varied. */
static size_t qc_stress_len(uint32_t p, uint64_t seq)
{
    return QC_STRESS_HEAD + (size_t)(qc_mix64(((uint64_t)p << 48) ^ seq) %
                                     (QC_STRESS_MAX_ITEM - QC_STRESS_HEAD + 1));
}

/* FNV-1a over the message, its checksum field counted as zero. */
static uint32_t qc_stress_sum(const unsigned char *m, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (i >= 4 && i < 8) ? 0 : m[i];
        h = (h ^ c) * 16777619u;
    }
    return h;
}

static size_t qc_stress_make(unsigned char *m, uint32_t p, uint64_t seq)
{
    size_t len = qc_stress_len(p, seq);
    struct qc_stress_head h = {.producer = p, .sum = 0, .seq = seq};
    memcpy(m, &h, sizeof h);
    uint64_t r = qc_mix64(seq * 2654435761u + p);
    for (size_t i = QC_STRESS_HEAD; i < len; i++)
        m[i] = (unsigned char)(r >> ((i % 8) * 8)) ^ (unsigned char)i;
    h.sum = qc_stress_sum(m, len);
    memcpy(m, &h, sizeof h);
    return len;
}

/* Check one received message; 0, or the number of the failed check. */
static int qc_stress_check(struct qc_stress *s, int consumer, int64_t *last, const unsigned char *m,
                           size_t len)
{
    if (len < QC_STRESS_HEAD || len > QC_STRESS_MAX_ITEM) return 20;
    struct qc_stress_head h;
    memcpy(&h, m, sizeof h);
    if (h.producer >= (uint32_t)s->v.producers) return 21;
    if (h.seq >= s->per_producer) return 22;
    if (len != qc_stress_len(h.producer, h.seq)) return 23;
    if (h.sum != qc_stress_sum(m, len)) return 24;
    /* Per-producer FIFO as seen by this consumer. */
    if ((int64_t)h.seq <= last[h.producer]) return 25;
    last[h.producer] = (int64_t)h.seq;
    uint64_t bit = h.producer * s->per_producer + h.seq;
    /* relaxed: the bit only has to be set once; nothing else is published
     * through it. */
    uint64_t old = __atomic_fetch_or(&s->seen[bit / 64], 1ull << (bit % 64), __ATOMIC_RELAXED);
    if (old & (1ull << (bit % 64))) return 26;
    s->tally[consumer].count[h.producer]++;
    s->tally[consumer].seqsum[h.producer] += h.seq;
    return 0;
}

static int qc_stress_fail(struct qc_stress *s, int code)
{
    int none = 0;
    __atomic_compare_exchange_n(&s->failure, &none, code, false, __ATOMIC_ACQ_REL,
                                __ATOMIC_RELAXED);
    QC(close)(s->q);
    return code;
}

static int qc_stress_producer(int i, void *arg)
{
    struct qc_stress *s = arg;
    test_child_setup();
    uint32_t p = (uint32_t)i;
    static unsigned char m[QC_STRESS_BATCH][QC_STRESS_MAX_ITEM];
    struct iovec iov[QC_STRESS_BATCH];
    for (uint64_t seq = 0; seq < s->per_producer;) {
        uint64_t n = s->v.batched ? 1 + qc_mix64(seq ^ ((uint64_t)p << 40)) % QC_STRESS_BATCH : 1;
        if (n > s->per_producer - seq) n = s->per_producer - seq;
        for (uint64_t k = 0; k < n; k++) {
            iov[k].iov_base = m[k];
            iov[k].iov_len = qc_stress_make(m[k], p, seq + k);
        }
        int r = qc_send(&s->v, s->q, iov, (size_t)n, HANDSHAKE_NS);
        CHILD_CHECK(r >= 1 && (uint64_t)r <= n, 1);
        seq += (uint64_t)r; /* the rest go out again with the next call */
    }
#if QC_JOINABLE
    /* Other producers may still be putting, so the count need not be 0
     * afterwards; but every item of ours was finished before join returned.
     * FIPC_FOREVER: the parent kills a producer that stays here. */
    CHILD_CHECK(fipc_jqueue_join(s->q, FIPC_FOREVER) == 0, 2);
    CHILD_CHECK(__atomic_load_n(&s->done[p], __ATOMIC_ACQUIRE) == s->per_producer, 3);
#endif
    return CHILD_OK;
}

static int qc_stress_consumer(int i, void *arg)
{
    struct qc_stress *s = arg;
    test_child_setup();
    int64_t last[QC_MAX_PROC];
    for (int p = 0; p < QC_MAX_PROC; p++)
        last[p] = -1;
    static unsigned char m[QC_STRESS_BATCH][QC_STRESS_MAX_ITEM];
    size_t lens[QC_STRESS_BATCH];
    uint64_t calls = 0;
    for (;;) {
        size_t n = s->v.batched
                       ? 1 + (size_t)(qc_mix64(calls++ ^ ((uint64_t)i << 40)) % QC_STRESS_BATCH)
                       : 1;
        /* stride == max_item exactly: the smallest buffer allowed. */
        int r = qc_recv(&s->v, s->q, m, QC_STRESS_MAX_ITEM, lens, n, HANDSHAKE_NS);
        if (r == -EPIPE) break;
        if (r < 1 || (size_t)r > n) return qc_stress_fail(s, 4);
        for (int k = 0; k < r; k++) {
            int bad = qc_stress_check(s, i, last, m[k], lens[k]);
            if (bad) return qc_stress_fail(s, bad);
        }
#if QC_JOINABLE
        for (int k = 0; k < r; k++) {
            struct qc_stress_head h;
            memcpy(&h, m[k], sizeof h);
            /* release: pairs with the producer's acquire after its join. */
            __atomic_fetch_add(&s->done[h.producer], 1, __ATOMIC_RELEASE);
        }
        if (qc_finish(&s->v, s->q, (size_t)r) != 0) return qc_stress_fail(s, 5);
#endif
    }
    /* -EPIPE only once closed and drained, and it stays that way. */
    CHILD_CHECK(QC(closed)(s->q), 6);
    CHILD_CHECK(QC(empty)(s->q), 7);
    CHILD_CHECK(qc_recv(&s->v, s->q, m, QC_STRESS_MAX_ITEM, lens, 1, 0) == -EPIPE, 8);
    return CHILD_OK;
}

/* The ring starts half the run below position 2^64, which is also a
 * multiple of 2^32: halfway through, positions and slot turns wrap while
 * every producer and consumer races for the slots around them. */
static void qc_stress_across_the_wraps_delivers_every_message_once_intact_in_producer_order(
    const struct qc_variant *v)
{
    int np = v->producers, nc = v->consumers, n = np + nc;
    cr_assert(np <= QC_MAX_PROC && nc <= QC_MAX_PROC);
    struct qc_stress *s = test_shared(sizeof *s);
    s->q = qc_new(v, QC_STRESS_MAX_ITEM);
    s->v = *v;
    s->per_producer = test_scaled(QC_STRESS_MESSAGES) / (uint64_t)np;
    if (s->per_producer == 0) s->per_producer = 1;
    uint64_t bits = (uint64_t)np * s->per_producer;
    s->seen = test_shared((bits + 63) / 64 * sizeof(uint64_t));
    fipc__queue_rebase(QC_RAW(s->q), 0 - bits / 2);

    /* Consumers are children 0..nc-1, producers nc..n-1. */
    pid_t pids[2 * QC_MAX_PROC];
    int status[2 * QC_MAX_PROC];
    bool done[2 * QC_MAX_PROC] = {false};
    for (int i = 0; i < nc; i++)
        pids[i] = test_fork(qc_stress_consumer, i, s);
    for (int i = 0; i < np; i++)
        pids[nc + i] = test_fork(qc_stress_producer, i, s);

    /* Close once every producer is through; stop at the first child that
     * fails, rather than wait for the others to time out. */
    int64_t end = test_now_ns() + QC_STRESS_LIMIT_NS;
    bool closed = false;
    int failed = -1, left = n;
    while (left > 0 && failed < 0 && test_now_ns() < end) {
        left = test_reap_until(pids, status, done, n, test_now_ns() + FIPC_MSEC(20));
        for (int i = 0; i < n && failed < 0; i++)
            if (done[i] && !(WIFEXITED(status[i]) && WEXITSTATUS(status[i]) == 0)) failed = i;
        bool producers_done = true;
        for (int i = nc; i < n; i++)
            producers_done = producers_done && done[i];
        if (producers_done && !closed) {
            /* Every message is in; consumers drain the rest, then see -EPIPE. */
            cr_assert_eq(QC(close)(s->q), 0);
            closed = true;
        }
    }
    for (int i = 0; i < n; i++)
        if (!done[i]) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], &status[i], 0);
        }
    int code = __atomic_load_n(&s->failure, __ATOMIC_ACQUIRE);
    cr_assert_eq(code, 0, "a consumer failed check %d", code);
    if (failed >= 0) {
        const char *who = failed < nc ? "consumer" : "producer";
        int k = failed < nc ? failed : failed - nc;
        cr_assert(WIFEXITED(status[failed]), "%s %d died of signal %d", who, k,
                  WIFSIGNALED(status[failed]) ? WTERMSIG(status[failed]) : 0);
        cr_assert_fail("%s %d failed check %d", who, k, WEXITSTATUS(status[failed]));
    }
    cr_assert_eq(left, 0, "%d of %d children still running after %lld s (%s)", left, n,
                 (long long)(QC_STRESS_LIMIT_NS / 1000000000),
                 closed ? "closed" : "producers not through");

    uint64_t per = s->per_producer;
    for (int p = 0; p < np; p++) {
        uint64_t count = 0, seqsum = 0;
        for (int c = 0; c < nc; c++) {
            count += s->tally[c].count[p];
            seqsum += s->tally[c].seqsum[p];
        }
        cr_assert_eq(count, per, "producer %d: %llu of %llu messages arrived", p,
                     (unsigned long long)count, (unsigned long long)per);
        cr_assert_eq(seqsum, per * (per - 1) / 2, "producer %d: sequence sum %llu", p,
                     (unsigned long long)seqsum);
    }
    for (uint64_t w = 0; w < bits / 64; w++)
        cr_assert_eq(s->seen[w], ~0ull, "messages missing near bit %llu",
                     (unsigned long long)w * 64);
    if (bits % 64) cr_assert_eq(s->seen[bits / 64], (1ull << (bits % 64)) - 1);
    cr_assert(QC(empty)(s->q));
    cr_assert_eq(QC(qsize)(s->q), 0);
    qc_expect_unfinished(s->q, 0);
}

/* ---- Laps: fill to capacity, drain in order, again and again ---- */

#define QC_LAPS 6

/* One lap from value *next: fill the queue to capacity, check that it is
 * full and refuses more, drain it in order; then move the ring on by one
 * or two positions, so that every lap starts at another slot. */
static void qc_lap(const struct qc_variant *v, QC_T *q, uint64_t *next, int lap)
{
    const size_t cap = v->capacity;
    cr_assert(QC(empty)(q), "lap %d", lap);
    cr_assert_not(QC(full)(q), "lap %d", lap);
    cr_assert_eq(QC(qsize)(q), 0, "lap %d", lap);

    uint64_t val[QC_MAX_CAP + 2];
    struct iovec iov[QC_MAX_CAP + 2];
    for (size_t i = 0; i < cap + 2; i++) {
        val[i] = *next + i;
        iov[i] = (struct iovec){&val[i], sizeof val[i]};
    }
    if (v->batched) {
        /* With one slot taken, a batch larger than the room moves exactly
         * as many as there are free slots, the first ones. */
        cr_assert_eq(QC(put_many)(q, iov, 1, 0), 1, "lap %d", lap);
        int r = QC(put_many)(q, iov + 1, cap + 1, 0);
        cr_assert_eq(r, (int)cap - 1, "lap %d: put_many of %zu into %zu free slots gave %d", lap,
                     cap + 1, cap - 1, r);
    } else {
        for (size_t i = 0; i < cap; i++) {
            cr_assert_eq(QC(put)(q, &val[i], sizeof val[i], 0), 0, "lap %d, put %zu", lap, i);
            cr_assert_eq(QC(qsize)(q), i + 1, "lap %d", lap);
        }
    }
    cr_assert(QC(full)(q), "lap %d: holding %zu, the queue is full", lap, cap);
    cr_assert_eq(QC(qsize)(q), cap, "lap %d", lap);
    int r = qc_send(v, q, iov + cap, 2, 0);
    cr_assert_eq(r, -EAGAIN, "lap %d: a put into a full queue gave %d", lap, r);
    cr_assert_eq(QC(qsize)(q), cap, "lap %d: the refused put added nothing", lap);
    qc_expect_unfinished(q, cap);

    if (v->batched) {
        /* get_many takes only what was asked for and leaves the rest in
         * order; asked for more than there is, it takes what there is. */
        unsigned char buf[(QC_MAX_CAP + 3) * QC_ITEM];
        size_t lens[QC_MAX_CAP + 3];
        size_t first = cap < 2 ? cap : 2;
        cr_assert_eq(QC(get_many)(q, buf, QC_ITEM, lens, first, 0), (int)first, "lap %d", lap);
        cr_assert_eq(QC(qsize)(q), cap - first, "lap %d", lap);
        r = QC(get_many)(q, buf + first * QC_ITEM, QC_ITEM, lens + first, cap + 3 - first, 0);
        cr_assert_eq(r, (int)(cap - first), "lap %d: get_many of %zu with %zu queued gave %d", lap,
                     cap + 3 - first, cap - first, r);
        for (size_t i = 0; i < cap; i++) {
            uint64_t got;
            memcpy(&got, buf + i * QC_ITEM, sizeof got);
            cr_assert(lens[i] == sizeof got && got == *next + i, "lap %d: message %zu is %llu", lap,
                      i, (unsigned long long)got);
        }
    } else {
        for (size_t i = 0; i < cap; i++) {
            qc_expect_values(v, q, *next + i, 1);
            cr_assert_eq(QC(qsize)(q), cap - i - 1, "lap %d", lap);
        }
    }
    qc_expect_nothing(v, q, -EAGAIN, 0);
    qc_finish_all(v, q, cap);
    *next += cap;

    size_t shift = 1 + (size_t)lap % 2;
    qc_put_values(v, q, *next, shift);
    qc_expect_values(v, q, *next, shift);
    qc_finish_all(v, q, shift);
    *next += shift;
}

/* Laps from position start (0: a fresh queue), then close: the last
 * message put is still got, and then -EPIPE. */
static void qc_laps_from(const struct qc_variant *v, uint64_t start)
{
    QC_T *q = qc_new(v, QC_ITEM);
    cr_assert_eq(QC(capacity)(q), v->capacity);
    cr_assert_eq(QC(max_item)(q), QC_ITEM);
    cr_assert_not(QC(closed)(q));
    if (start != 0) fipc__queue_rebase(QC_RAW(q), start);
    uint64_t next = 0;
    for (int lap = 0; lap < QC_LAPS; lap++)
        qc_lap(v, q, &next, lap);
    qc_put_values(v, q, next, 1);
    cr_assert_eq(QC(close)(q), 0);
    uint64_t x = 0;
    struct iovec it = {&x, sizeof x};
    cr_assert_eq(qc_send(v, q, &it, 1, 0), -EPIPE);
    qc_expect_values(v, q, next, 1);
    qc_expect_nothing(v, q, -EPIPE, 0);
    qc_finish_all(v, q, 1);
}

/* Where to start so that the wrap at position wrap (mod 2^64) falls in the
 * middle lap, at no particular slot. */
static uint64_t qc_start_below(const struct qc_variant *v, uint64_t wrap)
{
    return wrap - (uint64_t)(QC_LAPS / 2) * (v->capacity + 1) - 1;
}

static void qc_fills_to_capacity_and_drains_in_fifo_order_lap_after_lap(const struct qc_variant *v)
{
    qc_laps_from(v, 0);
}

/* Slot turns are 32-bit: they wrap where positions cross 2^32. */
static void qc_messages_cross_the_32_bit_turn_wrap_in_order(const struct qc_variant *v)
{
    qc_laps_from(v, qc_start_below(v, (uint64_t)1 << 32));
}

/* Positions are 64-bit: they wrap (and turns with them) at 2^64. */
static void qc_messages_cross_the_64_bit_position_wrap_in_order(const struct qc_variant *v)
{
    qc_laps_from(v, qc_start_below(v, 0));
}

/* ---- Message lengths ---- */

#define QC_SLACK 24 /* buffers larger than max_item are fine */
#define QC_GUARD 32 /* bytes after the buffer that no call may touch */

static unsigned char qc_pattern(size_t msg, size_t i)
{
    return (unsigned char)(msg * 31 + i * 7 + 3);
}

static void qc_messages_of_every_length_up_to_max_item_round_trip_intact(const struct qc_variant *v)
{
    /* Every branch of a short copy (below 4, 4..7, 8..16 bytes, longer),
     * and a NULL item for no bytes at all. */
    static const size_t lens_in[] = {
        0, 0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 255, 256, QC_BIG_ITEM - 1, QC_BIG_ITEM};
    enum { N = sizeof lens_in / sizeof *lens_in, GROUP = 5 };
    enum { STRIDE = QC_BIG_ITEM + QC_SLACK };
    QC_T *q = qc_new(v, QC_BIG_ITEM);
    static unsigned char out[N][QC_BIG_ITEM];
    static unsigned char in[GROUP * STRIDE + QC_GUARD];
    struct iovec iov[N];
    for (size_t m = 0; m < N; m++) {
        for (size_t i = 0; i < lens_in[m]; i++)
            out[m][i] = qc_pattern(m, i);
        iov[m] = (struct iovec){m == 0 ? NULL : out[m], lens_in[m]};
    }
    const size_t group = v->capacity < GROUP ? v->capacity : GROUP;
    size_t put = 0;
    for (size_t m = 0; m < N;) {
        size_t g = N - m < group ? N - m : group;
        for (size_t k = 0; k < g;) {
            int r = qc_send(v, q, iov + m + k, g - k, 0);
            cr_assert(r >= 1 && (size_t)r <= g - k, "put of message %zu gave %d (%s)", m + k, r,
                      fipc_strerror(r));
            k += (size_t)r;
        }
        put += g;
        qc_expect_unfinished(q, put);
        memset(in, 0xee, sizeof in);
        size_t lens[GROUP];
        size_t got = 0;
        while (got < g) {
            /* As many as the buffer holds, which is more than is queued
             * in the last group (and in every group of Queue(3)): only
             * what is there comes out. */
            int r = qc_recv(v, q, in + got * STRIDE, STRIDE, lens + got, GROUP - got, 0);
            cr_assert(r >= 1 && (size_t)(r) <= g - got, "get of message %zu gave %d (%s)", m + got,
                      r, fipc_strerror(r));
            got += (size_t)r;
        }
        for (size_t k = 0; k < g; k++) {
            cr_assert_eq(lens[k], lens_in[m + k], "message %zu came with %zu bytes, want %zu",
                         m + k, lens[k], lens_in[m + k]);
            cr_assert(memcmp(in + k * STRIDE, out[m + k], lens[k]) == 0,
                      "message %zu of %zu bytes came back changed", m + k, lens[k]);
        }
        for (size_t i = GROUP * STRIDE; i < sizeof in; i++)
            cr_assert_eq(in[i], 0xee, "a get wrote %zu bytes past its buffer",
                         i - GROUP * STRIDE + 1);
        m += g;
    }
    qc_expect_nothing(v, q, -EAGAIN, 0);
    qc_finish_all(v, q, put);
}

/* ---- Bad arguments ---- */

/* The timeout for bad calls on a full or empty queue: one that waited
 * before looking at its arguments would come back with -ETIMEDOUT. */
#define QC_BAD_WAIT_NS FIPC_SEC(2)

static void qc_bad_calls(const struct qc_variant *v, QC_T *q, int64_t timeout_ns)
{
    char ok[QC_ITEM / 2] = "abcdefgh", big[QC_ITEM / 2 + 1] = "ABCDEFGHI";
    unsigned char buf[4 * QC_ITEM];
    size_t len = 0, lens[4];
    const size_t max = QC_ITEM / 2;
    if (!v->batched) {
        cr_assert_eq(QC(put)(NULL, ok, 1, timeout_ns), -EINVAL);
        cr_assert_eq(QC(put)(q, NULL, 1, timeout_ns), -EINVAL);
        cr_assert_eq(QC(put)(q, big, max + 1, timeout_ns), -EMSGSIZE);
        cr_assert_eq(QC(get)(NULL, buf, max, &len, timeout_ns), -EINVAL);
        cr_assert_eq(QC(get)(q, NULL, max, &len, timeout_ns), -EINVAL);
        cr_assert_eq(QC(get)(q, buf, max, NULL, timeout_ns), -EINVAL);
        /* The message would fit, but cap < max_item is refused all the same. */
        cr_assert_eq(QC(get)(q, buf, max - 1, &len, timeout_ns), -EINVAL);
        return;
    }
    struct iovec good[2] = {{ok, max}, {ok, 1}};
    struct iovec null_mid[3] = {{ok, max}, {NULL, 1}, {ok, 1}};
    struct iovec big_mid[3] = {{ok, max}, {big, max + 1}, {ok, 1}};
    cr_assert_eq(QC(put_many)(NULL, good, 2, timeout_ns), -EINVAL);
    cr_assert_eq(QC(put_many)(q, NULL, 2, timeout_ns), -EINVAL);
    cr_assert_eq(QC(put_many)(q, good, 0, timeout_ns), -EINVAL);
    cr_assert_eq(QC(put_many)(q, null_mid, 3, timeout_ns), -EINVAL);
    /* One item too long: the valid ones before it are not put either. */
    cr_assert_eq(QC(put_many)(q, big_mid, 3, timeout_ns), -EMSGSIZE);
    cr_assert_eq(QC(get_many)(NULL, buf, max, lens, 4, timeout_ns), -EINVAL);
    cr_assert_eq(QC(get_many)(q, NULL, max, lens, 4, timeout_ns), -EINVAL);
    cr_assert_eq(QC(get_many)(q, buf, max, NULL, 4, timeout_ns), -EINVAL);
    cr_assert_eq(QC(get_many)(q, buf, max, lens, 0, timeout_ns), -EINVAL);
    cr_assert_eq(QC(get_many)(q, buf, max - 1, lens, 4, timeout_ns), -EINVAL);
}

static void qc_bad_arguments_fail_with_their_code_and_lose_nothing(const struct qc_variant *v)
{
    /* max_item 8, so that the 8-byte values fit exactly. */
    QC_T *q = NULL;
    int r = QC(create)(&q, NULL, v->capacity, QC_ITEM / 2, v->flags);
    cr_assert_eq(r, 0, "create: %s", fipc_strerror(r));
    const size_t cap = v->capacity;

    /* Holding two messages: a refused get takes none, a refused put adds
     * none, and neither changes the count of unfinished items. */
    size_t held = cap < 2 ? cap : 2;
    qc_put_values(v, q, 0, held);
    qc_bad_calls(v, q, 0);
    qc_bad_calls(v, q, FIPC_MSEC(10));
    cr_assert_eq(QC(qsize)(q), held);
    qc_expect_unfinished(q, held);

    /* Full: a bad put fails at once with its own code, not by waiting for
     * room (and then -ETIMEDOUT); empty: a bad get fails at once, not by
     * waiting for a message. */
    qc_put_values(v, q, held, cap - held);
    cr_assert(QC(full)(q));
    qc_bad_calls(v, q, QC_BAD_WAIT_NS);
    cr_assert_eq(QC(qsize)(q), cap);
    qc_expect_unfinished(q, cap);
    qc_expect_values(v, q, 0, cap);
    qc_bad_calls(v, q, QC_BAD_WAIT_NS);
    cr_assert(QC(empty)(q));
    qc_expect_nothing(v, q, -EAGAIN, 0);
    qc_finish_all(v, q, cap);
}

/* ---- Timeouts ---- */

#define QC_TIMEOUT_NS FIPC_MSEC(50)

static void qc_get_times_out_on_an_empty_queue(const struct qc_variant *v)
{
    QC_T *q = qc_new(v, QC_ITEM);
    unsigned char buf[4 * QC_ITEM];
    size_t lens[4];
    int64_t dt;
    cr_assert_eq(qc_recv(v, q, buf, QC_ITEM, lens, 4, 0), -EAGAIN);
    int r = QC_TIMED(&dt, qc_recv(v, q, buf, QC_ITEM, lens, 4, QC_TIMEOUT_NS));
    qc_expect_timed_out("get", r, dt, QC_TIMEOUT_NS);
    /* Nothing happened to the queue meanwhile. */
    cr_assert(QC(empty)(q));
    qc_put_values(v, q, 7, 1);
    qc_expect_values(v, q, 7, 1);
    qc_finish_all(v, q, 1);
}

static void qc_put_times_out_on_a_full_queue_and_adds_nothing(const struct qc_variant *v)
{
    QC_T *q = qc_new(v, QC_ITEM);
    const size_t cap = v->capacity;
    qc_put_values(v, q, 0, cap);
    uint64_t x[2] = {1000, 1001};
    struct iovec iov[2] = {{&x[0], 8}, {&x[1], 8}};
    int64_t dt;
    cr_assert_eq(qc_send(v, q, iov, 2, 0), -EAGAIN);
    int r = QC_TIMED(&dt, qc_send(v, q, iov, 2, QC_TIMEOUT_NS));
    qc_expect_timed_out("put", r, dt, QC_TIMEOUT_NS);
    cr_assert_eq(QC(qsize)(q), cap);
    qc_expect_unfinished(q, cap);
    qc_expect_values(v, q, 0, cap);
    qc_expect_nothing(v, q, -EAGAIN, 0);
    qc_finish_all(v, q, cap);
}

/* ---- Sleepers woken by the other side ---- */

struct qc_sleeper {
    QC_T *q;
    struct qc_variant v;
    uint32_t started;  /* atomic: children about to block */
    uint32_t finished; /* atomic: items marked done, raised before task_done */
};

static struct qc_sleeper *qc_new_sleeper(const struct qc_variant *v)
{
    struct qc_sleeper *s = test_shared(sizeof *s);
    s->q = qc_new(v, QC_ITEM);
    s->v = *v;
    return s;
}

/* Exits with 10 + how many it got (1 or 2: values 0 and 1). */
static int qc_get_sleeper(int i, void *arg)
{
    struct qc_sleeper *s = arg;
    test_child_setup();
    fault_sleep_until_woken();
    test_flag_add(&s->started);
    unsigned char buf[4 * QC_ITEM];
    size_t lens[4];
    int r = qc_recv(&s->v, s->q, buf, QC_ITEM, lens, 4, HANDSHAKE_NS);
    CHILD_CHECK(r >= 1 && r <= 2, 1);
    for (int k = 0; k < r; k++) {
        uint64_t got;
        memcpy(&got, buf + (size_t)k * QC_ITEM, sizeof got);
        CHILD_CHECK(lens[k] == sizeof got && got == (uint64_t)k, 2);
    }
    return 10 + r;
}

/* Reap child pid, which must end by itself within REAP_NS with a count
 * (exit status 10 + n, 1 <= n <= max); returns n. */
static int qc_expect_count(pid_t pid, int max)
{
    int status;
    bool done = false;
    if (test_reap_until(&pid, &status, &done, 1, test_now_ns() + REAP_NS) > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cr_assert_fail("the child was still blocked after %lld s",
                       (long long)(REAP_NS / 1000000000));
    }
    cr_assert(WIFEXITED(status), "the child died of signal %d",
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    int n = WEXITSTATUS(status) - 10;
    cr_assert(n >= 1 && n <= max, "the child failed check %d", WEXITSTATUS(status));
    return n;
}

static void qc_get_asleep_on_an_empty_queue_wakes_for_a_put(const struct qc_variant *v)
{
    struct qc_sleeper *s = qc_new_sleeper(v);
    pid_t pid = test_fork(qc_get_sleeper, 0, s);
    cr_assert(test_wait_until_at_least(&s->started, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS), "the getter never slept");
    size_t two = v->capacity < 2 ? v->capacity : 2;
    qc_put_values(v, s->q, 0, two);
    int got = qc_expect_count(pid, (int)two);
    /* What the getter did not take is still there, in order. */
    qc_expect_values(v, s->q, (uint64_t)got, two - (size_t)got);
    qc_expect_nothing(v, s->q, -EAGAIN, 0);
    qc_finish_all(v, s->q, two);
}

/* Exits with 10 + how many of its three values (100, 101, 102) it put. */
static int qc_put_sleeper(int i, void *arg)
{
    struct qc_sleeper *s = arg;
    test_child_setup();
    fault_sleep_until_woken();
    test_flag_add(&s->started);
    uint64_t x[3] = {100, 101, 102};
    struct iovec iov[3] = {{&x[0], 8}, {&x[1], 8}, {&x[2], 8}};
    int r = qc_send(&s->v, s->q, iov, 3, HANDSHAKE_NS);
    CHILD_CHECK(r >= 1 && r <= 3, 1);
    return 10 + r;
}

static void qc_put_asleep_on_a_full_queue_wakes_when_a_slot_frees(const struct qc_variant *v)
{
    struct qc_sleeper *s = qc_new_sleeper(v);
    const size_t cap = v->capacity;
    qc_put_values(v, s->q, 0, cap);
#if QC_JOINABLE
    /* As Python counts: items put, not items got, may be marked done; and
     * a put still waiting for room has put nothing yet. */
    qc_finish_all(v, s->q, cap);
#endif
    pid_t pid = test_fork(qc_put_sleeper, 0, s);
    cr_assert(test_wait_until_at_least(&s->started, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS), "the putter never slept");
#if QC_JOINABLE
    qc_expect_unfinished(s->q, 0);
    cr_assert_eq(fipc_jqueue_join(s->q, 0), 0, "the sleeping put counts for nothing yet");
    cr_assert_eq(fipc_jqueue_task_done(s->q), -EOVERFLOW);
#endif
    qc_expect_values(v, s->q, 0, 1);
    int moved = qc_expect_count(pid, 3);
    cr_assert_eq(moved, 1, "one slot was free, yet the put moved %d", moved);
    qc_expect_values(v, s->q, 1, cap - 1);
    qc_expect_values(v, s->q, 100, 1);
    qc_expect_nothing(v, s->q, -EAGAIN, 0);
#if QC_JOINABLE
    qc_expect_unfinished(s->q, 1);
    cr_assert_eq(fipc_jqueue_join(s->q, 0), -EAGAIN);
    qc_finish_all(v, s->q, 1);
#endif
}

/* ---- Close ---- */

static void qc_close_lets_getters_drain_everything_put_then_gives_epipe(const struct qc_variant *v)
{
    const size_t cap = v->capacity;
    uint64_t x = 99;
    struct iovec it[2] = {{&x, 8}, {&x, 8}};

    /* Closed while full. */
    QC_T *q = qc_new(v, QC_ITEM);
    qc_put_values(v, q, 0, cap);
    cr_assert_not(QC(closed)(q));
    cr_assert_eq(QC(close)(q), 0);
    cr_assert(QC(closed)(q));
    cr_assert_eq(QC(close)(q), 0, "close is idempotent");
    cr_assert(QC(closed)(q));
    cr_assert_eq(qc_send(v, q, it, 2, 0), -EPIPE);
    cr_assert_eq(qc_send(v, q, it, 2, FIPC_MSEC(10)), -EPIPE);
    cr_assert_eq(qc_send(v, q, it, 2, FIPC_FOREVER), -EPIPE);
    cr_assert_eq(QC(qsize)(q), cap, "the refused puts added nothing");
    qc_expect_unfinished(q, cap);
    qc_expect_values(v, q, 0, cap);
    qc_expect_nothing(v, q, -EPIPE, 0);
    qc_expect_nothing(v, q, -EPIPE, FIPC_MSEC(10));
    qc_expect_nothing(v, q, -EPIPE, FIPC_FOREVER);
    cr_assert(QC(empty)(q));
    cr_assert(QC(closed)(q));
    qc_finish_all(v, q, cap);

    /* Closed while partly full (the next lap's first position is not the
     * ring's first), then while empty. */
    q = qc_new(v, QC_ITEM);
    qc_put_values(v, q, 0, cap);
    qc_expect_values(v, q, 0, cap - 1);
    qc_put_values(v, q, cap, 1);
    cr_assert_eq(QC(close)(q), 0);
    cr_assert_eq(qc_send(v, q, it, 2, FIPC_FOREVER), -EPIPE);
    qc_expect_values(v, q, cap - 1, 2);
    qc_expect_nothing(v, q, -EPIPE, FIPC_FOREVER);
    qc_finish_all(v, q, cap + 1);

    q = qc_new(v, QC_ITEM);
    cr_assert_eq(QC(close)(q), 0);
    qc_expect_nothing(v, q, -EPIPE, FIPC_FOREVER);
    cr_assert_eq(qc_send(v, q, it, 2, FIPC_FOREVER), -EPIPE);
    qc_expect_nothing(v, q, -EPIPE, 0);
    qc_expect_unfinished(q, 0);
}

static int qc_get_until_epipe(int i, void *arg)
{
    struct qc_sleeper *s = arg;
    test_child_setup();
    fault_sleep_until_woken();
    test_flag_add(&s->started);
    unsigned char buf[4 * QC_ITEM];
    size_t lens[4];
    CHILD_CHECK(qc_recv(&s->v, s->q, buf, QC_ITEM, lens, 4, FIPC_FOREVER) == -EPIPE, 1);
    return CHILD_OK;
}

static void qc_close_wakes_getters_asleep_on_an_empty_queue_with_epipe(const struct qc_variant *v)
{
    struct qc_sleeper *s = qc_new_sleeper(v);
    int n = v->consumers;
    pid_t pids[QC_MAX_PROC];
    for (int i = 0; i < n; i++)
        pids[i] = test_fork(qc_get_until_epipe, i, s);
    cr_assert(test_wait_until_at_least(&s->started, (uint32_t)n, HANDSHAKE_NS));
    for (int i = 0; i < n; i++)
        cr_assert(test_wait_sleeping(pids[i], HANDSHAKE_NS), "getter %d never slept", i);
    cr_assert_eq(QC(close)(s->q), 0);
    test_reap_within(pids, n, REAP_NS);
}

static int qc_put_until_epipe(int i, void *arg)
{
    struct qc_sleeper *s = arg;
    test_child_setup();
    fault_sleep_until_woken();
    test_flag_add(&s->started);
    uint64_t x[2] = {100, 101};
    struct iovec iov[2] = {{&x[0], 8}, {&x[1], 8}};
    CHILD_CHECK(qc_send(&s->v, s->q, iov, 2, FIPC_FOREVER) == -EPIPE, 1);
    return CHILD_OK;
}

static void qc_close_wakes_a_put_asleep_on_a_full_queue_with_epipe(const struct qc_variant *v)
{
    struct qc_sleeper *s = qc_new_sleeper(v);
    const size_t cap = v->capacity;
    qc_put_values(v, s->q, 0, cap);
    pid_t pid = test_fork(qc_put_until_epipe, 0, s);
    cr_assert(test_wait_until_at_least(&s->started, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS), "the putter never slept");
    cr_assert_eq(QC(close)(s->q), 0);
    test_reap_within(&pid, 1, REAP_NS);
    /* The woken put added nothing; what was in is still drained. */
    cr_assert_eq(QC(qsize)(s->q), cap);
    qc_expect_unfinished(s->q, cap);
    qc_expect_values(v, s->q, 0, cap);
    qc_expect_nothing(v, s->q, -EPIPE, 0);
    qc_finish_all(v, s->q, cap);
}

/* ---- Close racing with put: no successful put is stranded ---- */

#define QC_RACE_ROUNDS 40
#define QC_RACE_BATCH  4

struct qc_race {
    QC_T *q;
    struct qc_variant v;
    size_t item;
    uint32_t puts; /* messages whose put returned success; by the producer */
    uint32_t gets; /* messages got; by the consumer */
};

static int qc_race_producer(int i, void *arg)
{
    struct qc_race *rc = arg;
    test_child_setup();
    static unsigned char m[64 << 10];
    struct iovec iov[QC_RACE_BATCH];
    for (int k = 0; k < QC_RACE_BATCH; k++)
        iov[k] = (struct iovec){m, rc->item};
    int r;
    for (unsigned k = 0;; k++) {
        size_t n = rc->v.batched ? 1 + k % QC_RACE_BATCH : 1;
        if ((r = qc_send(&rc->v, rc->q, iov, n, HANDSHAKE_NS)) < 0) break;
        /* release: pairs with the parent's acquire after reaping, and
         * keeps the count ahead of the consumer's for the parent's wait. */
        __atomic_fetch_add(&rc->puts, (uint32_t)r, __ATOMIC_RELEASE);
    }
    CHILD_CHECK(r == -EPIPE, 1);
    return CHILD_OK;
}

static int qc_race_consumer(int i, void *arg)
{
    struct qc_race *rc = arg;
    test_child_setup();
    static unsigned char m[QC_RACE_BATCH * (64 << 10)];
    size_t lens[QC_RACE_BATCH];
    int r;
    while ((r = qc_recv(&rc->v, rc->q, m, rc->item, lens, QC_RACE_BATCH, HANDSHAKE_NS)) > 0) {
#if QC_JOINABLE
        CHILD_CHECK(qc_finish(&rc->v, rc->q, (size_t)r) == 0, 2);
#endif
        /* release: pairs with the parent's acquire in its wait. */
        __atomic_fetch_add(&rc->gets, (uint32_t)r, __ATOMIC_RELEASE);
    }
    CHILD_CHECK(r == -EPIPE, 1);
    return CHILD_OK;
}

/* Close at varied moments while a producer streams long messages to a
 * consumer: every put that returned success must reach the consumer before
 * its -EPIPE, however the close falls between a put's check of closed and
 * its publication. */
static void
qc_close_racing_put_never_strands_a_message_whose_put_succeeded(const struct qc_variant *v)
{
    struct qc_race *rc = test_shared(sizeof *rc);
    /* Long messages widen the window inside put; a ring of 256 KiB at most
     * keeps each round's arena small. */
    size_t ring = 2;
    while (ring < v->capacity)
        ring <<= 1;
    size_t item = ((size_t)256 << 10) / ring;
    item = item > (64 << 10) ? (64 << 10) : item < 1024 ? 1024 : item;
    /* Rounds start at 0 or a few positions below a wrap: of slot turns
     * (2^32), of the position the SPSC close settlement keeps (2^62), and
     * of positions (2^64). */
    static const uint64_t wraps[] = {0, (uint64_t)1 << 32, (uint64_t)1 << 62, 0};
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int rounds = (int)test_scaled(QC_RACE_ROUNDS);
    for (int round = 0; round < rounds; round++) {
        /* An arena per round, so the rounds' rings do not pile up. */
        fipc_arena *a = NULL;
        cr_assert_eq(fipc_arena_create(&a, "close-race", ring * (item + 64) + (1 << 20)), 0);
        memset(rc, 0, sizeof *rc);
        rc->v = *v;
        rc->item = item;
        rc->q = qc_new_in(v, a, item);
        int w = round % 4;
        if (w != 0) fipc__queue_rebase(QC_RAW(rc->q), wraps[w] - 1 - (uint64_t)(round / 4 % 5));
        pid_t cons = test_fork(qc_race_consumer, 0, rc);
        pid_t prod = test_fork(qc_race_producer, 0, rc);
        /* Let a few messages through, then close after a varied delay. */
        cr_assert(test_wait_until_at_least(&rc->gets, 1 + (uint32_t)round % 3, HANDSHAKE_NS));
        rng = qc_mix64(rng + (uint64_t)round);
        for (volatile uint64_t spin = rng % 200000; spin > 0; spin--)
            ;
        cr_assert_eq(QC(close)(rc->q), 0);
        pid_t both[2] = {prod, cons};
        test_reap_within(both, 2, REAP_NS);
        uint32_t puts = __atomic_load_n(&rc->puts, __ATOMIC_ACQUIRE);
        uint32_t gets = __atomic_load_n(&rc->gets, __ATOMIC_ACQUIRE);
        cr_assert_eq(gets, puts,
                     "round %d: %u puts succeeded but the consumer got %u before -EPIPE", round,
                     puts, gets);
        /* Nothing is left to get, and nothing counts as unfinished.  (A
         * put that lost the race to close may have left a tombstone, which
         * this get skips.) */
        static unsigned char left[QC_RACE_BATCH * (64 << 10)];
        size_t lens[QC_RACE_BATCH];
        int r = qc_recv(v, rc->q, left, item, lens, QC_RACE_BATCH, 0);
        cr_assert_eq(r, -EPIPE, "round %d: a message was left behind (get gave %d)", round, r);
        /* Once a get has said -EPIPE with every put over, nothing is left
         * for the snapshots to count either. */
        cr_assert(QC(empty)(rc->q), "round %d: qsize %zu after -EPIPE", round, QC(qsize)(rc->q));
        qc_expect_unfinished(rc->q, 0);
        fipc_arena_close(a);
    }
}

/* ---- Signals never cut a wait short ---- */

#define QC_SIGNALED_NS FIPC_MSEC(200)

struct qc_late {
    const struct qc_variant *v;
    QC_T *q;
};

/* The pester's action after its 20th signal: put value 7. */
static void qc_put_late(void *arg)
{
    struct qc_late *l = arg;
    uint64_t x = 7;
    struct iovec it = {&x, sizeof x};
    qc_send(l->v, l->q, &it, 1, 0);
}

/* The pester's action after its 20th signal: get one message. */
static void qc_get_late(void *arg)
{
    struct qc_late *l = arg;
    unsigned char buf[QC_ITEM];
    size_t len;
    qc_recv(l->v, l->q, buf, QC_ITEM, &len, 1, 0);
}

static void qc_timed_calls_are_not_cut_short_by_signals(const struct qc_variant *v)
{
    QC_T *q = qc_new(v, QC_ITEM);
    struct test_pester p = {0};
    unsigned char buf[4 * QC_ITEM];
    size_t lens[4];
    uint64_t x[2] = {100, 101};
    struct iovec iov[2] = {{&x[0], 8}, {&x[1], 8}};
    int64_t dg, dp;
    test_pester_start(&p);
    int rg = QC_TIMED(&dg, qc_recv(v, q, buf, QC_ITEM, lens, 4, QC_SIGNALED_NS));
    qc_put_values(v, q, 0, v->capacity);
    int rp = QC_TIMED(&dp, qc_send(v, q, iov, 2, QC_SIGNALED_NS));
    test_pester_stop(&p);
    qc_expect_timed_out("get", rg, dg, QC_SIGNALED_NS);
    qc_expect_timed_out("put", rp, dp, QC_SIGNALED_NS);
    qc_expect_values(v, q, 0, v->capacity);
    qc_finish_all(v, q, v->capacity);
}

static void qc_get_forever_survives_signals_and_returns_the_message(const struct qc_variant *v)
{
    QC_T *q = qc_new(v, QC_ITEM);
    struct qc_late late = {v, q};
    struct test_pester p = {.then = qc_put_late, .arg = &late};
    unsigned char buf[4 * QC_ITEM];
    size_t lens[4];
    test_pester_start(&p);
    int r = qc_recv(v, q, buf, QC_ITEM, lens, 4, FIPC_FOREVER);
    test_pester_stop(&p);
    cr_assert_eq(r, 1, "get gave %d (%s)", r, fipc_strerror(r));
    uint64_t got;
    memcpy(&got, buf, sizeof got);
    cr_assert(lens[0] == sizeof got && got == 7, "got %llu", (unsigned long long)got);
    qc_finish_all(v, q, 1);
}

static void
qc_put_forever_survives_signals_and_completes_once_a_slot_frees(const struct qc_variant *v)
{
    QC_T *q = qc_new(v, QC_ITEM);
    const size_t cap = v->capacity;
    qc_put_values(v, q, 0, cap);
    struct qc_late late = {v, q};
    struct test_pester p = {.then = qc_get_late, .arg = &late};
    uint64_t x[2] = {100, 101};
    struct iovec iov[2] = {{&x[0], 8}, {&x[1], 8}};
    test_pester_start(&p);
    int r = qc_send(v, q, iov, 2, FIPC_FOREVER);
    test_pester_stop(&p);
    cr_assert_eq(r, 1, "put gave %d (%s) for the one free slot", r, fipc_strerror(r));
    /* The pester took value 0. */
    qc_expect_values(v, q, 1, cap - 1);
    qc_expect_values(v, q, 100, 1);
    qc_expect_nothing(v, q, -EAGAIN, 0);
    qc_finish_all(v, q, cap + 1);
}

/* ---- Offsets only: a second mapping at another address ---- */

static fipc_arena *qc_arena_holding(const struct qc_variant *v, QC_T **q)
{
    fipc_arena *a = NULL;
    cr_assert_eq(fipc_arena_create(&a, "queue-contract", 1 << 20), 0);
    *q = qc_new_in(v, a, QC_ITEM);
    cr_assert_eq(fipc_arena_publish(a, "queue", *q), 0);
    return a;
}

static void qc_works_through_a_second_mapping_at_another_address(const struct qc_variant *v)
{
    const size_t cap = v->capacity;
    QC_T *q;
    fipc_arena *a = qc_arena_holding(v, &q), *b = NULL;
    cr_assert_eq(fipc_arena_attach(&b, fipc_arena_fd(a)), 0);
    QC_T *qb = fipc_arena_lookup(b, "queue");
    cr_assert_not_null(qb);
    cr_assert_neq((void *)qb, (void *)q, "the second mapping is at another address");
    cr_assert_eq(QC(capacity)(qb), cap);

    /* Filled through one mapping, seen full and drained through the other. */
    qc_put_values(v, q, 0, cap);
    cr_assert(QC(full)(qb));
    cr_assert_eq(QC(qsize)(qb), cap);
    uint64_t more = 1000;
    struct iovec one = {&more, sizeof more};
    cr_assert_eq(qc_send(v, q, &one, 1, 0), -EAGAIN);
    qc_expect_values(v, qb, 0, cap);
    qc_expect_unfinished(qb, cap);
    qc_finish_all(v, q, cap);
    /* Laps the other way round. */
    uint64_t next = cap;
    for (int lap = 0; lap < 2 * QC_LAPS; lap++) {
        size_t n = 1 + (size_t)lap % cap;
        qc_put_values(v, qb, next, n);
        qc_expect_values(v, q, next, n);
        next += n;
    }
    qc_finish_all(v, qb, next - cap);
    /* Closed through one, closed for the other. */
    qc_put_values(v, q, next, 1);
    cr_assert_eq(QC(close)(qb), 0);
    cr_assert(QC(closed)(q));
    uint64_t x = 0;
    struct iovec it = {&x, 8};
    cr_assert_eq(qc_send(v, q, &it, 1, 0), -EPIPE);
    qc_expect_values(v, q, next, 1);
    qc_expect_nothing(v, qb, -EPIPE, 0);
    qc_finish_all(v, q, 1);
    fipc_arena_close(b);
    fipc_arena_close(a);
}

struct qc_remap {
    fipc_arena *arena;
    QC_T *q;     /* parent to child, at the parent's (and inherited) address */
    QC_T *reply; /* child to parent */
    struct qc_variant v;
    uint32_t started;
};

/* Map the arena again, find the queues at their new address, and get
 * there, asleep at first, what the parent puts through the old address
 * until it closes the queue; answer with the count. */
static int qc_remapped_consumer(int i, void *arg)
{
    struct qc_remap *m = arg;
    test_child_setup();
    fault_sleep_until_woken(); /* woken through the other mapping, or not at all */
    fipc_arena *again = NULL;
    CHILD_CHECK(fipc_arena_attach(&again, fipc_arena_fd(m->arena)) == 0, 1);
    QC_T *q = fipc_arena_lookup(again, "queue");
    QC_T *reply = fipc_arena_lookup(again, "reply");
    CHILD_CHECK(q != NULL && reply != NULL, 2);
    CHILD_CHECK(q != m->q, 3); /* really another address */
    CHILD_CHECK(QC(capacity)(q) == m->v.capacity && QC(max_item)(q) == QC_ITEM, 4);
    test_flag_add(&m->started);
    unsigned char buf[4 * QC_ITEM];
    size_t lens[4];
    uint64_t count = 0;
    int r;
    while ((r = qc_recv(&m->v, q, buf, QC_ITEM, lens, 4, HANDSHAKE_NS)) > 0) {
        for (int k = 0; k < r; k++, count++) {
            uint64_t got;
            memcpy(&got, buf + (size_t)k * QC_ITEM, sizeof got);
            CHILD_CHECK(lens[k] == sizeof got && got == count, 5);
        }
#if QC_JOINABLE
        CHILD_CHECK(qc_finish(&m->v, q, (size_t)r) == 0, 6);
#endif
    }
    CHILD_CHECK(r == -EPIPE, 7);
    CHILD_CHECK(QC(closed)(q), 8);
    struct iovec it = {&count, sizeof count};
    CHILD_CHECK(qc_send(&m->v, reply, &it, 1, HANDSHAKE_NS) == 1, 9);
    return CHILD_OK;
}

static void
qc_works_between_processes_that_map_it_at_different_addresses(const struct qc_variant *v)
{
    struct qc_remap *m = test_shared(sizeof *m);
    m->v = *v;
    m->arena = qc_arena_holding(v, &m->q);
    m->reply = qc_new_in(v, m->arena, QC_ITEM);
    cr_assert_eq(fipc_arena_publish(m->arena, "reply", m->reply), 0);
    pid_t pid = test_fork(qc_remapped_consumer, 0, m);
    cr_assert(test_wait_until_at_least(&m->started, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(pid, HANDSHAKE_NS), "the other process never slept");
    /* More than fit at once: each side sleeps on the other now and then,
     * and every wake crosses from one mapping to the other. */
    const uint64_t n = 3 * v->capacity + 1;
    for (uint64_t k = 0; k < n; k++) {
        struct iovec it = {&k, sizeof k};
        int r = qc_send(v, m->q, &it, 1, HANDSHAKE_NS);
        cr_assert_eq(r, 1, "put %llu: %s", (unsigned long long)k, fipc_strerror(r));
    }
#if QC_JOINABLE
    int rj = fipc_jqueue_join(m->q, HANDSHAKE_NS);
    cr_assert_eq(rj, 0, "join: %s", fipc_strerror(rj));
#endif
    cr_assert_eq(QC(close)(m->q), 0);
    uint64_t count = 0;
    size_t len = 0;
    int r = qc_recv(v, m->reply, &count, QC_ITEM, &len, 1, HANDSHAKE_NS);
    cr_assert_eq(r, 1, "reply: %s", fipc_strerror(r));
    cr_assert(len == sizeof count && count == n, "the other process got %llu of %llu",
              (unsigned long long)count, (unsigned long long)n);
    test_reap_within(&pid, 1, REAP_NS);
    qc_finish_all(v, m->reply, 1);
}

/* ---- Join: every item put, then done ---- */

#if QC_JOINABLE
#define QC_JOINERS 3

struct qc_joiners {
    QC_T *q;
    uint32_t started;  /* atomic */
    uint32_t finished; /* atomic: items done, raised before task_done */
    uint32_t items;
};

static int qc_joiner(int i, void *arg)
{
    struct qc_joiners *j = arg;
    test_child_setup();
    fault_sleep_until_woken();
    test_flag_add(&j->started);
    CHILD_CHECK(fipc_jqueue_join(j->q, HANDSHAKE_NS) == 0, 1);
    size_t unfinished = fipc_jqueue_unfinished(j->q);
    uint32_t finished = test_flag_get(&j->finished);
    CHILD_CHECK(unfinished == 0, 2);
    CHILD_CHECK(finished == j->items, 3); /* not woken before the last one */
    return CHILD_OK;
}

static void qc_join_waits_until_every_item_put_is_done(const struct qc_variant *v)
{
    struct qc_joiners *j = test_shared(sizeof *j);
    j->q = qc_new(v, QC_ITEM);
    QC_T *q = j->q;
    cr_assert_eq(fipc_jqueue_join(q, 0), 0, "nothing put: join returns at once");
    cr_assert_eq(fipc_jqueue_join(q, FIPC_MSEC(10)), 0);
    cr_assert_eq(fipc_jqueue_join(q, FIPC_FOREVER), 0);
    cr_assert_eq(qc_finish(v, q, 1), -EOVERFLOW, "nothing is unfinished");
    qc_expect_unfinished(q, 0);

    const size_t k = v->capacity < 4 ? v->capacity : 4;
    j->items = (uint32_t)k;
    qc_put_values(v, q, 0, k);
    qc_expect_unfinished(q, k);
    cr_assert_eq(fipc_jqueue_join(q, 0), -EAGAIN);
    int64_t dt;
    int r = QC_TIMED(&dt, fipc_jqueue_join(q, QC_TIMEOUT_NS));
    qc_expect_timed_out("join", r, dt, QC_TIMEOUT_NS);
    /* Getting an item is not finishing it. */
    qc_expect_values(v, q, 0, k);
    qc_expect_unfinished(q, k);
    cr_assert_eq(fipc_jqueue_join(q, 0), -EAGAIN);
    if (v->batched) {
        cr_assert_eq(fipc_jqueue_task_done_many(q, k + 1), -EOVERFLOW);
        qc_expect_unfinished(q, k);
    }

    pid_t pids[QC_JOINERS];
    for (int i = 0; i < QC_JOINERS; i++)
        pids[i] = test_fork(qc_joiner, i, j);
    cr_assert(test_wait_until_at_least(&j->started, QC_JOINERS, HANDSHAKE_NS));
    for (int i = 0; i < QC_JOINERS; i++)
        cr_assert(test_wait_sleeping(pids[i], HANDSHAKE_NS), "joiner %d never slept", i);
    /* All but the last item: batched at once, or one at a time. */
    size_t steps = v->batched ? 1 : k - 1, per = v->batched ? k - 1 : 1;
    for (size_t s = 0; s < steps && k > 1; s++) {
        __atomic_add_fetch(&j->finished, (uint32_t)per, __ATOMIC_RELEASE);
        cr_assert_eq(qc_finish(v, q, per), 0);
        /* A joiner woken by mistake would leave join and exit; one still
         * blocked goes (back) to sleep. */
        for (int i = 0; i < QC_JOINERS; i++)
            cr_assert(test_wait_sleeping(pids[i], HANDSHAKE_NS),
                      "joiner %d left join with %u of %zu items done", i,
                      test_flag_get(&j->finished), k);
    }
    test_flag_add(&j->finished);
    cr_assert_eq(qc_finish(v, q, 1), 0);
    test_reap_within(pids, QC_JOINERS, REAP_NS);
    qc_expect_unfinished(q, 0);

    /* One more is one too many, and banks no credit for the next item. */
    cr_assert_eq(qc_finish(v, q, 1), -EOVERFLOW);
    qc_put_values(v, q, k, 1);
    qc_expect_unfinished(q, 1);
    cr_assert_eq(fipc_jqueue_join(q, 0), -EAGAIN);
}
#endif

/* ---- Every behaviour on every cell ---- */

QC_BEHAVIOURS(QC_EACH_CELL)
#if QC_JOINABLE
QC_JOIN_BEHAVIOURS(QC_EACH_CELL)
#endif

#endif
