/*
 * conn.c - Pipe: whole messages through a byte ring per direction.
 *
 * Layout.  fipc_pipe maps one shared anonymous region (inherited by fork,
 * freed when the last process unmaps it): a header and one or two
 * directions, each a control block and a ring of FIPC_CONN_RING bytes.
 * Direction 0 carries b -> a, direction 1 (duplex only) a -> b.  A record
 * in a ring is an 8-byte length followed by the payload, padded to 8
 * bytes; positions are 64-bit byte counts that never wrap, and both
 * positions move in multiples of 8, so a length never straddles the end of
 * the ring.
 *
 *   word          written by            meaning
 *   tail          the sender holding    bytes published: [head, tail) holds
 *                 send_lock             records, the last perhaps partial
 *   head          the receiver holding  bytes the receivers are done with
 *                 recv_lock
 *   send_cur,     the sender, under     the record being streamed (start + 1,
 *   send_end      send_lock             0: none) and where it ends
 *   abort_start,  a sender that took    the record at abort_start - 1 was cut
 *   abort_resume  send_lock from a      short by its sender's death: skip to
 *                 dead one              abort_resume (a seqlock: below)
 *   rmsg_start,   the receiver, under   the record being read in pieces
 *   rmsg_end      recv_lock             (start + 1, 0: none) and its end; left
 *                                       set by a receiver that died or gave
 *                                       up, for the next to skip
 *   head_seen     the sender, under     the head its last look found (A2): a
 *                 send_lock             lower bound of head, so the room it
 *                                       shows is free; head is loaded again
 *                                       only when that room is too small
 *   tail_seen     the receiver, under   the tail its last look found (A1):
 *                 recv_lock             bytes below it are published; tail
 *                                       is loaded again only once head has
 *                                       caught up with it
 *   fd_mode       fipc_conn_fileno      someone polls the descriptor
 *   fd_wait       the receiver sets it, the receiver found the ring empty:
 *                 the sender clears it  the next sender writes the eventfd
 *
 * Memory order.
 *   R1 <-> A1  the sender's release store of tail, after the bytes, pairs
 *              with the receiver's acquire load of tail: the bytes below it
 *              are complete.
 *   R2 <-> A2  the receiver's release store of head, after it copied the
 *              bytes out, pairs with the sender's acquire load of head:
 *              the space below it may be overwritten.
 *   R3 <-> A3  the repairing sender stores abort_start = 0, abort_resume
 *              (release), abort_start = m + 1 (release); a receiver loads
 *              abort_start, abort_resume, abort_start (acquire each): equal
 *              starts mean the resume belongs to them (starts never
 *              repeat).  The repairer publishes later records only after
 *              these stores, so a receiver whose tail (A1) covers them sees
 *              the abort.
 *   locks      send_cur, send_end and head_seen are written and read only
 *              under send_lock, rmsg_start, rmsg_end and tail_seen only
 *              under recv_lock, and tail and head by their side only under
 *              its lock: relaxed, since the lock's acquire and release
 *              order them (also after a holder's death: the next holder
 *              acquires the lock).  So a sender that uses head_seen instead
 *              of loading head is ordered after the A2 load that found it
 *              (its own, or an earlier holder's, through the lock), and
 *              the same for tail_seen and A1: a cached position is an older
 *              look at a position that only grows, never a newer one.
 *   F1 <-> F2  sleeping: the eventcounts (eventcount.h), and the same
 *              Dekker handshake for fd_wait: the receiver stores fd_wait
 *              and fences before it looks at tail again; the sender fences
 *              after tail (F2, shared with the eventcount) and then loads
 *              fd_wait.
 *
 * Holders.  The kernel counts them: the two ends hold the two sides of a
 * socket pair, inherited by fork and closed by fipc_conn_close or by the
 * end of the process.  Once every copy of one side is closed the other
 * polls POLLRDHUP, which is how an end learns that its peer is gone: a
 * receiver that finds the ring empty asks (poll, no wait), a sleeper asks
 * every LIVE_NS, a sender asks when the ring is full and otherwise at most
 * every LIVE_NS.  fipc_conn_close wakes the peer's sleepers after closing
 * its socket, so that a close is seen at once.  The sockets carry no data.
 *
 * Descriptor.  fileno is an epoll file per end watching that end's
 * socket (the peer gone) and the eventfd of the direction it receives.
 * Once fileno was asked for, a receiver that finds the ring empty drains
 * the eventfd, sets fd_wait, and looks again (writing the eventfd itself if
 * something arrived); a sender that finds fd_wait set clears it and writes
 * the eventfd.  So the descriptor costs system calls only to a receiver
 * that ran dry and to the one send that wakes it.  fipc_wait_any arms the
 * same way for one wait (fipc__conn_arm, waitable.h), without fd_mode: it
 * sets fd_wait and sleeps in poll on the epoll file, which the next send
 * (through the eventfd) or the peer's going (through the socket) makes
 * readable.
 *
 * Death.  A message that fits the ring is published by one store of tail,
 * so a sender's death either sent it or did not.  A longer one is
 * published in pieces; a sender that takes send_lock from a dead holder
 * (-EOWNERDEAD) and finds a record only partly published sets the abort
 * words, and receivers drop that record.  A receiver that dies or gives
 * up in the middle of a record leaves rmsg_start/rmsg_end set and the next
 * receiver skips to rmsg_end.  A receiver that dies before storing head
 * has taken nothing: the next one gets the message.
 *
 * Every position and length read from shared memory is checked before use
 * (tail - head within the ring, a cached position that is not is loaded
 * afresh instead, lengths within FIPC_CONN_MAX_MSG, skip and
 * resume points within the record); offsets into the ring are masked, so
 * nothing a peer writes makes a call touch memory outside the mapping or
 * the caller's buffer; a state that cannot be right gives -EPROTO.
 */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fipc/conn.h>
#include <fipc/lock.h>

#include "conn_impl.h"
#include "waitable.h"

#define MASK        (RING - 1)
#define HDR         ((uint64_t)8)
#define LIVE_NS     ((int64_t)20000000) /* 20 ms between liveness checks */
#define REC_MAX     (HDR + FIPC_CONN_MAX_MSG)
#define ROUND8(x)   (((x) + 7) & ~(uint64_t)7)
#define ROUNDDN8(x) ((x) & ~(uint64_t)7)

/* ---- the peer's liveness and the descriptor ---- */

/* The clock of the sender's liveness check: CLOCK_MONOTONIC_COARSE, which
 * the vDSO reads without the time stamp counter (a third of the cost here)
 * and which ticks every few milliseconds, fine for LIVE_NS.  Only ever
 * compared with itself (next_check). */
static inline int64_t coarse_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Whether every holder of the other end has closed it or ended. */
static bool peer_gone(const fipc_conn *c)
{
    struct pollfd p = {.fd = c->sock, .events = POLLRDHUP};
    /* No wait; EINTR cannot happen with a zero timeout. */
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}

static void efd_signal(int fd)
{
    uint64_t one = 1;
    /* Cannot block: the counter would have to reach 2^64 - 2. */
    ssize_t r = write(fd, &one, sizeof one);
    (void)r;
}

static void efd_drain(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v); /* non-blocking eventfd */
    (void)r;
}

/* After publishing: wake the receiver's sleepers and its descriptor. */
static void notify_receiver(const fipc_conn *c, struct conn_dir *d)
{
    fence_light(); /* F2: tail before the loads of the flags (fence.h) */
    ec_notify_fenced(&d->not_empty);
    /* relaxed: ordered by the fence; the exchange makes one sender the one
     * that writes (acquire: nothing after it moves before). */
    if (FIPC_UNLIKELY(load_relaxed(&d->fd_wait)) && exchange_acquire(&d->fd_wait, 0))
        efd_signal(c->out_efd);
}

/* ---- the ring ---- */

static void ring_write(char *ring, uint64_t pos, const void *src, size_t n)
{
    if (n == 0)
        return; /* src may be NULL */
    size_t off = (size_t)(pos & MASK), first = n < RING - off ? n : (size_t)(RING - off);
    memcpy(ring + off, src, first);
    memcpy(ring, (const char *)src + first, n - first);
}

static void ring_read(const char *ring, uint64_t pos, void *dst, size_t n)
{
    if (n == 0)
        return; /* dst may be NULL */
    size_t off = (size_t)(pos & MASK), first = n < RING - off ? n : (size_t)(RING - off);
    memcpy(dst, ring + off, first);
    memcpy((char *)dst + first, ring, n - first);
}

static uint64_t ring_len_at(const char *ring, uint64_t pos)
{
    /* relaxed: the bytes were published by R1 and read after A1; atomic
     * only because a hostile peer may write them at any time. */
    return load_relaxed((const uint64_t *)(ring + (pos & MASK)));
}

/* The receiver's abort check (A3): the resume point if the record at m was
 * cut short by its sender's death, else 0. */
static uint64_t aborted(struct conn_dir *d, uint64_t m)
{
    if (FIPC_LIKELY(load_acquire(&d->abort_start) != m + 1)) /* A3 */
        return 0;
    uint64_t resume = load_acquire(&d->abort_resume); /* A3 */
    if (load_acquire(&d->abort_start) != m + 1)       /* A3 */
        return 0;
    return resume;
}

/* ---- waiting ---- */

/* A call's time limit, read from the clock only once it has to wait: a
 * call that finds its message (or room) at once reads no clock.  The
 * limit then counts from the first look that failed, a lock and one look
 * after the call began. */
struct when {
    int64_t timeout_ns;
    fipc_deadline deadline; /* WHEN_UNSET until first needed */
};

#define WHEN_UNSET INT64_MIN

static struct when when_in(int64_t timeout_ns)
{
    return (struct when){.timeout_ns = timeout_ns, .deadline = WHEN_UNSET};
}

static fipc_deadline when_deadline(struct when *w)
{
    if (w->deadline == WHEN_UNSET)
        w->deadline = fipc_deadline_in(w->timeout_ns);
    return w->deadline;
}

typedef int (*try_fn)(void *ctx);

/* Run try until it answers other than -EAGAIN: spin, then sleep on ec,
 * asking whether the peer is gone (-EPIPE, after one more try) every
 * LIVE_NS and after each wake-up that changed nothing, and giving up at
 * deadline (-ETIMEDOUT, after one more try).  zero: try once, and ask
 * once. */
static int conn_wait(const fipc_conn *c, struct eventcount *ec, try_fn try, void *ctx,
                     struct when *w, bool zero)
{
    int r = try(ctx);
    if (r != -EAGAIN)
        return r;
    fipc_deadline deadline = zero ? 0 : when_deadline(w);
    /* A partner on another CPU usually answers within the spin, whose
     * budget this thread learns from the waits that slept (clock.h), as
     * ec_block does: a ping-pong partner that answers a few microseconds
     * late makes the next spin long enough, one on this CPU turns it off. */
    struct fipc_spin spin;
    if (!zero) {
        for (fipc_spin_begin(&spin); fipc_spin(&spin);)
            if ((r = try(ctx)) != -EAGAIN)
                return r;
        ec_spun(ec, &spin);
    }
    /* Ask now if we may not wait, else after LIVE_NS of sleep or after a
     * wake that brought nothing (a close wakes us): a wake with data costs
     * no system call but the futex's. */
    int64_t next_live = zero ? 0 : fipc_now_ns() + LIVE_NS;
    bool moved = false, slept = false;
    for (;;) {
        /* Woken by a notifier, which cleared the flag: a try before
         * registering again leaves none behind (which would cost the
         * other side a needless wake) when it succeeds. */
        if (moved && (r = try(ctx)) != -EAGAIN) {
            fipc_spin_learn(&spin, (int)load_relaxed(&ec->waker_cpu)); /* relaxed: a hint */
            return r;
        }
        uint32_t epoch = zero ? 0 : ec_register(ec);
        if (!zero && (r = try(ctx)) != -EAGAIN) {
            /* relaxed: a hint for the spin budget only (the waker's CPU,
             * or -1 if the wake came from a close or the time). */
            if (slept)
                fipc_spin_learn(&spin, moved ? (int)load_relaxed(&ec->waker_cpu) : -1);
            return r;
        }
        int64_t now = fipc_now_ns();
        if (moved || now >= next_live) {
            next_live = now + LIVE_NS;
            moved = false;
            if (peer_gone(c)) {
                /* It published everything before it closed its socket,
                 * which our poll saw. */
                r = try(ctx);
                return r == -EAGAIN ? -EPIPE : r;
            }
        }
        if (zero)
            return -EAGAIN;
        fipc_deadline until = now + LIVE_NS;
        if (until > deadline)
            until = deadline;
        /* Woken by the other side's notify after its change, by a close of
         * the other end, or by the time (the liveness check). */
        futex_wait_until(&ec->epoch, epoch, until);
        slept = true;
        /* relaxed: only whether someone woke us; try() re-reads the state. */
        moved = load_relaxed(&ec->epoch) != epoch;
        if (!moved)
            ec_fence_sleepers(ec); /* as ec_slept: the other side is idle */
        if (fipc_deadline_passed(deadline)) {
            r = try(ctx);
            fipc_spin_learn(&spin, -1);
            return r == -EAGAIN ? -ETIMEDOUT : r;
        }
    }
}

/* ---- send ---- */

struct room_ctx {
    struct conn_dir *d;
    uint64_t pos, want, head;
    bool cached; /* the first try may answer from head_seen */
};

/* Whether want bytes are free from pos: 0 (head in ctx), -EAGAIN, -EPROTO. */
static int try_room(void *p)
{
    struct room_ctx *x = p;
    if (x->cached) {
        x->cached = false;
        /* relaxed: under send_lock (above, "locks"); a look at head that
         * A2 ordered, so the room below it is free.  Garbage (a peer) is
         * not trusted: head is loaded instead. */
        uint64_t h = load_relaxed(&x->d->head_seen);
        if (x->pos - h <= RING && RING - (x->pos - h) >= x->want) {
            x->head = h;
            return 0;
        }
    }
    uint64_t h = load_acquire(&x->d->head); /* A2 */
    if (x->pos - h > RING)
        return -EPROTO;
    store_relaxed(&x->d->head_seen, h); /* under send_lock */
    x->head = h;
    return RING - (x->pos - h) >= x->want ? 0 : -EAGAIN;
}

static int wait_room(fipc_conn *c, struct room_ctx *x)
{
    struct when forever = when_in(FIPC_FOREVER);
    return conn_wait(c, &c->out->not_full, try_room, x, &forever, false);
}

/* Took send_lock from a sender that died, or gave up in the middle of a
 * record: cut out the record left partly published, if any (R3). */
static void repair_send(fipc_conn *c, struct conn_dir *d)
{
    /* relaxed: written under send_lock, which we hold (its acquire). */
    uint64_t cur = load_relaxed(&d->send_cur), end = load_relaxed(&d->send_end);
    uint64_t t = load_relaxed(&d->tail);
    if (cur != 0 && cur - 1 < t && t < end && end - (cur - 1) <= ROUND8(REC_MAX)) {
        store_relaxed(&d->abort_start, 0);
        store_release(&d->abort_resume, t);  /* R3: after the store of 0 */
        store_release(&d->abort_start, cur); /* R3: after resume */
        notify_receiver(c, d);
    }
    store_relaxed(&d->send_cur, 0);
}

static int send_locked(fipc_conn *c, const void *msg, size_t len)
{
    struct conn_dir *d = c->out;
    uint64_t pos = load_relaxed(&d->tail); /* ours, under send_lock */
    uint64_t rec = ROUND8(HDR + len);
    /* A stream looks at head itself, so that its first piece is as long
     * as the room is. */
    struct room_ctx x = {
        .d = d, .pos = pos, .want = rec <= RING ? rec : HDR, .cached = rec <= RING};
    int r = wait_room(c, &x);
    if (r < 0)
        return r;
    uint64_t len64 = len;
    if (rec <= RING) {
        ring_write(c->out_ring, pos, &len64, HDR);
        ring_write(c->out_ring, pos + HDR, msg, len);
        store_release(&d->tail, pos + rec); /* R1 */
        notify_receiver(c, d);
        return 0;
    }
    /* Stream: publish as much as fits, in multiples of 8, until done. */
    store_relaxed(&d->send_end, pos + rec); /* read under send_lock only */
    store_relaxed(&d->send_cur, pos + 1);
    ring_write(c->out_ring, pos, &len64, HDR);
    uint64_t done = HDR; /* bytes of the record written */
    for (;;) {
        uint64_t room = RING - (pos + done - x.head);
        uint64_t n = rec - done < room ? rec - done : ROUNDDN8(room);
        uint64_t payload_off = done - HDR;
        uint64_t copy = payload_off + n <= len ? n : (payload_off < len ? len - payload_off : 0);
        ring_write(c->out_ring, pos + done, (const char *)msg + payload_off, copy);
        done += n;
        store_release(&d->tail, pos + done); /* R1 */
        notify_receiver(c, d);
        if (done == rec)
            break;
        x.pos = pos + done;
        x.want = 8;
        if ((r = wait_room(c, &x)) < 0) {
            /* The receivers are gone (or head is garbage): cut the record
             * out, as for a dead sender, so that a later message is not
             * read as its rest. */
            repair_send(c, d);
            return r;
        }
    }
    store_relaxed(&d->send_cur, 0);
    return 0;
}

int fipc_conn_send(fipc_conn *c, const void *msg, size_t len)
{
    if (!c || (!msg && len > 0))
        return -EINVAL;
    if (!c->out)
        return -EBADF;
    if (len > FIPC_CONN_MAX_MSG)
        return -EMSGSIZE;
    /* The peer may be gone while the ring still has room: ask now and
     * then.  relaxed: a private field, shared by this process's threads. */
    int64_t now = coarse_now_ns();
    if (now >= load_relaxed(&c->next_check)) {
        store_relaxed(&c->next_check, now + LIVE_NS);
        if (peer_gone(c))
            return -EPIPE;
    }
    int r = fipc_lock_acquire(&c->out->send_lock, FIPC_FOREVER);
    if (r == -EOWNERDEAD)
        repair_send(c, c->out);
    else if (r < 0)
        return r;
    r = send_locked(c, msg, len);
    int u = fipc_lock_release(&c->out->send_lock);
    return r < 0 ? r : u;
}

/* ---- receive ---- */

struct data_ctx {
    struct conn_dir *d;
    uint64_t head;   /* what we have consumed up to */
    uint64_t record; /* the record being read in pieces (its start), or ~0 */
    uint64_t tail;   /* out: the tail seen */
    uint64_t resume; /* out: the record was aborted, skip to here */
    bool cached;     /* the first try may answer from tail_seen */
};

/* Whether bytes past head are published: 0 (tail in ctx), -EAGAIN, -EPROTO;
 * or 0 with resume set when the record being read was aborted. */
static int try_data(void *p)
{
    struct data_ctx *x = p;
    uint64_t t = 0;
    bool fresh = true;
    if (x->cached) {
        x->cached = false;
        /* relaxed: under recv_lock (above, "locks"); a look at tail that
         * A1 ordered, so the bytes below it are published.  Used only
         * while it is past head (and sane: a peer may have written it). */
        t = load_relaxed(&x->d->tail_seen);
        fresh = t - x->head - 1 >= RING || (t & 7);
    }
    if (fresh) {
        t = load_acquire(&x->d->tail); /* A1 */
        if (t - x->head > RING || (t & 7))
            return -EPROTO;
        store_relaxed(&x->d->tail_seen, t); /* under recv_lock */
    }
    x->tail = t;
    if (x->record != ~(uint64_t)0 && (x->resume = aborted(x->d, x->record)) != 0)
        return 0;
    return t != x->head ? 0 : -EAGAIN;
}

/* The receiver's side of the descriptor, once the ring looked empty: drain
 * the eventfd, ask the next sender to write it, and look again.  true if a
 * message is there after all or the peer is gone; the eventfd is then
 * written again, so that another poller of it whose signal the drain took
 * still wakes. */
static bool fd_register(fipc_conn *c, struct conn_dir *d)
{
    efd_drain(c->in_efd);
    store_relaxed(&d->fd_wait, 1); /* relaxed: F1 orders it before tail */
    fence_heavy();                 /* F1, the heavy side of F2 (fence.h) */
    /* relaxed: the fence orders it after the flag. */
    if (load_relaxed(&d->tail) != load_relaxed(&d->head) || peer_gone(c)) {
        efd_signal(c->in_efd);
        return true;
    }
    return false;
}

/* The same, only once fileno was asked for. */
static void arm_fd(fipc_conn *c, struct conn_dir *d)
{
    /* relaxed: a hint; fileno sets it before its caller polls. */
    if (load_relaxed(&d->fd_mode))
        fd_register(c, d);
}

static int wait_data(fipc_conn *c, struct data_ctx *x, struct when *w, bool zero)
{
    int r = conn_wait(c, &c->in->not_empty, try_data, x, w, zero);
    if (r == -EAGAIN || r == -ETIMEDOUT)
        arm_fd(c, c->in);
    return r;
}

/* The bound on each wait for the next piece of a record that has begun to
 * arrive: timeout_ns, but STREAM_NS for a zero timeout (the sender is in
 * the middle of its send). */
#define STREAM_NS ((int64_t)1000000000)

static struct when piece_when(int64_t timeout_ns)
{
    return when_in(timeout_ns == 0 ? STREAM_NS : timeout_ns);
}

/* Release the bytes below h to the sender. */
static void give_back(struct conn_dir *d, uint64_t h)
{
    store_release(&d->head, h); /* R2 */
    ec_notify(&d->not_full);
}

/* Skip what a receiver before us left of the record [start, end), or what
 * a dead sender left of it: 0 once past it, or the error of the wait. */
static int skip_record(fipc_conn *c, uint64_t h, struct when *w, bool zero)
{
    struct conn_dir *d = c->in;
    /* relaxed: written under recv_lock, which we hold. */
    uint64_t start = load_relaxed(&d->rmsg_start) - 1, end = load_relaxed(&d->rmsg_end);
    if (end == h) {
        /* Its reader got to the end, and died or returned before it
         * cleared rmsg_start. */
        store_relaxed(&d->rmsg_start, 0);
        return 0;
    }
    if (start > h || end < h || end - start > ROUND8(REC_MAX) || (end & 7)) {
        store_relaxed(&d->rmsg_start, 0);
        return -EPROTO;
    }
    struct data_ctx x = {.d = d, .head = h, .record = start};
    for (;;) {
        int r = wait_data(c, &x, w, zero);
        if (r < 0)
            return r;
        if (x.resume) {
            if (x.resume < h || x.resume > x.tail)
                return -EPROTO;
            h = x.resume;
            break;
        }
        h = x.tail < end ? x.tail : end;
        give_back(d, h);
        x.head = h;
        if (h == end)
            break;
    }
    give_back(d, h);
    store_relaxed(&d->rmsg_start, 0);
    return 0;
}

static ssize_t recv_locked(fipc_conn *c, void *buf, size_t cap, struct when *w, int64_t timeout_ns)
{
    struct conn_dir *d = c->in;
    bool zero = timeout_ns == 0;
    int r;
    /* Each round either returns or moves past a message that is dropped:
     * after a few, the deadline bounds them too (a hostile peer forging
     * one aborted message after another). */
    for (unsigned rounds = 0;; rounds++) {
        if (rounds > 64 && fipc_deadline_passed(when_deadline(w)))
            return fipc_unavailable(timeout_ns);
        uint64_t h = load_relaxed(&d->head); /* ours, under recv_lock */
        if (FIPC_UNLIKELY(load_relaxed(&d->rmsg_start) != 0)) {
            if ((r = skip_record(c, h, w, zero)) < 0)
                return r;
            continue;
        }
        struct data_ctx x = {.d = d, .head = h, .record = h, .cached = true};
        if ((r = wait_data(c, &x, w, zero)) < 0)
            return r;
        if (x.resume) {
            /* The record at h was cut short (it is past what we have seen
             * whole, so resume lies in (h, tail]). */
            if (x.resume <= h || x.resume > x.tail)
                return -EPROTO;
            give_back(d, x.resume);
            continue;
        }
        uint64_t len = ring_len_at(c->in_ring, h);
        if (len > FIPC_CONN_MAX_MSG)
            return -EPROTO;
        if (len > cap)
            return -EMSGSIZE;
        uint64_t rec = ROUND8(HDR + len);
        if (x.tail - h >= rec) {
            ring_read(c->in_ring, h + HDR, buf, len);
            give_back(d, h + rec);
            return (ssize_t)len;
        }
        /* Longer than what is here: read it in pieces, handing the space
         * back as we go; a call that gives up leaves the rest to skip. */
        store_relaxed(&d->rmsg_end, h + rec);
        store_relaxed(&d->rmsg_start, h + 1);
        uint64_t got = 0; /* payload bytes copied */
        for (;;) {
            uint64_t avail = x.tail - (h + HDR) - got;
            if (got + avail > len)
                avail = len - got;
            ring_read(c->in_ring, h + HDR + got, (char *)buf + got, avail);
            got += avail;
            if (got == len)
                break;
            x.head = h + HDR + ROUNDDN8(got);
            give_back(d, x.head);
            struct when piece = piece_when(timeout_ns);
            if ((r = wait_data(c, &x, &piece, false)) < 0)
                return r;
            if (x.resume) {
                if (x.resume <= h || x.resume > x.tail)
                    return -EPROTO;
                give_back(d, x.resume);
                store_relaxed(&d->rmsg_start, 0);
                got = ~(uint64_t)0;
                break;
            }
        }
        if (got == ~(uint64_t)0)
            continue;
        give_back(d, h + rec);
        store_relaxed(&d->rmsg_start, 0);
        return (ssize_t)len;
    }
}

ssize_t fipc_conn_recv(fipc_conn *c, void *buf, size_t cap, int64_t timeout_ns)
{
    if (!c || (!buf && cap > 0))
        return -EINVAL;
    if (!c->in)
        return -EBADF;
    struct when w = when_in(timeout_ns);
    /* A free lock costs no clock; a held one starts the time limit. */
    int r = fipc_lock_acquire(&c->in->recv_lock, 0);
    if (r == -EAGAIN && timeout_ns != 0) {
        when_deadline(&w);
        r = fipc_lock_acquire(&c->in->recv_lock, timeout_ns);
    }
    if (r < 0 && r != -EOWNERDEAD)
        return r == -EDEADLK ? -EINVAL : r;
    /* After a dead receiver: rmsg_start tells whether it left a record
     * half read; nothing else needs repair. */
    ssize_t n = recv_locked(c, buf, cap, &w, timeout_ns);
    fipc_lock_release(&c->in->recv_lock);
    return n;
}

static int try_readable(void *p)
{
    struct conn_dir *d = p;
    /* acquire: A1, as a recv would; relaxed head: a snapshot. */
    return load_acquire(&d->tail) != load_relaxed(&d->head) ? 1 : -EAGAIN;
}

int fipc_conn_poll(fipc_conn *c, int64_t timeout_ns)
{
    if (!c)
        return -EINVAL;
    if (!c->in)
        return -EBADF;
    struct when w = when_in(timeout_ns);
    int r = conn_wait(c, &c->in->not_empty, try_readable, c->in, &w, timeout_ns == 0);
    if (r == -EPIPE)
        return 1;
    if (r == -EAGAIN || r == -ETIMEDOUT) {
        arm_fd(c, c->in);
        return 0;
    }
    return r;
}

int fipc_conn_fileno(fipc_conn *c)
{
    if (!c)
        return -EINVAL;
    if (c->in) {
        /* relaxed: the descriptor work that follows (arm_fd) has its own
         * fence, and every later empty finding re-arms. */
        store_relaxed(&c->in->fd_mode, 1);
        arm_fd(c, c->in);
    }
    return c->ep;
}

/* ---- waiting from outside fipc (waitable.h) ---- */

int fipc__conn_arm(fipc_conn *c, unsigned what, struct fipc__arm *w)
{
    if (!c || !c->in)
        return -EINVAL;
    struct conn_dir *d = c->in;
    if (try_readable(d) == 1)
        return 1;
    if (what & FIPC__ARM_PEEK)
        return peer_gone(c);
    /* A message about to come from the other CPU costs less to spin for
     * than a registration, which makes the sender's next send write the
     * eventfd (as the queue's arm). */
    struct fipc_spin spin;
    for (fipc_spin_begin(&spin); fipc_spin(&spin);)
        if (try_readable(d) == 1)
            return 1;
    fipc_spin_vain(&spin); /* as the queue's arm */
    /* fd_wait set: the next send writes the eventfd that the epoll file
     * (fileno) watches beside the socket, whose hang-up it reports too.
     * Not fd_mode: a waiter that goes away leaves one needless write to
     * the next send, not a system call to every receiver that runs dry. */
    if (fd_register(c, d))
        return 1;
    w->fd = c->ep;
    return 0;
}

/* ---- set-up and close ---- */

static void map_put(struct conn_map *m)
{
    /* acq_rel: the last end's close sees every other end's use done (the
     * threads of this process that used the other end released it). */
    if (fetch_add_acqrel(&m->refs, -1) != 1)
        return;
    for (int i = 0; i < 2; i++)
        if (m->efd[i] >= 0)
            close(m->efd[i]);
    munmap(m->sh, m->len);
    free(m);
}

int fipc_conn_close(fipc_conn *c)
{
    if (!c)
        return -EINVAL;
    close(c->ep);
    close(c->sock);
    /* After the socket: a peer that wakes now finds it closed if we were
     * its last holder. */
    if (c->out) {
        ec_wake_all(&c->out->not_empty);
        ec_wake_all(&c->out->not_full);
    }
    if (c->in) {
        ec_wake_all(&c->in->not_full);
        ec_wake_all(&c->in->not_empty);
    }
    map_put(c->map);
    free(c);
    return 0;
}

static int watch(int ep, int fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

/* Fill in end e with socket sock, receiving direction in and sending out
 * (-1: none). */
static int end_init(fipc_conn *e, struct conn_map *m, int sock, int in, int out)
{
    struct conn_shared *sh = m->sh;
    *e = (struct fipc_conn){.map = m, .sock = sock, .ep = -1, .in_efd = -1, .out_efd = -1};
    if (in >= 0) {
        e->in = &sh->dir[in];
        e->in_ring = (char *)sh + RING_OFF(in);
        e->in_efd = m->efd[in];
    }
    if (out >= 0) {
        e->out = &sh->dir[out];
        e->out_ring = (char *)sh + RING_OFF(out);
        e->out_efd = m->efd[out];
    }
    e->ep = epoll_create1(EPOLL_CLOEXEC);
    if (e->ep < 0)
        return -errno;
    int r = watch(e->ep, sock, EPOLLIN | EPOLLRDHUP);
    if (r == 0 && e->in_efd >= 0)
        r = watch(e->ep, e->in_efd, EPOLLIN);
    return r;
}

int fipc_pipe(fipc_conn **a, fipc_conn **b, bool duplex)
{
    if (!a || !b)
        return -EINVAL;
    /* Both ends' sends may use light fences (fence.h); a child forked with
     * the ends keeps the registration. */
    fipc__fence_register();
    int ndir = duplex ? 2 : 1, r = -ENOMEM, sv[2] = {-1, -1};
    struct conn_map *m = calloc(1, sizeof *m);
    fipc_conn *ea = calloc(1, sizeof *ea), *eb = calloc(1, sizeof *eb);
    if (ea)
        ea->ep = -1;
    if (eb)
        eb->ep = -1;
    if (m)
        m->efd[0] = m->efd[1] = -1;
    if (!m || !ea || !eb)
        goto fail;
    m->len = RING_OFF(ndir);
    m->sh = mmap(NULL, m->len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m->sh == MAP_FAILED) {
        m->sh = NULL;
        goto fail;
    }
    m->sh->magic = CONN_MAGIC;
    m->sh->duplex = duplex;
    for (int i = 0; i < ndir; i++) {
        fipc_lock_init(&m->sh->dir[i].send_lock);
        fipc_lock_init(&m->sh->dir[i].recv_lock);
        m->efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (m->efd[i] < 0) {
            r = -errno;
            goto fail;
        }
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        r = -errno;
        goto fail;
    }
    /* a receives direction 0 and sends on 1; b the other way round. */
    if ((r = end_init(ea, m, sv[0], 0, duplex ? 1 : -1)) < 0)
        goto fail;
    if ((r = end_init(eb, m, sv[1], duplex ? 1 : -1, 0)) < 0)
        goto fail;
    m->refs = 2;
    *a = ea;
    *b = eb;
    return 0;
fail:
    for (int i = 0; i < 2; i++)
        if (sv[i] >= 0)
            close(sv[i]);
    if (ea && ea->ep >= 0)
        close(ea->ep);
    if (eb && eb->ep >= 0)
        close(eb->ep);
    if (m) {
        for (int i = 0; i < 2; i++)
            if (m->efd[i] >= 0)
                close(m->efd[i]);
        if (m->sh)
            munmap(m->sh, m->len);
    }
    free(m);
    free(ea);
    free(eb);
    return r;
}
