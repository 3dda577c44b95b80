/*
 * fipc/wait.h - waiting on several fipc objects at once
 * (multiprocessing.connection.wait).
 *
 * A fipc_waitable describes one object and what to wait for: a queue or
 * JoinableQueue that may have become readable (a get may succeed) or
 * writable (a put may succeed), a JoinableQueue whose items are all done,
 * an event that is set, a semaphore whose value is above 0, a process that
 * has exited, a Pipe end with a message to receive or whose other end is
 * gone.  fipc_wait_any blocks until one of them is ready and returns its
 * index.
 *
 * Readiness is a hint: another process may take the item, the unit or the
 * flag, or the message first.  After fipc_wait_any returns i, try the
 * non-blocking call on object i (timeout 0) and wait again if it returns
 * -EAGAIN.  A closed queue is ready both ways: its calls return data or
 * -EPIPE; so is a conn whose other end is gone (recv returns what is left,
 * then -EPIPE).
 *
 * Sets of queues, events and semaphores wait with one futex_waitv system
 * call.  A process is waited on through its pidfd and a conn through its
 * descriptor (fipc_conn_fileno's): sets of those only wait in poll(), and
 * a set of both kinds through io_uring (or, where io_uring lacks futex
 * operations or cannot be set up, by looking at the processes and conns
 * every 10 ms).  While nobody waits, the processes that change the objects
 * make no system call; a waiter costs the next change one wake-up (for a
 * conn: the next send writes an eventfd); a call with timeout 0 registers
 * nothing.
 *
 * No liburing needed; <fipc/uring.h> has the io_uring form of the same
 * waits, for an event loop of one's own.
 */
#ifndef FIPC_WAIT_H
#define FIPC_WAIT_H

#include <fipc/common.h>
#include <fipc/conn.h>
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

/* A Pipe end that is readable or at EOF: a message waits (fipc_conn_recv
 * with timeout 0 would return it, or -EMSGSIZE), or every holder of the
 * other end has closed it or ended, SIGKILL included (recv returns what is
 * left, then -EPIPE).  Only an end that receives: the send-only end of a
 * pipe that is not duplex is -EINVAL from fipc_wait_any.  While the wait
 * sleeps, the other end's next send writes the end's eventfd (one system
 * call); the end's fileno may then report POLLIN once spuriously. */
FIPC_EXPORT fipc_waitable fipc_waitable_conn(fipc_conn *c);

/* Block until one of objs[0..n) is ready; returns its index (the lowest,
 * if several are).  -EAGAIN (timeout_ns == 0) or -ETIMEDOUT when none
 * became ready; -EINVAL for objs NULL, n == 0, n > FIPC_WAIT_MAX, or an
 * element that describes no object (NULL, a what the object does not
 * offer, or a conn end that does not receive); -EPROTO for a queue a peer
 * overwrote.  Signals never end the
 * wait early.  Readiness is a hint (see the top). */
FIPC_EXPORT int fipc_wait_any(const fipc_waitable *objs, size_t n, int64_t timeout_ns);

#ifdef __cplusplus
}
#endif
#endif
