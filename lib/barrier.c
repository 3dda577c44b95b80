/*
 * barrier.c - Python's Barrier, lock-free.
 *
 * One 64-bit word; its high half is the futex word everyone sleeps on:
 *
 *   bits     name           meaning
 *   0..30    count          parties inside the barrier (arrived, not left)
 *   31       BREAK_PENDING  a caller's time ran out while it waited for the
 *                           last round to drain: break once it has
 *   32..33   phase   FILLING, DRAINING, RESETTING or BROKEN
 *   34..63   epoch   advanced by every phase change, so the futex word
 *                    changes whenever anything happens
 *
 *   phase      meaning                                 next
 *   FILLING    parties arrive; count = arrivals so far  DRAINING when the
 *                                                       last one arrives
 *   DRAINING   the round is released; waiters leave    FILLING when count
 *                                                       drops to 0
 *   RESETTING  reset while parties were inside; they   FILLING when count
 *              leave with -ECANCELED                   drops to 0
 *   BROKEN     aborted or timed out; every wait gets   reset
 *              -ECANCELED
 *
 * As in Python, a new round cannot start until every waiter of the last one
 * has left (new arrivals wait while DRAINING/RESETTING), so each waiter's
 * fate is the phase it sees when it wakes, never a later round's.  For the
 * same reason an arrival whose time runs out while the last round drains
 * does not break that round, which its waiters have already won: it sets
 * BREAK_PENDING, and the last waiter out of the old round breaks the
 * barrier instead of opening a new round.
 * All CASes are acq_rel: a phase change publishes what parties wrote before
 * arriving to every party that observes it.
 */
#include <fipc/barrier.h>

#include "futex.h"

enum { FILLING = 0, DRAINING = 1, RESETTING = 2, BROKEN = 3 };
#define BREAK_PENDING 0x80000000u
#define PARTIES_MAX 65535u

struct barrier_impl {
    uint64_t state;
    uint32_t parties;
    uint32_t spare;
};
static_assert(sizeof(struct barrier_impl) == sizeof(fipc_barrier), "barrier layout");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the futex half is the high word");

static inline struct barrier_impl *impl(const fipc_barrier *b)
{
    return (struct barrier_impl *)b;
}

static inline uint32_t count_of(uint64_t st)
{
    return (uint32_t)st & ~BREAK_PENDING;
}

static inline bool break_pending(uint64_t st)
{
    return (uint32_t)st & BREAK_PENDING;
}

static inline unsigned phase_of(uint64_t st)
{
    return (unsigned)(st >> 32) & 3;
}

static inline uint32_t futex_half(uint64_t st)
{
    return (uint32_t)(st >> 32);
}

/* st moved to phase with count, in a new epoch. */
static inline uint64_t next_state(uint64_t st, unsigned phase, uint32_t count)
{
    uint32_t hi = ((futex_half(st) & ~3u) + 4u) | phase;
    return ((uint64_t)hi << 32) | count;
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

/* Move to phase (keeping count) unless the phase is one of keep_if. */
static void change_phase(struct barrier_impl *m, unsigned phase, unsigned keep_mask)
{
    uint64_t st = load_relaxed(&m->state);
    do {
        if (keep_mask & (1u << phase_of(st)))
            return;
    } while (!cas_acqrel(&m->state, &st, next_state(st, phase, count_of(st))));
    wake_all(m);
}

/* Our time ran out while the last round drains: break the barrier as soon
 * as that round is over (at once if it already is). */
static void defer_break(struct barrier_impl *m)
{
    uint64_t st = load_relaxed(&m->state);
    for (;;) {
        unsigned ph = phase_of(st);
        if (ph == BROKEN)
            return;
        if (ph == FILLING) {
            change_phase(m, BROKEN, 1u << BROKEN);
            return;
        }
        /* The futex half does not change: nobody needs waking. */
        if (cas_acqrel(&m->state, &st, st | BREAK_PENDING))
            return;
    }
}

/* Leave the barrier: the last one out of a released or reset round opens
 * the next one. */
static void leave(struct barrier_impl *m)
{
    uint64_t st = load_relaxed(&m->state);
    uint64_t next;
    do {
        uint32_t left = count_of(st) - 1;
        unsigned ph = phase_of(st);
        if (left == 0 && (ph == DRAINING || ph == RESETTING))
            next = next_state(st, break_pending(st) ? BROKEN : FILLING, 0);
        else
            next = st - 1;
    } while (!cas_acqrel(&m->state, &st, next));
    if (phase_of(next) != phase_of(st))
        wake_all(m); /* arrivals waiting for the round to drain */
}

/* Sleep until the futex half differs from that of st or time runs out. */
static bool sleep_on(struct barrier_impl *m, uint64_t st, fipc_deadline deadline)
{
    /* Woken by every phase change (change_phase, leave, the releasing
     * arrival), each of which advances the epoch and wakes all. */
    return futex_wait_until(futex_word(m), futex_half(st), deadline) == -ETIMEDOUT;
}

int fipc_barrier_wait(fipc_barrier *b, int64_t timeout_ns)
{
    if (!b)
        return -EINVAL;
    struct barrier_impl *m = impl(b);
    uint32_t parties = load_relaxed(&m->parties);
    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    bool timed_out = timeout_ns == 0;
    uint64_t st = load_acquire(&m->state);
    uint32_t index;

    /* Enter: wait while the last round drains, then take an index. */
    for (;;) {
        unsigned ph = phase_of(st);
        if (ph == BROKEN)
            return -ECANCELED;
        if (ph != FILLING) {
            if (timed_out) {
                defer_break(m);
                return -ECANCELED;
            }
            timed_out = sleep_on(m, st, deadline);
            st = load_acquire(&m->state);
            continue;
        }
        index = count_of(st);
        if (index + 1 == parties) {
            /* The last arrival releases the round; the others still inside
             * leave during DRAINING.  With one party there is nobody. */
            uint64_t next = index == 0 ? next_state(st, FILLING, 0)
                                       : next_state(st, DRAINING, index);
            if (cas_acqrel(&m->state, &st, next)) {
                if (index > 0)
                    wake_all(m);
                return (int)index;
            }
            continue;
        }
        if (cas_acqrel(&m->state, &st, st + 1))
            break;
    }

    /* Inside: wait for the round to end, one way or another. */
    for (;;) {
        st = load_acquire(&m->state);
        if (phase_of(st) != FILLING)
            break;
        if (timed_out) {
            change_phase(m, BROKEN, ~(1u << FILLING));
            continue;
        }
        timed_out = sleep_on(m, st, deadline);
    }
    int r = phase_of(st) == DRAINING ? (int)index : -ECANCELED;
    leave(m);
    return r;
}

int fipc_barrier_abort(fipc_barrier *b)
{
    if (!b)
        return -EINVAL;
    change_phase(impl(b), BROKEN, 1u << BROKEN);
    return 0;
}

int fipc_barrier_reset(fipc_barrier *b)
{
    if (!b)
        return -EINVAL;
    struct barrier_impl *m = impl(b);
    uint64_t st = load_relaxed(&m->state);
    uint64_t next;
    do {
        unsigned ph = phase_of(st);
        if (count_of(st) == 0)
            next = next_state(st, FILLING, 0);
        else if (ph == FILLING || ph == BROKEN)
            next = next_state(st, RESETTING, count_of(st));
        else if (break_pending(st))
            next = st & ~(uint64_t)BREAK_PENDING; /* draining: forget the break */
        else
            return 0; /* draining or resetting: it ends by itself */
    } while (!cas_acqrel(&m->state, &st, next));
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
    uint64_t st = load_relaxed(&impl(b)->state);
    return phase_of(st) == FILLING ? (int)count_of(st) : 0;
}

bool fipc_barrier_broken(const fipc_barrier *b)
{
    return b && phase_of(load_relaxed(&impl(b)->state)) == BROKEN;
}
