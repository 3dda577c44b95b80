/*
 * fipc/wait.h - waiting on several fipc objects at once
 * (multiprocessing.connection.wait).
 *
 * A fipc_waitable describes one object and what to wait for: a queue or
 * JoinableQueue that may have become readable (a get may succeed) or
 * writable (a put may succeed), a JoinableQueue whose items are all done,
 * an event that is set, a semaphore whose value is above 0, a process that
 * has exited.  fipc_wait_any blocks until one of them is ready and returns
 * its index.
 *
 * Readiness is a hint: another process may take the item, the unit or the
 * flag first.  After fipc_wait_any returns i, try the non-blocking call on
 * object i (timeout 0) and wait again if it returns -EAGAIN.  A closed
 * queue is ready both ways: its calls return data or -EPIPE.
 *
 * Sets of fipc objects only (no process) wait with one futex_waitv system
 * call; a set with a process also waits on the process's pidfd, through
 * io_uring (or, where io_uring lacks futex operations or cannot be set up,
 * by looking at the processes every 10 ms).  While nobody waits, the
 * processes that change the objects make no system call; a call with
 * timeout 0 registers nothing.  Pipe connections (fipc_conn) are not
 * waitable yet: fipc_waitable_conn will come with fipc_pipe.
 *
 * No liburing needed; <fipc/uring.h> has the io_uring form of the same
 * waits, for an event loop of one's own.
 */
#ifndef FIPC_WAIT_H
#define FIPC_WAIT_H

#include <fipc/common.h>
#include <fipc/event.h>
#include <fipc/jqueue.h>
#include <fipc/process.h>
#include <fipc/queue.h>
#include <fipc/sem.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What to wait for (one of them per waitable). */
#define FIPC_READABLE 1u /* a get may succeed (or the queue is closed) */
#define FIPC_WRITABLE 2u /* a put may succeed (or the queue is closed) */
#define FIPC_JOINED   4u /* a JoinableQueue's items are all done */

/* The most objects one fipc_wait_any takes (futex_waitv's limit). */
#define FIPC_WAIT_MAX 128

/* One object to wait on; made by the fipc_waitable_* calls below, passed by
 * value, and no more than a description: it holds no resources. */
typedef struct fipc_waitable {
    void *obj_;
    uint32_t kind_;
    uint32_t what_;
} fipc_waitable;

/* Describe a queue to wait on until it may be readable or writable (what:
 * FIPC_READABLE or FIPC_WRITABLE).  A bad q or what is reported by
 * fipc_wait_any (-EINVAL). */
FIPC_EXPORT fipc_waitable fipc_waitable_queue(fipc_queue *q, unsigned what);

/* The same for a JoinableQueue; what may also be FIPC_JOINED: every item
 * ever put has been marked done (fipc_jqueue_join would return). */
FIPC_EXPORT fipc_waitable fipc_waitable_jqueue(fipc_jqueue *q, unsigned what);

/* An event that is set. */
FIPC_EXPORT fipc_waitable fipc_waitable_event(fipc_event *e);

/* A semaphore whose value is above 0 (an acquire may succeed). */
FIPC_EXPORT fipc_waitable fipc_waitable_sem(fipc_sem *s);

/* A process that has exited (fipc_process_join would return at once).
 * Only in the process that started it. */
FIPC_EXPORT fipc_waitable fipc_waitable_process(fipc_process *p);

/* Block until one of objs[0..n) is ready; returns its index (the lowest,
 * if several are).  -EAGAIN (timeout_ns == 0) or -ETIMEDOUT when none
 * became ready; -EINVAL for objs NULL, n == 0, n > FIPC_WAIT_MAX, or an
 * element that describes no object (NULL, or a what the object does not
 * offer); -EPROTO for a queue a peer overwrote.  Signals never end the
 * wait early.  Readiness is a hint (see the top). */
FIPC_EXPORT int fipc_wait_any(const fipc_waitable *objs, size_t n, int64_t timeout_ns);

#ifdef __cplusplus
}
#endif
#endif
