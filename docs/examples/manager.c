/*
 * manager.c - 100 processes each take one from a shared dict's 'num'.
 *
 * The C version of the multiprocessing Manager example:
 *
 *     def take(d, lock):
 *         with lock:
 *             d['num'] -= 1
 *
 *     with Manager() as m:
 *         d = m.dict({'num': 100})
 *         lock = m.Lock()
 *         ps = [Process(target=take, args=(d, lock)) for _ in range(100)]
 *         ...
 *
 * fipc's dict lives in shared memory, so there is no server process: each
 * child reads and writes the entry itself.  Done twice: under a lock, as in
 * Python, then with fipc_dict_update, an atomic read-modify-write that
 * needs no lock of the user's.
 *
 * Exits 0 only if 'num' ends at 0 both times.
 */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fipc.h>

#define TAKERS 100

static fipc_dict *d;
static fipc_lock *lock;

static int take_locked(void)
{
    long long num;
    size_t len;
    if (fipc_lock_acquire(lock, FIPC_FOREVER) != 0)
        return 1;
    int r = fipc_dict_get(d, "num", &num, sizeof num, &len);
    if (r == 0) {
        num -= 1;
        r = fipc_dict_set(d, "num", &num, sizeof num);
    }
    fipc_lock_release(lock);
    return r == 0 ? 0 : 2;
}

static int minus_one(void *val, size_t *len, void *arg)
{
    (void)arg;
    long long num;
    if (*len != sizeof num)
        return -EINVAL;
    memcpy(&num, val, sizeof num);
    num -= 1;
    memcpy(val, &num, sizeof num);
    return 0;
}

static int take_update(void)
{
    return fipc_dict_update(d, "num", minus_one, NULL) == 0 ? 0 : 3;
}

static int run(int (*take)(void), const char *how)
{
    long long num = 100;
    size_t len;
    if (fipc_dict_set(d, "num", &num, sizeof num) != 0)
        return 1;
    pid_t pids[TAKERS];
    for (int i = 0; i < TAKERS; i++) {
        pids[i] = fork();
        if (pids[i] < 0)
            return 1;
        if (pids[i] == 0)
            _exit(take());
    }
    int failed = 0;
    for (int i = 0; i < TAKERS; i++) {
        int status;
        if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            failed++;
    }
    if (fipc_dict_get(d, "num", &num, sizeof num, &len) != 0)
        return 1;
    printf("%s: num = %lld, %d failed\n", how, num, failed);
    return num == 0 && failed == 0 ? 0 : 1;
}

int main(void)
{
    /* In the default arena, which the children inherit. */
    int r = fipc_dict_create(&d, NULL, 16, 16, 64);
    if (r < 0) {
        fprintf(stderr, "fipc_dict_create: %s\n", fipc_strerror(r));
        return 1;
    }
    if (!(lock = fipc_lock_new(NULL)))
        return 1;
    return run(take_locked, "under a lock") | run(take_update, "with update");
}
