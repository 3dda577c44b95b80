/*
 * process.c - Python's Process on fork and pidfds.
 *
 * fork() goes through the C library so that atfork handlers run and the
 * child gets a fresh robust futex list; the parent then opens a pidfd for
 * the child.  Unless the process ignores SIGCHLD (then the kernel reaps
 * children itself), the child cannot be reaped before that, since only
 * join reaps it, so the pidfd names our child, never a recycled pid.  A
 * child already reaped by then is reported as ended, its status lost.
 * join polls the pidfd (readable once the child has ended) with the time
 * that remains, then reaps with waitid(P_PIDFD).
 *
 * reaping
 *   join, is_alive and exitcode may run in several threads at once on one
 *   handle.  The handle's state word (below) changes once, by CAS, from
 *   RUNNING to EXITED(code) or LOST; a thread first reads the status with
 *   waitid(WNOWAIT), which leaves the child a zombie, publishes it, and
 *   only then reaps.  So a thread whose waitid finds the child gone
 *   (ECHILD) after another thread has reaped it also finds the state word
 *   set, and only a reaper outside fipc makes the status LOST.
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fipc/process.h>

#include "futex.h"
#include "internal.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/*
 * The state word of a handle (process-private, shared by the threads that
 * use the handle):
 *
 *   STATE_RUNNING        not reaped yet (it may have ended: a zombie)
 *   STATE_LOST           ended and reaped by something else in this
 *                        process: the status is unknown
 *   STATE_EXITED(code)   reaped by fipc; code is the exit status 0..255 or
 *                        minus the signal number (-1..-127)
 */
#define STATE_RUNNING 0
#define STATE_LOST    1
#define STATE_EXITED_BASE 0x1000
#define STATE_EXITED(code) (STATE_EXITED_BASE + (code))
#define STATE_CODE(state)  ((state) - STATE_EXITED_BASE)

struct fipc_process {
    pid_t pid;
    int pidfd; /* -1 only when the child was gone before start got one */
    bool daemon;
    int state; /* see above; changes once, by CAS */
    char name[64];
};

bool fipc__in_daemon;
static unsigned process_counter;

bool fipc_process_current_is_daemon(void)
{
    return fipc__in_daemon;
}

static int pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_send_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static void run_child(int (*target)(void *), void *arg, bool daemon, pid_t parent)
{
    process_counter = 0; /* this child names its own children from 1 */
    if (daemon) {
        fipc__in_daemon = true;
        /* Die with the parent; if it is already gone, the signal will
         * never come, so check after arming it. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            raise(SIGKILL); /* as if the signal had come */
    }
    /* Output that other threads of the parent buffered in stdout or stderr
     * after start's fflush(NULL) was copied into this child; the parent
     * writes it, so it must not be written here a second time by the
     * fflush below (or by target).  Other FILE streams cannot be listed;
     * see "Caveats" in docs/process.md. */
    __fpurge(stdout);
    __fpurge(stderr);
    int code = target(arg);
    fflush(NULL);
    /* _exit: the parent's atexit handlers and buffers are not ours. */
    _exit(code & 0xff);
}

int fipc_process_start(fipc_process **out, int (*target)(void *), void *arg,
                       const fipc_process_opts *opts)
{
    if (!out || !target)
        return -EINVAL;
    if (fipc__in_daemon)
        return -EPERM;
    fipc_process *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->daemon = opts && opts->daemon;
    unsigned n = __atomic_add_fetch(&process_counter, 1, __ATOMIC_RELAXED);
    if (opts && opts->name)
        snprintf(p->name, sizeof p->name, "%s", opts->name);
    else
        snprintf(p->name, sizeof p->name, "Process-%u", n);

    /* Flush stdio so the child does not write the parent's buffers again. */
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int r = -errno;
        free(p);
        return r;
    }
    if (pid == 0)
        run_child(target, arg, p->daemon, parent);

    p->pid = pid;
    p->pidfd = pidfd_open(pid);
    if (p->pidfd < 0 && errno == ESRCH) {
        /* Ended and reaped already: SIGCHLD is ignored. */
        p->state = STATE_LOST;
        *out = p;
        return 0;
    }
    if (p->pidfd < 0) {
        int r = -errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        free(p);
        return r;
    }
    *out = p;
    return 0;
}

/* Collect the child if it has ended; true once it is reaped (by whoever). */
static bool try_reap(fipc_process *p)
{
    /* Acquire pairs with the CAS below in another thread; the word itself
     * carries all there is to know (relaxed would do), acquire/release
     * only states the pairing. */
    int state = load_acquire(&p->state);
    if (state != STATE_RUNNING)
        return true; /* also every handle without a pidfd: those are LOST */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r;
    do
        r = waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG | WNOWAIT);
    while (r < 0 && errno == EINTR);
    int next;
    if (r < 0 && errno == ECHILD) {
        /* Gone: reaped by another thread through this handle (it set the
         * state word before reaping, and the kernel's wait lock orders that
         * before our ECHILD, so the CAS below fails and we take its
         * state), or by something outside fipc: status lost. */
        next = STATE_LOST;
    } else if (r < 0 || si.si_pid == 0) {
        return false; /* still running (other errors: cannot tell; not yet) */
    } else {
        next = STATE_EXITED(si.si_code == CLD_EXITED ? si.si_status : -si.si_status);
    }
    int expected = STATE_RUNNING;
    /* Release pairs with the load_acquire above in other threads.  Whoever
     * wins reaps the zombie it peeked at; a loser saw the same status. */
    if (cas_acqrel(&p->state, &expected, next) && next != STATE_LOST) {
        do
            r = waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG);
        while (r < 0 && errno == EINTR);
    }
    return true;
}

int fipc_process_join(fipc_process *p, int64_t timeout_ns)
{
    if (!p)
        return -EINVAL;
    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    while (!try_reap(p)) {
        int ms = -1;
        if (deadline != DEADLINE_NEVER) {
            int64_t left = deadline - fipc_now_ns();
            if (left <= 0)
                return fipc_unavailable(timeout_ns);
            /* Round up: poll must not return before the deadline. */
            ms = left / 1000000 >= INT32_MAX ? INT32_MAX : (int)((left + 999999) / 1000000);
        }
        struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
        /* The pidfd becomes readable when the child ends; EINTR re-polls
         * with the time that remains. */
        poll(&pfd, 1, ms);
    }
    return 0;
}

bool fipc_process_is_alive(fipc_process *p)
{
    return p && !try_reap(p);
}

pid_t fipc_process_pid(const fipc_process *p)
{
    return p ? p->pid : -1;
}

const char *fipc_process_name(const fipc_process *p)
{
    return p ? p->name : "";
}

bool fipc_process_daemon(const fipc_process *p)
{
    return p && p->daemon;
}

int fipc_process_exitcode(const fipc_process *p, int *code)
{
    if (!p || !code)
        return -EINVAL;
    if (!try_reap((fipc_process *)p))
        return -EAGAIN;
    /* Acquire: as in try_reap, which has set the word (or seen it set). */
    int state = load_acquire(&p->state);
    if (state == STATE_LOST)
        return -ECHILD;
    *code = STATE_CODE(state);
    return 0;
}

static int send_signal(fipc_process *p, int sig)
{
    if (!p)
        return -EINVAL;
    /* Relaxed: a stale RUNNING only costs a signal that the pidfd refuses
     * with ESRCH. */
    if (load_relaxed(&p->state) != STATE_RUNNING || p->pidfd < 0)
        return 0;
    if (pidfd_send_signal(p->pidfd, sig) < 0)
        return errno == ESRCH ? 0 : -errno;
    return 0;
}

int fipc_process_terminate(fipc_process *p)
{
    return send_signal(p, SIGTERM);
}

int fipc_process_kill(fipc_process *p)
{
    return send_signal(p, SIGKILL);
}

void fipc_process_free(fipc_process *p)
{
    if (!p)
        return;
    if (p->pidfd >= 0)
        close(p->pidfd);
    free(p);
}
