/*
 * jqueue.c - Python's JoinableQueue: a queue plus a count of unfinished
 * items.
 *
 *   field        meaning
 *   unfinished   items put and not yet marked done
 *   joiners      epoch, which task_done advances when it brings
 *                unfinished to zero, and the number of joiners asleep
 *   queue        offset of the fipc_queue from this struct
 *
 * put raises unfinished (relaxed) once it has claimed its slots and before
 * the queue's release store makes the items visible, so the consumer that takes the item (acquire) and calls
 * task_done lowers a count that already includes it: the count never goes
 * below the number of items handed out.  task_done refuses to go below
 * zero (-EOVERFLOW).  Joiners sleep on the epoch, not on the count: a count
 * that goes 5 -> 0 -> 5 between a joiner's check and its sleep would
 * otherwise be missed (ABA); the epoch only ever moves forward, and a
 * joiner returns once it has moved, as Python's join returns once
 * notified.
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
    uint64_t unfinished;
    uint64_t queue;
    _Alignas(FIPC_CACHELINE) struct joiners joiners;
};
static_assert(sizeof(struct fipc_jqueue) == 2 * FIPC_CACHELINE, "jqueue layout");

static inline fipc_queue *Q(const fipc_jqueue *j)
{
    return (fipc_queue *)((char *)j + j->queue);
}

int fipc_jqueue_create(fipc_jqueue **out, fipc_arena *a, size_t capacity, size_t max_item,
                       unsigned flags)
{
    if (!out)
        return -EINVAL;
    int r = fipc__queue_check(capacity, max_item, flags);
    if (r < 0)
        return r;
    size_t qsize = fipc__queue_footprint(capacity, max_item);
    if (qsize == 0)
        return -ENOMEM;
    fipc_jqueue *j = fipc__alloc(a, sizeof *j + qsize, FIPC_CACHELINE);
    if (!j)
        return -ENOMEM;
    j->queue = sizeof *j;
    fipc__queue_setup(Q(j), capacity, max_item, flags);
    *out = j;
    return 0;
}

fipc_queue *fipc_jqueue_queue(fipc_jqueue *j)
{
    return j ? Q(j) : NULL;
}

/* Lower unfinished by n; -EOVERFLOW (and no change) if that would go below
 * zero.  Wakes the joiners when the count reaches zero and one sleeps. */
static int finish(fipc_jqueue *j, uint64_t n)
{
    uint64_t v = load_relaxed(&j->unfinished);
    do {
        if (v < n)
            return -EOVERFLOW;
        /* release: the work done on the items happens-before a joiner's
         * acquire load that sees the lower count. */
    } while (!cas_release(&j->unfinished, &v, v - n));
    if (v == n) {
        /* Pairs with the fence after a joiner registers (as in queue.c). */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (load_relaxed(&j->joiners.waiters) != 0) {
            fetch_add_release(&j->joiners.epoch, 1);
            futex_wake(&j->joiners.epoch, FUTEX_WAKE_ALL);
        }
    }
    return 0;
}

void fipc__jqueue_count(fipc_jqueue *j, size_t n)
{
    /* relaxed: the queue's release store that publishes the items orders
     * this before any consumer's task_done for them. */
    fetch_add_relaxed(&j->unfinished, (uint64_t)n);
}

void fipc__jqueue_uncount(fipc_jqueue *j, size_t n)
{
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
    if (load_acquire(&j->unfinished) == 0)
        return 0;
    if (timeout_ns == 0)
        return -EAGAIN;

    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    struct joiners *ec = &j->joiners;
    fetch_add_seqcst(&ec->waiters, 1);
    /* Pairs with the fence in finish: the re-check below comes after the
     * registration. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint32_t epoch = load_acquire(&ec->epoch);
    int r = 0;
    while (load_acquire(&j->unfinished) != 0 && load_acquire(&ec->epoch) == epoch) {
        /* Woken by finish when it brings the count to zero. */
        if (futex_wait_until(&ec->epoch, epoch, deadline) == -ETIMEDOUT) {
            if (load_acquire(&j->unfinished) != 0 && load_acquire(&ec->epoch) == epoch)
                r = -ETIMEDOUT;
            break;
        }
    }
    fetch_sub_relaxed(&ec->waiters, 1);
    return r;
}

size_t fipc_jqueue_unfinished(const fipc_jqueue *j)
{
    return j ? (size_t)load_relaxed(&j->unfinished) : 0;
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
