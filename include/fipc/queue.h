/*
 * fipc/queue.h - bounded queues of byte messages in shared memory.
 *
 * A queue is a ring of fixed-size slots, each able to hold one
 * message of 0..max_item bytes, in an arena.  Producers and consumers claim
 * slots with one atomic operation each (Vyukov's bounded MPMC design: a
 * sequence number per slot), so the fast path is lock-free and makes no
 * system call.  A producer sleeps on a futex only when the queue is full and
 * a consumer only when it is empty; a sleeper raises a flag first, so put
 * and get enter the kernel only when someone sleeps.
 *
 * FIPC_QUEUE_SPSC declares exactly one producer and one consumer process
 * at a time; each side then owns its position and claims slots without a
 * compare-and-swap on it.
 *
 * close ends the queue for producers: puts fail with -EPIPE, while getters
 * (including those asleep) drain what is left and then get -EPIPE.
 *
 * The fipc_queue pointer addresses the queue's memory in the arena; any
 * process that maps the arena may use it (children inherit it, unrelated
 * processes find it with fipc_arena_lookup).
 *
 * Guarantees, whoever dies and at whatever instruction:
 *   - a put that returned 0 is delivered exactly once, unless the consumer
 *     that received it died after its get returned.  In MPMC mode, the
 *     messages of a consumer that died inside get are put again, in their
 *     order, behind the messages put before that, once the producers of
 *     the next lap reach their slots, or, once the queue is closed, go to
 *     the get that finds it drained.  They are lost only if that consumer
 *     had copied them all out and was releasing their slots;
 *   - after close, every get ends in -EPIPE once the queue is drained,
 *     whoever died: a get that waits, or gets with timeout_ns == 0 called
 *     again (a call that does not wait repairs a claim that has been in
 *     its way for 1 ms, as one that waits does);
 *   - qsize, empty and full never report a state in which no call that
 *     waits can make progress: a dead MPMC producer's claim counts in qsize
 *     until a waiting get passes it; a dead MPMC consumer's slots no longer
 *     count until a waiting put puts them again; an SPSC side that died before
 *     storing its position skews qsize until its replacement's next call,
 *     while puts and gets go by the slots themselves;
 *   - a process that waits passes a claim whose holder died within a few
 *     milliseconds (MPMC: every thread that uses the queue takes a claimer
 *     record, and a thread that finds all taken adds 64 more from the
 *     queue's arena, up to 4096; one that finds no room there, or 4096
 *     taken by live threads, claims without a record and turns repair off
 *     for that queue; a claimer on a C library whose robust list fipc
 *     cannot use is never seen dead), and an
 *     SPSC side that replaces a dead one carries on from the last position
 *     handed over;
 *   - a peer that writes garbage into the queue's memory can make calls
 *     fail with -EPROTO (or -EINVAL) or time out, never write outside the
 *     caller's buffers, read outside the arena, crash, or spin.
 * See docs/queue.md for the protocol and docs/death.md for what each death
 * costs.
 */
#ifndef FIPC_QUEUE_H
#define FIPC_QUEUE_H

#include <fipc/common.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fipc_queue fipc_queue;

/* Flags for fipc_queue_create. */
#define FIPC_QUEUE_SPSC 0x1u /* one producer and one consumer at a time */

/* Limits.  The ring has capacity rounded up to a power of two (at least 2)
 * slots, but never holds more than capacity messages. */
#define FIPC_QUEUE_CAPACITY_MAX ((size_t)1 << 30)
#define FIPC_QUEUE_ITEM_MAX     ((size_t)1 << 20)

/* Create a queue of at least capacity slots for messages of up to max_item
 * bytes in arena a (NULL: the default arena).  Errors: -EINVAL (out NULL,
 * capacity or max_item 0 or above the limits, unknown flags), -ENOMEM (the
 * arena is full). */
FIPC_EXPORT int fipc_queue_create(fipc_queue **out, fipc_arena *a, size_t capacity, size_t max_item,
                                  unsigned flags);

/* Append one message of len bytes.  0; -EMSGSIZE (len > max_item);
 * -EAGAIN (timeout_ns == 0) or -ETIMEDOUT when the queue stays full;
 * -EPIPE once closed (also for a put asleep on a full queue when it is
 * closed); -EINVAL (q NULL or no queue, or item NULL with len > 0);
 * -EPROTO (a peer changed the queue's dimensions before this thread first
 * used it). */
FIPC_EXPORT int fipc_queue_put(fipc_queue *q, const void *item, size_t len, int64_t timeout_ns);

/* Take the oldest message into buf and its length into *len.  cap must be
 * at least max_item.  0; -EAGAIN/-ETIMEDOUT when the queue stays empty;
 * -EPIPE once closed and drained; -EINVAL (NULL arguments, no queue,
 * cap < max_item; nothing is taken); -EPROTO (dimensions a peer changed, or
 * a message whose length no put can have written: it is consumed, nothing
 * is copied). */
FIPC_EXPORT int fipc_queue_get(fipc_queue *q, void *buf, size_t cap, size_t *len,
                               int64_t timeout_ns);

/* Append up to n messages (items[i].iov_base, .iov_len), in order, claiming
 * as many free slots as are available with one atomic operation; waits as
 * put does only while no slot at all is free.  Returns how many were
 * appended (>= 1), or put's errors for the first message (-EMSGSIZE if
 * any item is too long: nothing is appended). */
FIPC_EXPORT int fipc_queue_put_many(fipc_queue *q, const struct iovec *items, size_t n,
                                    int64_t timeout_ns);

/* Take up to n messages: message i into buf + i * stride, its length into
 * lens[i].  Waits as get does only while the queue is empty.  Returns how
 * many were taken (>= 1), or get's errors; stride < max_item is -EINVAL
 * and takes nothing.  Messages with a length no put can have written are
 * consumed without being copied; -EPROTO if nothing else was taken. */
FIPC_EXPORT int fipc_queue_get_many(fipc_queue *q, void *buf, size_t stride, size_t *lens, size_t n,
                                    int64_t timeout_ns);

/* Snapshots, as in Python: they may be stale by the time they return.
 * 0 or false for NULL.  After a death they never show a state that no call
 * that waits can leave (see the guarantees above). */
FIPC_EXPORT size_t fipc_queue_qsize(const fipc_queue *q);
FIPC_EXPORT bool fipc_queue_empty(const fipc_queue *q);
FIPC_EXPORT bool fipc_queue_full(const fipc_queue *q);
FIPC_EXPORT size_t fipc_queue_capacity(const fipc_queue *q);
FIPC_EXPORT size_t fipc_queue_max_item(const fipc_queue *q);

/* Close: no more puts; sleeping producers and consumers wake.  Idempotent.
 * 0, or -EINVAL for NULL. */
FIPC_EXPORT int fipc_queue_close(fipc_queue *q);
FIPC_EXPORT bool fipc_queue_closed(const fipc_queue *q);

/* How puts and gets that block on q wait from their next wait on (enum
 * fipc_wait_mode, fipc/common.h; FIPC_WAIT_ADAPTIVE for a new queue).
 * 0; -EINVAL for NULL or another mode; -EPROTO, -ENOMEM as for any call
 * (a queue this process cannot open). */
FIPC_EXPORT int fipc_queue_set_wait_mode(fipc_queue *q, enum fipc_wait_mode mode);

#ifdef __cplusplus
}
#endif
#endif
