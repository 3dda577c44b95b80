/*
 * sem.c - counting semaphores.
 *
 *   field     meaning
 *   value     units available; the futex word sleepers wait on (while 0)
 *   waiters   threads inside the slow path of acquire (asleep or about to be)
 *   max       largest value release may reach: FIPC_SEM_VALUE_MAX, or the
 *             initial value of a bounded semaphore
 *   outside   the sleepers outside fipc (io_uring, wait_any), who cannot
 *             count themselves out: bit 0 set, someone may wait on this
 *             word; bits 1..31 an epoch.  A releaser that finds bit 0 set
 *             adds 1, which clears it and advances the epoch in one step,
 *             and wakes them all; a waiter waits while the word is still
 *             the odd value it set, so a flag cleared under it always
 *             comes with a changed word (the event count's flag and epoch,
 *             eventcount.h, in one word)
 *
 * No lost wake-up: an acquirer increments waiters and then reads value; a
 * releaser increments value and then reads waiters.  All four are seq_cst,
 * so in their single total order at least one side sees the other's write:
 * either the releaser sees waiters > 0 and wakes, or the acquirer sees the
 * unit and takes it.  futex_wait re-checks value == 0 atomically in the
 * kernel, closing the gap between that read and sleeping.
 */
#include <fipc/sem.h>

#include "futex.h"
#include "waitable.h"

struct sem_impl {
    uint32_t value;
    uint32_t waiters;
    uint32_t max;
    uint32_t outside;
};
static_assert(sizeof(struct sem_impl) == sizeof(fipc_sem), "sem layout");

static inline struct sem_impl *impl(const fipc_sem *s)
{
    return (struct sem_impl *)s;
}

static void wake_outside(struct sem_impl *m);

static int sem_setup(fipc_sem *s, uint32_t value, uint32_t max)
{
    if (!s || value > FIPC_SEM_VALUE_MAX)
        return -EINVAL;
    *impl(s) = (struct sem_impl){.value = value, .max = max};
    return 0;
}

int fipc_sem_init(fipc_sem *s, uint32_t value)
{
    return sem_setup(s, value, FIPC_SEM_VALUE_MAX);
}

int fipc_sem_init_bounded(fipc_sem *s, uint32_t value)
{
    return sem_setup(s, value, value);
}

/* Take a unit if there is one.  acquire pairs with the seq_cst (hence
 * release) increment in fipc_sem_release: what the releaser wrote before
 * releasing is visible to the taker. */
static inline bool try_take(struct sem_impl *m)
{
    uint32_t v = load_relaxed(&m->value);
    while (v > 0)
        if (cas_acquire(&m->value, &v, v - 1))
            return true;
    return false;
}

/* The counted wait's check: take a unit, or sleep while value is 0.
 * seq_cst: the acquirer's half of the handshake at the top (the counted
 * wait's registration comes first). */
static int take_or_sleep(void *arg, uint32_t *seen)
{
    struct sem_impl *m = arg;
    uint32_t v = load_seqcst(&m->value);
    while (v > 0)
        if (cas_acquire(&m->value, &v, v - 1))
            return 0;
    *seen = 0;
    return -EAGAIN;
}

int fipc_sem_acquire(fipc_sem *s, int64_t timeout_ns)
{
    if (!s)
        return -EINVAL;
    struct sem_impl *m = impl(s);
    if (FIPC_LIKELY(try_take(m)))
        return 0;

    if (timeout_ns == 0)
        return -EAGAIN; /* never blocks, nor spins */
    /* The deadline is taken before the spin, which counts against it. */
    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    struct fipc_spin spin;
    for (fipc_spin_begin_mode(&spin, waiters_mode(&m->waiters), deadline); fipc_spin(&spin);)
        if (load_relaxed(&m->value) > 0 && try_take(m))
            return 0;

    /* Woken by fipc_sem_release, which wakes one sleeper per unit whenever
     * waiters is non-zero. */
    int r = futex_wait_counted(&m->value, &m->waiters, take_or_sleep, m, deadline);
    fipc_spin_learn(&spin, -1);
    return r;
}

int fipc_sem_set_wait_mode(fipc_sem *s, enum fipc_wait_mode mode)
{
    if (!s || !fipc_wait_mode_valid(mode))
        return -EINVAL;
    waiters_set_mode(&impl(s)->waiters, (uint32_t)mode);
    return 0;
}

int fipc_sem_release(fipc_sem *s)
{
    if (!s)
        return -EINVAL;
    struct sem_impl *m = impl(s);
    uint32_t max = load_relaxed(&m->max);
    uint32_t v = load_relaxed(&m->value);
    do {
        if (v >= max)
            return -EOVERFLOW;
        /* seq_cst: this increment and the waiters load below form the
         * releaser's half of the handshake described at the top. */
    } while (!cas_seqcst(&m->value, &v, v + 1));
    if (load_seqcst(&m->waiters) & WAITERS_COUNT)
        futex_wake(&m->value, 1);
    /* seq_cst: as the load of waiters, the releaser's half of the
     * handshake with fipc__sem_arm. */
    if (FIPC_UNLIKELY(load_seqcst(&m->outside) & 1))
        wake_outside(m);
    return 0;
}

int fipc_sem_value(const fipc_sem *s)
{
    if (!s)
        return -EINVAL;
    return (int)load_relaxed(&impl(s)->value);
}

/* ---- waiting from outside fipc (waitable.h) ------------------------------ */

/* Out of line: it runs only while someone outside fipc waits. */
static FIPC_COLD void wake_outside(struct sem_impl *m)
{
    /* relaxed: the CAS reads the word again, and the releaser's seq_cst
     * CAS of value precedes it. */
    uint32_t o = load_relaxed(&m->outside);
    while (o & 1)
        if (cas_relaxed(&m->outside, &o, o + 1)) {
            futex_wake(&m->outside, FUTEX_WAKE_ALL);
            return;
        }
}

int fipc__sem_arm(fipc_sem *s, unsigned what, struct fipc__arm *w)
{
    if (!s)
        return -EINVAL;
    struct sem_impl *m = impl(s);
    if (what & FIPC__ARM_PEEK)
        return load_relaxed(&m->value) > 0; /* a snapshot */
    uint32_t o = load_relaxed(&m->outside);
    /* seq_cst: the waiter's half of the handshake (as the counted wait's
     * increment of waiters), a read-modify-write even when bit 0 is set
     * already.  Either the releaser's load of outside (after its increment
     * of value) sees this bit, or the load of value below sees the unit. */
    while (!cas_seqcst(&m->outside, &o, o | 1))
        ;
    o |= 1;
    if (load_seqcst(&m->value) > 0)
        return 1;
    w->word = &m->outside;
    w->value = o;
    return 0;
}
