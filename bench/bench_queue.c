/*
 * bench_queue.c - fipc's queues against pipes, sockets, POSIX message
 * queues, Concurrency Kit's ck_ring and Python's multiprocessing.
 *
 * Groups (all 8-byte messages unless the name says 256B):
 *   queue-1x1-8B, queue-1x1-256B
 *               one producer process -> one consumer process, messages per
 *               second; baseline: a pipe carrying fixed-size records
 *   queue-vs-python-8B   the same transfer against multiprocessing.Queue
 *   queue-batch-8B       put_many/get_many of 32 against single put/get
 *   queue-vs-ck-8B       fipc (blocking) against ck_ring (busy-waiting)
 *   queue-2x2-8B, queue-4x4-8B
 *               N producer and N consumer processes on one queue, total
 *               messages per second; baseline: one pipe with N writers and
 *               N readers (records below PIPE_BUF are atomic)
 *   queue-pingpong-8B    round trips over a request and a response channel
 *   jqueue-overhead-8B   JoinableQueue put+get+task_done (and a final join)
 *                        against plain put+get, in ns per message
 *   jqueue-vs-python-8B  the same against multiprocessing.JoinableQueue
 * A group has one baseline, so a case compared with two baselines (fipc
 * SPSC against pipe and against Python) appears in two groups.
 *
 * A transfer: the runner forks the consumers, then the producers; all wait
 * at a gate.  Producer i sends seq 0..per-1, tagged with i in the top byte
 * (a 256-byte message carries the tag in its first 8 bytes and its
 * complement in its last 8).  Every consumer checks each message as it
 * takes it: with one consumer the sequence must be exact, with several each
 * producer's sequence must still increase (a consumer's claims are in queue
 * order); the runner then checks the total count and the sum of all tags.
 * Time runs from the first producer's first send to the last process's
 * end.  A transport without an end-of-stream (ck_ring, POSIX mq) is used
 * with one consumer only, which stops after the known total.
 *
 * Nothing waits without bound: fipc calls and mq calls time out after 10 s,
 * ck_ring waits spin a little, then sched_yield, and give up after 10 s
 * without progress; a pipe or socket sees EOF or EPIPE when its peer dies,
 * and the harness reports any helper that dies.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <mqueue.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <fipc.h>

#if __has_include(<ck_ring.h>)
#include <ck_ring.h>
#define HAVE_CK 1
#else
#define HAVE_CK 0
#endif

#define CACHELINE  64
#define CAPACITY   1024 /* slots in every ring-based queue */
#define BATCH      32   /* messages per put_many / get_many */
#define MAX_SIDE   4    /* producers (or consumers) at most */
#define MAX_MSG    256  /* largest message */
#define TIMEOUT_NS FIPC_SEC(10)
#define ARENA_SIZE ((size_t)4 << 20)

#define TAG_SHIFT 56
#define SEQ_MASK  ((UINT64_C(1) << TAG_SHIFT) - 1)

/* ====================================================================== */
/* Bounded busy-waiting (ck_ring)                                           */
/* ====================================================================== */

/* Spins before each sched_yield: on two CPUs a spinner must let the process
 * it waits for run if the scheduler put both on one CPU. */
#define SPIN_PAUSES 128

struct spin {
    uint64_t n;
    int64_t deadline;
};

/* One unsuccessful attempt; -1 after TIMEOUT_NS without progress. */
static inline int spin_wait(struct spin *s)
{
    s->n++;
    if (s->n < SPIN_PAUSES) {
        cpu_pause();
        return 0;
    }
    if (s->n == SPIN_PAUSES) s->deadline = bench_now_ns() + TIMEOUT_NS;
    sched_yield();
    if ((s->n & 1023) == 0 && bench_now_ns() > s->deadline) return -1;
    return 0;
}

static inline void spin_reset(struct spin *s)
{
    s->n = 0;
}

#if HAVE_CK
struct msg8 {
    unsigned char b[8];
};
struct msg256 {
    unsigned char b[256];
};
CK_RING_PROTOTYPE(m8, msg8)
CK_RING_PROTOTYPE(m256, msg256)
#endif

/* ====================================================================== */
/* Transfers                                                                */
/* ====================================================================== */

enum xkind {
    X_PIPE,
    X_SEQPACKET,
    X_MQ,
    X_CK_SPSC,
    X_CK_MPMC,
    X_FIPC_MPMC,
    X_FIPC_SPSC,
    X_FIPC_BATCH, /* MPMC, put_many / get_many of BATCH */
    X_FIPC_JQ,    /* jqueue, MPMC: put; get + task_done; the producer joins */
};

struct xfer_cfg {
    enum xkind kind;
    uint32_t size;
    int producers, consumers;
};

/* What the helpers report, each field written by one process. */
struct xfer_shared {
    _Alignas(CACHELINE) int64_t start[MAX_SIDE];   /* producers' first send */
    _Alignas(CACHELINE) int64_t end[2 * MAX_SIDE]; /* producers, then consumers */
    _Alignas(CACHELINE) uint64_t count[MAX_SIDE];  /* per consumer */
    _Alignas(CACHELINE) uint64_t sum[MAX_SIDE];    /* per consumer */
    _Alignas(CACHELINE) uint32_t producers_left;   /* the last one closes */
#if HAVE_CK
    _Alignas(CACHELINE) struct ck_ring ring;
#endif
};

/* The transport's handles, set up by the runner and inherited by fork. */
struct xfer {
    const struct xfer_cfg *cfg;
    struct xfer_shared *sh;
    uint64_t per; /* messages per producer */
    int fd[2];    /* pipe (read, write) or socketpair */
    mqd_t mq;
    fipc_arena *arena;
    fipc_queue *q;
    fipc_jqueue *jq;
    void *ckbuf;
    size_t ckbuf_size;
};

static const char *const xkind_name[] = {
    [X_PIPE] = "pipe",
    [X_SEQPACKET] = "seqpacket",
    [X_MQ] = "posix_mq",
    [X_CK_SPSC] = "ck_ring_spsc",
    [X_CK_MPMC] = "ck_ring_mpmc",
    [X_FIPC_MPMC] = "fipc_mpmc",
    [X_FIPC_SPSC] = "fipc_spsc",
    [X_FIPC_BATCH] = "fipc_batch",
    [X_FIPC_JQ] = "fipc_jqueue",
};

/* ---- messages ---- */

static inline void msg_stamp(unsigned char *m, uint32_t size, uint64_t v)
{
    memcpy(m, &v, 8);
    if (size >= 16) {
        uint64_t nv = ~v;
        memcpy(m + size - 8, &nv, 8);
    }
}

struct verifier {
    const struct xfer_cfg *cfg;
    int consumer;
    uint64_t next[MAX_SIDE]; /* the lowest seq still acceptable per producer */
    uint64_t count, sum;
};

static int verify(struct verifier *v, const unsigned char *m, size_t len)
{
    const struct xfer_cfg *c = v->cfg;
    if (len != c->size)
        return bench_fail("%s consumer %d: message %" PRIu64 " has %zu bytes, expected %u",
                          xkind_name[c->kind], v->consumer, v->count, len, c->size);
    uint64_t x;
    memcpy(&x, m, 8);
    if (c->size >= 16) {
        uint64_t y;
        memcpy(&y, m + c->size - 8, 8);
        if (y != ~x)
            return bench_fail("%s consumer %d: message %" PRIu64 " is torn (%#" PRIx64
                              " ... %#" PRIx64 ")",
                              xkind_name[c->kind], v->consumer, v->count, x, y);
    }
    unsigned id = (unsigned)(x >> TAG_SHIFT);
    uint64_t seq = x & SEQ_MASK;
    if (id >= (unsigned)c->producers)
        return bench_fail("%s consumer %d: message %" PRIu64 " from unknown producer %u",
                          xkind_name[c->kind], v->consumer, v->count, id);
    /* One consumer sees every message of a producer, in order; several see
     * each producer's messages in increasing order, with gaps. */
    bool ok = c->consumers == 1 ? seq == v->next[id] : seq >= v->next[id];
    if (!ok)
        return bench_fail("%s consumer %d: producer %u sent seq %" PRIu64 ", expected %s%" PRIu64,
                          xkind_name[c->kind], v->consumer, id, seq,
                          c->consumers == 1 ? "" : ">= ", v->next[id]);
    v->next[id] = seq + 1;
    v->count++;
    v->sum += x;
    return 0;
}

/* ---- plain I/O with EINTR retried ---- */

static int write_all(int fd, const void *buf, size_t len, const char *what)
{
    for (;;) {
        ssize_t n = write(fd, buf, len);
        if (n == (ssize_t)len) return 0;
        if (n < 0 && errno == EINTR) continue;
        /* Records are below PIPE_BUF: a short write is a broken promise. */
        return bench_fail("%s write: %s", what, n < 0 ? strerror(errno) : "short write");
    }
}

/* 1 for a record, 0 at EOF, -1 on error. */
static int read_record(int fd, void *buf, size_t len, const char *what)
{
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n == (ssize_t)len) return 1;
        if (n == 0) return 0;
        if (n < 0 && errno == EINTR) continue;
        return bench_fail("%s read: %s", what, n < 0 ? strerror(errno) : "short read");
    }
}

static struct timespec realtime_in(int64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec += (long)(ns % 1000000000);
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

/* ---- producer ---- */

static int produce(struct xfer *x, int id)
{
    const struct xfer_cfg *c = x->cfg;
    const uint32_t size = c->size;
    const uint64_t n = x->per, tag = (uint64_t)id << TAG_SHIFT;
    _Alignas(CACHELINE) unsigned char msg[MAX_MSG];
    memset(msg, 0xa5, sizeof msg);
    struct spin sp = {0};
    (void)sp; /* only the ck_ring transports spin */
    int rc;

    x->sh->start[id] = bench_now_ns();
    switch (c->kind) {
    case X_PIPE:
    case X_SEQPACKET:
        for (uint64_t i = 0; i < n; i++) {
            msg_stamp(msg, size, tag | i);
            if (write_all(x->fd[1], msg, size, xkind_name[c->kind]) < 0) return -1;
        }
        close(x->fd[1]); /* the consumers' EOF, once every writer is done */
        break;
    case X_MQ: {
        struct timespec dl = realtime_in(TIMEOUT_NS);
        for (uint64_t i = 0; i < n; i++) {
            msg_stamp(msg, size, tag | i);
            /* A fresh deadline now and then, not a clock read per message. */
            if ((i & 1023) == 0) dl = realtime_in(TIMEOUT_NS);
            while (mq_timedsend(x->mq, (const char *)msg, size, 0, &dl) < 0)
                if (errno != EINTR)
                    return bench_fail("mq_timedsend #%" PRIu64 ": %s", i, strerror(errno));
        }
        break;
    }
#if HAVE_CK
    case X_CK_SPSC:
    case X_CK_MPMC:
        for (uint64_t i = 0; i < n; i++) {
            msg_stamp(msg, size, tag | i);
            for (;;) {
                bool ok;
                if (size == 8)
                    ok = c->kind == X_CK_SPSC
                             ? ck_ring_enqueue_spsc_m8(&x->sh->ring, x->ckbuf, (void *)msg)
                             : ck_ring_enqueue_mpmc_m8(&x->sh->ring, x->ckbuf, (void *)msg);
                else
                    ok = c->kind == X_CK_SPSC
                             ? ck_ring_enqueue_spsc_m256(&x->sh->ring, x->ckbuf, (void *)msg)
                             : ck_ring_enqueue_mpmc_m256(&x->sh->ring, x->ckbuf, (void *)msg);
                if (ok) break;
                if (spin_wait(&sp) < 0) return bench_fail("ck_ring: full for 10 s at #%" PRIu64, i);
            }
            spin_reset(&sp);
        }
        break;
#endif
    case X_FIPC_MPMC:
    case X_FIPC_SPSC:
        for (uint64_t i = 0; i < n; i++) {
            msg_stamp(msg, size, tag | i);
            if ((rc = fipc_queue_put(x->q, msg, size, TIMEOUT_NS)) != 0)
                return bench_fail("fipc_queue_put #%" PRIu64 ": %s", i, fipc_strerror(rc));
        }
        break;
    case X_FIPC_BATCH: {
        _Alignas(CACHELINE) unsigned char batch[BATCH][MAX_MSG];
        struct iovec iov[BATCH];
        for (int k = 0; k < BATCH; k++)
            iov[k] = (struct iovec){batch[k], size};
        for (uint64_t i = 0; i < n;) {
            size_t b = n - i < BATCH ? (size_t)(n - i) : BATCH;
            for (size_t k = 0; k < b; k++)
                msg_stamp(batch[k], size, tag | (i + k));
            for (size_t done = 0; done < b;) {
                rc = fipc_queue_put_many(x->q, iov + done, b - done, TIMEOUT_NS);
                if (rc <= 0)
                    return bench_fail("fipc_queue_put_many at #%" PRIu64 ": %s", i + done,
                                      fipc_strerror(rc));
                done += (size_t)rc;
            }
            i += b;
        }
        break;
    }
    case X_FIPC_JQ:
        for (uint64_t i = 0; i < n; i++) {
            msg_stamp(msg, size, tag | i);
            if ((rc = fipc_jqueue_put(x->jq, msg, size, TIMEOUT_NS)) != 0)
                return bench_fail("fipc_jqueue_put #%" PRIu64 ": %s", i, fipc_strerror(rc));
        }
        /* As a Python producer would: wait until everything is processed. */
        if ((rc = fipc_jqueue_join(x->jq, TIMEOUT_NS)) != 0)
            return bench_fail("fipc_jqueue_join: %s", fipc_strerror(rc));
        break;
    default:
        return bench_fail("transport %d is not built in", (int)c->kind);
    }

    /* The last producer ends the stream of a queue that has an end. */
    if (__atomic_sub_fetch(&x->sh->producers_left, 1, __ATOMIC_ACQ_REL) == 0) {
        if (x->q && (rc = fipc_queue_close(x->q)) != 0)
            return bench_fail("fipc_queue_close: %s", fipc_strerror(rc));
        if (x->jq && (rc = fipc_jqueue_close(x->jq)) != 0)
            return bench_fail("fipc_jqueue_close: %s", fipc_strerror(rc));
    }
    x->sh->end[id] = bench_now_ns();
    return 0;
}

/* ---- consumer ---- */

static int consume(struct xfer *x, int id)
{
    const struct xfer_cfg *c = x->cfg;
    const uint32_t size = c->size;
    /* Transports without an end-of-stream have a single consumer, which
     * stops after the total. */
    const uint64_t total = x->per * (uint64_t)c->producers;
    struct verifier v = {.cfg = c, .consumer = id};
    _Alignas(CACHELINE) unsigned char msg[MAX_MSG];
    struct spin sp = {0};
    (void)sp; /* only the ck_ring transports spin */
    size_t len;
    int rc;

    switch (c->kind) {
    case X_PIPE:
    case X_SEQPACKET:
        for (;;) {
            rc = read_record(x->fd[0], msg, size, xkind_name[c->kind]);
            if (rc < 0) return -1;
            if (rc == 0) break;
            if (verify(&v, msg, size) < 0) return -1;
        }
        break;
    case X_MQ: {
        struct timespec dl = realtime_in(TIMEOUT_NS);
        /* mq_receive wants room for mq_msgsize (== size). */
        while (v.count < total) {
            if ((v.count & 1023) == 0) dl = realtime_in(TIMEOUT_NS);
            ssize_t got = mq_timedreceive(x->mq, (char *)msg, size, NULL, &dl);
            if (got < 0 && errno == EINTR) continue;
            if (got < 0)
                return bench_fail("mq_timedreceive after %" PRIu64 ": %s", v.count,
                                  strerror(errno));
            if (verify(&v, msg, (size_t)got) < 0) return -1;
        }
        break;
    }
#if HAVE_CK
    case X_CK_SPSC:
    case X_CK_MPMC:
        while (v.count < total) {
            bool ok;
            if (size == 8)
                ok = c->kind == X_CK_SPSC
                         ? ck_ring_dequeue_spsc_m8(&x->sh->ring, x->ckbuf, (void *)msg)
                         : ck_ring_dequeue_mpmc_m8(&x->sh->ring, x->ckbuf, (void *)msg);
            else
                ok = c->kind == X_CK_SPSC
                         ? ck_ring_dequeue_spsc_m256(&x->sh->ring, x->ckbuf, (void *)msg)
                         : ck_ring_dequeue_mpmc_m256(&x->sh->ring, x->ckbuf, (void *)msg);
            if (!ok) {
                if (spin_wait(&sp) < 0)
                    return bench_fail("ck_ring: empty for 10 s after %" PRIu64, v.count);
                continue;
            }
            spin_reset(&sp);
            if (verify(&v, msg, size) < 0) return -1;
        }
        break;
#endif
    case X_FIPC_MPMC:
    case X_FIPC_SPSC:
        while ((rc = fipc_queue_get(x->q, msg, size, &len, TIMEOUT_NS)) == 0)
            if (verify(&v, msg, len) < 0) return -1;
        if (rc != -EPIPE)
            return bench_fail("fipc_queue_get after %" PRIu64 ": %s", v.count, fipc_strerror(rc));
        break;
    case X_FIPC_BATCH: {
        _Alignas(CACHELINE) unsigned char batch[BATCH][MAX_MSG];
        size_t lens[BATCH];
        while ((rc = fipc_queue_get_many(x->q, batch, MAX_MSG, lens, BATCH, TIMEOUT_NS)) > 0)
            for (int k = 0; k < rc; k++)
                if (verify(&v, batch[k], lens[k]) < 0) return -1;
        if (rc != -EPIPE)
            return bench_fail("fipc_queue_get_many after %" PRIu64 ": %s", v.count,
                              fipc_strerror(rc));
        break;
    }
    case X_FIPC_JQ:
        while ((rc = fipc_jqueue_get(x->jq, msg, size, &len, TIMEOUT_NS)) == 0) {
            if (verify(&v, msg, len) < 0) return -1;
            if ((rc = fipc_jqueue_task_done(x->jq)) != 0)
                return bench_fail("fipc_jqueue_task_done: %s", fipc_strerror(rc));
        }
        if (rc != -EPIPE)
            return bench_fail("fipc_jqueue_get after %" PRIu64 ": %s", v.count, fipc_strerror(rc));
        break;
    default:
        return bench_fail("transport %d is not built in", (int)c->kind);
    }
    x->sh->end[MAX_SIDE + id] = bench_now_ns();
    x->sh->count[id] = v.count;
    x->sh->sum[id] = v.sum;
    return 0;
}

/* ---- set-up, run, check ---- */

static int xfer_setup(struct xfer *x)
{
    const struct xfer_cfg *c = x->cfg;
    int rc;
    x->fd[0] = x->fd[1] = -1;
    x->mq = (mqd_t)-1;
    switch (c->kind) {
    case X_PIPE:
        /* The default pipe buffer (64 KiB). */
        if (pipe2(x->fd, O_CLOEXEC) < 0) return bench_fail("pipe: %s", strerror(errno));
        return 0;
    case X_SEQPACKET:
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, x->fd) < 0)
            return bench_fail("socketpair: %s", strerror(errno));
        return 0;
    case X_MQ: {
        char name[64];
        static unsigned serial;
        snprintf(name, sizeof name, "/fipc-bench-%d-%u", (int)getpid(), serial++);
        /* 10 is the most an unprivileged process gets (fs.mqueue.msg_max). */
        struct mq_attr a = {.mq_maxmsg = 10, .mq_msgsize = c->size};
        x->mq = mq_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &a);
        if (x->mq == (mqd_t)-1) return bench_fail("mq_open: %s", strerror(errno));
        /* The descriptors, inherited by fork, keep it alive. */
        mq_unlink(name);
        return 0;
    }
#if HAVE_CK
    case X_CK_SPSC:
    case X_CK_MPMC:
        /* The ring's control block and its buffer both in MAP_SHARED memory;
         * a ring of 1024 slots holds 1023. */
        x->ckbuf_size = (size_t)CAPACITY * c->size;
        x->ckbuf = bench_shared(x->ckbuf_size);
        ck_ring_init(&x->sh->ring, CAPACITY);
        return 0;
#endif
    case X_FIPC_MPMC:
    case X_FIPC_SPSC:
    case X_FIPC_BATCH:
    case X_FIPC_JQ:
        if ((rc = fipc_arena_create(&x->arena, "bench-queue", ARENA_SIZE)) != 0)
            return bench_fail("fipc_arena_create: %s", fipc_strerror(rc));
        if (c->kind == X_FIPC_JQ)
            rc = fipc_jqueue_create(&x->jq, x->arena, CAPACITY, c->size, 0);
        else
            rc = fipc_queue_create(&x->q, x->arena, CAPACITY, c->size,
                                   c->kind == X_FIPC_SPSC ? FIPC_QUEUE_SPSC : 0);
        if (rc != 0)
            return bench_fail("fipc_%squeue_create: %s", c->kind == X_FIPC_JQ ? "j" : "",
                              fipc_strerror(rc));
        return 0;
    default:
        return bench_fail("transport %d is not built in (no <ck_ring.h>?)", (int)c->kind);
    }
}

static void xfer_teardown(struct xfer *x)
{
    if (x->fd[0] >= 0) close(x->fd[0]);
    if (x->fd[1] >= 0) close(x->fd[1]);
    if (x->mq != (mqd_t)-1) mq_close(x->mq);
    if (x->arena) fipc_arena_close(x->arena);
    bench_shared_free(x->ckbuf, x->ckbuf_size);
}

static int run_xfer(struct bench_run *r)
{
    const struct xfer_cfg *c = r->arg;
    struct xfer x = {.cfg = c};
    x.sh = bench_shared(sizeof *x.sh);
    x.per = r->iters / (uint64_t)c->producers;
    if (x.per == 0) x.per = 1;
    x.sh->producers_left = (uint32_t)c->producers;
    if (xfer_setup(&x) < 0) return -1;

    struct bench_gate g;
    if (bench_gate_init(&g) < 0) return -1;
    pid_t pid[2 * MAX_SIDE];
    int np = 0;
    for (int i = 0; i < c->consumers + c->producers; i++) {
        bool producer = i >= c->consumers;
        int id = producer ? i - c->consumers : i;
        pid_t p = bench_fork();
        if (p < 0) return -1;
        if (p == 0) {
            /* Each side keeps only its own end: a reader holding a write
             * end would never see EOF. */
            if (c->kind == X_PIPE || c->kind == X_SEQPACKET) {
                close(x.fd[producer ? 0 : 1]);
                x.fd[producer ? 0 : 1] = -1;
            }
            if (bench_gate_pass(&g) < 0) {
                bench_fail("gate: the runner went away");
                _exit(1);
            }
            _exit((producer ? produce(&x, id) : consume(&x, id)) == 0 ? 0 : 1);
        }
        pid[np++] = p;
    }
    /* The runner holds no end of the stream either. */
    if (c->kind == X_PIPE || c->kind == X_SEQPACKET) {
        close(x.fd[1]);
        x.fd[1] = -1;
    }
    if (bench_gate_open(&g, np) < 0) return -1;
    for (int i = 0; i < np; i++)
        if (bench_reap(pid[i], i < c->consumers ? "consumer" : "producer") < 0) return -1;
    bench_gate_close(&g);

    uint64_t count = 0, sum = 0, want_sum = 0;
    for (int i = 0; i < c->consumers; i++) {
        count += x.sh->count[i];
        sum += x.sh->sum[i];
    }
    for (int i = 0; i < c->producers; i++)
        want_sum += x.per * ((uint64_t)i << TAG_SHIFT) + x.per * (x.per - 1) / 2;
    uint64_t want = x.per * (uint64_t)c->producers;
    if (count != want)
        return bench_fail("%s: consumers took %" PRIu64 " messages, producers sent %" PRIu64,
                          xkind_name[c->kind], count, want);
    if (sum != want_sum)
        return bench_fail("%s: checksum %#" PRIx64 ", expected %#" PRIx64, xkind_name[c->kind], sum,
                          want_sum);

    int64_t t0 = INT64_MAX, t1 = 0;
    for (int i = 0; i < c->producers; i++)
        if (x.sh->start[i] < t0) t0 = x.sh->start[i];
    for (int i = 0; i < 2 * MAX_SIDE; i++)
        if (x.sh->end[i] > t1) t1 = x.sh->end[i];
    r->ns = t1 - t0;
    r->ops = want;
    xfer_teardown(&x);
    bench_shared_free(x.sh, sizeof *x.sh);
    return 0;
}

/* ====================================================================== */
/* Python's multiprocessing (bench_py_queue.py)                             */
/* ====================================================================== */

#ifndef FIPC_BENCH_PY
#define FIPC_BENCH_PY "bench/bench_py_queue.py"
#endif

struct py_cfg {
    const char *kind; /* "queue" or "joinable" */
    uint32_t size;
};

static const char *python_exe(void)
{
    const char *p = getenv("FIPC_BENCH_PYTHON");
    return p && *p ? p : "python3";
}

/* Whether exe can be run: a path, or a name found on PATH. */
static bool executable_on_path(const char *exe)
{
    if (strchr(exe, '/')) return access(exe, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path) return false;
    char dir[PATH_MAX];
    for (const char *p = path; *p;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0 && n < sizeof dir - strlen(exe) - 2) {
            snprintf(dir, sizeof dir, "%.*s/%s", (int)n, p, exe);
            if (access(dir, X_OK) == 0) return true;
        }
        p += n + (e != NULL);
    }
    return false;
}

static int run_python(struct bench_run *r)
{
    const struct py_cfg *c = r->arg;
    /* Python moves some 40k messages per second here: a fixed band of
     * counts keeps a run between about 2 and 5 s, whatever calibration
     * asks for. */
    uint64_t lo = r->quick ? 20000 : 100000, hi = 200000;
    uint64_t n = r->iters < lo ? lo : r->iters > hi ? hi : r->iters;
    char count[24], size[16];
    snprintf(count, sizeof count, "%" PRIu64, n);
    snprintf(size, sizeof size, "%u", c->size);

    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return bench_fail("pipe: %s", strerror(errno));
    const char *exe = python_exe();
    pid_t pid = bench_fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (dup2(p[1], STDOUT_FILENO) < 0) _exit(126);
        execlp(exe, exe, FIPC_BENCH_PY, c->kind, count, size, (char *)NULL);
        fprintf(stderr, "fipc-bench: %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    close(p[1]);
    char out[256];
    size_t got = 0;
    for (;;) {
        ssize_t k = read(p[0], out + got, sizeof out - 1 - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
        if (got == sizeof out - 1) break;
    }
    out[got] = '\0';
    close(p[0]);
    if (bench_reap(pid, FIPC_BENCH_PY) < 0) return -1;
    unsigned long long done;
    long long ns;
    if (sscanf(out, "ok %llu %lld", &done, &ns) != 2 || done != n || ns <= 0)
        return bench_fail("%s printed '%.60s', not 'ok %" PRIu64 " NS'", FIPC_BENCH_PY, out, n);
    r->ns = ns;
    r->ops = n;
    return 0;
}

/* ====================================================================== */
/* Ping-pong: round trips over a request and a response channel            */
/* ====================================================================== */

enum pq_kind { PQ_PIPE, PQ_FUTEX, PQ_FIPC_MPMC, PQ_FIPC_SPSC };

struct pq_shared {
    _Alignas(CACHELINE) uint32_t fut_req;
    _Alignas(CACHELINE) uint32_t fut_resp;
};

struct pq {
    enum pq_kind kind;
    struct pq_shared *sh;
    int req[2], resp[2];
    fipc_arena *arena;
    fipc_queue *qreq, *qresp;
};

#define PQ_WARMUP 200

/* A shared futex word (no FUTEX_PRIVATE_FLAG: two processes), waited on
 * until it holds k; 10 s without a change is a failure. */
static int futex_wait_for(uint32_t *w, uint32_t k)
{
    uint32_t v;
    int64_t deadline = 0;
    while ((v = __atomic_load_n(w, __ATOMIC_ACQUIRE)) != k) {
        struct timespec ts = {.tv_sec = 1};
        /* EAGAIN (the word moved) and EINTR mean: look again. */
        if (syscall(SYS_futex, w, FUTEX_WAIT, v, &ts, NULL, 0) < 0 && errno == ETIMEDOUT) {
            int64_t now = bench_now_ns();
            if (!deadline)
                deadline = now + TIMEOUT_NS - FIPC_SEC(1);
            else if (now > deadline)
                return bench_fail("futex: no answer for 10 s");
        }
    }
    return 0;
}

static void futex_post(uint32_t *w, uint32_t k)
{
    /* release: pairs with the acquire load in futex_wait_for */
    __atomic_store_n(w, k, __ATOMIC_RELEASE);
    syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static int pq_send(struct pq *p, bool pinger, uint32_t k)
{
    uint64_t v = k;
    int rc;
    switch (p->kind) {
    case PQ_PIPE:
        return write_all(pinger ? p->req[1] : p->resp[1], &v, sizeof v, "pipe");
    case PQ_FUTEX:
        futex_post(pinger ? &p->sh->fut_req : &p->sh->fut_resp, k);
        return 0;
    case PQ_FIPC_MPMC:
    case PQ_FIPC_SPSC:
        if ((rc = fipc_queue_put(pinger ? p->qreq : p->qresp, &v, sizeof v, TIMEOUT_NS)) != 0)
            return bench_fail("fipc_queue_put: %s", fipc_strerror(rc));
        return 0;
    }
    return bench_fail("unknown ping-pong kind %d", (int)p->kind);
}

static int pq_recv(struct pq *p, bool pinger, uint32_t k)
{
    uint64_t v = 0;
    size_t len = 0;
    int rc;
    switch (p->kind) {
    case PQ_PIPE:
        rc = read_record(pinger ? p->resp[0] : p->req[0], &v, sizeof v, "pipe");
        if (rc <= 0) return rc < 0 ? -1 : bench_fail("pipe: EOF at round %u", k);
        len = sizeof v;
        break;
    case PQ_FUTEX:
        return futex_wait_for(pinger ? &p->sh->fut_resp : &p->sh->fut_req, k);
    case PQ_FIPC_MPMC:
    case PQ_FIPC_SPSC:
        rc = fipc_queue_get(pinger ? p->qresp : p->qreq, &v, sizeof v, &len, TIMEOUT_NS);
        if (rc != 0) return bench_fail("fipc_queue_get at round %u: %s", k, fipc_strerror(rc));
        break;
    }
    if (len != sizeof v || v != k)
        return bench_fail("round %u: got %" PRIu64 " (%zu bytes)", k, v, len);
    return 0;
}

static int run_pingpong(struct bench_run *r)
{
    struct pq p = {.kind = (enum pq_kind)(intptr_t)r->arg};
    p.sh = bench_shared(sizeof *p.sh);
    p.req[0] = p.req[1] = p.resp[0] = p.resp[1] = -1;
    int rc;
    if (p.kind == PQ_PIPE) {
        if (pipe2(p.req, O_CLOEXEC) < 0 || pipe2(p.resp, O_CLOEXEC) < 0)
            return bench_fail("pipe: %s", strerror(errno));
    } else if (p.kind == PQ_FIPC_MPMC || p.kind == PQ_FIPC_SPSC) {
        unsigned flags = p.kind == PQ_FIPC_SPSC ? FIPC_QUEUE_SPSC : 0;
        if ((rc = fipc_arena_create(&p.arena, "bench-pingpong", ARENA_SIZE)) != 0 ||
            (rc = fipc_queue_create(&p.qreq, p.arena, CAPACITY, 8, flags)) != 0 ||
            (rc = fipc_queue_create(&p.qresp, p.arena, CAPACITY, 8, flags)) != 0)
            return bench_fail("fipc queue set-up: %s", fipc_strerror(rc));
    }

    uint32_t n = (uint32_t)(r->iters > 0x7fffffff ? 0x7fffffff : r->iters);
    pid_t pid = bench_fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        for (uint32_t k = 1; k <= PQ_WARMUP + n; k++)
            if (pq_recv(&p, false, k) < 0 || pq_send(&p, false, k) < 0) _exit(1);
        _exit(0);
    }
    int64_t t0 = 0;
    for (uint32_t k = 1; k <= PQ_WARMUP + n; k++) {
        if (k == PQ_WARMUP + 1) t0 = bench_now_ns();
        if (pq_send(&p, true, k) < 0 || pq_recv(&p, true, k) < 0) return -1;
    }
    r->ns = bench_now_ns() - t0;
    r->ops = n;
    if (bench_reap(pid, "ping-pong partner") < 0) return -1;

    for (int i = 0; i < 2; i++) {
        if (p.req[i] >= 0) close(p.req[i]);
        if (p.resp[i] >= 0) close(p.resp[i]);
    }
    if (p.arena) fipc_arena_close(p.arena);
    bench_shared_free(p.sh, sizeof *p.sh);
    return 0;
}

/* ====================================================================== */
/* The cases                                                                */
/* ====================================================================== */

#define XCFG(k, sz, np, nc)                                                                        \
    (&(const struct xfer_cfg){.kind = (k), .size = (sz), .producers = (np), .consumers = (nc)})

/* A transfer case in group grp, compared with the case named base (NULL:
 * this is the baseline). */
#define XFER(grp, nm, base, unit_, k, sz, np, nc, g)                                               \
    {                                                                                              \
        .group = grp, .name = nm, .baseline = base, .unit = unit_, .op = "msg", .fn = run_xfer,    \
        .arg = XCFG(k, sz, np, nc), .min_iters = 20000, .goal = g                                  \
    }
#define PY(grp, nm, base, kind_, sz, g)                                                            \
    {                                                                                              \
        .group = grp, .name = nm, .baseline = base, .unit = BENCH_RATE, .op = "msg",               \
        .fn = run_python, .arg = &(const struct py_cfg){.kind = kind_, .size = sz},                \
        .min_iters = 100000, .goal = g                                                             \
    }
#define PP(nm, base, k)                                                                            \
    {                                                                                              \
        .group = "queue-pingpong-8B", .name = nm, .baseline = base, .unit = BENCH_TIME,            \
        .op = "rtt", .fn = run_pingpong, .arg = (const void *)(intptr_t)(k), .min_iters = 1000     \
    }

#define R        BENCH_RATE
#define AT_LEAST BENCH_GOAL_RATE_AT_LEAST

/* The 1 -> 1 table for one message size; goals only for 8 bytes. */
#define ONE_TO_ONE(grp, sz, g_mpmc, g_spsc)                                                        \
    XFER(grp, "pipe", NULL, R, X_PIPE, sz, 1, 1, 0),                                               \
        XFER(grp, "seqpacket", "pipe", R, X_SEQPACKET, sz, 1, 1, 0),                               \
        XFER(grp, "posix_mq", "pipe", R, X_MQ, sz, 1, 1, 0),                                       \
        XFER(grp, "ck_ring_spsc_spin", "pipe", R, X_CK_SPSC, sz, 1, 1, 0),                         \
        XFER(grp, "ck_ring_mpmc_spin", "pipe", R, X_CK_MPMC, sz, 1, 1, 0),                         \
        XFER(grp, "fipc_mpmc", "pipe", R, X_FIPC_MPMC, sz, 1, 1, g_mpmc),                          \
        XFER(grp, "fipc_spsc", "pipe", R, X_FIPC_SPSC, sz, 1, 1, g_spsc),                          \
        XFER(grp, "fipc_mpmc_batch32", "pipe", R, X_FIPC_BATCH, sz, 1, 1, 0)

static const struct bench_case queue_cases[] = {
    ONE_TO_ONE("queue-1x1-8B", 8, AT_LEAST(10), AT_LEAST(20)),
    ONE_TO_ONE("queue-1x1-256B", 256, 0, 0),
    PY("queue-1x1-256B", "python_mp_queue", "pipe", "queue", 256, 0),

    PY("queue-vs-python-8B", "python_mp_queue", NULL, "queue", 8, 0),
    XFER("queue-vs-python-8B", "fipc_spsc", "python_mp_queue", R, X_FIPC_SPSC, 8, 1, 1,
         AT_LEAST(100)),
    XFER("queue-vs-python-8B", "fipc_mpmc", "python_mp_queue", R, X_FIPC_MPMC, 8, 1, 1, 0),

    XFER("queue-batch-8B", "fipc_mpmc", NULL, R, X_FIPC_MPMC, 8, 1, 1, 0),
    XFER("queue-batch-8B", "fipc_mpmc_batch32", "fipc_mpmc", R, X_FIPC_BATCH, 8, 1, 1, AT_LEAST(2)),

    /* Like for like: the MPMC rings, one blocking and one spinning. */
    XFER("queue-vs-ck-8B", "ck_ring_mpmc_spin", NULL, R, X_CK_MPMC, 8, 1, 1, 0),
    XFER("queue-vs-ck-8B", "fipc_mpmc", "ck_ring_mpmc_spin", R, X_FIPC_MPMC, 8, 1, 1,
         AT_LEAST(0.5)),
    XFER("queue-vs-ck-8B", "ck_ring_spsc_spin", "ck_ring_mpmc_spin", R, X_CK_SPSC, 8, 1, 1, 0),
    XFER("queue-vs-ck-8B", "fipc_spsc", "ck_ring_mpmc_spin", R, X_FIPC_SPSC, 8, 1, 1, 0),

    XFER("queue-2x2-8B", "pipe", NULL, R, X_PIPE, 8, 2, 2, 0),
    XFER("queue-2x2-8B", "fipc_mpmc", "pipe", R, X_FIPC_MPMC, 8, 2, 2, 0),
    XFER("queue-4x4-8B", "pipe", NULL, R, X_PIPE, 8, 4, 4, 0),
    XFER("queue-4x4-8B", "fipc_mpmc", "pipe", R, X_FIPC_MPMC, 8, 4, 4, 0),

    PP("pipe", NULL, PQ_PIPE),
    PP("futex_raw", "pipe", PQ_FUTEX),
    PP("fipc_mpmc", "pipe", PQ_FIPC_MPMC),
    PP("fipc_spsc", "pipe", PQ_FIPC_SPSC),

    XFER("jqueue-overhead-8B", "fipc_queue_mpmc", NULL, BENCH_TIME, X_FIPC_MPMC, 8, 1, 1, 0),
    XFER("jqueue-overhead-8B", "fipc_jqueue_mpmc", "fipc_queue_mpmc", BENCH_TIME, X_FIPC_JQ, 8, 1,
         1, BENCH_GOAL_TIME_AT_MOST(1.3)),

    PY("jqueue-vs-python-8B", "python_mp_joinable", NULL, "joinable", 8, 0),
    XFER("jqueue-vs-python-8B", "fipc_jqueue_mpmc", "python_mp_joinable", R, X_FIPC_JQ, 8, 1, 1,
         AT_LEAST(100)),
};

/*
 * Register the table, less what this build or machine cannot run: the
 * Python cases without an interpreter, the ck_ring cases without
 * <ck_ring.h>.  Those are absent from the report (with a note here), not a
 * made-up figure, and goals measured against them print as n/a.
 */
static struct bench_case active_cases[sizeof queue_cases / sizeof queue_cases[0]];

static bool is_ck(const struct bench_case *c)
{
    if (c->fn != run_xfer) return false;
    enum xkind k = ((const struct xfer_cfg *)c->arg)->kind;
    return k == X_CK_SPSC || k == X_CK_MPMC;
}

__attribute__((constructor)) static void bench_suite_queue(void)
{
    bool have_py = executable_on_path(python_exe()) && access(FIPC_BENCH_PY, R_OK) == 0;
    size_t n = 0;
    for (size_t i = 0; i < sizeof queue_cases / sizeof queue_cases[0]; i++) {
        if ((queue_cases[i].fn == run_python && !have_py) || (is_ck(&queue_cases[i]) && !HAVE_CK))
            continue;
        active_cases[n++] = queue_cases[i];
    }
    if (!have_py)
        fprintf(stderr,
                "fipc-bench: %s or %s not found: the multiprocessing cases are unavailable\n",
                python_exe(), FIPC_BENCH_PY);
    if (!HAVE_CK)
        fprintf(stderr,
                "fipc-bench: built without <ck_ring.h>: the ck_ring cases are unavailable\n");
    bench_register(active_cases, n);
}
