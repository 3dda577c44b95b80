/*
 * fuzz_arena.c - libFuzzer harness: fipc_arena_attach on a file whose
 * content (and size, and seals) a peer chose.
 *
 * The input becomes a memfd: the first bytes say how it is sized and
 * sealed (as an arena would be, or not, or not a regular file at all) and
 * which key to look up, the rest is the file's content (zeros past it).
 * attach must refuse what is no arena with -EBADF/-EPROTO; when it accepts
 * a file, lookup and alloc must return memory inside the mapping, which
 * the harness touches (a pointer outside it faults or trips ASan).
 *
 * FIPC_FUZZ_VERBOSE=1: print what attach returned, for each input run.
 * FIPC_FUZZ_SEEDS=DIR: write a seed corpus of real arenas into DIR (made
 * with fipc_arena_create and publish) and exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fipc.h>

#include "arena_impl.h"

#define MEMFD_NAME "fipc-fuzz-arena"
#define PAGE       4096u
#define MAX_FILE   ((size_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static void fail(const char *what, const void *p)
{
    fprintf(stderr, "fuzz_arena: %s (%p)\n", what, p);
    abort();
}

/* Whether p lies in a mapping of a memfd this harness made (the arena's
 * header included, which fipc__arena_bounds leaves out). */
static bool in_memfd_mapping(const void *p)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) fail("cannot read /proc/self/maps", p);
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)p >= lo && (uintptr_t)p < hi)
            found = strstr(line, MEMFD_NAME) != NULL;
    }
    fclose(f);
    return found;
}

/* An object that lookup or alloc returned: inside the mapping, and
 * touchable as its user would touch it. */
static void touch(void *p, size_t len, bool past_header)
{
    const char *end;
    bool inside = fipc__arena_bounds(p, len, &end);
    if (!inside && (past_header || !in_memfd_mapping(p)))
        fail("pointer outside the arena's mapping", p);
    volatile unsigned char *c = p;
    c[0] = c[0];
    if (inside) memset(p, 0xa5, len);
}

/* Seals by the low three bits of the first byte; -1: a memfd that cannot
 * be sealed at all. */
static const int seal_sets[8] = {
    F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, /* as fipc_arena_create */
    F_SEAL_SHRINK | F_SEAL_GROW,
    F_SEAL_SHRINK,
    F_SEAL_GROW,
    0,
    F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL,
    -1,
    F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL,
};

static size_t file_size(unsigned mode, uint8_t pages, const uint8_t *content, size_t len)
{
    uint64_t hsize = 0;
    switch (mode) {
    case 0:
        return (1 + (size_t)(pages % 64)) * PAGE;
    case 1:
        return len; /* odd sizes, short files */
    case 2:
        /* The size the header claims (offset 16), if it is a sane one. */
        if (len >= 24) memcpy(&hsize, content + 16, sizeof hsize);
        return hsize && hsize <= MAX_FILE ? (size_t)hsize : 16 * PAGE;
    default:
        return (1 + (size_t)(pages % 64)) * PAGE + 1 + pages;
    }
}

static int make_fd(uint8_t how, uint8_t pages, const uint8_t *content, size_t len)
{
    if ((how & 0x60) == 0x60) {
        /* Not a regular file: the read end of a pipe. */
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) fail("pipe2", NULL);
        close(p[1]);
        return p[0];
    }
    int seals = seal_sets[how & 7];
    int fd = memfd_create(MEMFD_NAME, MFD_CLOEXEC | (seals < 0 ? 0 : MFD_ALLOW_SEALING));
    if (fd < 0) fail("memfd_create", NULL);
    size_t fsize = file_size((how >> 3) & 3, pages, content, len);
    if (ftruncate(fd, (off_t)fsize) < 0) fail("ftruncate", NULL);
    size_t n = len < fsize ? len : fsize;
    if (n && pwrite(fd, content, n, 0) != (ssize_t)n) fail("pwrite", NULL);
    if (seals > 0 && fcntl(fd, F_ADD_SEALS, seals) < 0) fail("F_ADD_SEALS", NULL);
    return fd;
}

static bool verbose;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    uint8_t how = data[0], pages = data[1];
    size_t klen = data[2] % (FIPC_ARENA_KEY_MAX + 1);
    if (size < 3 + klen) return 0;
    char key[FIPC_ARENA_KEY_MAX + 1] = {0};
    memcpy(key, data + 3, klen);
    const uint8_t *content = data + 3 + klen;
    size_t len = size - 3 - klen;

    int fd = make_fd(how, pages, content, len);
    fipc_arena *a = NULL;
    int r = fipc_arena_attach(&a, fd);
    if (verbose) fprintf(stderr, "fuzz_arena: attach: %d (%s)\n", r, fipc_strerror(r));
    /* -EXDEV cannot happen here: the harness attaches in its own pid
     * namespace.  -EMFILE only with no descriptor left. */
    if (r != 0 && r != -EBADF && r != -EPROTO && r != -ENOMEM && r != -EMFILE)
        fail("attach returned an undocumented code", NULL);
    if (r == 0) {
        struct stat st;
        if (fstat(fd, &st) < 0 || fipc_arena_size(a) != (size_t)st.st_size)
            fail("attached size is not the file's", a);
        if (fipc_arena_used(a) > fipc_arena_size(a))
            fail("attached arena's cursor is past its end", a);
        static const char *keys[] = {"q", "queue", "jq", "fuzz", "a", ""};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            void *p = fipc_arena_lookup(a, keys[i]);
            if (p) touch(p, 1, false);
        }
        void *p = fipc_arena_lookup(a, key);
        if (p) touch(p, 1, false);
        static const size_t sizes[] = {1, 64, 4096, 100000};
        static const size_t aligns[] = {0, 8, 64, 4096};
        for (int i = 0; i < 4; i++) {
            size_t sz = sizes[(pages + i) % 4], al = aligns[(pages >> 2) % 4];
            void *m = fipc_arena_alloc(a, sz, al);
            if (m) {
                if (al && ((uintptr_t)m & (al - 1))) fail("alloc misaligned", m);
                touch(m, sz, true);
            }
        }
        if (fipc_arena_used(a) > fipc_arena_size(a)) fail("cursor past the end after alloc", a);
        fipc_arena_close(a);
    }
    close(fd);
    return 0;
}

/* ---- the seed corpus -------------------------------------------------- */

static void write_seed(const char *dir, const char *name, const uint8_t *ctl, size_t nctl,
                       fipc_arena *a, size_t content_len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) fail("cannot write a seed", NULL);
    uint8_t *buf = malloc(content_len);
    if (!buf || pread(fipc_arena_fd(a), buf, content_len, 0) != (ssize_t)content_len)
        fail("cannot read the arena back", NULL);
    fwrite(ctl, 1, nctl, f);
    fwrite(buf, 1, content_len, f);
    free(buf);
    fclose(f);
}

static void write_seeds(const char *dir)
{
    fipc_arena *a = NULL;
    if (fipc_arena_create(&a, "seed", 64 << 10) != 0) fail("arena_create", NULL);
    fipc_queue *q = NULL;
    if (fipc_queue_create(&q, a, 4, 16, 0) != 0 || fipc_arena_publish(a, "q", q) != 0)
        fail("queue_create", NULL);
    void *obj = fipc_arena_alloc(a, 100, 64);
    if (!obj || fipc_arena_publish(a, "fuzz", obj) != 0) fail("publish", NULL);
    /* Only the first page is content: the rest of the file is zeros
     * anyway.  Size mode 0 with pages = 15: 64 KiB, as created. */
    write_seed(dir, "arena-64k", (const uint8_t[]){0x00, 15, 1, 'q'}, 4, a, PAGE);
    /* The same, sized by its own header's size field (mode 2). */
    write_seed(dir, "arena-hdr-size", (const uint8_t[]){0x10, 0, 4, 'f', 'u', 'z', 'z'}, 7, a,
               PAGE);
    /* Not sealed (mode 0, seals 4): refused. */
    write_seed(dir, "arena-unsealed", (const uint8_t[]){0x04, 15, 0}, 3, a, PAGE);
    /* Odd size: the content's own length (mode 1). */
    write_seed(dir, "arena-odd", (const uint8_t[]){0x08, 0, 0}, 3, a, 1000);
    fipc_arena_close(a);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    verbose = getenv("FIPC_FUZZ_VERBOSE") != NULL;
    const char *dir = getenv("FIPC_FUZZ_SEEDS");
    if (dir && *dir) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}
