/*
 * clock.h - deadlines and the bounded spin that precedes every sleep
 * (internal).
 */
#ifndef FIPC_LIB_CLOCK_H
#define FIPC_LIB_CLOCK_H

#include <errno.h>
#include <time.h>

#include "atomic.h"

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

/* "Not available": -EAGAIN for a zero timeout, -ETIMEDOUT otherwise. */
static inline int fipc_unavailable(int64_t timeout_ns)
{
    return timeout_ns == 0 ? -EAGAIN : -ETIMEDOUT;
}

/* How long a blocked operation re-checks its condition before it sleeps
 * (with exponential backoff between checks, see fipc_spin).  A partner on
 * another CPU usually answers within that time, far sooner than a futex
 * sleep and wake-up (5-50 us here); a partner that was preempted, or
 * shares this CPU, costs us at most this much.  Bounded by time, not by
 * iterations: one pause instruction costs from a few to about 50 ns
 * depending on the CPU.  Measured here (semaphore ping-pong round trip,
 * raw futex = 1.0): 1 us: 2x faster unpinned, 0.6x on one shared CPU;
 * 3 us: 20x faster unpinned, 0.43x on one CPU. */
#ifndef FIPC_SPIN_NS
#define FIPC_SPIN_NS 2000
#endif

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

#endif
