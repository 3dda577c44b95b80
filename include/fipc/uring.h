/*
 * fipc/uring.h - waiting on fipc objects from an io_uring event loop
 * (with liburing; Linux 6.7 or later for io_uring futex operations).
 *
 * A loop that serves sockets through io_uring can also learn, without a
 * thread of its own and without polling, that a queue has an item or room,
 * a JoinableQueue was joined, an event was set or a semaphore released.
 * Each fipc_X_prep_wait call prepares one SQE as an IORING_OP_FUTEX_WAIT on
 * the object's futex word and registers the loop as a sleeper, the way the
 * object's own blocking calls do, so that:
 *   - the next change of the object completes the SQE, and a change made
 *     after the call but before the SQE reaches the kernel is not missed
 *     (the SQE then completes at once, with -EAGAIN);
 *   - while nobody is registered, the processes that change the object
 *     make no system call; a registration costs the next change one wake.
 *
 * Usage: prepare, set user_data, submit; on the completion (whatever its
 * res: 0, -EAGAIN, or -ECANCELED after a cancel or a linked timeout), try
 * the non-blocking call (timeout 0) until it returns -EAGAIN, then prepare
 * again.  Readiness is a hint: another process may take the item first, so
 * a completion means "look again", never "there is an item for you".  A
 * return of 1 means the object was ready already: the SQE is then a NOP,
 * whose completion comes at once, so a loop can treat both returns alike.
 * A queue's preparer first re-checks for about 2 us, as a blocking get or
 * put does before it sleeps: an item about to come from the other CPU
 * then costs neither side a system call beyond the submission.
 *
 * While a claim of another process is in the way of a queue (MPMC: a put
 * that claimed the first slot and has not published it, or a get one lap
 * back that has not released its slot), the SQE is instead a 250 us
 * IORING_OP_TIMEOUT (res -ETIME): nothing announces the end of a claim
 * whose holder died, and it is the loop's next prepare that passes it, as
 * a blocking get or put would.
 *
 * The SQE may carry IOSQE_IO_LINK to an IORING_OP_LINK_TIMEOUT (the futex
 * wait itself has no timeout: unlike fipc's blocking calls it does not
 * look again every 80 ms, so a process killed between its change and its
 * wake leaves it asleep until the next change, unless a linked timeout
 * ends it), and may be cancelled by its user_data
 * (io_uring_prep_cancel64).  Closing a queue completes every wait prepared
 * on it.  Tearing the ring down with waits pending cancels them; their
 * registrations cost the other side one needless wake each, nothing more.
 *
 * Each call returns 0 (a wait was prepared), 1 (ready already: a NOP was
 * prepared), -EOPNOTSUPP (the kernel has no io_uring futex operations;
 * checked once per process, and sqe is left untouched) or -EINVAL (sqe or
 * the object NULL, or what not one of those listed; sqe untouched), and
 * -EPROTO for a queue a peer overwrote.  The caller sets sqe's user_data
 * (and flags, for a link) after the call.
 */
#ifndef FIPC_URING_H
#define FIPC_URING_H

#include <fipc/wait.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The SQE comes from liburing (io_uring_get_sqe); this header needs only
 * its name, so it compiles without <liburing.h> and in any C dialect
 * (liburing 2.3's own header needs POSIX and <fcntl.h> first). */
struct io_uring_sqe;

/* A queue that may have become readable (what = FIPC_READABLE: a get may
 * succeed) or writable (FIPC_WRITABLE: a put may succeed).  A closed queue
 * is ready both ways. */
FIPC_EXPORT int fipc_queue_prep_wait(struct io_uring_sqe *sqe, fipc_queue *q, unsigned what);

/* The same for a JoinableQueue (FIPC_READABLE or FIPC_WRITABLE). */
FIPC_EXPORT int fipc_jqueue_prep_wait(struct io_uring_sqe *sqe, fipc_jqueue *q, unsigned what);

/* A JoinableQueue whose items are all done (fipc_jqueue_join would
 * return). */
FIPC_EXPORT int fipc_jqueue_prep_join(struct io_uring_sqe *sqe, fipc_jqueue *q);

/* An event that is set. */
FIPC_EXPORT int fipc_event_prep_wait(struct io_uring_sqe *sqe, fipc_event *e);

/* A semaphore whose value is above 0 (an acquire may succeed). */
FIPC_EXPORT int fipc_sem_prep_wait(struct io_uring_sqe *sqe, fipc_sem *s);

#ifdef __cplusplus
}
#endif
#endif
