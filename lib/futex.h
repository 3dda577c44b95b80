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
 * every release, set and notify), or a waiter woken to take a unit that
 * dies before it does, therefore delays them by at most that long instead
 * of stranding them.  An idle sleeper pays one wake-up per
 * period.
 *
 * Futexes here are never FUTEX_PRIVATE: fipc objects live in memfd pages
 * mapped by several processes, possibly at different addresses, and only a
 * shared futex is keyed by (inode, page offset) so that a wake through one
 * mapping reaches a sleeper in another.
 */
#ifndef FIPC_LIB_FUTEX_H
#define FIPC_LIB_FUTEX_H

#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clock.h"

/* 80 ms: a death between a change and its wake (or of a waiter woken to
 * act on it, as a semaphore's) costs the sleepers at most that, within the
 * 100 ms fipc promises survivors; an idle sleeper pays 12.5 wake-ups a
 * second, 30-40 us of CPU each on a virtual machine (0.4-0.5 ms of CPU per
 * second of waiting, against about 1 ms at 50 ms). */
#ifdef FIPC_TEST_HOOKS
/* In the test library, a variable (spin.c), so that a test can raise it and
 * a lost wake-up, which the re-check would otherwise hide, hangs. */
extern int64_t fipc__futex_recheck_ns;
#define FUTEX_RECHECK_NS fipc__futex_recheck_ns
#else
#define FUTEX_RECHECK_NS ((int64_t)80000000)
#endif

/* Sleep while *word == expected, until woken or the deadline passes. */
static inline int futex_wait_until(const uint32_t *word, uint32_t expected, fipc_deadline d)
{
    if (d == DEADLINE_NEVER) {
        /* No deadline to compare with: the re-check alone bounds the
         * sleep, and plain FUTEX_WAIT takes it as a relative time, so no
         * clock is read. */
        struct timespec ts = {.tv_sec = FUTEX_RECHECK_NS / 1000000000,
                              .tv_nsec = FUTEX_RECHECK_NS % 1000000000};
        syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, NULL, 0);
        return 0; /* woken, the word differed, EINTR or the re-check: look again */
    }
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

/* A counted wait's count word holds, in its top two bits, the object's
 * wait mode (clock.h), which only the objects' setters change (by CAS,
 * keeping the count): wakers test the count under WAITERS_COUNT. */
#define WAITERS_COUNT      0x3fffffffu
#define WAITERS_MODE_SHIFT 30

static inline uint32_t waiters_mode(const uint32_t *waiters)
{
    /* relaxed: a choice, any value of which is one (clock.h). */
    return load_relaxed(waiters) >> WAITERS_MODE_SHIFT;
}

/* Set the mode bits of a counted wait's count word. */
static inline void waiters_set_mode(uint32_t *waiters, uint32_t mode)
{
    /* relaxed: the next wait reads it; it orders nothing. */
    uint32_t w = load_relaxed(waiters);
    while (!cas_relaxed(waiters, &w, (w & WAITERS_COUNT) | mode << WAITERS_MODE_SHIFT))
        ;
}

/*
 * The counted wait, the slow path of every primitive whose waker wakes
 * only when it finds a sleeper counted (musl's __wait):
 *
 *   waiter                              waker
 *   waiters += 1           (seq_cst)    change the state    (seq_cst)
 *   fence                  (seq_cst)    if waiters & WAITERS_COUNT (seq_cst)
 *   until check() is done:                  futex_wake(word)
 *       futex_wait(word, seen)
 *   waiters -= 1           (relaxed)
 *
 * Either the waker's load sees the count, or the waiter's check sees the
 * change; the kernel re-checks word == seen before the waiter sleeps.
 * check(ctx, &seen) returns -EAGAIN with seen set to the value of word it
 * based its answer on ("not yet: sleep while word is still seen"), or the
 * result to return.  A waiter that dies while counted leaves the count
 * high: its wakers then make one needless system call each, nothing
 * worse.  Inlined, with check a constant, each caller gets its own loop.
 */
static FIPC_ALWAYS_INLINE int futex_wait_counted(uint32_t *word, uint32_t *waiters,
                                                 int (*check)(void *ctx, uint32_t *seen), void *ctx,
                                                 fipc_deadline deadline)
{
    bool timed_out = false;
    int r;
    fetch_add_seqcst(waiters, 1);
    /* Pairs with the waker's seq_cst change-then-load: check() reads the
     * state after the count is visible. */
    fence_seqcst();
    for (;;) {
        uint32_t seen;
        if ((r = check(ctx, &seen)) != -EAGAIN)
            break;
        if (timed_out) {
            r = -ETIMEDOUT;
            break;
        }
        if (futex_wait_until(word, seen, deadline) == -ETIMEDOUT)
            timed_out = true;
    }
    /* relaxed: a stale count costs a waker a needless wake, never a lost one. */
    fetch_sub_relaxed(waiters, 1);
    return r;
}

#endif
