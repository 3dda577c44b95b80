/*
 * barrier.c - Python's Barrier, lock-free.
 *
 * One 64-bit word; its high half is the futex word everyone sleeps on:
 *
 *   bits     name     meaning
 *   0..15    count    parties that have arrived in the current round
 *   16       BROKEN   aborted or timed out: every wait gets -ECANCELED
 *                     until reset
 *   17..31   history  how the 15 rounds before the current one ended,
 *                     the last in bit 17: 1 released, 0 cancelled
 *   32..55   round    the current round's number (mod 2^24)
 *   56..63   cancels  rounds ended by a break or a reset (mod 2^8)
 *
 * A round ends in one CAS, which advances round, shifts its outcome into
 * history and empties count:
 *
 *   event                            ends the round as   then
 *   the last party arrives           released            a new round fills
 *   a waiter's time runs out, abort  cancelled           BROKEN
 *   reset with parties inside        cancelled           a new round fills
 *   reset of a broken barrier        (already ended)     BROKEN cleared: a
 *                                                        new round fills
 *
 * A new round starts the moment the last one ends: nobody waits for the
 * parties of a finished round to leave, so a party that dies inside (or is
 * slow to wake) holds nothing up.  Each waiter remembers the round it
 * arrived in and, once round has moved on, reads its own round's outcome
 * from history; if more than 15 rounds have ended since, cancels tells
 * whether any of them was cancelled: if none was, its round was released,
 * and otherwise its outcome is forgotten and it reports -ECANCELED.
 * All CASes are acq_rel: a round's end publishes what its parties wrote
 * before arriving to every party that observes it.
 */
#include <fipc/barrier.h>

#include "futex.h"

#define COUNT_MASK    0xffffu
#define BROKEN        ((uint64_t)1 << 16)
#define HISTORY_SHIFT 17
#define HISTORY_BITS  15u
#define HISTORY_MASK  ((1u << HISTORY_BITS) - 1)
#define ROUND_MASK    0xffffffu  /* of the high half */
#define CANCEL_ONE    (1u << 24) /* of the high half */
#define PARTIES_MAX   65535u

struct barrier_impl {
    uint64_t state;
    uint32_t parties;
    uint32_t spare;
};
static_assert(sizeof(struct barrier_impl) == sizeof(fipc_barrier), "barrier layout");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the futex half is the high word");
static_assert(PARTIES_MAX <= COUNT_MASK, "count holds every arrival but the last");

static inline struct barrier_impl *impl(const fipc_barrier *b)
{
    return (struct barrier_impl *)b;
}

static inline uint32_t count_of(uint64_t st)
{
    return (uint32_t)st & COUNT_MASK;
}

static inline uint32_t history_of(uint64_t st)
{
    return ((uint32_t)st >> HISTORY_SHIFT) & HISTORY_MASK;
}

static inline uint32_t futex_half(uint64_t st)
{
    return (uint32_t)(st >> 32);
}

static inline uint32_t round_of(uint64_t st)
{
    return futex_half(st) & ROUND_MASK;
}

static inline uint32_t cancels_of(uint64_t st)
{
    return futex_half(st) / CANCEL_ONE;
}

/* st with its round ended as released or cancelled: the next round, no
 * arrivals, not broken. */
static inline uint64_t end_round(uint64_t st, bool released)
{
    uint32_t hi = futex_half(st);
    hi = (hi & ~ROUND_MASK) | ((hi + 1) & ROUND_MASK);
    if (!released)
        hi += CANCEL_ONE;
    uint32_t history = ((history_of(st) << 1) | released) & HISTORY_MASK;
    return (uint64_t)hi << 32 | (uint64_t)history << HISTORY_SHIFT;
}

static inline uint32_t *futex_word(struct barrier_impl *m)
{
    return (uint32_t *)&m->state + 1;
}

static void wake_all(struct barrier_impl *m)
{
    futex_wake(futex_word(m), FUTEX_WAKE_ALL);
}

int fipc_barrier_init(fipc_barrier *b, uint32_t parties)
{
    if (!b || parties == 0 || parties > PARTIES_MAX)
        return -EINVAL;
    *impl(b) = (struct barrier_impl){.parties = parties};
    return 0;
}

enum outcome { FILLING, RELEASED, CANCELLED };

/* How the round of a party that arrived when the state was `arrived` has
 * ended, seen from st. */
static enum outcome outcome_of(uint64_t arrived, uint64_t st)
{
    uint32_t ended = (round_of(st) - round_of(arrived)) & ROUND_MASK;
    if (ended == 0)
        return FILLING;
    if (ended <= HISTORY_BITS)
        return (history_of(st) >> (ended - 1)) & 1 ? RELEASED : CANCELLED;
    return cancels_of(st) == cancels_of(arrived) ? RELEASED : CANCELLED;
}

/* Break the round of st (unless it is already broken): true if this call
 * did, false if st had changed (reloaded into *st). */
static bool break_round(struct barrier_impl *m, uint64_t *st)
{
    if (*st & BROKEN)
        return true;
    if (!cas_acqrel(&m->state, st, end_round(*st, false) | BROKEN))
        return false;
    wake_all(m);
    return true;
}

/* Sleep until the futex half differs from that of st or time runs out. */
static bool sleep_on(struct barrier_impl *m, uint64_t st, fipc_deadline deadline)
{
    /* Woken by the CAS that ends the round (the last arrival, a break or a
     * reset), which advances round in this half and then wakes all. */
    return futex_wait_until(futex_word(m), futex_half(st), deadline) == -ETIMEDOUT;
}

int fipc_barrier_wait(fipc_barrier *b, int64_t timeout_ns)
{
    if (!b)
        return -EINVAL;
    struct barrier_impl *m = impl(b);
    /* Relaxed: written only by init, before the barrier is shared. */
    uint32_t parties = load_relaxed(&m->parties);
    if (parties == 0 || parties > PARTIES_MAX)
        return -EINVAL; /* not initialised */
    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    uint64_t st = load_acquire(&m->state);
    uint64_t arrived;
    uint32_t index;

    /* Arrive: take the next index of the current round. */
    for (;;) {
        if (st & BROKEN)
            return -ECANCELED;
        index = count_of(st);
        if (index >= parties)
            return -EPROTO;
        if (index + 1 == parties) {
            /* The last arrival releases the round; with one party, nobody
             * sleeps. */
            if (cas_acqrel(&m->state, &st, end_round(st, true))) {
                if (parties > 1)
                    wake_all(m);
                return (int)index;
            }
            continue;
        }
        if (timeout_ns == 0) {
            /* Parties are missing and we may not wait: break at once. */
            if (break_round(m, &st))
                return -ECANCELED;
            continue;
        }
        arrived = st;
        if (cas_acqrel(&m->state, &st, st + 1))
            break;
    }

    /* Inside: wait for our round to end, one way or another. */
    bool timed_out = false;
    for (;;) {
        st = load_acquire(&m->state);
        enum outcome out = outcome_of(arrived, st);
        if (out != FILLING)
            return out == RELEASED ? (int)index : -ECANCELED;
        if (timed_out) {
            if (break_round(m, &st))
                return -ECANCELED;
            continue;
        }
        timed_out = sleep_on(m, st, deadline);
    }
}

int fipc_barrier_abort(fipc_barrier *b)
{
    if (!b)
        return -EINVAL;
    struct barrier_impl *m = impl(b);
    /* Relaxed: only a guess for the CAS in break_round (acq_rel). */
    uint64_t st = load_relaxed(&m->state);
    while (!break_round(m, &st))
        ;
    return 0;
}

int fipc_barrier_reset(fipc_barrier *b)
{
    if (!b)
        return -EINVAL;
    struct barrier_impl *m = impl(b);
    /* Relaxed: only a guess for the CAS below (acq_rel). */
    uint64_t st = load_relaxed(&m->state);
    uint64_t next;
    do {
        if (st & BROKEN)
            next = st & ~BROKEN; /* the break ended its round: start afresh */
        else if (count_of(st) > 0)
            next = end_round(st, false); /* cancel the parties inside */
        else
            return 0; /* an empty round: fresh already */
    } while (!cas_acqrel(&m->state, &st, next));
    /* Parties inside a cancelled round wake to -ECANCELED; after a break
     * nobody sleeps, but a breaker that died before its wake-all left its
     * round's parties asleep: this wakes them too. */
    wake_all(m);
    return 0;
}

int fipc_barrier_parties(const fipc_barrier *b)
{
    return b ? (int)impl(b)->parties : -EINVAL;
}

int fipc_barrier_n_waiting(const fipc_barrier *b)
{
    if (!b)
        return -EINVAL;
    uint64_t st = load_relaxed(&impl(b)->state); /* a snapshot */
    return st & BROKEN ? 0 : (int)count_of(st);
}

bool fipc_barrier_broken(const fipc_barrier *b)
{
    return b && (load_relaxed(&impl(b)->state) & BROKEN); /* a snapshot */
}
