/*
 * test_jqueue.c - fipc_jqueue: Python's JoinableQueue shared by processes.
 *
 * The queue contract (queue_contract.h) runs on every cell of {MPMC, SPSC}
 * x {capacity 64, 100, 3} x {put/get, put_many/get_many}, with the count
 * of unfinished items checked throughout: the stress's producers join and
 * its consumers call task_done, failed puts count for nothing, and several
 * joiners wake on the last task_done and not before.  Here besides: the
 * seeds' producer/consumer models 2 and 3 (the bun shop: producers put
 * then join, daemon consumers get, work and call task_done), the codes of
 * bad calls, items put past the count, a consumer killed while holding an
 * item, joins under signals, a death between the last task_done and its
 * wake, and SPSC puts that race with close.
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 * The stress counts may be scaled with FIPC_TEST_SCALE (e.g. 0.1).
 */
#include "common.h"
#include "futex_faults.h"
#include "test_hooks.h"

TestSuite(jqueue, .timeout = 240);

/* ---- The contract, for fipc_jqueue ---- */

#define QC_SUITE    jqueue
#define QC_T        fipc_jqueue
#define QC(verb)    fipc_jqueue_##verb
#define QC_RAW(q)   fipc_jqueue_queue(q)
#define QC_JOINABLE 1
#include "queue_contract.h"

/* ---- Helpers of the tests below ---- */

static fipc_jqueue *new_jqueue(size_t capacity, size_t max_item)
{
    fipc_jqueue *q = NULL;
    int r = fipc_jqueue_create(&q, NULL, capacity, max_item, 0);
    cr_assert_eq(r, 0, "fipc_jqueue_create: %s", fipc_strerror(r));
    cr_assert_not_null(q);
    return q;
}

/* Join a fipc_process (from inside a child): 0 if it exited with 0. */
static int join_ok(fipc_process *p)
{
    int code = -1;
    if (fipc_process_join(p, HANDSHAKE_NS) != 0 || fipc_process_exitcode(p, &code) != 0) return -1;
    return code;
}

/* ---- The bun shop: producers join, daemon consumers task_done ---- */

#define SHOP_MAX_PRODUCERS 3
#define SHOP_MAX_CONSUMERS 2
#define SHOP_MAX_ITEMS     100

struct shop {
    fipc_jqueue *q;
    int producers, consumers, items;
    uint32_t all_put; /* atomic: producers that have put all their items */
    uint32_t eaten[SHOP_MAX_PRODUCERS][SHOP_MAX_ITEMS]; /* atomic */
    uint32_t done[SHOP_MAX_PRODUCERS];                  /* atomic: raised before task_done */
    pid_t consumer_pids[SHOP_MAX_CONSUMERS];
    int producer_code[SHOP_MAX_PRODUCERS];
    bool consumers_alive_at_end;
};

struct shop_arg {
    struct shop *s;
    int i;
};

static const char *const shop_goods[SHOP_MAX_PRODUCERS] = {"bun", "bone", "swill"};

static int shop_producer(void *arg)
{
    struct shop_arg *a = arg;
    struct shop *s = a->s;
    for (int k = 0; k < s->items; k++) {
        char item[32];
        int n = snprintf(item, sizeof item, "%s %d %d", shop_goods[a->i], a->i, k);
        CHILD_CHECK(fipc_jqueue_put(s->q, item, (size_t)n, HANDSHAKE_NS) == 0, 1);
    }
    /* Wait until every producer has put everything, so that a count of 0
     * after join cannot be raised again by a slower producer. */
    test_flag_add(&s->all_put);
    CHILD_CHECK(test_wait_until_at_least(&s->all_put, (uint32_t)s->producers, HANDSHAKE_NS), 2);
    CHILD_CHECK(fipc_jqueue_join(s->q, HANDSHAKE_NS) == 0, 3);
    CHILD_CHECK(fipc_jqueue_unfinished(s->q) == 0, 4);
    /* Every item of ours was worked on before join returned. */
    CHILD_CHECK(test_flag_get(&s->done[a->i]) == (uint32_t)s->items, 5);
    return CHILD_OK;
}

/* Runs until killed, as the seed's daemon consumers do; returning at all
 * means a check failed. */
static int shop_consumer(void *arg)
{
    struct shop_arg *a = arg;
    struct shop *s = a->s;
    for (;;) {
        char buf[33];
        size_t len = 0;
        CHILD_CHECK(fipc_jqueue_get(s->q, buf, 32, &len, FIPC_FOREVER) == 0, 1);
        CHILD_CHECK(len <= 32, 2);
        buf[len] = '\0';
        char what[16];
        int p = -1, k = -1;
        CHILD_CHECK(sscanf(buf, "%15s %d %d", what, &p, &k) == 3, 3);
        CHILD_CHECK(p >= 0 && p < s->producers && k >= 0 && k < s->items, 4);
        CHILD_CHECK(strcmp(what, shop_goods[p]) == 0, 5);
        __atomic_fetch_add(&s->eaten[p][k], 1, __ATOMIC_RELAXED);
        for (int y = 0; y < 20; y++) /* eat: give the others a chance to run */
            sched_yield();
        test_flag_add(&s->done[p]);
        CHILD_CHECK(fipc_jqueue_task_done(s->q) == 0, 6);
    }
}

/* The seed's main process: start everything, join the producers, end.
 * Its daemon consumers die with it. */
static int shop_main(void *arg)
{
    struct shop *s = arg;
    struct shop_arg pargs[SHOP_MAX_PRODUCERS], cargs[SHOP_MAX_CONSUMERS];
    fipc_process *producers[SHOP_MAX_PRODUCERS], *consumers[SHOP_MAX_CONSUMERS];
    fipc_process_opts daemon = {.name = "foodie", .daemon = true};
    for (int i = 0; i < s->producers; i++) {
        pargs[i] = (struct shop_arg){.s = s, .i = i};
        CHILD_CHECK(fipc_process_start(&producers[i], shop_producer, &pargs[i], NULL) == 0, 1);
    }
    for (int i = 0; i < s->consumers; i++) {
        cargs[i] = (struct shop_arg){.s = s, .i = i};
        CHILD_CHECK(fipc_process_start(&consumers[i], shop_consumer, &cargs[i], &daemon) == 0, 2);
        CHILD_CHECK(fipc_process_daemon(consumers[i]), 3);
        s->consumer_pids[i] = fipc_process_pid(consumers[i]);
    }
    for (int i = 0; i < s->producers; i++)
        s->producer_code[i] = join_ok(producers[i]);
    bool alive = true;
    for (int i = 0; i < s->consumers; i++)
        alive = alive && fipc_process_is_alive(consumers[i]);
    s->consumers_alive_at_end = alive;
    return CHILD_OK;
}

static void run_shop(int producers, int consumers, int items)
{
    cr_assert(producers <= SHOP_MAX_PRODUCERS && consumers <= SHOP_MAX_CONSUMERS &&
              items <= SHOP_MAX_ITEMS);
    struct shop *s = test_shared(sizeof *s);
    s->q = new_jqueue(16, 32);
    s->producers = producers;
    s->consumers = consumers;
    s->items = items;
    /* The daemon consumers outlive the shop's main process by the moment it
     * takes the kernel to kill them; as subreaper this test process inherits
     * and reaps them, and so can see how they ended. */
    cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);

    fipc_process *main_proc = NULL;
    fipc_process_opts opts = {.name = "shop"};
    cr_assert_eq(fipc_process_start(&main_proc, shop_main, s, &opts), 0);
    cr_assert_eq(fipc_process_join(main_proc, FIPC_SEC(100)), 0);
    int code = -1;
    cr_assert_eq(fipc_process_exitcode(main_proc, &code), 0);
    cr_assert_eq(code, 0, "the shop's main process failed check %d", code);
    fipc_process_free(main_proc);

    for (int i = 0; i < producers; i++)
        cr_assert_eq(s->producer_code[i], 0, "producer %d failed check %d", i, s->producer_code[i]);
    cr_assert(s->consumers_alive_at_end, "a daemon consumer ended on its own");
    for (int i = 0; i < consumers; i++) {
        int status;
        cr_assert_eq(waitpid(s->consumer_pids[i], &status, 0), s->consumer_pids[i],
                     "waitpid consumer %d: %s", i, strerror(errno));
        /* Killed by the parent-death signal, or, if the shop ended before
         * this consumer first ran, gone at start with 128 + SIGKILL. */
        bool died_with_parent = (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ||
                                (WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGKILL);
        cr_assert(died_with_parent, "daemon consumer %d did not die with its parent (status %#x)",
                  i, status);
    }
    for (int p = 0; p < producers; p++) {
        cr_assert_eq(s->done[p], (uint32_t)items);
        for (int k = 0; k < items; k++)
            cr_assert_eq(s->eaten[p][k], 1, "%s %d eaten %u times", shop_goods[p], k,
                         s->eaten[p][k]);
    }
    cr_assert_eq(fipc_jqueue_unfinished(s->q), 0);
    cr_assert(fipc_jqueue_empty(s->q));
}

Test(jqueue, model_2_one_producer_joins_after_a_daemon_consumer_ate_its_5_buns)
{
    run_shop(1, 1, 5);
}

Test(jqueue, bun_shop_3_producers_join_after_2_daemon_consumers_ate_their_3_items)
{
    run_shop(3, 2, 3);
}

Test(jqueue, bun_shop_3_producers_join_after_2_daemon_consumers_ate_their_100_items)
{
    run_shop(3, 2, 100);
}

/* ---- Bad calls, and items the count does not see ---- */

Test(jqueue, null_jqueue_gives_einval_and_no_unfinished_items)
{
    fipc_jqueue *q = NULL;
    cr_assert_eq(fipc_jqueue_create(NULL, NULL, 4, 16, 0), -EINVAL);
    cr_assert_eq(fipc_jqueue_create(&q, NULL, 0, 16, 0), -EINVAL);
    cr_assert_eq(fipc_jqueue_create(&q, NULL, 4, 0, 0), -EINVAL);
    cr_assert_null(q);
    cr_assert_eq(fipc_jqueue_task_done(NULL), -EINVAL);
    cr_assert_eq(fipc_jqueue_task_done_many(NULL, 1), -EINVAL);
    cr_assert_eq(fipc_jqueue_join(NULL, 0), -EINVAL);
    cr_assert_eq(fipc_jqueue_join(NULL, FIPC_FOREVER), -EINVAL);
    cr_assert_eq(fipc_jqueue_put(NULL, "a", 1, 0), -EINVAL);
    cr_assert_eq(fipc_jqueue_close(NULL), -EINVAL);
    cr_assert_eq(fipc_jqueue_unfinished(NULL), 0);
}

/* A count so large that done + n wraps must still be refused. */
Test(jqueue, task_done_many_with_a_huge_count_fails_with_eoverflow_and_changes_nothing)
{
    fipc_jqueue *q = new_jqueue(8, 8);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(fipc_jqueue_put(q, "x", 1, 0), 0);
    cr_assert_eq(fipc_jqueue_task_done_many(q, SIZE_MAX - 1), -EOVERFLOW);
    cr_assert_eq(fipc_jqueue_task_done_many(q, SIZE_MAX), -EOVERFLOW);
    cr_assert_eq(fipc_jqueue_unfinished(q), 5);
    cr_assert_eq(fipc_jqueue_task_done_many(q, 5), 0);
    cr_assert_eq(fipc_jqueue_join(q, 0), 0);
}

Test(jqueue, items_put_through_the_underlying_queue_are_not_counted)
{
    fipc_jqueue *q = new_jqueue(4, 8);
    fipc_queue *raw = fipc_jqueue_queue(q);
    cr_assert_not_null(raw);
    cr_assert_eq(fipc_queue_put(raw, "raw", 3, 0), 0);
    cr_assert_eq(fipc_jqueue_qsize(q), 1);
    cr_assert_eq(fipc_jqueue_unfinished(q), 0);
    cr_assert_eq(fipc_jqueue_join(q, 0), 0);
    char buf[8];
    size_t len = 0;
    cr_assert_eq(fipc_jqueue_get(q, buf, sizeof buf, &len, 0), 0);
    cr_assert(len == 3 && memcmp(buf, "raw", 3) == 0);
}

/* ---- A consumer killed between get and task_done ---- */

struct holder {
    fipc_jqueue *q;
    uint32_t got; /* atomic */
};

static int holding_consumer(int i, void *arg)
{
    struct holder *h = arg;
    test_child_setup();
    char buf[16];
    size_t len;
    CHILD_CHECK(fipc_jqueue_get(h->q, buf, sizeof buf, &len, HANDSHAKE_NS) == 0, 1);
    test_flag_add(&h->got);
    for (;;) /* hold the item until killed */
        pause();
}

Test(jqueue, consumer_killed_holding_an_item_leaves_join_timing_out_not_hanging)
{
    struct holder *h = test_shared(sizeof *h);
    h->q = new_jqueue(4, 16);
    cr_assert_eq(fipc_jqueue_put(h->q, "bun", 3, 0), 0);
    pid_t pid = test_fork(holding_consumer, 0, h);
    cr_assert(test_wait_until_at_least(&h->got, 1, HANDSHAKE_NS));
    test_kill_and_reap(pid);

    cr_assert(fipc_jqueue_empty(h->q));
    cr_assert_eq(fipc_jqueue_unfinished(h->q), 1);
    int64_t t0 = test_now_ns();
    int r = fipc_jqueue_join(h->q, FIPC_MSEC(100));
    int64_t dt = test_now_ns() - t0;
    cr_assert_eq(r, -ETIMEDOUT, "join: %s", fipc_strerror(r));
    cr_assert_geq(dt, FIPC_MSEC(100), "returned after %lld ns", (long long)dt);
    cr_assert_lt(dt, FIPC_SEC(5), "returned after %lld ns", (long long)dt);
    cr_assert_eq(fipc_jqueue_unfinished(h->q), 1);
    cr_assert_eq(fipc_jqueue_join(h->q, 0), -EAGAIN);
}

/* ---- Signals never cut a join short ---- */

/* The pester's action after its 20th signal: mark the one item done. */
static void done_late(void *q)
{
    fipc_jqueue_task_done(q);
}

/* Join q, timed by *elapsed, while a pester signals this thread (and, with
 * then_done, marks the one item done after its 20th signal). */
static void pester_run(fipc_jqueue *q, bool then_done, int64_t timeout_ns, int *r, int64_t *elapsed)
{
    struct test_pester p = {.then = then_done ? done_late : NULL, .arg = q};
    test_pester_start(&p);
    int64_t t0 = test_now_ns();
    *r = fipc_jqueue_join(q, timeout_ns);
    *elapsed = test_now_ns() - t0;
    test_pester_stop(&p);
}

Test(jqueue, timed_join_is_not_cut_short_by_signals)
{
    fipc_jqueue *q = new_jqueue(2, 8);
    cr_assert_eq(fipc_jqueue_put(q, "job", 3, 0), 0);
    int r;
    int64_t dt;
    pester_run(q, false, FIPC_MSEC(200), &r, &dt);
    cr_assert_eq(r, -ETIMEDOUT, "join: %s", fipc_strerror(r));
    cr_assert_geq(dt, FIPC_MSEC(200), "gave up after %lld ns", (long long)dt);
}

Test(jqueue, join_forever_survives_signals_and_returns_once_done)
{
    fipc_jqueue *q = new_jqueue(2, 8);
    cr_assert_eq(fipc_jqueue_put(q, "job", 3, 0), 0);
    int r;
    int64_t dt;
    pester_run(q, true, FIPC_FOREVER, &r, &dt);
    cr_assert_eq(r, 0, "join: %s", fipc_strerror(r));
    cr_assert_eq(fipc_jqueue_unfinished(q), 0);
}

/* ---- Killed between the last task_done and its wake ---- */

struct dying_done {
    fipc_jqueue *q;
    uint32_t started; /* the joiner is about to block; joiner is set */
    pid_t joiner;
};

static int forever_joiner_child(int i, void *arg)
{
    struct dying_done *d = arg;
    test_child_setup();
    d->joiner = getpid();
    test_flag_add(&d->started);
    CHILD_CHECK(fipc_jqueue_join(d->q, FIPC_FOREVER) == 0, 1);
    CHILD_CHECK(fipc_jqueue_unfinished(d->q) == 0, 2);
    return CHILD_OK;
}

/* Take the one item, and once the joiner sleeps mark it done and be killed
 * after the count reached zero but before the wake. */
static int done_and_die_child(int i, void *arg)
{
    struct dying_done *d = arg;
    test_child_setup();
    char buf[16];
    size_t len;
    CHILD_CHECK(fipc_jqueue_get(d->q, buf, sizeof buf, &len, 0) == 0, 1);
    CHILD_CHECK(test_wait_until_at_least(&d->started, 1, HANDSHAKE_NS), 2);
    CHILD_CHECK(test_wait_sleeping(d->joiner, HANDSHAKE_NS), 3);
    fault_kill_at_next_wake();
    fipc_jqueue_task_done(d->q);
    return CHILD_FAIL(4);
}

/* Nobody will wake the joiner: its sleep ends at the one-second re-check,
 * which finds nothing unfinished. */
Test(jqueue, joiner_wakes_when_the_last_task_done_dies_before_waking)
{
    struct dying_done *d = test_shared(sizeof *d);
    d->q = new_jqueue(4, 16);
    cr_assert_eq(fipc_jqueue_put(d->q, "bun", 3, 0), 0);
    pid_t pids[2];
    int status[2];
    pids[0] = test_fork(forever_joiner_child, 0, d);
    pids[1] = test_fork(done_and_die_child, 1, d);

    fault_reap_within(pids, status, 2, FIPC_SEC(10));
    fault_expect_killed(status[1], "the consumer");
    fault_expect_ok(status[0], "the joiner", FIPC_SEC(10));
    cr_assert_eq(fipc_jqueue_unfinished(d->q), 0);
    cr_assert_eq(fipc_jqueue_join(d->q, 0), 0);
}

/* ---- SPSC: a put racing with close is counted exactly when it counts ----
 *
 * fipc__queue_spsc_put_late (queue_impl.h) is an SPSC put that passed its
 * check of closed just before close, with a callback between publishing
 * and settling with the consumer. */

static fipc_jqueue *new_spsc_jqueue(void)
{
    fipc_jqueue *q = NULL;
    int r = fipc_jqueue_create(&q, NULL, 4, 8, FIPC_QUEUE_SPSC);
    cr_assert_eq(r, 0, "fipc_jqueue_create: %s", fipc_strerror(r));
    return q;
}

/* Get one item and mark it done. */
static void take_and_finish(fipc_jqueue *q, uint64_t want)
{
    uint64_t got = 0;
    size_t len;
    cr_assert_eq(fipc_jqueue_get(q, &got, 8, &len, 0), 0);
    cr_assert_eq(got, want);
    cr_assert_eq(fipc_jqueue_task_done(q), 0);
}

/* After everything that counts is done: join returns at once and one more
 * task_done is one too many. */
static void expect_all_done(fipc_jqueue *q)
{
    cr_assert_eq(fipc_jqueue_join(q, 0), 0);
    cr_assert_eq(fipc_jqueue_task_done(q), -EOVERFLOW);
}

struct finish_then_seal {
    fipc_jqueue *q;
    uint64_t want;
};

static void finish_then_seal(void *arg)
{
    struct finish_then_seal *f = arg;
    take_and_finish(f->q, f->want);
    uint64_t got;
    size_t len;
    cr_assert_eq(fipc_jqueue_get(f->q, &got, 8, &len, 0), -EPIPE);
}

Test(jqueue, spsc_put_racing_close_that_the_consumer_finished_stays_counted)
{
    fipc_jqueue *q = new_spsc_jqueue();
    uint64_t a = 0xa, b = 0xb;
    struct iovec late = {&b, 8};
    cr_assert_eq(fipc_jqueue_put(q, &a, 8, 0), 0);
    cr_assert_eq(fipc_jqueue_close(q), 0);
    take_and_finish(q, a);
    /* The consumer takes b and finishes it before the put settles. */
    struct finish_then_seal f = {q, b};
    cr_assert_eq(fipc__queue_spsc_put_late(fipc_jqueue_queue(q), &late, 1, q, finish_then_seal, &f),
                 1);
    expect_all_done(q);
}

Test(jqueue, spsc_put_racing_close_that_no_consumer_took_is_not_counted)
{
    fipc_jqueue *q = new_spsc_jqueue();
    uint64_t a = 0xa, b = 0xb, got;
    struct iovec late = {&b, 8};
    size_t len;
    cr_assert_eq(fipc_jqueue_put(q, &a, 8, 0), 0);
    cr_assert_eq(fipc_jqueue_close(q), 0);
    take_and_finish(q, a);
    cr_assert_eq(fipc_jqueue_get(q, &got, 8, &len, 0), -EPIPE);
    cr_assert_eq(fipc__queue_spsc_put_late(fipc_jqueue_queue(q), &late, 1, q, NULL, NULL), -EPIPE);
    cr_assert_eq(fipc_jqueue_get(q, &got, 8, &len, 0), -EPIPE);
    expect_all_done(q);
}

/* ---- A producer killed between counting and publishing counts for nothing ----
 *
 * fipc__jqueue_put_counted_only (test_hooks.h) claims and counts, then
 * stops: the child raises SIGKILL right after, as a kill at that moment
 * would leave it.  MPMC: the claim is repaired as a counted tombstone, and
 * the get that passes it counts it done.  SPSC: the next producer counts
 * only what the dead one published. */

struct cut_put {
    fipc_jqueue *q;
    int k;      /* items the child claims */
    bool count; /* count them (a jqueue put), or claim only (a raw put) */
};

static int counted_then_killed(int i, void *arg)
{
    struct cut_put *c = arg;
    test_child_setup();
    uint64_t v[4] = {0xd1, 0xd2, 0xd3, 0xd4};
    struct iovec its[4];
    for (int x = 0; x < 4; x++)
        its[x] = (struct iovec){&v[x], 8};
    CHILD_CHECK(c->k <= 4, 1);
    if (c->count) {
        CHILD_CHECK(fipc__jqueue_put_counted_only(c->q, its, (size_t)c->k) == c->k, 2);
    } else {
        struct fipc__put_claim claim;
        CHILD_CHECK(
            fipc__queue_put_claim(fipc_jqueue_queue(c->q), its, (size_t)c->k, &claim) == c->k, 3);
    }
    raise(SIGKILL);
    return CHILD_FAIL(4);
}

static void cut_a_put(fipc_jqueue *q, int k, bool count)
{
    struct cut_put *c = test_shared(sizeof *c);
    *c = (struct cut_put){q, k, count};
    pid_t pid = test_fork(counted_then_killed, 0, c);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %#x", status);
}

/* One item before the cut put and one after: both are delivered in order
 * and the cut put's items never; join returns once the two are done. */
static void mpmc_cut_put_counts_for_nothing(int k, bool count)
{
    fipc_jqueue *q = new_jqueue(8, 8);
    uint64_t a = 0xa, b = 0xb;
    cr_assert_eq(fipc_jqueue_put(q, &a, 8, 0), 0);
    cut_a_put(q, k, count);
    cr_assert_eq(fipc_jqueue_unfinished(q), 1 + (count ? (size_t)k : 0));
    cr_assert_eq(fipc_jqueue_put(q, &b, 8, 0), 0);
    take_and_finish(q, a);
    /* The get waits behind the dead claim until it is repaired, passes
     * its tombstones and delivers b. */
    uint64_t got = 0;
    size_t len;
    cr_assert_eq(fipc_jqueue_get(q, &got, 8, &len, FIPC_SEC(10)), 0);
    cr_assert_eq(got, b);
    cr_assert_eq(fipc_jqueue_unfinished(q), 1);
    cr_assert_eq(fipc_jqueue_join(q, 0), -EAGAIN);
    cr_assert_eq(fipc_jqueue_task_done(q), 0);
    expect_all_done(q);
}

Test(jqueue, mpmc_producer_killed_after_counting_one_item_counts_for_nothing)
{
    mpmc_cut_put_counts_for_nothing(1, true);
}

Test(jqueue, mpmc_producer_killed_after_counting_three_items_counts_for_nothing)
{
    mpmc_cut_put_counts_for_nothing(3, true);
}

Test(jqueue, mpmc_producer_killed_before_counting_counts_for_nothing)
{
    mpmc_cut_put_counts_for_nothing(2, false);
}

struct cut_joiner {
    fipc_jqueue *q;
    uint32_t started;
    pid_t pid;
};

static int cut_joiner_child(int i, void *arg)
{
    struct cut_joiner *j = arg;
    test_child_setup();
    j->pid = getpid();
    test_flag_add(&j->started);
    CHILD_CHECK(fipc_jqueue_join(j->q, HANDSHAKE_NS) == 0, 1);
    return CHILD_OK;
}

/* A joiner asleep when the producer dies wakes once the consumer that
 * passes the dead claim has finished everything else. */
Test(jqueue, mpmc_joiner_returns_once_the_dead_producers_counted_claim_is_passed)
{
    struct cut_joiner *j = test_shared(sizeof *j);
    j->q = new_jqueue(8, 8);
    uint64_t a = 0xa;
    cr_assert_eq(fipc_jqueue_put(j->q, &a, 8, 0), 0);
    cut_a_put(j->q, 2, true);
    pid_t pid = test_fork(cut_joiner_child, 0, j);
    cr_assert(test_wait_until_at_least(&j->started, 1, HANDSHAKE_NS));
    cr_assert(test_wait_sleeping(j->pid, HANDSHAKE_NS));
    take_and_finish(j->q, a);
    uint64_t got;
    size_t len;
    /* Nothing more to deliver: the get repairs, passes and times out. */
    cr_assert_eq(fipc_jqueue_get(j->q, &got, 8, &len, FIPC_MSEC(200)), -ETIMEDOUT);
    cr_assert_eq(fipc_jqueue_unfinished(j->q), 0);
    test_reap_within(&pid, 1, HANDSHAKE_NS);
    expect_all_done(j->q);
}

static void spsc_cut_put_counts_for_nothing(int k)
{
    fipc_jqueue *q = new_spsc_jqueue();
    uint64_t a = 0xa, b = 0xb;
    cr_assert_eq(fipc_jqueue_put(q, &a, 8, 0), 0);
    cut_a_put(q, k, true);
    cr_assert_eq(fipc_jqueue_unfinished(q), 1 + (size_t)k);
    /* This process takes the dead producer's place: its put finds the
     * dead one's pending count and takes it back. */
    cr_assert_eq(fipc_jqueue_put(q, &b, 8, 0), 0);
    cr_assert_eq(fipc_jqueue_unfinished(q), 2);
    take_and_finish(q, a);
    take_and_finish(q, b);
    expect_all_done(q);
}

Test(jqueue, spsc_producer_killed_after_counting_one_item_counts_for_nothing)
{
    spsc_cut_put_counts_for_nothing(1);
}

Test(jqueue, spsc_producer_killed_after_counting_two_items_counts_for_nothing)
{
    spsc_cut_put_counts_for_nothing(2);
}
