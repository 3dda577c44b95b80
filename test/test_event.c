/*
 * test_event.c - fipc_event: a flag that processes wait on.  The traffic
 * light seed (cars block on red, all pass on green), a set-and-clear that a
 * sleeper must not miss, timeouts and the error codes.
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 */
#include "common.h"
#include "futex_faults.h"

#include <pthread.h>

TestSuite(event, .timeout = 60);

/* ---- Basics ---- */

Test(event, new_event_is_clear_and_set_clear_toggle_is_set)
{
    fipc_event *e = fipc_event_new(NULL);
    cr_assert_not_null(e);
    cr_assert_not(fipc_event_is_set(e));
    cr_assert_eq(fipc_event_set(e), 0);
    cr_assert(fipc_event_is_set(e));
    cr_assert_eq(fipc_event_set(e), 0, "setting a set event is fine");
    cr_assert(fipc_event_is_set(e));
    cr_assert_eq(fipc_event_clear(e), 0);
    cr_assert_not(fipc_event_is_set(e));
    cr_assert_eq(fipc_event_clear(e), 0, "clearing a clear event is fine");
    cr_assert_not(fipc_event_is_set(e));

    fipc_event own;
    cr_assert_eq(fipc_event_init(&own), 0);
    cr_assert_not(fipc_event_is_set(&own));
    cr_assert_eq(fipc_event_set(&own), 0);
    cr_assert(fipc_event_is_set(&own));
}

Test(event, wait_on_a_set_event_returns_0_at_once_even_with_timeout_0)
{
    fipc_event *e = fipc_event_new(NULL);
    cr_assert_not_null(e);
    cr_assert_eq(fipc_event_set(e), 0);
    int64_t t0 = test_now_ns();
    cr_assert_eq(fipc_event_wait(e, 0), 0);
    cr_assert_eq(fipc_event_wait(e, FIPC_MSEC(50)), 0);
    cr_assert_eq(fipc_event_wait(e, FIPC_FOREVER), 0);
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_lt(elapsed, FIPC_SEC(1), "three waits on a set event took %lld ns",
                 (long long)elapsed);
    cr_assert(fipc_event_is_set(e), "waiting does not consume the flag");
}

Test(event, set_then_clear_before_the_wait_starts_is_not_seen)
{
    fipc_event *e = fipc_event_new(NULL);
    cr_assert_not_null(e);
    cr_assert_eq(fipc_event_set(e), 0);
    cr_assert_eq(fipc_event_clear(e), 0);
    cr_assert_eq(fipc_event_wait(e, 0), -EAGAIN);
    cr_assert_eq(fipc_event_wait(e, FIPC_MSEC(20)), -ETIMEDOUT);
}

Test(event, null_arguments_give_einval)
{
    cr_assert_eq(fipc_event_init(NULL), -EINVAL);
    cr_assert_eq(fipc_event_set(NULL), -EINVAL);
    cr_assert_eq(fipc_event_clear(NULL), -EINVAL);
    cr_assert_not(fipc_event_is_set(NULL));
    cr_assert_eq(fipc_event_wait(NULL, 0), -EINVAL);
    cr_assert_eq(fipc_event_wait(NULL, FIPC_MSEC(10)), -EINVAL);
    cr_assert_eq(fipc_event_wait(NULL, FIPC_FOREVER), -EINVAL);
}

/* ---- Timeouts ---- */

Test(event, wait_times_out_after_50ms_when_unset)
{
    fipc_event *e = fipc_event_new(NULL);
    cr_assert_not_null(e);
    int64_t t0 = test_now_ns();
    int r = fipc_event_wait(e, FIPC_MSEC(50));
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_eq(r, -ETIMEDOUT, "wait gave %d (%s)", r, fipc_strerror(r));
    cr_assert_geq(elapsed, FIPC_MSEC(50), "gave up after %lld ns", (long long)elapsed);
    cr_assert_lt(elapsed, FIPC_SEC(5), "took %lld ns", (long long)elapsed);
}

Test(event, wait_with_zero_timeout_fails_with_eagain_at_once_when_unset)
{
    fipc_event *e = fipc_event_new(NULL);
    cr_assert_not_null(e);
    int64_t t0 = test_now_ns();
    int r = fipc_event_wait(e, 0);
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_eq(r, -EAGAIN, "wait gave %d (%s)", r, fipc_strerror(r));
    cr_assert_lt(elapsed, FIPC_SEC(1), "took %lld ns", (long long)elapsed);
}

Test(event, timed_wait_is_not_cut_short_by_signals)
{
    fipc_event *e = fipc_event_new(NULL);
    cr_assert_not_null(e);
    struct test_pester p = {0};
    test_pester_start(&p);

    int64_t t0 = test_now_ns();
    int r = fipc_event_wait(e, FIPC_MSEC(200));
    int64_t elapsed = test_now_ns() - t0;
    test_pester_stop(&p);
    cr_assert_eq(r, -ETIMEDOUT, "wait gave %d (%s)", r, fipc_strerror(r));
    cr_assert_geq(elapsed, FIPC_MSEC(200), "gave up after %lld ns", (long long)elapsed);
}

/* ---- The traffic-light seed: ten cars wait for green ---- */

#define CARS 10

struct crossing {
    fipc_event *light; /* set = green */
    uint32_t arrived;  /* cars about to wait */
    uint32_t saw_red;  /* cars that found the light red */
    uint32_t passed;   /* cars whose wait returned 0 */
};

static int car_child(int i, void *arg)
{
    struct crossing *c = arg;
    test_child_setup();
    if (!fipc_event_is_set(c->light)) __atomic_fetch_add(&c->saw_red, 1, __ATOMIC_ACQ_REL);
    __atomic_fetch_add(&c->arrived, 1, __ATOMIC_ACQ_REL);
    CHILD_CHECK(fipc_event_wait(c->light, FIPC_FOREVER) == 0, 1);
    __atomic_fetch_add(&c->passed, 1, __ATOMIC_ACQ_REL);
    CHILD_CHECK(fipc_event_is_set(c->light), 2); /* the light stays green */
    return CHILD_OK;
}

static void run_crossing(fipc_event *light)
{
    struct crossing *c = test_shared(sizeof *c);
    c->light = light;
    pid_t cars[CARS];
    for (int i = 0; i < CARS; i++)
        cars[i] = test_fork(car_child, i, c);

    /* Red: every car must come to a stop, asleep in wait, and none pass. */
    cr_assert(test_wait_until_at_least(&c->arrived, CARS, HANDSHAKE_NS), "only %u arrived",
              c->arrived);
    for (int i = 0; i < CARS; i++)
        cr_assert(test_wait_sleeping(cars[i], HANDSHAKE_NS), "car %d never stopped", i);
    cr_assert_eq(__atomic_load_n(&c->passed, __ATOMIC_ACQUIRE), 0, "%u cars ran the red light",
                 c->passed);
    cr_assert_eq(c->saw_red, CARS);

    /* Green: all of them go. */
    cr_assert_eq(fipc_event_set(light), 0);
    test_reap_within(cars, CARS, REAP_NS);
    cr_assert_eq(c->passed, CARS, "%u of %d cars passed", c->passed, CARS);
}

Test(event, traffic_light_holds_10_cars_on_red_and_lets_all_pass_on_green)
{
    fipc_event *light = fipc_event_new(NULL);
    cr_assert_not_null(light);
    run_crossing(light);
}

Test(event, traffic_light_works_with_an_event_initialised_in_mmap_memory)
{
    fipc_event *light = test_shared(sizeof *light);
    cr_assert_eq(fipc_event_init(light), 0);
    run_crossing(light);
}

/* ---- A set that is cleared at once still wakes the sleepers ---- */

struct pulse {
    fipc_event *e;
    uint32_t arrived;
};

static int pulse_waiter_child(int i, void *arg)
{
    struct pulse *p = arg;
    test_child_setup();
    __atomic_fetch_add(&p->arrived, 1, __ATOMIC_ACQ_REL);
    CHILD_CHECK(fipc_event_wait(p->e, FIPC_FOREVER) == 0, 1);
    return CHILD_OK;
}

/* Start four pulse_waiter_child on a fresh event, and return once all of
 * them sleep in its wait. */
static struct pulse *start_pulse_waiters(pid_t pids[4])
{
    struct pulse *p = test_shared(sizeof *p);
    p->e = fipc_event_new(NULL);
    cr_assert_not_null(p->e);
    for (int i = 0; i < 4; i++)
        pids[i] = test_fork(pulse_waiter_child, i, p);
    cr_assert(test_wait_until_at_least(&p->arrived, 4, HANDSHAKE_NS));
    for (int i = 0; i < 4; i++)
        cr_assert(test_wait_sleeping(pids[i], HANDSHAKE_NS), "waiter %d never slept", i);
    return p;
}

Test(event, sleepers_wake_with_0_when_the_event_is_set_and_cleared_at_once)
{
    pid_t pids[4];
    struct pulse *p = start_pulse_waiters(pids);

    cr_assert_eq(fipc_event_set(p->e), 0);
    cr_assert_eq(fipc_event_clear(p->e), 0);
    test_reap_within(pids, 4, REAP_NS);
    cr_assert_not(fipc_event_is_set(p->e));
    cr_assert_eq(fipc_event_wait(p->e, 0), -EAGAIN, "a later wait sees the clear");
}

/* The same, made deterministic: the sleepers are stopped (still inside
 * wait) while the flag goes up and down, so none can run in between and
 * every one of them must rely on the generation to see that it was set. */
Test(event, stopped_waiters_return_0_after_a_set_and_clear_they_could_not_see)
{
    pid_t pids[4];
    struct pulse *p = start_pulse_waiters(pids);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(kill(pids[i], SIGSTOP), 0);
        cr_assert(test_wait_stopped(pids[i], HANDSHAKE_NS), "waiter %d did not stop", i);
    }

    cr_assert_eq(fipc_event_set(p->e), 0);
    cr_assert_eq(fipc_event_clear(p->e), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(kill(pids[i], SIGCONT), 0);
    test_reap_within(pids, 4, REAP_NS);
}

static int check_set_child(int i, void *arg)
{
    fipc_event *e = arg;
    test_child_setup();
    CHILD_CHECK(fipc_event_is_set(e), 1);
    CHILD_CHECK(fipc_event_wait(e, 0) == 0, 2);
    CHILD_CHECK(fipc_event_clear(e) == 0, 3);
    return CHILD_OK;
}

Test(event, set_and_clear_are_seen_by_other_processes)
{
    fipc_event *e = fipc_event_new(NULL);
    cr_assert_not_null(e);
    cr_assert_eq(fipc_event_set(e), 0);
    test_expect_ok(test_fork(check_set_child, 0, e));
    cr_assert_not(fipc_event_is_set(e), "the child's clear is seen here");
    cr_assert_eq(fipc_event_wait(e, 0), -EAGAIN);
}

/* ---- Killed between set and wake ---- */

#define DYING_SLEEPERS 3

struct dying_set {
    fipc_event *e;
    uint32_t started; /* sleepers about to block */
    pid_t sleepers[DYING_SLEEPERS];
};

static int flag_sleeper_child(int i, void *arg)
{
    struct dying_set *d = arg;
    test_child_setup();
    __atomic_fetch_add(&d->started, 1, __ATOMIC_ACQ_REL);
    CHILD_CHECK(fipc_event_wait(d->e, FIPC_FOREVER) == 0, 1);
    return CHILD_OK;
}

/* Set the event once every sleeper sleeps, and be killed after the flag
 * and generation changed but before the wake. */
static int set_and_die_child(int i, void *arg)
{
    struct dying_set *d = arg;
    test_child_setup();
    CHILD_CHECK(test_wait_until_at_least(&d->started, DYING_SLEEPERS, HANDSHAKE_NS), 1);
    for (int k = 0; k < DYING_SLEEPERS; k++)
        CHILD_CHECK(test_wait_sleeping(d->sleepers[k], HANDSHAKE_NS), 2);
    fault_kill_at_next_wake();
    fipc_event_set(d->e);
    return CHILD_FAIL(3);
}

/* Nobody will wake the sleepers: their sleeps end at the one-second
 * re-check, which finds the new generation.  With clear, the flag is
 * cleared again as soon as the setter is dead, most likely before they
 * look: as after any set, they return 0 all the same. */
static void run_dying_set(bool clear)
{
    struct dying_set *d = test_shared(sizeof *d);
    d->e = fipc_event_new(NULL);
    cr_assert_not_null(d->e);
    for (int k = 0; k < DYING_SLEEPERS; k++)
        d->sleepers[k] = test_fork(flag_sleeper_child, k, d);
    pid_t setter = test_fork(set_and_die_child, 0, d);
    int status[DYING_SLEEPERS];

    fault_reap_within(&setter, status, 1, HANDSHAKE_NS);
    fault_expect_killed(status[0], "the setter");
    cr_assert(fipc_event_is_set(d->e), "the setter died after setting the flag");
    if (clear) cr_assert_eq(fipc_event_clear(d->e), 0);
    fault_reap_within(d->sleepers, status, DYING_SLEEPERS, FIPC_SEC(10));
    for (int k = 0; k < DYING_SLEEPERS; k++)
        fault_expect_ok(status[k], "a sleeper", FIPC_SEC(10));
    cr_assert_eq(fipc_event_is_set(d->e), !clear);
}

Test(event, sleepers_wake_when_the_setter_dies_before_waking)
{
    run_dying_set(false);
}

Test(event, sleepers_wake_when_the_setter_dies_before_waking_and_a_clear_follows)
{
    run_dying_set(true);
}
