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
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fipc.h>

/* A child's verdict: exit(CHILD_FAIL(n)) names failed check n (1..120). */
#define CHILD_OK      0
#define CHILD_FAIL(n) (n)
/* Inside a child: leave with status n unless cond holds. */
#define CHILD_CHECK(cond, n)                                                                \
    do {                                                                                   \
        if (!(cond))                                                                       \
            _exit(n);                                                                      \
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
    if (pid == 0)
        _exit(fn(i, arg));
    return pid;
}

/* Wait for pid and assert it exited with status 0. */
static inline void test_expect_ok(pid_t pid)
{
    int status;
    cr_assert(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    cr_assert(WIFEXITED(status), "child %d died of signal %d", (int)pid,
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_assert(WEXITSTATUS(status) == 0, "child %d failed check %d", (int)pid,
              WEXITSTATUS(status));
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

static inline int64_t test_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spin-wait (yielding) until *flag reaches at least want, or give up after
 * limit_ns; returns whether it did.  For handshakes between test processes:
 * the condition, not a sleep, decides when a test moves on. */
static inline bool test_wait_until_at_least(const volatile uint32_t *flag, uint32_t want,
                                           int64_t limit_ns)
{
    int64_t end = test_now_ns() + limit_ns;
    while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) < want) {
        if (test_now_ns() > end)
            return false;
        sched_yield();
    }
    return true;
}

/* Whether pid is asleep in the kernel (state S in /proc/PID/stat), for
 * tests that must act only once a waiter really sleeps on a futex. */
static inline bool test_pid_sleeping(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'S';
}

/* Wait (bounded by limit_ns) until pid sleeps in the kernel. */
static inline bool test_wait_sleeping(pid_t pid, int64_t limit_ns)
{
    int64_t end = test_now_ns() + limit_ns;
    while (!test_pid_sleeping(pid)) {
        if (test_now_ns() > end)
            return false;
        sched_yield();
    }
    return true;
}

#endif
