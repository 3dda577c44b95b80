/*
 * process_daemon.c - a daemon child dies with its parent; the other runs on.
 *
 * The C version of the classic daemon program: a "main" process starts
 * foo as a daemon and bar as an ordinary child, prints "main-------" and
 * ends.  The daemon dies with it (it would have run for ever); bar
 * finishes its work even though its parent is gone.  A daemon may not
 * start children of its own: foo's attempt gets -EPERM.
 *
 * The program's own process watches it all: it runs "main" as a child,
 * and learns the two pids through shared memory.  Exits 0 only if foo was
 * killed (it never printed "end123"), bar printed "end456", and foo's
 * fipc_process_start returned -EPERM.
 */
#define _DEFAULT_SOURCE
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fipc.h>

struct report {
    fipc_event bar_may_end; /* set by the watcher once main has ended */
    int foo_pid, bar_pid;
    int foo_child; /* what fipc_process_start returned in foo */
    int foo_ended, bar_ended;
};

static struct report *rep;

static int noop(void *arg)
{
    return 0;
}

static int foo(void *arg)
{
    printf("123\n");
    fflush(stdout);
    fipc_process *c;
    rep->foo_child = fipc_process_start(&c, noop, NULL, NULL);
    __atomic_store_n(&rep->foo_pid, getpid(), __ATOMIC_RELEASE);
    pause(); /* until its parent's end kills it */
    printf("end123\n");
    rep->foo_ended = 1;
    return 0;
}

static int bar(void *arg)
{
    printf("456\n");
    fflush(stdout);
    __atomic_store_n(&rep->bar_pid, getpid(), __ATOMIC_RELEASE);
    /* Outlives main: ends only once the watcher has seen main end. */
    fipc_event_wait(&rep->bar_may_end, FIPC_SEC(30));
    printf("end456\n");
    __atomic_store_n(&rep->bar_ended, 1, __ATOMIC_RELEASE);
    return 0;
}

static int main_process(void *arg)
{
    fipc_process *p1, *p2;
    if (fipc_process_start(&p1, foo, NULL, &(fipc_process_opts){.daemon = true}) < 0 ||
        fipc_process_start(&p2, bar, NULL, NULL) < 0)
        return 1;
    /* Both have started before main ends. */
    while (!__atomic_load_n(&rep->foo_pid, __ATOMIC_ACQUIRE) ||
           !__atomic_load_n(&rep->bar_pid, __ATOMIC_ACQUIRE))
        usleep(1000);
    printf("main-------\n");
    return 0; /* ends: the daemon foo dies with it, bar runs on */
}

/* Wait (30 s at most) until the process a pidfd names has ended. */
static bool ends(int pidfd)
{
    struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
    return pidfd >= 0 && poll(&pfd, 1, 30000) == 1;
}

int main(void)
{
    rep = mmap(NULL, sizeof *rep, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (rep == MAP_FAILED || fipc_event_init(&rep->bar_may_end) < 0)
        return 1;
    /* Orphans come to this process, so it can reap bar. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    fipc_process *m;
    if (fipc_process_start(&m, main_process, NULL, NULL) < 0)
        return 1;
    fipc_process_join(m, FIPC_FOREVER);
    int code = -1;
    fipc_process_exitcode(m, &code);
    int foo_fd = (int)syscall(SYS_pidfd_open, rep->foo_pid, 0);
    int bar_fd = (int)syscall(SYS_pidfd_open, rep->bar_pid, 0);
    /* foo: killed by main's end (or already gone: pidfd_open fails). */
    bool foo_dead = foo_fd < 0 || ends(foo_fd);
    fipc_event_set(&rep->bar_may_end);
    bool bar_done = ends(bar_fd) && __atomic_load_n(&rep->bar_ended, __ATOMIC_ACQUIRE);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ; /* reap the orphans that came to us */
    fipc_process_free(m);
    printf("daemon %s with main; bar %s; a daemon's child: %s\n",
           foo_dead && !rep->foo_ended ? "died" : "survived",
           bar_done ? "finished" : "did not finish", fipc_strerror(rep->foo_child));
    return code == 0 && foo_dead && !rep->foo_ended && bar_done && rep->foo_child == -EPERM ? 0 : 1;
}
