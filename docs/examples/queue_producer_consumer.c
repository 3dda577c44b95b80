/*
 * queue_producer_consumer.c - three producers, two consumers, one queue;
 * close instead of one None per consumer.
 *
 * The C version of the classic producer/consumer program: producers
 * neo, alex and egon each make three buns and put them into a fipc_queue;
 * consumers c1 and c2 take buns until there are none left.  Python's
 * version must put one None per consumer after joining the producers;
 * here the main process closes the queue instead: every consumer drains
 * what is left and then gets -EPIPE, however many consumers there are.
 *
 * Exits 0 only if each of the nine buns was eaten exactly once.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <fipc.h>

#define PRODUCERS 3
#define BUNS      3

struct shop {
    fipc_queue *q;
    int eaten[PRODUCERS][BUNS]; /* written by consumers: atomics */
};

static struct shop *shop;
static const char *names[PRODUCERS] = {"neo", "alex", "egon"};

static int producer(void *arg)
{
    int who = (int)(intptr_t)arg;
    for (int i = 0; i < BUNS; i++) {
        char bun[32];
        int n = snprintf(bun, sizeof bun, "%d %d %s's bun %d", who, i, names[who], i);
        printf("%s made %s\n", names[who], bun + 4);
        if (fipc_queue_put(shop->q, bun, (size_t)n, FIPC_FOREVER) < 0)
            return 1;
    }
    return 0;
}

static int consumer(void *arg)
{
    const char *name = arg;
    char bun[32];
    size_t len;
    /* -EPIPE: closed and drained, the end (no sentinel needed). */
    while (fipc_queue_get(shop->q, bun, sizeof bun, &len, FIPC_FOREVER) == 0) {
        int who, i;
        if (sscanf(bun, "%d %d", &who, &i) != 2 || who < 0 || who >= PRODUCERS || i < 0 ||
            i >= BUNS)
            return 1;
        __atomic_fetch_add(&shop->eaten[who][i], 1, __ATOMIC_RELAXED); /* summed after join */
        printf("%s ate %.*s\n", name, (int)len - 4, bun + 4);
    }
    return 0;
}

int main(void)
{
    /* In the default arena, which the children inherit. */
    shop = fipc_arena_alloc(fipc_default_arena(), sizeof *shop, 64);
    if (!shop || fipc_queue_create(&shop->q, NULL, 4, 32, 0) < 0)
        return 1;
    memset(shop->eaten, 0, sizeof shop->eaten);
    fipc_process *p[PRODUCERS], *c[2];
    for (int i = 0; i < PRODUCERS; i++)
        if (fipc_process_start(&p[i], producer, (void *)(intptr_t)i, NULL) < 0)
            return 1;
    if (fipc_process_start(&c[0], consumer, "c1", NULL) < 0 ||
        fipc_process_start(&c[1], consumer, "c2", NULL) < 0)
        return 1;
    int bad = 0;
    for (int i = 0; i < PRODUCERS; i++) {
        int code = -1;
        fipc_process_join(p[i], FIPC_FOREVER);
        if (fipc_process_exitcode(p[i], &code) < 0 || code != 0)
            bad++;
    }
    fipc_queue_close(shop->q); /* replaces q.put(None) once per consumer */
    for (int i = 0; i < 2; i++) {
        int code = -1;
        fipc_process_join(c[i], FIPC_FOREVER);
        if (fipc_process_exitcode(c[i], &code) < 0 || code != 0)
            bad++;
    }
    printf("main\n");
    for (int w = 0; w < PRODUCERS; w++)
        for (int i = 0; i < BUNS; i++)
            if (__atomic_load_n(&shop->eaten[w][i], __ATOMIC_RELAXED) != 1)
                bad++;
    for (int i = 0; i < PRODUCERS; i++)
        fipc_process_free(p[i]);
    for (int i = 0; i < 2; i++)
        fipc_process_free(c[i]);
    return bad == 0 ? 0 : 1;
}
