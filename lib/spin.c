/*
 * spin.c - each thread's spin budget (clock.h, Spinning before sleeping).
 */
#include <sched.h>

#include "clock.h"

#ifdef FIPC_TEST_HOOKS
/* futex.h's FUTEX_RECHECK_NS in the test library (futex.h has no .c of its
 * own, and this file is on the layer below it). */
int64_t fipc__futex_recheck_ns = 80000000;
#endif

static _Thread_local struct fipc__spin_state spin_state __attribute__((tls_model("initial-exec")));

struct fipc__spin_state *fipc__spin_self(void)
{
    return &spin_state;
}

int64_t fipc__spin_budget(struct fipc__spin_state *t)
{
    if (!t->ready) {
        t->ready = true;
        t->budget_ns = FIPC_SPIN_NS;
    } else if (t->off > 0) {
        t->off--;
        return 0;
    } else {
        t->budget_ns = FIPC_SPIN_MIN_NS; /* look again */
    }
    return t->budget_ns;
}

/* Spinning does not pay: the partner runs only once this thread sleeps. */
static void spin_off(struct fipc__spin_state *t)
{
    t->budget_ns = 0;
    t->off = FIPC_SPIN_OFF_WAITS;
    t->misses = 0;
}

void fipc_spin_vain(const struct fipc_spin *s)
{
    if (!s->learn || s->end <= s->start)
        return; /* it did not spin: nothing was in vain */
    struct fipc__spin_state *t = &spin_state;
    t->spinning = false;
    if (++t->misses >= FIPC_SPIN_MISSES)
        spin_off(t);
}

void fipc_spin_learn(const struct fipc_spin *s, int waker_cpu)
{
    if (!s->learn)
        return; /* a spin of another mode: it says nothing of the budget */
    struct fipc__spin_state *t = &spin_state;
    bool spun = s->end > s->start;
    t->spinning = false;
    if (waker_cpu >= 0) {
        if (waker_cpu == sched_getcpu()) {
            spin_off(t);
            return;
        }
        t->off = 0; /* the partner runs elsewhere: spinning may pay again */
    } else if (t->budget_ns == 0) {
        return; /* spinning is off: nothing here says it would pay */
    }
    /* A wait that began with spinning off took no time: the next one spins
     * from the minimum budget again (t->off is 0) and measures. */
    if (s->start == 0)
        return;
    int64_t waited = fipc_now_ns() - s->start;
    if (spun && waited <= FIPC_SPIN_IDLE_NS && ++t->misses >= FIPC_SPIN_MISSES) {
        /* The answers keep coming only once this thread sleeps. */
        spin_off(t);
        return;
    }
    if (waited <= FIPC_SPIN_MAX_NS) {
        int64_t want = waited + waited / 2;
        if (want > FIPC_SPIN_MAX_NS)
            want = FIPC_SPIN_MAX_NS;
        if (want > t->budget_ns)
            t->budget_ns = want;
    } else if (waited > FIPC_SPIN_IDLE_NS && t->budget_ns > 0) {
        t->budget_ns /= 2;
        if (t->budget_ns < FIPC_SPIN_MIN_NS)
            t->budget_ns = FIPC_SPIN_MIN_NS;
    }
}
