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
 * Fence modes
 *   F1's membarrier costs a sleeper that sleeps at every hand-off (a
 *   partner on its own CPU, FIPC_WAIT_SLEEP) more than full fences would
 *   cost its notifiers, so each event count has a state in fences:
 *
 *   state         notifier's F2           sleeper's F1
 *   EC_LIGHT      fence_light             full fence, load fences,
 *                                         membarrier
 *   EC_SWITCHING  full fence              the same
 *   EC_FENCED     full fence              full fence, load fences
 *
 *   A sleeper that sleeps without spinning moves LIGHT -> FENCED; a
 *   notifier in a fenced state that found nobody asleep EC_QUIET_NOTIFIES
 *   times in a row moves back.  Each move is CAS to SWITCHING (a new
 *   generation), a membarrier, CAS to the new state, and is right because
 *   the membarrier comes after the state left its old value:
 *   - entering: a notifier that read LIGHT made its change before that
 *     load, so before the barrier the membarrier made it pass; the change
 *     is visible once the membarrier returns, before FENCED is stored,
 *     and a sleeper that reads FENCED (acquire) sees it.
 *   - leaving: a sleeper that read FENCED stored its flag and fenced
 *     before that load, so before its barrier point; the flag is visible
 *     once the membarrier returns, before LIGHT is stored, and a notifier
 *     that reads LIGHT (acquire, then the flag) sees it.
 *   A process that dies in the middle leaves SWITCHING, where both sides
 *   pay and nothing is lost; the next quiet notifier moves it to LIGHT.
 *   Values a peer wrote: anything but LIGHT makes notifiers fence, and
 *   anything but FENCED makes sleepers use membarrier.
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
    uint32_t fences;    /* which side pays for F1/F2: EC_LIGHT, ... (Fence modes) */
};

/* fences: a state in bits 0..1, a generation above (so that a switch that
 * raced with two others cannot complete on a state it did not start). */
#define EC_LIGHT     0u /* notifiers: light fences; sleepers: membarrier */
#define EC_SWITCHING 1u /* notifiers: full fences; sleepers: membarrier */
#define EC_FENCED    2u /* notifiers: full fences; sleepers: full fences */
#define EC_STATE     3u
#define EC_GEN       4u

/* A notifier in a fenced state goes back to EC_LIGHT after this many
 * notifications in a row that found nobody asleep. */
#define EC_QUIET_NOTIFIES 256

/* Move fences from the word w to state `to` through EC_SWITCHING and a
 * membarrier, unless another process moves it first (eventcount.c). */
void fipc__ec_switch(struct eventcount *ec, uint32_t w, uint32_t to);

/* ec_notify_fenced found a fenced state or the flag set: in a fenced
 * state, a full fence, then the flag again; else the wake. */
void fipc__ec_notify_slow(struct eventcount *ec);

/* Clear the flag and wake the sleepers, if the flag is still set: the first
 * notifier to see it set wakes them all, later ones find it clear, so a side
 * that is asleep costs the other side one system call, not one per
 * operation until the sleepers have run.  Out of line: it runs only when
 * someone sleeps. */
void fipc__ec_wake(struct eventcount *ec);

/* Advance the epoch and wake every sleeper, registered or not. */
void fipc__ec_wake_all(struct eventcount *ec);

/* Whether a notifier past its fence F2 must take the slow path. */
static FIPC_ALWAYS_INLINE bool ec_notify_due(struct eventcount *ec)
{
    /* acquire: orders the load of the flag after it (the leave's argument
     * under Fence modes); on the line of the flag, so it costs no miss.
     * relaxed: the caller's fence F2 orders its change before the load of
     * the flag.  One test for both: a fenced state or a sleeper. */
    uint32_t state = load_acquire(&ec->fences) & EC_STATE;
    return FIPC_UNLIKELY((state | load_relaxed(&ec->sleepers)) != 0);
}

static inline void ec_notify_fenced(struct eventcount *ec)
{
    if (ec_notify_due(ec))
        fipc__ec_notify_slow(ec);
}

static inline void ec_notify(struct eventcount *ec)
{
    fence_light(); /* F2 */
    ec_notify_fenced(ec);
}

/* fipc__ec_notify_slow, then r: for ec_notify_fenced_then. */
int fipc__ec_notify_slow_then(struct eventcount *ec, int r);

/* ec_notify_fenced (ec_notify), then return r: the slow path is the last
 * call, so a fast path that ends with it jumps there and keeps nothing
 * for after it (no callee-saved registers, no frame). */
static FIPC_ALWAYS_INLINE int ec_notify_fenced_then(struct eventcount *ec, int r)
{
    return ec_notify_due(ec) ? fipc__ec_notify_slow_then(ec, r) : r;
}

static FIPC_ALWAYS_INLINE int ec_notify_then(struct eventcount *ec, int r)
{
    fence_light(); /* F2 */
    return ec_notify_fenced_then(ec, r);
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
    /* The flag before the load of fences (the leave's argument). */
    fence_seqcst();
    /* acquire pairs with the release CAS that made EC_FENCED: what the
     * switch's membarrier made visible is visible here. */
    if ((load_acquire(&ec->fences) & EC_STATE) != EC_FENCED)
        fence_heavy(); /* F1 */
    return epoch;
}

/* Make the notifiers pay the fences: move EC_LIGHT to EC_FENCED (Fence
 * modes), for a sleeper that would otherwise pay a membarrier per sleep
 * more often than its notifiers would pay full fences. */
static inline void ec_fence_sleepers(struct eventcount *ec)
{
    /* relaxed: a hint; the switch decides by CAS. */
    uint32_t w = load_relaxed(&ec->fences);
    if ((w & EC_STATE) == EC_LIGHT)
        fipc__ec_switch(ec, w, EC_FENCED);
}

/* A wait's spin is over and it is about to register.  One that did not
 * spin at all (the partner shares this CPU, or FIPC_WAIT_SLEEP) sleeps at
 * every hand-off, so the notifiers' full fences cost less than a
 * membarrier per sleep. */
static inline void ec_spun(struct eventcount *ec, const struct fipc_spin *spin)
{
    if (spin->end <= spin->start)
        ec_fence_sleepers(ec);
}

/* A sleep on epoch is over.  If no notifier ended it (the futex re-check
 * did), the other side is idle: its full fences cost nothing now, while
 * the membarrier of each re-check's registration would cost this sleeper
 * one system call per FUTEX_RECHECK_NS for as long as it waits.  relaxed:
 * only whether the epoch moved; the switch decides by CAS. */
static inline void ec_slept(struct eventcount *ec, uint32_t epoch)
{
    if (load_relaxed(&ec->epoch) == epoch)
        ec_fence_sleepers(ec);
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
    ec_spun(ec, &spin);

    for (bool slept = false;; slept = true) {
        /* Woken: the notifier that woke this thread cleared its flag, so a
         * try before registering again leaves none behind when it
         * succeeds (a flag left behind costs the other side one needless
         * wake). */
        if (slept && (r = try(ctx, true)) != -EAGAIN && r != -EINPROGRESS) {
            /* relaxed: a hint for the spin budget only. */
            fipc_spin_learn(&spin, (int)load_relaxed(&ec->waker_cpu));
            return r;
        }
        uint32_t epoch = ec_register(ec);
        /* A registration left behind here (we leave without sleeping, or
         * time out) costs the other side one needless wake, then it is
         * gone. */
        r = try(ctx, true);
        if (r != -EAGAIN && r != -EINPROGRESS) {
            /* relaxed: as above. */
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
        ec_slept(ec, epoch);
    }
}

#endif
