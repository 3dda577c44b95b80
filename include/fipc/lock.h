/*
 * fipc/lock.h - Lock and RLock: mutexes that work across processes and
 * survive the death of their holder.
 *
 * A lock is a 32-bit futex word holding its owner's thread id.  Taking a free
 * lock is one compare-and-swap and releasing it one exchange, with no system
 * call; a contended acquirer spins briefly, then sleeps on the futex, and the
 * releaser enters the kernel only when a sleeper is recorded.
 *
 * Owner death: while held, a lock is linked into its owner thread's robust
 * futex list (the one the C library registers with the kernel for robust
 * pthread mutexes).  When the owner thread ends, for any reason including
 * SIGKILL, the kernel marks the word OWNER_DIED and wakes a waiter, and the
 * next acquirer gets -EOWNERDEAD with the lock held.  The lock then works
 * normally: -EOWNERDEAD is reported once, to the thread that takes over and
 * should repair what the lock protects.  An owner without a robust list (a
 * raw clone child, a C library whose list fipc cannot use) records itself
 * in the lock instead, and a waiter that has waited a few milliseconds
 * checks that owner's liveness (docs/lock.md): a dead one gives the same
 * -EOWNERDEAD, within about 30 ms; an acquire with timeout 0 makes no
 * check.
 *
 * Unlike Python's Lock, a lock has an owner: only the thread that acquired
 * it may release it (-EPERM otherwise).  The owner is what makes recovery
 * after its death possible.  Each thread keeps the locks it holds in its own
 * private memory; that record, not the thread id in the word, decides who
 * owns a lock.  A child made by fork(), _Fork() or a raw clone (no CLONE_VM)
 * owns none of its parent's locks, whichever way it was made; vfork() and
 * CLONE_VM children must not call these functions.  Processes that share
 * locks must share a pid namespace (docs/lock.md, Limits).
 *
 * Both types are plain structs that may be placed in any shared memory and
 * set up with _init, or allocated in an arena with _new.  While a lock is
 * held, its last 8 bytes hold the owner's robust-list link, written for the
 * kernel and never read by fipc; the struct holds no other address.  A
 * process must acquire and release a lock through one address.
 */
#ifndef FIPC_LOCK_H
#define FIPC_LOCK_H

#include <fipc/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FIPC_LOCK_SIZE 40

typedef struct fipc_lock {
    FIPC_ALIGNAS(8) unsigned char opaque_[FIPC_LOCK_SIZE];
} fipc_lock;

typedef struct fipc_rlock {
    FIPC_ALIGNAS(8) unsigned char opaque_[FIPC_LOCK_SIZE];
} fipc_rlock;

/* Initialise a released lock.  -EINVAL for NULL.  Never on a held lock. */
FIPC_EXPORT int fipc_lock_init(fipc_lock *l);

/* A released lock allocated in arena a (NULL: the default arena); NULL if
 * the arena is full. */
FIPC_EXPORT fipc_lock *fipc_lock_new(fipc_arena *a);

/* Take the lock.  0; -EOWNERDEAD: taken, but the previous owner died
 * holding it; -EAGAIN (timeout_ns == 0) when any thread holds it, the caller
 * included; -ETIMEDOUT when another thread holds it; -EDEADLK if the caller
 * already holds it and timeout_ns is not 0 (the wait could never end);
 * -EINVAL for NULL; -ENOMEM if the thread's private record of held locks
 * cannot be mapped or grown. */
FIPC_EXPORT int fipc_lock_acquire(fipc_lock *l, int64_t timeout_ns);

/* Release the lock.  0; -EPERM if the calling thread does not hold it;
 * -EPROTO if it does but another process overwrote the lock's word (the
 * lock leaves the caller's record; the word is left alone); -EINVAL for
 * NULL. */
FIPC_EXPORT int fipc_lock_release(fipc_lock *l);

/* Whether some thread holds the lock (a snapshot).  false for NULL. */
FIPC_EXPORT bool fipc_lock_locked(const fipc_lock *l);

/* Recursive lock: the owner may acquire it again; it is released when
 * every acquire has been matched by a release.  Same codes as fipc_lock,
 * except that a second acquire by the owner succeeds (-EOVERFLOW past
 * 2^32 - 1 levels), and release gives -EPROTO, changing nothing, when the
 * depth of a held lock is 0 (another process wrote it). */
FIPC_EXPORT int fipc_rlock_init(fipc_rlock *l);
FIPC_EXPORT fipc_rlock *fipc_rlock_new(fipc_arena *a);
FIPC_EXPORT int fipc_rlock_acquire(fipc_rlock *l, int64_t timeout_ns);
FIPC_EXPORT int fipc_rlock_release(fipc_rlock *l);
FIPC_EXPORT bool fipc_rlock_locked(const fipc_rlock *l);

#ifdef __cplusplus
}
#endif
#endif
