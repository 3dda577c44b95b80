/*
 * queue_impl.h - the layout of a fipc_queue in shared memory (internal).
 * The protocol is described at the top of queue.c and in docs/queue.md.
 */
#ifndef FIPC_LIB_QUEUE_IMPL_H
#define FIPC_LIB_QUEUE_IMPL_H

#include <stdint.h>

#include <fipc/jqueue.h>
#include <fipc/queue.h>

#include "internal.h"

/* An event count: a sleeper sets sleepers, re-checks its condition, then
 * sleeps on epoch; a notifier that changed the condition and finds
 * sleepers set clears it, advances epoch and wakes everyone (queue.c). */
struct eventcount {
    uint32_t epoch;
    uint32_t sleepers;
};

struct fipc_queue {
    /* Line 0: fixed at creation, then read-only (but for closed, written
     * once), so it stays shared in every CPU's cache. */
    uint64_t magic;
    uint64_t capacity; /* messages the queue holds, as asked for */
    uint64_t ring;     /* slots: capacity rounded up to a power of two */
    uint64_t mask;     /* ring - 1 */
    uint64_t max_item;
    uint64_t slot_size;
    uint64_t slots;    /* offset of slot 0 from this struct */
    uint32_t flags;
    uint32_t closed;

    /* Line 1: producers' position; in SPSC mode with a capacity that is
     * not a power of two also the producer's private copy of head. */
    _Alignas(FIPC_CACHELINE) uint64_t tail;
    uint64_t head_cache;

    /* Line 2: consumers' position; in SPSC mode also how a put that
     * raced with close settled (queue.c, Close): changed only by CAS, at
     * most twice (to DELIVERED, then to SEALED). */
    _Alignas(FIPC_CACHELINE) uint64_t head;
    uint64_t end;

    /* Line 3: consumers sleep here while the queue is empty. */
    _Alignas(FIPC_CACHELINE) struct eventcount not_empty;

    /* Line 4: producers sleep here while the queue is full. */
    _Alignas(FIPC_CACHELINE) struct eventcount not_full;
};

static_assert(offsetof(struct fipc_queue, tail) == 1 * FIPC_CACHELINE, "queue layout");
static_assert(offsetof(struct fipc_queue, head) == 2 * FIPC_CACHELINE, "queue layout");
static_assert(offsetof(struct fipc_queue, not_empty) == 3 * FIPC_CACHELINE, "queue layout");
static_assert(offsetof(struct fipc_queue, not_full) == 4 * FIPC_CACHELINE, "queue layout");
static_assert(sizeof(struct fipc_queue) == 5 * FIPC_CACHELINE, "queue layout");

/* Validate the dimensions, allocate prefix bytes (a multiple of
 * FIPC_CACHELINE, for the caller's own header) followed by a queue in
 * arena a, and set the queue up.  *out receives the start of the prefix.
 * 0, -EINVAL (bad dimensions or flags) or -ENOMEM. */
int fipc__queue_new(void **out, fipc_arena *a, size_t prefix, size_t capacity, size_t max_item,
                    unsigned flags);

/* Tests only: move an empty, idle queue to start at position pos, so that
 * the wrap-around of slot turns (32-bit) and positions (64-bit) can be
 * exercised without moving billions of messages first. */
void fipc__queue_rebase(struct fipc_queue *q, uint64_t pos);

/* Tests only: an SPSC put_many that found the queue open just before it
 * was closed (it skips that check): it publishes the messages, calls
 * between(arg) if not NULL (whatever the consumer does at that moment),
 * then looks at closed and, if set, settles with the consumer whether the
 * messages count (returns how many) or not (-EPIPE).  owner: the jqueue
 * whose count the put raises, or NULL.  -EAGAIN if the ring is full. */
int fipc__queue_spsc_put_late(struct fipc_queue *q, const struct iovec *items, size_t n,
                              fipc_jqueue *owner, void (*between)(void *), void *arg);

/* fipc_queue_put_many that also counts the messages it appends as
 * unfinished tasks of owner (if not NULL), before they become visible to
 * consumers. */
int fipc__queue_put_counted(fipc_queue *q, const struct iovec *items, size_t n,
                            int64_t timeout_ns, fipc_jqueue *owner);

/* jqueue.c: raise the unfinished count by n, or take back n that a put
 * counted before it failed (no consumer will ever read them). */
void fipc__jqueue_count(fipc_jqueue *j, size_t n);
void fipc__jqueue_uncount(fipc_jqueue *j, size_t n);

#endif
