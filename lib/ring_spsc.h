/*
 * ring_spsc.h - the ring with one producer and one consumer (internal;
 * FIPC_QUEUE_SPSC).
 *
 * The same turns as MPMC (ring.h), without read-modify-writes on
 * positions: the producer alone writes tail and the consumer alone writes
 * head, each with a plain store (they serve qsize and the capacity bound).
 * Each side reads only slot lines, which carry the data anyway, so in 1:1
 * use no position line moves between CPUs.  When the capacity is not a
 * power of two the producer also bounds tail by a private copy of head
 * (head_cache), reloaded when the ring looks full.
 *
 *   step           operation                              order     pair
 *   put  claim     load slot(p).seq, expect p             acquire   A2 <-> R2
 *        copy      the messages
 *        publish   store slot(p).seq = p + 1, the last    release   R1 <-> A1
 *                  slot first, the first last
 *        confirm   fence_light (fence.h)                            C2, F2
 *                  load closed (settle through end if     relaxed   C2
 *                  set)
 *                  store tail                             relaxed   (qsize)
 *                  wake not_empty's sleepers
 *   get  claim     load slot(p).seq, expect p + 1         acquire   A1 <-> R1
 *                  (none: seal through end if closed)
 *        copy      out
 *        release   store slot(p).seq = p + ring           release   R2 <-> A2
 *                  store head                             relaxed   (qsize,
 *                                                         the bound)
 *                  wake not_full's sleepers               F2
 *
 * The consumer reads slots in order, so a batch hands its later slots over
 * first: none is read before the first, which is published last.
 *
 * Close (C2).  Publishing is the claim, so a put learns of close only
 * after its messages are out.  Its fence comes after its release stores;
 * if it then finds closed clear, that fence precedes the store of closed
 * (seq_cst) in the single total order S, and a consumer that has seen
 * closed and then loads the slot (seq_cst, after the fence in S) sees the
 * message: the put has succeeded.  If it finds closed set, the consumer may
 * or may not have given up already, and the two settle through the word
 * end (the consumer's line), which each changes only by CAS from the value
 * it last read; the first CAS decides:
 *
 *   end              meaning                        set by, from
 *   0                undecided                      creation
 *   DELIVERED | e    the producer claims delivery   the producer, from 0
 *                    of everything before e         (E1)
 *   SEALED | h       the consumer reported -EPIPE   the consumer, from 0,
 *                    at head h, and will again       or from DELIVERED | h
 *                    on every get                   once it has read up to
 *                                                   h (E2)
 *
 *   E1 <-> E2  the producer's CAS is seq_cst, a release of its slots; the
 *              consumer reads end with acquire (its load, or its failed
 *              CAS), so a DELIVERED it reads makes those slots visible.
 *
 * A producer that finds SEALED | pos (its own first position) fails with
 * -EPIPE; its slots are never read.  SEALED anywhere else is at pos + k:
 * the consumer saw the first slot (published last), so it saw all k, read
 * them, and then sealed; the put counts.
 */
#ifndef FIPC_LIB_RING_SPSC_H
#define FIPC_LIB_RING_SPSC_H

#include "ring.h"

#define END_SEALED    (UINT64_C(1) << 63)
#define END_DELIVERED (UINT64_C(1) << 62)
#define END_POS       (END_DELIVERED - 1)

/* The producer published the k messages from pos, then found the queue
 * closed: k if they count, -EPIPE if not (ring_spsc.c). */
int fipc__spsc_settle(struct fipc_queue *q, uint64_t pos, size_t k);

/* The rest of a put's confirm once it found the queue closed: settle, and
 * if the messages count, store tail and notify as spsc_put_confirm does; 0
 * or -EPIPE (ring_spsc.c).  For spsc_put_confirm_one, which calls it last,
 * so that it keeps nothing for after it. */
int fipc__spsc_put_closed(struct fipc_queue *q, uint64_t pos, size_t k);

/* The consumer found nothing at pos, in slot s: -EAGAIN if the queue is
 * open; if it is closed, 0 if a message turned up meanwhile (look again), else -EPIPE,
 * settled with a producer that may be publishing right now (ring_spsc.c). */
int fipc__spsc_seal(struct fipc_queue *q, const struct slot *s, uint64_t pos);

/* A side that took over from one that died (the producer or consumer that
 * the application started after the old one was reaped) may find its
 * position stale: the dead side handed slots over but did not store tail
 * (head).  At its own position p a side expects turn(p + lag) or less (lag
 * 0: the producer, which finds p free or last lap's message; 1: the
 * consumer, which finds p empty or full); a turn past that says the slot
 * at p was already handed on.  Returns pos moved past such slots (at most
 * a ring), stored in *word if it moved (ring_spsc.c).  The geometry comes
 * as scalars, so that the caller's copy of it can stay in registers. */
uint64_t fipc__spsc_catch_up(uint64_t *word, char *slots, uint64_t mask, uint64_t slot_size,
                             uint64_t pos, uint32_t lag);

/* How many of the n slots from pos the producer may fill, by the capacity
 * bound (only when capacity < ring: otherwise the turns suffice). */
static inline size_t spsc_room(struct fipc_queue *q, const struct geom *g, uint64_t pos, size_t n)
{
    if (g->capacity == g->ring)
        return n;
    /* Unsigned: a head_cache or head that a peer moved ahead of tail makes
     * room huge, and the turns (A2) still bound the claim by the ring. */
    uint64_t room = g->capacity - (pos - q->head_cache);
    if (room < n) {
        /* relaxed: head only bounds how far tail may run ahead; the
         * slots' turns (A2) order their reuse. */
        q->head_cache = load_relaxed(&q->head);
        room = g->capacity - (pos - q->head_cache);
    }
    return room < n ? (size_t)room : n;
}

/* The slow half of spsc_put_claim, out of line: nothing free at pos (a
 * full ring, or a stale position to catch up with).  view is the caller's
 * geometry as its view holds it, not the copy the caller keeps in
 * registers. */
uint32_t fipc__spsc_put_none(struct fipc_queue *q, const struct geom *view, uint64_t pos, size_t n,
                             struct queue_claim *c);

/* Scan for up to want free slots from pos. */
static FIPC_ALWAYS_INLINE size_t spsc_free_from(const struct geom *g, uint64_t pos, size_t want)
{
    size_t k = 0;
    /* A2: acquire pairs with the consumer's release of each slot (R2). */
    while (k < want && load_acquire(&slot_at(g, pos + k)->seq) == turn(pos + k))
        k++;
    return k;
}

/* Scan for up to n full slots from pos. */
static FIPC_ALWAYS_INLINE size_t spsc_full_from(const struct geom *g, uint64_t pos, size_t n)
{
    size_t k = 0;
    /* A1: acquire pairs with the producer's release of each slot (R1). */
    while (k < n && load_acquire(&slot_at(g, pos + k)->seq) == turn(pos + k + 1))
        k++;
    return k;
}

/* put, claim: as many of the n messages as there are free slots for from
 * tail; 0 if the ring is full.  Nothing changes in shared memory. */
static FIPC_ALWAYS_INLINE uint32_t spsc_put_claim(struct fipc_queue *q, const struct geom *g,
                                                  const struct geom *view, size_t n,
                                                  struct queue_claim *c)
{
    uint64_t pos = load_relaxed(&q->tail); /* ours alone */
    size_t k = spsc_free_from(g, pos, spsc_room(q, g, pos, n));
    if (FIPC_UNLIKELY(k == 0))
        return fipc__spsc_put_none(q, view, pos, n, c);
    *c = (struct queue_claim){.pos = pos, .k = (uint32_t)k};
    return (uint32_t)k;
}

static FIPC_ALWAYS_INLINE void spsc_put_copy(const struct geom *g, const struct queue_claim *c,
                                             const struct iovec *items)
{
    for (size_t i = 0; i < c->k; i++)
        slot_fill(slot_at(g, c->pos + i), &items[i]);
}

static FIPC_ALWAYS_INLINE void spsc_put_publish(const struct geom *g, const struct queue_claim *c)
{
    /* R1: release; each message is complete before its turn is seen (A1).
     * The first slot goes last. */
    for (size_t i = c->k; i-- > 0;)
        store_release(&slot_at(g, c->pos + i)->seq, turn(c->pos + i + 1));
}

/* put, confirm: the messages are out; did the put succeed?  k or -EPIPE. */
static FIPC_ALWAYS_INLINE int spsc_put_confirm(struct fipc_queue *q, const struct queue_claim *c)
{
    /* C2 and F2 at once: orders the publication before the load of closed
     * (close; the consumer's side is fence_heavy in fipc__spsc_seal) and
     * before the load of the sleeper flag (eventcount.h).  Light: a
     * compiler barrier in a registered process (fence.h). */
    fence_light();
    /* relaxed: the fence above orders it (C2). */
    if (FIPC_UNLIKELY(load_relaxed(&q->closed))) {
        int r = fipc__spsc_settle(q, c->pos, c->k);
        if (r < 0)
            return r;
    }
    store_relaxed(&q->tail, c->pos + c->k); /* for qsize only */
    ec_notify_fenced(&q->not_empty);
    return (int)c->k;
}

/* put, confirm, of the one message published at pos: 0 or -EPIPE.  As
 * spsc_put_confirm, with each rare case a call that it ends with, so that
 * a caller's fast path keeps no frame. */
static FIPC_ALWAYS_INLINE int spsc_put_confirm_one(struct fipc_queue *q, uint64_t pos)
{
    fence_light(); /* C2 and F2, as in spsc_put_confirm */
    /* relaxed: the fence above orders it (C2). */
    if (FIPC_UNLIKELY(load_relaxed(&q->closed)))
        return fipc__spsc_put_closed(q, pos, 1);
    store_relaxed(&q->tail, pos + 1); /* for qsize only */
    return ec_notify_fenced_then(&q->not_empty, 0);
}

/* put, copy, publish and confirm the k messages claimed from pos. */
static FIPC_ALWAYS_INLINE int spsc_put_give(struct fipc_queue *q, const struct geom *g,
                                            const struct iovec *items, uint64_t pos, size_t k)
{
    const struct queue_claim c = {.pos = pos, .k = (uint32_t)k};
    spsc_put_copy(g, &c, items);
    spsc_put_publish(g, &c);
    return spsc_put_confirm(q, &c);
}

/* The slow half of spsc_put (ring_spsc.c): nothing was free at pos. */
int fipc__spsc_put_slow(struct fipc_queue *q, const struct geom *view, uint64_t pos,
                        const struct iovec *items, size_t n);

/* put: claim, copy, publish, confirm. */
static FIPC_ALWAYS_INLINE int spsc_put(struct fipc_queue *q, const struct geom *view,
                                       const struct iovec *items, size_t n)
{
    /* A local copy, kept in registers across the acquire loads below. */
    const struct geom local = *view, *g = &local;
    uint64_t pos = load_relaxed(&q->tail); /* ours alone */
    size_t k = spsc_free_from(g, pos, spsc_room(q, g, pos, n));
    if (FIPC_UNLIKELY(k == 0))
        return fipc__spsc_put_slow(q, view, pos, items, n);
    return spsc_put_give(q, g, items, pos, k);
}

/* Whether slot s is free for the producer of pos. */
static FIPC_ALWAYS_INLINE bool spsc_slot_free(const struct slot *s, uint64_t pos)
{
    /* A2: acquire pairs with the consumer's release of the slot (R2). */
    return load_acquire(&s->seq) == turn(pos);
}

/* put, publish and confirm the one message the caller wrote into slot s,
 * at pos: 0 or -EPIPE. */
static FIPC_ALWAYS_INLINE int spsc_put_publish_one(struct fipc_queue *q, struct slot *s,
                                                   uint64_t pos)
{
    /* R1: release; the message is complete before its turn is seen (A1). */
    store_release(&s->seq, turn(pos + 1));
    return spsc_put_confirm_one(q, pos);
}

/* Whether this consumer has reported -EPIPE for good.  relaxed: only the
 * consumer seals, so it reads its own write. */
static inline bool spsc_sealed(const struct fipc_queue *q)
{
    return FIPC_UNLIKELY(load_relaxed(&q->end) & END_SEALED);
}

/* get, release: the k slots from pos are read out. */
static FIPC_ALWAYS_INLINE void spsc_get_release(struct fipc_queue *q, const struct geom *g,
                                                const struct queue_claim *c)
{
    ring_release(g, c->pos, c->k); /* R2 */
    /* relaxed: head is read for qsize and the capacity bound only. */
    store_relaxed(&q->head, c->pos + c->k);
    ec_notify(&q->not_full);
}

/* Whether slot s is full for the consumer of pos. */
static FIPC_ALWAYS_INLINE bool spsc_slot_full(const struct slot *s, uint64_t pos)
{
    /* A1: acquire pairs with the producer's release of the slot (R1). */
    return load_acquire(&s->seq) == turn(pos + 1);
}

/* get, release, of the one slot s at pos, read out: 0.  As
 * spsc_get_release, with the wake of a sleeper the call it ends with, so
 * that a caller's fast path keeps no frame. */
static FIPC_ALWAYS_INLINE int spsc_get_release_one(struct fipc_queue *q, const struct geom *g,
                                                   struct slot *s, uint64_t pos)
{
    /* R2: release; the message is read out before the producer of the
     * next lap (A2) overwrites it. */
    store_release(&s->seq, turn(pos + g->ring));
    /* relaxed: as in spsc_get_release. */
    store_relaxed(&q->head, pos + 1);
    return ec_notify_then(&q->not_full, 0);
}

/* get, copy and release the k slots claimed from pos.  No tombstones in
 * SPSC mode (a put that loses to close is never read), so a slot whose
 * length is out of range was written by a peer: it is consumed without
 * being copied, and a call that got nothing else reports -EPROTO. */
static FIPC_ALWAYS_INLINE int spsc_get_take(struct fipc_queue *q, const struct geom *g,
                                            const struct get_buf *b, uint64_t pos, size_t k)
{
    size_t got = 0;
    for (size_t i = 0; i < k; i++) {
        const struct slot *s = slot_at(g, pos + i);
        uint32_t len = s->len;
        if (FIPC_LIKELY(len <= g->max_item))
            slot_copy_out(b, got++, s, len);
    }
    const struct queue_claim c = {.pos = pos, .k = (uint32_t)k};
    spsc_get_release(q, g, &c);
    return got > 0 ? (int)got : -EPROTO;
}

/* The slow half of spsc_get (ring_spsc.c): nothing was full at pos. */
int fipc__spsc_get_slow(struct fipc_queue *q, const struct geom *view, uint64_t pos,
                        const struct get_buf *b, size_t n);

/* get: claim, copy, release; how many, or -EAGAIN, -EPIPE, -EPROTO. */
static FIPC_ALWAYS_INLINE int spsc_get(struct fipc_queue *q, const struct geom *view,
                                       const struct get_buf *b, size_t n)
{
    /* A local copy, kept in registers across the acquire loads below. */
    const struct geom local = *view, *g = &local;
    uint64_t pos = load_relaxed(&q->head); /* ours alone */
    if (spsc_sealed(q))
        return -EPIPE;
    size_t k = spsc_full_from(g, pos, n);
    if (FIPC_UNLIKELY(k == 0))
        return fipc__spsc_get_slow(q, view, pos, b, n);
    return spsc_get_take(q, g, b, pos, k);
}

#endif
