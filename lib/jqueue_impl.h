/*
 * jqueue_impl.h - the calls jqueue.c offers the layers above it (internal).
 */
#ifndef FIPC_LIB_JQUEUE_IMPL_H
#define FIPC_LIB_JQUEUE_IMPL_H

#include <fipc/jqueue.h>

#include "queue_impl.h"

/* As fipc__queue_footprint and fipc__queue_init, for a JoinableQueue: its
 * counters, then the queue. */
int fipc__jqueue_footprint(size_t *size, size_t capacity, size_t max_item, unsigned flags);
fipc_jqueue *fipc__jqueue_init(void *mem, size_t capacity, size_t max_item, unsigned flags);

#ifdef FIPC_TEST_HOOKS
/* The count's steps, for the test seams (test_hooks.c): count a claim of
 * the two-phase put, and end it (r: what the commit returned). */
void fipc__jqueue_count(fipc_jqueue *j, const struct fipc__put_claim *c);
void fipc__jqueue_counted(fipc_jqueue *j, const struct fipc__put_claim *c, int r);
/* A put that claims and counts n items, then stops, as a producer killed
 * between counting and publishing would: how many it claimed, or an error
 * as fipc_jqueue_put_many's. */
int fipc__jqueue_put_counted_only(fipc_jqueue *j, const struct iovec *items, size_t n);
/* The joiners registered (and JOINERS_OUTSIDE); *locked: whether the
 * counts go through the joiners' lock (TALLY_LOCKED in done). */
uint32_t fipc__jqueue_joiners(const fipc_jqueue *j, bool *locked);
#endif

#endif
