/*
 * jqueue.c - Python's JoinableQueue: a queue plus a count of unfinished
 * items.
 *
 * Model: docs/models/jqueue.pml
 *
 * The unfinished count is puts - done, where puts is the sum of the
 * producers' tallies: each MPMC producer counts in its claimer record of the
 * queue (queue_impl.h, struct claimer: tally), and an SPSC producer, or an
 * MPMC thread that got no record, in prod.puts here.  A producer's count is
 * thus a word that only it writes, which is what makes a death harmless: a
 * repairer that finds a producer dead between claiming slots and publishing
 * them reads from the dead one's own words whether it had counted them
 * (ring_mpmc.c for MPMC: the record's tally against its base; take_over
 * below for SPSC), and a put that never delivers counts for nothing: its
 * undelivered items are counted done.
 *
 *   field        written by      meaning
 *   prod.puts    producers       items counted without a record
 *   prod.pending SPSC producer   the put between counting and publishing
 *   done         consumers       items ever marked done (task_done)
 *   puts_seen    consumers       a recent value of puts
 *   joiners      joiners         epoch (the futex), how many wait, the lock
 *
 * put counts its items once it has claimed their slots and before the
 * queue's release store makes them visible (the two-phase put,
 * queue_impl.h); a consumer that takes an item (acquire) and calls
 * task_done therefore reads a puts that includes it.  task_done refuses to
 * take done past puts (-EOVERFLOW), checking against puts_seen and summing
 * the tallies only when that is not enough.
 *
 * Join.  A joiner must return once the count has been zero at some moment
 * since it registered (under the lock, below), and not before; a zero that
 * came and went before that is missed, as Python's join misses one that
 * came before it took its lock.  Summing many words is no snapshot: a
 * count that lands between a task_done and its reading of the tallies would
 * hide the zero from both.  So while joiners wait, every change to a count
 * goes through the joiners' lock, where the zero is seen exactly:
 *
 *   - the first joiner sets TALLY_LOCKED in every count word (the tallies,
 *     prod.puts, done) under the lock, the last one clears them;
 *   - outside the lock a count changes only by a CAS from a value without
 *     the bit, so one that races with the first joiner either lands before
 *     the bit (and the joiner's check sees it) or fails and takes the lock;
 *   - under the lock a task_done (or a takeover, which can lower puts) that
 *     brings the count to zero advances the epoch and wakes the joiners.
 *
 * A waiter outside fipc (an io_uring wait or fipc_wait_any, waitable.h)
 * cannot count itself out: it registers as JOINERS_OUTSIDE, which locks
 * the counts as a joiner does, and the wake at the next zero clears it.
 *
 * A joiner sleeps on the epoch, which only moves forward, and returns once
 * it has moved (as Python's join returns once notified), or when it finds
 * the count zero.  Outside the lock a zero is read as done, then puts:
 * every tally only grows but for a takeover, so a zero read that way was
 * true at the moment the tallies were first read.
 */
#include <fipc/jqueue.h>

#include "futex.h"
#include "jqueue_impl.h"
#include "queue_view.h"
#include "waitable.h"

/* How long a count waits for the joiners' lock, which holders keep for a
 * few instructions, before it gives up on exactness: a peer that faked the
 * lock word delays puts and task_done by this much, never forever. */
#define JLOCK_BOUND_NS FIPC_SEC(1)

struct producer {
    uint64_t puts; /* | TALLY_LOCKED */
    /* SPSC: the put that has counted and not yet published, for the
     * producer that takes over if this one dies (take_over). */
    uint64_t pending_pos;
    uint64_t pending_before; /* tally_count(puts) before it counted */
    uint32_t pending_k;      /* its messages; 0: none */
};

struct joiners {
    uint32_t epoch;   /* the futex word */
    uint32_t waiters; /* joiners registered, and JOINERS_OUTSIDE; under the lock */
    struct lock_impl lock;
};

/* A bit of waiters: someone outside fipc (io_uring, fipc_wait_any) waits
 * for the join and will not count itself out; the wake clears it.  Counts
 * are locked while it is set, as while a joiner waits. */
#define JOINERS_OUTSIDE 0x80000000u

struct fipc_jqueue {
    uint64_t queue;
    _Alignas(FIPC_CACHELINE) struct producer prod;
    _Alignas(FIPC_CACHELINE) uint64_t done; /* | TALLY_LOCKED */
    uint64_t puts_seen;
    _Alignas(FIPC_CACHELINE) struct joiners joiners;
};
static_assert(sizeof(struct fipc_jqueue) == 4 * FIPC_CACHELINE, "jqueue layout");

/* The queue follows the counters.  j->queue says so too, for readers of
 * the layout, but a peer can change it: it is never read. */
static inline fipc_queue *queue_of(const fipc_jqueue *j)
{
    return (fipc_queue *)((char *)j + sizeof *j);
}

int fipc__jqueue_footprint(size_t *size, size_t capacity, size_t max_item, unsigned flags)
{
    int r = fipc__queue_footprint(size, capacity, max_item, flags);
    if (r == 0 && *size > SIZE_MAX - sizeof(fipc_jqueue))
        r = -ENOMEM;
    if (r == 0)
        *size += sizeof(fipc_jqueue);
    return r;
}

fipc_jqueue *fipc__jqueue_init(void *mem, size_t capacity, size_t max_item, unsigned flags)
{
    fipc_jqueue *j = mem;
    *j = (fipc_jqueue){.queue = sizeof *j};
    fipc__queue_init((char *)mem + sizeof *j, capacity, max_item, flags);
    return j;
}

fipc_queue *fipc_jqueue_queue(fipc_jqueue *j)
{
    return j ? queue_of(j) : NULL;
}

/* ---- the count ---------------------------------------------------------- */

/* The geometry of j's queue, if it is MPMC and has a view (its claimer
 * records, queue_impl.h); NULL else.  *n: how many records to read, the
 * first through the blocks in chain order.  acquire pairs with the release
 * in note_record (ring_mpmc.c): the records below it are all that have
 * counted.  A peer may have written it: it only bounds the loops. */
static const struct geom *records_of(const fipc_jqueue *j, uint32_t *n)
{
    const struct geom *g = fipc__queue_view(queue_of(j));
    *n = 0;
    if (!g || g->spsc)
        return NULL;
    *n = load_acquire(&queue_of(j)->records);
    return g;
}

/* Items ever counted: every record's tally (all: every record, else those
 * below q->records, which a task_done's bound needs no more than).  Each
 * word is read once (acquire: the counts that reached the caller through
 * an item's publication, or the lock, are included), and only grows.
 *
 * Under the lock the sum must be exact, so it reads every record: a count
 * in a record taken just now may be visible to the lock's holder (through
 * the relaxed CAS and set_locked's read-modify-writes of the same word)
 * before the raise of q->records is.  A record of a block linked after the
 * walk passed its link has counted nothing the caller could have seen: it
 * was taken after the walk's acquire of the link found it missing. */
static uint64_t puts_total(const fipc_jqueue *j, bool all)
{
    uint32_t n;
    const struct geom *g = records_of(j, &n);
    uint64_t t = tally_count(load_acquire(&j->prod.puts));
    if (!g)
        return t;
    uint32_t want = all ? UINT32_MAX : n;
    unsigned i = 0;
    for (struct claimer *b = claimers_of(g); b;) {
        uint32_t m = want < QUEUE_CLAIMERS ? want : QUEUE_CLAIMERS;
        for (uint32_t k = 0; k < m; k++)
            t += tally_count(load_acquire(&b[k].tally));
        want -= m;
        b = want ? claimers_next(g, b, &i) : NULL;
    }
    return t;
}

/* Items put and not yet done.  done is read first (acquire: it carries the
 * counts of the items it includes), so a zero is one that was true. */
static uint64_t unfinished(const fipc_jqueue *j)
{
    uint64_t done = tally_count(load_acquire(&j->done));
    uint64_t puts = puts_total(j, true);
    return puts > done ? puts - done : 0;
}

static void set_locked(fipc_jqueue *j, bool on);

/* Wake the joiners: the count was zero at some moment since they slept.
 * Under the lock.  Every joiner registered (each read the epoch under the
 * lock, so each waits on an epoch older than the new one) returns once it
 * sees the epoch move, without unregistering: they are all counted out
 * here, before the epoch moves, with JOINERS_OUTSIDE.  So a joiner killed
 * while registered keeps the counts locked only until the next zero. */
static void wake_joiners(fipc_jqueue *j)
{
    if (load_relaxed(&j->joiners.waiters) != 0) {
        store_relaxed(&j->joiners.waiters, 0);
        set_locked(j, false);
    }
    fetch_add_release(&j->joiners.epoch, 1);
    futex_wake(&j->joiners.epoch, FUTEX_WAKE_ALL);
}

/* Set or clear TALLY_LOCKED in every count word; under the lock.  relaxed:
 * the words' CASes are ordered against these by their modification order
 * alone, and the lock orders the rest. */
static void set_locked(fipc_jqueue *j, bool on)
{
    uint32_t n;
    const struct geom *g = records_of(j, &n);
    uint64_t *words[2] = {&j->prod.puts, &j->done};
    for (int i = 0; i < 2; i++) {
        if (on)
            fetch_or_relaxed(words[i], TALLY_LOCKED);
        else
            fetch_and_relaxed(words[i], ~TALLY_LOCKED);
    }
    if (!g)
        return;
    /* Every record, not only those counted so far: one taken later must be
     * locked too.  Under the queue's repair lock, which a thread that adds
     * a block of records holds while it copies the first record's bit into
     * the new ones (ring_mpmc.c, extend): a block is either walked here or
     * set up after this.  A peer that keeps the lock delays this by
     * JLOCK_BOUND_NS at most; then a block added meanwhile may miss the
     * bit, and a join may miss a zero. */
    struct lock_impl *repair = &queue_of(j)->repair;
    int e = fipc__lock_acquire(repair, JLOCK_BOUND_NS);
    unsigned i = 0;
    for (struct claimer *b = claimers_of(g); b; b = claimers_next(g, b, &i)) {
        for (unsigned k = 0; k < QUEUE_CLAIMERS; k++) {
            if (on)
                fetch_or_relaxed(&b[k].tally, TALLY_LOCKED);
            else
                fetch_and_relaxed(&b[k].tally, ~TALLY_LOCKED);
        }
    }
    if (e == 0 || e == -EOWNERDEAD)
        fipc__lock_release(repair);
}

/* Take the joiners' lock within bound_ns: 0 (held), or -ETIMEDOUT.  A
 * holder that died may have left the bits disagreeing with waiters, or a
 * zero unannounced: both are put right. */
static int jlock(fipc_jqueue *j, int64_t bound_ns)
{
    int r = fipc__lock_acquire(&j->joiners.lock, bound_ns);
    if (r == -EOWNERDEAD) {
        set_locked(j, load_relaxed(&j->joiners.waiters) != 0);
        if (load_relaxed(&j->joiners.waiters) != 0 && unfinished(j) == 0)
            wake_joiners(j);
        r = 0;
    }
    return r;
}

static void junlock(fipc_jqueue *j)
{
    fipc__lock_release(&j->joiners.lock);
}

/* Add k to count word w while joiners wait (w has TALLY_LOCKED): under the
 * lock, so that no task_done reads the tallies in the middle.  Raising a
 * count never makes it zero, so there is nobody to wake. */
static void add_locked(fipc_jqueue *j, uint64_t *w, uint64_t k)
{
    bool held = jlock(j, JLOCK_BOUND_NS) == 0;
    /* A CAS, for the threads without a record that share prod.puts, and
     * for a lock a peer holds (then the count is right, and a join may
     * miss a zero). */
    uint64_t old = load_relaxed(w);
    while (!cas_relaxed(w, &old, old + k))
        ;
    if (held)
        junlock(j);
}

/* Add k to count word w: by CAS from a value without TALLY_LOCKED, else
 * through the lock.  relaxed: the count reaches a task_done of these items
 * through their publication (release) and the consumer's acquire; a joiner
 * orders itself against it by the modification order of w. */
static inline void add_count(fipc_jqueue *j, uint64_t *w, uint64_t k)
{
    uint64_t old = load_relaxed(w);
    while (!(old & TALLY_LOCKED)) {
        if (cas_relaxed(w, &old, old + k))
            return;
    }
    add_locked(j, w, k);
}

static int finish(fipc_jqueue *j, uint64_t n);

/* The SPSC producer before this one died between counting a put and
 * publishing all of it: what it published stays counted, and what it did
 * not is done, as a counted tombstone is (the slots are this producer's to
 * fill again).  The count itself only grows: lowering it could take it
 * below a done that a task_done raised meanwhile.  The words read are the
 * dead producer's, final. */
static FIPC_COLD void take_over(fipc_jqueue *j, const struct geom *g)
{
    struct producer *p = &j->prod;
    uint64_t pos = load_relaxed(&p->pending_pos);
    uint64_t before = load_relaxed(&p->pending_before);
    uint64_t k = load_relaxed(&p->pending_k);
    if (k > g->ring)
        k = g->ring; /* a peer wrote it */
    uint64_t published = 0;
    for (uint64_t x = pos; x < pos + k; x++)
        published += load_acquire(&slot_at(g, x)->seq) != turn(x);
    store_relaxed(&p->pending_k, 0);
    /* Counted (the dead producer's count moved past before): finish the
     * rest.  -EOVERFLOW if task_done calls already made up for them. */
    if (tally_count(load_relaxed(&p->puts)) == before + k && published < k)
        finish(j, k - published);
}

/* Count the k messages of claim c, between claiming and publishing them. */
static inline void count(fipc_jqueue *j, const struct fipc__put_claim *c)
{
    const struct geom *g = c->g;
    uint64_t k = c->claim.k;
    if (!g->spsc) {
        add_count(j, g->me ? &g->me->tally : &j->prod.puts, k);
        return;
    }
    struct producer *p = &j->prod;
    /* relaxed: this producer alone writes pending and, but for the bit,
     * puts; the one that takes over runs after it died. */
    if (FIPC_UNLIKELY(load_relaxed(&p->pending_k) != 0))
        take_over(j, g);
    store_relaxed(&p->pending_pos, c->claim.pos);
    store_relaxed(&p->pending_before, tally_count(load_relaxed(&p->puts)));
    store_relaxed(&p->pending_k, (uint32_t)k);
    add_count(j, &p->puts, k);
}

/* The put of claim c is over: published, or lost to close. */
static inline void counted(fipc_jqueue *j, const struct fipc__put_claim *c)
{
    if (c->g->spsc)
        store_relaxed(&j->prod.pending_k, 0);
}

/* Mark n items done while joiners wait: exactly, under the lock. */
static FIPC_COLD int finish_locked(fipc_jqueue *j, uint64_t n)
{
    bool held = jlock(j, JLOCK_BOUND_NS) == 0;
    uint64_t puts = puts_total(j, true);
    store_relaxed(&j->puts_seen, puts);
    uint64_t d = load_relaxed(&j->done);
    int r = 0;
    do {
        if (tally_count(d) > puts || n > puts - tally_count(d)) {
            r = -EOVERFLOW;
            break;
        }
        /* release: the work done on the items happens-before a joiner's
         * acquire load that sees the new done. */
    } while (!cas_release(&j->done, &d, d + n));
    if (r == 0 && held && load_relaxed(&j->joiners.waiters) != 0 && tally_count(d) + n == puts)
        wake_joiners(j);
    if (held)
        junlock(j);
    return r;
}

/* Mark n items done; -EOVERFLOW (and no change) if fewer are unfinished. */
static int finish(fipc_jqueue *j, uint64_t n)
{
    uint64_t d = load_relaxed(&j->done);
    uint64_t seen = load_relaxed(&j->puts_seen);
    for (;;) {
        if (FIPC_UNLIKELY(d & TALLY_LOCKED))
            return finish_locked(j, n);
        /* n > seen - d, not d + n > seen: n may be huge and d + n wrap. */
        if (seen < d || n > seen - d) {
            seen = puts_total(j, false);
            store_relaxed(&j->puts_seen, seen);
            if (seen < d || n > seen - d)
                return -EOVERFLOW;
        }
        /* release: as in finish_locked.  No joiner waits (the bit is
         * clear); one that starts later reads this done. */
        if (cas_release(&j->done, &d, d + n))
            return 0;
    }
}

/* ---- put and get ---------------------------------------------------------- */

struct put_ctx {
    fipc_jqueue *j;
    const struct iovec *items;
    size_t n;
};

/* A put that counts its items once their slots are claimed and before they
 * are published: a consumer may finish an item before put_many returns,
 * and a put still waiting for room counts for nothing. */
static FIPC_ALWAYS_INLINE int try_put(void *arg, bool patient)
{
    struct put_ctx *c = arg;
    fipc_queue *q = queue_of(c->j);
    struct fipc__put_claim claim;
    int k = queue_put_claim(q, c->items, c->n, &claim);
    if (k < 0)
        return k;
    if (!claim.claim.closed)
        count(c->j, &claim);
    int r = queue_put_commit(q, &claim, c->items);
    /* An SPSC put that lost to close after counting: no consumer will ever
     * read its messages, so they count as done. */
    if (r < 0 && !claim.claim.closed)
        finish(c->j, (uint64_t)k);
    counted(c->j, &claim);
    return r;
}

#ifdef FIPC_TEST_HOOKS
void fipc__jqueue_count(fipc_jqueue *j, const struct fipc__put_claim *c)
{
    count(j, c);
}

void fipc__jqueue_counted(fipc_jqueue *j, const struct fipc__put_claim *c, int r)
{
    if (r < 0)
        finish(j, c->claim.k);
    counted(j, c);
}

int fipc__jqueue_put_counted_only(fipc_jqueue *j, const struct iovec *items, size_t n)
{
    struct fipc__put_claim claim;
    int k = queue_put_claim(queue_of(j), items, n, &claim);
    if (k > 0 && !claim.claim.closed)
        count(j, &claim);
    return k;
}

uint32_t fipc__jqueue_joiners(const fipc_jqueue *j, bool *locked)
{
    /* relaxed: read by a test once the joiners' changes are over. */
    *locked = (load_relaxed(&j->done) & TALLY_LOCKED) != 0;
    return load_relaxed(&j->joiners.waiters);
}
#endif

int fipc_jqueue_put_many(fipc_jqueue *j, const struct iovec *items, size_t n, int64_t timeout_ns)
{
    if (!j)
        return -EINVAL;
    struct put_ctx c = {j, items, n};
    int r = try_put(&c, false);
    if (FIPC_LIKELY(r != -EAGAIN))
        return r;
    return fipc__queue_block_put(queue_of(j), try_put, &c, timeout_ns);
}

int fipc_jqueue_put(fipc_jqueue *j, const void *item, size_t len, int64_t timeout_ns)
{
    struct iovec it = {(void *)item, len};
    int r = fipc_jqueue_put_many(j, &it, 1, timeout_ns);
    return r > 0 ? 0 : r;
}

/* A get passed the slots of puts whose producers died after counting them
 * (ring.h, TOMBSTONE_COUNTED): they will never be delivered, so they are
 * done. */
static FIPC_COLD void finish_void(fipc_jqueue *j, size_t n)
{
    finish(j, n);
}

int fipc_jqueue_get(fipc_jqueue *j, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    if (!j)
        return -EINVAL;
    size_t voided = 0;
    int r = fipc__queue_get_counted(queue_of(j), buf, cap, len, timeout_ns, &voided);
    if (FIPC_UNLIKELY(voided))
        finish_void(j, voided);
    return r;
}

int fipc_jqueue_get_many(fipc_jqueue *j, void *buf, size_t stride, size_t *lens, size_t n,
                         int64_t timeout_ns)
{
    if (!j)
        return -EINVAL;
    size_t voided = 0;
    int r = fipc__queue_get_many_counted(queue_of(j), buf, stride, lens, n, timeout_ns, &voided);
    if (FIPC_UNLIKELY(voided))
        finish_void(j, voided);
    return r;
}

int fipc_jqueue_task_done(fipc_jqueue *j)
{
    return j ? finish(j, 1) : -EINVAL;
}

int fipc_jqueue_task_done_many(fipc_jqueue *j, size_t n)
{
    if (!j)
        return -EINVAL;
    return n == 0 ? 0 : finish(j, n);
}

/* ---- join --------------------------------------------------------------- */

/* Register a joiner (the first sets TALLY_LOCKED everywhere) and check:
 * 0 if the count is zero (unregistered again), -EAGAIN with the epoch to
 * sleep on, or -ETIMEDOUT (the lock, within the deadline). */
static int join_register(fipc_jqueue *j, fipc_deadline deadline, uint32_t *epoch)
{
    int64_t left = deadline == DEADLINE_NEVER ? FIPC_FOREVER : deadline - fipc_now_ns();
    if (deadline != DEADLINE_NEVER && left <= 0)
        return -ETIMEDOUT;
    if (jlock(j, left) < 0)
        return -ETIMEDOUT;
    uint32_t w = load_relaxed(&j->joiners.waiters);
    store_relaxed(&j->joiners.waiters, w + 1);
    if (w == 0) /* neither joiners nor JOINERS_OUTSIDE */
        set_locked(j, true);
    /* Under the lock with every count locked, the zero is exact. */
    int r = -EAGAIN;
    if (unfinished(j) == 0) {
        store_relaxed(&j->joiners.waiters, w);
        if (w == 0)
            set_locked(j, false);
        r = 0;
    }
    /* relaxed: the lock orders it; a move after this is what we wait for. */
    *epoch = load_relaxed(&j->joiners.epoch);
    junlock(j);
    return r;
}

/* A joiner that registered at epoch e leaves without having seen the
 * epoch move: it is still counted unless the epoch moved meanwhile
 * (wake_joiners counted it out). */
static void join_unregister(fipc_jqueue *j, uint32_t e)
{
    /* Bounded: a peer that holds the lock forever leaves this joiner
     * counted, which costs counts the lock, not correctness. */
    bool held = jlock(j, JLOCK_BOUND_NS) == 0;
    uint32_t w = load_relaxed(&j->joiners.waiters);
    /* relaxed: the epoch moves only under the lock. */
    if (load_relaxed(&j->joiners.epoch) == e && (w & ~JOINERS_OUTSIDE) > 0) {
        store_relaxed(&j->joiners.waiters, w - 1);
        if (w == 1)
            set_locked(j, false);
    }
    if (held)
        junlock(j);
}

int fipc_jqueue_join(fipc_jqueue *j, int64_t timeout_ns)
{
    if (!j)
        return -EINVAL;
    if (unfinished(j) == 0)
        return 0;
    if (timeout_ns == 0)
        return -EAGAIN;
    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    uint32_t e;
    int r = join_register(j, deadline, &e);
    if (r != -EAGAIN)
        return r;
    for (;;) {
        /* Woken by the task_done (or takeover) that brings the count to
         * zero under the lock (finish_locked, take_over, jlock); every
         * FUTEX_RECHECK_NS it looks again anyway. */
        int w = futex_wait_until(&j->joiners.epoch, e, deadline);
        /* acquire pairs with the release in wake_joiners, which counted
         * this joiner out. */
        if (load_acquire(&j->joiners.epoch) != e)
            return 0;
        /* A task_done killed between its change and its wake leaves the
         * epoch where it was: the zero, read as unfinished reads it, is
         * one that was true. */
        if (unfinished(j) == 0) {
            r = 0;
            break;
        }
        if (w == -ETIMEDOUT) {
            r = -ETIMEDOUT;
            break;
        }
    }
    join_unregister(j, e);
    return r;
}

size_t fipc_jqueue_unfinished(const fipc_jqueue *j)
{
    return j ? (size_t)unfinished(j) : 0;
}

size_t fipc_jqueue_qsize(const fipc_jqueue *j)
{
    return j ? fipc_queue_qsize(queue_of(j)) : 0;
}

bool fipc_jqueue_empty(const fipc_jqueue *j)
{
    return j && fipc_queue_empty(queue_of(j));
}

bool fipc_jqueue_full(const fipc_jqueue *j)
{
    return j && fipc_queue_full(queue_of(j));
}

size_t fipc_jqueue_capacity(const fipc_jqueue *j)
{
    return j ? fipc_queue_capacity(queue_of(j)) : 0;
}

size_t fipc_jqueue_max_item(const fipc_jqueue *j)
{
    return j ? fipc_queue_max_item(queue_of(j)) : 0;
}

int fipc_jqueue_set_wait_mode(fipc_jqueue *j, enum fipc_wait_mode mode)
{
    return j ? fipc_queue_set_wait_mode(queue_of(j), mode) : -EINVAL;
}

int fipc_jqueue_close(fipc_jqueue *j)
{
    return j ? fipc_queue_close(queue_of(j)) : -EINVAL;
}

bool fipc_jqueue_closed(const fipc_jqueue *j)
{
    return j && fipc_queue_closed(queue_of(j));
}

/* ---- waiting from outside fipc (waitable.h) ------------------------------ */

/* Register a joiner that the next wake_joiners counts out and wakes, or
 * answer 1 if the count is zero: join_register with JOINERS_OUTSIDE in
 * place of the count, under the lock. */
static int arm_join(fipc_jqueue *j, struct fipc__arm *a)
{
    if (jlock(j, JLOCK_BOUND_NS) < 0)
        return -EPROTO; /* a lock no holder lets go of within the bound */
    uint32_t w = load_relaxed(&j->joiners.waiters);
    if (w == 0)
        set_locked(j, true);
    store_relaxed(&j->joiners.waiters, w | JOINERS_OUTSIDE);
    int r = 0;
    if (unfinished(j) == 0) {
        store_relaxed(&j->joiners.waiters, w);
        if (w == 0)
            set_locked(j, false);
        r = 1;
    }
    /* relaxed: the lock orders it against the wake's increment. */
    a->word = &j->joiners.epoch;
    a->value = load_relaxed(&j->joiners.epoch);
    junlock(j);
    return r;
}

int fipc__jqueue_arm(fipc_jqueue *j, unsigned what, struct fipc__arm *w)
{
    if (!j)
        return -EINVAL;
    if (what == FIPC_JOINED)
        return arm_join(j, w);
    if (what == (FIPC_JOINED | FIPC__ARM_PEEK))
        return unfinished(j) == 0;
    return fipc__queue_arm(queue_of(j), what, w);
}
