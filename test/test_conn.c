/*
 * test_conn.c - fipc_pipe and fipc_conn: whole messages between processes.
 *
 * FIFO and exactly-once with checksums, both directions at once; messages
 * longer than the ring (1 MiB, 64 MiB); EOF after close by one holder and
 * by several, and after the peer is SIGKILLed; poll and epoll on fileno;
 * timeouts; send to a gone end (-EPIPE, no SIGPIPE); -EMSGSIZE leaving the
 * message; the wrong direction; many senders on one end keeping every
 * message whole, also when one is killed in the middle of a long message;
 * many receivers on one end, each message taken once and whole;
 * a receiver killed or timing out in the middle of one; bad arguments and
 * shared state a peer overwrote.
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 */
#include <sys/epoll.h>

#include "common.h"

#include "conn_impl.h"

TestSuite(conn, .timeout = 300);

/* ---- messages that check themselves ---- */

/* Message k of stream s: its length (1 byte to max) and its bytes are a
 * function of (s, k), so the receiver can check each one whole and in
 * order; one of 12 bytes or more also starts with s and k, so that a
 * receiver of several streams can tell whose it is. */
static size_t msg_len(uint32_t s, uint64_t k, size_t max)
{
    uint64_t x = (k + 1) * 0x9e3779b97f4a7c15u ^ s;
    x ^= x >> 29;
    /* Mostly short, every 64th up to max. */
    return (k % 64 == 63) ? (size_t)(x % max) + 1 : (size_t)(x % 200) + 1;
}

static void msg_fill(char *buf, uint32_t s, uint64_t k, size_t len)
{
    uint32_t x = (uint32_t)(k * 2654435761u) ^ s;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (char)(x >> 16);
    }
    if (len >= 12) {
        memcpy(buf, &s, 4);
        memcpy(buf + 4, &k, 8);
    }
}

/* Whether buf is message k of stream s (its length included). */
static bool msg_check(const char *buf, size_t len, uint32_t s, uint64_t k, size_t max)
{
    if (len != msg_len(s, k, max)) return false;
    uint32_t x = (uint32_t)(k * 2654435761u) ^ s;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        if (i >= 12 && buf[i] != (char)(x >> 16)) return false;
        if (i < 12 && len < 12 && buf[i] != (char)(x >> 16)) return false;
    }
    if (len >= 12) {
        uint32_t s2;
        uint64_t k2;
        memcpy(&s2, buf, 4);
        memcpy(&k2, buf + 4, 8);
        if (s2 != s || k2 != k) return false;
    }
    return true;
}

static uint64_t scaled(uint64_t n)
{
    return TEST_ASAN ? n / 10 : n;
}

#define MAXLEN (64 * 1024)

struct stream {
    fipc_conn *c;
    uint32_t s;
    uint64_t n;
    int result;
};

static void *send_stream(void *arg)
{
    struct stream *st = arg;
    char *buf = malloc(MAXLEN);
    st->result = 0;
    for (uint64_t k = 0; k < st->n; k++) {
        size_t len = msg_len(st->s, k, MAXLEN);
        msg_fill(buf, st->s, k, len);
        if (fipc_conn_send(st->c, buf, len) != 0) {
            st->result = 1;
            break;
        }
    }
    free(buf);
    return NULL;
}

/* Receive stream s of n messages: 0, or which check failed. */
static int recv_stream(fipc_conn *c, uint32_t s, uint64_t n)
{
    char *buf = malloc(MAXLEN);
    int result = 0;
    for (uint64_t k = 0; k < n && result == 0; k++) {
        ssize_t r = fipc_conn_recv(c, buf, MAXLEN, HANDSHAKE_NS);
        if (r < 0)
            result = 2;
        else if (!msg_check(buf, (size_t)r, s, k, MAXLEN))
            result = 3;
    }
    free(buf);
    return result;
}

/* One side of a duplex pipe: send stream `mine` on a thread while this
 * thread receives stream `theirs`. */
static int both_ways(fipc_conn *c, uint32_t mine, uint32_t theirs, uint64_t n)
{
    struct stream st = {.c = c, .s = mine, .n = n};
    pthread_t t;
    if (pthread_create(&t, NULL, send_stream, &st) != 0) return 10;
    int r = recv_stream(c, theirs, n);
    pthread_join(t, NULL);
    if (r) return r;
    if (st.result) return 10 + st.result;
    /* Nothing more (the peer may still be receiving, or have closed). */
    char b[8];
    r = (int)fipc_conn_recv(c, b, sizeof b, 0);
    return r == -EAGAIN || r == -EPIPE ? 0 : 20;
}

Test(conn, million_messages_each_way_at_once_arrive_whole_in_order)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, true), 0);
    uint64_t n = scaled(1000000);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        test_child_setup();
        fipc_conn_close(a);
        int r = both_ways(b, 2, 1, n);
        fipc_conn_close(b);
        _exit(r);
    }
    fipc_conn_close(b);
    int r = both_ways(a, 1, 2, n);
    fipc_conn_close(a);
    cr_assert_eq(r, 0, "parent failed check %d", r);
    test_expect_ok(pid);
}

Test(conn, hello_from_a_child)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        test_child_setup();
        fipc_conn_close(b);
        char buf[16];
        ssize_t r = fipc_conn_recv(a, buf, sizeof buf, HANDSHAKE_NS);
        CHILD_CHECK(r == 5 && memcmp(buf, "hello", 5) == 0, 1);
        CHILD_CHECK(fipc_conn_recv(a, buf, sizeof buf, HANDSHAKE_NS) == -EPIPE, 2);
        fipc_conn_close(a);
        _exit(0);
    }
    fipc_conn_close(a);
    cr_assert_eq(fipc_conn_send(b, "hello", 5), 0);
    fipc_conn_close(b);
    test_expect_ok(pid);
}

/* ---- long messages ---- */

static void long_message(size_t len)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        test_child_setup();
        fipc_conn_close(a);
        char *m = malloc(len);
        CHILD_CHECK(m != NULL, 1);
        for (size_t i = 0; i < len; i++)
            m[i] = (char)(i * 7 + (i >> 13));
        CHILD_CHECK(fipc_conn_send(b, m, len) == 0, 2);
        CHILD_CHECK(fipc_conn_send(b, "tail", 4) == 0, 3);
        CHILD_CHECK(fipc_conn_send(b, m, len) == 0, 4);
        fipc_conn_close(b);
        free(m);
        _exit(0);
    }
    fipc_conn_close(b);
    char *buf = malloc(len + 1);
    cr_assert_not_null(buf);
    /* Too small: the message stays, even though it is longer than the ring. */
    cr_assert_eq(fipc_conn_recv(a, buf, len - 1, HANDSHAKE_NS), -EMSGSIZE);
    cr_assert_eq(fipc_conn_recv(a, buf, len + 1, HANDSHAKE_NS), (ssize_t)len);
    for (size_t i = 0; i < len; i++)
        if (buf[i] != (char)(i * 7 + (i >> 13))) cr_assert_fail("byte %zu differs", i);
    cr_assert_eq(fipc_conn_recv(a, buf, len, HANDSHAKE_NS), 4);
    cr_assert_eq(memcmp(buf, "tail", 4), 0);
    memset(buf, 0, len);
    cr_assert_eq(fipc_conn_recv(a, buf, len, HANDSHAKE_NS), (ssize_t)len);
    cr_assert_eq(buf[len - 1], (char)((len - 1) * 7 + ((len - 1) >> 13)));
    cr_assert_eq(fipc_conn_recv(a, buf, len, HANDSHAKE_NS), -EPIPE);
    free(buf);
    fipc_conn_close(a);
    test_expect_ok(pid);
}

Test(conn, one_mib_message_streams_through_the_ring)
{
    long_message(1 << 20);
}

Test(conn, sixty_four_mib_message_streams_through_the_ring)
{
    long_message(64 << 20);
}

Test(conn, message_filling_the_ring_exactly_and_empty_messages)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    size_t len = FIPC_CONN_RING - 8;
    char *m = calloc(1, len);
    m[len - 1] = 'z';
    cr_assert_eq(fipc_conn_send(b, m, len), 0);
    char *buf = malloc(len);
    cr_assert_eq(fipc_conn_recv(a, buf, len, 0), (ssize_t)len);
    cr_assert_eq(buf[len - 1], 'z');
    cr_assert_eq(fipc_conn_send(b, NULL, 0), 0);
    cr_assert_eq(fipc_conn_send(b, "x", 1), 0);
    cr_assert_eq(fipc_conn_recv(a, NULL, 0, 0), 0);
    cr_assert_eq(fipc_conn_recv(a, NULL, 0, 0), -EMSGSIZE);
    cr_assert_eq(fipc_conn_recv(a, buf, 1, 0), 1);
    cr_assert_eq(fipc_conn_recv(a, buf, 1, 0), -EAGAIN);
    free(m);
    free(buf);
    fipc_conn_close(a);
    fipc_conn_close(b);
}

/* ---- the ends going ---- */

Test(conn, eof_after_every_holder_closed)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    enum { HOLDERS = 3 };
    uint32_t *go = test_shared(4096);
    pid_t pids[HOLDERS];
    for (int i = 0; i < HOLDERS; i++) {
        pids[i] = fork();
        cr_assert(pids[i] >= 0);
        if (pids[i] == 0) {
            test_child_setup();
            fipc_conn_close(a);
            CHILD_CHECK(test_wait_until_at_least(go, (uint32_t)i + 1, HANDSHAKE_NS), 1);
            char m = (char)('0' + i);
            CHILD_CHECK(fipc_conn_send(b, &m, 1) == 0, 2);
            fipc_conn_close(b);
            _exit(0);
        }
    }
    fipc_conn_close(b);
    char buf[4];
    for (int i = 0; i < HOLDERS; i++) {
        /* While one holder is left the pipe stays open. */
        cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, FIPC_MSEC(30)), -ETIMEDOUT);
        test_flag_add(go);
        cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, HANDSHAKE_NS), 1);
        cr_assert_eq(buf[0], '0' + i);
        test_expect_ok(pids[i]);
    }
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, HANDSHAKE_NS), -EPIPE);
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EPIPE);
    cr_assert_eq(fipc_conn_poll(a, 0), 1);
    fipc_conn_close(a);
}

Test(conn, eof_after_close_by_the_one_holder_wakes_a_sleeping_receiver)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, true), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        test_child_setup();
        fipc_conn_close(b);
        char buf[4];
        CHILD_CHECK(fipc_conn_recv(a, buf, sizeof buf, HANDSHAKE_NS) == -EPIPE, 1);
        CHILD_CHECK(fipc_conn_send(a, "x", 1) == -EPIPE, 2);
        fipc_conn_close(a);
        _exit(0);
    }
    fipc_conn_close(a);
    fipc_conn_close(b);
    test_expect_ok(pid);
}

Test(conn, eof_after_the_peer_is_sigkilled)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, true), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        test_child_setup();
        fipc_conn_close(a);
        fipc_conn_send(b, "last", 4);
        for (;;)
            pause();
    }
    fipc_conn_close(b);
    char buf[8];
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, HANDSHAKE_NS), 4);
    /* The peer is alive: nothing, then a timeout. */
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, FIPC_MSEC(50)), -ETIMEDOUT);
    int64_t t0 = test_now_ns();
    kill(pid, SIGKILL);
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, HANDSHAKE_NS), -EPIPE);
    int64_t took = test_now_ns() - t0;
    cr_log_info("EPIPE %.1f ms after SIGKILL", (double)took / 1e6);
    cr_assert_eq(fipc_conn_send(a, "x", 1), -EPIPE);
    waitpid(pid, NULL, 0);
    fipc_conn_close(a);
}

Test(conn, send_to_a_gone_end_is_epipe_not_sigpipe)
{
    /* SIGPIPE keeps its default action: a SIGPIPE would kill the test. */
    signal(SIGPIPE, SIG_DFL);
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    cr_assert_eq(fipc_conn_send(b, "1", 1), 0);
    fipc_conn_close(a);
    /* Within the liveness period (send asks every 20 ms, and at once when
     * the ring is full): a bounded number of sends. */
    int r = 0;
    for (int i = 0; i < 100000 && r == 0; i++)
        r = fipc_conn_send(b, "12345678", 8);
    cr_assert_eq(r, -EPIPE);
    cr_assert_eq(fipc_conn_send(b, "1", 1), -EPIPE);
    fipc_conn_close(b);
}

Test(conn, sender_blocked_on_a_full_ring_gets_epipe_when_the_receiver_dies)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        test_child_setup();
        fipc_conn_close(b);
        for (;;)
            pause();
    }
    fipc_conn_close(a);
    char m[4096] = {0};
    /* Fill the ring; the next send sleeps until the kill. */
    for (size_t i = 0; i < FIPC_CONN_RING / sizeof m - 1; i++)
        cr_assert_eq(fipc_conn_send(b, m, sizeof m), 0);
    kill(pid, SIGKILL);
    int r = 0;
    for (int i = 0; i < 4 && r == 0; i++)
        r = fipc_conn_send(b, m, sizeof m);
    cr_assert_eq(r, -EPIPE);
    waitpid(pid, NULL, 0);
    fipc_conn_close(b);
}

/* ---- poll, fileno, timeouts ---- */

static bool fd_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

Test(conn, poll_and_timeouts)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    char buf[8];
    cr_assert_eq(fipc_conn_poll(a, 0), 0);
    cr_assert_eq(fipc_conn_poll(a, FIPC_MSEC(20)), 0);
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EAGAIN);
    int64_t t0 = test_now_ns();
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, FIPC_MSEC(30)), -ETIMEDOUT);
    cr_assert_geq(test_now_ns() - t0, FIPC_MSEC(30));
    cr_assert_eq(fipc_conn_send(b, "ab", 2), 0);
    cr_assert_eq(fipc_conn_poll(a, 0), 1);
    cr_assert_eq(fipc_conn_poll(a, FIPC_FOREVER), 1);
    cr_assert_eq(fipc_conn_recv(a, buf, 1, 0), -EMSGSIZE);
    cr_assert_eq(fipc_conn_poll(a, 0), 1, "-EMSGSIZE left the message");
    cr_assert_eq(fipc_conn_recv(a, buf, 2, 0), 2);
    cr_assert_eq(fipc_conn_poll(a, 0), 0);
    fipc_conn_close(a);
    fipc_conn_close(b);
}

Test(conn, fileno_is_readable_when_a_message_waits_or_the_peer_is_gone)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, true), 0);
    char buf[8];
    /* A message sent before fileno was asked for counts too. */
    cr_assert_eq(fipc_conn_send(b, "1", 1), 0);
    int fd = fipc_conn_fileno(a);
    cr_assert_geq(fd, 0);
    cr_assert(fd_readable(fd, 0));
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), 1);
    /* Readiness may linger once; a recv that finds nothing re-arms. */
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EAGAIN);
    cr_assert(!fd_readable(fd, 0));

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN}, out;
    cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
    cr_assert_eq(epoll_wait(ep, &out, 1, 0), 0);

    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        test_child_setup();
        fipc_conn_close(a);
        CHILD_CHECK(fipc_conn_send(b, "22", 2) == 0, 1);
        /* Wait for the parent's answer, then leave without closing. */
        CHILD_CHECK(fipc_conn_recv(b, buf, sizeof buf, HANDSHAKE_NS) == 2, 2);
        _exit(0);
    }
    fipc_conn_close(b);
    cr_assert_eq(epoll_wait(ep, &out, 1, (int)(HANDSHAKE_NS / 1000000)), 1);
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), 2);
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EAGAIN);
    cr_assert_eq(epoll_wait(ep, &out, 1, 0), 0);
    cr_assert_eq(fipc_conn_send(a, "ok", 2), 0);
    /* The child ends: its end is gone, and the descriptor says so. */
    cr_assert_eq(epoll_wait(ep, &out, 1, (int)(HANDSHAKE_NS / 1000000)), 1);
    cr_assert(fd_readable(fd, 0));
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EPIPE);
    test_expect_ok(pid);
    close(ep);
    fipc_conn_close(a);
}

/* ---- arguments and directions ---- */

Test(conn, wrong_direction_and_bad_arguments)
{
    fipc_conn *a, *b;
    char buf[8];
    cr_assert_eq(fipc_pipe(NULL, &b, false), -EINVAL);
    cr_assert_eq(fipc_pipe(&a, NULL, false), -EINVAL);
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    cr_assert_eq(fipc_conn_send(a, "x", 1), -EBADF);
    cr_assert_eq(fipc_conn_recv(b, buf, sizeof buf, 0), -EBADF);
    cr_assert_eq(fipc_conn_poll(b, 0), -EBADF);
    cr_assert_geq(fipc_conn_fileno(b), 0);
    cr_assert_eq(fipc_conn_send(NULL, "x", 1), -EINVAL);
    cr_assert_eq(fipc_conn_send(b, NULL, 1), -EINVAL);
    cr_assert_eq(fipc_conn_send(b, "x", FIPC_CONN_MAX_MSG + 1), -EMSGSIZE);
    cr_assert_eq(fipc_conn_recv(NULL, buf, 1, 0), -EINVAL);
    cr_assert_eq(fipc_conn_recv(a, NULL, 1, 0), -EINVAL);
    cr_assert_eq(fipc_conn_poll(NULL, 0), -EINVAL);
    cr_assert_eq(fipc_conn_fileno(NULL), -EINVAL);
    cr_assert_eq(fipc_conn_close(NULL), -EINVAL);
    /* Nothing was sent by the refused calls. */
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EAGAIN);
    fipc_conn_close(a);
    fipc_conn_close(b);
}

/* ---- many senders, many receivers ---- */

#define SENDERS 4

static int many_sender(int i, void *arg)
{
    fipc_conn **ends = arg;
    fipc_conn_close(ends[0]);
    char *buf = malloc(2 * FIPC_CONN_RING);
    uint64_t n = scaled(20000);
    for (uint64_t k = 0; k < n; k++) {
        /* Every 1000th message is longer than the ring: it streams. */
        size_t len = k % 1000 == 999 ? 2 * FIPC_CONN_RING - 5 : 11 + msg_len((uint32_t)i, k, 4096);
        msg_fill(buf, (uint32_t)i, k, len);
        CHILD_CHECK(fipc_conn_send(ends[1], buf, len) == 0, 1);
    }
    fipc_conn_close(ends[1]);
    free(buf);
    return 0;
}

Test(conn, many_senders_on_one_end_keep_every_message_whole)
{
    fipc_conn *ends[2];
    cr_assert_eq(fipc_pipe(&ends[0], &ends[1], false), 0);
    pid_t pids[SENDERS];
    for (int i = 0; i < SENDERS; i++)
        pids[i] = test_fork(many_sender, i, ends);
    fipc_conn_close(ends[1]);
    uint64_t n = scaled(20000), next[SENDERS] = {0};
    char *buf = malloc(2 * FIPC_CONN_RING);
    for (uint64_t got = 0; got < SENDERS * n; got++) {
        ssize_t r = fipc_conn_recv(ends[0], buf, 2 * FIPC_CONN_RING, HANDSHAKE_NS);
        cr_assert_geq(r, 12, "recv: %s", fipc_strerror((int)r));
        uint32_t s;
        memcpy(&s, buf, 4);
        cr_assert_lt(s, SENDERS);
        uint64_t k = next[s]++;
        size_t want = k % 1000 == 999 ? 2 * FIPC_CONN_RING - 5 : 11 + msg_len(s, k, 4096);
        cr_assert_eq((size_t)r, want, "sender %u message %llu", s, (unsigned long long)k);
        char *ref = malloc(want);
        msg_fill(ref, s, k, want);
        cr_assert_eq(memcmp(ref, buf, want), 0, "sender %u message %llu torn", s,
                     (unsigned long long)k);
        free(ref);
    }
    cr_assert_eq(fipc_conn_recv(ends[0], buf, 8, HANDSHAKE_NS), -EPIPE);
    for (int i = 0; i < SENDERS; i++)
        test_expect_ok(pids[i]);
    free(buf);
    fipc_conn_close(ends[0]);
}

Test(conn, sender_killed_in_the_middle_of_a_long_message_loses_only_that_message)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    size_t big = 4 * FIPC_CONN_RING;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        test_child_setup();
        fipc_conn_close(a);
        char *m = calloc(1, big);
        fipc_conn_send(b, m, big); /* blocks: nobody reads yet */
        _exit(1);
    }
    /* The parent holds b too, and sends after the kill. */
    cr_assert(TEST_WAIT_UNTIL(fipc_conn_poll(a, 0) == 1, HANDSHAKE_NS));
    /* The child published the first piece and waits for room, holding the
     * send lock: it is in the middle of the message. */
    char *buf = malloc(big);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* Another sender takes over while we read: the ring is full of the
     * dead one's bytes until the receiver skips them. */
    pid_t next = fork();
    cr_assert(next >= 0);
    if (next == 0) {
        test_child_setup();
        CHILD_CHECK(fipc_conn_send(b, "after", 5) == 0, 1);
        _exit(0);
    }
    cr_assert_eq(fipc_conn_recv(a, buf, big, HANDSHAKE_NS), 5);
    cr_assert_eq(memcmp(buf, "after", 5), 0);
    cr_assert_eq(fipc_conn_recv(a, buf, big, 0), -EAGAIN);
    test_expect_ok(next);
    free(buf);
    fipc_conn_close(a);
    fipc_conn_close(b);
}

struct mid {
    fipc_conn *a, *b;
    size_t big;
};

static int reader_mid_message(void *arg)
{
    struct mid *m = arg;
    char *buf = malloc(m->big);
    /* Starts reading the long message, which its sender streams. */
    fipc_conn_recv(m->a, buf, m->big, FIPC_FOREVER);
    return 0;
}

Test(conn, sender_killed_while_the_receiver_reads_its_long_message)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    size_t big = 4 * FIPC_CONN_RING;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        test_child_setup();
        fipc_conn_close(a);
        char *m = calloc(1, big);
        /* Blocks in the middle: the parent stops us, then kills us. */
        fipc_conn_send(b, m, big);
        _exit(1);
    }
    cr_assert(TEST_WAIT_UNTIL(fipc_conn_poll(a, 0) == 1, HANDSHAKE_NS));
    cr_assert_eq(kill(pid, SIGSTOP), 0);
    char *buf = malloc(big);
    /* The receiver reads what is there, and gives up on the rest. */
    cr_assert_eq(fipc_conn_recv(a, buf, big, FIPC_MSEC(50)), -ETIMEDOUT);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    cr_assert_eq(fipc_conn_send(b, "next", 4), 0);
    cr_assert_eq(fipc_conn_recv(a, buf, big, HANDSHAKE_NS), 4);
    cr_assert_eq(memcmp(buf, "next", 4), 0);
    free(buf);
    fipc_conn_close(a);
    fipc_conn_close(b);
}

Test(conn, receiver_timing_out_in_a_long_message_drops_only_that_message)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    size_t big = 4 * FIPC_CONN_RING;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        test_child_setup();
        fipc_conn_close(a);
        char *m = calloc(1, big);
        CHILD_CHECK(fipc_conn_send(b, m, big) == 0, 1);
        CHILD_CHECK(fipc_conn_send(b, "next", 4) == 0, 2);
        fipc_conn_close(b);
        _exit(0);
    }
    fipc_conn_close(b);
    cr_assert(TEST_WAIT_UNTIL(fipc_conn_poll(a, 0) == 1, HANDSHAKE_NS));
    cr_assert_eq(kill(pid, SIGSTOP), 0);
    char *buf = malloc(big);
    cr_assert_eq(fipc_conn_recv(a, buf, big, FIPC_MSEC(50)), -ETIMEDOUT);
    cr_assert_eq(kill(pid, SIGCONT), 0);
    cr_assert_eq(fipc_conn_recv(a, buf, big, HANDSHAKE_NS), 4);
    cr_assert_eq(memcmp(buf, "next", 4), 0);
    cr_assert_eq(fipc_conn_recv(a, buf, big, HANDSHAKE_NS), -EPIPE);
    test_expect_ok(pid);
    free(buf);
    fipc_conn_close(a);
}

Test(conn, receiver_killed_in_a_long_message_leaves_the_next_whole)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    size_t big = 4 * FIPC_CONN_RING;
    struct mid m = {a, b, big};
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        test_child_setup();
        _exit(reader_mid_message(&m));
    }
    /* The parent's sender streams the long message: the child reads part
     * of it; the send cannot finish before the child has read it all. */
    char *msg = calloc(1, big);
    uint32_t *flag = test_shared(4096);
    pid_t sender = fork();
    cr_assert(sender >= 0);
    if (sender == 0) {
        test_child_setup();
        test_flag_set(flag, 1);
        CHILD_CHECK(fipc_conn_send(b, msg, big) == 0, 1);
        CHILD_CHECK(fipc_conn_send(b, "next", 4) == 0, 2);
        _exit(0);
    }
    cr_assert(test_wait_until_at_least(flag, 1, HANDSHAKE_NS));
    /* Stop the sender so that the reader is left waiting mid-message,
     * whatever it has read, then kill the reader. */
    kill(sender, SIGSTOP);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    kill(sender, SIGCONT);
    char *buf = malloc(big);
    ssize_t r = fipc_conn_recv(a, buf, big, HANDSHAKE_NS);
    /* The long message, if the reader died before it began, else next. */
    if (r == (ssize_t)big) r = fipc_conn_recv(a, buf, big, HANDSHAKE_NS);
    cr_assert_eq(r, 4);
    cr_assert_eq(memcmp(buf, "next", 4), 0);
    test_expect_ok(sender);
    free(buf);
    free(msg);
    fipc_conn_close(a);
    fipc_conn_close(b);
}

/* ---- a peer that writes garbage ---- */

Test(conn, overwritten_positions_and_lengths_give_eproto)
{
    fipc_conn *a, *b;
    char buf[64];
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    struct conn_dir *d = a->in;
    cr_assert_eq(fipc_conn_send(b, "abc", 3), 0);

    /* tail more than a ring ahead of head. */
    uint64_t t = d->tail;
    d->tail = d->head + 3 * RING;
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EPROTO);
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, FIPC_MSEC(10)), -EPROTO);
    d->tail = t + 3; /* not a multiple of 8 */
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EPROTO);
    d->tail = t;

    /* head past tail, seen by the sender: its copy (head_seen) is garbage
     * too, so it loads head, and refuses that. */
    uint64_t h = d->head;
    d->head = t + 5 * RING;
    d->head_seen = t + 5 * RING;
    cr_assert_eq(fipc_conn_send(b, "x", 1), -EPROTO);
    d->head = h;
    cr_assert_eq(d->head_seen, t + 5 * RING, "nothing refused was cached");
    d->head_seen = h;

    /* A length past the maximum. */
    uint64_t *len = (uint64_t *)(a->in_ring + (h & (RING - 1)));
    uint64_t save = *len;
    *len = UINT64_MAX - 3;
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EPROTO);
    /* A length that runs past tail: read in pieces, and none come. */
    *len = 1000;
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EMSGSIZE);
    char *big = malloc(2000);
    cr_assert_eq(fipc_conn_recv(a, big, 2000, FIPC_MSEC(10)), -ETIMEDOUT);
    /* That record is now being skipped; garbage skip state is refused. */
    d->rmsg_end = d->head + 3 * FIPC_CONN_MAX_MSG;
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EPROTO);
    /* A forged abort whose resume lies outside the record. */
    d->head = h;
    *len = save;
    d->abort_resume = h + 5 * RING;
    d->abort_start = h + 1;
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EPROTO);
    d->abort_start = 0;
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), 3, "whole again once repaired");
    cr_assert_eq(memcmp(buf, "abc", 3), 0);
    /* The receivers' copy of tail, when it cannot be right, is not
     * trusted: tail is loaded (the ring is empty). */
    d->tail_seen = d->head + 3;
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EAGAIN);
    d->tail_seen = d->head + 2 * RING;
    cr_assert_eq(fipc_conn_recv(a, buf, sizeof buf, 0), -EAGAIN);
    cr_assert_eq(d->tail_seen, d->head, "and the look is cached");

    /* Random garbage over the whole control block: calls return, within
     * their time, and never write outside buf (ASan would say). */
    srand(7);
    for (int round = 0; round < 200; round++) {
        char *p = (char *)d;
        for (size_t i = 0; i < sizeof *d; i++)
            if (rand() % 4 == 0 && i < offsetof(struct conn_dir, not_empty)) p[i] = (char)rand();
        for (size_t i = 0; i < 64; i++)
            a->in_ring[rand() % RING] = (char)rand();
        ssize_t r = fipc_conn_recv(a, buf, sizeof buf, FIPC_MSEC(1));
        cr_assert(r <= (ssize_t)sizeof buf);
        fipc_conn_poll(a, 0);
    }
    free(big);
    fipc_conn_close(a);
    fipc_conn_close(b);
}

/* ---- many receivers on one end ---- */

#define RECEIVERS 3
#define RX_MSGS   20000

struct rx {
    fipc_conn *a, *b;
    uint32_t seen[RX_MSGS];
};

static int rx_child(int i, void *arg)
{
    (void)i;
    struct rx *x = arg;
    fipc_conn_close(x->b);
    char *buf = malloc(2 * FIPC_CONN_RING);
    for (;;) {
        ssize_t r = fipc_conn_recv(x->a, buf, 2 * FIPC_CONN_RING, HANDSHAKE_NS);
        if (r == -EPIPE) break;
        CHILD_CHECK(r >= 12, 1);
        uint32_t s;
        uint64_t k;
        memcpy(&s, buf, 4);
        memcpy(&k, buf + 4, 8);
        CHILD_CHECK(s == 9 && k < RX_MSGS, 2);
        size_t want = k % 500 == 499 ? FIPC_CONN_RING + 100 : 11 + msg_len(9, k, 1000);
        CHILD_CHECK((size_t)r == want, 3);
        char *ref = malloc(want);
        msg_fill(ref, 9, k, want);
        CHILD_CHECK(memcmp(ref, buf, want) == 0, 4);
        free(ref);
        test_flag_add(&x->seen[k]);
    }
    fipc_conn_close(x->a);
    free(buf);
    return 0;
}

Test(conn, many_receivers_on_one_end_get_each_message_once_and_whole)
{
    struct rx *x = test_shared(sizeof *x);
    cr_assert_eq(fipc_pipe(&x->a, &x->b, false), 0);
    pid_t pids[RECEIVERS];
    for (int i = 0; i < RECEIVERS; i++)
        pids[i] = test_fork(rx_child, i, x);
    fipc_conn_close(x->a);
    char *buf = malloc(FIPC_CONN_RING + 100);
    for (uint64_t k = 0; k < RX_MSGS; k++) {
        /* Every 500th is longer than the ring. */
        size_t len = k % 500 == 499 ? FIPC_CONN_RING + 100 : 11 + msg_len(9, k, 1000);
        msg_fill(buf, 9, k, len);
        cr_assert_eq(fipc_conn_send(x->b, buf, len), 0);
    }
    fipc_conn_close(x->b);
    for (int i = 0; i < RECEIVERS; i++)
        test_expect_ok(pids[i]);
    for (uint64_t k = 0; k < RX_MSGS; k++)
        cr_assert_eq(x->seen[k], 1, "message %llu seen %u times", (unsigned long long)k,
                     x->seen[k]);
    free(buf);
}

struct big_send {
    fipc_conn *b;
    size_t len;
    int r;
};

static void *send_big(void *arg)
{
    struct big_send *s = arg;
    char *m = calloc(1, s->len);
    s->r = fipc_conn_send(s->b, m, s->len);
    free(m);
    return NULL;
}

Test(conn, sender_that_finds_head_overwritten_mid_message_cuts_that_message_out)
{
    fipc_conn *a, *b;
    cr_assert_eq(fipc_pipe(&a, &b, false), 0);
    struct big_send s = {.b = b, .len = 4 * FIPC_CONN_RING};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, send_big, &s), 0);
    /* The first piece is out and the sender waits for room. */
    cr_assert(TEST_WAIT_UNTIL(fipc_conn_poll(a, 0) == 1, HANDSHAKE_NS));
    struct conn_dir *d = a->in;
    uint64_t h = d->head;
    d->head = d->tail + 5 * RING;
    pthread_join(t, NULL);
    cr_assert_eq(s.r, -EPROTO);
    d->head = h;
    /* The receiver drops the cut record (which fills the ring), then finds
     * nothing; the next message arrives whole. */
    char *buf = malloc(s.len);
    cr_assert_eq(fipc_conn_recv(a, buf, s.len, 0), -EAGAIN);
    cr_assert_eq(fipc_conn_send(b, "next", 4), 0);
    cr_assert_eq(fipc_conn_recv(a, buf, s.len, HANDSHAKE_NS), 4);
    cr_assert_eq(memcmp(buf, "next", 4), 0);
    free(buf);
    fipc_conn_close(a);
    fipc_conn_close(b);
}
