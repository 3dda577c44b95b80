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
 *   Owner death without a robust list (DEATHS, default 1: how many
 *   holders may die): a thread in its critical section may die holding the
 *   lock.  While the word names a dead owner, a sleeper's sleep has a time
 *   limit (every sleep has one; the model lets it end only then);
 *   in the sleeping loop, with WAITERS set, a thread may check the owner of
 *   the word it read (lib/lock.c owner_watch): one step reads whether that owner is alive (the look
 *   at /proc), a later CAS that expects exactly that word marks it
 *   OWNER_DIED, keeping WAITERS, and the next taker reports -EOWNERDEAD.
 *   Since the time limit ends no sleep while the word names a live owner
 *   or nobody, no lost wake-up of a release can be rescued by it: the
 *   lost-wake-up proof below stays a proof about the WAITERS protocol.
 *   Left out: the kernel's robust-list recovery (it marks the word as the
 *   check does, atomically at the death), timeouts, spurious wake-ups
 *   (they only wake earlier), thread ids given to new threads (a dead
 *   owner's id is never reused here), and the holder's own -EDEADLK
 *   check.
 *
 * What is proved (pan -DSAFETY)
 *   - mutual exclusion: an assertion in the critical section;
 *   - no lost wake-up: every thread finishes all its rounds, so a thread
 *     still asleep in futex_wait when nothing else can run (the lock free,
 *     or held by nobody who will release it) is an invalid end state; pan
 *     reports none.  Spinning is bounded (spin_left), so there is no cycle
 *     without progress.
 *   - a dead owner's lock is recovered: every surviving thread finishes
 *     its rounds (each needs the lock);
 *   - no live owner is taken for dead: an assertion at the mark;
 *   - -EOWNERDEAD is reported at most once per death.
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
 *   -DBUG_MARK_REREAD        the mark's CAS expects the word as read again
 *                            after the check, not the word checked: the
 *                            heir of a dead owner, alive and inside, is
 *                            taken for dead
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
#ifndef DEATHS
#define DEATHS 1 /* holders that may die holding the lock */
#endif

byte owner = 0;  /* the word's tid bits */
bit waiters = 0; /* the word's LOCK_WAITERS */
bit died = 0;    /* the word's LOCK_OWNER_DIED */
bit asleep[N + 1];
bit alive[N + 1];
byte in_cs = 0;
byte deaths = 0;   /* holders that died */
byte reported = 0; /* -EOWNERDEAD results */

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

/* Take a word whose owner part is 0 and whose WAITERS is ew, leaving
 * WAITERS nw; an OWNER_DIED word is taken too, and reported. */
inline take(me, ew, nw, ok)
{
    atomic {
        if
        :: owner == 0 && waiters == ew ->
            owner = me;
            waiters = nw;
            ok = 1;
            if
            :: died -> died = 0; reported++; assert(reported <= deaths)
            :: else -> skip
            fi
        :: else -> ok = 0
        fi
    }
}

/* Woken by a wake, or by the time limit of its sleep (every sleep has
 * one: FUTEX_RECHECK_NS, and the due check of a recorded owner), here only
 * while the word names a dead owner: at any other time that is a spurious
 * wake-up, which only wakes earlier. */
inline futex_wait(me, co, cw)
{
    atomic {
        if
        :: owner == co && waiters == cw -> asleep[me] = 1
        :: else -> skip
        fi
    }
    atomic { (asleep[me] == 0 || (owner != 0 && !alive[owner])) -> asleep[me] = 0 }
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
        /* lock_acquire: the fast path (CAS 0 -> tid: fails on OWNER_DIED) */
        atomic {
            if
            :: owner == 0 && waiters == 0 && !died -> owner = me; ok = 1
            :: else -> ok = 0
            fi
        };
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
                take(me, cw, cw, ok); /* try_take_free keeps WAITERS */
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
                take(me, cw, 0, ok);
#else
                take(me, cw, 1, ok); /* take it with WAITERS set */
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
                :: ok ->
                    if
                    :: true -> futex_wait(me, co, cw)
                    :: true -> /* owner_watch: the check of the recorded owner */
                        if
                        :: !alive[co] ->
#ifdef BUG_MARK_REREAD
                            atomic { co = owner; cw = waiters };
#endif
                            atomic {
                                if
                                :: owner == co && waiters == cw && co != 0 ->
                                    assert(!alive[co]);
                                    owner = 0;
                                    died = 1
                                :: else -> skip /* changed meanwhile */
                                fi
                            }
                        :: else -> skip /* alive: sleep on */
                        fi
                    fi
                :: else -> skip /* the word changed: look again */
                fi
            fi
        od;
locked:
        in_cs++;
        assert(in_cs == 1 && owner == me);
        if
        :: deaths < DEATHS -> atomic { deaths++; alive[me] = 0; in_cs-- }; goto dead
        :: true -> skip
        fi;
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
    };
dead:
    skip
}

init
{
    byte n;
    atomic {
        for (n : 1 .. N) {
            alive[n] = 1;
            run thread(n)
        }
    }
    (_nr_pr == 1);
    assert(owner == 0 || !alive[owner]);
    assert(reported <= deaths)
}
