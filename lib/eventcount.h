/*
 * eventcount.h - sleeping until another process changes shared state
 * (internal).
 *
 * Model: docs/models/eventcount.pml
 *
 * Overview
 *   An event count lets a process that found a data structure unusable (a
 *   ring full or empty) sleep until another process changes it, while the
 *   processes that change it pay nothing when nobody sleeps: a compiler
 *   barrier and one load of a line that changes only when someone goes to
 *   sleep.  The
 *   queue has two, not_empty and not_full.
 *
 * API
 *   ec_notify(ec)         after changing the structure: wake the sleepers,
 *                         if any registered
 *   ec_notify_fenced(ec)  the same, for a caller that has just issued
 *                         fence_light() after its change
 *   ec_wake_all(ec)       wake everyone, registered or not (close)
 *   ec_block(ec, try, ctx, timeout_ns)
 *                         run try(ctx, patient) until it answers other than
 *                         -EAGAIN ("not now") or -EINPROGRESS ("not now, and
 *                         look again soon": something nobody will notify
 *                         about is in the way), spinning briefly, then
 *                         sleeping on ec between tries (at most
 *                         EC_RECHECK_NS after -EINPROGRESS); patient is
 *                         false while spinning, true after; -ETIMEDOUT when
 *                         the time is up
 *
 * Implementation
 *   word      written by               meaning
 *   epoch     notifiers (+1 per wake)  the futex word sleepers wait on
 *   sleepers  sleepers set it to 1,    someone may be asleep or about to be
 *             the notifier that wakes
 *             them clears it
 *
 *   sleeper                                  notifier (after its change)
 *   e = epoch              (relaxed)         fence_light             F2
 *   sleepers = 1           (release)  R-E    if sleepers != 0 and
 *   fence_heavy                       F1        exchange(sleepers, 0)   A-E
 *   try again; done unless -EAGAIN              != 0:
 *   futex_wait(epoch, e)                        epoch += 1; futex_wake(all)
 *
 *   F1 <-> F2   an asymmetric pair of fences (fence.h), a Dekker
 *               handshake: either the notifier's load sees the
 *               registration, or the sleeper's retry sees the change.  The
 *               notifier's fence is free in a registered process; the
 *               sleeper's is a membarrier system call, paid once per
 *               sleep.  When the notifier wins, futex_wait(epoch, e) finds
 *               the advanced epoch and returns, or sleeps and is woken.
 *   R-E <-> A-E the release store of the flag orders the sleeper's read of
 *               the epoch before it; the notifier's exchange that reads the
 *               flag (acquire) orders its increment after that read.  So a
 *               sleeper whose flag a notifier cleared always waits on an
 *               epoch older than the one the notifier makes, and never
 *               sleeps unregistered.
 *
 *   sleepers is a flag that the notifier clears, not a count that sleepers
 *   decrement once they run again: with a count, every operation of the
 *   other side would enter the kernel until the woken sleepers got a CPU,
 *   and that can keep both sides in a slow lock-step.  A woken sleeper that
 *   still cannot proceed registers again.  A sleeper that dies leaves the
 *   flag set: its notifier makes one needless wake, then the flag is clear.
 */
#ifndef FIPC_LIB_EVENTCOUNT_H
#define FIPC_LIB_EVENTCOUNT_H

#include "fence.h"
#include "futex.h"

struct eventcount {
    uint32_t epoch;
    uint32_t sleepers;
    uint32_t waker_cpu; /* the CPU of the last process that woke sleepers (clock.h) */
    uint32_t mode;      /* how its waiters wait: enum fipc_wait_mode (clock.h) */
};

/* Clear the flag and wake the sleepers, if the flag is still set: the first
 * notifier to see it set wakes them all, later ones find it clear, so a side
 * that is asleep costs the other side one system call, not one per
 * operation until the sleepers have run.  Out of line: it runs only when
 * someone sleeps. */
void fipc__ec_wake(struct eventcount *ec);

/* Advance the epoch and wake every sleeper, registered or not. */
void fipc__ec_wake_all(struct eventcount *ec);

static inline void ec_notify_fenced(struct eventcount *ec)
{
    /* relaxed: the caller's fence F2 orders its change before this load. */
    if (FIPC_UNLIKELY(load_relaxed(&ec->sleepers) != 0))
        fipc__ec_wake(ec);
}

static inline void ec_notify(struct eventcount *ec)
{
    fence_light(); /* F2 */
    ec_notify_fenced(ec);
}

static inline void ec_wake_all(struct eventcount *ec)
{
    fipc__ec_wake_all(ec);
}

/* Register as a sleeper; returns the epoch to sleep on. */
static inline uint32_t ec_register(struct eventcount *ec)
{
    /* relaxed: R-E below keeps this read before the registration. */
    uint32_t epoch = load_relaxed(&ec->epoch);
    store_release(&ec->sleepers, 1); /* R-E */
    fence_heavy();                   /* F1 */
    return epoch;
}

typedef int (*ec_try_fn)(void *ctx, bool patient);

#define EC_RECHECK_NS ((int64_t)2000000) /* 2 ms */

/* FIPC_WAIT_SPIN: how long a waiter polls between patient tries. */
#define EC_POLL_ROUND_NS ((int64_t)1000000) /* 1 ms */

/* ec_block for an object in FIPC_WAIT_SPIN: poll try until it answers or
 * the deadline passes, never registering (so the other side never makes
 * a system call for this waiter), with a patient try every
 * EC_POLL_ROUND_NS, where a sleeper would have one after each sleep. */
int fipc__ec_poll(ec_try_fn try, void *ctx, fipc_deadline deadline);

static inline int ec_block(struct eventcount *ec, ec_try_fn try, void *ctx, int64_t timeout_ns)
{
    int r;
    if (timeout_ns == 0)
        return -EAGAIN; /* never blocks, nor spins */
    /* The deadline is taken before the spin, which counts against it. */
    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    /* relaxed: the object's choice, which any value a peer wrote leaves a
     * choice (clock.h); it orders nothing. */
    uint32_t mode = load_relaxed(&ec->mode);
    if (FIPC_UNLIKELY(mode == FIPC_WAIT_SPIN))
        return fipc__ec_poll(try, ctx, deadline);
    struct fipc_spin spin;
    for (fipc_spin_begin_mode(&spin, mode, deadline); fipc_spin(&spin);)
        if ((r = try(ctx, false)) != -EAGAIN)
            return r;

    for (bool slept = false;; slept = true) {
        uint32_t epoch = ec_register(ec);
        /* A registration left behind (we leave without sleeping, or time
         * out) costs the other side one needless wake, then it is gone. */
        r = try(ctx, true);
        if (r != -EAGAIN && r != -EINPROGRESS) {
            /* relaxed: a hint for the spin budget only. */
            if (slept)
                fipc_spin_learn(&spin, (int)load_relaxed(&ec->waker_cpu));
            return r;
        }
        fipc_deadline until = deadline;
        if (r == -EINPROGRESS) {
            int64_t soon = fipc_now_ns() + EC_RECHECK_NS;
            if (soon < until)
                until = soon;
        }
        /* Woken by the other side's ec_notify after its change, or by
         * ec_wake_all; after -EINPROGRESS also by the time. */
        if (futex_wait_until(&ec->epoch, epoch, until) == -ETIMEDOUT && until == deadline) {
            r = try(ctx, true);
            fipc_spin_learn(&spin, -1);
            return r == -EAGAIN || r == -EINPROGRESS ? -ETIMEDOUT : r;
        }
    }
}

#endif
