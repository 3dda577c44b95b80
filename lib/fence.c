/*
 * fence.c - the heavy side of the asymmetric fences, and the registration
 * (fence.h).
 */
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fence.h"

int fipc__fence_registered;

enum { HEAVY_UNKNOWN, HEAVY_MEMBARRIER, HEAVY_FENCE };

/* What fence_heavy() does in this process: found once, by the query. */
static int heavy;

static int membarrier(int cmd)
{
    return (int)syscall(SYS_membarrier, cmd, 0, 0);
}

/* What fence_heavy() does here, asking the kernel the first time. */
static int heavy_mode(void)
{
    /* relaxed: every thread that races to the query finds the same
     * answer, and the answer orders nothing. */
    int h = load_relaxed(&heavy);
    if (h != HEAVY_UNKNOWN)
        return h;
    int cmds = membarrier(MEMBARRIER_CMD_QUERY);
    h = cmds >= 0 && (cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
                (cmds & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)
            ? HEAVY_MEMBARRIER
            : HEAVY_FENCE;
    store_relaxed(&heavy, h);
    return h;
}

void fipc__fence_register(void)
{
    /* relaxed: a second registration is harmless; the flag's own store
     * below is the one that orders. */
    if (load_relaxed(&fipc__fence_registered))
        return;
    if (heavy_mode() != HEAVY_MEMBARRIER ||
        membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0)
        return;
    /* release pairs with fence_light()'s acquire load: the registration,
     * complete when the system call returned, precedes every light fence
     * that relies on it. */
    store_release(&fipc__fence_registered, 1);
}

void fipc__fence_heavy(void)
{
    /* The command cannot fail once the query offered it, short of a
     * seccomp filter; then the fence is all this process can do. */
    if (heavy_mode() == HEAVY_MEMBARRIER && membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0)
        return;
    fence_seqcst();
}
