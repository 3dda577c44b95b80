/*
 * jqueue.c - Python's JoinableQueue: a queue plus a count of unfinished
 * items.
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
 * put raises puts (relaxed) once it has claimed its slots and before the
 * queue's release store makes the items visible; the consumer that takes an
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
 *   e = epoch           (acquire)           CAS done -> d      (seq_cst)
 *   waiters += 1        (seq_cst)           if waiters != 0    (seq_cst)
 *   fence               (seq_cst)              and puts == d:
 *   while puts - done != 0 and epoch == e:      epoch += 1; futex_wake(all)
 *       futex_wait(epoch, e, deadline)
 *   waiters -= 1
 *
 * Either the joiner's re-check sees done == puts, or task_done sees the
 * joiner.  A put that lands between task_done's CAS and its load of puts
 * hides the zero from task_done; the put then sees done == its old puts and
 * wakes the joiners itself (fipc__jqueue_count).  A joiner that reads done (acquire) also sees every puts increment
 * that preceded those items' publication, so puts - done never reads
 * negative.
 */
#include <fipc/arena.h>
#include <fipc/jqueue.h>

#include "futex.h"
#include "internal.h"
#include "queue_impl.h"

/* Joiners count themselves (they are woken only when the count reaches
 * zero, so there is no stream of notifications to keep cheap). */
struct joiners {
    uint32_t epoch;
    uint32_t waiters;
};

struct fipc_jqueue {
    uint64_t queue;
    _Alignas(FIPC_CACHELINE) uint64_t puts;
    _Alignas(FIPC_CACHELINE) uint64_t done;
    uint64_t puts_seen;
    _Alignas(FIPC_CACHELINE) struct joiners joiners;
};
static_assert(sizeof(struct fipc_jqueue) == 4 * FIPC_CACHELINE, "jqueue layout");

static inline fipc_queue *Q(const fipc_jqueue *j)
{
    return (fipc_queue *)((char *)j + j->queue);
}

int fipc_jqueue_create(fipc_jqueue **out, fipc_arena *a, size_t capacity, size_t max_item,
                       unsigned flags)
{
    if (!out)
        return -EINVAL;
    void *mem;
    int r = fipc__queue_new(&mem, a, sizeof(fipc_jqueue), capacity, max_item, flags);
    if (r < 0)
        return r;
    fipc_jqueue *j = mem;
    j->queue = sizeof *j;
    *out = j;
    return 0;
}

fipc_queue *fipc_jqueue_queue(fipc_jqueue *j)
{
    return j ? Q(j) : NULL;
}

/* Items put and not yet done.  done is read first (acquire: it carries the
 * puts increments of the items it counts), so the difference is never
 * negative. */
static inline uint64_t unfinished(const fipc_jqueue *j)
{
    uint64_t done = load_acquire(&j->done);
    return load_acquire(&j->puts) - done;
}

/* Wake the joiners: the count was zero at some moment since they slept. */
static void wake_joiners(fipc_jqueue *j)
{
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


int fipc_jqueue_put_many(fipc_jqueue *j, const struct iovec *items, size_t n, int64_t timeout_ns)
{
    if (!j || !items || n == 0)
        return -EINVAL;
    /* The queue raises the count once the slots are claimed and before the
     * items are published: a consumer may finish an item before put_many
     * returns, and a put still waiting for room counts for nothing. */
    return fipc__queue_put_counted(Q(j), items, n, timeout_ns, j);
}

int fipc_jqueue_put(fipc_jqueue *j, const void *item, size_t len, int64_t timeout_ns)
{
    struct iovec it = {(void *)item, len};
    int r = fipc_jqueue_put_many(j, &it, 1, timeout_ns);
    return r > 0 ? 0 : r;
}

int fipc_jqueue_get(fipc_jqueue *j, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    return j ? fipc_queue_get(Q(j), buf, cap, len, timeout_ns) : -EINVAL;
}

int fipc_jqueue_get_many(fipc_jqueue *j, void *buf, size_t stride, size_t *lens, size_t n,
                         int64_t timeout_ns)
{
    return j ? fipc_queue_get_many(Q(j), buf, stride, lens, n, timeout_ns) : -EINVAL;
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

int fipc_jqueue_join(fipc_jqueue *j, int64_t timeout_ns)
{
    if (!j)
        return -EINVAL;
    /* acquire pairs with the release CAS in finish. */
    if (unfinished(j) == 0)
        return 0;
    if (timeout_ns == 0)
        return -EAGAIN;

    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    struct joiners *ec = &j->joiners;
    /* The epoch is read before registering: a zero reached after that
     * moment moves it, even if new items arrive before the re-check. */
    uint32_t epoch = load_acquire(&ec->epoch);
    fetch_add_seqcst(&ec->waiters, 1);
    /* Pairs with the seq_cst CAS-then-load in finish and the add-then-load
     * in count: the re-check below comes after the registration. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    int r = 0;
    while (unfinished(j) != 0 && load_acquire(&ec->epoch) == epoch) {
        /* Woken by finish when it brings the count to zero. */
        if (futex_wait_until(&ec->epoch, epoch, deadline) == -ETIMEDOUT) {
            if (unfinished(j) != 0 && load_acquire(&ec->epoch) == epoch)
                r = -ETIMEDOUT;
            break;
        }
    }
    fetch_sub_relaxed(&ec->waiters, 1);
    return r;
}

size_t fipc_jqueue_unfinished(const fipc_jqueue *j)
{
    return j ? (size_t)unfinished(j) : 0;
}

size_t fipc_jqueue_qsize(const fipc_jqueue *j)
{
    return j ? fipc_queue_qsize(Q(j)) : 0;
}

bool fipc_jqueue_empty(const fipc_jqueue *j)
{
    return j && fipc_queue_empty(Q(j));
}

bool fipc_jqueue_full(const fipc_jqueue *j)
{
    return j && fipc_queue_full(Q(j));
}

size_t fipc_jqueue_capacity(const fipc_jqueue *j)
{
    return j ? fipc_queue_capacity(Q(j)) : 0;
}

size_t fipc_jqueue_max_item(const fipc_jqueue *j)
{
    return j ? fipc_queue_max_item(Q(j)) : 0;
}

int fipc_jqueue_close(fipc_jqueue *j)
{
    return j ? fipc_queue_close(Q(j)) : -EINVAL;
}

bool fipc_jqueue_closed(const fipc_jqueue *j)
{
    return j && fipc_queue_closed(Q(j));
}
