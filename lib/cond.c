/*
 * cond.c - Python's Condition on a fipc_lock.
 *
 * Waiters are grouped by generation, as in glibc 2.25's condition variable:
 * a waiter joins the *open* generation while it holds the lock; a notify
 * that finds nobody left to wake in the *closed* generation (the one before)
 * closes the open one, so that a waiter registered after a notify never
 * takes a wake-up that the notify issued.  Every generation before the
 * closed one is *retired*: all of its waiters have been notified.
 *
 *   field        bits    name    meaning
 *   state        0..15   open    waiters registered in the open generation
 *                16..31  idle    closed-generation waiters not yet notified
 *                32..47  tokens  wake-ups given to the closed generation and
 *                                not yet taken
 *                48..63  gen     the open generation's number, low 16 bits
 *   state[63:32]                 tokens and gen: the futex word closed
 *                                waiters sleep on
 *   gen                          the open generation's number in full,
 *                                published after each change of state's
 *                                bits; the futex word open waiters sleep on
 *   waking                       1 while a notify has changed state and not
 *                                yet made all its wakes
 *
 *   event                       state change (one CAS)           wakes
 *   wait registers              open + 1                          -
 *   notify(n), n <= idle        idle - n, tokens + n              n on state
 *   notify(n), idle < n,        gen + 1; closed := open, with     all on gen,
 *     0 < n - idle < open       tokens n - idle, the rest idle;   all on state
 *                               the old closed one is retired     (if it had
 *   notify(n), idle < n,        gen + 2, counts 0: both retired    members)
 *     open <= n - idle, open > 0
 *   notify(n), idle < n,        idle 0, tokens + idle             idle on state
 *     open == 0, idle > 0
 *   notify, nobody to notify    none                              none
 *   closed waiter leaves        tokens - 1 (notified), or once    -
 *                               its time is up, idle - 1
 *   open waiter's time is up    open - 1                          -
 *
 * A waiter of generation g finds its fate from gen: g open (waiting), g + 1
 * closed (take a token, or wait for one), anything later retired (notified).
 * It compares the full 32-bit number in the gen word first and the state's
 * 16 bits second: the state's bits are the truth (the gen word is published
 * after them), the gen word guards them against wrapping around.
 *
 * A dead waiter is never waited for.  It keeps its place in its generation
 * (nobody can tell it is dead) until one notify passes over it: that notify
 * either retires its generation, costing nothing, or gives the generation a
 * wake-up that the dead waiter never takes, so that this notify releases one
 * live waiter fewer than it could have.  After that nothing of it is left:
 * retiring a generation drops its tokens and counts.  A notifier that dies
 * between its CAS and its wakes leaves waking set, and the next notify makes
 * the wakes in its place.
 */
#include <fipc/cond.h>

#include "futex.h"
#include "lock_impl.h"

#define OPEN_ONE  ((uint64_t)1)
#define IDLE_ONE  ((uint64_t)1 << 16)
#define TOKEN_ONE ((uint64_t)1 << 32)
#define FIELD_MAX 0xffffu

struct cond_impl {
    uint64_t state;
    uint32_t gen;
    uint32_t waking;
};
static_assert(sizeof(struct cond_impl) == sizeof(fipc_cond), "cond layout");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "tokens and gen are the high word");

static inline struct cond_impl *impl(const fipc_cond *c)
{
    return (struct cond_impl *)c;
}

static inline uint32_t n_open(uint64_t st)
{
    return (uint32_t)st & FIELD_MAX;
}

static inline uint32_t n_idle(uint64_t st)
{
    return (uint32_t)(st >> 16) & FIELD_MAX;
}

static inline uint32_t n_tokens(uint64_t st)
{
    return (uint32_t)(st >> 32) & FIELD_MAX;
}

static inline uint16_t gen_lo(uint64_t st)
{
    return (uint16_t)(st >> 48);
}

static inline uint64_t make_state(uint16_t gen, uint32_t tokens, uint32_t idle, uint32_t open)
{
    return (uint64_t)gen << 48 | (uint64_t)tokens << 32 | (uint64_t)idle << 16 | open;
}

/* The futex word of the closed generation: tokens and gen. */
static inline uint32_t *closed_word(struct cond_impl *m)
{
    return (uint32_t *)&m->state + 1;
}

static inline uint32_t closed_half(uint64_t st)
{
    return (uint32_t)(st >> 32);
}

/* The full generation number whose low 16 bits are lo, nearest to full
 * (which lags the state, or leads it, by far less than 2^15). */
static inline uint32_t widen(uint32_t full, uint16_t lo)
{
    uint16_t d = (uint16_t)(lo - (uint16_t)full);
    return d < 0x8000u ? full + d : full - (uint32_t)(0x10000u - d);
}

int fipc_cond_init(fipc_cond *c)
{
    if (!c)
        return -EINVAL;
    *impl(c) = (struct cond_impl){0};
    return 0;
}

/* Bring the gen word up to the generation whose low bits are lo; true if it
 * moved.  The CAS releases the state change made before it: a waiter that
 * reads the new gen (acquire) then reads a state at least that new.  It only
 * moves forward, so a notifier that is late (or a repair after a notifier
 * that died between its CAS and this) never takes it back. */
static bool publish_gen(struct cond_impl *m, uint16_t lo)
{
    uint32_t w = load_relaxed(&m->gen); /* a guess for the CAS */
    for (;;) {
        uint32_t want = widen(w, lo);
        if ((int32_t)(want - w) <= 0)
            return false;
        if (cas_acqrel(&m->gen, &w, want))
            return true;
    }
}

enum fate { OPEN, CLOSED, RETIRED };

static enum fate fate_of(uint32_t g, uint32_t w, uint64_t st)
{
    if ((int32_t)(w - g) >= 2)
        return RETIRED;
    uint16_t d = (uint16_t)(gen_lo(st) - (uint16_t)g);
    return d == 0 ? OPEN : d == 1 ? CLOSED : RETIRED;
}

/* Register in the open generation (the caller holds the lock) and return
 * its number in *gen.  Relaxed: the lock, released after this, orders the
 * registration before every later notify made under it. */
static int enroll(struct cond_impl *m, uint32_t *gen)
{
    uint64_t st = load_relaxed(&m->state); /* a guess for the CAS */
    do {
        if (n_open(st) == FIELD_MAX)
            return -EOVERFLOW;
    } while (!cas_relaxed(&m->state, &st, st + OPEN_ONE));
    /* acquire pairs with publish_gen: with the lock held, every notify that
     * completed before has published, so w trails st by at most the
     * generations of notifiers that died between their CAS and publishing. */
    uint32_t w = load_acquire(&m->gen);
    *gen = widen(w, gen_lo(st));
    return 0;
}

/* Wait until generation g is notified: 0, or -ETIMEDOUT (-EAGAIN for a zero
 * timeout) once time has run out and no wake-up is there to take. */
static int await_notify(struct cond_impl *m, uint32_t g, int64_t timeout_ns)
{
    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    bool timed_out = timeout_ns == 0;
    for (;;) {
        /* acquire pairs with publish_gen's release: a new gen implies a
         * state at least as new (a switch seen in gen is seen in state). */
        uint32_t w = load_acquire(&m->gen);
        /* acquire pairs with notify's CAS: a woken waiter sees what the
         * notifier wrote before notifying (the lock orders it as well). */
        uint64_t st = load_acquire(&m->state);
        switch (fate_of(g, w, st)) {
        case RETIRED:
            return 0;
        case OPEN:
            if (timed_out) {
                /* Relaxed: leaving publishes nothing. */
                if (n_open(st) == 0 || cas_relaxed(&m->state, &st, st - OPEN_ONE))
                    return fipc_unavailable(timeout_ns);
                continue;
            }
            /* Woken by the notify that closes or retires g: it publishes a
             * new gen after its CAS, then wakes all on it.  w was read
             * before st, so if st is still open, w is still the old value
             * or futex_wait sees the new one and returns at once. */
            if (futex_wait_until(&m->gen, w, deadline) == -ETIMEDOUT)
                timed_out = true;
            continue;
        case CLOSED:
            if (n_tokens(st) > 0) {
                /* acquire pairs with the CAS that handed the token out. */
                if (cas_acquire(&m->state, &st, st - TOKEN_ONE))
                    return 0;
                continue;
            }
            if (timed_out) {
                /* Relaxed, as for an open waiter. */
                if (n_idle(st) == 0 || cas_relaxed(&m->state, &st, st - IDLE_ONE))
                    return fipc_unavailable(timeout_ns);
                continue;
            }
            /* Woken by a notify that hands tokens to g or retires it: both
             * change tokens or gen, the word slept on, before the wake. */
            if (futex_wait_until(closed_word(m), closed_half(st), deadline) == -ETIMEDOUT)
                timed_out = true;
            continue;
        }
    }
}

int fipc_cond_wait(fipc_cond *c, fipc_lock *l, int64_t timeout_ns)
{
    if (!c || !l)
        return -EINVAL;
    if (!fipc__lock_held_by_self(l))
        return -EPERM;
    struct cond_impl *m = impl(c);

    /* Register while holding the lock: a notify made under the lock after
     * we release it counts us, and none made before can reach us. */
    uint32_t g;
    int r = enroll(m, &g);
    if (r < 0)
        return r;
    fipc__lock_release((struct lock_impl *)l);

    r = await_notify(m, g, timeout_ns);

    int lr = fipc__lock_acquire((struct lock_impl *)l, FIPC_FOREVER);
    return lr == -EOWNERDEAD ? lr : r;
}

int fipc_cond_wait_for(fipc_cond *c, fipc_lock *l, bool (*pred)(void *), void *arg,
                       int64_t timeout_ns)
{
    if (!c || !l || !pred)
        return -EINVAL;
    if (!fipc__lock_held_by_self(l))
        return -EPERM;
    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    bool owner_died = false;
    while (!pred(arg)) {
        int64_t left = FIPC_FOREVER;
        if (deadline != DEADLINE_NEVER) {
            left = deadline - fipc_now_ns();
            if (left <= 0)
                return owner_died ? -EOWNERDEAD : fipc_unavailable(timeout_ns);
        }
        int r = fipc_cond_wait(c, l, left);
        if (r == -EOWNERDEAD)
            owner_died = true;
        else if (r < 0 && r != -ETIMEDOUT && r != -EAGAIN)
            return r;
        else if (r < 0 && !pred(arg))
            /* A dead holder outranks the timeout: the caller holds the lock
             * and must repair the state it protects. */
            return owner_died ? -EOWNERDEAD : fipc_unavailable(timeout_ns);
    }
    return owner_died ? -EOWNERDEAD : 0;
}

static inline int wake_count(uint32_t n)
{
    return n > (uint32_t)FUTEX_WAKE_ALL ? FUTEX_WAKE_ALL : (int)n;
}

int fipc_cond_notify(fipc_cond *c, uint32_t n)
{
    if (!c)
        return -EINVAL;
    if (n == 0)
        return 0;
    struct cond_impl *m = impl(c);
    /* acquire pairs with the CAS of the notifier before us: if we see its
     * change of state we see the mark it set before (below). */
    uint64_t st = load_acquire(&m->state);
    /* Relaxed: ordered after the acquire load above. */
    bool repair = load_relaxed(&m->waking) != 0;
    bool marked = false;
    uint64_t next;
    uint32_t give;
    for (;;) {
        uint32_t open = n_open(st), idle = n_idle(st), tokens = n_tokens(st);
        uint16_t g = gen_lo(st);
        give = n < idle ? n : idle;
        uint32_t rest = n - give;
        if (rest > 0 && open > 0) {
            /* Every closed waiter is notified now: retire that generation
             * and close the open one, or retire both if n covers it. */
            if (rest >= open)
                next = make_state((uint16_t)(g + 2), 0, 0, 0);
            else
                next = make_state((uint16_t)(g + 1), rest, open - rest, 0);
        } else if (give > 0) {
            next = make_state(g, tokens + give, idle - give, open);
        } else {
            next = st; /* nobody left to notify: no system call */
            break;
        }
        /* Mark the wakes as owed before the change that owes them; the
         * CAS's release orders the mark before it. */
        if (!marked) {
            store_relaxed(&m->waking, 1);
            marked = true;
        }
        /* release pairs with the waiters' acquire loads of state and their
         * token CAS: the notifier's writes reach whoever it wakes.  The
         * acquire half is unused. */
        if (cas_acqrel(&m->state, &st, next))
            break;
    }
    if (!marked && !repair)
        return 0;

    if (repair) {
        /* The notifier before us died between its CAS and its last wake
         * (holding the lock, as notifiers do): its gen may be unpublished
         * and its sleepers unwoken, on either word.  Wake them all; those
         * with nothing to take sleep again. */
        publish_gen(m, gen_lo(st));
        futex_wake(&m->gen, FUTEX_WAKE_ALL);
        futex_wake(closed_word(m), FUTEX_WAKE_ALL);
    }
    if (gen_lo(next) != gen_lo(st)) {
        /* Generations changed.  Publish the new number, then wake the open
         * generation's sleepers (now closed or retired; they re-sleep on the
         * closed word if no token is left for them) and, if the old closed
         * generation still had members, its sleepers, now retired. */
        publish_gen(m, gen_lo(next));
        futex_wake(&m->gen, FUTEX_WAKE_ALL);
        if (n_idle(st) + n_tokens(st) > 0)
            futex_wake(closed_word(m), FUTEX_WAKE_ALL);
    } else if (give > 0) {
        futex_wake(closed_word(m), wake_count(give));
    }
    /* Every wake owed is made.  Relaxed: the wakes are system calls made
     * before this store, which is not moved ahead of them; a notifier that
     * still reads 1 only wakes once more than needed. */
    store_relaxed(&m->waking, 0);
    return 0;
}

int fipc_cond_notify_all(fipc_cond *c)
{
    return fipc_cond_notify(c, UINT32_MAX);
}

int fipc_cond_n_waiting(const fipc_cond *c)
{
    if (!c)
        return -EINVAL;
    uint64_t st = load_relaxed(&impl(c)->state); /* a snapshot */
    return (int)(n_open(st) + n_idle(st));
}
