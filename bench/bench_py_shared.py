#!/usr/bin/env python3
"""bench_py_shared.py - the multiprocessing baselines of bench_conn.c.

    bench_py_shared.py pipe COUNT SIZE     one way: send_bytes -> recv_bytes
    bench_py_shared.py pingpong COUNT      round trips of 8 bytes on a duplex Pipe
    bench_py_shared.py dict_get COUNT      Manager().dict() d['k'] in this process
    bench_py_shared.py dict_set COUNT      Manager().dict() d['k'] = b'12345678'
    bench_py_shared.py value_add COUNT     with v.get_lock(): v.value += 1 (Value('q'))

On success it prints

    ok COUNT NANOSECONDS

for COUNT operations (messages, round trips, accesses); a failure prints a
reason to stderr and exits 1.  The receiver of "pipe" checks each message's
sequence number, as fipc-bench's own receivers do.
"""
import multiprocessing as mp
import struct
import sys
import time

HDR = struct.Struct("<Q")


def receiver(conn, n, size, out):
    bad = None
    for i in range(n):
        m = conn.recv_bytes()
        if len(m) != size or HDR.unpack_from(m)[0] != i:
            bad = "message %d: %d bytes" % (i, len(m))
            break
    out.send((bad, time.monotonic_ns()))


def echo(conn, n):
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    kind, n = sys.argv[1], int(sys.argv[2])
    ctx = mp.get_context("fork")
    if kind == "pipe":
        size = int(sys.argv[3])
        r, w = ctx.Pipe(duplex=False)
        res_r, res_w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=receiver, args=(r, n, size, res_w))
        p.start()
        buf = bytearray(size)
        t0 = time.monotonic_ns()
        for i in range(n):
            HDR.pack_into(buf, 0, i)
            w.send_bytes(buf)
        bad, t1 = res_r.recv()
        p.join()
        if bad:
            sys.exit(bad)
    elif kind == "pingpong":
        a, b = ctx.Pipe()
        p = ctx.Process(target=echo, args=(b, n))
        p.start()
        m = b"12345678"
        t0 = time.monotonic_ns()
        for _ in range(n):
            a.send_bytes(m)
            if a.recv_bytes() != m:
                sys.exit("echo differs")
        t1 = time.monotonic_ns()
        p.join()
    elif kind in ("dict_get", "dict_set"):
        with ctx.Manager() as mgr:
            d = mgr.dict({"k": b"12345678"})
            t0 = time.monotonic_ns()
            if kind == "dict_get":
                for _ in range(n):
                    d["k"]
            else:
                for _ in range(n):
                    d["k"] = b"12345678"
            t1 = time.monotonic_ns()
    elif kind == "value_add":
        v = ctx.Value("q", 0)
        t0 = time.monotonic_ns()
        for _ in range(n):
            with v.get_lock():
                v.value += 1
        t1 = time.monotonic_ns()
        if v.value != n:
            sys.exit("value %d, expected %d" % (v.value, n))
    else:
        sys.exit(__doc__)
    print("ok %d %d" % (n, t1 - t0))


if __name__ == "__main__":
    main()
