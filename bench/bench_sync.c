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
 */
#include "bench.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
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
 * CAS to lock, one atomic decrement to unlock.
 */
static void ref_mutex_lock(uint32_t *w)
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

static void ref_mutex_unlock(uint32_t *w)
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
/* uncontended: acquire + release, one process                              */
/* ====================================================================== */

/* Time r->iters rounds of ACQ then REL, each an expression that is 0 on
 * success; on failure, report which and with what code. */
#define UNCONTENDED_LOOP(r, what, ACQ, REL)                                                        \
    do {                                                                                           \
        int64_t t0_ = bench_now_ns();                                                              \
        for (uint64_t i_ = 0; i_ < (r)->iters; i_++) {                                             \
            int a_ = (ACQ);                                                                        \
            if (__builtin_expect(a_ != 0, 0))                                                      \
                return bench_fail("%s acquire #%llu: %d (%s)", what, (unsigned long long)i_, a_,   \
                                  strerror(a_ < 0 ? -a_ : a_));                                    \
            int b_ = (REL);                                                                        \
            if (__builtin_expect(b_ != 0, 0))                                                      \
                return bench_fail("%s release #%llu: %d (%s)", what, (unsigned long long)i_, b_,   \
                                  strerror(b_ < 0 ? -b_ : b_));                                    \
        }                                                                                          \
        (r)->ns = bench_now_ns() - t0_;                                                            \
    } while (0)

static int un_fipc_lock(struct bench_run *r)
{
    fipc_lock *l = bench_shared(PAGE);
    int rc = fipc_lock_init(l);
    if (rc) return bench_fail("fipc_lock_init: %s", fipc_strerror(rc));
    UNCONTENDED_LOOP(r, "fipc_lock", fipc_lock_acquire(l, FIPC_FOREVER), fipc_lock_release(l));
    bench_shared_free(l, PAGE);
    return 0;
}

static int un_fipc_rlock(struct bench_run *r)
{
    fipc_rlock *l = bench_shared(PAGE);
    int rc = fipc_rlock_init(l);
    if (rc) return bench_fail("fipc_rlock_init: %s", fipc_strerror(rc));
    UNCONTENDED_LOOP(r, "fipc_rlock", fipc_rlock_acquire(l, FIPC_FOREVER), fipc_rlock_release(l));
    bench_shared_free(l, PAGE);
    return 0;
}

static int un_fipc_sem(struct bench_run *r)
{
    fipc_sem *s = bench_shared(PAGE);
    int rc = fipc_sem_init(s, 1);
    if (rc) return bench_fail("fipc_sem_init: %s", fipc_strerror(rc));
    UNCONTENDED_LOOP(r, "fipc_sem", fipc_sem_acquire(s, FIPC_FOREVER), fipc_sem_release(s));
    bench_shared_free(s, PAGE);
    return 0;
}

static int un_pthread_mutex(struct bench_run *r)
{
    bool robust = r->arg != NULL;
    pthread_mutex_t *m = bench_shared(PAGE);
    if (init_pthread_mutex(m, robust) < 0) return -1;
    UNCONTENDED_LOOP(r, "pthread_mutex", pthread_mutex_lock(m), pthread_mutex_unlock(m));
    pthread_mutex_destroy(m);
    bench_shared_free(m, PAGE);
    return 0;
}

static int un_sem_t(struct bench_run *r)
{
    sem_t *s = bench_shared(PAGE);
    if (init_sem_t(s, 1) < 0) return -1;
    UNCONTENDED_LOOP(r, "sem_t", sem_wait(s) ? errno : 0, sem_post(s) ? errno : 0);
    sem_destroy(s);
    bench_shared_free(s, PAGE);
    return 0;
}

static int un_futex_mutex(struct bench_run *r)
{
    uint32_t *w = bench_shared(PAGE);
    UNCONTENDED_LOOP(r, "futex_mutex", (ref_mutex_lock(w), 0), (ref_mutex_unlock(w), 0));
    bench_shared_free(w, PAGE);
    return 0;
}

/* ====================================================================== */
/* contended: two processes, lock / ++counter / unlock                      */
/* ====================================================================== */

enum lock_kind { LK_FIPC, LK_PTHREAD };

struct contend {
    /* The counter shares the lock's cache line, as a protected field
     * usually does: the holder's increment is part of the cost. */
    _Alignas(CACHELINE) union {
        fipc_lock fipc;
        pthread_mutex_t pthread;
    } lock;
    uint64_t counter;
    _Alignas(CACHELINE) int64_t t0[2], t1[2];
};

static int contend_worker(struct contend *s, enum lock_kind kind, int id, uint64_t n,
                          struct bench_gate *g)
{
    /* One worker per CPU: left to the scheduler, both often share a CPU
     * and take turns by time slice, which measures hardly any contention
     * (a handful of hand-overs in 10^7 operations). */
    if (bench_pin_cpu(id) < 0) return -1;
    if (bench_gate_pass(g) < 0) return bench_fail("gate: the runner went away");
    s->t0[id] = bench_now_ns();
    if (kind == LK_FIPC) {
        for (uint64_t i = 0; i < n; i++) {
            int rc = fipc_lock_acquire(&s->lock.fipc, FIPC_FOREVER);
            if (rc)
                return bench_fail("fipc_lock_acquire #%llu: %s", (unsigned long long)i,
                                  fipc_strerror(rc));
            s->counter++;
            rc = fipc_lock_release(&s->lock.fipc);
            if (rc)
                return bench_fail("fipc_lock_release #%llu: %s", (unsigned long long)i,
                                  fipc_strerror(rc));
        }
    } else {
        for (uint64_t i = 0; i < n; i++) {
            int rc = pthread_mutex_lock(&s->lock.pthread);
            if (rc) return bench_fail("pthread_mutex_lock: %s", strerror(rc));
            s->counter++;
            rc = pthread_mutex_unlock(&s->lock.pthread);
            if (rc) return bench_fail("pthread_mutex_unlock: %s", strerror(rc));
        }
    }
    s->t1[id] = bench_now_ns();
    return 0;
}

static int contended(struct bench_run *r)
{
    enum lock_kind kind = (enum lock_kind)(intptr_t)r->arg;
    struct contend *s = bench_shared(sizeof *s);
    int rc = 0;
    if (kind == LK_FIPC) {
        if ((rc = fipc_lock_init(&s->lock.fipc)) != 0)
            return bench_fail("fipc_lock_init: %s", fipc_strerror(rc));
    } else if (init_pthread_mutex(&s->lock.pthread, false) < 0) {
        return -1;
    }
    uint64_t per = r->iters / 2 ? r->iters / 2 : 1;
    struct bench_gate g;
    if (bench_gate_init(&g) < 0) return -1;
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        pid[i] = bench_fork();
        if (pid[i] < 0) return -1;
        if (pid[i] == 0) _exit(contend_worker(s, kind, i, per, &g) == 0 ? 0 : 1);
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
    if (kind == LK_PTHREAD) pthread_mutex_destroy(&s->lock.pthread);
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

#define UNC(n, f, a, g)                                                                            \
    {                                                                                              \
        .group = "uncontended", .name = n, .baseline = "pthread_mutex_pshared",                    \
        .unit = BENCH_TIME, .op = "pair", .fn = f, .arg = a, .min_iters = 100000, .goal = g        \
    }
#define CON(n, k, g)                                                                               \
    {                                                                                              \
        .group = "contended", .name = n, .baseline = "pthread_mutex_pshared", .unit = BENCH_RATE,  \
        .op = "op", .fn = contended, .arg = (const void *)(intptr_t)(k), .min_iters = 100000,      \
        .goal = g                                                                                  \
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
     .fn = un_pthread_mutex,
     .min_iters = 100000},
    UNC("fipc_lock", un_fipc_lock, NULL, BENCH_GOAL_TIME_AT_MOST(1.0)),
    UNC("pthread_mutex_robust", un_pthread_mutex, "robust", 0),
    UNC("sem_t_pshared", un_sem_t, NULL, 0),
    UNC("fipc_rlock", un_fipc_rlock, NULL, 0),
    UNC("fipc_sem", un_fipc_sem, NULL, 0),
    UNC("futex_mutex_ref", un_futex_mutex, NULL, 0),

    {.group = "contended",
     .name = "pthread_mutex_pshared",
     .unit = BENCH_RATE,
     .op = "op",
     .fn = contended,
     .arg = (const void *)(intptr_t)LK_PTHREAD,
     .min_iters = 100000},
    CON("fipc_lock", LK_FIPC, BENCH_GOAL_RATE_AT_LEAST(1.0)),

    PP_GROUP("pingpong", PP_ANY, BENCH_GOAL_TIME_AT_MOST(1.2)),
    PP_GROUP("pingpong-2cpu", PP_SPLIT, 0),
    PP_GROUP("pingpong-1cpu", PP_SAME, 0),
};
BENCH_SUITE(sync, sync_cases)
