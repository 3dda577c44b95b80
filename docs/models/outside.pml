/*
 * outside.pml - a semaphore waited on from outside fipc (lib/sem.c,
 * fipc__sem_arm and wake_outside; the io_uring preparers and
 * fipc_wait_any, docs/uring.md), for the spin model checker (./dev models).
 *
 * What is modelled
 *   NN releasers each add one unit to value, then look at the word
 *   outside: if bit 0 is set they add 1 to it (clearing the bit and
 *   advancing the epoch in bits 1..7 in one step) and wake every waiter
 *   queued on it.  NS waiters each need one unit, and run an event loop's
 *   cycle until they have it: try to take a unit (the non-blocking call);
 *   arm (set bit 0 of outside by a read-modify-write, then load value);
 *   if the arm found a unit, look again at once (the NOP completion);
 *   else queue a futex wait on outside with the odd value the arm left
 *   (the prepared SQE), block until woken, and look again.  The SQE may
 *   reach the kernel at any later moment, which spin's interleaving
 *   covers: the arm and the futex wait are separate steps.  futex_wait is
 *   an atomic compare-and-block; futex_wake(all) unblocks every queued
 *   waiter.  Cancellation and spurious completions only make a waiter look
 *   again sooner, and are left out.
 *
 * What is proved (pan -DSAFETY: invalid end states)
 *   There are as many units as waiters, so in a final state every waiter
 *   has one.  A waiter blocked in futex_wait with nobody left to wake it is
 *   an invalid end state: a lost wake-up.  pan reports none.  The flag is
 *   never taken back by a waiter (it cannot say when it stops waiting), so
 *   the releaser's clearing must never strand one: a flag cleared under a
 *   waiter comes with a changed word, and its futex wait returns.
 *
 * Memory model
 *   spin interleaves whole statements: sequential consistency.  The code
 *   makes the orders that matter behave so: the arm's CAS of outside and
 *   its load of value, and the releaser's CAS of value and its load of
 *   outside, are all seq_cst, so one side sees the other (the Dekker
 *   handshake); the kernel compares the word and queues the waiter
 *   atomically.
 *
 * Mutants (each must fail; ./dev models checks that they do):
 *   -DBUG_CHECK_FIRST  the arm loads value before it sets the flag: a
 *                      release between the two is missed, and the waiter
 *                      sleeps with a unit there
 *   -DBUG_SPLIT_FLAG   the flag in a word of its own that the releaser
 *                      clears, the waiter sleeping on value == 0: a flag
 *                      cleared by one release leaves a waiter that another
 *                      waiter's take sent back to sleep unregistered, and
 *                      the next release does not wake it
 */
#ifndef NS
#define NS 2 /* waiters */
#endif
#ifndef NN
#define NN 2 /* releasers */
#endif

byte value = 0;   /* units */
byte outside = 0; /* bit 0 the flag, bits 1..7 the epoch */
#ifdef BUG_SPLIT_FLAG
bit flag = 0;
#endif
bit asleep[NS]; /* queued in the kernel */
byte taken = 0;

inline try_take(ok)
{
    atomic {
        if
        :: value > 0 -> value--; taken++; ok = 1
        :: else -> ok = 0
        fi
    }
}

/* futex_wait(word, e): compare and queue atomically, then block until a
 * wake dequeues us. */
inline futex_wait(me, word, e)
{
    atomic {
        if
        :: word == e -> asleep[me] = 1
        :: else -> skip
        fi
    }
    asleep[me] == 0
}

inline futex_wake_all()
{
    atomic {
        for (i : 0 .. NS - 1) {
            asleep[i] = 0
        }
    }
}

proctype waiter(byte me)
{
    bit ok;
    byte o;
    do
    :: try_take(ok);
        if
        :: ok -> break
        :: else -> skip
        fi;
#if defined(BUG_SPLIT_FLAG)
        flag = 1;
        if
        :: value > 0 -> skip /* ready: look again */
        :: else -> futex_wait(me, value, 0)
        fi
#elif defined(BUG_CHECK_FIRST)
        if
        :: value > 0 -> skip
        :: else ->
            atomic { o = outside | 1; outside = o };
            futex_wait(me, outside, o)
        fi
#else
        atomic { o = outside | 1; outside = o }; /* the arm's CAS */
        if
        :: value > 0 -> skip /* ready: a NOP, look again */
        :: else -> futex_wait(me, outside, o) /* the SQE, whenever issued */
        fi
#endif
    od
}

proctype releaser()
{
    bit did = 0;
    byte i;
    value++; /* the CAS of value */
#ifdef BUG_SPLIT_FLAG
    atomic { did = flag; flag = 0 };
#else
    /* wake_outside: while bit 0 is set, CAS it to the next epoch. */
    atomic {
        if
        :: outside & 1 -> outside++; did = 1
        :: else -> skip
        fi
    };
#endif
    if
    :: did -> futex_wake_all()
    :: else -> skip
    fi
}

init
{
    byte n;
    atomic {
        for (n : 0 .. NS - 1) {
            run waiter(n)
        }
        for (n : 1 .. NN) {
            run releaser()
        }
    }
    /* Every process ends only when every waiter has its unit. */
    (_nr_pr == 1);
    assert(taken == NS && value == NN - NS)
}
