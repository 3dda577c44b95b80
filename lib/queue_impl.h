/*
 * queue_impl.h - the layout of a fipc_queue in shared memory, and the calls
 * queue.c offers the layers above it (internal).
 *
 * The ring protocols are documented where they are implemented:
 * ring.h (slots and turns), ring_mpmc.h, ring_spsc.h; the event counts in
 * eventcount.h.
 */
#ifndef FIPC_LIB_QUEUE_IMPL_H
#define FIPC_LIB_QUEUE_IMPL_H

#include <sys/uio.h>

#include <fipc/queue.h>

#include "eventcount.h"
#include "lock_impl.h"

/*
 * MPMC mode: who holds which claim (ring_mpmc.h, Death).  One record per
 * thread that uses the queue, held by that thread for its lifetime through
 * a robust lock, so that the kernel marks it OWNER_DIED the moment the
 * thread dies; claim says which positions the thread is claiming or holds
 * without having handed them over.
 *
 * tally is the layer above's count of the messages this record's threads
 * put (the JoinableQueue's, jqueue.c): written by the record's holder only,
 * but for TALLY_LOCKED, which that layer sets and clears.  base is the
 * tally as it was when the holder announced its current put claim, so a
 * repairer reads from the dead holder's record alone whether that claim
 * was counted: tally_count(tally) != tally_count(base).
 */
struct claimer {
    struct lock_impl owner; /* tid of the thread the record belongs to */
    uint64_t claim;         /* CLAIM_WORD(first, k, get); 0: none */
    uint64_t tally;         /* messages counted, | TALLY_LOCKED */
    uint64_t base;          /* tally when the current put claim was announced */
};
static_assert(sizeof(struct claimer) == FIPC_CACHELINE, "a claimer is a cache line");

#define TALLY_LOCKED (UINT64_C(1) << 63)

static inline uint64_t tally_count(uint64_t w)
{
    return w & ~TALLY_LOCKED;
}

#define QUEUE_CLAIMERS 64 /* records in a block; SPSC queues have none */

/*
 * MPMC: the records grow with the threads.  The first QUEUE_CLAIMERS lie
 * after the slots; a thread that finds none free adds a block of as many,
 * allocated from the arena that holds the queue (ring_mpmc.c,
 * fipc__mpmc_claimer), linked from line 5's more and then from each
 * block's next: offsets from the queue, 0 ending the chain.  Peers can
 * write every word here: a walk (claimers_next) checks each link before it
 * follows it, and stops at one that is wrong.
 */
#define QUEUE_BLOCKS_MAX  64 /* the first block and 63 extensions: 4096 records */
#define CLAIM_BLOCK_MAGIC 0x4b434f4c42504946ull /* "FIPBLOCK" */

struct claimer_block {
    uint64_t magic;
    uint64_t next;  /* offset from the queue of the next block; 0: none */
    uint32_t count; /* records in the block: QUEUE_CLAIMERS */
    uint32_t index; /* its place in the chain: 1 for the first extension */
    _Alignas(FIPC_CACHELINE) struct claimer rec[QUEUE_CLAIMERS];
};
static_assert(offsetof(struct claimer_block, rec) == FIPC_CACHELINE, "a header line, then records");

struct fipc_queue {
    /* Line 0: fixed at creation, then read-only (but for closed, written
     * once), so it stays shared in every CPU's cache. */
    uint64_t magic;
    uint64_t capacity; /* messages the queue holds, as asked for */
    uint64_t ring;     /* slots: capacity rounded up to a power of two */
    uint64_t mask;     /* ring - 1 */
    uint64_t max_item;
    uint64_t slot_size;
    uint64_t slots; /* offset of slot 0 from this struct */
    uint32_t flags;
    uint32_t closed;

    /* Line 1: producers' position; in SPSC mode with a capacity that is
     * not a power of two also the producer's private copy of head. */
    _Alignas(FIPC_CACHELINE) uint64_t tail;
    uint64_t head_cache;

    /* Line 2: consumers' position; in SPSC mode also the word end, where a
     * put that raced with close settles with the consumer (ring_spsc.h). */
    _Alignas(FIPC_CACHELINE) uint64_t head;
    uint64_t end;

    /* Line 3: consumers sleep here while the queue is empty. */
    _Alignas(FIPC_CACHELINE) struct eventcount not_empty;

    /* Line 4: producers sleep here while the queue is full. */
    _Alignas(FIPC_CACHELINE) struct eventcount not_full;

    /* Line 5: MPMC repair of claims whose holder died (ring_mpmc.c).
     * unrecorded: set once a thread had to claim without a record (all
     * taken and the arena too full for another block, or QUEUE_BLOCKS_MAX
     * reached); from then on no claim is repaired.  records: one more
     * than the highest record ever taken, counting through the blocks in
     * chain order (the others have never counted).  more: the offset from
     * the queue of the first extension block of records; 0: none.  The
     * repair lock also serializes the adding of blocks. */
    _Alignas(FIPC_CACHELINE) struct lock_impl repair;
    uint32_t unrecorded;
    uint32_t records;
    uint64_t more;
};

static_assert(offsetof(struct fipc_queue, tail) == 1 * FIPC_CACHELINE, "queue layout");
static_assert(offsetof(struct fipc_queue, head) == 2 * FIPC_CACHELINE, "queue layout");
static_assert(offsetof(struct fipc_queue, not_empty) == 3 * FIPC_CACHELINE, "queue layout");
static_assert(offsetof(struct fipc_queue, not_full) == 4 * FIPC_CACHELINE, "queue layout");
static_assert(offsetof(struct fipc_queue, repair) == 5 * FIPC_CACHELINE, "queue layout");
static_assert(sizeof(struct fipc_queue) == 6 * FIPC_CACHELINE, "queue layout");

/* The ring's geometry, fixed at creation.  Calls never use the copy in
 * shared memory, which any peer can overwrite: each thread validates it
 * once against the mapping that holds the queue and keeps it in a view of
 * its own (queue.c), which functions copy into a local, so that it stays in
 * registers across their acquire loads. */
struct geom {
    char *slots;
    uint64_t mask; /* ring - 1 */
    uint64_t slot_size;
    uint64_t ring;     /* slots, a power of two */
    uint64_t capacity; /* messages the queue holds, <= ring */
    uint64_t max_item; /* longest message, < slot_size - SLOT_HEADER */
    bool spsc;
    /* MPMC: this thread's claimer record, or NULL if it has none. */
    struct claimer *me;
};
static_assert(sizeof(struct geom) <= 64, "small enough for the compiler to keep in registers");

/* MPMC: the first QUEUE_CLAIMERS records, after the slots; NULL in SPSC
 * mode. */
static inline struct claimer *claimers_of(const struct geom *g)
{
    return g->spsc ? NULL : (struct claimer *)(g->slots + g->ring * g->slot_size);
}

/* The queue whose geometry g is: the slots follow its six lines. */
static inline struct fipc_queue *queue_of_geom(const struct geom *g)
{
    return (struct fipc_queue *)(g->slots - sizeof(struct fipc_queue));
}

/* A walk over every block of records, QUEUE_CLAIMERS records each:
 *
 *   for (struct claimer *b = claimers_of(g); b; b = claimers_next(g, b, &i))
 *       ... b[0 .. QUEUE_CLAIMERS) ...
 *
 * with unsigned i = 0 (the block's place in the chain) before it.  The
 * block after b, or NULL at the end of the chain or at a link a peer wrote
 * wrong: not aligned, not wholly inside the mapping that holds the queue,
 * no block's magic there, or a chain longer than QUEUE_BLOCKS_MAX
 * (ring_mpmc.c).  *corrupt, if given, is set then. */
struct claimer *fipc__claimers_next(const struct geom *g, const struct claimer *b, unsigned *i,
                                    bool *corrupt);

static inline struct claimer *claimers_next(const struct geom *g, const struct claimer *b,
                                            unsigned *i)
{
    /* The usual queue has no added block: one load says so.  acquire, as
     * in fipc__claimers_next, which loads the link again. */
    if (*i == 0 && load_acquire(&queue_of_geom(g)->more) == 0)
        return NULL;
    return fipc__claimers_next(g, b, i, NULL);
}

/* Bytes a queue of these dimensions needs in *size (a multiple of
 * FIPC_CACHELINE): 0, -EINVAL (bad dimensions or flags) or -ENOMEM (too
 * big to address). */
int fipc__queue_footprint(size_t *size, size_t capacity, size_t max_item, unsigned flags);

/* Set up a queue in mem (aligned to FIPC_CACHELINE, *size bytes as
 * fipc__queue_footprint said), for dimensions it accepted. */
fipc_queue *fipc__queue_init(void *mem, size_t capacity, size_t max_item, unsigned flags);

/* A put in two phases, for a layer that must act between claiming the
 * slots and publishing the messages (the JoinableQueue counts them):
 *
 *   k = fipc__queue_put_claim(q, items, n, &c); k > 0 slots claimed for
 *                                         items[0..k), or -EAGAIN (full),
 *                                         -EPIPE (closed), -EINVAL,
 *                                         -EMSGSIZE, -EPROTO (as any put)
 *   ... c.claim.closed: the put will fail whatever happens ...
 *   r = fipc__queue_put_commit(q, &c, items); copy items[0..k) and publish:
 *                                         k, or -EPIPE if the queue was
 *                                         closed and the messages will
 *                                         never be read
 *
 * A claim must be committed, and soon: consumers wait for it.  Between the
 * two the thread looks up no other queue: the claim points into its view
 * of this one. */
struct queue_claim {
    uint64_t pos; /* the first position claimed */
    uint32_t k;   /* how many */
    bool closed;  /* known at claim time to have lost to close */
};

struct fipc__put_claim {
    struct queue_claim claim;
    const struct geom *g; /* this thread's view of the queue's geometry */
};

int fipc__queue_put_claim(fipc_queue *q, const struct iovec *items, size_t n,
                          struct fipc__put_claim *c);
int fipc__queue_put_commit(fipc_queue *q, const struct fipc__put_claim *c,
                           const struct iovec *items);

/* fipc_queue_get and fipc_queue_get_many, for a layer that counts: *counted
 * is raised by the counted tombstones the call passed (ring.h,
 * TOMBSTONE_COUNTED), whatever it returns. */
int fipc__queue_get_counted(fipc_queue *q, void *buf, size_t cap, size_t *len, int64_t timeout_ns,
                            size_t *counted);
int fipc__queue_get_many_counted(fipc_queue *q, void *buf, size_t stride, size_t *lens, size_t n,
                                 int64_t timeout_ns, size_t *counted);

/* This thread's view of q's geometry (ring.h), or NULL if q is no valid
 * queue. */
const struct geom *fipc__queue_view(const fipc_queue *q);

/* Run try(ctx) until it answers other than -EAGAIN, sleeping while the
 * queue is full (eventcount.h, ec_block). */
int fipc__queue_block_put(fipc_queue *q, ec_try_fn try, void *ctx, int64_t timeout_ns);

#endif
