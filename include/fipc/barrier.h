/*
 * fipc/barrier.h - Python's Barrier for a fixed number of parties.
 *
 * One 64-bit word holds the round's number, the number of parties that
 * have arrived in it, a broken flag and how the last rounds ended;
 * arriving and every end of a round are single compare-and-swaps.  A new
 * round starts as soon as the last one ends, and each waiter's result is
 * how its own round ended, however late it wakes up.
 *
 * A wait whose time runs out breaks the barrier: that waiter, every other
 * waiter and every later caller get -ECANCELED until fipc_barrier_reset.
 * A party that dies before arriving keeps its round from filling: the others
 * break the barrier when their time runs out, and fipc_barrier_reset starts
 * a fresh round, which a replacement party may join.  A party that dies
 * after arriving counts as arrived: its round is released when the others
 * arrive, and the next round starts as usual.
 */
#ifndef FIPC_BARRIER_H
#define FIPC_BARRIER_H

#include <fipc/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FIPC_BARRIER_SIZE 16

typedef struct fipc_barrier {
    FIPC_ALIGNAS(8) unsigned char opaque_[FIPC_BARRIER_SIZE];
} fipc_barrier;

/* Initialise for parties (1..65535) parties.  -EINVAL for NULL or a
 * parties count out of range. */
FIPC_EXPORT int fipc_barrier_init(fipc_barrier *b, uint32_t parties);

/* A barrier in arena a (NULL: the default arena); NULL if the arena is
 * full or parties is out of range. */
FIPC_EXPORT fipc_barrier *fipc_barrier_new(fipc_arena *a, uint32_t parties);

/* Wait until parties callers have arrived.  Returns the caller's arrival
 * index, 0..parties-1 (each index once per round).  -ECANCELED if the
 * barrier is or becomes broken (or is reset while waiting); a timeout
 * breaks the barrier and also returns -ECANCELED (timeout_ns == 0 with
 * other parties missing breaks it at once); -ECANCELED too for a released
 * waiter that runs again only after more than 15 later rounds have ended,
 * one of them by a break or a reset; -EINVAL for NULL or a barrier never
 * initialised; -EPROTO if the shared state cannot be right. */
FIPC_EXPORT int fipc_barrier_wait(fipc_barrier *b, int64_t timeout_ns);

/* Break the barrier: current and later waiters get -ECANCELED. */
FIPC_EXPORT int fipc_barrier_abort(fipc_barrier *b);

/* Start a fresh round at once: unbroken, nobody arrived; the parties
 * waiting in the current round get -ECANCELED. */
FIPC_EXPORT int fipc_barrier_reset(fipc_barrier *b);

/* The parties count, or -EINVAL for NULL. */
FIPC_EXPORT int fipc_barrier_parties(const fipc_barrier *b);

/* How many parties wait in the current round (a snapshot), or -EINVAL. */
FIPC_EXPORT int fipc_barrier_n_waiting(const fipc_barrier *b);

/* Whether the barrier is broken.  false for NULL. */
FIPC_EXPORT bool fipc_barrier_broken(const fipc_barrier *b);

#ifdef __cplusplus
}
#endif
#endif
