/*
 * ring_mpmc_get.pml - repairing the claim of a consumer that died by putting
 * its message again (lib/ring_mpmc.c repair_record, republish, live_claim;
 * the announce and clear stores of lib/ring_mpmc.h mpmc_get_claim and
 * mpmc_get), for the spin model checker:
 *
 *   spin -DNMSG=1 -a ring_mpmc_get.pml && cc -O2 -DSAFETY -DCOLLAPSE -o pan pan.c &&
 *   ./pan -m100000
 *
 * (add -DREPAIRER_DIES to spin's command line for the repairer's death).
 * ./dev models does not run it yet.
 *
 * What is modelled
 *   A ring of 2 slots, capacity 2; one producer, which is also the
 *   repairer, puts NMSG messages and then RING fillers (so that its puts
 *   reach every slot a dead consumer held); NC consumers take one position
 *   at a time.  Turns as in ring_mpmc.pml: free for p is p, published
 *   p + 1, released p + RING.
 *   Consumer: read head; if the slot's turn is p + 1: announce p in its
 *   record, CAS head p -> p + 1 (on failure read head again), read the
 *   message, release (turn p + RING) and clear the announcement.  The
 *   release is where its get delivers the message (a consumer that dies
 *   after it took the message with it after its get returned, as far as
 *   the queue can tell).  A consumer may die before any step (at most
 *   DEATHS of them): its record's owner becomes dead in the same step.
 *   Producer: at tail p, a free slot is claimed (CAS, always won: the
 *   only producer), written and published.  A slot still held for p - RING
 *   (turn p - RING + 1) with head > p - RING is a held claim: it calls
 *   repair(p - RING): read head (limit); if no live record announces it
 *   and a dead one does and still holds that announcement, then for its
 *   position x (limit > x, no live record announces x, turn still x + 1):
 *   if tail == x + RING, announce x + RING in its own record, CAS tail,
 *   publish the slot as it is (turn x + RING + 1), clear its record;
 *   otherwise release it.  Clear the dead record unless a live one
 *   announced x.  When the repair does nothing it waits until something a
 *   look decides on changes.
 *   With -DREPAIRER_DIES the producer may die between its CAS of the
 *   re-publication and its store; a consumer that finds the slot at head
 *   showing the previous lap's turn with tail > head then finishes it if
 *   the producer's record is dead and still announces that position.
 *   Left out: batch claims, close, records taken over by a new thread.
 *
 * What is checked (pan -DSAFETY)
 *   - no live consumer's claim is ever repaired (assertion at its release:
 *     the ghost moved[p] is clear) and no slot a live consumer reads was
 *     re-published under it;
 *   - each message is delivered at most once;
 *   - when the producer lives, every message is delivered exactly once
 *     (the one a consumer that died after its release took excepted: none,
 *     here, since delivery is that release), and the run ends with head ==
 *     tail: no process waits for ever (checked once nothing can move:
 *     the producer finished, every consumer ended or died).
 *
 * Results (NMSG=1: one message and two fillers, two consumers, one of
 * which may die at any step): no error, about 30 million states, 1.3 GB
 * with -DCOLLAPSE and 90 s, with and without -DREPAIRER_DIES.  NMSG=2 passes 120 million states without an error
 * but does not finish in memory a CI run can spare.
 *
 * Mutants (each fails):
 *   -DBUG_RELEASE            release the dead consumer's slot, as the code
 *                            did before: its message is never delivered
 *   -DREPAIRER_DIES -DBUG_REPUB_UNANNOUNCED
 *                            claim the re-publication's position without
 *                            announcing it: a repairer that dies before
 *                            publishing leaves it to nobody, and the
 *                            consumers wait for ever
 */
#ifndef NC
#define NC 2
#endif
#ifndef NMSG
#define NMSG 2
#endif
#ifndef DEATHS
#define DEATHS 1 /* how many consumers may die */
#endif
#define RING  2
#define NPUT  (NMSG + RING)
#define TW    16
#define turn(x) ((x) % TW)
#define after(a, b) ((((a) - (b) + 256) % 256) > 0 && (((a) - (b) + 256) % 256) < 128)
#define NONE  255
#define PROD  NC /* the producer's record */

byte tail = 0;
byte head = 0;
byte seq[RING];
byte val[RING];
byte claim[NC + 1]; /* TW + turn of the announced position; 0: none.  The
                     * producer's (PROD) is a re-publication's. */
bit alive[NC + 1];
byte deaths = 0;
bit prod_done = 0;
byte cdone = 0;   /* consumers that ended or died */
byte ver = 0;     /* ghost: bumped by every write a look decides on */
bit moved[TW];    /* ghost: a repair re-published or released this position */
byte delivered[NPUT + 1]; /* by message value 1..NPUT */

inline cdie()
{
    if
    :: atomic { deaths < DEATHS -> alive[me] = 0; deaths++; ver++ }
        goto dead
    :: true -> skip
    fi
}

/* Whether a live record of side announces x; dead_rec, dead_w: a dead one. */
inline live_claim(x, lo, hi, live, dead_rec, dead_w)
{
    live = 0;
    for (r : lo .. hi) {
        w = claim[r];
        if
        :: w != 0 && w - TW == turn(x) ->
            if
            :: alive[r] -> live = 1
            :: else -> dead_rec = r; dead_w = w
            fi
        :: else -> skip
        fi
    }
}

proctype consumer(byte me)
{
    byte p, s, v, r, w, wp, limit, dead_rec, ign, ign_w, v0, x;
    bit ok, live;
    do
    :: v0 = ver;
        p = head;
        s = seq[p % RING]; /* A1 */
        if
        :: s == turn(p + 1) ->
            atomic { claim[me] = TW + turn(p); ver++ }; /* announce */
            cdie();
            atomic {
                if
                :: head == p -> head = p + 1; ok = 1
                :: else -> ok = 0
                fi
            }
            if
            :: ok ->
                cdie();
                v = val[p % RING];
                cdie();
                atomic { /* R2: release; the get delivers v */
                    assert(!moved[turn(p)]);
                    assert(seq[p % RING] == turn(p + 1));
                    seq[p % RING] = turn(p + RING);
                    assert(v >= 1 && v <= NPUT && delivered[v] == 0);
                    delivered[v]++;
                    ver++
                }
                cdie();
                atomic { claim[me] = 0; ver++ }
            :: else -> skip
            fi;
            atomic { v = 0; s = 0 }
        :: else ->
            if /* mpmc_claim_none */
            :: claim[me] != 0 -> atomic { claim[me] = 0; ver++ }
            :: else -> skip
            fi;
            if
            :: prod_done && head == tail -> break
            :: !prod_done && !alive[PROD] && head == tail -> break
#ifdef REPAIRER_DIES
            :: s == turn(p + 1 - RING) && after(tail, p) ->
                /* A re-publication held at p (fipc__mpmc_stuck). */
                limit = tail;
                dead_rec = NONE;
                live_claim(p, PROD, PROD, live, dead_rec, wp);
                if
                :: !live && dead_rec != NONE && claim[dead_rec] == wp &&
                   seq[p % RING] == turn(p + 1 - RING) ->
                    atomic { seq[p % RING] = turn(p + 1); ver++ }; /* finish it */
                    atomic { claim[dead_rec] = 0; ver++ }
                :: else -> ver != v0
                fi;
                atomic { w = 0; wp = 0; limit = 0; dead_rec = 0; r = 0; live = 0 }
#endif
            :: else ->
                s = 0;
                ver != v0 /* asleep until something changes */
            fi
        fi
    od;
dead:
    cdone++
}

inline republish_or_release(x)
{
    if
#ifndef BUG_RELEASE
    :: tail == x + RING ->
#ifndef BUG_REPUB_UNANNOUNCED
        atomic { claim[PROD] = TW + turn(x + RING); ver++ }; /* announce */
#endif
        atomic { tail = x + RING + 1; moved[turn(x)] = 1; ver++ }; /* CAS */
#ifdef REPAIRER_DIES
        if
        :: atomic { alive[PROD] = 0; ver++ } -> goto pdead
        :: true -> skip
        fi;
#endif
        atomic { /* R1, as it is; nobody finished it for a live repairer */
            assert(seq[x % RING] == turn(x + 1));
            seq[x % RING] = turn(x + RING + 1);
            ver++
        }
        atomic { claim[PROD] = 0; ver++ }
#endif
    :: else ->
        atomic { moved[turn(x)] = 1; seq[x % RING] = turn(x + RING); ver++ }
    fi
}

proctype producer()
{
    byte n = 1, pos, s, p, r, w, wp, x, limit, dead_rec, ign, ign_w, v0;
    bit live;
    byte me = PROD;
    do
    :: n > NPUT -> break
    :: n <= NPUT ->
        v0 = ver;
        pos = tail;
        s = seq[pos % RING]; /* A2 */
        if
        :: s == turn(pos) ->
            tail = pos + 1; /* the only producer: its CAS wins (a re-publication
                             * is its own) */
            val[pos % RING] = n;
            atomic { seq[pos % RING] = turn(pos + 1); ver++ }; /* R1 */
            n++
        :: s == turn(pos - RING + 1) && after(head, pos - RING) ->
            /* held for pos - RING: repair(pos - RING, CLAIM_GET) */
            p = pos - RING;
            limit = head;
            dead_rec = NONE;
            live_claim(p, 0, NC - 1, live, dead_rec, wp);
            if
            :: !live && dead_rec != NONE && claim[dead_rec] == wp ->
                x = (p - turn(p - (wp - TW) + TW) + 256) % 256;
                live_claim(x, 0, NC - 1, live, ign, ign_w);
                if
                :: after(limit, x) && !live && seq[x % RING] == turn(x + 1) ->
                    republish_or_release(x)
                :: else -> skip
                fi;
                if
                :: !live -> atomic { claim[dead_rec] = 0; ver++ }
                :: else -> skip
                fi
            :: else ->
                ver != v0
            fi;
            atomic { w = 0; wp = 0; x = 0; limit = 0; dead_rec = 0; ign = 0; ign_w = 0;
                     r = 0; live = 0 }
        :: else ->
            s = 0;
            ver != v0 /* full: asleep until something changes */
        fi
    od;
    atomic { prod_done = 1; ver++ };
pdead:
    skip
}

init
{
    byte i;
    atomic {
        for (i : 0 .. RING - 1) {
            seq[i] = i
        }
        for (i : 0 .. NC) {
            alive[i] = 1
        }
        for (i : 0 .. NC - 1) {
            run consumer(i)
        }
        run producer()
    }
    /* Everyone ended: every message delivered at most once; all of them,
     * once, if the producer lived (a dead consumer's held message was put
     * again because the fillers reached its slot). */
    timeout ->
    assert(!alive[PROD] || prod_done); /* the producer never stalls */
    assert(cdone == NC);                /* nor does a consumer */
    for (i : 1 .. NPUT) {
        assert(delivered[i] <= 1);
        assert(!alive[PROD] || i > NMSG || delivered[i] == 1)
    }
}
