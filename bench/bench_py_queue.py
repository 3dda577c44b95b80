#!/usr/bin/env python3
"""bench_py_queue.py - the multiprocessing baselines of bench_queue.c.

    bench_py_queue.py queue|joinable COUNT SIZE

Does the transfer that fipc-bench times for its own queues: one producer
process (this one) puts COUNT messages of SIZE bytes into a
multiprocessing.Queue (or JoinableQueue) of maxsize 1024, one consumer
process gets them and checks their order; with "joinable" the consumer calls
task_done per item and the producer ends with join().  On success it prints

    ok COUNT NANOSECONDS

timed from the first put to whichever ends last, the consumer's last get or
the producer's join.  Any failure prints a reason to stderr and exits 1, so
fipc-bench reports an error rather than a figure.

An 8-byte message is an int (what a Python program would put); a larger one
is bytes whose first 8 bytes are the sequence number, so both sides pay for
pickling SIZE bytes.
"""
import multiprocessing as mp
import queue
import struct
import sys
import time

CAPACITY = 1024
TIMEOUT_S = 10  # a dead peer fails the run instead of hanging it
HDR = struct.Struct("<Q")


def consume(q, n, size, joinable, ready, out):
    bad = None
    try:
        ready.set()
        for i in range(n):
            m = q.get(timeout=TIMEOUT_S)
            if size == 8:
                seq = m
            else:
                seq = HDR.unpack_from(m)[0] if len(m) == size else None
            if seq != i:
                bad = "message %d: got %r" % (i, seq if size == 8 else (len(m), seq))
                break
            if joinable:
                q.task_done()
    except queue.Empty:
        bad = "no message for %d s after %d" % (TIMEOUT_S, i)
    out.send((bad, time.monotonic_ns()))


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("queue", "joinable"):
        sys.exit("usage: bench_py_queue.py queue|joinable COUNT SIZE")
    joinable = sys.argv[1] == "joinable"
    n, size = int(sys.argv[2]), int(sys.argv[3])
    if n < 1 or size < 8:
        sys.exit("COUNT must be >= 1 and SIZE >= 8")

    # fork, as fipc-bench forks its own consumers: no interpreter start-up
    # inside the measurement, nothing to pickle on the way in.
    ctx = mp.get_context("fork")
    q = ctx.JoinableQueue(CAPACITY) if joinable else ctx.Queue(CAPACITY)
    ready = ctx.Event()
    rx, tx = ctx.Pipe(duplex=False)
    p = ctx.Process(target=consume, args=(q, n, size, joinable, ready, tx), daemon=True)
    p.start()
    if not ready.wait(TIMEOUT_S):
        sys.exit("consumer did not start")

    pad = bytes(size - HDR.size)
    t0 = time.monotonic_ns()
    if size == 8:
        for i in range(n):
            q.put(i, timeout=TIMEOUT_S)
    else:
        for i in range(n):
            q.put(HDR.pack(i) + pad, timeout=TIMEOUT_S)
    if joinable:
        q.join()
    t_put = time.monotonic_ns()

    if not rx.poll(TIMEOUT_S):
        sys.exit("consumer sent no result")
    bad, t_get = rx.recv()
    p.join(TIMEOUT_S)
    if bad:
        sys.exit("consumer: " + bad)
    if p.exitcode != 0:
        sys.exit("consumer exited with %r" % p.exitcode)
    print("ok %d %d" % (n, max(t_put, t_get) - t0), flush=True)


if __name__ == "__main__":
    main()
