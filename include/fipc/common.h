/*
 * fipc/common.h - conventions shared by every fipc module.
 *
 * Every call that can fail returns 0 (or a documented non-negative count) on
 * success and a negative errno on failure; errno itself is never touched.
 * Fixed meanings across modules:
 *   -EINVAL     a bad argument (NULL object, zero size, out-of-range value)
 *   -EAGAIN     the call would block and timeout_ns was 0
 *   -ETIMEDOUT  a positive timeout ran out
 *   -EOWNERDEAD a lock was acquired, but its previous holder died holding it
 *   -EPIPE      the object was closed
 *
 * Timeouts are relative nanoseconds on CLOCK_MONOTONIC: FIPC_FOREVER blocks
 * without limit, 0 never blocks, > 0 waits at most that long.  A signal never
 * surfaces as -EINTR: the wait resumes with the time that remains.
 */
#ifndef FIPC_COMMON_H
#define FIPC_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the functions that libfipc exports.  The library is built with
 * hidden visibility, so whatever its sources do not declare through these
 * headers stays inside it; lib/fipc.map gives the exported ones their
 * version. */
#if defined(__GNUC__) || defined(__clang__)
#define FIPC_EXPORT __attribute__((visibility("default")))
#else
#define FIPC_EXPORT
#endif

/* The alignment of the opaque object types, in C and in C++ alike (the
 * layout of an object in shared memory must not depend on the language of
 * the program that maps it). */
#ifdef __cplusplus
#define FIPC_ALIGNAS(n) alignas(n)
#else
#define FIPC_ALIGNAS(n) _Alignas(n)
#endif

#define FIPC_FOREVER ((int64_t)-1)

/* Convenience conversions for timeout_ns arguments. */
#define FIPC_USEC(n) (1000 * (int64_t)(n))
#define FIPC_MSEC(n) (1000000 * (int64_t)(n))
#define FIPC_SEC(n)  (1000000000 * (int64_t)(n))

typedef struct fipc_arena fipc_arena;

/*
 * How a call that blocks waits, chosen per object (fipc_queue_set_wait_mode,
 * fipc_jqueue_set_wait_mode, fipc_sem_set_wait_mode,
 * fipc_event_set_wait_mode).  The choice lives in the object's shared
 * memory: it holds for every process that waits on it, from its next wait.
 *   FIPC_WAIT_ADAPTIVE  the default: re-check for a while before sleeping,
 *                       for as long as this thread has learned that its
 *                       partner takes to answer (2-50 us), and not at all
 *                       while the partner runs on this thread's CPU
 *   FIPC_WAIT_SPIN      never sleep: poll until ready or the timeout.  The
 *                       lowest latency, and the other side never makes a
 *                       system call to wake this one; a waiter keeps a CPU
 *                       busy all along, so use it only with a CPU to spare
 *                       per waiter
 *   FIPC_WAIT_SLEEP     sleep at once: no CPU burnt while waiting, and
 *                       every hand-off to a waiter costs a wake-up
 */
enum fipc_wait_mode {
    FIPC_WAIT_ADAPTIVE = 0,
    FIPC_WAIT_SPIN = 1,
    FIPC_WAIT_SLEEP = 2,
};

/* A message for any fipc return code (0, a negative errno, or a count).
 * Never NULL; the string is static. */
FIPC_EXPORT const char *fipc_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
