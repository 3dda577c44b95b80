/*
 * bench_conn.c - fipc_conn (Pipe) against the kernel's channels.
 *
 * Groups (fipc-bench --list):
 *   conn-1way-8B, conn-1way-4K
 *               one sender process -> one receiver process, nanoseconds per
 *               message; baseline: a SOCK_SEQPACKET socket pair (one send
 *               and one recv per message, the least a Unix socket needs:
 *               Python's Pipe uses a socket pair with a length prefix),
 *               also a pipe carrying fixed-size records
 *   conn-pingpong-8B
 *               round trips of an 8-byte message on a duplex channel
 *   conn-vs-python-8B, conn-vs-python-4K, conn-vs-python-pingpong
 *               the same against multiprocessing.Pipe (send_bytes and
 *               recv_bytes; bench_py_shared.py)
 *   dict-get-vs-python, dict-set-vs-python
 *               one process reading or writing one 8-byte value: fipc_dict
 *               against Manager().dict(), which pays a round trip to its
 *               server process per access
 *   value-add-vs-python
 *               fipc_value_add against Value('q') updated under its lock
 *
 * The receiver checks each message's sequence number; a run fails on a
 * lost, torn or reordered message.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fipc.h>

#include "bench.h"

enum kind { K_SOCK, K_PIPE, K_CONN };

struct chan {
    enum kind kind;
    int fd[2];        /* K_SOCK: a socket pair; K_PIPE: there, fd[0] read, fd[1] write */
    int back[2];      /* K_PIPE ping-pong: the way back */
    fipc_conn *a, *b; /* K_CONN */
};

struct args {
    enum kind kind;
    size_t size;
    bool pingpong;
};

static int chan_open(struct chan *c, enum kind kind, bool duplex)
{
    c->kind = kind;
    switch (kind) {
    case K_SOCK:
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, c->fd) < 0)
            return bench_fail("socketpair: %s", strerror(errno));
        return 0;
    case K_PIPE:
        if (pipe2(c->fd, O_CLOEXEC) < 0 || (duplex && pipe2(c->back, O_CLOEXEC) < 0))
            return bench_fail("pipe: %s", strerror(errno));
        return 0;
    case K_CONN: {
        int r = fipc_pipe(&c->a, &c->b, duplex);
        return r < 0 ? bench_fail("fipc_pipe: %s", fipc_strerror(r)) : 0;
    }
    }
    return -1;
}

/* side 0 is the receiver (a), side 1 the sender (b); ping-pong answers
 * the other way. */
static int chan_send(struct chan *c, int side, const void *m, size_t n)
{
    ssize_t w;
    switch (c->kind) {
    case K_SOCK:
        w = send(c->fd[side], m, n, 0);
        return w == (ssize_t)n ? 0 : bench_fail("send: %s", strerror(errno));
    case K_PIPE:
        w = write(side == 1 ? c->fd[1] : c->back[1], m, n);
        return w == (ssize_t)n ? 0 : bench_fail("write: %s", strerror(errno));
    case K_CONN: {
        int r = fipc_conn_send(side == 1 ? c->b : c->a, m, n);
        return r < 0 ? bench_fail("fipc_conn_send: %s", fipc_strerror(r)) : 0;
    }
    }
    return -1;
}

static int chan_recv(struct chan *c, int side, void *m, size_t n)
{
    ssize_t got = -1;
    switch (c->kind) {
    case K_SOCK:
        got = recv(c->fd[side], m, n, 0);
        break;
    case K_PIPE:
        got = read(side == 0 ? c->fd[0] : c->back[0], m, n);
        break;
    case K_CONN:
        got = fipc_conn_recv(side == 0 ? c->a : c->b, m, n, FIPC_SEC(10));
        break;
    }
    return got == (ssize_t)n ? 0 : bench_fail("recv: %zd of %zu", got, n);
}

static int run(struct bench_run *r)
{
    const struct args *a = r->arg;
    struct chan c = {0};
    if (chan_open(&c, a->kind, a->pingpong) < 0) return -1;
    char *m = calloc(1, a->size);
    pid_t pid = bench_fork();
    if (pid < 0) return bench_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        /* The receiver; in ping-pong it answers each message. */
        for (uint64_t i = 0; i < r->iters; i++) {
            if (chan_recv(&c, 0, m, a->size) < 0) _exit(1);
            uint64_t seq;
            memcpy(&seq, m, sizeof seq);
            if (seq != i) _exit(2);
            if (a->pingpong && chan_send(&c, 0, m, a->size) < 0) _exit(3);
        }
        if (!a->pingpong && a->kind == K_SOCK && chan_send(&c, 0, m, 8) < 0) /* done */
            _exit(4);
        _exit(0);
    }
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < r->iters; i++) {
        memcpy(m, &i, sizeof i);
        if (chan_send(&c, 1, m, a->size) < 0) return -1;
        if (a->pingpong && chan_recv(&c, 1, m, a->size) < 0) return -1;
    }
    if (!a->pingpong) {
        /* The way back carries the receiver's "done" (duplex not needed
         * for a socket pair; a pipe and a simplex conn have none, so
         * those wait for the receiver's exit instead). */
        if (a->kind == K_SOCK && chan_recv(&c, 1, m, 8) < 0) return -1;
    }
    int rc = bench_reap(pid, "receiver");
    r->ns = bench_now_ns() - t0;
    free(m);
    return rc;
}

/* ---- shared data, in one process ---- */

static int run_dict(struct bench_run *r)
{
    bool set = r->arg != NULL;
    fipc_arena *ar;
    fipc_dict *d;
    int rc = fipc_arena_create(&ar, "bench-dict", 1 << 20);
    if (rc < 0) return bench_fail("fipc_arena_create: %s", fipc_strerror(rc));
    if ((rc = fipc_dict_create(&d, ar, 64, 16, 64)) < 0)
        return bench_fail("fipc_dict_create: %s", fipc_strerror(rc));
    char v[8] = "1234567";
    size_t len;
    if ((rc = fipc_dict_set(d, "k", v, sizeof v)) < 0)
        return bench_fail("fipc_dict_set: %s", fipc_strerror(rc));
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < r->iters; i++) {
        rc = set ? fipc_dict_set(d, "k", v, sizeof v) : fipc_dict_get(d, "k", v, sizeof v, &len);
        if (rc < 0) return bench_fail("fipc_dict: %s", fipc_strerror(rc));
    }
    r->ns = bench_now_ns() - t0;
    fipc_arena_close(ar);
    return 0;
}

static int run_value(struct bench_run *r)
{
    fipc_value *v;
    int rc = fipc_value_new(&v, NULL, 0);
    if (rc < 0) return bench_fail("fipc_value_new: %s", fipc_strerror(rc));
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < r->iters; i++)
        fipc_value_add(v, 1);
    r->ns = bench_now_ns() - t0;
    if (fipc_value_get(v) != (int64_t)r->iters) return bench_fail("value differs");
    return 0;
}

/* ---- the Python baselines ---- */

#ifndef FIPC_BENCH_PY_SHARED
#define FIPC_BENCH_PY_SHARED "bench/bench_py_shared.py"
#endif

struct py_args {
    const char *kind;
    const char *size; /* NULL: none */
    uint64_t lo, hi;  /* the band of counts: Python is slow */
};

static int run_py(struct bench_run *r)
{
    const struct py_args *c = r->arg;
    uint64_t n = r->quick ? c->lo : r->iters < c->lo ? c->lo : r->iters > c->hi ? c->hi : r->iters;
    char count[24];
    snprintf(count, sizeof count, "%" PRIu64, n);
    unsigned long long done;
    long long ns;
    if (bench_python(FIPC_BENCH_PY_SHARED, c->kind, count, c->size, &done, &ns) < 0) return -1;
    if (done != n)
        return bench_fail("%s counted %llu, not %" PRIu64, FIPC_BENCH_PY_SHARED, done, n);
    r->ns = ns;
    r->ops = n;
    return 0;
}

static const struct py_args py8 = {"pipe", "8", 20000, 100000},
                            py4k = {"pipe", "4096", 20000, 100000},
                            pypp = {"pingpong", NULL, 5000, 20000},
                            pyget = {"dict_get", NULL, 5000, 20000},
                            pyset = {"dict_set", NULL, 5000, 20000},
                            pyadd = {"value_add", NULL, 100000, 300000};

static const struct args sock8 = {K_SOCK, 8, false}, pipe8 = {K_PIPE, 8, false},
                         conn8 = {K_CONN, 8, false};
static const struct args sock4k = {K_SOCK, 4096, false}, pipe4k = {K_PIPE, 4096, false},
                         conn4k = {K_CONN, 4096, false};
static const struct args sockpp = {K_SOCK, 8, true}, pipepp = {K_PIPE, 8, true},
                         connpp = {K_CONN, 8, true};

static const struct bench_case conn_cases[] = {
    {.group = "conn-1way-8B",
     .name = "socketpair",
     .unit = BENCH_TIME,
     .op = "msg",
     .fn = run,
     .arg = &sock8},
    {.group = "conn-1way-8B",
     .name = "pipe",
     .baseline = "socketpair",
     .unit = BENCH_TIME,
     .op = "msg",
     .fn = run,
     .arg = &pipe8},
    {.group = "conn-1way-8B",
     .name = "fipc_conn",
     .baseline = "socketpair",
     .unit = BENCH_TIME,
     .op = "msg",
     .fn = run,
     .arg = &conn8,
     .goal = BENCH_GOAL_TIME_AT_MOST(0.1)},
    {.group = "conn-1way-4K",
     .name = "socketpair",
     .unit = BENCH_TIME,
     .op = "msg",
     .fn = run,
     .arg = &sock4k},
    {.group = "conn-1way-4K",
     .name = "pipe",
     .baseline = "socketpair",
     .unit = BENCH_TIME,
     .op = "msg",
     .fn = run,
     .arg = &pipe4k},
    {.group = "conn-1way-4K",
     .name = "fipc_conn",
     .baseline = "socketpair",
     .unit = BENCH_TIME,
     .op = "msg",
     .fn = run,
     .arg = &conn4k,
     .goal = BENCH_GOAL_TIME_AT_MOST(0.5)},
    {.group = "conn-pingpong-8B",
     .name = "socketpair",
     .unit = BENCH_TIME,
     .op = "rtt",
     .fn = run,
     .arg = &sockpp},
    {.group = "conn-pingpong-8B",
     .name = "pipe",
     .baseline = "socketpair",
     .unit = BENCH_TIME,
     .op = "rtt",
     .fn = run,
     .arg = &pipepp},
    {.group = "conn-pingpong-8B",
     .name = "fipc_conn",
     .baseline = "socketpair",
     .unit = BENCH_TIME,
     .op = "rtt",
     .fn = run,
     .arg = &connpp,
     .goal = BENCH_GOAL_TIME_AT_MOST(0.1)},
    {.group = "conn-vs-python-8B",
     .name = "python_pipe",
     .unit = BENCH_TIME,
     .op = "msg",
     .fn = run_py,
     .arg = &py8,
     .min_iters = 20000},
    {.group = "conn-vs-python-8B",
     .name = "fipc_conn",
     .baseline = "python_pipe",
     .unit = BENCH_TIME,
     .op = "msg",
     .fn = run,
     .arg = &conn8},
    {.group = "conn-vs-python-4K",
     .name = "python_pipe",
     .unit = BENCH_TIME,
     .op = "msg",
     .fn = run_py,
     .arg = &py4k,
     .min_iters = 20000},
    {.group = "conn-vs-python-4K",
     .name = "fipc_conn",
     .baseline = "python_pipe",
     .unit = BENCH_TIME,
     .op = "msg",
     .fn = run,
     .arg = &conn4k},
    {.group = "conn-vs-python-pingpong",
     .name = "python_pipe",
     .unit = BENCH_TIME,
     .op = "rtt",
     .fn = run_py,
     .arg = &pypp,
     .min_iters = 5000},
    {.group = "conn-vs-python-pingpong",
     .name = "fipc_conn",
     .baseline = "python_pipe",
     .unit = BENCH_TIME,
     .op = "rtt",
     .fn = run,
     .arg = &connpp},
    {.group = "dict-get-vs-python",
     .name = "python_manager",
     .unit = BENCH_TIME,
     .op = "get",
     .fn = run_py,
     .arg = &pyget,
     .min_iters = 5000},
    {.group = "dict-get-vs-python",
     .name = "fipc_dict",
     .baseline = "python_manager",
     .unit = BENCH_TIME,
     .op = "get",
     .fn = run_dict,
     .goal = BENCH_GOAL_TIME_AT_MOST(0.001)},
    {.group = "dict-set-vs-python",
     .name = "python_manager",
     .unit = BENCH_TIME,
     .op = "set",
     .fn = run_py,
     .arg = &pyset,
     .min_iters = 5000},
    {.group = "dict-set-vs-python",
     .name = "fipc_dict",
     .baseline = "python_manager",
     .unit = BENCH_TIME,
     .op = "set",
     .fn = run_dict,
     .arg = "set",
     .goal = BENCH_GOAL_TIME_AT_MOST(0.001)},
    {.group = "value-add-vs-python",
     .name = "python_value_locked",
     .unit = BENCH_TIME,
     .op = "add",
     .fn = run_py,
     .arg = &pyadd,
     .min_iters = 100000},
    {.group = "value-add-vs-python",
     .name = "fipc_value_add",
     .baseline = "python_value_locked",
     .unit = BENCH_TIME,
     .op = "add",
     .fn = run_value},
};
BENCH_SUITE(conn, conn_cases)
