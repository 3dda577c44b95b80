/*
 * wait.c - fipc_wait_any: block until one of several fipc objects is
 * ready (fipc/wait.h).
 *
 * Every object arms the same way as for io_uring (waitable.h): it registers
 * as a sleeper and names a futex word and the value it holds until the
 * object's next change, or says that it is ready.  A set of fipc objects
 * then sleeps in one futex_waitv, which returns as soon as any word
 * differs from its value or is woken.  A process has its pidfd and a conn
 * names a descriptor instead of a word (its fileno, readable at the next
 * send or when the peer is gone): a set with descriptors waits on them
 * beside the words in one io_uring submission (IORING_OP_FUTEX_WAITV
 * beside a POLL_ADD per descriptor), or in poll() when it holds
 * descriptors only.  After
 * any wake-up every object is armed again, from the first: the answer is
 * the lowest index that is ready then.
 *
 * The first look registers nothing (FIPC__ARM_PEEK): a poll (timeout 0)
 * or a set that is ready already costs the other processes nothing.  No
 * sleep lasts more than FUTEX_RECHECK_NS (futex.h), so that a process that
 * died between a change and its wake delays the waiter by that much at
 * most.  Where io_uring lacks the futex operations (kernels before 6.7), a
 * set of words and descriptors sleeps in futex_waitv for at most
 * FALLBACK_POLL_NS at a time and looks at the processes and conns in
 * between.
 */
#include <poll.h>
#include <string.h>
#include <sys/syscall.h>

#include <liburing.h>

#include <fipc/wait.h>

#include "eventcount.h"
#include "futex.h"
#include "uring.h"
#include "waitable.h"

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

/* 10 ms: how late a waiter without io_uring futex operations may see a
 * process exit, or a conn's message or EOF, while it also waits on
 * futexes. */
#define FALLBACK_POLL_NS ((int64_t)10000000)

enum kind {
    KIND_NONE, /* a zeroed fipc_waitable */
    KIND_QUEUE,
    KIND_JQUEUE,
    KIND_EVENT,
    KIND_SEM,
    KIND_PROCESS,
    KIND_CONN,
};

fipc_waitable fipc_waitable_queue(fipc_queue *q, unsigned what)
{
    return (fipc_waitable){.obj_ = q, .kind_ = KIND_QUEUE, .what_ = what};
}

fipc_waitable fipc_waitable_jqueue(fipc_jqueue *q, unsigned what)
{
    return (fipc_waitable){.obj_ = q, .kind_ = KIND_JQUEUE, .what_ = what};
}

fipc_waitable fipc_waitable_event(fipc_event *e)
{
    return (fipc_waitable){.obj_ = e, .kind_ = KIND_EVENT};
}

fipc_waitable fipc_waitable_sem(fipc_sem *s)
{
    return (fipc_waitable){.obj_ = s, .kind_ = KIND_SEM};
}

fipc_waitable fipc_waitable_process(fipc_process *p)
{
    return (fipc_waitable){.obj_ = p, .kind_ = KIND_PROCESS};
}

fipc_waitable fipc_waitable_conn(fipc_conn *c)
{
    return (fipc_waitable){.obj_ = c, .kind_ = KIND_CONN};
}

static bool valid(const fipc_waitable *o)
{
    if (!o->obj_)
        return false;
    switch (o->kind_) {
    case KIND_QUEUE:
        return o->what_ == FIPC_READABLE || o->what_ == FIPC_WRITABLE;
    case KIND_JQUEUE:
        return o->what_ == FIPC_READABLE || o->what_ == FIPC_WRITABLE || o->what_ == FIPC_JOINED;
    case KIND_EVENT:
    case KIND_SEM:
    case KIND_PROCESS:
    case KIND_CONN:
        return o->what_ == 0;
    default:
        return false;
    }
}

/* The objects with a futex word, by kind: one arm each (waitable.h). */
static int arm_queue(void *obj, unsigned what, struct fipc__arm *w)
{
    return fipc__queue_arm(obj, what, w);
}

static int arm_jqueue(void *obj, unsigned what, struct fipc__arm *w)
{
    return fipc__jqueue_arm(obj, what, w);
}

static int arm_event(void *obj, unsigned what, struct fipc__arm *w)
{
    return fipc__event_arm(obj, what, w);
}

static int arm_sem(void *obj, unsigned what, struct fipc__arm *w)
{
    return fipc__sem_arm(obj, what, w);
}

static int arm_conn(void *obj, unsigned what, struct fipc__arm *w)
{
    return fipc__conn_arm(obj, what, w);
}

static int (*const arms[])(void *, unsigned, struct fipc__arm *) = {
    [KIND_QUEUE] = arm_queue, [KIND_JQUEUE] = arm_jqueue, [KIND_EVENT] = arm_event,
    [KIND_SEM] = arm_sem,     [KIND_CONN] = arm_conn,
};

/* What one pass over the objects leaves to sleep on. */
struct sleep_set {
    struct futex_waitv words[FIPC_WAIT_MAX];
    size_t nwords;
    struct pollfd fds[FIPC_WAIT_MAX];
    size_t nfds;
    int64_t cap; /* the longest sleep before looking again */
};

/* Arm every object in order (peek: only look): the index of the first that
 * is ready, -EAGAIN if none is (s then says what to sleep on, unless peek),
 * or an object's error. */
static int arm_all(const fipc_waitable *objs, size_t n, bool peek, fipc_deadline deadline,
                   struct sleep_set *s)
{
    s->nwords = s->nfds = 0;
    s->cap = FUTEX_RECHECK_NS;
    for (size_t i = 0; i < n; i++) {
        const fipc_waitable *o = &objs[i];
        int r;
        if (o->kind_ == KIND_PROCESS) {
            int fd = -1;
            /* A peek does not wait for the child's report: not settled
             * means not ended yet (as fipc_process_is_alive says). */
            r = peek ? fipc__process_arm(o->obj_, fipc_deadline_in(0), 0, &fd)
                     : fipc__process_arm(o->obj_, deadline, 1, &fd);
            if (peek && (r == -EAGAIN || r == -ETIMEDOUT))
                r = 0; /* not reported yet: not ended */
            else if (r == 0 && !peek && fd >= 0)
                s->fds[s->nfds++] = (struct pollfd){.fd = fd, .events = POLLIN};
        } else {
            struct fipc__arm w = {.word = NULL, .fd = -1};
            r = arms[o->kind_](o->obj_, o->what_ | (peek ? FIPC__ARM_PEEK : 0), &w);
            if (r == 2) {
                s->cap = EC_RECHECK_NS; /* look again soon (waitable.h) */
                r = 0;
            }
            if (r == 0 && !peek && w.word)
                s->words[s->nwords++] = (struct futex_waitv){
                    .val = w.value, .uaddr = (uintptr_t)w.word, .flags = FUTEX_32};
            if (r == 0 && !peek && w.fd >= 0)
                s->fds[s->nfds++] = (struct pollfd){.fd = w.fd, .events = POLLIN};
        }
        if (r == 1)
            return (int)i;
        if (r < 0)
            return r;
    }
    return -EAGAIN;
}

/* The earlier of the deadline and now + cap, as a timespec. */
static struct timespec until(fipc_deadline deadline, int64_t cap, bool *capped)
{
    fipc_deadline d = fipc_now_ns() + cap;
    *capped = d < deadline;
    if (!*capped)
        d = deadline;
    return (struct timespec){.tv_sec = d / 1000000000, .tv_nsec = d % 1000000000};
}

/* Sleep on the words, at most until the deadline or cap from now: 0 to
 * look again (woken, a word differed, a signal, the cap), -ETIMEDOUT once
 * the deadline has passed. */
static int sleep_words(const struct sleep_set *s, fipc_deadline deadline, int64_t cap)
{
    bool capped;
    struct timespec ts = until(deadline, cap, &capped);
    /* Woken by the notifier of any word's object (its arm registered us),
     * or returns at once if a word already differs. */
    long r = syscall(SYS_futex_waitv, s->words, (unsigned)s->nwords, 0u, &ts, CLOCK_MONOTONIC);
    if (r < 0 && errno == ETIMEDOUT && !capped)
        return -ETIMEDOUT;
    return 0;
}

/* Sleep on the descriptors alone, as sleep_words. */
static int sleep_fds(struct sleep_set *s, fipc_deadline deadline)
{
    bool capped;
    struct timespec ts = until(deadline, s->cap, &capped);
    int64_t left = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - fipc_now_ns();
    int ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
    /* A pidfd becomes readable when its process ends, a conn's fileno at
     * the next send (its arm registered us) or when its peer is gone. */
    if (poll(s->fds, s->nfds, ms) == 0 && !capped && fipc_deadline_passed(deadline))
        return -ETIMEDOUT;
    return 0;
}

/* Sleep on words and descriptors together, in a ring of our own: one
 * FUTEX_WAITV beside a POLL_ADD per descriptor; the first completion ends the
 * sleep, and tearing the ring down cancels the rest (the kernel has copied
 * the words by then).  1 if the ring could not be set up. */
static int sleep_ring(const struct sleep_set *s, fipc_deadline deadline)
{
    struct io_uring ring;
    if (io_uring_queue_init((unsigned)s->nfds + 1, &ring, 0) < 0)
        return 1;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_rw(URING_OP_FUTEX_WAITV, sqe, 0, s->words, (unsigned)s->nwords, 0);
    for (size_t i = 0; i < s->nfds; i++)
        io_uring_prep_poll_add(io_uring_get_sqe(&ring), s->fds[i].fd, POLLIN);
    int r = io_uring_submit(&ring);
    if (r >= 0) {
        bool capped;
        struct timespec ts = until(deadline, s->cap, &capped);
        int64_t left = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - fipc_now_ns();
        if (left < 0)
            left = 0;
        struct __kernel_timespec rel = {.tv_sec = left / 1000000000, .tv_nsec = left % 1000000000};
        struct io_uring_cqe *cqe;
        /* Woken by a word's notifier, a word that differs, a process's
         * end, or a conn's send or EOF; -ETIME once the time is up, -EINTR on a signal. */
        r = io_uring_wait_cqe_timeout(&ring, &cqe, &rel);
        r = r == -ETIME && !capped && fipc_deadline_passed(deadline) ? -ETIMEDOUT : 0;
    } else {
        r = 1;
    }
    io_uring_queue_exit(&ring);
    return r;
}

static int sleep_on(struct sleep_set *s, fipc_deadline deadline)
{
    if (s->nfds == 0)
        return sleep_words(s, deadline, s->cap);
    if (s->nwords == 0)
        return sleep_fds(s, deadline);
    if (fipc__uring_has_futex()) {
        int r = sleep_ring(s, deadline);
        if (r <= 0)
            return r;
    }
    /* No io_uring futex operations (or no ring): the words, with the
     * processes and conns looked at every FALLBACK_POLL_NS. */
    return sleep_words(s, deadline, s->cap < FALLBACK_POLL_NS ? s->cap : FALLBACK_POLL_NS);
}

int fipc_wait_any(const fipc_waitable *objs, size_t n, int64_t timeout_ns)
{
    if (!objs || n == 0 || n > FIPC_WAIT_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!valid(&objs[i]))
            return -EINVAL;
    fipc_deadline deadline = fipc_deadline_in(timeout_ns);
    struct sleep_set s;
    int r = arm_all(objs, n, true, deadline, &s);
    if (r != -EAGAIN || timeout_ns == 0)
        return r;
    for (;;) {
        r = arm_all(objs, n, false, deadline, &s);
        if (r != -EAGAIN)
            return r;
        if (sleep_on(&s, deadline) == -ETIMEDOUT) {
            r = arm_all(objs, n, true, deadline, &s);
            return r == -EAGAIN ? -ETIMEDOUT : r;
        }
    }
}
