/*
 * test_lock.c - fipc_lock: mutual exclusion across processes.
 *
 * The lock contract (lock_contract.h) runs on fipc_lock: exclusion under
 * 4 hammering processes, snapshots, timeouts, signals, wake-ups, owner
 * death (a killed process, an exited thread), release-then-die, a death
 * between release and wake, releases by non-owners and NULL arguments.
 * Here besides: the ticket-sale seed, an acquire by the holder (a Lock
 * is not recursive), the robust list's bookkeeping, children the C
 * library did not make, another pid namespace, and the liveness check of
 * an owner without a robust list (a recorded tid that names a newer
 * thread, a word without a record).
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 * Children also ask for SIGKILL when the test process dies, so a failed
 * assertion in the parent never leaves one running.
 */
#include "common.h"
#include "futex_faults.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

/* Built twice (test/meson.build): as suite lock, and with LC_NO_ROBUST_LIST
 * as suite lock_norobust, where no thread uses the kernel's robust list
 * and a dead owner is found by the waiters' liveness check
 * (lock_contract.h). */
#ifdef LC_NO_ROBUST_LIST
#define LC_SUITE lock_norobust
#else
#define LC_SUITE lock
#endif
TestSuite(LC_SUITE, .timeout = 120);

#include "lock_contract.h"

LOCK_CONTRACT(lock)

/* ---- The ticket-sale seed: one ticket in a file, ten buyers ---- */

#define BUYERS 10

struct ticket_sale {
    fipc_lock *lock;
    char path[64];
    uint32_t ready, go;
    uint32_t attempts;  /* under the lock */
    uint32_t purchases; /* under the lock */
};

static int read_count(const char *path, long *count)
{
    char buf[32];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    char *end;
    *count = strtol(buf, &end, 10);
    return end == buf ? -1 : 0;
}

static int write_count(const char *path, long count)
{
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld", count);
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, buf, (size_t)len);
    close(fd);
    return n == len ? 0 : -1;
}

static int buyer_child(int i, void *arg)
{
    struct ticket_sale *s = arg;
    long count;
    test_child_setup();
    /* Everyone looks at the tickets first, as in the seed, then they all
     * rush to buy at once. */
    CHILD_CHECK(read_count(s->path, &count) == 0, 1);
    __atomic_fetch_add(&s->ready, 1, __ATOMIC_ACQ_REL);
    CHILD_CHECK(test_wait_until_at_least(&s->go, 1, HANDSHAKE_NS), 2);

    CHILD_CHECK(fipc_lock_acquire(s->lock, FIPC_FOREVER) == 0, 3);
    CHILD_CHECK(read_count(s->path, &count) == 0, 4);
    s->attempts++;
    /* Widen the window between read and write: without exclusion, another
     * buyer would read the same "1" here. */
    sched_yield();
    if (count > 0) {
        count--;
        s->purchases++;
    }
    sched_yield();
    CHILD_CHECK(write_count(s->path, count) == 0, 5);
    CHILD_CHECK(fipc_lock_release(s->lock) == 0, 6);
    return CHILD_OK;
}

Test(LC_SUITE, ticket_sale_sells_the_one_ticket_exactly_once)
{
    struct ticket_sale *s = test_shared(sizeof *s);
    s->lock = fipc_lock_new(NULL);
    cr_assert_not_null(s->lock);
    strcpy(s->path, "/tmp/fipc_ticket_XXXXXX");
    int fd = mkstemp(s->path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    close(fd);
    cr_assert_eq(write_count(s->path, 1), 0);

    pid_t pids[BUYERS];
    for (int i = 0; i < BUYERS; i++)
        pids[i] = test_fork(buyer_child, i, s);
    cr_assert(test_wait_until_at_least(&s->ready, BUYERS, HANDSHAKE_NS), "only %u buyers got ready",
              s->ready);
    test_flag_set(&s->go, 1);
    test_reap_within(pids, BUYERS, REAP_NS);

    long count = -1;
    cr_assert_eq(read_count(s->path, &count), 0);
    unlink(s->path);
    cr_assert_eq(s->attempts, BUYERS, "%u buyers tried, want %d", s->attempts, BUYERS);
    cr_assert_eq(s->purchases, 1, "%u tickets sold, want exactly 1", s->purchases);
    cr_assert_eq(count, 0, "file holds %ld tickets, want 0", count);
}

/* ---- The holder acquires again ---- */

Test(LC_SUITE, acquire_of_a_lock_the_caller_holds_gives_eagain_or_edeadlk)
{
    fipc_lock *l = fipc_lock_new(NULL);
    cr_assert_not_null(l);
    cr_assert_eq(fipc_lock_acquire(l, 0), 0);
    cr_assert_eq(fipc_lock_acquire(l, 0), -EAGAIN, "a try-lock fails, as Python's does");
    cr_assert_eq(fipc_lock_acquire(l, FIPC_MSEC(10)), -EDEADLK);
    cr_assert_eq(fipc_lock_acquire(l, FIPC_FOREVER), -EDEADLK, "must not hang");
    cr_assert(fipc_lock_locked(l));
    cr_assert_eq(fipc_lock_release(l), 0, "one release frees it: no recursion");
    cr_assert_not(fipc_lock_locked(l));
}

/* ---- The robust list: the owner's record is private ---- */

/* Private memory of every test process (each has its own copy at the same
 * address): a release that wrote through links a peer put in a lock would
 * change it. */
static uint64_t canary[2] = {0x1111, 0x2222};

struct scribble {
    fipc_lock *below, *top;
    uint32_t held;      /* the holder has both locks */
    uint32_t scribbled; /* the peer overwrote top's links (1: pointers at canary, 2: garbage) */
    uint32_t released;  /* the holder released top (and took it again after step 1) */
};

/* Bytes 24..39 of a lock: the robust links (docs/lock.md, Layout). */
static void overwrite_links(fipc_lock *l, uint64_t prev, uint64_t next)
{
    uint64_t *w = (uint64_t *)l;
    w[3] = prev;
    w[4] = next;
}

static int hold_two_and_release_top_child(int i, void *arg)
{
    struct scribble *s = arg;
    test_child_setup();
    CHILD_CHECK(fipc_lock_acquire(s->below, 0) == 0, 1);
    CHILD_CHECK(fipc_lock_acquire(s->top, 0) == 0, 2);
    test_flag_set(&s->held, 1);
    CHILD_CHECK(test_wait_until_at_least(&s->scribbled, 1, HANDSHAKE_NS), 3);
    CHILD_CHECK(fipc_lock_release(s->top) == 0, 4);
    CHILD_CHECK(canary[0] == 0x1111 && canary[1] == 0x2222, 5);
    CHILD_CHECK(fipc_lock_acquire(s->top, 0) == 0, 6);
    test_flag_set(&s->released, 1);
    CHILD_CHECK(test_wait_until_at_least(&s->scribbled, 2, HANDSHAKE_NS), 7);
    /* Links into unmapped memory: following them would crash. */
    CHILD_CHECK(fipc_lock_release(s->top) == 0, 8);
    test_flag_set(&s->released, 2);
    /* Killed here, still holding below. */
    CHILD_CHECK(test_wait_until_at_least(&s->scribbled, 3, FIPC_SEC(50)), 9);
    return CHILD_OK;
}

/* A peer may write anything into a lock that another process holds,
 * including its robust links: the owner never follows them.  Its release
 * writes nothing outside the lock, and the kernel's list is rebuilt from
 * the owner's private record, so the lock it still holds is recovered when
 * it dies. */
Test(LC_SUITE, release_never_follows_links_a_peer_wrote_and_the_lock_below_stays_recoverable)
{
    struct scribble *s = test_shared(sizeof *s);
    s->below = fipc_lock_new(NULL);
    s->top = fipc_lock_new(NULL);
    cr_assert(s->below && s->top);
    pid_t pid = test_fork(hold_two_and_release_top_child, 0, s);
    cr_assert(test_wait_until_at_least(&s->held, 1, HANDSHAKE_NS), "the holder never ran");

    overwrite_links(s->top, (uint64_t)(uintptr_t)&canary[0], (uint64_t)(uintptr_t)&canary[1] + 8);
    test_flag_set(&s->scribbled, 1);
    cr_assert(test_wait_until_at_least(&s->released, 1, HANDSHAKE_NS), "the holder never released");
    overwrite_links(s->top, 0xdead0000, 0xbeef0000);
    test_flag_set(&s->scribbled, 2);
    cr_assert(test_wait_until_at_least(&s->released, 2, HANDSHAKE_NS),
              "the release through garbage links did not return");

    test_kill_and_reap(pid);
    cr_assert_eq(fipc_lock_acquire(s->below, FIPC_SEC(5)), -EOWNERDEAD,
                 "the lock the holder kept was not recovered at its death");
    cr_assert_eq(fipc_lock_release(s->below), 0);
    cr_assert_eq(fipc_lock_acquire(s->top, 0), 0, "top was released, so no death to report");
    cr_assert_eq(fipc_lock_release(s->top), 0);
}

#define MIXED_FIPC  4
#define MIXED_GLIBC 3

struct mixed {
    fipc_lock *f[MIXED_FIPC];
    pthread_mutex_t g[MIXED_GLIBC];
    uint32_t held;
};

static int mixed_holder_child(int i, void *arg)
{
    struct mixed *m = arg;
    test_child_setup();
    /* glibc's robust mutexes and fipc locks share the thread's robust list;
     * glibc links at the head and unlinks through its own prev links. */
    CHILD_CHECK(pthread_mutex_lock(&m->g[0]) == 0, 1);
    CHILD_CHECK(fipc_lock_acquire(m->f[0], 0) == 0, 2);
    CHILD_CHECK(pthread_mutex_lock(&m->g[1]) == 0, 3);
    CHILD_CHECK(fipc_lock_acquire(m->f[1], 0) == 0, 4);
    CHILD_CHECK(fipc_lock_acquire(m->f[2], 0) == 0, 5);
    CHILD_CHECK(pthread_mutex_unlock(&m->g[1]) == 0, 6);
    CHILD_CHECK(fipc_lock_release(m->f[1]) == 0, 7); /* from the middle */
    CHILD_CHECK(pthread_mutex_unlock(&m->g[0]) == 0, 8);
    CHILD_CHECK(pthread_mutex_lock(&m->g[2]) == 0, 9);
    CHILD_CHECK(fipc_lock_acquire(m->f[3], 0) == 0, 10);
    test_flag_set(&m->held, 1);
    CHILD_CHECK(test_wait_until_at_least(&m->held, 2, FIPC_SEC(50)), 11);
    return CHILD_OK;
}

Test(LC_SUITE, death_recovers_exactly_the_locks_held_with_glibc_robust_mutexes_interleaved)
{
    struct mixed *m = test_shared(sizeof *m);
    pthread_mutexattr_t a;
    cr_assert_eq(pthread_mutexattr_init(&a), 0);
    cr_assert_eq(pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED), 0);
    cr_assert_eq(pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST), 0);
    for (int i = 0; i < MIXED_GLIBC; i++)
        cr_assert_eq(pthread_mutex_init(&m->g[i], &a), 0);
    for (int i = 0; i < MIXED_FIPC; i++)
        cr_assert_not_null(m->f[i] = fipc_lock_new(NULL));

    pid_t pid = test_fork(mixed_holder_child, 0, m);
    cr_assert(test_wait_until_at_least(&m->held, 1, HANDSHAKE_NS), "the holder never got there");
    test_kill_and_reap(pid);

    static const int fipc_held[MIXED_FIPC] = {1, 0, 1, 1};
    static const int glibc_held[MIXED_GLIBC] = {0, 0, 1};
    for (int i = 0; i < MIXED_FIPC; i++) {
        int r = fipc_lock_acquire(m->f[i], FIPC_SEC(5));
        cr_assert_eq(r, fipc_held[i] ? -EOWNERDEAD : 0, "fipc lock %d: acquire gave %d", i, r);
        cr_assert_eq(fipc_lock_release(m->f[i]), 0);
    }
    for (int i = 0; i < MIXED_GLIBC; i++) {
        int r = pthread_mutex_lock(&m->g[i]);
        cr_assert_eq(r, glibc_held[i] ? EOWNERDEAD : 0, "glibc mutex %d: lock gave %d", i, r);
        if (r == EOWNERDEAD) cr_assert_eq(pthread_mutex_consistent(&m->g[i]), 0);
        cr_assert_eq(pthread_mutex_unlock(&m->g[i]), 0);
    }
}

#define MANY_LOCKS 1000

struct many {
    fipc_lock *l[MANY_LOCKS];
    uint32_t held;
};

/* Holds more locks at once than the first page of its record takes, and
 * lets go of some from the middle. */
static int many_holder_child(int i, void *arg)
{
    struct many *m = arg;
    test_child_setup();
    for (int k = 0; k < MANY_LOCKS; k++)
        CHILD_CHECK(fipc_lock_acquire(m->l[k], 0) == 0, 1);
    for (int k = MANY_LOCKS / 2; k < MANY_LOCKS; k += 3)
        CHILD_CHECK(fipc_lock_release(m->l[k]) == 0, 2);
    for (int k = MANY_LOCKS / 2 - 1; k >= 0; k -= 3)
        CHILD_CHECK(fipc_lock_release(m->l[k]) == 0, 3);
    test_flag_set(&m->held, 1);
    CHILD_CHECK(test_wait_until_at_least(&m->held, 2, FIPC_SEC(50)), 4);
    return CHILD_OK;
}

static bool many_released(int k)
{
    return k >= MANY_LOCKS / 2 ? (k - MANY_LOCKS / 2) % 3 == 0 : (MANY_LOCKS / 2 - 1 - k) % 3 == 0;
}

Test(LC_SUITE, a_holder_of_1000_locks_that_is_killed_leaves_each_held_one_to_eownerdead)
{
    struct many *m = test_shared(sizeof *m);
    for (int k = 0; k < MANY_LOCKS; k++)
        cr_assert_not_null(m->l[k] = fipc_lock_new(NULL));
    pid_t pid = test_fork(many_holder_child, 0, m);
    cr_assert(test_wait_until_at_least(&m->held, 1, HANDSHAKE_NS), "the holder never got there");
    test_kill_and_reap(pid);
    for (int k = 0; k < MANY_LOCKS; k++) {
        int r = fipc_lock_acquire(m->l[k], FIPC_SEC(5));
        cr_assert_eq(r, many_released(k) ? 0 : -EOWNERDEAD, "lock %d: acquire gave %d", k, r);
        cr_assert_eq(fipc_lock_release(m->l[k]), 0);
    }
}

/* ---- Children the C library did not make: _Fork and raw clone ---- */

struct fork_probe {
    fipc_lock *theirs; /* held by the parent */
    fipc_lock *free_one;
    uint32_t word_tid; /* what the child found in free_one's word after taking it */
    uint32_t child_tid;
};

/* In a child that shares nothing of glibc's fork bookkeeping: the parent's
 * lock is the parent's, and a lock the child takes carries the child's id. */
static int stranger_probe(struct fork_probe *p, bool keep)
{
    CHILD_CHECK(fipc_lock_release(p->theirs) == -EPERM, 1);
    CHILD_CHECK(fipc_lock_acquire(p->theirs, 0) == -EAGAIN, 2);
    CHILD_CHECK(fipc_lock_acquire(p->theirs, FIPC_MSEC(10)) == -ETIMEDOUT, 3);
    CHILD_CHECK(fipc_lock_acquire(p->free_one, 0) == 0, 4); /* the fast path */
    p->word_tid = *(volatile uint32_t *)p->free_one & 0x3fffffff;
    p->child_tid = (uint32_t)syscall(SYS_gettid);
    CHILD_CHECK(p->word_tid == p->child_tid, 5);
    CHILD_CHECK(fipc_lock_acquire(p->free_one, FIPC_MSEC(10)) == -EDEADLK, 6);
    if (!keep) CHILD_CHECK(fipc_lock_release(p->free_one) == 0, 7);
    return CHILD_OK;
}

static struct fork_probe *new_fork_probe(void)
{
    struct fork_probe *p = test_shared(sizeof *p);
    cr_assert_not_null(p->theirs = fipc_lock_new(NULL));
    cr_assert_not_null(p->free_one = fipc_lock_new(NULL));
    /* The parent's thread state is set up (its id cached) before the fork. */
    cr_assert_eq(fipc_lock_acquire(p->theirs, 0), 0);
    return p;
}

static void expect_exit_ok(pid_t pid)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid, "waitpid: %s", strerror(errno));
    cr_assert(WIFEXITED(status), "the child died of signal %d", WTERMSIG(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "the child failed check %d", WEXITSTATUS(status));
}

Test(LC_SUITE, a_child_of__Fork_is_not_taken_for_its_parent_on_any_path)
{
    struct fork_probe *p = new_fork_probe();
    pid_t pid = _Fork(); /* no atfork handler runs in the child */
    cr_assert_geq(pid, 0, "_Fork: %s", strerror(errno));
    if (pid == 0) {
        test_child_setup();
        _exit(stranger_probe(p, true)); /* ends holding free_one */
    }
    expect_exit_ok(pid);
    cr_assert_neq(p->child_tid, (uint32_t)syscall(SYS_gettid));
    cr_assert(fipc_lock_locked(p->theirs), "the child's release freed the parent's lock");
    cr_assert_eq(fipc_lock_release(p->theirs), 0, "the parent still holds its lock");
    /* The child died holding free_one in its own name, so the kernel
     * recovered it. */
    cr_assert_eq(fipc_lock_acquire(p->free_one, FIPC_SEC(5)), -EOWNERDEAD);
    cr_assert_eq(fipc_lock_release(p->free_one), 0);
}

Test(LC_SUITE, a_child_of_a_raw_clone_is_not_taken_for_its_parent)
{
    struct fork_probe *p = new_fork_probe();
    /* Like fork, but through none of the C library's code. */
    long pid = syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
    cr_assert_geq(pid, 0, "clone: %s", strerror(errno));
    if (pid == 0) _exit(stranger_probe(p, false));
    expect_exit_ok((pid_t)pid);
    cr_assert(fipc_lock_locked(p->theirs), "the child's release freed the parent's lock");
    cr_assert_eq(fipc_lock_release(p->theirs), 0, "the parent still holds its lock");
    cr_assert_eq(fipc_lock_acquire(p->free_one, 0), 0, "the child released free_one");
    cr_assert_eq(fipc_lock_release(p->free_one), 0);
}

/* A raw clone child has no robust list (the kernel gives a new task none
 * and no C library registered one), so it records itself in the locks it
 * takes, and the waiters' liveness check finds its death. */
Test(LC_SUITE, a_child_of_a_raw_clone_that_ends_holding_a_lock_leaves_it_to_eownerdead)
{
    struct fork_probe *p = new_fork_probe();
    long pid = syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
    cr_assert_geq(pid, 0, "clone: %s", strerror(errno));
    if (pid == 0) _exit(stranger_probe(p, true)); /* ends holding free_one */
    expect_exit_ok((pid_t)pid);
    cr_assert(fipc_lock_locked(p->free_one));
    int64_t t0 = test_now_ns();
    int r = fipc_lock_acquire(p->free_one, HANDSHAKE_NS);
    int64_t took = test_now_ns() - t0;
    cr_assert_eq(r, -EOWNERDEAD, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert_lt(took, FIPC_SEC(2), "found dead after %lld ms", (long long)(took / 1000000));
    cr_assert_eq(fipc_lock_release(p->free_one), 0);
    cr_assert_eq(fipc_lock_release(p->theirs), 0, "the parent still holds its lock");
}

/* ---- Another pid namespace ---- */

struct pidns_probe {
    fipc_lock *lock; /* held by the parent's thread */
    pid_t holder_tid;
    pid_t stranger_tid; /* the prober's id in its own namespace */
    int32_t acquire1, release, acquire2;
};

/* Runs in a new pid namespace, with the holder's thread id as its own. */
static int pidns_stranger(struct pidns_probe *p)
{
    p->stranger_tid = (pid_t)syscall(SYS_gettid);
    p->acquire1 = fipc_lock_acquire(p->lock, 0);
    p->release = fipc_lock_release(p->lock);
    p->acquire2 = fipc_lock_acquire(p->lock, FIPC_MSEC(10));
    return CHILD_OK;
}

/* Fork into a new pid namespace; its first process (pid 1) makes the next
 * pid be want and forks fn there.  Exits with fn's status; 100 + n when
 * step n of the set-up failed. */
static int in_new_pidns(pid_t want, int (*fn)(void *), void *arg)
{
    if (unshare(CLONE_NEWPID) != 0 && unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0) return 101;
    pid_t init = fork();
    if (init < 0) return 102;
    if (init == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (want > 1) {
            char b[16];
            int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY);
            int len = snprintf(b, sizeof b, "%d", (int)want - 1);
            if (fd < 0 || write(fd, b, (size_t)len) != len) _exit(103);
            close(fd);
        }
        pid_t c = fork();
        if (c < 0) _exit(104);
        if (c == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            _exit(fn(arg));
        }
        int status;
        if (waitpid(c, &status, 0) != c || !WIFEXITED(status)) _exit(105);
        _exit(WEXITSTATUS(status));
    }
    int status;
    if (waitpid(init, &status, 0) != init || !WIFEXITED(status)) return 106;
    return WEXITSTATUS(status);
}

static int pidns_stranger_fn(void *arg)
{
    return pidns_stranger(arg);
}

static int pidns_child(int i, void *arg)
{
    struct pidns_probe *p = arg;
    test_child_setup();
    return in_new_pidns(p->holder_tid, pidns_stranger_fn, p);
}

/* A thread id means something only within its pid namespace: a thread of
 * another namespace that carries the holder's number is still a stranger
 * to the lock. */
Test(LC_SUITE, a_thread_of_another_pid_namespace_with_the_holders_id_does_not_own_the_lock)
{
    struct pidns_probe *p = test_shared(sizeof *p);
    cr_assert_not_null(p->lock = fipc_lock_new(NULL));
    cr_assert_eq(fipc_lock_acquire(p->lock, 0), 0);
    p->holder_tid = (pid_t)syscall(SYS_gettid);

    pid_t pid = test_fork(pidns_child, 0, p);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "setting up the other namespace failed (status %#x)", status);
    cr_assert_eq(p->stranger_tid, p->holder_tid, "the stranger got id %d, not the holder's %d",
                 (int)p->stranger_tid, (int)p->holder_tid);
    cr_assert_eq(p->acquire1, -EAGAIN, "acquire gave %d", p->acquire1);
    cr_assert_eq(p->release, -EPERM, "release by the stranger gave %d", p->release);
    cr_assert_eq(p->acquire2, -ETIMEDOUT, "acquire gave %d", p->acquire2);
    cr_assert(fipc_lock_locked(p->lock));
    cr_assert_eq(fipc_lock_release(p->lock), 0, "the holder still holds it");
    cr_assert_not(fipc_lock_locked(p->lock));
}

/* ---- The liveness check: a thread id that names another thread ---- */

/* Field 22 of /proc/PID/stat: when pid started, in clock ticks since boot. */
static uint64_t proc_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    cr_assert_not_null(p);
    for (int field = 2; field < 22; p++) {
        cr_assert(*p, "%s: short", path);
        if (*p == ' ') field++;
    }
    return strtoull(p, NULL, 10);
}

static int live_child(int i, void *arg)
{
    test_child_setup();
    for (;;) /* until killed */
        pause();
    return CHILD_OK; /* not reached */
}

/* A lock in the state an owner without a robust list leaves: its word
 * names tid, its record says the owner is tid started at start, in pid
 * namespace ns (docs/lock.md, Layout). */
static void forge_held(fipc_lock *l, pid_t tid, uint64_t start, uint32_t ns)
{
    struct {
        uint32_t word, count;
        uint64_t owner;
        uint32_t owner_ns, spare;
    } *m = (void *)l;
    m->count = 0;
    m->owner_ns = ns;
    m->owner = (start & ((UINT64_C(1) << 34) - 1)) << 30 | (uint32_t)tid;
    __atomic_store_n(&m->word, (uint32_t)tid, __ATOMIC_RELEASE);
}

/* The recorded owner's tid belongs to a live thread: if that thread
 * started when the record says, it is the owner and the waiter waits; if
 * it started at another time, the owner ended and its tid went to a new
 * thread, and the waiter takes the lock with -EOWNERDEAD.  A record from
 * another pid namespace cannot be checked here: the waiter waits. */
Test(LC_SUITE, a_recorded_owner_whose_tid_names_a_newer_thread_is_found_dead)
{
    fipc_lock *l = fipc_lock_new(NULL);
    cr_assert_not_null(l);
    struct stat st;
    cr_assert_eq(stat("/proc/self/ns/pid", &st), 0);
    uint32_t ns = (uint32_t)st.st_ino;
    pid_t pid = test_fork(live_child, 0, NULL);
    uint64_t start = proc_start_time(pid);

    forge_held(l, pid, start, ns);
    int r = fipc_lock_acquire(l, FIPC_MSEC(200));
    cr_assert_eq(r, -ETIMEDOUT, "the owner lives, yet acquire gave %d (%s)", r, fipc_strerror(r));
    forge_held(l, pid, start + 1, ns ^ 1);
    r = fipc_lock_acquire(l, FIPC_MSEC(200));
    cr_assert_eq(r, -ETIMEDOUT, "a record of another namespace: acquire gave %d (%s)", r,
                 fipc_strerror(r));

    forge_held(l, pid, start + 1, ns);
    int64_t t0 = test_now_ns();
    r = fipc_lock_acquire(l, HANDSHAKE_NS);
    int64_t took = test_now_ns() - t0;
    cr_assert_eq(r, -EOWNERDEAD, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert_lt(took, FIPC_SEC(2), "found dead after %lld ms", (long long)(took / 1000000));
    cr_assert_eq(fipc_lock_release(l), 0);
    cr_assert_eq(fipc_lock_acquire(l, 0), 0, "the death is reported once");
    cr_assert_eq(fipc_lock_release(l), 0);
    test_kill_and_reap(pid);
}

static int exit_child(int i, void *arg)
{
    return CHILD_OK;
}

/* A word that names an owner without its record is what an owner without
 * a robust list leaves if it dies between taking the word and recording
 * itself (or between clearing its record and releasing).  A waiter without
 * a robust list checks the tid alone: a tid that names no thread is a dead
 * owner; a live thread's tid is the owner's.  A waiter with a robust list
 * leaves such a word to the kernel. */
Test(LC_SUITE, a_word_without_a_record_is_checked_for_its_tid_alone_without_a_robust_list)
{
    fipc_lock *l = fipc_lock_new(NULL);
    cr_assert_not_null(l);
    pid_t live = test_fork(live_child, 0, NULL);
    forge_held(l, live, 0, 0);
    *((uint64_t *)l + 1) = 0; /* no record */
    uint64_t checks = fipc__lock_owner_check_count();
    int r = fipc_lock_acquire(l, FIPC_MSEC(200));
    cr_assert_eq(r, -ETIMEDOUT, "the owner lives, yet acquire gave %d (%s)", r, fipc_strerror(r));
    uint64_t made = fipc__lock_owner_check_count() - checks;
    if (LC_ROBUST)
        cr_assert_eq(made, 0, "a waiter with a robust list checked a bare word");
    else
        cr_assert_geq(made, 1, "the waiter never checked the bare word's tid");
    test_kill_and_reap(live);

    pid_t gone = test_fork(exit_child, 0, NULL);
    test_expect_ok(gone); /* reaped: its tid names no thread now */
    forge_held(l, gone, 0, 0);
    *((uint64_t *)l + 1) = 0;
    if (LC_ROBUST) {
        r = fipc_lock_acquire(l, FIPC_MSEC(200));
        cr_assert_eq(r, -ETIMEDOUT, "acquire gave %d (%s)", r, fipc_strerror(r));
        return;
    }
    int64_t t0 = test_now_ns();
    r = fipc_lock_acquire(l, HANDSHAKE_NS);
    int64_t took = test_now_ns() - t0;
    cr_assert_eq(r, -EOWNERDEAD, "acquire gave %d (%s)", r, fipc_strerror(r));
    cr_assert_lt(took, FIPC_SEC(2), "found dead after %lld ms", (long long)(took / 1000000));
    cr_assert_eq(fipc_lock_release(l), 0);
    cr_assert_not(fipc_lock_locked(l));
}

/* ---- Thread exit with locks held ---- */

#define EXIT_LOCKS   64
#define EXIT_THREADS 1000

static int mapping_count(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    cr_assert_not_null(f);
    int n = 0;
    for (int c; (c = fgetc(f)) != EOF;)
        n += c == '\n';
    fclose(f);
    return n;
}

static void *hold_and_exit_thread(void *arg)
{
    int r = fipc_lock_acquire(arg, FIPC_SEC(50));
    return (void *)(intptr_t)(r == -EOWNERDEAD ? 0 : r);
}

static void run_thread_on(void *(*fn)(void *), void *arg, intptr_t want)
{
    pthread_t t;
    void *ret;
    cr_assert_eq(pthread_create(&t, NULL, fn, arg), 0);
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_eq((intptr_t)ret, want, "the thread gave %d", (int)(intptr_t)ret);
}

/* A thread that ends holding a lock (as every thread that used an MPMC
 * queue ends holding its claimer record's) leaves the lock to -EOWNERDEAD
 * and takes its private record with it: a service that starts threads by
 * the thousand must not run out of mappings. */
Test(LC_SUITE, threads_that_exit_holding_locks_leave_no_mapping_behind)
{
    fipc_lock *l[EXIT_LOCKS];
    for (int i = 0; i < EXIT_LOCKS; i++)
        cr_assert_not_null(l[i] = fipc_lock_new(NULL));
    /* The first threads settle the C library's stack cache. */
    for (int t = 0; t < EXIT_LOCKS; t++)
        run_thread_on(hold_and_exit_thread, l[t], 0);
    int before = mapping_count();
    for (int t = EXIT_LOCKS; t < EXIT_THREADS; t++)
        run_thread_on(hold_and_exit_thread, l[t % EXIT_LOCKS], 0);
    int grew = mapping_count() - before;
    cr_assert_lt(grew, EXIT_LOCKS, "%d threads left %d more mappings", EXIT_THREADS - EXIT_LOCKS,
                 grew);
    for (int i = 0; i < EXIT_LOCKS; i++) {
        int r = fipc_lock_acquire(l[i], FIPC_SEC(5));
        cr_assert_eq(r, -EOWNERDEAD, "lock %d: acquire gave %d (%s)", i, r, fipc_strerror(r));
        cr_assert_eq(fipc_lock_release(l[i]), 0);
    }
}

struct late {
    fipc_lock *held, *other;
    pthread_key_t key;
    int round, release_in; /* the destructor's round that releases held */
    int released, acquired;
};

static void late_destructor(void *p)
{
    struct late *d = p;
    if (++d->round < d->release_in) {
        pthread_setspecific(d->key, d);
        return;
    }
    d->released = fipc_lock_release(d->held);
    d->acquired = fipc_lock_acquire(d->other, 0);
    if (d->acquired == 0) fipc_lock_release(d->other);
}

static void *late_thread(void *arg)
{
    struct late *d = arg;
    int r = fipc_lock_acquire(d->held, FIPC_SEC(5));
    if (r == 0) pthread_setspecific(d->key, d);
    return (void *)(intptr_t)r;
}

/* What a destructor's calls in the last round gave, and the lock the
 * thread still held, left to the kernel's mark. */
static void expect_last_round(struct late *d)
{
    cr_assert_eq(d->released, -EPERM, "release in the last round gave %d", d->released);
    cr_assert_eq(d->acquired, -ENOMEM, "acquire in the last round gave %d", d->acquired);
    int r = fipc_lock_acquire(d->held, FIPC_SEC(5));
    cr_assert_eq(r, -EOWNERDEAD, "acquire after the thread gave %d (%s)", r, fipc_strerror(r));
    cr_assert_eq(fipc_lock_release(d->held), 0);
    pthread_key_delete(d->key);
}

/* fipc's own destructor (its key made before main) runs first in each
 * round of the C library's destructor rounds, and keeps a thread's record
 * while the thread holds locks: a later destructor in an early round
 * releases as any call would.  In the last round the record goes first,
 * and a call after it finds nothing to release (-EPERM) and no record to
 * acquire with (-ENOMEM); the lock still held is the kernel's to mark. */
Test(LC_SUITE, a_later_destructor_releases_what_the_thread_held_until_the_last_round)
{
    struct late d = {.held = fipc_lock_new(NULL), .other = fipc_lock_new(NULL)};
    cr_assert(d.held && d.other);
    cr_assert_eq(pthread_key_create(&d.key, late_destructor), 0);

    d.release_in = 1;
    run_thread_on(late_thread, &d, 0);
    cr_assert_eq(d.released, 0, "release in round 1 gave %d", d.released);
    cr_assert_eq(d.acquired, 0, "acquire in round 1 gave %d", d.acquired);
    cr_assert_eq(fipc_lock_acquire(d.held, 0), 0, "released, yet not free");
    cr_assert_eq(fipc_lock_release(d.held), 0);

    d.round = 0;
    d.release_in = PTHREAD_DESTRUCTOR_ITERATIONS;
    run_thread_on(late_thread, &d, 0);
    expect_last_round(&d);
}

/* A destructor that releases everything in one round and takes a lock
 * again in the next: the round that unmapped the record without locks
 * counts, so the record still goes in the last round. */
static void retake_destructor(void *p)
{
    struct late *d = p;
    ++d->round;
    if (d->round == 1)
        d->released = fipc_lock_release(d->held);
    else if (d->round == 2)
        d->acquired = fipc_lock_acquire(d->held, 0);
    if (d->round < PTHREAD_DESTRUCTOR_ITERATIONS) {
        pthread_setspecific(d->key, d);
        return;
    }
    d->released = d->released ?: fipc_lock_release(d->held);
    d->acquired = d->acquired ?: fipc_lock_acquire(d->other, 0);
}

Test(LC_SUITE, a_lock_taken_again_by_a_later_destructor_loses_the_record_in_the_last_round)
{
    struct late d = {.held = fipc_lock_new(NULL), .other = fipc_lock_new(NULL)};
    cr_assert(d.held && d.other);
    cr_assert_eq(pthread_key_create(&d.key, retake_destructor), 0);
    run_thread_on(late_thread, &d, 0);
    cr_assert_eq(d.round, PTHREAD_DESTRUCTOR_ITERATIONS);
    expect_last_round(&d);
}

struct fork_late {
    struct fork_probe *p;
    fipc_lock *held; /* NULL: the thread ends holding nothing */
    pthread_key_t key;
    int round, fork_in, status;
};

static void fork_destructor(void *arg)
{
    struct fork_late *f = arg;
    if (++f->round < f->fork_in) {
        pthread_setspecific(f->key, f);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        test_child_setup();
        _exit(stranger_probe(f->p, false));
    }
    f->status = -1;
    if (pid > 0 && waitpid(pid, &f->status, 0) != pid) f->status = -1;
}

static void *fork_late_thread(void *arg)
{
    struct fork_late *f = arg;
    int r = fipc_lock_acquire(f->held ? f->held : f->p->free_one, 0);
    if (r == 0 && !f->held) r = fipc_lock_release(f->p->free_one);
    if (r == 0) pthread_setspecific(f->key, f);
    return (void *)(intptr_t)r;
}

/* A child forked by a destructor after fipc's has unmapped the thread's
 * record, with a lock held (in the last round) or none (in the first):
 * its thread is new to its process, takes locks in its own name, and the
 * parent's lock is not its own. */
static void fork_after_record_free(bool holding)
{
    struct fork_late f = {.p = new_fork_probe(),
                          .fork_in = holding ? PTHREAD_DESTRUCTOR_ITERATIONS : 1};
    if (holding) cr_assert_not_null(f.held = fipc_lock_new(NULL));
    cr_assert_eq(pthread_key_create(&f.key, fork_destructor), 0);
    run_thread_on(fork_late_thread, &f, 0);
    cr_assert_eq(f.round, f.fork_in);
    cr_assert(WIFEXITED(f.status), "the child died of signal %d", WTERMSIG(f.status));
    cr_assert_eq(WEXITSTATUS(f.status), 0, "the child failed check %d", WEXITSTATUS(f.status));
    cr_assert_eq(fipc_lock_release(f.p->theirs), 0, "the parent still holds its lock");
    cr_assert_eq(fipc_lock_acquire(f.p->free_one, 0), 0, "the child released free_one");
    cr_assert_eq(fipc_lock_release(f.p->free_one), 0);
    if (holding) {
        int r = fipc_lock_acquire(f.held, FIPC_SEC(5));
        cr_assert_eq(r, -EOWNERDEAD, "acquire after the thread gave %d (%s)", r, fipc_strerror(r));
        cr_assert_eq(fipc_lock_release(f.held), 0);
    }
    pthread_key_delete(f.key);
}

Test(LC_SUITE, a_child_forked_after_the_last_round_takes_locks_in_its_own_name)
{
    fork_after_record_free(true);
}

Test(LC_SUITE, a_child_forked_after_a_record_without_locks_went_takes_locks_in_its_own_name)
{
    fork_after_record_free(false);
}
