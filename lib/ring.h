/*
 * ring.h - the ring both queue modes share: slots, turns, geometry and the
 * copy of message bodies (internal).
 *
 * Positions (head, tail) are 64-bit counters that never wrap in practice;
 * position p lives in slot p & mask.  Each slot carries a turn (seq) that
 * says who may use it next, as in Dmitry Vyukov's bounded MPMC queue:
 *
 *   slot(p).seq (mod 2^32)   meaning
 *   p                        free: the producer of position p may fill it
 *   p + 1                    full: the consumer of position p may empty it
 *   p + ring                 emptied: free for the producer of the next lap
 *
 * A turn is the low 32 bits of a position: turns are compared only with
 * positions less than a ring (at most 2^30) apart, so their wrap is
 * harmless, and the 8-byte slot header packs four slots of 8-byte messages
 * into a cache line instead of 2.67.
 *
 * Both modes do the same steps, with the same verbs:
 *   put  claim    find free slots from tail and take them
 *        copy     write the messages into the slots
 *        publish  hand each slot to consumers: seq = p + 1        (R1)
 *   get  claim    find full slots from head and take them         (A1)
 *        copy     read the messages out
 *        release  hand each slot back: seq = p + ring             (R2)
 * and a put's claim reads the turn with acquire (A2) before it copies.
 *   R1 <-> A1  a message is complete before a consumer reads it;
 *   R2 <-> A2  a message is read out before a producer overwrites it.
 * ring_mpmc.h and ring_spsc.h say how each mode claims, and how it settles
 * a put that races with close.
 *
 * The ring has a power-of-two number of slots, at least two (with one,
 * "full for p", p + 1, would read as "free for p + 1").  When the capacity
 * asked for is smaller (a Queue(3) has 4 slots), producers also keep tail
 * within capacity of head.
 */
#ifndef FIPC_LIB_RING_H
#define FIPC_LIB_RING_H

#include <string.h>

#include "queue_impl.h"

#define SLOT_HEADER 8
#define TOMBSTONE   UINT32_MAX /* slot.len of an MPMC put that lost to close */
/* slot.len of an MPMC put whose holder died before publishing it, after
 * the layer above had counted it (ring_mpmc.c): the consumer that passes
 * it reports it, so that layer can count it done. */
#define TOMBSTONE_COUNTED (UINT32_MAX - 1)

struct slot {
    uint32_t seq;
    uint32_t len;
    unsigned char data[];
};
static_assert(sizeof(struct slot) == SLOT_HEADER, "slot header");

static inline uint32_t turn(uint64_t pos)
{
    return (uint32_t)pos;
}

/* The geometry as the queue's line 0 says, for a queue this process has
 * just set up or validated. */
static inline struct geom geom_of(const struct fipc_queue *q)
{
    bool spsc = (q->flags & FIPC_QUEUE_SPSC) != 0;
    char *slots = (char *)q + q->slots;
    return (struct geom){.slots = slots,
                         .mask = q->mask,
                         .slot_size = q->slot_size,
                         .ring = q->ring,
                         .capacity = q->capacity,
                         .max_item = q->max_item,
                         .spsc = spsc};
}

static inline struct slot *slot_at(const struct geom *g, uint64_t pos)
{
    return (struct slot *)(g->slots + (pos & g->mask) * g->slot_size);
}

/* Where a get copies its messages to. */
struct get_buf {
    unsigned char *buf;
    size_t stride;
    size_t *lens;
};

/* The longest message that copy_msg copies without a call. */
#define SHORT_MSG 16

/* memcpy for message bodies: the short messages that queues mostly carry
 * (SHORT_MSG bytes at most) are copied inline with two overlapping moves,
 * without a call. */
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
    } else if (n > SHORT_MSG) {
        memcpy(d, s, n);
    } else {
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
    }
}

/* Copy message it into slot s. */
static inline void slot_fill(struct slot *s, const struct iovec *it)
{
    copy_msg(s->data, it->iov_base, it->iov_len);
    s->len = (uint32_t)it->iov_len;
}

/* Copy the message in slot s, len bytes, out into message i of b. */
static inline void slot_copy_out(const struct get_buf *b, size_t i, const struct slot *s,
                                 uint32_t len)
{
    copy_msg(b->buf + i * b->stride, s->data, len);
    b->lens[i] = len;
}

/* What slot_drain found in a slot. */
enum drained { DRAINED, SKIPPED, SKIPPED_COUNTED, CORRUPT };

/* Copy slot s out into message i of b, unless it holds a tombstone
 * (SKIPPED, or SKIPPED_COUNTED for TOMBSTONE_COUNTED) or a length no put
 * can have written (CORRUPT: a peer wrote it; nothing is copied).
 * b->stride >= max_item, so a length within max_item fits both the slot
 * and the caller's buffer. */
static inline enum drained slot_drain(const struct geom *g, const struct get_buf *b, size_t i,
                                      const struct slot *s)
{
    uint32_t len = s->len;
    if (FIPC_LIKELY(len <= g->max_item)) {
        slot_copy_out(b, i, s, len);
        return DRAINED;
    }
    if (len == TOMBSTONE)
        return SKIPPED;
    return len == TOMBSTONE_COUNTED ? SKIPPED_COUNTED : CORRUPT;
}

/* Hand the k slots from pos back to the producers of the next lap. */
static inline void ring_release(const struct geom *g, uint64_t pos, size_t k)
{
    /* R2: release; the messages are read out before a producer of the next
     * lap (A2) overwrites them. */
    for (size_t i = 0; i < k; i++)
        store_release(&slot_at(g, pos + i)->seq, turn(pos + i + g->ring));
}

#endif
