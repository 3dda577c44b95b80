/*
 * main.c - the smallest program on fipc: one message through a queue.
 *
 * Built by test/subproject/meson.build against fipc as a subproject.
 * Exits 0 if the message comes back as it was put.
 */
#include <stdio.h>
#include <string.h>

#include <fipc.h>

int main(void)
{
    fipc_arena *arena;
    fipc_queue *q;
    const char msg[] = "hello from a subproject";
    char buf[64];
    size_t len = 0;

    int err = fipc_arena_create(&arena, "fipc-user", 1 << 20);
    if (err < 0) {
        fprintf(stderr, "fipc_arena_create: %s\n", fipc_strerror(err));
        return 1;
    }
    err = fipc_queue_create(&q, arena, 4, sizeof buf, 0);
    if (err == 0) err = fipc_queue_put(q, msg, sizeof msg, 0);
    if (err == 0) err = fipc_queue_get(q, buf, sizeof buf, &len, 0);
    if (err < 0) {
        fprintf(stderr, "fipc queue: %s\n", fipc_strerror(err));
        return 1;
    }
    if (len != sizeof msg || memcmp(buf, msg, len) != 0) {
        fprintf(stderr, "got %zu bytes, not the message put\n", len);
        return 1;
    }
    fipc_arena_close(arena);
    printf("fipc-user: one message through a queue: ok\n");
    return 0;
}
