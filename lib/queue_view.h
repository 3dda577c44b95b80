/*
 * queue_view.h - each thread's validated view of a queue's geometry, and
 * the two-phase put inline, for queue.c and the layers above it
 * (internal).
 *
 * A thread's private copy of a queue's geometry.  Every peer that maps the
 * arena can write the queue's line 0, so no call bounds an access by it:
 * the first call of a thread on a queue reads the dimensions once,
 * validates them against the mapping that holds the queue (arena_impl.h),
 * derives the geometry from them and keeps it here; later calls find it
 * with one compare.  A queue whose dimensions cannot be right gets no view,
 * and every call on it fails with -EPROTO (or -EINVAL when it is no queue).
 *
 * A view is keyed by the queue's address and the arena epoch, which moves
 * whenever this process unmaps an arena: a queue at an address where
 * another one lived gets a view of its own.  Views are copied into a child
 * by fork with the mappings they describe, so they stay right there (but
 * for their claimer records, which belong to the thread that forked:
 * queue.c drops them in the child).
 */
#ifndef FIPC_LIB_QUEUE_VIEW_H
#define FIPC_LIB_QUEUE_VIEW_H

#include "arena_impl.h"
#include "ring_mpmc.h"
#include "ring_spsc.h"

struct view {
    uintptr_t key; /* queue address ^ arena epoch; 0: empty */
    struct geom g;
    struct hole hole; /* the held claim this thread waits behind, if any */
    char pad[2 * FIPC_CACHELINE - sizeof(uintptr_t) - sizeof(struct geom) - sizeof(struct hole)];
};
static_assert(sizeof(struct view) == 2 * FIPC_CACHELINE, "a view is two cache lines");

#define VIEWS 8
extern _Thread_local struct view fipc__views[VIEWS] __attribute__((tls_model("initial-exec")));

static inline uintptr_t view_key(const struct fipc_queue *q)
{
    /* relaxed: see fipc__arena_epoch. */
    return (uintptr_t)q ^ load_relaxed(&fipc__arena_epoch);
}

/* Direct-mapped by the address bits just above the cache line: queues are
 * cache-line aligned, and ones created one after the other differ there.
 * Those bits, kept in place, are the view's offset halved. */
static inline struct view *view_slot(const struct fipc_queue *q)
{
    static_assert(sizeof(struct view) == 2 * FIPC_CACHELINE, "the offset is the bits doubled");
    uintptr_t bits = (uintptr_t)q & ((VIEWS - 1) * FIPC_CACHELINE);
    return (struct view *)((char *)fipc__views + 2 * bits);
}

/* Validate q and fill v; 0, -EINVAL (not a queue) or -EPROTO (a queue
 * whose dimensions a peer changed). */
int fipc__view_open(const struct fipc_queue *q, struct view *v);

/* The error for a queue that has no view, q possibly NULL: as
 * fipc__view_open says. */
int fipc__view_error(const struct fipc_queue *q);

/* This thread's geometry of q, or NULL if q is no valid queue. */
static FIPC_ALWAYS_INLINE const struct geom *view_of(const struct fipc_queue *q)
{
    struct view *v = view_slot(q);
    if (FIPC_UNLIKELY(v->key != view_key(q)) && fipc__view_open(q, v) < 0)
        return NULL;
    return &v->g;
}

/* This thread's geometry of q if it has a view of q already, else NULL
 * (then the caller's general path opens one through view_of).  No call,
 * so a fast path that starts with it keeps no frame for after one. */
static FIPC_ALWAYS_INLINE const struct geom *view_cached(const struct fipc_queue *q)
{
    struct view *v = view_slot(q);
    return FIPC_LIKELY(v->key == view_key(q)) ? &v->g : NULL;
}

/* The hole this thread waits behind, kept in the view of g. */
static inline struct hole *hole_of(const struct geom *g)
{
    return &((struct view *)((char *)g - offsetof(struct view, g)))->hole;
}

/* Check a put of n items on a queue whose geometry is g. */
static inline int check_put(const struct geom *g, const struct iovec *items, size_t n)
{
    if (!items || n == 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (items[i].iov_len > g->max_item)
            return -EMSGSIZE;
        if (!items[i].iov_base && items[i].iov_len)
            return -EINVAL;
    }
    return 0;
}

/* At most INT32_MAX messages per call: the count is returned as an int. */
static inline size_t batch(size_t n)
{
    return n > INT32_MAX ? INT32_MAX : n;
}

/* The two-phase put of queue_impl.h, inline for the layers that count
 * between the phases. */
static FIPC_ALWAYS_INLINE int queue_put_claim(fipc_queue *q, const struct iovec *items, size_t n,
                                              struct fipc__put_claim *c)
{
    const struct geom *v = q ? view_of(q) : NULL;
    if (!v)
        return fipc__view_error(q);
    int r = check_put(v, items, n);
    if (r < 0)
        return r;
    /* relaxed: an early answer for a queue closed long ago; the claim
     * itself settles a race with close (C1, C2). */
    if (load_relaxed(&q->closed))
        return -EPIPE;
    c->g = v;
    /* A local copy, kept in registers across the acquire loads. */
    const struct geom g = *v;
    n = batch(n);
    uint32_t k = g.spsc ? spsc_put_claim(q, &g, v, n, &c->claim)
                        : mpmc_put_claim(q, &g, n, &c->claim);
    return k == 0 ? -EAGAIN : (int)k;
}

static FIPC_ALWAYS_INLINE int queue_put_commit(fipc_queue *q, const struct fipc__put_claim *c,
                                               const struct iovec *items)
{
    const struct geom g = *c->g;
    if (!g.spsc)
        return mpmc_put_publish(q, &g, &c->claim, items);
    spsc_put_copy(&g, &c->claim, items);
    spsc_put_publish(&g, &c->claim);
    return spsc_put_confirm(q, &c->claim);
}

#endif
