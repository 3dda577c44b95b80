/*
 * jqueue.c - Python's JoinableQueue: a queue plus a count of unfinished
 * items.
 *
 * Model: docs/models/jqueue.pml
 *
 *   field        written by   meaning
 *   queue        create       offset of the fipc_queue from this struct
 *   puts         producers    items ever counted by put
 *   done         consumers    items ever marked done (task_done)
 *   puts_seen    consumers    a recent value of puts (never above it)
 *   joiners      joiners      epoch, advanced by the task_done that brings
 *                             done up to puts, and the joiners asleep
 *
 * The unfinished count is puts - done.  It is split in two so that in 1:1
 * use each side writes only its own cache line: one shared counter that
 * both sides modify per item costs two line transfers per item, which was
 * about three times the price of the queue operations themselves.
 *
 * put raises puts once it has claimed its slots and before the queue's
 * release store makes the items visible (the queue's two-phase put,
 * queue_impl.h: claim, count, commit); the consumer that takes an
 * item (acquire) and calls task_done therefore acts on a puts that already
 * includes it.  task_done refuses to take done past puts (-EOVERFLOW); it
 * checks against puts_seen and reloads puts only when that is not enough,
 * which in steady use is rare.
 *
 * Joiners sleep on the epoch, not on the counts: a count that goes
 * 5 -> 0 -> 5 between a joiner's check and its sleep would otherwise be
 * missed (ABA); the epoch only ever moves forward, and a joiner returns once
 * it has moved, as Python's join returns once notified.  No lost wake-up:
 *
 *   joiner                                  task_done
 *   e = epoch           (relaxed)           CAS done -> d      (seq_cst)
 *   waiters += 1        (seq_cst)           if waiters != 0    (seq_cst)
 *   fence               (seq_cst)              and puts == d:
 *   while puts - done != 0 and epoch == e:      epoch += 1; futex_wake(all)
 *       futex_wait(epoch, e, deadline)
 *   waiters -= 1
 *
 * Either the joiner's re-check sees done == puts, or task_done sees the
 * joiner.  A put that lands between task_done's CAS and its load of puts
 * hides the zero from task_done; the put then sees done == its old puts and
 * wakes the joiners itself (count).  A joiner that reads done (acquire)
 * also sees every puts increment that preceded those items' publication,
 * so puts - done never reads negative.
 */
#include <fipc/jqueue.h>

#include "jqueue_impl.h"
#include "queue_impl.h"
#include "waitable.h"

/* Joiners count themselves (futex.h, the counted wait): they are woken only
 * when the count reaches zero, so there is no stream of notifications to
 * keep cheap, as there is for the queue's event counts. */
struct joiners {
    uint32_t epoch;   /* the futex word */
    uint32_t waiters; /* joiners in the slow path of join, and: */
};

/* A bit of waiters: someone outside fipc (io_uring, fipc_wait_any) waits
 * for the join and will not count itself out; the waker clears it. */
#define JOINERS_OUTSIDE 0x80000000u

static void clear_outside(fipc_jqueue *j);

struct fipc_jqueue {
    uint64_t queue;
    _Alignas(FIPC_CACHELINE) uint64_t puts;
    _Alignas(FIPC_CACHELINE) uint64_t done;
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

/* Items put and not yet done.  done is read first (acquire: it carries the
 * puts increments of the items it counts), so the difference is never
 * negative. */
static inline uint64_t unfinished(const fipc_jqueue *j)
{
    uint64_t done = load_acquire(&j->done);
    return load_acquire(&j->puts) - done;
}

/* Wake the joiners: the count was zero at some moment since they slept.
 * The flag of the joiners outside fipc (JOINERS_OUTSIDE) is cleared before
 * the epoch moves, as the event count's flag is (eventcount.h, A-E). */
static void wake_joiners(fipc_jqueue *j)
{
    clear_outside(j);
    fetch_add_release(&j->joiners.epoch, 1);
    futex_wake(&j->joiners.epoch, FUTEX_WAKE_ALL);
}

/* Mark n items done; -EOVERFLOW (and no change) if fewer are unfinished.
 * Wakes the joiners when done catches up with puts and one sleeps. */
static int finish(fipc_jqueue *j, uint64_t n)
{
    uint64_t d = load_relaxed(&j->done);
    uint64_t seen = load_relaxed(&j->puts_seen);
    do {
        /* n > seen - d, not d + n > seen: n may be huge and d + n wrap. */
        if (n > seen - d) {
            /* relaxed: puts only grows, and any value read is a valid
             * bound; the items' publication already ordered the puts
             * increments that matter before their task_done. */
            seen = load_relaxed(&j->puts);
            store_relaxed(&j->puts_seen, seen);
            if (n > seen - d)
                return -EOVERFLOW;
        }
        /* seq_cst: a release, so the work done on the items happens-before
         * a joiner's acquire load that sees the new done; and, with the
         * seq_cst load of waiters below, task_done's half of the handshake
         * with the joiner's fence (see the top).  On x86 the locked CAS is
         * the barrier, with no separate fence. */
    } while (!cas_seqcst(&j->done, &d, d + n));

    if (FIPC_UNLIKELY(load_seqcst(&j->joiners.waiters) != 0) && load_seqcst(&j->puts) == d + n)
        wake_joiners(j);
    return 0;
}

void fipc__jqueue_count(fipc_jqueue *j, size_t n)
{
    /* seq_cst: the queue's release store that publishes the items orders
     * this before any consumer's task_done for them; and this increment
     * with the loads below is put's half of a handshake with finish.  If
     * done had caught up with puts just before this put (a moment at which
     * the count was zero), finish may have read puts after this increment
     * and not woken the joiners; then this put sees done == old puts and
     * wakes them, as Python's task_done would have. */
    uint64_t old = fetch_add_seqcst(&j->puts, (uint64_t)n);
    if (FIPC_UNLIKELY(load_seqcst(&j->joiners.waiters) != 0) && load_seqcst(&j->done) == old)
        wake_joiners(j);
}

void fipc__jqueue_uncount(fipc_jqueue *j, size_t n)
{
    /* The items were counted but their put failed, so no consumer will
     * ever take them: count them as done, so that puts never goes down
     * (puts_seen relies on it). */
    finish(j, n);
}

struct put_ctx {
    fipc_jqueue *j;
    const struct iovec *items;
    size_t n;
};

/* A put that counts its items once their slots are claimed and before they
 * are published: a consumer may finish an item before put_many returns,
 * and a put still waiting for room counts for nothing. */
static int try_put(void *arg, bool patient)
{
    struct put_ctx *c = arg;
    fipc_queue *q = queue_of(c->j);
    struct fipc__put_claim claim;
    int k = fipc__queue_put_claim(q, c->n, &claim);
    if (k < 0)
        return k;
    if (!claim.claim.closed)
        fipc__jqueue_count(c->j, (size_t)k);
    int r = fipc__queue_put_commit(q, &claim, c->items);
    if (r < 0 && !claim.claim.closed)
        fipc__jqueue_uncount(c->j, (size_t)k);
    return r;
}

int fipc_jqueue_put_many(fipc_jqueue *j, const struct iovec *items, size_t n, int64_t timeout_ns)
{
    if (!j)
        return -EINVAL;
    int r = fipc__queue_check_put(queue_of(j), items, n);
    if (r < 0)
        return r;
    struct put_ctx c = {j, items, n};
    r = try_put(&c, false);
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

int fipc_jqueue_get(fipc_jqueue *j, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    return j ? fipc_queue_get(queue_of(j), buf, cap, len, timeout_ns) : -EINVAL;
}

int fipc_jqueue_get_many(fipc_jqueue *j, void *buf, size_t stride, size_t *lens, size_t n,
                         int64_t timeout_ns)
{
    return j ? fipc_queue_get_many(queue_of(j), buf, stride, lens, n, timeout_ns) : -EINVAL;
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

struct join_ctx {
    fipc_jqueue *j;
    uint32_t epoch;
};

/* Done once the count is zero or the epoch has moved since join began. */
static int joined(void *arg, uint32_t *seen)
{
    struct join_ctx *c = arg;
    /* acquire pairs with the release in wake_joiners. */
    if (unfinished(c->j) == 0 || load_acquire(&c->j->joiners.epoch) != c->epoch)
        return 0;
    *seen = c->epoch;
    return -EAGAIN;
}

int fipc_jqueue_join(fipc_jqueue *j, int64_t timeout_ns)
{
    if (!j)
        return -EINVAL;
    /* acquire pairs with the release CAS in finish. */
    if (unfinished(j) == 0)
        return 0;
    if (timeout_ns == 0)
        return -EAGAIN;
    /* The epoch is read before registering: a zero reached after that
     * moment moves it, even if new items arrive before the re-check.
     * relaxed: the counted wait's seq_cst registration comes after it. */
    struct join_ctx c = {j, load_relaxed(&j->joiners.epoch)};
    /* Woken by finish when it brings the count to zero, or by a put that
     * finds it had just been zero (fipc__jqueue_count). */
    return futex_wait_counted(&j->joiners.epoch, &j->joiners.waiters, joined, &c,
                              fipc_deadline_in(timeout_ns));
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

int fipc_jqueue_close(fipc_jqueue *j)
{
    return j ? fipc_queue_close(queue_of(j)) : -EINVAL;
}

bool fipc_jqueue_closed(const fipc_jqueue *j)
{
    return j && fipc_queue_closed(queue_of(j));
}

/* ---- waiting from outside fipc (waitable.h) ------------------------------ */

static void clear_outside(fipc_jqueue *j)
{
    /* acquire pairs with the release of the flag in arm_join (its CAS):
     * the epoch increment that follows comes after the epoch that waiter
     * read, so a waiter whose flag this clears always waits on an older
     * epoch (eventcount.h, R-E <-> A-E).  relaxed first load: the CAS
     * reads the word again. */
    uint32_t w = load_relaxed(&j->joiners.waiters);
    while ((w & JOINERS_OUTSIDE) && !cas_acquire(&j->joiners.waiters, &w, w & ~JOINERS_OUTSIDE))
        ;
}

/* Register as a joiner that the next wake_joiners wakes, or answer 1 if
 * the count is zero already.  The handshake is join's (see the top), with
 * the flag in place of the count. */
static int arm_join(fipc_jqueue *j, struct fipc__arm *w)
{
    /* relaxed: the release below keeps this read before the flag (R-E). */
    uint32_t epoch = load_relaxed(&j->joiners.epoch);
    uint32_t v = load_relaxed(&j->joiners.waiters);
    /* seq_cst: the joiner's half of the handshake with finish and count,
     * whose seq_cst loads of waiters then see the flag, or whose change
     * the check below sees; also a release (R-E) that the clearer's
     * acquire reads.  A read-modify-write even when the flag is set
     * already, so that a clearer of that flag synchronizes with it. */
    while (!cas_seqcst(&j->joiners.waiters, &v, v | JOINERS_OUTSIDE))
        ;
    fence_seqcst();
    /* acquire pairs with the release in wake_joiners. */
    if (unfinished(j) == 0 || load_acquire(&j->joiners.epoch) != epoch)
        return 1;
    w->word = &j->joiners.epoch;
    w->value = epoch;
    return 0;
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
