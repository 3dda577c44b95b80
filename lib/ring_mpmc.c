/*
 * ring_mpmc.c - repairing MPMC claims whose holder died (ring_mpmc.h,
 * Death), out of line: it runs only in calls that already wait.
 *
 * Models: docs/models/ring_mpmc.pml (the repair of a producer's claim) and
 * docs/models/ring_mpmc_get.pml (a consumer's, re-published; one position
 * per claim, no close)
 *
 * A producer that dies between claiming positions (its CAS on tail) and
 * publishing them leaves them unpublished: consumers stop there.  A
 * consumer that dies between claiming (CAS on head) and releasing leaves
 * its slots full: producers stop there one lap later.  Every thread that
 * uses an MPMC queue holds a claimer record (queue_impl.h) through a robust
 * lock, and announces in it the positions it is about to claim before its
 * CAS, clearing the announcement once they are handed over.  The kernel
 * marks the record's lock OWNER_DIED the moment the thread dies, so "dead"
 * is a fact read from memory, never a guess from a timeout.
 *
 * A waiter that finds a held claim in its way (queue.c asks, once it has
 * spun, and again after each sleep) repairs position p when, under the
 * queue's repair lock:
 *   (a) p is claimed: tail > p (for a put's claim) or head > p (a get's);
 *   (b) the slot at p still shows the claim unfinished;
 *   (c) some dead record announces p, still holds that announcement once
 *       its owner is seen dead, and no live record announces p;
 *   (d) p is less than a ring behind tail or head (an unfinished claim
 *       always is: the next lap's producers wait for its slot).
 * The true claimer of p announced it before its CAS, and clears it only
 * after handing p over; a waiter that sees the CAS (its acquire load of
 * tail or head pairs with the CAS, a release, RA1 / RA2) therefore sees the
 * announcement or, if it reads the announcement cleared (acquire, pairs
 * with the clearing store, RA3), the slot handed over.  So if the true
 * claimer lives, (b) or (c) fails.  A dead record's stale announcement of a
 * position it lost to another claimer changes nothing: that claimer is
 * either alive (c fails) or dead too (the repair is right).  The repair
 * tombstones an unpublished put's slot.  An unreleased get's slot still
 * holds its message, intact: the repair puts it again (republish) at the
 * position a lap on, the one the producers wait for, claiming that
 * position for the repairing thread as a put would (announced in its own
 * record, so that the repairer's death is repaired too: that claim's
 * slot shows the turn of the lap before, and its repair publishes it as
 * it is).  Only where that cannot be done (tail is not at that position,
 * or the repairer has no record, which only a thread that claims
 * unrecorded lacks) is the slot released, and its message lost with the
 * consumer that took it; a thread that needs a record (reap) leaves such a
 * slot claimed for a waiter's repair instead.  After close no producer
 * comes round to such a slot: a get that finds the queue closed and
 * drained repairs it under the same conditions by taking the message
 * itself (fipc__mpmc_adopt: copied out of the held slot, then released).
 * The dead
 * record is cleared only if no live record announced any of its positions:
 * one that did may be about to lose its CAS to the dead holder, which
 * would leave the position announced by nobody.  The model checked with
 * spin, docs/models/ring_mpmc.pml, found the need for that and for (c)'s
 * second clause.
 *
 * A put claim that the layer above had counted (its record's tally moved
 * past the base it recorded with the announcement, queue_impl.h) is
 * tombstoned as TOMBSTONE_COUNTED, which the get that passes it reports,
 * so that the JoinableQueue counts those items done: a put cut short
 * counts for nothing.
 *
 * The records grow with the threads: a thread that finds every record
 * held (or holding a dead claim that waits for its repair) adds a block of
 * QUEUE_CLAIMERS more from the arena that holds the queue (extend).
 * Without a record for every thread the argument fails, so once a thread
 * had to claim without one (the arena had no room for another block, or
 * QUEUE_BLOCKS_MAX blocks are linked), the queue stops repairing: it
 * behaves as it would without repair, and timed calls still time out.
 */
#include <linux/futex.h>

#include <fipc/lock.h>

#include "arena_impl.h"
#include "ring_mpmc.h"

/* How long a waiter sees the same held claim before it looks for a dead
 * holder: a live holder is mid-copy and about to hand it over, and looking
 * reads every record of the queue. */
#define HOLE_GRACE_NS ((int64_t)1000000) /* 1 ms */

static inline bool owner_alive(const struct claimer *r)
{
    /* relaxed: the kernel writes the word when the owner dies (clearing
     * its tid); a stale tid only delays a repair until the next look. */
    return (load_relaxed(&r->owner.word) & FUTEX_TID_MASK) != 0;
}

static bool reap(struct fipc_queue *q, const struct geom *g, struct claimer *d);

/* Raise q->records to n at least.  release: before this thread's first
 * claim, and so before any count in its record that a reader of records
 * (acquire) must include. */
static void note_record(struct fipc_queue *q, uint32_t n)
{
    uint32_t seen = load_relaxed(&q->records);
    while (seen < n && !cas_release(&q->records, &seen, n))
        ;
}

/* The header of the extension block whose records start at b. */
static struct claimer_block *block_of(const struct claimer *b)
{
    return (struct claimer_block *)((char *)b - offsetof(struct claimer_block, rec));
}

struct claimer *fipc__claimers_next(const struct geom *g, const struct claimer *b, unsigned *i,
                                    bool *corrupt)
{
    struct fipc_queue *q = queue_of_geom(g);
    /* acquire pairs with the release store that linked the block (extend),
     * made once its header and records were set up. */
    uint64_t off = load_acquire(*i == 0 ? &q->more : &block_of(b)->next);
    if (off == 0)
        return NULL;
    /* Every check on the offset before any use of the address: a peer
     * wrote it.  The chain's length is bounded, and each block's index is
     * one more than the one before, so no chain loops. */
    uintptr_t at = (uintptr_t)q + off;
    const char *end;
    struct claimer_block *k = (struct claimer_block *)at;
    if (*i + 1 >= QUEUE_BLOCKS_MAX || (off & (FIPC_CACHELINE - 1)) || off < sizeof *q ||
        at < (uintptr_t)q || !fipc__arena_bounds(k, sizeof *k, &end) ||
        load_relaxed(&k->magic) != CLAIM_BLOCK_MAGIC || load_relaxed(&k->count) != QUEUE_CLAIMERS ||
        load_relaxed(&k->index) != *i + 1) {
        if (corrupt)
            *corrupt = true;
        return NULL;
    }
    ++*i;
    return k->rec;
}

/* Take record r, number n counting through the blocks, for this thread if
 * it is free: its holder is gone and it holds no claim.  Whether it did. */
static bool take(struct fipc_queue *q, struct claimer *r, uint32_t n)
{
    /* acquire pairs with the clearing of the claim (RA3): a record whose
     * holder died mid-claim is left for the repair. */
    if (owner_alive(r) || load_acquire(&r->claim) != 0)
        return false;
    int e = fipc__lock_acquire(&r->owner, 0);
    if (e != 0 && e != -EOWNERDEAD)
        return false; /* another thread took it first */
    if (load_acquire(&r->claim) == 0) {
        fipc__arena_pin(r);
        note_record(q, n + 1);
        return true;
    }
    fipc__lock_release(&r->owner); /* died mid-claim meanwhile: repair's */
    return false;
}

/* The first free record of any block, taken for this thread; NULL if none
 * is free. */
static struct claimer *take_free(struct fipc_queue *q, const struct geom *g)
{
    unsigned i = 0;
    for (struct claimer *b = claimers_of(g); b; b = claimers_next(g, b, &i))
        for (unsigned j = 0; j < QUEUE_CLAIMERS; j++)
            if (take(q, &b[j], i * QUEUE_CLAIMERS + j))
                return &b[j];
    return NULL;
}

/* How long a thread that needs a record waits for the repair lock to add a
 * block: holders keep it for microseconds, and one that died is passed at
 * once (-EOWNERDEAD). */
#define EXTEND_LOCK_NS ((int64_t)100000000) /* 100 ms */

/* Every record is held or holds a claim for the repair: add a block of
 * QUEUE_CLAIMERS records at the end of the chain and take one, under the
 * repair lock, which keeps two threads from linking a block at the same
 * end (and jqueue.c's set_locked from missing a block's tallies).  NULL
 * if the arena has no room, the chain is at QUEUE_BLOCKS_MAX or a peer
 * broke it (a block linked after a bad link would be walked by nobody),
 * or the lock could not be had. */
static struct claimer *extend(struct fipc_queue *q, const struct geom *g)
{
    int e = fipc__lock_acquire(&q->repair, EXTEND_LOCK_NS);
    if (e != 0 && e != -EOWNERDEAD)
        return NULL;
    /* Another thread may have added a block, or freed a record, while
     * this one waited for the lock. */
    struct claimer *r = take_free(q, g);
    unsigned i = 0;
    bool corrupt = false;
    struct claimer *last = claimers_of(g);
    for (struct claimer *b = last; !r && b; b = fipc__claimers_next(g, b, &i, &corrupt))
        last = b;
    struct claimer_block *k = NULL;
    if (!r && !corrupt && i + 1 < QUEUE_BLOCKS_MAX)
        k = fipc__arena_alloc_near(q, sizeof *k, FIPC_CACHELINE);
    if (k) {
        /* The memory is zero (fipc_arena_alloc): every record free.  Its
         * tallies take the layer above's lock bit (jqueue.c) as the first
         * record has it: set_locked changes the bits under this lock. */
        uint64_t locked = load_relaxed(&claimers_of(g)->tally) & TALLY_LOCKED;
        for (unsigned j = 0; j < QUEUE_CLAIMERS; j++)
            k->rec[j].tally = locked;
        k->magic = CLAIM_BLOCK_MAGIC;
        k->count = QUEUE_CLAIMERS;
        k->index = i + 1;
        /* release: pairs with the acquire in fipc__claimers_next, so that
         * a walk that reaches the block sees it set up. */
        store_release(i == 0 ? &q->more : &block_of(last)->next, (uint64_t)((char *)k - (char *)q));
        for (unsigned j = 0; !r && j < QUEUE_CLAIMERS; j++)
            if (take(q, &k->rec[j], (i + 1) * QUEUE_CLAIMERS + j))
                r = &k->rec[j];
    }
    fipc__lock_release(&q->repair);
    return r;
}

struct claimer *fipc__mpmc_claimer(struct fipc_queue *q, const struct geom *g)
{
    unsigned i = 0;
    /* The record this thread took before its view was evicted. */
    for (struct claimer *b = claimers_of(g); b; b = claimers_next(g, b, &i))
        for (unsigned j = 0; j < QUEUE_CLAIMERS; j++)
            if (fipc__lock_held_by_self((const fipc_lock *)&b[j].owner))
                return &b[j];
    struct claimer *r = take_free(q, g);
    if (r)
        return r;
    /* None free: a record whose holder died mid-claim keeps its claim
     * until a waiter repairs it, but one that lost its CAS and died
     * announces positions nobody waits behind, and a dead producer's
     * unpublished slots can be tombstoned now as well as later.  Settle
     * those; a dead consumer's held slots stay for the repair, which puts
     * their messages again. */
    i = 0;
    for (struct claimer *b = claimers_of(g); b; b = claimers_next(g, b, &i))
        for (unsigned j = 0; j < QUEUE_CLAIMERS; j++)
            if (!owner_alive(&b[j]) && load_acquire(&b[j].claim) != 0 && reap(q, g, &b[j]) &&
                take(q, &b[j], i * QUEUE_CLAIMERS + j))
                return &b[j];
    r = extend(q, g);
    if (r)
        return r;
    /* seq_cst: before this thread's first claim (a CAS, seq_cst or
     * release), so that a repairer that sees the claim sees this too. */
    store_seqcst(&q->unrecorded, 1);
    return NULL;
}

/* Whether some live record announces position p of side (a get's claim or
 * a put's); *dead and *seen receive a dead record that does, if any, and
 * the claim word read from it. */
static bool live_claim(const struct geom *g, uint64_t p, uint64_t side, struct claimer **dead,
                       uint64_t *seen)
{
    unsigned i = 0;
    for (struct claimer *b = claimers_of(g); b; b = claimers_next(g, b, &i)) {
        for (struct claimer *r = b; r < b + QUEUE_CLAIMERS; r++) {
            /* RA3: acquire pairs with the announcing and clearing stores. */
            uint64_t w = load_acquire(&r->claim);
            if (!claim_covers(w, p, side))
                continue;
            /* A holder without a robust list is never marked by the kernel:
             * its record's lock is checked as a waiter on it would be (a
             * liveness check of the recorded owner, which reads /proc only for
             * such a record). */
            if (owner_alive(r) && !fipc__lock_owner_gone(&r->owner))
                return true;
            if (dead) {
                *dead = r;
                *seen = w;
            }
        }
    }
    return false;
}

/* Position x is a dead consumer's claim, its slot still full (turn x + 1):
 * deliver its message to another consumer instead of releasing the slot.
 * Under the repair lock, when the producers of the next lap wait for the
 * slot (tail == x + ring, which no producer can move past while the slot
 * is held, A2), claim x + ring for this thread as a producer would
 * (announced first, so that its own death is repairable too), and publish
 * the slot for x + ring as it is: the message, or the tombstone (counted
 * or not), that it held.  Consumers then receive it after every message
 * put before it.  Closed or not: a get that finds the queue closed and
 * drained takes the repair lock and then looks at the ring again
 * (fipc__mpmc_adopt), so it sees the message.  Whether it did; if not
 * (this thread has no record, or tail is elsewhere), the caller releases
 * the slot. */
static bool republish(struct fipc_queue *q, const struct geom *g, uint64_t x)
{
    uint64_t y = x + g->ring;
    /* relaxed: an early answer; the CAS decides. */
    uint64_t t = load_relaxed(&q->tail);
    if (!g->me || t != y)
        return false;
    claim_announce(g, claim_word(y, CLAIM_REPUB_K, 0));
    /* C1: seq_cst, as a put's claim, and a release of the announcement
     * to a repairer that reads tail (RA1). */
    if (!cas_seqcst(&q->tail, &t, y + 1)) {
        claim_announce(g, 0);
        return false;
    }
    struct slot *s = slot_at(g, y);
    /* R1: release; pairs with the acquire (A1) of the consumer of y.  The
     * message was complete before the dead consumer's A1, and this thread
     * read the turn with acquire (repair_record). */
    store_release(&s->seq, turn(y + 1));
    claim_announce(g, 0);
    ec_notify(&q->not_empty);
    return true;
}

/* Where a get that found the queue closed takes a dead consumer's
 * messages (fipc__mpmc_adopt): the caller's buffer, n messages at most. */
struct adopt {
    const struct get_buf *b;
    size_t n;
    size_t got;     /* messages copied into b */
    size_t counted; /* counted tombstones passed */
};

/* The positions that dead record d announced in claim word w and that are
 * claimed, unfinished and announced by no live record: hand each over as
 * its holder would have, then clear d, unless a live record announced one
 * of them (it may be about to lose its CAS to the dead holder, and the
 * position would then have no record that names it).  near: a position
 * at or after the announced first one, less than 2^32 after it; limit:
 * tail or head as read (a).  A dead consumer's slot goes to to, if given
 * and not full (the slots that do not fit stay claimed by d for the next
 * call), else to a producer (republish), else, if release, the slot is
 * released and its message lost; without release it stays claimed by d.
 * Returns how many positions were repaired.
 *
 * d's owner was seen dead after w was read, but w may predate the owner's
 * last announcement (it handed those positions over, announced others and
 * died): only if d still holds w is w what the dead holder left. */
static unsigned repair_record(struct fipc_queue *q, const struct geom *g, struct claimer *d,
                              uint64_t w, uint64_t near, uint64_t limit, uint64_t side,
                              struct adopt *to, bool release)
{
    if (owner_alive(d) || load_acquire(&d->claim) != w)
        return 0;
    uint32_t k = claim_len(w);
    if (k > g->ring)
        k = (uint32_t)g->ring; /* a peer wrote it; a ring is all a claim can hold */
    uint64_t first = near - (uint32_t)(turn(near) - (uint32_t)w);
    /* Whether the layer above counted this put claim (queue_impl.h): the
     * dead holder's tally moved past the base it recorded with the
     * announcement.  Both words are final, the holder being dead. */
    uint32_t tomb = side == 0 && tally_count(load_relaxed(&d->tally)) !=
                                     tally_count(load_relaxed(&d->base))
                        ? TOMBSTONE_COUNTED
                        : TOMBSTONE;
    unsigned fixed = 0;
    bool kept = false;
    for (uint64_t x = first; x < first + k; x++) {
        /* A claim that is unfinished lies less than a ring behind both
         * positions: the producers of the next lap wait for its slot.
         * Anything else is no claim at all, or the same slot's turn 2^32
         * positions away. */
        uint64_t behind = limit - x;
        if ((int64_t)behind <= 0 || behind > g->ring)
            continue;
        if (live_claim(g, x, side, NULL, NULL)) {
            kept = true;
            continue;
        }
        struct slot *s = slot_at(g, x);
        /* acquire: as A1/A2, the slot's state before it is changed. */
        uint32_t seq = load_acquire(&s->seq);
        if (side == 0 && claim_repub(w) && seq == turn(x + 1 - g->ring)) {
            /* A repairer that died re-publishing x: finish it (closed or
             * not, as republish does). */
            store_release(&s->seq, turn(x + 1)); /* R1, for the dead repairer */
            fixed++;
        } else if (side == 0 && !claim_repub(w) && seq == turn(x)) {
            s->len = tomb;
            store_release(&s->seq, turn(x + 1)); /* R1, for the dead producer */
            fixed++;
        } else if (side == CLAIM_GET && seq == turn(x + 1)) {
            if (to && to->got == to->n) {
                kept = true; /* for the adopter's next call */
                continue;
            }
            if (to) {
                /* The slot is held (turn x + 1, the claim unreleased):
                 * nobody else reads or writes it until the store below. */
                enum drained got = slot_drain(g, to->b, to->got, s);
                to->got += got == DRAINED;
                to->counted += got == SKIPPED_COUNTED;
            }
            if (to || !republish(q, g, x)) {
                if (!to && !release) {
                    kept = true; /* its message stays for a repair that can put it again */
                    continue;
                }
                store_release(&s->seq, turn(x + g->ring)); /* R2, for the dead consumer */
            }
            fixed++;
        }
    }
    /* RA3: release; the slots as repaired, to the next reader of the record. */
    if (!kept)
        store_release(&d->claim, 0);
    return fixed;
}

/* Repair the claim in the way at position p of side, if its holder died. */
static bool repair(struct fipc_queue *q, const struct geom *g, uint64_t p, uint64_t side)
{
    int e = fipc__lock_acquire(&q->repair, 0);
    if (e != 0 && e != -EOWNERDEAD)
        return false; /* someone else is repairing */
    unsigned fixed = 0;
    /* RA1 / RA2: acquire pairs with the claim's CAS (a release). */
    uint64_t limit = load_acquire(side == 0 ? &q->tail : &q->head);
    struct claimer *dead = NULL;
    uint64_t w = 0;
    if (!load_relaxed(&q->unrecorded) && (int64_t)(limit - p) > 0 &&
        !live_claim(g, p, side, &dead, &w) && dead)
        fixed = repair_record(q, g, dead, w, p, limit, side, NULL, true);
    fipc__lock_release(&q->repair);
    if (fixed)
        ec_notify(side == 0 ? &q->not_empty : &q->not_full);
    return fixed > 0;
}

int fipc__mpmc_stuck(struct fipc_queue *q, const struct geom *g, bool put_side, struct hole *h)
{
    if (g->spsc)
        return -EAGAIN;
    /* The position in the way and the turn it shows while held: a
     * consumer waits at head behind a put's claim (turn p: claimed, not
     * published); a producer waits at tail behind a get's claim one lap
     * earlier (turn p + 1: read, not released). */
    uint64_t p, side;
    uint32_t held;
    if (put_side) {
        p = load_relaxed(&q->tail) - g->ring;
        side = CLAIM_GET;
        held = turn(p + 1);
        /* relaxed: (a) is checked again under the repair lock. */
        if ((int64_t)(load_relaxed(&q->head) - p) <= 0)
            return -EAGAIN; /* simply full */
    } else {
        p = load_relaxed(&q->head);
        side = 0;
        held = turn(p);
        if ((int64_t)(load_relaxed(&q->tail) - p) <= 0)
            return -EAGAIN; /* simply empty */
    }
    /* relaxed: compared only; the repair reads it again with acquire.  A
     * consumer also waits behind a re-publication (republish) between its
     * claim and its store: the slot still shows the turn of the lap
     * before, p + 1 - ring, which with tail > p nothing else leaves. */
    uint32_t seq = load_relaxed(&slot_at(g, p)->seq);
    if (seq != held && (put_side || seq != turn(p + 1 - g->ring)))
        return -EAGAIN; /* moved on meanwhile: look again */
    int64_t now = fipc_now_ns();
    if (h->pos != p || h->since == 0) {
        *h = (struct hole){p, now};
        return -EINPROGRESS;
    }
    if (now - h->since < HOLE_GRACE_NS)
        return -EINPROGRESS;
    if (!repair(q, g, p, side))
        return -EINPROGRESS;
    *h = (struct hole){0};
    return 0;
}

/* Settle dead record d's claim for a thread that needs a record: repair
 * what it still holds (repair_record skips what others hold or nobody
 * claimed), then clear it.  A dead consumer's held slots are not
 * released (this thread has no record to put their messages again with):
 * d then keeps its claim, for a waiter's repair.  Whether d is free now. */
static bool reap(struct fipc_queue *q, const struct geom *g, struct claimer *d)
{
    int e = fipc__lock_acquire(&q->repair, 0);
    if (e != 0 && e != -EOWNERDEAD)
        return false;
    bool done = false;
    uint64_t w = load_acquire(&d->claim);
    if (!owner_alive(d) && w != 0) {
        uint64_t side = w & CLAIM_GET;
        /* RA1 / RA2, as in repair. */
        uint64_t limit = load_acquire(side ? &q->head : &q->tail);
        unsigned fixed = repair_record(q, g, d, w, limit, limit, side, NULL, false);
        if (fixed)
            ec_notify(side ? &q->not_full : &q->not_empty);
        done = load_relaxed(&d->claim) == 0;
    }
    fipc__lock_release(&q->repair);
    return done;
}

/* How long a get that found the queue closed waits for the repair lock
 * before it leaves dead consumers' messages to whoever holds it: a holder
 * that lives repairs within microseconds; one that died is passed at once
 * (-EOWNERDEAD). */
#define ADOPT_LOCK_NS ((int64_t)100000000) /* 100 ms */

int fipc__mpmc_adopt(struct fipc_queue *q, const struct geom *g, const struct get_buf *b, size_t n,
                     size_t *counted)
{
    /* relaxed: as in repair; a thread that claimed without a record set
     * it before its first claim, and then no claim is repaired. */
    if (g->spsc || load_relaxed(&q->unrecorded))
        return 0;
    /* No record announces a get: nothing to take, and no lock to take for
     * it (the usual end of a drain).  RA3: acquire pairs with the clearing
     * store, which a re-publication makes after its CAS on tail, so that
     * the look at the ring below sees what it put. */
    unsigned i = 0;
    bool gets = false;
    for (struct claimer *r = claimers_of(g); r && !gets; r = claimers_next(g, r, &i))
        for (unsigned j = 0; j < QUEUE_CLAIMERS && !gets; j++)
            gets = (load_acquire(&r[j].claim) & CLAIM_GET) != 0;
    if (!gets)
        return mpmc_closed_and_drained(q) ? 0 : -EAGAIN;
    int e = fipc__lock_acquire(&q->repair, ADOPT_LOCK_NS);
    if (e != 0 && e != -EOWNERDEAD)
        return 0;
    struct adopt to = {b, n, 0, 0};
    unsigned fixed = 0;
    i = 0;
    for (struct claimer *r = claimers_of(g); r && to.got < n; r = claimers_next(g, r, &i)) {
        for (struct claimer *d = r; d < r + QUEUE_CLAIMERS && to.got < n; d++) {
            /* RA3: acquire pairs with the announcing and clearing stores. */
            uint64_t w = load_acquire(&d->claim);
            if (!(w & CLAIM_GET) || (owner_alive(d) && !fipc__lock_owner_gone(&d->owner)))
                continue;
            /* RA2, as in repair: after w, so that head includes its claim. */
            uint64_t limit = load_acquire(&q->head);
            fixed += repair_record(q, g, d, w, limit, limit, CLAIM_GET, &to, true);
        }
    }
    /* A message put again before this thread took the lock (republish
     * holds it) lies beyond head: look again.  seq_cst: as in
     * mpmc_closed_and_drained. */
    bool again = to.got == 0 && !mpmc_closed_and_drained(q);
    fipc__lock_release(&q->repair);
    if (fixed)
        ec_notify(&q->not_full);
    *counted += to.counted;
    return again ? -EAGAIN : (int)to.got;
}
