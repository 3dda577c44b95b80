/*
 * queue.c - bounded queues of byte messages in shared memory: validation,
 * dispatch by mode, blocking, close and snapshots.
 *
 * The rings do the work: ring_mpmc.h (any number of producers and
 * consumers) and ring_spsc.h (FIPC_QUEUE_SPSC), on the slots of ring.h.  A
 * producer sleeps only on a full ring (not_full), a consumer only on an
 * empty one (not_empty), through the event counts of eventcount.h, so when
 * nobody sleeps a put or a get makes no system call.
 *
 * Close: closed is set once (seq_cst, C1 and C2 in the ring files), then
 * both event counts wake everyone.
 */
#include <pthread.h>

#include <fipc/queue.h>

#include "arena_impl.h"
#include "queue_view.h"
#include "waitable.h"

#define QUEUE_MAGIC 0x5155455545504946ull /* "FIPEUEUQ" */

/* ---- setup -------------------------------------------------------------- */

/* The ring's slot count: a power of two, and at least 2 (ring.h). */
static size_t ring_for(size_t n)
{
    size_t p = 2;
    while (p < n)
        p <<= 1;
    return p;
}

static size_t slot_size_for(size_t max_item)
{
    return (SLOT_HEADER + max_item + 7) & ~(size_t)7;
}

int fipc__queue_footprint(size_t *size, size_t capacity, size_t max_item, unsigned flags)
{
    if (capacity == 0 || capacity > FIPC_QUEUE_CAPACITY_MAX || max_item == 0 ||
        max_item > FIPC_QUEUE_ITEM_MAX || (flags & ~FIPC_QUEUE_SPSC))
        return -EINVAL;
    size_t ring = ring_for(capacity), ss = slot_size_for(max_item);
    size_t claimers = flags & FIPC_QUEUE_SPSC ? 0 : QUEUE_CLAIMERS * sizeof(struct claimer);
    if (ring > (SIZE_MAX - sizeof(struct fipc_queue) - claimers) / ss)
        return -ENOMEM;
    *size = sizeof(struct fipc_queue) + ring * ss + claimers;
    return 0;
}

fipc_queue *fipc__queue_init(void *mem, size_t capacity, size_t max_item, unsigned flags)
{
    struct fipc_queue *q = mem;
    *q = (struct fipc_queue){
        .capacity = capacity,
        .ring = ring_for(capacity),
        .mask = ring_for(capacity) - 1,
        .max_item = max_item,
        .slot_size = slot_size_for(max_item),
        .slots = sizeof *q,
        .flags = flags,
        .not_empty.waker_cpu = UINT32_MAX, /* none yet */
        .not_full.waker_cpu = UINT32_MAX,
    };
    /* Every slot is free for the first lap.  This also touches every page
     * of the ring now, so no put or get takes a page fault inside the
     * window between claiming a slot and handing it over. */
    const struct geom g = geom_of(q);
    for (uint64_t i = 0; i < q->ring; i++)
        slot_at(&g, i)->seq = turn(i);
    if (claimers_of(&g))
        memset(claimers_of(&g), 0, QUEUE_CLAIMERS * sizeof(struct claimer));
    q->magic = QUEUE_MAGIC;
    return q;
}

/* ---- views ----------------------------------------------------------------- */

/* This thread's views of queues (queue_view.h). */
_Thread_local struct view fipc__views[VIEWS] __attribute__((tls_model("initial-exec")));

/* A child of fork is a new thread: the claimer records in its views belong
 * to the thread that forked. */
static void drop_views_in_child(void)
{
    memset(fipc__views, 0, sizeof fipc__views);
}

__attribute__((constructor)) static void views_atfork(void)
{
    pthread_atfork(NULL, NULL, drop_views_in_child);
}

/* Validate q and fill v; 0, -EINVAL (not a queue) or -EPROTO (a queue
 * whose dimensions a peer changed). */
FIPC_NOINLINE int fipc__view_open(const struct fipc_queue *q, struct view *v)
{
    const char *end;
    if (((uintptr_t)q & (FIPC_CACHELINE - 1)) || !fipc__arena_bounds(q, sizeof *q, &end))
        return -EINVAL;
    /* relaxed: line 0 was written before the queue was published (by a
     * release in the arena directory, or a system call); each field is
     * read once, so that what is validated is what is used. */
    if (load_relaxed(&q->magic) != QUEUE_MAGIC)
        return -EINVAL;
    uint64_t capacity = load_relaxed(&q->capacity);
    uint64_t max_item = load_relaxed(&q->max_item);
    uint32_t flags = load_relaxed(&q->flags);
    size_t size;
    if (fipc__queue_footprint(&size, capacity, max_item, flags) < 0 ||
        size > (size_t)(end - (const char *)q))
        return -EPROTO;
    uint64_t ring = ring_for(capacity);
    bool spsc = (flags & FIPC_QUEUE_SPSC) != 0;
    char *slots = (char *)q + sizeof *q;
    v->g = (struct geom){.slots = slots,
                         .mask = ring - 1,
                         .slot_size = slot_size_for(max_item),
                         .ring = ring,
                         .capacity = capacity,
                         .max_item = max_item,
                         .spsc = spsc};
    if (!spsc)
        v->g.me = fipc__mpmc_claimer((struct fipc_queue *)q, &v->g);
    v->hole = (struct hole){0};
    v->key = view_key(q);
    /* This process's puts and gets may now use light fences (fence.h). */
    fipc__fence_register();
    return 0;
}

const struct geom *fipc__queue_view(const fipc_queue *q)
{
    return q ? view_of(q) : NULL;
}

/* A patient try (eventcount.h) found the ring full (put_side) or empty:
 * 0 when a claim whose holder died was in the way and is repaired (try
 * again), -EINPROGRESS while a held claim is in the way, else -EAGAIN. */
static int stuck(struct fipc_queue *q, const struct geom *g, bool put_side)
{
    return g->spsc ? -EAGAIN : fipc__mpmc_stuck(q, g, put_side, hole_of(g));
}

/* A call that does not wait (timeout_ns == 0) is about to report -EAGAIN:
 * whether a claim that was never handed over is in the way and is now
 * repaired (then the caller tries once more).  The hole and its grace
 * period live in this thread's view, as for a waiting call, so repeated
 * calls reach the repair once the claim has been in the way for the grace
 * period; nothing in the way costs no clock read.  relaxed: only a
 * filter, so that a ring that is simply empty (head == tail) or has every
 * slot full (tail - head == ring) costs no call; stuck reads what it
 * decides on again. */
static bool stuck_now(struct fipc_queue *q, const struct geom *g, bool put_side)
{
    uint64_t used = load_relaxed(&q->tail) - load_relaxed(&q->head);
    if (g->spsc || (put_side ? used >= g->ring : used == 0))
        return false;
    return fipc__mpmc_stuck(q, g, put_side, hole_of(g)) == 0;
}

/* The error for a queue that has no view: as fipc__view_open says. */
FIPC_NOINLINE int fipc__view_error(const struct fipc_queue *q)
{
    return q ? fipc__view_open(q, view_slot(q)) : -EINVAL;
}

/* The geometry of q, for a caller that found this thread's view of q
 * (view_cached) and made no call since: the view cannot have moved. */
static inline const struct geom *view_found(const fipc_queue *q)
{
    return &view_slot(q)->g;
}

/* ---- put ---------------------------------------------------------------- */

int fipc__queue_put_claim(fipc_queue *q, const struct iovec *items, size_t n,
                          struct fipc__put_claim *c)
{
    return queue_put_claim(q, items, n, c);
}

int fipc__queue_put_commit(fipc_queue *q, const struct fipc__put_claim *c,
                           const struct iovec *items)
{
    return queue_put_commit(q, c, items);
}

struct patient_put {
    struct fipc_queue *q;
    ec_try_fn try;
    void *ctx;
};

static int try_put_patiently(void *arg, bool patient)
{
    struct patient_put *p = arg;
    int r = p->try(p->ctx, patient);
    if (r == -EAGAIN && patient) {
        const struct geom *g = view_of(p->q);
        int s = g ? stuck(p->q, g, true) : -EAGAIN;
        r = s == 0 ? p->try(p->ctx, patient) : s;
    }
    return r;
}

int fipc__queue_block_put(fipc_queue *q, ec_try_fn try, void *ctx, int64_t timeout_ns)
{
    struct patient_put p = {q, try, ctx};
    if (timeout_ns == 0) {
        const struct geom *g = view_of(q);
        return g && stuck_now(q, g, true) ? try(ctx, false) : -EAGAIN;
    }
    return ec_block(&q->not_full, try_put_patiently, &p, timeout_ns);
}

struct put_ctx {
    struct fipc_queue *q;
    const struct geom *g;
    const struct iovec *items;
    size_t n;
};

static int put_now(struct put_ctx *c)
{
    /* relaxed: as in fipc__queue_put_claim. */
    if (load_relaxed(&c->q->closed))
        return -EPIPE;
    return c->g->spsc ? spsc_put(c->q, c->g, c->items, c->n) : mpmc_put(c->q, c->g, c->items, c->n);
}

static int try_put(void *arg, bool patient)
{
    struct put_ctx *c = arg;
    int r = put_now(c);
    if (r == -EAGAIN && patient) {
        int s = stuck(c->q, c->g, true);
        r = s == 0 ? put_now(c) : s;
    }
    return r;
}

int fipc_queue_put_many(fipc_queue *q, const struct iovec *items, size_t n, int64_t timeout_ns)
{
    struct put_ctx c = {q, q ? view_of(q) : NULL, items, batch(n)};
    if (!c.g)
        return fipc__view_error(q);
    int r = check_put(c.g, items, n);
    if (r < 0)
        return r;
    r = put_now(&c);
    if (FIPC_LIKELY(r != -EAGAIN))
        return r;
    if (timeout_ns == 0)
        return stuck_now(q, c.g, true) ? put_now(&c) : -EAGAIN;
    return ec_block(&q->not_full, try_put, &c, timeout_ns);
}

/* The general path of fipc_queue_put, out of line so that the fast ones
 * keep no frame. */
static FIPC_NOINLINE int put_one(fipc_queue *q, const void *item, size_t len, int64_t timeout_ns)
{
    struct iovec it = {(void *)item, len};
    int r = fipc_queue_put_many(q, &it, 1, timeout_ns);
    return r > 0 ? 0 : r;
}

/* The copy and publish of a one-message MPMC put that has claimed c, for
 * a message longer than SHORT_MSG: its copy is a call to memcpy, after
 * which the claim is still needed, so it is out of line with its frame.
 * The length goes in first, so that less is live across the copy. */
static FIPC_NOINLINE int mpmc_put_rest(fipc_queue *q, const void *item, size_t len,
                                       struct queue_claim c)
{
    const struct geom *g = view_found(q);
    struct slot *s = slot_at(g, c.pos);
    if (!c.closed) {
        s->len = (uint32_t)len;
        memcpy(s->data, item, len);
    }
    return mpmc_put_publish_one(q, g, s, &c);
}

/* One message on an MPMC queue whose view is view: the k = 1 case of
 * mpmc_put, each rare case a call that it ends with, as spsc_put_short.
 * Out of line, so that neither mode's path pays for the other's
 * registers. */
static FIPC_NOINLINE int mpmc_put_one(fipc_queue *q, const void *item, size_t len,
                                      int64_t timeout_ns, const struct geom *g)
{
    struct queue_claim c;
    if (FIPC_UNLIKELY(mpmc_put_claim(q, g, 1, &c) == 0))
        return put_one(q, item, len, timeout_ns);
    if (len > SHORT_MSG)
        return mpmc_put_rest(q, item, len, c);
    struct slot *s = slot_at(g, c.pos);
    if (!c.closed)
        slot_fill(s, &(const struct iovec){(void *)item, len});
    return mpmc_put_publish_one(q, g, s, &c);
}

/* The copy, publish and confirm of a one-message SPSC put that has found
 * pos free, for a message longer than SHORT_MSG, out of line as
 * mpmc_put_rest. */
static FIPC_NOINLINE int spsc_put_rest(fipc_queue *q, const void *item, size_t len, uint64_t pos)
{
    struct slot *s = slot_at(view_found(q), pos);
    s->len = (uint32_t)len;
    memcpy(s->data, item, len);
    return spsc_put_publish_one(q, s, pos);
}

/* One message on an SPSC queue whose view is g: the fast half of
 * spsc_put, with each rare case (no free slot, a long message, close, a
 * sleeper to wake) a call that it ends with, so that nothing is live
 * across a call and it needs no frame.  No local copy of the geometry:
 * each field is read once, and a copy would not fit in the registers
 * that need no saving. */
static FIPC_ALWAYS_INLINE int spsc_put_short(fipc_queue *q, const void *item, size_t len,
                                             int64_t timeout_ns, const struct geom *g)
{
    uint64_t pos = load_relaxed(&q->tail); /* ours alone */
    struct slot *s = slot_at(g, pos);
    if (FIPC_UNLIKELY(spsc_room(q, g, pos, 1) == 0 || !spsc_slot_free(s, pos)))
        return put_one(q, item, len, timeout_ns);
    if (len > SHORT_MSG)
        return spsc_put_rest(q, item, len, pos);
    slot_fill(s, &(const struct iovec){(void *)item, len});
    return spsc_put_publish_one(q, s, pos);
}

int fipc_queue_put(fipc_queue *q, const void *item, size_t len, int64_t timeout_ns)
{
    /* One message: checks, then straight to the ring by the body for the
     * queue's mode.  Every call here is the last thing done (a jump), so
     * that no path keeps registers for another.  A thread's first call on
     * q finds no view and takes the general path, which opens one.
     * relaxed: as in put_now. */
    const struct geom *g = q ? view_cached(q) : NULL;
    if (FIPC_UNLIKELY(!g || len > g->max_item || (!item && len) || load_relaxed(&q->closed)))
        return put_one(q, item, len, timeout_ns);
    if (!g->spsc)
        return mpmc_put_one(q, item, len, timeout_ns, g);
    return spsc_put_short(q, item, len, timeout_ns, g);
}

/* ---- get ---------------------------------------------------------------- */

struct get_ctx {
    struct fipc_queue *q;
    const struct geom *g;
    struct get_buf b;
    size_t n;
    size_t counted; /* counted tombstones passed (ring.h) */
};

static int get_now(struct get_ctx *c)
{
    if (c->g->spsc)
        return spsc_get(c->q, c->g, &c->b, c->n);
    return mpmc_get(c->q, c->g, &c->b, c->n, &c->counted);
}

static int try_get(void *arg, bool patient)
{
    struct get_ctx *c = arg;
    int r = get_now(c);
    if (r == -EAGAIN && patient) {
        int s = stuck(c->q, c->g, false);
        r = s == 0 ? get_now(c) : s;
    }
    return r;
}

static int get_many(fipc_queue *q, void *buf, size_t stride, size_t *lens, size_t n,
                    int64_t timeout_ns, size_t *counted)
{
    struct get_ctx c = {q, q ? view_of(q) : NULL, {buf, stride, lens}, batch(n), 0};
    if (!c.g)
        return fipc__view_error(q);
    if (!buf || !lens || n == 0 || stride < c.g->max_item)
        return -EINVAL;
    int r;
    for (;;) {
        r = get_now(&c);
        if (FIPC_UNLIKELY(r == -EAGAIN) && timeout_ns == 0)
            r = stuck_now(q, c.g, false) ? get_now(&c) : -EAGAIN;
        else if (FIPC_UNLIKELY(r == -EAGAIN))
            r = ec_block(&q->not_empty, try_get, &c, timeout_ns);
        if (FIPC_LIKELY(r != -EPIPE) || c.g->spsc)
            break;
        /* Closed and drained: what a consumer that died inside its get
         * left claimed is this get's rather than nobody's; -EAGAIN: a
         * repair put such a message again meanwhile, look again. */
        int k = fipc__mpmc_adopt(q, c.g, &c.b, c.n, &c.counted);
        if (k != -EAGAIN) {
            r = k > 0 ? k : r;
            break;
        }
    }
    if (counted)
        *counted += c.counted;
    return r;
}

int fipc_queue_get_many(fipc_queue *q, void *buf, size_t stride, size_t *lens, size_t n,
                        int64_t timeout_ns)
{
    return get_many(q, buf, stride, lens, n, timeout_ns, NULL);
}

int fipc__queue_get_many_counted(fipc_queue *q, void *buf, size_t stride, size_t *lens, size_t n,
                                 int64_t timeout_ns, size_t *counted)
{
    return get_many(q, buf, stride, lens, n, timeout_ns, counted);
}

/* The general path of a one-message get, out of line so that the fast
 * ones keep no frame.  Its first try is a general one, made at once even
 * after a fast try found nothing: SPSC's fast half settles neither close
 * nor a stale head, and in a stream that drains its ring as fast as it
 * fills, that try usually finds the message the partner was publishing
 * (going straight to ec_block instead, whose spin pauses first, cost a
 * pinned SPSC stream 10-26%).  Six arguments, so that a fast path can
 * jump to it.  counted: as in fipc__queue_get_counted, or NULL. */
static FIPC_NOINLINE int get_one_slow(fipc_queue *q, void *buf, size_t cap, size_t *len,
                                      int64_t timeout_ns, size_t *counted)
{
    int r = get_many(q, buf, cap, len, 1, timeout_ns, counted);
    return r > 0 ? 0 : r;
}

/* A fast try of a one-message get answered r: done, or on to the general
 * path. */
static FIPC_ALWAYS_INLINE int get_one_then(int r, fipc_queue *q, void *buf, size_t cap, size_t *len,
                                           int64_t timeout_ns, size_t *counted)
{
    if (FIPC_LIKELY(r > 0))
        return 0;
    if (r != -EAGAIN && r != -EPIPE)
        return r;
    return get_one_slow(q, buf, cap, len, timeout_ns, counted);
}

/* The rest of a one-message MPMC get that has claimed pos, for a slot
 * whose length is past max_item: a tombstone or a corrupt length, each as
 * mpmc_get treats it.  The caller's cap is not needed: it is at least
 * max_item, which the general path is given in its place; six arguments,
 * so that the caller can jump here. */
static FIPC_NOINLINE int mpmc_get_void(fipc_queue *q, void *buf, size_t *len, int64_t timeout_ns,
                                       size_t *counted, uint64_t pos)
{
    const struct geom *g = view_found(q);
    struct slot *s = slot_at(g, pos);
    const struct get_buf b = {buf, g->max_item, len};
    enum drained d = slot_drain(g, &b, 0, s);
    mpmc_get_release_one(q, g, s, pos);
    if (d == DRAINED) /* a peer changed the length meanwhile */
        return 0;
    if (d == CORRUPT)
        return -EPROTO;
    if (d == SKIPPED_COUNTED && counted)
        *counted += 1;
    /* Only a tombstone: look again, as mpmc_get does. */
    return get_one_slow(q, buf, g->max_item, len, timeout_ns, counted);
}

/* The copy and release of a one-message MPMC get that has claimed pos,
 * for a message longer than SHORT_MSG: its copy is a call to memcpy, so
 * it is out of line with its frame.  The length is read again: if a peer
 * changed it, memcpy copies any length within max_item as well.  The
 * length goes out first, so that less is live across the copy. */
static FIPC_NOINLINE int mpmc_get_long(fipc_queue *q, void *buf, size_t *len, int64_t timeout_ns,
                                       size_t *counted, uint64_t pos)
{
    const struct geom *g = view_found(q);
    struct slot *s = slot_at(g, pos);
    uint32_t n = s->len;
    if (FIPC_UNLIKELY(n > g->max_item))
        return mpmc_get_void(q, buf, len, timeout_ns, counted, pos);
    *len = n;
    memcpy(buf, s->data, n);
    /* The view again rather than g: one register fewer across the copy. */
    return mpmc_get_release_one(q, view_found(q), s, pos);
}

/* One message from an MPMC queue that has a view: the k = 1 case of
 * mpmc_get, for SHORT_MSG bytes at most copied without a call, and each
 * rare case a call that it ends with, as spsc_get_short.  Out of line (as
 * mpmc_get_one and mpmc_get_one_counted, so that a NULL counted is
 * folded), so that neither mode's path pays for the other's registers. */
static FIPC_ALWAYS_INLINE int mpmc_get_body(fipc_queue *q, void *buf, size_t cap, size_t *len,
                                            int64_t timeout_ns, size_t *counted)
{
    const struct geom *g = view_found(q);
    struct queue_claim c;
    int r = mpmc_get_claim(q, g, 1, &c);
    if (FIPC_UNLIKELY(r < 0))
        return get_one_then(r, q, buf, cap, len, timeout_ns, counted);
    struct slot *s = slot_at(g, c.pos);
    uint32_t n = s->len;
    if (FIPC_UNLIKELY(n > g->max_item))
        return mpmc_get_void(q, buf, len, timeout_ns, counted, c.pos);
    if (FIPC_UNLIKELY(n > SHORT_MSG))
        return mpmc_get_long(q, buf, len, timeout_ns, counted, c.pos);
    slot_copy_out(&(const struct get_buf){buf, cap, len}, 0, s, n);
    return mpmc_get_release_one(q, g, s, c.pos);
}

static FIPC_NOINLINE int mpmc_get_one(fipc_queue *q, void *buf, size_t cap, size_t *len,
                                      int64_t timeout_ns)
{
    return mpmc_get_body(q, buf, cap, len, timeout_ns, NULL);
}

static FIPC_NOINLINE int mpmc_get_one_counted(fipc_queue *q, void *buf, size_t cap, size_t *len,
                                              int64_t timeout_ns, size_t *counted)
{
    return mpmc_get_body(q, buf, cap, len, timeout_ns, counted);
}

/* The copy and release of a one-message SPSC get that has found pos
 * full, for a length that spsc_get_short does not take: longer than
 * SHORT_MSG (memcpy), or corrupt.  As spsc_get_take: a length out of range
 * was written by a peer, and the slot is consumed without being copied.
 * The length goes out first, so that less is live across the copy. */
static FIPC_NOINLINE int spsc_get_rest(fipc_queue *q, void *buf, size_t *len, uint64_t pos)
{
    const struct geom *g = view_found(q);
    struct slot *s = slot_at(g, pos);
    uint32_t n = s->len;
    if (FIPC_UNLIKELY(n > g->max_item)) {
        spsc_get_release_one(q, g, s, pos);
        return -EPROTO;
    }
    *len = n;
    memcpy(buf, s->data, n);
    /* The view again rather than g: one register fewer across the copy. */
    return spsc_get_release_one(q, view_found(q), s, pos);
}

/* One message from an SPSC queue whose view is g: the fast half of
 * spsc_get, with each rare case (nothing there, a long or corrupt length,
 * a sleeper to wake) a call that it ends with, so that it needs no frame.
 * No local copy of the geometry, as in spsc_put_short. */
static FIPC_ALWAYS_INLINE int spsc_get_short(fipc_queue *q, void *buf, size_t cap, size_t *len,
                                             int64_t timeout_ns, size_t *counted,
                                             const struct geom *g)
{
    uint64_t pos = load_relaxed(&q->head); /* ours alone */
    struct slot *s = slot_at(g, pos);
    if (FIPC_UNLIKELY(spsc_sealed(q) || !spsc_slot_full(s, pos)))
        return get_one_then(-EAGAIN, q, buf, cap, len, timeout_ns, counted);
    uint32_t n = s->len;
    /* spsc_get_rest reads the length again and checks it as it copies. */
    if (FIPC_UNLIKELY(n > SHORT_MSG || n > g->max_item))
        return spsc_get_rest(q, buf, len, pos);
    slot_copy_out(&(const struct get_buf){buf, cap, len}, 0, s, n);
    return spsc_get_release_one(q, g, s, pos);
}

/* One message: checks, then straight to the ring by the body for the
 * queue's mode, with every call the last thing done, as in
 * fipc_queue_put. */
static FIPC_ALWAYS_INLINE int get_one(fipc_queue *q, void *buf, size_t cap, size_t *len,
                                      int64_t timeout_ns, size_t *counted)
{
    const struct geom *g = q ? view_cached(q) : NULL;
    if (FIPC_UNLIKELY(!g || !buf || !len || cap < g->max_item))
        return get_one_slow(q, buf, cap, len, timeout_ns, counted);
    if (!g->spsc)
        return counted ? mpmc_get_one_counted(q, buf, cap, len, timeout_ns, counted)
                       : mpmc_get_one(q, buf, cap, len, timeout_ns);
    return spsc_get_short(q, buf, cap, len, timeout_ns, counted, g);
}

int fipc_queue_get(fipc_queue *q, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    return get_one(q, buf, cap, len, timeout_ns, NULL);
}

int fipc__queue_get_counted(fipc_queue *q, void *buf, size_t cap, size_t *len, int64_t timeout_ns,
                            size_t *counted)
{
    return get_one(q, buf, cap, len, timeout_ns, counted);
}

/* ---- close and snapshots ------------------------------------------------- */

int fipc_queue_set_wait_mode(fipc_queue *q, enum fipc_wait_mode mode)
{
    const struct geom *g = q ? view_of(q) : NULL;
    if (!g)
        return fipc__view_error(q);
    if (!fipc_wait_mode_valid(mode))
        return -EINVAL;
    /* relaxed: each side's next ec_block reads it; it orders nothing. */
    store_relaxed(&q->not_empty.mode, (uint32_t)mode);
    store_relaxed(&q->not_full.mode, (uint32_t)mode);
    return 0;
}

int fipc_queue_close(fipc_queue *q)
{
    if (!q)
        return -EINVAL;
    store_seqcst(&q->closed, 1); /* C1, C2 */
    ec_wake_all(&q->not_empty);
    ec_wake_all(&q->not_full);
    return 0;
}

bool fipc_queue_closed(const fipc_queue *q)
{
    /* acquire pairs with the store in fipc_queue_close: a caller that sees
     * the queue closed also sees what the closer wrote before closing. */
    return q && load_acquire(&q->closed);
}

size_t fipc_queue_qsize(const fipc_queue *q)
{
    if (!q)
        return 0;
    /* relaxed: a snapshot of two words that move independently; nothing is
     * read through them.  In SPSC mode the producer stores tail just after
     * handing the slot over, so head may briefly be ahead of it; clamp to
     * 0..capacity. */
    uint64_t head = load_relaxed(&q->head);
    uint64_t tail = load_relaxed(&q->tail);
    int64_t n = (int64_t)(tail - head);
    if (n <= 0)
        return 0;
    return (uint64_t)n > q->capacity ? q->capacity : (size_t)n;
}

bool fipc_queue_empty(const fipc_queue *q)
{
    return q && fipc_queue_qsize(q) == 0;
}

bool fipc_queue_full(const fipc_queue *q)
{
    return q && fipc_queue_qsize(q) == q->capacity;
}

size_t fipc_queue_capacity(const fipc_queue *q)
{
    return q ? q->capacity : 0;
}

size_t fipc_queue_max_item(const fipc_queue *q)
{
    return q ? q->max_item : 0;
}

/* ---- waiting from outside fipc (waitable.h) ------------------------------ */

/* Whether a get (readable) or a put (writable) would find something to do
 * now: a full slot at head, a free one at tail within capacity, or the
 * queue closed (its calls return -EPIPE, or data).  Called after the
 * registration's fence F1, so these loads and the other side's change
 * followed by its fence F2 form the event count's handshake (eventcount.h):
 * either they see the change, or the other side sees the registration. */
static bool ready_now(struct fipc_queue *q, const struct geom *g, unsigned what)
{
    /* relaxed: after F1, which orders it after the registration; a close
     * that set it before F1 in S is seen (the closer's store is seq_cst). */
    if (load_relaxed(&q->closed))
        return true;
    /* relaxed: positions only say which slot to look at; the slot's turn
     * says whether it can be used, and a stale position only makes the
     * answer "not ready", which the registration covers, or "ready", which
     * the caller checks with the call itself. */
    if (what == FIPC_READABLE) {
        uint64_t head = load_relaxed(&q->head);
        /* acquire pairs with the producer's publish (R1). */
        return load_acquire(&slot_at(g, head)->seq) == turn(head + 1);
    }
    uint64_t tail = load_relaxed(&q->tail);
    uint64_t head = load_relaxed(&q->head);
    /* acquire pairs with the consumer's release (R2). */
    return tail - head < g->capacity && load_acquire(&slot_at(g, tail)->seq) == turn(tail);
}

int fipc__queue_arm(fipc_queue *q, unsigned what, struct fipc__arm *w)
{
    const struct geom *g = q ? view_of(q) : NULL;
    if (!g)
        return fipc__view_error(q);
    bool peek = (what & FIPC__ARM_PEEK) != 0;
    what &= ~FIPC__ARM_PEEK;
    if (what != FIPC_READABLE && what != FIPC_WRITABLE)
        return -EINVAL;
    if (peek)
        return ready_now(q, g, what);
    /* An item (or room) that is about to come from the other CPU costs
     * less to spin for than a registration, which makes the other side's
     * next call a system call: the spin of ec_block, bounded the same
     * way, and answered as "ready" (a NOP) if it ends well. */
    struct fipc_spin spin;
    for (fipc_spin_begin(&spin); fipc_spin(&spin);)
        if (ready_now(q, g, what))
            return 1;
    /* A loop that arms before it asks its partner for anything spins in
     * vain every time: then it stops spinning for a while. */
    fipc_spin_vain(&spin);
    struct eventcount *ec = what == FIPC_READABLE ? &q->not_empty : &q->not_full;
    ec_spun(ec, &spin); /* who pays the fences, as for ec_block's sleepers */
    /* The same registration as a sleeper of ec_block: the next notifier
     * clears the flag and advances the epoch, waking a wait on it. */
    uint32_t epoch = ec_register(ec);
    if (ready_now(q, g, what))
        return 1;
    w->word = &ec->epoch;
    w->value = epoch;
    /* A claim in the way (MPMC): a put's at head, or a get's at tail one
     * lap back.  Repaired if its holder died, as a patient try would. */
    int s = stuck(q, g, what == FIPC_WRITABLE);
    if (s == -EINPROGRESS) {
        /* Usually a live claim a few instructions from its publish (or
         * release): worth a short spin, as ec_block's, before asking for a
         * timed look. */
        for (fipc_spin_begin(&spin); fipc_spin(&spin);)
            if (ready_now(q, g, what))
                return 1;
    }
    return s == 0 ? 1 : s == -EINPROGRESS ? 2 : 0;
}
