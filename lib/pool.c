/*
 * pool.c - Python's Pool on fipc queues, forked workers and two threads.
 *
 * Transport (the pool's own arena, mapped by the workers through fork)
 *   tasks    MPMC queue, the parent the only producer (under the pool's
 *            lock, so queue order is seq order), the workers consumers;
 *   results  MPMC queue, the workers and the watcher producers, the
 *            collector the only consumer;
 *   slots    one word per worker: what it is doing (table below);
 *   init     a semaphore each first worker releases once its initializer
 *            has run (or the watcher, for one that died in it);
 *   lead     a robust lock: only its holder waits in the task queue's get,
 *            the other idle workers wait for the lock (worker_main).
 * A submission that finds the task queue full, or the in-flight window
 * (below) used up, waits in a private backlog that the collector feeds
 * from as results free room: submitting never blocks, also not inside a
 * callback.
 *
 * Threads of the parent
 *   watcher    forks every worker (so that their parent-death signal is
 *              tied to a thread that lives as long as the pool), polls
 *              their pidfds, and for a worker that died puts a DEATH
 *              message with its slot word into the results queue, then
 *              starts a replacement.  The watcher's put claims a position
 *              after every put the dead worker completed, so the collector
 *              has seen each result the worker delivered before it sees
 *              the DEATH.
 *   collector  takes results in order, resolves records, runs callbacks
 *              (so they run one at a time, in completion order), feeds the
 *              backlog and wakes the threads waiting in get.
 *
 * The slot word: seq << 3 | state, written by its worker with release
 * stores (pairing with the acquire loads of the watcher, which reads it
 * once the worker has died, and of the collector's sweep, which reads it
 * while the worker lives).
 *
 *   SLOT_INIT         forked, the initializer runs
 *   SLOT_INIT_FAILED  the initializer failed (init_err says how)
 *   SLOT_IDLE         ready, no task taken yet
 *   SLOT_RUNNING(s)   took task s and runs it
 *   SLOT_DONE(s)      put the result of s (then takes the next task)
 *   SLOT_EXITING      the task queue is closed and drained: exits
 *   SLOT_RETIRED      ran maxtasksperchild tasks: exits
 *
 * What a death costs, by the state it leaves:
 *   RUNNING(s)        s fails with -ECHILD (unless its result came first)
 *   IDLE, DONE(s)     the worker may have died inside the get of its next
 *                     task, which the queue then loses with it: a suspect.
 *                     The collector sweeps for it (sweep() below).
 *   INIT, INIT_FAILED a first worker: create fails; a replacement: the
 *                     pool is broken (no more replacements, so never a
 *                     loop of them); once no worker is left, every
 *                     unfinished task fails with the initializer's error.
 *
 * The in-flight window: ring[seq & ring_mask] describes task seq until it
 * is resolved; lo_seq is the oldest unresolved one, and no task is queued
 * at or past lo_seq + ring size.  Everything parent-private is under
 * pool->lock.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fipc/arena.h>
#include <fipc/lock.h>
#include <fipc/pool.h>
#include <fipc/process.h>
#include <fipc/queue.h>
#include <fipc/sem.h>

#include "atomic.h"
#include "clock.h"

#define SLOT_INIT        0u
#define SLOT_INIT_FAILED 1u
#define SLOT_IDLE        2u
#define SLOT_RUNNING     3u
#define SLOT_DONE        4u
#define SLOT_EXITING     5u
#define SLOT_RETIRED     6u
#define SLOT_STATE(w)    ((unsigned)((w)&7u))
#define SLOT_SEQ(w)      ((w) >> 3)
#define SLOT_WORD(s, st) ((uint64_t)(s) << 3 | (st))

/* A worker's shared slot, one cache line each (written by one worker). */
struct worker_slot {
    uint64_t word;
    int32_t init_err; /* SLOT_INIT_FAILED: the negative code */
    char pad[52];
};
_Static_assert(sizeof(struct worker_slot) == 64, "one line per slot");

/* A task message: the header, then count * arg_size bytes. */
struct task_hdr {
    uint64_t seq;
    uint64_t fn; /* the task function's address, valid in every fork */
    uint32_t count;
    uint32_t arg_size;
    uint64_t result_size; /* the capacity of each result */
};

/* A message to the collector: the header, then len bytes of results. */
#define MSG_RESULT 1
#define MSG_DEATH  2 /* a worker died: word is its slot */
#define MSG_STOP   3 /* no worker is left: status fails what remains */
#define MSG_NUDGE  4 /* a submitter's backlog stalled: feed it */
struct result_hdr {
    uint64_t seq; /* MSG_RESULT: the task; MSG_DEATH: the slot word */
    int32_t kind;
    int32_t status;
    uint64_t len;
};

/* How often the collector looks for a task lost with a worker that died
 * inside get, and how long a candidate must stay one before it is failed
 * (a live worker leaves that state within microseconds). */
#define SWEEP_TICK_NS  FIPC_MSEC(20)
#define SWEEP_GRACE_NS FIPC_MSEC(200)
#define COLLECT_BATCH  16
#define FEED_REPAIR_NS FIPC_MSEC(10)

/* Replacements that may die in their initializer in a row before the
 * pool stops replacing workers (it is then broken: -ECHILD). */
#define INIT_DEATHS_MAX 3

/* Arguments and results up to this long are kept inside the record. */
#define RECORD_INLINE 64

struct inflight {
    uint64_t seq;
    fipc_result *r;
    size_t chunk;
    bool live;
    int64_t suspect_since; /* 0: not a candidate of the sweep */
};

struct fipc_result {
    fipc_pool *pool;
    fipc_task_fn fn;
    fipc_callback cb, err_cb;
    void *user;
    unsigned char *args; /* a private copy */
    size_t arg_size;     /* per argument (apply: the argument's length) */
    size_t n;            /* arguments (apply: 1) */
    size_t chunksize, nchunks;
    size_t queued;   /* chunks put into the task queue */
    size_t finished; /* queued chunks whose fate is known */
    size_t ok;       /* chunks that succeeded */
    bool is_map;
    unsigned char *out; /* apply: a buffer of max_result; map: the caller's */
    size_t out_len;
    size_t result_size;
    bool out_owned; /* out was allocated for this record */
    int status;
    bool resolved; /* status final; nothing more is written to out */
    bool ready;    /* and its callback has run */
    bool released; /* nobody holds it (freed, or submitted without out) */
    bool in_backlog;
    fipc_result *next;  /* backlog */
    fipc_result *cnext; /* the collector's list of completed records */
    /* Short arguments and results live here, saving an allocation each. */
    unsigned char inline_arg[RECORD_INLINE];
    unsigned char inline_out[RECORD_INLINE];
};

/* Where a worker's result is built in worker_buf: aligned for its header. */
#define RESULT_OFFSET(pool) (((pool)->task_item + 15) & ~(size_t)15)

struct worker_arg {
    fipc_pool *pool;
    unsigned idx;
};

struct fipc_pool {
    pthread_mutex_t lock;
    pthread_cond_t cv; /* broadcast when a record is ready, or joined */
    fipc_arena *arena;
    fipc_queue *tasks, *results;
    fipc_sem *init_sem;
    fipc_lock *lead; /* held by the one worker that may wait in the task queue's get */
    struct worker_slot *slots;
    unsigned nproc;
    fipc_pool_opts opts;
    size_t task_item, result_item;

    /* Under lock. */
    uint64_t next_seq, lo_seq;
    struct inflight *ring;
    uint64_t ring_mask;
    fipc_result *backlog, *backlog_tail;
    unsigned char *scratch; /* a task message being built */
    bool started;           /* the watcher has started the first workers */
    bool feed_stalled;      /* the last feed left the backlog with a put refused */
    bool closed, terminating, tasks_closed, stopped, joining, joined;
    int broken;        /* 0, or why the pool can no longer replace workers */
    unsigned suspects; /* deaths that may have lost a task inside get */
    size_t refs;       /* records alive, + 1 for the pool handle */

    pthread_t watcher, collector;
    int wake_fd; /* eventfd: terminate wakes the watcher */

    /* The watcher's own (pids also read by fipc_pool_pids, relaxed). */
    fipc_process **procs;
    int *pidfds;
    int *pids;
    bool *first; /* the slot's first worker: create waits for it */
    struct worker_arg *wargs;
    struct pollfd *pfd;
    unsigned live;
    unsigned init_deaths; /* replacements dead in their initializer in a row */

    unsigned char *collect_buf; /* the collector's: COLLECT_BATCH results */
    unsigned char *worker_buf;  /* a task and a result, used by each worker's copy */
    sigset_t worker_mask;       /* the signal mask of the thread that called create */
};

static bool on_collector(const fipc_pool *pool)
{
    return pool->collector && pthread_equal(pthread_self(), pool->collector);
}

/* ---------------------------------------------------------------- */
/* The worker (a daemon child; sees the parent's memory as of the fork) */
/* ---------------------------------------------------------------- */

static void slot_set(struct worker_slot *slot, uint64_t seq, unsigned state)
{
    /* Release pairs with the acquire loads of the watcher and the sweep:
     * a DONE is seen only after the put of its result. */
    store_release(&slot->word, SLOT_WORD(seq, state));
}

#ifdef FIPC_TEST_HOOKS
/* A seam for test/test_pool.c (the test library only): called by a
 * worker between its get returning a task and its slot saying so, the
 * window in which a death loses the task as a death inside get does. */
void (*fipc__pool_after_get)(const void *args, size_t len);
/* Called by a worker before each get from the task queue. */
void (*fipc__pool_before_get)(fipc_queue *tasks);
#endif

static void run_chunk(const struct task_hdr *t, const unsigned char *args, unsigned char *out,
                      struct result_hdr *res)
{
    fipc_task_fn fn = (fipc_task_fn)(uintptr_t)t->fn;
    res->status = 0;
    res->len = 0;
    for (uint32_t i = 0; i < t->count; i++) {
        size_t len = t->result_size;
        int r = fn(args + (size_t)i * t->arg_size, t->arg_size, out + i * t->result_size, &len);
        if (r == 0 && len > t->result_size)
            r = -EMSGSIZE;
        if (r != 0) {
            res->status = r;
            res->len = 0;
            return;
        }
        /* A chunk of a map has fixed strides; one apply has its length. */
        res->len = t->count == 1 ? len : (uint64_t)(i + 1) * t->result_size;
    }
}

static int worker_main(void *arg)
{
    const struct worker_arg *wa = arg;
    fipc_pool *pool = wa->pool;
    struct worker_slot *slot = &pool->slots[wa->idx];
    bool first = pool->first[wa->idx];
    /* The watcher that forked us blocks every signal; a worker has the
     * mask of the thread that created the pool. */
    pthread_sigmask(SIG_SETMASK, &pool->worker_mask, NULL);
    /* The parent's buffer, private to us since the fork: the child calls
     * no allocator of its own before its initializer (another thread of
     * the parent may have held an allocator's lock at the fork). */
    unsigned char *buf = pool->worker_buf;
    unsigned char *out = buf + RESULT_OFFSET(pool);
    int r = 0;
    if (pool->opts.initializer) {
        r = pool->opts.initializer(pool->opts.initarg);
        if (r > 0)
            r = -EIO;
    }
    if (r != 0) {
        slot->init_err = r; /* published by the release in slot_set */
        slot_set(slot, 0, SLOT_INIT_FAILED);
        if (first)
            fipc_sem_release(pool->init_sem);
        return 1;
    }
    slot_set(slot, 0, SLOT_IDLE);
    if (first)
        fipc_sem_release(pool->init_sem);

    unsigned long ran = 0;
    for (;;) {
        size_t len;
        /* Leader and followers: only the holder of pool->lead waits in the
         * task queue's get; the others sleep on the lock.  The queue's
         * event count wakes every sleeper at a put, so with all workers
         * asleep in get each task woke them all, and all but one went
         * back to sleep (on two CPUs, that herd was most of a tiny task's
         * cost).  Now a put wakes the leader alone, which hands the lead
         * to one follower as it leaves get.  Woken by the holder's
         * release; the lock is robust, so a leader that dies (in get, or
         * anywhere) gives the next one -EOWNERDEAD with the lock held,
         * and nothing it protects needs repair (it guards no data).
         * Another error (-ENOMEM for the thread's record of held locks):
         * wait in get without the lead, as every worker once did. */
        int lr = fipc_lock_acquire(pool->lead, FIPC_FOREVER);
        bool lead = lr == 0 || lr == -EOWNERDEAD;
#ifdef FIPC_TEST_HOOKS
        if (fipc__pool_before_get)
            fipc__pool_before_get(pool->tasks);
#endif
        r = fipc_queue_get(pool->tasks, buf, pool->task_item, &len, FIPC_FOREVER);
        /* Hand the lead on before running the task, so that a task put
         * while this one runs finds a worker waiting for it. */
        if (lead)
            fipc_lock_release(pool->lead);
        if (r == -EPIPE) {
            slot_set(slot, 0, SLOT_EXITING);
            return 0;
        }
        const struct task_hdr *t = (const struct task_hdr *)buf;
        if (r < 0 || len < sizeof *t || len - sizeof *t < (uint64_t)t->count * t->arg_size)
            continue; /* -EPROTO: nothing that a parent put */
#ifdef FIPC_TEST_HOOKS
        if (fipc__pool_after_get)
            fipc__pool_after_get(buf + sizeof *t, len - sizeof *t);
#endif
        slot_set(slot, t->seq, SLOT_RUNNING);
        struct result_hdr *res = (struct result_hdr *)out;
        res->seq = t->seq;
        res->kind = MSG_RESULT;
        run_chunk(t, buf + sizeof *t, out + sizeof *res, res);
        /* -EPIPE: never closed while the pool lives; whatever else, the
         * parent learns of this task from the slot once we are gone. */
        if (fipc_queue_put(pool->results, out, sizeof *res + res->len, FIPC_FOREVER) < 0)
            return 2;
        slot_set(slot, t->seq, SLOT_DONE);
        if (pool->opts.maxtasksperchild && ++ran >= pool->opts.maxtasksperchild) {
            slot_set(slot, 0, SLOT_RETIRED);
            return 0;
        }
    }
}

/* ---------------------------------------------------------------- */
/* The watcher                                                         */
/* ---------------------------------------------------------------- */

static void set_broken(fipc_pool *pool, int err)
{
    pthread_mutex_lock(&pool->lock);
    if (!pool->broken)
        pool->broken = err;
    pthread_mutex_unlock(&pool->lock);
}

static int start_worker(fipc_pool *pool, unsigned i)
{
    /* Read by the child in its copy of our memory. */
    struct worker_arg *wa = &pool->wargs[i];
    wa->pool = pool;
    wa->idx = i;
    char name[32];
    snprintf(name, sizeof name, "PoolWorker-%u", i + 1);
    fipc_process_opts po = {.name = name, .daemon = true};
    /* No worker runs in this slot: the release pairs with nothing, it
     * only keeps the store ordered before the fork. */
    slot_set(&pool->slots[i], 0, SLOT_INIT);
    pool->slots[i].init_err = 0;
    fipc_process *p;
    int r = fipc_process_start(&p, worker_main, wa, &po);
    if (r < 0)
        return r;
    /* The child cannot be reaped before we do (nothing else in fipc reaps
     * it), so its pid names it until then. */
    int fd = (int)syscall(SYS_pidfd_open, fipc_process_pid(p), 0);
    if (fd < 0) {
        r = -errno;
        fipc_process_kill(p);
        fipc_process_join(p, FIPC_FOREVER);
        fipc_process_free(p);
        return r;
    }
    pool->procs[i] = p;
    pool->pidfds[i] = fd;
    /* Relaxed: fipc_pool_pids reads a snapshot and nothing through it. */
    store_relaxed(&pool->pids[i], fipc_process_pid(p));
    pool->live++;
    return 0;
}

static void put_message(fipc_pool *pool, int kind, uint64_t seq, int status, int64_t timeout_ns)
{
    struct result_hdr m = {.seq = seq, .kind = kind, .status = status};
    /* The collector drains the queue until it takes a STOP, so a put
     * without timeout ends; -EPIPE cannot happen (the results queue is
     * never closed). */
    fipc_queue_put(pool->results, &m, sizeof m, timeout_ns);
}

/* Worker i has ended: reap it, say what it cost, replace it. */
static void worker_ended(fipc_pool *pool, unsigned i, bool terminating)
{
    fipc_process_join(pool->procs[i], FIPC_FOREVER); /* its pidfd said it ended */
    fipc_process_free(pool->procs[i]);
    close(pool->pidfds[i]);
    pool->procs[i] = NULL;
    pool->pidfds[i] = -1;
    store_relaxed(&pool->pids[i], 0); /* relaxed: as in start_worker */
    pool->live--;
    /* Acquire pairs with the worker's last slot_set; it has ended, so the
     * word no longer changes. */
    uint64_t word = load_acquire(&pool->slots[i].word);
    unsigned state = SLOT_STATE(word);
    bool first = pool->first[i];
    pool->first[i] = false;
    if (terminating || state == SLOT_EXITING)
        return;
    /* Killed before its initializer (if any) was done: a replacement
     * whose initializer failed, or died in it INIT_DEATHS_MAX times in a
     * row, breaks the pool rather than being replaced again and again. */
    bool init_death = state == SLOT_INIT && pool->opts.initializer;
    if (state == SLOT_INIT_FAILED ||
        (init_death && (first || ++pool->init_deaths >= INIT_DEATHS_MAX))) {
        if (state == SLOT_INIT) {
            pool->slots[i].init_err = -ECHILD;
            slot_set(&pool->slots[i], 0, SLOT_INIT_FAILED);
        }
        if (first)
            fipc_sem_release(pool->init_sem); /* create reports it */
        else
            set_broken(pool, pool->slots[i].init_err);
        return;
    }
    if (state != SLOT_INIT)
        pool->init_deaths = 0;
    if (state == SLOT_INIT && first)
        fipc_sem_release(pool->init_sem); /* no initializer: it had nothing to fail */
    if (state != SLOT_RETIRED && state != SLOT_INIT)
        put_message(pool, MSG_DEATH, word, -ECHILD, FIPC_FOREVER);
    pthread_mutex_lock(&pool->lock);
    bool replace = !pool->broken && !pool->terminating;
    pthread_mutex_unlock(&pool->lock);
    if (replace) {
        int r = start_worker(pool, i);
        if (r < 0)
            set_broken(pool, r);
    }
}

static void *watcher_main(void *arg)
{
    fipc_pool *pool = arg;
    unsigned n = pool->nproc;
    struct pollfd *pfd = pool->pfd;
    for (unsigned i = 0; i < n; i++) {
        int r = start_worker(pool, i);
        if (r < 0) {
            pool->slots[i].init_err = r;
            slot_set(&pool->slots[i], 0, SLOT_INIT_FAILED);
            pool->first[i] = false;
            fipc_sem_release(pool->init_sem);
        }
    }
    /* create returns after this: fipc_pool_pids then lists every worker. */
    pthread_mutex_lock(&pool->lock);
    pool->started = true;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->lock);
    bool killed = false;
    int status = -ECHILD;
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        bool terminating = pool->terminating;
        int broken = pool->broken;
        pthread_mutex_unlock(&pool->lock);
        if (terminating && !killed) {
            for (unsigned i = 0; i < n; i++)
                if (pool->procs[i])
                    fipc_process_kill(pool->procs[i]);
            killed = true;
        }
        if (pool->live == 0) {
            status = terminating ? -ECANCELED : broken ? broken : -ECHILD;
            break;
        }
        pfd[0] = (struct pollfd){.fd = pool->wake_fd, .events = POLLIN};
        for (unsigned i = 0; i < n; i++)
            pfd[i + 1] = (struct pollfd){.fd = pool->pidfds[i], .events = POLLIN};
        /* Woken by a worker's end (its pidfd turns readable) or by
         * terminate (the eventfd); EINTR: look again. */
        if (poll(pfd, n + 1, -1) <= 0)
            continue;
        if (pfd[0].revents) {
            uint64_t v;
            ssize_t ignored = read(pool->wake_fd, &v, sizeof v);
            (void)ignored;
        }
        for (unsigned i = 0; i < n; i++)
            if (pfd[i + 1].fd >= 0 && pfd[i + 1].revents)
                worker_ended(pool, i, terminating);
    }
    put_message(pool, MSG_STOP, 0, status, FIPC_FOREVER);
    return NULL;
}

/* ---------------------------------------------------------------- */
/* Records and the in-flight window (under lock)                      */
/* ---------------------------------------------------------------- */

static void destroy_pool(fipc_pool *pool);

static void record_release_memory(fipc_result *r)
{
    if (r->args != r->inline_arg)
        free(r->args);
    if (r->out_owned)
        free(r->out);
    free(r);
}

/* Free r if nothing refers to it any more; true if the pool must then be
 * destroyed (the caller does that after unlocking). */
static bool record_maybe_free(fipc_pool *pool, fipc_result *r)
{
    if (!r->released || !r->ready || r->in_backlog || r->finished < r->queued)
        return false;
    record_release_memory(r);
    return --pool->refs == 0;
}

static void resolve(fipc_pool *pool, fipc_result *r, int status, fipc_result ***tail)
{
    (void)pool;
    r->status = status;
    r->resolved = true;
    r->cnext = NULL;
    **tail = r;
    *tail = &r->cnext;
}

static void window_advance(fipc_pool *pool)
{
    while (pool->lo_seq < pool->next_seq && !pool->ring[pool->lo_seq & pool->ring_mask].live)
        pool->lo_seq++;
}

/*
 * Queue what the backlog holds while there is room; close the task queue
 * once closed and nothing is left to queue.  Submitters put with timeout
 * 0 and never wait.  But a worker killed inside get between its claim and
 * its release leaves its ring slot claimed, and only a producer that
 * waits repairs such a slot (docs/queue.md): so the collector (may_wait),
 * when a put fails while the queue holds fewer messages than its
 * capacity (a claim is in the way, not a full queue), waits up to
 * FEED_REPAIR_NS, which passes a dead claim.  A stalled backlog makes the
 * collector tick, so that it retries even when no result comes.
 */
static void feed(fipc_pool *pool, bool may_wait)
{
    fipc_result *r;
    pool->feed_stalled = false;
    while ((r = pool->backlog)) {
        if (r->resolved || r->queued == r->nchunks) {
            pool->backlog = r->next;
            if (!pool->backlog)
                pool->backlog_tail = NULL;
            r->in_backlog = false;
            /* Its last reference may have been this one (never the
             * pool's last: the handle holds one while anyone feeds). */
            record_maybe_free(pool, r);
            continue;
        }
        if (pool->next_seq - pool->lo_seq > pool->ring_mask)
            break;
        size_t c = r->queued;
        size_t first = c * r->chunksize;
        size_t count = r->n - first < r->chunksize ? r->n - first : r->chunksize;
        struct task_hdr *t = (struct task_hdr *)pool->scratch;
        t->seq = pool->next_seq;
        t->fn = (uint64_t)(uintptr_t)r->fn;
        t->count = (uint32_t)count;
        t->arg_size = (uint32_t)r->arg_size;
        t->result_size = r->is_map ? r->result_size : pool->opts.max_result;
        size_t len = count * r->arg_size;
        if (len)
            memcpy(pool->scratch + sizeof *t, r->args + first * r->arg_size, len);
        int64_t timeout = 0;
        if (may_wait && fipc_queue_qsize(pool->tasks) < fipc_queue_capacity(pool->tasks))
            timeout = FEED_REPAIR_NS;
        int e = fipc_queue_put(pool->tasks, pool->scratch, sizeof *t + len, timeout);
        if (e < 0) {
            /* Full: the collector feeds again as results come, or at its
             * tick; -EPIPE: terminated. */
            pool->feed_stalled = e != -EPIPE;
            break;
        }
        pool->ring[pool->next_seq & pool->ring_mask] = (struct inflight){
            .seq = pool->next_seq, .r = r, .chunk = c, .live = true};
        pool->next_seq++;
        r->queued++;
    }
    if (pool->closed && !pool->backlog && !pool->tasks_closed) {
        fipc_queue_close(pool->tasks);
        pool->tasks_closed = true;
    }
}

/* Task seq's fate is known; the inflight entry, or NULL if it had been
 * settled before (a result after the sweep failed it, say). */
static struct inflight *settle_task(fipc_pool *pool, uint64_t seq)
{
    struct inflight *e = &pool->ring[seq & pool->ring_mask];
    if (!e->live || e->seq != seq || seq >= pool->next_seq)
        return NULL;
    e->live = false;
    e->r->finished++;
    window_advance(pool);
    return e;
}

/* After settle_task: a record resolved and made ready before may have
 * waited only for this chunk.  Never the pool's last reference: the
 * handle holds one while the collector runs. */
static void settled(fipc_pool *pool, fipc_result *r)
{
    if (r->ready)
        record_maybe_free(pool, r);
}

static void fail_task(fipc_pool *pool, uint64_t seq, int status, fipc_result ***tail)
{
    struct inflight *e = settle_task(pool, seq);
    if (!e)
        return;
    if (!e->r->resolved)
        resolve(pool, e->r, status, tail);
    else
        settled(pool, e->r);
}

static bool slot_holds(const fipc_pool *pool, uint64_t seq)
{
    for (unsigned i = 0; i < pool->nproc; i++) {
        /* Acquire pairs with the worker's slot_set: seeing DONE(s) or a
         * later word means the put of the result of s is visible too. */
        uint64_t w = load_acquire(&pool->slots[i].word);
        unsigned st = SLOT_STATE(w);
        if ((st == SLOT_RUNNING || st == SLOT_DONE) && SLOT_SEQ(w) == seq)
            return true;
    }
    return false;
}

/*
 * A worker that died in SLOT_IDLE or SLOT_DONE may have taken a task in
 * the get it died in: the MPMC queue then loses it (docs/queue.md).  Such
 * a task is a candidate: the queue has handed it out (its seq is below
 * next_seq - qsize, the tasks queue's consumers having claimed everything
 * before it, in order), no result settled it, and no worker's slot holds
 * it.  A live worker is a candidate's holder only between its get
 * returning and its slot_set, or while its result is in the results queue
 * behind the collector; so when there are no more candidates than
 * suspects, a candidate that stays one for SWEEP_GRACE_NS while the
 * results queue is empty was lost, and fails with -ECHILD.  No candidate
 * at all means no task is lost now (a lost one stays a candidate): the
 * suspects are cleared.
 */
static void sweep(fipc_pool *pool, fipc_result ***tail)
{
    if (pool->suspects == 0)
        return;
    size_t queued = fipc_queue_qsize(pool->tasks);
    uint64_t handed = pool->next_seq - (queued < pool->next_seq ? queued : pool->next_seq);
    unsigned n = 0;
    for (uint64_t s = pool->lo_seq; s < handed; s++) {
        struct inflight *e = &pool->ring[s & pool->ring_mask];
        if (e->live && !slot_holds(pool, s))
            n++;
        else
            e->suspect_since = 0;
    }
    if (n == 0) {
        pool->suspects = 0;
        return;
    }
    if (n > pool->suspects)
        return;
    int64_t now = fipc_now_ns();
    bool quiet = fipc_queue_qsize(pool->results) == 0;
    for (uint64_t s = pool->lo_seq; s < handed && pool->suspects > 0; s++) {
        struct inflight *e = &pool->ring[s & pool->ring_mask];
        if (!e->live || slot_holds(pool, s))
            continue;
        if (e->suspect_since == 0) {
            e->suspect_since = now;
        } else if (quiet && now - e->suspect_since >= SWEEP_GRACE_NS) {
            pool->suspects--;
            fail_task(pool, s, -ECHILD, tail);
        }
    }
}

/* ---------------------------------------------------------------- */
/* The collector                                                       */
/* ---------------------------------------------------------------- */

static void take_result(fipc_pool *pool, const struct result_hdr *m, const unsigned char *data,
                        size_t len, fipc_result ***tail)
{
    struct inflight *e = settle_task(pool, m->seq);
    if (!e)
        return;
    fipc_result *r = e->r;
    if (r->resolved) {
        settled(pool, r); /* a map that failed in another chunk */
        return;
    }
    if (m->status != 0 || m->len > len) {
        resolve(pool, r, m->status != 0 ? m->status : -EPROTO, tail);
        return;
    }
    if (r->is_map) {
        size_t first = e->chunk * r->chunksize;
        size_t count = r->n - first < r->chunksize ? r->n - first : r->chunksize;
        if (m->len != count * r->result_size) {
            resolve(pool, r, -EPROTO, tail);
            return;
        }
        /* Under the lock: fipc_result_free stops these writes. */
        if (!r->released)
            memcpy(r->out + first * r->result_size, data, m->len);
        if (++r->ok == r->nchunks)
            resolve(pool, r, 0, tail);
        return;
    }
    if (m->len > pool->opts.max_result) {
        resolve(pool, r, -EPROTO, tail);
        return;
    }
    r->out = m->len <= RECORD_INLINE ? r->inline_out : malloc(m->len);
    if (!r->out) {
        resolve(pool, r, -ENOMEM, tail);
        return;
    }
    r->out_owned = r->out != r->inline_out;
    memcpy(r->out, data, m->len);
    r->out_len = m->len;
    resolve(pool, r, 0, tail);
}

/* Fail everything not resolved yet: no worker is left. */
static void stop_all(fipc_pool *pool, int status, fipc_result ***tail)
{
    for (uint64_t s = pool->lo_seq; s < pool->next_seq; s++)
        if (pool->ring[s & pool->ring_mask].live)
            fail_task(pool, s, status, tail);
    /* Nothing is queued any more: the backlog lets go of its records. */
    while (pool->backlog) {
        fipc_result *r = pool->backlog;
        pool->backlog = r->next;
        r->in_backlog = false;
        if (!r->resolved)
            resolve(pool, r, status, tail);
        else
            settled(pool, r);
    }
    pool->backlog_tail = NULL;
    pool->stopped = true;
}

/* Run the callbacks of the completed records, in order, then make them
 * ready.  Called without the lock. */
static void run_callbacks(fipc_pool *pool, fipc_result *list)
{
    if (!list)
        return;
    /* A record is made ready after its callback, in the same order; the
     * records of one batch are made ready together, under one lock.  The
     * list is the collector's until then: nobody else touches cnext. */
    for (fipc_result *r = list; r; r = r->cnext) {
        if (r->status == 0 && r->cb)
            r->cb(r->user, 0, r->is_map ? NULL : r->out,
                  r->is_map ? r->n * r->result_size : r->out_len);
        else if (r->status != 0 && r->err_cb)
            r->err_cb(r->user, r->status, NULL, 0);
    }
    pthread_mutex_lock(&pool->lock);
    while (list) {
        fipc_result *r = list;
        list = r->cnext;
        r->ready = true;
        /* Never the pool's last reference: the handle holds one while the
         * collector runs. */
        record_maybe_free(pool, r);
    }
    pthread_cond_broadcast(&pool->cv); /* wakes the waiters of get/wait */
    pthread_mutex_unlock(&pool->lock);
}

static void *collector_main(void *arg)
{
    fipc_pool *pool = arg;
    size_t stride = pool->result_item;
    size_t lens[COLLECT_BATCH];
    bool stop = false;
    while (!stop) {
        pthread_mutex_lock(&pool->lock);
        int64_t timeout = pool->suspects || pool->feed_stalled ? SWEEP_TICK_NS : FIPC_FOREVER;
        pthread_mutex_unlock(&pool->lock);
        /* Woken by a result, a DEATH or the STOP (the watcher sends one
         * before it ends); the tick only while a suspect is swept for. */
        int k = fipc_queue_get_many(pool->results, pool->collect_buf, stride, lens, COLLECT_BATCH,
                                    timeout);
        fipc_result *done = NULL, **tail = &done;
        pthread_mutex_lock(&pool->lock);
        for (int j = 0; j < k; j++) {
            const unsigned char *msg = pool->collect_buf + (size_t)j * stride;
            const struct result_hdr *m = (const struct result_hdr *)msg;
            if (lens[j] < sizeof *m)
                continue;
            if (m->kind == MSG_RESULT) {
                take_result(pool, m, msg + sizeof *m, lens[j] - sizeof *m, &tail);
            } else if (m->kind == MSG_DEATH) {
                if (SLOT_STATE(m->seq) == SLOT_RUNNING)
                    fail_task(pool, SLOT_SEQ(m->seq), -ECHILD, &tail);
                else
                    pool->suspects++;
            } else if (m->kind == MSG_STOP) {
                stop_all(pool, m->status, &tail);
                stop = true;
            }
        }
        sweep(pool, &tail);
        feed(pool, true);
        pthread_mutex_unlock(&pool->lock);
        run_callbacks(pool, done);
    }
    return NULL;
}

/* ---------------------------------------------------------------- */
/* Creating and ending                                                 */
/* ---------------------------------------------------------------- */

static void destroy_pool(fipc_pool *pool)
{
    if (pool->wake_fd >= 0)
        close(pool->wake_fd);
    if (pool->arena)
        fipc_arena_close(pool->arena);
    free(pool->ring);
    free(pool->scratch);
    free(pool->collect_buf);
    free(pool->worker_buf);
    free(pool->procs);
    free(pool->pidfds);
    free(pool->pids);
    free(pool->first);
    free(pool->wargs);
    free(pool->pfd);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

/* The parent's side: everything but the threads. */
static int pool_alloc(fipc_pool **out, const fipc_pool_opts *opts)
{
    fipc_pool_opts o = opts ? *opts : (fipc_pool_opts){0};
    if (o.processes == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        o.processes = cpus > 0 ? (unsigned)cpus : 1;
    }
    if (o.max_arg == 0)
        o.max_arg = FIPC_POOL_MAX_ARG_DEFAULT;
    if (o.max_result == 0)
        o.max_result = FIPC_POOL_MAX_RESULT_DEFAULT;
    if (o.processes > 1024 || o.max_arg > FIPC_QUEUE_ITEM_MAX - sizeof(struct task_hdr) ||
        o.max_result > FIPC_QUEUE_ITEM_MAX - sizeof(struct result_hdr))
        return -EINVAL;

    fipc_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return -ENOMEM;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* as every fipc timeout */
    pthread_cond_init(&pool->cv, &ca);
    pthread_condattr_destroy(&ca);
    pool->wake_fd = -1;
    pool->refs = 1;
    pool->opts = o;
    unsigned n = pool->nproc = o.processes;
    pool->task_item = sizeof(struct task_hdr) + o.max_arg;
    pool->result_item = sizeof(struct result_hdr) + o.max_result;
    size_t cap = 4 * (size_t)n < 64 ? 64 : 4 * (size_t)n;
    /* Results get room for at least 256: the collector shares the CPUs
     * with the submitter, and a worker that finds the results queue full
     * spins there, taking the CPU the collector needs to empty it
     * (docs/pool.md, Performance). */
    size_t rcap = cap < 256 ? 256 : cap;
    size_t ring = pow2_at_least(4 * (cap + rcap + n));
    pool->ring_mask = (ring < 4096 ? 4096 : ring) - 1;

    pool->ring = calloc(pool->ring_mask + 1, sizeof *pool->ring);
    pool->scratch = malloc(pool->task_item);
    pool->collect_buf = malloc(COLLECT_BATCH * pool->result_item);
    pool->worker_buf = malloc(RESULT_OFFSET(pool) + pool->result_item);
    pool->procs = calloc(n, sizeof *pool->procs);
    pool->pidfds = malloc(n * sizeof *pool->pidfds);
    pool->pids = calloc(n, sizeof *pool->pids);
    pool->first = malloc(n * sizeof *pool->first);
    pool->wargs = calloc(n, sizeof *pool->wargs);
    pool->pfd = calloc(n + 1, sizeof *pool->pfd);
    int r = -ENOMEM;
    if (!pool->ring || !pool->scratch || !pool->collect_buf || !pool->worker_buf || !pool->procs ||
        !pool->pidfds || !pool->pids || !pool->first || !pool->wargs || !pool->pfd)
        goto fail;
    for (unsigned i = 0; i < n; i++) {
        pool->pidfds[i] = -1;
        pool->first[i] = true;
    }
    pool->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (pool->wake_fd < 0) {
        r = -errno;
        goto fail;
    }
    /* Each slot of a queue holds one message, rounded up to 8, and a word;
     * the rest is the queues' control blocks, the slots, the semaphore. */
    size_t bytes = 2 * (pow2_at_least(cap) * (pool->task_item + 64) +
                        pow2_at_least(rcap) * (pool->result_item + 64)) +
                   n * sizeof(struct worker_slot) + ((size_t)1 << 20);
    r = fipc_arena_create(&pool->arena, "fipc-pool", bytes);
    if (r < 0)
        goto fail;
    r = fipc_queue_create(&pool->tasks, pool->arena, cap, pool->task_item, 0);
    if (r == 0)
        r = fipc_queue_create(&pool->results, pool->arena, rcap, pool->result_item, 0);
    pool->init_sem = fipc_sem_new(pool->arena, 0);
    pool->lead = fipc_lock_new(pool->arena);
    pool->slots = fipc_arena_alloc(pool->arena, n * sizeof(struct worker_slot), 64);
    if (r == 0 && (!pool->init_sem || !pool->lead || !pool->slots))
        r = -ENOMEM;
    if (r < 0)
        goto fail;
    *out = pool;
    return 0;
fail:
    destroy_pool(pool);
    return r;
}

/* Wait for the watcher and the collector to end (the collector ends at
 * the watcher's STOP, which comes once no worker is left). */
static void join_threads(fipc_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    while (pool->joining && !pool->joined)
        pthread_cond_wait(&pool->cv, &pool->lock); /* the first joiner broadcasts */
    if (pool->joined) {
        pthread_mutex_unlock(&pool->lock);
        return;
    }
    pool->joining = true;
    pthread_mutex_unlock(&pool->lock);
    pthread_join(pool->watcher, NULL);
    pthread_join(pool->collector, NULL);
    pthread_mutex_lock(&pool->lock);
    pool->joined = true;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->lock);
}

static void begin_terminate(fipc_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    bool first = !pool->terminating;
    pool->terminating = pool->closed = true;
    pthread_mutex_unlock(&pool->lock);
    if (!first)
        return;
    /* Workers asleep in get leave; the watcher kills the others. */
    fipc_queue_close(pool->tasks);
    uint64_t one = 1;
    ssize_t ignored = write(pool->wake_fd, &one, sizeof one);
    (void)ignored;
}

int fipc_pool_create(fipc_pool **out, const fipc_pool_opts *opts)
{
    if (!out)
        return -EINVAL;
    fipc_pool *pool = NULL;
    int r = pool_alloc(&pool, opts);
    if (r < 0)
        return r;
    /* The threads start with every signal blocked: a signal the program
     * handles is for its own threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pool->worker_mask = old;
    r = -pthread_create(&pool->watcher, NULL, watcher_main, pool);
    if (r == 0) {
        r = -pthread_create(&pool->collector, NULL, collector_main, pool);
        if (r < 0) {
            /* The watcher's STOP then has nobody to read it: make room. */
            begin_terminate(pool);
            pthread_join(pool->watcher, NULL);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0) {
        destroy_pool(pool);
        return r;
    }
    /* Every first worker, or the watcher for it, releases once. */
    for (unsigned i = 0; i < pool->nproc; i++)
        fipc_sem_acquire(pool->init_sem, FIPC_FOREVER);
    pthread_mutex_lock(&pool->lock);
    while (!pool->started)
        pthread_cond_wait(&pool->cv, &pool->lock); /* the watcher broadcasts */
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->nproc && r == 0; i++) {
        /* Acquire pairs with the release in slot_set, before the sem. */
        if (SLOT_STATE(load_acquire(&pool->slots[i].word)) == SLOT_INIT_FAILED)
            r = pool->slots[i].init_err;
    }
    if (r < 0) {
        begin_terminate(pool);
        join_threads(pool);
        destroy_pool(pool);
        return r;
    }
    *out = pool;
    return 0;
}

int fipc_pool_close(fipc_pool *pool)
{
    if (!pool)
        return -EINVAL;
    pthread_mutex_lock(&pool->lock);
    pool->closed = true;
    feed(pool, false); /* closes the task queue if the backlog is empty */
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

int fipc_pool_terminate(fipc_pool *pool)
{
    if (!pool)
        return -EINVAL;
    if (on_collector(pool))
        return -EDEADLK;
    begin_terminate(pool);
    join_threads(pool);
    return 0;
}

int fipc_pool_join(fipc_pool *pool)
{
    if (!pool)
        return -EINVAL;
    pthread_mutex_lock(&pool->lock);
    bool closed = pool->closed;
    pthread_mutex_unlock(&pool->lock);
    if (!closed)
        return -EINVAL;
    if (on_collector(pool))
        return -EDEADLK;
    join_threads(pool);
    return 0;
}

void fipc_pool_free(fipc_pool *pool)
{
    if (!pool || on_collector(pool))
        return;
    pthread_mutex_lock(&pool->lock);
    bool joined = pool->joined;
    pthread_mutex_unlock(&pool->lock);
    if (!joined)
        fipc_pool_terminate(pool);
    pthread_mutex_lock(&pool->lock);
    bool destroy = --pool->refs == 0;
    pthread_mutex_unlock(&pool->lock);
    if (destroy)
        destroy_pool(pool);
}

unsigned fipc_pool_processes(const fipc_pool *pool)
{
    return pool ? pool->nproc : 0;
}

size_t fipc_pool_pids(fipc_pool *pool, int *pids, size_t n)
{
    if (!pool || !pids)
        return 0;
    size_t k = 0;
    for (unsigned i = 0; i < pool->nproc && k < n; i++) {
        /* Relaxed: a snapshot; the watcher changes it as workers come and go. */
        int pid = load_relaxed(&pool->pids[i]);
        if (pid > 0)
            pids[k++] = pid;
    }
    return k;
}

/* ---------------------------------------------------------------- */
/* Submitting                                                          */
/* ---------------------------------------------------------------- */

static int submit(fipc_pool *pool, fipc_result *r, fipc_result **out)
{
    pthread_mutex_lock(&pool->lock);
    int err = pool->closed ? -EPIPE : pool->stopped ? pool->broken : 0;
    if (err == 0) {
        pool->refs++;
        r->pool = pool;
        r->released = out == NULL;
        r->in_backlog = true;
        if (pool->backlog_tail)
            pool->backlog_tail->next = r;
        else
            pool->backlog = r;
        pool->backlog_tail = r;
        bool stalled = pool->feed_stalled;
        feed(pool, false);
        /* A backlog that just stalled: the collector may be asleep with no
         * result to come (the slot in the way is a dead claim); wake it.
         * Timeout 0: a full results queue means it is awake anyway. */
        if (pool->feed_stalled && !stalled)
            put_message(pool, MSG_NUDGE, 0, 0, 0);
        if (out)
            *out = r;
    }
    pthread_mutex_unlock(&pool->lock);
    if (err)
        record_release_memory(r);
    return err;
}

int fipc_pool_apply_async(fipc_pool *pool, fipc_task_fn fn, const void *arg, size_t arg_len,
                          fipc_callback cb, fipc_callback err_cb, void *user, fipc_result **out)
{
    if (!pool || !fn || (!arg && arg_len > 0))
        return -EINVAL;
    if (arg_len > pool->opts.max_arg)
        return -EMSGSIZE;
    fipc_result *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->args = arg_len <= RECORD_INLINE ? r->inline_arg : malloc(arg_len);
    if (!r->args) {
        free(r);
        return -ENOMEM;
    }
    if (arg_len)
        memcpy(r->args, arg, arg_len);
    r->fn = fn;
    r->cb = cb;
    r->err_cb = err_cb;
    r->user = user;
    r->arg_size = arg_len;
    r->n = r->chunksize = r->nchunks = 1;
    return submit(pool, r, out);
}

int fipc_pool_map_async(fipc_pool *pool, fipc_task_fn fn, const void *args, size_t n,
                        size_t arg_size, void *results, size_t result_size, size_t chunksize,
                        fipc_callback cb, fipc_callback err_cb, void *user, fipc_result **out)
{
    if (!pool || !fn || !args || !results || arg_size == 0 || result_size == 0)
        return -EINVAL;
    if (arg_size > pool->opts.max_arg || result_size > pool->opts.max_result)
        return -EMSGSIZE;
    if (n > SIZE_MAX / arg_size || n > SIZE_MAX / result_size)
        return -EINVAL;
    if (chunksize == 0 && n > 0) {
        /* Python: chunksize, extra = divmod(len, 4 * processes); +1 if extra. */
        size_t d = 4 * (size_t)pool->nproc;
        chunksize = n / d + (n % d != 0);
    }
    size_t limit = pool->opts.max_arg / arg_size;
    if (pool->opts.max_result / result_size < limit)
        limit = pool->opts.max_result / result_size;
    if (limit > UINT32_MAX)
        limit = UINT32_MAX;
    if (chunksize > limit)
        chunksize = limit;
    fipc_result *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->args = malloc(n ? n * arg_size : 1);
    if (!r->args) {
        free(r);
        return -ENOMEM;
    }
    if (n)
        memcpy(r->args, args, n * arg_size);
    r->fn = fn;
    r->cb = cb;
    r->err_cb = err_cb;
    r->user = user;
    r->is_map = true;
    r->arg_size = arg_size;
    r->n = n;
    r->chunksize = chunksize ? chunksize : 1;
    /* n == 0 is one empty chunk: its callback still runs in the collector. */
    r->nchunks = n ? (n + r->chunksize - 1) / r->chunksize : 1;
    r->out = results;
    r->result_size = result_size;
    return submit(pool, r, out);
}

/* ---------------------------------------------------------------- */
/* Waiting                                                             */
/* ---------------------------------------------------------------- */

/* Wait until r is ready; under the lock. */
static int wait_ready(fipc_result *r, int64_t timeout_ns)
{
    fipc_pool *pool = r->pool;
    if (r->ready)
        return 0;
    if (timeout_ns == 0)
        return -EAGAIN;
    if (on_collector(pool))
        return -EDEADLK; /* only this thread can make it ready */
    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
    while (!r->ready) {
        /* Woken by run_callbacks (the record made ready); a result is
         * always made ready, at the latest by the STOP after terminate. */
        if (deadline == DEADLINE_NEVER)
            pthread_cond_wait(&pool->cv, &pool->lock);
        else if (pthread_cond_timedwait(&pool->cv, &pool->lock, &ts) == ETIMEDOUT && !r->ready)
            return -ETIMEDOUT;
    }
    return 0;
}

int fipc_result_wait(fipc_result *r, int64_t timeout_ns)
{
    if (!r)
        return -EINVAL;
    pthread_mutex_lock(&r->pool->lock);
    int err = wait_ready(r, timeout_ns);
    pthread_mutex_unlock(&r->pool->lock);
    return err;
}

int fipc_result_get(fipc_result *r, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    if (!r || (!buf && cap > 0))
        return -EINVAL;
    pthread_mutex_lock(&r->pool->lock);
    int err = wait_ready(r, timeout_ns);
    if (err == 0 && r->status != 0)
        err = r->status;
    if (err == 0) {
        size_t n = r->is_map ? r->n * r->result_size : r->out_len;
        if (!r->is_map && n > cap)
            err = -EMSGSIZE;
        else if (!r->is_map && n)
            memcpy(buf, r->out, n);
        if (err == 0 && len)
            *len = n;
    }
    pthread_mutex_unlock(&r->pool->lock);
    return err;
}

bool fipc_result_ready(fipc_result *r)
{
    if (!r)
        return false;
    pthread_mutex_lock(&r->pool->lock);
    bool ready = r->ready;
    pthread_mutex_unlock(&r->pool->lock);
    return ready;
}

bool fipc_result_successful(fipc_result *r)
{
    if (!r)
        return false;
    pthread_mutex_lock(&r->pool->lock);
    bool ok = r->ready && r->status == 0;
    pthread_mutex_unlock(&r->pool->lock);
    return ok;
}

void fipc_result_free(fipc_result *r)
{
    if (!r)
        return;
    fipc_pool *pool = r->pool;
    pthread_mutex_lock(&pool->lock);
    r->released = true; /* take_result writes no more to a map's results */
    bool destroy = record_maybe_free(pool, r);
    pthread_mutex_unlock(&pool->lock);
    if (destroy)
        destroy_pool(pool);
}

int fipc_pool_apply(fipc_pool *pool, fipc_task_fn fn, const void *arg, size_t arg_len, void *result,
                    size_t result_cap, size_t *result_len)
{
    if (!pool || !fn || (!arg && arg_len > 0) || (!result && result_cap > 0))
        return -EINVAL;
    if (on_collector(pool))
        return -EDEADLK;
    fipc_result *r;
    int err = fipc_pool_apply_async(pool, fn, arg, arg_len, NULL, NULL, NULL, &r);
    if (err < 0)
        return err;
    err = fipc_result_get(r, result, result_cap, result_len, FIPC_FOREVER);
    fipc_result_free(r);
    return err;
}

int fipc_pool_map(fipc_pool *pool, fipc_task_fn fn, const void *args, size_t n, size_t arg_size,
                  void *results, size_t result_size, size_t chunksize)
{
    if (!pool || !fn || !args || !results || arg_size == 0 || result_size == 0)
        return -EINVAL;
    if (on_collector(pool))
        return -EDEADLK;
    fipc_result *r;
    int err = fipc_pool_map_async(pool, fn, args, n, arg_size, results, result_size, chunksize,
                                  NULL, NULL, NULL, &r);
    if (err < 0)
        return err;
    err = fipc_result_get(r, NULL, 0, NULL, FIPC_FOREVER);
    fipc_result_free(r);
    return err;
}
