/*
 * process.c - Python's Process on fork and pidfds.
 *
 * start
 *   fork() goes through the C library, so that atfork handlers run and the
 *   child gets a fresh robust futex list and a correct cached thread id
 *   (a raw clone3(CLONE_PIDFD) would skip all of that, and the malloc and
 *   stdio locks glibc takes around fork).  The child then opens a pidfd on
 *   itself and sends it to the parent over a socketpair made before the
 *   fork.  A pidfd the child opened on itself names the child and nothing
 *   else, whatever happens to the pid number later: the child may end and
 *   be reaped behind our back (SIGCHLD ignored, a waitpid(-1) in another
 *   thread) and its pid be reused, all before the parent returns from
 *   fork(), and kill/terminate still never reach the newcomer.  A
 *   pidfd_open(pid) in the parent after fork() has no such guarantee.
 *
 *   start does not wait for that report (the child sends it in its first
 *   microseconds, and waiting would add a wake-up to every start): the
 *   first call that needs the pidfd "settles" the handle, taking the
 *   report from the socket, usually there by then.  Except for a daemon,
 *   which arms PR_SET_PDEATHSIG before it reports, and whose start waits
 *   for the report.  The kernel ties that signal to the thread that forked,
 *   and that thread is inside start until the report comes, so it is alive
 *   when the child arms: either it ends later and the signal comes, or the
 *   whole parent process was gone before the arming, which the getppid()
 *   check after it catches.  (Had start returned first, a starting thread
 *   that ended before the child armed would leave it re-parented to another
 *   thread of the same process: same getppid(), no signal.)
 *
 *   A thread that must wait for the report also holds a pidfd_open(pid) of
 *   the handle's own, a watch: if the child dies before it can report (a
 *   signal from outside in its first microseconds), the watch says so,
 *   where the socket would not if a process forked meanwhile by another
 *   thread holds a copy of the child's end.  The watch becomes the handle's
 *   pidfd only then, with the child ended or ending, and only if waitid()
 *   finds it names a child of this process: a process that took a reaped
 *   child's pid is not one.
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
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fipc/process.h>

#include "futex.h"
#include "waitable.h"

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
#define STATE_RUNNING      0
#define STATE_LOST         1
#define STATE_EXITED_BASE  0x1000
#define STATE_EXITED(code) (STATE_EXITED_BASE + (code))
#define STATE_CODE(state)  ((state)-STATE_EXITED_BASE)

struct fipc_process {
    pid_t pid;
    int settled; /* 0 until pidfd is final (or state LOST); set once, atomic */
    int pidfd;   /* the child's own pidfd once settled, else -1 */
    int state;   /* see above; changes once, by CAS */
    bool daemon;
    /* Until settled, under settle_lock: */
    pthread_mutex_t settle_lock;
    int sock;    /* the parent's end of the socket pair */
    int watch;   /* pidfd_open(pid) of the parent's own, once needed */
    int pollers; /* threads polling sock and watch without the lock */
    char name[64];
};

static bool in_daemon;
static unsigned process_counter;

bool fipc_process_current_is_daemon(void)
{
    return in_daemon;
}

static int pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_send_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* ---------------------------------------------------------------- */
/* The child's report: an int (0 or the errno that kept it from sending
 * a pidfd), with the child's pidfd attached when it is 0.               */
/* ---------------------------------------------------------------- */

union report_cmsg {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
};

static int send_report(int sock, int err, int fd)
{
    union report_cmsg c;
    struct iovec iov = {.iov_base = &err, .iov_len = sizeof err};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&c, 0, sizeof c);
        msg.msg_control = c.buf;
        msg.msg_controllen = sizeof c.buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    ssize_t n;
    do
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof err ? 0 : (n < 0 ? errno : EPROTO);
}

/* Without blocking: 1 and *err (and *fd, or -1) when the report was
 * there; 0 when it was not; -1 when it never will be (the child's end is
 * closed everywhere). */
static int recv_report(int sock, int *err, int *fd)
{
    union report_cmsg c;
    struct iovec iov = {.iov_base = err, .iov_len = sizeof *err};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof c.buf};
    *fd = -1;
    ssize_t n;
    do
        n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    if (n != (ssize_t)sizeof *err)
        return -1; /* EOF (n == 0): the child's end is closed everywhere */
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
        cm->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(fd, CMSG_DATA(cm), sizeof *fd);
    if (*err == 0 && *fd < 0)
        *err = (msg.msg_flags & MSG_CTRUNC) ? EMFILE : EPROTO;
    return 1;
}

/* ---------------------------------------------------------------- */
/* The child                                                           */
/* ---------------------------------------------------------------- */

static _Noreturn void run_child(int (*target)(void *), void *arg, bool daemon, pid_t parent,
                                int sock, int cancel_state)
{
    process_counter = 0; /* this child names its own children from 1 */
    if (daemon) {
        in_daemon = true;
        /* Die with the parent thread, which waits in start until we have
         * reported; if the parent process is already gone the signal will
         * never come, so check after arming it. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            raise(SIGKILL); /* as if the signal had come */
    }
    int self = pidfd_open(getpid());
    int err = self < 0 ? errno : send_report(sock, 0, self);
    if (err != 0 && err != EPIPE) {
        /* The parent gets no pidfd and fails start: do not run target. */
        send_report(sock, err, -1);
        _exit(127);
    }
    /* EPIPE: the parent's end is closed, which it keeps until it has read
     * the report: the parent died, or freed the handle unused.  Run on, as
     * a child does whose parent dies or frees its handle later. */
    close(self);
    close(sock);

    /* Output that other threads of the parent buffered in stdout or stderr
     * after start's fflush(NULL) was copied into this child; the parent
     * writes it, so it must not be written here a second time by the
     * fflush below (or by target).  Other FILE streams cannot be listed;
     * see "Caveats" in docs/process.md. */
    __fpurge(stdout);
    __fpurge(stderr);
    pthread_setcancelstate(cancel_state, NULL);

    int code = target(arg);
    fflush(NULL);
    /* _exit: the parent's atexit handlers are not ours. */
    _exit(code & 0xff);
}

/* ---------------------------------------------------------------- */
/* The parent                                                          */
/* ---------------------------------------------------------------- */

/* Whether pidfd names a child of this process (ended or not), reaping
 * nothing. */
static bool names_a_child(int pidfd)
{
    siginfo_t si;
    int r;
    do
        r = waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG | WNOWAIT);
    while (r < 0 && errno == EINTR);
    return r == 0;
}

static bool readable(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 1;
}

/* Close the fds that only served to get the child's pidfd, unless a
 * thread is polling them (the last one out closes them then).  Under
 * settle_lock. */
static void close_settle_fds(fipc_process *p)
{
    if (p->pollers > 0)
        return;
    if (p->sock >= 0)
        close(p->sock);
    if (p->watch >= 0)
        close(p->watch);
    p->sock = p->watch = -1;
}

/* One look at the child's report, without blocking; true once the handle
 * is settled (pidfd final, or the status LOST).  Under settle_lock. */
static bool settle_step(fipc_process *p)
{
    int err = 0, fd = -1;
    int r = recv_report(p->sock, &err, &fd);
    if (r == 0) {
        if (p->watch < 0) {
            p->watch = pidfd_open(p->pid);
            /* ESRCH: ended and reaped, so what it sent (if anything) is in
             * the socket by now, though not when we looked. */
            if (p->watch < 0 && errno == ESRCH && (r = recv_report(p->sock, &err, &fd)) == 0)
                r = -1;
        }
        if (r == 0) {
            /* Still to come, unless the watch says the child has ended
             * (then a report sent before the end is there now). */
            if (p->watch < 0 || !readable(p->watch))
                return false;
            if ((r = recv_report(p->sock, &err, &fd)) == 0)
                r = -1;
        }
    }
    if (r > 0 && err == 0) {
        p->pidfd = fd;
    } else {
        /* The child ended before it reported (killed from outside), or is
         * ending: r < 0 says its end of the socket is closed, an error
         * report that it leaves with 127.  (Or the pidfd it sent found no
         * free fd here, MSG_CTRUNC: then it runs on, and the watch is the
         * handle's pidfd.)  The watch names the child unless the child was
         * reaped elsewhere and its pid taken before the watch opened;
         * waitid then finds no such child of ours. */
        if (p->watch < 0)
            p->watch = pidfd_open(p->pid);
        if (p->watch >= 0 && names_a_child(p->watch)) {
            p->pidfd = p->watch;
            p->watch = -1;
        } else {
            store_relaxed(&p->state, STATE_LOST); /* published by settled */
        }
    }
    close_settle_fds(p);
    /* Release pairs with the load_acquire in settle: pidfd and state are
     * final before anyone reads them without the lock. */
    store_release(&p->settled, 1);
    return true;
}

static void poller_leaves(void *arg)
{
    fipc_process *p = arg;
    pthread_mutex_lock(&p->settle_lock);
    p->pollers--;
    if (load_relaxed(&p->settled))
        close_settle_fds(p);
    pthread_mutex_unlock(&p->settle_lock);
}

/* Poll sock and watch (copied into pfd under the lock) as a registered
 * poller, which leaves also when the thread is cancelled in poll. */
static void poll_as_poller(fipc_process *p, struct pollfd *pfd, int ms)
{
    /* Woken by the report or the child's end closing (when the socket is
     * polled), or the watch turning readable (poll skips an fd of -1);
     * EINTR: the caller looks again. */
    pthread_cleanup_push(poller_leaves, p);
    poll(pfd, 2, ms);
    pthread_cleanup_pop(1);
}

/* The poll timeout for what remains until deadline, rounded up so that
 * poll never returns before it; -1 without a deadline; false once past. */
static bool poll_ms(fipc_deadline deadline, int *ms)
{
    *ms = -1;
    if (deadline == DEADLINE_NEVER)
        return true;
    int64_t left = deadline - fipc_now_ns();
    if (left <= 0)
        return false;
    *ms = left / 1000000 >= INT32_MAX ? INT32_MAX : (int)((left + 999999) / 1000000);
    return true;
}

/* Get the child's pidfd if it has not come yet: 0 once the handle is
 * settled; -EAGAIN/-ETIMEDOUT (as timeout_ns says) if it is not by
 * deadline.  The child reports within its first microseconds, so by the
 * time a handle is first used the report is usually there.  now: the
 * caller needs the pidfd as soon as it comes (to signal through it);
 * otherwise (join) only once the child has ended, which the watch tells,
 * saving a wake-up for the report. */
static int settle(fipc_process *p, fipc_deadline deadline, int64_t timeout_ns, bool now)
{
    if (load_acquire(&p->settled))
        return 0;
    for (;;) {
        pthread_mutex_lock(&p->settle_lock);
        bool done = load_relaxed(&p->settled) || settle_step(p);
        int ms = 0;
        bool wait = !done && poll_ms(deadline, &ms);
        /* A joiner polls the watch alone: it wants the child's end, not
         * its report, and the socket would wake it at the report, or at
         * the child's end of it closing a moment before the child is a
         * zombie that waitid can collect.  Without a watch (pidfd_open
         * failed) the report must wake it.  The watch was opened when no
         * report had come, so it names the child, alive then; or the child
         * had died unreported and been reaped, and its pid been taken, at
         * once, and the socket's EOF usually said so first (settle_step). */
        struct pollfd pfd[2] = {{.fd = now || p->watch < 0 ? p->sock : -1, .events = POLLIN},
                                {.fd = p->watch, .events = POLLIN}};
        if (wait)
            p->pollers++; /* keeps sock and watch open while we poll */
        pthread_mutex_unlock(&p->settle_lock);
        if (done)
            return 0;
        if (!wait)
            return fipc_unavailable(timeout_ns);
        poll_as_poller(p, pfd, ms);
    }
}

int fipc_process_start(fipc_process **out, int (*target)(void *), void *arg,
                       const fipc_process_opts *opts)
{
    if (!out || !target)
        return -EINVAL;
    if (in_daemon)
        return -EPERM;
    fipc_process *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->daemon = opts && opts->daemon;
    p->pidfd = p->sock = p->watch = -1;
    pthread_mutex_init(&p->settle_lock, NULL);
    unsigned n = fetch_add_relaxed(&process_counter, 1) + 1;
    if (opts && opts->name)
        snprintf(p->name, sizeof p->name, "%s", opts->name);
    else
        snprintf(p->name, sizeof p->name, "Process-%u", n);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        int r = -errno;
        fipc_process_free(p);
        return r;
    }
    p->sock = sv[0];
    /* A daemon's death signal is tied to this thread, which must not end
     * (cancelled) before the child has armed it. */
    int cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);

    /* Flush stdio so the child does not write the parent's buffers again,
     * and so that the parent's output so far comes before the child's. */
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        run_child(target, arg, p->daemon, parent, sv[1], cancel_state);
    }
    int r = pid < 0 ? -errno : 0;
    close(sv[1]);
    p->pid = pid;
    /* A daemon has armed its death signal once it has reported. */
    if (r == 0 && p->daemon)
        settle(p, DEADLINE_NEVER, FIPC_FOREVER, true);
    pthread_setcancelstate(cancel_state, NULL);
    if (r < 0) {
        fipc_process_free(p);
        return r;
    }
    *out = p;
    return 0;
}

/* Collect the child if it has ended; true once it is reaped (by whoever).
 * Only for a settled handle. */
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
    int r = settle(p, deadline, timeout_ns, false);
    if (r < 0)
        return r;
    while (!try_reap(p)) {
        int ms;
        if (!poll_ms(deadline, &ms))
            return fipc_unavailable(timeout_ns);
        struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
        /* The pidfd becomes readable when the child ends, and stays so
         * after any thread reaps it; EINTR re-polls with the time that
         * remains. */
        poll(&pfd, 1, ms);
    }
    return 0;
}

bool fipc_process_is_alive(fipc_process *p)
{
    if (!p)
        return false;
    /* Not settled: the child has neither reported nor ended yet. */
    if (settle(p, fipc_deadline_in(0), 0, false) < 0)
        return true;
    return !try_reap(p);
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
    fipc_process *q = (fipc_process *)p; /* settling and reaping change the handle */
    if (settle(q, fipc_deadline_in(0), 0, false) < 0 || !try_reap(q))
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
    /* The pidfd is needed: wait for the report (the child's first
     * microseconds; a child stopped before it could report holds this up
     * until it is continued) if it has not come. */
    settle(p, DEADLINE_NEVER, FIPC_FOREVER, true);
    /* Relaxed: a stale RUNNING only costs a signal that the pidfd refuses
     * with ESRCH; the pidfd never names another process. */
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
    p->pollers = 0; /* nobody may use the handle now */
    close_settle_fds(p);
    if (p->pidfd >= 0)
        close(p->pidfd);
    pthread_mutex_destroy(&p->settle_lock);
    free(p);
}

/* ---- waiting from outside fipc (waitable.h) ------------------------------ */

int fipc__process_arm(fipc_process *p, fipc_deadline deadline, int64_t timeout_ns, int *fd)
{
    if (!p)
        return -EINVAL;
    /* The pidfd is needed at once (now): the child reports within its
     * first microseconds, or its end of the socket closes. */
    int r = settle(p, deadline, timeout_ns, true);
    if (r < 0)
        return r;
    if (try_reap(p))
        return 1;
    *fd = p->pidfd;
    return 0;
}
