/*
 * common.h - helpers shared by fipc's Criterion tests.
 *
 * Children forked inside a test never call cr_assert: they report through
 * their exit status (0 = success, anything else names the failed check),
 * and the parent asserts on what waitpid says.
 */
#ifndef FIPC_TEST_COMMON_H
#define FIPC_TEST_COMMON_H

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fipc.h>

/* Bound on every wait that should end promptly: a handshake between test
 * processes, or a call that only has to wait for another process to make
 * progress.  Generous, since a loaded two-core machine (or a sanitizer
 * build) may not schedule a child for a long while: reaching it means a
 * lost wake-up or a hang, never a slow machine.  Short enough that a test
 * whose handshake fails still reports it within its suite's timeout. */
#define HANDSHAKE_NS FIPC_SEC(30)

/* How long children that only wait to be woken may take to finish. */
#define REAP_NS FIPC_SEC(30)

/* A child's verdict: exit(CHILD_FAIL(n)) names failed check n (1..120). */
#define CHILD_OK      0
#define CHILD_FAIL(n) (n)
/* Inside a child: leave with status n unless cond holds. */
#define CHILD_CHECK(cond, n)                                                                       \
    do {                                                                                           \
        if (!(cond)) _exit(n);                                                                     \
    } while (0)

/* Zeroed shared memory, inherited by forked children (MAP_SHARED). */
static inline void *test_shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert(p != MAP_FAILED, "mmap: %s", strerror(errno));
    return p;
}

/* Fork a child that runs fn(i, arg) and exits with its return value. */
static inline pid_t test_fork(int (*fn)(int i, void *arg), int i, void *arg)
{
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) _exit(fn(i, arg));
    return pid;
}

/* Wait for pid and assert it exited with status 0. */
static inline void test_expect_ok(pid_t pid)
{
    int status;
    cr_assert(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    cr_assert(WIFEXITED(status), "child %d died of signal %d", (int)pid,
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_assert(WEXITSTATUS(status) == 0, "child %d failed check %d", (int)pid, WEXITSTATUS(status));
}

/* Fork n children running fn(0..n-1, arg), wait for all, assert all ok. */
static inline void test_run_children(int n, int (*fn)(int i, void *arg), void *arg)
{
    pid_t pids[64];
    cr_assert(n <= 64);
    for (int i = 0; i < n; i++)
        pids[i] = test_fork(fn, i, arg);
    for (int i = 0; i < n; i++)
        test_expect_ok(pids[i]);
}

/* In a child: die with the test process, so a failed test leaves no child
 * behind (a stopped or blocked orphan would hold the runner's pipe open). */
static inline void test_child_setup(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* Publish v in a handshake flag that another process reads. */
static inline void test_flag_set(uint32_t *flag, uint32_t v)
{
    __atomic_store_n(flag, v, __ATOMIC_RELEASE);
}

/* Count one more arrival in a handshake counter shared by processes. */
static inline void test_flag_add(uint32_t *flag)
{
    __atomic_fetch_add(flag, 1, __ATOMIC_ACQ_REL);
}

/* Read a handshake flag or counter that another process writes. */
static inline uint32_t test_flag_get(const uint32_t *flag)
{
    return __atomic_load_n(flag, __ATOMIC_ACQUIRE);
}

/* A pidfd on pid (-1 and errno on failure): readable once pid has ended. */
static inline int test_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static inline int64_t test_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spin (yielding) until the expression cond holds, or give up after
 * limit_ns; evaluates to whether it held.  For states that no fd or futex
 * announces: a shared flag, a /proc state, a count of waiters. */
#define TEST_WAIT_UNTIL(cond, limit_ns)                                                            \
    ({                                                                                             \
        int64_t test_end_ = test_now_ns() + (limit_ns);                                            \
        bool test_held_ = true;                                                                    \
        while (!(cond)) {                                                                          \
            if (test_now_ns() > test_end_) {                                                       \
                test_held_ = false;                                                                \
                break;                                                                             \
            }                                                                                      \
            sched_yield();                                                                         \
        }                                                                                          \
        test_held_;                                                                                \
    })

/* Spin-wait (yielding) until *flag reaches at least want, or give up after
 * limit_ns; returns whether it did.  For handshakes between test processes:
 * the condition, not a sleep, decides when a test moves on. */
static inline bool test_wait_until_at_least(const volatile uint32_t *flag, uint32_t want,
                                            int64_t limit_ns)
{
    return TEST_WAIT_UNTIL(__atomic_load_n(flag, __ATOMIC_ACQUIRE) >= want, limit_ns);
}

/* Reap those of the n children in pids not yet done[], each as it ends (a
 * pidfd per child, polled; no sleeping), until all are reaped or the
 * monotonic clock passes end_ns; status[i] gets child i's wait status.
 * Returns how many are left running (never killed here). */
static inline int test_reap_until(const pid_t *pids, int *status, bool *done, int n, int64_t end_ns)
{
    struct pollfd pfd[64];
    int left = 0;
    cr_assert(n <= 64);
    for (int i = 0; i < n; i++) {
        pfd[i].fd = -1;
        pfd[i].events = POLLIN;
        pfd[i].revents = 0;
        if (done[i]) continue;
        pfd[i].fd = test_pidfd_open(pids[i]);
        cr_assert(pfd[i].fd >= 0, "pidfd_open(%d): %s", (int)pids[i], strerror(errno));
        left++;
    }
    while (left > 0) {
        int64_t rest = end_ns - test_now_ns();
        if (rest < 0) rest = 0;
        int r = poll(pfd, (nfds_t)n, (int)((rest + 999999) / 1000000));
        if (r < 0) {
            cr_assert(errno == EINTR, "poll: %s", strerror(errno));
            continue;
        }
        if (r == 0 && rest == 0) break;
        for (int i = 0; i < n; i++) {
            if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            pid_t w = waitpid(pids[i], &status[i], 0);
            cr_assert(w == pids[i], "waitpid(%d): %s", (int)pids[i], strerror(errno));
            close(pfd[i].fd);
            pfd[i].fd = -1;
            done[i] = true;
            left--;
        }
    }
    for (int i = 0; i < n; i++)
        if (pfd[i].fd >= 0) close(pfd[i].fd);
    return left;
}

/* Reap children whose blocking calls use FIPC_FOREVER: each must end by
 * itself within limit_ns, so a lost wake-up fails here (a child still
 * blocked) rather than passing late once a timeout ran out.  Asserts that
 * each exited with status 0; stragglers are killed. */
static inline void test_reap_within(const pid_t *pids, int n, int64_t limit_ns)
{
    int status[64];
    bool done[64] = {false};
    cr_assert(n <= 64);
    int left = test_reap_until(pids, status, done, n, test_now_ns() + limit_ns);
    if (left > 0) {
        for (int i = 0; i < n; i++)
            if (!done[i]) kill(pids[i], SIGKILL);
        cr_assert_fail("%d of %d children still blocked after %lld s", left, n,
                       (long long)(limit_ns / 1000000000));
    }
    for (int i = 0; i < n; i++) {
        cr_assert(WIFEXITED(status[i]), "child %d died of signal %d", i,
                  WIFSIGNALED(status[i]) ? WTERMSIG(status[i]) : 0);
        cr_assert_eq(WEXITSTATUS(status[i]), 0, "child %d failed check %d", i,
                     WEXITSTATUS(status[i]));
    }
}

/* Join a fipc_process and assert it exited with status 0. */
static inline void test_process_expect_ok(fipc_process *p)
{
    int r = fipc_process_join(p, HANDSHAKE_NS);
    cr_assert_eq(r, 0, "join %s: %s", fipc_process_name(p), fipc_strerror(r));
    int code = -1;
    cr_assert_eq(fipc_process_exitcode(p, &code), 0);
    cr_assert_eq(code, 0, "%s failed check %d", fipc_process_name(p), code);
    fipc_process_free(p);
}

/* Whether this program was built with AddressSanitizer. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifndef TEST_ASAN
#define TEST_ASAN 0
#endif

/* A stress count n, scaled: by FIPC_TEST_SCALE if set (a positive factor,
 * e.g. 0.1 or 10), and by a quarter under AddressSanitizer, where every
 * memory access costs several times as much and the suite must still fit
 * the time the release build takes.  Never below 1. */
static inline uint64_t test_scaled(uint64_t n)
{
    double f = TEST_ASAN ? 0.25 : 1.0;
    const char *e = getenv("FIPC_TEST_SCALE");
    if (e && *e) {
        double g = strtod(e, NULL);
        if (g > 0) f *= g;
    }
    double m = (double)n * f;
    return m < 1 ? 1 : (uint64_t)m;
}

/* Kill pid with SIGKILL, reap it, and assert that SIGKILL is what ended it. */
static inline void test_kill_and_reap(pid_t pid)
{
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "child %d ended otherwise than by SIGKILL (status %#x)", (int)pid, status);
}

/* A handler that does nothing: caught without SA_RESTART, SIGUSR1 cuts a
 * blocking futex wait short with EINTR. */
static inline void test_on_sigusr1(int sig)
{
    (void)sig;
}

/* Catch SIGUSR1 with test_on_sigusr1, without SA_RESTART. */
static inline void test_catch_sigusr1(void)
{
    struct sigaction sa = {.sa_handler = test_on_sigusr1}; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
}

/* A thread that interrupts the thread that started it with SIGUSR1 every
 * 2 ms until stopped: each signal breaks a futex wait, which must resume
 * with the time that remains rather than give up or return -EINTR.  If
 * then is set, it calls then(arg) once, after the 20th signal. */
struct test_pester {
    pthread_t target, thread;
    uint32_t stop; /* atomic */
    void (*then)(void *arg);
    void *arg;
};

static inline void *test_pester_thread(void *arg)
{
    struct test_pester *p = arg;
    for (int n = 0; !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE); n++) {
        pthread_kill(p->target, SIGUSR1);
        /* Not a poll: the pause between signals is the point, so that each
         * one lands in a fresh futex sleep and cuts it short. */
        usleep(2000);
        if (p->then && n == 20) p->then(p->arg);
    }
    return NULL;
}

/* Catch SIGUSR1 and start pestering the calling thread. */
static inline void test_pester_start(struct test_pester *p)
{
    test_catch_sigusr1();
    p->target = pthread_self();
    cr_assert_eq(pthread_create(&p->thread, NULL, test_pester_thread, p), 0);
}

/* Stop the pester thread and wait for it. */
static inline void test_pester_stop(struct test_pester *p)
{
    test_flag_set(&p->stop, 1);
    pthread_join(p->thread, NULL);
}

/* pid's state letter in /proc/PID/stat (S asleep, T stopped, ...), or 0
 * if it cannot be read. */
static inline char test_pid_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : 0;
}

/* Whether pid is asleep in the kernel (state S), for tests that must act
 * only once a waiter really sleeps on a futex. */
static inline bool test_pid_sleeping(pid_t pid)
{
    return test_pid_state(pid) == 'S';
}

/* Whether pid is stopped by a signal (state T), for tests that SIGSTOP a
 * waiter to hold it still inside a call. */
static inline bool test_pid_stopped(pid_t pid)
{
    return test_pid_state(pid) == 'T';
}

/* Wait (bounded by limit_ns) until pid sleeps in the kernel. */
static inline bool test_wait_sleeping(pid_t pid, int64_t limit_ns)
{
    return TEST_WAIT_UNTIL(test_pid_sleeping(pid), limit_ns);
}

/* Wait (bounded by limit_ns) until a SIGSTOP sent to pid has taken effect. */
static inline bool test_wait_stopped(pid_t pid, int64_t limit_ns)
{
    return TEST_WAIT_UNTIL(test_pid_stopped(pid), limit_ns);
}

#endif
