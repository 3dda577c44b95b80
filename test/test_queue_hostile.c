/*
 * test_queue_hostile.c - a peer that writes garbage into a queue's shared
 * memory can make calls fail (-EPROTO, -EINVAL) or time out, never write
 * past the caller's buffers, read outside the arena, crash or spin.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/wait.h>

#include <fipc.h>

#include "common.h"
#include "jqueue_impl.h"
#include "ring.h"

#define HOSTILE_TIMEOUT_NS ((int64_t)20000000) /* 20 ms: long enough to spin and sleep */

TestSuite(queue_hostile, .timeout = 60);

static fipc_arena *arena;

static fipc_queue *new_queue(size_t capacity, size_t max_item, unsigned flags)
{
    if (!arena) cr_assert_eq(fipc_arena_create(&arena, "hostile", 1 << 20), 0);
    fipc_queue *q;
    cr_assert_eq(fipc_queue_create(&q, arena, capacity, max_item, flags), 0);
    return q;
}

static struct slot *slot_of(fipc_queue *q, uint64_t pos)
{
    const struct geom g = geom_of(q);
    return slot_at(&g, pos);
}

/* A get buffer with a guard zone behind it that must stay untouched. */
struct guarded {
    unsigned char buf[8];
    unsigned char guard[8192];
};

static void expect_guard_intact(const struct guarded *b)
{
    for (size_t i = 0; i < sizeof b->guard; i++)
        cr_assert_eq(b->guard[i], 0xa5, "guard byte %zu overwritten", i);
}

static void slot_length_beyond_max_item_is_refused(unsigned flags)
{
    fipc_queue *q = new_queue(4, 8, flags);
    cr_assert_eq(fipc_queue_put(q, "12345678", 8, 0), 0);
    slot_of(q, 0)->len = 4096; /* a peer claims a 4 KiB message */

    struct guarded b;
    memset(&b, 0xa5, sizeof b);
    size_t len = 0;
    cr_assert_eq(fipc_queue_get(q, b.buf, sizeof b.buf, &len, 0), -EPROTO);
    expect_guard_intact(&b);

    /* The corrupt slot was consumed; the queue carries on. */
    cr_assert_eq(fipc_queue_put(q, "abcdefgh", 8, 0), 0);
    cr_assert_eq(fipc_queue_get(q, b.buf, sizeof b.buf, &len, 0), 0);
    cr_assert(len == 8 && memcmp(b.buf, "abcdefgh", 8) == 0);
    expect_guard_intact(&b);
}

Test(queue_hostile, mpmc_slot_length_beyond_max_item_gives_eproto_and_copies_nothing)
{
    slot_length_beyond_max_item_is_refused(0);
}

Test(queue_hostile, spsc_slot_length_beyond_max_item_gives_eproto_and_copies_nothing)
{
    slot_length_beyond_max_item_is_refused(FIPC_QUEUE_SPSC);
}

static void batch_keeps_good_messages_around_a_corrupt_one(unsigned flags)
{
    fipc_queue *q = new_queue(8, 8, flags);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(fipc_queue_put(q, &i, sizeof i, 0), 0);
    slot_of(q, 1)->len = UINT32_MAX - 1;
    unsigned char buf[3][8];
    size_t lens[3];
    cr_assert_eq(fipc_queue_get_many(q, buf, 8, lens, 3, 0), 2);
    int a, b;
    memcpy(&a, buf[0], sizeof a);
    memcpy(&b, buf[1], sizeof b);
    cr_assert(a == 0 && b == 2 && lens[0] == sizeof a && lens[1] == sizeof b);
    cr_assert_eq(fipc_queue_get_many(q, buf, 8, lens, 3, 0), -EAGAIN);
}

Test(queue_hostile, mpmc_batch_get_skips_a_corrupt_slot_and_keeps_the_others)
{
    batch_keeps_good_messages_around_a_corrupt_one(0);
}

Test(queue_hostile, spsc_batch_get_skips_a_corrupt_slot_and_keeps_the_others)
{
    batch_keeps_good_messages_around_a_corrupt_one(FIPC_QUEUE_SPSC);
}

/* A process that first meets the queue after a peer changed its
 * dimensions: every call refuses it. */
static int corrupt_dimensions_child(int i, void *arg)
{
    fipc_queue *q = arg;
    char buf[64];
    size_t len, lens[1];
    struct iovec it = {buf, 1};
    CHILD_CHECK(fipc_queue_put(q, "x", 1, HOSTILE_TIMEOUT_NS) == -EPROTO, 1);
    CHILD_CHECK(fipc_queue_get(q, buf, sizeof buf, &len, HOSTILE_TIMEOUT_NS) == -EPROTO, 2);
    CHILD_CHECK(fipc_queue_put_many(q, &it, 1, 0) == -EPROTO, 3);
    CHILD_CHECK(fipc_queue_get_many(q, buf, sizeof buf, lens, 1, 0) == -EPROTO, 4);
    return CHILD_OK;
}

static void dimensions_refused(void (*corrupt)(fipc_queue *q))
{
    fipc_queue *q = new_queue(4, 16, 0);
    corrupt(q);
    test_expect_ok(test_fork(corrupt_dimensions_child, 0, q));
}

static void huge_capacity(fipc_queue *q)
{
    /* consistent with itself, but far larger than the arena */
    q->capacity = (uint64_t)1 << 30;
    q->ring = (uint64_t)1 << 30;
    q->mask = q->ring - 1;
}

static void huge_item(fipc_queue *q)
{
    q->max_item = (uint64_t)1 << 40;
    q->slot_size = ((uint64_t)1 << 40) + 8;
}

static void zero_capacity(fipc_queue *q)
{
    q->capacity = 0;
}

static void unknown_flags(fipc_queue *q)
{
    q->flags = 0x80;
}

Test(queue_hostile, a_capacity_beyond_the_arena_is_refused_with_eproto)
{
    dimensions_refused(huge_capacity);
}

Test(queue_hostile, an_item_size_beyond_the_arena_is_refused_with_eproto)
{
    dimensions_refused(huge_item);
}

Test(queue_hostile, a_zero_capacity_is_refused_with_eproto)
{
    dimensions_refused(zero_capacity);
}

Test(queue_hostile, unknown_flags_are_refused_with_eproto)
{
    dimensions_refused(unknown_flags);
}

Test(queue_hostile, dimensions_changed_after_first_use_are_ignored)
{
    fipc_queue *q = new_queue(4, 8, 0);
    char buf[8];
    size_t len;
    cr_assert_eq(fipc_queue_put(q, "a", 1, 0), 0);
    /* The geometry this thread validated stays in force. */
    q->mask = UINT64_MAX;
    q->slot_size = (uint64_t)1 << 40;
    q->max_item = (uint64_t)1 << 40;
    cr_assert_eq(fipc_queue_get(q, buf, sizeof buf, &len, 0), 0);
    cr_assert(len == 1 && buf[0] == 'a');
    cr_assert_eq(fipc_queue_put(q, "toolong!!", 9, 0), -EMSGSIZE);
    cr_assert_eq(fipc_queue_put(q, "b", 1, 0), 0);
    cr_assert_eq(fipc_queue_get(q, buf, sizeof buf, &len, 0), 0);
    cr_assert(len == 1 && buf[0] == 'b');
}

Test(queue_hostile, a_pointer_that_is_no_queue_gives_einval)
{
    fipc_queue *q = new_queue(4, 8, 0);
    char buf[8];
    size_t len;
    /* zeroed arena memory, and memory outside every arena */
    void *zeros = fipc_arena_alloc(arena, 4096, 64);
    static _Alignas(64) unsigned char outside[4096];
    cr_assert_eq(fipc_queue_put(zeros, "a", 1, 0), -EINVAL);
    cr_assert_eq(fipc_queue_get(zeros, buf, sizeof buf, &len, 0), -EINVAL);
    cr_assert_eq(fipc_queue_put((fipc_queue *)outside, "a", 1, 0), -EINVAL);
    cr_assert_eq(fipc_queue_get((fipc_queue *)outside, buf, sizeof buf, &len, 0), -EINVAL);
    /* a pointer into the middle of a queue */
    cr_assert_eq(fipc_queue_put((fipc_queue *)((char *)q + 64), "a", 1, 0), -EINVAL);
}

static void positions_are_bounded(unsigned flags, size_t capacity)
{
    fipc_queue *q = new_queue(capacity, 8, flags);
    char buf[8];
    size_t len;
    /* head far ahead of tail: a put neither spins nor writes anywhere */
    q->head = q->tail + 1000;
    q->head_cache = q->head;
    int r = fipc_queue_put(q, "x", 1, HOSTILE_TIMEOUT_NS);
    cr_assert(r == 0 || r == -ETIMEDOUT, "put: %d", r);
    /* tail far ahead of head, slots empty: a get waits, then gives up */
    q->head = 0;
    q->tail = 1u << 20;
    r = fipc_queue_get(q, buf, sizeof buf, &len, HOSTILE_TIMEOUT_NS);
    cr_assert(r == 0 || r == -ETIMEDOUT || r == -EPROTO, "get: %d", r);
}

Test(queue_hostile, mpmc_positions_written_by_a_peer_never_make_calls_spin)
{
    positions_are_bounded(0, 3);
    positions_are_bounded(0, 4);
}

Test(queue_hostile, spsc_positions_written_by_a_peer_never_make_calls_spin)
{
    positions_are_bounded(FIPC_QUEUE_SPSC, 3);
    positions_are_bounded(FIPC_QUEUE_SPSC, 4);
}

static void turns_are_bounded(unsigned flags)
{
    fipc_queue *q = new_queue(4, 8, flags);
    char buf[8];
    size_t len;
    /* Every turn "ahead" of every position: looks claimed by others. */
    for (uint64_t p = 0; p < 4; p++)
        slot_of(q, p)->seq = 0x40000000u + (uint32_t)p;
    int r = fipc_queue_put(q, "x", 1, HOSTILE_TIMEOUT_NS);
    cr_assert(r == -ETIMEDOUT, "put: %d", r);
    r = fipc_queue_get(q, buf, sizeof buf, &len, HOSTILE_TIMEOUT_NS);
    cr_assert(r == -ETIMEDOUT || r == -EPROTO, "get: %d", r);
    cr_assert_eq(fipc_queue_close(q), 0);
    r = fipc_queue_get(q, buf, sizeof buf, &len, HOSTILE_TIMEOUT_NS);
    cr_assert(r == -EPIPE || r == -ETIMEDOUT || r == -EPROTO, "get after close: %d", r);
}

Test(queue_hostile, mpmc_turns_written_by_a_peer_never_make_calls_spin)
{
    turns_are_bounded(0);
}

Test(queue_hostile, spsc_turns_written_by_a_peer_never_make_calls_spin)
{
    turns_are_bounded(FIPC_QUEUE_SPSC);
}

Test(queue_hostile, spsc_end_word_written_by_a_peer_never_makes_get_spin)
{
    fipc_queue *q = new_queue(4, 8, FIPC_QUEUE_SPSC);
    char buf[8];
    size_t len;
    cr_assert_eq(fipc_queue_close(q), 0);
    /* "delivered up to 5", though nothing was put */
    q->end = (UINT64_C(1) << 62) | 5;
    int r = fipc_queue_get(q, buf, sizeof buf, &len, HOSTILE_TIMEOUT_NS);
    cr_assert(r == -EPROTO || r == -EPIPE, "get: %d", r);
}

Test(queue_hostile, jqueue_ignores_a_queue_offset_written_by_a_peer)
{
    if (!arena) cr_assert_eq(fipc_arena_create(&arena, "hostile", 1 << 20), 0);
    fipc_jqueue *j;
    cr_assert_eq(fipc_jqueue_create(&j, arena, 4, 8, 0), 0);
    *(uint64_t *)j = (uint64_t)1 << 40; /* the queue's offset, first in the layout */
    char buf[8];
    size_t len;
    cr_assert_eq(fipc_jqueue_put(j, "q", 1, 0), 0);
    cr_assert_eq(fipc_jqueue_get(j, buf, sizeof buf, &len, 0), 0);
    cr_assert(len == 1 && buf[0] == 'q');
    cr_assert_eq(fipc_jqueue_task_done(j), 0);
    cr_assert_eq(fipc_jqueue_join(j, 0), 0);
}

Test(queue_hostile, a_queue_at_the_address_of_a_closed_one_gets_its_own_geometry)
{
    fipc_arena *a, *b;
    fipc_queue *qa, *qb;
    cr_assert_eq(fipc_arena_create(&a, "first", 1 << 20), 0);
    /* SPSC: an MPMC queue this thread used would keep the range reserved
     * (its claimer record), and nothing could land there again. */
    cr_assert_eq(fipc_queue_create(&qa, a, 4, 8, FIPC_QUEUE_SPSC), 0);
    cr_assert_eq(fipc_queue_put(qa, "a", 1, 0), 0); /* this thread now has qa's geometry */
    fipc_arena_close(a);
    cr_assert_eq(fipc_arena_create(&b, "second", 1 << 20), 0);
    cr_assert_eq(fipc_queue_create(&qb, b, 64, 256, 0), 0);
    /* The kernel hands the freed range out again; without that this test
     * proves nothing, so it says so. */
    cr_assert_eq((void *)qa, (void *)qb, "the second arena was mapped elsewhere");
    char msg[256];
    memset(msg, 'm', sizeof msg);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(fipc_queue_put(qb, msg, sizeof msg, 0), 0, "put %d", i);
    cr_assert_eq(fipc_queue_put(qb, msg, sizeof msg, 0), -EAGAIN);
    char buf[256];
    size_t len;
    for (int i = 0; i < 64; i++) {
        cr_assert_eq(fipc_queue_get(qb, buf, sizeof buf, &len, 0), 0);
        cr_assert(len == sizeof msg && memcmp(buf, msg, len) == 0);
    }
    fipc_arena_close(b);
}

static int close_then_lock(int i, void *arg)
{
    fipc_arena *a;
    fipc_queue *q;
    CHILD_CHECK(fipc_arena_create(&a, "pinned", 1 << 20) == 0, 1);
    CHILD_CHECK(fipc_queue_create(&q, a, 4, 8, 0) == 0, 2);
    char buf[8];
    size_t len;
    CHILD_CHECK(fipc_queue_put(q, "a", 1, 0) == 0, 3);
    CHILD_CHECK(fipc_queue_get(q, buf, sizeof buf, &len, 0) == 0, 4);
    fipc_arena_close(a); /* this thread holds a claimer record in it */
    /* Its robust list still reaches into the closed arena's range: taking
     * and releasing another lock rewrites links there. */
    static fipc_lock l;
    CHILD_CHECK(fipc_lock_init(&l) == 0, 5);
    CHILD_CHECK(fipc_lock_acquire(&l, 0) == 0, 6);
    CHILD_CHECK(fipc_lock_release(&l) == 0, 7);
    /* A new arena does not land on the old range. */
    fipc_arena *b;
    CHILD_CHECK(fipc_arena_create(&b, "next", 1 << 20) == 0, 8);
    CHILD_CHECK((void *)fipc_arena_alloc(b, 64, 64) != (void *)q, 9);
    return CHILD_OK;
}

Test(queue_hostile, closing_an_arena_whose_mpmc_queue_this_thread_used_leaves_its_locks_working)
{
    test_expect_ok(test_fork(close_then_lock, 0, NULL));
}

/* The links to added blocks of claimer records (queue_impl.h) that a peer
 * wrote wrong: a new thread's walk stops at the bad link, and its calls
 * carry on.  Each case sets q->more (and a fake block the arena holds). */
enum bad_link { LINK_ODD, LINK_FAR, LINK_INTO_QUEUE, LINK_BAD_MAGIC, LINK_LOOP, LINK_CASES };

static void corrupt_link(fipc_queue *q, enum bad_link how)
{
    struct claimer_block *k = fipc_arena_alloc(arena, sizeof *k, FIPC_CACHELINE);
    cr_assert_not_null(k);
    uint64_t off = (uint64_t)((char *)k - (char *)q);
    switch (how) {
    case LINK_ODD:
        q->more = off + 1;
        return;
    case LINK_FAR:
        q->more = UINT64_C(1) << 62;
        return;
    case LINK_INTO_QUEUE:
        q->more = FIPC_CACHELINE; /* line 1: inside the queue's own lines */
        return;
    case LINK_BAD_MAGIC:
        k->magic = ~CLAIM_BLOCK_MAGIC;
        break;
    case LINK_LOOP:
        /* A block that looks right, linked to itself. */
        k->magic = CLAIM_BLOCK_MAGIC;
        k->next = off;
        break;
    default:
        break;
    }
    k->count = QUEUE_CLAIMERS;
    k->index = 1;
    q->more = off;
}

struct link_case {
    fipc_queue *q;
    uint32_t ready, go;
};

static void *put_get_in_a_new_thread(void *arg)
{
    fipc_queue *q = arg;
    int v = 42, w = -1;
    size_t len;
    if (fipc_queue_put(q, &v, sizeof v, 0) != 0) return (void *)1;
    if (fipc_queue_get(q, &w, sizeof w, &len, 0) != 0 || w != 42) return (void *)2;
    return NULL;
}

static void *hold_a_record_in_a_thread(void *arg)
{
    struct link_case *c = arg;
    int v;
    size_t len;
    intptr_t r = fipc_queue_get(c->q, &v, sizeof v, &len, 0) == -EAGAIN ? 0 : 1;
    __atomic_add_fetch(&c->ready, 1, __ATOMIC_RELEASE);
    if (!test_wait_until_at_least(&c->go, 1, FIPC_SEC(30))) r = 2;
    return (void *)r;
}

Test(queue_hostile, mpmc_a_bad_link_to_more_claimer_records_ends_the_walk_and_calls_carry_on)
{
    for (int how = 0; how < LINK_CASES; how++) {
        /* With records free, and with every record held by a live thread
         * (then a new thread would add a block after the bad link: it
         * claims without a record instead). */
        for (int full = 0; full < 2; full++) {
            struct link_case c = {.q = new_queue(4, sizeof(int), 0)};
            pthread_t holders[QUEUE_CLAIMERS], t;
            int n = full ? QUEUE_CLAIMERS : 0;
            for (int i = 0; i < n; i++)
                cr_assert_eq(pthread_create(&holders[i], NULL, hold_a_record_in_a_thread, &c), 0);
            cr_assert(test_wait_until_at_least(&c.ready, (uint32_t)n, FIPC_SEC(30)));
            corrupt_link(c.q, (enum bad_link)how);
            void *r;
            cr_assert_eq(pthread_create(&t, NULL, put_get_in_a_new_thread, c.q), 0);
            cr_assert_eq(pthread_join(t, &r), 0);
            cr_assert_null(r, "case %d, full %d: %p", how, full, r);
            /* The looping block itself is well formed: its free records
             * serve, and the walk ends at its link to itself. */
            cr_assert_eq(c.q->unrecorded, full && how != LINK_LOOP, "case %d", how);
            __atomic_store_n(&c.go, 1, __ATOMIC_RELEASE);
            for (int i = 0; i < n; i++) {
                cr_assert_eq(pthread_join(holders[i], &r), 0);
                cr_assert_null(r);
            }
        }
    }
}
