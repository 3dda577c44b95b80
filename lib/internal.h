/*
 * internal.h - helpers shared by fipc's implementation files (not installed).
 */
#ifndef FIPC_LIB_INTERNAL_H
#define FIPC_LIB_INTERNAL_H

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <fipc/common.h>

#define FIPC_CACHELINE 64

/*
 * Atomics on plain shared words.  Objects in shared memory are laid out as
 * fixed-width integers (their layout is pinned with static_assert), so the
 * implementation reaches them through these wrappers, each naming its
 * memory order; the call sites say what each acquire pairs with.
 */
#define load_relaxed(p)  __atomic_load_n((p), __ATOMIC_RELAXED)
#define load_acquire(p)  __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define load_seqcst(p)   __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define store_seqcst(p, v)  __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
/* Strong compare-and-swap; on failure *expected receives the current value
 * (read with relaxed order). */
#define cas_acquire(p, expected, desired)                                                  \
    __atomic_compare_exchange_n((p), (expected), (desired), false, __ATOMIC_ACQUIRE,      \
                                __ATOMIC_RELAXED)
#define cas_acqrel(p, expected, desired)                                                   \
    __atomic_compare_exchange_n((p), (expected), (desired), false, __ATOMIC_ACQ_REL,      \
                                __ATOMIC_RELAXED)
#define cas_seqcst(p, expected, desired)                                                   \
    __atomic_compare_exchange_n((p), (expected), (desired), false, __ATOMIC_SEQ_CST,      \
                                __ATOMIC_RELAXED)
/* seq_cst, and on failure *expected is read with acquire. */
#define cas_seqcst_acquire(p, expected, desired)                                           \
    __atomic_compare_exchange_n((p), (expected), (desired), false, __ATOMIC_SEQ_CST,      \
                                __ATOMIC_ACQUIRE)
#define cas_relaxed(p, expected, desired)                                                  \
    __atomic_compare_exchange_n((p), (expected), (desired), false, __ATOMIC_RELAXED,      \
                                __ATOMIC_RELAXED)
#define fetch_add_relaxed(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define fetch_add_release(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELEASE)
#define fetch_add_acqrel(p, v)  __atomic_fetch_add((p), (v), __ATOMIC_ACQ_REL)
#define fetch_add_seqcst(p, v)  __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define fetch_sub_relaxed(p, v) __atomic_fetch_sub((p), (v), __ATOMIC_RELAXED)
#define exchange_release(p, v)  __atomic_exchange_n((p), (v), __ATOMIC_RELEASE)

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* How long a blocked operation re-checks its condition before it sleeps
 * (with exponential backoff between checks, see fipc_spin in futex.h).  A
 * partner on another CPU usually answers within that time, far sooner than
 * a futex sleep and wake-up (5-50 us here); a partner that was preempted,
 * or shares this CPU, costs us at most this much.  Bounded by time, not by
 * iterations: one pause instruction costs from a few to about 50 ns
 * depending on the CPU.  Measured here (semaphore ping-pong round trip,
 * raw futex = 1.0): 1 us: 2x faster unpinned, 0.6x on one shared CPU;
 * 3 us: 20x faster unpinned, 0.43x on one CPU. */
#ifndef FIPC_SPIN_NS
#define FIPC_SPIN_NS 2000
#endif

/* "Not available": -EAGAIN for a zero timeout, -ETIMEDOUT otherwise. */
static inline int fipc_unavailable(int64_t timeout_ns)
{
    return timeout_ns == 0 ? -EAGAIN : -ETIMEDOUT;
}

/* Allocate an object in arena a (NULL: the default arena). */
void *fipc__alloc(fipc_arena *a, size_t size, size_t align);

/* Whether the calling process is a daemon child (process.c). */
extern bool fipc__in_daemon;

#define FIPC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define FIPC_LIKELY(x)   __builtin_expect(!!(x), 1)

#endif
