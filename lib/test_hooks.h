/*
 * test_hooks.h - seams for fipc's own tests, built only into the
 * uninstalled test library (test_hooks.c, compiled with FIPC_TEST_HOOKS).
 */
#ifndef FIPC_LIB_TEST_HOOKS_H
#define FIPC_LIB_TEST_HOOKS_H

#include <fipc/jqueue.h>

#include "jqueue_impl.h"
#include "lock_impl.h"

/* Move an empty, idle queue to start at position pos, so that the
 * wrap-around of slot turns (32-bit) and positions (64-bit) can be
 * exercised without moving billions of messages first. */
void fipc__queue_rebase(struct fipc_queue *q, uint64_t pos);

/* An SPSC put_many that found the queue open just before it was closed (it
 * skips that check): it publishes the messages, calls between(arg) if not
 * NULL (whatever the consumer does at that moment), then looks at closed
 * and, if set, settles with the consumer whether the messages count
 * (returns how many) or not (-EPIPE).  owner: the jqueue whose count the
 * put raises, or NULL; one message without an owner is confirmed as
 * fipc_queue_put confirms it.  -EAGAIN if the ring is full. */
int fipc__queue_spsc_put_late(struct fipc_queue *q, const struct iovec *items, size_t n,
                              fipc_jqueue *owner, void (*between)(void *), void *arg);

/* An MPMC get that claims up to n messages and stops there, as a consumer
 * killed between its claim and its release would: how many it claimed, or
 * -EAGAIN. */
int fipc__queue_mpmc_get_claim_only(struct fipc_queue *q, size_t n);

/* The same, but it hands the first `released` slots of its claim back
 * first, as a consumer killed inside a batch get after copying those out
 * would: how many it claimed, or -EAGAIN. */
int fipc__queue_mpmc_get_claim_release_some(struct fipc_queue *q, size_t n, size_t released);

/* From now on, every thread that sets up its lock state (its first lock
 * call, in this process or in a child forked later) finds no robust list,
 * as on a C library whose list fipc cannot use: owner death is then found
 * only by the liveness check of the owner record (lib/lock.c).  Call it
 * before the process's first lock call, e.g. from a constructor. */
void fipc__lock_force_no_robust_list(void);

/* How many liveness checks of recorded lock owners this process has made
 * (its children count their own). */
uint64_t fipc__lock_owner_check_count(void);

/* Make the io_uring preparers answer -EOPNOTSUPP, and fipc_wait_any sleep
 * without io_uring, as on a kernel without io_uring futex operations (on:
 * true), or stop pretending (false). */
void fipc__uring_pretend_unsupported(bool on);

#endif
