/*
 * lock_impl.h - the layout of fipc_lock and fipc_rlock (internal).
 * The state word and the robust list are documented at the top of lock.c.
 */
#ifndef FIPC_LIB_LOCK_IMPL_H
#define FIPC_LIB_LOCK_IMPL_H

#include <stdint.h>

#include <fipc/lock.h>

struct lock_impl {
    uint32_t word;  /* owner tid | OWNER_DIED | WAITERS; the futex */
    uint32_t count; /* rlock: recursion depth, touched by the owner only */
    uint32_t spare[4];
    uint64_t robust_prev; /* unused by a lock (glibc's shape: a sentinel's prev link) */
    uint64_t robust_next; /* the owner's robust-list link, written for the kernel only */
};

/* fipc_lock_acquire and fipc_lock_release without the NULL checks. */
int fipc__lock_acquire(struct lock_impl *m, int64_t timeout_ns);
int fipc__lock_release(struct lock_impl *m);
/* Whether the calling thread holds l (its private record says so). */
bool fipc__lock_held_by_self(const fipc_lock *l);

#endif
