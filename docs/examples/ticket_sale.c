/*
 * ticket_sale.c - a Lock keeps ten buyers from selling one ticket twice.
 *
 * The C version of the classic multiprocessing ticket-sale program: a file
 * holds the number of tickets left (one).  Ten processes each look at the
 * count, then, holding the lock, read it again, buy if a ticket is left and
 * write the new count back.  Without the lock several buyers could read
 * "1" before any of them writes "0"; with it exactly one succeeds.
 *
 * Exits 0 only if exactly one ticket was sold and the file ends at 0.
 */
#define _DEFAULT_SOURCE /* usleep, mkstemp */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fipc.h>

#define BUYERS 10

/* What every buyer needs.  It lives in the default arena, which forked
 * children inherit, so the purchase count is shared. */
struct shop {
    fipc_lock *lock;
    char path[64];
    int sold; /* written only under the lock */
};

struct buyer {
    struct shop *shop;
    int id;
};

static long read_tickets(const char *path)
{
    char buf[32] = "";
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n > 0 ? strtol(buf, NULL, 10) : -1;
}

static int write_tickets(const char *path, long count)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "%ld", count);
    return fclose(f);
}

static int buy_ticket(void *arg)
{
    struct buyer *b = arg;
    struct shop *shop = b->shop;

    /* Looking is free: no lock needed to read a number that may change. */
    printf("person %d sees %ld ticket(s) left\n", b->id, read_tickets(shop->path));

    int r = fipc_lock_acquire(shop->lock, FIPC_FOREVER);
    if (r < 0 && r != -EOWNERDEAD) {
        fprintf(stderr, "person %d: %s\n", b->id, fipc_strerror(r));
        return 1;
    }
    long left = read_tickets(shop->path);   /* read again: it may have changed */
    usleep(1000 * (unsigned)(rand() % 20)); /* dawdle at the counter */
    if (left > 0) {
        left--;
        shop->sold++;
        printf("person %d bought the ticket\n", b->id);
    } else {
        printf("no tickets left: person %d could not buy one\n", b->id);
    }
    write_tickets(shop->path, left);
    fipc_lock_release(shop->lock);
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line at a time, even into a pipe */
    struct shop *shop = fipc_arena_alloc(fipc_default_arena(), sizeof *shop, 0);
    if (!shop || !(shop->lock = fipc_lock_new(NULL)))
        return 1;
    strcpy(shop->path, "/tmp/fipc_ticket_XXXXXX");
    int fd = mkstemp(shop->path);
    if (fd < 0)
        return 1;
    close(fd);
    write_tickets(shop->path, 1);

    fipc_process *p[BUYERS];
    struct buyer buyers[BUYERS];
    for (int i = 0; i < BUYERS; i++) {
        buyers[i] = (struct buyer){shop, i};
        srand((unsigned)i); /* each child gets its own dawdling */
        if (fipc_process_start(&p[i], buy_ticket, &buyers[i], NULL) < 0)
            return 1;
    }
    int failed = 0;
    for (int i = 0; i < BUYERS; i++) {
        int code = -1;
        fipc_process_join(p[i], FIPC_FOREVER);
        fipc_process_exitcode(p[i], &code);
        failed |= code != 0;
        fipc_process_free(p[i]);
    }

    long left = read_tickets(shop->path);
    unlink(shop->path);
    printf("sold %d ticket(s), %ld left\n", shop->sold, left);
    return !failed && shop->sold == 1 && left == 0 ? 0 : 1;
}
