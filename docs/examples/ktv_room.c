/*
 * ktv_room.c - a Semaphore(3) lets at most three people into a KTV room.
 *
 * The C version of the classic multiprocessing Semaphore program: ten
 * people want to sing, the room has three microphones.  Each takes a unit
 * of the semaphore to enter and gives it back on leaving, so whoever
 * arrives at a full room waits at the door.  The room keeps a head count
 * (and the largest it ever reached) in shared memory.
 *
 * Exits 0 only if everyone sang and there were never more than 3 inside.
 */
#define _DEFAULT_SOURCE /* usleep, mkstemp */
#include <stdio.h>
#include <unistd.h>

#include <fipc.h>

#define PEOPLE 10
#define SEATS  3

struct room {
    fipc_sem *door;
    unsigned inside; /* updated atomically */
    unsigned most;   /* the largest head count seen */
};

struct person {
    struct room *room;
    int id;
};

static int sing(void *arg)
{
    struct person *me = arg;
    struct room *room = me->room;

    if (fipc_sem_acquire(room->door, FIPC_FOREVER) < 0)
        return 1;
    unsigned now = __atomic_add_fetch(&room->inside, 1, __ATOMIC_ACQ_REL);
    unsigned most = __atomic_load_n(&room->most, __ATOMIC_RELAXED);
    while (now > most && !__atomic_compare_exchange_n(&room->most, &most, now, false,
                                                      __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        ;
    printf("person %d comes in to sing (%u inside)\n", me->id, now);

    usleep(10000 + 5000 * (unsigned)(me->id % 4)); /* a short song */

    __atomic_sub_fetch(&room->inside, 1, __ATOMIC_ACQ_REL);
    printf("person %d leaves the room\n", me->id);
    return fipc_sem_release(room->door) == 0 ? 0 : 1;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line at a time, even into a pipe */
    struct room *room = fipc_arena_alloc(fipc_default_arena(), sizeof *room, 0);
    if (!room || !(room->door = fipc_sem_new(NULL, SEATS)))
        return 1;

    fipc_process *p[PEOPLE];
    struct person people[PEOPLE];
    for (int i = 0; i < PEOPLE; i++) {
        people[i] = (struct person){room, i};
        if (fipc_process_start(&p[i], sing, &people[i], NULL) < 0)
            return 1;
    }
    int failed = 0;
    for (int i = 0; i < PEOPLE; i++) {
        int code = -1;
        fipc_process_join(p[i], FIPC_FOREVER);
        fipc_process_exitcode(p[i], &code);
        failed |= code != 0;
        fipc_process_free(p[i]);
    }

    printf("at most %u people were in the room at once\n", room->most);
    return !failed && room->most >= 1 && room->most <= SEATS ? 0 : 1;
}
