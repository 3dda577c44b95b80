/*
 * test_arena.c - fipc_arena: memfd-backed shared memory, its directory of
 * named objects, and handing it to other processes.
 *
 * Forked children report through their exit status.  Wherever a test needs
 * two views of one arena at different addresses it keeps both mapped at
 * once, so the addresses cannot coincide.
 */
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/random.h>
#include <sys/socket.h>

TestSuite(arena, .timeout = 30);

#define LIMIT_NS FIPC_SEC(10)
#define MIB      ((size_t)1 << 20)

/*
 * attach looks at a file that another process may be changing.  The
 * fcntl64() below takes the C library's place for every fipc call in this
 * program (the tests link the static libfipc.a; fipc is built with 64-bit
 * file offsets, so its fcntl calls are fcntl64) and forwards each call to
 * the kernel unchanged, except that when attach asks for the seals of the
 * file in race.fd, it first lets the process at the other end of race.go
 * act on the file and waits until it says it is done.
 */
static struct {
    int fd;
    int go[2], done[2];
} race = {.fd = -1};

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long); /* as the C library's own fcntl does */
    va_end(ap);
    if (cmd == F_GET_SEALS && fd == race.fd) {
        char c = 'g';
        if (write(race.go[1], &c, 1) != 1 || read(race.done[0], &c, 1) != 1) abort();
    }
    return (int)syscall(SYS_fcntl, fd, cmd, arg);
}

static fipc_arena *new_arena(size_t bytes)
{
    fipc_arena *a = NULL;
    int r = fipc_arena_create(&a, "test", bytes);
    cr_assert_eq(r, 0, "fipc_arena_create: %d", r);
    cr_assert_not_null(a);
    return a;
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i]) return false;
    return true;
}

/* A memfd holding n bytes from src (or zeros when src is NULL).  Sealed
 * against shrinking and growing like a real arena, unless asked not to, so
 * that attach has only the contents to object to. */
static int memfd_with(const void *src, size_t n, bool sealed)
{
    int fd = memfd_create("junk", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    cr_assert_geq(fd, 0, "memfd_create: %s", strerror(errno));
    cr_assert_eq(ftruncate(fd, (off_t)n), 0);
    if (src) cr_assert_eq(pwrite(fd, src, n, 0), (ssize_t)n);
    if (sealed) cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
    return fd;
}

/* ---------------------------------------------------------------- */
/* Create and allocate                                               */
/* ---------------------------------------------------------------- */

Test(arena, create_gives_an_arena_with_fd_size_and_header)
{
    fipc_arena *a = new_arena(MIB);
    int fd = fipc_arena_fd(a);
    cr_assert_geq(fd, 0);
    cr_assert_neq(fcntl(fd, F_GETFD), -1, "the arena's fd is not open");
    cr_assert_geq(fipc_arena_size(a), MIB);
    size_t used = fipc_arena_used(a);
    cr_assert_gt(used, 0, "the header should count as used");
    cr_assert_lt(used, fipc_arena_size(a));
    fipc_arena_close(a);
}

Test(arena, small_arenas_are_rounded_up_to_64k)
{
    fipc_arena *a = new_arena(1);
    size_t size = fipc_arena_size(a);
    cr_assert_geq(size, 64 * 1024);
    cr_assert_eq(size % (size_t)sysconf(_SC_PAGESIZE), 0);
    fipc_arena_close(a);
}

Test(arena, create_rejects_bad_arguments)
{
    fipc_arena *a = NULL;
    cr_assert_eq(fipc_arena_create(NULL, "x", MIB), -EINVAL);
    cr_assert_eq(fipc_arena_create(&a, "x", 0), -EINVAL);
    cr_assert_eq(fipc_arena_create(&a, "x", SIZE_MAX), -EINVAL);
    cr_assert_null(a);
    cr_assert_eq(fipc_arena_fd(NULL), -EINVAL);
    fipc_arena_close(NULL);
}

Test(arena, alloc_respects_alignment_and_zero_fills)
{
    fipc_arena *a = new_arena(MIB);
    for (size_t align = 1; align <= 4096; align *= 2) {
        /* An odd-sized allocation first, so the next one needs padding. */
        unsigned char *odd = fipc_arena_alloc(a, 3, 1);
        cr_assert_not_null(odd);
        unsigned char *p = fipc_arena_alloc(a, 100, align);
        cr_assert_not_null(p, "align %zu", align);
        cr_assert_eq((uintptr_t)p % align, 0, "%p is not aligned to %zu", (void *)p, align);
        cr_assert(all_zero(p, 100));
        cr_assert(p >= odd + 3, "allocations overlap");
        memset(p, 0xa5, 100);
    }
    /* align 0 means 16. */
    fipc_arena_alloc(a, 1, 1);
    void *p = fipc_arena_alloc(a, 8, 0);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % 16, 0);
    fipc_arena_close(a);
}

Test(arena, alloc_rejects_bad_alignment)
{
    fipc_arena *a = new_arena(MIB);
    size_t used = fipc_arena_used(a);
    cr_assert_null(fipc_arena_alloc(a, 8, 3));
    cr_assert_null(fipc_arena_alloc(a, 8, 24));
    cr_assert_null(fipc_arena_alloc(a, 8, 8192));
    cr_assert_null(fipc_arena_alloc(a, 8, (size_t)1 << 63));
    cr_assert_eq(fipc_arena_used(a), used, "a rejected alloc took space");
    fipc_arena_close(a);
}

Test(arena, alloc_returns_null_when_full)
{
    fipc_arena *a = new_arena(64 * 1024);
    size_t size = fipc_arena_size(a);
    cr_assert_null(fipc_arena_alloc(a, size, 16), "the header leaves less than size");
    cr_assert_null(fipc_arena_alloc(a, SIZE_MAX, 16));
    cr_assert_null(fipc_arena_alloc(a, SIZE_MAX - 4096, 4096));

    size_t n = 0;
    unsigned char *p, *last = NULL;
    while ((p = fipc_arena_alloc(a, 1024, 16)) != NULL) {
        cr_assert(all_zero(p, 1024));
        /* Every byte handed out is backed by the file: no SIGBUS here. */
        memset(p, 0x5a, 1024);
        cr_assert(last == NULL || p >= last + 1024);
        last = p;
        cr_assert_leq(++n * 1024, size);
    }
    cr_assert_gt(n, 0);
    cr_assert_null(fipc_arena_alloc(a, 1024, 16));
    cr_assert_leq(fipc_arena_used(a), size);
    fipc_arena_close(a);
}

struct many {
    fipc_arena *a;
    uint64_t *blocks[4][500];
};

static int alloc_and_stamp(int me, void *arg)
{
    struct many *s = arg;
    for (uint64_t i = 0; i < 500; i++) {
        uint64_t *b = fipc_arena_alloc(s->a, 32, 8);
        CHILD_CHECK(b != NULL, 1);
        CHILD_CHECK(all_zero(b, 32), 2);
        for (int w = 0; w < 4; w++)
            b[w] = (uint64_t)me << 32 | i;
        s->blocks[me][i] = b;
    }
    return CHILD_OK;
}

Test(arena, alloc_from_several_processes_never_overlaps)
{
    struct many *s = test_shared(sizeof *s);
    s->a = new_arena(4 * MIB);
    test_run_children(4, alloc_and_stamp, s);
    /* The children inherited the mapping at the same address: their block
     * pointers are valid here, and a block handed out twice would carry the
     * stamp of whichever process wrote last. */
    for (uint64_t me = 0; me < 4; me++)
        for (uint64_t i = 0; i < 500; i++)
            for (int w = 0; w < 4; w++)
                cr_assert_eq(s->blocks[me][i][w], me << 32 | i, "block %llu of child %llu",
                             (unsigned long long)i, (unsigned long long)me);
    cr_assert_geq(fipc_arena_used(s->a), 4 * 500 * 32);
}

/* ---------------------------------------------------------------- */
/* Directory                                                         */
/* ---------------------------------------------------------------- */

Test(arena, publish_and_lookup_find_objects_by_name)
{
    fipc_arena *a = new_arena(MIB);
    uint64_t *x = fipc_arena_alloc(a, sizeof *x, 8);
    uint64_t *y = fipc_arena_alloc(a, sizeof *y, 8);
    cr_assert_eq(fipc_arena_publish(a, "x", x), 0);
    cr_assert_eq(fipc_arena_publish(a, "y", y), 0);
    cr_assert_eq(fipc_arena_lookup(a, "x"), x);
    cr_assert_eq(fipc_arena_lookup(a, "y"), y);
    cr_assert_null(fipc_arena_lookup(a, "missing"));
    cr_assert_null(fipc_arena_lookup(a, "x2"));
    cr_assert_null(fipc_arena_lookup(a, ""));
    cr_assert_null(fipc_arena_lookup(a, NULL));
    cr_assert_null(fipc_arena_lookup(NULL, "x"));
    fipc_arena_close(a);
}

Test(arena, publish_rejects_duplicates_long_keys_and_outside_objects)
{
    fipc_arena *a = new_arena(MIB);
    fipc_arena *b = new_arena(MIB);
    char *obj = fipc_arena_alloc(a, 64, 8);
    char *other = fipc_arena_alloc(b, 64, 8);
    cr_assert_eq(fipc_arena_publish(a, "k", obj), 0);
    cr_assert_eq(fipc_arena_publish(a, "k", obj + 8), -EEXIST);
    cr_assert_eq(fipc_arena_lookup(a, "k"), obj, "a failed publish replaced the name");

    char key[FIPC_ARENA_KEY_MAX + 2];
    memset(key, 'k', sizeof key);
    key[FIPC_ARENA_KEY_MAX + 1] = '\0'; /* one too long */
    cr_assert_eq(fipc_arena_publish(a, key, obj), -ENAMETOOLONG);
    cr_assert_null(fipc_arena_lookup(a, key));
    key[FIPC_ARENA_KEY_MAX] = '\0'; /* the longest allowed */
    cr_assert_eq(fipc_arena_publish(a, key, obj + 16), 0);
    cr_assert_eq(fipc_arena_lookup(a, key), obj + 16);

    int on_stack;
    cr_assert_eq(fipc_arena_publish(a, "stack", &on_stack), -EINVAL);
    cr_assert_eq(fipc_arena_publish(a, "other", other), -EINVAL);
    cr_assert_eq(fipc_arena_publish(a, "null", NULL), -EINVAL);
    cr_assert_eq(fipc_arena_publish(a, "", obj), -EINVAL);
    cr_assert_eq(fipc_arena_publish(a, NULL, obj), -EINVAL);
    cr_assert_eq(fipc_arena_publish(NULL, "k2", obj), -EINVAL);
    cr_assert_null(fipc_arena_lookup(a, "stack"));
    cr_assert_null(fipc_arena_lookup(a, "other"));
    fipc_arena_close(b);
    fipc_arena_close(a);
}

Test(arena, publish_gives_enospc_when_directory_is_full)
{
    fipc_arena *a = new_arena(MIB);
    char *obj = fipc_arena_alloc(a, FIPC_ARENA_DIR_SLOTS + 1, 1);
    char key[16];
    for (int i = 0; i < FIPC_ARENA_DIR_SLOTS; i++) {
        snprintf(key, sizeof key, "obj%d", i);
        cr_assert_eq(fipc_arena_publish(a, key, obj + i), 0, "slot %d", i);
    }
    cr_assert_eq(fipc_arena_publish(a, "one-more", obj), -ENOSPC);
    for (int i = 0; i < FIPC_ARENA_DIR_SLOTS; i++) {
        snprintf(key, sizeof key, "obj%d", i);
        cr_assert_eq(fipc_arena_lookup(a, key), obj + i);
    }
    fipc_arena_close(a);
}

/* ---------------------------------------------------------------- */
/* Attach: other mappings, other processes                           */
/* ---------------------------------------------------------------- */

Test(arena, attach_in_same_process_maps_the_same_bytes_elsewhere)
{
    fipc_arena *a = new_arena(MIB);
    int fd = fipc_arena_fd(a);
    volatile uint64_t *v = fipc_arena_alloc(a, 8, 8);
    cr_assert_eq(fipc_arena_publish(a, "v", (void *)v), 0);
    *v = 42;

    fipc_arena *b = NULL;
    cr_assert_eq(fipc_arena_attach(&b, fd), 0);
    cr_assert_not_null(b);
    cr_assert_neq(fipc_arena_fd(b), fd, "attach must duplicate the fd");
    cr_assert_eq(fipc_arena_size(b), fipc_arena_size(a));
    volatile uint64_t *w = fipc_arena_lookup(b, "v");
    cr_assert_not_null((void *)w);
    cr_assert_neq((void *)w, (void *)v);
    cr_assert_eq(*w, 42);
    *w = 43;
    cr_assert_eq(*v, 43);

    /* Closing the attached view leaves the caller's fd and arena alone. */
    fipc_arena_close(b);
    cr_assert_neq(fcntl(fd, F_GETFD), -1, "attach took the caller's fd");
    cr_assert_eq(*v, 43);
    fipc_arena_close(a);
}

struct forked {
    fipc_arena *a;
    uint64_t *v;    /* in a, at the parent's (inherited) address */
    uint32_t step;  /* handshake */
    uint64_t *late; /* allocated by the parent after the child attached */
};

static int attach_two_views(int i, void *arg)
{
    struct forked *s = arg;
    int fd = fipc_arena_fd(s->a); /* inherited across fork */
    fipc_arena *b, *c;
    CHILD_CHECK(fipc_arena_attach(&b, fd) == 0, 1);
    CHILD_CHECK(fipc_arena_attach(&c, fd) == 0, 2);
    volatile uint64_t *vb = fipc_arena_lookup(b, "v");
    volatile uint64_t *vc = fipc_arena_lookup(c, "v");
    CHILD_CHECK(vb && vc, 3);
    CHILD_CHECK((void *)vb != (void *)vc && (void *)vb != s->v, 4);
    CHILD_CHECK(*vb == 42 && *vc == 42, 5);
    *vb = 7;
    CHILD_CHECK(*vc == 7, 6);
    *vc = 8;
    CHILD_CHECK(*(volatile uint64_t *)s->v == 8, 7);

    /* Memory the parent hands out after this attach is visible here. */
    __atomic_store_n(&s->step, 1, __ATOMIC_RELEASE);
    CHILD_CHECK(test_wait_until_at_least(&s->step, 2, LIMIT_NS), 8);
    volatile uint64_t *late = fipc_arena_lookup(b, "late");
    CHILD_CHECK(late != NULL, 9);
    CHILD_CHECK((char *)late - (char *)vb == (char *)s->late - (char *)s->v, 10);
    CHILD_CHECK(*late == 0x1234567890abcdefull, 11);
    *late = 0xfedcba0987654321ull;
    fipc_arena_close(c);
    fipc_arena_close(b);
    return CHILD_OK;
}

Test(arena, attach_in_forked_child_sees_objects_and_later_allocations)
{
    struct forked *s = test_shared(sizeof *s);
    s->a = new_arena(8 * MIB);
    s->v = fipc_arena_alloc(s->a, 8, 8);
    cr_assert_eq(fipc_arena_publish(s->a, "v", s->v), 0);
    *s->v = 42;

    pid_t pid = test_fork(attach_two_views, 0, s);
    cr_assert(test_wait_until_at_least(&s->step, 1, LIMIT_NS), "child never attached");
    /* A few MiB further in: pages nobody has touched yet. */
    char *big = fipc_arena_alloc(s->a, 4 * MIB, 4096);
    cr_assert_not_null(big);
    uint64_t *late = (uint64_t *)(big + 4 * MIB - 64);
    *late = 0x1234567890abcdefull;
    cr_assert_eq(fipc_arena_publish(s->a, "late", late), 0);
    s->late = late;
    __atomic_store_n(&s->step, 2, __ATOMIC_RELEASE);
    test_expect_ok(pid);
    cr_assert_eq(*s->v, 8);
    cr_assert_eq(*late, 0xfedcba0987654321ull);
    fipc_arena_close(s->a);
}

/* ---------------------------------------------------------------- */
/* send / recv                                                       */
/* ---------------------------------------------------------------- */

static int recv_and_modify(int i, void *arg)
{
    int sock = *(int *)arg;
    fipc_arena *b = NULL;
    char c;
    CHILD_CHECK(fipc_arena_recv(sock, &b) == 0, 1);
    CHILD_CHECK(b != NULL, 2);
    uint64_t *counter = fipc_arena_lookup(b, "counter");
    CHILD_CHECK(counter != NULL, 3);
    CHILD_CHECK(__atomic_load_n(counter, __ATOMIC_ACQUIRE) == 100, 4);
    __atomic_fetch_add(counter, 1, __ATOMIC_RELEASE);
    c = 'A';
    CHILD_CHECK(write(sock, &c, 1) == 1, 5);

    /* The parent allocates more after our attach. */
    CHILD_CHECK(read(sock, &c, 1) == 1 && c == 'B', 6);
    uint64_t *late = fipc_arena_lookup(b, "late");
    CHILD_CHECK(late != NULL, 7);
    CHILD_CHECK(__atomic_load_n(late, __ATOMIC_ACQUIRE) == 555, 8);
    __atomic_store_n(late, 556, __ATOMIC_RELEASE);
    fipc_arena_close(b);
    return CHILD_OK;
}

Test(arena, send_hands_arena_to_a_process_that_did_not_inherit_it)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    /* Fork first: the child shares nothing with the arena made below. */
    pid_t pid = test_fork(recv_and_modify, 0, &sv[1]);
    close(sv[1]);

    fipc_arena *a = new_arena(8 * MIB);
    uint64_t *counter = fipc_arena_alloc(a, 8, 8);
    *counter = 100;
    cr_assert_eq(fipc_arena_publish(a, "counter", counter), 0);
    cr_assert_eq(fipc_arena_send(sv[0], a), 0);

    char c = 0;
    cr_assert_eq(read(sv[0], &c, 1), 1, "child gave up before attaching");
    cr_assert_eq(c, 'A');
    cr_assert_eq(__atomic_load_n(counter, __ATOMIC_ACQUIRE), 101);

    char *big = fipc_arena_alloc(a, 2 * MIB, 64);
    cr_assert_not_null(big);
    uint64_t *late = (uint64_t *)(big + 2 * MIB - 8);
    __atomic_store_n(late, 555, __ATOMIC_RELEASE);
    cr_assert_eq(fipc_arena_publish(a, "late", late), 0);
    c = 'B';
    cr_assert_eq(write(sv[0], &c, 1), 1);

    test_expect_ok(pid);
    cr_assert_eq(__atomic_load_n(late, __ATOMIC_ACQUIRE), 556);
    close(sv[0]);
    fipc_arena_close(a);
}

Test(arena, send_to_a_closed_peer_gives_epipe_without_sigpipe)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    fipc_arena *a = new_arena(MIB);
    /* SIGPIPE would end this test process: reaching the assert is the point. */
    cr_assert_eq(fipc_arena_send(sv[0], a), -EPIPE);
    close(sv[0]);
    fipc_arena_close(a);
}

Test(arena, recv_without_a_descriptor_gives_eproto)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    char junk[64];
    memset(junk, 'j', sizeof junk);
    cr_assert_eq(write(sv[1], junk, sizeof junk), (ssize_t)sizeof junk);
    fipc_arena *b = NULL;
    cr_assert_eq(fipc_arena_recv(sv[0], &b), -EPROTO);
    cr_assert_null(b);
    close(sv[0]);
    close(sv[1]);
}

Test(arena, recv_from_a_closed_peer_gives_epipe)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    fipc_arena *b = NULL;
    cr_assert_eq(fipc_arena_recv(sv[0], &b), -EPIPE);
    cr_assert_null(b);
    close(sv[0]);
}

/* ---------------------------------------------------------------- */
/* attach: bad descriptors                                            */
/* ---------------------------------------------------------------- */

Test(arena, attach_of_dev_null_fails_cleanly)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    fipc_arena *b = NULL;
    int r = fipc_arena_attach(&b, fd);
    cr_assert(r == -EBADF || r == -EPROTO, "attach(/dev/null) = %d", r);
    cr_assert_null(b);
    close(fd);
}

Test(arena, attach_of_a_pipe_fails_cleanly)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fipc_arena *b = NULL;
    int r = fipc_arena_attach(&b, fds[0]);
    cr_assert(r == -EBADF || r == -EPROTO, "attach(pipe) = %d", r);
    cr_assert_null(b);
    close(fds[0]);
    close(fds[1]);
}

Test(arena, attach_of_random_bytes_gives_eproto)
{
    unsigned char *junk = malloc(MIB);
    cr_assert_not_null(junk);
    for (size_t got = 0; got < MIB;) {
        ssize_t n = getrandom(junk + got, MIB - got, 0);
        cr_assert_gt(n, 0, "getrandom: %s", strerror(errno));
        got += (size_t)n;
    }
    int fd = memfd_with(junk, MIB, true);
    free(junk);
    fipc_arena *b = NULL;
    cr_assert_eq(fipc_arena_attach(&b, fd), -EPROTO);
    cr_assert_null(b);
    close(fd);
}

Test(arena, attach_of_a_closed_fd_gives_ebadf)
{
    cr_assert_eq(fcntl(12345, F_GETFD), -1, "fd 12345 happens to be open");
    fipc_arena *b = NULL;
    cr_assert_eq(fipc_arena_attach(&b, 12345), -EBADF);
    cr_assert_eq(fipc_arena_attach(&b, -1), -EBADF);
    cr_assert_null(b);
    int fd = memfd_with(NULL, MIB, true);
    cr_assert_eq(fipc_arena_attach(NULL, fd), -EINVAL);
    close(fd);
}

Test(arena, attach_of_a_truncated_file_gives_eproto)
{
    fipc_arena *b = NULL;
    int fd = memfd_with(NULL, 10, true);
    cr_assert_eq(fipc_arena_attach(&b, fd), -EPROTO);
    close(fd);
    fd = memfd_with(NULL, 0, true);
    cr_assert_eq(fipc_arena_attach(&b, fd), -EPROTO);
    close(fd);
    cr_assert_null(b);
}

/* A real header in a file shorter than the size it claims must be refused:
 * mapping the claimed size would fault (SIGBUS) past the end of the file. */
Test(arena, attach_of_a_header_copied_into_a_short_file_gives_eproto)
{
    fipc_arena *a = new_arena(4 * MIB);
    size_t n = 64 * 1024;
    unsigned char *head = malloc(n);
    cr_assert_not_null(head);
    cr_assert_eq(pread(fipc_arena_fd(a), head, n, 0), (ssize_t)n);
    int fd = memfd_with(head, n, true);
    free(head);

    fipc_arena *b = NULL;
    cr_assert_eq(fipc_arena_attach(&b, fd), -EPROTO);
    cr_assert_null(b);
    close(fd);
    fipc_arena_close(a);
}

/* A byte-for-byte copy of a real arena in a memfd whose size is not sealed:
 * its sender could shrink it under the receiver's mapping (SIGBUS), so
 * attach refuses it. */
Test(arena, attach_of_an_unsealed_copy_gives_eproto)
{
    fipc_arena *a = new_arena(MIB);
    uint64_t *v = fipc_arena_alloc(a, 8, 8);
    cr_assert_eq(fipc_arena_publish(a, "v", v), 0);
    size_t n = fipc_arena_size(a);
    unsigned char *copy = malloc(n);
    cr_assert_not_null(copy);
    cr_assert_eq(pread(fipc_arena_fd(a), copy, n, 0), (ssize_t)n);
    int fd = memfd_with(copy, n, false);
    free(copy);

    fipc_arena *b = NULL;
    cr_assert_eq(fipc_arena_attach(&b, fd), -EPROTO);
    cr_assert_null(b);
    close(fd);
    fipc_arena_close(a);
}

/* ---------------------------------------------------------------- */
/* The default arena                                                 */
/* ---------------------------------------------------------------- */

struct def {
    fipc_arena *d;
    fipc_lock *lock;
    uint64_t *counter;
};

static int count_under_default_lock(int i, void *arg)
{
    struct def *s = arg;
    CHILD_CHECK(fipc_default_arena() == s->d, 1);
    CHILD_CHECK(fipc_arena_lookup(s->d, "lock") == s->lock, 2);
    for (int n = 0; n < 2000; n++) {
        CHILD_CHECK(fipc_lock_acquire(s->lock, LIMIT_NS) == 0, 3);
        uint64_t v = *(volatile uint64_t *)s->counter;
        *(volatile uint64_t *)s->counter = v + 1;
        CHILD_CHECK(fipc_lock_release(s->lock) == 0, 4);
    }
    return CHILD_OK;
}

Test(arena, default_arena_is_one_arena_inherited_by_children)
{
    fipc_arena *d = fipc_default_arena();
    cr_assert_not_null(d);
    cr_assert_eq(fipc_default_arena(), d);
    cr_assert_geq(fipc_arena_fd(d), 0);

    struct def *s = test_shared(sizeof *s);
    s->d = d;
    s->lock = fipc_lock_new(NULL);
    cr_assert_not_null(s->lock);
    /* _new(NULL) allocates in the default arena: publish accepts it there. */
    cr_assert_eq(fipc_arena_publish(d, "lock", s->lock), 0);
    s->counter = fipc_arena_alloc(d, sizeof *s->counter, 8);
    cr_assert_not_null(s->counter);

    test_run_children(2, count_under_default_lock, s);
    /* Private copies would have left the parent's counter at 0. */
    cr_assert_eq(*s->counter, 4000);
    cr_assert_not(fipc_lock_locked(s->lock));
}

Test(arena, closing_the_default_arena_keeps_it_mapped)
{
    fipc_arena *d = fipc_default_arena();
    cr_assert_not_null(d);
    uint64_t *v = fipc_arena_alloc(d, 8, 8);
    cr_assert_not_null(v);
    *v = 9;
    fipc_arena_close(d);
    cr_assert_eq(fipc_default_arena(), d);
    cr_assert_eq(*(volatile uint64_t *)v, 9);
    cr_assert_not_null(fipc_arena_alloc(d, 8, 8));
}

Test(arena, default_arena_size_follows_the_environment)
{
    /* Each Criterion test runs in its own process, so the default arena of
     * this one does not exist yet. */
    cr_assert_eq(setenv("FIPC_ARENA_SIZE", "4194304", 1), 0);
    fipc_arena *d = fipc_default_arena();
    cr_assert_not_null(d);
    cr_assert_eq(fipc_arena_size(d), 4 * MIB);
}

/* ---------------------------------------------------------------- */
/* recv: what else a message may carry                               */
/* ---------------------------------------------------------------- */

/* Entries in /proc/self/fd (-1 if it cannot be read); usable in children. */
static int count_fds_raw(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int open_fds(void)
{
    int n = count_fds_raw();
    cr_assert_geq(n, 0, "/proc/self/fd: %s", strerror(errno));
    return n;
}

/* One message as fipc_arena_send makes it (the magic), carrying k
 * descriptors. */
static int send_with_fds(int sock, const int *fds, int k)
{
    uint64_t magic = 0x414e455241435049ull;
    struct iovec iov = {.iov_base = &magic, .iov_len = sizeof magic};
    union {
        char buf[CMSG_SPACE(32 * sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr m = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = u.buf,
                       .msg_controllen = CMSG_SPACE((size_t)k * sizeof(int))};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)k * sizeof(int));
    memcpy(CMSG_DATA(c), fds, (size_t)k * sizeof(int));
    return sendmsg(sock, &m, MSG_NOSIGNAL) == (ssize_t)sizeof magic ? 0 : -1;
}

#define EXTRA_MESSAGES 20
#define MANY_FDS       24

struct extra_fds {
    fipc_arena *a;
    int sock;
};

/* A peer that sends descriptors fipc_arena_send never would, then one
 * well-formed arena. */
static int send_extra_fds_child(int i, void *arg)
{
    struct extra_fds *x = arg;
    int fd = fipc_arena_fd(x->a);
    int fds[MANY_FDS];
    for (int k = 0; k < MANY_FDS; k++)
        fds[k] = fd;
    for (int k = 0; k < EXTRA_MESSAGES; k++)
        CHILD_CHECK(send_with_fds(x->sock, fds, 2) == 0, 1);
    CHILD_CHECK(send_with_fds(x->sock, fds, MANY_FDS) == 0, 2);
    CHILD_CHECK(fipc_arena_send(x->sock, x->a) == 0, 3);
    return CHILD_OK;
}

/* Every descriptor that arrives is closed unless it becomes the arena;
 * SO_PASSCRED credentials (or any other control message) are no reason to
 * refuse one. */
Test(arena, recv_closes_every_extra_descriptor_and_accepts_a_socket_with_so_passcred)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int on = 1;
    cr_assert_eq(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on), 0);
    struct extra_fds x = {.a = new_arena(MIB), .sock = sv[0]};
    uint64_t *v = fipc_arena_alloc(x.a, 8, 8);
    *v = 77;
    cr_assert_eq(fipc_arena_publish(x.a, "v", v), 0);
    int before = open_fds();
    pid_t pid = test_fork(send_extra_fds_child, 0, &x);

    fipc_arena *b = NULL;
    for (int k = 0; k < EXTRA_MESSAGES; k++) {
        cr_assert_eq(fipc_arena_recv(sv[1], &b), -EPROTO, "two descriptors, message %d", k);
        cr_assert_null(b);
    }
    cr_assert_eq(fipc_arena_recv(sv[1], &b), -EPROTO, "%d descriptors", MANY_FDS);
    cr_assert_null(b);
    cr_assert_eq(open_fds(), before, "recv left descriptors open");

    int r = fipc_arena_recv(sv[1], &b);
    cr_assert_eq(r, 0, "recv of a well-formed send on a SO_PASSCRED socket gave %d (%s)", r,
                 fipc_strerror(r));
    cr_assert_eq(*(uint64_t *)fipc_arena_lookup(b, "v"), 77);
    fipc_arena_close(b);
    cr_assert_eq(open_fds(), before, "recv left descriptors open");
    test_expect_ok(pid);
    close(sv[0]);
    close(sv[1]);
    fipc_arena_close(x.a);
}

/* ---------------------------------------------------------------- */
/* attach: a sender that changes the file meanwhile                  */
/* ---------------------------------------------------------------- */

struct shrinker {
    int fd;
};

/* The sender: when attach looks at the seals, it shrinks the file to
 * nothing and only then seals it. */
static int shrink_then_seal_child(int i, void *arg)
{
    struct shrinker *s = arg;
    char c;
    close(race.go[1]); /* so that the read ends if attach never asks */
    close(race.done[0]);
    CHILD_CHECK(read(race.go[0], &c, 1) == 1, 1);
    CHILD_CHECK(ftruncate(s->fd, 0) == 0, 2);
    CHILD_CHECK(fcntl(s->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0, 3);
    CHILD_CHECK(write(race.done[1], &c, 1) == 1, 4);
    return CHILD_OK;
}

/* The size of a file means something only once it is sealed: attach reads
 * the seals first, so a sender that shrinks the file and then seals it is
 * refused instead of leaving a mapping that raises SIGBUS. */
Test(arena, attach_reads_the_size_after_the_seals_so_a_file_shrunk_then_sealed_is_refused)
{
    fipc_arena *good = new_arena(MIB);
    unsigned char *copy = malloc(MIB);
    cr_assert_not_null(copy);
    cr_assert_eq(pread(fipc_arena_fd(good), copy, MIB, 0), (ssize_t)MIB);
    struct shrinker s = {.fd = memfd_with(copy, MIB, false)}; /* a valid header, not sealed yet */
    free(copy);
    cr_assert_eq(pipe(race.go), 0);
    cr_assert_eq(pipe(race.done), 0);
    pid_t pid = test_fork(shrink_then_seal_child, 0, &s);

    race.fd = s.fd;
    fipc_arena *b = NULL;
    int r = fipc_arena_attach(&b, s.fd);
    race.fd = -1;
    close(race.go[1]);
    test_expect_ok(pid); /* check 1: attach never asked for the seals */
    cr_assert_eq(r, -EPROTO, "attach gave %d", r);
    cr_assert_null(b);
    /* Had it been accepted, this is where SIGBUS would strike. */
    cr_assert_null(fipc_arena_lookup(b, "anything"));
    close(race.go[0]);
    close(race.done[0]);
    close(race.done[1]);
    close(s.fd);
    fipc_arena_close(good);
}

/* ---------------------------------------------------------------- */
/* attach: descriptors an arena cannot be mapped from                 */
/* ---------------------------------------------------------------- */

Test(arena, attach_of_a_read_only_or_write_only_descriptor_gives_ebadf)
{
    fipc_arena *a = new_arena(MIB);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fipc_arena_fd(a));
    int ro = open(path, O_RDONLY | O_CLOEXEC), wo = open(path, O_WRONLY | O_CLOEXEC);
    cr_assert(ro >= 0 && wo >= 0, "reopen: %s", strerror(errno));
    fipc_arena *b = NULL;
    cr_assert_eq(fipc_arena_attach(&b, ro), -EBADF);
    cr_assert_eq(fipc_arena_attach(&b, wo), -EBADF);
    cr_assert_null(b);
    close(ro);
    close(wo);
    fipc_arena_close(a);
}

Test(arena, attach_of_a_write_sealed_copy_gives_eproto)
{
    fipc_arena *a = new_arena(MIB);
    size_t n = fipc_arena_size(a);
    unsigned char *copy = malloc(n);
    cr_assert_not_null(copy);
    cr_assert_eq(pread(fipc_arena_fd(a), copy, n, 0), (ssize_t)n);
    int seals[] = {F_SEAL_WRITE, F_SEAL_FUTURE_WRITE};
    for (size_t k = 0; k < sizeof seals / sizeof *seals; k++) {
        int fd = memfd_with(copy, n, false);
        cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | seals[k]), 0);
        fipc_arena *b = NULL;
        int r = fipc_arena_attach(&b, fd);
        cr_assert_eq(r, -EPROTO, "seal %#x: attach gave %d", seals[k], r);
        cr_assert_null(b);
        close(fd);
    }
    free(copy);
    fipc_arena_close(a);
}

/* ---------------------------------------------------------------- */
/* A header that a peer overwrote                                     */
/* ---------------------------------------------------------------- */

/* Offsets in the header (docs/arena.md, Layout of the file). */
#define HDR_CURSOR   24
#define HDR_DIR      72
#define ENTRY_SIZE   56
#define ENTRY_OFFSET 48

struct peer_write {
    int fd;          /* the arena's */
    size_t at;       /* where in the file */
    const void *src; /* what to write there */
    size_t len;
};

/* A peer writes into the header through a mapping of its own (it needs no
 * fipc to do so). */
static int peer_write_child(int i, void *arg)
{
    struct peer_write *w = arg;
    char *hdr = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, w->fd, 0);
    CHILD_CHECK(hdr != MAP_FAILED, 1);
    memcpy(hdr + w->at, w->src, w->len);
    munmap(hdr, 4096);
    return CHILD_OK;
}

static void peer_writes(fipc_arena *a, size_t at, const void *src, size_t len)
{
    struct peer_write w = {.fd = fipc_arena_fd(a), .at = at, .src = src, .len = len};
    test_expect_ok(test_fork(peer_write_child, 0, &w));
}

static void peer_writes_u64(fipc_arena *a, size_t at, uint64_t v)
{
    peer_writes(a, at, &v, sizeof v);
}

/* The allocation cursor is shared: a value that cannot be right makes
 * alloc fail, never hand out the header or memory past the end. */
Test(arena, alloc_after_a_peer_wrote_garbage_into_the_cursor_gives_null)
{
    fipc_arena *a = new_arena(MIB);
    size_t size = fipc_arena_size(a), used = fipc_arena_used(a);
    const uint64_t garbage[] = {UINT64_MAX - 8,    UINT64_MAX, (uint64_t)size + 1, 1ull << 63, 0, 8,
                                (uint64_t)used - 1};
    for (size_t k = 0; k < sizeof garbage / sizeof *garbage; k++) {
        peer_writes_u64(a, HDR_CURSOR, garbage[k]);
        cr_assert_null(fipc_arena_alloc(a, 64, 64), "cursor %#llx: alloc did not fail",
                       (unsigned long long)garbage[k]);
        cr_assert_null(fipc_arena_alloc(a, 1, 1), "cursor %#llx", (unsigned long long)garbage[k]);
        cr_assert_null(fipc_lock_new(a), "cursor %#llx", (unsigned long long)garbage[k]);
        cr_assert_leq(fipc_arena_used(a), size);
    }
    /* At the very end: full, not broken. */
    peer_writes_u64(a, HDR_CURSOR, size);
    cr_assert_null(fipc_arena_alloc(a, 1, 1));
    cr_assert_eq(fipc_arena_used(a), size);
    /* Put back, allocation resumes above the header. */
    peer_writes_u64(a, HDR_CURSOR, used);
    char *p = fipc_arena_alloc(a, 64, 64);
    cr_assert_not_null(p);
    cr_assert_eq(fipc_arena_publish(a, "p", p), 0, "the object lies past the header");
    fipc_arena_close(a);
}

static void peer_writes_entry(fipc_arena *a, int slot, const char *key, size_t keylen, uint64_t off)
{
    char k[FIPC_ARENA_KEY_MAX + 1] = {0};
    memcpy(k, key, keylen);
    peer_writes(a, HDR_DIR + (size_t)slot * ENTRY_SIZE, k, sizeof k);
    peer_writes_u64(a, HDR_DIR + (size_t)slot * ENTRY_SIZE + ENTRY_OFFSET, off);
}

/* Directory entries are shared too: an offset into the header or past the
 * end, or a key without its NUL, is never followed; publish then refuses
 * to add to a directory it cannot trust. */
Test(arena, lookup_and_publish_after_a_peer_wrote_garbage_into_the_directory)
{
    fipc_arena *a = new_arena(MIB);
    size_t size = fipc_arena_size(a);
    uint64_t *obj = fipc_arena_alloc(a, 8, 8);
    cr_assert_not_null(obj);
    uint64_t good_off = fipc_arena_used(a) - 8; /* obj's offset: it ends the used part */
    cr_assert_eq(fipc_arena_publish(a, "good", obj), 0);

    char longkey[FIPC_ARENA_KEY_MAX + 1];
    memset(longkey, 'k', sizeof longkey); /* fills the slot: no NUL */
    peer_writes_entry(a, 1, "in-header", 9, 8);
    peer_writes_entry(a, 2, "past-end", 8, size);
    peer_writes_entry(a, 3, "far", 3, UINT64_MAX);
    peer_writes_entry(a, 4, longkey, sizeof longkey, good_off);

    cr_assert_eq(fipc_arena_lookup(a, "good"), obj, "a good entry is still found");
    cr_assert_null(fipc_arena_lookup(a, "in-header"));
    cr_assert_null(fipc_arena_lookup(a, "past-end"));
    cr_assert_null(fipc_arena_lookup(a, "far"));
    longkey[FIPC_ARENA_KEY_MAX] = '\0';
    cr_assert_null(fipc_arena_lookup(a, longkey), "a key without its NUL matched a prefix");
    cr_assert_eq(fipc_arena_publish(a, "new", obj), -EPROTO);
    cr_assert_null(fipc_arena_lookup(a, "new"));
    fipc_arena_close(a);
}

/* ---------------------------------------------------------------- */
/* Another pid namespace                                              */
/* ---------------------------------------------------------------- */

struct pidns_arena {
    fipc_arena *a; /* made in the test's namespace */
    int sock;      /* the arena arrives on it */
    int32_t attach_r, recv_r, own_r;
    int32_t fds_before, fds_after;
};

/* pid 1 of a new pid namespace. */
static int pidns_attacher(struct pidns_arena *p)
{
    fipc_arena *b = NULL, *own = NULL, *own2 = NULL;
    p->attach_r = fipc_arena_attach(&b, fipc_arena_fd(p->a));
    p->fds_before = count_fds_raw();
    p->recv_r = fipc_arena_recv(p->sock, &b);
    p->fds_after = count_fds_raw();
    /* An arena made in this namespace is fine here. */
    CHILD_CHECK(fipc_arena_create(&own, "own", MIB) == 0, 1);
    p->own_r = fipc_arena_attach(&own2, fipc_arena_fd(own));
    return CHILD_OK;
}

static int pidns_arena_child(int i, void *arg)
{
    struct pidns_arena *p = arg;
    test_child_setup();
    if (unshare(CLONE_NEWPID) != 0 && unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0) return 101;
    pid_t pid = fork(); /* the first process of the new namespace */
    if (pid < 0) return 102;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        _exit(pidns_attacher(p));
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 103;
    return WEXITSTATUS(status);
}

/* Locks hold thread ids, which mean the same thing only within one pid
 * namespace: a process of another refuses the arena, by attach or recv. */
Test(arena, attach_and_recv_in_another_pid_namespace_give_exdev)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct pidns_arena *p = test_shared(sizeof *p);
    p->a = new_arena(MIB);
    p->sock = sv[1];
    cr_assert_eq(fipc_arena_send(sv[0], p->a), 0);
    pid_t pid = test_fork(pidns_arena_child, 0, p);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the other namespace's side failed (status %#x)", status);
    cr_assert_eq(p->attach_r, -EXDEV, "attach gave %d", p->attach_r);
    cr_assert_eq(p->recv_r, -EXDEV, "recv gave %d", p->recv_r);
    cr_assert_eq(p->fds_after, p->fds_before, "recv left the descriptor open");
    cr_assert_eq(p->own_r, 0, "an arena of the same namespace: attach gave %d", p->own_r);
    cr_assert_not_null(strstr(fipc_strerror(-EXDEV), "namespace"), "%s", fipc_strerror(-EXDEV));
    close(sv[0]);
    close(sv[1]);
    fipc_arena_close(p->a);
}
