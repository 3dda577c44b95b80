/*
 * lock.pml - the lock word's WAITERS protocol (lib/lock.c: lock_acquire,
 * lock_slow, lock_release), for the spin model checker (./dev models).
 *
 * What is modelled
 *   N threads each take the lock ROUNDS times, with a critical section in
 *   between.  The word is (owner, waiters): owner 0 is free, otherwise the
 *   thread id; waiters is LOCK_WAITERS.  acquire: the fast CAS 0 -> tid;
 *   else lock_slow: the spin phase (take a free word keeping its WAITERS
 *   bit, stop when WAITERS is set, or stop at any time: the spin budget),
 *   then the sleeping loop: take a free word as tid | WAITERS; else set
 *   WAITERS by CAS; futex_wait(word, cur).  release: exchange the word to
 *   0; if WAITERS was set, futex_wake(1).  futex_wait is an atomic
 *   compare-and-block; futex_wake(1) dequeues one queued waiter, any one
 *   (the model lets spin choose), or none if none is queued.
 *   Left out: OWNER_DIED and the robust list (the kernel's recovery of a
 *   dead owner), timeouts, spurious wake-ups (they only wake earlier), and
 *   the holder's own -EDEADLK check.
 *
 * What is proved (pan -DSAFETY)
 *   - mutual exclusion: an assertion in the critical section;
 *   - no lost wake-up: every thread finishes all its rounds, so a thread
 *     still asleep in futex_wait when nothing else can run (the lock free,
 *     or held by nobody who will release it) is an invalid end state; pan
 *     reports none.  Spinning is bounded (spin_left), so there is no cycle
 *     without progress.
 *
 * Memory model
 *   spin is sequentially consistent; the code uses acquire CAS to take the
 *   word and a release exchange to free it (the data under the lock), and
 *   relaxed loads and a relaxed CAS to set WAITERS.  The protocol's
 *   correctness needs no more than the single word's modification order:
 *   every read-modify-write of the word is atomic and totally ordered
 *   (C11 gives that for any order), the relaxed loads only choose which
 *   CAS to try (a stale value fails the CAS), and futex_wait's compare is
 *   made by the kernel on the current value.  So SC on this one word is
 *   not stronger than what the code has; what SC adds is only ordering of
 *   other data, which acquire/release provides.
 *
 * Mutants (each must fail; ./dev models checks that they do):
 *   -DBUG_WOKEN_TAKES_PLAIN  a woken thread takes the free word without
 *                            WAITERS: with three threads, the third sleeper
 *                            is never woken
 *   -DBUG_STORE_RELEASE      release stores 0 instead of exchanging, and
 *                            wakes only if WAITERS was set when it loaded
 *                            the word: a sleeper that set WAITERS in
 *                            between is lost
 */
#ifndef N
#define N 3
#endif
#ifndef ROUNDS
#define ROUNDS 2
#endif
#ifndef SPIN
#define SPIN 1 /* tries in the spin phase */
#endif

byte owner = 0;  /* the word's tid bits */
bit waiters = 0; /* the word's LOCK_WAITERS */
bit asleep[N + 1];
byte in_cs = 0;

/* CAS (eo, ew) -> (no, nw) on the word. */
inline cas(eo, ew, no, nw, ok)
{
    atomic {
        if
        :: owner == eo && waiters == ew -> owner = no; waiters = nw; ok = 1
        :: else -> ok = 0
        fi
    }
}

inline futex_wait(me, co, cw)
{
    atomic {
        if
        :: owner == co && waiters == cw -> asleep[me] = 1
        :: else -> skip
        fi
    }
    asleep[me] == 0
}

inline futex_wake_one()
{
    atomic {
        if
        :: asleep[1] -> asleep[1] = 0
        :: asleep[2] -> asleep[2] = 0
#if N >= 3
        :: asleep[3] -> asleep[3] = 0
#endif
        :: else -> skip
        fi
    }
}

proctype thread(byte me)
{
    byte round, co, spin_left;
    bit cw, ok, old_w;
    for (round : 1 .. ROUNDS) {
        /* lock_acquire: the fast path */
        cas(0, 0, me, 0, ok);
        if
        :: ok -> goto locked
        :: else -> skip
        fi;
        /* lock_slow: the spin phase */
        spin_left = SPIN;
        do
        :: atomic { co = owner; cw = waiters }
            if
            :: co == 0 ->
                cas(0, cw, me, cw, ok); /* try_take_free keeps WAITERS */
                if
                :: ok -> goto locked
                :: else -> skip
                fi
            :: co != 0 && cw -> break
            :: else -> skip
            fi;
            if
            :: spin_left == 0 -> break
            :: else -> spin_left--
            fi
        od;
        /* lock_slow: the sleeping loop */
        do
        :: atomic { co = owner; cw = waiters }
            if
            :: co == 0 ->
#ifdef BUG_WOKEN_TAKES_PLAIN
                cas(0, cw, me, 0, ok);
#else
                cas(0, cw, me, 1, ok); /* take it with WAITERS set */
#endif
                if
                :: ok -> goto locked
                :: else -> skip
                fi
            :: else ->
                if
                :: !cw ->
                    cas(co, 0, co, 1, ok); /* set WAITERS (relaxed CAS) */
                    if
                    :: ok -> cw = 1
                    :: else -> skip
                    fi
                :: else -> ok = 1
                fi;
                if
                :: ok -> futex_wait(me, co, cw)
                :: else -> skip /* the word changed: look again */
                fi
            fi
        od;
locked:
        in_cs++;
        assert(in_cs == 1 && owner == me);
        in_cs--;
        /* lock_release */
#ifdef BUG_STORE_RELEASE
        old_w = waiters;
        atomic { owner = 0; waiters = 0 }
#else
        atomic { old_w = waiters; owner = 0; waiters = 0 } /* exchange */
#endif
        if
        :: old_w -> futex_wake_one()
        :: else -> skip
        fi
    }
}

init
{
    byte n;
    atomic {
        for (n : 1 .. N) {
            run thread(n)
        }
    }
    (_nr_pr == 1);
    assert(owner == 0)
}
