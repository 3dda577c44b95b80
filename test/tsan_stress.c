/*
 * tsan_stress.c - fipc objects shared by the threads of one process, for
 * ThreadSanitizer (./dev tsan).
 *
 * Each part hammers one object from several threads and checks exact
 * results: a counter that only the lock protects, a semaphore that hands
 * out a fixed number of tokens, an event that gates rounds, an MPMC queue
 * (every message delivered exactly once, each producer's messages in
 * order), an SPSC queue (every message in order) and a JoinableQueue
 * (join returns after every item's work, which it then reads, and timed
 * joins meanwhile switch its count in and out of the locked mode that
 * joiners set).  The program is
 * meant to be built with -fsanitize=thread: fipc synchronizes through
 * atomics, which TSan sees, plus futex waits that re-check those atomics
 * after waking, so a report is either a missing acquire/release in fipc or
 * a data race in this program.  It also runs (and checks) without TSan.
 *
 * Usage: tsan_stress [SCALE]   run every part, SCALE times the rounds
 *        tsan_stress --race    race on purpose (a plain counter, no lock):
 *                              ./dev tsan checks that TSan reports it, so
 *                              that a clean run means something
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fipc/event.h>
#include <fipc/jqueue.h>
#include <fipc/lock.h>
#include <fipc/queue.h>
#include <fipc/sem.h>

#define THREADS 4

static long scale = 1;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "tsan_stress: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void run_threads(void *(*fn)(void *), int n, void *args, size_t arg_size)
{
    pthread_t t[16];
    for (int i = 0; i < n; i++)
        CHECK(pthread_create(&t[i], NULL, fn, (char *)args + (size_t)i * arg_size) == 0);
    for (int i = 0; i < n; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
}

/* ---- lock: a plain counter that only the lock protects ------------------ */

static fipc_lock lock;
static long locked_counter; /* not atomic: the lock is its only protection */

static void *lock_worker(void *arg)
{
    (void)arg;
    for (long i = 0; i < 20000 * scale; i++) {
        CHECK(fipc_lock_acquire(&lock, FIPC_FOREVER) == 0);
        locked_counter++;
        CHECK(fipc_lock_release(&lock) == 0);
    }
    return NULL;
}

static void test_lock(void)
{
    CHECK(fipc_lock_init(&lock) == 0);
    char unused[THREADS];
    run_threads(lock_worker, THREADS, unused, 1);
    CHECK(locked_counter == THREADS * 20000 * scale);
    CHECK(!fipc_lock_locked(&lock));
    printf("lock: %d threads, counter %ld: ok\n", THREADS, locked_counter);
}

/* ---- sem: tokens, each guarding a plain slot ---------------------------- */

#define TOKENS 2

static fipc_sem sem;
static fipc_lock slot_lock; /* which slot is free: a tiny allocator */
static bool slot_busy[TOKENS];
static long slot_uses[TOKENS]; /* plain: only the holder of the slot writes it */
static atomic_int holders;

static void *sem_worker(void *arg)
{
    (void)arg;
    for (long i = 0; i < 10000 * scale; i++) {
        CHECK(fipc_sem_acquire(&sem, FIPC_FOREVER) == 0);
        int h = atomic_fetch_add(&holders, 1) + 1;
        CHECK(h <= TOKENS);
        CHECK(fipc_lock_acquire(&slot_lock, FIPC_FOREVER) == 0);
        int s = 0;
        while (slot_busy[s])
            s++;
        CHECK(s < TOKENS);
        slot_busy[s] = true;
        CHECK(fipc_lock_release(&slot_lock) == 0);
        slot_uses[s]++;
        CHECK(fipc_lock_acquire(&slot_lock, FIPC_FOREVER) == 0);
        slot_busy[s] = false;
        CHECK(fipc_lock_release(&slot_lock) == 0);
        atomic_fetch_sub(&holders, 1);
        CHECK(fipc_sem_release(&sem) == 0);
    }
    return NULL;
}

static void test_sem(void)
{
    CHECK(fipc_sem_init(&sem, TOKENS) == 0);
    CHECK(fipc_lock_init(&slot_lock) == 0);
    char unused[THREADS];
    run_threads(sem_worker, THREADS, unused, 1);
    CHECK(slot_uses[0] + slot_uses[1] == THREADS * 10000 * scale);
    CHECK(fipc_sem_value(&sem) == TOKENS);
    printf("sem: %d threads, %d tokens, %ld uses: ok\n", THREADS, TOKENS,
           slot_uses[0] + slot_uses[1]);
}

/* ---- event: a leader publishes each round's data, then sets an event --- */

/* Round r is announced on go[r % 2]; the leader clears the other one at the
 * start of the round (every follower has passed it: they all acked round
 * r - 1), so no follower ever waits on an event still set from before. */
static fipc_event go[2], ack;
static long round_data; /* plain: written before set, read after wait */
static long follower_sum[THREADS];
static atomic_int acks;

#define EVENT_ROUNDS 3000
#define FOLLOWERS    (THREADS - 1)

static void *event_follower(void *arg)
{
    long *sum = arg;
    for (long r = 1; r <= EVENT_ROUNDS * scale; r++) {
        CHECK(fipc_event_wait(&go[r % 2], FIPC_FOREVER) == 0);
        CHECK(round_data == r); /* set's release, wait's acquire */
        *sum += round_data;
        /* The last follower of the round lets the leader go on. */
        if (atomic_fetch_add(&acks, 1) + 1 == FOLLOWERS) CHECK(fipc_event_set(&ack) == 0);
    }
    return NULL;
}

static void *event_leader(void *arg)
{
    (void)arg;
    for (long r = 1; r <= EVENT_ROUNDS * scale; r++) {
        CHECK(fipc_event_clear(&go[(r + 1) % 2]) == 0);
        round_data = r;
        CHECK(fipc_event_set(&go[r % 2]) == 0);
        CHECK(fipc_event_wait(&ack, FIPC_FOREVER) == 0);
        CHECK(fipc_event_clear(&ack) == 0);
        atomic_store(&acks, 0);
    }
    return NULL;
}

static void *event_worker(void *arg)
{
    long *sum = arg;
    return sum == &follower_sum[0] ? event_leader(arg) : event_follower(arg);
}

static void test_event(void)
{
    CHECK(fipc_event_init(&go[0]) == 0);
    CHECK(fipc_event_init(&go[1]) == 0);
    CHECK(fipc_event_init(&ack) == 0);
    run_threads(event_worker, THREADS, follower_sum, sizeof follower_sum[0]);
    long rounds = EVENT_ROUNDS * scale;
    for (int i = 1; i < THREADS; i++)
        CHECK(follower_sum[i] == rounds * (rounds + 1) / 2);
    printf("event: 1 leader, %d followers, %ld rounds: ok\n", FOLLOWERS, rounds);
}

/* ---- queues: producers and consumers ------------------------------------ */

struct msg {
    uint32_t producer;
    uint32_t seq;
    uint64_t check; /* a function of the two, to catch torn copies */
};

static uint64_t msg_check(uint32_t p, uint32_t s)
{
    return ((uint64_t)p << 40) ^ ((uint64_t)s * 0x9e3779b97f4a7c15u);
}

struct qarg {
    fipc_queue *q;
    uint32_t id;
    uint32_t count;   /* producer: messages to put; consumer: taken */
    uint32_t last[8]; /* consumer: last seq seen per producer + 1 */
    uint64_t total;   /* consumer: sum of seqs */
    int nprod;
};

static void *q_producer(void *arg)
{
    struct qarg *a = arg;
    for (uint32_t s = 0; s < a->count; s++) {
        struct msg m = {a->id, s, msg_check(a->id, s)};
        CHECK(fipc_queue_put(a->q, &m, sizeof m, FIPC_FOREVER) == 0);
    }
    return NULL;
}

static void *q_consumer(void *arg)
{
    struct qarg *a = arg;
    for (;;) {
        struct msg m;
        size_t len = 0;
        int r = fipc_queue_get(a->q, &m, sizeof m, &len, FIPC_FOREVER);
        if (r == -EPIPE) break;
        CHECK(r == 0);
        CHECK(len == sizeof m);
        CHECK(m.producer < (uint32_t)a->nprod);
        CHECK(m.check == msg_check(m.producer, m.seq));
        /* One producer's messages arrive in order at any one consumer. */
        CHECK(m.seq + 1 > a->last[m.producer]);
        a->last[m.producer] = m.seq + 1;
        a->total += m.seq;
        a->count++;
    }
    return NULL;
}

static void *q_worker(void *arg)
{
    struct qarg *a = arg;
    return a->id & 0x100 ? q_consumer(arg) : q_producer(arg);
}

static void test_queue(const char *name, unsigned flags, int nprod, int ncons, uint32_t per_prod)
{
    fipc_queue *q;
    CHECK(fipc_queue_create(&q, NULL, 8, sizeof(struct msg), flags) == 0);
    struct qarg args[8];
    memset(args, 0, sizeof args);
    int n = nprod + ncons;
    for (int i = 0; i < n; i++) {
        args[i].q = q;
        args[i].nprod = nprod;
        args[i].id = i < nprod ? (uint32_t)i : 0x100u | (uint32_t)i;
        args[i].count = i < nprod ? per_prod : 0;
    }
    /* Producers and consumers all run at once; the consumers end at -EPIPE,
     * which comes only after every message put before close is taken. */
    pthread_t t[8];
    for (int i = 0; i < n; i++)
        CHECK(pthread_create(&t[i], NULL, q_worker, &args[i]) == 0);
    for (int i = 0; i < nprod; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(fipc_queue_close(q) == 0);
    uint64_t got = 0, total = 0;
    for (int i = nprod; i < n; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        got += args[i].count;
        total += args[i].total;
    }
    uint64_t want = (uint64_t)nprod * per_prod;
    CHECK(got == want);
    CHECK(total == (uint64_t)nprod * ((uint64_t)per_prod * (per_prod - 1) / 2));
    CHECK(fipc_queue_empty(q));
    printf("%s: %d producers, %d consumers, %llu messages, each once and in order: ok\n", name,
           nprod, ncons, (unsigned long long)got);
}

/* ---- jqueue: join returns after all the work, which it may then read ---- */

struct jarg {
    fipc_jqueue *q;
    uint32_t id;
    uint32_t per_prod;
    uint32_t *work;        /* plain: each item's slot, written once by its consumer */
    atomic_int *producing; /* producers still putting */
    uint64_t timed_joins;
};

static void *jq_producer(void *arg)
{
    struct jarg *a = arg;
    for (uint32_t s = 0; s < a->per_prod; s++) {
        uint32_t item = a->id * a->per_prod + s;
        CHECK(fipc_jqueue_put(a->q, &item, sizeof item, FIPC_FOREVER) == 0);
    }
    atomic_fetch_sub(a->producing, 1);
    return NULL;
}

static void *jq_consumer(void *arg)
{
    struct jarg *a = arg;
    for (;;) {
        uint32_t item;
        size_t len = 0;
        int r = fipc_jqueue_get(a->q, &item, sizeof item, &len, FIPC_FOREVER);
        if (r == -EPIPE) break;
        CHECK(r == 0 && len == sizeof item);
        a->work[item] = item * 3 + 1; /* the work, published by task_done */
        CHECK(fipc_jqueue_task_done(a->q) == 0);
    }
    return NULL;
}

/* Short timed joins while the producers run, each switching the count into
 * the locked mode and out again. */
static void *jq_joiner(void *arg)
{
    struct jarg *a = arg;
    while (atomic_load(a->producing) > 0) {
        int r = fipc_jqueue_join(a->q, 1000000);
        CHECK(r == 0 || r == -ETIMEDOUT);
        a->timed_joins++;
    }
    return NULL;
}

static void *jq_worker(void *arg)
{
    struct jarg *a = arg;
    if (a->id >= 0x200) return jq_joiner(arg);
    return a->id >= 0x100 ? jq_consumer(arg) : jq_producer(arg);
}

static void test_jqueue(uint32_t per_prod)
{
    enum { NPROD = 2, NCONS = 2, NJOIN = 2 };
    fipc_jqueue *q;
    CHECK(fipc_jqueue_create(&q, NULL, 8, sizeof(uint32_t), 0) == 0);
    uint32_t *work = calloc((size_t)NPROD * per_prod, sizeof *work);
    CHECK(work != NULL);
    atomic_int producing = NPROD;
    struct jarg args[NPROD + NCONS + NJOIN];
    pthread_t t[NPROD + NCONS + NJOIN];
    for (int i = 0; i < NPROD + NCONS + NJOIN; i++) {
        uint32_t id = i < NPROD ? (uint32_t)i : i < NPROD + NCONS ? 0x100u : 0x200u;
        args[i] = (struct jarg){q, id, per_prod, work, &producing, 0};
        CHECK(pthread_create(&t[i], NULL, jq_worker, &args[i]) == 0);
    }
    for (int i = 0; i < NPROD; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    /* Every item is put: join returns once each one's work is done. */
    CHECK(fipc_jqueue_join(q, FIPC_FOREVER) == 0);
    for (uint32_t item = 0; item < NPROD * per_prod; item++)
        CHECK(work[item] == item * 3 + 1);
    CHECK(fipc_jqueue_unfinished(q) == 0);
    CHECK(fipc_jqueue_task_done(q) == -EOVERFLOW);
    CHECK(fipc_jqueue_close(q) == 0);
    uint64_t timed = 0;
    for (int i = NPROD; i < NPROD + NCONS + NJOIN; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        timed += args[i].timed_joins;
    }
    free(work);
    printf("jqueue: %d producers, %d consumers, %u items, join after all their work, %llu timed"
           " joins meanwhile: ok\n",
           NPROD, NCONS, NPROD * per_prod, (unsigned long long)timed);
}

static long racy_counter;

static void *racy_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        racy_counter++; /* the race TSan must report */
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--race") == 0) {
        char unused[2];
        run_threads(racy_worker, 2, unused, 1);
        printf("tsan_stress --race: counter %ld (a race TSan should have reported)\n",
               racy_counter);
        return 0;
    }
    if (argc > 1) scale = strtol(argv[1], NULL, 10);
    if (scale < 1) scale = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_lock();
    test_sem();
    test_event();
    test_queue("mpmc", 0, 2, 2, (uint32_t)(50000 * scale));
    test_queue("spsc", FIPC_QUEUE_SPSC, 1, 1, (uint32_t)(100000 * scale));
    test_jqueue((uint32_t)(20000 * scale));
    printf("tsan_stress: all ok\n");
    return 0;
}
