/*
 * process_join.c - three processes started by function, then joined.
 *
 * The C version of the classic Process program: task(name, n) runs in
 * three children at once (started one after the other, run in whatever
 * order the scheduler picks); the main process joins each in turn and
 * prints its own line only after all three have ended, so that line
 * always comes last.
 *
 * Exits 0 only if every child ran and exited 0, and each had ended (its
 * "done" counted in shared memory) before the main process's line.
 */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fipc.h>

struct task_arg {
    const char *name;
    int rounds;
    int *done; /* shared: how many children have finished */
};

static int task(void *arg)
{
    struct task_arg *t = arg;
    printf("%s is running, pid %d, parent %d\n", t->name, (int)getpid(), (int)getppid());
    volatile long sum = 0;
    for (long i = 0; i < t->rounds * 1000000L; i++)
        sum += i; /* some work, more for the first than for the last */
    printf("%s is done\n", t->name);
    __atomic_fetch_add(t->done, 1, __ATOMIC_RELEASE); /* read by main after join */
    return 0;
}

int main(void)
{
    int *done = mmap(NULL, sizeof *done, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (done == MAP_FAILED)
        return 1;
    struct task_arg args[3] = {{"child 1", 5, done}, {"child 2", 3, done}, {"child 3", 2, done}};
    fipc_process *p_list[3];
    for (int i = 0; i < 3; i++)
        if (fipc_process_start(&p_list[i], task, &args[i], NULL) < 0)
            return 1;
    int bad = 0;
    for (int i = 0; i < 3; i++) {
        int code = -1;
        if (fipc_process_join(p_list[i], FIPC_FOREVER) < 0 ||
            fipc_process_exitcode(p_list[i], &code) < 0 || code != 0)
            bad++;
    }
    /* Acquire pairs with the children's release: all three have ended. */
    int finished = __atomic_load_n(done, __ATOMIC_ACQUIRE);
    printf("main process %d: all %d children have ended\n", (int)getpid(), finished);
    for (int i = 0; i < 3; i++)
        fipc_process_free(p_list[i]);
    return bad == 0 && finished == 3 ? 0 : 1;
}
