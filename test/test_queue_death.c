/*
 * test_queue_death.c - a process that dies inside a queue call, at any
 * instruction, never stalls the others.
 *
 * Deaths at one exact instruction are played by leaving shared memory as
 * the dead process would have left it; deaths at random moments are real
 * SIGKILLs.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include <fipc.h>

#include "common.h"
#include "ring.h"

TestSuite(queue_death, .timeout = 60);

static fipc_queue *new_queue(size_t capacity, size_t max_item, unsigned flags)
{
    static fipc_arena *arena;
    if (!arena)
        cr_assert_eq(fipc_arena_create(&arena, "death", 4 << 20), 0);
    fipc_queue *q;
    cr_assert_eq(fipc_queue_create(&q, arena, capacity, max_item, flags), 0);
    return q;
}

static void put_int(fipc_queue *q, int v)
{
    cr_assert_eq(fipc_queue_put(q, &v, sizeof v, 0), 0, "put %d", v);
}

static int get_int(fipc_queue *q)
{
    int v = -1;
    size_t len = 0;
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, 0), 0);
    cr_assert_eq(len, sizeof v);
    return v;
}

Test(queue_death, spsc_producer_that_died_before_storing_tail_leaves_no_stale_position)
{
    for (size_t capacity = 3; capacity <= 4; capacity++) {
        fipc_queue *q = new_queue(capacity, sizeof(int), FIPC_QUEUE_SPSC);
        put_int(q, 1);
        put_int(q, 2);
        /* The producer published message 2 and was killed before its store
         * of tail: tail still says 1. */
        q->tail = 1;
        /* Its replacement carries on after message 2. */
        put_int(q, 3);
        cr_assert_eq(get_int(q), 1);
        cr_assert_eq(get_int(q), 2);
        cr_assert_eq(get_int(q), 3);
        int v;
        size_t len;
        cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, 0), -EAGAIN);
    }
}

Test(queue_death, spsc_producer_that_died_before_storing_tail_of_a_read_message_leaves_no_stale_position)
{
    fipc_queue *q = new_queue(4, sizeof(int), FIPC_QUEUE_SPSC);
    put_int(q, 1);
    cr_assert_eq(get_int(q), 1);
    /* Message 1 was published and even read, but tail was never stored. */
    q->tail = 0;
    for (int i = 2; i <= 5; i++)
        put_int(q, i);
    for (int i = 2; i <= 5; i++)
        cr_assert_eq(get_int(q), i);
}

Test(queue_death, spsc_consumer_that_died_before_storing_head_leaves_no_stale_position)
{
    for (size_t capacity = 3; capacity <= 4; capacity++) {
        fipc_queue *q = new_queue(capacity, sizeof(int), FIPC_QUEUE_SPSC);
        put_int(q, 1);
        put_int(q, 2);
        cr_assert_eq(get_int(q), 1);
        /* The consumer handed slot 0 back and was killed before its store
         * of head. */
        q->head = 0;
        /* Its replacement neither reads message 1 again nor stalls. */
        cr_assert_eq(get_int(q), 2);
        put_int(q, 3);
        put_int(q, 4);
        cr_assert_eq(get_int(q), 3);
        cr_assert_eq(get_int(q), 4);
    }
}

Test(queue_death, spsc_consumer_that_died_before_storing_head_of_a_full_ring_does_not_block_puts)
{
    fipc_queue *q = new_queue(4, sizeof(int), FIPC_QUEUE_SPSC);
    for (int i = 0; i < 4; i++)
        put_int(q, i);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(get_int(q), i);
    q->head = 0; /* four slots handed back, head never stored */
    for (int i = 4; i < 8; i++)
        put_int(q, i);
    for (int i = 4; i < 8; i++)
        cr_assert_eq(get_int(q), i);
}
