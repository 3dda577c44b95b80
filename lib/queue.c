/*
 * queue.c - bounded queues of byte messages in shared memory.
 *
 * Ring (MPMC mode, after Dmitry Vyukov's bounded MPMC queue).  Positions
 * are 64-bit counters that never wrap in practice; position p lives in slot
 * p & mask.  Each slot carries a sequence number that says whose turn it is:
 *
 *   slot.seq == p              free: the producer claiming position p may
 *                              fill it
 *   slot.seq == p + 1          full: the consumer claiming p may empty it
 *   slot.seq == p + ring       emptied: free for the producer of the next lap
 *
 *   put  claim:   CAS tail p -> p + 1 once slot(p).seq == p      (seq_cst)
 *        fill:    copy the message, then seq = p + 1             (release)
 *   get  claim:   CAS head p -> p + 1 once slot(p).seq == p + 1  (relaxed)
 *        empty:   copy the message out, then seq = p + ring      (release)
 *
 * Each release store pairs with the acquire load of seq by the other side,
 * so a message is complete before a consumer reads it and is read out
 * before a producer overwrites it.  Producers never wait for each other:
 * a producer that is slow between claim and fill delays only the consumer
 * of that one position.
 *
 * The ring has a power-of-two number of slots, at least two.  When the
 * capacity asked for is smaller (a Queue(3) has 4 slots), a producer also keeps tail within
 * capacity of head, reading head (acquire) to do so.
 *
 * SPSC mode uses the same turns without read-modify-writes on positions:
 * the single producer owns tail and the single consumer owns head, so each
 * just stores its own (for qsize).  Each side then reads only slot lines,
 * which carry the data anyway; in 1:1 use no position line moves between
 * CPUs.  Only when the capacity is not a power of two does the producer
 * also bound tail by a private copy of head (head_cache), reloaded when
 * the ring looks full.
 *
 * Sleeping.  A producer sleeps only on a full ring (not_full), a consumer
 * only on an empty one (not_empty), through an event count:
 *
 *   sleeper                              notifier (after changing the ring)
 *   e = epoch            (acquire)        fence                   (seq_cst)
 *   sleepers = 1         (seq_cst)        if sleepers != 0 and
 *   fence                (seq_cst)           exchange(sleepers, 0) != 0:
 *   re-check the ring; done if it moved       epoch += 1; futex_wake(all)
 *   futex_wait(epoch, e)
 *
 * The two fences make the pair a Dekker handshake: either the notifier's
 * load sees the registration and advances the epoch (so futex_wait returns
 * at once or is woken), or the sleeper's re-check sees the change.  The
 * epoch is read before the flag is raised, so a registration cleared by
 * any notifier is always followed by an epoch that differs from e.  When no
 * one sleeps, put and get cost a fence and a load, never a system call.
 * sleepers is a flag that the notifier clears, not a count that sleepers
 * decrement once they run again: with a count, every operation of the
 * other side would enter the kernel until the woken sleepers got a CPU,
 * and that can keep both sides in a slow lock-step.  A woken sleeper that
 * still cannot proceed registers again.
 *
 * Close.  closed is set once (seq_cst) and both event counts are advanced
 * and woken.  A put checks closed after it has claimed its slot (seq_cst
 * claim, then seq_cst load); if the queue was closed, it fills the slot
 * with a tombstone that consumers skip, and fails with -EPIPE.  A consumer
 * reports -EPIPE only when it sees closed and then head == tail: every
 * position claimed before that was either consumed or is a tombstone, so
 * no message whose put succeeded is ever stranded behind -EPIPE.
 *
 * In SPSC mode publishing is the claim.  The producer publishes with
 * release stores, then (seq_cst fence) loads closed.  Found open, the put
 * has succeeded: its fence precedes the store of closed in the single
 * total order S, so a consumer that has seen closed and then loads the
 * slot (seq_cst, after the fence in S) sees the message.  A consumer that
 * finds the queue closed and the slot at head still empty, and a producer
 * that finds the queue closed after publishing, settle through the word
 * end, each with CAS: the consumer's END_SEALED | head means "-EPIPE from
 * here on"; the producer's END_DELIVERED | tail means "these messages
 * count" (the consumer reads them, then seals after them).  The first CAS
 * decides.  A producer that finds END_SEALED at its own position fails
 * with -EPIPE, its slots never read; sealed after its messages, the
 * consumer has read them all in the meantime, and the put counts.
 */
#include <string.h>

#include <fipc/arena.h>
#include <fipc/queue.h>

#include "futex.h"
#include "internal.h"
#include "queue_impl.h"

#define QUEUE_MAGIC 0x5155455545504946ull /* "FIPEUEUQ" */
#define TOMBSTONE   UINT32_MAX            /* slot.len of a put that lost to close */
#define SLOT_HEADER 8

/* A slot's turn is the low 32 bits of a position: turns are compared only
 * with positions less than a ring (at most 2^30) apart, so wrapping is
 * harmless, and an 8-byte header packs 4 slots of 8-byte messages into a
 * cache line instead of 2.67. */
struct slot {
    uint32_t seq;
    uint32_t len;
    unsigned char data[];
};

static inline uint32_t turn(uint64_t pos)
{
    return (uint32_t)pos;
}

/* SPSC: how a put that raced with close ended (fipc_queue.end): 0 while
 * undecided; END_SEALED | h once the consumer has reported -EPIPE at
 * position h (for good); END_DELIVERED | e once the producer has claimed
 * delivery of everything before position e. */
#define END_SEALED    (UINT64_C(1) << 63)
#define END_DELIVERED (UINT64_C(1) << 62)
#define END_POS       (END_DELIVERED - 1)
static_assert(sizeof(struct slot) == SLOT_HEADER, "slot header");

/* The ring's geometry, fixed at creation.  Functions copy it into a local
 * once: after every acquire load the compiler would otherwise have to read
 * the fields again. */
struct geom {
    char *slots;
    uint64_t mask;
    uint64_t slot_size;
};

static inline struct geom geom_of(const struct fipc_queue *q)
{
    return (struct geom){(char *)q + q->slots, q->mask, q->slot_size};
}

static inline struct slot *slot_at(const struct geom *g, uint64_t pos)
{
    return (struct slot *)(g->slots + (pos & g->mask) * g->slot_size);
}

static inline bool is_spsc(const struct fipc_queue *q)
{
    return q->flags & FIPC_QUEUE_SPSC;
}

/* ---- setup -------------------------------------------------------------- */

static int queue_check(size_t capacity, size_t max_item, unsigned flags)
{
    if (capacity == 0 || capacity > FIPC_QUEUE_CAPACITY_MAX || max_item == 0 ||
        max_item > FIPC_QUEUE_ITEM_MAX || (flags & ~FIPC_QUEUE_SPSC))
        return -EINVAL;
    return 0;
}

/* The ring's slot count: a power of two, and at least 2, since with one
 * slot "full for position p" (seq p + 1) would read as "free for position
 * p + 1". */
static size_t ring_for(size_t n)
{
    size_t p = 2;
    while (p < n)
        p <<= 1;
    return p;
}

static size_t slot_size_for(size_t max_item)
{
    return (SLOT_HEADER + max_item + 7) & ~(size_t)7;
}

/* Bytes a queue of these dimensions needs (0 if that overflows). */
static size_t queue_footprint(size_t capacity, size_t max_item)
{
    size_t cap = ring_for(capacity), ss = slot_size_for(max_item);
    if (cap > SIZE_MAX / ss - sizeof(struct fipc_queue))
        return 0;
    return sizeof(struct fipc_queue) + cap * ss;
}

static void queue_setup(struct fipc_queue *q, size_t capacity, size_t max_item, unsigned flags)
{
    q->capacity = capacity;
    q->ring = ring_for(capacity);
    q->mask = q->ring - 1;
    q->max_item = max_item;
    q->slot_size = slot_size_for(max_item);
    q->slots = sizeof *q;
    q->flags = flags;
    /* Every slot is free for the first lap.  This also touches every page
     * of the ring now, so no put or get takes a page fault inside the
     * window between claiming a slot and handing it over. */
    const struct geom g = geom_of(q);
    for (uint64_t i = 0; i < q->ring; i++)
        slot_at(&g, i)->seq = turn(i);
    q->magic = QUEUE_MAGIC;
}

void fipc__queue_rebase(struct fipc_queue *q, uint64_t pos)
{
    const struct geom g = geom_of(q);
    q->head = q->tail = q->head_cache = pos;
    q->end = 0;
    for (uint64_t i = 0; i < q->ring; i++)
        slot_at(&g, pos + i)->seq = turn(pos + i);
}

int fipc__queue_new(void **out, fipc_arena *a, size_t prefix, size_t capacity, size_t max_item,
                    unsigned flags)
{
    int r = queue_check(capacity, max_item, flags);
    if (r < 0)
        return r;
    size_t size = queue_footprint(capacity, max_item);
    if (size == 0 || size > SIZE_MAX - prefix)
        return -ENOMEM;
    char *mem = fipc__alloc(a, prefix + size, FIPC_CACHELINE);
    if (!mem)
        return -ENOMEM;
    queue_setup((struct fipc_queue *)(mem + prefix), capacity, max_item, flags);
    *out = mem;
    return 0;
}

int fipc_queue_create(fipc_queue **out, fipc_arena *a, size_t capacity, size_t max_item,
                      unsigned flags)
{
    if (!out)
        return -EINVAL;
    return fipc__queue_new((void **)out, a, 0, capacity, max_item, flags);
}

/* ---- event counts --------------------------------------------------------- */

/* Wake the sleepers, if any registered: the first notifier to see the flag
 * clears it and wakes them all; later ones see it clear and do nothing, so
 * a side that is asleep costs the other side one system call, not one per
 * operation until the sleepers have run. */
static __attribute__((noinline)) void ec_wake(struct eventcount *ec)
{
    /* acq_rel: exactly one notifier takes each registration. */
    if (__atomic_exchange_n(&ec->sleepers, 0, __ATOMIC_ACQ_REL)) {
        fetch_add_release(&ec->epoch, 1);
        futex_wake(&ec->epoch, FUTEX_WAKE_ALL);
    }
}

static inline void ec_notify(struct eventcount *ec)
{
    /* Pairs with the fence in ec_register: orders the ring change the
     * caller just made before this load of the flag. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (FIPC_UNLIKELY(load_relaxed(&ec->sleepers) != 0))
        ec_wake(ec);
}

/* ec_notify for a caller that has just issued a seq_cst fence after its
 * ring change. */
static inline void ec_notify_after_fence(struct eventcount *ec)
{
    if (FIPC_UNLIKELY(load_seqcst(&ec->sleepers) != 0))
        ec_wake(ec);
}

static inline uint32_t ec_register(struct eventcount *ec)
{
    /* The epoch is read before the flag is raised: a notifier that clears
     * this registration advances the epoch afterwards, so futex_wait on
     * this value then returns at once.  (Read after, it could already be
     * the advanced epoch, and the sleeper would sleep unregistered.) */
    uint32_t epoch = load_acquire(&ec->epoch);
    store_seqcst(&ec->sleepers, 1);
    /* Pairs with the fence in ec_notify: the caller's re-check of the
     * ring comes after the registration. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return epoch;
}

static void ec_wake_all(struct eventcount *ec)
{
    fetch_add_release(&ec->epoch, 1);
    futex_wake(&ec->epoch, FUTEX_WAKE_ALL);
}

/*
 * Run try(q, ctx) until it stops answering -EAGAIN ("the ring is full/empty
 * now"), sleeping on ec in between: spin briefly first, then register, re-
 * check and sleep until the epoch moves or the deadline passes.
 */
typedef int (*try_fn)(struct fipc_queue *q, void *ctx);

static int block_on(struct fipc_queue *q, struct eventcount *ec, try_fn try, void *ctx,
                    int64_t timeout_ns)
{
    int r;
    if (timeout_ns == 0)
        return -EAGAIN; /* never blocks, nor spins */
    for (struct fipc_spin spin = {0}; fipc_spin(&spin);)
        if ((r = try(q, ctx)) != -EAGAIN)
            return r;

    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    for (;;) {
        uint32_t epoch = ec_register(ec);
        /* A registration left behind (we leave without sleeping, or time
         * out) costs the other side one needless wake, then it is gone. */
        if ((r = try(q, ctx)) != -EAGAIN)
            return r;
        /* Woken by the other side's ec_notify after it changed the ring,
         * or by close (ec_wake_all). */
        int w = futex_wait_until(&ec->epoch, epoch, deadline);
        if (w == -ETIMEDOUT)
            return (r = try(q, ctx)) == -EAGAIN ? -ETIMEDOUT : r;
    }
}

/* ---- one message ------------------------------------------------------- */

struct put_ctx {
    const struct iovec *items;
    size_t n;
    fipc_jqueue *owner; /* NULL, or the jqueue whose unfinished count to raise */
};

/* Raise the owner's count by k before the messages become visible. */
static inline void count_in(struct put_ctx *c, size_t k)
{
    if (c->owner)
        fipc__jqueue_count(c->owner, k);
}

struct get_ctx {
    unsigned char *buf;
    size_t stride;
    size_t *lens;
    size_t n;
};

/* memcpy for message bodies: the short messages that queues mostly carry
 * are copied inline with two overlapping moves, without a call. */
static inline void copy_msg(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    uint64_t a, b;
    uint32_t x, y;
    if (n >= 8 && n <= 16) {
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
        memcpy(&x, s, 4);
        memcpy(&y, s + n - 4, 4);
        memcpy(d, &x, 4);
        memcpy(d + n - 4, &y, 4);
    } else if (n > 16) {
        memcpy(d, s, n);
    } else {
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
    }
}

static inline void fill(struct slot *s, const struct iovec *it)
{
    copy_msg(s->data, it->iov_base, it->iov_len);
    s->len = (uint32_t)it->iov_len;
}

/* Claim up to n consecutive free positions from tail; returns how many,
 * with the first in *first; 0 if the ring is full. */
static size_t mpmc_claim_put(struct fipc_queue *q, size_t n, uint64_t *first)
{
    const struct geom g = geom_of(q);
    uint64_t pos = load_relaxed(&q->tail);
    for (;;) {
        size_t k = 0, want = n;
        if (q->capacity != q->ring) {
            /* relaxed: head only bounds how far tail may run ahead; the
             * slot's seq (acquire, below) is what orders its reuse.  A
             * stale head makes the ring look fuller, and the consumer that
             * moves head on notifies not_full. */
            int64_t used = (int64_t)(pos - load_relaxed(&q->head)); /* wraps safely */
            if (used < 0) {
                pos = load_relaxed(&q->tail); /* consumers passed our stale tail */
                continue;
            }
            if ((uint64_t)used >= q->capacity)
                return 0;
            size_t room = (size_t)(q->capacity - (uint64_t)used);
            if (want > room)
                want = room;
        }
        /* acquire pairs with the consumer's release of each slot: it has
         * finished reading the previous lap's message. */
        while (k < want && load_acquire(&slot_at(&g, pos + k)->seq) == turn(pos + k))
            k++;
        if (k == 0) {
            int32_t dif = (int32_t)(load_acquire(&slot_at(&g, pos)->seq) - turn(pos));
            if (dif < 0)
                return 0; /* the slot still holds last lap's message: full */
            /* Another producer claimed pos: catch up. */
            pos = load_relaxed(&q->tail);
            continue;
        }
        /* seq_cst: the claim precedes the load of closed that follows
         * (see Close at the top). */
        if (cas_seqcst(&q->tail, &pos, pos + k)) {
            *first = pos;
            return k;
        }
    }
}

static int mpmc_try_put(struct fipc_queue *q, void *arg)
{
    const struct geom g = geom_of(q);
    struct put_ctx *c = arg;
    uint64_t pos;
    size_t k = mpmc_claim_put(q, c->n, &pos);
    if (k == 0)
        return -EAGAIN;
    bool closed = load_seqcst(&q->closed);
    if (!closed)
        count_in(c, k);
    for (size_t i = 0; i < k; i++) {
        struct slot *s = slot_at(&g, pos + i);
        if (closed)
            s->len = TOMBSTONE;
        else
            fill(s, &c->items[i]);
        /* release: the message is complete before the consumer's acquire
         * load of seq sees its turn. */
        store_release(&s->seq, turn(pos + i + 1));
    }
    ec_notify(&q->not_empty);
    return closed ? -EPIPE : (int)k;
}

/* How many of the n slots from pos the SPSC producer may fill, by the
 * capacity bound (only when capacity < ring: otherwise the turns suffice). */
static inline size_t spsc_room(struct fipc_queue *q, uint64_t pos, size_t n)
{
    if (q->capacity == q->ring)
        return n;
    uint64_t room = q->capacity - (pos - q->head_cache);
    if (room < n) {
        /* relaxed: head only bounds how far tail may run ahead; the slots'
         * turns (acquire) order their reuse. */
        q->head_cache = load_relaxed(&q->head);
        room = q->capacity - (pos - q->head_cache);
    }
    return room < n ? (size_t)room : n;
}

/* The SPSC producer published the k messages from pos, then found the
 * queue closed: settle with the consumer, through the word end that both
 * change only by CAS, whether they count (k) or not (-EPIPE).  Out of
 * line, like spsc_seal: it runs at most once per queue, and inlined it
 * would only crowd the code of every put. */
static __attribute__((noinline, cold)) int spsc_settle(struct fipc_queue *q, uint64_t pos,
                                                       size_t k)
{
    /* acquire is more than this needs: the producer reads nothing here
     * that the consumer wrote; the CAS below decides. */
    uint64_t end = load_acquire(&q->end);
    for (;;) {
        /* The consumer has given up for good.  At pos it read none of
         * these messages: the put fails.  Anywhere else it has read them
         * all, at pos + k: having seen the first (published last), it saw
         * the others too, so it cannot have sealed in between. */
        if (end & END_SEALED)
            return (end & END_POS) == (pos & END_POS) ? -EPIPE : (int)k;
        /* seq_cst: the release publishes the messages to a consumer whose
         * CAS fails on this value (it reads it with acquire). */
        if (cas_seqcst_acquire(&q->end, &end, END_DELIVERED | ((pos + k) & END_POS)))
            return (int)k;
    }
}

/* An SPSC put, first half: fill and hand over as many of the messages as
 * there is room for from tail (*pos); how many, or -EAGAIN. */
static inline int spsc_publish(struct fipc_queue *q, struct put_ctx *c, uint64_t *pos_out)
{
    const struct geom g = geom_of(q);
    uint64_t pos = load_relaxed(&q->tail); /* ours alone */
    size_t n = spsc_room(q, pos, c->n), k = 0;
    /* acquire pairs with the consumer's release of each slot. */
    while (k < n && load_acquire(&slot_at(&g, pos + k)->seq) == turn(pos + k))
        k++;
    if (k == 0)
        return -EAGAIN;
    for (size_t i = 0; i < k; i++)
        fill(slot_at(&g, pos + i), &c->items[i]);
    count_in(c, k);
    /* The consumer reads the slots in order, so the later ones may be
     * handed over first; none is read before the first.  release: each
     * message is complete before its turn is seen. */
    for (size_t i = k; i-- > 0;)
        store_release(&slot_at(&g, pos + i)->seq, turn(pos + i + 1));
    *pos_out = pos;
    return (int)k;
}

/* Second half: the k messages from pos are out; did the put succeed? */
static inline int spsc_finish(struct fipc_queue *q, struct put_ctx *c, uint64_t pos, size_t k)
{
    /* Pairs with the fence in ec_register (the sleeper flag, below) and
     * with close (the store of closed; see Close at the top). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    int r = (int)k;
    if (FIPC_UNLIKELY(load_seqcst(&q->closed)) && (r = spsc_settle(q, pos, k)) < 0) {
        if (c->owner)
            fipc__jqueue_uncount(c->owner, k);
        return r;
    }
    store_relaxed(&q->tail, pos + k); /* for qsize only */
    ec_notify_after_fence(&q->not_empty);
    return r;
}

static int spsc_try_put(struct fipc_queue *q, void *arg)
{
    struct put_ctx *c = arg;
    uint64_t pos;
    int k = spsc_publish(q, c, &pos);
    return k < 0 ? k : spsc_finish(q, c, pos, (size_t)k);
}

int fipc__queue_spsc_put_late(struct fipc_queue *q, const struct iovec *items, size_t n,
                              fipc_jqueue *owner, void (*between)(void *), void *arg)
{
    struct put_ctx c = {items, n, owner};
    uint64_t pos;
    int k = spsc_publish(q, &c, &pos);
    if (k < 0)
        return k;
    if (between)
        between(arg);
    return spsc_finish(q, &c, pos, (size_t)k);
}

static int try_put(struct fipc_queue *q, void *arg)
{
    /* acquire: nothing to pair with; closed is a plain flag here, and the
     * MPMC claim re-checks it with seq_cst. */
    if (load_acquire(&q->closed))
        return -EPIPE;
    return is_spsc(q) ? spsc_try_put(q, arg) : mpmc_try_put(q, arg);
}

/* Copy slot s out into message i of c; false for a tombstone. */
static inline bool drain(struct get_ctx *c, size_t i, const struct slot *s)
{
    uint32_t len = s->len;
    if (len == TOMBSTONE)
        return false;
    copy_msg(c->buf + i * c->stride, s->data, len);
    c->lens[i] = len;
    return true;
}

/* Whether the queue is closed and every claimed position consumed. */
static bool closed_and_drained(struct fipc_queue *q)
{
    /* seq_cst, closed before tail: see Close at the top. */
    if (!load_seqcst(&q->closed))
        return false;
    return load_seqcst(&q->tail) == load_seqcst(&q->head);
}

static int mpmc_try_get(struct fipc_queue *q, void *arg)
{
    const struct geom g = geom_of(q);
    struct get_ctx *c = arg;
    for (;;) {
        uint64_t pos = load_relaxed(&q->head);
        size_t k;
        for (;;) {
            k = 0;
            /* acquire pairs with the producer's release of each slot. */
            while (k < c->n && load_acquire(&slot_at(&g, pos + k)->seq) == turn(pos + k + 1))
                k++;
            if (k == 0) {
                int32_t dif = (int32_t)(load_acquire(&slot_at(&g, pos)->seq) - turn(pos + 1));
                if (dif < 0)
                    return closed_and_drained(q) ? -EPIPE : -EAGAIN;
                pos = load_relaxed(&q->head);
                continue;
            }
            /* relaxed: the acquire loads of seq above already ordered the
             * reads of these slots; the CAS only picks which consumer. */
            if (cas_relaxed(&q->head, &pos, pos + k))
                break;
        }
        size_t got = 0;
        for (size_t i = 0; i < k; i++) {
            struct slot *s = slot_at(&g, pos + i);
            if (drain(c, got, s))
                got++;
            /* release: the message is read out before a producer of the
             * next lap (acquire load of seq) overwrites it. */
            store_release(&s->seq, turn(pos + i + q->ring));
        }
        ec_notify(&q->not_full);
        if (got > 0)
            return (int)got;
        /* Only tombstones: look again. */
    }
}

/* The SPSC consumer found nothing at pos: -EAGAIN if the queue is open;
 * if it is closed, 0 if a message turned up meanwhile (look again), else
 * -EPIPE, settled with a producer that may be publishing right now. */
static __attribute__((noinline)) int spsc_seal(struct fipc_queue *q, uint64_t pos)
{
    const struct geom g = geom_of(q);
    if (!load_seqcst(&q->closed))
        return -EAGAIN;
    /* seq_cst, after closed: a put that found the queue open after it
     * published has published before this load (see Close). */
    if (load_seqcst(&slot_at(&g, pos)->seq) == turn(pos + 1))
        return 0;
    uint64_t end = load_acquire(&q->end);
    for (;;) {
        /* The producer claimed the messages before (end & END_POS), which
         * it published before its CAS (read here with acquire, by the load
         * or the failed CAS); once head is there, there is nothing more to
         * read.  (Compared for equality only: positions wrap, and head
         * never passes that mark.) */
        if ((end & END_DELIVERED) && (end & END_POS) != (pos & END_POS))
            return 0;
        /* seq_cst; acquire on failure: a DELIVERED read here makes the
         * producer's slots visible. */
        if (cas_seqcst_acquire(&q->end, &end, END_SEALED | (pos & END_POS)))
            return -EPIPE;
    }
}

/* Whether this consumer has reported -EPIPE for good.  relaxed: only the
 * consumer seals, so it reads its own write. */
static inline bool spsc_sealed(const struct fipc_queue *q)
{
    return FIPC_UNLIKELY(load_relaxed(&q->end) & END_SEALED);
}

/* The consumer has read out the k messages from pos: hand their slots back
 * and move head on. */
static inline void spsc_hand_back(struct fipc_queue *q, const struct geom *g, uint64_t pos,
                                  size_t k)
{
    /* release: read out before the producer of the next lap reuses them. */
    for (size_t i = 0; i < k; i++)
        store_release(&slot_at(g, pos + i)->seq, turn(pos + i + q->ring));
    /* relaxed: head is read for qsize and the capacity bound only. */
    store_relaxed(&q->head, pos + k);
    ec_notify(&q->not_full);
}

static int spsc_try_get(struct fipc_queue *q, void *arg)
{
    const struct geom g = geom_of(q);
    struct get_ctx *c = arg;
    uint64_t pos = load_relaxed(&q->head); /* ours alone */
    if (spsc_sealed(q))
        return -EPIPE;
    size_t k;
    for (;;) {
        k = 0;
        /* acquire pairs with the producer's release of each slot. */
        while (k < c->n && load_acquire(&slot_at(&g, pos + k)->seq) == turn(pos + k + 1))
            k++;
        if (k > 0)
            break;
        int r = spsc_seal(q, pos);
        if (r != 0)
            return r;
    }
    for (size_t i = 0; i < k; i++)
        drain(c, i, slot_at(&g, pos + i));
    spsc_hand_back(q, &g, pos, k);
    return (int)k;
}

static int try_get(struct fipc_queue *q, void *arg)
{
    return is_spsc(q) ? spsc_try_get(q, arg) : mpmc_try_get(q, arg);
}

/* ---- one message in SPSC mode -------------------------------------------- */

/*
 * fipc_queue_put and fipc_queue_get of one message in SPSC mode go straight
 * to the slot: the protocol of spsc_publish + spsc_finish and of
 * spsc_try_get with k = 1, without the context, the loops and the call
 * that batches need.  They answer -EAGAIN for everything else (ring full
 * or empty, capacity bound to reload, closed), which the general path then
 * handles.
 */
static inline int spsc_put_one(struct fipc_queue *q, const void *item, size_t len)
{
    uint64_t pos = load_relaxed(&q->tail); /* ours alone */
    if (q->capacity != q->ring && pos - q->head_cache >= q->capacity)
        return -EAGAIN; /* spsc_room reloads head */
    const struct geom g = geom_of(q);
    struct slot *s = slot_at(&g, pos);
    /* acquire pairs with the consumer's release of the slot. */
    if (load_acquire(&s->seq) != turn(pos))
        return -EAGAIN;
    fill(s, &(struct iovec){(void *)item, len});
    /* release: the message is complete before its turn is seen. */
    store_release(&s->seq, turn(pos + 1));
    struct put_ctx c = {NULL, 1, NULL};
    return spsc_finish(q, &c, pos, 1);
}

static inline int spsc_get_one(struct fipc_queue *q, void *buf, size_t *len)
{
    const struct geom g = geom_of(q);
    uint64_t pos = load_relaxed(&q->head); /* ours alone */
    if (spsc_sealed(q))
        return -EPIPE;
    struct slot *s = slot_at(&g, pos);
    /* acquire pairs with the producer's release of the slot. */
    if (load_acquire(&s->seq) != turn(pos + 1))
        return -EAGAIN;
    uint32_t n = s->len; /* never a tombstone in SPSC mode */
    copy_msg(buf, s->data, n);
    *len = n;
    spsc_hand_back(q, &g, pos, 1);
    return 1;
}

/* ---- the calls ---------------------------------------------------------- */

int fipc__queue_put_counted(fipc_queue *q, const struct iovec *items, size_t n,
                            int64_t timeout_ns, fipc_jqueue *owner)
{
    if (!q || !items || n == 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (items[i].iov_len > q->max_item)
            return -EMSGSIZE;
        if (!items[i].iov_base && items[i].iov_len)
            return -EINVAL;
    }
    if (n > INT32_MAX)
        n = INT32_MAX;
    struct put_ctx c = {items, n, owner};
    int r = try_put(q, &c);
    if (FIPC_LIKELY(r != -EAGAIN))
        return r;
    return block_on(q, &q->not_full, try_put, &c, timeout_ns);
}

int fipc_queue_put_many(fipc_queue *q, const struct iovec *items, size_t n, int64_t timeout_ns)
{
    return fipc__queue_put_counted(q, items, n, timeout_ns, NULL);
}

int fipc_queue_put(fipc_queue *q, const void *item, size_t len, int64_t timeout_ns)
{
    /* acquire on closed: as in try_put. */
    if (FIPC_LIKELY(q && is_spsc(q) && len <= q->max_item && (item || !len) &&
                    !load_acquire(&q->closed))) {
        int r = spsc_put_one(q, item, len);
        if (FIPC_LIKELY(r != -EAGAIN))
            return r > 0 ? 0 : r;
    }
    struct iovec it = {(void *)item, len};
    int r = fipc_queue_put_many(q, &it, 1, timeout_ns);
    return r > 0 ? 0 : r;
}

int fipc_queue_get_many(fipc_queue *q, void *buf, size_t stride, size_t *lens, size_t n,
                        int64_t timeout_ns)
{
    if (!q || !buf || !lens || n == 0 || stride < q->max_item)
        return -EINVAL;
    if (n > INT32_MAX)
        n = INT32_MAX;
    struct get_ctx c = {buf, stride, lens, n};
    int r = try_get(q, &c);
    if (FIPC_LIKELY(r != -EAGAIN))
        return r;
    return block_on(q, &q->not_empty, try_get, &c, timeout_ns);
}

int fipc_queue_get(fipc_queue *q, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    if (FIPC_LIKELY(q && is_spsc(q) && buf && len && cap >= q->max_item)) {
        int r = spsc_get_one(q, buf, len);
        if (FIPC_LIKELY(r != -EAGAIN))
            return r > 0 ? 0 : r;
    }
    int r = fipc_queue_get_many(q, buf, cap, len, 1, timeout_ns);
    return r > 0 ? 0 : r;
}

int fipc_queue_close(fipc_queue *q)
{
    if (!q)
        return -EINVAL;
    /* seq_cst: see Close at the top. */
    store_seqcst(&q->closed, 1);
    ec_wake_all(&q->not_empty);
    ec_wake_all(&q->not_full);
    return 0;
}

bool fipc_queue_closed(const fipc_queue *q)
{
    return q && load_acquire(&q->closed);
}

size_t fipc_queue_qsize(const fipc_queue *q)
{
    if (!q)
        return 0;
    /* A snapshot of two words that move independently: in SPSC mode the
     * producer stores tail just after handing the slot over, so head may
     * briefly be ahead of it; clamp to 0..capacity. */
    uint64_t head = load_acquire(&q->head);
    uint64_t tail = load_acquire(&q->tail);
    int64_t n = (int64_t)(tail - head);
    if (n <= 0)
        return 0;
    return (uint64_t)n > q->capacity ? q->capacity : (size_t)n;
}

bool fipc_queue_empty(const fipc_queue *q)
{
    return q && fipc_queue_qsize(q) == 0;
}

bool fipc_queue_full(const fipc_queue *q)
{
    return q && fipc_queue_qsize(q) == q->capacity;
}

size_t fipc_queue_capacity(const fipc_queue *q)
{
    return q ? q->capacity : 0;
}

size_t fipc_queue_max_item(const fipc_queue *q)
{
    return q ? q->max_item : 0;
}
