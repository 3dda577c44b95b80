/*
 * compiler.h - compiler helpers shared by fipc's implementation (internal).
 *
 * The bottom of lib/: nothing here knows any fipc object.
 */
#ifndef FIPC_LIB_COMPILER_H
#define FIPC_LIB_COMPILER_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The unit of sharing between CPUs: fields written by different sides
 * live on different lines of this size. */
#define FIPC_CACHELINE 64

#define FIPC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define FIPC_LIKELY(x)   __builtin_expect(!!(x), 1)

/* For code that a caller specialises with constant arguments. */
#define FIPC_ALWAYS_INLINE inline __attribute__((always_inline))
/* For paths that run at most a few times per object (close races, repair):
 * out of line, so that they do not crowd the code of every call. */
#define FIPC_COLD     __attribute__((noinline, cold))
#define FIPC_NOINLINE __attribute__((noinline))

#endif
