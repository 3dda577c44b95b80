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

/* Raise the unfinished count by n, or take back n that a put counted
 * before it failed (no consumer will ever read them). */
void fipc__jqueue_count(fipc_jqueue *j, size_t n);
void fipc__jqueue_uncount(fipc_jqueue *j, size_t n);

#endif
