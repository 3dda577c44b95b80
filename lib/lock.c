/*
 * lock.c - Lock and RLock on robust futexes.
 *
 * Model: docs/models/lock.pml
 *
 * The lock word uses the kernel's robust-futex format, so that the kernel
 * itself recovers a lock whose owner dies:
 *
 *   bits    name             meaning
 *   0..29   LOCK_TID_MASK    kernel thread id of the owner; 0 = nobody
 *   30      LOCK_OWNER_DIED  set by the kernel: the owner ended holding it
 *   31      LOCK_WAITERS     a thread may sleep on the word: release wakes one
 *
 *   word                        state
 *   0                           free
 *   tid                         held by tid; nobody sleeps
 *   tid | WAITERS               held by tid; sleepers possible
 *   OWNER_DIED [| WAITERS]      free; the previous owner died holding it
 *
 * Invariant: whenever a thread sleeps on the word, WAITERS is set (a
 * sleeper sets it before sleeping; a woken thread takes the lock with
 * WAITERS set, since it cannot know whether others still sleep).  A
 * release clears the whole word with one exchange and wakes one sleeper
 * only if WAITERS was set.
 *
 * Robust list.  The C library registers, for every thread, a list head with
 * the kernel (set_robust_list); at thread exit the kernel walks the list and,
 * for each entry whose word still holds the dying thread's id, sets
 * OWNER_DIED (keeping WAITERS) and wakes one waiter.  A held fipc lock is
 * linked into its owner's list exactly as glibc links a robust mutex: the
 * list points at the lock's robust_next field, 32 bytes after the word
 * (the futex_offset the C library registered, checked once per thread), and
 * the owner keeps list_op_pending pointing at the lock while it takes or
 * releases it, so a death in between is recovered too.  The two link fields
 * are meaningful only to the owning thread; no other process reads them.
 */
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fipc/lock.h>

#include "futex.h"
#include "lock_impl.h"

#define LOCK_TID_MASK   FUTEX_TID_MASK   /* 0x3fffffff */
#define LOCK_OWNER_DIED FUTEX_OWNER_DIED /* 0x40000000 */
#define LOCK_WAITERS    FUTEX_WAITERS    /* 0x80000000 */

static_assert(sizeof(struct lock_impl) == sizeof(fipc_lock), "lock layout");
static_assert(sizeof(struct lock_impl) == sizeof(fipc_rlock), "rlock layout");
static_assert(_Alignof(fipc_lock) >= _Alignof(struct lock_impl), "lock alignment");
static_assert(offsetof(struct lock_impl, robust_next) == 32, "glibc's robust mutex shape");
static_assert(offsetof(struct lock_impl, robust_prev) + 8 == offsetof(struct lock_impl, robust_next),
              "prev link directly precedes next");

/* ---- per-thread identity ------------------------------------------------ */

/* One TLS block, initial-exec so that reaching it costs no function call
 * even from the shared library. */
struct self {
    pid_t tid;                     /* 0: not fetched yet in this process */
    bool robust_checked;           /* head fetched (or found unusable) */
    struct robust_list_head *head; /* NULL: no robust list to link into */
};
static _Thread_local struct self self __attribute__((tls_model("initial-exec")));

static void forget_tid_in_child(void)
{
    /* The child of fork is a new thread with a new id; the C library gave
     * it an empty robust list at the same address, so head stays valid. */
    self.tid = 0;
}

__attribute__((constructor)) static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, forget_tid_in_child);
}

static __attribute__((noinline)) pid_t fetch_tid(void)
{
    return self.tid = (pid_t)syscall(SYS_gettid);
}

static inline pid_t my_tid(void)
{
    return FIPC_LIKELY(self.tid != 0) ? self.tid : fetch_tid();
}

static __attribute__((noinline)) struct robust_list_head *fetch_robust_head(void)
{
    struct robust_list_head *h = NULL;
    size_t len = 0;
    self.robust_checked = true;
    if (syscall(SYS_get_robust_list, 0, &h, &len) == 0 && h && len == sizeof *h &&
        h->futex_offset == -(long)offsetof(struct lock_impl, robust_next))
        self.head = h;
    return self.head;
}

static inline struct robust_list_head *robust_head(void)
{
    return FIPC_LIKELY(self.robust_checked) ? self.head : fetch_robust_head();
}

/* The list's links point at the next field of each node (glibc's shape);
 * a node's prev field sits just before it.  For the head, the "node" is the
 * list field itself, and the C library keeps a prev slot before the head. */
static inline uintptr_t *link_prev_slot(uintptr_t link)
{
    return (uintptr_t *)((link & ~(uintptr_t)1) - sizeof(uintptr_t));
}

static inline void robust_pending(struct robust_list_head *h, struct lock_impl *m)
{
    if (h) {
        h->list_op_pending = (struct robust_list *)&m->robust_next;
        /* The kernel reads these fields only when this thread exits, so
         * program order (kept by the compiler barrier) is enough. */
        compiler_barrier();
    }
}

static inline void robust_done(struct robust_list_head *h)
{
    if (h) {
        compiler_barrier();
        h->list_op_pending = NULL;
    }
}

static inline void robust_link(struct robust_list_head *h, struct lock_impl *m)
{
    if (!h)
        return;
    uintptr_t first = (uintptr_t)h->list.next;
    *link_prev_slot(first) = (uintptr_t)&m->robust_next;
    m->robust_next = first;
    m->robust_prev = (uintptr_t)&h->list;
    compiler_barrier();
    h->list.next = (struct robust_list *)&m->robust_next;
    robust_done(h);
}

static inline void robust_unlink(struct lock_impl *m)
{
    uintptr_t next = m->robust_next, prev = m->robust_prev;
    *link_prev_slot(next) = prev;
    *(uintptr_t *)(prev & ~(uintptr_t)1) = next;
}

/* ---- the lock ----------------------------------------------------------- */

static inline struct lock_impl *impl(const void *l)
{
    return (struct lock_impl *)l;
}

bool fipc__lock_held_by_self(const fipc_lock *l)
{
    return l && (load_relaxed(&impl(l)->word) & LOCK_TID_MASK) == (uint32_t)my_tid();
}

/* Take a word that has no owner (0 or OWNER_DIED, maybe WAITERS); acquire
 * pairs with the release exchange of the last owner, so everything it wrote
 * under the lock is visible to us.  Returns 1 if the CAS lost a race. */
static inline int try_take_free(struct lock_impl *m, uint32_t cur, uint32_t mine)
{
    if (!cas_acquire(&m->word, &cur, mine | (cur & LOCK_WAITERS)))
        return 1;
    return (cur & LOCK_OWNER_DIED) ? -EOWNERDEAD : 0;
}

static __attribute__((noinline)) int lock_slow(struct lock_impl *m, uint32_t tid, uint32_t cur,
                                               int64_t timeout_ns)
{
    int r;

    if ((cur & LOCK_TID_MASK) == tid) {
        /* The word holds our cached id.  If this thread came from a fork
         * that bypassed the atfork handler (_Fork, raw clone), the cache is
         * the parent's id: refresh it and start over. */
        if ((pid_t)syscall(SYS_gettid) != self.tid) {
            self.tid = 0;
            return -ESTALE; /* lock_contended retries through the general path */
        }
        /* Python's non-blocking acquire of a held lock fails; a blocking
         * one by the holder would never return. */
        return timeout_ns == 0 ? -EAGAIN : -EDEADLK;
    }

    /* The deadline is taken before the spin, which counts against it (a
     * zero timeout needs none). */
    fipc_deadline deadline = timeout_ns == 0 ? 0 : fipc_deadline_in(timeout_ns);

    /* Spin while the owner runs and nobody sleeps: a short critical
     * section on the other CPU ends sooner than a futex round trip. */
    for (struct fipc_spin spin = {0}; timeout_ns != 0;) {
        if ((cur & LOCK_TID_MASK) == 0) {
            if ((r = try_take_free(m, cur, tid)) != 1)
                return r;
        } else if (cur & LOCK_WAITERS) {
            break;
        }
        if (!fipc_spin(&spin))
            break;
        cur = load_relaxed(&m->word);
    }

    if (timeout_ns == 0) {
        /* One last look; a free word is taken even with a zero timeout. */
        cur = load_relaxed(&m->word);
        if ((cur & LOCK_TID_MASK) == 0 && (r = try_take_free(m, cur, tid)) != 1)
            return r;
        return -EAGAIN;
    }

    bool timed_out = false;
    for (;;) {
        cur = load_relaxed(&m->word);
        if ((cur & LOCK_TID_MASK) == 0) {
            /* After sleeping we cannot know whether others still sleep,
             * so take the word with WAITERS set. */
            if ((r = try_take_free(m, cur, tid | LOCK_WAITERS)) != 1)
                return r;
            continue;
        }
        if (timed_out)
            return -ETIMEDOUT;
        if (!(cur & LOCK_WAITERS)) {
            if (!cas_relaxed(&m->word, &cur, cur | LOCK_WAITERS))
                continue;
            cur |= LOCK_WAITERS;
        }
        /* Woken by fipc_lock_release (WAITERS is set, so it wakes one), or
         * by the kernel when the owner dies (it sets OWNER_DIED and wakes
         * one).  A timed-out wait was not chosen by a waker: the kernel
         * returns success to a sleeper that a wake dequeued, even late. */
        if (futex_wait_until(&m->word, cur, deadline) == -ETIMEDOUT)
            timed_out = true;
    }
}

/* Everything after a failed fast-path CAS: spin, sleep, then link the lock
 * (or withdraw the announcement).  Out of line, so that the fast path is a
 * leaf function that saves no registers. */
static int lock_acquire_general(struct lock_impl *m, int64_t timeout_ns);

static __attribute__((noinline)) int lock_contended(struct lock_impl *m, struct robust_list_head *h,
                                                    uint32_t tid, uint32_t cur, int64_t timeout_ns)
{
    int r = lock_slow(m, tid, cur, timeout_ns);
    if (FIPC_UNLIKELY(r == -ESTALE)) {
        robust_done(h);
        return lock_acquire_general(m, timeout_ns);
    }
    if (r == 0 || r == -EOWNERDEAD)
        robust_link(h, m);
    else
        robust_done(h);
    return r;
}

/* The general path: first use in this thread, or no robust list. */
static __attribute__((noinline)) int lock_acquire_general(struct lock_impl *m, int64_t timeout_ns)
{
    uint32_t tid = (uint32_t)my_tid();
    struct robust_list_head *h = robust_head();
    uint32_t cur = 0;
    robust_pending(h, m);
    if (cas_acquire(&m->word, &cur, tid)) {
        robust_link(h, m);
        return 0;
    }
    return lock_contended(m, h, tid, cur, timeout_ns);
}

static inline int lock_acquire(struct lock_impl *m, int64_t timeout_ns)
{
    uint32_t tid = (uint32_t)self.tid;
    struct robust_list_head *h = self.head;
    if (FIPC_UNLIKELY(tid == 0 || h == NULL))
        return lock_acquire_general(m, timeout_ns);

    /* Announce the lock before taking it: if this thread dies between the
     * CAS and the link, the kernel still finds it through list_op_pending. */
    robust_pending(h, m);
    /* Fast path: acquire pairs with the release exchange in lock_release. */
    uint32_t cur = 0;
    if (FIPC_UNLIKELY(!cas_acquire(&m->word, &cur, tid)))
        return lock_contended(m, h, tid, cur, timeout_ns);
    robust_link(h, m);
    return 0;
}

static __attribute__((noinline)) void wake_one(struct lock_impl *m)
{
    futex_wake(&m->word, 1);
}

static inline int lock_release(struct lock_impl *m)
{
    uint32_t tid = (uint32_t)my_tid();
    if ((load_relaxed(&m->word) & LOCK_TID_MASK) != tid)
        return -EPERM;

    struct robust_list_head *h = robust_head();
    robust_pending(h, m);
    if (h)
        robust_unlink(m);
    /* release: everything written under the lock happens-before the next
     * owner's acquire CAS.  Exchange, not store: WAITERS may have been set
     * by a sleeper since we took the lock. */
    uint32_t old = exchange_release(&m->word, 0);
    /* Keep list_op_pending set until after the wake: if this thread dies
     * between the exchange and the wake, the kernel sees the pending unlock
     * of a free word and wakes a waiter in our place. */
    if (FIPC_UNLIKELY(old & LOCK_WAITERS))
        wake_one(m);
    robust_done(h);
    return 0;
}

int fipc__lock_acquire(struct lock_impl *m, int64_t timeout_ns)
{
    return lock_acquire(m, timeout_ns);
}

int fipc__lock_release(struct lock_impl *m)
{
    return lock_release(m);
}

int fipc_lock_init(fipc_lock *l)
{
    if (!l)
        return -EINVAL;
    *impl(l) = (struct lock_impl){0};
    return 0;
}

int fipc_lock_acquire(fipc_lock *l, int64_t timeout_ns)
{
    if (!l)
        return -EINVAL;
    return lock_acquire(impl(l), timeout_ns);
}

int fipc_lock_release(fipc_lock *l)
{
    if (!l)
        return -EINVAL;
    return lock_release(impl(l));
}

bool fipc_lock_locked(const fipc_lock *l)
{
    return l && (load_relaxed(&impl(l)->word) & LOCK_TID_MASK) != 0;
}

/* ---- the recursive lock ------------------------------------------------- */

int fipc_rlock_init(fipc_rlock *l)
{
    if (!l)
        return -EINVAL;
    *impl(l) = (struct lock_impl){0};
    return 0;
}

int fipc_rlock_acquire(fipc_rlock *l, int64_t timeout_ns)
{
    if (!l)
        return -EINVAL;
    struct lock_impl *m = impl(l);
    /* Only this thread can have stored its own id in the word, so a
     * relaxed load that sees it proves we hold the lock. */
    if ((load_relaxed(&m->word) & LOCK_TID_MASK) == (uint32_t)my_tid()) {
        if (m->count == UINT32_MAX)
            return -EOVERFLOW;
        m->count++;
        return 0;
    }
    int r = lock_acquire(m, timeout_ns);
    if (r == 0 || r == -EOWNERDEAD)
        m->count = 1; /* a dead owner's depth means nothing now */
    return r;
}

int fipc_rlock_release(fipc_rlock *l)
{
    if (!l)
        return -EINVAL;
    struct lock_impl *m = impl(l);
    if ((load_relaxed(&m->word) & LOCK_TID_MASK) != (uint32_t)my_tid())
        return -EPERM;
    if (--m->count > 0)
        return 0;
    return lock_release(m);
}

bool fipc_rlock_locked(const fipc_rlock *l)
{
    return l && (load_relaxed(&impl(l)->word) & LOCK_TID_MASK) != 0;
}
