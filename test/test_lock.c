/*
 * test_lock.c - fipc_lock: mutual exclusion across processes.
 *
 * The lock contract (lock_contract.h) runs on fipc_lock: exclusion under
 * 4 hammering processes, snapshots, timeouts, signals, wake-ups, owner
 * death (a killed process, an exited thread), release-then-die, a death
 * between release and wake, releases by non-owners and NULL arguments.
 * Here besides: the ticket-sale seed, and an acquire by the holder (a Lock
 * is not recursive).
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 * Children also ask for SIGKILL when the test process dies, so a failed
 * assertion in the parent never leaves one running.
 */
#include "common.h"
#include "futex_faults.h"

#include <fcntl.h>

TestSuite(lock, .timeout = 120);

#define LC_SUITE lock
#include "lock_contract.h"

LOCK_CONTRACT(lock)

/* ---- The ticket-sale seed: one ticket in a file, ten buyers ---- */

#define BUYERS 10

struct ticket_sale {
    fipc_lock *lock;
    char path[64];
    uint32_t ready, go;
    uint32_t attempts;  /* under the lock */
    uint32_t purchases; /* under the lock */
};

static int read_count(const char *path, long *count)
{
    char buf[32];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    char *end;
    *count = strtol(buf, &end, 10);
    return end == buf ? -1 : 0;
}

static int write_count(const char *path, long count)
{
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld", count);
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, buf, (size_t)len);
    close(fd);
    return n == len ? 0 : -1;
}

static int buyer_child(int i, void *arg)
{
    struct ticket_sale *s = arg;
    long count;
    test_child_setup();
    /* Everyone looks at the tickets first, as in the seed, then they all
     * rush to buy at once. */
    CHILD_CHECK(read_count(s->path, &count) == 0, 1);
    __atomic_fetch_add(&s->ready, 1, __ATOMIC_ACQ_REL);
    CHILD_CHECK(test_wait_until_at_least(&s->go, 1, HANDSHAKE_NS), 2);

    CHILD_CHECK(fipc_lock_acquire(s->lock, FIPC_FOREVER) == 0, 3);
    CHILD_CHECK(read_count(s->path, &count) == 0, 4);
    s->attempts++;
    /* Widen the window between read and write: without exclusion, another
     * buyer would read the same "1" here. */
    sched_yield();
    if (count > 0) {
        count--;
        s->purchases++;
    }
    sched_yield();
    CHILD_CHECK(write_count(s->path, count) == 0, 5);
    CHILD_CHECK(fipc_lock_release(s->lock) == 0, 6);
    return CHILD_OK;
}

Test(lock, ticket_sale_sells_the_one_ticket_exactly_once)
{
    struct ticket_sale *s = test_shared(sizeof *s);
    s->lock = fipc_lock_new(NULL);
    cr_assert_not_null(s->lock);
    strcpy(s->path, "/tmp/fipc_ticket_XXXXXX");
    int fd = mkstemp(s->path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    close(fd);
    cr_assert_eq(write_count(s->path, 1), 0);

    pid_t pids[BUYERS];
    for (int i = 0; i < BUYERS; i++)
        pids[i] = test_fork(buyer_child, i, s);
    cr_assert(test_wait_until_at_least(&s->ready, BUYERS, HANDSHAKE_NS), "only %u buyers got ready",
              s->ready);
    test_flag_set(&s->go, 1);
    test_reap_within(pids, BUYERS, REAP_NS);

    long count = -1;
    cr_assert_eq(read_count(s->path, &count), 0);
    unlink(s->path);
    cr_assert_eq(s->attempts, BUYERS, "%u buyers tried, want %d", s->attempts, BUYERS);
    cr_assert_eq(s->purchases, 1, "%u tickets sold, want exactly 1", s->purchases);
    cr_assert_eq(count, 0, "file holds %ld tickets, want 0", count);
}

/* ---- The holder acquires again ---- */

Test(lock, acquire_of_a_lock_the_caller_holds_gives_eagain_or_edeadlk)
{
    fipc_lock *l = fipc_lock_new(NULL);
    cr_assert_not_null(l);
    cr_assert_eq(fipc_lock_acquire(l, 0), 0);
    cr_assert_eq(fipc_lock_acquire(l, 0), -EAGAIN, "a try-lock fails, as Python's does");
    cr_assert_eq(fipc_lock_acquire(l, FIPC_MSEC(10)), -EDEADLK);
    cr_assert_eq(fipc_lock_acquire(l, FIPC_FOREVER), -EDEADLK, "must not hang");
    cr_assert(fipc_lock_locked(l));
    cr_assert_eq(fipc_lock_release(l), 0, "one release frees it: no recursion");
    cr_assert_not(fipc_lock_locked(l));
}
