/*
 * test_dict.c - fipc_dict shared by processes.
 *
 * set/get/delete/len/update/foreach and their errors (nothing changes on
 * error); a full dict; 8 processes x 100,000 mixed operations on
 * overlapping keys checked against a model; the Manager example (100
 * processes each take one from 'num' under a lock, and with update); a
 * process killed at random points of set, update and delete (100 rounds),
 * the dict consistent after each; lock-free gets racing with sets, updates,
 * delete+set and killed setters, every value whole; and shared memory a
 * peer overwrote (a sequence count stuck odd included).
 *
 * Every child leaves with CHILD_CHECK's status; the parent asserts on it.
 */
#include "common.h"

#include "dict_impl.h"

TestSuite(dict, .timeout = 300);

static uint64_t scaled(uint64_t n)
{
    return TEST_ASAN ? n / 10 : n;
}

/* ---- single-process behaviour ---- */

Test(dict, set_get_delete_len)
{
    fipc_dict *d;
    char buf[32];
    size_t len = 99;
    cr_assert_eq(fipc_dict_create(&d, NULL, 8, 16, 32), 0);
    cr_assert_eq(fipc_dict_len(d), 0);
    cr_assert_eq(fipc_dict_get(d, "a", buf, sizeof buf, &len), -ENOENT);
    cr_assert_eq(fipc_dict_set(d, "a", "one", 3), 0);
    cr_assert_eq(fipc_dict_set(d, "", "empty key", 9), 0);
    cr_assert_eq(fipc_dict_set(d, "b", NULL, 0), 0);
    cr_assert_eq(fipc_dict_len(d), 3);
    cr_assert_eq(fipc_dict_get(d, "a", buf, sizeof buf, &len), 0);
    cr_assert_eq(len, 3);
    cr_assert_eq(memcmp(buf, "one", 3), 0);
    cr_assert_eq(fipc_dict_get(d, "b", buf, sizeof buf, &len), 0);
    cr_assert_eq(len, 0);
    cr_assert_eq(fipc_dict_get(d, "", buf, sizeof buf, &len), 0);
    cr_assert_eq(len, 9);
    /* Replace: the other buffer, then the switch. */
    cr_assert_eq(fipc_dict_set(d, "a", "uno", 3), 0);
    cr_assert_eq(fipc_dict_set(d, "a", "eins!", 5), 0);
    cr_assert_eq(fipc_dict_get(d, "a", buf, sizeof buf, &len), 0);
    cr_assert_eq(len, 5);
    cr_assert_eq(memcmp(buf, "eins!", 5), 0);
    cr_assert_eq(fipc_dict_len(d), 3);
    cr_assert_eq(fipc_dict_get(d, "a", buf, 4, &len), -EMSGSIZE);
    cr_assert_eq(len, 5, "the length it needs");
    cr_assert_eq(fipc_dict_delete(d, "a"), 0);
    cr_assert_eq(fipc_dict_delete(d, "a"), -ENOENT);
    cr_assert_eq(fipc_dict_get(d, "a", buf, sizeof buf, &len), -ENOENT);
    cr_assert_eq(fipc_dict_len(d), 2);
    cr_assert_eq(fipc_dict_set(d, "a", "back", 4), 0);
    cr_assert_eq(fipc_dict_get(d, "a", buf, sizeof buf, &len), 0);
    cr_assert_eq(len, 4);
}

Test(dict, errors_change_nothing)
{
    fipc_dict *d;
    char buf[64], big[64] = {0};
    size_t len;
    cr_assert_eq(fipc_dict_create(&d, NULL, 2, 4, 8), 0);
    cr_assert_eq(fipc_dict_set(d, "abcd", "12345678", 8), 0);
    cr_assert_eq(fipc_dict_set(d, "abcde", "x", 1), -EMSGSIZE);
    cr_assert_eq(fipc_dict_set(d, "abcd", big, 9), -EMSGSIZE);
    cr_assert_eq(fipc_dict_get(d, "abcde", buf, sizeof buf, &len), -EMSGSIZE);
    cr_assert_eq(fipc_dict_delete(d, "abcde"), -EMSGSIZE);
    cr_assert_eq(fipc_dict_get(d, "abcd", buf, sizeof buf, &len), 0);
    cr_assert_eq(len, 8);
    cr_assert_eq(memcmp(buf, "12345678", 8), 0);
    cr_assert_eq(fipc_dict_set(d, "k2", "2", 1), 0);
    /* Full: a new key is refused, an existing one still changes. */
    cr_assert_eq(fipc_dict_set(d, "k3", "3", 1), -ENOSPC);
    cr_assert_eq(fipc_dict_len(d), 2);
    cr_assert_eq(fipc_dict_get(d, "k3", buf, sizeof buf, &len), -ENOENT);
    cr_assert_eq(fipc_dict_set(d, "k2", "22", 2), 0);
    cr_assert_eq(fipc_dict_delete(d, "abcd"), 0);
    cr_assert_eq(fipc_dict_set(d, "k3", "3", 1), 0);
    cr_assert_eq(fipc_dict_set(d, "k4", "4", 1), -ENOSPC);
    cr_assert_eq(fipc_dict_len(d), 2);

    /* Bad arguments. */
    fipc_dict *e;
    cr_assert_eq(fipc_dict_create(NULL, NULL, 2, 4, 8), -EINVAL);
    cr_assert_eq(fipc_dict_create(&e, NULL, 0, 4, 8), -EINVAL);
    cr_assert_eq(fipc_dict_create(&e, NULL, 2, 0, 8), -EINVAL);
    cr_assert_eq(fipc_dict_create(&e, NULL, 2, 4, 0), -EINVAL);
    cr_assert_eq(fipc_dict_create(&e, NULL, 2, 4, SIZE_MAX), -EINVAL);
    cr_assert_eq(fipc_dict_set(NULL, "a", "1", 1), -EINVAL);
    cr_assert_eq(fipc_dict_set(d, NULL, "1", 1), -EINVAL);
    cr_assert_eq(fipc_dict_set(d, "a", NULL, 1), -EINVAL);
    cr_assert_eq(fipc_dict_get(d, "k2", buf, sizeof buf, NULL), -EINVAL);
    cr_assert_eq(fipc_dict_get(d, "k2", NULL, 1, &len), -EINVAL);
    cr_assert_eq(fipc_dict_delete(NULL, "a"), -EINVAL);
    cr_assert_eq(fipc_dict_len(NULL), -EINVAL);
    cr_assert_eq(fipc_dict_update(d, "k2", NULL, NULL), -EINVAL);
    cr_assert_eq(fipc_dict_foreach(d, NULL, NULL), -EINVAL);
    cr_assert_eq(fipc_dict_len(d), 2);
}

Test(dict, full_arena_is_enomem)
{
    fipc_arena *ar;
    fipc_dict *d;
    cr_assert_eq(fipc_arena_create(&ar, "small", 64 * 1024), 0);
    cr_assert_eq(fipc_dict_create(&d, ar, 1000, 100, 1000), -ENOMEM);
    fipc_arena_close(ar);
}

static int add_byte(void *val, size_t *len, void *arg)
{
    if (*len == 0) return -EINVAL;
    ((unsigned char *)val)[0] += (unsigned char)(uintptr_t)arg;
    return 0;
}

static int grow(void *val, size_t *len, void *arg)
{
    /* The buffer holds max_val (8) bytes; the length may claim more. */
    size_t n = (size_t)(uintptr_t)arg;
    memset(val, 'g', n < 8 ? n : 8);
    *len = (size_t)(uintptr_t)arg;
    return 0;
}

static int refuse(void *val, size_t *len, void *arg)
{
    (void)arg;
    memset(val, 'x', *len); /* scribbles, then refuses: nothing changes */
    return -ECANCELED;
}

Test(dict, update_is_read_modify_write_and_its_errors_change_nothing)
{
    fipc_dict *d;
    unsigned char buf[16];
    size_t len;
    cr_assert_eq(fipc_dict_create(&d, NULL, 4, 8, 8), 0);
    cr_assert_eq(fipc_dict_update(d, "n", add_byte, (void *)1), -ENOENT);
    cr_assert_eq(fipc_dict_set(d, "n", "\x05zz", 3), 0);
    cr_assert_eq(fipc_dict_update(d, "n", add_byte, (void *)2), 0);
    cr_assert_eq(fipc_dict_get(d, "n", buf, sizeof buf, &len), 0);
    cr_assert_eq(len, 3);
    cr_assert_eq(buf[0], 7);
    cr_assert_eq(buf[1], 'z');
    cr_assert_eq(fipc_dict_update(d, "n", refuse, NULL), -ECANCELED);
    cr_assert_eq(fipc_dict_update(d, "n", grow, (void *)9), -EMSGSIZE);
    cr_assert_eq(fipc_dict_get(d, "n", buf, sizeof buf, &len), 0);
    cr_assert_eq(len, 3);
    cr_assert_eq(buf[0], 7);
    cr_assert_eq(memcmp(buf + 1, "zz", 2), 0);
    cr_assert_eq(fipc_dict_update(d, "n", grow, (void *)8), 0);
    cr_assert_eq(fipc_dict_get(d, "n", buf, sizeof buf, &len), 0);
    cr_assert_eq(len, 8);
    cr_assert_eq(memcmp(buf, "gggggggg", 8), 0);
}

struct visit {
    fipc_dict *d;
    int seen, sum;
};

static int count_entry(const char *key, const void *val, size_t len, void *arg)
{
    struct visit *v = arg;
    if (len != 1 || strlen(key) != 2 || key[0] != 'k') return -EBADMSG;
    v->seen++;
    v->sum += *(const char *)val;
    /* fn may call the dict, even on the entry it visits. */
    return fipc_dict_set(v->d, key, "\0", 1);
}

static int stop_at_two(const char *key, const void *val, size_t len, void *arg)
{
    (void)key, (void)val, (void)len;
    return ++*(int *)arg == 2 ? 42 : 0;
}

Test(dict, foreach_visits_a_copy_of_each_entry)
{
    fipc_dict *d;
    cr_assert_eq(fipc_dict_create(&d, NULL, 16, 4, 4), 0);
    for (int i = 0; i < 10; i++) {
        char k[4] = {'k', (char)('0' + i), 0}, v = (char)i;
        cr_assert_eq(fipc_dict_set(d, k, &v, 1), 0);
    }
    struct visit v = {.d = d};
    cr_assert_eq(fipc_dict_foreach(d, count_entry, &v), 0);
    cr_assert_eq(v.seen, 10);
    cr_assert_eq(v.sum, 45);
    v.seen = v.sum = 0;
    cr_assert_eq(fipc_dict_foreach(d, count_entry, &v), 0);
    cr_assert_eq(v.sum, 0, "fn's sets took effect");
    int n = 0;
    cr_assert_eq(fipc_dict_foreach(d, stop_at_two, &n), 42);
    cr_assert_eq(n, 2);
}

/* ---- many processes against a model ---- */

#define PROCS     8
#define SHARED    32 /* keys every process updates */
#define PRIVATE   16 /* keys each process sets, deletes and reads alone */
#define VEC_BYTES (PROCS * 8)

struct hammer {
    fipc_dict *d;
    uint64_t updates[PROCS][SHARED]; /* each child's count, for the parent */
};

static int bump_own(void *val, size_t *len, void *arg)
{
    int p = (int)(uintptr_t)arg;
    if (*len != VEC_BYTES) return -EBADMSG;
    uint64_t *vec = val;
    vec[p]++;
    return 0;
}

static int check_vec(const char *key, const void *val, size_t len, void *arg)
{
    (void)arg;
    if (key[0] == 's' && len != VEC_BYTES) return -EBADMSG;
    if (key[0] == 'p' && len < 8) return -EBADMSG;
    return 0;
}

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static int hammer_child(int p, void *arg)
{
    struct hammer *h = arg;
    fipc_dict *d = h->d;
    uint64_t x = 0x9e3779b97f4a7c15u * (uint64_t)(p + 1);
    uint64_t mine[SHARED] = {0}; /* model: my slot of each shared vector */
    int64_t priv[PRIVATE];       /* model: my private keys (-1: absent) */
    for (int j = 0; j < PRIVATE; j++)
        priv[j] = -1;
    uint64_t n = scaled(100000);
    char key[16];
    unsigned char buf[256];
    size_t len;
    for (uint64_t k = 0; k < n; k++) {
        uint64_t r = rng_next(&x);
        int op = (int)(r % 100);
        if (op < 40) {
            int s = (int)((r >> 8) % SHARED);
            snprintf(key, sizeof key, "s%d", s);
            CHILD_CHECK(fipc_dict_update(d, key, bump_own, (void *)(uintptr_t)p) == 0, 1);
            mine[s]++;
        } else if (op < 60) {
            int s = (int)((r >> 8) % SHARED);
            snprintf(key, sizeof key, "s%d", s);
            CHILD_CHECK(fipc_dict_get(d, key, buf, sizeof buf, &len) == 0, 2);
            CHILD_CHECK(len == VEC_BYTES, 3);
            uint64_t v;
            memcpy(&v, buf + 8 * p, 8);
            CHILD_CHECK(v == mine[s], 4);
        } else {
            int j = (int)((r >> 8) % PRIVATE);
            snprintf(key, sizeof key, "p%d_%d", p, j);
            if (op < 80) {
                /* set: a value of 8 to 200 bytes that names its version */
                size_t vl = 8 + (size_t)((r >> 20) % 193);
                memset(buf, (int)(k & 0xff), vl);
                memcpy(buf, &k, 8);
                CHILD_CHECK(fipc_dict_set(d, key, buf, vl) == 0, 5);
                priv[j] = (int64_t)k;
            } else if (op < 90) {
                int rr = fipc_dict_delete(d, key);
                CHILD_CHECK(rr == (priv[j] < 0 ? -ENOENT : 0), 6);
                priv[j] = -1;
            } else {
                int rr = fipc_dict_get(d, key, buf, sizeof buf, &len);
                if (priv[j] < 0) {
                    CHILD_CHECK(rr == -ENOENT, 7);
                } else {
                    CHILD_CHECK(rr == 0, 8);
                    uint64_t ver;
                    memcpy(&ver, buf, 8);
                    CHILD_CHECK(ver == (uint64_t)priv[j], 9);
                    for (size_t i = 8; i < len; i++)
                        CHILD_CHECK(buf[i] == (unsigned char)(ver & 0xff), 10);
                }
            }
        }
        if (k % 10000 == 0) CHILD_CHECK(fipc_dict_foreach(d, check_vec, NULL) == 0, 11);
    }
    /* Leave the private keys as the model says, for the parent. */
    for (int j = 0; j < PRIVATE; j++) {
        snprintf(key, sizeof key, "p%d_%d", p, j);
        int rr = fipc_dict_get(d, key, buf, sizeof buf, &len);
        CHILD_CHECK(rr == (priv[j] < 0 ? -ENOENT : 0), 12);
    }
    memcpy(h->updates[p], mine, sizeof mine);
    return 0;
}

Test(dict, eight_processes_of_mixed_operations_match_the_model)
{
    struct hammer *h = test_shared(sizeof *h);
    cr_assert_eq(fipc_dict_create(&h->d, NULL, SHARED + PROCS * PRIVATE, 16, 256), 0);
    uint64_t zero[PROCS] = {0};
    char key[16];
    for (int s = 0; s < SHARED; s++) {
        snprintf(key, sizeof key, "s%d", s);
        cr_assert_eq(fipc_dict_set(h->d, key, zero, sizeof zero), 0);
    }
    test_run_children(PROCS, hammer_child, h);
    for (int s = 0; s < SHARED; s++) {
        uint64_t vec[PROCS];
        size_t len;
        snprintf(key, sizeof key, "s%d", s);
        cr_assert_eq(fipc_dict_get(h->d, key, vec, sizeof vec, &len), 0);
        cr_assert_eq(len, sizeof vec);
        for (int p = 0; p < PROCS; p++)
            cr_assert_eq(vec[p], h->updates[p][s], "key %s, process %d", key, p);
    }
    int len = fipc_dict_len(h->d);
    cr_assert_geq(len, SHARED);
    cr_assert_leq(len, SHARED + PROCS * PRIVATE);
}

/* ---- the Manager example ---- */

#define TAKERS 100

struct manager {
    fipc_dict *d;
    fipc_lock *lock;
};

static int take_one_locked(int i, void *arg)
{
    (void)i;
    struct manager *m = arg;
    int64_t num;
    size_t len;
    CHILD_CHECK(fipc_lock_acquire(m->lock, FIPC_FOREVER) == 0, 1);
    CHILD_CHECK(fipc_dict_get(m->d, "num", &num, sizeof num, &len) == 0 && len == 8, 2);
    num -= 1;
    CHILD_CHECK(fipc_dict_set(m->d, "num", &num, sizeof num) == 0, 3);
    CHILD_CHECK(fipc_lock_release(m->lock) == 0, 4);
    return 0;
}

static int dec(void *val, size_t *len, void *arg)
{
    (void)arg;
    if (*len != sizeof(int64_t)) return -EBADMSG;
    int64_t v;
    memcpy(&v, val, sizeof v);
    v -= 1;
    memcpy(val, &v, sizeof v);
    return 0;
}

static int take_one_update(int i, void *arg)
{
    (void)i;
    struct manager *m = arg;
    CHILD_CHECK(fipc_dict_update(m->d, "num", dec, NULL) == 0, 1);
    return 0;
}

static void run_takers(struct manager *m, int (*fn)(int, void *))
{
    int64_t num = 100;
    size_t len;
    cr_assert_eq(fipc_dict_set(m->d, "num", &num, sizeof num), 0);
    pid_t pids[TAKERS];
    for (int i = 0; i < TAKERS; i++)
        pids[i] = test_fork(fn, i, m);
    for (int i = 0; i < TAKERS; i++)
        test_expect_ok(pids[i]);
    cr_assert_eq(fipc_dict_get(m->d, "num", &num, sizeof num, &len), 0);
    cr_assert_eq(num, 0);
}

Test(dict, manager_example_under_a_lock_and_with_update)
{
    struct manager m;
    cr_assert_eq(fipc_dict_create(&m.d, NULL, 4, 8, 8), 0);
    m.lock = fipc_lock_new(NULL);
    cr_assert_not_null(m.lock);
    run_takers(&m, take_one_locked);
    run_takers(&m, take_one_update);
}

/* ---- deaths ---- */

#define KILL_KEYS 8

/* A consistent value: its first byte says its length and fills it. */
static void make_val(unsigned char *buf, unsigned char g, size_t *len)
{
    *len = 1 + g % 40;
    memset(buf, g, *len);
}

static bool val_ok(const unsigned char *buf, size_t len)
{
    if (len != 1u + buf[0] % 40) return false;
    for (size_t i = 0; i < len; i++)
        if (buf[i] != buf[0]) return false;
    return true;
}

static int bump_all(void *val, size_t *len, void *arg)
{
    (void)arg;
    unsigned char *b = val;
    unsigned char g = (unsigned char)(b[0] + 1);
    make_val(b, g, len);
    return 0;
}

static int killed_worker(int i, void *arg)
{
    fipc_dict *d = arg;
    uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15u + 1;
    unsigned char buf[64];
    size_t len;
    char key[8];
    for (;;) {
        uint64_t r = rng_next(&x);
        snprintf(key, sizeof key, "k%d", (int)(r % KILL_KEYS));
        switch ((r >> 8) % 4) {
        case 0:
            make_val(buf, (unsigned char)(r >> 16), &len);
            fipc_dict_set(d, key, buf, len);
            break;
        case 1:
            fipc_dict_update(d, key, bump_all, NULL);
            break;
        case 2:
            /* delete and set again: the claim path */
            fipc_dict_delete(d, key);
            make_val(buf, (unsigned char)(r >> 24), &len);
            fipc_dict_set(d, key, buf, len);
            break;
        default:
            if (fipc_dict_get(d, key, buf, sizeof buf, &len) == 0) CHILD_CHECK(val_ok(buf, len), 1);
        }
    }
}

static int check_entry(const char *key, const void *val, size_t len, void *arg)
{
    (void)key;
    ++*(int *)arg;
    return val_ok(val, len) ? 0 : -EBADMSG;
}

Test(dict, process_killed_inside_set_update_or_delete_leaves_it_consistent)
{
    fipc_dict *d;
    /* One slot more than keys: a claim the repair missed would soon make
     * a set of a new key fail with -ENOSPC. */
    cr_assert_eq(fipc_dict_create(&d, NULL, KILL_KEYS + 1, 4, 40), 0);
    unsigned char buf[64];
    size_t len;
    char key[8];
    for (int k = 0; k < KILL_KEYS; k++) {
        snprintf(key, sizeof key, "k%d", k);
        make_val(buf, (unsigned char)k, &len);
        cr_assert_eq(fipc_dict_set(d, key, buf, len), 0);
    }
    srand(11);
    for (int round = 0; round < 100; round++) {
        pid_t pid = test_fork(killed_worker, round, d);
        /* A random moment: the kill, not the sleep, is what is tested. */
        usleep((useconds_t)(rand() % 3000));
        kill(pid, SIGKILL);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFSIGNALED(status), "the worker failed check %d", WEXITSTATUS(status));
        int seen = 0;
        cr_assert_eq(fipc_dict_foreach(d, check_entry, &seen), 0, "round %d", round);
        cr_assert_leq(seen, KILL_KEYS);
        for (int k = 0; k < KILL_KEYS; k++) {
            snprintf(key, sizeof key, "k%d", k);
            int r = fipc_dict_get(d, key, buf, sizeof buf, &len);
            cr_assert(r == 0 || r == -ENOENT, "round %d: get: %s", round, fipc_strerror(r));
            if (r == 0) cr_assert(val_ok(buf, len), "round %d: %s torn", round, key);
            /* Every key can be set again: no slot was lost. */
            make_val(buf, (unsigned char)(round + k), &len);
            cr_assert_eq(fipc_dict_set(d, key, buf, len), 0, "round %d: %s", round, key);
        }
        cr_assert_eq(fipc_dict_len(d), KILL_KEYS);
    }
}

/* ---- lock-free gets racing with sets ---- */

#define RACE_KEYS 8

struct race {
    fipc_dict *d;
    uint32_t stop;    /* set by the parent once the setters are done */
    uint64_t gets[2]; /* each reader's count of values it checked */
};

/* Key k's value of generation g: k, then 8 + g % 33 - 1 copies of g.  A
 * get that returns anything else (torn, another key's, a mix of two
 * generations) is caught by race_ok. */
static void race_val(unsigned char *buf, int k, unsigned char g, size_t *len)
{
    *len = 8 + g % 33;
    buf[0] = (unsigned char)k;
    memset(buf + 1, g, *len - 1);
}

static bool race_ok(const unsigned char *buf, size_t len, int k)
{
    if (len < 8 || buf[0] != (unsigned char)k || len != 8u + buf[1] % 33) return false;
    for (size_t i = 2; i < len; i++)
        if (buf[i] != buf[1]) return false;
    return true;
}

static int race_bump(void *val, size_t *len, void *arg)
{
    (void)arg;
    unsigned char *b = val;
    race_val(b, b[0], (unsigned char)(b[1] + 1), len);
    return 0;
}

/* Sets, updates and delete+set on the race's keys: n operations, or
 * forever (n == 0, for a setter the parent kills). */
static int race_setter(int i, void *arg)
{
    struct race *rc = arg;
    uint64_t x = (uint64_t)(i + 1) * 0x9e3779b97f4a7c15u;
    unsigned char buf[64];
    size_t len;
    char key[8];
    uint64_t n = i == 0 ? scaled(200000) : 0;
    test_child_setup();
    for (uint64_t j = 0; n == 0 || j < n; j++) {
        uint64_t r = rng_next(&x);
        int k = (int)(r % RACE_KEYS);
        snprintf(key, sizeof key, "r%d", k);
        int op = (int)((r >> 8) % 8);
        if (op < 6) {
            race_val(buf, k, (unsigned char)(r >> 16), &len);
            CHILD_CHECK(fipc_dict_set(rc->d, key, buf, len) == 0, 1);
        } else if (op == 6) {
            /* -ENOENT, here and below: another setter's delete+set */
            int rr = fipc_dict_update(rc->d, key, race_bump, NULL);
            CHILD_CHECK(rr == 0 || rr == -ENOENT, 2);
        } else {
            /* the slot's reuse: the key leaves and comes back */
            int rr = fipc_dict_delete(rc->d, key);
            CHILD_CHECK(rr == 0 || rr == -ENOENT, 3);
            race_val(buf, k, (unsigned char)(r >> 24), &len);
            CHILD_CHECK(fipc_dict_set(rc->d, key, buf, len) == 0, 4);
        }
    }
    return 0;
}

static int race_reader(int i, void *arg)
{
    struct race *rc = arg;
    unsigned char buf[64];
    size_t len;
    char key[8];
    uint64_t n = 0;
    test_child_setup();
    /* acquire: pairs with the parent's release; nothing rides on it. */
    while (!__atomic_load_n(&rc->stop, __ATOMIC_ACQUIRE)) {
        for (int k = 0; k < RACE_KEYS; k++) {
            snprintf(key, sizeof key, "r%d", k);
            int r = fipc_dict_get(rc->d, key, buf, sizeof buf, &len);
            /* -ENOENT: between a delete and its set */
            CHILD_CHECK(r == 0 || r == -ENOENT, 1);
            if (r == 0) {
                CHILD_CHECK(race_ok(buf, len, k), 2);
                n++;
            }
        }
    }
    rc->gets[i] = n;
    return 0;
}

Test(dict, gets_racing_with_sets_and_killed_setters_return_whole_values)
{
    struct race *rc = test_shared(sizeof *rc);
    /* One slot more than keys, as in the death test. */
    cr_assert_eq(fipc_dict_create(&rc->d, NULL, RACE_KEYS + 1, 4, 40), 0);
    unsigned char buf[64];
    size_t len;
    char key[8];
    for (int k = 0; k < RACE_KEYS; k++) {
        snprintf(key, sizeof key, "r%d", k);
        race_val(buf, k, (unsigned char)k, &len);
        cr_assert_eq(fipc_dict_set(rc->d, key, buf, len), 0);
    }
    pid_t readers[2], setter = test_fork(race_setter, 0, rc);
    for (int i = 0; i < 2; i++)
        readers[i] = test_fork(race_reader, i, rc);
    /* Meanwhile setters killed at random moments, some inside a change. */
    srand(13);
    for (int round = 0; round < 30; round++) {
        pid_t pid = test_fork(race_setter, round + 1, rc);
        usleep((useconds_t)(rand() % 3000));
        kill(pid, SIGKILL);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFSIGNALED(status), "setter %d failed check %d", round, WEXITSTATUS(status));
    }
    test_expect_ok(setter);
    __atomic_store_n(&rc->stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++) {
        test_expect_ok(readers[i]);
        cr_assert_gt(rc->gets[i], 0);
    }
    for (int k = 0; k < RACE_KEYS; k++) {
        snprintf(key, sizeof key, "r%d", k);
        int r = fipc_dict_get(rc->d, key, buf, sizeof buf, &len);
        cr_assert(r == 0 || r == -ENOENT, "%s: %s", key, fipc_strerror(r));
        if (r == 0) cr_assert(race_ok(buf, len, k), "%s torn", key);
        race_val(buf, k, 0, &len);
        cr_assert_eq(fipc_dict_set(rc->d, key, buf, len), 0, "%s", key);
    }
    cr_assert_eq(fipc_dict_len(rc->d), RACE_KEYS);
}

/* ---- a peer that writes garbage ---- */

Test(dict, overwritten_header_and_slots_give_eproto_never_a_wild_access)
{
    fipc_dict *d, *other;
    char buf[64];
    size_t len;
    cr_assert_eq(fipc_dict_create(&d, NULL, 8, 8, 16), 0);
    cr_assert_eq(fipc_dict_create(&other, NULL, 1, 1, 1), 0);
    struct dict_header *h = (struct dict_header *)d;
    /* A header whose dimensions would run past the arena. */
    struct dict_header save = *h;
    h->max_keys = DICT_DIM_MAX;
    h->max_val = DICT_DIM_MAX - 1;
    cr_assert_eq(fipc_dict_set(d, "a", "1", 1), -EPROTO);
    cr_assert_eq(fipc_dict_len(d), -EPROTO);
    h->max_keys = 0;
    cr_assert_eq(fipc_dict_get(d, "a", buf, sizeof buf, &len), -EPROTO);
    *h = save;
    h->magic ^= 1;
    cr_assert_eq(fipc_dict_delete(d, "a"), -EPROTO);
    *h = save;
    cr_assert_eq(fipc_dict_set(d, "a", "1", 1), 0);
    /* The geometry is this thread's copy: a header changed after it was
     * checked changes nothing. */
    h->max_val = 1 << 20;
    cr_assert_eq(fipc_dict_set(d, "a", "1234567890123456", 16), 0);
    cr_assert_eq(fipc_dict_set(d, "a", "12345678901234567", 17), -EMSGSIZE);
    *h = save;

    /* A slot's value length past max_val. */
    struct dict_geom g;
    dict_geometry(&g, 8, 8, 16);
    struct dict_slot *s = NULL;
    for (size_t i = 0; i < g.slots; i++) {
        struct dict_slot *t = (struct dict_slot *)((char *)d + g.slots_off + i * g.stride);
        if (t->state == SLOT_USED) s = t;
    }
    cr_assert_not_null(s);
    struct dict_slot ss = *s;
    s->vlen[s->cur & 1] = 1000;
    cr_assert_eq(fipc_dict_get(d, "a", buf, sizeof buf, &len), -EPROTO);
    cr_assert_eq(fipc_dict_update(d, "a", add_byte, (void *)1), -EPROTO);
    cr_assert_eq(fipc_dict_foreach(d, check_vec, NULL), -EPROTO);
    *s = ss;
    s->klen = 1 << 30;
    cr_assert_eq(fipc_dict_get(d, "a", buf, sizeof buf, &len), -ENOENT);
    cr_assert_eq(fipc_dict_foreach(d, check_vec, NULL), -EPROTO);
    *s = ss;
    s->cur = 0xfffffff1; /* masked to one of the two */
    cr_assert_eq(fipc_dict_get(d, "a", buf, sizeof buf, &len), 0);
    *s = ss;
    /* A sequence count stuck odd (a change that never ends): gets take
     * the lock and still find the value; the next set ends it. */
    s->seq = 0xffffffff;
    memset(buf, 0, sizeof buf);
    cr_assert_eq(fipc_dict_get(d, "a", buf, sizeof buf, &len), 0);
    cr_assert_eq(len, 16);
    cr_assert_eq(memcmp(buf, "1234567890123456", 16), 0);
    cr_assert_eq(fipc_dict_set(d, "a", "2", 1), 0);
    cr_assert_eq(s->seq % 2, 0);
    cr_assert_eq(fipc_dict_get(d, "a", buf, sizeof buf, &len), 0);
    cr_assert_eq(buf[0], '2');
    /* Stuck odd on a slot a probe passes: other keys still answer. */
    s->seq = 7;
    cr_assert_eq(fipc_dict_get(d, "zz", buf, sizeof buf, &len), -ENOENT);
    cr_assert_eq(fipc_dict_set(d, "zz", "3", 1), 0);
    cr_assert_eq(fipc_dict_get(d, "zz", buf, sizeof buf, &len), 0);
    cr_assert_eq(buf[0], '3');
    cr_assert_eq(fipc_dict_delete(d, "zz"), 0);
    *s = ss;

    /* Random garbage over every slot: every call returns, in bounds. */
    srand(5);
    for (int round = 0; round < 300; round++) {
        char *p = (char *)d + g.slots_off;
        for (int i = 0; i < 32; i++)
            p[rand() % (int)(g.slots * g.stride)] = (char)rand();
        char key[4] = {'a', (char)('a' + rand() % 8), 0};
        fipc_dict_get(d, key, buf, sizeof buf, &len);
        fipc_dict_set(d, key, "v", 1);
        fipc_dict_update(d, key, add_byte, (void *)1);
        fipc_dict_delete(d, key);
        fipc_dict_foreach(d, check_vec, NULL);
        cr_assert_leq(fipc_dict_len(d), 8);
    }
    (void)other;
}
