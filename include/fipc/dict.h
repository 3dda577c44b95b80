/*
 * fipc/dict.h - a dict shared by processes (Python's Manager().dict(),
 * without the server process: the entries live in shared memory).
 *
 * Keys are strings of up to max_key bytes (NUL excluded); values are byte
 * strings of up to max_val bytes; at most max_keys entries.  Every call
 * works on the shared memory directly: a get takes no lock (it copies the
 * value and checks a sequence count that writers move, retrying, and
 * takes the lock only when a writer keeps the entry busy); a set of an
 * existing key is a lock acquire, a copy and a release, with no system
 * call when uncontended.  Keys hash onto stripes, each with its own robust
 * lock, so writes of different keys rarely wait for each other.
 *
 * Death.  A process killed inside set, delete or update leaves the dict
 * consistent: each key maps to its old value or to its new one (values are
 * double-buffered and a set switches buffers with one store); the next
 * caller that takes the dead process's stripe lock repairs what needs
 * repair (a slot it had claimed for a new key goes back to the free ones).
 *
 * Ordering: what a process wrote before a set (or update) is visible to a
 * process whose get (or foreach) returns that value.
 *
 * The dict lives in an arena and holds no pointers; a peer that overwrites
 * it can make calls fail with -EPROTO, never make them touch memory outside
 * the dict and the caller's buffers.
 */
#ifndef FIPC_DICT_H
#define FIPC_DICT_H

#include <fipc/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fipc_dict fipc_dict;

/* An empty dict in arena a (NULL: the default arena).  0; -EINVAL for a
 * NULL out or a zero dimension, or a max_key or max_val of 2^24 or more,
 * or max_keys past 2^24; -ENOMEM when the arena is full. */
FIPC_EXPORT int fipc_dict_create(fipc_dict **out, fipc_arena *a, size_t max_keys, size_t max_key,
                                 size_t max_val);

/* Map key to the len bytes at val (a copy), replacing any value.  0;
 * -EMSGSIZE for a key longer than max_key or len > max_val; -ENOSPC when
 * the key is new and max_keys entries exist; -EINVAL for NULL arguments
 * (val may be NULL when len is 0); -EPROTO (shared state overwritten).
 * Nothing changes on error. */
FIPC_EXPORT int fipc_dict_set(fipc_dict *d, const char *key, const void *val, size_t len);

/* Copy key's value into buf: 0 with *len set.  -ENOENT when the key is
 * absent; -EMSGSIZE when the value is longer than cap (*len receives its
 * length); -EMSGSIZE for a key longer than max_key; -EINVAL; -EPROTO.  On
 * error buf's first cap bytes may have changed. */
FIPC_EXPORT int fipc_dict_get(fipc_dict *d, const char *key, void *buf, size_t cap, size_t *len);

/* Remove key.  0; -ENOENT when absent; -EMSGSIZE, -EINVAL, -EPROTO. */
FIPC_EXPORT int fipc_dict_delete(fipc_dict *d, const char *key);

/* How many entries (a snapshot), or -EINVAL, -EPROTO. */
FIPC_EXPORT int fipc_dict_len(fipc_dict *d);

/* Atomic read-modify-write of key's value: fn gets a buffer of max_val
 * bytes holding the value and *len its length; it may change both (*len
 * at most max_val) and returns 0 to store the result, anything else to
 * leave the value as it was (update then returns that).  Other calls on
 * keys of the same stripe wait meanwhile, so fn must be short and must not
 * call the dict.  0; -ENOENT when the key is absent; -EMSGSIZE when fn set
 * *len past max_val (nothing changes); -EINVAL, -EPROTO. */
FIPC_EXPORT int fipc_dict_update(fipc_dict *d, const char *key,
                                 int (*fn)(void *val, size_t *len, void *arg), void *arg);

/* Call fn on a consistent copy of each entry (key and value as they were
 * at one moment; an entry set or deleted during the visit may or may not
 * be seen).  fn may call the dict.  0 once every entry was visited, or the
 * first non-zero value fn returned; -ENOMEM, -EINVAL, -EPROTO. */
FIPC_EXPORT int
fipc_dict_foreach(fipc_dict *d, int (*fn)(const char *key, const void *val, size_t len, void *arg),
                  void *arg);

#ifdef __cplusplus
}
#endif
#endif
