/*
 * eventcount.pml - the event count's sleep/wake handshake (lib/eventcount.h,
 * lib/eventcount.c), for the spin model checker (./dev models).
 *
 * What is modelled
 *   NN notifiers each add one item to a shared count (the "change"), then
 *   run ec_notify: the light fence F2, a load of the sleepers flag, and,
 *   if it is set, the exchange A-E that clears it, epoch += 1 and a wake
 *   of all.
 *   NS sleepers each take one item, and run ec_block's slow loop until
 *   they have: read the epoch, set the flag (R-E), the heavy fence F1
 *   (membarrier), try again, futex_wait(epoch, e).  The spin phase is one try.  futex_wait is an
 *   atomic compare-and-block (the kernel compares the word and queues the
 *   waiter under its hash-bucket lock); futex_wake(all) unblocks every
 *   queued waiter at once.  Spurious wake-ups and timeouts are left out:
 *   they only wake a sleeper earlier.
 *
 *   Fence modes (eventcount.h): a state (fstate) and a generation (fgen)
 *   moved together by CAS.  Before it registers, a sleeper may move LIGHT
 *   to FENCED; a notifier in a fenced state that found the flag clear
 *   may move it back to LIGHT; each move goes through SWITCHING and a
 *   membarrier.  In a fenced state the notifier's F2 is a full fence (its
 *   buffer drains before its load of the flag); in FENCED the sleeper's
 *   F1 is a plain fence, which drains nobody's buffer.  -DNO_MODES leaves
 *   the moves out (the state stays LIGHT), for the larger configurations.
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
 *   than the C11 orders the code uses, except where the model says
 *   otherwise:
 *   - F1 <-> F2 (fence.h): the notifier's fence is only a compiler
 *     barrier, so its change sits in a store buffer (pend[]) that drains
 *     at any moment, before or after its load of the flag: the load may
 *     pass the store, as on x86.  The sleeper's membarrier drains every
 *     notifier's buffer (the barrier it makes each running thread
 *     execute; a thread not running has drained in its context switch)
 *     before its retry.  The sleeper's own store of the flag is followed
 *     by the barrier at the system call's entry, before anything else it
 *     does, so it is modelled as visible at once.
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
 *   -DBUG_NO_MEMBARRIER        F1 a plain fence against the light F2: the
 *                              sleeper's retry misses the change still in
 *                              the notifier's buffer while the notifier's
 *                              load missed the flag (store buffering)
 *   -DBUG_SWITCH_NO_MEMBARRIER a move between fence modes without its
 *                              membarrier: a notifier that read LIGHT and
 *                              a sleeper that reads FENCED both skip the
 *                              barrier
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
bit pend[NN];     /* a notifier's change, still in its store buffer */

#define LIGHT     0
#define SWITCHING 1
#define FENCED    2
byte fstate = LIGHT; /* fences: the state */
byte fgen = 0;       /* and its generation */
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

/* The notifier's store buffer drains: its change becomes visible. */
inline drain(k)
{
    atomic {
        items = items + pend[k];
        pend[k] = 0
    }
}

/* membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED): every notifier has passed a
 * full barrier before it returns. */
inline membarrier()
{
    atomic {
        for (i : 0 .. NN - 1) {
            items = items + pend[i];
            pend[i] = 0
        }
    }
}

/* fipc__ec_switch(ec, w, to), with w read as (ws, wg). */
inline ec_switch(ws, wg, to)
{
    atomic {
        if
        :: fstate == ws && fgen == wg -> fstate = SWITCHING; fgen++; moved = 1
        :: else -> moved = 0
        fi
    }
    if
    :: moved ->
#ifndef BUG_SWITCH_NO_MEMBARRIER
        membarrier();
#endif
        atomic {
            if
            :: fstate == SWITCHING && fgen == wg + 1 -> fstate = to; fgen++
            :: else -> skip
            fi
        }
    :: else -> skip
    fi
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
    bit moved;
    byte e;
    byte i;
    byte ws, wg;
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
        /* After a wake-up (ec_block, conn_wait): a try before registering
         * again, which leaves no flag behind when it succeeds; after the
         * spin, one more try changes nothing. */
        try_take(ok);
        if
        :: ok -> break
        :: else -> skip
        fi;
#ifndef NO_MODES
        /* A sleep without a spin, or one that no notifier ended, may move
         * the mode to FENCED. */
        if
        :: atomic { ws = fstate; wg = fgen };
            if
            :: ws == LIGHT -> ec_switch(ws, wg, FENCED)
            :: else -> skip
            fi
        :: skip
        fi;
#endif
        e = epoch;    /* ec_register: relaxed load */
        sleepers = 1; /* R-E, then a full fence */
#ifndef BUG_NO_MEMBARRIER
        /* F1: a membarrier, or in FENCED the full fence before the load of
         * the state, which drains no one else's buffer. */
        atomic {
            if
            :: fstate != FENCED -> membarrier()
            :: else -> skip
            fi
        };
#endif
        try_take(ok); /* the retry */
        if
        :: ok -> break
        :: else -> skip
        fi;
#endif
        futex_wait(me, e)
    od
}

proctype notifier(byte me)
{
    bit was;
    bit moved;
    byte i;
    byte ws, wg;
    pend[me] = 1; /* the change, into the store buffer; then F2 (light) */
    if
    :: drain(me) /* the buffer may drain before the loads, */
    :: skip      /* or only later */
    fi;
#ifndef NO_MODES
    atomic { ws = fstate; wg = fgen }; /* acquire */
    if
    :: ws != LIGHT -> drain(me) /* F2 in a fenced state: a full fence */
    :: else -> skip
    fi;
    if
    :: drain(me)
    :: skip
    fi;
    if
    :: ws != LIGHT && sleepers == 0 ->
        /* Quiet: this notifier may move the mode back to LIGHT. */
        if
        :: ec_switch(ws, wg, LIGHT)
        :: skip
        fi
    :: else -> skip
    fi;
#endif
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
    fi;
    drain(me) /* it drains in the end, at the latest */
}

init
{
    byte n;
    atomic {
        for (n : 0 .. NS - 1) {
            run sleeper(n)
        }
        for (n : 0 .. NN - 1) {
            run notifier(n)
        }
    }
    /* Every process ends only when every item has been taken. */
    (_nr_pr == 1);
    assert(taken == NS && items == NN - NS)
}
