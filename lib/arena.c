/*
 * arena.c - memfd-backed shared memory.
 *
 * Layout of the file (all offsets from the start of the mapping):
 *
 *   0      struct arena_header: magic, version, size, allocation cursor,
 *          the directory's lock and FIPC_ARENA_DIR_SLOTS named entries
 *   ...    objects, handed out by a lock-free bump allocator
 *
 * The file is created at its final size and sealed (no shrink, no grow),
 * so a process that maps it can never be hit by SIGBUS from another
 * process truncating it; tmpfs allocates pages only when first touched.
 * Each process maps the whole file, so memory handed out later is already
 * mapped everywhere.
 */
#include <fcntl.h>
#include <linux/memfd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fipc/arena.h>

#include "arena_impl.h"
#include "atomic.h"
#include "lock_impl.h"

#define ARENA_MAGIC   0x414e455241435049ull /* "IPCARENA" */
#define ARENA_VERSION 1u
#define ARENA_MIN     ((size_t)64 << 10)
#define ARENA_MAX     ((size_t)1 << 46)
#define ALIGN_MAX     4096u

struct arena_entry {
    char key[FIPC_ARENA_KEY_MAX + 1];
    uint64_t offset; /* 0: the slot is free (no object lives at offset 0) */
};

struct arena_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint64_t size;   /* bytes in the file, fixed at creation */
    uint64_t cursor; /* offset of the first byte not yet handed out */
    struct lock_impl dir_lock; /* the lock core (lock.c), robust like fipc_lock */
    struct arena_entry dir[FIPC_ARENA_DIR_SLOTS];
};
static_assert(sizeof(struct arena_header) < ARENA_MIN, "header fits the smallest arena");

/* The process-local handle. */
struct fipc_arena {
    struct arena_header *hdr; /* the mapping; its base */
    size_t size;
    int fd;
    bool is_default;
    struct fipc_arena *next; /* the registry of this process's mappings */
};

static void registry_add(fipc_arena *a);
static void registry_remove(fipc_arena *a);

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) & ~(to - 1);
}

static int map_arena(fipc_arena **out, int fd, size_t size)
{
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        return -errno;
    fipc_arena *a = calloc(1, sizeof *a);
    if (!a) {
        munmap(base, size);
        return -ENOMEM;
    }
    a->hdr = base;
    a->size = size;
    a->fd = fd;
    registry_add(a);
    *out = a;
    return 0;
}

int fipc_arena_create(fipc_arena **out, const char *name, size_t max_bytes)
{
    if (!out || max_bytes == 0 || max_bytes > ARENA_MAX)
        return -EINVAL;
    size_t size = round_up(max_bytes < ARENA_MIN ? ARENA_MIN : max_bytes, page_size());

    int fd = memfd_create(name ? name : "fipc-arena", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    int r;
    if (ftruncate(fd, (off_t)size) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    fipc_arena *a = NULL;
    if ((r = map_arena(&a, fd, size)) < 0) {
        close(fd);
        return r;
    }
    struct arena_header *h = a->hdr;
    h->version = ARENA_VERSION;
    h->header_size = sizeof *h;
    h->size = size;
    h->cursor = round_up(sizeof *h, FIPC_CACHELINE);
    h->dir_lock = (struct lock_impl){0}; /* released */
    /* The magic goes last: a header that has it is complete.  Nobody else
     * can see the arena before its fd leaves this process, which implies a
     * system call, so no fence is needed here. */
    h->magic = ARENA_MAGIC;
    *out = a;
    return 0;
}

int fipc_arena_attach(fipc_arena **out, int fd)
{
    if (!out)
        return -EINVAL;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -EBADF;
    if (!S_ISREG(st.st_mode))
        return -EBADF;
    if ((size_t)st.st_size < sizeof(struct arena_header))
        return -EPROTO;

    /* Read the header through a copy before mapping anything writable. */
    struct arena_header h;
    if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
        return -EPROTO;
    if (h.magic != ARENA_MAGIC || h.version != ARENA_VERSION || h.header_size != sizeof h ||
        h.size != (uint64_t)st.st_size || h.size % page_size() != 0 || h.cursor > h.size ||
        h.cursor < sizeof h)
        return -EPROTO;
    /* Only a file whose size is sealed is safe to map: if its owner could
     * shrink it, touching the lost pages would raise SIGBUS here.  Every
     * arena is sealed at creation, so a file that is not is no arena. */
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
        return -EPROTO;

    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0)
        return -errno;
    fipc_arena *a = NULL;
    int r = map_arena(&a, own, (size_t)h.size);
    if (r < 0)
        close(own);
    else
        *out = a;
    return r;
}

int fipc_arena_fd(const fipc_arena *a)
{
    return a ? a->fd : -EINVAL;
}

size_t fipc_arena_size(const fipc_arena *a)
{
    return a ? a->size : 0;
}

size_t fipc_arena_used(const fipc_arena *a)
{
    return a ? (size_t)load_relaxed(&a->hdr->cursor) : 0;
}

void *fipc_arena_alloc(fipc_arena *a, size_t size, size_t align)
{
    if (!a || size == 0)
        return NULL;
    if (align == 0)
        align = 16;
    if ((align & (align - 1)) != 0 || align > ALIGN_MAX)
        return NULL;
    struct arena_header *h = a->hdr;
    uint64_t cur = load_relaxed(&h->cursor), start, end;
    do {
        start = round_up(cur, align);
        end = start + size;
        if (end < start || end > a->size)
            return NULL;
        /* relaxed: the range is ours alone once the CAS succeeds; the
         * memory is zero (tmpfs pages start zeroed, and nothing is ever
         * handed out twice). */
    } while (!cas_relaxed(&h->cursor, &cur, end));
    return (char *)h + start;
}

static bool inside(const fipc_arena *a, const void *p)
{
    const char *c = p, *base = (const char *)a->hdr;
    return c >= base + sizeof(struct arena_header) && c < base + a->size;
}

int fipc_arena_publish(fipc_arena *a, const char *key, const void *obj)
{
    if (!a || !key || !*key || !obj || !inside(a, obj))
        return -EINVAL;
    if (strlen(key) > FIPC_ARENA_KEY_MAX)
        return -ENAMETOOLONG;
    struct arena_header *h = a->hdr;
    int r = fipc__lock_acquire(&h->dir_lock, FIPC_FOREVER);
    if (r < 0 && r != -EOWNERDEAD)
        return r;
    /* A holder that died mid-publish left at most one entry with a key and
     * no offset: such an entry counts as free, so nothing needs repair. */
    struct arena_entry *free_slot = NULL;
    r = 0;
    for (int i = 0; i < FIPC_ARENA_DIR_SLOTS; i++) {
        struct arena_entry *e = &h->dir[i];
        uint64_t off = load_relaxed(&e->offset);
        if (off == 0) {
            if (!free_slot)
                free_slot = e;
        } else if (strcmp(e->key, key) == 0) {
            r = -EEXIST;
            break;
        }
    }
    if (r == 0 && !free_slot)
        r = -ENOSPC;
    if (r == 0) {
        memset(free_slot->key, 0, sizeof free_slot->key);
        strcpy(free_slot->key, key);
        /* release: lookup reads the offset with acquire, then the key. */
        store_release(&free_slot->offset, (uint64_t)((const char *)obj - (const char *)h));
    }
    fipc__lock_release(&h->dir_lock);
    return r;
}

void *fipc_arena_lookup(fipc_arena *a, const char *key)
{
    if (!a || !key)
        return NULL;
    struct arena_header *h = a->hdr;
    /* Entries are written once and never removed, so readers need no lock:
     * an entry whose offset is visible (acquire, pairs with publish's
     * release store) has its key in place. */
    for (int i = 0; i < FIPC_ARENA_DIR_SLOTS; i++) {
        struct arena_entry *e = &h->dir[i];
        uint64_t off = load_acquire(&e->offset);
        if (off != 0 && strncmp(e->key, key, sizeof e->key) == 0)
            return off < a->size ? (char *)h + off : NULL;
    }
    return NULL;
}

int fipc_arena_send(int sock, const fipc_arena *a)
{
    if (!a)
        return -EINVAL;
    uint64_t magic = ARENA_MAGIC;
    struct iovec iov = {.iov_base = &magic, .iov_len = sizeof magic};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &a->fd, sizeof(int));
    ssize_t n;
    do
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

int fipc_arena_recv(int sock, fipc_arena **out)
{
    if (!out)
        return -EINVAL;
    uint64_t magic = 0;
    struct iovec iov = {.iov_base = &magic, .iov_len = sizeof magic};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    ssize_t n;
    do
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -EPIPE; /* the peer closed the socket */
    int fd = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(&fd, CMSG_DATA(c), sizeof fd);
    if (fd < 0)
        return -EPROTO;
    int r = (n == (ssize_t)sizeof magic && magic == ARENA_MAGIC && !(msg.msg_flags & MSG_CTRUNC))
                ? fipc_arena_attach(out, fd)
                : -EPROTO;
    close(fd); /* attach keeps a duplicate */
    return r;
}

void fipc_arena_close(fipc_arena *a)
{
    if (!a || a->is_default)
        return;
    registry_remove(a);
    munmap(a->hdr, a->size);
    close(a->fd);
    free(a);
}

/* ---- the default arena -------------------------------------------------- */

static fipc_arena *default_arena;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void create_default(void)
{
    size_t size = FIPC_DEFAULT_ARENA_BYTES;
    const char *env = getenv("FIPC_ARENA_SIZE");
    if (env && *env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 0);
        if (*end == '\0' && v > 0)
            size = (size_t)v;
    }
    fipc_arena *a = NULL;
    if (fipc_arena_create(&a, "fipc-default", size) == 0) {
        a->is_default = true;
        default_arena = a;
    }
}

fipc_arena *fipc_default_arena(void)
{
    /* pthread_once state is copied into forked children, so a child of a
     * process that created the arena sees it done and reuses the mapping. */
    pthread_once(&default_once, create_default);
    return default_arena;
}


/* ---- the registry of mappings --------------------------------------------- */

/*
 * Every arena this process maps, so that an object in shared memory can be
 * bounded by the mapping that holds it: the mapping's extent is private to
 * the process, where no peer can change it (arena_impl.h).
 */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static fipc_arena *registry;
uint32_t fipc__arena_epoch;

static void registry_add(fipc_arena *a)
{
    pthread_mutex_lock(&registry_lock);
    a->next = registry;
    registry = a;
    pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(fipc_arena *a)
{
    pthread_mutex_lock(&registry_lock);
    for (fipc_arena **p = &registry; *p; p = &(*p)->next) {
        if (*p == a) {
            *p = a->next;
            break;
        }
    }
    /* relaxed: read by this process's threads only to drop what they
     * derived from mappings; one that misses the change is racing with
     * the close of an arena it still uses, which is its own error. */
    fetch_add_relaxed(&fipc__arena_epoch, 1);
    pthread_mutex_unlock(&registry_lock);
}

bool fipc__arena_bounds(const void *p, size_t len, const char **end)
{
    const char *c = p;
    bool found = false;
    pthread_mutex_lock(&registry_lock);
    for (fipc_arena *a = registry; a; a = a->next) {
        const char *base = (const char *)a->hdr;
        if (c >= base + sizeof(struct arena_header) && c < base + a->size) {
            found = len <= (size_t)(base + a->size - c);
            *end = base + a->size;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return found;
}

/* A fork while another thread holds the registry would leave the child's
 * copy locked for good. */
static void registry_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
}

static void registry_resume(void)
{
    pthread_mutex_unlock(&registry_lock);
}

__attribute__((constructor)) static void registry_atfork(void)
{
    pthread_atfork(registry_prepare, registry_resume, registry_resume);
}
