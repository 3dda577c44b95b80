/*
 * bench_uring.c - a fipc queue served by an io_uring loop through
 * fipc_queue_prep_wait, against the usual designs: the producer also
 * writes an eventfd that the loop reads through io_uring, or the messages
 * go through a pipe that the loop reads.
 *
 * Groups (8-byte messages):
 *   uring-idle-wake-8B  the wake-up latency of an idle loop: a sender
 *                   puts a CLOCK_MONOTONIC stamp every 100 us (and, for
 *                   the baseline, writes the eventfd); the loop, asleep in
 *                   io_uring each time, records its clock at the
 *                   completion minus the stamp.  Baseline: queue + eventfd
 *   uring-idle-wake-1ms-8B  the same every 1 ms, a gap after which a VM's
 *                   host may have taken the idle CPU back: the wake-up
 *                   then waits for the host, whose delays (tens of
 *                   microseconds to milliseconds) swamp either design's
 *                   own cost, so the group has no goal
 *   uring-wake-8B   round trips: the loop arms its wait for the response,
 *                   puts a request, and waits in io_uring for the
 *                   response; the partner takes the request with a
 *                   blocking get and puts the response (and, for the
 *                   baseline, writes the eventfd).  The response comes
 *                   while the loop is still on its way to sleep, so this
 *                   is the race of each design's wake with the loop's
 *                   sleep, not an idle loop's wake-up (docs/uring.md).
 *                   Baseline: queue + eventfd
 *   uring-drain-8B  messages per second from one busy producer process
 *                   into a loop that drains them; baseline: a pipe of
 *                   8-byte records that the loop reads 4 KiB at a time
 *   uring-drain-vs-eventfd-8B  the same, against queue + one eventfd write
 *                   per put
 *
 * The loop checks every message (an exact sequence) and the count.
 * Nothing waits without bound: fipc calls time out after 10 s, and the
 * loop's io_uring waits too.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <fipc.h>

#define TIMEOUT_NS FIPC_SEC(10)
#define ARENA_SIZE (1u << 20)
#define CAPACITY   1024
#define WARMUP     200
/* uring-idle-wake-8B: time between messages, far more than the loop
 * needs to go back to sleep (a few microseconds). */
#define IDLE_PERIOD_NS 100000

enum design {
    D_PREP_WAIT, /* fipc_queue_prep_wait */
    D_EVENTFD,   /* fipc queue, and an eventfd written after each put */
    D_PIPE,      /* the messages themselves in a pipe */
};

struct setup {
    enum design d;
    fipc_arena *arena;
    fipc_queue *q, *req;
    int efd;
    int pipe[2];
    struct io_uring ring;
};

static int set_up(struct setup *s, enum design d)
{
    *s = (struct setup){.d = d, .efd = -1, .pipe = {-1, -1}};
    int rc;
    if ((rc = fipc_arena_create(&s->arena, "bench-uring", ARENA_SIZE)) != 0 ||
        (rc = fipc_queue_create(&s->q, s->arena, CAPACITY, 8, 0)) != 0 ||
        (rc = fipc_queue_create(&s->req, s->arena, CAPACITY, 8, 0)) != 0)
        return bench_fail("fipc set-up: %s", fipc_strerror(rc));
    if (d == D_EVENTFD && (s->efd = eventfd(0, EFD_CLOEXEC)) < 0)
        return bench_fail("eventfd: %s", strerror(errno));
    if (d == D_PIPE && pipe2(s->pipe, O_CLOEXEC) < 0)
        return bench_fail("pipe: %s", strerror(errno));
    return 0;
}

static int ring_up(struct setup *s)
{
    int rc = io_uring_queue_init(8, &s->ring, 0);
    return rc < 0 ? bench_fail("io_uring_queue_init: %s", strerror(-rc)) : 0;
}

static void tear_down(struct setup *s)
{
    io_uring_queue_exit(&s->ring);
    if (s->efd >= 0) close(s->efd);
    for (int i = 0; i < 2; i++)
        if (s->pipe[i] >= 0) close(s->pipe[i]);
    fipc_arena_close(s->arena);
}

/* Arm the loop's wait: the queue's prep_wait, or a read of the eventfd or
 * the pipe into buf; submitted at once. */
static int arm(struct setup *s, void *buf, unsigned cap)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    if (s->d == D_PREP_WAIT) {
        int r = fipc_queue_prep_wait(sqe, s->q, FIPC_READABLE);
        if (r < 0) return bench_fail("fipc_queue_prep_wait: %s", fipc_strerror(r));
    } else {
        io_uring_prep_read(sqe, s->d == D_EVENTFD ? s->efd : s->pipe[0], buf, cap, 0);
    }
    if (io_uring_submit(&s->ring) != 1) return bench_fail("io_uring_submit");
    return 0;
}

/* Sleep until the armed wait completes: its res. */
static int reap(struct setup *s, int *res)
{
    struct __kernel_timespec ts = {.tv_sec = TIMEOUT_NS / 1000000000};
    struct io_uring_cqe *cqe;
    int r;
    do
        r = io_uring_wait_cqe_timeout(&s->ring, &cqe, &ts);
    while (r == -EINTR);
    if (r < 0) return bench_fail("io_uring wait: %s", strerror(-r));
    *res = cqe->res;
    io_uring_cqe_seen(&s->ring, cqe);
    return 0;
}

/* ---- uring-wake-8B ---- */

static int wake_partner(struct setup *s, uint64_t n)
{
    uint64_t one = 1;
    for (uint64_t k = 1; k <= n; k++) {
        uint64_t v;
        size_t len;
        if (fipc_queue_get(s->req, &v, sizeof v, &len, TIMEOUT_NS) != 0 || v != k) return 1;
        if (fipc_queue_put(s->q, &v, sizeof v, TIMEOUT_NS) != 0) return 2;
        if (s->d == D_EVENTFD && write(s->efd, &one, sizeof one) != sizeof one) return 3;
    }
    return 0;
}

static int run_wake(struct bench_run *r)
{
    struct setup s;
    if (set_up(&s, (enum design)(intptr_t)r->arg) < 0) return -1;
    uint64_t n = WARMUP + r->iters;
    pid_t pid = bench_fork();
    if (pid < 0) return -1;
    if (pid == 0) _exit(wake_partner(&s, n));
    if (ring_up(&s) < 0) return -1;
    int64_t t0 = 0;
    for (uint64_t k = 1; k <= n; k++) {
        if (k == WARMUP + 1) t0 = bench_now_ns();
        uint64_t counter, v;
        size_t len;
        int res, rc;
        /* Armed before the request goes out, so the loop is asleep (or on
         * its way) when the response comes. */
        if (arm(&s, &counter, sizeof counter) < 0) return -1;
        if ((rc = fipc_queue_put(s.req, &k, sizeof k, TIMEOUT_NS)) != 0)
            return bench_fail("put: %s", fipc_strerror(rc));
        for (;;) {
            if (reap(&s, &res) < 0) return -1;
            rc = fipc_queue_get(s.q, &v, sizeof v, &len, 0);
            if (rc == 0) break;
            if (rc != -EAGAIN) return bench_fail("get: %s", fipc_strerror(rc));
            /* Look again: prep_wait's completion is a hint (a read of the
             * eventfd never completes early). */
            if (arm(&s, &counter, sizeof counter) < 0) return -1;
        }
        if (v != k)
            return bench_fail("round %llu: got %llu", (unsigned long long)k, (unsigned long long)v);
    }
    r->ns = bench_now_ns() - t0;
    r->ops = r->iters;
    if (bench_reap(pid, "wake partner") < 0) return -1;
    tear_down(&s);
    return 0;
}

/* ---- uring-idle-wake-8B ---- */

/* The idle loop's set-up: a design, and the time between messages. */
struct idle_cfg {
    enum design d;
    int64_t period_ns;
};

/* A CLOCK_MONOTONIC stamp every period_ns, taken just before the put (and,
 * for the baseline, the eventfd write that follows it), so that the
 * sample is the time from the put to the loop's completion.  Spins on the
 * clock between messages: the loop's CPU is the one that idles. */
static int idle_sender(struct setup *s, int64_t period_ns, uint64_t n)
{
    if (bench_pin_cpu(0) < 0) return 1;
    uint64_t one = 1;
    int64_t next = bench_now_ns() + period_ns;
    for (uint64_t k = 1; k <= n; k++) {
        while (bench_now_ns() < next)
            cpu_relax();
        next += period_ns;
        uint64_t stamp = (uint64_t)bench_now_ns();
        if (fipc_queue_put(s->q, &stamp, sizeof stamp, TIMEOUT_NS) != 0) return 2;
        if (s->d == D_EVENTFD && write(s->efd, &one, sizeof one) != sizeof one) return 3;
    }
    return 0;
}

static int run_idle_wake(struct bench_run *r)
{
    const struct idle_cfg *c = r->arg;
    struct setup s;
    if (set_up(&s, c->d) < 0) return -1;
    const uint64_t warm = 20, n = r->iters;
    int64_t *t = malloc(n * sizeof *t);
    if (!t) return bench_fail("malloc %llu samples", (unsigned long long)n);
    /* Pinned apart, as latency-1way: the loop's CPU has nothing else to
     * run, so it is asleep (idle) when each message comes. */
    if (bench_pin_cpu(1) < 0) return -1;
    pid_t pid = bench_fork();
    if (pid < 0) return -1;
    if (pid == 0) _exit(idle_sender(&s, c->period_ns, warm + n));
    if (ring_up(&s) < 0) return -1;
    int64_t t0 = 0;
    for (uint64_t k = 1; k <= warm + n; k++) {
        if (k == warm + 1) t0 = bench_now_ns();
        uint64_t counter, stamp;
        size_t len;
        int res, rc;
        /* Take what is there before waiting: a message may come while the
         * loop handles the one before (one eventfd read then covers both
         * writes); then wait, and look again after each completion. */
        while ((rc = fipc_queue_get(s.q, &stamp, sizeof stamp, &len, 0)) == -EAGAIN) {
            if (arm(&s, &counter, sizeof counter) < 0 || reap(&s, &res) < 0) return -1;
        }
        if (rc != 0) return bench_fail("get: %s", fipc_strerror(rc));
        if (bench_oneway_sample(t, k, warm, stamp) < 0) return -1;
    }
    r->ns = bench_now_ns() - t0;
    r->ops = n;
    if (bench_reap(pid, "sender") < 0) return -1;
    bench_dist(r, t, n);
    free(t);
    tear_down(&s);
    return 0;
}

/* ---- uring-drain-8B ---- */

static int drain_producer(struct setup *s, struct bench_gate *g, uint64_t n)
{
    if (bench_gate_pass(g) < 0) return 1;
    uint64_t one = 1;
    for (uint64_t k = 0; k < n; k++) {
        if (s->d == D_PIPE) {
            if (write(s->pipe[1], &k, sizeof k) != sizeof k) return 2;
            continue;
        }
        if (fipc_queue_put(s->q, &k, sizeof k, TIMEOUT_NS) != 0) return 3;
        if (s->d == D_EVENTFD && write(s->efd, &one, sizeof one) != sizeof one) return 4;
    }
    return 0;
}

static int run_drain(struct bench_run *r)
{
    struct setup s;
    struct bench_gate g;
    if (set_up(&s, (enum design)(intptr_t)r->arg) < 0 || bench_gate_init(&g) < 0) return -1;
    uint64_t n = r->iters;
    pid_t pid = bench_fork();
    if (pid < 0) return -1;
    if (pid == 0) _exit(drain_producer(&s, &g, n));
    if (s.d == D_PIPE) close(s.pipe[1]), s.pipe[1] = -1;
    if (ring_up(&s) < 0) return -1;
    static uint64_t buf[512];
    uint64_t next = 0;
    size_t partial = 0; /* bytes of a record a pipe read cut in two */
    if (arm(&s, (char *)buf, sizeof buf) < 0) return -1;
    if (bench_gate_open(&g, 1) < 0) return -1;
    int64_t t0 = bench_now_ns();
    while (next < n) {
        int res;
        if (reap(&s, &res) < 0) return -1;
        if (s.d == D_PIPE) {
            if (res <= 0) return bench_fail("pipe read: %d", res);
            size_t bytes = partial + (size_t)res, whole = bytes / 8;
            for (size_t i = 0; i < whole; i++)
                if (buf[i] != next++) return bench_fail("pipe: out of order");
            partial = bytes % 8;
            if (partial) memmove(buf, (char *)buf + whole * 8, partial);
            struct io_uring_sqe *sqe = io_uring_get_sqe(&s.ring);
            io_uring_prep_read(sqe, s.pipe[0], (char *)buf + partial,
                               (unsigned)(sizeof buf - partial), 0);
            if (next < n && io_uring_submit(&s.ring) != 1) return bench_fail("submit");
            continue;
        }
        uint64_t v;
        size_t len;
        int rc;
        while ((rc = fipc_queue_get(s.q, &v, sizeof v, &len, 0)) == 0)
            if (v != next++) return bench_fail("queue: out of order");
        if (rc != -EAGAIN) return bench_fail("get: %s", fipc_strerror(rc));
        if (next < n && arm(&s, (char *)buf, 8) < 0) return -1;
    }
    r->ns = bench_now_ns() - t0;
    r->ops = n;
    if (bench_reap(pid, "producer") < 0) return -1;
    bench_gate_close(&g);
    tear_down(&s);
    return 0;
}

#define D(x) ((const void *)(intptr_t)(x))

/* An idle-wake case: design d, a message every period ns; the rest
 * (goals) as further initializers. */
#define IDLE_WAKE(grp, nm, base, d, period, ...)                                                   \
    {                                                                                              \
        .group = grp, .name = nm, .baseline = base, .unit = BENCH_TIME, .op = "msg",               \
        .fn = run_idle_wake, .arg = &(const struct idle_cfg){d, period}, .min_iters = 100,         \
        .dist = true, __VA_ARGS__                                                                  \
    }

static const struct bench_case uring_cases[] = {
    {.group = "uring-wake-8B",
     .name = "queue+eventfd",
     .unit = BENCH_TIME,
     .op = "rtt",
     .fn = run_wake,
     .arg = D(D_EVENTFD),
     .min_iters = 1000},
    {.group = "uring-wake-8B",
     .name = "queue+prep_wait",
     .baseline = "queue+eventfd",
     .unit = BENCH_TIME,
     .op = "rtt",
     .fn = run_wake,
     .arg = D(D_PREP_WAIT),
     .min_iters = 1000},

    IDLE_WAKE("uring-idle-wake-8B", "queue+eventfd", NULL, D_EVENTFD, IDLE_PERIOD_NS),
    /* The goal: at most 1.1x the eventfd design's time. */
    IDLE_WAKE("uring-idle-wake-8B", "queue+prep_wait", "queue+eventfd", D_PREP_WAIT, IDLE_PERIOD_NS,
              .dist_goals = {{BENCH_P50, 1.1, BENCH_P50, false}}),
    IDLE_WAKE("uring-idle-wake-1ms-8B", "queue+eventfd", NULL, D_EVENTFD, 1000000),
    IDLE_WAKE("uring-idle-wake-1ms-8B", "queue+prep_wait", "queue+eventfd", D_PREP_WAIT, 1000000),

    {.group = "uring-drain-8B",
     .name = "pipe",
     .unit = BENCH_RATE,
     .op = "msg",
     .fn = run_drain,
     .arg = D(D_PIPE),
     .min_iters = 20000},
    {.group = "uring-drain-8B",
     .name = "queue+eventfd",
     .baseline = "pipe",
     .unit = BENCH_RATE,
     .op = "msg",
     .fn = run_drain,
     .arg = D(D_EVENTFD),
     .min_iters = 20000},
    {.group = "uring-drain-8B",
     .name = "queue+prep_wait",
     .baseline = "pipe",
     .unit = BENCH_RATE,
     .op = "msg",
     .fn = run_drain,
     .arg = D(D_PREP_WAIT),
     .min_iters = 20000,
     .goal = BENCH_GOAL_RATE_AT_LEAST(10)},

    {.group = "uring-drain-vs-eventfd-8B",
     .name = "queue+eventfd",
     .unit = BENCH_RATE,
     .op = "msg",
     .fn = run_drain,
     .arg = D(D_EVENTFD),
     .min_iters = 20000},
    {.group = "uring-drain-vs-eventfd-8B",
     .name = "queue+prep_wait",
     .baseline = "queue+eventfd",
     .unit = BENCH_RATE,
     .op = "msg",
     .fn = run_drain,
     .arg = D(D_PREP_WAIT),
     .min_iters = 20000,
     .goal = BENCH_GOAL_RATE_AT_LEAST(3)},
};
BENCH_SUITE(uring, uring_cases)
