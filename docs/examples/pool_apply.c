/*
 * pool_apply.c - apply runs one task and waits: ten calls run in series.
 *
 * The C version of the classic "apply is synchronous" program: func1
 * adds i three times and prints the sum, in a worker of Pool(6); each
 * apply waits for its task, so the sums come out in order 0, 3, ..., 27.
 *
 * Exits 0 only if every apply returned 3 * i.
 */
#include <stdio.h>
#include <string.h>

#include <fipc.h>

static int func1(const void *arg, size_t arg_len, void *result, size_t *result_len)
{
    int i;
    memcpy(&i, arg, sizeof i);
    int num = 0;
    for (int j = 0; j < 3; j++)
        num += i;
    printf("%d\n", num);
    memcpy(result, &num, sizeof num);
    *result_len = sizeof num;
    return 0; /* the worker's stdout is flushed when it exits */
}

int main(void)
{
    fipc_pool *pool;
    if (fipc_pool_create(&pool, &(fipc_pool_opts){.processes = 6}) < 0)
        return 1;
    int bad = 0;
    for (int i = 0; i < 10; i++) {
        int res = -1;
        if (fipc_pool_apply(pool, func1, &i, sizeof i, &res, sizeof res, NULL) < 0 || res != 3 * i)
            bad++;
    }
    fipc_pool_close(pool);
    fipc_pool_join(pool);
    fipc_pool_free(pool);
    return bad == 0 ? 0 : 1;
}
