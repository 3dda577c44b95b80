/*
 * layout.c - the public object types have the same size and alignment in C
 * and in C++ (tools/headers.sh compiles this file as both).
 *
 * The figures are the ABI: an object in an arena is used by every program
 * that maps the arena, whatever its language and whichever version of the
 * headers it was built with.  lib/ asserts that each implementation struct
 * fits its public type.
 */
#include <stdbool.h>
#include <stddef.h>

#include <fipc.h>

#ifdef __cplusplus
#define LAYOUT(e)  static_assert(e, #e)
#define ALIGNOF(t) alignof(t)
#else
#define LAYOUT(e)  _Static_assert(e, #e)
#define ALIGNOF(t) _Alignof(t)
#endif

LAYOUT(sizeof(bool) == 1);

LAYOUT(FIPC_LOCK_SIZE == 40);
LAYOUT(sizeof(fipc_lock) == 40 && ALIGNOF(fipc_lock) == 8);
LAYOUT(sizeof(fipc_rlock) == 40 && ALIGNOF(fipc_rlock) == 8);
LAYOUT(FIPC_SEM_SIZE == 16);
LAYOUT(sizeof(fipc_sem) == 16 && ALIGNOF(fipc_sem) == 8);
LAYOUT(FIPC_EVENT_SIZE == 8);
LAYOUT(sizeof(fipc_event) == 8 && ALIGNOF(fipc_event) == 8);
LAYOUT(FIPC_COND_SIZE == 16);
LAYOUT(sizeof(fipc_cond) == 16 && ALIGNOF(fipc_cond) == 8);
LAYOUT(FIPC_BARRIER_SIZE == 16);
LAYOUT(sizeof(fipc_barrier) == 16 && ALIGNOF(fipc_barrier) == 8);

/* Passed to fipc_process_start: a pointer, then a bool. */
LAYOUT(offsetof(fipc_process_opts, name) == 0);
LAYOUT(offsetof(fipc_process_opts, daemon) == sizeof(const char *));
LAYOUT(sizeof(fipc_process_opts) == 2 * sizeof(const char *));
