/*
 * futex_faults.h - kill a test process at the worst moment of a fipc call.
 *
 * Every release, set, notify, put, get and task_done first changes shared
 * state and then wakes the sleepers; a process killed in between leaves
 * sleepers whose condition already holds but whom nobody wakes.  fipc
 * answers that in two ways: a lock's releaser keeps the lock announced in
 * its robust list until after the wake, so the kernel wakes a waiter in its
 * place; and no futex sleep lasts longer than FUTEX_RECHECK_NS (lib/futex.h),
 * so everything else is re-checked within 80 ms.  The tests that include
 * this header kill a child exactly in that window and check that the
 * sleepers get out anyway.
 *
 * How: fipc enters the kernel through the C library's syscall(), and the
 * tests link the static libfipc.a, so the syscall() defined below takes its
 * place for every fipc call in the test program.  It forwards each call to
 * the C library's unchanged unless the calling process asked for a fault:
 *
 *   fault_kill_at_next_wake()   the process SIGKILLs itself on entering its
 *                               next FUTEX_WAKE: the state is changed, the
 *                               wake is never made.
 *   fault_sleep_until_woken()   the process's futex sleeps ignore their
 *                               timeout, so only a real wake ends them (for
 *                               FIPC_FOREVER waits: it takes the re-check
 *                               away, to prove that something else wakes).
 *   fault_kill_when_woken()     the process SIGKILLs itself as soon as a
 *                               futex sleep of its own ends by a wake (the
 *                               wait returned 0): it was woken and dies
 *                               before it can take what woke it.
 *
 * The switches are plain per-process flags.  Forked children inherit their
 * value at fork, so flip them only inside the child that must fault, right
 * before the call; everything else in the program sees a plain syscall().
 *
 * Defines a global syscall(): include it in one file per test program.
 * dlsym is in libc from glibc 2.34 on; older ones need -ldl.
 */
#ifndef FIPC_TEST_FUTEX_FAULTS_H
#define FIPC_TEST_FUTEX_FAULTS_H

#include "common.h"

#include <dlfcn.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <sys/syscall.h>

static int fault_kill_at_wake;
static int fault_no_timeout;
static int fault_kill_woken;

static inline void fault_kill_at_next_wake(void)
{
    fault_kill_at_wake = 1;
}

static inline void fault_sleep_until_woken(void)
{
    fault_no_timeout = 1;
}

static inline void fault_kill_when_woken(void)
{
    fault_kill_woken = 1;
}

long syscall(long n, ...)
{
    static long (*real)(long, ...);
    long (*fn)(long, ...) = __atomic_load_n(&real, __ATOMIC_RELAXED);
    if (!fn) {
        fn = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
        if (!fn) abort();
        __atomic_store_n(&real, fn, __ATOMIC_RELAXED);
    }

    /* As the C library's own syscall() does: take six arguments whatever
     * the call, since the kernel ignores the ones it does not use. */
    long a[6];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);

    if (n == SYS_futex) {
        int op = (int)a[1] & FUTEX_CMD_MASK;
        if (op == FUTEX_WAKE && fault_kill_at_wake) {
            /* A signal a process sends itself is delivered before kill()
             * returns, so nothing after this line runs. */
            kill(getpid(), SIGKILL);
            for (;;)
                pause();
        }
        bool wait = op == FUTEX_WAIT || op == FUTEX_WAIT_BITSET;
        if (wait && fault_no_timeout) a[3] = 0; /* no timeout: sleep until woken */
        if (wait && fault_kill_woken) {
            /* 0 only for a sleep that a wake ended (a timeout, a changed
             * word or a signal give -1). */
            long r = fn(n, a[0], a[1], a[2], a[3], a[4], a[5]);
            if (r == 0) {
                kill(getpid(), SIGKILL);
                for (;;)
                    pause();
            }
            return r;
        }
    }
    return fn(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* The status fault_reap_within gives a child it had to kill. */
#define FAULT_STILL_RUNNING (-1)

/* Reap the n children in pids, which have until limit_ns from now to end
 * by themselves; status[i] gets child i's wait status, or
 * FAULT_STILL_RUNNING if it had to be killed then.  A sleeper stranded by a
 * lost wake-up thus fails its test instead of hanging it. */
static inline void fault_reap_within(const pid_t *pids, int *status, int n, int64_t limit_ns)
{
    bool done[16] = {false};
    cr_assert(n <= 16);
    if (test_reap_until(pids, status, done, n, test_now_ns() + limit_ns) == 0) return;
    for (int i = 0; i < n; i++) {
        if (done[i]) continue;
        kill(pids[i], SIGKILL);
        waitpid(pids[i], NULL, 0);
        status[i] = FAULT_STILL_RUNNING;
    }
}

/* The child that was to fault died of its SIGKILL, and not otherwise:
 * exiting means its call made no wake (nobody was recorded asleep), so
 * the test would not have tested anything. */
static inline void fault_expect_killed(int status, const char *who)
{
    cr_assert_neq(status, FAULT_STILL_RUNNING, "%s never reached its wake", who);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "%s was not killed at its wake: exit status %d, signal %d", who,
              WIFEXITED(status) ? WEXITSTATUS(status) : -1,
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* A sleeper that had to get out despite the fault ended with status 0. */
static inline void fault_expect_ok(int status, const char *who, int64_t limit_ns)
{
    cr_assert_neq(status, FAULT_STILL_RUNNING, "%s still blocked after %lld s: stranded", who,
                  (long long)(limit_ns / 1000000000));
    cr_assert(WIFEXITED(status), "%s died of signal %d", who,
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_assert_eq(WEXITSTATUS(status), 0, "%s failed check %d", who, WEXITSTATUS(status));
}

#endif
