/*
 * cond.c - Python's Condition on a fipc_lock.
 *
 *   field           meaning
 *   state[63:32]    waiters: threads inside wait that have not left yet
 *   state[31:0]     tokens: wake-ups handed out by notify, not yet taken
 *   seq             advanced by every notify that hands out tokens; the
 *                   futex word waiters sleep on
 *
 * Invariant: tokens <= waiters.  A waiter registers (waiters + 1) while it
 * still holds the lock, so a notify made under the lock after that counts
 * it.  It leaves by taking a token (waiters - 1, tokens - 1: notified) or,
 * once its time has run out and no token is left, by unregistering alone
 * (waiters - 1: timed out).  notify(n) adds min(n, waiters - tokens) tokens
 * with one CAS, advances seq and wakes that many sleepers; with nobody
 * waiting it makes no system call.
 *
 * No lost wake-up: a waiter reads seq (acquire) before it looks for a token
 * and then sleeps only while seq still has that value.  notify adds tokens
 * before it advances seq (release), so a waiter that read the old seq either
 * finds the tokens or has its futex_wait return at once; one that read the
 * new seq also sees the tokens.  A sleeper woken while another (awake)
 * waiter takes the token finds none and sleeps again, which is right: a
 * notify releases at most n threads in total.
 */
#include <fipc/cond.h>

#include "futex.h"
#include "lock_impl.h"

#define COND_WAITER ((uint64_t)1 << 32)
#define COND_TOKENS 0xffffffffu

struct cond_impl {
    uint64_t state;
    uint32_t seq;
    uint32_t spare;
};
static_assert(sizeof(struct cond_impl) == sizeof(fipc_cond), "cond layout");

static inline struct cond_impl *impl(const fipc_cond *c)
{
    return (struct cond_impl *)c;
}

static inline uint32_t n_waiters(uint64_t st)
{
    return (uint32_t)(st >> 32);
}

static inline uint32_t n_tokens(uint64_t st)
{
    return (uint32_t)(st & COND_TOKENS);
}

int fipc_cond_init(fipc_cond *c)
{
    if (!c)
        return -EINVAL;
    *impl(c) = (struct cond_impl){0};
    return 0;
}

/* Wait for a token until the deadline: 0 when one was taken, -ETIMEDOUT
 * (or -EAGAIN for a zero timeout) otherwise.  The caller has registered. */
static int take_token(struct cond_impl *m, int64_t timeout_ns)
{
    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    bool timed_out = timeout_ns == 0;
    for (;;) {
        /* acquire pairs with the release increment in notify: seeing the
         * new seq implies seeing the tokens added before it. */
        uint32_t seq = load_acquire(&m->seq);
        uint64_t st = load_acquire(&m->state);
        for (;;) {
            if (n_tokens(st) > 0) {
                if (cas_acqrel(&m->state, &st, st - COND_WAITER - 1))
                    return 0;
            } else if (timed_out) {
                if (cas_acqrel(&m->state, &st, st - COND_WAITER))
                    return fipc_unavailable(timeout_ns);
            } else {
                break;
            }
        }
        /* Woken by notify, which advances seq after adding tokens. */
        if (futex_wait_until(&m->seq, seq, deadline) == -ETIMEDOUT)
            timed_out = true;
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
     * we release it will count us. */
    fetch_add_acqrel(&m->state, COND_WAITER);
    fipc__lock_release((struct lock_impl *)l);

    int r = take_token(m, timeout_ns);

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

int fipc_cond_notify(fipc_cond *c, uint32_t n)
{
    if (!c)
        return -EINVAL;
    if (n == 0)
        return 0;
    struct cond_impl *m = impl(c);
    uint64_t st = load_relaxed(&m->state);
    uint32_t k;
    do {
        uint32_t idle = n_waiters(st) - n_tokens(st);
        k = n < idle ? n : idle;
        if (k == 0) {
            if (n_tokens(st) == 0)
                return 0; /* nobody waits: no system call */
            /* Every waiter holds a token already, but the notifier that
             * handed them out may have died before waking anyone: wake
             * again, so that no token is left undelivered. */
            k = n < n_tokens(st) ? n : n_tokens(st);
            break;
        }
        /* release: tokens are published before the seq increment below. */
    } while (!cas_acqrel(&m->state, &st, st + k));
    fetch_add_release(&m->seq, 1);
    futex_wake(&m->seq, k > (uint32_t)FUTEX_WAKE_ALL ? FUTEX_WAKE_ALL : (int)k);
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
    uint64_t st = load_relaxed(&impl(c)->state);
    return (int)(n_waiters(st) - n_tokens(st));
}
