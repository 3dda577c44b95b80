/*
 * chaos.c - fipc's queues and locks while their users are SIGKILLed at
 * random moments.
 *
 *   chaos [seconds]     (default 10; ./dev chaos runs it)
 *
 * CHAOS_VERBOSE=1 in the environment also logs every kill (what the dead
 * one announced) and the first messages that were acknowledged but not
 * delivered or delivered but not acknowledged, on stderr.
 *
 * For the given wall time these run at once, each in a process of its own:
 * producers and consumers of an MPMC fipc_queue, of an SPSC queue (one of
 * each at a time), of an MPMC fipc_jqueue (consumers call task_done), with
 * single and batch calls mixed; and lock users that update a two-word
 * invariant under a fipc_lock.  The parent is the killer: after a random
 * delay (10 us .. 20 ms, log-uniform) it SIGKILLs a random participant,
 * reaps it and starts a replacement in its place.  A watchdog thread ends
 * the run (and with it every participant: each dies with its parent) if
 * the end phase overruns.
 *
 * Bookkeeping, all in shared memory, so that a death loses nothing but the
 * dead process's registers:
 *   - A producer slot (its replacements continue it) owns a sequence
 *     space.  Before a put it reserves the sequences (next_seq) and
 *     announces them (put_lo, put_n); after the put returned it sets their
 *     bits in its acked bitmap and withdraws the announcement.  A message
 *     is (producer, sequence, length, payload) and a checksum of them.
 *   - A consumer announces the size of the batch it asks for (in_get)
 *     before get and withdraws it only after it recorded what it received
 *     (a bit per message in the producer's delivered bitmap, set with an
 *     atomic OR: a bit already set is a duplicate delivery).  A jqueue
 *     consumer then holds the items (held) until its task_done, which it
 *     also announces (td_busy) and counts (task_done).
 *   - When the killer reaps a participant it reads the announcements the
 *     dead one left: a consumer's in_get bounds the messages it may have
 *     taken with it (MPMC: its claim; SPSC: those it released but had not
 *     returned), a producer's put window holds the messages whose put may
 *     or may not have succeeded.
 *   - A jqueue consumer is stopped (SIGSTOP) before the blow and killed
 *     only outside get and task_done, so that the items it takes with it
 *     are exactly those it held: the jqueue's unfinished count must then
 *     be, to the item, the items whose put succeeded (acknowledged or
 *     delivered) minus the task_done calls recorded.  Deaths inside get
 *     are played on the other two queues.
 *
 * At the end the killer stops, producers and lock users leave, the queues
 * are closed, and every consumer must drain and get -EPIPE within a bound.
 * Then: no message delivered twice, none corrupt, none delivered whose put
 * had failed; every acknowledged message delivered but for at most the
 * messages that consumers killed mid-get had asked for; no call timed out
 * while the other side was active (a hang); the lock invariant holds and
 * the update count is within what the lock users recorded; the
 * jqueue's unfinished count is what the deaths explain; and the MPMC
 * queues never stopped repairing dead claims (records_usable).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fipc.h>

#include "ring_mpmc.h" /* the claimer records, for stale_records */

/* Every blocking call of a participant waits at most this long; running
 * out of it while the other side is active is a hang. */
#define CALL_TIMEOUT FIPC_SEC(5)
/* The end phase: producers and lock users leave, then consumers drain. */
#define LEAVE_BOUND_NS FIPC_SEC(10)
#define DRAIN_BOUND_NS FIPC_SEC(10)
/* The watchdog's limit on the whole end phase. */
#ifndef END_BOUND_NS /* -DEND_BOUND_NS=0 shows the watchdog at work */
#define END_BOUND_NS FIPC_SEC(30)
#endif

#define MAX_ITEM  64
#define MAX_BATCH 8
/* Sequences per producer slot (a bit each in two bitmaps); a producer that
 * has used them all waits for the end. */
#define SEQ_BITS ((uint64_t)1 << 30)

enum { Q_MPMC, Q_SPSC, Q_JQ, NQ };
static const char *const qname[NQ] = {"mpmc", "spsc", "jqueue"};

/* Producer and consumer slots per queue, and the lock users. */
#define NPROD   6
#define NCONS   6
#define NLOCKER 2
static const int prod_queue[NPROD] = {Q_MPMC, Q_MPMC, Q_MPMC, Q_SPSC, Q_JQ, Q_JQ};
static const int cons_queue[NCONS] = {Q_MPMC, Q_MPMC, Q_MPMC, Q_SPSC, Q_JQ, Q_JQ};

enum role { PRODUCER, CONSUMER, LOCKER };

struct prod_rec {
    uint64_t next_seq; /* first sequence not yet reserved */
    uint64_t put_lo;   /* the put in flight: sequences put_lo .. + put_n */
    uint64_t put_n;
};

struct cons_rec {
    uint64_t in_get;    /* the batch asked for, until what came is recorded */
    uint64_t td_busy;   /* jqueue: in task_done, until task_done is updated */
    uint64_t held;      /* jqueue: items received and recorded, not yet done */
    uint64_t last_seq;  /* the last sequence received (CHAOS_VERBOSE shows it) */
    uint64_t task_done; /* jqueue: items marked done */
};

struct guarded {
    fipc_lock lock;
    uint64_t a, b;  /* a == b outside an update: a++, spin, b++ */
    int32_t holder; /* pid inside the critical section, 0 outside */
    uint64_t repairs, half_done, broken;
};

struct shared {
    uint32_t stop;     /* producers and lock users leave */
    uint32_t draining; /* the queues are closing: an empty queue is no hang */
    uint64_t hangs, dups, corrupt;
    struct prod_rec prod[NPROD];
    struct cons_rec cons[NCONS];
    uint64_t lock_updates[NLOCKER]; /* updates each lock slot completed */
    struct guarded g;
};

static struct shared *sh;
static uint64_t *acked[NPROD], *delivered[NPROD]; /* shared bitmaps */
static uint64_t *maybe[NPROD];                    /* the killer's: sequences of puts cut short */
static fipc_queue *mq, *sq;
static fipc_jqueue *jq;
static pid_t killer_pid;

/* Shared counters and records: relaxed atomics.  Nothing is ordered by
 * them: a consumer reads next_seq after the queue's acquire of the message
 * (which a producer stored before its put's release), and the killer reads
 * a dead or stopped process's records after waitpid, which makes all it
 * had executed visible.  A signal stops a process between two
 * instructions, so the order that matters there is program order, which
 * the compiler keeps across __atomic_signal_fence (ORDER below). */
#define LOAD(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define ADD(p, v)   __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define ORDER()     __atomic_signal_fence(__ATOMIC_SEQ_CST)

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

static void rng_seed(void)
{
    rng_state = ((uint64_t)getpid() << 32) ^ (uint64_t)now_ns() ^ UINT64_C(0x9e3779b97f4a7c15);
    if (!rng_state) rng_state = 1;
}

static void *map_shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
        perror("chaos: mmap");
        exit(2);
    }
    return p;
}

/* Set bit i; whether it was set already. */
static bool bit_set(uint64_t *bm, uint64_t i)
{
    uint64_t m = UINT64_C(1) << (i % 64);
    return __atomic_fetch_or(&bm[i / 64], m, __ATOMIC_RELAXED) & m;
}

/* ---- messages ---- */

struct msg {
    uint32_t producer;
    uint32_t len;
    uint64_t seq;
    uint64_t sum;
    unsigned char payload[MAX_ITEM - 24];
};

static uint64_t msg_sum(const struct msg *m)
{
    uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */
    const unsigned char *p = (const unsigned char *)m;
    for (size_t i = 0; i < 16; i++)
        h = (h ^ p[i]) * UINT64_C(1099511628211);
    for (size_t i = 0; i + 24 < m->len; i++)
        h = (h ^ m->payload[i]) * UINT64_C(1099511628211);
    return h;
}

static size_t msg_make(struct msg *m, unsigned producer, uint64_t seq)
{
    m->producer = producer;
    m->seq = seq;
    m->len = (uint32_t)(24 + (seq * 7 + producer) % (MAX_ITEM - 24 + 1));
    for (size_t i = 0; i + 24 < m->len; i++)
        m->payload[i] = (unsigned char)(seq * 131 + producer * 7 + i);
    m->sum = msg_sum(m);
    return m->len;
}

/* Whether the len bytes at buf are a message that a producer of queue
 * qi made (its sequence reserved), intact. */
static bool msg_valid(const void *buf, size_t len, int qi)
{
    struct msg m;
    if (len < 24 || len > MAX_ITEM) return false;
    memset(&m, 0, sizeof m);
    memcpy(&m, buf, len);
    if (m.len != len || m.producer >= NPROD || prod_queue[m.producer] != qi) return false;
    if (m.seq >= LOAD(&sh->prod[m.producer].next_seq)) return false;
    return m.sum == msg_sum(&m);
}

/* ---- the queues, by index ---- */

/* One put (half the single-message calls) or put_many: how many were
 * appended, or the error. */
static int q_put(int qi, const struct iovec *iov, size_t n, int64_t t)
{
    if (n == 1 && (rnd() & 1)) {
        int r = qi == Q_MPMC   ? fipc_queue_put(mq, iov[0].iov_base, iov[0].iov_len, t)
                : qi == Q_SPSC ? fipc_queue_put(sq, iov[0].iov_base, iov[0].iov_len, t)
                               : fipc_jqueue_put(jq, iov[0].iov_base, iov[0].iov_len, t);
        return r == 0 ? 1 : r;
    }
    return qi == Q_MPMC   ? fipc_queue_put_many(mq, iov, n, t)
           : qi == Q_SPSC ? fipc_queue_put_many(sq, iov, n, t)
                          : fipc_jqueue_put_many(jq, iov, n, t);
}

/* One get (half the single-message calls) or get_many: how many were taken, or the error. */
static int q_get(int qi, void *buf, size_t *lens, size_t n, int64_t t)
{
    if (n == 1 && (rnd() & 1)) {
        int r = qi == Q_MPMC   ? fipc_queue_get(mq, buf, MAX_ITEM, lens, t)
                : qi == Q_SPSC ? fipc_queue_get(sq, buf, MAX_ITEM, lens, t)
                               : fipc_jqueue_get(jq, buf, MAX_ITEM, lens, t);
        return r == 0 ? 1 : r;
    }
    return qi == Q_MPMC   ? fipc_queue_get_many(mq, buf, MAX_ITEM, lens, n, t)
           : qi == Q_SPSC ? fipc_queue_get_many(sq, buf, MAX_ITEM, lens, n, t)
                          : fipc_jqueue_get_many(jq, buf, MAX_ITEM, lens, n, t);
}

static int q_close(int qi)
{
    return qi == Q_MPMC   ? fipc_queue_close(mq)
           : qi == Q_SPSC ? fipc_queue_close(sq)
                          : fipc_jqueue_close(jq);
}

/* ---- participants ---- */

static _Noreturn void child_fail(const char *what, int r, int code)
{
    fprintf(stderr, "chaos: %s (pid %d): %s\n", what, (int)getpid(), fipc_strerror(r));
    _exit(code);
}

static size_t pick_batch(void)
{
    return rnd() & 1 ? 1 : 1 + (size_t)(rnd() % MAX_BATCH);
}

static int producer(unsigned i)
{
    struct prod_rec *rec = &sh->prod[i];
    int qi = prod_queue[i];
    struct msg m[MAX_BATCH];
    struct iovec iov[MAX_BATCH];
    while (!LOAD(&sh->stop)) {
        uint64_t s = LOAD(&rec->next_seq);
        size_t n = pick_batch();
        if (s + n > SEQ_BITS) {
            sleep_ns(FIPC_MSEC(10)); /* sequences used up: wait for the end */
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            iov[k].iov_base = &m[k];
            iov[k].iov_len = msg_make(&m[k], i, s + k);
        }
        /* Announce, reserve, put: the put's release store orders these
         * before a consumer's acquire of the messages. */
        STORE(&rec->put_lo, s);
        STORE(&rec->put_n, n);
        STORE(&rec->next_seq, s + n);
        int r = q_put(qi, iov, n, CALL_TIMEOUT);
        for (int k = 0; k < r; k++)
            bit_set(acked[i], s + (uint64_t)k);
        STORE(&rec->put_n, 0);
        if (r > 0) continue;
        if (r == -EPIPE) break;
        if (r == -ETIMEDOUT) {
            fprintf(stderr, "chaos: %s producer %u: put timed out\n", qname[qi], i);
            ADD(&sh->hangs, 1);
            continue;
        }
        child_fail("put", r, 10);
    }
    return 0;
}

static int consumer(unsigned j)
{
    struct cons_rec *rec = &sh->cons[j];
    int qi = cons_queue[j];
    _Alignas(8) unsigned char buf[MAX_BATCH * MAX_ITEM];
    size_t lens[MAX_BATCH];
    for (;;) {
        size_t n = pick_batch();
        STORE(&rec->in_get, n);
        ORDER();
        int r = q_get(qi, buf, lens, n, CALL_TIMEOUT);
        for (int k = 0; k < r; k++) {
            const unsigned char *p = buf + (size_t)k * MAX_ITEM;
            if (!msg_valid(p, lens[k], qi)) {
                fprintf(stderr, "chaos: %s consumer %u: corrupt message (len %zu)\n", qname[qi], j,
                        lens[k]);
                ADD(&sh->corrupt, 1);
                continue;
            }
            struct msg hdr;
            memcpy(&hdr, p, 24);
            STORE(&rec->last_seq, hdr.seq);
            if (bit_set(delivered[hdr.producer], hdr.seq)) {
                fprintf(stderr,
                        "chaos: %s consumer %u: producer %u's message %" PRIu64
                        " delivered twice\n",
                        qname[qi], j, hdr.producer, hdr.seq);
                ADD(&sh->dups, 1);
            }
        }
        if (qi == Q_JQ && r > 0) STORE(&rec->held, (uint64_t)r);
        ORDER();
        STORE(&rec->in_get, 0);
        if (qi == Q_JQ && r > 0) {
            /* Working on the items: a kill here leaves them unfinished. */
            for (volatile int spin = 0; spin < 5000; spin++) {
            }
            STORE(&rec->td_busy, 1);
            ORDER();
            int e = r == 1 && (rnd() & 1) ? fipc_jqueue_task_done(jq)
                                          : fipc_jqueue_task_done_many(jq, (size_t)r);
            if (e < 0) child_fail("task_done", e, 11);
            STORE(&rec->task_done, LOAD(&rec->task_done) + (uint64_t)r);
            STORE(&rec->held, 0);
            ORDER();
            STORE(&rec->td_busy, 0);
        }
        if (r > 0) continue;
        if (r == -EPIPE) return 0;
        if (r == -ETIMEDOUT) {
            if (!LOAD(&sh->draining)) {
                fprintf(stderr, "chaos: %s consumer %u: get timed out\n", qname[qi], j);
                ADD(&sh->hangs, 1);
            }
            continue;
        }
        child_fail("get", r, 12);
    }
}

static int locker(unsigned i)
{
    struct guarded *g = &sh->g;
    for (unsigned iter = 0; !LOAD(&sh->stop); iter++) {
        int r = fipc_lock_acquire(&g->lock, CALL_TIMEOUT);
        if (r == -ETIMEDOUT) {
            fprintf(stderr, "chaos: lock user %u: acquire timed out\n", i);
            ADD(&sh->hangs, 1);
            continue;
        }
        if (r == -EOWNERDEAD) {
            /* The dead holder's update may be half done: finish it. */
            g->repairs++;
            if (g->a != g->b) {
                g->half_done++;
                g->b = g->a;
            }
            g->holder = 0;
        } else if (r == 0) {
            if (g->a != g->b || g->holder != 0) {
                fprintf(stderr,
                        "chaos: lock user %u: acquired without -EOWNERDEAD, but a=%" PRIu64
                        " b=%" PRIu64 " holder %d\n",
                        i, g->a, g->b, (int)g->holder);
                g->broken++;
                g->b = g->a;
            }
        } else {
            child_fail("lock acquire", r, 13);
        }
        g->holder = getpid();
        g->a++;
        for (volatile int spin = 0; spin < 2000; spin++) {
        }
        g->b++;
        sh->lock_updates[i]++;
        g->holder = 0;
        r = fipc_lock_release(&g->lock);
        if (r < 0) child_fail("lock release", r, 14);
        if (iter % 64 == 63) sleep_ns(FIPC_USEC(100)); /* leave the CPUs to the queues */
    }
    return 0;
}

/* ---- the killer ---- */

struct participant {
    enum role role;
    unsigned idx;
    pid_t pid;
};

#define NPART (NPROD + NCONS + NLOCKER)
static struct participant part[NPART];

struct qstats {
    uint64_t acked, delivered, lost, unacked_delivered, phantom;
    uint64_t in_flight_gets; /* messages killed consumers may have taken */
};
static struct qstats qs[NQ];
static uint64_t kills, lock_kills, unexpected;
static uint64_t role_kills[3][NQ]; /* by role and queue (lock users: [LOCKER][0]) */
static bool verbose;
static uint64_t held_at_death; /* jqueue items that killed consumers held */

static void spawn(struct participant *p)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("chaos: fork");
        exit(2);
    }
    if (pid > 0) {
        p->pid = pid;
        return;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != killer_pid) _exit(0);
    rng_seed();
    int r = p->role == PRODUCER   ? producer(p->idx)
            : p->role == CONSUMER ? consumer(p->idx)
                                  : locker(p->idx);
    _exit(r);
}

/* Read what participant p left when it ended (status st) and clear its
 * announcements, before a replacement starts. */
static void account(struct participant *p, int st, bool killed)
{
    if (!(killed && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) &&
        !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "chaos: participant %d/%u ended with status %#x\n", (int)p->role, p->idx,
                st);
        unexpected++;
    } else if (killed && WIFEXITED(st)) {
        /* Left by itself before the kill: only producers and lock users at
         * the end, never during the run. */
        if (!LOAD(&sh->stop)) {
            fprintf(stderr, "chaos: participant %d/%u left during the run\n", (int)p->role, p->idx);
            unexpected++;
        }
    }
    if (p->role == PRODUCER) {
        struct prod_rec *rec = &sh->prod[p->idx];
        uint64_t n = LOAD(&rec->put_n), lo = LOAD(&rec->put_lo);
        if (verbose && killed)
            fprintf(stderr, "chaos: %s producer %u killed: put %" PRIu64 " +%" PRIu64 "\n",
                    qname[prod_queue[p->idx]], p->idx, lo, n);
        for (uint64_t s = lo; s < lo + n && s < SEQ_BITS; s++)
            maybe[p->idx][s / 64] |= UINT64_C(1) << (s % 64);
        STORE(&rec->put_n, 0);
    } else if (p->role == CONSUMER) {
        struct cons_rec *rec = &sh->cons[p->idx];
        if (verbose && killed)
            fprintf(stderr,
                    "chaos: %s consumer %u killed: in get %" PRIu64 ", last received %" PRIu64 "\n",
                    qname[cons_queue[p->idx]], p->idx, LOAD(&rec->in_get), LOAD(&rec->last_seq));
        qs[cons_queue[p->idx]].in_flight_gets += LOAD(&rec->in_get);
        held_at_death += LOAD(&rec->held);
        STORE(&rec->in_get, 0);
        STORE(&rec->held, 0);
    } else if (killed) {
        lock_kills++;
    }
    p->pid = 0;
}

static void kill_now(struct participant *p)
{
    int st;
    kill(p->pid, SIGKILL);
    while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR) {
    }
    account(p, st, true);
}

static uint64_t spared;

/* The killer's blow.  A jqueue consumer is stopped first and killed only
 * outside get and task_done: then the items it held are known exactly
 * (recorded as delivered, not marked done), and the jqueue's unfinished
 * count can be checked to the item.  Deaths inside get are played on the
 * other two queues.  Whether p died. */
static bool kill_one(struct participant *p)
{
    /* A few tries, a moment apart, to find it outside. */
    for (int tries = 0; p->role == CONSUMER && cons_queue[p->idx] == Q_JQ; tries++) {
        int st;
        kill(p->pid, SIGSTOP);
        while (waitpid(p->pid, &st, WUNTRACED) < 0 && errno == EINTR) {
        }
        if (!WIFSTOPPED(st)) { /* ended by itself */
            account(p, st, false);
            fprintf(stderr, "chaos: participant %d/%u ended during the run\n", (int)p->role,
                    p->idx);
            unexpected++;
            return true;
        }
        const struct cons_rec *rec = &sh->cons[p->idx];
        if (!LOAD(&rec->in_get) && !LOAD(&rec->td_busy)) break;
        kill(p->pid, SIGCONT);
        if (tries == 20) {
            spared++;
            return false;
        }
        sleep_ns((int64_t)(rnd() % 100000));
    }
    kills++;
    role_kills[p->role][p->role == PRODUCER   ? prod_queue[p->idx]
                        : p->role == CONSUMER ? cons_queue[p->idx]
                                              : 0]++;
    kill_now(p);
    return true;
}

/* Wait until every participant of the role has ended, for at most bound
 * nanoseconds; then kill those left (each a hang). */
static void wait_role(enum role role, int64_t bound)
{
    int64_t end = now_ns() + bound;
    for (;;) {
        int left = 0;
        for (int i = 0; i < NPART; i++) {
            struct participant *p = &part[i];
            if (p->role != role || !p->pid) continue;
            int st;
            pid_t r = waitpid(p->pid, &st, WNOHANG);
            if (r == p->pid)
                account(p, st, false);
            else
                left++;
        }
        if (!left) return;
        if (now_ns() > end) break;
        sleep_ns(FIPC_MSEC(1));
    }
    for (int i = 0; i < NPART; i++) {
        struct participant *p = &part[i];
        if (p->role != role || !p->pid) continue;
        fprintf(stderr, "chaos: participant %d/%u did not end in time (a hang)\n", (int)role,
                p->idx);
        ADD(&sh->hangs, 1);
        kill_now(p);
    }
}

/* ---- the watchdog ---- */

static int64_t watchdog_deadline;
static uint32_t end_phase_over;

static void *watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        int64_t left = __atomic_load_n(&watchdog_deadline, __ATOMIC_ACQUIRE) - now_ns();
        if (__atomic_load_n(&end_phase_over, __ATOMIC_ACQUIRE)) return NULL;
        if (left <= 0) break;
        sleep_ns(left < FIPC_MSEC(100) ? left : FIPC_MSEC(100));
    }
    static const char msg[] = "chaos: watchdog: the end phase overran; killing everything\n";
    if (write(2, msg, sizeof msg - 1) < 0) {
    }
    _exit(3); /* every participant dies with the killer (PR_SET_PDEATHSIG) */
}

/* ---- checks ---- */

static uint64_t popcount_words(const uint64_t *a, const uint64_t *b, const uint64_t *c,
                               uint64_t words, int mode)
{
    uint64_t n = 0;
    for (uint64_t w = 0; w < words; w++) {
        uint64_t x;
        switch (mode) {
        case 0:
            x = a[w];
            break; /* a */
        case 1:
            x = a[w] & ~b[w];
            break; /* a, not b */
        case 2:
            x = a[w] & ~b[w] & ~c[w];
            break; /* a, neither b nor c */
        default:
            x = (a[w] | b[w]);
            break; /* a or b */
        }
        n += (uint64_t)__builtin_popcountll(x);
    }
    return n;
}

/* The claimer records of MPMC queue q (ring_mpmc.c) owned by a dead thread
 * and still announcing a claim that lies a whole ring behind head: handed
 * over or repaired long ago, so no waiter will ever clear it.  A thread
 * that needs a record settles such records first, so they are not lost;
 * they are counted to show how often it happens.  *live receives the
 * records held by live threads, *total the records in all blocks. */
static unsigned stale_records(fipc_queue *q, unsigned *live, unsigned *total)
{
    const struct geom *g = fipc__queue_view(q);
    unsigned stale = 0;
    *live = 0;
    *total = 0;
    if (!g || g->spsc) return 0;
    uint32_t head = turn(__atomic_load_n(&q->head, __ATOMIC_ACQUIRE));
    unsigned blk = 0, i = 0;
    for (struct claimer *b = claimers_of(g); b; b = claimers_next(g, b, &blk))
        for (const struct claimer *r = b; r < b + QUEUE_CLAIMERS; r++, i++) {
            /* relaxed: everyone else has ended (waitpid ordered their writes) */
            uint32_t word = __atomic_load_n(&r->owner.word, __ATOMIC_RELAXED);
            (*total)++;
            uint64_t w = __atomic_load_n(&r->claim, __ATOMIC_RELAXED);
            uint32_t k = (uint32_t)(w >> 32) & 0x7fffffff;
            if (word & 0x3fffffff) { /* FUTEX_TID_MASK: an owner that lives */
                (*live)++;
                continue;
            }
            if (w != 0 && (int32_t)(head - ((uint32_t)w + k + (uint32_t)g->ring)) >= 0) {
                if (verbose)
                    fprintf(stderr,
                            "chaos: claimer record %u: dead, announces a %s of %u at turn %u; "
                            "head is at turn %u\n",
                            i, w & CLAIM_GET ? "get" : "put", k, (uint32_t)w, head);
                stale++;
            }
        }
    return stale;
}

/* Whether a thread that meets q for the first time gets a claimer record:
 * then the queue still repairs dead claims. */
static void *new_claimer(void *q)
{
    const struct geom *g = fipc__queue_view(q);
    return g && g->me ? q : NULL;
}

static bool records_usable(fipc_queue *q)
{
    pthread_t t;
    void *r = NULL;
    if (pthread_create(&t, NULL, new_claimer, q) != 0 || pthread_join(t, &r) != 0) return false;
    return r == q && __atomic_load_n(&q->unrecorded, __ATOMIC_RELAXED) == 0;
}

static uint64_t last_drain_fail;

/* After every consumer got -EPIPE, a get must too, at once. */
static void check_drained(int qi)
{
    unsigned char buf[MAX_ITEM];
    size_t len;
    int r = q_get(qi, buf, &len, 1, FIPC_SEC(2));
    if (r != -EPIPE) {
        fprintf(stderr, "chaos: %s: a get after the drain returned %s, not -EPIPE\n", qname[qi],
                r > 0 ? "a message" : fipc_strerror(r));
        last_drain_fail++;
    }
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 10;
    if (argc > 2 || !(secs > 0) || secs > 86400) {
        fprintf(stderr, "usage: chaos [seconds]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    verbose = getenv("CHAOS_VERBOSE") != NULL;
    killer_pid = getpid();
    rng_seed();

    sh = map_shared(sizeof *sh);
    for (int i = 0; i < NPROD; i++) {
        acked[i] = map_shared(SEQ_BITS / 8);
        delivered[i] = map_shared(SEQ_BITS / 8);
        maybe[i] = mmap(NULL, SEQ_BITS / 8, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (maybe[i] == MAP_FAILED) {
            perror("chaos: mmap");
            return 2;
        }
    }
    fipc_arena *arena;
    int r = fipc_arena_create(&arena, "chaos", 1 << 20);
    if (r == 0) r = fipc_queue_create(&mq, arena, 16, MAX_ITEM, 0);
    if (r == 0) r = fipc_queue_create(&sq, arena, 6, MAX_ITEM, FIPC_QUEUE_SPSC);
    if (r == 0) r = fipc_jqueue_create(&jq, arena, 10, MAX_ITEM, 0);
    if (r == 0) r = fipc_lock_init(&sh->g.lock);
    if (r < 0) {
        fprintf(stderr, "chaos: setup: %s\n", fipc_strerror(r));
        return 2;
    }

    int n = 0;
    for (unsigned i = 0; i < NPROD; i++)
        part[n++] = (struct participant){PRODUCER, i, 0};
    for (unsigned j = 0; j < NCONS; j++)
        part[n++] = (struct participant){CONSUMER, j, 0};
    for (unsigned i = 0; i < NLOCKER; i++)
        part[n++] = (struct participant){LOCKER, i, 0};
    for (int i = 0; i < NPART; i++)
        spawn(&part[i]);

    int64_t start = now_ns();
    int64_t deadline = start + (int64_t)(secs * 1e9);
    watchdog_deadline = deadline + END_BOUND_NS;
    pthread_t wd;
    if (pthread_create(&wd, NULL, watchdog, NULL) != 0) {
        fprintf(stderr, "chaos: no watchdog thread\n");
        return 2;
    }

    /* The run: kill, reap, replace. */
    while (now_ns() < deadline) {
        /* 10 us .. 20 ms, about log-uniform: 10 us * 2^(0..10), times 1..2 */
        int64_t delay = FIPC_USEC(10) << (rnd() % 11);
        sleep_ns(delay + (int64_t)(rnd() % (uint64_t)delay));
        for (int i = 0; i < NPART; i++) { /* nobody may end by itself */
            int st;
            if (waitpid(part[i].pid, &st, WNOHANG) == part[i].pid) {
                account(&part[i], st, false);
                fprintf(stderr, "chaos: participant %d/%u ended during the run\n",
                        (int)part[i].role, part[i].idx);
                unexpected++;
                spawn(&part[i]);
            }
        }
        struct participant *p = &part[rnd() % NPART];
        if (kill_one(p)) spawn(p);
    }

    /* The end: producers and lock users leave, the queues close, the
     * consumers drain. */
    int64_t end_start = now_ns();
    STORE(&sh->stop, 1);
    wait_role(PRODUCER, LEAVE_BOUND_NS);
    wait_role(LOCKER, LEAVE_BOUND_NS);
    STORE(&sh->draining, 1);
    for (int qi = 0; qi < NQ; qi++)
        q_close(qi);
    wait_role(CONSUMER, DRAIN_BOUND_NS);
    for (int qi = 0; qi < NQ; qi++)
        check_drained(qi);
    __atomic_store_n(&end_phase_over, 1, __ATOMIC_RELEASE);
    pthread_join(wd, NULL);
    double end_secs = (double)(now_ns() - end_start) / 1e9;

    /* Messages. */
    uint64_t words = SEQ_BITS / 64;
    uint64_t A = 0, D = 0, L = 0, allowed = 0, phantom = 0;
    for (int i = 0; i < NPROD; i++) {
        struct qstats *s = &qs[prod_queue[i]];
        uint64_t w = (LOAD(&sh->prod[i].next_seq) + 63) / 64;
        if (w > words) w = words;
        s->acked += popcount_words(acked[i], NULL, NULL, w, 0);
        s->delivered += popcount_words(delivered[i], NULL, NULL, w, 0);
        s->lost += popcount_words(acked[i], delivered[i], NULL, w, 1);
        s->unacked_delivered += popcount_words(delivered[i], acked[i], NULL, w, 1);
        s->phantom += popcount_words(delivered[i], acked[i], maybe[i], w, 2);
    }
    if (getenv("CHAOS_VERBOSE")) { /* which messages: the first few of each kind */
        for (int i = 0; i < NPROD; i++) {
            uint64_t top = LOAD(&sh->prod[i].next_seq), shown = 0;
            for (uint64_t q = 0; q < top && shown < 40; q++) {
                bool a = (acked[i][q / 64] >> (q % 64)) & 1;
                bool d = (delivered[i][q / 64] >> (q % 64)) & 1;
                bool m = (maybe[i][q / 64] >> (q % 64)) & 1;
                if (a != d) {
                    fprintf(stderr, "chaos: %s producer %d message %" PRIu64 ": %s%s\n",
                            qname[prod_queue[i]], i, q,
                            a ? "acked, not delivered" : "delivered, not acked",
                            m ? " (put cut short)" : "");
                    shown++;
                }
            }
        }
    }
    bool lost_ok = true;
    for (int qi = 0; qi < NQ; qi++) {
        struct qstats *s = &qs[qi];
        A += s->acked;
        D += s->delivered;
        L += s->lost;
        allowed += s->in_flight_gets;
        phantom += s->phantom;
        bool ok = s->lost <= s->in_flight_gets;
        lost_ok = lost_ok && ok;
        printf("chaos: %s: acknowledged %" PRIu64 ", delivered %" PRIu64 ", lost %" PRIu64
               " (at most %" PRIu64 " taken by consumers killed mid-get%s), delivered"
               " unacknowledged %" PRIu64 ", delivered after a failed put %" PRIu64 "\n",
               qname[qi], s->acked, s->delivered, s->lost, s->in_flight_gets,
               ok ? "" : ": TOO MANY LOST", s->unacked_delivered, s->phantom);
    }

    /* The jqueue: what the count should be.  Its consumers die only
     * outside get and task_done (kill_one), so none takes an item with it
     * unrecorded, and an item whose put succeeded is acknowledged or
     * delivered (or both): unfinished = those - task_done. */
    uint64_t succ = 0, cut_undelivered = 0, task_done = 0;
    for (int i = 0; i < NPROD; i++) {
        if (prod_queue[i] != Q_JQ) continue;
        uint64_t w = (LOAD(&sh->prod[i].next_seq) + 63) / 64;
        if (w > words) w = words;
        succ += popcount_words(acked[i], delivered[i], NULL, w, 3);
        for (uint64_t k = 0; k < w; k++)
            cut_undelivered += (uint64_t)__builtin_popcountll(maybe[i][k] & ~acked[i][k] &
                                                              ~delivered[i][k]);
    }
    for (int j = 0; j < NCONS; j++)
        if (cons_queue[j] == Q_JQ) task_done += LOAD(&sh->cons[j].task_done);
    uint64_t E = succ - task_done;
    uint64_t U = fipc_jqueue_unfinished(jq);
    /* A producer killed between counting its items and publishing them
     * leaves a counted claim, which the repair turns into tombstones that
     * the draining consumers pass and count done: its undelivered items
     * (cut_undelivered, reported) count for nothing, and U is exactly E. */
    bool jq_ok = U == E;

    /* The claimer records of the MPMC queues. */
    bool records_ok = true;
    fipc_queue *mpmc_queues[2] = {mq, fipc_jqueue_queue(jq)};
    for (int z = 0; z < 2; z++) {
        unsigned live, total, stale = stale_records(mpmc_queues[z], &live, &total);
        bool usable = records_usable(mpmc_queues[z]);
        records_ok = records_ok && usable;
        printf("chaos: %s claimer records: %u of %u held by live threads, %u dead with a stale"
               " claim (settled when needed); repair never turned off and a new thread gets"
               " a record: %s\n",
               qname[z == 0 ? Q_MPMC : Q_JQ], live, total, stale, usable ? "ok" : "FAILED");
    }

    /* The lock. */
    struct guarded *g = &sh->g;
    bool lock_ok = true;
    r = fipc_lock_acquire(&g->lock, FIPC_SEC(2));
    if (r == -EOWNERDEAD) {
        g->repairs++;
        if (g->a != g->b) {
            g->half_done++;
            g->b = g->a;
        }
    } else if (r == 0 && g->holder != 0) {
        g->broken++;
    } else if (r != 0) {
        fprintf(stderr, "chaos: final lock acquire: %s\n", fipc_strerror(r));
        lock_ok = false;
    }
    uint64_t recorded = 0;
    for (int i = 0; i < NLOCKER; i++)
        recorded += sh->lock_updates[i];
    /* Each killed user may have completed one update it did not record,
     * and one repaired half update counts too. */
    bool count_ok = g->a >= recorded && g->a <= recorded + lock_kills;
    lock_ok = lock_ok && g->a == g->b && g->broken == 0 && count_ok;
    printf("chaos: lock: updates %" PRIu64 " (recorded %" PRIu64 ", users killed %" PRIu64
           "), a %s b, repairs %" PRIu64 " (half-done %" PRIu64 "), broken %" PRIu64 ": %s\n",
           g->a, recorded, lock_kills, g->a == g->b ? "==" : "!=", g->repairs, g->half_done,
           g->broken, lock_ok ? "ok" : "FAILED");
    if (r == 0 || r == -EOWNERDEAD) fipc_lock_release(&g->lock);

    uint64_t H = LOAD(&sh->hangs) + last_drain_fail;
    uint64_t X = LOAD(&sh->dups), C = LOAD(&sh->corrupt);
    printf("chaos: killed: producers %" PRIu64 " mpmc, %" PRIu64 " spsc, %" PRIu64
           " jqueue; consumers %" PRIu64 " mpmc, %" PRIu64 " spsc, %" PRIu64
           " jqueue; lock users %" PRIu64 "\n",
           role_kills[PRODUCER][Q_MPMC], role_kills[PRODUCER][Q_SPSC], role_kills[PRODUCER][Q_JQ],
           role_kills[CONSUMER][Q_MPMC], role_kills[CONSUMER][Q_SPSC], role_kills[CONSUMER][Q_JQ],
           role_kills[LOCKER][0]);
    printf("chaos: jqueue: items held by killed consumers %" PRIu64 ", unfinished %" PRIu64
           ", expected %" PRIu64 "\n",
           held_at_death, U, E);
    printf("chaos: end phase %.2f s, unexpected exits %" PRIu64 ", jqueue consumers spared"
           " (stopped in get or task_done) %" PRIu64 ", jqueue task_done %" PRIu64
           ", jqueue puts cut short by a kill, undelivered %" PRIu64 "\n",
           end_secs, unexpected, spared, task_done, cut_undelivered);
    printf("chaos: %.0f s, kills %" PRIu64 ", acknowledged %" PRIu64 ", delivered %" PRIu64
           ", lost %" PRIu64 ", duplicated %" PRIu64 ", corrupt %" PRIu64 ", hangs %" PRIu64
           ", lock repairs %" PRIu64 ", jqueue unfinished %" PRIu64 " (expected %" PRIu64 ")\n",
           secs, kills, A, D, L, X, C + phantom, H, g->repairs, U, E);
    printf("chaos: jqueue unfinished %" PRIu64 " against expected %" PRIu64 " (%" PRIu64
           " items of puts cut short count for nothing): %s\n",
           U, E, cut_undelivered, jq_ok ? "ok" : "FAILED");
    bool ok = X == 0 && C == 0 && phantom == 0 && H == 0 && lost_ok && lock_ok && jq_ok &&
              records_ok && unexpected == 0;
    printf("chaos: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
