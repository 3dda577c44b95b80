/*
 * test_process.c - fipc_process: Python's Process on fork and pidfds.
 *
 * Targets run in children and report through their exit status, which is
 * also what most of these tests are about.  Children that must block do so
 * on something the test controls (a pipe, a shared flag, pause), never on a
 * sleep whose length the test depends on.
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>

TestSuite(process, .timeout = 60);

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

static int return_zero(void *arg)
{
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

static int return_three_once_seen(void *arg)
{
    struct shm *s = arg;
    __atomic_store_n(&s->flag, 1, __ATOMIC_RELEASE);
    return 3;
}

/* free neither kills nor waits for the child, even when the handle was
 * never used (the child's pidfd not yet taken): the child runs target and
 * ends as usual, reaped here by pid. */
Test(process, free_right_after_start_leaves_the_child_to_run)
{
    struct shm *s = test_shared(sizeof *s);
    for (int round = 0; round < 20; round++) {
        __atomic_store_n(&s->flag, 0, __ATOMIC_RELAXED);
        fipc_process *p;
        cr_assert_eq(fipc_process_start(&p, return_three_once_seen, s, NULL), 0);
        pid_t pid = fipc_process_pid(p);
        fipc_process_free(p);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3, "round %d: status %#x", round,
                  status);
        cr_assert_eq(__atomic_load_n(&s->flag, __ATOMIC_ACQUIRE), 1);
    }
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
/* Several threads on one handle                                     */
/* ---------------------------------------------------------------- */

/* Python lets several threads join one Process and ask is_alive or
 * exitcode meanwhile.  In each round four threads go at one child as it
 * ends: two join it, one asks is_alive until it says no, one asks for the
 * exit code until it has one.  Each must see the child's status, however
 * the reaping falls between them: none may find the child reaped by
 * another thread and report its status lost (-ECHILD). */
#define CROWD_ROUNDS 150
#define CROWD        4

struct crowd {
    pthread_barrier_t go, done;
    fipc_process *p;
    bool stop;
    int seen[CROWD]; /* the exit code each thread saw, or -1000 + its error */
};

static int return_42_when_released(void *arg)
{
    struct shm *s = arg;
    /* Released once the threads are on their way; the round is in value. */
    if (!test_wait_until_at_least(&s->release, (uint32_t)s->value, FIPC_SEC(20))) return 99;
    return 42;
}

static int crowd_exitcode(fipc_process *p)
{
    int code = 0, r = fipc_process_exitcode(p, &code);
    return r == 0 ? code : -1000 + r;
}

struct crowd_arg {
    struct crowd *c;
    int i;
};

static void *crowd_thread(void *arg)
{
    struct crowd *c = ((struct crowd_arg *)arg)->c;
    int i = ((struct crowd_arg *)arg)->i;
    for (;;) {
        pthread_barrier_wait(&c->go);
        if (c->stop) return NULL;
        fipc_process *p = c->p;
        int64_t end = test_now_ns() + LIMIT_NS;
        int seen;
        if (i < 2) {
            int r = fipc_process_join(p, LIMIT_NS);
            seen = r == 0 ? crowd_exitcode(p) : -1000 + r;
        } else if (i == 2) {
            while (fipc_process_is_alive(p) && test_now_ns() < end)
                sched_yield();
            seen = crowd_exitcode(p);
        } else {
            int code = 0, r;
            while ((r = fipc_process_exitcode(p, &code)) == -EAGAIN && test_now_ns() < end)
                sched_yield();
            seen = r == 0 ? code : -1000 + r;
        }
        c->seen[i] = seen;
        pthread_barrier_wait(&c->done);
    }
}

Test(process, every_thread_joining_one_child_sees_its_exit_status)
{
    struct shm *s = test_shared(sizeof *s);
    struct crowd c = {.stop = false};
    struct crowd_arg args[CROWD];
    pthread_t t[CROWD];
    cr_assert_eq(pthread_barrier_init(&c.go, NULL, CROWD + 1), 0);
    cr_assert_eq(pthread_barrier_init(&c.done, NULL, CROWD + 1), 0);
    for (int i = 0; i < CROWD; i++) {
        args[i] = (struct crowd_arg){.c = &c, .i = i};
        cr_assert_eq(pthread_create(&t[i], NULL, crowd_thread, &args[i]), 0);
    }
    int wrong = 0, first_round = -1, first_thread = -1, first_seen = 0;
    for (int round = 1; round <= CROWD_ROUNDS; round++) {
        s->value = round;
        cr_assert_eq(fipc_process_start(&c.p, return_42_when_released, s, NULL), 0);
        pthread_barrier_wait(&c.go);
        __atomic_store_n(&s->release, (uint32_t)round, __ATOMIC_RELEASE);
        pthread_barrier_wait(&c.done);
        /* And afterwards (as thread CROWD) every call agrees. */
        int after = -3000; /* still alive */
        if (!fipc_process_is_alive(c.p)) {
            int r = fipc_process_join(c.p, 0);
            after = r == 0 ? crowd_exitcode(c.p) : -1000 + r;
        }
        for (int i = 0; i <= CROWD; i++) {
            int seen = i < CROWD ? c.seen[i] : after;
            if (seen == 42) continue;
            if (wrong++ == 0) {
                first_round = round;
                first_thread = i;
                first_seen = seen;
            }
        }
        fipc_process_free(c.p);
    }
    c.stop = true;
    pthread_barrier_wait(&c.go);
    for (int i = 0; i < CROWD; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(wrong, 0,
                 "%d of %d answers wrong; first: round %d, thread %d saw %d (-1010 is -ECHILD: "
                 "status lost)",
                 wrong, CROWD_ROUNDS * (CROWD + 1), first_round, first_thread, first_seen);
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

/* The parent-death signal belongs to the thread that forked, so a daemon
 * dies when the thread that started it ends (API: "its parent" is that
 * thread).  start must not return before the child has armed the signal:
 * a thread that ends at once would otherwise often end before its child
 * armed it, leaving the child adopted by another thread of the process,
 * signal-less, alive for good. */
#define STARTERS 40

static void *start_daemon_and_end(void *arg)
{
    fipc_process **out = arg;
    fipc_process_opts o = {.daemon = true};
    if (fipc_process_start(out, pause_forever, NULL, &o) != 0) *out = NULL;
    return NULL; /* the daemon's parent thread ends here */
}

Test(process, daemon_dies_when_the_thread_that_started_it_ends)
{
    fipc_process *p[STARTERS];
    for (int i = 0; i < STARTERS; i++) {
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, start_daemon_and_end, &p[i]), 0);
        cr_assert_eq(pthread_join(t, NULL), 0);
        cr_assert_not_null(p[i], "start %d failed", i);
    }
    int64_t end = test_now_ns() + LIMIT_NS;
    int survived = 0, other = 0;
    for (int i = 0; i < STARTERS; i++) {
        int64_t rest = end - test_now_ns();
        if (fipc_process_join(p[i], rest > 0 ? rest : 0) != 0) {
            survived++;
            fipc_process_kill(p[i]);
            fipc_process_join(p[i], FIPC_FOREVER);
        } else {
            int code = 0;
            cr_assert_eq(fipc_process_exitcode(p[i], &code), 0);
            other += code != -SIGKILL;
        }
        fipc_process_free(p[i]);
    }
    cr_assert_eq(survived, 0, "%d of %d daemons outlived the thread that started them", survived,
                 STARTERS);
    cr_assert_eq(other, 0, "%d daemons ended otherwise than by SIGKILL", other);
}

struct starter {
    fipc_process *p;
    int r;
    pthread_barrier_t step; /* 1: start has returned; 2: the thread may end */
};

static void *start_daemon_and_stay(void *arg)
{
    struct starter *s = arg;
    fipc_process_opts o = {.daemon = true};
    s->r = fipc_process_start(&s->p, pause_forever, NULL, &o);
    pthread_barrier_wait(&s->step);
    pthread_barrier_wait(&s->step);
    return NULL;
}

/* The counterpart: the daemon lives as long as that thread does (not
 * merely until start returns), and dies when it ends. */
Test(process, daemon_lives_while_the_thread_that_started_it_runs)
{
    struct starter s = {.r = 1};
    pthread_t t;
    cr_assert_eq(pthread_barrier_init(&s.step, NULL, 2), 0);
    cr_assert_eq(pthread_create(&t, NULL, start_daemon_and_stay, &s), 0);
    pthread_barrier_wait(&s.step);
    cr_assert_eq(s.r, 0);
    /* A death signal sent by mistake would have ended it well within
     * this time; it is not a condition this test waits for. */
    cr_assert_eq(fipc_process_join(s.p, FIPC_MSEC(200)), -ETIMEDOUT,
                 "the daemon died while the thread that started it ran");
    pthread_barrier_wait(&s.step);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(fipc_process_join(s.p, LIMIT_NS), 0, "the daemon outlived its thread");
    int code = 0;
    cr_assert_eq(fipc_process_exitcode(s.p, &code), 0);
    cr_assert_eq(code, -SIGKILL);
    fipc_process_free(s.p);
}

/* ---------------------------------------------------------------- */
/* A reused pid                                                      */
/* ---------------------------------------------------------------- */

/* With SIGCHLD ignored, the kernel reaps a child as soon as it ends, and
 * its pid is free for the next process.  Should that happen before start
 * holds a pidfd on the child, a pidfd opened by pid would name whoever got
 * the pid next, and kill or terminate would hit a stranger.  A fork
 * handler stands in for a parent preempted right after fork while pids
 * wrap: it waits for the child to end, then has a process made with the
 * same pid (the innocent), through ns_last_pid in a pid namespace of the
 * test's own. */
struct reuse {
    pid_t child;    /* the fipc child, as the fork handler found it */
    pid_t innocent; /* the process that got its pid next, or 0 */
    int ask[2];     /* the test asks the innocent whether it lives... */
    int answer[2];  /* ...and it answers */
};

static struct reuse reuse; /* in the namespace's first process only */

static int ns_last_pid(pid_t set)
{
    char buf[32] = {0};
    int fd = open("/proc/sys/kernel/ns_last_pid", set ? O_WRONLY : O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n;
    if (set) {
        snprintf(buf, sizeof buf, "%d", (int)set);
        n = write(fd, buf, strlen(buf));
    } else {
        n = read(fd, buf, sizeof buf - 1);
    }
    close(fd);
    return n > 0 ? atoi(buf) : -1;
}

static _Noreturn void be_the_innocent(void)
{
    close(reuse.ask[1]);
    close(reuse.answer[0]);
    char c;
    while (read(reuse.ask[0], &c, 1) < 0 && errno == EINTR)
        ;
    ssize_t n = write(reuse.answer[1], "y", 1);
    _exit(n == 1 ? 0 : 1);
}

/* A parent fork handler: it runs inside fork(), before start has seen
 * the child's pid.  _Fork runs no fork handlers. */
static void give_the_childs_pid_away(void)
{
    static bool once;
    if (once) return;
    once = true;
    pid_t child = ns_last_pid(0); /* nothing else forks in this namespace */
    reuse.child = child;
    int fd = test_pidfd_open(child);
    if (fd >= 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        while (poll(&pfd, 1, (int)(LIMIT_NS / 1000000)) < 0 && errno == EINTR)
            ;
        close(fd);
    }
    /* Ended; the kernel frees its pid a moment later: try until the
     * innocent gets it. */
    for (int tries = 0; tries < 1000; tries++) {
        if (ns_last_pid(child - 1) < 0) return;
        pid_t pid = _Fork();
        if (pid == 0) be_the_innocent();
        if (pid == child) {
            reuse.innocent = pid;
            return;
        }
        if (pid > 0) kill(pid, SIGKILL); /* the pid was not free yet */
    }
}

/* The first process (pid 1) of the new namespace. */
static int reuse_the_childs_pid(void)
{
    CHILD_CHECK(pipe(reuse.ask) == 0 && pipe(reuse.answer) == 0, 30);
    signal(SIGCHLD, SIG_IGN);
    CHILD_CHECK(pthread_atfork(NULL, give_the_childs_pid_away, NULL) == 0, 31);
    fipc_process *p;
    CHILD_CHECK(fipc_process_start(&p, return_zero, NULL, NULL) == 0, 32);
    /* The stand-in did its work, so what follows means something. */
    CHILD_CHECK(reuse.child == fipc_process_pid(p), 33);
    CHILD_CHECK(reuse.innocent == reuse.child, 34);

    CHILD_CHECK(fipc_process_kill(p) == 0, 35);
    CHILD_CHECK(fipc_process_terminate(p) == 0, 36);
    close(reuse.ask[0]);
    close(reuse.answer[1]);
    CHILD_CHECK(write(reuse.ask[1], "?", 1) == 1, 37);
    char c;
    ssize_t n;
    do
        n = read(reuse.answer[0], &c, 1);
    while (n < 0 && errno == EINTR);
    CHILD_CHECK(n == 1, 38); /* end of file: the innocent was killed */

    /* The child itself ended, and the kernel reaped it: status unknown. */
    CHILD_CHECK(fipc_process_join(p, LIMIT_NS) == 0, 39);
    CHILD_CHECK(!fipc_process_is_alive(p), 40);
    int code;
    CHILD_CHECK(fipc_process_exitcode(p, &code) == -ECHILD, 41);
    fipc_process_free(p);
    return CHILD_OK;
}

#define NO_PID_NAMESPACE 20

static int in_a_pid_namespace_of_its_own(int i, void *arg)
{
    test_child_setup();
    /* CI runs as root; elsewhere a user namespace may give the right to
     * make a pid namespace and to write its ns_last_pid. */
    if (unshare(CLONE_NEWPID) != 0 && unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0)
        return NO_PID_NAMESPACE;
    pid_t init = fork();
    if (init < 0) return 21;
    if (init == 0) _exit(reuse_the_childs_pid());
    int status;
    while (waitpid(init, &status, 0) < 0)
        if (errno != EINTR) return 22;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 23;
}

Test(process, kill_never_reaches_a_process_that_took_the_childs_pid)
{
    pid_t pid = test_fork(in_a_pid_namespace_of_its_own, 0, NULL);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "died of signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_assert_neq(WEXITSTATUS(status), NO_PID_NAMESPACE,
                  "cannot make a pid namespace: this test needs root, or user namespaces");
    cr_assert_neq(WEXITSTATUS(status), 38,
                  "kill/terminate through the handle killed the process "
                  "that took the child's pid");
    cr_assert_eq(WEXITSTATUS(status), 0, "failed check %d", WEXITSTATUS(status));
}

/* ---------------------------------------------------------------- */
/* Standard streams                                                  */
/* ---------------------------------------------------------------- */

/* stdout and stderr of a forked test child go to memfds, fully buffered
 * (as for files), so that what reaches them can be read back. */
static char out_buf[4096], err_buf[4096];

static bool capture_stdout_and_stderr(int *out, int *err)
{
    fflush(stdout);
    fflush(stderr);
    *out = memfd_create("stdout", 0);
    *err = memfd_create("stderr", 0);
    return *out >= 0 && *err >= 0 && dup2(*out, 1) == 1 && dup2(*err, 2) == 2 &&
           setvbuf(stdout, out_buf, _IOFBF, sizeof out_buf) == 0 &&
           setvbuf(stderr, err_buf, _IOFBF, sizeof err_buf) == 0;
}

/* What was written to fd so far, NUL-terminated (free it), or NULL. */
static char *written_to(int fd)
{
    off_t n = lseek(fd, 0, SEEK_END);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!s || pread(fd, s, (size_t)n, 0) != n) {
        free(s);
        return NULL;
    }
    s[n] = '\0';
    return s;
}

static int occurrences(const char *s, const char *line)
{
    int n = 0;
    for (const char *at = s; (at = strstr(at, line)); at += strlen(line))
        n++;
    return n;
}

/* A prepare fork handler runs after start's fflush(NULL), just before the
 * fork: output buffered here is what another thread's printf leaves in
 * the buffer when it lands between that flush and the fork. */
static void print_between_flush_and_fork(void)
{
    fputs("parent line\n", stdout);
    fputs("parent line\n", stderr);
}

static int print_a_child_line(void *arg)
{
    fputs("child line\n", stdout);
    fputs("child line\n", stderr);
    return 0;
}

static int each_line_once(int i, void *arg)
{
    int out, err;
    CHILD_CHECK(capture_stdout_and_stderr(&out, &err), 1);
    CHILD_CHECK(pthread_atfork(print_between_flush_and_fork, NULL, NULL) == 0, 2);
    fipc_process *p;
    CHILD_CHECK(fipc_process_start(&p, print_a_child_line, NULL, NULL) == 0, 3);
    int code = -1;
    CHILD_CHECK(fipc_process_join(p, LIMIT_NS) == 0, 4);
    CHILD_CHECK(fipc_process_exitcode(p, &code) == 0 && code == 0, 5);
    fipc_process_free(p);
    fflush(stdout);
    fflush(stderr);
    char *o = written_to(out), *e = written_to(err);
    CHILD_CHECK(o && e, 6);
    /* The child's own lines are written (once): the purge is of what it
     * inherited only. */
    CHILD_CHECK(occurrences(o, "child line\n") == 1, 7);
    CHILD_CHECK(occurrences(e, "child line\n") == 1, 8);
    CHILD_CHECK(occurrences(o, "parent line\n") == 1, 9);
    CHILD_CHECK(occurrences(e, "parent line\n") == 1, 10);
    return CHILD_OK;
}

/* The parent writes what it buffered; the child must not write it again
 * when it flushes stdio at its exit. */
Test(process, child_does_not_write_output_the_parent_buffered_before_the_fork)
{
    pid_t pid = test_fork(each_line_once, 0, NULL);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "died of signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_assert_eq(WEXITSTATUS(status), 0,
                 "failed check %d (9, 10: a line the parent had buffered was written twice)",
                 WEXITSTATUS(status));
}

struct logger {
    bool stop; /* atomic */
};

static void *log_lines(void *arg)
{
    struct logger *l = arg;
    for (long i = 0; !__atomic_load_n(&l->stop, __ATOMIC_RELAXED); i++)
        printf("log line %ld\n", i);
    return NULL;
}

/* The case as it comes: a thread logs to stdout (a file, so fully
 * buffered) while another starts children that print nothing.  The log
 * must read 0, 1, 2, ... with no line twice. */
static int log_while_starting(int i, void *arg)
{
    int out, err;
    CHILD_CHECK(capture_stdout_and_stderr(&out, &err), 1);
    struct logger l = {.stop = false};
    pthread_t t;
    CHILD_CHECK(pthread_create(&t, NULL, log_lines, &l) == 0, 2);
    for (int n = 0; n < 100; n++) {
        fipc_process *p;
        CHILD_CHECK(fipc_process_start(&p, return_zero, NULL, NULL) == 0, 3);
        CHILD_CHECK(fipc_process_join(p, LIMIT_NS) == 0, 4);
        fipc_process_free(p);
    }
    __atomic_store_n(&l.stop, true, __ATOMIC_RELAXED);
    pthread_join(t, NULL);
    fflush(stdout);
    char *o = written_to(out);
    CHILD_CHECK(o, 5);
    const char *prefix = "log line ";
    long want = 0;
    for (char *at = o; *at; want++) {
        CHILD_CHECK(strncmp(at, prefix, strlen(prefix)) == 0, 6);
        long got = strtol(at + strlen(prefix), &at, 10);
        CHILD_CHECK(*at++ == '\n', 6);
        CHILD_CHECK(got == want, 7); /* a line twice (or lost) */
    }
    CHILD_CHECK(want > 0, 8);
    return CHILD_OK;
}

Test(process, children_do_not_repeat_what_other_threads_logged)
{
    pid_t pid = test_fork(log_while_starting, 0, NULL);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "died of signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_assert_eq(WEXITSTATUS(status), 0, "failed check %d (6, 7: a line twice, or cut)",
                 WEXITSTATUS(status));
}

/* ---------------------------------------------------------------- */
/* A child that cannot report                                        */
/* ---------------------------------------------------------------- */

/* Child fork handlers run in the child before fipc's code does: one that
 * kills the child stands in for a signal from outside in its first
 * microseconds, before it has sent its pidfd. */
static void die_in_the_child(void)
{
    raise(SIGKILL);
}

static int start_a_child_that_dies_at_once(int ignore_sigchld, void *arg)
{
    if (ignore_sigchld) signal(SIGCHLD, SIG_IGN);
    CHILD_CHECK(pthread_atfork(NULL, NULL, die_in_the_child) == 0, 1);
    fipc_process *p;
    CHILD_CHECK(fipc_process_start(&p, return_three, NULL, NULL) == 0, 2);
    CHILD_CHECK(fipc_process_join(p, LIMIT_NS) == 0, 3);
    CHILD_CHECK(!fipc_process_is_alive(p), 4);
    CHILD_CHECK(fipc_process_kill(p) == 0, 5);
    int code = 0, r = fipc_process_exitcode(p, &code);
    if (ignore_sigchld)
        CHILD_CHECK(r == -ECHILD, 6); /* the kernel reaped it */
    else
        CHILD_CHECK(r == 0 && code == -SIGKILL, 7);
    fipc_process_free(p);
    return CHILD_OK;
}

/* start does not wait forever for a report that cannot come: the child
 * counts as started, and ended as it did. */
Test(process, child_killed_before_it_reports_is_an_ended_child)
{
    test_expect_ok(test_fork(start_a_child_that_dies_at_once, 0, NULL));
    test_expect_ok(test_fork(start_a_child_that_dies_at_once, 1, NULL));
}

static void no_more_fds_in_the_child(void)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        lim.rlim_cur = 0; /* no new fd at all: pidfd_open gives EMFILE */
        setrlimit(RLIMIT_NOFILE, &lim);
    }
}

static int start_a_child_without_fds(int i, void *arg)
{
    CHILD_CHECK(pthread_atfork(NULL, NULL, no_more_fds_in_the_child) == 0, 1);
    fipc_process_opts o = {.daemon = i == 1};
    fipc_process *p;
    CHILD_CHECK(fipc_process_start(&p, return_three, NULL, &o) == 0, 2);
    CHILD_CHECK(fipc_process_join(p, LIMIT_NS) == 0, 3);
    int code = 0;
    CHILD_CHECK(fipc_process_exitcode(p, &code) == 0, 4);
    CHILD_CHECK(code == 127, 5); /* 3 would mean target ran */
    fipc_process_free(p);
    return CHILD_OK;
}

/* A child that cannot open a pidfd on itself (no fd left) must not run
 * target, since its parent could not tell it from a process that later
 * takes its pid: it leaves with 127, as a shell does for a command it
 * cannot run. */
Test(process, child_that_cannot_send_its_pidfd_exits_127_without_running_target)
{
    test_expect_ok(test_fork(start_a_child_without_fds, 0, NULL));
    test_expect_ok(test_fork(start_a_child_without_fds, 1, NULL));
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
