/*
 * bench.h - the benchmark harness shared by every bench_*.c file.
 *
 * A case measures one thing once: it does its set-up, times `iters`
 * operations and reports how long they took.  The harness decides `iters`
 * (calibrated so one run lasts about BENCH_TARGET_NS), runs every case of a
 * group round-robin R times, each run in a fresh process, and prints the
 * median, min and max with the ratio to the group's baseline from the same
 * invocation.  Round-robin and same-run baselines matter here: this is a
 * 2-vCPU VM whose speed drifts from one minute (and one boot) to the next,
 * so only figures taken side by side compare.
 *
 * Each run happens in a forked "runner" process in its own process group,
 * watched by a timeout.  A library bug that hangs, crashes or corrupts
 * memory therefore costs one case, not the whole report, and any helper
 * process the case forked is killed with its runner.
 *
 * Adding cases (say, bench/bench_queue.c):
 *
 *     static int run_put_get(struct bench_run *r) { ... }
 *
 *     static const struct bench_case queue_cases[] = {
 *         {.group = "queue-spsc", .name = "pipe", .unit = BENCH_TIME,
 *          .op = "msg", .fn = run_pipe},
 *         {.group = "queue-spsc", .name = "fipc_queue", .baseline = "pipe",
 *          .unit = BENCH_TIME, .op = "msg", .fn = run_put_get,
 *          .goal = BENCH_GOAL_TIME_AT_MOST(1.0)},
 *     };
 *     BENCH_SUITE(queue, queue_cases)
 *
 * and list the file in bench/meson.build.  BENCH_SUITE registers the table
 * before main runs; the order of the table is the order of the report.
 */
#ifndef FIPC_BENCH_H
#define FIPC_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "atomic.h" /* cpu_relax, the spin-wait hint the library uses */

/* What a case's figure means, and so which way is better. */
enum bench_unit {
    BENCH_TIME, /* nanoseconds per operation: lower is better */
    BENCH_RATE, /* operations per second: higher is better */
    BENCH_COST, /* a figure the case reports in run->value, lower is better;
                 * .op is its unit as printed ("cpu-ms/s") */
};

/*
 * The statistics of a distribution case (.dist): the case times each
 * operation, hands the samples to bench_dist(), and the report has one row
 * per statistic, each compared with the same statistic of the baseline.
 */
enum bench_stat {
    BENCH_MEAN,
    BENCH_P50,
    BENCH_P90,
    BENCH_P99,
    BENCH_P999,
    BENCH_MAX,
    BENCH_NSTATS,
    /* A case with .floor: the p50 of a cache line bounced between its own
     * processes, pinned where the case runs, just before its timed part;
     * one more row ("floor"), and what dist goals may compare with. */
    BENCH_FLOOR = BENCH_NSTATS,
    BENCH_NROWS
};

/* One run of a case, filled in by the harness (in) and the case (out). */
struct bench_run {
    /* in */
    uint64_t iters;  /* operations to time (>= 1) */
    bool quick;      /* --quick: keep untimed set-up short too */
    const void *arg; /* the case's arg */
    /* out */
    int64_t ns;                /* wall-clock nanoseconds of the timed part (> 0) */
    uint64_t ops;              /* operations completed in ns; 0 means iters */
    double value;              /* BENCH_COST: the figure */
    double stats[BENCH_NROWS]; /* .dist: filled by bench_dist(); [BENCH_FLOOR] by a .floor case */
};

/*
 * A goal compares a case with its baseline.  For BENCH_TIME,
 * BENCH_GOAL_TIME_AT_MOST(1.2) means case_time <= 1.2 * baseline_time; for
 * BENCH_RATE, BENCH_GOAL_RATE_AT_LEAST(1.0) means case_rate >= baseline_rate.
 * Both are stored as the factor; 0 means no goal.
 */
#define BENCH_GOAL_TIME_AT_MOST(f)  (f)
#define BENCH_GOAL_RATE_AT_LEAST(f) (f)

/*
 * A goal of a distribution case: its statistic stat at most factor times
 * the baseline's statistic of (BENCH_FLOOR: the case's own floor of the
 * same run), e.g. {BENCH_P99, 10, BENCH_P50}: p99 at most 10x the
 * baseline's p50, judged on the median over rounds of the
 * paired ratio; with every_round, it must hold in every round (no bimodal
 * run), and the status says in how many it did.  factor 0 ends the list.
 */
struct bench_dist_goal {
    enum bench_stat stat;
    double factor;
    enum bench_stat of;
    bool every_round;
};
#define BENCH_MAX_DIST_GOALS 4

struct bench_case {
    const char *group;    /* cases in one group share one baseline */
    const char *name;     /* unique within the group */
    const char *baseline; /* name of the group's baseline; NULL: this case is it */
    enum bench_unit unit;
    const char *op;                   /* what one operation is ("pair", "rtt"); NULL: "op" */
    int (*fn)(struct bench_run *run); /* 0, or bench_fail(...) */
    const void *arg;                  /* handed to fn in run->arg */
    uint64_t min_iters;               /* where calibration starts; 0: 1000 */
    double goal;                      /* BENCH_GOAL_*; 0: none */
    /* A distribution: one row per enum bench_stat (BENCH_TIME only). */
    bool dist;
    /* With dist: the run also reports stats[BENCH_FLOOR] (a row "floor"). */
    bool floor;
    struct bench_dist_goal dist_goals[BENCH_MAX_DIST_GOALS];
    /* A goal on the figure itself, not a ratio: PASS if the median is at
     * most limit (in the unit of the table); 0: none. */
    double limit;
    /* The case decides how long it runs (a fixed wait): no calibration,
     * no warm-up run, iters is 1. */
    bool fixed;
};

/* Register n cases (BENCH_SUITE does this from a constructor). */
void bench_register(const struct bench_case *cases, size_t n);

#define BENCH_SUITE(tag, table)                                                                    \
    __attribute__((constructor)) static void bench_suite_##tag(void)                               \
    {                                                                                              \
        bench_register((table), sizeof(table) / sizeof((table)[0]));                               \
    }

/* ---- Helpers for case functions (they run inside the runner process). ---- */

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t bench_now_ns(void);

/* The statistics of n samples (nanoseconds; sorted in place) into
 * r->stats; r->ns and r->ops are left to the case. */
void bench_dist(struct bench_run *r, int64_t *samples, size_t n);

/* A one-way sample: the time from stamp (a sender's bench_now_ns() carried
 * in message k) to now, stored as samples[k - warm - 1] once k is past the
 * warm-up.  0, or bench_fail(...) for a stamp that is not a time before
 * now. */
int bench_oneway_sample(int64_t *samples, uint64_t k, uint64_t warm, uint64_t stamp);

/* Record why the run failed and return -1: `return bench_fail("...", ...);`. */
int bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* size bytes of zeroed MAP_SHARED memory that forked children share, on
 * fresh pages (already touched); exits the runner on failure.  Release with
 * bench_shared_free. */
void *bench_shared(size_t size);
void bench_shared_free(void *p, size_t size);

/* fork() for a helper process: the child dies with the runner
 * (PR_SET_PDEATHSIG).  Returns as fork does; -1 on failure. */
pid_t bench_fork(void);

/* Reap a helper; 0 if it exited with status 0, else bench_fail(...). */
int bench_reap(pid_t pid, const char *what);

/* The Python the baselines run: $FIPC_BENCH_PYTHON, else python3. */
const char *bench_python_exe(void);

/* Whether exe can be run: a path, or a name found on PATH. */
bool bench_executable_on_path(const char *exe);

/* Run the Python baseline script with its arguments (up to three; NULL
 * ends them early) and read the line it prints, "ok COUNT NS": 0 with
 * *count and *ns, else bench_fail(...). */
int bench_python(const char *script, const char *a, const char *b, const char *c,
                 unsigned long long *count, long long *ns);

/* Pin the calling process to the index-th CPU (0, 1, ...) of the set the
 * harness was allowed to run on.  Safe in a case: every run is a fresh
 * process, so the pinning ends with it.  0, or bench_fail(...) if there is
 * no such CPU. */
int bench_pin_cpu(int index);

/* A start gate made of two pipes: helpers announce they are ready, then
 * block (in read, not spinning: two CPUs) until the runner opens the gate. */
struct bench_gate {
    int ready[2];
    int go[2];
};
int bench_gate_init(struct bench_gate *g);
/* In a helper: announce readiness, then wait for the gate to open. */
int bench_gate_pass(struct bench_gate *g);
/* In the runner: wait until n helpers are ready, then let them all go. */
int bench_gate_open(struct bench_gate *g, int n);
void bench_gate_close(struct bench_gate *g);

#endif
