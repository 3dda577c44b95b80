/*
 * uring.c - io_uring SQEs that wait on fipc objects (fipc/uring.h).
 *
 * Each preparer asks the object to arm (waitable.h): register as a sleeper
 * and name the futex word and the value it holds until the next change,
 * or say that it is ready now.  The SQE then becomes an
 * IORING_OP_FUTEX_WAIT on that word and value, or a NOP.  The kernel
 * compares the word with the value when the SQE is issued, so a change
 * between the arm and the submission completes it at once (-EAGAIN), and a
 * change after it wakes it: the notifier saw the registration (the arm's
 * handshake) and wakes the word.
 *
 * liburing 2.3 has no helper for the futex operations; the SQE is filled
 * as the kernel reads it (io_uring/futex.c): fd = futex2 flags, addr = the
 * word, addr2 (off) = the expected value, addr3 = the bitset mask, len and
 * the op flags 0.
 */
#include <pthread.h>

#include <liburing.h>

#include <fipc/uring.h>

#include "futex.h"
#include "uring.h"
#include "waitable.h"

#define FUTEX2_SIZE_U32 2u /* never FUTEX2_PRIVATE: the words are shared */

#ifdef FIPC_TEST_HOOKS
bool fipc__uring_unsupported;
#endif

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static bool has_futex;

static void probe(void)
{
    struct io_uring_probe *p = io_uring_get_probe();
    if (!p)
        return; /* no io_uring at all (or not allowed): no futex ops */
    has_futex = io_uring_opcode_supported(p, URING_OP_FUTEX_WAIT) &&
                io_uring_opcode_supported(p, URING_OP_FUTEX_WAITV);
    io_uring_free_probe(p);
}

bool fipc__uring_has_futex(void)
{
#ifdef FIPC_TEST_HOOKS
    /* relaxed: a test sets it before the calls it affects, in its own
     * thread. */
    if (load_relaxed(&fipc__uring_unsupported))
        return false;
#endif
    /* pthread_once orders the probe's write of has_futex before this read. */
    pthread_once(&probe_once, probe);
    return has_futex;
}

/* How soon a loop looks again when the object asks for it (arm 2): a
 * timeout that no wake shortens, so shorter than ec_block's EC_RECHECK_NS
 * (which sleeps on the futex too); a claim that is still in the way costs
 * the loop a wake-up per period.  The kernel copies it when the SQE is
 * submitted, so it must outlive the call. */
#define URING_RECHECK_NS 250000 /* 250 us */
static const struct __kernel_timespec recheck = {.tv_sec = 0, .tv_nsec = URING_RECHECK_NS};

/* arm: what the object's arm answered for w. */
static int prep(struct io_uring_sqe *sqe, int arm, const struct fipc__arm *w)
{
    if (arm < 0)
        return arm;
    if (arm == 1) {
        io_uring_prep_nop(sqe);
        return 1;
    }
    if (arm == 2) {
        /* Another process's claim is in the way: nobody announces its end
         * if that process died, and the next look repairs it. */
        io_uring_prep_timeout(sqe, (struct __kernel_timespec *)&recheck, 0, 0);
        return 0;
    }
    io_uring_prep_rw(URING_OP_FUTEX_WAIT, sqe, (int)FUTEX2_SIZE_U32, w->word, 0, w->value);
    sqe->addr3 = FUTEX_BITSET_MATCH_ANY;
    return 0;
}

/* The checks every preparer makes before it registers anything. */
static int usable(const struct io_uring_sqe *sqe, const void *obj)
{
    if (!sqe || !obj)
        return -EINVAL;
    return fipc__uring_has_futex() ? 0 : -EOPNOTSUPP;
}

int fipc_queue_prep_wait(struct io_uring_sqe *sqe, fipc_queue *q, unsigned what)
{
    struct fipc__arm w = {.word = NULL, .fd = -1};
    int r = usable(sqe, q);
    if (r == 0 && what != FIPC_READABLE && what != FIPC_WRITABLE)
        r = -EINVAL;
    return r < 0 ? r : prep(sqe, fipc__queue_arm(q, what, &w), &w);
}

int fipc_jqueue_prep_wait(struct io_uring_sqe *sqe, fipc_jqueue *q, unsigned what)
{
    struct fipc__arm w = {.word = NULL, .fd = -1};
    int r = usable(sqe, q);
    if (r == 0 && what != FIPC_READABLE && what != FIPC_WRITABLE)
        r = -EINVAL;
    return r < 0 ? r : prep(sqe, fipc__jqueue_arm(q, what, &w), &w);
}

int fipc_jqueue_prep_join(struct io_uring_sqe *sqe, fipc_jqueue *q)
{
    struct fipc__arm w = {.word = NULL, .fd = -1};
    int r = usable(sqe, q);
    return r < 0 ? r : prep(sqe, fipc__jqueue_arm(q, FIPC_JOINED, &w), &w);
}

int fipc_event_prep_wait(struct io_uring_sqe *sqe, fipc_event *e)
{
    struct fipc__arm w = {.word = NULL, .fd = -1};
    int r = usable(sqe, e);
    return r < 0 ? r : prep(sqe, fipc__event_arm(e, 0, &w), &w);
}

int fipc_sem_prep_wait(struct io_uring_sqe *sqe, fipc_sem *s)
{
    struct fipc__arm w = {.word = NULL, .fd = -1};
    int r = usable(sqe, s);
    return r < 0 ? r : prep(sqe, fipc__sem_arm(s, 0, &w), &w);
}
