/*
 * eventcount.c - the waking half of the event count (eventcount.h).
 */
#include <sched.h>

#include "eventcount.h"

/* Tell the sleepers where their partner runs (clock.h, the spin budget).
 * relaxed: a hint, read after the wake. */
static inline void note_waker(struct eventcount *ec)
{
    int cpu = sched_getcpu();
    if (cpu >= 0)
        store_relaxed(&ec->waker_cpu, (uint32_t)cpu);
}

void fipc__ec_wake(struct eventcount *ec)
{
    /* A-E: acquire pairs with the sleeper's release of the flag (R-E): the
     * increment below comes after the epoch that sleeper read.  The
     * exchange also makes exactly one notifier take each registration. */
    if (exchange_acquire(&ec->sleepers, 0)) {
        /* relaxed: the caller's fence F2 precedes it, so a sleeper that
         * reads the new epoch and then passes its fence F1 synchronizes
         * with F2 and its retry sees the change. */
        note_waker(ec);
        fetch_add_relaxed(&ec->epoch, 1);
        futex_wake(&ec->epoch, FUTEX_WAKE_ALL);
    }
}

void fipc__ec_switch(struct eventcount *ec, uint32_t w, uint32_t to)
{
    uint32_t mid = ((w & ~EC_STATE) + EC_GEN) | EC_SWITCHING;
    /* seq_cst: the state leaves its old value before the membarrier
     * below, which the arguments of eventcount.h (Fence modes) need. */
    if (!cas_seqcst(&ec->fences, &w, mid))
        return; /* another process moves it */
    fence_heavy();
    uint32_t fin = ((mid & ~EC_STATE) + EC_GEN) | to;
    /* release pairs with the acquire loads of fences in ec_register and
     * ec_notify_fenced.  Fails if another process moved it meanwhile:
     * its own membarrier covers its own move. */
    cas_seqcst(&ec->fences, &mid, fin);
}

/* This thread's notifications in a row that found nobody asleep, in a
 * fenced state (on any event count: a hint only). */
static _Thread_local uint32_t quiet __attribute__((tls_model("initial-exec")));

void fipc__ec_notify_slow(struct eventcount *ec)
{
    /* acquire: as in ec_notify_fenced, which read it first. */
    uint32_t w = load_acquire(&ec->fences);
    if ((w & EC_STATE) == EC_LIGHT) {
        fipc__ec_wake(ec); /* the flag was set */
        return;
    }
    /* The flag ec_notify_fenced read came before this fence: read again. */
    fence_seqcst(); /* F2, full */
    /* relaxed: ordered by the fence above. */
    if (load_relaxed(&ec->sleepers) != 0) {
        quiet = 0;
        fipc__ec_wake(ec);
    } else if (++quiet >= EC_QUIET_NOTIFIES) {
        quiet = 0;
        fipc__ec_switch(ec, w, EC_LIGHT);
    }
}

int fipc__ec_notify_slow_then(struct eventcount *ec, int r)
{
    fipc__ec_notify_slow(ec);
    return r;
}

void fipc__ec_wake_all(struct eventcount *ec)
{
    /* release: no fence precedes it here, so this increment itself carries
     * the caller's change (the store of closed) to a sleeper that reads the
     * new epoch and then passes its fence F1. */
    fetch_add_release(&ec->epoch, 1);
    futex_wake(&ec->epoch, FUTEX_WAKE_ALL);
}

int fipc__ec_poll(ec_try_fn try, void *ctx, fipc_deadline deadline)
{
    for (;;) {
        struct fipc_spin spin;
        int r;
        for (fipc_spin_round(&spin, EC_POLL_ROUND_NS, deadline); fipc_spin(&spin);)
            if ((r = try(ctx, false)) != -EAGAIN)
                return r;
        /* Patient: a queue repairs a dead claim in its way here. */
        r = try(ctx, true);
        if (r != -EAGAIN && r != -EINPROGRESS)
            return r;
        if (fipc_deadline_passed(deadline))
            return -ETIMEDOUT;
    }
}
