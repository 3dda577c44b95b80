/*
 * event.c - Python's Event.
 *
 *   word bits   name           meaning
 *   0           EVENT_SET      the flag
 *   1..30       generation     advanced by every set that finds the flag clear
 *   31          EVENT_OUTSIDE  someone outside fipc (io_uring, wait_any)
 *                              waits on the word; only while the flag is
 *                              clear: the set's CAS clears it and wakes
 *
 *   waiters     threads in the slow path of wait (asleep or about to be)
 *
 * A waiter returns 0 once the flag is set or the generation differs from
 * the one it first saw: a set followed at once by a clear still releases
 * everyone who was waiting, as Python's Event does.  No lost wake-up: the
 * waiter increments waiters, then reads word; set changes word, then reads
 * waiters; all seq_cst, so one side sees the other (as in sem.c), and the
 * kernel re-checks word before the waiter sleeps.
 */
#include <fipc/event.h>

#include "futex.h"
#include "waitable.h"

#define EVENT_SET     1u
#define EVENT_GEN     2u /* one generation step */
#define EVENT_GEN_MSK 0x7ffffffeu
#define EVENT_OUTSIDE 0x80000000u

struct event_impl {
    uint32_t word;
    uint32_t waiters;
};
static_assert(sizeof(struct event_impl) == sizeof(fipc_event), "event layout");

static inline struct event_impl *impl(const fipc_event *e)
{
    return (struct event_impl *)e;
}

int fipc_event_init(fipc_event *e)
{
    if (!e)
        return -EINVAL;
    *impl(e) = (struct event_impl){0};
    return 0;
}

int fipc_event_set(fipc_event *e)
{
    if (!e)
        return -EINVAL;
    struct event_impl *m = impl(e);
    uint32_t w = load_relaxed(&m->word);
    do {
        if (w & EVENT_SET) {
            /* Nobody sleeps on a set flag, but a waiter that reads it from
             * here on must still see what the caller wrote before set: a
             * release read-modify-write that changes nothing. */
            fetch_or_release(&m->word, 0);
            return 0;
        }
        /* seq_cst: publishes what was written before set (waiters load the
         * word with acquire) and orders this change before the waiters
         * load below. */
    } while (!cas_seqcst(&m->word, &w, ((w + EVENT_GEN) & EVENT_GEN_MSK) | EVENT_SET));
    /* A waiter outside fipc set EVENT_OUTSIDE in the word this CAS
     * replaced, and the CAS cleared it: no load needed to see it. */
    if ((w & EVENT_OUTSIDE) || (load_seqcst(&m->waiters) & WAITERS_COUNT))
        futex_wake(&m->word, FUTEX_WAKE_ALL);
    return 0;
}

int fipc_event_clear(fipc_event *e)
{
    if (!e)
        return -EINVAL;
    /* Nobody waits for a clear; relaxed is enough, and a clear flag needs
     * no read-modify-write at all. */
    if (load_relaxed(&impl(e)->word) & EVENT_SET)
        fetch_and_relaxed(&impl(e)->word, ~EVENT_SET);
    return 0;
}

int fipc_event_set_wait_mode(fipc_event *e, enum fipc_wait_mode mode)
{
    if (!e || !fipc_wait_mode_valid(mode))
        return -EINVAL;
    waiters_set_mode(&impl(e)->waiters, (uint32_t)mode);
    return 0;
}

bool fipc_event_is_set(const fipc_event *e)
{
    /* acquire pairs with the CAS in fipc_event_set. */
    return e && (load_acquire(&impl(e)->word) & EVENT_SET);
}

struct wait_ctx {
    struct event_impl *m;
    uint32_t first; /* the word when wait began */
};

/* Whether a set has released the waiter: the flag is up, or the generation
 * moved since the wait began. */
static inline bool released(uint32_t w, uint32_t first)
{
    return (w & EVENT_SET) || (w & EVENT_GEN_MSK) != (first & EVENT_GEN_MSK);
}

/* The counted wait's check.  seq_cst: the waiter's half of the handshake at
 * the top (the counted wait's registration comes first). */
static int set_or_sleep(void *arg, uint32_t *seen)
{
    struct wait_ctx *c = arg;
    uint32_t w = load_seqcst(&c->m->word);
    if (released(w, c->first))
        return 0;
    *seen = w;
    return -EAGAIN;
}

int fipc_event_wait(fipc_event *e, int64_t timeout_ns)
{
    if (!e)
        return -EINVAL;
    struct event_impl *m = impl(e);
    /* acquire pairs with the CAS in fipc_event_set. */
    uint32_t first = load_acquire(&m->word);
    if (FIPC_LIKELY(first & EVENT_SET))
        return 0;
    if (timeout_ns == 0)
        return -EAGAIN; /* never blocks, nor spins */
    /* The deadline is taken before the spin, which counts against it. */
    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    /* A set that is about to come from the other CPU costs less to spin
     * for than to sleep for. */
    struct fipc_spin spin;
    for (fipc_spin_begin_mode(&spin, waiters_mode(&m->waiters), deadline); fipc_spin(&spin);) {
        /* acquire pairs with the CAS in fipc_event_set. */
        if (released(load_acquire(&m->word), first))
            return 0;
    }

    /* Woken by fipc_event_set, which wakes all when waiters > 0. */
    struct wait_ctx c = {m, first};
    int r = futex_wait_counted(&m->word, &m->waiters, set_or_sleep, &c, deadline);
    fipc_spin_learn(&spin, -1);
    return r;
}

/* ---- waiting from outside fipc (waitable.h) ------------------------------ */

int fipc__event_arm(fipc_event *e, unsigned what, struct fipc__arm *w)
{
    if (!e)
        return -EINVAL;
    struct event_impl *m = impl(e);
    /* relaxed: the CAS below reads the word again (and a peek is only a
     * snapshot; the wait that follows it loads with acquire). */
    uint32_t v = load_relaxed(&m->word);
    if (what & FIPC__ARM_PEEK)
        return (v & EVENT_SET) != 0;
    do {
        if (v & EVENT_SET)
            return 1;
        /* seq_cst, as set's CAS: the flag is in the futex word itself, so
         * the set that replaces this value sees EVENT_OUTSIDE and wakes,
         * and a wait on it finds any later value changed. */
    } while (!cas_seqcst(&m->word, &v, v | EVENT_OUTSIDE));
    w->word = &m->word;
    w->value = v | EVENT_OUTSIDE;
    return 0;
}
