/*
 * ring_mpmc.h - the ring with any number of producers and consumers
 * (internal; queue.c's default mode).
 *
 * Producers claim positions by CAS on tail, consumers by CAS on head; the
 * slots' turns (ring.h) do the rest.  Producers never wait for each other:
 * a producer that is slow between claim and publish delays only the
 * consumer of its positions.
 *
 *   step           operation                              order     pair
 *   put  claim     load slot(p).seq, expect p             acquire   A2 <-> R2
 *                  CAS tail p -> p + k                    seq_cst   C1
 *                  load closed                            seq_cst   C1
 *        copy      the messages, or tombstones if closed
 *        publish   store slot(p).seq = p + 1              release   R1 <-> A1
 *                  wake not_empty's sleepers              F2 (eventcount.h)
 *   get  claim     load slot(p).seq, expect p + 1         acquire   A1 <-> R1
 *                  CAS head p -> p + k                    relaxed   (the
 *                                                         acquires above
 *                                                         ordered the reads;
 *                                                         the CAS only picks
 *                                                         which consumer)
 *        copy      out, skipping tombstones
 *        release   store slot(p).seq = p + ring           release   R2 <-> A2
 *                  wake not_full's sleepers               F2
 *
 * Close (C1).  close stores closed (seq_cst).  A put loads closed after its
 * claim, both seq_cst; found closed, it fills its slots with tombstones,
 * which consumers skip, and fails with -EPIPE.  A consumer reports -EPIPE
 * only when it finds its slot empty, then closed set, then head == tail
 * (all seq_cst): every position claimed before that load of tail has been
 * consumed or is a tombstone, and a put that claims later finds closed set.
 * So no message whose put succeeded is stranded behind -EPIPE, and none
 * whose put failed is delivered.
 */
#ifndef FIPC_LIB_RING_MPMC_H
#define FIPC_LIB_RING_MPMC_H

#include "ring.h"

/* A claim as a claimer record says it (queue_impl.h, struct claimer): the
 * first position's turn, how many, and which side. */
#define CLAIM_GET (UINT64_C(1) << 63)

static inline uint64_t claim_word(uint64_t first, size_t k, uint64_t side)
{
    return turn(first) | (uint64_t)k << 32 | side;
}

/* The k of a repairer's put claim of one position whose slot still holds,
 * intact, a message that a consumer claimed and died with (ring_mpmc.c,
 * republish): a count no claim has (a claim holds at most a ring, 2^30). */
#define CLAIM_REPUB_K UINT32_C(0x7fffffff)

/* Whether claim word w is such a re-publication. */
static inline bool claim_repub(uint64_t w)
{
    return ((uint32_t)(w >> 32) & 0x7fffffff) == CLAIM_REPUB_K;
}

/* How many positions claim word w covers. */
static inline uint32_t claim_len(uint64_t w)
{
    return claim_repub(w) ? 1 : (uint32_t)(w >> 32) & 0x7fffffff;
}

/* Whether claim word w of side covers position p. */
static inline bool claim_covers(uint64_t w, uint64_t p, uint64_t side)
{
    return (w & CLAIM_GET) == side && (uint32_t)(turn(p) - (uint32_t)w) < claim_len(w);
}

/* Announce, before the CAS that takes them, the positions this thread is
 * about to claim; clear once they are handed over.  release: pairs with the
 * acquire load of a repairer (ring_mpmc.c), which then sees the slots as
 * this thread left them before the store. */
static inline void claim_announce(const struct geom *g, uint64_t w)
{
    if (g->me)
        store_release(&g->me->claim, w);
}

/* A held claim a thread waits behind, as its view remembers it. */
struct hole {
    uint64_t pos;  /* the position */
    int64_t since; /* when first seen there by a waiting call; 0: not yet */
};

/* This thread's record in q (taken for it, in a block of records it adds
 * if every record is taken, or the one it holds already), or NULL if no
 * block can be added (the arena is full, QUEUE_BLOCKS_MAX blocks exist, or
 * a peer broke the chain): then claims go unrecorded and the queue repairs
 * no claim from then on. */
struct claimer *fipc__mpmc_claimer(struct fipc_queue *q, const struct geom *g);

/* A call that waits found the ring full (put_side) or empty: whether a
 * claim that was never handed over is in the way, and if its holder died,
 * hand it over for it.  0: repaired, look again; -EINPROGRESS: a held
 * claim is in the way (its holder lives, or the repair waits out the grace
 * period); -EAGAIN: nothing held is in the way. */
int fipc__mpmc_stuck(struct fipc_queue *q, const struct geom *g, bool put_side, struct hole *h);

/* A get that found q closed and drained: deliver into b (n messages at
 * most) what consumers that died inside their gets had claimed and not
 * released, as ring_mpmc.c repairs them, instead of leaving it in slots
 * that no producer comes round to.  How many messages (0: none; then the
 * get fails with -EPIPE); *counted is raised by the counted tombstones
 * passed. */
int fipc__mpmc_adopt(struct fipc_queue *q, const struct geom *g, const struct get_buf *b, size_t n,
                     size_t *counted);

/* A claim that ends without positions withdraws what it announced: an
 * announcement left standing would keep a dead claimer's positions from
 * being repaired while this thread sleeps. */
static inline uint32_t mpmc_claim_none(const struct geom *g)
{
    if (g->me && load_relaxed(&g->me->claim) != 0)
        claim_announce(g, 0);
    return 0;
}

/* put, claim: up to n consecutive free positions from tail into *c; how
 * many, 0 if the ring is full. */
static inline uint32_t mpmc_put_claim(struct fipc_queue *q, const struct geom *g, size_t n,
                                      struct queue_claim *c)
{
    /* The tally before this claim (queue_impl.h), for a repairer, to which
     * the announcement's release store carries it.  relaxed: this thread
     * alone changes the count in tally. */
    if (g->me)
        store_relaxed(&g->me->base, load_relaxed(&g->me->tally));
    uint64_t pos = load_relaxed(&q->tail);
    for (;;) {
        size_t k = 0, want = n;
        if (g->capacity != g->ring) {
            /* relaxed: head only bounds how far tail may run ahead; the
             * slot's turn (A2, below) is what orders its reuse.  A stale
             * head makes the ring look fuller, and the consumer that moves
             * head on notifies not_full. */
            int64_t used = (int64_t)(pos - load_relaxed(&q->head)); /* wraps safely */
            if (used < 0) {
                /* Consumers passed our stale tail; head never passes the
                 * true one, so a tail that has not moved means a peer
                 * wrote head: answer "full", and let the caller time out. */
                uint64_t now = load_relaxed(&q->tail);
                if (now == pos)
                    return mpmc_claim_none(g);
                pos = now;
                continue;
            }
            if ((uint64_t)used >= g->capacity)
                return mpmc_claim_none(g);
            size_t room = (size_t)(g->capacity - (uint64_t)used);
            if (want > room)
                want = room;
        }
        /* A2: acquire pairs with the consumer's release of each slot (R2):
         * the previous lap's message is read out. */
        while (k < want && load_acquire(&slot_at(g, pos + k)->seq) == turn(pos + k))
            k++;
        if (k == 0) {
            /* acquire pairs with the publication (R1) or release (R2) that
             * moved the turn past pos, so that the tail read below sees the
             * claim that came before it. */
            int32_t dif = (int32_t)(load_acquire(&slot_at(g, pos)->seq) - turn(pos));
            if (dif < 0)
                return mpmc_claim_none(g); /* the slot still holds last lap's message: full */
            if (dif == 0)
                continue; /* freed since the scan: look again */
            /* Another producer claimed pos: catch up.  A tail that has not
             * moved means a peer wrote the turn: "full", as above. */
            uint64_t now = load_relaxed(&q->tail);
            if (now == pos)
                return mpmc_claim_none(g);
            pos = now;
            continue;
        }
        claim_announce(g, claim_word(pos, k, 0));
        /* C1: seq_cst, so that the claim precedes the load of closed; and
         * a release, of the announcement above to a repairer that reads
         * tail (ring_mpmc.c). */
        if (cas_seqcst(&q->tail, &pos, pos + k)) {
            c->pos = pos;
            c->k = (uint32_t)k;
            c->closed = load_seqcst(&q->closed); /* C1 */
            return (uint32_t)k;
        }
    }
}

/* put, copy and publish: each slot is handed over as soon as it is
 * written, so that a consumer may start on the first while the producer
 * copies the next.  k, or -EPIPE if the claim found the queue closed. */
static inline int mpmc_put_publish(struct fipc_queue *q, const struct geom *g,
                                   const struct queue_claim *c, const struct iovec *items)
{
    for (size_t i = 0; i < c->k; i++) {
        struct slot *s = slot_at(g, c->pos + i);
        if (c->closed)
            s->len = TOMBSTONE;
        else
            slot_fill(s, &items[i]);
        /* R1: release; the message is complete before the consumer's
         * acquire (A1) sees its turn. */
        store_release(&s->seq, turn(c->pos + i + 1));
    }
    claim_announce(g, 0);
    ec_notify(&q->not_empty);
    return c->closed ? -EPIPE : (int)c->k;
}

/* put, publish, of the one message claimed in *c, in slot s, which the
 * caller has filled unless the claim found the queue closed: 0, or
 * -EPIPE if it did.  As mpmc_put_publish, with the wake of a sleeper the
 * call it ends with, so that a caller's fast path keeps no frame. */
static FIPC_ALWAYS_INLINE int mpmc_put_publish_one(struct fipc_queue *q, const struct geom *g,
                                                   struct slot *s, const struct queue_claim *c)
{
    if (c->closed)
        s->len = TOMBSTONE;
    /* R1: as in mpmc_put_publish. */
    store_release(&s->seq, turn(c->pos + 1));
    claim_announce(g, 0);
    return ec_notify_then(&q->not_empty, c->closed ? -EPIPE : 0);
}

static inline int mpmc_put(struct fipc_queue *q, const struct geom *view, const struct iovec *items,
                           size_t n)
{
    /* A local copy, kept in registers across the acquire loads below. */
    const struct geom local = *view, *g = &local;
    struct queue_claim c;
    if (mpmc_put_claim(q, g, n, &c) == 0)
        return -EAGAIN;
    return mpmc_put_publish(q, g, &c, items);
}

/* Whether the queue is closed and every claimed position consumed (C1). */
static inline bool mpmc_closed_and_drained(struct fipc_queue *q)
{
    if (!load_seqcst(&q->closed))
        return false;
    return load_seqcst(&q->tail) == load_seqcst(&q->head);
}

/* get, claim: up to n consecutive full positions from head into *c; how
 * many, or -EAGAIN (empty), -EPIPE (closed and drained). */
static inline int mpmc_get_claim(struct fipc_queue *q, const struct geom *g, size_t n,
                                 struct queue_claim *c)
{
    uint64_t pos = load_relaxed(&q->head);
    for (;;) {
        size_t k = 0;
        /* A1: acquire pairs with the producer's release of each slot (R1). */
        while (k < n && load_acquire(&slot_at(g, pos + k)->seq) == turn(pos + k + 1))
            k++;
        if (k == 0) {
            /* acquire pairs with the release (R2) that moved the turn past
             * pos, so that the head read below sees the claim before it. */
            int32_t dif = (int32_t)(load_acquire(&slot_at(g, pos)->seq) - turn(pos + 1));
            if (dif < 0)
                return mpmc_claim_none(g), mpmc_closed_and_drained(q) ? -EPIPE : -EAGAIN;
            if (dif == 0)
                continue; /* published since the scan: look again */
            /* Another consumer took pos: catch up.  A head that has not
             * moved means a peer wrote the turn. */
            uint64_t now = load_relaxed(&q->head);
            if (now == pos)
                return mpmc_claim_none(g), -EPROTO;
            pos = now;
            continue;
        }
        claim_announce(g, claim_word(pos, k, CLAIM_GET));
        /* release: of the announcement above, to a repairer that reads
         * head (ring_mpmc.c).  A1 already ordered the reads of these
         * slots; the CAS only picks which consumer gets them. */
        if (cas_release(&q->head, &pos, pos + k)) {
            c->pos = pos;
            c->k = (uint32_t)k;
            return (int)k;
        }
    }
}

/* get, release, of the one slot s claimed at pos, read out: 0.  As
 * mpmc_get does it, with the wake of a sleeper the call it ends with, so
 * that a caller's fast path keeps no frame. */
static FIPC_ALWAYS_INLINE int mpmc_get_release_one(struct fipc_queue *q, const struct geom *g,
                                                   struct slot *s, uint64_t pos)
{
    /* R2: as in ring_release. */
    store_release(&s->seq, turn(pos + g->ring));
    claim_announce(g, 0);
    return ec_notify_then(&q->not_full, 0);
}

/* get: claim, copy, release; how many messages, -EAGAIN or -EPIPE.
 * Slots with a length no put writes are consumed without being copied;
 * a call that got nothing else reports -EPROTO.  *counted (unless counted
 * is NULL) is raised by the counted tombstones passed (ring.h), whatever
 * the result. */
static FIPC_ALWAYS_INLINE int mpmc_get(struct fipc_queue *q, const struct geom *view,
                                       const struct get_buf *b, size_t n, size_t *counted)
{
    size_t unwanted;
    if (!counted)
        counted = &unwanted;
    /* A local copy, kept in registers across the acquire loads below. */
    const struct geom local = *view, *g = &local;
    for (;;) {
        struct queue_claim c;
        int r = mpmc_get_claim(q, g, n, &c);
        if (r < 0)
            return r;
        /* Copy every slot out, then release them all (R2): a consumer
         * that dies while copying leaves its whole claim in the slots, for
         * the repair to deliver to another (ring_mpmc.c). */
        size_t got = 0, voided = 0;
        bool corrupt = false;
        for (size_t i = 0; i < c.k; i++) {
            enum drained d = slot_drain(g, b, got, slot_at(g, c.pos + i));
            got += d == DRAINED;
            voided += d == SKIPPED_COUNTED;
            corrupt |= d == CORRUPT;
        }
        ring_release(g, c.pos, c.k);
        claim_announce(g, 0);
        ec_notify(&q->not_full);
        if (FIPC_UNLIKELY(voided))
            *counted += voided;
        if (got > 0)
            return (int)got;
        if (corrupt)
            return -EPROTO;
        /* Only tombstones: look again. */
    }
}

#endif
