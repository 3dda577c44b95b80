/*
 * test_value.c - fipc_value, fipc_value_d and fipc_array shared by
 * processes.
 *
 * 8 processes x 100,000 adds on a Value (exact), the same on a double
 * Value (exact: the sums are small integers), an Array updated under its
 * lock by several processes (exact), bad arguments, and an Array whose
 * header a peer overwrote.
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 */
#include "common.h"

#include "value_impl.h"

TestSuite(value, .timeout = 120);

#define PROCS 8
#define ADDS  100000

static int add_ones(int i, void *arg)
{
    (void)i;
    fipc_value *v = arg;
    for (int k = 0; k < ADDS; k++)
        CHILD_CHECK(fipc_value_add(v, 1) > 0, 1);
    return CHILD_OK;
}

Test(value, add_from_8_processes_is_exact)
{
    fipc_value *v;
    cr_assert_eq(fipc_value_new(&v, NULL, 0), 0);
    test_run_children(PROCS, add_ones, v);
    cr_assert_eq(fipc_value_get(v), (int64_t)PROCS * ADDS);
}

static int add_ones_d(int i, void *arg)
{
    (void)i;
    fipc_value_d *v = arg;
    for (int k = 0; k < ADDS; k++)
        CHILD_CHECK(fipc_value_d_add(v, 1.0) > 0.0, 1);
    return CHILD_OK;
}

Test(value, double_add_from_8_processes_is_exact)
{
    fipc_value_d *v;
    cr_assert_eq(fipc_value_new_double(&v, NULL, 0.5), 0);
    test_run_children(PROCS, add_ones_d, v);
    cr_assert_eq(fipc_value_d_get(v), 0.5 + (double)PROCS * ADDS);
}

/* Read-modify-write under the value's lock, mixed with atomic adds. */
static int locked_updates(int i, void *arg)
{
    fipc_value *v = arg;
    for (int k = 0; k < ADDS / 10; k++) {
        if (i % 2) {
            CHILD_CHECK(fipc_lock_acquire(fipc_value_lock(v), FIPC_FOREVER) == 0, 1);
            CHILD_CHECK(fipc_value_set(v, fipc_value_get(v) + 3) == 0, 2);
            CHILD_CHECK(fipc_lock_release(fipc_value_lock(v)) == 0, 3);
        } else {
            fipc_value_add(v, 3);
        }
    }
    return CHILD_OK;
}

Test(value, set_under_the_lock_loses_nothing_to_adds_under_the_lock)
{
    /* Adds do not take the lock, so only the lock holders among themselves
     * are exclusive: run them alone for an exact count. */
    fipc_value *v;
    cr_assert_eq(fipc_value_new(&v, NULL, 7), 0);
    pid_t pids[4];
    for (int i = 0; i < 4; i++)
        pids[i] = test_fork(locked_updates, 2 * i + 1, v);
    for (int i = 0; i < 4; i++)
        test_expect_ok(pids[i]);
    cr_assert_eq(fipc_value_get(v), 7 + 4 * 3 * (ADDS / 10));
}

Test(value, get_set_add_and_wrap)
{
    fipc_value *v;
    cr_assert_eq(fipc_value_new(&v, NULL, -5), 0);
    cr_assert_eq(fipc_value_get(v), -5);
    cr_assert_eq(fipc_value_add(v, 10), 5);
    cr_assert_eq(fipc_value_set(v, INT64_MAX), 0);
    cr_assert_eq(fipc_value_add(v, 1), INT64_MIN);
    cr_assert_not_null(fipc_value_lock(v));
    cr_assert_eq(fipc_lock_acquire(fipc_value_lock(v), 0), 0);
    cr_assert_eq(fipc_lock_release(fipc_value_lock(v)), 0);

    fipc_value_d *d;
    cr_assert_eq(fipc_value_new_double(&d, NULL, 1.25), 0);
    cr_assert_eq(fipc_value_d_get(d), 1.25);
    cr_assert_eq(fipc_value_d_add(d, -0.25), 1.0);
    cr_assert_eq(fipc_value_d_set(d, -3.5), 0);
    cr_assert_eq(fipc_value_d_get(d), -3.5);
    cr_assert_not_null(fipc_value_d_lock(d));
}

Test(value, null_arguments_are_einval)
{
    fipc_value *v;
    fipc_value_d *d;
    fipc_array *a;
    cr_assert_eq(fipc_value_new(NULL, NULL, 0), -EINVAL);
    cr_assert_eq(fipc_value_new_double(NULL, NULL, 0), -EINVAL);
    cr_assert_eq(fipc_array_new(NULL, NULL, 4, 4), -EINVAL);
    cr_assert_eq(fipc_array_new(&a, NULL, 0, 4), -EINVAL);
    cr_assert_eq(fipc_array_new(&a, NULL, 4, 0), -EINVAL);
    cr_assert_eq(fipc_array_new(&a, NULL, SIZE_MAX / 2, 4), -ENOMEM);
    cr_assert_eq(fipc_value_get(NULL), 0);
    cr_assert_eq(fipc_value_set(NULL, 1), -EINVAL);
    cr_assert_eq(fipc_value_add(NULL, 1), 0);
    cr_assert_null(fipc_value_lock(NULL));
    cr_assert_eq(fipc_value_d_get(NULL), 0.0);
    cr_assert_eq(fipc_value_d_set(NULL, 1), -EINVAL);
    cr_assert_eq(fipc_value_d_add(NULL, 1), 0.0);
    cr_assert_null(fipc_value_d_lock(NULL));
    cr_assert_null(fipc_array_data(NULL));
    cr_assert_eq(fipc_array_len(NULL), 0);
    cr_assert_eq(fipc_array_elem_size(NULL), 0);
    cr_assert_null(fipc_array_lock(NULL));
    (void)v;
    (void)d;
}

Test(value, full_arena_is_enomem)
{
    fipc_arena *ar;
    cr_assert_eq(fipc_arena_create(&ar, "small", 64 * 1024), 0);
    fipc_array *a;
    cr_assert_eq(fipc_array_new(&a, ar, 1, 1 << 20), -ENOMEM);
    fipc_value *v;
    int r;
    while ((r = fipc_value_new(&v, ar, 1)) == 0)
        ;
    cr_assert_eq(r, -ENOMEM);
    fipc_arena_close(ar);
}

/* ---- Array ---- */

#define ELEMS 16

static int array_updates(int i, void *arg)
{
    fipc_array *a = arg;
    int64_t *x = fipc_array_data(a);
    CHILD_CHECK(x != NULL, 1);
    for (int k = 0; k < ADDS / 10; k++) {
        CHILD_CHECK(fipc_lock_acquire(fipc_array_lock(a), FIPC_FOREVER) == 0, 2);
        /* Not atomic: only the lock keeps these exact. */
        for (int e = 0; e < ELEMS; e++)
            x[e] += e + 1;
        x[i % ELEMS] += 1000;
        CHILD_CHECK(fipc_lock_release(fipc_array_lock(a)) == 0, 3);
    }
    return CHILD_OK;
}

Test(value, array_updated_under_its_lock_is_exact)
{
    fipc_array *a;
    cr_assert_eq(fipc_array_new(&a, NULL, sizeof(int64_t), ELEMS), 0);
    cr_assert_eq(fipc_array_len(a), ELEMS);
    cr_assert_eq(fipc_array_elem_size(a), sizeof(int64_t));
    int64_t *x = fipc_array_data(a);
    cr_assert_not_null(x);
    cr_assert_eq((uintptr_t)x % 16, 0);
    for (int e = 0; e < ELEMS; e++)
        cr_assert_eq(x[e], 0, "zero-filled");
    test_run_children(PROCS, array_updates, a);
    for (int e = 0; e < ELEMS; e++) {
        int64_t want = (int64_t)PROCS * (ADDS / 10) * (e + 1);
        if (e < PROCS) want += 1000 * (ADDS / 10);
        cr_assert_eq(x[e], want, "element %d", e);
    }
}

Test(value, array_with_an_overwritten_header_is_refused)
{
    fipc_array *a;
    cr_assert_eq(fipc_array_new(&a, NULL, 8, 4), 0);
    struct fipc_array save = *a;
    a->n = UINT64_MAX / 4; /* the elements would run past the arena */
    cr_assert_null(fipc_array_data(a));
    cr_assert_eq(fipc_array_len(a), 0);
    cr_assert_eq(fipc_array_elem_size(a), 0);
    a->n = 4;
    a->elem_size = 0;
    cr_assert_null(fipc_array_data(a));
    a->elem_size = UINT64_MAX; /* n * elem_size overflows */
    cr_assert_null(fipc_array_data(a));
    *a = save;
    a->magic ^= 1;
    cr_assert_null(fipc_array_data(a));
    *a = save;
    cr_assert_not_null(fipc_array_data(a));
    cr_assert_eq(fipc_array_len(a), 4);
}

Test(value, array_outside_any_arena_is_refused)
{
    /* Memory that no arena maps: a forged array in plain shared memory. */
    struct fipc_array *a = test_shared(4096);
    a->magic = ARRAY_MAGIC;
    a->elem_size = 1;
    a->n = 16;
    cr_assert_null(fipc_array_data(a));
    munmap(a, 4096);
}
