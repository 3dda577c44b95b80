/*
 * arena.c - memfd-backed shared memory.
 *
 * Layout of the file (all offsets from the start of the mapping):
 *
 *   0      struct arena_header: magic, version, size, allocation cursor,
 *          the directory's lock, FIPC_ARENA_DIR_SLOTS named entries and
 *          the creator's pid namespace
 *   ...    objects, handed out by a lock-free bump allocator
 *
 * The file is created at its final size and sealed (no shrink, no grow),
 * so a process that maps it can never be hit by SIGBUS from another
 * process truncating it; tmpfs allocates pages only when first touched.
 * Each process maps the whole file, so memory handed out later is already
 * mapped everywhere.
 *
 * Every process that maps the arena may write the header.  attach checks a
 * private copy once; after that every value read from the shared header
 * (cursor, directory offsets and keys) is checked where it is used, so that
 * garbage gives NULL or -EPROTO, never an access outside the mapping or a
 * pointer into the header.  Only a->size, a private copy, bounds anything.
 */
#include <fcntl.h>
#include <linux/memfd.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fipc/arena.h>

#include "arena_impl.h"
#include "atomic.h"
#include "lock_impl.h"

#define ARENA_MAGIC 0x414e455241435049ull /* "IPCARENA" */
/* 2: the header records the creator's pid namespace (a version-1 header
 * has no such record, and a version-1 library would not check it). */
#define ARENA_VERSION 2u
#define ARENA_MIN     ((size_t)64 << 10)
#define ARENA_MAX     ((size_t)1 << 46)
#define ALIGN_MAX     4096u

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04
#endif
#ifndef PIDFD_GET_PID_NAMESPACE
#define PIDFD_GET_PID_NAMESPACE _IO(0xFF, 5)
#endif

struct arena_entry {
    char key[FIPC_ARENA_KEY_MAX + 1];
    uint64_t offset; /* 0: the slot is free (no object lives at offset 0) */
};

struct arena_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint64_t size;             /* bytes in the file, fixed at creation */
    uint64_t cursor;           /* offset of the first byte not yet handed out */
    struct lock_impl dir_lock; /* the lock core (lock.c), robust like fipc_lock */
    struct arena_entry dir[FIPC_ARENA_DIR_SLOTS];
    /* The creator's pid namespace: st_dev and st_ino of its nsfs file;
     * both 0 if the creator could not tell. */
    uint64_t pidns_dev;
    uint64_t pidns_ino;
};
static_assert(sizeof(struct arena_header) < ARENA_MIN, "header fits the smallest arena");

/* The offset of the first object: nothing below it is ever handed out. */
#define ARENA_DATA round_up(sizeof(struct arena_header), FIPC_CACHELINE)

/* The process-local handle. */
struct fipc_arena {
    struct arena_header *hdr; /* the mapping; its base */
    size_t size;
    int fd;
    bool is_default;
    bool pinned;             /* threads hold robust locks inside (arena_impl.h) */
    struct fipc_arena *next; /* the registry of this process's mappings */
};

static void registry_add(fipc_arena *a);
static bool registry_remove(fipc_arena *a);

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) & ~(to - 1);
}

/* The calling process's pid namespace, as st_dev and st_ino of its nsfs
 * file: from /proc, or (without /proc) from a pidfd of this process
 * (Linux 6.11).  0, 0 if neither works. */
static void pidns_of_self(uint64_t *dev, uint64_t *ino)
{
    struct stat st;
    *dev = *ino = 0;
    if (stat("/proc/self/ns/pid", &st) == 0) {
        *dev = st.st_dev;
        *ino = st.st_ino;
        return;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (pidfd < 0)
        return;
    int ns = ioctl(pidfd, PIDFD_GET_PID_NAMESPACE, 0);
    close(pidfd);
    if (ns < 0)
        return;
    if (fstat(ns, &st) == 0) {
        *dev = st.st_dev;
        *ino = st.st_ino;
    }
    close(ns);
}

/* Whether a process of this pid namespace may use an arena whose header
 * names ns (dev, ino): thread ids, which locks hold, mean the same on both
 * sides only within one namespace.  An unknown side cannot be checked. */
static bool same_pidns(uint64_t dev, uint64_t ino)
{
    uint64_t my_dev, my_ino;
    if (dev == 0 && ino == 0)
        return true;
    pidns_of_self(&my_dev, &my_ino);
    return (my_dev == 0 && my_ino == 0) || (my_dev == dev && my_ino == ino);
}

static int map_arena(fipc_arena **out, int fd, size_t size)
{
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        /* attach checked the access mode and the seals; what is left is a
         * file that cannot be mapped (-EBADF) or a shortage (-ENOMEM, ...). */
        int e = errno;
        if (e == EACCES || e == ENODEV)
            return -EBADF;
        if (e == EPERM)
            return -EPROTO;
        return -e;
    }
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
    h->cursor = ARENA_DATA;
    h->dir_lock = (struct lock_impl){0}; /* released */
    pidns_of_self(&h->pidns_dev, &h->pidns_ino);
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
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return -EBADF;
    /* Mapped shared for reading and writing, so open for both. */
    int mode = fcntl(fd, F_GETFL);
    if (mode < 0 || (mode & O_ACCMODE) != O_RDWR)
        return -EBADF;
    /* The seals first: only a file whose size is sealed is safe to map (if
     * its owner could shrink it, touching the lost pages would raise
     * SIGBUS here), and only once it is sealed does its size stop
     * changing, so the size is read after.  Every arena is sealed against
     * shrinking and growing at creation, and never against writing. */
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW) ||
        (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0)
        return -EPROTO;
    if (fstat(fd, &st) < 0)
        return -EBADF;
    if ((size_t)st.st_size < sizeof(struct arena_header))
        return -EPROTO;

    /* Read the header through a copy before mapping anything. */
    struct arena_header h;
    if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
        return -EPROTO;
    if (h.magic != ARENA_MAGIC || h.version != ARENA_VERSION || h.header_size != sizeof h ||
        h.size != (uint64_t)st.st_size || h.size % page_size() != 0 || h.size < ARENA_MIN ||
        h.size > ARENA_MAX || h.cursor > h.size || h.cursor < ARENA_DATA)
        return -EPROTO;
    if (!same_pidns(h.pidns_dev, h.pidns_ino))
        return -EXDEV;

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
    if (!a)
        return 0;
    /* A snapshot of a value any process may write: kept within the file. */
    uint64_t cur = load_relaxed(&a->hdr->cursor);
    return cur > a->size ? a->size : (size_t)cur;
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
        /* A cursor outside [first object, end of file] was written by a
         * peer: rounding it up could wrap to the header, and nothing past
         * the end is mapped. */
        if (cur < ARENA_DATA || cur > a->size)
            return NULL;
        start = round_up(cur, align);
        if (start > a->size || size > a->size - start)
            return NULL;
        end = start + size;
        /* relaxed: the range is ours alone once the CAS succeeds; the
         * memory is zero (tmpfs pages start zeroed, and nothing is ever
         * handed out twice). */
    } while (!cas_relaxed(&h->cursor, &cur, end));
    return (char *)h + start;
}

static bool inside(const fipc_arena *a, const void *p)
{
    const char *c = p, *base = (const char *)a->hdr;
    return c >= base + ARENA_DATA && c < base + a->size;
}

/* A private copy of a directory entry's key; false if it is not
 * NUL-terminated within the slot (publish zero-fills every key it writes,
 * so only a peer leaves it so). */
static bool entry_key(const struct arena_entry *e, char key[FIPC_ARENA_KEY_MAX + 1])
{
    memcpy(key, e->key, FIPC_ARENA_KEY_MAX + 1);
    return key[FIPC_ARENA_KEY_MAX] == '\0';
}

/* Whether off can be an object's offset: objects live past the header and
 * inside the file. */
static bool object_offset(const fipc_arena *a, uint64_t off)
{
    return off >= ARENA_DATA && off < a->size;
}

int fipc_arena_publish(fipc_arena *a, const char *key, const void *obj)
{
    if (!a || !key || !*key || !obj || !inside(a, obj))
        return -EINVAL;
    if (strlen(key) > FIPC_ARENA_KEY_MAX)
        return -ENAMETOOLONG;
    struct arena_header *h = a->hdr;
    /* Bounded: the lock word is shared memory, so a peer may have forged
     * an owner that never releases it, and a holder stopped by SIGSTOP
     * holds it for as long as it stays stopped.  A publish that runs holds
     * it for one scan of the directory, microseconds. */
    int r = fipc__lock_acquire(&h->dir_lock, FIPC_ARENA_DIR_WAIT_NS);
    if (r < 0 && r != -EOWNERDEAD)
        return r;
    /* A holder that died mid-publish left at most one entry with a key and
     * no offset: such an entry counts as free, so nothing needs repair. */
    struct arena_entry *free_slot = NULL;
    r = 0;
    for (int i = 0; i < FIPC_ARENA_DIR_SLOTS; i++) {
        struct arena_entry *e = &h->dir[i];
        char k[FIPC_ARENA_KEY_MAX + 1];
        uint64_t off = load_relaxed(&e->offset);
        if (off == 0) {
            if (!free_slot)
                free_slot = e;
        } else if (!entry_key(e, k) || !object_offset(a, off)) {
            r = -EPROTO; /* an entry no publish wrote */
            break;
        } else if (strcmp(k, key) == 0) {
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
    if (!a || !key || strlen(key) > FIPC_ARENA_KEY_MAX)
        return NULL;
    struct arena_header *h = a->hdr;
    /* Entries are written once and never removed, so readers need no lock:
     * an entry whose offset is visible (acquire, pairs with publish's
     * release store) has its key in place.  The key is compared in a
     * private copy, and an entry that is not well formed matches nothing. */
    for (int i = 0; i < FIPC_ARENA_DIR_SLOTS; i++) {
        struct arena_entry *e = &h->dir[i];
        char k[FIPC_ARENA_KEY_MAX + 1];
        uint64_t off = load_acquire(&e->offset);
        if (off != 0 && entry_key(e, k) && strcmp(k, key) == 0)
            return object_offset(a, off) ? (char *)h + off : NULL;
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

/* Room for the descriptors of one message and what a receiving socket's
 * options may add (SO_PASSCRED, SO_PASSPIDFD, SO_PASSSEC).  More than fits
 * sets MSG_CTRUNC: the kernel then closes what it could not deliver. */
#define RECV_FDS_MAX 16
#define RECV_CONTROL                                                                               \
    (CMSG_SPACE(RECV_FDS_MAX * sizeof(int)) + CMSG_SPACE(sizeof(struct ucred)) +                   \
     CMSG_SPACE(sizeof(int)) + CMSG_SPACE(256))

int fipc_arena_recv(int sock, fipc_arena **out)
{
    if (!out)
        return -EINVAL;
    uint64_t magic = 0;
    struct iovec iov = {.iov_base = &magic, .iov_len = sizeof magic};
    union {
        char buf[RECV_CONTROL];
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

    /* Every descriptor that arrived is ours to close, whatever else is
     * wrong with the message: keep the first one of SCM_RIGHTS, count them
     * all, close the rest (and an SCM_PIDFD). */
    int fd = -1, nfds = 0;
    const char *end = u.buf + msg.msg_controllen;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        bool rights = c->cmsg_type == SCM_RIGHTS;
        if (c->cmsg_level != SOL_SOCKET || (!rights && c->cmsg_type != SCM_PIDFD))
            continue;
        /* The kernel trims cmsg_len to what it delivered; never read past
         * the control data it reported. */
        const char *data = (const char *)CMSG_DATA(c);
        size_t room = (size_t)(end - (const char *)c);
        size_t len = c->cmsg_len < room ? c->cmsg_len : room;
        if (len < CMSG_LEN(0))
            continue;
        for (size_t k = 0; k + sizeof(int) <= len - CMSG_LEN(0); k += sizeof(int)) {
            int got;
            memcpy(&got, data + k, sizeof got);
            if (rights && nfds++ == 0)
                fd = got;
            else
                close(got);
        }
    }
    int r;
    if (n == 0 && nfds == 0)
        r = -EPIPE; /* the peer closed the socket */
    else if (nfds != 1 || (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) ||
             n != (ssize_t)sizeof magic || magic != ARENA_MAGIC)
        r = -EPROTO;
    else
        r = fipc_arena_attach(out, fd);
    if (fd >= 0)
        close(fd); /* attach keeps a duplicate */
    return r;
}

void fipc_arena_close(fipc_arena *a)
{
    if (!a || a->is_default)
        return;
    /* registry_remove reads pinned under the registry's lock. */
    if (registry_remove(a))
        /* Threads of this process hold robust locks in the mapping (MPMC
         * claimer records), linked into their robust lists: the range
         * must stay writable memory for them and for the kernel, which
         * walks the lists when they exit.  Private anonymous memory takes
         * the file's place, so the file's pages are freed; the range is
         * never handed to another mapping. */
        mmap(a->hdr, a->size, PROT_READ | PROT_WRITE,
             MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    else
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

/* Whether a was pinned. */
static bool registry_remove(fipc_arena *a)
{
    pthread_mutex_lock(&registry_lock);
    bool pinned = a->pinned;
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
    return pinned;
}

void fipc__arena_pin(const void *p)
{
    const char *c = p;
    pthread_mutex_lock(&registry_lock);
    for (fipc_arena *a = registry; a; a = a->next) {
        const char *base = (const char *)a->hdr;
        if (c >= base && c < base + a->size) {
            a->pinned = true;
            break;
        }
    }
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

void *fipc__arena_alloc_near(const void *p, size_t size, size_t align)
{
    const char *c = p;
    void *mem = NULL;
    /* The lock keeps the arena from being closed under the allocation;
     * fipc_arena_alloc takes no lock of its own. */
    pthread_mutex_lock(&registry_lock);
    for (fipc_arena *a = registry; a; a = a->next) {
        const char *base = (const char *)a->hdr;
        if (c >= base + sizeof(struct arena_header) && c < base + a->size) {
            mem = fipc_arena_alloc(a, size, align);
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return mem;
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
