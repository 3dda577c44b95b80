/*
 * ring_mpmc.pml - repairing the claim of a producer that died (lib/ring_mpmc.c
 * repair, repair_record, live_claim; the announce and clear stores of
 * lib/ring_mpmc.h mpmc_put_claim and mpmc_put_publish), for the spin model
 * checker (./dev models).
 *
 * What is modelled
 *   A ring of 2 slots, capacity 2; NP producers each put NMSG messages one
 *   at a time (claims of one position); one consumer, which is also the
 *   repairer.  Positions are small integers; the turn of a free slot for
 *   position p is p, published p + 1, released p + 2 (ring.h).
 *   Producer: read tail; if the slot's turn is p: announce p in its
 *   record, CAS tail p -> p + 1 (on failure, read tail again); if the
 *   turn is older, the ring is full: withdraw the announcement and wait
 *   for the turn to change (the not_full sleep); if newer, another
 *   producer took p: read tail again.  Then copy, publish (release the
 *   turn p + 1), clear the announcement.  A producer may die before any
 *   of these steps (at most DEATHS producers, default all): the process
 *   stops and, in the same step, its record's owner becomes dead (the
 *   kernel sets OWNER_DIED on the record's robust lock at the thread's
 *   death; "dead" is read from memory, not guessed).
 *   Consumer: at head p, a published slot is taken (head += 1, read,
 *   skip a tombstone, release the turn p + 2).  An unpublished slot with
 *   tail > p is a held claim: it calls repair(p): read tail (limit); if
 *   limit > p and no live record announces p and a dead one does, repair
 *   that record: for its announced position x, if limit > x, no live
 *   record announces x and the slot's turn is still x, write a tombstone
 *   and publish it (turn x + 1); then clear the dead record.  When the
 *   repair does nothing, the consumer waits until the slot, a record or
 *   an owner changes (the code looks again every EC_RECHECK_NS; a look at
 *   an unchanged state decides the same).  When tail == p, it waits for
 *   tail to move, and ends once every producer has ended or died.
 *   Left out: claims of several positions, the get side's repair (a
 *   consumer that dies), records taken over by a new thread, the
 *   unrecorded flag, and close; a producer that finds the turn moved on
 *   while tail has not (the code answers "full") reads tail again.
 *
 * What is checked (pan -DSAFETY)
 *   - no live claimer's slot is ever repaired: a producer asserts, as it
 *     publishes p, that the ghost repaired[p] is clear (the repair would
 *     also have written a tombstone over its message);
 *   - each message is delivered at most once, each producer's in order,
 *     and every message of a producer that did not die is delivered;
 *   - the consumer can always make progress: it may wait only for a
 *     producer that is alive, so a state where nothing can move while the
 *     consumer waits (a dead claimer's position never repaired) is an
 *     invalid end state.  At the end head == tail: every claimed
 *     position, a dead claimer's included, was consumed.
 *
 * Memory model
 *   spin is sequentially consistent.  The proof that a live claimer is
 *   never repaired uses exactly these orders of the code:
 *   - announce (release store) before the CAS on tail (seq_cst, a
 *     release); the repairer's load of tail (acquire, RA1) before it
 *     reads the records (acquire, RA3): a repairer that sees tail > p
 *     sees the true claimer's announcement of p, or its clearing;
 *   - the clearing store (release) after the publication (release) of
 *     the slot: a repairer that reads the record cleared (acquire) also
 *     reads the slot published, and leaves it;
 *   - the owner word is written by the kernel at death, after the thread's
 *     last store; a stale "alive" only delays a repair.
 *   The model reads tail, then each record, then the slot, in that order
 *   and one at a time, as the code does.
 *
 * Findings: two counterexamples in an earlier version of the code, both
 * fixed there (lib/ring_mpmc.c, repair_record); the model keeps the earlier
 * behaviour as the default and the fixes behind flags, so that ./dev
 * models checks both that the fixed code passes and that each fix is
 * needed:
 *   1. A dead claim orphaned (invalid end state; the model as it is).
 *      Producer B claims p (announce, CAS) and dies before publishing.
 *      The consumer at p calls repair: tail > p, live_claim(p) finds B's
 *      record dead and none live.  Meanwhile producer A, with a stale tail,
 *      announces p (its CAS will fail).  repair_record's live_claim(p)
 *      now sees A's live announcement and skips p, but then clears B's
 *      record anyway.  A's CAS fails and it moves on; p stays claimed,
 *      unpublished and announced by nobody: no later look repairs it, and
 *      every consumer waits at p for ever.  Fix (-DFIX_KEEP_SKIPPED):
 *      leave the dead record as it is when a position was skipped for a
 *      live announcement.
 *   2. A tombstone over a live claimer's position (assertion at publish;
 *      -DFIX_KEEP_SKIPPED alone).  live_claim(p) reads producer B's
 *      record covering p while B lives; before it reads B's owner, B
 *      publishes p, clears, announces its next position q and dies.  The
 *      owner reads dead, so repair_record runs, and re-reads B's claim,
 *      now q.  first = near - (turn(near) - w) is then q - 2^32 (in the
 *      model q - TW), and (int64_t)(limit - x) > 0 holds for it although
 *      limit <= q; the slot shows turn q (free, or claimed but not
 *      published), so q's slot gets a tombstone and turn q + 1 while q
 *      is unclaimed or claimed by a live producer: the consumer takes a
 *      "message" at q that no claim has finished (head can pass tail), and
 *      the producer that claims q publishes over it (spin: the live
 *      producer's publish of q finds q repaired).  Fix (-DRECHECK_COVER):
 *      repair only if the record still holds the announcement live_claim
 *      read covering p (the holder has not moved on), and take first from
 *      that announcement.
 *   With both fixes (-DFIX_KEEP_SKIPPED -DRECHECK_COVER), what the code
 *   does now, pan finds no error: with one death (-DDEATHS=1) about 10
 *   million states, 20 s and 0.5 GB with pan built -DCOLLAPSE (./dev
 *   models runs this); with both producers allowed to die 11.4 million
 *   states, about 4 minutes (too slow for every CI run).  The code also
 *   skips positions more than a ring behind tail or head, which no
 *   unfinished claim can be: a second guard against the 2^32 alias of
 *   counterexample 2.
 *
 * Mutants (each must fail with both fixes; ./dev models checks that they
 * do, with -DDEATHS=1 -DFIX_KEEP_SKIPPED -DRECHECK_COVER):
 *   -DBUG_ANNOUNCE_AFTER_CAS  announce after the CAS: a producer that dies
 *                             between the two leaves a claim that no
 *                             record announces, never repaired (or a
 *                             repairer tombstones a live claimer's slot
 *                             through a dead record's stale announcement)
 *   -DBUG_CLEAR_BEFORE_PUBLISH  clear the announcement before publishing:
 *                             the same, through the cleared record
 */
#ifndef NP
#define NP 2
#endif
#ifndef NMSG
#define NMSG 2
#endif
#ifndef DEATHS
#define DEATHS NP /* how many producers may die */
#endif
#define RING  2
#define NPOS  (NP * NMSG)
/* Positions are 64-bit in the code and turns their low 32 bits; here
 * positions are bytes (mod 256) and turns mod TW, so that the code's mix of
 * the two (repair_record's first) keeps its arithmetic.  Both are far
 * beyond the few positions in play. */
#define TW    16
#define turn(x) ((x) % TW)
/* (int64_t)(a - b) > 0 for byte positions */
#define after(a, b) ((((a) - (b) + 256) % 256) > 0 && (((a) - (b) + 256) % 256) < 128)
#define TOMB  255
#define NONE  255

byte tail = 0;
byte head = 0;
byte seq[RING]; /* turns */
byte val[RING];
byte claim[NP]; /* the record's announcement: TW + turn of the position (a claim
                 * of one), 0 = none */
bit alive[NP];
byte finished = 0; /* producers that ended or died */
byte deaths = 0;
byte ver = 0;      /* ghost: bumped by every write a repair decides on */
bit repaired[TW]; /* ghost: the repair tombstoned this position (by turn) */
byte got[NP];
byte tombs = 0;

inline die()
{
    if
    :: atomic { deaths < DEATHS -> alive[me] = 0; deaths++; finished++; ver++ }
        goto dead
    :: true -> skip
    fi
}

proctype producer(byte me)
{
    byte m, pos, s;
    bit ok;
    for (m : 1 .. NMSG) {
        pos = tail;
        do
        :: die();
            s = seq[pos % RING]; /* A2, acquire */
            if
            :: s == turn(pos) ->
#ifndef BUG_ANNOUNCE_AFTER_CAS
                atomic { claim[me] = TW + turn(pos); ver++ }; /* announce, release */
                die();
#endif
                atomic { /* C1: CAS tail */
                    if
                    :: tail == pos -> tail = pos + 1; ok = 1
                    :: else -> pos = tail; ok = 0
                    fi
                }
                if
                :: ok ->
#ifdef BUG_ANNOUNCE_AFTER_CAS
                    die();
                    atomic { claim[me] = TW + turn(pos); ver++ };
#endif
                    break
                :: else -> skip
                fi
            :: s != turn(pos) && turn(s - turn(pos) + TW) >= TW / 2 ->
                /* dif < 0, last lap's message: full */
                atomic { claim[me] = 0; ver++ }; /* mpmc_claim_none */
                seq[pos % RING] != s /* asleep on not_full */
            :: s != turn(pos) && turn(s - turn(pos) + TW) < TW / 2 ->
                /* dif > 0: another producer claimed it */
                pos = tail
            fi
        od;
        die();
        val[pos % RING] = (me + 1) * 16 + m; /* copy */
#ifdef BUG_CLEAR_BEFORE_PUBLISH
        die();
        atomic { claim[me] = 0; ver++ };
#endif
        die();
        atomic { /* R1: publish, release */
            assert(!repaired[turn(pos)]);
            seq[pos % RING] = turn(pos + 1);
            ver++
        }
#ifndef BUG_CLEAR_BEFORE_PUBLISH
        die();
        atomic { claim[me] = 0; ver++ } /* clear, release */
#endif
    }
    finished++;
dead:
    skip
}

/* live_claim(x): whether a live record announces x; *dead: a dead one that
 * does.  One record at a time: its announcement, then its owner. */
inline live_claim(x, live, dead_rec, dead_w)
{
    live = 0;
    for (r : 0 .. NP - 1) {
        w = claim[r]; /* RA3, acquire */
        if
        :: w != 0 && w - TW == turn(x) -> /* claim_covers */
            if
            :: alive[r] -> live = 1
            :: else -> dead_rec = r; dead_w = w
            fi
        :: else -> skip
        fi
    }
}

inline repair(p, fixed)
{
    fixed = 0;
    dead_rec = NONE;
    limit = tail; /* RA1, acquire */
    if
    :: after(limit, p) ->
        live_claim(p, live, dead_rec, wp);
        if
        :: !live && dead_rec != NONE ->
            /* repair_record(dead_rec, p, limit) */
            w = claim[dead_rec]; /* relaxed: "the holder is dead" */
#ifdef RECHECK_COVER
            /* The proposed fix: the record must still say what live_claim
             * read.  Its holder was alive when that was read and may have
             * moved on (published p and announced its next claim) before
             * it died; then p is not its claim, and its new one is left
             * for the next look. */
            if
            :: w != wp -> goto no_repair
            :: else -> skip
            fi;
#endif
            /* first = near - (turn(near) - w): the position near p whose
             * turn w announces */
            x = (p - turn(p - (w - TW) + TW) + 256) % 256;
            if
            :: w != 0 && after(limit, x) -> /* w == 0: k == 0, no positions */
                live_claim(x, live, ignored, ignored_w); /* live: skipped */
                if
                :: !live && seq[x % RING] == turn(x) ->
                    val[x % RING] = TOMB;
                    atomic { repaired[turn(x)] = 1; seq[x % RING] = turn(x + 1) } /* R1 */
                    fixed = 1
                :: else -> skip
                fi
            :: else -> skip
            fi;
#ifdef FIX_KEEP_SKIPPED
            /* The proposed fix: a position skipped because a live record
             * announces it (a claimer whose CAS is about to fail) may still
             * be the dead holder's: keep its record for the next look. */
            if
            :: live -> goto no_repair
            :: else -> skip
            fi;
#endif
            claim[dead_rec] = 0; /* RA3, release */
no_repair:
            skip
        :: else -> skip
        fi
    :: else -> skip
    fi
}

proctype consumer()
{
    byte p, v, r, w, wp, x, limit, dead_rec, ignored, ignored_w, s;
    byte last[NP];
    byte v0;
    bit live, fixed;
    do
    :: /* Any write a look decides on (a record, an owner, a slot) after
        * this wakes the wait after a failed repair: the code looks again
        * every EC_RECHECK_NS, and a look at an unchanged state decides
        * the same. */
        v0 = ver;
        p = head;
        s = seq[p % RING]; /* A1, acquire */
        if
        :: s == turn(p + 1) ->
            head = p + 1; /* the only consumer: its CAS always wins */
            v = val[p % RING];
            if
            :: v == TOMB -> tombs++
            :: else ->
                assert(v / 16 >= 1 && v / 16 <= NP);
                assert(v % 16 > last[v / 16 - 1]); /* once, and in order */
                last[v / 16 - 1] = v % 16;
                got[v / 16 - 1]++
            fi;
            seq[p % RING] = turn(p + RING); /* R2, release */
            atomic { v = 0; s = 0 }
        :: else ->
            if
            :: finished == NP && tail == p -> break
            :: after(tail, p) ->
                /* A held claim in the way (fipc__mpmc_stuck). */
                repair(p, fixed);
                if
                :: !fixed ->
                    /* Forget what the look read (fewer states). */
                    atomic { w = 0; wp = 0; x = 0; limit = 0; dead_rec = 0; ignored = 0;
                             ignored_w = 0; r = 0; live = 0; s = 0 }
                    ver != v0
                :: else -> skip
                fi
            :: else -> /* empty: asleep on not_empty */
                s = 0;
                (tail != p || finished == NP)
            fi
        fi
    od;
    /* Every claimed position was consumed, and each producer that lived
     * had every message delivered. */
    assert(head == tail && tombs + got[0] + got[1] == tail);
    for (r : 0 .. NP - 1) {
        assert(!alive[r] || got[r] == NMSG)
    }
}

init
{
    byte n;
    atomic {
        for (n : 0 .. RING - 1) {
            seq[n] = n
        }
        for (n : 0 .. NP - 1) {
            alive[n] = 1;
            run producer(n)
        }
        run consumer()
    }
}
