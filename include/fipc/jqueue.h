/*
 * fipc/jqueue.h - Python's JoinableQueue: a queue whose producers can wait
 * until every item put has been processed.
 *
 * A jqueue is a fipc_queue plus a count of unfinished items and a futex
 * epoch for joiners.  put raises the count before the item becomes visible
 * to consumers; task_done lowers it and, when that brings it to zero while
 * a joiner sleeps, advances the epoch and wakes the joiners.  While joiners
 * wait, counting goes through a lock, so that join sees every zero.
 * join on a count of zero returns at once, with no system call.
 *
 * Every guarantee of fipc/queue.h holds, the same rings carrying the
 * items: a put that returned 0 is delivered exactly once unless the
 * consumer that received it died after its get returned (or, MPMC, inside
 * that get); after close every get that waits ends in -EPIPE once the queue
 * is drained, whoever died; qsize, empty and full never report a state
 * that no call that waits can leave.
 *
 * The count cannot know of an item lost with a consumer that died between
 * get and task_done, or inside get: it stays unfinished, and join waits
 * until its timeout (a supervisor may call task_done for it; see
 * docs/jqueue.md and docs/death.md).  A put whose producer died after
 * counting and before publishing counts for nothing once the queue has
 * repaired its slots (MPMC: when a get passes them; SPSC: at the next
 * producer's put).
 */
#ifndef FIPC_JQUEUE_H
#define FIPC_JQUEUE_H

#include <fipc/queue.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fipc_jqueue fipc_jqueue;

/* As fipc_queue_create. */
FIPC_EXPORT int fipc_jqueue_create(fipc_jqueue **out, fipc_arena *a, size_t capacity,
                                   size_t max_item, unsigned flags);

/* As the fipc_queue calls; put and put_many count every item appended. */
FIPC_EXPORT int fipc_jqueue_put(fipc_jqueue *q, const void *item, size_t len, int64_t timeout_ns);
FIPC_EXPORT int fipc_jqueue_get(fipc_jqueue *q, void *buf, size_t cap, size_t *len,
                                int64_t timeout_ns);
FIPC_EXPORT int fipc_jqueue_put_many(fipc_jqueue *q, const struct iovec *items, size_t n,
                                     int64_t timeout_ns);
FIPC_EXPORT int fipc_jqueue_get_many(fipc_jqueue *q, void *buf, size_t stride, size_t *lens,
                                     size_t n, int64_t timeout_ns);
FIPC_EXPORT size_t fipc_jqueue_qsize(const fipc_jqueue *q);
FIPC_EXPORT bool fipc_jqueue_empty(const fipc_jqueue *q);
FIPC_EXPORT bool fipc_jqueue_full(const fipc_jqueue *q);
FIPC_EXPORT size_t fipc_jqueue_capacity(const fipc_jqueue *q);
FIPC_EXPORT size_t fipc_jqueue_max_item(const fipc_jqueue *q);
FIPC_EXPORT int fipc_jqueue_close(fipc_jqueue *q);
FIPC_EXPORT bool fipc_jqueue_closed(const fipc_jqueue *q);
/* As fipc_queue_set_wait_mode, for puts and gets; join always sleeps. */
FIPC_EXPORT int fipc_jqueue_set_wait_mode(fipc_jqueue *q, enum fipc_wait_mode mode);

/* The underlying queue (for code written against fipc_queue).  Items put
 * through it directly are not counted; its gets do not count a dead
 * producer's repaired slots done, as fipc_jqueue_get does. */
FIPC_EXPORT fipc_queue *fipc_jqueue_queue(fipc_jqueue *q);

/* One item is finished.  0; -EOVERFLOW if no item is unfinished (more
 * calls than items put; nothing changes); -EINVAL for NULL. */
FIPC_EXPORT int fipc_jqueue_task_done(fipc_jqueue *q);

/* n items are finished at once.  0; -EOVERFLOW if fewer than n are
 * unfinished (nothing changes); -EINVAL for NULL. */
FIPC_EXPORT int fipc_jqueue_task_done_many(fipc_jqueue *q, size_t n);

/* Wait until every item put has been marked done.  0 (at once if none is
 * unfinished); -EAGAIN (timeout_ns == 0) or -ETIMEDOUT; -EINVAL for NULL. */
FIPC_EXPORT int fipc_jqueue_join(fipc_jqueue *q, int64_t timeout_ns);

/* Items put but not yet marked done (a snapshot); 0 for NULL. */
FIPC_EXPORT size_t fipc_jqueue_unfinished(const fipc_jqueue *q);

#ifdef __cplusplus
}
#endif
#endif
