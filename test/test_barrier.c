/*
 * test_barrier.c - fipc_barrier: Python's Barrier across processes.
 *
 * Children report through their exit status; every wait inside a child has
 * a bound, so a barrier that never opens fails a check instead of hanging.
 */
#include "common.h"

TestSuite(barrier, .timeout = 30);

#define LIMIT_NS FIPC_SEC(10)

/* Wait (bounded) until fipc_barrier_n_waiting(b) == want. */
static bool wait_n_waiting(const fipc_barrier *b, int want)
{
    return TEST_WAIT_UNTIL(fipc_barrier_n_waiting(b) == want, LIMIT_NS);
}

/* Whether the indices idx[0..n-1] are a permutation of 0..n-1. */
static bool is_permutation(const int32_t *idx, int n)
{
    uint64_t seen = 0;
    for (int i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= n || (seen & (1ull << idx[i]))) return false;
        seen |= 1ull << idx[i];
    }
    return true;
}

/* ---------------------------------------------------------------- */
/* Many rounds                                                       */
/* ---------------------------------------------------------------- */

#define RR_PARTIES 4
#define RR_ROUNDS  1000

struct rounds {
    fipc_barrier *b;
    int32_t idx[RR_ROUNDS][RR_PARTIES]; /* idx[round][party] */
};

static int rounds_party(int me, void *arg)
{
    struct rounds *s = arg;
    for (int r = 0; r < RR_ROUNDS; r++) {
        int got = fipc_barrier_wait(s->b, FIPC_SEC(30));
        CHILD_CHECK(got >= 0, 1);
        CHILD_CHECK(got < RR_PARTIES, 2);
        s->idx[r][me] = got;
    }
    return CHILD_OK;
}

Test(barrier, every_round_hands_out_each_index_once)
{
    struct rounds *s = test_shared(sizeof *s);
    s->b = fipc_barrier_new(NULL, RR_PARTIES);
    cr_assert_not_null(s->b);
    for (int r = 0; r < RR_ROUNDS; r++)
        for (int p = 0; p < RR_PARTIES; p++)
            s->idx[r][p] = -1;

    test_run_children(RR_PARTIES, rounds_party, s);

    for (int r = 0; r < RR_ROUNDS; r++)
        cr_assert(is_permutation(s->idx[r], RR_PARTIES), "round %d: indices %d %d %d %d", r,
                  s->idx[r][0], s->idx[r][1], s->idx[r][2], s->idx[r][3]);
    cr_assert_not(fipc_barrier_broken(s->b));
    cr_assert_eq(fipc_barrier_n_waiting(s->b), 0);
    cr_assert_eq(fipc_barrier_parties(s->b), RR_PARTIES);
}

Test(barrier, single_party_barrier_never_blocks)
{
    fipc_barrier b;
    cr_assert_eq(fipc_barrier_init(&b, 1), 0);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(fipc_barrier_wait(&b, 0), 0);
    cr_assert_not(fipc_barrier_broken(&b));
    cr_assert_eq(fipc_barrier_n_waiting(&b), 0);
}

/* ---------------------------------------------------------------- */
/* Breaking: timeout, abort, reset                                   */
/* ---------------------------------------------------------------- */

struct brk {
    fipc_barrier b;
    int32_t idx[4];
};

/* Wait without limit (the barrier must let it go) and expect -ECANCELED. */
static int expect_canceled(int i, void *arg)
{
    struct brk *s = arg;
    test_child_setup();
    int r = fipc_barrier_wait(&s->b, FIPC_FOREVER);
    CHILD_CHECK(r == -ECANCELED, 1);
    CHILD_CHECK(fipc_barrier_broken(&s->b), 2);
    /* Broken stays broken: a later wait fails at once. */
    CHILD_CHECK(fipc_barrier_wait(&s->b, FIPC_FOREVER) == -ECANCELED, 3);
    return CHILD_OK;
}

/* One party of a full round: record the index. */
static int one_round(int i, void *arg)
{
    struct brk *s = arg;
    int r = fipc_barrier_wait(&s->b, FIPC_SEC(30));
    CHILD_CHECK(r >= 0, 1);
    s->idx[i] = r;
    return CHILD_OK;
}

Test(barrier, timeout_breaks_barrier_for_every_waiter_until_reset)
{
    struct brk *s = test_shared(sizeof *s);
    cr_assert_eq(fipc_barrier_init(&s->b, 3), 0);

    /* Party one waits without limit. */
    pid_t other = test_fork(expect_canceled, 0, s);
    cr_assert(wait_n_waiting(&s->b, 1), "n_waiting is %d", fipc_barrier_n_waiting(&s->b));
    cr_assert(test_wait_sleeping(other, LIMIT_NS));

    /* Party two runs out of time; the third never comes. */
    int64_t t0 = test_now_ns();
    int r = fipc_barrier_wait(&s->b, FIPC_MSEC(50));
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_eq(r, -ECANCELED, "timed-out wait returned %d", r);
    cr_assert_geq(elapsed, FIPC_MSEC(50), "returned after %lld ns", (long long)elapsed);
    cr_assert(fipc_barrier_broken(&s->b));
    test_expect_ok(other);

    /* Later callers fail at once, whatever their timeout. */
    cr_assert_eq(fipc_barrier_wait(&s->b, FIPC_FOREVER), -ECANCELED);
    cr_assert_eq(fipc_barrier_wait(&s->b, 0), -ECANCELED);
    cr_assert_eq(fipc_barrier_wait(&s->b, FIPC_SEC(5)), -ECANCELED);
    cr_assert(fipc_barrier_broken(&s->b));

    /* Reset repairs it: a full round works again. */
    cr_assert_eq(fipc_barrier_reset(&s->b), 0);
    cr_assert_not(fipc_barrier_broken(&s->b));
    cr_assert_eq(fipc_barrier_n_waiting(&s->b), 0);
    cr_assert_eq(fipc_barrier_parties(&s->b), 3);
    for (int i = 0; i < 4; i++)
        s->idx[i] = -1;
    pid_t a = test_fork(one_round, 0, s);
    pid_t b = test_fork(one_round, 1, s);
    r = fipc_barrier_wait(&s->b, FIPC_SEC(30));
    cr_assert_geq(r, 0, "wait after reset returned %d", r);
    s->idx[2] = r;
    test_expect_ok(a);
    test_expect_ok(b);
    cr_assert(is_permutation(s->idx, 3), "indices %d %d %d", s->idx[0], s->idx[1], s->idx[2]);
    cr_assert_not(fipc_barrier_broken(&s->b));
}

/* one_round for a child the test stops: SIGKILL reaches it even stopped. */
static int one_round_dying_with_test(int i, void *arg)
{
    test_child_setup();
    return one_round(i, arg);
}

/* A released round belongs to its waiters: a later caller whose time runs
 * out while they are still on their way out (preempted, say) must not turn
 * their success into -ECANCELED.  The other party of that round already
 * returned its index, so both must agree that the round completed. */
Test(barrier, timeout_of_a_later_caller_does_not_cancel_a_released_round)
{
    struct brk *s = test_shared(sizeof *s);
    cr_assert_eq(fipc_barrier_init(&s->b, 2), 0);
    for (int i = 0; i < 4; i++)
        s->idx[i] = -1;

    pid_t slow = test_fork(one_round_dying_with_test, 0, s);
    cr_assert(wait_n_waiting(&s->b, 1));
    cr_assert(test_wait_sleeping(slow, LIMIT_NS));
    /* Stand in for a waiter that the scheduler leaves off the CPU. */
    cr_assert_eq(kill(slow, SIGSTOP), 0);
    cr_assert(test_wait_stopped(slow, LIMIT_NS), "SIGSTOP never took effect");

    int r = fipc_barrier_wait(&s->b, FIPC_SEC(30));
    cr_assert_eq(r, 1, "the releasing arrival got %d", r);
    /* The next round starts at once, without the stopped waiter; this
     * caller runs out of time in it and breaks it. */
    r = fipc_barrier_wait(&s->b, FIPC_MSEC(50));
    cr_assert_eq(r, -ECANCELED, "the late caller got %d", r);

    cr_assert_eq(kill(slow, SIGCONT), 0);
    int status;
    cr_assert_eq(waitpid(slow, &status, 0), slow);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 0,
                 "the released waiter lost its round (check %d): its partner got index 1",
                 WEXITSTATUS(status));
    cr_assert_eq(s->idx[0], 0);

    /* The late caller's timeout broke its own round, not the one before. */
    cr_assert(fipc_barrier_broken(&s->b));
    cr_assert_eq(fipc_barrier_wait(&s->b, FIPC_FOREVER), -ECANCELED);
    cr_assert_eq(fipc_barrier_reset(&s->b), 0);
    cr_assert_not(fipc_barrier_broken(&s->b));
}

/* Start a party that arrives and is then SIGKILLed inside the barrier;
 * return once it has been reaped, with want parties counted as arrived. */
static void kill_a_party_inside(struct brk *s, int want)
{
    pid_t victim = test_fork(one_round_dying_with_test, 3, s);
    cr_assert(wait_n_waiting(&s->b, want), "n_waiting is %d", fipc_barrier_n_waiting(&s->b));
    cr_assert(test_wait_sleeping(victim, LIMIT_NS));
    test_kill_and_reap(victim);
}

/* Run one full round of parties: parties - 1 children and this process. */
static void full_round(struct brk *s, int parties)
{
    pid_t pids[3];
    for (int i = 0; i < 4; i++)
        s->idx[i] = -1;
    for (int i = 0; i < parties - 1; i++)
        pids[i] = test_fork(one_round, i, s);
    int r = fipc_barrier_wait(&s->b, LIMIT_NS);
    cr_assert_geq(r, 0, "wait gave %d", r);
    s->idx[parties - 1] = r;
    for (int i = 0; i < parties - 1; i++)
        test_expect_ok(pids[i]);
    cr_assert(is_permutation(s->idx, parties), "indices %d %d %d", s->idx[0], s->idx[1], s->idx[2]);
}

/* A party killed after arriving counts as arrived: its round is released,
 * and the next rounds start without waiting for it to leave. */
Test(barrier, party_killed_after_arriving_does_not_hold_up_later_rounds)
{
    struct brk *s = test_shared(sizeof *s);
    cr_assert_eq(fipc_barrier_init(&s->b, 2), 0);
    kill_a_party_inside(s, 1);

    cr_assert_eq(fipc_barrier_wait(&s->b, LIMIT_NS), 1, "the round was not released");
    cr_assert_eq(fipc_barrier_n_waiting(&s->b), 0);
    /* A replacement party takes the dead one's place, round after round. */
    for (int round = 0; round < 3; round++)
        full_round(s, 2);
    cr_assert_not(fipc_barrier_broken(&s->b));
}

/* A party killed inside a round that cannot fill without it: the others'
 * timeout breaks the barrier (and says so), and reset starts a fresh round
 * that a replacement party can complete. */
Test(barrier, reset_after_a_party_died_inside_starts_a_fresh_round)
{
    struct brk *s = test_shared(sizeof *s);
    cr_assert_eq(fipc_barrier_init(&s->b, 3), 0);
    kill_a_party_inside(s, 1);

    int64_t t0 = test_now_ns();
    cr_assert_eq(fipc_barrier_wait(&s->b, FIPC_MSEC(50)), -ECANCELED);
    cr_assert_geq(test_now_ns() - t0, FIPC_MSEC(50));
    cr_assert(fipc_barrier_broken(&s->b), "a timeout broke the barrier");
    cr_assert_eq(fipc_barrier_wait(&s->b, LIMIT_NS), -ECANCELED);

    cr_assert_eq(fipc_barrier_reset(&s->b), 0);
    cr_assert_not(fipc_barrier_broken(&s->b));
    cr_assert_eq(fipc_barrier_n_waiting(&s->b), 0, "the dead party still counts");
    full_round(s, 3);
    full_round(s, 3);
    cr_assert_not(fipc_barrier_broken(&s->b));

    /* abort, then reset: the same. */
    cr_assert_eq(fipc_barrier_abort(&s->b), 0);
    cr_assert_eq(fipc_barrier_wait(&s->b, LIMIT_NS), -ECANCELED);
    cr_assert_eq(fipc_barrier_reset(&s->b), 0);
    full_round(s, 3);
}

/* A released party that the scheduler keeps off the CPU while later rounds
 * run (a barrier shared by more processes than parties) still gets its own
 * round's index when it runs again, however many rounds went by. */
#define LAP_ROUNDS 40

static int lap_helper(int i, void *arg)
{
    struct brk *s = arg;
    for (int r = 0; r < LAP_ROUNDS; r++)
        CHILD_CHECK(fipc_barrier_wait(&s->b, LIMIT_NS) >= 0, 1);
    return CHILD_OK;
}

/* The slot of idx that the stopped party of release_a_stopped_party fills. */
#define SLOW 3

/* Stop a party inside a round of two, release that round from here, and
 * return the stopped party's pid. */
static pid_t release_a_stopped_party(struct brk *s)
{
    s->idx[SLOW] = -1;
    pid_t slow = test_fork(one_round_dying_with_test, SLOW, s);
    cr_assert(wait_n_waiting(&s->b, 1));
    cr_assert(test_wait_sleeping(slow, LIMIT_NS));
    cr_assert_eq(kill(slow, SIGSTOP), 0);
    cr_assert(test_wait_stopped(slow, LIMIT_NS), "SIGSTOP never took effect");
    cr_assert_eq(fipc_barrier_wait(&s->b, LIMIT_NS), 1);
    return slow;
}

/* Run LAP_ROUNDS released rounds with a helper process. */
static void lap(struct brk *s)
{
    pid_t helper = test_fork(lap_helper, 1, s);
    for (int r = 0; r < LAP_ROUNDS; r++)
        cr_assert_geq(fipc_barrier_wait(&s->b, LIMIT_NS), 0);
    test_expect_ok(helper);
}

/* Let the stopped party run and return what its wait gave: its index, or
 * -1 if its wait failed. */
static int32_t resume(struct brk *s, pid_t slow)
{
    cr_assert_eq(kill(slow, SIGCONT), 0);
    int status;
    cr_assert_eq(waitpid(slow, &status, 0), slow);
    cr_assert(WIFEXITED(status));
    return WEXITSTATUS(status) == 0 ? s->idx[SLOW] : -1;
}

Test(barrier, released_party_keeps_its_index_while_later_rounds_run)
{
    struct brk *s = test_shared(sizeof *s);
    cr_assert_eq(fipc_barrier_init(&s->b, 2), 0);

    /* Far more released rounds than the barrier keeps outcomes of. */
    pid_t slow = release_a_stopped_party(s);
    lap(s);
    cr_assert_eq(resume(s, slow), 0, "the released party lost its round");

    /* A break and a reset after its round, then a released round. */
    slow = release_a_stopped_party(s);
    cr_assert_eq(fipc_barrier_wait(&s->b, 0), -ECANCELED);
    cr_assert_eq(fipc_barrier_reset(&s->b), 0);
    full_round(s, 2);
    cr_assert_eq(resume(s, slow), 0, "the released party took a later break for its own");
    cr_assert_not(fipc_barrier_broken(&s->b));
}

/* The documented limit: the barrier keeps the outcomes of the last 15
 * rounds, and counts breaks and resets.  A released party that runs again
 * only after more rounds than that, one of them broken, cannot be told
 * which of them was its own: it gets -ECANCELED. */
Test(barrier, released_party_past_15_rounds_and_a_break_gets_ecanceled)
{
    struct brk *s = test_shared(sizeof *s);
    cr_assert_eq(fipc_barrier_init(&s->b, 2), 0);
    pid_t slow = release_a_stopped_party(s);
    lap(s);
    cr_assert_eq(fipc_barrier_wait(&s->b, 0), -ECANCELED);
    cr_assert_eq(fipc_barrier_reset(&s->b), 0);
    cr_assert_eq(resume(s, slow), -1, "wait gave index %d", s->idx[SLOW]);
    full_round(s, 2);
}

Test(barrier, zero_timeout_with_parties_missing_breaks_at_once)
{
    fipc_barrier b;
    cr_assert_eq(fipc_barrier_init(&b, 2), 0);
    cr_assert_eq(fipc_barrier_wait(&b, 0), -ECANCELED);
    cr_assert(fipc_barrier_broken(&b));
    cr_assert_eq(fipc_barrier_wait(&b, 0), -ECANCELED);
    cr_assert_eq(fipc_barrier_reset(&b), 0);
    cr_assert_not(fipc_barrier_broken(&b));
}

Test(barrier, abort_cancels_current_and_later_waiters)
{
    struct brk *s = test_shared(sizeof *s);
    cr_assert_eq(fipc_barrier_init(&s->b, 3), 0);

    pid_t w[2];
    for (int i = 0; i < 2; i++)
        w[i] = test_fork(expect_canceled, i, s);
    cr_assert(wait_n_waiting(&s->b, 2), "n_waiting is %d", fipc_barrier_n_waiting(&s->b));
    for (int i = 0; i < 2; i++)
        cr_assert(test_wait_sleeping(w[i], LIMIT_NS));
    cr_assert_not(fipc_barrier_broken(&s->b));

    cr_assert_eq(fipc_barrier_abort(&s->b), 0);
    cr_assert(fipc_barrier_broken(&s->b));
    for (int i = 0; i < 2; i++)
        test_expect_ok(w[i]);
    cr_assert_eq(fipc_barrier_wait(&s->b, FIPC_FOREVER), -ECANCELED);

    cr_assert_eq(fipc_barrier_reset(&s->b), 0);
    cr_assert_not(fipc_barrier_broken(&s->b));
}

/* Wait without limit; -ECANCELED is the only acceptable answer (from reset). */
static int expect_canceled_by_reset(int i, void *arg)
{
    struct brk *s = arg;
    test_child_setup();
    CHILD_CHECK(fipc_barrier_wait(&s->b, FIPC_FOREVER) == -ECANCELED, 1);
    return CHILD_OK;
}

Test(barrier, reset_cancels_current_waiters_and_leaves_barrier_usable)
{
    struct brk *s = test_shared(sizeof *s);
    cr_assert_eq(fipc_barrier_init(&s->b, 2), 0);

    pid_t w = test_fork(expect_canceled_by_reset, 0, s);
    cr_assert(wait_n_waiting(&s->b, 1));
    cr_assert(test_wait_sleeping(w, LIMIT_NS));
    cr_assert_eq(fipc_barrier_reset(&s->b), 0);
    test_expect_ok(w);

    /* After a reset the barrier is whole: a two-party round completes. */
    cr_assert_not(fipc_barrier_broken(&s->b));
    for (int i = 0; i < 4; i++)
        s->idx[i] = -1;
    pid_t a = test_fork(one_round, 0, s);
    int r = fipc_barrier_wait(&s->b, FIPC_SEC(30));
    cr_assert_geq(r, 0, "wait after reset returned %d", r);
    s->idx[1] = r;
    test_expect_ok(a);
    cr_assert(is_permutation(s->idx, 2), "indices %d %d", s->idx[0], s->idx[1]);
}

/* ---------------------------------------------------------------- */
/* Snapshots and bad input                                           */
/* ---------------------------------------------------------------- */

Test(barrier, n_waiting_and_parties_report_the_current_round)
{
    struct brk *s = test_shared(sizeof *s);
    cr_assert_eq(fipc_barrier_init(&s->b, 3), 0);
    cr_assert_eq(fipc_barrier_parties(&s->b), 3);
    cr_assert_eq(fipc_barrier_n_waiting(&s->b), 0);
    for (int i = 0; i < 4; i++)
        s->idx[i] = -1;

    pid_t a = test_fork(one_round, 0, s);
    cr_assert(wait_n_waiting(&s->b, 1), "n_waiting is %d", fipc_barrier_n_waiting(&s->b));
    pid_t b = test_fork(one_round, 1, s);
    cr_assert(wait_n_waiting(&s->b, 2), "n_waiting is %d", fipc_barrier_n_waiting(&s->b));
    cr_assert_eq(fipc_barrier_parties(&s->b), 3);

    int r = fipc_barrier_wait(&s->b, FIPC_SEC(30));
    cr_assert_geq(r, 0);
    s->idx[2] = r;
    test_expect_ok(a);
    test_expect_ok(b);
    cr_assert(is_permutation(s->idx, 3));
    cr_assert_eq(fipc_barrier_n_waiting(&s->b), 0);
    cr_assert_eq(fipc_barrier_parties(&s->b), 3);
}

Test(barrier, parties_out_of_range_give_einval)
{
    fipc_barrier b;
    cr_assert_eq(fipc_barrier_init(&b, 0), -EINVAL);
    cr_assert_eq(fipc_barrier_init(&b, 65536), -EINVAL);
    cr_assert_eq(fipc_barrier_init(&b, UINT32_MAX), -EINVAL);
    cr_assert_null(fipc_barrier_new(NULL, 0));
    cr_assert_null(fipc_barrier_new(NULL, 65536));

    cr_assert_eq(fipc_barrier_init(&b, 65535), 0);
    cr_assert_eq(fipc_barrier_parties(&b), 65535);
    fipc_barrier *nb = fipc_barrier_new(NULL, 7);
    cr_assert_not_null(nb);
    cr_assert_eq(fipc_barrier_parties(nb), 7);
    cr_assert_eq(fipc_barrier_n_waiting(nb), 0);
    cr_assert_not(fipc_barrier_broken(nb));
}

/* Shared memory is input from every process: a barrier zeroed but never
 * initialised is a bad argument, and one whose count a peer has driven past
 * parties (state bits 0..15, see barrier.md) is refused, never obeyed. */
Test(barrier, uninitialised_or_corrupt_barrier_is_refused)
{
    fipc_barrier *b = test_shared(sizeof *b);
    cr_assert_eq(fipc_barrier_wait(b, 0), -EINVAL);
    cr_assert_eq(fipc_barrier_wait(b, FIPC_FOREVER), -EINVAL);

    cr_assert_eq(fipc_barrier_init(b, 2), 0);
    ((unsigned char *)b)[0] = 5; /* count = 5: five arrivals of two */
    cr_assert_eq(fipc_barrier_wait(b, FIPC_FOREVER), -EPROTO);
    cr_assert_eq(fipc_barrier_reset(b), 0);
    cr_assert_eq(fipc_barrier_n_waiting(b), 0, "reset cancels the bogus arrivals");
    cr_assert_eq(fipc_barrier_wait(b, 0), -ECANCELED);
    cr_assert(fipc_barrier_broken(b));
}

Test(barrier, null_barrier_gives_einval)
{
    cr_assert_eq(fipc_barrier_init(NULL, 2), -EINVAL);
    cr_assert_eq(fipc_barrier_wait(NULL, 0), -EINVAL);
    cr_assert_eq(fipc_barrier_wait(NULL, FIPC_FOREVER), -EINVAL);
    cr_assert_eq(fipc_barrier_abort(NULL), -EINVAL);
    cr_assert_eq(fipc_barrier_reset(NULL), -EINVAL);
    cr_assert_eq(fipc_barrier_parties(NULL), -EINVAL);
    cr_assert_eq(fipc_barrier_n_waiting(NULL), -EINVAL);
    cr_assert_not(fipc_barrier_broken(NULL));
}
