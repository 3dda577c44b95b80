/*
 * fipc/value.h - Value and Array: numbers and fixed-length arrays in shared
 * memory, each with a lock (Python's Value('q'), Value('d') and Array).
 *
 * A fipc_value holds an int64_t that every process may read, write and add
 * to atomically, with no lock and no system call; its lock serves updates
 * longer than one add (read, compute, write).  A fipc_value_d does the same
 * for a double (add is a compare-and-swap loop).  A fipc_array holds n
 * zero-filled elements of elem_size bytes and a lock; fipc_array_data gives
 * their address in this process.
 *
 * Ordering: get is an acquire and set and add are releases, so what a
 * process wrote before a set or add is visible to one whose get reads that
 * value (or a later one).  The arrays' elements carry no ordering of their
 * own: use the lock.
 *
 * The objects live in an arena (NULL: the default arena, inherited by
 * children made with fork) and hold no pointers.
 */
#ifndef FIPC_VALUE_H
#define FIPC_VALUE_H

#include <fipc/common.h>
#include <fipc/lock.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fipc_value fipc_value;
typedef struct fipc_value_d fipc_value_d;
typedef struct fipc_array fipc_array;

/* A value set to init in arena a (NULL: the default arena).  0; -EINVAL for
 * a NULL out; -ENOMEM when the arena is full. */
FIPC_EXPORT int fipc_value_new(fipc_value **out, fipc_arena *a, int64_t init);

/* The current value; 0 for NULL. */
FIPC_EXPORT int64_t fipc_value_get(const fipc_value *v);

/* Store x.  0; -EINVAL for NULL. */
FIPC_EXPORT int fipc_value_set(fipc_value *v, int64_t x);

/* Add delta atomically (wrapping as unsigned arithmetic does) and return the
 * new value; 0 for NULL. */
FIPC_EXPORT int64_t fipc_value_add(fipc_value *v, int64_t delta);

/* The value's lock, for updates longer than one add; NULL for NULL. */
FIPC_EXPORT fipc_lock *fipc_value_lock(fipc_value *v);

/* The same for a double (Python's Value('d')).  fipc_value_d_get gives 0.0
 * for NULL, fipc_value_d_add returns the new value (0.0 for NULL). */
FIPC_EXPORT int fipc_value_new_double(fipc_value_d **out, fipc_arena *a, double init);
FIPC_EXPORT double fipc_value_d_get(const fipc_value_d *v);
FIPC_EXPORT int fipc_value_d_set(fipc_value_d *v, double x);
FIPC_EXPORT double fipc_value_d_add(fipc_value_d *v, double delta);
FIPC_EXPORT fipc_lock *fipc_value_d_lock(fipc_value_d *v);

/* An array of n zero-filled elements of elem_size bytes each, aligned to 16
 * bytes, with its lock.  0; -EINVAL for a NULL out, n == 0 or elem_size ==
 * 0; -ENOMEM when n * elem_size overflows or the arena is full. */
FIPC_EXPORT int fipc_array_new(fipc_array **out, fipc_arena *a, size_t elem_size, size_t n);

/* The elements; NULL for NULL, or if the array's header was overwritten
 * so that its elements would not lie inside a mapped arena. */
FIPC_EXPORT void *fipc_array_data(fipc_array *arr);

/* How many elements, and the size of one; 0 for NULL or a header that
 * fipc_array_data would refuse. */
FIPC_EXPORT size_t fipc_array_len(const fipc_array *arr);
FIPC_EXPORT size_t fipc_array_elem_size(const fipc_array *arr);

/* The array's lock; NULL for NULL. */
FIPC_EXPORT fipc_lock *fipc_array_lock(fipc_array *arr);

#ifdef __cplusplus
}
#endif
#endif
