/*
 * ring_spsc.c - the SPSC ring's settlement with close, out of line: it
 * runs at most once per queue, and inlined it would only crowd the code of
 * every put and get (the protocol: ring_spsc.h, Close).
 */
#include "ring_spsc.h"

FIPC_COLD int fipc__spsc_settle(struct fipc_queue *q, uint64_t pos, size_t k)
{
    /* relaxed: the CAS below decides, and reads end again if it fails; the
     * producer reads nothing here that the consumer wrote. */
    uint64_t end = load_relaxed(&q->end);
    for (;;) {
        /* The consumer has given up for good.  At pos it read none of
         * these messages: the put fails.  Anywhere else it has read them
         * all, at pos + k: having seen the first (published last), it saw
         * the others too, so it cannot have sealed in between. */
        if (end & END_SEALED)
            return (end & END_POS) == (pos & END_POS) ? -EPIPE : (int)k;
        /* E1: seq_cst, a release of the slots to a consumer that reads
         * this value with acquire (E2). */
        if (cas_seqcst(&q->end, &end, END_DELIVERED | ((pos + k) & END_POS)))
            return (int)k;
    }
}

FIPC_COLD int fipc__spsc_put_closed(struct fipc_queue *q, uint64_t pos, size_t k)
{
    int r = fipc__spsc_settle(q, pos, k);
    if (r < 0)
        return r;
    store_relaxed(&q->tail, pos + k); /* for qsize only */
    ec_notify_fenced(&q->not_empty);
    return 0;
}

FIPC_COLD int fipc__spsc_seal(struct fipc_queue *q, const struct slot *s, uint64_t pos)
{
    if (!load_seqcst(&q->closed))
        return -EAGAIN;
    /* C2, the heavy side of the producer's light fence (fence.h): a put
     * that found the queue open after it published has its message
     * visible once this returns, since this thread saw closed set. */
    fence_heavy();
    /* seq_cst, after closed: a put that found the queue open after it
     * published has published before this load. */
    if (load_seqcst(&s->seq) == turn(pos + 1))
        return 0;
    /* E2: acquire pairs with the producer's CAS (E1). */
    uint64_t end = load_acquire(&q->end);
    for (;;) {
        /* The producer claimed the messages before (end & END_POS), which
         * it published before its CAS; once head is there, there is nothing
         * more to read.  (Compared for equality only: positions wrap, and
         * head never passes that mark.) */
        if ((end & END_DELIVERED) && (end & END_POS) != (pos & END_POS))
            return 0;
        /* E2: seq_cst; acquire on failure, so a DELIVERED read here makes
         * the producer's slots visible. */
        if (cas_seqcst_acquire(&q->end, &end, END_SEALED | (pos & END_POS)))
            return -EPIPE;
    }
}

FIPC_COLD uint64_t fipc__spsc_catch_up(uint64_t *word, char *slots, uint64_t mask,
                                       uint64_t slot_size, uint64_t pos, uint32_t lag)
{
    const struct geom g = {.slots = slots, .mask = mask, .slot_size = slot_size};
    uint64_t p = pos;
    /* relaxed: only compared; the claim that follows reads each turn again
     * with acquire (A1, A2).  Bounded by a ring (mask + 1), whatever a peer
     * wrote. */
    for (uint64_t i = 0; i <= mask; i++) {
        int32_t dif = (int32_t)(load_relaxed(&slot_at(&g, p)->seq) - turn(p + lag));
        if (dif <= 0)
            break;
        p++;
    }
    if (p != pos)
        store_relaxed(word, p); /* ours alone, as the side's own position */
    return p;
}

FIPC_COLD uint32_t fipc__spsc_put_none(struct fipc_queue *q, const struct geom *view, uint64_t pos,
                                       size_t n, struct queue_claim *c)
{
    const struct geom g = *view;
    *c = (struct queue_claim){.pos = pos};
    /* Once more after catching up: that is all a stale position needs. */
    uint64_t now = fipc__spsc_catch_up(&q->tail, g.slots, g.mask, g.slot_size, pos, 0);
    if (now == pos)
        return 0;
    size_t k = spsc_free_from(&g, now, spsc_room(q, &g, now, n));
    *c = (struct queue_claim){.pos = now, .k = (uint32_t)k};
    return (uint32_t)k;
}

/* The slow half of a get: a stale position to catch up with, or nothing
 * there, which may mean that close has to be settled. */
static int get_none(struct fipc_queue *q, const struct geom *g, uint64_t pos, size_t n,
                    uint64_t *at)
{
    size_t k = 0;
    /* A stale position: catch up, and look there. */
    uint64_t now = fipc__spsc_catch_up(&q->head, g->slots, g->mask, g->slot_size, pos, 1);
    if (now != pos)
        k = spsc_full_from(g, now, n);
    /* Twice at most: seal answers "look again" only when it saw a message
     * at now, which stays there until this consumer takes it. */
    for (int tries = 0; k == 0 && tries < 2; tries++) {
        int r = fipc__spsc_seal(q, slot_at(g, now), now);
        if (r != 0)
            return r;
        k = spsc_full_from(g, now, n);
    }
    *at = now;
    return k == 0 ? -EPROTO : (int)k;
}

FIPC_COLD int fipc__spsc_get_slow(struct fipc_queue *q, const struct geom *view, uint64_t pos,
                                  const struct get_buf *b, size_t n)
{
    const struct geom g = *view;
    uint64_t at = pos;
    int k = get_none(q, &g, pos, n, &at);
    return k < 0 ? k : spsc_get_take(q, &g, b, at, (size_t)k);
}

FIPC_COLD int fipc__spsc_put_slow(struct fipc_queue *q, const struct geom *view, uint64_t pos,
                                  const struct iovec *items, size_t n)
{
    const struct geom g = *view;
    struct queue_claim c;
    if (fipc__spsc_put_none(q, &g, pos, n, &c) == 0)
        return -EAGAIN;
    return spsc_put_give(q, &g, items, c.pos, c.k);
}
