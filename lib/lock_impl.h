/*
 * lock_impl.h - the layout of fipc_lock and fipc_rlock (internal).
 * The state word, the robust list and the owner record are documented at
 * the top of lock.c.
 */
#ifndef FIPC_LIB_LOCK_IMPL_H
#define FIPC_LIB_LOCK_IMPL_H

#include <stdint.h>

#include <fipc/lock.h>

struct lock_impl {
    uint32_t word;  /* owner tid | OWNER_DIED | WAITERS; the futex */
    uint32_t count; /* rlock: recursion depth, touched by the owner only */
    /* Written only by an owner without a robust list (lock.c, "Owner
     * record"); 0 otherwise. */
    uint64_t owner;    /* start time << 30 | tid of that owner; 0 = none */
    uint32_t owner_ns; /* that owner's pid namespace (inode, low 32 bits) */
    uint32_t spare;
    uint64_t robust_prev; /* unused by a lock (glibc's shape: a sentinel's prev link) */
    uint64_t robust_next; /* the owner's robust-list link, written for the kernel only */
};

/* fipc_lock_acquire and fipc_lock_release without the NULL checks. */
int fipc__lock_acquire(struct lock_impl *m, int64_t timeout_ns);
int fipc__lock_release(struct lock_impl *m);
/* For a lock whose holder another module waits on (the queue's claimer
 * records): whether the word names no live owner, checking a recorded
 * owner's liveness as a waiter would (lock.c, owner_watch) and marking the
 * word OWNER_DIED if it is dead.  Reads /proc: for slow paths only. */
bool fipc__lock_owner_gone(struct lock_impl *m);
/* Whether the calling thread holds l (its private record says so). */
bool fipc__lock_held_by_self(const fipc_lock *l);

#ifdef FIPC_TEST_HOOKS
/* The seams test_hooks.c offers (test_hooks.h): while no_robust_list is
 * set, a thread that sets up its state (first use in a thread or process)
 * finds no robust list, as on a C library whose list fipc cannot use;
 * owner_checks counts the liveness checks of recorded owners this process
 * made. */
extern bool fipc__lock_no_robust_list;
extern uint64_t fipc__lock_owner_checks;
#endif

#endif
