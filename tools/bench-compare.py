#!/usr/bin/env python3
"""bench-compare: run two builds' fipc-bench interleaved and compare them.

    tools/bench-compare.py OLD_BENCH NEW_BENCH [--rounds N] [--quick]
                           [--filter F ...] [--out DIR]

On a noisy machine only runs taken side by side say anything about a
change: each round runs OLD then NEW (then NEW then OLD in the next round,
so that neither always goes first), each an ordinary fipc-bench invocation
writing its CSV.  For every fipc case (baselines of other libraries are
shown too) the report gives the median over rounds of each build's median,
and NEW against OLD per round (paired, then the median over rounds):
> 1.00 means NEW is faster.  A case whose paired ratio is below 0.97 is
marked SLOWER.  Exit status 0 either way; 2 on a failed run.
"""
import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile


def run(bench, args, path):
    cmd = [bench, "--csv", path] + args
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode not in (0, 1) or not os.path.exists(path):
        sys.stderr.write(r.stderr)
        sys.exit(f"bench-compare: {' '.join(cmd)} failed ({r.returncode})")
    rows = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            if row.get("error"):
                continue
            # A distribution has a row per statistic (the stat column).
            case = row["case"] + (" " + row["stat"] if row.get("stat") else "")
            rows[(row["group"], case)] = (row["unit"], float(row["median"]))
    return rows


def faster_ratio(unit, old, new):
    """> 1 when new is faster: rates are higher-better, times lower-better."""
    if old <= 0 or new <= 0:
        return float("nan")
    return new / old if unit.endswith("/s") else old / new


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    p.add_argument("--out", default=None, help="keep the CSVs here")
    a = p.parse_args()
    args = ["--quick"] if a.quick else []
    for f in a.filter:
        args += ["--filter", f]
    out = a.out or tempfile.mkdtemp(prefix="bench-compare-")
    os.makedirs(out, exist_ok=True)
    old_runs, new_runs = [], []
    for r in range(a.rounds):
        order = [("old", a.old, old_runs), ("new", a.new, new_runs)]
        if r % 2:
            order.reverse()
        for name, bench, runs in order:
            sys.stderr.write(f"bench-compare: round {r + 1}/{a.rounds}: {name}\n")
            runs.append(run(bench, args, os.path.join(out, f"{name}-{r + 1}.csv")))

    keys = [k for k in old_runs[0] if all(k in x for x in old_runs + new_runs)]
    print(f"{'group':<22} {'case':<26} {'unit':<9} {'old':>10} {'new':>10} {'new/old':>8}")
    slower = []
    for k in keys:
        unit = old_runs[0][k][0]
        olds = [x[k][1] for x in old_runs]
        news = [x[k][1] for x in new_runs]
        paired = [faster_ratio(unit, o, n) for o, n in zip(olds, news)]
        ratio = statistics.median(paired)
        scale = 1e-6 if unit.endswith("/s") else 1.0
        shown = "M" + unit if unit.endswith("/s") and not unit.startswith("M") else unit
        mark = ""
        if ratio < 0.97:
            mark = "  SLOWER"
            slower.append(k)
        print(f"{k[0]:<22} {k[1]:<26} {shown:<9} {statistics.median(olds) * scale:>10.3f} "
              f"{statistics.median(news) * scale:>10.3f} {ratio:>8.3f}{mark}")
    print(f"{len(keys)} cases, {a.rounds} rounds each, paired; "
          f"{len(slower)} more than 3% slower; CSVs in {out}")


if __name__ == "__main__":
    main()
