/*
 * process_orphan_zombie.c - a zombie until join reaps it; an orphan adopted.
 *
 * The C version of the seeds' zombie and orphan explanations.  A child
 * that has ended stays a zombie (state Z in /proc, its pid still taken)
 * until its parent reaps it, which fipc_process_join does; and a child
 * whose parent ends first is an orphan, adopted by another process (here
 * this program, which makes itself the "subreaper" so the adoption can be
 * shown and the orphan reaped).
 *
 * Exits 0 only if the first child was seen as a zombie and was gone after
 * join, and the orphan saw its parent change to this program's pid.
 */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fipc.h>

/* The state letter of pid in /proc/pid/stat, or 0 if there is no such pid. */
static char proc_state(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *close_paren = strrchr(buf, ')');
    return close_paren && close_paren[1] == ' ' ? close_paren[2] : 0;
}

/* Retry cond every millisecond for up to 30 s (no event announces these
 * states). */
#define WAIT_FOR(cond)                                                                             \
    ({                                                                                             \
        int tries_ = 0;                                                                            \
        while (!(cond) && tries_++ < 30000)                                                        \
            usleep(1000);                                                                          \
        (bool)(cond);                                                                              \
    })

static int quick(void *arg)
{
    printf("child %d ends at once\n", (int)getpid());
    return 0;
}

struct orphan_report {
    int parent_before, parent_after, pid;
};

static struct orphan_report *rep;

static int orphan(void *arg)
{
    /* Its parent (below) ends without waiting for it, maybe already. */
    WAIT_FOR(getppid() != rep->parent_before);
    rep->parent_after = getppid();
    __atomic_store_n(&rep->pid, getpid(), __ATOMIC_RELEASE);
    return 0;
}

static int parent_of_orphan(void *arg)
{
    rep->parent_before = getpid(); /* the orphan's copy of rep has it too */
    fipc_process *c;
    return fipc_process_start(&c, orphan, NULL, NULL) < 0 ? 1 : 0; /* ends, not joining */
}

int main(void)
{
    rep = mmap(NULL, sizeof *rep, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (rep == MAP_FAILED || prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        return 1;

    /* A zombie: ended, not yet reaped. */
    fipc_process *z;
    if (fipc_process_start(&z, quick, NULL, NULL) < 0)
        return 1;
    pid_t zpid = fipc_process_pid(z);
    bool zombie = WAIT_FOR(proc_state(zpid) == 'Z');
    printf("child %d: state %c before join (a zombie)\n", (int)zpid, zombie ? 'Z' : '?');
    fipc_process_join(z, FIPC_FOREVER);
    bool reaped = proc_state(zpid) == 0;
    printf("child %d: %s after join\n", (int)zpid, reaped ? "gone" : "still there");
    fipc_process_free(z);

    /* An orphan: its parent ends first, and this program adopts it. */
    fipc_process *p;
    if (fipc_process_start(&p, parent_of_orphan, NULL, NULL) < 0)
        return 1;
    fipc_process_join(p, FIPC_FOREVER);
    bool adopted = WAIT_FOR(__atomic_load_n(&rep->pid, __ATOMIC_ACQUIRE) != 0);
    if (adopted)
        waitpid(rep->pid, NULL, 0); /* ours now */
    printf("orphan %d: parent %d, then %d (this program, %d)\n", rep->pid, rep->parent_before,
           rep->parent_after, (int)getpid());
    fipc_process_free(p);
    return zombie && reaped && adopted && rep->parent_after == getpid() ? 0 : 1;
}
