/*
 * uring_loop.c - one io_uring event loop that serves Unix-socket clients
 * and a fipc queue, with no thread of its own for the queue and no polling.
 *
 * Worker processes put log lines into a fipc queue.  The loop accepts
 * clients on a Unix socket, streams every line to each connected client,
 * and stops when a client sends "stop".  The queue is one more source of
 * completions beside the sockets: fipc_queue_prep_wait prepares an SQE
 * that completes when the queue may have lines, and the loop then takes
 * lines with fipc_queue_get(..., 0) until it answers -EAGAIN and prepares
 * the wait again.  While the loop is busy sending, the workers' puts cost
 * them no system call.
 *
 * Run as a test: it starts the workers and the clients itself (real
 * socket clients, each in its own process).  Every client checks that it
 * got every line of every worker, in each worker's order; the first sends
 * "stop" once it has them all.  Exits 0 only if every process did its
 * part.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4 flags, abstract socket names */
#endif
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fipc.h>

#define WORKERS  2
#define LINES    2000 /* per worker */
#define CLIENTS  3
#define MAX_LINE 64

/* user_data of the loop's SQEs: the kind in the high byte, a client's slot
 * in the rest. */
#define UD_ACCEPT (1ull << 56)
#define UD_QUEUE  (2ull << 56)
#define UD_RECV   (3ull << 56)

struct shared {
    fipc_queue *lines;
    fipc_event *all_connected; /* the workers start once every client is in */
};

static struct sockaddr_un address(void)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    /* An abstract name: nothing to clean up in the file system. */
    snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "fipc-uring-loop-%d", (int)getpid());
    return a;
}

static struct sockaddr_un server_address;

struct worker_arg {
    struct shared *sh;
    int id;
};

static int log_worker(void *arg)
{
    struct worker_arg *w = arg;
    if (fipc_event_wait(w->sh->all_connected, FIPC_SEC(60)) != 0)
        return 1;
    for (int i = 0; i < LINES; i++) {
        char line[MAX_LINE];
        int n = snprintf(line, sizeof line, "worker %d line %d\n", w->id, i);
        if (fipc_queue_put(w->sh->lines, line, (size_t)n, FIPC_SEC(60)) != 0)
            return 2;
    }
    return 0;
}

/* A client: connect, read lines until every worker's last one, checking
 * each worker's order; the first client then sends "stop". */
static int client(void *arg)
{
    int id = (int)(intptr_t)arg;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&server_address, sizeof server_address) < 0)
        return 1;
    int next[WORKERS] = {0};
    int total = 0;
    char buf[4096], line[MAX_LINE];
    size_t used = 0;
    while (total < WORKERS * LINES) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            return 2; /* the loop went away before every line came */
        for (ssize_t i = 0; i < n; i++) {
            if (used == sizeof line - 1)
                return 3;
            line[used++] = buf[i];
            if (buf[i] != '\n')
                continue;
            line[used] = 0;
            used = 0;
            int w, k;
            if (sscanf(line, "worker %d line %d", &w, &k) != 2 || w < 0 || w >= WORKERS ||
                k != next[w])
                return 4; /* lost, duplicated or out of order */
            next[w]++;
            total++;
        }
    }
    if (id == 0 && write(fd, "stop\n", 5) != 5)
        return 5;
    /* Wait for the loop to close the connection. */
    while (read(fd, buf, sizeof buf) > 0)
        ;
    close(fd);
    return 0;
}

static struct io_uring_sqe *get_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}

/* Prepare the queue's wait: a completion when lines may be there (at once
 * if they are). */
static int arm_queue(struct io_uring *ring, fipc_queue *q)
{
    struct io_uring_sqe *sqe = get_sqe(ring);
    int r = fipc_queue_prep_wait(sqe, q, FIPC_READABLE);
    if (r < 0) {
        fprintf(stderr, "fipc_queue_prep_wait: %s\n", fipc_strerror(r));
        return r;
    }
    io_uring_sqe_set_data64(sqe, UD_QUEUE);
    return 0;
}

static void arm_recv(struct io_uring *ring, int fd, int slot, char *buf, size_t cap)
{
    struct io_uring_sqe *sqe = get_sqe(ring);
    io_uring_prep_recv(sqe, fd, buf, cap, 0);
    io_uring_sqe_set_data64(sqe, UD_RECV | (uint64_t)slot);
}

static void arm_accept(struct io_uring *ring, int listener)
{
    struct io_uring_sqe *sqe = get_sqe(ring);
    io_uring_prep_accept(sqe, listener, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, UD_ACCEPT);
}

/* The loop: returns 0 once a client said "stop". */
static int serve(struct shared *sh, int listener)
{
    struct io_uring ring;
    if (io_uring_queue_init(32, &ring, 0) < 0)
        return 1;
    int clients[CLIENTS];
    char cmd[CLIENTS][16];
    int connected = 0;
    bool stop = false;
    arm_accept(&ring, listener);
    if (arm_queue(&ring, sh->lines) < 0)
        return 1;
    while (!stop) {
        io_uring_submit(&ring);
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(&ring, &cqe) < 0)
            continue; /* EINTR */
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&ring, cqe);
        uint64_t kind = ud & (0xffull << 56);
        int slot = (int)(ud & 0xffffff);
        if (kind == UD_ACCEPT && res < 0) {
            fprintf(stderr, "accept: %s\n", strerror(-res));
            return 1;
        } else if (kind == UD_ACCEPT) {
            clients[connected] = res;
            arm_recv(&ring, res, connected, cmd[connected], sizeof cmd[connected]);
            if (++connected < CLIENTS)
                arm_accept(&ring, listener);
            else
                fipc_event_set(sh->all_connected);
        } else if (kind == UD_QUEUE) {
            /* "Look again": take every line there is, then wait again. */
            char line[MAX_LINE];
            size_t len;
            while (fipc_queue_get(sh->lines, line, sizeof line, &len, 0) == 0)
                for (int c = 0; c < connected; c++)
                    if (clients[c] >= 0 && send(clients[c], line, len, MSG_NOSIGNAL) < 0)
                        clients[c] = -1; /* that client left */
            if (arm_queue(&ring, sh->lines) < 0)
                return 1;
        } else if (kind == UD_RECV) {
            if (res >= 4 && memcmp(cmd[slot], "stop", 4) == 0)
                stop = true;
            else if (res > 0)
                arm_recv(&ring, clients[slot], slot, cmd[slot], sizeof cmd[slot]);
        }
    }
    for (int c = 0; c < connected; c++)
        if (clients[c] >= 0)
            close(clients[c]);
    /* Tearing the ring down cancels the queue's wait and the rest. */
    io_uring_queue_exit(&ring);
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    server_address = address();
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0 ||
        bind(listener, (struct sockaddr *)&server_address, sizeof server_address) < 0 ||
        listen(listener, CLIENTS) < 0) {
        perror("listen");
        return 1;
    }
    struct shared sh;
    int r = fipc_queue_create(&sh.lines, NULL, 256, MAX_LINE, 0);
    sh.all_connected = fipc_event_new(NULL);
    if (r < 0 || !sh.all_connected) {
        fprintf(stderr, "setup: %s\n", fipc_strerror(r));
        return 1;
    }

    fipc_process *workers[WORKERS], *clients[CLIENTS];
    struct worker_arg wa[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        wa[i] = (struct worker_arg){&sh, i};
        if (fipc_process_start(&workers[i], log_worker, &wa[i], NULL) < 0)
            return 1;
    }
    for (int i = 0; i < CLIENTS; i++)
        if (fipc_process_start(&clients[i], client, (void *)(intptr_t)i, NULL) < 0)
            return 1;

    r = serve(&sh, listener);
    printf("the loop stopped on a client's command (%s)\n", r == 0 ? "ok" : "failed");

    int failed = r != 0;
    for (int i = 0; i < WORKERS + CLIENTS; i++) {
        fipc_process *p = i < WORKERS ? workers[i] : clients[i - WORKERS];
        int code = -1;
        if (fipc_process_join(p, FIPC_SEC(60)) != 0 || fipc_process_exitcode(p, &code) != 0 ||
            code != 0) {
            fprintf(stderr, "%s %d failed (%d)\n", i < WORKERS ? "worker" : "client",
                    i < WORKERS ? i : i - WORKERS, code);
            failed = 1;
        }
        fipc_process_free(p);
    }
    if (!failed)
        printf("%d clients got all %d lines of %d workers\n", CLIENTS, WORKERS * LINES, WORKERS);
    return failed;
}
