/*
 * pool_callback.c - a callback runs in the parent with the task's result.
 *
 * The C version of the classic callback program: func1 squares 3 in a
 * worker of Pool(4); func2, the callback, squares that again and prints
 * it, in the main process (its pid says so), before join returns.
 *
 * Exits 0 only if func2 ran once, in the parent, and printed 81.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <fipc.h>

static int func1(const void *arg, size_t arg_len, void *result, size_t *result_len)
{
    int n;
    memcpy(&n, arg, sizeof n);
    int sq = n * n;
    memcpy(result, &sq, sizeof sq);
    *result_len = sizeof sq;
    return 0;
}

static int calls, value;
static pid_t caller;

static void func2(void *user, int status, const void *result, size_t result_len)
{
    int i;
    memcpy(&i, result, sizeof i);
    value = i * i;
    caller = getpid();
    calls++;
    printf("%d (callback in pid %d)\n", value, (int)caller);
}

int main(void)
{
    fipc_pool *pool;
    if (fipc_pool_create(&pool, &(fipc_pool_opts){.processes = 4}) < 0)
        return 1;
    int three = 3;
    if (fipc_pool_apply_async(pool, func1, &three, sizeof three, func2, NULL, NULL, NULL) < 0)
        return 1;
    printf("main pid %d\n", (int)getpid());
    fipc_pool_close(pool);
    fipc_pool_join(pool); /* every callback has run once this returns */
    fipc_pool_free(pool);
    return calls == 1 && value == 81 && caller == getpid() ? 0 : 1;
}
