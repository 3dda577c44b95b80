/*
 * fuzz_queue.c - libFuzzer harness: queue and JoinableQueue calls on a
 * queue whose shared memory a peer overwrote.
 *
 * The input picks a queue (MPMC or SPSC, plain or joinable, capacity,
 * max_item) in a fresh arena and how many messages to put first, then two
 * sequences of operations: the first runs in one thread (which validates
 * the queue's geometry on its first call, queue.c "views"), the second in
 * a fresh thread (which validates it again, after whatever the first
 * sequence overwrote).  An operation is a call (put, get, put_many,
 * get_many, close, the snapshots, task_done, join), each with a timeout of
 * 0, 10 us or 1 ms, or an overwrite of bytes anywhere in the queue's footprint
 * (its control lines, slots, claimer records, a jqueue's counters).
 *
 * Checked after every call: the return code is one the call documents;
 * a get wrote nothing past the length it returned, nor past the buffer
 * (which is a heap block of exactly that size, so ASan sees any overflow);
 * returned lengths and counts fit what was passed; no call took much longer
 * than its timeout.  A call that loops without bound trips libFuzzer's
 * -timeout.
 *
 * Input layout (bytes; what runs short reads as zeros):
 *   kind cap item nputs  n1 op1[n1]  n2 op2[n2]
 *   op: code arg, and for an overwrite: mode pick_lo pick_hi then
 *       mode 0: len bytes[len]; 1: delta (added to the 32-bit word);
 *       2: which (a 64-bit value from a table); 3: delta (the 32-bit word
 *       becomes max_item + delta)
 *   an overwrite's arg says where pick lands (target): anywhere in the
 *   footprint, the control lines (or line 5's link to more claimer
 *   records), a slot's turn or length, the claimer records, a jqueue's
 *   counters
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fipc.h>

#include "jqueue_impl.h"
#include "queue_impl.h"
#include "queue_view.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define GUARD    0x5a
#define MAX_MANY 8
/* Slack over a call's own timeout before it counts as waiting past it.
 * Generous: on a loaded machine running ASan a thread can lose the CPU for
 * tens of seconds (36 s was seen once); what this is for is a wait that
 * never ends, which libFuzzer's -timeout (dev fuzz) also catches. */
#define SLACK_NS ((int64_t)60000000000)

struct input {
    const uint8_t *p;
    size_t n;
};

static uint8_t u8(struct input *in)
{
    if (in->n == 0) return 0;
    in->n--;
    return *in->p++;
}

static uint16_t u16(struct input *in)
{
    uint16_t lo = u8(in);
    return (uint16_t)(lo | u8(in) << 8);
}

struct fuzz {
    struct input in;
    fipc_queue *q;      /* the queue, or the jqueue's */
    fipc_jqueue *jq;    /* NULL for a plain queue */
    unsigned char *mem; /* the footprint: jqueue counters, queue, slots, claimers */
    size_t footprint;
    size_t max_item; /* as created */
    size_t ring;     /* slots, as created */
    size_t slot_size;
    unsigned nputs;
};

static void fail(const char *call, int r, const char *what)
{
    fprintf(stderr, "fuzz_queue: %s returned %d: %s\n", call, r, what);
    abort();
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void check_time(const char *call, int64_t t0, int64_t timeout)
{
    int64_t took = now_ns() - t0;
    if (took > timeout + SLACK_NS) {
        fprintf(stderr, "fuzz_queue: %s took %lld ns with a timeout of %lld ns\n", call,
                (long long)took, (long long)timeout);
        abort();
    }
}

/* Whether r is one of the codes a blocking call may return besides its
 * successes: the documented errors, and -EPROTO for corrupt state. */
static bool common_error(int r, int64_t timeout)
{
    return r == (timeout ? -ETIMEDOUT : -EAGAIN) || r == -EPIPE || r == -EINVAL || r == -EPROTO;
}

static void fill_item(unsigned char *b, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)(seed + i);
}

/* The longest message this thread's calls take: the max_item of the
 * geometry the thread validated on its first call (queue.c, views), which
 * is the creator's, or whatever an overwrite before that call made it, as
 * long as the queue still fits in the arena. */
static size_t view_max_item(struct fuzz *f)
{
    const struct geom *g = view_of(f->jq ? fipc_jqueue_queue(f->jq) : f->q);
    return g ? g->max_item : 0;
}

static void do_put(struct fuzz *f, uint8_t arg, int64_t timeout)
{
    /* max_item + 1: -EMSGSIZE. */
    size_t len = arg % (f->max_item + 2);
    unsigned char *item = malloc(len ? len : 1);
    fill_item(item, len, f->nputs++);
    int64_t t0 = now_ns();
    int r = f->jq ? fipc_jqueue_put(f->jq, item, len, timeout)
                  : fipc_queue_put(f->q, item, len, timeout);
    check_time("put", t0, timeout);
    free(item);
    if (r != 0 && !common_error(r, timeout) && r != -EMSGSIZE)
        fail("put", r, "not a code put documents");
    if (r == 0 && len > view_max_item(f)) fail("put", r, "an oversize message was accepted");
}

static void do_put_many(struct fuzz *f, uint8_t arg, int64_t timeout)
{
    size_t n = 1 + arg % MAX_MANY;
    struct iovec items[MAX_MANY];
    unsigned char *bufs[MAX_MANY];
    for (size_t i = 0; i < n; i++) {
        /* Mostly fitting messages; arg's high bit makes the last too long. */
        size_t len = (arg + 3 * i) % (f->max_item + 1);
        if (i == n - 1 && (arg & 0x80)) len = f->max_item + 1;
        bufs[i] = malloc(len ? len : 1);
        fill_item(bufs[i], len, f->nputs++);
        items[i] = (struct iovec){bufs[i], len};
    }
    int64_t t0 = now_ns();
    int r = f->jq ? fipc_jqueue_put_many(f->jq, items, n, timeout)
                  : fipc_queue_put_many(f->q, items, n, timeout);
    check_time("put_many", t0, timeout);
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    if (r > 0 ? (size_t)r > n : r == 0 || (!common_error(r, timeout) && r != -EMSGSIZE))
        fail("put_many", r, "not a code put_many documents");
}

/* Bytes [from, to) of b still hold the guard. */
static bool guarded(const unsigned char *b, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (b[i] != GUARD) return false;
    return true;
}

static void do_get(struct fuzz *f, uint8_t arg, int64_t timeout)
{
    /* cap from max_item - 1 (-EINVAL) to max_item + 2. */
    size_t cap = f->max_item - 1 + arg % 4;
    unsigned char *buf = malloc(cap ? cap : 1);
    memset(buf, GUARD, cap);
    size_t len = SIZE_MAX;
    int64_t t0 = now_ns();
    int r = f->jq ? fipc_jqueue_get(f->jq, buf, cap, &len, timeout)
                  : fipc_queue_get(f->q, buf, cap, &len, timeout);
    check_time("get", t0, timeout);
    if (r == 0) {
        if (len > cap) fail("get", r, "returned a length beyond the buffer");
        if (!guarded(buf, len, cap)) fail("get", r, "wrote past the length it returned");
    } else if (!common_error(r, timeout)) {
        fail("get", r, "not a code get documents");
    }
    if (r == -EINVAL && !guarded(buf, 0, cap))
        fail("get", r, "wrote into the buffer of a refused call");
    if (f->jq && r == 0 && (arg & 0x40)) {
        r = fipc_jqueue_task_done(f->jq);
        if (r != 0 && r != -EOVERFLOW) fail("task_done", r, "not a code task_done documents");
    }
    free(buf);
}

static void do_get_many(struct fuzz *f, uint8_t arg, int64_t timeout)
{
    size_t n = 1 + arg % MAX_MANY;
    size_t stride = f->max_item - 1 + (arg >> 3) % 4;
    size_t total = n * stride;
    unsigned char *buf = malloc(total ? total : 1);
    size_t *lens = malloc(n * sizeof *lens);
    memset(buf, GUARD, total);
    for (size_t i = 0; i < n; i++)
        lens[i] = SIZE_MAX;
    int64_t t0 = now_ns();
    int r = f->jq ? fipc_jqueue_get_many(f->jq, buf, stride, lens, n, timeout)
                  : fipc_queue_get_many(f->q, buf, stride, lens, n, timeout);
    check_time("get_many", t0, timeout);
    if (r > 0) {
        if ((size_t)r > n) fail("get_many", r, "took more than asked");
        for (size_t i = 0; i < (size_t)r; i++) {
            if (lens[i] > stride) fail("get_many", r, "returned a length beyond its stride");
            if (!guarded(buf, i * stride + lens[i], (i + 1) * stride))
                fail("get_many", r, "wrote past a length it returned");
        }
        for (size_t i = (size_t)r; i < n; i++)
            if (lens[i] != SIZE_MAX || !guarded(buf, i * stride, (i + 1) * stride))
                fail("get_many", r, "wrote a message past the count it returned");
    } else if (r == 0 || !common_error(r, timeout)) {
        fail("get_many", r, "not a code get_many documents");
    }
    if (r == -EINVAL && !guarded(buf, 0, total))
        fail("get_many", r, "wrote into the buffer of a refused call");
    free(lens);
    free(buf);
}

static void do_join(struct fuzz *f, uint8_t arg, int64_t timeout)
{
    int64_t t0 = now_ns();
    int r = fipc_jqueue_join(f->jq, timeout);
    check_time("join", t0, timeout);
    if (r != 0 && r != (timeout ? -ETIMEDOUT : -EAGAIN))
        fail("join", r, "not a code join documents");
}

static void do_task_done(struct fuzz *f, uint8_t arg)
{
    int r = arg & 1 ? fipc_jqueue_task_done_many(f->jq, arg >> 1) : fipc_jqueue_task_done(f->jq);
    if (r != 0 && r != -EOVERFLOW) fail("task_done", r, "not a code task_done documents");
}

static void do_snapshots(struct fuzz *f)
{
    volatile size_t sink = 0;
    if (f->jq) {
        sink += fipc_jqueue_qsize(f->jq) + fipc_jqueue_empty(f->jq) + fipc_jqueue_full(f->jq) +
                fipc_jqueue_capacity(f->jq) + fipc_jqueue_max_item(f->jq) +
                fipc_jqueue_closed(f->jq) + fipc_jqueue_unfinished(f->jq);
    } else {
        sink += fipc_queue_qsize(f->q) + fipc_queue_empty(f->q) + fipc_queue_full(f->q) +
                fipc_queue_capacity(f->q) + fipc_queue_max_item(f->q) + fipc_queue_closed(f->q);
    }
    (void)sink;
}

/* Where in the footprint an overwrite lands: anywhere, or in one part of
 * the queue, so that the fuzzer hits a slot's turn or length, a position
 * or a claimer record without having to find its offset first. */
static size_t target(struct fuzz *f, uint8_t arg)
{
    size_t pick = u16(&f->in);
    size_t q = (size_t)((unsigned char *)f->q - f->mem); /* a jqueue's counters come first */
    size_t slots = q + sizeof(struct fipc_queue);
    size_t claimers = slots + f->ring * f->slot_size;
    switch (arg % 5) {
    case 1:
        /* The control lines 0-5, or with arg's high bit the link to the
         * added blocks of claimer records (line 5's more). */
        if (arg & 0x80) return q + offsetof(struct fipc_queue, more) + pick % sizeof(uint64_t);
        return q + pick % sizeof(struct fipc_queue);
    case 2:
        /* A slot's header: its turn, or with arg's high bit its length. */
        return slots + (pick % f->ring) * f->slot_size + (arg & 0x80 ? 4 : 0);
    case 3:
        if (claimers < f->footprint) /* MPMC: the claimer records */
            return claimers + pick % (f->footprint - claimers);
        break;
    case 4:
        if (q > 0) /* a jqueue's counters */
            return pick % q;
        break;
    }
    return pick % f->footprint;
}

static const uint64_t values64[8] = {
    0, UINT64_MAX, UINT64_C(1) << 63, UINT64_C(1) << 62, UINT32_MAX, 1, UINT64_C(1) << 32, 0x40,
};

/* A peer's write at an offset the input chose, within the footprint. */
static void overwrite(struct fuzz *f, uint8_t arg)
{
    uint8_t mode = u8(&f->in) % 4;
    size_t off = target(f, arg);
    if (mode == 0) {
        size_t len = 1 + u8(&f->in) % 8;
        if (len > f->footprint - off) len = f->footprint - off;
        for (size_t i = 0; i < len; i++)
            f->mem[off + i] = u8(&f->in);
    } else if (mode == 1 || mode == 3) {
        /* A turn or a position moved by a little, or a value near
         * max_item (a length just past it). */
        off &= ~(size_t)3;
        uint32_t w;
        memcpy(&w, f->mem + off, 4);
        uint8_t b = u8(&f->in);
        w = mode == 1 ? w + (uint32_t)(int8_t)b : (uint32_t)f->max_item + (uint32_t)(int8_t)b;
        memcpy(f->mem + off, &w, 4);
    } else {
        off &= ~(size_t)7;
        if (off + 8 > f->footprint) off = f->footprint - 8;
        uint64_t v = values64[u8(&f->in) % 8];
        memcpy(f->mem + off, &v, 8);
    }
}

static void run_ops(struct fuzz *f)
{
    unsigned n = u8(&f->in) % 32;
    for (unsigned i = 0; i < n; i++) {
        uint8_t code = u8(&f->in), arg = u8(&f->in);
        /* Mostly 0 (never blocks): a call that sleeps costs a context
         * switch or two, which on a loaded machine is most of an input's
         * time.  10 us takes the sleeping path; 1 ms lets a waiter see a
         * hole long enough to look for a dead claimer (ring_mpmc.c). */
        static const int64_t timeouts[8] = {0, 0, 0, 0, 0, 0, 10000, 1000000};
        int64_t timeout = timeouts[code >> 5];
        switch (code % 12) {
        case 0:
        case 1:
            do_put(f, arg, timeout);
            break;
        case 2:
        case 3:
            do_get(f, arg, timeout);
            break;
        case 4:
            do_put_many(f, arg, timeout);
            break;
        case 5:
            do_get_many(f, arg, timeout);
            break;
        case 6:
            if ((f->jq ? fipc_jqueue_close(f->jq) : fipc_queue_close(f->q)) != 0)
                fail("close", -1, "close of a queue failed");
            break;
        case 7:
            do_snapshots(f);
            break;
        case 8:
            if (f->jq)
                do_task_done(f, arg);
            else
                do_put(f, arg, timeout);
            break;
        case 9:
            if (f->jq)
                do_join(f, arg, timeout);
            else
                do_get(f, arg, timeout);
            break;
        default:
            overwrite(f, arg);
            break;
        }
    }
}

/* The first thread: puts the first messages, then its sequence. */
static void *first_thread(void *arg)
{
    struct fuzz *f = arg;
    unsigned char item[256];
    for (unsigned i = 0; i < f->nputs; i++) {
        size_t len = (i * 7) % (f->max_item + 1);
        fill_item(item, len, i);
        int r = f->jq ? fipc_jqueue_put(f->jq, item, len, 0) : fipc_queue_put(f->q, item, len, 0);
        if (r != 0) fail("put", r, "a put into a fresh queue with room failed");
    }
    run_ops(f);
    return NULL;
}

static void *second_thread(void *arg)
{
    run_ops(arg);
    return NULL;
}

static void run_thread(void *(*fn)(void *), struct fuzz *f)
{
    pthread_t t;
    if (pthread_create(&t, NULL, fn, f) != 0 || pthread_join(t, NULL) != 0)
        fail("pthread", -1, "cannot run a thread");
}

static const size_t capacities[10] = {1, 2, 3, 4, 5, 7, 8, 16, 33, 64};
static const size_t items[8] = {1, 3, 4, 8, 15, 16, 100, 256};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz f = {.in = {data, size}};
    uint8_t kind = u8(&f.in) % 4;
    size_t cap = capacities[u8(&f.in) % 10];
    f.max_item = items[u8(&f.in) % 8];
    unsigned flags = kind & 1 ? FIPC_QUEUE_SPSC : 0;
    unsigned nputs = u8(&f.in) % (cap + 1);

    fipc_arena *a = NULL;
    if (fipc_arena_create(&a, "fipc-fuzz-queue", 128 << 10) != 0)
        fail("arena_create", -1, "cannot create an arena");
    int r;
    if (kind & 2) {
        r = fipc_jqueue_create(&f.jq, a, cap, f.max_item, flags);
        f.q = r == 0 ? fipc_jqueue_queue(f.jq) : NULL;
        f.mem = (unsigned char *)f.jq;
        if (r == 0) r = fipc__jqueue_footprint(&f.footprint, cap, f.max_item, flags);
    } else {
        r = fipc_queue_create(&f.q, a, cap, f.max_item, flags);
        f.mem = (unsigned char *)f.q;
        if (r == 0) r = fipc__queue_footprint(&f.footprint, cap, f.max_item, flags);
    }
    if (r != 0) fail("create", r, "cannot create the queue");

    f.ring = 2;
    while (f.ring < cap)
        f.ring <<= 1;
    f.slot_size = (8 + f.max_item + 7) & ~(size_t)7;
    f.nputs = nputs;
    run_thread(first_thread, &f);
    run_thread(second_thread, &f);
    fipc_arena_close(a);
    return 0;
}
