/*
 * arena_impl.h - what arena.c tells the layers above it about this
 * process's mappings (internal).
 */
#ifndef FIPC_LIB_ARENA_IMPL_H
#define FIPC_LIB_ARENA_IMPL_H

#include "compiler.h"

/* Whether [p, p + len) lies inside an arena this process has mapped (past
 * its header); *end receives the end of that mapping.  Takes a lock: for
 * set-up paths, not for every call. */
bool fipc__arena_bounds(const void *p, size_t len, const char **end);

/* Memory as fipc_arena_alloc hands it out (zeroed, never handed out
 * again), from the arena this process has mapped that holds p; NULL if
 * none does or it has no room.  Takes the lock of fipc__arena_bounds. */
void *fipc__arena_alloc_near(const void *p, size_t size, size_t align);

/* A thread of this process holds, for its lifetime, a robust lock at p in
 * an arena (an MPMC claimer record): closing that arena keeps its address
 * range reserved, as private memory, instead of unmapping it. */
void fipc__arena_pin(const void *p);

/* Advanced (relaxed) whenever this process unmaps an arena: whatever a
 * thread derived from a mapping is stale once it has moved. */
extern uint32_t fipc__arena_epoch;

#endif
