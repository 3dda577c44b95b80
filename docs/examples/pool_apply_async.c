/*
 * pool_apply_async.c - ten apply_async, close, join, then get in order.
 *
 * The C version of the classic apply_async program: ten tasks go to
 * Pool(6) at once; close says no more will come, join waits for the
 * workers to finish them, and the results are then read in the order the
 * tasks were submitted, whatever order they finished in.
 *
 * Exits 0 only if result i is 5 * i for every i.
 */
#include <stdio.h>
#include <string.h>

#include <fipc.h>

static int func1(const void *arg, size_t arg_len, void *result, size_t *result_len)
{
    int i;
    memcpy(&i, arg, sizeof i);
    int num = 0;
    for (int j = 0; j < 5; j++)
        num += i;
    memcpy(result, &num, sizeof num);
    *result_len = sizeof num;
    return 0;
}

int main(void)
{
    fipc_pool *pool;
    if (fipc_pool_create(&pool, &(fipc_pool_opts){.processes = 6}) < 0)
        return 1;
    fipc_result *red_list[10];
    for (int i = 0; i < 10; i++)
        if (fipc_pool_apply_async(pool, func1, &i, sizeof i, NULL, NULL, NULL, &red_list[i]) < 0)
            return 1;
    fipc_pool_close(pool); /* not an end: no more tasks will be added */
    fipc_pool_join(pool);  /* wait for the workers to finish them */
    int bad = 0;
    for (int i = 0; i < 10; i++) {
        int num = -1;
        if (fipc_result_get(red_list[i], &num, sizeof num, NULL, 0) < 0 || num != 5 * i)
            bad++;
        printf("%d\n", num);
        fipc_result_free(red_list[i]);
    }
    fipc_pool_free(pool);
    return bad == 0 ? 0 : 1;
}
