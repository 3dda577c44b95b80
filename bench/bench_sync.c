/*
 * bench_sync.c - fipc's locks, semaphores and events against the C
 * library's process-shared primitives and a raw futex.
 *
 * Three groups:
 *   uncontended  one process, acquire+release in a loop: the fast path, which
 *                must make no system call (baseline: pthread_mutex_t
 *                PROCESS_SHARED)
 *   contended    two processes, pinned to two CPUs, each doing lock /
 *                ++counter / unlock on one shared lock; the count is checked
 *                (baseline: the same with a process-shared pthread mutex)
 *   pingpong     two processes (the runner and a forked partner) handing a
 *                token back and forth; one round trip is two hand-overs
 *                (baseline: a raw futex pair, FUTEX_WAIT/FUTEX_WAKE without
 *                FUTEX_PRIVATE, which never spins: the floor for a wait
 *                that sleeps).  Placed by the scheduler; pingpong-2cpu and
 *                pingpong-1cpu repeat it pinned to two CPUs and to one.
 *
 * Every object lives on its own cache line in MAP_SHARED memory, fipc's and
 * the baselines' alike, so that no case gets a better layout.  Nothing here
 * spins without bound: the machine has two CPUs, and a spinner can starve
 * the very process it waits for.  Waits block (futex, pipe, eventfd, sem_t).
 *
 * The uncontended and the contended loop are written once; each lock kind
 * plugs into both through a small adapter (struct lock_kind).
 */
#include "bench.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fipc.h>

#define CACHELINE 64
#define PAGE      4096

/* ---- A raw futex, shared (no FUTEX_PRIVATE_FLAG: the word is in MAP_SHARED
 * memory used by two processes) ---- */

static long sys_futex(uint32_t *w, int op, uint32_t val)
{
    return syscall(SYS_futex, w, op, val, NULL, NULL, 0);
}

static void futex_wait(uint32_t *w, uint32_t val)
{
    /* EAGAIN (the word moved) and EINTR just mean: look again. */
    sys_futex(w, FUTEX_WAIT, val);
}

static void futex_wake(uint32_t *w, int n)
{
    sys_futex(w, FUTEX_WAKE, (uint32_t)n);
}

/*
 * Drepper's mutex (Futexes Are Tricky, mutex2): 0 free, 1 locked, 2 locked
 * with possible sleepers.  A reference floor for the uncontended group: one
 * CAS to lock, one atomic decrement to unlock, inlined into the loop.
 */
static inline void ref_mutex_lock(uint32_t *w)
{
    uint32_t c = 0;
    /* acquire: pairs with the release in ref_mutex_unlock */
    if (__atomic_compare_exchange_n(w, &c, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return;
    if (c != 2) c = __atomic_exchange_n(w, 2, __ATOMIC_ACQUIRE);
    while (c != 0) {
        futex_wait(w, 2);
        c = __atomic_exchange_n(w, 2, __ATOMIC_ACQUIRE);
    }
}

static inline void ref_mutex_unlock(uint32_t *w)
{
    if (__atomic_fetch_sub(w, 1, __ATOMIC_RELEASE) != 1) {
        __atomic_store_n(w, 0, __ATOMIC_RELEASE);
        futex_wake(w, 1);
    }
}

/* ---- pthread / sem_t set-up ---- */

static int init_pthread_mutex(pthread_mutex_t *m, bool robust)
{
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (!rc) rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!rc && robust) rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (!rc) rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    if (rc) return bench_fail("pthread_mutex_init: %s", strerror(rc));
    return 0;
}

static int init_sem_t(sem_t *s, unsigned value)
{
    if (sem_init(s, 1, value) < 0) return bench_fail("sem_init: %s", strerror(errno));
    return 0;
}

/* sem_wait, retrying EINTR: sem_wait is never restarted after a signal
 * handler (here: the harness's SIGCHLD), whatever SA_RESTART says. */
static int sem_wait_nointr(sem_t *s)
{
    int rc;
    while ((rc = sem_wait(s)) < 0 && errno == EINTR)
        ;
    return rc;
}

/* ====================================================================== */
/* Lock adapters                                                            */
/* ====================================================================== */

/* Room for any lock kind below (40 bytes here: the size of the two it
 * replaces in struct contend, whose counter must stay on the lock's cache
 * line). */
union lock_obj {
    fipc_lock fipc;
    fipc_rlock rlock;
    fipc_sem sem;
    pthread_mutex_t pthread;
    sem_t semt;
    uint32_t futex;
};

struct contend;

/*
 * A lock kind, as the uncontended and the contended loop see it: init
 * returns 0 or bench_fail(...); acquire and release return 0 or the call's
 * error code (fipc's negative errno, pthread's positive one, errno for
 * sem_t); destroy may be NULL.
 */
struct lock_kind {
    const char *name;
    int (*init)(union lock_obj *l);
    int (*acquire)(union lock_obj *l);
    int (*release)(union lock_obj *l);
    void (*destroy)(union lock_obj *l);
    /* The loops made for this kind by LOCK_KIND(). */
    int (*uncontended)(struct bench_run *r);
    int (*contend)(struct contend *s, int id, uint64_t n, struct bench_gate *g);
};

static int lk_fipc_init(union lock_obj *l)
{
    int rc = fipc_lock_init(&l->fipc);
    if (rc) return bench_fail("fipc_lock_init: %s", fipc_strerror(rc));
    return 0;
}

static int lk_fipc_acquire(union lock_obj *l)
{
    return fipc_lock_acquire(&l->fipc, FIPC_FOREVER);
}

static int lk_fipc_release(union lock_obj *l)
{
    return fipc_lock_release(&l->fipc);
}

static int lk_rlock_init(union lock_obj *l)
{
    int rc = fipc_rlock_init(&l->rlock);
    if (rc) return bench_fail("fipc_rlock_init: %s", fipc_strerror(rc));
    return 0;
}

static int lk_rlock_acquire(union lock_obj *l)
{
    return fipc_rlock_acquire(&l->rlock, FIPC_FOREVER);
}

static int lk_rlock_release(union lock_obj *l)
{
    return fipc_rlock_release(&l->rlock);
}

static int lk_sem_init(union lock_obj *l)
{
    int rc = fipc_sem_init(&l->sem, 1);
    if (rc) return bench_fail("fipc_sem_init: %s", fipc_strerror(rc));
    return 0;
}

static int lk_sem_acquire(union lock_obj *l)
{
    return fipc_sem_acquire(&l->sem, FIPC_FOREVER);
}

static int lk_sem_release(union lock_obj *l)
{
    return fipc_sem_release(&l->sem);
}

static int lk_pthread_init(union lock_obj *l)
{
    return init_pthread_mutex(&l->pthread, false);
}

static int lk_pthread_robust_init(union lock_obj *l)
{
    return init_pthread_mutex(&l->pthread, true);
}

static int lk_pthread_acquire(union lock_obj *l)
{
    return pthread_mutex_lock(&l->pthread);
}

static int lk_pthread_release(union lock_obj *l)
{
    return pthread_mutex_unlock(&l->pthread);
}

static void lk_pthread_destroy(union lock_obj *l)
{
    pthread_mutex_destroy(&l->pthread);
}

static int lk_semt_init(union lock_obj *l)
{
    return init_sem_t(&l->semt, 1);
}

static int lk_semt_acquire(union lock_obj *l)
{
    return sem_wait(&l->semt) ? errno : 0;
}

static int lk_semt_release(union lock_obj *l)
{
    return sem_post(&l->semt) ? errno : 0;
}

static void lk_semt_destroy(union lock_obj *l)
{
    sem_destroy(&l->semt);
}

/* bench_shared memory is zeroed: the word starts free. */
static int lk_futex_init(union lock_obj *l)
{
    return 0;
}

static int lk_futex_acquire(union lock_obj *l)
{
    ref_mutex_lock(&l->futex);
    return 0;
}

static int lk_futex_release(union lock_obj *l)
{
    ref_mutex_unlock(&l->futex);
    return 0;
}

/*
 * The loops are always inlined into functions that hand them a constant
 * lock kind (LOCK_KIND below), so each kind gets its own copy in which
 * acquire and release are direct calls, and the hooks are inlined: a round
 * costs what the lock's own calls cost, not a call through the table.
 */
#define LOCK_LOOP static inline __attribute__((always_inline)) int

/* Report a failed acquire or release (rc: see struct lock_kind). */
static int lock_fail(const struct lock_kind *k, const char *what, uint64_t i, int rc)
{
    return bench_fail("%s %s #%llu: %d (%s)", k->name, what, (unsigned long long)i, rc,
                      strerror(rc < 0 ? -rc : rc));
}

/* ---- uncontended: acquire + release, one process ---- */

LOCK_LOOP uncontended_loop(struct bench_run *r, const struct lock_kind *k)
{
    union lock_obj *l = bench_shared(PAGE);
    if (k->init(l) < 0) return -1;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < r->iters; i++) {
        int rc = k->acquire(l);
        if (__builtin_expect(rc != 0, 0)) return lock_fail(k, "acquire", i, rc);
        rc = k->release(l);
        if (__builtin_expect(rc != 0, 0)) return lock_fail(k, "release", i, rc);
    }
    r->ns = bench_now_ns() - t0;
    if (k->destroy) k->destroy(l);
    bench_shared_free(l, PAGE);
    return 0;
}

/* ---- contended: two processes, lock / ++counter / unlock ---- */

struct contend {
    /* The counter shares the lock's cache line, as a protected field
     * usually does: the holder's increment is part of the cost. */
    _Alignas(CACHELINE) union lock_obj lock;
    uint64_t counter;
    _Alignas(CACHELINE) int64_t t0[2], t1[2];
};
_Static_assert(offsetof(struct contend, counter) + sizeof(uint64_t) <= CACHELINE,
               "the contended counter is on the lock's cache line");

LOCK_LOOP contend_loop(struct contend *s, int id, uint64_t n, struct bench_gate *g,
                       const struct lock_kind *k)
{
    /* One worker per CPU: left to the scheduler, both often share a CPU
     * and take turns by time slice, which measures hardly any contention
     * (a handful of hand-overs in 10^7 operations). */
    if (bench_pin_cpu(id) < 0) return -1;
    if (bench_gate_pass(g) < 0) return bench_fail("gate: the runner went away");
    s->t0[id] = bench_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        int rc = k->acquire(&s->lock);
        if (rc) return lock_fail(k, "acquire", i, rc);
        s->counter++;
        rc = k->release(&s->lock);
        if (rc) return lock_fail(k, "release", i, rc);
    }
    s->t1[id] = bench_now_ns();
    return 0;
}

/*
 * LOCK_KIND(lk, .name = ..., .init = ..., ...) defines the lock kind lk and
 * the uncontended and contended loops made for it.
 */
#define LOCK_KIND(lk, ...)                                                                         \
    static int lk##_uncontended(struct bench_run *r);                                              \
    static int lk##_contend(struct contend *s, int id, uint64_t n, struct bench_gate *g);          \
    static const struct lock_kind lk = {__VA_ARGS__, .uncontended = lk##_uncontended,              \
                                        .contend = lk##_contend};                                  \
    static int lk##_uncontended(struct bench_run *r)                                               \
    {                                                                                              \
        return uncontended_loop(r, &lk);                                                           \
    }                                                                                              \
    static int lk##_contend(struct contend *s, int id, uint64_t n, struct bench_gate *g)           \
    {                                                                                              \
        return contend_loop(s, id, n, g, &lk);                                                     \
    }

LOCK_KIND(lk_fipc, .name = "fipc_lock", .init = lk_fipc_init, .acquire = lk_fipc_acquire,
          .release = lk_fipc_release)
LOCK_KIND(lk_rlock, .name = "fipc_rlock", .init = lk_rlock_init, .acquire = lk_rlock_acquire,
          .release = lk_rlock_release)
LOCK_KIND(lk_sem, .name = "fipc_sem", .init = lk_sem_init, .acquire = lk_sem_acquire,
          .release = lk_sem_release)
LOCK_KIND(lk_pthread, .name = "pthread_mutex", .init = lk_pthread_init,
          .acquire = lk_pthread_acquire, .release = lk_pthread_release,
          .destroy = lk_pthread_destroy)
LOCK_KIND(lk_pthread_robust, .name = "pthread_mutex", .init = lk_pthread_robust_init,
          .acquire = lk_pthread_acquire, .release = lk_pthread_release,
          .destroy = lk_pthread_destroy)
LOCK_KIND(lk_semt, .name = "sem_t", .init = lk_semt_init, .acquire = lk_semt_acquire,
          .release = lk_semt_release, .destroy = lk_semt_destroy)
LOCK_KIND(lk_futex, .name = "futex_mutex", .init = lk_futex_init, .acquire = lk_futex_acquire,
          .release = lk_futex_release)

/* The cases' functions: arg is the lock kind. */
static int uncontended(struct bench_run *r)
{
    const struct lock_kind *k = r->arg;
    return k->uncontended(r);
}

static int contended(struct bench_run *r)
{
    const struct lock_kind *k = r->arg;
    struct contend *s = bench_shared(sizeof *s);
    if (k->init(&s->lock) < 0) return -1;
    uint64_t per = r->iters / 2 ? r->iters / 2 : 1;
    struct bench_gate g;
    if (bench_gate_init(&g) < 0) return -1;
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        pid[i] = bench_fork();
        if (pid[i] < 0) return -1;
        if (pid[i] == 0) _exit(k->contend(s, i, per, &g) == 0 ? 0 : 1);
    }
    if (bench_gate_open(&g, 2) < 0) return -1;
    for (int i = 0; i < 2; i++)
        if (bench_reap(pid[i], "contending process") < 0) return -1;
    bench_gate_close(&g);

    if (s->counter != 2 * per)
        return bench_fail("lost updates: counter is %llu, expected %llu",
                          (unsigned long long)s->counter, (unsigned long long)(2 * per));
    /* From the first start to the last finish: the throughput of the pair. */
    int64_t t0 = s->t0[0] < s->t0[1] ? s->t0[0] : s->t0[1];
    int64_t t1 = s->t1[0] > s->t1[1] ? s->t1[0] : s->t1[1];
    r->ns = t1 - t0;
    r->ops = 2 * per;
    if (k->destroy) k->destroy(&s->lock);
    bench_shared_free(s, sizeof *s);
    return 0;
}

/* ====================================================================== */
/* pingpong: round trips between the runner and a forked partner            */
/* ====================================================================== */

enum pp_kind { PP_FUTEX, PP_FIPC_SEM, PP_FIPC_EVENT, PP_SEM_T, PP_EVENTFD };

/*
 * Where the two processes run.  On this 2-vCPU VM placement decides the
 * regime, more than the primitive does: unpinned, the scheduler often puts
 * a woken partner on the waker's CPU, where a sleeping round trip is a
 * context switch (~5 us) and any spinning only delays the partner; on two
 * CPUs a sleeping round trip must wake an idle vCPU (15-70 us) and a short
 * spin catches the answer instead.  The pinned groups show both regimes in
 * every invocation, so the unpinned figures can be read against them.
 */
enum pp_place { PP_ANY, PP_SPLIT, PP_SAME };
#define PP_ARG(kind, place) ((const void *)(intptr_t)((kind) | (place) << 8))

/* Both directions of every kind, each object on its own cache line; only
 * the pair of the kind being measured is used. */
struct pingpong {
    _Alignas(CACHELINE) uint32_t fut_ping;
    _Alignas(CACHELINE) uint32_t fut_pong;
    _Alignas(CACHELINE) fipc_sem sem_ping;
    _Alignas(CACHELINE) fipc_sem sem_pong;
    _Alignas(CACHELINE) fipc_event ev_ping;
    _Alignas(CACHELINE) fipc_event ev_pong;
    _Alignas(CACHELINE) sem_t semt_ping;
    _Alignas(CACHELINE) sem_t semt_pong;
};

/* Rounds before the clock starts: both processes reach their steady state
 * (the partner is scheduled, caches and spin heuristics are warm). */
#define PP_WARMUP 200

static int eventfd_take(int fd)
{
    uint64_t v;
    for (;;) {
        ssize_t n = read(fd, &v, sizeof v);
        if (n == (ssize_t)sizeof v) return 0;
        if (n < 0 && errno == EINTR) continue;
        return bench_fail("eventfd read: %s", n < 0 ? strerror(errno) : "short read");
    }
}

static int eventfd_give(int fd)
{
    uint64_t v = 1;
    for (;;) {
        ssize_t n = write(fd, &v, sizeof v);
        if (n == (ssize_t)sizeof v) return 0;
        if (n < 0 && errno == EINTR) continue;
        return bench_fail("eventfd write: %s", n < 0 ? strerror(errno) : "short write");
    }
}

/*
 * One side of round k (k counts from 1 across warm-up and timed rounds).
 * The pinger sends and waits for the answer; the ponger waits, then answers.
 */
static int pp_round(struct pingpong *s, enum pp_kind kind, const int efd[2], bool pinger,
                    uint32_t k)
{
    int rc;
    switch (kind) {
    case PP_FUTEX: {
        /* Sequence numbers rather than flags: nothing to reset, and a wait
         * on a stale value returns at once (EAGAIN). */
        uint32_t *out = pinger ? &s->fut_ping : &s->fut_pong;
        uint32_t *in = pinger ? &s->fut_pong : &s->fut_ping;
        uint32_t v;
        if (pinger) {
            /* release: pairs with the partner's acquire load of *in */
            __atomic_store_n(out, k, __ATOMIC_RELEASE);
            futex_wake(out, 1);
        }
        while ((v = __atomic_load_n(in, __ATOMIC_ACQUIRE)) != k)
            futex_wait(in, v);
        if (!pinger) {
            __atomic_store_n(out, k, __ATOMIC_RELEASE);
            futex_wake(out, 1);
        }
        return 0;
    }
    case PP_FIPC_SEM: {
        fipc_sem *out = pinger ? &s->sem_ping : &s->sem_pong;
        fipc_sem *in = pinger ? &s->sem_pong : &s->sem_ping;
        if (pinger && (rc = fipc_sem_release(out)) != 0)
            return bench_fail("fipc_sem_release: %s", fipc_strerror(rc));
        if ((rc = fipc_sem_acquire(in, FIPC_FOREVER)) != 0)
            return bench_fail("fipc_sem_acquire: %s", fipc_strerror(rc));
        if (!pinger && (rc = fipc_sem_release(out)) != 0)
            return bench_fail("fipc_sem_release: %s", fipc_strerror(rc));
        return 0;
    }
    case PP_FIPC_EVENT: {
        /*
         * Each event is cleared by the side that waits on it, before that
         * side answers; the other side sets it again only after seeing the
         * answer.  So a clear never erases a set meant for the next round,
         * and a set is never lost: pinger sets ping, waits pong, clears pong;
         * ponger waits ping, clears ping, sets pong.
         */
        fipc_event *out = pinger ? &s->ev_ping : &s->ev_pong;
        fipc_event *in = pinger ? &s->ev_pong : &s->ev_ping;
        if (pinger && (rc = fipc_event_set(out)) != 0)
            return bench_fail("fipc_event_set: %s", fipc_strerror(rc));
        if ((rc = fipc_event_wait(in, FIPC_FOREVER)) != 0)
            return bench_fail("fipc_event_wait: %s", fipc_strerror(rc));
        if ((rc = fipc_event_clear(in)) != 0)
            return bench_fail("fipc_event_clear: %s", fipc_strerror(rc));
        if (!pinger && (rc = fipc_event_set(out)) != 0)
            return bench_fail("fipc_event_set: %s", fipc_strerror(rc));
        return 0;
    }
    case PP_SEM_T: {
        sem_t *out = pinger ? &s->semt_ping : &s->semt_pong;
        sem_t *in = pinger ? &s->semt_pong : &s->semt_ping;
        if (pinger && sem_post(out) < 0) return bench_fail("sem_post: %s", strerror(errno));
        if (sem_wait_nointr(in) < 0) return bench_fail("sem_wait: %s", strerror(errno));
        if (!pinger && sem_post(out) < 0) return bench_fail("sem_post: %s", strerror(errno));
        return 0;
    }
    case PP_EVENTFD: {
        int out = pinger ? efd[0] : efd[1];
        int in = pinger ? efd[1] : efd[0];
        if (pinger && eventfd_give(out) < 0) return -1;
        if (eventfd_take(in) < 0) return -1;
        if (!pinger && eventfd_give(out) < 0) return -1;
        return 0;
    }
    }
    (void)k;
    return bench_fail("unknown ping-pong kind %d", (int)kind);
}

static int pingpong(struct bench_run *r)
{
    enum pp_kind kind = (enum pp_kind)((intptr_t)r->arg & 0xff);
    enum pp_place place = (enum pp_place)((intptr_t)r->arg >> 8);
    struct pingpong *s = bench_shared(sizeof *s);
    int rc, efd[2] = {-1, -1};
    switch (kind) {
    case PP_FUTEX:
        break;
    case PP_FIPC_SEM:
        if ((rc = fipc_sem_init(&s->sem_ping, 0)) || (rc = fipc_sem_init(&s->sem_pong, 0)))
            return bench_fail("fipc_sem_init: %s", fipc_strerror(rc));
        break;
    case PP_FIPC_EVENT:
        if ((rc = fipc_event_init(&s->ev_ping)) || (rc = fipc_event_init(&s->ev_pong)))
            return bench_fail("fipc_event_init: %s", fipc_strerror(rc));
        break;
    case PP_SEM_T:
        if (init_sem_t(&s->semt_ping, 0) < 0 || init_sem_t(&s->semt_pong, 0) < 0) return -1;
        break;
    case PP_EVENTFD:
        /* Counter mode, blocking: a read takes the whole count and sleeps
         * while it is 0. */
        efd[0] = eventfd(0, EFD_CLOEXEC);
        efd[1] = eventfd(0, EFD_CLOEXEC);
        if (efd[0] < 0 || efd[1] < 0) return bench_fail("eventfd: %s", strerror(errno));
        break;
    }

    uint32_t warm = PP_WARMUP, n = (uint32_t)(r->iters > 0x7fffffff ? 0x7fffffff : r->iters);
    /* The runner (this process) is fresh for every run: pinning it ends
     * with the run.  Pin before forking so the partner starts there too. */
    if (place != PP_ANY && bench_pin_cpu(0) < 0) return -1;
    pid_t pid = bench_fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (place == PP_SPLIT && bench_pin_cpu(1) < 0) _exit(1);
        for (uint32_t k = 1; k <= warm + n; k++)
            if (pp_round(s, kind, efd, false, k) < 0) _exit(1);
        _exit(0);
    }
    for (uint32_t k = 1; k <= warm; k++)
        if (pp_round(s, kind, efd, true, k) < 0) return -1;
    int64_t t0 = bench_now_ns();
    for (uint32_t k = warm + 1; k <= warm + n; k++)
        if (pp_round(s, kind, efd, true, k) < 0) return -1;
    r->ns = bench_now_ns() - t0;
    r->ops = n;
    if (bench_reap(pid, "ping-pong partner") < 0) return -1;

    if (kind == PP_SEM_T) {
        sem_destroy(&s->semt_ping);
        sem_destroy(&s->semt_pong);
    }
    if (efd[0] >= 0) close(efd[0]);
    if (efd[1] >= 0) close(efd[1]);
    bench_shared_free(s, sizeof *s);
    return 0;
}

/* ====================================================================== */

#define UNC(n, k, g)                                                                               \
    {                                                                                              \
        .group = "uncontended", .name = n, .baseline = "pthread_mutex_pshared",                    \
        .unit = BENCH_TIME, .op = "pair", .fn = uncontended, .arg = &(k), .min_iters = 100000,     \
        .goal = g                                                                                  \
    }
#define CON(n, k, g)                                                                               \
    {                                                                                              \
        .group = "contended", .name = n, .baseline = "pthread_mutex_pshared", .unit = BENCH_RATE,  \
        .op = "op", .fn = contended, .arg = &(k), .min_iters = 100000, .goal = g                   \
    }
#define PP(grp, n, k, place, g)                                                                    \
    {                                                                                              \
        .group = grp, .name = n, .baseline = "futex_raw", .unit = BENCH_TIME, .op = "rtt",         \
        .fn = pingpong, .arg = PP_ARG(k, place), .min_iters = 1000, .goal = g                      \
    }
#define PP_BASE(grp, place)                                                                        \
    {                                                                                              \
        .group = grp, .name = "futex_raw", .unit = BENCH_TIME, .op = "rtt", .fn = pingpong,        \
        .arg = PP_ARG(PP_FUTEX, place), .min_iters = 1000                                          \
    }
/* The goal applies where the scheduler decides placement, as it will for
 * users; the pinned groups are context. */
#define PP_GROUP(grp, place, sem_goal)                                                             \
    PP_BASE(grp, place), PP(grp, "fipc_sem", PP_FIPC_SEM, place, sem_goal),                        \
        PP(grp, "fipc_event", PP_FIPC_EVENT, place, 0),                                            \
        PP(grp, "sem_t_pshared", PP_SEM_T, place, 0), PP(grp, "eventfd", PP_EVENTFD, place, 0)

static const struct bench_case sync_cases[] = {
    {.group = "uncontended",
     .name = "pthread_mutex_pshared",
     .unit = BENCH_TIME,
     .op = "pair",
     .fn = uncontended,
     .arg = &lk_pthread,
     .min_iters = 100000},
    UNC("fipc_lock", lk_fipc, BENCH_GOAL_TIME_AT_MOST(1.0)),
    UNC("pthread_mutex_robust", lk_pthread_robust, 0),
    UNC("sem_t_pshared", lk_semt, 0),
    UNC("fipc_rlock", lk_rlock, 0),
    UNC("fipc_sem", lk_sem, 0),
    UNC("futex_mutex_ref", lk_futex, 0),

    {.group = "contended",
     .name = "pthread_mutex_pshared",
     .unit = BENCH_RATE,
     .op = "op",
     .fn = contended,
     .arg = &lk_pthread,
     .min_iters = 100000},
    CON("fipc_lock", lk_fipc, BENCH_GOAL_RATE_AT_LEAST(1.0)),

    PP_GROUP("pingpong", PP_ANY, BENCH_GOAL_TIME_AT_MOST(1.2)),
    PP_GROUP("pingpong-2cpu", PP_SPLIT, 0),
    PP_GROUP("pingpong-1cpu", PP_SAME, 0),
};
BENCH_SUITE(sync, sync_cases)
