/*
 * sem.c - counting semaphores.
 *
 *   field     meaning
 *   value     units available; the futex word sleepers wait on (while 0)
 *   waiters   threads inside the slow path of acquire (asleep or about to be)
 *   max       largest value release may reach: FIPC_SEM_VALUE_MAX, or the
 *             initial value of a bounded semaphore
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

struct sem_impl {
    uint32_t value;
    uint32_t waiters;
    uint32_t max;
    uint32_t spare;
};
static_assert(sizeof(struct sem_impl) == sizeof(fipc_sem), "sem layout");

static inline struct sem_impl *impl(const fipc_sem *s)
{
    return (struct sem_impl *)s;
}

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
    for (fipc_spin_begin(&spin); fipc_spin(&spin);)
        if (load_relaxed(&m->value) > 0 && try_take(m))
            return 0;

    /* Woken by fipc_sem_release, which wakes one sleeper per unit whenever
     * waiters is non-zero. */
    int r = futex_wait_counted(&m->value, &m->waiters, take_or_sleep, m, deadline);
    fipc_spin_learn(&spin, -1);
    return r;
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
    if (load_seqcst(&m->waiters) > 0)
        futex_wake(&m->value, 1);
    return 0;
}

int fipc_sem_value(const fipc_sem *s)
{
    if (!s)
        return -EINVAL;
    return (int)load_relaxed(&impl(s)->value);
}
