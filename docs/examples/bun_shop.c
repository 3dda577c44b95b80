/*
 * bun_shop.c - a JoinableQueue lets cooks wait until every bun is eaten.
 *
 * Three cooks (producers) each make a few buns, put them on the counter (a
 * fipc_jqueue) and then join the queue: join returns only once every bun
 * put so far has been eaten.  Two diners (consumers) are daemon processes
 * that take buns forever, eat them and call task_done.  The shop (main
 * process) waits for the cooks and closes; the daemon diners die with it,
 * no sentinel needed.
 *
 * Exits 0 only if every bun was eaten exactly once and each cook's join
 * returned after all of its buns were eaten.
 */
#include <stdio.h>
#include <string.h>

#include <fipc.h>

#define COOKS         3
#define DINERS        2
#define BUNS_PER_COOK 5

static const char *const cook_names[COOKS] = {"neo", "alex", "egon"};

/* Shared by everyone: it lives in the default arena, inherited by fork. */
struct shop {
    fipc_jqueue *counter;
    uint32_t eaten[COOKS][BUNS_PER_COOK]; /* how often each bun was eaten */
    uint32_t joined_early;                /* cooks whose join returned too soon */
};

struct bun {
    int cook;
    int n;
};

static struct shop *shop;

static int cook(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < BUNS_PER_COOK; i++) {
        struct bun b = {id, i};
        if (fipc_jqueue_put(shop->counter, &b, sizeof b, FIPC_FOREVER) < 0)
            return 1;
        printf("%s made bun %d\n", cook_names[id], i);
    }
    /* Wait until every bun on the counter has been eaten. */
    if (fipc_jqueue_join(shop->counter, FIPC_SEC(30)) < 0)
        return 2;
    for (int i = 0; i < BUNS_PER_COOK; i++)
        if (__atomic_load_n(&shop->eaten[id][i], __ATOMIC_ACQUIRE) == 0)
            __atomic_fetch_add(&shop->joined_early, 1, __ATOMIC_RELAXED);
    printf("%s: all my buns are eaten\n", cook_names[id]);
    return 0;
}

static int diner(void *arg)
{
    const char *name = arg;
    struct bun b;
    size_t len;
    for (;;) {
        if (fipc_jqueue_get(shop->counter, &b, sizeof b, &len, FIPC_FOREVER) < 0)
            return 0; /* closed and empty */
        printf("%s ate %s's bun %d\n", name, cook_names[b.cook], b.n);
        /* task_done's release pairs with join's acquire: the cook sees
         * this count once its join returns. */
        __atomic_fetch_add(&shop->eaten[b.cook][b.n], 1, __ATOMIC_RELAXED);
        fipc_jqueue_task_done(shop->counter);
    }
}

int main(void)
{
    shop = fipc_arena_alloc(fipc_default_arena(), sizeof *shop, 64);
    if (!shop || fipc_jqueue_create(&shop->counter, NULL, 8, sizeof(struct bun), 0) < 0) {
        fprintf(stderr, "bun_shop: cannot set up the shop\n");
        return 1;
    }

    fipc_process *cooks[COOKS], *diners[DINERS];
    static const char *const diner_names[DINERS] = {"c1", "c2"};
    for (int i = 0; i < DINERS; i++) {
        fipc_process_opts o = {.name = diner_names[i], .daemon = true};
        if (fipc_process_start(&diners[i], diner, (void *)diner_names[i], &o) < 0)
            return 1;
    }
    for (int i = 0; i < COOKS; i++)
        if (fipc_process_start(&cooks[i], cook, (void *)(intptr_t)i, NULL) < 0)
            return 1;

    int failed = 0;
    for (int i = 0; i < COOKS; i++) {
        int code = -1;
        fipc_process_join(cooks[i], FIPC_FOREVER);
        fipc_process_exitcode(cooks[i], &code);
        failed |= code != 0;
        fipc_process_free(cooks[i]);
    }
    /* The daemon diners end with this process; their handles go with it. */
    for (int i = 0; i < DINERS; i++)
        fipc_process_free(diners[i]);

    for (int c = 0; c < COOKS; c++)
        for (int i = 0; i < BUNS_PER_COOK; i++)
            failed |= shop->eaten[c][i] != 1;
    failed |= shop->joined_early != 0;
    printf("shop closes: %s\n", failed ? "something went wrong" : "every bun eaten once");
    return failed;
}
