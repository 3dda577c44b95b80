/*
 * clock.h - deadlines and the bounded spin that precedes every sleep
 * (internal).
 */
#ifndef FIPC_LIB_CLOCK_H
#define FIPC_LIB_CLOCK_H

#include <errno.h>
#include <time.h>

#include <fipc/common.h>

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

/*
 * Spinning before sleeping.  A blocked operation re-checks its condition
 * for a while before it sleeps: a partner on another CPU usually answers
 * sooner than a futex sleep and wake-up takes (5-50 us here), and a waiter
 * that sleeps where a partner was about to answer turns every hand-off
 * into a sleep and a wake-up.  How long is each thread's spin budget,
 * which it learns from the waits that spun in vain and then slept (spin.c,
 * fipc__spin_learn):
 *
 *   - answered within FIPC_SPIN_MAX_NS of its start: spinning that long
 *     would have paid, so the budget grows to cover it, with half again as
 *     margin;
 *   - answered later than FIPC_SPIN_IDLE_NS (the partner was idle): the
 *     budget halves, down to FIPC_SPIN_MIN_NS, so an idle waiter burns
 *     little CPU; in between it stays (the partner answered, but the
 *     wake-up was slow, which is when sleeping costs most);
 *   - woken by a process on this thread's CPU (the objects that have room
 *     record the waker's CPU), or in vain FIPC_SPIN_MISSES times in a row:
 *     the partner cannot run while this thread spins, so the next
 *     FIPC_SPIN_OFF_WAITS waits sleep at once, then one spins
 *     FIPC_SPIN_MIN_NS to look again.
 *
 * Between checks a spinner pauses once, and it reads the clock every 8
 * checks (about 250 ns).  A pause takes 25 ns on an AMD EPYC (about 40 ns
 * on recent Intel cores), half a cache-line transfer between CPUs: a
 * change is noticed within a transfer of its arrival.  A back-off to 4
 * pauses (100 ns between checks) made a two-CPU round trip 200 ns against
 * the cache line's 100; with one pause it is 130-150.  The waiter reads a
 * line that only its one partner writes, so checking often costs the
 * partner no more than the one transfer its store needs anyway.
 *
 * The lock spins differently (fipc_spin_fixed): for FIPC_SPIN_LOCK_NS,
 * backing off to 16 pauses (the clock read every 4 checks), and learns
 * nothing.  Its waiters compete for the word rather than wait for one
 * partner, and a budget learned from their sleeps shrinks exactly when the
 * lock is most contended.
 */
#ifndef FIPC_SPIN_NS
#define FIPC_SPIN_NS 4000 /* the budget a thread starts with */
#endif
#define FIPC_SPIN_MIN_NS    ((int64_t)2000)
#define FIPC_SPIN_MAX_NS    ((int64_t)50000)
#define FIPC_SPIN_IDLE_NS   ((int64_t)1000000)
#define FIPC_SPIN_OFF_WAITS 256
#define FIPC_SPIN_MISSES    3
#define FIPC_SPIN_LOCK_NS   ((int64_t)2000)

struct fipc__spin_state {
    int64_t budget_ns; /* 0: sleep at once */
    uint32_t off;      /* waits left that sleep at once */
    uint16_t misses;   /* spins in vain in a row */
    bool spinning;     /* a spin began and no sleep has followed yet */
    bool ready;        /* set up in this thread */
};
/* This thread's state (spin.c).  Out of line: it runs only on the way to a
 * sleep, and keeps the thread-local variable in one file. */
struct fipc__spin_state *fipc__spin_self(void);

/* The budget when spinning is off or the thread is new. */
int64_t fipc__spin_budget(struct fipc__spin_state *t);

/* One wait: `struct fipc_spin s; for (fipc_spin_begin(&s); fipc_spin(&s);)
 * if (ready()) ...;` then, if it went on to sleep, fipc_spin_learn(). */
struct fipc_spin {
    int64_t start;
    int64_t end;
    uint32_t n;
    uint32_t pauses; /* one less than the pauses before the next check */
    uint32_t cap;    /* the most pauses, less one */
    bool learn;      /* the wait adjusts the budget (fipc_spin_learn) */
};

/* A spin from start to end, backing off to cap + 1 pauses. */
static inline void fipc__spin_init(struct fipc_spin *s, int64_t start, int64_t end, uint32_t cap,
                                   bool learn)
{
    s->start = start;
    s->end = end;
    s->n = 0;
    s->pauses = 0;
    s->cap = cap;
    s->learn = learn;
}

static inline void fipc_spin_begin(struct fipc_spin *s)
{
    struct fipc__spin_state *t = fipc__spin_self();
    int64_t budget = t->budget_ns;
    if (FIPC_UNLIKELY(budget == 0))
        budget = fipc__spin_budget(t);
    /* The last spin ended without a sleep: it won. */
    if (t->spinning)
        t->misses = 0;
    t->spinning = budget > 0;
    /* No spin, no clock: fipc_spin_learn knows a start of 0 as "not
     * measured". */
    int64_t now = budget > 0 ? fipc_now_ns() : 0;
    fipc__spin_init(s, now, now + budget, 0, true);
}

/* A spin of ns that learns nothing (the lock's). */
static inline void fipc_spin_fixed(struct fipc_spin *s, int64_t ns)
{
    int64_t now = fipc_now_ns();
    fipc__spin_init(s, now, now + ns, 15, false);
}

/*
 * The wait modes (fipc/common.h) are a word in the object, any value a
 * peer may have written: what is neither FIPC_WAIT_SPIN nor
 * FIPC_WAIT_SLEEP is FIPC_WAIT_ADAPTIVE.  One wait's spin in mode: the
 * learned budget; none (FIPC_WAIT_SLEEP); or until the deadline, checking
 * as often as the learned spin does (FIPC_WAIT_SPIN: a caller that must
 * look at something else now and then, as a queue's repair of dead claims,
 * spins in rounds with fipc_spin_round).  Only the learned spin learns.
 */
static inline void fipc_spin_begin_mode(struct fipc_spin *s, uint32_t mode, fipc_deadline deadline)
{
    if (FIPC_LIKELY(mode != FIPC_WAIT_SPIN && mode != FIPC_WAIT_SLEEP)) {
        fipc_spin_begin(s);
        return;
    }
    int64_t now = mode == FIPC_WAIT_SPIN ? fipc_now_ns() : 0;
    fipc__spin_init(s, now, mode == FIPC_WAIT_SPIN ? deadline : 0, 0, false);
}

/* Whether a setter's argument names a mode. */
static inline bool fipc_wait_mode_valid(enum fipc_wait_mode mode)
{
    return mode == FIPC_WAIT_ADAPTIVE || mode == FIPC_WAIT_SPIN || mode == FIPC_WAIT_SLEEP;
}

/* A round of a FIPC_WAIT_SPIN wait: until ns from now or the deadline. */
static inline void fipc_spin_round(struct fipc_spin *s, int64_t ns, fipc_deadline deadline)
{
    fipc_spin_begin_mode(s, FIPC_WAIT_SPIN, deadline);
    if (deadline - s->start > ns)
        s->end = s->start + ns;
}

/* Whether to check once more: false once the budget is spent. */
static inline bool fipc_spin(struct fipc_spin *s)
{
    if (s->end <= s->start)
        return false;
    for (uint32_t i = 0; i <= s->pauses; i++)
        cpu_relax();
    if (s->pauses < s->cap)
        s->pauses = 2 * s->pauses + 1;
    /* The clock every 8 checks, or every 4 for a spin that backs off. */
    if ((++s->n & (s->cap ? 3 : 7)) != 0)
        return true;
    return fipc_now_ns() < s->end;
}

/* A wait that spun in vain and then slept has ended (got what it waited
 * for, or timed out): adjust the budget.  waker_cpu: the CPU of the
 * process that woke it, if the object records one, else -1. */
void fipc_spin_learn(const struct fipc_spin *s, int waker_cpu);

/* A spin before a wait that this thread will not see end (an io_uring or
 * wait_any arm, whose wake the event loop reaps) found nothing: after
 * FIPC_SPIN_MISSES such spins in a row, the next FIPC_SPIN_OFF_WAITS
 * spins are off, as when the answers come only once the thread sleeps.
 * A spin that wins clears the count (fipc_spin_begin). */
void fipc_spin_vain(const struct fipc_spin *s);

#endif
