/*
 * fipc/cond.h - Python's Condition, used with a fipc_lock passed to wait
 * (as with pthreads).
 *
 * A waiter joins the current generation of waiters while it holds the lock;
 * a notify wakes waiters of the generations that were there before it, the
 * oldest first, and never one that started waiting after it.  notify(n)
 * releases up to n of the threads waiting at that moment (exactly n when
 * that many wait, unless some of them died in wait: see below), and costs no
 * system call when nobody waits.  wait returns 0 only for a notify; still
 * wait for a predicate (fipc_cond_wait_for) when another thread may change
 * it first.
 *
 * A waiter that dies inside wait is never waited for: it is released with
 * its generation, and at worst one notify(n) with n below the number of
 * waiters spends one of its n wake-ups on it.
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

/* Release l, wait for a notify made after this call, take l again.  The
 * caller must hold l.  0 when notified; -ETIMEDOUT (or -EAGAIN for
 * timeout_ns == 0) when time ran out, with l held again; -EOWNERDEAD
 * (before any timeout) when l's previous holder died while this thread
 * waited (l is held); -EOVERFLOW when 65535 threads already wait in the
 * newest generation (l is held, never released); -EPERM if the caller does
 * not hold l; -EINVAL for NULL. */
FIPC_EXPORT int fipc_cond_wait(fipc_cond *c, fipc_lock *l, int64_t timeout_ns);

/* Wait until pred(arg) is true, re-checking after each wake-up, with one
 * deadline for the whole wait.  pred is called with l held.  0 once pred is
 * true; -ETIMEDOUT/-EAGAIN if it is still false when time runs out; the
 * other codes as fipc_cond_wait. */
FIPC_EXPORT int fipc_cond_wait_for(fipc_cond *c, fipc_lock *l, bool (*pred)(void *), void *arg,
                                   int64_t timeout_ns);

/* Wake up to n of the threads waiting now, the longest-waiting generation
 * first.  Call with the lock held, as in Python.  0, or -EINVAL for NULL. */
FIPC_EXPORT int fipc_cond_notify(fipc_cond *c, uint32_t n);

/* Wake every current waiter.  0, or -EINVAL for NULL. */
FIPC_EXPORT int fipc_cond_notify_all(fipc_cond *c);

/* How many threads wait and have not been notified (a snapshot; a waiter
 * that died inside wait counts until a notify reaches it); -EINVAL for
 * NULL. */
FIPC_EXPORT int fipc_cond_n_waiting(const fipc_cond *c);

#ifdef __cplusplus
}
#endif
#endif
