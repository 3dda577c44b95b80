/*
 * futex.h - the one place fipc talks to the futex system call (internal).
 *
 * Every blocking primitive waits through futex_wait_until(), which takes an
 * absolute CLOCK_MONOTONIC deadline and turns every kernel answer into one
 * of two results:
 *   0           re-check your condition: woken, the word already differed,
 *               a signal arrived, or a spurious wake-up
 *   -ETIMEDOUT  the deadline has passed
 * Because the deadline is absolute, a wait interrupted by a signal resumes
 * with exactly the time that remains.
 *
 * No sleep lasts longer than FUTEX_RECHECK_NS: then the caller re-checks
 * its condition as after any wake-up.  A process that dies between changing
 * shared state and waking the sleepers (a window of a few instructions in
 * every release, set and notify) therefore delays them by at most that
 * long instead of stranding them.  An idle sleeper pays one wake-up per
 * period.
 *
 * Futexes here are never FUTEX_PRIVATE: fipc objects live in memfd pages
 * mapped by several processes, possibly at different addresses, and only a
 * shared futex is keyed by (inode, page offset) so that a wake through one
 * mapping reaches a sleeper in another.
 */
#ifndef FIPC_LIB_FUTEX_H
#define FIPC_LIB_FUTEX_H

#include <errno.h>
#include <stdbool.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* A deadline: absolute CLOCK_MONOTONIC nanoseconds, or DEADLINE_NEVER. */
typedef int64_t fipc_deadline;
#define DEADLINE_NEVER INT64_MAX

static inline int64_t fipc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The deadline for a relative timeout_ns (FIPC_FOREVER or any negative
 * value: never; sums that would overflow: never). */
static inline fipc_deadline fipc_deadline_in(int64_t timeout_ns)
{
    if (timeout_ns < 0)
        return DEADLINE_NEVER;
    int64_t now = fipc_now_ns();
    if (timeout_ns > DEADLINE_NEVER - now)
        return DEADLINE_NEVER;
    return now + timeout_ns;
}

static inline bool fipc_deadline_passed(fipc_deadline d)
{
    return d != DEADLINE_NEVER && fipc_now_ns() >= d;
}

/* A bounded spin: `struct fipc_spin s = {0}; while (!ready()) if
 * (!fipc_spin(&s)) break;` re-checks for about FIPC_SPIN_NS, pausing twice
 * as long between checks each time (up to 16 pauses), so that a spinner
 * does not keep pulling the cache line away from the process that is about
 * to change it. */
struct fipc_spin {
    int64_t end;
    unsigned pauses;
};

static inline bool fipc_spin(struct fipc_spin *s)
{
    for (unsigned i = 0; i <= s->pauses; i++)
        cpu_relax();
    if (s->pauses < 15)
        s->pauses = 2 * s->pauses + 1;
    int64_t now = fipc_now_ns();
    if (s->end == 0)
        s->end = now + FIPC_SPIN_NS;
    return now < s->end;
}

#define FUTEX_RECHECK_NS ((int64_t)1000000000)

/* Sleep while *word == expected, until woken or the deadline passes. */
static inline int futex_wait_until(const uint32_t *word, uint32_t expected, fipc_deadline d)
{
    fipc_deadline until = fipc_now_ns() + FUTEX_RECHECK_NS;
    bool capped = until < d;
    if (capped)
        d = until;
    struct timespec ts = {.tv_sec = d / 1000000000, .tv_nsec = d % 1000000000};
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC timeout (plain
     * FUTEX_WAIT would take a relative one). */
    long r = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, &ts, NULL,
                     FUTEX_BITSET_MATCH_ANY);
    if (r == -1 && errno == ETIMEDOUT && !capped)
        return -ETIMEDOUT;
    /* 0, EAGAIN (the word differed), EINTR and the end of a capped sleep
     * all mean: look again. */
    return 0;
}

/* Wake up to n sleepers on word; returns how many woke. */
static inline int futex_wake(const uint32_t *word, int n)
{
    long r = syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
    return r < 0 ? 0 : (int)r;
}

#define FUTEX_WAKE_ALL INT_MAX

#endif
