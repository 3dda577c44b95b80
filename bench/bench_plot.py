#!/usr/bin/env python3
"""bench_plot: PNG charts from a fipc-bench CSV, drawn with gnuplot.

    bench/bench_plot.py CSV [OUTDIR]

Writes into OUTDIR (default: the CSV's folder), named after the CSV:
  NAME-latency.png  one panel per distribution group (latency-*): each
                    case's p50, p90, p99, p99.9 and max on a log scale, the
                    group's baseline drawn dashed
  NAME-ratios.png   every other compared case (throughput and time per
                    operation): its ratio to its group's baseline on a log
                    scale (> 1: faster than the baseline), coloured by its
                    goal: met, missed, or none
Without gnuplot (Debian: gnuplot-nox) it says so and writes nothing; exit
status 0 either way, 1 if the CSV cannot be read or gnuplot fails.
"""
import csv
import math
import os
import shutil
import subprocess
import sys

STATS = ["p50", "p90", "p99", "p99.9", "max"]


def read_rows(path):
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if not r.get("error")]


def num(s):
    try:
        v = float(s)
    except (TypeError, ValueError):
        return float("nan")
    return v


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def latency_script(rows, out):
    """One panel per group of distribution rows; None if there are none."""
    groups = {}
    for r in rows:
        if r.get("stat") in STATS:
            g = groups.setdefault(r["group"], {})
            g.setdefault((r["case"], r["baseline"]), {})[r["stat"]] = num(r["median"])
    if not groups:
        return None
    cols = 2 if len(groups) > 1 else 1
    nrows = (len(groups) + cols - 1) // cols
    lines = [
        f"set terminal pngcairo size {700 * cols},{420 * nrows} font 'sans,9'",
        f"set output {quote(out)}",
        "set termoption noenhanced",
        f"set multiplot layout {nrows},{cols} title "
        + quote("latency distributions (median over runs of each statistic; log scale)"),
        "set logscale y",
        "set grid ytics mytics",
        "set key outside right top",
        "set ylabel 'ns'",
        "set xtics (" + ", ".join(f"{quote(s)} {i}" for i, s in enumerate(STATS)) + ")",
        f"set xrange [-0.3:{len(STATS) - 0.7}]",
    ]
    for gi, (group, cases) in enumerate(groups.items()):
        unit = next(r["unit"] for r in rows if r["group"] == group)
        lines.append(f"set title {quote(group + ' (' + unit + ')')}")
        plots = []
        for ci, ((case, base), stats) in enumerate(cases.items()):
            block = f"$g{gi}c{ci}"
            lines.append(f"{block} << EOD")
            for i, s in enumerate(STATS):
                v = stats.get(s, float("nan"))
                if not math.isnan(v) and v > 0:
                    lines.append(f"{i} {v}")
            lines.append("EOD")
            dash = "dt 2 lw 2" if case == base else "dt 1 lw 1.5"
            plots.append(f"{block} using 1:2 with linespoints {dash} pt 7 ps 0.6 "
                         f"title {quote(case + (' (baseline)' if case == base else ''))}")
        lines.append("plot " + ", \\\n     ".join(plots))
    lines.append("unset multiplot")
    return "\n".join(lines) + "\n"


def ratios_script(rows, out):
    """A bar per compared case that is neither a distribution (the latency
    chart has those) nor a figure of its own (cpu-ms/s)."""
    bars = []
    for r in rows:
        if r["case"] == r["baseline"] or r.get("stat"):
            continue
        if not (r["unit"].startswith("ns/") or r["unit"] == "ops/s"):
            continue
        stat = ""
        ratio = num(r["ratio"])
        if math.isnan(ratio) or ratio <= 0:
            continue
        label = f"{r['group']}: {r['case']}" + (f" {stat}" if stat else "")
        goal = r.get("goal") or ""
        bars.append((label, ratio, goal, r.get("status", "")))
    if not bars:
        return None
    n = len(bars)
    lo = min(min(b[1] for b in bars), 1.0) / 1.5
    hi = max(max(b[1] for b in bars), 1.0) * 1.5
    lines = [
        f"set terminal pngcairo size 1000,{max(300, 60 + 17 * n)} font 'sans,9'",
        f"set output {quote(out)}",
        "set termoption noenhanced",
        "set format x '%g'",
        "set title " + quote("each case against its group's baseline, same run "
                             "(> 1: faster; green: goal met, red: missed, grey: no goal)"),
        "set logscale x",
        f"set xrange [{lo}:{hi}]",
        f"set yrange [-0.7:{n - 0.3}]",
        "set grid xtics",
        "set xlabel 'ratio to baseline (log scale)'",
        "unset key",
        "set style fill solid 0.8 noborder",
        "set arrow from 1, graph 0 to 1, graph 1 nohead lw 1.5 lc 'black'",
        "set ytics (" + ", ".join(f"{quote(b[0])} {n - 1 - i}" for i, b in enumerate(bars))
        + ") font 'sans,8'",
        "$bars << EOD",
    ]
    for i, (label, ratio, goal, status) in enumerate(bars):
        color = {"PASS": 0x2e8b57, "MISS": 0xcd3333}.get(status[:4], 0x999999)
        lines.append(f"{n - 1 - i} {ratio} {color}")
    lines += [
        "EOD",
        "plot $bars using (sqrt($2)):1:(1 < $2 ? 1 : $2):(1 < $2 ? $2 : 1):($1 - 0.35):($1 + 0.35):3 "
        "with boxxyerror lc rgb variable",
    ]
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.split("\n\n")[1])
    path = sys.argv[1]
    outdir = sys.argv[2] if len(sys.argv) == 3 else (os.path.dirname(path) or ".")
    try:
        rows = read_rows(path)
    except OSError as e:
        sys.stderr.write(f"bench_plot: {path}: {e.strerror}\n")
        return 1
    if not shutil.which("gnuplot"):
        print("bench_plot: gnuplot not found (Debian: gnuplot-nox, or ./dev deps): no plots")
        return 0
    os.makedirs(outdir, exist_ok=True)
    name = os.path.splitext(os.path.basename(path))[0]
    rc = 0
    for kind, make in (("latency", latency_script), ("ratios", ratios_script)):
        out = os.path.join(outdir, f"{name}-{kind}.png")
        script = make(rows, out)
        if script is None:
            print(f"bench_plot: no {kind} rows in {path}")
            continue
        r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
        if r.returncode != 0:
            sys.stderr.write(r.stderr)
            sys.stderr.write(f"bench_plot: gnuplot failed on {out}\n")
            rc = 1
            continue
        print(f"bench_plot: wrote {out}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
