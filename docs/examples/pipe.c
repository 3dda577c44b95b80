/*
 * pipe.c - a child receives "hello" through a Pipe.
 *
 * The C version of the multiprocessing Pipe example:
 *
 *     def f(conn):
 *         print(conn.recv())
 *         conn.close()
 *
 *     parent_conn, child_conn = Pipe()
 *     p = Process(target=f, args=(child_conn,))
 *     p.start()
 *     parent_conn.send("hello")
 *     p.join()
 *
 * Each process closes the end it does not use, and the one it used once
 * done: the child then sees -EPIPE after the last message, as a reader of
 * a closed pipe sees end-of-file.
 *
 * Exits 0 only if the child received exactly "hello" and then -EPIPE.
 */
#include <stdio.h>
#include <string.h>

#include <fipc.h>

struct ends {
    fipc_conn *parent, *child;
};

static int f(void *arg)
{
    struct ends *e = arg;
    fipc_conn_close(e->parent); /* the child's copy of the other end */
    char buf[64];
    ssize_t n = fipc_conn_recv(e->child, buf, sizeof buf, FIPC_SEC(30));
    if (n < 0) {
        fprintf(stderr, "child: recv: %s\n", fipc_strerror((int)n));
        return 1;
    }
    printf("%.*s\n", (int)n, buf);
    fflush(stdout);
    int ok = n == 5 && memcmp(buf, "hello", 5) == 0;
    /* The parent closed its end: nothing more will come. */
    ok = ok && fipc_conn_recv(e->child, buf, sizeof buf, FIPC_SEC(30)) == -EPIPE;
    fipc_conn_close(e->child);
    return ok ? 0 : 2;
}

int main(void)
{
    struct ends e;
    int r = fipc_pipe(&e.parent, &e.child, true);
    if (r < 0) {
        fprintf(stderr, "fipc_pipe: %s\n", fipc_strerror(r));
        return 1;
    }
    fipc_process *p;
    if ((r = fipc_process_start(&p, f, &e, NULL)) < 0) {
        fprintf(stderr, "start: %s\n", fipc_strerror(r));
        return 1;
    }
    fipc_conn_close(e.child); /* the parent's copy of the child's end */
    if ((r = fipc_conn_send(e.parent, "hello", 5)) < 0) {
        fprintf(stderr, "send: %s\n", fipc_strerror(r));
        return 1;
    }
    fipc_conn_close(e.parent);
    int code = -1;
    if (fipc_process_join(p, FIPC_SEC(30)) < 0 || fipc_process_exitcode(p, &code) < 0)
        return 1;
    fipc_process_free(p);
    return code == 0 ? 0 : 1;
}
