/*
 * bench.c - fipc-bench: runs every registered case (see bench.h) and prints
 * one table of medians and ratios to each group's baseline.
 *
 * Flow per invocation: select the cases (--filter, plus the baselines those
 * cases are compared with); per case, one calibration run picks the
 * iteration count; then R rounds, each running every selected case of a
 * group once, in order, so that drift of the machine spreads evenly over
 * cases instead of favouring whichever ran first.  Every run (calibration
 * included) happens in a fresh runner process; see bench.h for why.
 */
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <limits.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* One run should last about this long: long enough that fork, page faults
 * and timer resolution vanish in it, short enough for 5 rounds of ~15 cases
 * to finish in a minute or two. */
#define BENCH_TARGET_NS       (400 * 1000 * 1000LL)
#define BENCH_TARGET_QUICK_NS (100 * 1000 * 1000LL)
#define BENCH_MAX_ITERS       ((uint64_t)2000 * 1000 * 1000)
#define BENCH_MAX_RUNS        101
#define BENCH_ERR_MAX         240

/* ---- Registry ---- */

static const struct bench_case **registry;
static size_t registry_len, registry_cap;

void bench_register(const struct bench_case *cases, size_t n)
{
    if (registry_len + n > registry_cap) {
        size_t cap = registry_cap ? registry_cap * 2 : 32;
        while (cap < registry_len + n)
            cap *= 2;
        const struct bench_case **r = realloc(registry, cap * sizeof(*r));
        if (!r) {
            perror("fipc-bench: realloc");
            exit(2);
        }
        registry = r;
        registry_cap = cap;
    }
    for (size_t i = 0; i < n; i++)
        registry[registry_len++] = &cases[i];
}

/* ---- Helpers for cases (run inside a runner) ---- */

/*
 * The first failure of a run, from the runner or any of its helpers: it
 * lives in a MAP_SHARED page created by the runner, so a helper that fails
 * can leave its reason there before it exits.  err_claimed makes the first
 * writer win.
 */
struct shared_err {
    int claimed;
    char msg[BENCH_ERR_MAX];
};
static struct shared_err *run_err;
/* The runner's end of the result pipe: helpers close it so that the
 * harness sees EOF as soon as the runner itself dies. */
static int runner_result_fd = -1;
static pid_t runner_pid;
/* Helpers forked by the current run, watched by the SIGCHLD handler. */
#define BENCH_MAX_HELPERS 64
static volatile pid_t helpers[BENCH_MAX_HELPERS];
static volatile int nhelpers;
/* The CPUs the harness was started on (read before any case pins). */
static cpu_set_t start_cpus;

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest sample with at least q of them at or below it. */
static double rank_of(const int64_t *v, size_t n, double q)
{
    size_t k = (size_t)ceil(q * (double)n);
    return (double)v[k == 0 ? 0 : k > n ? n - 1 : k - 1];
}

void bench_dist(struct bench_run *r, int64_t *samples, size_t n)
{
    if (n == 0) {
        for (int i = 0; i < BENCH_NSTATS; i++)
            r->stats[i] = NAN; /* not BENCH_FLOOR: the case's own */
        return;
    }
    qsort(samples, n, sizeof *samples, cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)samples[i];
    r->stats[BENCH_MEAN] = sum / (double)n;
    r->stats[BENCH_P50] = rank_of(samples, n, 0.50);
    r->stats[BENCH_P90] = rank_of(samples, n, 0.90);
    r->stats[BENCH_P99] = rank_of(samples, n, 0.99);
    r->stats[BENCH_P999] = rank_of(samples, n, 0.999);
    r->stats[BENCH_MAX] = (double)samples[n - 1];
}

int bench_oneway_sample(int64_t *samples, uint64_t k, uint64_t warm, uint64_t stamp)
{
    int64_t now = bench_now_ns();
    if (stamp == 0 || (int64_t)stamp > now)
        return bench_fail("message %" PRIu64 ": stamp %" PRIu64 " after %" PRId64, k, stamp, now);
    if (k > warm) samples[k - warm - 1] = now - (int64_t)stamp;
    return 0;
}

int bench_fail(const char *fmt, ...)
{
    /* Keep the first failure: later ones are usually its consequences. */
    int zero = 0;
    if (!run_err || !__atomic_compare_exchange_n(&run_err->claimed, &zero, 1, false,
                                                 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return -1;
    /* Say which process failed when it is a helper. */
    size_t off = 0;
    if (getpid() != runner_pid) {
        static const char tag[] = "helper: ";
        memcpy(run_err->msg, tag, sizeof tag - 1);
        off = sizeof tag - 1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run_err->msg + off, sizeof run_err->msg - off, fmt, ap);
    va_end(ap);
    return -1;
}

void *bench_shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "fipc-bench: mmap %zu bytes: %s\n", size, strerror(errno));
        _exit(3);
    }
    /* Fault the pages in now, not inside the timed loop. */
    memset(p, 0, size);
    return p;
}

void bench_shared_free(void *p, size_t size)
{
    if (p) munmap(p, size);
}

pid_t bench_fork(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (runner_result_fd >= 0) close(runner_result_fd);
        signal(SIGCHLD, SIG_DFL);
        nhelpers = 0;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* The runner may have died between fork and prctl. */
        if (getppid() != runner_pid) _exit(99);
    } else if (pid > 0 && nhelpers < BENCH_MAX_HELPERS) {
        helpers[nhelpers] = pid;
        nhelpers = nhelpers + 1;
    } else if (pid < 0) {
        bench_fail("fork: %s", strerror(errno));
    }
    return pid;
}

int bench_reap(pid_t pid, const char *what)
{
    int status;
    pid_t r;
    do
        r = waitpid(pid, &status, 0);
    while (r < 0 && errno == EINTR);
    if (r != pid) return bench_fail("%s: waitpid: %s", what, strerror(errno));
    if (WIFSIGNALED(status)) return bench_fail("%s: killed by signal %d", what, WTERMSIG(status));
    if (WEXITSTATUS(status) != 0)
        return bench_fail("%s: exited with status %d", what, WEXITSTATUS(status));
    return 0;
}

const char *bench_python_exe(void)
{
    const char *p = getenv("FIPC_BENCH_PYTHON");
    return p && *p ? p : "python3";
}

bool bench_executable_on_path(const char *exe)
{
    if (strchr(exe, '/')) return access(exe, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path) return false;
    char dir[PATH_MAX];
    for (const char *p = path; *p;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0 && n < sizeof dir - strlen(exe) - 2) {
            snprintf(dir, sizeof dir, "%.*s/%s", (int)n, p, exe);
            if (access(dir, X_OK) == 0) return true;
        }
        p += n + (e != NULL);
    }
    return false;
}

int bench_python(const char *script, const char *a, const char *b, const char *c,
                 unsigned long long *count, long long *ns)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return bench_fail("pipe: %s", strerror(errno));
    const char *exe = bench_python_exe();
    pid_t pid = bench_fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (dup2(p[1], STDOUT_FILENO) < 0) _exit(126);
        execlp(exe, exe, script, a, b, c, (char *)NULL);
        fprintf(stderr, "fipc-bench: %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    close(p[1]);
    char out[256];
    size_t got = 0;
    for (;;) {
        ssize_t k = read(p[0], out + got, sizeof out - 1 - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
        if (got == sizeof out - 1) break;
    }
    out[got] = '\0';
    close(p[0]);
    if (bench_reap(pid, script) < 0) return -1;
    if (sscanf(out, "ok %llu %lld", count, ns) != 2 || *ns <= 0)
        return bench_fail("%s printed '%.60s', not 'ok COUNT NS'", script, out);
    return 0;
}

int bench_pin_cpu(int index)
{
    int seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &start_cpus) || seen++ != index) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (sched_setaffinity(0, sizeof one, &one) < 0)
            return bench_fail("sched_setaffinity(cpu %d): %s", cpu, strerror(errno));
        return 0;
    }
    return bench_fail("no CPU #%d: the harness may use %d CPU(s)", index, seen);
}

/*
 * The machine's state, sampled before every run: the round trip of one
 * cache line between the first two CPUs (each side spins until the other
 * has written).  On a virtual machine this figure moves when the host
 * moves the virtual CPUs; every transport that hands cache lines between
 * processes (the fipc queues, ck_ring) moves with it, while the system-
 * call transports hardly do.  Returns ns per round trip; NAN if it could
 * not be measured (one CPU, or a spinner that never answered).
 */
#define PROBE_TRIPS    20000
#define PROBE_LIMIT_NS ((int64_t)2000000000)

static double line_roundtrip_ns(void)
{
    if (CPU_COUNT(&start_cpus) < 2) return NAN;
    struct probe {
        _Alignas(64) uint64_t line; /* relaxed atomics: only its value travels */
        _Alignas(64) double ns;
    } *p = bench_shared(sizeof *p);
    p->ns = NAN;
    fflush(NULL);
    /* The two spinners run in processes of their own, so that pinning
     * them leaves the affinity of the harness alone. */
    pid_t prober = fork();
    if (prober == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (bench_pin_cpu(0) < 0) _exit(1);
        pid_t echo = fork();
        if (echo == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (bench_pin_cpu(1) < 0) _exit(1);
            /* Answer each odd value with the next even one. */
            for (uint64_t i = 0; i < PROBE_TRIPS; i++) {
                while (__atomic_load_n(&p->line, __ATOMIC_RELAXED) != 2 * i + 1)
                    cpu_relax();
                __atomic_store_n(&p->line, 2 * i + 2, __ATOMIC_RELAXED);
            }
            _exit(0);
        }
        if (echo < 0) _exit(1);
        int64_t t0 = bench_now_ns(), limit = t0 + PROBE_LIMIT_NS;
        for (uint64_t i = 0; i < PROBE_TRIPS; i++) {
            __atomic_store_n(&p->line, 2 * i + 1, __ATOMIC_RELAXED);
            for (unsigned spins = 0; __atomic_load_n(&p->line, __ATOMIC_RELAXED) != 2 * i + 2;
                 spins++) {
                cpu_relax();
                if ((spins & 1023) == 1023 && bench_now_ns() > limit) {
                    kill(echo, SIGKILL); /* no second CPU in practice */
                    _exit(1);
                }
            }
        }
        p->ns = (double)(bench_now_ns() - t0) / PROBE_TRIPS;
        _exit(waitpid(echo, NULL, 0) == echo ? 0 : 1);
    }
    double ns = NAN;
    if (prober > 0) {
        int status;
        while (waitpid(prober, &status, 0) < 0 && errno == EINTR)
            ;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ns = p->ns;
    }
    bench_shared_free(p, sizeof *p);
    return ns;
}

int bench_gate_init(struct bench_gate *g)
{
    if (pipe(g->ready) < 0) return bench_fail("pipe: %s", strerror(errno));
    if (pipe(g->go) < 0) {
        close(g->ready[0]);
        close(g->ready[1]);
        return bench_fail("pipe: %s", strerror(errno));
    }
    return 0;
}

static int write_byte(int fd, char c)
{
    for (;;) {
        ssize_t n = write(fd, &c, 1);
        if (n == 1) return 0;
        if (n < 0 && errno != EINTR) return -1;
    }
}

static int read_byte(int fd)
{
    for (;;) {
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n == 1) return 0;
        if (n == 0 || errno != EINTR) return -1;
    }
}

int bench_gate_pass(struct bench_gate *g)
{
    if (write_byte(g->ready[1], 'r') < 0 || read_byte(g->go[0]) < 0) return -1;
    return 0;
}

int bench_gate_open(struct bench_gate *g, int n)
{
    for (int i = 0; i < n; i++)
        if (read_byte(g->ready[0]) < 0)
            return bench_fail("gate: a helper died before it was ready");
    for (int i = 0; i < n; i++)
        if (write_byte(g->go[1], 'g') < 0) return bench_fail("gate: write: %s", strerror(errno));
    return 0;
}

void bench_gate_close(struct bench_gate *g)
{
    close(g->ready[0]);
    close(g->ready[1]);
    close(g->go[0]);
    close(g->go[1]);
}

/* ---- Runner ---- */

/* What a runner sends back; smaller than PIPE_BUF, so one atomic write. */
struct runner_msg {
    int ok;
    uint64_t iters;
    int64_t ns;
    uint64_t ops;
    double value;
    double stats[BENCH_NROWS];
    char err[BENCH_ERR_MAX];
};

/* Append the decimal digits of v to *p (async-signal-safe). */
static void put_uint(char **p, char *end, unsigned v)
{
    char d[12];
    int n = 0;
    do
        d[n++] = (char)('0' + v % 10);
    while ((v /= 10) && n < 12);
    while (n && *p < end)
        *(*p)++ = d[--n];
}

static void put_str(char **p, char *end, const char *s)
{
    while (*s && *p < end)
        *(*p)++ = *s++;
}

/*
 * SIGCHLD in the runner: if a helper died or exited with an error, the
 * runner is probably blocked waiting for it (a ping-pong partner that
 * will never answer), so report the failure now and leave.  Helpers that
 * exit with status 0 are left for bench_reap (WNOWAIT peeks only).
 */
static void on_sigchld(int sig)
{
    (void)sig;
    int saved = errno;
    for (int i = 0; i < nhelpers; i++) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)helpers[i], &si, WEXITED | WNOHANG | WNOWAIT) < 0 ||
            si.si_pid != helpers[i])
            continue;
        if (si.si_code == CLD_EXITED && si.si_status == 0) continue;
        struct runner_msg m;
        memset(&m, 0, sizeof m);
        int zero = 0;
        if (run_err && !__atomic_compare_exchange_n(&run_err->claimed, &zero, 1, false,
                                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            memcpy(m.err, run_err->msg, sizeof m.err);
        } else {
            char *p = m.err, *end = m.err + sizeof m.err - 1;
            put_str(&p, end, "helper ");
            put_uint(&p, end, (unsigned)helpers[i]);
            put_str(&p, end,
                    si.si_code == CLD_EXITED ? " exited with status " : " killed by signal ");
            put_uint(&p, end, (unsigned)si.si_status);
        }
        m.err[sizeof m.err - 1] = '\0';
        ssize_t n = write(runner_result_fd, &m, sizeof m);
        (void)n;
        _exit(5);
    }
    errno = saved;
}

static int run_once(const struct bench_case *c, bool quick, uint64_t iters, struct bench_run *r)
{
    memset(r, 0, sizeof *r);
    r->iters = iters;
    r->quick = quick;
    r->arg = c->arg;
    nhelpers = 0;
    if (c->fn(r) != 0) {
        bench_fail("case returned an error without a message");
        return -1;
    }
    if (r->ops == 0) r->ops = iters;
    if (r->ns <= 0) r->ns = 1;
    return 0;
}

/* Grow iters until one run lasts at least half the target, then
 * scale it to the target.  The first, short runs double as warm-up. */
static int calibrate(const struct bench_case *c, bool quick, struct runner_msg *m)
{
    int64_t target = quick ? BENCH_TARGET_QUICK_NS : BENCH_TARGET_NS;
    uint64_t iters = c->min_iters ? c->min_iters : 1000;
    struct bench_run r;
    if (c->fixed) {
        m->iters = 1;
        return 0;
    }
    for (;;) {
        if (run_once(c, quick, iters, &r) < 0) return -1;
        if (r.ns >= target / 2 || iters >= BENCH_MAX_ITERS) break;
        /* Aim a little past the target so that the loop ends soon, even
         * though the first runs (cold caches) overestimate the cost. */
        double f = 1.5 * (double)target / (double)r.ns;
        f = f < 1.5 ? 1.5 : f > 100 ? 100 : f;
        iters = (uint64_t)((double)iters * f);
    }
    double want = (double)iters * (double)target / (double)r.ns;
    m->iters = want < 1 ? 1 : want > (double)BENCH_MAX_ITERS ? BENCH_MAX_ITERS : (uint64_t)want;
    m->ns = r.ns;
    m->ops = r.ops;
    return 0;
}

static int measure(const struct bench_case *c, bool quick, uint64_t iters, struct runner_msg *m)
{
    struct bench_run r;
    /* A short warm-up in this fresh process: page tables, caches, lazy
     * binding, the library's per-thread state. */
    if (!c->fixed && run_once(c, quick, iters / 20 ? iters / 20 : 1, &r) < 0) return -1;
    if (run_once(c, quick, iters, &r) < 0) return -1;
    m->iters = iters;
    m->ns = r.ns;
    m->ops = r.ops;
    m->value = r.value;
    memcpy(m->stats, r.stats, sizeof m->stats);
    return 0;
}

static __attribute__((noreturn)) void runner_main(const struct bench_case *c, bool quick,
                                                  uint64_t iters, int fd)
{
    runner_pid = getpid();
    runner_result_fd = fd;
    run_err = mmap(NULL, sizeof *run_err, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
                   0);
    if (run_err == MAP_FAILED) _exit(6);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);

    struct runner_msg m;
    memset(&m, 0, sizeof m);
    int rc = iters == 0 ? calibrate(c, quick, &m) : measure(c, quick, iters, &m);
    /* Block SIGCHLD so the handler cannot write a second message. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    m.ok = rc == 0;
    if (!m.ok) memcpy(m.err, run_err->msg, sizeof m.err);
    ssize_t n = write(fd, &m, sizeof m);
    _exit(n == (ssize_t)sizeof m ? 0 : 4);
}

/* Run c once in a fresh process; iters == 0 asks for calibration.
 * Returns 0 with *m filled, or -1 with m->err saying what went wrong. */
static int run_in_runner(const struct bench_case *c, bool quick, uint64_t iters, int timeout_s,
                         struct runner_msg *m)
{
    memset(m, 0, sizeof *m);
    int p[2];
    if (pipe(p) < 0) {
        snprintf(m->err, sizeof m->err, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(m->err, sizeof m->err, "fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        close(p[0]);
        /* Own process group, so the harness can kill the runner together
         * with every helper it forked. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(98);
        runner_main(c, quick, iters, p[1]);
    }
    /* Also here: the group must exist before any kill(-pid) below. */
    setpgid(pid, pid);
    close(p[1]);

    size_t got = 0;
    bool timed_out = false;
    int64_t deadline = bench_now_ns() + (int64_t)timeout_s * 1000000000;
    while (got < sizeof *m) {
        int64_t left_ms = (deadline - bench_now_ns()) / 1000000;
        if (left_ms <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        int pr = poll(&pfd, 1, left_ms > 60000 ? 60000 : (int)left_ms);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        ssize_t n = read(p[0], (char *)m + got, sizeof *m - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(p[0]);
    /* The runner is at worst a zombie until waitpid below, so its pid (the
     * group id) cannot have been reused: this kills only our processes. */
    int status = 0;
    if (got < sizeof *m && !timed_out) {
        /* EOF: the runner died.  Collect its own status before the kill
         * below could be mistaken for the cause. */
        waitpid(pid, &status, 0);
        kill(-pid, SIGKILL);
    } else {
        kill(-pid, SIGKILL);
        waitpid(pid, &status, 0);
    }

    if (timed_out) {
        snprintf(m->err, sizeof m->err, "timed out after %d s (hung?)", timeout_s);
        return -1;
    }
    if (got < sizeof *m) {
        if (WIFSIGNALED(status))
            snprintf(m->err, sizeof m->err, "runner killed by signal %d (%s)", WTERMSIG(status),
                     strsignal(WTERMSIG(status)));
        else
            snprintf(m->err, sizeof m->err, "runner exited with status %d, no result",
                     WEXITSTATUS(status));
        return -1;
    }
    if (!m->ok) {
        m->err[sizeof m->err - 1] = '\0';
        return -1;
    }
    return 0;
}

/* ---- Report ---- */

struct slot {
    const struct bench_case *c;
    int stat;                      /* enum bench_stat of a .dist case's row; -1: none */
    const struct bench_case *base; /* NULL if the baseline is missing */
    uint64_t iters;
    double vals[BENCH_MAX_RUNS];
    double line_ns[BENCH_MAX_RUNS]; /* the machine's state before each run */
    int nvals;
    bool failed;
    char err[BENCH_ERR_MAX];
    double median, min, max, ratio; /* ratio NAN when unknown */
    const char *status;             /* PASS, MISS, ERROR, "-" (or status_buf) */
    char status_buf[24];
};

struct options {
    int runs;
    bool quick;
    const char *csv;
    const char *filters[16]; /* a case runs if any matches; none: all */
    int nfilters;
    int timeout_s;
    bool list;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fipc-bench [--quick] [--runs N] [--filter SUBSTR] [--csv PATH]\n"
            "                  [--timeout SEC] [--list]\n"
            "  --quick         3 runs of ~0.1 s per case (default: 5 runs of ~0.4 s)\n"
            "  --runs N        runs per case (median of N; 1..%d)\n"
            "  --filter SUBSTR only cases whose \"group/name\" contains SUBSTR, or\n"
            "                  with ^SUBSTR starts with it (repeatable: any may\n"
            "                  match; their baselines run too, for the ratio)\n"
            "  --csv PATH      where to write the rows (default bench-results.csv;\n"
            "                  \"-\" for none)\n"
            "  --timeout SEC   give up on one run after SEC seconds (default 120)\n"
            "  --list          list the cases and exit\n",
            BENCH_MAX_RUNS);
}

static int parse_args(int argc, char **argv, struct options *o)
{
    o->runs = 0;
    o->quick = false;
    o->csv = "bench-results.csv";
    o->nfilters = 0;
    o->timeout_s = 120;
    o->list = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) {
            o->quick = true;
        } else if (!strcmp(a, "--list")) {
            o->list = true;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (v && !strcmp(a, "--runs")) {
            o->runs = atoi(v);
            if (o->runs < 1 || o->runs > BENCH_MAX_RUNS) {
                fprintf(stderr, "fipc-bench: --runs must be 1..%d\n", BENCH_MAX_RUNS);
                return -1;
            }
            i++;
        } else if (v && !strcmp(a, "--filter")) {
            if (o->nfilters == (int)(sizeof o->filters / sizeof o->filters[0])) {
                fprintf(stderr, "fipc-bench: too many --filter options\n");
                return -1;
            }
            o->filters[o->nfilters++] = v;
            i++;
        } else if (v && !strcmp(a, "--csv")) {
            o->csv = v;
            i++;
        } else if (v && !strcmp(a, "--timeout")) {
            o->timeout_s = atoi(v);
            if (o->timeout_s < 1) {
                fprintf(stderr, "fipc-bench: --timeout must be >= 1\n");
                return -1;
            }
            i++;
        } else {
            fprintf(stderr, "fipc-bench: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return -1;
        }
    }
    if (o->runs == 0) o->runs = o->quick ? 3 : 5;
    return 0;
}

static const struct bench_case *find_case(const char *group, const char *name)
{
    for (size_t i = 0; i < registry_len; i++)
        if (!strcmp(registry[i]->group, group) && !strcmp(registry[i]->name, name))
            return registry[i];
    return NULL;
}

static const struct bench_case *baseline_of(const struct bench_case *c)
{
    return c->baseline ? find_case(c->group, c->baseline) : c;
}

/* A filter selects the cases whose "group/name" contains it; one that
 * starts with '^', those whose "group/name" starts with the rest (so that
 * "^contended/" leaves "uncontended/" out). */
static bool matches(const struct bench_case *c, const struct options *o)
{
    if (o->nfilters == 0) return true;
    char full[256];
    snprintf(full, sizeof full, "%s/%s", c->group, c->name);
    for (int i = 0; i < o->nfilters; i++) {
        const char *f = o->filters[i];
        if (f[0] == '^' ? strncmp(full, f + 1, strlen(f + 1)) == 0 : strstr(full, f) != NULL)
            return true;
    }
    return false;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void summarise(struct slot *s)
{
    if (s->nvals == 0) {
        s->median = s->min = s->max = NAN;
        return;
    }
    double v[BENCH_MAX_RUNS];
    memcpy(v, s->vals, (size_t)s->nvals * sizeof v[0]);
    qsort(v, (size_t)s->nvals, sizeof v[0], cmp_double);
    int n = s->nvals;
    s->median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    s->min = v[0];
    s->max = v[n - 1];
}

/*
 * Case s against its baseline b: the median over rounds of the ratio of
 * s's run to b's run in the same round (> 1: s is faster).  The runs of a
 * round follow each other within seconds, so a machine that changes speed
 * from one round to the next (a VM whose host moves its virtual CPUs)
 * shifts both sides of each ratio alike, where a ratio of two medians
 * could pair the baseline's fast rounds with the case's slow ones.
 */
static double paired_ratio(const struct slot *s, const struct slot *b)
{
    int n = s->nvals < b->nvals ? s->nvals : b->nvals;
    if (n == 0) return NAN;
    double r[BENCH_MAX_RUNS];
    for (int k = 0; k < n; k++)
        r[k] = s->c->unit != BENCH_RATE ? b->vals[k] / s->vals[k] : s->vals[k] / b->vals[k];
    qsort(r, (size_t)n, sizeof r[0], cmp_double);
    return n % 2 ? r[n / 2] : (r[n / 2 - 1] + r[n / 2]) / 2;
}

/* The slot of case c; for a distribution, the row of statistic stat. */
static struct slot *slot_of(struct slot *slots, size_t n, const struct bench_case *c, int stat)
{
    for (size_t i = 0; i < n; i++)
        if (slots[i].c == c && (!c->dist || slots[i].stat == stat)) return &slots[i];
    return NULL;
}

static const char *const stat_names[BENCH_NROWS] = {"mean",  "p50", "p90",  "p99",
                                                    "p99.9", "max", "floor"};

static const char *stat_name(int stat)
{
    return stat >= 0 && stat < BENCH_NROWS ? stat_names[stat] : "";
}

/* The rows of case c: one per statistic (and its floor), or one. */
static int rows_of(const struct bench_case *c)
{
    return c->dist ? BENCH_NSTATS + (c->floor ? 1 : 0) : 1;
}

static const char *unit_label(const struct bench_case *c, char *buf, size_t len)
{
    if (c->unit == BENCH_COST)
        snprintf(buf, len, "%s", c->op ? c->op : "cost");
    else if (c->unit == BENCH_TIME)
        snprintf(buf, len, "ns/%s", c->op ? c->op : "op");
    else
        snprintf(buf, len, "M%s/s", c->op ? c->op : "op");
    return buf;
}

/* Table figures: nanoseconds as they are, rates in millions. */
static void fmt_value(const struct bench_case *c, double v, char *buf, size_t len)
{
    if (isnan(v))
        snprintf(buf, len, "-");
    else if (c->unit == BENCH_RATE)
        snprintf(buf, len, "%.3f", v / 1e6);
    else if (c->unit == BENCH_COST)
        snprintf(buf, len, "%.3f", v);
    else if (v < 100)
        snprintf(buf, len, "%.2f", v);
    else
        snprintf(buf, len, "%.1f", v);
}

/* The goal of a distribution's row stat, or NULL. */
static const struct bench_dist_goal *dist_goal(const struct bench_case *c, int stat)
{
    if (!c->dist) return NULL;
    for (int i = 0; i < BENCH_MAX_DIST_GOALS && c->dist_goals[i].factor > 0; i++)
        if ((int)c->dist_goals[i].stat == stat) return &c->dist_goals[i];
    return NULL;
}

static bool has_goal(const struct slot *s)
{
    return s->c->goal > 0 || s->c->limit > 0 || dist_goal(s->c, s->stat);
}

static void fmt_goal(const struct slot *s, char *buf, size_t len)
{
    const struct bench_case *c = s->c;
    const struct bench_dist_goal *dg = dist_goal(c, s->stat);
    if (dg)
        snprintf(buf, len, "time<=%.2fx %s", dg->factor, stat_name((int)dg->of));
    else if (c->limit > 0)
        snprintf(buf, len, "value<=%g", c->limit);
    else if (c->goal <= 0)
        snprintf(buf, len, "-");
    else if (c->unit == BENCH_TIME)
        snprintf(buf, len, "time<=%.2fx", c->goal);
    else
        snprintf(buf, len, "rate>=%.2fx", c->goal);
}

enum {
    COL_GROUP,
    COL_CASE,
    COL_STAT,
    COL_BASE,
    COL_UNIT,
    COL_MED,
    COL_MIN,
    COL_MAX,
    COL_RATIO,
    COL_GOAL,
    COL_STATUS,
    NCOLS
};

static const char *const col_names[NCOLS] = {
    "group", "case", "stat", "baseline", "unit", "median", "min", "max", "ratio", "goal", "status"};
/* Text columns are left-aligned, numbers right-aligned. */
static const bool col_left[NCOLS] = {true,  true,  true,  true, true, false,
                                     false, false, false, true, true};

static void row_cells(const struct slot *s, char cells[NCOLS][48])
{
    const struct bench_case *c = s->c;
    snprintf(cells[COL_GROUP], 48, "%s", c->group);
    snprintf(cells[COL_CASE], 48, "%s", c->name);
    snprintf(cells[COL_STAT], 48, "%s", c->dist ? stat_name(s->stat) : "");
    snprintf(cells[COL_BASE], 48, "%s", c->baseline ? c->baseline : "(self)");
    unit_label(c, cells[COL_UNIT], 48);
    fmt_value(c, s->median, cells[COL_MED], 48);
    fmt_value(c, s->min, cells[COL_MIN], 48);
    fmt_value(c, s->max, cells[COL_MAX], 48);
    if (isnan(s->ratio))
        snprintf(cells[COL_RATIO], 48, "-");
    else
        snprintf(cells[COL_RATIO], 48, "%.2f", s->ratio);
    fmt_goal(s, cells[COL_GOAL], 48);
    snprintf(cells[COL_STATUS], 48, "%s", s->status);
}

static void print_table(const struct slot *slots, size_t n, const struct options *o)
{
    int width[NCOLS];
    for (int j = 0; j < NCOLS; j++)
        width[j] = (int)strlen(col_names[j]);
    char(*all)[NCOLS][48] = calloc(n ? n : 1, sizeof *all);
    if (!all) {
        perror("fipc-bench: calloc");
        exit(2);
    }
    for (size_t i = 0; i < n; i++) {
        row_cells(&slots[i], all[i]);
        for (int j = 0; j < NCOLS; j++) {
            int w = (int)strlen(all[i][j]);
            if (w > width[j]) width[j] = w;
        }
    }
    printf("fipc-bench: median of %d run%s per case (each ~%.1f s, in a fresh process)\n", o->runs,
           o->runs == 1 ? "" : "s",
           (double)(o->quick ? BENCH_TARGET_QUICK_NS : BENCH_TARGET_NS) / 1e9);
    printf("ratio > 1 means faster than the group's baseline; the median over rounds of\n"
           "the case's run against the baseline's run in the same round:\n"
           "  ns/... (lower is better):  ratio = baseline_time / case_time\n"
           "  M.../s (higher is better): ratio = case_rate / baseline_rate\n\n");
    for (int j = 0; j < NCOLS; j++)
        printf("%s%-*s", j ? "  " : "", width[j], col_names[j]);
    printf("\n");
    const char *prev_group = NULL;
    for (size_t i = 0; i < n; i++) {
        /* A rule between groups: ratios compare only within one. */
        if (prev_group && strcmp(prev_group, slots[i].c->group)) {
            int total = 0;
            for (int j = 0; j < NCOLS; j++)
                total += width[j] + (j ? 2 : 0);
            for (int k = 0; k < total; k++)
                putchar('-');
            putchar('\n');
        }
        prev_group = slots[i].c->group;
        for (int j = 0; j < NCOLS; j++) {
            if (col_left[j])
                printf("%s%-*s", j ? "  " : "", j == NCOLS - 1 ? 0 : width[j], all[i][j]);
            else
                printf("%s%*s", j ? "  " : "", width[j], all[i][j]);
        }
        printf("\n");
    }
    free(all);
}

/* "round trips 65-330 ns, 2 of 5 runs began slow" for one case. */
static void print_line_ns(const struct slot *s, double slow_ns)
{
    double lo = INFINITY, hi = -INFINITY;
    int slow = 0, n = 0;
    for (int k = 0; k < s->nvals; k++) {
        double v = s->line_ns[k];
        if (isnan(v)) continue;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        slow += v > slow_ns;
        n++;
    }
    if (n == 0) {
        printf("no round trips measured");
        return;
    }
    printf("round trips %.0f-%.0f ns, %d of %d runs began slow", lo, hi, slow, n);
}

/* Print a summary of the cache-line round trips sampled before the runs
 * and return the slow threshold: twice the fastest tenth of the samples
 * (the machine at its usual speed); NAN if there are none.  A bench whose
 * samples spread past it ran on a machine that changed under it. */
static double print_probes(const double *samples, int n)
{
    if (n == 0) {
        printf("\ncache-line round trip between CPUs: not measured (one CPU)\n");
        return NAN;
    }
    double *v = malloc((size_t)n * sizeof *v);
    if (!v) return NAN;
    memcpy(v, samples, (size_t)n * sizeof *v);
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    double slow_ns = 2 * v[n / 10];
    int slow = 0;
    for (int i = 0; i < n; i++)
        slow += v[i] > slow_ns;
    printf("\ncache-line round trip between CPUs, before each run: median %.0f ns, "
           "range %.0f-%.0f ns; %d of %d runs began slow (above %.0f ns, twice the "
           "fastest tenth)\n",
           median, v[0], v[n - 1], slow, n, slow_ns);
    free(v);
    return slow_ns;
}

static void csv_field(FILE *f, const char *s, bool last)
{
    bool quote = strpbrk(s, ",\"\n") != NULL;
    if (quote) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"') fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
    fputc(last ? '\n' : ',', f);
}

static void csv_num(FILE *f, double v, const char *fmt)
{
    if (isnan(v))
        fputs(",", f);
    else {
        fprintf(f, fmt, v);
        fputc(',', f);
    }
}

/* The CSV carries the same rows as the table, with unscaled figures
 * (ns per op, or ops per second) so that scripts need no unit parsing. */
static int write_csv(const char *path, const struct slot *slots, size_t n)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "fipc-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f, "group,case,baseline,unit,runs,iters,median,min,max,ratio,goal,status,error,stat\n");
    for (size_t i = 0; i < n; i++) {
        const struct slot *s = &slots[i];
        const struct bench_case *c = s->c;
        char unit[48], goal[48], buf[32];
        if (c->unit == BENCH_COST)
            snprintf(unit, sizeof unit, "%s", c->op ? c->op : "cost");
        else
            snprintf(unit, sizeof unit, "%s/%s", c->unit == BENCH_TIME ? "ns" : "ops",
                     c->unit == BENCH_TIME ? (c->op ? c->op : "op") : "s");
        fmt_goal(s, goal, sizeof goal);
        csv_field(f, c->group, false);
        csv_field(f, c->name, false);
        csv_field(f, c->baseline ? c->baseline : c->name, false);
        csv_field(f, unit, false);
        snprintf(buf, sizeof buf, "%d", s->nvals);
        csv_field(f, buf, false);
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)s->iters);
        csv_field(f, buf, false);
        csv_num(f, s->median, "%.4f");
        csv_num(f, s->min, "%.4f");
        csv_num(f, s->max, "%.4f");
        csv_num(f, s->ratio, "%.4f");
        csv_field(f, has_goal(s) ? goal : "", false);
        csv_field(f, s->status, false);
        csv_field(f, s->err, false);
        csv_field(f, c->dist ? stat_name(s->stat) : "", true);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "fipc-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options o;
    if (parse_args(argc, argv, &o) < 0) return 2;
    if (sched_getaffinity(0, sizeof start_cpus, &start_cpus) < 0) {
        CPU_ZERO(&start_cpus);
        CPU_SET(0, &start_cpus);
    }

    /* Select: the matching cases, plus the baselines they are compared
     * with, in registration order. */
    bool *take = calloc(registry_len ? registry_len : 1, sizeof *take);
    struct slot *slots = calloc(registry_len ? registry_len * BENCH_NROWS : 1, sizeof *slots);
    if (!take || !slots) {
        perror("fipc-bench: calloc");
        return 2;
    }
    for (size_t i = 0; i < registry_len; i++) {
        if (!matches(registry[i], &o)) continue;
        take[i] = true;
        const struct bench_case *b = baseline_of(registry[i]);
        for (size_t k = 0; b && k < registry_len; k++)
            if (registry[k] == b) take[k] = true;
    }
    size_t n = 0;
    for (size_t i = 0; i < registry_len; i++) {
        if (!take[i]) continue;
        if (o.list) {
            printf("%s/%s%s%s\n", registry[i]->group, registry[i]->name,
                   registry[i]->baseline ? "  vs " : "  (baseline)",
                   registry[i]->baseline ? registry[i]->baseline : "");
            continue;
        }
        if (!baseline_of(registry[i]))
            fprintf(stderr, "fipc-bench: %s/%s: baseline '%s' is not registered\n",
                    registry[i]->group, registry[i]->name, registry[i]->baseline);
        /* A distribution has a row per statistic, next to each other; the
         * first (the mean) runs the case and fills the others. */
        int rows = rows_of(registry[i]);
        for (int k = 0; k < rows; k++) {
            slots[n].c = registry[i];
            slots[n].stat = registry[i]->dist ? k : -1;
            slots[n].base = baseline_of(registry[i]);
            slots[n].status = "-";
            n++;
        }
    }
    free(take);
    if (o.list || n == 0) {
        if (n == 0 && !o.list) fprintf(stderr, "fipc-bench: no case matches the filter\n");
        free(slots);
        return o.list ? 0 : 2;
    }

    /* Slots of one group are contiguous, because tables register them so;
     * walk group by group anyway in case a group spans several tables. */
    enum { MAX_PROBES = 4096 };
    static double probes[MAX_PROBES];
    int nprobes = 0;
    bool *done = calloc(n, sizeof *done);
    if (!done) {
        perror("fipc-bench: calloc");
        return 2;
    }
    for (size_t g = 0; g < n; g++) {
        if (done[g]) continue;
        const char *group = slots[g].c->group;
        struct slot *members[1024];
        int nm = 0;
        for (size_t i = g; i < n && nm < 1024; i++)
            if (!strcmp(slots[i].c->group, group)) {
                members[nm++] = &slots[i];
                done[i] = true;
            }
        for (int k = 0; k < nm; k++) {
            struct slot *s = members[k];
            if (s->stat > 0) continue; /* a row of the distribution above */
            int rows = rows_of(s->c);
            struct runner_msg m;
            fprintf(stderr, "calibrating %s/%s ...", group, s->c->name);
            if (run_in_runner(s->c, o.quick, 0, o.timeout_s, &m) < 0) {
                for (int j = 0; j < rows; j++) {
                    s[j].failed = true;
                    snprintf(s[j].err, sizeof s[j].err, "%s", m.err);
                }
                fprintf(stderr, " ERROR: %s\n", m.err);
                continue;
            }
            for (int j = 0; j < rows; j++)
                s[j].iters = m.iters;
            fprintf(stderr, " %llu iterations\n", (unsigned long long)m.iters);
        }
        for (int r = 0; r < o.runs; r++) {
            fprintf(stderr, "%s: round %d/%d\n", group, r + 1, o.runs);
            for (int k = 0; k < nm; k++) {
                struct slot *s = members[k];
                if (s->failed || s->stat > 0) continue;
                int rows = rows_of(s->c);
                double line_ns = line_roundtrip_ns();
                if (!isnan(line_ns) && nprobes < MAX_PROBES) probes[nprobes++] = line_ns;
                struct runner_msg m;
                if (run_in_runner(s->c, o.quick, s->iters, o.timeout_s, &m) < 0) {
                    for (int j = 0; j < rows; j++) {
                        s[j].failed = true;
                        snprintf(s[j].err, sizeof s[j].err, "%s", m.err);
                    }
                    fprintf(stderr, "  %s/%s: ERROR: %s\n", group, s->c->name, m.err);
                    continue;
                }
                for (int j = 0; j < rows; j++) {
                    double v = s->c->dist                 ? m.stats[j]
                               : s->c->unit == BENCH_COST ? m.value
                               : s->c->unit == BENCH_TIME ? (double)m.ns / (double)m.ops
                                                          : (double)m.ops * 1e9 / (double)m.ns;
                    s[j].line_ns[s[j].nvals] = line_ns;
                    s[j].vals[s[j].nvals++] = v;
                }
            }
        }
    }
    free(done);

    int goals = 0, met = 0, errors = 0;
    for (size_t i = 0; i < n; i++) {
        struct slot *s = &slots[i];
        summarise(s);
        s->ratio = NAN;
        if (s->failed) {
            /* A failed run discards the others: a case that is wrong
             * once has no trustworthy figure. */
            s->median = s->min = s->max = NAN;
            s->status = "ERROR";
            errors += s->stat <= 0;
        }
        /* A floor row compares with the baseline's p50 (the floor). */
        int bstat = s->stat == BENCH_FLOOR ? BENCH_P50 : s->stat;
        struct slot *b = s->base ? slot_of(slots, n, s->base, bstat) : NULL;
        if (!s->failed && b && !b->failed && b->nvals > 0) s->ratio = paired_ratio(s, b);
        const struct bench_dist_goal *dg = dist_goal(s->c, s->stat);
        if (dg) {
            goals++;
            if (s->failed) continue;
            /* Against the baseline's statistic dg->of, paired by round;
             * every_round: met only if it holds in every round (a
             * distribution right in most runs and bimodal in one misses). */
            const struct bench_case *oc = dg->of == BENCH_FLOOR ? s->c : s->base;
            struct slot *bo = oc ? slot_of(slots, n, oc, (int)dg->of) : NULL;
            int rounds = bo && !bo->failed ? (s->nvals < bo->nvals ? s->nvals : bo->nvals) : 0;
            if (rounds == 0) {
                s->status = "n/a";
            } else if (!dg->every_round) {
                bool ok = paired_ratio(s, bo) >= 1.0 / dg->factor;
                s->status = ok ? "PASS" : "MISS";
                met += ok;
            } else {
                int held = 0;
                for (int k = 0; k < rounds; k++)
                    held += s->vals[k] <= dg->factor * bo->vals[k];
                bool ok = held == rounds;
                snprintf(s->status_buf, sizeof s->status_buf, "%s %d/%d", ok ? "PASS" : "MISS",
                         held, rounds);
                s->status = s->status_buf;
                met += ok;
            }
        } else if (s->c->limit > 0) {
            goals++;
            if (s->failed) continue;
            bool ok = s->median <= s->c->limit;
            s->status = ok ? "PASS" : "MISS";
            met += ok;
        } else if (s->c->goal > 0) {
            goals++;
            if (s->failed) continue;
            if (isnan(s->ratio)) {
                s->status = "n/a";
            } else {
                /* time <= goal * base  <=>  base/time >= 1/goal */
                bool ok = s->c->unit == BENCH_TIME ? s->ratio >= 1.0 / s->c->goal
                                                   : s->ratio >= s->c->goal;
                s->status = ok ? "PASS" : "MISS";
                met += ok;
            }
        }
    }

    print_table(slots, n, &o);
    double slow_ns = print_probes(probes, nprobes);
    /* A missed goal says what the machine was like before its runs and
     * its baseline's. */
    for (size_t i = 0; i < n && !isnan(slow_ns); i++) {
        const struct slot *s = &slots[i];
        if (!has_goal(s) || strncmp(s->status, "MISS", 4)) continue;
        const struct slot *b = s->base ? slot_of(slots, n, s->base, s->stat) : NULL;
        printf("  %s/%s%s%s: ", s->c->group, s->c->name, s->c->dist ? " " : "", stat_name(s->stat));
        print_line_ns(s, slow_ns);
        if (b && b != s) {
            printf("; %s: ", b->c->name);
            print_line_ns(b, slow_ns);
        }
        printf("\n");
    }
    for (size_t i = 0; i < n; i++)
        if (slots[i].failed && slots[i].stat <= 0)
            printf("ERROR %s/%s: %s\n", slots[i].c->group, slots[i].c->name, slots[i].err);
    printf("\ngoals met: %d of %d", met, goals);
    const char *sep = " (missed: ";
    for (size_t i = 0; i < n; i++)
        if (has_goal(&slots[i]) && strncmp(slots[i].status, "PASS", 4)) {
            printf("%s%s/%s%s%s", sep, slots[i].c->group, slots[i].c->name,
                   slots[i].c->dist ? " " : "", stat_name(slots[i].stat));
            sep = ", ";
        }
    printf("%s; %d case%s failed\n", strcmp(sep, ", ") ? "" : ")", errors, errors == 1 ? "" : "s");

    if (strcmp(o.csv, "-") && write_csv(o.csv, slots, n) == 0)
        printf("rows written to %s\n", o.csv);
    free(slots);
    /* A missed goal is information; a failed case (wrong result, crash,
     * hang) is a defect, and says so in the exit status. */
    return errors ? 1 : 0;
}
