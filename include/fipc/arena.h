/*
 * fipc/arena.h - memfd-backed shared memory that every fipc object lives in.
 *
 * An arena is one memfd whose size (max_bytes) is fixed and sealed at
 * creation; tmpfs supplies its pages lazily, on first touch, so a large
 * max_bytes costs address space, not memory.  Every process maps the whole
 * file, so memory handed out later is visible everywhere without remapping.
 * Objects inside an arena hold offsets, never pointers: two processes may map
 * the same arena at different addresses.
 *
 * The arena starts with a header (magic, version, size) that attach
 * validates, and a small directory that names objects for processes that
 * did not inherit them (publish/lookup).  Memory is never freed: an arena is
 * a region for long-lived objects, released as a whole when the last process
 * unmaps it and the last descriptor is closed.
 */
#ifndef FIPC_ARENA_H
#define FIPC_ARENA_H

#include <fipc/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest key publish accepts, not counting the terminating NUL. */
#define FIPC_ARENA_KEY_MAX 47
/* How many names the directory holds. */
#define FIPC_ARENA_DIR_SLOTS 64

/* Create an arena of max_bytes (rounded up to whole pages; at least 64 KiB).
 * name labels the memfd in /proc/PID/fd (may be NULL).  Errors: -EINVAL
 * (out NULL, max_bytes 0 or absurdly large), -ENOMEM/-EMFILE and other
 * memfd_create/ftruncate/mmap failures. */
FIPC_EXPORT int fipc_arena_create(fipc_arena **out, const char *name, size_t max_bytes);

/* Map an arena from a descriptor that another process created.  The fd is
 * duplicated; the caller keeps its own.  Errors: -EINVAL (out NULL), -EBADF
 * (fd not open, not a regular file, or not open for reading and writing),
 * -EPROTO (the file's size is not sealed against shrinking and growing as
 * every arena's is, or it is sealed against writing; too small; the
 * header's magic, version or size do not match the file), -EXDEV (made in
 * another pid namespace: thread ids, which locks hold, differ there),
 * -ENOMEM, -EMFILE. */
FIPC_EXPORT int fipc_arena_attach(fipc_arena **out, int fd);

/* The arena's descriptor (owned by the arena; close it through
 * fipc_arena_close).  -EINVAL for NULL. */
FIPC_EXPORT int fipc_arena_fd(const fipc_arena *a);

/* size bytes aligned to align (a power of two, at most 4096; 0 means 16),
 * zero-filled.  NULL when the arena is full, the arguments are bad, or
 * another process overwrote the shared allocation cursor with garbage.
 * Lock-free; safe from any process. */
FIPC_EXPORT void *fipc_arena_alloc(fipc_arena *a, size_t size, size_t align);

/* Bytes handed out so far (header included) and the arena's total size. */
FIPC_EXPORT size_t fipc_arena_used(const fipc_arena *a);
FIPC_EXPORT size_t fipc_arena_size(const fipc_arena *a);

/* How long publish waits for the directory's lock: a publish holds it for
 * microseconds, so a lock held longer is held by a process that is stopped
 * (SIGSTOP, a debugger) or was forged by a peer that wrote the arena. */
#define FIPC_ARENA_DIR_WAIT_NS ((int64_t)1000000000)

/* Name obj (which must lie inside a) so that fipc_arena_lookup finds it.
 * Errors: -EINVAL (NULL, obj outside the arena, empty key),
 * -ENAMETOOLONG (key longer than FIPC_ARENA_KEY_MAX), -EEXIST (key taken),
 * -ENOSPC (directory full), -EPROTO (another process wrote an entry that no
 * publish could have written), -ETIMEDOUT (the directory stayed locked for
 * FIPC_ARENA_DIR_WAIT_NS: nothing was published), -ENOMEM (this thread's
 * record of held locks could not be mapped).  A holder that died is no
 * obstacle: its lock is recovered at once. */
FIPC_EXPORT int fipc_arena_publish(fipc_arena *a, const char *key, const void *obj);

/* The object published under key, at this process's address; NULL if none
 * (or if its entry holds an offset outside the arena's object area).
 * Takes no lock: never waits, whatever another process holds or wrote. */
FIPC_EXPORT void *fipc_arena_lookup(fipc_arena *a, const char *key);

/* Send the arena's descriptor over a connected AF_UNIX socket (SCM_RIGHTS).
 * Returns 0 or a negative errno from sendmsg (-EPIPE if the peer is gone;
 * never raises SIGPIPE). */
FIPC_EXPORT int fipc_arena_send(int sock, const fipc_arena *a);

/* Receive an arena sent by fipc_arena_send and attach it.  Every descriptor
 * that arrives is closed (the arena keeps a duplicate); other control
 * messages, such as SO_PASSCRED credentials, are ignored.  Errors: those of
 * recvmsg, -EPIPE (the peer closed the socket), -EPROTO (not exactly one
 * descriptor arrived, or the message was not fipc_arena_send's), and those
 * of fipc_arena_attach. */
FIPC_EXPORT int fipc_arena_recv(int sock, fipc_arena **out);

/* Unmap the arena in this process and close its descriptor.  Objects in it
 * stay valid in every other process that maps it.  NULL is ignored; the
 * default arena is never unmapped.  If threads of this process used an
 * MPMC queue in it, the address range stays reserved, as private memory,
 * until the process ends (their claimer records are robust locks). */
FIPC_EXPORT void fipc_arena_close(fipc_arena *a);

/* A process-wide arena created on first use (FIPC_DEFAULT_ARENA_BYTES, or
 * the size in the environment variable FIPC_ARENA_SIZE).  Children forked
 * after its creation inherit it.  Every _new/_create call accepts NULL to
 * mean this arena.  NULL only if it cannot be created. */
FIPC_EXPORT fipc_arena *fipc_default_arena(void);

#define FIPC_DEFAULT_ARENA_BYTES ((size_t)1 << 30)

#ifdef __cplusplus
}
#endif
#endif
