#!/usr/bin/env python3
"""bench_py_pool.py - the multiprocessing.Pool baselines of bench_pool.c.

    bench_py_pool.py map|apply_async COUNT PROCESSES

Does what fipc-bench times for fipc_pool: a Pool(PROCESSES) (fork start
method, created before the clock starts) squares COUNT ints, through one
pool.map(range(COUNT)) with the default chunksize (timed alone), or
through COUNT apply_async calls whose callback collects the results, then
close() and join() (timed together).  Every result is checked.  On success it prints

    ok COUNT NANOSECONDS

Any failure prints a reason to stderr and exits 1, so fipc-bench reports an
error rather than a figure.
"""
import multiprocessing as mp
import sys
import time


def square(x):
    return x * x


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("map", "apply_async"):
        sys.exit("usage: bench_py_pool.py map|apply_async COUNT PROCESSES")
    kind = sys.argv[1]
    n, procs = int(sys.argv[2]), int(sys.argv[3])
    ctx = mp.get_context("fork")
    pool = ctx.Pool(procs)
    pool.map(square, range(procs * 4))  # the workers are up
    t0 = time.monotonic_ns()
    if kind == "map":
        out = pool.map(square, range(n))
        t1 = time.monotonic_ns()
        pool.close()
        pool.join()
        ok = out == [i * i for i in range(n)]
    else:
        got = []
        for i in range(n):
            pool.apply_async(square, (i,), callback=got.append)
        pool.close()
        pool.join()
        t1 = time.monotonic_ns()
        ok = sorted(got) == [i * i for i in range(n)]
    if not ok:
        sys.exit("wrong results")
    print("ok %d %d" % (n, t1 - t0), flush=True)


if __name__ == "__main__":
    main()
