/*
 * fipc/event.h - Python's Event: a flag that processes wait on.
 *
 * One 32-bit futex word holds the flag and a generation that every set
 * advances, so a waiter asleep when the flag is set wakes with success even
 * if the flag is cleared again before it runs (as in Python).  A second word
 * counts sleepers, so set wakes the kernel only when someone sleeps, and
 * wait on a set flag is a single load.
 */
#ifndef FIPC_EVENT_H
#define FIPC_EVENT_H

#include <fipc/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FIPC_EVENT_SIZE 8

typedef struct fipc_event {
    FIPC_ALIGNAS(8) unsigned char opaque_[FIPC_EVENT_SIZE];
} fipc_event;

/* Initialise a cleared event.  -EINVAL for NULL. */
FIPC_EXPORT int fipc_event_init(fipc_event *e);

/* A cleared event in arena a (NULL: the default arena); NULL if full. */
FIPC_EXPORT fipc_event *fipc_event_new(fipc_arena *a);

/* Set the flag and wake every waiter.  0, or -EINVAL for NULL. */
FIPC_EXPORT int fipc_event_set(fipc_event *e);

/* Clear the flag.  0, or -EINVAL for NULL. */
FIPC_EXPORT int fipc_event_clear(fipc_event *e);

/* How waiters on e wait from their next wait on (enum fipc_wait_mode,
 * fipc/common.h; FIPC_WAIT_ADAPTIVE until set; init resets it).  0, or
 * -EINVAL for NULL or another mode. */
FIPC_EXPORT int fipc_event_set_wait_mode(fipc_event *e, enum fipc_wait_mode mode);

/* The flag (a snapshot).  false for NULL. */
FIPC_EXPORT bool fipc_event_is_set(const fipc_event *e);

/* Wait until the flag is set.  0 once set (or set while this call slept);
 * -EAGAIN (timeout_ns == 0) or -ETIMEDOUT otherwise; -EINVAL for NULL. */
FIPC_EXPORT int fipc_event_wait(fipc_event *e, int64_t timeout_ns);

#ifdef __cplusplus
}
#endif
#endif
