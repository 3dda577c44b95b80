/*
 * eventcount.pml - the event count's sleep/wake handshake (lib/eventcount.h,
 * lib/eventcount.c), for the spin model checker (./dev models).
 *
 * What is modelled
 *   NN notifiers each add one item to a shared count (the "change"), then
 *   run ec_notify: fence F2, a load of the sleepers flag, and, if it is
 *   set, the exchange A-E that clears it, epoch += 1 and a wake of all.
 *   NS sleepers each take one item, and run ec_block's slow loop until
 *   they have: read the epoch, set the flag (R-E), fence F1, try again,
 *   futex_wait(epoch, e).  The spin phase is one try.  futex_wait is an
 *   atomic compare-and-block (the kernel compares the word and queues the
 *   waiter under its hash-bucket lock); futex_wake(all) unblocks every
 *   queued waiter at once.  Spurious wake-ups and timeouts are left out:
 *   they only wake a sleeper earlier.
 *
 * What is proved (pan -DSAFETY: invalid end states)
 *   There are as many items as takers, so in a final state every sleeper
 *   must have taken one.  A sleeper blocked in futex_wait with no process
 *   left to wake it is an invalid end state: a lost wake-up (it sleeps
 *   forever while an item is there for it) or a deadlock.  pan reports
 *   none.  The model has no cycles without progress (a sleeper loops only
 *   after a wake, and each wake spends a notifier's flag exchange), so
 *   "never sleeps forever" is exactly "no invalid end state".
 *
 * Memory model
 *   spin interleaves whole statements: sequential consistency, stronger
 *   than the C11 orders the code uses.  The model therefore relies on the
 *   code making the orders that matter behave as SC:
 *   - F1 <-> F2 (seq_cst fences): the sleeper's store of the flag and the
 *     notifier's store of its change are each ordered before the other
 *     side's later load (the Dekker handshake): either the notifier loads
 *     the flag set, or the sleeper's retry sees the change.  Without the
 *     fences, store-buffering would allow both loads to miss; spin cannot
 *     show that.
 *   - R-E <-> A-E (release flag store, acquire exchange): the sleeper's
 *     relaxed read of the epoch is before its registration, so a notifier
 *     that takes the registration increments an epoch no older than the
 *     one the sleeper waits on.  In the model every read is in order.
 *   - the futex compare is atomic with the queueing (kernel guarantee).
 *
 * Mutants (each must fail; ./dev models checks that they do):
 *   -DBUG_TRY_BEFORE_REGISTER  try, then register and sleep without
 *                              trying again: the classic lost wake-up
 *   -DBUG_NO_EPOCH             wake without advancing the epoch: a sleeper
 *                              that reaches futex_wait after the wake finds
 *                              the old epoch and sleeps forever
 */
#ifndef NS
#define NS 2 /* sleepers */
#endif
#ifndef NN
#define NN 2 /* notifiers */
#endif

byte items = 0;   /* the shared state the sleepers wait on */
byte epoch = 0;   /* the futex word */
bit sleepers = 0; /* the registration flag */
bit asleep[NS];   /* queued in the kernel on epoch */
byte taken = 0;

inline try_take(ok)
{
    atomic {
        if
        :: items > 0 -> items--; taken++; ok = 1
        :: else -> ok = 0
        fi
    }
}

/* futex_wait(&epoch, e): compare and queue atomically, then block until a
 * wake dequeues us. */
inline futex_wait(me, e)
{
    atomic {
        if
        :: epoch == e -> asleep[me] = 1
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

proctype sleeper(byte me)
{
    bit ok;
    byte e;
    try_take(ok); /* the spin phase */
    do
    :: ok -> break
    :: else ->
#ifdef BUG_TRY_BEFORE_REGISTER
        try_take(ok);
        if
        :: ok -> break
        :: else -> skip
        fi;
        e = epoch;
        sleepers = 1;
#else
        e = epoch;    /* ec_register: relaxed load */
        sleepers = 1; /* R-E, then F1 */
        try_take(ok); /* the retry */
        if
        :: ok -> break
        :: else -> skip
        fi;
#endif
        futex_wait(me, e)
    od
}

proctype notifier()
{
    bit was;
    byte i;
    items++; /* the change; then F2 */
    if
    :: sleepers != 0 -> /* ec_notify_fenced: relaxed load after F2 */
        atomic { was = sleepers; sleepers = 0 } /* A-E: exchange */
        if
        :: was ->
#ifndef BUG_NO_EPOCH
            epoch++;
#endif
            futex_wake_all()
        :: else -> skip
        fi
    :: else -> skip
    fi
}

init
{
    byte n;
    atomic {
        for (n : 0 .. NS - 1) {
            run sleeper(n)
        }
        for (n : 1 .. NN) {
            run notifier()
        }
    }
    /* Every process ends only when every item has been taken. */
    (_nr_pr == 1);
    assert(taken == NS && items == NN - NS)
}
