/*
 * jqueue.pml - the JoinableQueue's join epoch (lib/jqueue.c: finish,
 * fipc__jqueue_count, fipc_jqueue_join; lib/futex.h: futex_wait_counted),
 * for the spin model checker (./dev models).
 *
 * What is modelled
 *   A producer puts PUTS items one after another: count (fetch_add puts,
 *   then if waiters != 0 and done == old puts: wake) and then publish the
 *   item (the queue's release store; here avail += 1).  A consumer takes
 *   each published item and, for all but possibly the last (spin
 *   chooses), marks it done: CAS done -> d + 1 (retried), then if
 *   waiters != 0 and puts == d + 1: wake.  wake_joiners is epoch += 1,
 *   then futex_wake(all).  NJ joiners each join once: return if
 *   unfinished is 0; else read the epoch e, waiters += 1, fence, and
 *   loop: return if unfinished (done read first, then puts) is 0 or the
 *   epoch moved; futex_wait(epoch, e); then waiters -= 1.  futex_wait is
 *   an atomic compare-and-block; futex_wake(all) dequeues every waiter.
 *   puts_seen and -EOVERFLOW are left out (the consumer finishes only
 *   items it took, so done never passes puts; asserted), as are timeouts.
 *
 * What is proved (pan -DSAFETY)
 *   A joiner never sleeps forever once unfinished has reached zero after
 *   it started waiting.  "Started waiting" is its registration (waiters
 *   += 1); the ghost owed[j] records that, after it, the consumer's CAS
 *   made done equal puts (the only step that makes unfinished zero).  The
 *   consumer may leave its last item unfinished, so a joiner may rightly
 *   sleep forever (an end state): the watchdog process runs only when no
 *   other process can move (spin's timeout) and asserts that no joiner
 *   asleep then is owed a wake-up, nor unfinished 0 with a joiner asleep.
 *   The 5 -> 0 -> 5 case (a put right after the zero, before the
 *   consumer's load of puts) is among the interleavings.
 *
 * Memory model
 *   spin is sequentially consistent.  The code makes the steps the proof
 *   needs SC: the joiner's waiters += 1 (seq_cst) and fence against
 *   finish's seq_cst CAS and seq_cst loads of waiters and puts, and
 *   count's seq_cst fetch_add and loads of waiters and done (two
 *   store-buffering handshakes, each all seq_cst).  The relaxed read of
 *   the epoch before registering is kept before the seq_cst
 *   read-modify-write of waiters.  unfinished reads done (acquire) before
 *   puts; that order matters for "never negative", which the model
 *   asserts.
 *
 * Mutants (each must fail; ./dev models checks that they do):
 *   -DBUG_NO_COUNT_WAKE   count does not wake: the zero that finish
 *                         missed because a put landed between its CAS and
 *                         its load of puts is lost
 *   -DBUG_EPOCH_AFTER     the joiner reads the epoch after registering and
 *                         checking: a wake between is missed
 */
#ifndef PUTS
#define PUTS 2
#endif
#ifndef NJ
#define NJ 2
#endif

byte puts = 0;
byte done = 0;
byte avail = 0; /* published and not yet taken */
byte epoch = 0;
byte waiters = 0;
bit asleep[NJ];
bit registered[NJ]; /* ghost: between waiters += 1 and -= 1 */
bit owed[NJ];       /* ghost: unfinished reached 0 since it registered */
bit returned[NJ];   /* ghost */

inline wake_joiners()
{
    epoch++;
    atomic {
        for (i : 0 .. NJ - 1) {
            asleep[i] = 0
        }
    }
}

proctype producer()
{
    byte n, old, i;
    for (n : 1 .. PUTS) {
        /* fipc__jqueue_count */
        atomic { old = puts; puts++ }
        if
#ifndef BUG_NO_COUNT_WAKE
        :: waiters != 0 && done == old -> wake_joiners()
#endif
        :: else -> skip
        fi;
        avail++ /* the item's publication */
    }
}

proctype consumer()
{
    byte n, d, i;
    bit ok;
    for (n : 1 .. PUTS) {
        atomic { avail > 0; avail-- }
        if
        :: n == PUTS -> skip /* leave the last one unfinished */
        :: true ->
            /* finish(j, 1) */
            d = done;
            do
            :: atomic {
                    if
                    :: done == d ->
                        assert(d + 1 <= puts);
                        done = d + 1; ok = 1;
                        if
                        :: done == puts ->
                            for (i : 0 .. NJ - 1) {
                                owed[i] = owed[i] | registered[i]
                            }
                        :: else -> skip
                        fi
                    :: else -> d = done; ok = 0
                    fi
                }
                if
                :: ok -> break
                :: else -> skip
                fi
            od;
            if
            :: waiters != 0 && puts == d + 1 -> wake_joiners()
            :: else -> skip
            fi
        fi
    }
}

/* unfinished(): done first, then puts. */
inline unfinished_is_zero(z)
{
    d = done;
    p = puts;
    assert(p >= d);
    z = (p == d)
}

proctype joiner(byte me)
{
    byte e, d, p;
    bit z;
    unfinished_is_zero(z);
    if
    :: z -> goto out
    :: else -> skip
    fi;
#ifndef BUG_EPOCH_AFTER
    e = epoch; /* relaxed */
#endif
    atomic { waiters++; registered[me] = 1 } /* seq_cst, then the fence */
#ifdef BUG_EPOCH_AFTER
    unfinished_is_zero(z);
    e = epoch;
    if
    :: z -> goto leave
    :: else -> skip
    fi;
#endif
    do
    :: unfinished_is_zero(z);
        if
        :: z || epoch != e -> break
        :: else -> skip
        fi;
        atomic {
            if
            :: epoch == e -> asleep[me] = 1
            :: else -> skip
            fi
        }
        /* A valid end: the watchdog judges whether it may sleep on. */
end_sleep:
        asleep[me] == 0
    od;
leave:
    atomic { waiters--; registered[me] = 0; owed[me] = 0 }
out:
    returned[me] = 1
}

/* Runs only once nothing else can: every joiner still asleep must have
 * had no zero since it registered, and unfinished must not be 0. */
active proctype watchdog()
{
    byte j;
    timeout ->
    for (j : 0 .. NJ - 1) {
        assert(returned[j] || (!owed[j] && puts != done))
    }
}

init
{
    byte n;
    atomic {
        run producer();
        run consumer();
        for (n : 0 .. NJ - 1) {
            run joiner(n)
        }
    }
}
