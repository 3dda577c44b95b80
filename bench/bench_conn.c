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
 *
 * The receiver checks each message's sequence number; a run fails on a
 * lost, torn or reordered message.
 */
#include <errno.h>
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
};
BENCH_SUITE(conn, conn_cases)
