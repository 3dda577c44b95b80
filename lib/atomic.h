/*
 * atomic.h - the atomics vocabulary of fipc (internal).
 *
 * Objects in shared memory are fixed-width integers (their layout is pinned
 * with static_assert), so the implementation reaches them through these
 * names, each naming its memory order.  Nothing else in lib/ calls the
 * compiler's __atomic builtins.
 *
 * The two orders that carry data, as the kernel's memory model defines
 * them:
 *   RELEASE  every load and store before it, in program order, is visible
 *            to a thread whose ACQUIRE load reads the value it stored (or a
 *            later one in the same modification order);
 *   ACQUIRE  no load or store after it, in program order, happens before it.
 * A release is useless without the acquire that reads it, so every release
 * and every acquire in lib/ says which one it pairs with; the queue's pairs
 * carry labels (R1 <-> A1, ...) listed in the file that owns the protocol.
 * relaxed says the value alone matters; seq_cst (operations and fences)
 * is used only for Dekker-style handshakes (store my flag, then load
 * yours), where acquire and release are not enough.
 *
 * Compare-and-swap is strong; on failure *expected receives the current
 * value, read with relaxed order unless the name says otherwise.
 */
#ifndef FIPC_LIB_ATOMIC_H
#define FIPC_LIB_ATOMIC_H

#include "compiler.h"

#define load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define load_seqcst(p)  __atomic_load_n((p), __ATOMIC_SEQ_CST)

#define store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define store_seqcst(p, v)  __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

#define cas_relaxed(p, expected, desired)                                                          \
    __atomic_compare_exchange_n((p), (expected), (desired), false, __ATOMIC_RELAXED,               \
                                __ATOMIC_RELAXED)
#define cas_acquire(p, expected, desired)                                                          \
    __atomic_compare_exchange_n((p), (expected), (desired), false, __ATOMIC_ACQUIRE,               \
                                __ATOMIC_RELAXED)
#define cas_release(p, expected, desired)                                                          \
    __atomic_compare_exchange_n((p), (expected), (desired), false, __ATOMIC_RELEASE,               \
                                __ATOMIC_RELAXED)
#define cas_acqrel(p, expected, desired)                                                           \
    __atomic_compare_exchange_n((p), (expected), (desired), false, __ATOMIC_ACQ_REL,               \
                                __ATOMIC_RELAXED)
#define cas_seqcst(p, expected, desired)                                                           \
    __atomic_compare_exchange_n((p), (expected), (desired), false, __ATOMIC_SEQ_CST,               \
                                __ATOMIC_RELAXED)
/* seq_cst, and on failure *expected is read with acquire. */
#define cas_seqcst_acquire(p, expected, desired)                                                   \
    __atomic_compare_exchange_n((p), (expected), (desired), false, __ATOMIC_SEQ_CST,               \
                                __ATOMIC_ACQUIRE)

#define fetch_add_relaxed(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define fetch_add_release(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELEASE)
#define fetch_add_acqrel(p, v)  __atomic_fetch_add((p), (v), __ATOMIC_ACQ_REL)
#define fetch_add_seqcst(p, v)  __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define fetch_sub_relaxed(p, v) __atomic_fetch_sub((p), (v), __ATOMIC_RELAXED)
#define fetch_or_relaxed(p, v)  __atomic_fetch_or((p), (v), __ATOMIC_RELAXED)
#define fetch_or_release(p, v)  __atomic_fetch_or((p), (v), __ATOMIC_RELEASE)
#define fetch_and_relaxed(p, v) __atomic_fetch_and((p), (v), __ATOMIC_RELAXED)

#define exchange_release(p, v) __atomic_exchange_n((p), (v), __ATOMIC_RELEASE)
#define exchange_acquire(p, v) __atomic_exchange_n((p), (v), __ATOMIC_ACQUIRE)

/* A full barrier: the store-load ordering of a Dekker handshake. */
#define fence_seqcst() __atomic_thread_fence(__ATOMIC_SEQ_CST)

/* The fences of a sequence lock (dict.c): a writer's release fence after
 * it marks a change begun orders that mark before the relaxed stores that
 * follow; a reader's acquire fence after its relaxed loads orders them
 * before its second look at the count.  No instruction on x86. */
#define fence_release() __atomic_thread_fence(__ATOMIC_RELEASE)
#define fence_acquire() __atomic_thread_fence(__ATOMIC_ACQUIRE)

/* Orders memory accesses against a signal handler (or the kernel acting
 * for this thread, as with the robust list) on this thread only: no
 * instruction, just no reordering by the compiler. */
#define compiler_barrier() __atomic_signal_fence(__ATOMIC_SEQ_CST)

/* The spin-wait hint: tells the CPU this is a busy-wait loop (x86 pause,
 * arm64 yield), which saves power and frees the core's other thread. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif
