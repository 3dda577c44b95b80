/*
 * jqueue.pml - the JoinableQueue's unfinished count and join (lib/jqueue.c:
 * add_count, add_locked, count, counted, take_over, finish, finish_locked,
 * set_locked, puts_total, unfinished, wake_joiners, join_register,
 * join_unregister, fipc_jqueue_join, finish_void; lib/ring_mpmc.h
 * mpmc_put_claim's base; lib/ring_mpmc.c repair_record's
 * TOMBSTONE_COUNTED), for the spin model checker (./dev models).
 *
 * What is modelled
 *   Count words, each with TALLY_LOCKED (L = 64 here; CNT strips it).
 *   MPMC (the default): producers 0 and 1 count each in its own word
 *   tally[p] (its claimer record's tally), so that the sum of the tallies
 *   read one by one is no snapshot.  -DSPSC: one word tally[0]
 *   (prod.puts), which producer 0 and then producer 1 count in (one SPSC
 *   producer at a time: producer 1 starts once producer 0 has ended or
 *   died).  done is one word.
 *
 *   A producer puts PUTS items one after another.  MPMC: base[p] = its
 *   tally (mpmc_put_claim, before the claim), then count, then publish
 *   (the queue's release store: avail += 1).  count is add_count: a CAS
 *   from a value without L (the load and the CAS are one step: a CAS that
 *   fails on the bit only reloads); on a value with L, add_locked: take
 *   the lock, add, unlock.  SPSC (count, counted): take_over first if
 *   pending_k is set, then pending_before = the count and pending_k = 1,
 *   then add_count, publish, pending_k = 0.
 *
 *   Deaths (-DDEATHS=0: none).  MPMC: producer 1 may die in its last put
 *   after storing base and before counting, or after counting and before
 *   publishing (dead[1]).  A consumer (as the waiter of queue.c does)
 *   repairs the claim and passes its slot in one step: a counted tombstone
 *   (TOMBSTONE_COUNTED) iff CNT(tally) != base, which it finishes
 *   (finish_void).  SPSC: producer 0 may die after setting pending_k and
 *   before counting, after counting and before publishing, or after
 *   publishing and before clearing pending_k; producer 1's take_over then
 *   runs under the lock: if the word is pending_before + 1 it lowers it to
 *   pending_before + published (the slot check, one step: the dead
 *   producer's words are final) and, if joiners wait and unfinished is 0,
 *   wakes them.
 *
 *   A consumer (-DNC=2: two) takes published items and finishes each with
 *   task_done, but for one item in all that spin may leave unfinished (so
 *   that a joiner may rightly sleep forever).  -DEXTRA: one task_done for
 *   no item (a user's call, which must change nothing if it would take
 *   done past puts).  finish: d = done and seen = puts_seen; d with L:
 *   finish_locked; d + 1 > seen: seen = puts_total (stored), -EOVERFLOW if
 *   still d + 1 > seen; CAS done d -> d + 1, retried from the value read.
 *   finish_locked: the lock; puts = puts_total, stored in puts_seen; d =
 *   done; -EOVERFLOW check and CAS (retried); wake if waiters != 0 and
 *   CNT(d) + 1 == puts; unlock.  puts_total and unfinished read each word
 *   in a step of its own, unfinished done first.
 *
 *   Joiner 0 joins up to JOINS times (spin chooses how many), joiner 1
 *   once: unfinished is 0: return; else join_register: the lock, waiters
 *   += 1, the first sets L in each word (a fetch_or each, in set_locked's
 *   order: prod.puts, done, the records' tallies); check unfinished (0:
 *   waiters back, the first clears the bits, unlock, return); read the
 *   epoch e; unlock.  Then loop: futex_wait(epoch, e); return if the
 *   epoch moved (the wake counted it out); if unfinished is 0,
 *   join_unregister: the lock, waiters -= 1 unless the epoch moved, the
 *   last clears the bits, unlock.  wake_joiners (under the lock) is
 *   waiters = 0, clear the bits, epoch += 1, then futex_wake(all);
 *   futex_wait an atomic compare-and-block.  Joiner 0 may also return once
 *   from futex_wait unwoken, as after FUTEX_RECHECK_NS, so that the loop's
 *   unfinished is checked too; more of those only wake it earlier.
 *   Left out: timeouts, a holder of the joiners' lock that dies (jlock's
 *   -EOWNERDEAD) or that a peer fakes (JLOCK_BOUND_NS), puts of several
 *   items, a put lost to close, and threads without a claimer record (they
 *   share prod.puts, which then is one more word counted as the tallies).
 *   The lock is "lk == 0 -> lk = holder", atomic; a step next to its
 *   acquire or release is merged into that step, which loses no
 *   behaviour: nothing else touches lk in between, so the merged steps
 *   commute with whatever another process could run between them.
 *
 * What is proved (pan -DSAFETY)
 *   1. Owed wake-up: no joiner sleeps forever once the count was zero
 *      after it registered.  It is registered from the step after which
 *      every change of a count goes through the lock (the first joiner's
 *      last fetch_or, or the acquire of a later one) until it leaves
 *      waiters; owed[j] records that a step made the count zero in
 *      between (a CAS of done, or take_over's lowering: the only steps
 *      that can).  The watchdog runs only when no other process can move
 *      (spin's timeout) and asserts that no joiner still in join is owed,
 *      nor waits with the count zero.  A zero between the call's start and
 *      its check under the lock, gone again by the check, is not owed: the
 *      check is the join's one moment, as in Python's join.
 *   2. No spurious return: a joiner returns only if the count was zero at
 *      some moment since its call began.  zseen[j] is set when the call
 *      begins if the count is zero then, and by every step that makes it
 *      zero while the call runs; every return asserts it.
 *   3. done never passes the true puts (the sum of the count words):
 *      every step that raises done or lowers a count asserts it.  And a
 *      task_done for an item taken (or a counted tombstone) never gets
 *      -EOVERFLOW, unless an extra task_done came first (asserted).
 *
 * Memory model
 *   spin interleaves whole steps, sequentially consistent; the code's
 *   orders make the steps the proof relies on behave so:
 *   - A count word changes only by read-modify-writes (CAS, fetch_or,
 *     fetch_and), so each has one modification order, in which the first
 *     joiner's fetch_or falls before or after a count's CAS: a CAS from a
 *     value without L that comes after it fails (it compares the whole
 *     word), and the retry sees L and takes the lock.  These RMWs may be
 *     relaxed: the joiner reads each word after its own fetch_or on it
 *     (coherence), and all it does after the bits are set, until it
 *     unlocks, is ordered by the lock's acquire and release against every
 *     other change, which is then under the lock too.
 *   - Outside the lock a zero is read as done (acquire), then the
 *     tallies: done counts only items whose counts happen-before it (the
 *     count, then the item's release publication, the consumer's acquire,
 *     its release CAS of done), so coherence makes every tally read later
 *     at least what done counted, and tallies only grow (an SPSC takeover
 *     lowers its one word under the lock): a zero so read was true when
 *     done was read.  In the model every read is in order.
 *   - The joiner reads the epoch (relaxed) under the lock, after its
 *     check; while joiners wait, every wake_joiners runs under the lock,
 *     so no zero after the check has moved that epoch yet.  The acquire
 *     load of the epoch after the wait pairs with wake_joiners' release
 *     increment.  The futex compare is atomic with the queueing (kernel).
 *   The model is no proof of the relaxed orders themselves; that a record
 *   first used while a joiner sums the tallies is seen (q->records, read
 *   acquire, against note_record's release) is outside it too.
 *
 * Mutants (each must fail; ./dev models checks that they do), with the
 * counterexample spin finds:
 *   -DBUG_UNLOCKED_COUNT   add_count ignores L (a fetch_add outside the
 *                          lock while joiners wait).  Producer 1 counts and
 *                          dies; joiner 0 registers (count 1) and sleeps;
 *                          the consumer's finish_locked of the counted
 *                          tombstone sums the tallies (1), producer 0 then
 *                          counts outside the lock, the CAS takes done to
 *                          1 = the sum as read, and it wakes: joiner 0
 *                          returns though the count went 1, 2, 1 (zseen).
 *   -DBUG_READ_PUTS_FIRST  unfinished reads the tallies before done.
 *                          Producer 1 counts and dies; joiner 0 registers
 *                          and sleeps; at its recheck it reads the tallies
 *                          (0 + 1); producer 0 counts (under the lock),
 *                          the consumer finishes the counted tombstone
 *                          (done 1, count 1, no wake); the joiner reads
 *                          done 1 and returns: the count was never zero.
 *   -DBUG_NO_LOCK_FINISH   finish_locked changes done, and wakes, without
 *                          the lock.  Producer 1 counts and dies; joiner 0,
 *                          holding the lock, registers and finds the count
 *                          1; the consumer finishes the counted tombstone
 *                          (done 1, count 0) and advances the epoch before
 *                          joiner 0 reads it; joiner 0 sleeps on the new
 *                          epoch and the wake-all finds it not yet asleep;
 *                          producer 0's item is left unfinished: joiner 0
 *                          sleeps forever, owed (watchdog).
 *   -DBUG_NO_FINISH_WAKE   finish_locked never wakes: joiner 0 sleeps
 *                          through the task_done that makes the count zero,
 *                          owed (watchdog).
 *   -DBUG_TOMB_COUNTED     the repair counts every tombstone: producer 1
 *                          dies before counting, and the consumer's
 *                          task_done of its tombstone gets -EOVERFLOW (had
 *                          another item been unfinished, it would have
 *                          finished that one).
 *   -DSPSC -DBUG_TAKEOVER_NO_WAKE  take_over does not wake: producer 0
 *                          counts and dies before publishing, joiner 0
 *                          registers (count 1) and sleeps, producer 1's
 *                          take_over lowers prod.puts to zero unfinished,
 *                          and joiner 0 sleeps forever, owed (watchdog).
 *
 * The counterexample this model found in an earlier lib/jqueue.c, kept
 * as the mutant -DBUG_TAKEOVER_LOWERS (with -DSPSC -DEXTRA it fails): a
 * task_done while producer 0's item is counted and not yet published
 * succeeds (unfinished is 1; done 1); producer 0 dies before publishing;
 * producer 1's take_over lowers prod.puts to 0, below done (assertion 3).
 * unfinished then reads 0 while producer 1's next item is unfinished.
 * take_over as lib/jqueue.c has it (the default here) leaves the count and
 * finishes the items it finds unpublished, as a get finishes a counted
 * tombstone (finish refuses to pass puts); with it -DSPSC -DEXTRA passes.
 * -DBUG_TAKEOVER_NO_WAKE applies to the lowering take_over.
 */
#define NP 2 /* producers */
#ifndef NC
#define NC 1 /* consumers */
#endif
#ifndef PUTS
#define PUTS 1 /* items per producer */
#endif
#define NJ 2 /* joiners */
#ifndef JOINS
#define JOINS 2 /* joins of joiner 0, at most; joiner 1 joins once */
#endif
#ifndef DEATHS
#define DEATHS 1
#endif

#ifdef SPSC
#define NW 1 /* count words: prod.puts */
#define SUMW (CNT(tally[0]))
#else
#define NW NP /* count words: the producers' records' tallies */
#define SUMW (CNT(tally[0]) + CNT(tally[1]))
#endif

#define L 64 /* TALLY_LOCKED */
#define CNT(w) ((w) & (L - 1))
#define EOVERFLOW 1

byte tally[NW]; /* the count words */
byte done = 0;
byte puts_seen = 0;
byte avail = 0; /* published items not yet taken */
byte ended = 0; /* producers that ended or died */
bit left = 0;   /* the one item left unfinished */
bit extra = 0;  /* the extra task_done made */
#ifdef SPSC
bit pending_k = 0; /* prod.pending_k: 1 item */
byte pending_before = 0;
bit pending_pub = 0; /* the pending item's slot is published */
#else
byte base[NP];
bit dead[NP]; /* died holding a put claim */
bit repaired[NP];
#endif
byte lk = 0; /* the joiners' lock: 0 free, else the holder's _pid + 1 */
byte epoch = 0;
byte waiters = 0;
bit asleep[NJ];
bit registered[NJ]; /* ghost: its check is exact, and it is in waiters */
bit injoin[NJ];     /* ghost: inside a join call */
bit owed[NJ];       /* ghost: the count was zero since it registered */
bit zseen[NJ];      /* ghost: the count was zero since the call began */

/* The joiners' lock.  A step next to the acquire or the release that is
 * taken into the same atomic step loses no behaviour: no other process
 * can touch lk in between, so the merged steps commute with anything that
 * could run between them. */
#define JLOCK (lk == 0) -> lk = _pid + 1
#define JUNLOCK lk = 0

/* Ghost bookkeeping, in the step that changes done or lowers a count. */
inline note_change()
{
    assert(CNT(done) <= SUMW);
    if
    :: CNT(done) == SUMW ->
        owed[0] = owed[0] | registered[0];
        owed[1] = owed[1] | registered[1];
        zseen[0] = zseen[0] | injoin[0];
        zseen[1] = zseen[1] | injoin[1]
    :: else -> skip
    fi
}

/* futex_wake(epoch, all), after epoch += 1 */
#define WAKE_ALL asleep[0] = 0; asleep[1] = 0

/* wake_joiners, under the lock, before WAKE_ALL: every registered joiner
 * is counted out (waiters 0, the bits cleared), then the epoch moves. */
#define WAKE_JOINERS                                                                               \
    atomic { waiters = 0; registered[0] = 0; registered[1] = 0 };                                  \
    SET_LOCKED(0, epoch++)

/* unfinished() == 0 into z: done first, then each tally, a step each. */
#ifndef BUG_READ_PUTS_FIRST
#if NW == 1
#define UNFINISHED_ZERO(z) d = CNT(done); atomic { z = (CNT(tally[0]) <= d); d = 0 }
#else
#define UNFINISHED_ZERO(z)                                                                       \
    d = CNT(done);                                                                               \
    p = CNT(tally[0]);                                                                           \
    atomic { z = (p + CNT(tally[1]) <= d); d = 0; p = 0 }
#endif
#else
#if NW == 1
#define UNFINISHED_ZERO(z) p = CNT(tally[0]); atomic { z = (p <= CNT(done)); p = 0 }
#else
#define UNFINISHED_ZERO(z)                                                                       \
    p = CNT(tally[0]);                                                                           \
    p = p + CNT(tally[1]);                                                                       \
    atomic { z = (p <= CNT(done)); p = 0 }
#endif
#endif

/* puts_total into t, each word in a step of its own */
#if NW == 1
#define PUTS_TOTAL(t) t = CNT(tally[0])
#else
#define PUTS_TOTAL(t) t = CNT(tally[0]); t = t + CNT(tally[1])
#endif

/* set_locked(on), under the lock, in the code's order: prod.puts, done,
 * then each record's tally; one fetch_or or fetch_and each; the last step
 * also does "last". */
#if NW == 1
#define SET_LOCKED(on, last)                                                                     \
    tally[0] = (on -> tally[0] | L : CNT(tally[0]));                                             \
    atomic { done = (on -> done | L : CNT(done)); last }
#else
#define SET_LOCKED(on, last)                                                                     \
    done = (on -> done | L : CNT(done));                                                         \
    tally[0] = (on -> tally[0] | L : CNT(tally[0]));                                             \
    atomic { tally[1] = (on -> tally[1] | L : CNT(tally[1])); last }
#endif

/* add_count(w, 1).  The load and the CAS are one step: a CAS that fails
 * because the bit came between only reloads, which is this step's else. */
inline add_count(w)
{
#ifndef BUG_UNLOCKED_COUNT
    atomic {
        if
        :: (tally[w] & L) == 0 -> tally[w] = tally[w] + 1; ok = 1
        :: else -> ok = 0
        fi
    }
    if
    :: ok -> ok = 0
    :: else ->
        /* add_locked: the lock, the add (nobody else changes the word
         * under the lock), unlock */
        atomic { JLOCK; tally[w] = tally[w] + 1; JUNLOCK }
    fi
#else
    tally[w] = tally[w] + 1 /* a fetch_add that keeps the bit */
#endif
}

/* finish_locked(j, 1) into r */
inline finish_locked(r)
{
#ifndef BUG_NO_LOCK_FINISH
    atomic { JLOCK; p = CNT(tally[0]) }
#else
    p = CNT(tally[0]);
#endif
#if NW == 2
    p = p + CNT(tally[1]);
#endif
    atomic { puts_seen = p; d = done }
    do
    :: atomic {
            if
            :: CNT(d) + 1 > p -> r = EOVERFLOW; ok = 1
            :: else ->
                if
                :: done == d -> done = d + 1; note_change(); r = 0; ok = 1
                :: else -> d = done; ok = 0
                fi
            fi
        }
        if
        :: ok -> break
        :: else -> skip
        fi
    od;
    if
#ifndef BUG_NO_FINISH_WAKE
    :: r == 0 && waiters != 0 && CNT(d) + 1 == p -> WAKE_JOINERS; ok = 1
#endif
    :: else -> ok = 0
    fi;
#ifndef BUG_NO_LOCK_FINISH
    atomic { if :: ok -> WAKE_ALL :: else -> skip fi; JUNLOCK; ok = 0; d = 0; p = 0 }
#else
    atomic { if :: ok -> WAKE_ALL :: else -> skip fi; ok = 0; d = 0; p = 0 }
#endif
}

/* finish(j, 1) into r */
inline finish(r)
{
    atomic { d = done; seen = puts_seen }
    do
    :: (d & L) != 0 -> finish_locked(r); break
    :: else ->
        if
        :: d + 1 > seen ->
            PUTS_TOTAL(seen);
            atomic { puts_seen = seen; ok = (d + 1 <= seen) }
            if
            :: !ok -> r = EOVERFLOW; break
            :: else -> skip
            fi
        :: else -> skip
        fi;
        atomic {
            if
            :: done == d -> done = d + 1; note_change(); ok = 1
            :: else -> d = done; ok = 0
            fi
        }
        if
        :: ok -> r = 0; break
        :: else -> skip
        fi
    od;
    atomic { d = 0; seen = 0; ok = 0 }
}

#ifdef SPSC
/* take_over: the producer before died with pending_k set.  Reading the
 * published slots is one step: the dead producer's words are final. */
inline take_over()
{
#ifdef BUG_TAKEOVER_LOWERS
    atomic { JLOCK; old = tally[0] }
    if
    :: CNT(old) == pending_before + 1 ->
        atomic {
            tally[0] = (old & L) | (pending_before + pending_pub);
            note_change()
        }
        if
#ifndef BUG_TAKEOVER_NO_WAKE
        :: waiters != 0 ->
            UNFINISHED_ZERO(z);
            if
            :: z -> WAKE_JOINERS; WAKE_ALL
            :: else -> skip
            fi
#endif
        :: else -> skip
        fi
    :: else -> skip
    fi;
    atomic { pending_k = 0; JUNLOCK; old = 0; z = 0 }
#else
    /* lib/jqueue.c: the count stays, and the items it never published are
     * finished (as a counted tombstone is), which never takes done past
     * puts. */
    atomic { ok = (CNT(tally[0]) == pending_before + 1 && !pending_pub); pending_k = 0 }
    if
    :: ok -> finish(r)
    :: else -> skip
    fi;
    atomic { ok = 0; r = 0 }
#endif
}

proctype producer(byte me)
{
    byte n, old, d, p, seen;
    bit ok, z, r;
    if
    :: me > 0 -> ended > 0 /* one SPSC producer at a time */
    :: else -> skip
    fi;
    for (n : 1 .. PUTS) {
        /* count() */
        if
        :: pending_k -> take_over()
        :: else -> skip
        fi;
        atomic { pending_before = CNT(tally[0]); pending_pub = 0; pending_k = 1 }
        if
        :: DEATHS && me == 0 && n == PUTS -> goto gone
        :: true -> skip
        fi;
        add_count(0);
        if
        :: DEATHS && me == 0 && n == PUTS -> goto gone
        :: true -> skip
        fi;
        atomic { avail++; pending_pub = 1 } /* publish */
        if
        :: DEATHS && me == 0 && n == PUTS -> goto gone
        :: true -> skip
        fi;
        pending_k = 0 /* counted() */
    }
gone:
    ended++
}
#else
proctype producer(byte me)
{
    byte n;
    bit ok;
    for (n : 1 .. PUTS) {
        base[me] = CNT(tally[me]); /* mpmc_put_claim, then the claim's CAS */
        if
        :: DEATHS && me == 1 && n == PUTS -> dead[me] = 1; goto gone
        :: true -> skip
        fi;
        add_count(me);
        if
        :: DEATHS && me == 1 && n == PUTS -> dead[me] = 1; goto gone
        :: true -> skip
        fi;
        avail++ /* publish */
    }
gone:
    ended++
}
#endif

/* All producers are over, and every item and tombstone passed. */
#ifdef SPSC
#define ALL_PASSED (ended == NP && avail == 0)
#else
#define ALL_PASSED                                                                               \
    (ended == NP && avail == 0 && !(dead[0] && !repaired[0]) && !(dead[1] && !repaired[1]))
#endif

/* repair_record of producer q's claim, and the get that passes its slot:
 * counted (TOMBSTONE_COUNTED) iff the tally moved past base. */
#ifndef BUG_TOMB_COUNTED
#define TOMB(q) (CNT(tally[q]) != base[q])
#else
#define TOMB(q) 1
#endif

proctype consumer()
{
    byte d, p, seen;
    bit ok, r, tomb;
    do
    :: atomic { avail > 0 -> avail-- }
        if
        :: atomic { !left -> left = 1 } /* leave it unfinished */
        :: true -> finish(r); assert(r == 0 || extra)
        fi
#ifndef SPSC
    :: atomic { dead[0] && !repaired[0] -> repaired[0] = 1; tomb = TOMB(0) }
        if
        :: tomb -> tomb = 0; finish(r); assert(r == 0 || extra) /* finish_void */
        :: else -> skip
        fi
    :: atomic { dead[1] && !repaired[1] -> repaired[1] = 1; tomb = TOMB(1) }
        if
        :: tomb -> tomb = 0; finish(r); assert(r == 0 || extra)
        :: else -> skip
        fi
#endif
#ifdef EXTRA
    :: atomic { !extra -> extra = 1 }
        finish(r);
        r = 0
#endif
    :: ALL_PASSED -> break
    od
}

proctype joiner(byte me)
{
    byte e, d, p, w, n;
    bit z, rc, moved;
    do
    :: (me == 0 && n < JOINS) || n < 1 ->
        n++;
        atomic { injoin[me] = 1; zseen[me] = (CNT(done) == SUMW) }
        /* the unlocked check */
        UNFINISHED_ZERO(z);
        if
        :: z -> goto ret
        :: else -> skip
        fi;
        /* join_register: jlock, waiters += 1, the first sets the bits;
         * then the check is exact: registered. */
        atomic { JLOCK; w = waiters; waiters = w + 1; registered[me] = (w != 0) }
        if
        :: w == 0 -> SET_LOCKED(1, registered[me] = 1)
        :: else -> skip
        fi;
        UNFINISHED_ZERO(z);
        if
        :: z ->
            atomic { waiters = w; registered[me] = 0; owed[me] = 0 }
            if
            :: w == 0 -> SET_LOCKED(0, JUNLOCK)
            :: else -> JUNLOCK
            fi;
            goto ret
        :: else -> skip
        fi;
        atomic { e = epoch; JUNLOCK } /* relaxed, under the lock */
        do
        :: atomic {
                if
                :: epoch == e -> asleep[me] = 1
                :: else -> skip
                fi
            }
            /* A valid end: the watchdog judges whether it may sleep on. */
end_sleep:
            if
            :: asleep[me] == 0
            :: atomic { me == 0 && !rc -> rc = 1; asleep[me] = 0 } /* one recheck */
            fi;
            if
            :: epoch != e -> moved = 1; break
            :: else -> skip
            fi;
            UNFINISHED_ZERO(z);
            if
            :: z -> break
            :: else -> skip
            fi
        od;
        if
        :: moved -> atomic { registered[me] = 0; owed[me] = 0 } /* counted out by the wake */
        :: else ->
            /* join_unregister: counted still unless the epoch moved */
            atomic {
                JLOCK;
                if
                :: epoch == e -> w = waiters; waiters = w - 1
                :: else -> w = 0
                fi;
                registered[me] = 0;
                owed[me] = 0
            }
            if
            :: w == 1 -> SET_LOCKED(0, JUNLOCK)
            :: else -> JUNLOCK
            fi
        fi;
ret:
        /* every return here is a 0 */
        atomic { assert(zseen[me]); injoin[me] = 0; zseen[me] = 0; z = 0; e = 0; w = 0; rc = 0; moved = 0 }
        if
        :: true -> skip
        :: true -> break /* join no more */
        fi
    :: else -> break
    od
}

/* Runs only once nothing else can: a joiner still in join must have had no
 * zero since it registered, and the count must not be zero. */
active proctype watchdog()
{
    timeout ->
    assert(!injoin[0] || (!owed[0] && CNT(done) != SUMW));
    assert(!injoin[1] || (!owed[1] && CNT(done) != SUMW))
}

init
{
    atomic {
        run producer(0);
        run producer(1);
        run consumer();
#if NC == 2
        run consumer();
#endif
        run joiner(0);
        run joiner(1)
    }
}
