/*
 * waitable.h - how a fipc object tells a waiter outside fipc what to sleep
 * on (internal; io_uring's prepared waits, uring.c, and fipc_wait_any,
 * wait.c).
 *
 * Each object that can be waited on offers one call, its "arm":
 *
 *   r = fipc__X_arm(obj, what, &w)
 *   1    ready now: the non-blocking call would not return -EAGAIN
 *   0    not ready, and the caller is registered as a sleeper: w names the
 *        futex word and the value it holds until the object's next change.
 *        A futex wait on (w.word, w.value) that the kernel queues before
 *        that change is woken by it; one queued after finds the word
 *        changed and returns at once.  So no change between the arm and the
 *        wait is lost, however late the wait is queued.
 *   2    as 0, but look again soon whether woken or not (io_uring: a
 *        URING_RECHECK_NS timeout instead of the wait; wait_any: a sleep of
 *        at most EC_RECHECK_NS)
 *        (queues: a claim of another process is in the way, which nobody
 *        will announce if its holder died; looking again is what repairs
 *        it, as ec_block's -EINPROGRESS)
 *   < 0  -EINVAL (no such object, or what is not one it offers),
 *        -EPROTO (a peer overwrote the object)
 *
 * The registration is the one the object's own sleepers make, or a flag
 * beside it, and it is taken back by the notifier that wakes it (as the
 * event count's flag is, eventcount.h), never by the waiter: a waiter
 * outside fipc does not say when it stops waiting, so a count that it
 * would decrement would stay high and cost every later notifier a system
 * call.  A registration left behind by a waiter that went away costs the
 * other side one needless wake, then it is gone; while nobody is
 * registered, the other side makes no system call.
 *
 * Readiness is a hint: another process may take the item first.  The
 * caller tries the non-blocking call and arms again if it fails.
 */
#ifndef FIPC_LIB_WAITABLE_H
#define FIPC_LIB_WAITABLE_H

#include <stdint.h>

#include "clock.h"

#include <fipc/conn.h>
#include <fipc/event.h>
#include <fipc/jqueue.h>
#include <fipc/queue.h>
#include <fipc/sem.h>
#include <fipc/wait.h>

/* Added to what: only answer whether the object is ready (1 or 0), and
 * register nothing (a poll, fipc_wait_any with timeout 0). */
#define FIPC__ARM_PEEK 0x100u

struct fipc__arm {
    uint32_t *word; /* NULL: no futex word, only fd */
    uint32_t value;
    int fd; /* -1: no descriptor; owned by the object */
};

/* what: FIPC_READABLE or FIPC_WRITABLE (queue.c). */
int fipc__queue_arm(fipc_queue *q, unsigned what, struct fipc__arm *w);

/* what: FIPC_READABLE, FIPC_WRITABLE or FIPC_JOINED (jqueue.c). */
int fipc__jqueue_arm(fipc_jqueue *j, unsigned what, struct fipc__arm *w);

/* Set (event.c); what is ignored. */
int fipc__event_arm(fipc_event *e, unsigned what, struct fipc__arm *w);

/* Value above 0 (sem.c); what is ignored. */
int fipc__sem_arm(fipc_sem *s, unsigned what, struct fipc__arm *w);

/* Readable or EOF (conn.c): a message waits or every holder of the other
 * end is gone.  Arms with a descriptor (the end's fileno), not a word: a
 * send sees the registration and writes the end's eventfd, the peer's end
 * hangs up the socket the fileno watches.  what is ignored; -EINVAL for
 * NULL or the send-only end of a pipe that is not duplex. */
int fipc__conn_arm(fipc_conn *c, unsigned what, struct fipc__arm *w);

/* A process has no futex word (process.c): 1 if p has ended (join would
 * return at once), else 0 with *fd a descriptor that becomes readable when
 * it ends (its pidfd, owned by p); -EAGAIN/-ETIMEDOUT if the child's
 * report has not come by deadline; -EINVAL for NULL. */
int fipc__process_arm(fipc_process *p, fipc_deadline deadline, int64_t timeout_ns, int *fd);

#endif
