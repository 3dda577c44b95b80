/*
 * fence.h - asymmetric fences for the sleep/wake handshakes (internal).
 *
 * Every handshake between a side that changes shared state and a side
 * about to sleep on it is a Dekker pair: each stores its own word, then
 * loads the other's, with a full fence in between, so that at least one of
 * the two loads sees the other's store.  The changing side runs the pair on
 * every put and get; the sleeping side once per sleep, next to system
 * calls anyway.  On x86 a full fence waits until the store buffer has
 * drained, and the store it waits for is the message just written, whose
 * cache line the other CPU is reading: every put and get would pay for a
 * cache-line transfer.
 *
 *   light side (every operation)       heavy side (about to sleep)
 *   store X                            store Y
 *   fence_light()                      fence_heavy()
 *   load Y                             load X
 *
 * fence_heavy() is membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED): before it
 * returns, every running thread of every process registered for it has
 * executed a full barrier at some point while the call ran, and a thread
 * that was not running has passed one in its context switch.  Take the
 * point P where the light side's thread does.  If its load of Y is after P,
 * it sees Y, which the heavy side stored before the call.  If it is before
 * P, so is its store of X (program order), and X is visible to everyone by
 * the time the call returns, so the heavy side's load sees it.  Either way
 * one of the loads sees the other's store, as with two seq_cst fences.
 * fence_light() is then only a compiler barrier, in a process registered
 * for the command.
 *
 * A process registers once (fipc__fence_register(), from every path that
 * first maps a queue or makes a pipe; fork keeps the registration, exec
 * drops it with everything else).  Until then, and where the kernel lacks
 * the command, fence_light() is a full fence.  fence_heavy() is membarrier
 * wherever the kernel has the command, whether the caller registered or
 * not: its peers may have.  Without the command nobody can register, and
 * fence_heavy() is a full fence too.  A process whose seccomp filter
 * forbids membarrier behaves as one on a kernel without it; if its peers
 * registered, a handshake it loses costs its sleeper the re-check of
 * FUTEX_RECHECK_NS, not a hang.
 *
 * The pairs that use it: F1/F2 of eventcount.h, C2 of ring_spsc.h, and the
 * descriptor's F1/F2 of conn.c.
 */
#ifndef FIPC_LIB_FENCE_H
#define FIPC_LIB_FENCE_H

#include "atomic.h"

/* 1 once this process is registered for MEMBARRIER_CMD_GLOBAL_EXPEDITED. */
extern int fipc__fence_registered;

/* Register this process (once; later calls return at once). */
void fipc__fence_register(void);

/* membarrier, or a full fence where the kernel has no such command. */
void fipc__fence_heavy(void);

static FIPC_ALWAYS_INLINE void fence_light(void)
{
    /* acquire pairs with the release store after the registration: once
     * it reads 1, the registration is in force for everything after it (a
     * plain load on x86). */
    if (FIPC_LIKELY(load_acquire(&fipc__fence_registered)))
        compiler_barrier();
    else
        fence_seqcst();
}

static inline void fence_heavy(void)
{
    fipc__fence_heavy();
}

#endif
