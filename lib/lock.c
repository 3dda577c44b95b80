/*
 * lock.c - Lock and RLock on robust futexes.
 *
 * Model: docs/models/lock.pml
 *
 * The lock word uses the kernel's robust-futex format, so that the kernel
 * itself recovers a lock whose owner dies:
 *
 *   bits    name             meaning
 *   0..29   LOCK_TID_MASK    kernel thread id of the owner; 0 = nobody
 *   30      LOCK_OWNER_DIED  set by the kernel: the owner ended holding it
 *   31      LOCK_WAITERS     a thread may sleep on the word: release wakes one
 *
 *   word                        state
 *   0                           free
 *   tid                         held by tid; nobody sleeps
 *   tid | WAITERS               held by tid; sleepers possible
 *   OWNER_DIED [| WAITERS]      free; the previous owner died holding it
 *
 * Invariant: whenever a thread sleeps on the word, WAITERS is set (a
 * sleeper sets it before sleeping; a woken thread takes the lock with
 * WAITERS set, since it cannot know whether others still sleep).  A
 * release clears the whole word with one exchange and wakes one sleeper
 * only if WAITERS was set.
 *
 * Ownership.  The word is for the kernel and for waiters; whether the
 * calling thread holds a lock is decided by the thread's own record of the
 * locks it holds (struct self, below), which lives in private memory.  A
 * thread id in the word proves nothing: a peer may have written it, a
 * thread of another pid namespace may carry the same number, and without
 * a robust list a dead owner's number may have been given to a new thread.
 *
 * Robust list.  The C library registers, for every thread, a list head with
 * the kernel (set_robust_list); at thread exit the kernel walks the list and,
 * for each entry whose word still holds the dying thread's id, sets
 * OWNER_DIED (keeping WAITERS) and wakes one waiter.  Each thread links two
 * sentinel entries of its own (in thread-local storage, their words always
 * 0) into that list once, and keeps the locks it holds as a chain between
 * them:
 *
 *   head -> [C library's entries] -> front -> lock_n -> ... -> lock_1 -> back
 *        -> [C library's entries] -> head
 *
 * The chain's links are the robust_next fields of the locks (32 bytes after
 * the word: the futex_offset the C library registered, checked once per
 * thread); they are written from the private record for the kernel's
 * benefit and never read back.  The C library links its own robust mutexes
 * only at the head of the list and unlinks them through their own prev
 * links, so it only ever writes the sentinels' links (private memory),
 * never a lock's.  The owner keeps list_op_pending pointing at the lock
 * while it takes or releases it, so a death in between is recovered too.
 *
 * Owner record.  A thread that has no robust list to link into (another C
 * library, a head whose layout check fails, get_robust_list refused, a raw
 * clone child) cannot count on the kernel.  It writes, after taking a lock and only on
 * that (general) path, who it is into the lock: owner = start << 30 | tid,
 * where start is the thread's start time (field 22 of /proc/TID/stat, clock
 * ticks since boot, low 34 bits), and owner_ns, the inode of its pid
 * namespace.  It clears owner before the exchange that releases the lock.
 * A thread with a robust list writes nothing there on its fast paths: the
 * record is 0 whenever such a thread holds the lock, since every release
 * and every heir of a dead owner clear it.
 *
 * A waiter (robust list or not) that finds, in its sleep loop, a record
 * whose tid is the word's keeps sleeping with a shorter cap: LOCK_CHECK_
 * AFTER_NS after it first saw the record, and every LOCK_CHECK_EVERY_NS
 * after that, it checks the recorded owner.  The owner is dead if /proc of
 * the waiter's own pid namespace (the recorded one) has no thread with
 * that tid, shows it as a zombie, or shows a thread with another start time
 * (the tid was given to a new thread).  A stopped, traced or slow thread
 * is alive: only its end changes what /proc says.  The waiter then marks
 * the word as the kernel would, OWNER_DIED | (WAITERS as it was), with a
 * CAS that expects exactly the word it checked, and the next taker gets
 * -EOWNERDEAD.  Anything it cannot tell (no /proc, another namespace, an
 * unreadable entry) counts as alive: a wrong verdict would hand a live
 * owner's lock to a second thread, a missed one only keeps waiters waiting.
 * A waiter without a robust list also checks a bare word (one whose owner
 * has no record: it has a robust list, or it died in the few instructions
 * between taking the word and recording itself, or between clearing the
 * record and releasing), by its tid alone: no such thread, or a zombie.
 * The model (docs/models/lock.pml) has the check and the mark.
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fipc/lock.h>

#include "futex.h"
#include "lock_impl.h"

#define LOCK_TID_MASK   FUTEX_TID_MASK   /* 0x3fffffff */
#define LOCK_OWNER_DIED FUTEX_OWNER_DIED /* 0x40000000 */
#define LOCK_WAITERS    FUTEX_WAITERS    /* 0x80000000 */

static_assert(sizeof(struct lock_impl) == sizeof(fipc_lock), "lock layout");
static_assert(sizeof(struct lock_impl) == sizeof(fipc_rlock), "rlock layout");
static_assert(_Alignof(fipc_lock) >= _Alignof(struct lock_impl), "lock alignment");
static_assert(offsetof(struct lock_impl, robust_next) == 32, "glibc's robust mutex shape");
static_assert(offsetof(struct lock_impl, owner) == 8 && offsetof(struct lock_impl, owner_ns) == 16,
              "the owner record (docs/lock.md, Layout)");
static_assert(offsetof(struct lock_impl, robust_prev) + 8 ==
                  offsetof(struct lock_impl, robust_next),
              "prev link directly precedes next");

/* Without a robust list, a waiter checks a recorded owner once it has
 * waited this long for it (5 ms: a critical section that long is rare, and
 * a check costs a few system calls), then at this period (25 ms), so that
 * a death is found within about 30 ms of it, inside the 100 ms fipc
 * promises survivors. */
#define LOCK_CHECK_AFTER_NS ((int64_t)5000000)
#define LOCK_CHECK_EVERY_NS ((int64_t)25000000)

/* The bits of the start time kept in the record: 2^34 clock ticks are 5
 * years at the usual 100 per second. */
#define LOCK_START_BITS 34

#ifdef FIPC_TEST_HOOKS
bool fipc__lock_no_robust_list;
uint64_t fipc__lock_owner_checks;
#endif

/* ---- per-thread state ---------------------------------------------------- */

/*
 * Each thread keeps, in one initial-exec TLS block (reached without a
 * function call even from the shared library), its kernel thread id, the
 * robust-list head the C library registered for it, the two sentinels and a
 * pointer to its record.
 *
 * The record is the private list of the locks the thread holds: held[0] is
 * the back sentinel's link, held[1..n] the links of the locks held, in the
 * order taken (held[n], the newest, is what front points at).  Each entry
 * is the address of a lock's robust_next field, so it names the lock and is
 * the value the entry above it (or front) must hold.  It is mapped per
 * thread (mmap works in any child, even after _Fork) and unmapped at thread
 * exit.
 *
 * A thread's state belongs to one process.  A child made by fork(),
 * _Fork() or a raw clone starts as a copy of the forking thread, TLS
 * included, and only fork() runs atfork handlers.  So the record is mapped
 * MADV_WIPEONFORK: every kind of fork hands the child a zeroed record.  Its
 * first word, fast, says whether the fast paths may run (this process's
 * state, a robust list); zero in a child, it sends every call there to the
 * general path, which sees the record's state word wiped too and sets the
 * thread up afresh.  Without MADV_WIPEONFORK (Linux before 4.14) fast stays
 * 0 and the general path compares the record's pid with getpid() instead:
 * one system call per call.
 */
enum record_state {
    RECORD_WIPED = 0,  /* a child's copy: the page was wiped */
    RECORD_WIPEONFORK, /* valid; a fork wipes it */
    RECORD_BY_PID,     /* valid in process pid (no MADV_WIPEONFORK) */
};

/* fast is not the first word: the record starts a page, and so does many
 * a lock (the first object of a mapping), and a load of the record at the
 * page offset of the lock word just taken or freed waits on that store
 * (the CPU compares only the low 12 address bits: 4K aliasing), 10% of an
 * uncontended acquire/release pair.  At offset 8 it meets only a lock
 * that starts at offset 8 of a page; fipc puts its locks on cache lines. */
struct record {
    uint32_t state; /* enum record_state */
    pid_t pid;      /* RECORD_BY_PID: the process it belongs to */
    uint64_t fast;  /* 1: the fast paths may run */
    uintptr_t held[];
};

struct self {
    pid_t tid;
    uint32_t n;          /* locks held */
    uint32_t cap;        /* entries in rec->held; 0: no record */
    bool linked;         /* the sentinels are in the robust list */
    uint8_t exit_rounds; /* calls of record_free */
    pid_t exit_pid;      /* the process in which record_free unmapped the record */
    struct record *rec;
    struct robust_list_head *head; /* NULL: no robust list to link into */
    struct lock_impl front, back;  /* the sentinels; their words stay 0 */
    bool identified;               /* ident and ns are set (self_identify) */
    uint32_t ns;                   /* pid namespace inode; 0: /proc does not show this one */
    uint64_t ident;                /* the owner record this thread writes; 0: none */
};
static _Thread_local struct self self __attribute__((tls_model("initial-exec")));

#ifdef PTHREAD_DESTRUCTOR_ITERATIONS
#define DESTRUCTOR_ROUNDS PTHREAD_DESTRUCTOR_ITERATIONS
#else
#define DESTRUCTOR_ROUNDS 4 /* POSIX's minimum */
#endif

static pthread_key_t record_key;
static bool record_key_ok;

static void record_free(void *p);

/* What rec points at once record_free unmapped the record: never written. */
static struct record exited_record = {.state = RECORD_WIPEONFORK};

__attribute__((constructor)) static void lock_setup(void)
{
    record_key_ok = pthread_key_create(&record_key, record_free) == 0;
}

static struct robust_list_head *fetch_robust_head(void)
{
#ifdef FIPC_TEST_HOOKS
    /* relaxed: set once by a test before its first lock call. */
    if (load_relaxed(&fipc__lock_no_robust_list))
        return NULL;
#endif
    struct robust_list_head *h = NULL;
    size_t len = 0;
    if (syscall(SYS_get_robust_list, 0, &h, &len) == 0 && h && len == sizeof *h &&
        h->futex_offset == -(long)offsetof(struct lock_impl, robust_next))
        return h;
    return NULL;
}

/* Links in the list point at the next field of each entry (glibc's shape);
 * glibc keeps an entry's prev link just before it, and a prev slot just
 * before its head. */
static inline uintptr_t *link_prev_slot(uintptr_t link)
{
    return (uintptr_t *)((link & ~(uintptr_t)1) - sizeof(uintptr_t));
}

/* Put front and back at the head of the thread's list, as the C library
 * links a robust mutex.  Everything read here is the C library's private
 * head; what is written is the sentinels and the prev link of the entry
 * that was first (a node of the C library, which it will read back when
 * it unlinks that node). */
static void link_sentinels(struct self *s)
{
    struct robust_list_head *h = s->head;
    uintptr_t first = (uintptr_t)h->list.next;
    s->front = s->back = (struct lock_impl){0};
    s->back.robust_next = first;
    s->back.robust_prev = (uintptr_t)&s->front.robust_next;
    s->front.robust_next = (uintptr_t)&s->back.robust_next;
    s->front.robust_prev = (uintptr_t)&h->list;
    if ((first & ~(uintptr_t)1) != (uintptr_t)&h->list)
        *link_prev_slot(first) = (uintptr_t)&s->back.robust_next;
    /* The kernel reads the list only when this thread exits, in this
     * thread's context, so program order (kept by the barrier) is enough:
     * the sentinels are complete before the head points at them. */
    compiler_barrier();
    h->list.next = (struct robust_list *)&s->front.robust_next;
    s->linked = true;
}

static size_t record_bytes(uint32_t cap)
{
    return sizeof(struct record) + (size_t)cap * sizeof(uintptr_t);
}

/* Map the record, or double it.  Returns 0 or -ENOMEM. */
static int record_grow(struct self *s)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t old = s->rec ? record_bytes(s->cap) : 0;
    size_t len = old ? 2 * old : page;
    if ((len - sizeof(struct record)) / sizeof(uintptr_t) > UINT32_MAX)
        return -ENOMEM;
    void *p = old ? mremap(s->rec, old, len, MREMAP_MAYMOVE)
                  : mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -ENOMEM;
    struct record *r = p;
    if (!old) {
        r->fast = 0;
        r->state = madvise(p, len, MADV_WIPEONFORK) == 0 ? RECORD_WIPEONFORK : RECORD_BY_PID;
        r->pid = getpid();
    } else if (r->state == RECORD_WIPEONFORK) {
        madvise(p, len, MADV_WIPEONFORK); /* the new part too */
    }
    s->rec = r;
    s->cap = (uint32_t)((len - sizeof(struct record)) / sizeof(uintptr_t));
    r->held[0] = (uintptr_t)&s->back.robust_next;
    if (record_key_ok)
        pthread_setspecific(record_key, p);
    return 0;
}

/* At thread exit.  A thread that still holds locks (an MPMC queue's
 * claimer record is held for the thread's life, ring_mpmc.c) keeps its
 * record while a later destructor may release them: the C library calls
 * destructors again, up to PTHREAD_DESTRUCTOR_ITERATIONS rounds, while a
 * key is set.  In the last round the record goes anyway, or every such
 * thread would leave a page and a mapping behind (a service that starts
 * threads by the thousand runs out of mappings).  The locks still held
 * stay in the kernel's list, which runs from the front sentinel (this
 * thread's TLS) through the links in the locks: the kernel's walk marks
 * them as it would have.  Later calls in this thread map no new record:
 * an acquire returns -ENOMEM, a release -EPERM (self_prepare); a child
 * that a later destructor forks is a thread new to its process. */
static void record_free(void *p)
{
    struct self *s = &self;
    if (p != s->rec)
        return;
    /* Every call counts, the ones that unmap a record without locks too:
     * a later destructor may take a lock again and map another. */
    if (++s->exit_rounds < DESTRUCTOR_ROUNDS && s->n > 0) {
        pthread_setspecific(record_key, p);
        return;
    }
    munmap(p, record_bytes(s->cap));
    s->cap = 0;
    /* A fork in a later destructor makes a child whose thread is new to
     * its process: self_stale and self_prepare tell it by the pid. */
    s->exit_pid = getpid();
    if (s->n == 0) {
        s->rec = NULL; /* a later destructor's call maps one afresh */
        return;
    }
    s->n = 0;
    /* Its fast word 0 sends every later call to the general paths, which
     * self_prepare turns away; front may still name a lock held. */
    s->rec = &exited_record;
}

/* ---- the owner record: who holds a lock, for a liveness check ------------ */

static inline uint64_t ident_of(uint32_t tid, uint64_t start)
{
    return (start & ((UINT64_C(1) << LOCK_START_BITS) - 1)) << 30 | tid;
}

/* From a /proc/.../stat file: the state letter (field 3) and the start time
 * (field 22, clock ticks since boot).  0; -ENOENT if no such thread exists
 * (open or read say ENOENT or ESRCH); another negative errno, or -EPROTO
 * for text that does not parse, if it cannot tell. */
static int proc_stat(const char *path, char *state, uint64_t *start)
{
    char buf[1024];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ESRCH ? -ENOENT : -errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return e == ESRCH ? -ENOENT : -e;
    buf[n] = '\0';
    /* The name (field 2) is in parentheses and may hold any byte but NUL:
     * the fields after it start at the last ')'. */
    const char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || !p[2])
        return -EPROTO;
    *state = p[2];
    p += 2;
    for (int field = 3; field < 22; p++) {
        if (!*p)
            return -EPROTO;
        if (*p == ' ')
            field++;
    }
    uint64_t v = 0;
    const char *digits = p;
    for (; *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (uint64_t)(*p - '0');
    if (p == digits)
        return -EPROTO;
    *start = v;
    return 0;
}

/* Set s->ident, the record this thread writes into a lock it takes without
 * a robust list, and s->ns, the pid namespace in which its checks of other
 * owners are valid.  Both stay 0 unless /proc shows this thread under the
 * ids it has in its own namespace (a /proc mounted for another namespace
 * would name other threads by the ids in the locks).  Once per thread in
 * each process: a few system calls, only without a robust list or before a
 * first check. */
static FIPC_COLD void self_identify(struct self *s)
{
    char link[64], want[64];
    struct stat st;
    char state;
    uint64_t start;
    s->identified = true;
    s->ident = 0;
    s->ns = 0;
    ssize_t n = readlink("/proc/thread-self", link, sizeof link - 1);
    if (n <= 0)
        return;
    link[n] = '\0';
    snprintf(want, sizeof want, "%d/task/%d", (int)getpid(), (int)s->tid);
    if (strcmp(link, want) != 0)
        return;
    if (stat("/proc/thread-self/ns/pid", &st) != 0 || (uint32_t)st.st_ino == 0)
        return;
    if (proc_stat("/proc/thread-self/stat", &state, &start) != 0)
        return;
    s->ns = (uint32_t)st.st_ino;
    s->ident = ident_of((uint32_t)s->tid, start);
}

/* Whether the owner of a word holding tid has ended.  With a record id
 * (its tid is tid) made in pid namespace ns: no thread with that tid, a
 * zombie, or a thread with that tid and another start time.  Without one
 * (id 0, a bare word: see owner_watch): no thread with that tid, or a
 * zombie, in this thread's own namespace; a thread that has the tid now
 * counts as the owner.  Only a positive sign counts: whatever cannot be
 * told (no /proc of this namespace, another namespace's record, an
 * unreadable entry) counts as alive. */
static FIPC_COLD bool owner_dead(struct self *s, uint32_t tid, uint64_t id, uint32_t ns)
{
#ifdef FIPC_TEST_HOOKS
    fetch_add_relaxed(&fipc__lock_owner_checks, 1); /* a statistic: the value alone */
#endif
    if (!s->identified)
        self_identify(s);
    if (s->ns == 0 || (id != 0 && ns != s->ns))
        return false; /* no /proc of this namespace, or another one's ids */
    char path[32], state;
    uint64_t start;
    snprintf(path, sizeof path, "/proc/%u/stat", (unsigned)tid);
    int r = proc_stat(path, &state, &start);
    if (r == -ENOENT)
        return true;
    if (r < 0)
        return false;
    if (state == 'Z' || state == 'X' || state == 'x')
        return true;                              /* ended; its process not reaped yet */
    return id != 0 && ident_of(tid, start) != id; /* the tid now names a newer thread */
}

/* After taking m anywhere but on the fast path: without a robust list,
 * record this thread as its owner; otherwise make sure that no record of
 * a former owner stays (the heir of a dead owner, or a peer's write).  The
 * fast path needs neither: it takes only a word that a release cleared,
 * with the record, to 0. */
static void owner_record(struct lock_impl *m, const struct self *s)
{
    if (!s->head && s->ident) {
        store_relaxed(&m->owner_ns, s->ns);
        /* release: owner_ns is in place before a waiter's acquire load
         * of owner (owner_watch) finds this id. */
        store_release(&m->owner, s->ident);
    } else if (load_relaxed(&m->owner) != 0) {
        /* relaxed: ordered before our release of the word, which is
         * what a waiter synchronizes with (owner_watch). */
        store_relaxed(&m->owner, 0);
    }
}

/* In the sleep loop, on a word cur that names an owner, while the lock
 * has a record or this thread has no robust list: plan the check of the
 * owner, or make it when it is due.  *check_at is when it is due (0: not
 * planned).  Returns true if the caller must look at the word again: it
 * changed, or the owner was found dead and the word marked OWNER_DIED (by
 * us or meanwhile).
 *
 * A word with no record of its owner is bare: its owner has a robust list
 * (the kernel recovers it), or it has none and is in the few instructions
 * between taking the word and recording itself or between clearing its
 * record and releasing the word, or it died there.  A thread without a
 * robust list checks a bare word too, for the tid alone: that finds the
 * owner that died there, unless its tid was given to a new thread since.
 * A thread with a robust list leaves bare words to the kernel: its peers
 * are most likely built as it is. */
static FIPC_COLD bool owner_watch(struct lock_impl *m, struct self *s, uint32_t cur,
                                  fipc_deadline *check_at)
{
    /* acquire: pairs with the release exchange of the last release of the
     * word (cur is in its release sequence: later values come from CAS),
     * before which that releaser cleared the record, so a record read now
     * is not one of an owner before it. */
    if (load_acquire(&m->word) != cur)
        return true;
    /* acquire: pairs with the owner's release store (owner_record), for
     * owner_ns. */
    uint64_t id = load_acquire(&m->owner);
    if ((uint32_t)(id & LOCK_TID_MASK) != (cur & LOCK_TID_MASK)) {
        if (s->head) {
            *check_at = 0; /* none, or not yet written by the new owner */
            return false;
        }
        id = 0; /* bare */
    }
    fipc_deadline now = fipc_now_ns();
    if (*check_at == 0) {
        *check_at = now + LOCK_CHECK_AFTER_NS;
        return false;
    }
    if (now < *check_at)
        return false;
    if (!owner_dead(s, cur & LOCK_TID_MASK, id, load_relaxed(&m->owner_ns))) {
        *check_at = fipc_now_ns() + LOCK_CHECK_EVERY_NS;
        return false;
    }
    /* Mark it as the kernel does at a death.  Expecting exactly cur: the
     * word still names the owner we found dead (a dead thread cannot
     * release it; its id is given to a new thread only after the kernel
     * has gone through all others).  release: pairs with the heir's
     * acquire CAS in try_take_free; the dead owner's writes came before
     * its end, which the kernel made visible before /proc showed it. */
    uint32_t seen = cur;
    cas_release(&m->word, &seen, LOCK_OWNER_DIED | (cur & LOCK_WAITERS));
    return true;
}

/* Whether the thread's state was made in another process (or never). */
static bool self_stale(const struct self *s)
{
    const struct record *r = s->rec;
    if (!r) /* no record yet, or freed at thread exit (then linked, in exit_pid) */
        return !s->linked || s->exit_pid != getpid();
    if (r->state == RECORD_WIPEONFORK)
        return false;
    if (r->state == RECORD_BY_PID)
        return r->pid != getpid();
    return true; /* wiped: a child */
}

/* Make this thread's state valid for this process; with room, make sure
 * the record can take one more lock.  A thread new to this process gets its
 * id, its robust list and no locks: those an ancestor held stay held in the
 * ancestor's name.  Returns 0 or -ENOMEM. */
static __attribute__((noinline)) int self_prepare(struct self *s, bool room)
{
    if (s->rec == &exited_record) {
        if (s->exit_pid == getpid())
            return -ENOMEM; /* past record_free's last round */
        /* A child of that thread, which starts afresh below. */
        s->rec = NULL;
        s->linked = false;
    }
    if (self_stale(s)) {
        s->tid = (pid_t)syscall(SYS_gettid);
        s->n = 0;
        s->linked = false;
        s->identified = false;
        s->head = fetch_robust_head();
        if (s->rec) {
            /* Our record, wiped or copied: start it over in this process. */
            bool wipe = madvise(s->rec, record_bytes(s->cap), MADV_WIPEONFORK) == 0;
            s->rec->state = wipe ? RECORD_WIPEONFORK : RECORD_BY_PID;
            s->rec->pid = getpid();
            s->rec->held[0] = (uintptr_t)&s->back.robust_next;
        }
    }
    if ((!s->rec || (room && s->n + 1 >= s->cap)) && record_grow(s) < 0)
        return -ENOMEM;
    if (s->head && !s->linked)
        link_sentinels(s);
    if (!s->head && !s->identified)
        self_identify(s);
    s->rec->fast = s->head && s->rec->state == RECORD_WIPEONFORK;
    return 0;
}

/* The state for the calling thread, valid in this process (or without a
 * record, if it cannot be mapped: then it holds nothing). */
static inline struct self *self_valid(void)
{
    struct self *s = &self;
    if (FIPC_UNLIKELY(!s->rec || !s->rec->fast))
        self_prepare(s, false);
    return s;
}

/* ---- the private record and the chain ------------------------------------ */

static inline uintptr_t link_of(const struct lock_impl *m)
{
    return (uintptr_t)&m->robust_next;
}

/* Where m is in the record (1..n), or 0 if this thread does not hold it. */
static inline uint32_t held_find(const struct self *s, const struct lock_impl *m)
{
    uintptr_t link = link_of(m);
    for (uint32_t i = s->n; i > 0; i--)
        if (s->rec->held[i] == link)
            return i;
    return 0;
}

/* Record m as held and link it at the top of the chain.  The caller made
 * room (n + 1 < cap). */
static inline void held_push(struct self *s, struct lock_impl *m)
{
    uint32_t n = s->n;
    /* For the kernel only: nothing in fipc reads a lock's links. */
    m->robust_next = s->rec->held[n];
    s->rec->held[n + 1] = link_of(m);
    /* m's link is in place before front points at it (program order is
     * what the kernel's walk at this thread's exit sees). */
    compiler_barrier();
    s->front.robust_next = link_of(m);
    s->n = n + 1;
}

/* Unlink held[i] from the chain and the record.  The entry above it (the
 * lock taken next, or front) takes over its successor, written through an
 * address from the record. */
static void held_remove(struct self *s, uint32_t i)
{
    uint32_t n = s->n;
    uintptr_t *held = s->rec->held;
    uintptr_t *above = i == n ? &s->front.robust_next : (uintptr_t *)held[i + 1];
    *above = held[i - 1];
    compiler_barrier();
    memmove(&held[i], &held[i + 1], (size_t)(n - i) * sizeof *held);
    s->n = n - 1;
}

static inline void robust_pending(struct robust_list_head *h, struct lock_impl *m)
{
    if (h) {
        h->list_op_pending = (struct robust_list *)&m->robust_next;
        /* The kernel reads these fields only when this thread exits, so
         * program order (kept by the compiler barrier) is enough. */
        compiler_barrier();
    }
}

static inline void robust_done(struct robust_list_head *h)
{
    if (h) {
        compiler_barrier();
        h->list_op_pending = NULL;
    }
}

/* ---- the lock ----------------------------------------------------------- */

static inline struct lock_impl *impl(const void *l)
{
    return (struct lock_impl *)l;
}

bool fipc__lock_held_by_self(const fipc_lock *l)
{
    return l && held_find(self_valid(), impl(l)) != 0;
}

/* Take a word that has no owner (0 or OWNER_DIED, maybe WAITERS); acquire
 * pairs with the release exchange of the last owner, so everything it wrote
 * under the lock is visible to us.  Returns 1 if the CAS lost a race. */
static inline int try_take_free(struct lock_impl *m, uint32_t cur, uint32_t mine)
{
    if (!cas_acquire(&m->word, &cur, mine | (cur & LOCK_WAITERS)))
        return 1;
    return (cur & LOCK_OWNER_DIED) ? -EOWNERDEAD : 0;
}

static __attribute__((noinline)) int lock_slow(struct lock_impl *m, struct self *s, uint32_t cur,
                                               int64_t timeout_ns)
{
    uint32_t tid = (uint32_t)s->tid;
    int r;

    /* Python's non-blocking acquire of a held lock fails; a blocking one by
     * the holder would never return.  Our id in the word without the lock
     * in our record is another thread's (a peer's write, or a thread of
     * another pid namespace with our number): wait for it like any other. */
    if ((cur & LOCK_TID_MASK) == tid && held_find(s, m))
        return timeout_ns == 0 ? -EAGAIN : -EDEADLK;

    /* The deadline is taken before the spin, which counts against it (a
     * zero timeout needs none). */
    fipc_deadline deadline = timeout_ns == 0 ? 0 : fipc_deadline_in(timeout_ns);

    /* Spin while the owner runs and nobody sleeps: a short critical
     * section on the other CPU ends sooner than a futex round trip. */
    struct fipc_spin spin;
    if (timeout_ns != 0)
        fipc_spin_fixed(&spin, FIPC_SPIN_LOCK_NS);
    for (; timeout_ns != 0;) {
        if ((cur & LOCK_TID_MASK) == 0) {
            if ((r = try_take_free(m, cur, tid)) != 1)
                return r;
        } else if (cur & LOCK_WAITERS) {
            break;
        }
        if (!fipc_spin(&spin))
            break;
        cur = load_relaxed(&m->word);
    }

    if (timeout_ns == 0) {
        /* One last look; a free word is taken even with a zero timeout. */
        cur = load_relaxed(&m->word);
        if ((cur & LOCK_TID_MASK) == 0 && (r = try_take_free(m, cur, tid)) != 1)
            return r;
        return -EAGAIN;
    }

    bool timed_out = false;
    fipc_deadline check_at = 0; /* when the recorded owner is due a check */
    for (;;) {
        cur = load_relaxed(&m->word);
        if ((cur & LOCK_TID_MASK) == 0) {
            /* After sleeping we cannot know whether others still sleep,
             * so take the word with WAITERS set. */
            if ((r = try_take_free(m, cur, tid | LOCK_WAITERS)) != 1)
                return r;
            continue;
        }
        if (timed_out)
            return -ETIMEDOUT;
        if (!(cur & LOCK_WAITERS)) {
            if (!cas_relaxed(&m->word, &cur, cur | LOCK_WAITERS))
                continue;
            cur |= LOCK_WAITERS;
        }
        /* An owner without a robust list recorded itself, or we have
         * none (and so perhaps our peers): nobody but a waiter's check
         * will find the owner's death.  relaxed: only a filter;
         * owner_watch reads the record with the order it needs. */
        fipc_deadline until = deadline;
        bool for_check = false;
        if (s->head && load_relaxed(&m->owner) == 0) {
            check_at = 0;
        } else {
            if (owner_watch(m, s, cur, &check_at))
                continue;
            if (check_at != 0 && check_at < until) {
                until = check_at;
                for_check = true;
            }
        }
        /* Woken by fipc_lock_release (WAITERS is set, so it wakes one), or
         * by the kernel when the owner dies (it sets OWNER_DIED and wakes
         * one), or at the check of a recorded owner.  A timed-out wait was
         * not chosen by a waker: the kernel returns success to a sleeper
         * that a wake dequeued, even late. */
        if (futex_wait_until(&m->word, cur, until) == -ETIMEDOUT && !for_check)
            timed_out = true;
    }
}

/* Everything after a failed fast-path CAS: spin, sleep, then record the
 * lock (or withdraw the announcement).  Out of line, so that the fast path
 * is a leaf function that saves no registers.  The record has room. */
static __attribute__((noinline)) int lock_contended(struct lock_impl *m, struct self *s,
                                                    uint32_t cur, int64_t timeout_ns)
{
    int r = lock_slow(m, s, cur, timeout_ns);
    if (r == 0 || r == -EOWNERDEAD) {
        held_push(s, m);
        owner_record(m, s);
    }
    robust_done(s->head);
    return r;
}

/* The general path: first use in this thread or process, a record that
 * must grow, or no robust list. */
static __attribute__((noinline)) int lock_acquire_general(struct lock_impl *m, int64_t timeout_ns)
{
    struct self *s = &self;
    int r = self_prepare(s, true);
    if (r < 0)
        return r;
    robust_pending(s->head, m);
    uint32_t cur = 0;
    if (!cas_acquire(&m->word, &cur, (uint32_t)s->tid))
        return lock_contended(m, s, cur, timeout_ns);
    held_push(s, m);
    owner_record(m, s);
    robust_done(s->head);
    return 0;
}

/* The fast path of acquire, once the record allows it and has room. */
static inline int lock_take(struct self *s, struct lock_impl *m, uint32_t n, int64_t timeout_ns)
{
    /* Announce the lock before taking it: if this thread dies between the
     * CAS and the link, the kernel still finds it through list_op_pending. */
    struct robust_list_head *h = s->head;
    uintptr_t *held = s->rec->held;
    uintptr_t link = link_of(m);
    h->list_op_pending = (struct robust_list *)link;
    compiler_barrier();
    /* acquire pairs with the release exchange in lock_release. */
    uint32_t cur = 0;
    if (FIPC_UNLIKELY(!cas_acquire(&m->word, &cur, (uint32_t)s->tid)))
        return lock_contended(m, s, cur, timeout_ns);
    /* held_push, with n from before the CAS (front holds held[n]). */
    m->robust_next = s->front.robust_next;
    held[n + 1] = link;
    compiler_barrier();
    s->front.robust_next = link;
    s->n = n + 1;
    compiler_barrier();
    h->list_op_pending = NULL;
    return 0;
}

static inline int lock_acquire(struct lock_impl *m, int64_t timeout_ns)
{
    struct self *s = &self;
    uint32_t n = s->n;
    /* Room in the record (so it exists), and its fast word: this thread's
     * state is this process's and it has a robust list. */
    if (FIPC_UNLIKELY(n + 1 >= s->cap || !s->rec->fast))
        return lock_acquire_general(m, timeout_ns);
    return lock_take(s, m, n, timeout_ns);
}

/* Release held[i] (m): unlink it, free the word, wake a sleeper. */
static int lock_release_at(struct self *s, struct lock_impl *m, uint32_t i)
{
    struct robust_list_head *h = s->head;
    robust_pending(h, m);
    held_remove(s, i);
    if ((load_relaxed(&m->word) & LOCK_TID_MASK) != (uint32_t)s->tid) {
        /* We hold it, yet the word names someone else: a peer overwrote
         * it.  It is off our record; the word is not ours to clear. */
        robust_done(h);
        return -EPROTO;
    }
    /* The record goes before the lock: the release exchange below orders
     * this store before any later owner's (owner_watch). */
    if (load_relaxed(&m->owner) != 0)
        store_relaxed(&m->owner, 0);
    /* release: as in lock_give. */
    if (exchange_release(&m->word, 0) & LOCK_WAITERS)
        futex_wake(&m->word, 1);
    robust_done(h);
    return 0;
}

static __attribute__((noinline)) int lock_release_general(struct lock_impl *m)
{
    struct self *s = self_valid();
    uint32_t i = held_find(s, m);
    if (i == 0)
        return -EPERM;
    return lock_release_at(s, m, i);
}

/* The end of a release that found WAITERS: wake one, then withdraw the
 * announcement. */
static __attribute__((noinline)) int release_wake(struct robust_list_head *h, struct lock_impl *m)
{
    futex_wake(&m->word, 1);
    compiler_barrier();
    h->list_op_pending = NULL;
    return 0;
}

/* The fast path of release, once the record allows it and m is held[n],
 * the lock taken last (released first). */
static inline int lock_give(struct self *s, struct lock_impl *m, uint32_t n)
{
    if (FIPC_UNLIKELY((load_relaxed(&m->word) & LOCK_TID_MASK) != (uint32_t)s->tid))
        return lock_release_general(m);
    struct robust_list_head *h = s->head;
    uintptr_t below = s->rec->held[n - 1];
    h->list_op_pending = (struct robust_list *)link_of(m);
    compiler_barrier();
    s->front.robust_next = below;
    s->n = n - 1;
    /* release: everything written under the lock happens-before the next
     * owner's acquire CAS.  Exchange, not store: WAITERS may have been set
     * by a sleeper since we took the lock. */
    uint32_t old = exchange_release(&m->word, 0);
    /* Keep list_op_pending set until after the wake: if this thread dies
     * between the exchange and the wake, the kernel sees the pending unlock
     * of a free word and wakes a waiter in our place. */
    if (FIPC_UNLIKELY(old & LOCK_WAITERS))
        return release_wake(h, m);
    compiler_barrier();
    h->list_op_pending = NULL;
    return 0;
}

static inline int lock_release(struct lock_impl *m)
{
    struct self *s = &self;
    /* front points at the lock taken last (then a record exists). */
    if (FIPC_UNLIKELY(s->front.robust_next != link_of(m) || !s->rec->fast))
        return lock_release_general(m);
    return lock_give(s, m, s->n);
}

bool fipc__lock_owner_gone(struct lock_impl *m)
{
    /* relaxed: a word read stale only delays the verdict to the next look;
     * the CAS in owner_watch expects exactly the word it checked. */
    uint32_t cur = load_relaxed(&m->word);
    if ((cur & LOCK_TID_MASK) == 0)
        return true;
    struct self *s = self_valid();
    uint64_t id = load_acquire(&m->owner); /* as in owner_watch */
    if ((uint32_t)(id & LOCK_TID_MASK) != (cur & LOCK_TID_MASK)) {
        if (s->head)
            return false; /* a bare word: the kernel's, through the owner's robust list */
        id = 0;
    }
    if (!owner_dead(s, cur & LOCK_TID_MASK, id, load_relaxed(&m->owner_ns)))
        return false;
    /* Marked as owner_watch marks it (release: the same pairing). */
    uint32_t seen = cur;
    cas_release(&m->word, &seen, LOCK_OWNER_DIED | (cur & LOCK_WAITERS));
    return true;
}

int fipc__lock_acquire(struct lock_impl *m, int64_t timeout_ns)
{
    return lock_acquire(m, timeout_ns);
}

int fipc__lock_release(struct lock_impl *m)
{
    return lock_release(m);
}

int fipc_lock_init(fipc_lock *l)
{
    if (!l)
        return -EINVAL;
    *impl(l) = (struct lock_impl){0};
    return 0;
}

int fipc_lock_acquire(fipc_lock *l, int64_t timeout_ns)
{
    if (!l)
        return -EINVAL;
    return lock_acquire(impl(l), timeout_ns);
}

int fipc_lock_release(fipc_lock *l)
{
    if (!l)
        return -EINVAL;
    return lock_release(impl(l));
}

bool fipc_lock_locked(const fipc_lock *l)
{
    return l && (load_relaxed(&impl(l)->word) & LOCK_TID_MASK) != 0;
}

/* ---- the recursive lock ------------------------------------------------- */

int fipc_rlock_init(fipc_rlock *l)
{
    if (!l)
        return -EINVAL;
    *impl(l) = (struct lock_impl){0};
    return 0;
}

/* The depth is plain shared memory touched only by the owner; the private
 * record, not the word, says whether we are the owner. */
static inline int rlock_reenter(struct lock_impl *m)
{
    if (m->count == UINT32_MAX)
        return -EOVERFLOW;
    m->count++;
    return 0;
}

static __attribute__((noinline)) int rlock_acquire_general(struct lock_impl *m, int64_t timeout_ns)
{
    if (held_find(self_valid(), m))
        return rlock_reenter(m);
    int r = lock_acquire_general(m, timeout_ns);
    if (r == 0 || r == -EOWNERDEAD)
        m->count = 1; /* a dead owner's depth means nothing now */
    return r;
}

int fipc_rlock_acquire(fipc_rlock *l, int64_t timeout_ns)
{
    if (!l)
        return -EINVAL;
    struct lock_impl *m = impl(l);
    struct self *s = &self;
    uint32_t n = s->n;
    if (FIPC_UNLIKELY(n + 1 >= s->cap || !s->rec->fast))
        return rlock_acquire_general(m, timeout_ns);
    if (held_find(s, m))
        return rlock_reenter(m);
    int r = lock_take(s, m, n, timeout_ns);
    if (r == 0 || r == -EOWNERDEAD)
        m->count = 1;
    return r;
}

/* The depth goes down; at 0 the lock is released.  A depth of 0 on a held
 * RLock was written by a peer. */
static inline int rlock_leave(struct self *s, struct lock_impl *m, uint32_t n)
{
    uint32_t depth = m->count;
    if (FIPC_UNLIKELY(depth == 0))
        return -EPROTO;
    m->count = depth - 1;
    if (depth > 1)
        return 0;
    return lock_give(s, m, n);
}

static __attribute__((noinline)) int rlock_release_general(struct lock_impl *m)
{
    struct self *s = self_valid();
    if (held_find(s, m) == 0)
        return -EPERM;
    uint32_t depth = m->count;
    if (depth == 0)
        return -EPROTO;
    m->count = depth - 1;
    if (depth > 1)
        return 0;
    return lock_release_general(m);
}

int fipc_rlock_release(fipc_rlock *l)
{
    if (!l)
        return -EINVAL;
    struct lock_impl *m = impl(l);
    struct self *s = &self;
    if (FIPC_UNLIKELY(s->front.robust_next != link_of(m) || !s->rec->fast))
        return rlock_release_general(m);
    return rlock_leave(s, m, s->n);
}

bool fipc_rlock_locked(const fipc_rlock *l)
{
    return l && (load_relaxed(&impl(l)->word) & LOCK_TID_MASK) != 0;
}
