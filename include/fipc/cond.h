/*
 * fipc/cond.h - Python's Condition, used with a fipc_lock passed to wait
 * (as with pthreads).
 *
 * A notify hands out wake-up tokens, one per woken waiter, and advances a
 * sequence word that sleepers wait on; a waiter leaves only by taking a
 * token or by running out of time.  notify(n) therefore releases at most n
 * of the threads waiting at that moment, and costs no system call when
 * nobody waits.  A waiter that starts waiting after a notify may take its
 * token in place of an older waiter; always wait for a predicate
 * (fipc_cond_wait_for) rather than for a wake-up.
 */
#ifndef FIPC_COND_H
#define FIPC_COND_H

#include <fipc/common.h>
#include <fipc/lock.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FIPC_COND_SIZE 16

typedef struct fipc_cond {
    FIPC_ALIGNAS(8) unsigned char opaque_[FIPC_COND_SIZE];
} fipc_cond;

/* Initialise with no waiters.  -EINVAL for NULL. */
FIPC_EXPORT int fipc_cond_init(fipc_cond *c);

/* A condition in arena a (NULL: the default arena); NULL if full. */
FIPC_EXPORT fipc_cond *fipc_cond_new(fipc_arena *a);

/* Release l, wait for a notify, take l again.  The caller must hold l.
 * 0 when notified; -ETIMEDOUT (or -EAGAIN for timeout_ns == 0) when time ran
 * out, with l held again; -EOWNERDEAD (before any timeout) when l's
 * previous holder died while this thread waited (l is held); -EPERM if the
 * caller does not hold l; -EINVAL for NULL. */
FIPC_EXPORT int fipc_cond_wait(fipc_cond *c, fipc_lock *l, int64_t timeout_ns);

/* Wait until pred(arg) is true, re-checking after each wake-up, with one
 * deadline for the whole wait.  pred is called with l held.  0 once pred is
 * true; -ETIMEDOUT/-EAGAIN if it is still false when time runs out; the
 * other codes as fipc_cond_wait. */
FIPC_EXPORT int fipc_cond_wait_for(fipc_cond *c, fipc_lock *l, bool (*pred)(void *), void *arg,
                                   int64_t timeout_ns);

/* Wake up to n of the current waiters.  Call with the lock held, as in
 * Python.  0, or -EINVAL for NULL. */
FIPC_EXPORT int fipc_cond_notify(fipc_cond *c, uint32_t n);

/* Wake every current waiter.  0, or -EINVAL for NULL. */
FIPC_EXPORT int fipc_cond_notify_all(fipc_cond *c);

/* How many threads are waiting (a snapshot); -EINVAL for NULL. */
FIPC_EXPORT int fipc_cond_n_waiting(const fipc_cond *c);

#ifdef __cplusplus
}
#endif
#endif
