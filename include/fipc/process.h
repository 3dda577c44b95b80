/*
 * fipc/process.h - Python's Process: run a function in a forked child.
 *
 * start forks (through the C library, so atfork handlers and the robust
 * futex list are set up as usual in the child); the child's first act is
 * to send the parent a pidfd on itself.  join polls that pidfd, so it has
 * a timeout, and no call ever acts on a recycled pid.  The child drops the
 * stdout and stderr output it inherited unwritten (the parent writes it),
 * runs target(arg), flushes stdio and leaves with _exit(return value &
 * 0xff): it does not run the parent's atexit handlers.
 *
 * A daemon child is killed when the thread that started it ends (the
 * kernel's parent-death signal, armed before start returns; the parent's
 * process exiting ends that thread), and may not start children of its
 * own.
 *
 * The fipc_process handle is private to the process that started the
 * child; any of its threads may use it, also several at once.
 */
#ifndef FIPC_PROCESS_H
#define FIPC_PROCESS_H

#include <fipc/common.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fipc_process fipc_process;

typedef struct fipc_process_opts {
    const char *name; /* NULL: "Process-N", N counting from 1 per parent */
    bool daemon;      /* dies with its parent; may not start children */
} fipc_process_opts;

/* Fork a child that runs target(arg) and exits with its return value.
 * opts may be NULL; a daemon's start returns once its death signal is
 * armed.  Errors: -EINVAL (out or target NULL), -EPERM (the caller is a
 * daemon child), -ENOMEM, -EAGAIN (fork limits), -EMFILE, and other
 * socketpair/fork failures.  A child that cannot send its pidfd (no free
 * fd) exits 127 without running target. */
FIPC_EXPORT int fipc_process_start(fipc_process **out, int (*target)(void *), void *arg,
                                   const fipc_process_opts *opts);

/* Wait for the child to end and reap it.  0 once it has ended (at once if
 * it already had); -EAGAIN (timeout_ns == 0) or -ETIMEDOUT while it runs;
 * -EINVAL for NULL.  Several threads may join one child: all see it end,
 * and exitcode gives each the same status. */
FIPC_EXPORT int fipc_process_join(fipc_process *p, int64_t timeout_ns);

/* Whether the child still runs (reaps it if it has ended).  false for NULL. */
FIPC_EXPORT bool fipc_process_is_alive(fipc_process *p);

/* The child's pid (stays valid to read after it ends), or -1 for NULL. */
FIPC_EXPORT pid_t fipc_process_pid(const fipc_process *p);

/* The child's name; "" for NULL. */
FIPC_EXPORT const char *fipc_process_name(const fipc_process *p);

/* Whether the child was started as a daemon. */
FIPC_EXPORT bool fipc_process_daemon(const fipc_process *p);

/* As Python reports it: *code is the exit status, or minus the number of
 * the signal that killed the child.  Reaps the child if it has ended.  0;
 * -EAGAIN while the child runs; -ECHILD if something else in this process
 * reaped it (SIGCHLD ignored, or waitpid(-1)), so its status is lost (not
 * when another thread reaped it through this handle); -EINVAL for NULL. */
FIPC_EXPORT int fipc_process_exitcode(const fipc_process *p, int *code);

/* Send SIGTERM / SIGKILL through the child's pidfd (never to a process
 * that took its pid).  0 (also when the child has already ended); -EINVAL
 * for NULL; other pidfd_send_signal failures. */
FIPC_EXPORT int fipc_process_terminate(fipc_process *p);
FIPC_EXPORT int fipc_process_kill(fipc_process *p);

/* Release the handle.  A child still running is neither killed nor
 * waited for.  NULL is ignored. */
FIPC_EXPORT void fipc_process_free(fipc_process *p);

/* Whether the calling process is a daemon child started by fipc. */
FIPC_EXPORT bool fipc_process_current_is_daemon(void);

#ifdef __cplusplus
}
#endif
#endif
