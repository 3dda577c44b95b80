/*
 * fipc/sem.h - counting semaphores (Python's Semaphore and BoundedSemaphore).
 *
 * The value is a 32-bit futex word; a second word counts sleepers.  acquire
 * takes a unit with one compare-and-swap and release adds one with another
 * (which also enforces the bound); neither enters the kernel unless a waiter has to sleep or a
 * sleeper has to be woken.
 *
 * A semaphore has no owner, so the death of a process that took a unit
 * cannot be detected: that unit is lost.  Use a Lock where recovery matters.
 */
#ifndef FIPC_SEM_H
#define FIPC_SEM_H

#include <fipc/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FIPC_SEM_SIZE      16
#define FIPC_SEM_VALUE_MAX 0x7fffffffu

typedef struct fipc_sem {
    FIPC_ALIGNAS(8) unsigned char opaque_[FIPC_SEM_SIZE];
} fipc_sem;

/* Initialise with value units.  -EINVAL for NULL or value above
 * FIPC_SEM_VALUE_MAX. */
FIPC_EXPORT int fipc_sem_init(fipc_sem *s, uint32_t value);

/* A bounded semaphore: a release that would raise the value above the
 * initial value fails with -EOVERFLOW and changes nothing. */
FIPC_EXPORT int fipc_sem_init_bounded(fipc_sem *s, uint32_t value);

/* The same, allocated in arena a (NULL: the default arena).  NULL if the
 * arena is full or value is out of range. */
FIPC_EXPORT fipc_sem *fipc_sem_new(fipc_arena *a, uint32_t value);
FIPC_EXPORT fipc_sem *fipc_sem_new_bounded(fipc_arena *a, uint32_t value);

/* Take one unit (P).  0; -EAGAIN (timeout_ns == 0) or -ETIMEDOUT when the
 * value stayed 0; -EINVAL for NULL. */
FIPC_EXPORT int fipc_sem_acquire(fipc_sem *s, int64_t timeout_ns);

/* Give one unit back (V).  0; -EOVERFLOW for a bounded semaphore at its
 * initial value, or any semaphore at FIPC_SEM_VALUE_MAX; -EINVAL for NULL. */
FIPC_EXPORT int fipc_sem_release(fipc_sem *s);

/* How acquirers of s wait from their next acquire on (enum fipc_wait_mode,
 * fipc/common.h; FIPC_WAIT_ADAPTIVE until set; init resets it).  0, or
 * -EINVAL for NULL or another mode. */
FIPC_EXPORT int fipc_sem_set_wait_mode(fipc_sem *s, enum fipc_wait_mode mode);

/* The current value (a snapshot), or -EINVAL for NULL. */
FIPC_EXPORT int fipc_sem_value(const fipc_sem *s);

#ifdef __cplusplus
}
#endif
#endif
