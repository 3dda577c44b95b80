/*
 * fipc/conn.h - Pipe: two connected ends that send and receive whole
 * messages (Python's multiprocessing.Pipe).
 *
 * fipc_pipe makes the two ends; processes made by fork inherit them, as
 * they inherit file descriptors, and each process that holds an end closes
 * its own copy with fipc_conn_close (a process that ends closes its copies
 * anyway).  Messages are byte strings of 0 to FIPC_CONN_MAX_MSG bytes; each
 * arrives whole, in the order sent.  Each direction is a ring of
 * FIPC_CONN_RING bytes in shared memory: a message that fits is copied in
 * and out with no system call while the receiver is awake; a longer one
 * streams through the ring while the receiver reads it.
 *
 * An end is gone once every process that held it has closed it or ended
 * (SIGKILL included): the kernel tracks this through a socket pair whose
 * two sides the two ends hold.  Then the other end's recv returns what is
 * left and after it -EPIPE, its send -EPIPE (never a SIGPIPE), both within
 * 100 ms of the last holder's end.
 *
 * Many processes or threads may send on one end, and many may receive:
 * each message stays whole (senders take turns per message, and so do
 * receivers).  A sender killed in the middle of a message longer than the
 * ring loses that message, never a neighbour: the next sender cuts it out.
 *
 * Ordering: what a process wrote before a send is visible to the process
 * whose recv returns that message.
 *
 * An event loop polls fipc_conn_fileno; fipc_waitable_conn (<fipc/wait.h>)
 * puts an end in a fipc_wait_any set beside queues, events, semaphores and
 * processes (readable or EOF).
 *
 * An end is a small private handle (malloc'ed), valid in the process that
 * made it and in children made by fork; it cannot be sent to an unrelated
 * process.  Each pipe holds five file descriptors, six when duplex, marked
 * close-on-exec.
 */
#ifndef FIPC_CONN_H
#define FIPC_CONN_H

#include <sys/types.h>

#include <fipc/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fipc_conn fipc_conn;

/* The longest message: 1 GiB. */
#define FIPC_CONN_MAX_MSG ((size_t)1 << 30)

/* The bytes of each direction's ring: a message of up to FIPC_CONN_RING - 8
 * bytes goes through it at once. */
#define FIPC_CONN_RING ((size_t)256 * 1024)

/* Two connected ends in *a and *b.  duplex: each end sends and receives;
 * otherwise a only receives and b only sends.  0; -EINVAL for a NULL
 * argument; -ENOMEM, -EMFILE, -ENFILE when memory or descriptors run
 * out. */
FIPC_EXPORT int fipc_pipe(fipc_conn **a, fipc_conn **b, bool duplex);

/* Send len bytes from msg as one message, waiting while the ring is full.
 * 0; -EPIPE when the other end is gone; -EMSGSIZE when len >
 * FIPC_CONN_MAX_MSG; -EBADF on the receive-only end of a pipe that is not
 * duplex; -EINVAL for a NULL c (or a NULL msg with len > 0); -EPROTO when
 * the ring's state in shared memory cannot be right (a peer wrote it). */
FIPC_EXPORT int fipc_conn_send(fipc_conn *c, const void *msg, size_t len);

/* Receive the oldest message into buf: its length.  -EMSGSIZE when it is
 * longer than cap (it stays, for a call with a bigger buffer); -EAGAIN
 * (timeout_ns == 0) or -ETIMEDOUT when none arrives in time; -EPIPE when the
 * other end is gone and every message it sent has been received; -EBADF on
 * the send-only end; -EINVAL for a NULL c (or a NULL buf with cap > 0);
 * -EPROTO as for send, or for a message length past FIPC_CONN_MAX_MSG.
 * A message longer than the ring that started to arrive is read to its end
 * as long as bytes keep coming: timeout_ns bounds each wait for more; a
 * call that gives up in the middle (-ETIMEDOUT, or -EPIPE when its sender
 * died) drops the rest of that message. */
FIPC_EXPORT ssize_t fipc_conn_recv(fipc_conn *c, void *buf, size_t cap, int64_t timeout_ns);

/* Whether recv would find something now: 1 when a message waits or the
 * other end is gone (recv then gives -EPIPE), 0 when timeout_ns passed
 * without either.  -EBADF on the send-only end; -EINVAL for NULL. */
FIPC_EXPORT int fipc_conn_poll(fipc_conn *c, int64_t timeout_ns);

/* A descriptor for poll, epoll or io_uring: it reports POLLIN when a
 * message waits, and POLLIN (with POLLHUP and POLLRDHUP from the socket
 * underneath, through the epoll file it is) once the other end is gone.
 * It may also report POLLIN spuriously: recv with timeout 0 then gives
 * -EAGAIN.  Owned by the end: valid until fipc_conn_close.  On the
 * send-only end it reports only the other end's going.  -EINVAL for
 * NULL. */
FIPC_EXPORT int fipc_conn_fileno(fipc_conn *c);

/* Close this process's copy of the end and free the handle.  0; -EINVAL for
 * NULL. */
FIPC_EXPORT int fipc_conn_close(fipc_conn *c);

#ifdef __cplusplus
}
#endif
#endif
