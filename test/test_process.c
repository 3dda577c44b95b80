/*
 * test_process.c - fipc_process: Python's Process on fork and pidfds.
 *
 * Targets run in children and report through their exit status, which is
 * also what most of these tests are about.  Children that must block do so
 * on something the test controls (a pipe, a shared flag, pause), never on a
 * sleep whose length the test depends on.
 */
#include "common.h"

#include <poll.h>

TestSuite(process, .timeout = 30);

#define LIMIT_NS FIPC_SEC(10)

/* ---------------------------------------------------------------- */
/* Targets                                                           */
/* ---------------------------------------------------------------- */

struct shm {
    uint32_t flag;
    uint32_t release;
    int32_t pid;
    int32_t value;
};

static int return_zero_and_record_pid(void *arg)
{
    struct shm *s = arg;
    __atomic_store_n(&s->pid, (int32_t)getpid(), __ATOMIC_RELEASE);
    return 0;
}

static int return_three(void *arg)
{
    return 3;
}

static int call_exit_three(void *arg)
{
    exit(3);
}

static int return_above_255(void *arg)
{
    return 256 + 5; /* the low 8 bits, as for exit() */
}

static int return_minus_one(void *arg)
{
    return -1; /* 255, as exit(-1) gives */
}

/* Blocks until killed, or until the test process ends: a test that fails
 * before killing it must not leave it behind (holding the runner's output
 * pipe open). */
static int pause_forever(void *arg)
{
    test_child_setup();
    for (;;)
        pause();
    return 0; /* not reached */
}

/* Block until the write end of the pipe closes; arg: int[2] from pipe(). */
static int read_pipe_until_eof(void *arg)
{
    int *fds = arg;
    char c;
    close(fds[1]);
    while (read(fds[0], &c, 1) != 0)
        ;
    return 0;
}

/* ---------------------------------------------------------------- */
/* Start, join, exit codes                                           */
/* ---------------------------------------------------------------- */

Test(process, start_runs_target_in_a_child_and_join_waits_for_it)
{
    struct shm *s = test_shared(sizeof *s);
    fipc_process *p = NULL;
    cr_assert_eq(fipc_process_start(&p, return_zero_and_record_pid, s, NULL), 0);
    cr_assert_not_null(p);
    pid_t pid = fipc_process_pid(p);
    cr_assert_gt(pid, 0);
    cr_assert_neq(pid, getpid());

    cr_assert_eq(fipc_process_join(p, FIPC_FOREVER), 0);
    cr_assert_eq(__atomic_load_n(&s->pid, __ATOMIC_ACQUIRE), pid, "target ran in %d, not %d",
                 s->pid, (int)pid);
    int code = -1;
    cr_assert_eq(fipc_process_exitcode(p, &code), 0);
    cr_assert_eq(code, 0);
    cr_assert_not(fipc_process_is_alive(p));
    /* The pid stays readable after the child is reaped. */
    cr_assert_eq(fipc_process_pid(p), pid);
    /* join on an ended child returns at once, as often as asked. */
    cr_assert_eq(fipc_process_join(p, 0), 0);
    cr_assert_eq(fipc_process_join(p, FIPC_FOREVER), 0);
    fipc_process_free(p);
}

static int exitcode_of(int (*target)(void *), void *arg)
{
    fipc_process *p;
    cr_assert_eq(fipc_process_start(&p, target, arg, NULL), 0);
    cr_assert_eq(fipc_process_join(p, FIPC_SEC(20)), 0);
    int code = -1000;
    cr_assert_eq(fipc_process_exitcode(p, &code), 0);
    fipc_process_free(p);
    return code;
}

Test(process, exitcode_is_the_targets_return_value)
{
    cr_assert_eq(exitcode_of(return_three, NULL), 3);
    cr_assert_eq(exitcode_of(return_above_255, NULL), 5);
    cr_assert_eq(exitcode_of(return_minus_one, NULL), 255);
}

Test(process, exitcode_is_the_status_passed_to_exit)
{
    cr_assert_eq(exitcode_of(call_exit_three, NULL), 3);
}

Test(process, exitcode_of_a_killed_child_is_minus_sigkill)
{
    fipc_process *p;
    cr_assert_eq(fipc_process_start(&p, pause_forever, NULL, NULL), 0);
    cr_assert(fipc_process_is_alive(p));
    cr_assert_eq(fipc_process_kill(p), 0);
    cr_assert_eq(fipc_process_join(p, FIPC_SEC(20)), 0);
    int code = 0;
    cr_assert_eq(fipc_process_exitcode(p, &code), 0);
    cr_assert_eq(code, -SIGKILL);
    cr_assert_not(fipc_process_is_alive(p));
    fipc_process_free(p);
}

Test(process, exitcode_of_a_child_killed_from_outside_is_minus_the_signal)
{
    fipc_process *p;
    cr_assert_eq(fipc_process_start(&p, pause_forever, NULL, NULL), 0);
    cr_assert_eq(kill(fipc_process_pid(p), SIGKILL), 0);
    cr_assert_eq(fipc_process_join(p, FIPC_SEC(20)), 0);
    int code = 0;
    cr_assert_eq(fipc_process_exitcode(p, &code), 0);
    cr_assert_eq(code, -9);
    fipc_process_free(p);
}

Test(process, terminate_ends_child_with_minus_sigterm)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fipc_process *p;
    cr_assert_eq(fipc_process_start(&p, read_pipe_until_eof, fds, NULL), 0);
    cr_assert(fipc_process_is_alive(p));
    cr_assert_eq(fipc_process_terminate(p), 0);
    cr_assert_eq(fipc_process_join(p, FIPC_SEC(20)), 0);
    int code = 0;
    cr_assert_eq(fipc_process_exitcode(p, &code), 0);
    cr_assert_eq(code, -15);
    close(fds[0]);
    close(fds[1]);
    fipc_process_free(p);
}

Test(process, terminate_and_kill_after_exit_return_zero)
{
    fipc_process *p;
    cr_assert_eq(fipc_process_start(&p, return_three, NULL, NULL), 0);
    cr_assert_eq(fipc_process_join(p, FIPC_SEC(20)), 0);
    cr_assert_eq(fipc_process_terminate(p), 0);
    cr_assert_eq(fipc_process_kill(p), 0);
    /* Signalling the dead child changed nothing. */
    int code = 0;
    cr_assert_eq(fipc_process_exitcode(p, &code), 0);
    cr_assert_eq(code, 3);
    fipc_process_free(p);
}

/* ---------------------------------------------------------------- */
/* Running children: timeouts and snapshots                          */
/* ---------------------------------------------------------------- */

Test(process, join_times_out_while_child_runs)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fipc_process *p;
    cr_assert_eq(fipc_process_start(&p, read_pipe_until_eof, fds, NULL), 0);

    int64_t t0 = test_now_ns();
    int r = fipc_process_join(p, FIPC_MSEC(50));
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_eq(r, -ETIMEDOUT, "join returned %d", r);
    cr_assert_geq(elapsed, FIPC_MSEC(50), "returned after %lld ns", (long long)elapsed);
    cr_assert_eq(fipc_process_join(p, 0), -EAGAIN);

    int code = 12345;
    cr_assert_eq(fipc_process_exitcode(p, &code), -EAGAIN);
    cr_assert(fipc_process_is_alive(p));

    /* Let it finish: it returns 0 once the pipe has no writer left. */
    close(fds[1]);
    cr_assert_eq(fipc_process_join(p, FIPC_SEC(20)), 0);
    cr_assert_not(fipc_process_is_alive(p));
    cr_assert_eq(fipc_process_exitcode(p, &code), 0);
    cr_assert_eq(code, 0);
    close(fds[0]);
    fipc_process_free(p);
}

static int return_seven_when_released(void *arg)
{
    struct shm *s = arg;
    __atomic_store_n(&s->flag, 1, __ATOMIC_RELEASE);
    if (!test_wait_until_at_least(&s->release, 1, FIPC_SEC(20)))
        return 99; /* never released: the test failed anyway */
    return 7;
}

Test(process, is_alive_turns_false_once_the_child_has_ended)
{
    struct shm *s = test_shared(sizeof *s);
    fipc_process *p;
    cr_assert_eq(fipc_process_start(&p, return_seven_when_released, s, NULL), 0);
    cr_assert(test_wait_until_at_least(&s->flag, 1, LIMIT_NS));
    cr_assert(fipc_process_is_alive(p));
    int pidfd = test_pidfd_open(fipc_process_pid(p));
    cr_assert_geq(pidfd, 0, "pidfd_open: %s", strerror(errno));
    __atomic_store_n(&s->release, 1, __ATOMIC_RELEASE);

    /* No join: is_alive alone notices the exit and reaps the child.  The
     * pidfd (which reaps nothing) says when to look again. */
    struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
    int64_t end = test_now_ns() + LIMIT_NS;
    while (fipc_process_is_alive(p)) {
        int64_t rest = end - test_now_ns();
        cr_assert_gt(rest, 0, "child never ended");
        poll(&pfd, 1, (int)(rest / 1000000) + 1);
    }
    close(pidfd);
    int code = 0;
    cr_assert_eq(fipc_process_exitcode(p, &code), 0);
    cr_assert_eq(code, 7);
    cr_assert_eq(fipc_process_join(p, 0), 0);
    fipc_process_free(p);
}

/* Something else in the process reaped the child (a stray waitpid): the
 * handle sees it ended, and says its status is lost instead of inventing
 * one or spinning in join. */
Test(process, exitcode_after_someone_else_reaped_gives_echild)
{
    fipc_process *p;
    cr_assert_eq(fipc_process_start(&p, return_three, NULL, NULL), 0);
    int status;
    cr_assert_eq(waitpid(fipc_process_pid(p), &status, 0), fipc_process_pid(p));
    cr_assert_eq(fipc_process_join(p, FIPC_SEC(20)), 0);
    cr_assert_not(fipc_process_is_alive(p));
    int code = 12345;
    cr_assert_eq(fipc_process_exitcode(p, &code), -ECHILD);
    cr_assert_eq(code, 12345);
    fipc_process_free(p);
}

/* A signal never surfaces as -EINTR: join resumes with the time left.
 * A plain child pesters the test process with SIGUSR1, then lets the fipc
 * child go. */
static int pester_then_release(int i, void *arg)
{
    struct shm *s = arg;
    pid_t parent = getppid();
    for (int n = 0; n < 60; n++) {
        kill(parent, SIGUSR1);
        /* Not a poll: the pause spreads the signals over the join. */
        usleep(5000);
    }
    __atomic_store_n(&s->release, 1, __ATOMIC_RELEASE);
    return CHILD_OK;
}

Test(process, join_is_not_interrupted_by_signals)
{
    test_catch_sigusr1();
    struct shm *s = test_shared(sizeof *s);
    fipc_process *p;
    cr_assert_eq(fipc_process_start(&p, return_seven_when_released, s, NULL), 0);
    pid_t pester = test_fork(pester_then_release, 0, s);

    /* A timed join keeps its full timeout despite the signals... */
    int64_t t0 = test_now_ns();
    int r = fipc_process_join(p, FIPC_MSEC(100));
    int64_t elapsed = test_now_ns() - t0;
    /* ...unless the child had already been let go (the pester ran fast). */
    if (!__atomic_load_n(&s->release, __ATOMIC_ACQUIRE)) {
        cr_assert_eq(r, -ETIMEDOUT, "timed join returned %d", r);
        cr_assert_geq(elapsed, FIPC_MSEC(100));
    } else {
        cr_assert(r == 0 || r == -ETIMEDOUT, "timed join returned %d", r);
    }
    /* ...and an unbounded join ends only with the child. */
    r = fipc_process_join(p, FIPC_FOREVER);
    cr_assert_eq(r, 0, "join returned %d", r);
    cr_assert(__atomic_load_n(&s->release, __ATOMIC_ACQUIRE));
    int code = 0;
    cr_assert_eq(fipc_process_exitcode(p, &code), 0);
    cr_assert_eq(code, 7);
    test_expect_ok(pester);
    fipc_process_free(p);
}

/* ---------------------------------------------------------------- */
/* Names                                                             */
/* ---------------------------------------------------------------- */

static bool is_default_name(const char *name)
{
    const char *prefix = "Process-";
    if (strncmp(name, prefix, strlen(prefix)) != 0) return false;
    const char *n = name + strlen(prefix);
    if (*n < '1' || *n > '9') return false;
    for (; *n; n++)
        if (*n < '0' || *n > '9') return false;
    return true;
}

Test(process, name_defaults_to_process_n)
{
    fipc_process *p, *q;
    cr_assert_eq(fipc_process_start(&p, return_three, NULL, NULL), 0);
    fipc_process_opts unnamed = {.name = NULL};
    cr_assert_eq(fipc_process_start(&q, return_three, NULL, &unnamed), 0);
    const char *np = fipc_process_name(p), *nq = fipc_process_name(q);
    cr_assert_not_null(np);
    cr_assert_not_null(nq);
    cr_assert(is_default_name(np), "name is \"%s\"", np);
    cr_assert(is_default_name(nq), "name is \"%s\"", nq);
    cr_assert_str_neq(np, nq, "two children share the name %s", np);
    cr_assert_eq(fipc_process_join(p, FIPC_SEC(20)), 0);
    cr_assert_eq(fipc_process_join(q, FIPC_SEC(20)), 0);
    /* The name outlives the child. */
    cr_assert(is_default_name(fipc_process_name(p)));
    fipc_process_free(p);
    fipc_process_free(q);
}

static int nested_first_child_name(void *arg)
{
    fipc_process *q;
    if (fipc_process_start(&q, return_three, NULL, NULL) != 0) return 10;
    bool ok = strcmp(fipc_process_name(q), "Process-1") == 0;
    if (fipc_process_join(q, FIPC_SEC(20)) != 0) return 11;
    fipc_process_free(q);
    return ok ? 0 : 12;
}

/* "N counting from 1 per parent": a child that starts children of its own
 * counts from 1 again, as Python's multiprocessing does. */
Test(process, name_counter_starts_at_one_in_each_parent)
{
    fipc_process *p, *q;
    cr_assert_eq(fipc_process_start(&p, return_three, NULL, NULL), 0);
    cr_assert_eq(fipc_process_start(&q, nested_first_child_name, NULL, NULL), 0);
    int np = atoi(fipc_process_name(p) + strlen("Process-"));
    int nq = atoi(fipc_process_name(q) + strlen("Process-"));
    cr_assert_eq(nq, np + 1, "%s then %s", fipc_process_name(p), fipc_process_name(q));
    cr_assert_eq(fipc_process_join(p, FIPC_SEC(20)), 0);
    cr_assert_eq(fipc_process_join(q, FIPC_SEC(20)), 0);
    int code = -1;
    cr_assert_eq(fipc_process_exitcode(q, &code), 0);
    cr_assert_eq(code, 0, "the nested child failed check %d", code);
    fipc_process_free(p);
    fipc_process_free(q);
}

Test(process, name_from_opts_is_kept)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%s", "worker-a");
    fipc_process_opts o = {.name = buf};
    fipc_process *p;
    cr_assert_eq(fipc_process_start(&p, return_three, NULL, &o), 0);
    cr_assert_str_eq(fipc_process_name(p), "worker-a");
    /* The handle keeps its own copy, not the caller's buffer. */
    snprintf(buf, sizeof buf, "%s", "scribbled");
    cr_assert_eq(fipc_process_join(p, FIPC_SEC(20)), 0);
    cr_assert_str_eq(fipc_process_name(p), "worker-a");
    cr_assert_not(fipc_process_daemon(p));
    fipc_process_free(p);
}

/* ---------------------------------------------------------------- */
/* Daemons                                                           */
/* ---------------------------------------------------------------- */

static int daemon_tries_to_start_a_child(void *arg)
{
    if (!fipc_process_current_is_daemon()) return 10;
    fipc_process *q = NULL;
    int r = fipc_process_start(&q, return_three, NULL, NULL);
    if (r == 0) {
        fipc_process_join(q, FIPC_SEC(20));
        return 11;
    }
    fipc_process_opts o = {.daemon = true};
    if (fipc_process_start(&q, return_three, NULL, &o) != -EPERM) return 12;
    return r == -EPERM ? 0 : 13;
}

Test(process, daemon_child_may_not_start_children)
{
    fipc_process_opts o = {.name = "d", .daemon = true};
    fipc_process *p;
    cr_assert_not(fipc_process_current_is_daemon());
    cr_assert_eq(fipc_process_start(&p, daemon_tries_to_start_a_child, NULL, &o), 0);
    cr_assert(fipc_process_daemon(p));
    cr_assert_eq(fipc_process_join(p, FIPC_SEC(20)), 0);
    int code = -1;
    cr_assert_eq(fipc_process_exitcode(p, &code), 0);
    cr_assert_eq(code, 0, "daemon failed check %d", code);
    fipc_process_free(p);
}

struct orphan {
    uint32_t started;  /* the grandchild wrote its pid */
    uint32_t watching; /* the test holds a pidfd on it */
    int32_t pid;
};

static int record_pid_and_pause(void *arg)
{
    struct orphan *s = arg;
    __atomic_store_n(&s->pid, (int32_t)getpid(), __ATOMIC_RELAXED);
    __atomic_store_n(&s->started, 1, __ATOMIC_RELEASE);
    /* Bounded, so that a failed test leaves no orphan for long; the tests
     * decide within 10 s whether it died. */
    for (int n = 0; n < 30; n++)
        sleep(1); /* not a poll: staying alive is all it does */
    return 0;
}

/* A plain forked intermediate: starts a (daemon or not) fipc child, waits
 * until the test watches it, then leaves (i == 0) or waits to be killed. */
static int intermediate(int i, void *arg)
{
    struct orphan *s = arg;
    bool daemon = i != 2;
    fipc_process_opts o = {.daemon = daemon};
    fipc_process *p;
    CHILD_CHECK(fipc_process_start(&p, record_pid_and_pause, s, &o) == 0, 1);
    CHILD_CHECK(fipc_process_daemon(p) == daemon, 2);
    CHILD_CHECK(test_wait_until_at_least(&s->watching, 1, LIMIT_NS), 3);
    if (i == 1) pause_forever(NULL);
    return CHILD_OK;
}

/* Start the intermediate, and return a pidfd on its fipc child. */
static int watch_grandchild(struct orphan *s, int mode, pid_t *mid)
{
    *mid = test_fork(intermediate, mode, s);
    cr_assert(test_wait_until_at_least(&s->started, 1, LIMIT_NS), "grandchild never ran");
    /* Open the pidfd while the intermediate still lives: the grandchild is
     * then certainly the one it started, not a reused pid. */
    int pidfd = test_pidfd_open(__atomic_load_n(&s->pid, __ATOMIC_RELAXED));
    cr_assert_geq(pidfd, 0, "pidfd_open: %s", strerror(errno));
    struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
    cr_assert_eq(poll(&pfd, 1, 0), 0, "grandchild ended before its parent");
    __atomic_store_n(&s->watching, 1, __ATOMIC_RELEASE);
    return pidfd;
}

/* Whether the process behind pidfd ends within limit_ms; kills it if not. */
static bool ends_within(int pidfd, int limit_ms)
{
    struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
    int r;
    do
        r = poll(&pfd, 1, limit_ms);
    while (r < 0 && errno == EINTR);
    if (r == 0) syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    return r == 1;
}

/* If this process is a subreaper, orphans come back to it: reap them. */
static void reap_quietly(pid_t pid)
{
    waitpid(pid, NULL, WNOHANG);
}

Test(process, daemon_child_dies_when_its_parent_exits)
{
    struct orphan *s = test_shared(sizeof *s);
    pid_t mid;
    int pidfd = watch_grandchild(s, 0, &mid);
    test_expect_ok(mid);
    bool ended = ends_within(pidfd, 10000);
    reap_quietly(s->pid);
    close(pidfd);
    cr_assert(ended, "daemon %d outlived its parent", (int)s->pid);
}

Test(process, daemon_child_dies_when_its_parent_is_killed)
{
    struct orphan *s = test_shared(sizeof *s);
    pid_t mid;
    int pidfd = watch_grandchild(s, 1, &mid);
    cr_assert_eq(kill(mid, SIGKILL), 0);
    int status;
    cr_assert_eq(waitpid(mid, &status, 0), mid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    bool ended = ends_within(pidfd, 10000);
    reap_quietly(s->pid);
    close(pidfd);
    cr_assert(ended, "daemon %d outlived its killed parent", (int)s->pid);
}

/* The counterpart, so that the daemon tests cannot pass for the wrong
 * reason: a child that is not a daemon survives its parent. */
Test(process, non_daemon_child_outlives_its_parent)
{
    struct orphan *s = test_shared(sizeof *s);
    pid_t mid;
    int pidfd = watch_grandchild(s, 2, &mid);
    test_expect_ok(mid);
    /* A parent-death signal is sent while the parent exits, before waitpid
     * sees it; a child still there well after that was not sent one. */
    struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
    int r = poll(&pfd, 1, 200);
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    bool cleaned = ends_within(pidfd, 10000);
    reap_quietly(s->pid);
    close(pidfd);
    cr_assert_eq(r, 0, "a non-daemon child died with its parent");
    cr_assert(cleaned, "SIGKILL did not end the orphan");
}

/* ---------------------------------------------------------------- */
/* Bad input                                                         */
/* ---------------------------------------------------------------- */

Test(process, null_arguments_give_einval)
{
    fipc_process *p = NULL;
    cr_assert_eq(fipc_process_start(NULL, return_three, NULL, NULL), -EINVAL);
    cr_assert_eq(fipc_process_start(&p, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(fipc_process_join(NULL, 0), -EINVAL);
    cr_assert_eq(fipc_process_join(NULL, FIPC_FOREVER), -EINVAL);
    cr_assert_not(fipc_process_is_alive(NULL));
    cr_assert_eq(fipc_process_pid(NULL), -1);
    cr_assert_str_eq(fipc_process_name(NULL), "");
    int code = 99;
    cr_assert_eq(fipc_process_exitcode(NULL, &code), -EINVAL);
    cr_assert_eq(code, 99);
    cr_assert_eq(fipc_process_terminate(NULL), -EINVAL);
    cr_assert_eq(fipc_process_kill(NULL), -EINVAL);
    fipc_process_free(NULL);

    /* A real handle with a NULL result pointer. */
    cr_assert_eq(fipc_process_start(&p, return_three, NULL, NULL), 0);
    cr_assert_eq(fipc_process_join(p, FIPC_SEC(20)), 0);
    cr_assert_eq(fipc_process_exitcode(p, NULL), -EINVAL);
    fipc_process_free(p);
}
