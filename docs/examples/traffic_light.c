/*
 * traffic_light.c - an Event is a traffic light that cars wait on.
 *
 * The C version of the classic multiprocessing Event program: one process
 * is the light, switching between red (event clear) and green (event set)
 * every 100 ms; ten car processes arrive at random moments.  A car that
 * finds the light red says so and waits; every car passes once it is
 * green.  The light keeps switching until every car has passed.
 *
 * Exits 0 only if all ten cars passed.
 */
#define _DEFAULT_SOURCE /* usleep, mkstemp */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <fipc.h>

#define CARS 10

struct crossing {
    fipc_event *green;
    unsigned passed; /* updated atomically */
};

struct car {
    struct crossing *x;
    int id;
};

static int traffic_light(void *arg)
{
    struct crossing *x = arg;
    printf("\033[31mthe light turns red\033[0m\n");
    while (__atomic_load_n(&x->passed, __ATOMIC_ACQUIRE) < CARS) {
        usleep(100000);
        if (!fipc_event_is_set(x->green)) {
            printf("\033[32mthe light turns green\033[0m\n");
            fipc_event_set(x->green);
        } else {
            printf("\033[31mthe light turns red\033[0m\n");
            fipc_event_clear(x->green);
        }
    }
    return 0;
}

static int drive(void *arg)
{
    struct car *me = arg;
    if (!fipc_event_is_set(me->x->green))
        printf("car %d waits at the red light\n", me->id);
    if (fipc_event_wait(me->x->green, FIPC_FOREVER) != 0)
        return 1;
    printf("car %d passes\n", me->id);
    __atomic_fetch_add(&me->x->passed, 1, __ATOMIC_ACQ_REL);
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line at a time, even into a pipe */
    struct crossing *x = fipc_arena_alloc(fipc_default_arena(), sizeof *x, 0);
    if (!x || !(x->green = fipc_event_new(NULL)))
        return 1;

    fipc_process *light, *cars[CARS];
    struct car car[CARS];
    if (fipc_process_start(&light, traffic_light, x, NULL) < 0)
        return 1;
    srand(1);
    for (int i = 0; i < CARS; i++) {
        usleep(1000 * (unsigned)(rand() % 60)); /* cars arrive now and then */
        car[i] = (struct car){x, i};
        if (fipc_process_start(&cars[i], drive, &car[i], NULL) < 0)
            return 1;
    }

    int failed = 0;
    for (int i = 0; i < CARS; i++) {
        int code = -1;
        fipc_process_join(cars[i], FIPC_FOREVER);
        fipc_process_exitcode(cars[i], &code);
        failed |= code != 0;
        fipc_process_free(cars[i]);
    }
    fipc_process_join(light, FIPC_FOREVER); /* it stops once all have passed */
    fipc_process_free(light);

    printf("%u of %d cars passed\n", x->passed, CARS);
    return !failed && x->passed == CARS ? 0 : 1;
}
