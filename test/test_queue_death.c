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
#include <pthread.h>
#include <sys/wait.h>

#include <fipc.h>

#include "common.h"
#include <linux/futex.h>

#include "ring_mpmc.h"
#include "test_hooks.h"

TestSuite(queue_death, .timeout = 60);

static fipc_queue *new_queue(size_t capacity, size_t max_item, unsigned flags)
{
    static fipc_arena *arena;
    if (!arena) cr_assert_eq(fipc_arena_create(&arena, "death", 4 << 20), 0);
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

Test(queue_death,
     spsc_producer_that_died_before_storing_tail_of_a_read_message_leaves_no_stale_position)
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

/* ---- MPMC: claims whose holder died are repaired ------------------------- */

#define DEATH_WAIT_NS ((int64_t)10 * 1000000000) /* a generous bound on repair */

/* A child that claims and dies before handing over, as SIGKILL between
 * the CAS and the store would leave it. */
static int claim_put_and_die(int i, void *arg)
{
    fipc_queue *q = arg;
    struct fipc__put_claim c;
    int v[8] = {0};
    struct iovec its[8];
    for (int x = 0; x < 8; x++)
        its[x] = (struct iovec){&v[x], sizeof v[x]};
    CHILD_CHECK(i <= 8 && fipc__queue_put_claim(q, its, (size_t)i, &c) == i, 1);
    raise(SIGKILL);
    return CHILD_FAIL(2);
}

static int claim_get_and_die(int i, void *arg)
{
    fipc_queue *q = arg;
    CHILD_CHECK(fipc__queue_mpmc_get_claim_only(q, (size_t)i) == i, 1);
    raise(SIGKILL);
    return CHILD_FAIL(2);
}

static void expect_killed(pid_t pid)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %#x", status);
}

static void consumers_pass_a_dead_producers_claim(size_t capacity, int claimed)
{
    fipc_queue *q = new_queue(capacity, sizeof(int), 0);
    put_int(q, 1);
    expect_killed(test_fork(claim_put_and_die, claimed, q));
    put_int(q, 2);
    cr_assert_eq(get_int(q), 1);
    /* Message 2 sits behind the dead claim: a waiting get passes it. */
    int64_t t0 = test_now_ns();
    int v = -1;
    size_t len;
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, DEATH_WAIT_NS), 0);
    cr_assert_eq(v, 2);
    cr_log_info("capacity %zu, %d claimed: repaired after %.1f ms", capacity, claimed,
                (double)(test_now_ns() - t0) / 1e6);
    /* The queue goes on as usual, round after round. */
    for (int i = 3; i < 3 + 3 * (int)capacity; i++) {
        put_int(q, i);
        cr_assert_eq(get_int(q), i);
    }
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, 0), -EAGAIN);
}

Test(queue_death, mpmc_consumers_pass_a_producer_killed_between_claim_and_publish)
{
    consumers_pass_a_dead_producers_claim(4, 1);
    consumers_pass_a_dead_producers_claim(3, 1);
    consumers_pass_a_dead_producers_claim(8, 2);
}

Test(queue_death, mpmc_close_and_drain_end_with_epipe_after_a_dead_producers_claim)
{
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    expect_killed(test_fork(claim_put_and_die, 1, q));
    put_int(q, 7);
    cr_assert_eq(fipc_queue_close(q), 0);
    int v = -1;
    size_t len;
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, DEATH_WAIT_NS), 0);
    cr_assert_eq(v, 7);
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, DEATH_WAIT_NS), -EPIPE);
}

Test(queue_death, mpmc_producers_pass_a_consumer_killed_between_claim_and_release)
{
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    for (int i = 0; i < 4; i++)
        put_int(q, i);
    expect_killed(test_fork(claim_get_and_die, 1, q)); /* inside the get of message 0 */
    for (int i = 1; i < 4; i++)
        cr_assert_eq(get_int(q), i);
    /* Position 4 reuses the dead consumer's slot: a waiting put passes it,
     * putting message 0 there again. */
    int v = 4;
    cr_assert_eq(fipc_queue_put(q, &v, sizeof v, 0), -EAGAIN);
    int64_t t0 = test_now_ns();
    cr_assert_eq(fipc_queue_put(q, &v, sizeof v, DEATH_WAIT_NS), 0);
    cr_log_info("dead consumer: repaired after %.1f ms", (double)(test_now_ns() - t0) / 1e6);
    for (int i = 5; i < 7; i++)
        put_int(q, i);
    cr_assert_eq(get_int(q), 0);
    for (int i = 4; i < 7; i++)
        cr_assert_eq(get_int(q), i);
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &(size_t){0}, 0), -EAGAIN);
}

static size_t ring_of(size_t capacity)
{
    size_t r = 2;
    while (r < capacity)
        r <<= 1;
    return r;
}

/* A consumer dies holding a claim of `claimed` messages: they are put
 * again, in order, after every message put before the repair. */
static void a_dead_consumers_claim_is_put_again(size_t capacity, int claimed)
{
    fipc_queue *q = new_queue(capacity, sizeof(int), 0);
    int cap = (int)capacity, ring = (int)ring_of(capacity);
    for (int i = 0; i < cap; i++)
        put_int(q, i);
    expect_killed(test_fork(claim_get_and_die, claimed, q));
    for (int i = claimed; i < cap; i++)
        cr_assert_eq(get_int(q), i);
    /* Fill the rest of the first lap; then the next put waits for the
     * dead consumer's first slot. */
    for (int i = 0; i < ring - cap; i++)
        put_int(q, 100 + i);
    int v = 200;
    /* The messages put again count against the capacity as they did
     * before their consumer took them: the put finds room after them only
     * if there is some. */
    bool room = ring - cap + claimed < cap;
    cr_assert_eq(fipc_queue_put(q, &v, sizeof v, room ? DEATH_WAIT_NS : FIPC_MSEC(300)),
                 room ? 0 : -ETIMEDOUT, "capacity %zu, %d claimed", capacity, claimed);
    cr_assert_eq(fipc_queue_qsize(q), (size_t)(ring - cap + claimed + room) < capacity
                                          ? (size_t)(ring - cap + claimed + room)
                                          : capacity);
    for (int i = 0; i < ring - cap; i++)
        cr_assert_eq(get_int(q), 100 + i);
    for (int i = 0; i < claimed; i++)
        cr_assert_eq(get_int(q), i, "capacity %zu, %d claimed", capacity, claimed);
    if (!room) put_int(q, 200);
    cr_assert_eq(get_int(q), 200);
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &(size_t){0}, 0), -EAGAIN);
    /* The queue goes on as usual. */
    for (int i = 0; i < 3 * ring; i++) {
        put_int(q, 300 + i);
        cr_assert_eq(get_int(q), 300 + i);
    }
}

Test(queue_death, mpmc_a_dead_consumers_batch_claim_is_put_again_after_what_came_before)
{
    a_dead_consumers_claim_is_put_again(4, 1);
    a_dead_consumers_claim_is_put_again(4, 2);
    a_dead_consumers_claim_is_put_again(3, 1);
    a_dead_consumers_claim_is_put_again(3, 3);
    a_dead_consumers_claim_is_put_again(8, 3);
    a_dead_consumers_claim_is_put_again(8, 8);
}

static int claim_release_one_get_and_die(int i, void *arg)
{
    CHILD_CHECK(fipc__queue_mpmc_get_claim_release_some(arg, (size_t)i, 1) == i, 1);
    raise(SIGKILL);
    return CHILD_FAIL(2);
}

/* The exception: a consumer killed inside a batch get while it releases
 * its claim (a get copies every message out before it releases a slot)
 * takes those whose slots it released with it (its get never returned
 * them); the rest are put again. */
Test(queue_death, mpmc_a_consumer_killed_inside_a_batch_get_takes_only_what_it_released)
{
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    for (int i = 0; i < 4; i++)
        put_int(q, i);
    expect_killed(test_fork(claim_release_one_get_and_die, 3, q)); /* 0 released */
    cr_assert_eq(get_int(q), 3);
    put_int(q, 4); /* into the released slot */
    int v = 5;
    cr_assert_eq(fipc_queue_put(q, &v, sizeof v, DEATH_WAIT_NS), 0);
    cr_assert_eq(get_int(q), 4);
    cr_assert_eq(get_int(q), 1);
    cr_assert_eq(get_int(q), 2);
    cr_assert_eq(get_int(q), 5);
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &(size_t){0}, 0), -EAGAIN);
}

/* A producer killed inside the repair of a dead consumer's claim, between
 * claiming the position a lap on (announced, then tail moved) and
 * publishing the slot there, holding the repair lock. */
static int republish_claim_and_die(int i, void *arg)
{
    fipc_queue *q = arg;
    const struct geom *g = fipc__queue_view(q);
    CHILD_CHECK(g && g->me, 1);
    CHILD_CHECK(fipc__lock_acquire(&q->repair, 0) == 0, 2);
    uint64_t y = __atomic_load_n(&q->tail, __ATOMIC_RELAXED);
    __atomic_store_n(&g->me->claim, claim_word(y, CLAIM_REPUB_K, 0), __ATOMIC_RELEASE);
    CHILD_CHECK(
        __atomic_compare_exchange_n(&q->tail, &y, y + 1, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST),
        3);
    raise(SIGKILL);
    return CHILD_FAIL(4);
}

Test(queue_death, mpmc_a_repairer_killed_before_publishing_is_finished_by_a_consumer)
{
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    for (int i = 0; i < 4; i++)
        put_int(q, i);
    expect_killed(test_fork(claim_get_and_die, 1, q)); /* inside the get of message 0 */
    for (int i = 1; i < 4; i++)
        cr_assert_eq(get_int(q), i);
    expect_killed(test_fork(republish_claim_and_die, 0, q));
    cr_assert_eq(fipc_queue_qsize(q), 1, "position 4 is claimed");
    int v = -1;
    size_t len;
    int64_t t0 = test_now_ns();
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, DEATH_WAIT_NS), 0);
    cr_log_info("dead repairer: finished after %.1f ms", (double)(test_now_ns() - t0) / 1e6);
    cr_assert_eq(v, 0, "message 0, as the dead consumer left it");
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, 0), -EAGAIN);
    for (int i = 4; i < 4 + 12; i++) {
        put_int(q, i);
        cr_assert_eq(get_int(q), i);
    }
}

struct reaped {
    fipc_queue *q;
    int got;
};

static int get_with_a_new_record(int i, void *arg)
{
    struct reaped *c = arg;
    int v = -1;
    size_t len;
    CHILD_CHECK(fipc_queue_get(c->q, &v, sizeof v, &len, 0) == 0, 1);
    c->got = v;
    return CHILD_OK;
}

Test(queue_death, mpmc_a_new_thread_that_finds_every_record_held_by_dead_consumers_loses_nothing)
{
    enum { N = 2 * QUEUE_CLAIMERS };
    struct reaped *c = test_shared(sizeof *c);
    c->q = new_queue(N, sizeof(int), 0);
    for (int i = 0; i < N; i++)
        put_int(c->q, i); /* this thread takes a record */
    /* Every other record is held by a consumer that died inside get. */
    for (int i = 0; i < QUEUE_CLAIMERS - 1; i++)
        expect_killed(test_fork(claim_get_and_die, 1, c->q));
    /* A new process needs a record: it leaves the dead ones to the
     * repair, takes one of a block it adds, and gets the next message. */
    test_expect_ok(test_fork(get_with_a_new_record, 0, c));
    cr_assert_eq(c->got, QUEUE_CLAIMERS - 1);
    cr_assert_neq(c->q->more, 0, "a block was added");
    cr_assert_eq(c->q->records, QUEUE_CLAIMERS + 1);
    cr_assert_eq(c->q->unrecorded, 0);
    uint8_t seen[N + QUEUE_CLAIMERS] = {0};
    for (int i = QUEUE_CLAIMERS; i < N; i++)
        cr_assert_eq(get_int(c->q), i);
    /* The producers of the next lap pass every dead claim: each one's
     * message is put again. */
    for (int i = 0; i < QUEUE_CLAIMERS; i++) {
        int v = N + i;
        cr_assert_eq(fipc_queue_put(c->q, &v, sizeof v, DEATH_WAIT_NS), 0, "put %d", v);
    }
    int v, got = 0;
    size_t len;
    while (fipc_queue_get(c->q, &v, sizeof v, &len, 0) == 0) {
        cr_assert(v >= 0 && v < N + QUEUE_CLAIMERS && !seen[v], "message %d", v);
        seen[v] = 1;
        got++;
    }
    for (int i = 0; i < QUEUE_CLAIMERS - 1; i++)
        cr_assert(seen[i], "message %d lost", i);
    for (int i = N; i < N + QUEUE_CLAIMERS; i++)
        cr_assert(seen[i], "message %d lost", i);
    cr_assert_eq(got, QUEUE_CLAIMERS - 1 + QUEUE_CLAIMERS);
    cr_assert(fipc_queue_empty(c->q));
}

struct holders {
    fipc_queue *q;
    uint32_t ready, go;
};

/* Take a claimer record (a get of an empty queue) and keep it, alive,
 * until told to go. */
static int hold_a_record(int i, void *arg)
{
    struct holders *c = arg;
    int v;
    size_t len;
    CHILD_CHECK(fipc_queue_get(c->q, &v, sizeof v, &len, 0) == -EAGAIN, 1);
    const struct geom *g = fipc__queue_view(c->q);
    CHILD_CHECK(g && g->me, 2);
    test_flag_add(&c->ready);
    CHILD_CHECK(test_wait_until_at_least(&c->go, 1, DEATH_WAIT_NS), 3);
    return CHILD_OK + 0 * i;
}

Test(queue_death,
     mpmc_a_consumer_killed_inside_get_among_more_live_holders_than_records_loses_nothing)
{
    enum { HOLDERS = 2 * QUEUE_CLAIMERS + 8 };
    struct holders *c = test_shared(sizeof *c);
    c->q = new_queue(4, sizeof(int), 0);
    pid_t pids[HOLDERS];
    for (int i = 0; i < HOLDERS; i++)
        pids[i] = test_fork(hold_a_record, i, c);
    cr_assert(test_wait_until_at_least(&c->ready, HOLDERS, DEATH_WAIT_NS));
    for (int i = 0; i < 4; i++)
        put_int(c->q, i);
    expect_killed(test_fork(claim_get_and_die, 1, c->q)); /* inside the get of message 0 */
    cr_assert_eq(c->q->records, HOLDERS + 2, "the holders', this thread's, the dead consumer's");
    cr_assert_eq(c->q->unrecorded, 0);
    for (int i = 1; i < 4; i++)
        cr_assert_eq(get_int(c->q), i);
    /* The producer that waits for its slot puts message 0 again. */
    int v = 4;
    cr_assert_eq(fipc_queue_put(c->q, &v, sizeof v, DEATH_WAIT_NS), 0);
    cr_assert_eq(get_int(c->q), 0);
    cr_assert_eq(get_int(c->q), 4);
    cr_assert(fipc_queue_empty(c->q));
    test_flag_set(&c->go, 1);
    for (int i = 0; i < HOLDERS; i++)
        test_expect_ok(pids[i]);
}

/* A consumer that dies inside get without a robust list. */
static int claim_get_without_a_robust_list_and_die(int i, void *arg)
{
    fipc__lock_force_no_robust_list();
    return claim_get_and_die(i, arg);
}

Test(queue_death, mpmc_a_claimer_without_a_robust_list_is_repaired_by_its_liveness_check)
{
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    for (int i = 0; i < 4; i++)
        put_int(q, i);
    expect_killed(test_fork(claim_get_without_a_robust_list_and_die, 1, q));
    for (int i = 1; i < 4; i++)
        cr_assert_eq(get_int(q), i);
    /* Its record still names it: the kernel marked nothing. */
    const struct geom g = geom_of(q);
    int named = 0;
    for (int i = 0; i < QUEUE_CLAIMERS; i++)
        named += (claimers_of(&g)[i].owner.word & FUTEX_TID_MASK) != 0 &&
                 claimers_of(&g)[i].claim != 0;
    cr_assert_eq(named, 1);
    /* The producer that waits for its slot checks the recorded owner, finds
     * it gone, and the message it held is put again before this one. */
    int v = 4;
    cr_assert_eq(fipc_queue_put(q, &v, sizeof v, DEATH_WAIT_NS), 0);
    cr_assert_eq(get_int(q), 0);
    cr_assert_eq(get_int(q), 4);
    cr_assert(fipc_queue_empty(q));
}

/* A message whose content says its id, so that a torn or mixed copy shows. */
struct tagged {
    uint32_t id, check;
};

static uint32_t tag_of(uint32_t id)
{
    return id * 2654435761u ^ 0x5bd1e995u;
}

struct tally {
    uint8_t seen[4096];
    uint32_t got, sum;
};

static void take(struct tally *t, const struct tagged *m)
{
    cr_assert_eq(m->check, tag_of(m->id), "message %u corrupt", m->id);
    cr_assert(m->id < sizeof t->seen, "id %u", m->id);
    cr_assert_eq(t->seen[m->id], 0, "message %u delivered twice", m->id);
    t->seen[m->id] = 1;
    t->got++;
    t->sum += m->id;
}

/* Put message id with calls that do not wait, making room with gets that
 * do not wait: both pass dead claims after their grace period. */
static void put_making_room(fipc_queue *q, uint32_t id, struct tally *t)
{
    struct tagged m = {id, tag_of(id)}, out;
    size_t len;
    int64_t end = test_now_ns() + DEATH_WAIT_NS;
    for (;;) {
        int r = fipc_queue_put(q, &m, sizeof m, 0);
        if (r == 0) return;
        cr_assert_eq(r, -EAGAIN);
        r = fipc_queue_get(q, &out, sizeof out, &len, 0);
        if (r == 0) {
            cr_assert_eq(len, sizeof out);
            take(t, &out);
        } else {
            cr_assert_eq(r, -EAGAIN);
            cr_assert(test_now_ns() < end, "put %u stuck", id);
            sched_yield();
        }
    }
}

/* A consumer killed inside a get of up to i messages (if there is one). */
static int maybe_claim_get_and_die(int i, void *arg)
{
    int r = fipc__queue_mpmc_get_claim_only(arg, (size_t)i);
    if (r == -EAGAIN) return CHILD_OK;
    CHILD_CHECK(r > 0, 1);
    raise(SIGKILL);
    return CHILD_FAIL(2);
}

Test(queue_death, mpmc_consumers_killed_inside_get_round_after_round_lose_and_double_nothing)
{
    fipc_queue *q = new_queue(8, sizeof(struct tagged), 0);
    struct tally *t = calloc(1, sizeof *t);
    cr_assert_not_null(t);
    uint32_t next = 0, sum = 0;
    int kills = 0;
    for (int round = 0; round < 60; round++) {
        for (int m = 0; m <= round % 3; m++) {
            sum += next;
            put_making_room(q, next++, t);
        }
        int status;
        pid_t pid = test_fork(maybe_claim_get_and_die, 1 + (round * 7) % 4, q);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            kills++;
        else
            cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
    }
    /* A ring's worth of puts more takes the producers past every slot a
     * dead consumer held. */
    for (int m = 0; m < 8; m++) {
        sum += next;
        put_making_room(q, next++, t);
    }
    struct tagged out;
    size_t len;
    while (fipc_queue_get(q, &out, sizeof out, &len, 0) == 0)
        take(t, &out);
    cr_log_info("%d consumers killed inside get; %u messages", kills, next);
    cr_assert_eq(kills, 60, "every round has a message at head: %d kills", kills);
    cr_assert_eq(t->got, next, "lost %u", next - t->got);
    cr_assert_eq(t->sum, sum);
    cr_assert(fipc_queue_empty(q));
    free(t);
}

/* A claimer that lives, however slow, is never repaired. */
static int claim_put_and_wait(int i, void *arg)
{
    fipc_queue *q = arg;
    int *go = (int *)((char *)arg - 64);
    struct fipc__put_claim c;
    int v = 42;
    struct iovec it = {&v, sizeof v};
    CHILD_CHECK(fipc__queue_put_claim(q, &it, 1, &c) == 1, 1);
    test_flag_set((uint32_t *)go, 1);
    CHILD_CHECK(test_wait_until_at_least((uint32_t *)go, 2, DEATH_WAIT_NS), 2);
    CHILD_CHECK(fipc__queue_put_commit(q, &c, &it) == 1, 3);
    return CHILD_OK;
}

Test(queue_death, mpmc_a_slow_live_claimer_is_never_repaired)
{
    /* the flag lives in the line before the queue, in the same arena */
    fipc_arena *a;
    cr_assert_eq(fipc_arena_create(&a, "slow", 1 << 20), 0);
    uint32_t *go = fipc_arena_alloc(a, 64, 64);
    fipc_queue *q;
    cr_assert_eq(fipc_queue_create(&q, a, 4, sizeof(int), 0), 0);
    cr_assert_eq((char *)q - (char *)go, 64);
    pid_t pid = test_fork(claim_put_and_wait, 0, q);
    cr_assert(test_wait_until_at_least(go, 1, DEATH_WAIT_NS));
    put_int(q, 1); /* behind the live claim */
    int v;
    size_t len;
    /* Well past the grace period: still held, not repaired. */
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, 200 * 1000000), -ETIMEDOUT);
    test_flag_set(go, 2);
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, DEATH_WAIT_NS), 0);
    cr_assert_eq(v, 42);
    cr_assert_eq(get_int(q), 1);
    test_expect_ok(pid);
    fipc_arena_close(a);
}

static void *claim_in_thread_and_exit(void *arg)
{
    struct fipc__put_claim c;
    int v = 0;
    struct iovec it = {&v, sizeof v};
    if (fipc__queue_put_claim(arg, &it, 1, &c) != 1) return arg;
    return NULL; /* the thread ends holding the claim */
}

Test(queue_death, mpmc_a_thread_that_ends_holding_a_claim_is_repaired)
{
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, claim_in_thread_and_exit, q), 0);
    void *ret;
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_null(ret);
    put_int(q, 5);
    int v = -1;
    size_t len;
    cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, DEATH_WAIT_NS), 0);
    cr_assert_eq(v, 5);
}

struct crowd {
    fipc_queue *q;
    uint32_t ready, go;
};

/* Put one message (taking a claimer record), then hold on to the record
 * until every child has one. */
static int put_and_wait(int i, void *arg)
{
    struct crowd *c = arg;
    int v = i;
    CHILD_CHECK(fipc_queue_put(c->q, &v, sizeof v, 0) == 0, 1);
    test_flag_add(&c->ready);
    CHILD_CHECK(test_wait_until_at_least(&c->go, 1, DEATH_WAIT_NS), 2);
    return CHILD_OK;
}

static int put_in_thread(void *q)
{
    int v = 99;
    return fipc_queue_put(q, &v, sizeof v, 0);
}

static void *put_in_thread_main(void *q)
{
    return (void *)(intptr_t)put_in_thread(q);
}

Test(queue_death, mpmc_records_of_claimers_that_died_announcing_are_reused)
{
    struct crowd *c = test_shared(sizeof *c);
    c->q = new_queue(128, sizeof(int), 0);
    /* Every record is taken by a process, and then they all end. */
    pid_t pids[QUEUE_CLAIMERS];
    for (int i = 0; i < QUEUE_CLAIMERS; i++)
        pids[i] = test_fork(put_and_wait, i, c);
    cr_assert(test_wait_until_at_least(&c->ready, QUEUE_CLAIMERS, DEATH_WAIT_NS));
    test_flag_set(&c->go, 1);
    for (int i = 0; i < QUEUE_CLAIMERS; i++)
        test_expect_ok(pids[i]);
    /* Each had announced a claim and lost its CAS before it died: the
     * positions it names are nobody's, and nobody waits behind them. */
    const struct geom g = geom_of(c->q);
    for (int i = 0; i < QUEUE_CLAIMERS; i++) {
        cr_assert_eq(claimers_of(&g)[i].owner.word & FUTEX_OWNER_DIED, FUTEX_OWNER_DIED,
                     "record %d", i);
        claimers_of(&g)[i].claim = claim_word(c->q->tail, 1, 0);
    }
    /* A new thread still gets a record, so the queue still repairs. */
    pthread_t t;
    void *r;
    cr_assert_eq(pthread_create(&t, NULL, put_in_thread_main, c->q), 0);
    cr_assert_eq(pthread_join(t, &r), 0);
    cr_assert_eq((intptr_t)r, 0);
    cr_assert_eq(c->q->unrecorded, 0);
    int seen = 0;
    for (int i = 0; i <= QUEUE_CLAIMERS; i++)
        seen += get_int(c->q) == 99;
    cr_assert_eq(seen, 1);
    cr_assert_eq(c->q->unrecorded, 0);
}

Test(queue_death, mpmc_many_more_dead_claimers_than_records_are_all_repaired)
{
    fipc_queue *q = new_queue(4, sizeof(int), 0);
    for (int i = 0; i < 2 * QUEUE_CLAIMERS + 8; i++) {
        expect_killed(test_fork(claim_put_and_die, 1, q));
        put_int(q, i);
        int v = -1;
        size_t len;
        cr_assert_eq(fipc_queue_get(q, &v, sizeof v, &len, DEATH_WAIT_NS), 0, "round %d", i);
        cr_assert_eq(v, i);
    }
    cr_assert_eq(q->unrecorded, 0);
}
