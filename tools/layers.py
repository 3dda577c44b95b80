#!/usr/bin/env python3
"""Print how lib/'s files depend on each other, and check them against lib/LAYERS.

Two kinds of arrows, from file to file:
  includes  lib/x.c or lib/x.h has #include "y.h", and lib/y.h exists;
  calls     the object of lib/x.c (a member of the built libfipc.a) leaves
            a symbol undefined that the object of lib/y.c defines (a call,
            or a use of its data).

lib/LAYERS lists the layers, bottom first: one line per layer, the files on
it, after an optional "name:" ('#' starts a comment; a name may be a
pattern such as ring*.h).  An arrow may point to a file on its own layer or
on a lower one.  Exit 1 if an arrow climbs, if the arrows form a cycle, or
if a file of lib/ is on no layer (or on two); exit 0 otherwise.

usage: layers.py [--build DIR] [--graph | --dot]
  --graph  also draw the arrows as a matrix, layer by layer
  --dot    print a Graphviz graph (dot -Tsvg) instead of the lists
"""
import argparse
import fnmatch
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lib_files(lib):
    """Every .c and .h under lib/, as paths relative to the project root."""
    found = []
    for base, _, names in os.walk(lib):
        for name in names:
            if name.endswith((".c", ".h")):
                found.append(os.path.relpath(os.path.join(base, name), ROOT))
    return sorted(found)


def include_arrows(files):
    """{(src, dst): ["includes"]} for each #include "..." of a lib/ file."""
    arrows = {}
    pattern = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
    known = set(files)
    for src in files:
        text = open(os.path.join(ROOT, src), errors="replace").read()
        for target in pattern.findall(text):
            dst = os.path.normpath(os.path.join(os.path.dirname(src), target))
            if dst in known and dst != src:
                arrows.setdefault((src, dst), ["includes"])
    return arrows


def call_arrows(archive, files, nm):
    """({(src, dst): [symbols]}, notes) from the symbols of archive's members."""
    out = subprocess.run(nm + ["-A", "-P", archive], check=True, capture_output=True,
                         text=True).stdout
    # meson names the object of lib/x/y.c "lib_x_y.c.o".
    source_of = {f.replace("/", "_") + ".o": f for f in files if f.endswith(".c")}
    defined, undefined, notes = {}, {}, []
    for line in out.splitlines():
        m = re.match(r"(.*)\[(.*)\]: (\S+) (\S)", line)
        if not m:
            continue
        member, symbol, kind = m.group(2), m.group(3), m.group(4)
        src = source_of.get(member)
        if src is None:
            if member not in notes:
                notes.append(member)
            continue
        if kind == "U":
            undefined.setdefault(src, set()).add(symbol)
        elif kind.isupper():
            defined.setdefault(symbol, src)
    arrows = {}
    for src, symbols in undefined.items():
        for symbol in sorted(symbols):
            dst = defined.get(symbol)
            if dst and dst != src:
                arrows.setdefault((src, dst), []).append(symbol)
    objects = set(undefined) | set(defined.values())
    missing = [f for f in files if f.endswith(".c") and f not in objects]
    notes = [f"{archive} has {m}, which is no lib/ source" for m in notes]
    notes += [f"{f} has no object in {archive} (not in fipc_sources?)" for f in missing]
    return arrows, notes


def read_layers(path, files):
    """([(name, [files])], {file: index}, problems) from the LAYERS file."""
    layers, problems = [], []
    for number, line in enumerate(open(path), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        name = f"layer {len(layers)}"
        if words[0].endswith(":"):
            name, words = words[0][:-1], words[1:]
        layers.append((name, words, number))
    level, placed = {}, []
    lib_dir = os.path.relpath(os.path.dirname(path), ROOT)
    for index, (name, words, number) in enumerate(layers):
        members = []
        for word in words:
            pattern = os.path.normpath(os.path.join(lib_dir, word))
            matched = [f for f in files if fnmatch.fnmatchcase(f, pattern)]
            if not matched and not any(c in word for c in "*?["):
                problems.append(f"{path}:{number}: {word} is not a file of {lib_dir}/")
            for f in matched:
                if f in level and level[f] != index:
                    problems.append(f"{path}:{number}: {f} is also on layer "
                                    f"'{layers[level[f]][0]}'")
                    continue
                level[f] = index
                if f not in members:
                    members.append(f)
        placed.append((name, members))
    for f in files:
        if f not in level:
            problems.append(f"{f} is on no layer of {path}")
    return placed, level, problems


def cycles(nodes, arrows):
    """One cycle (a list of files, first == last) per strongly connected part."""
    succ = {n: sorted({d for (s, d) in arrows if s == n}) for n in nodes}
    index, low, stack, on_stack, parts, counter = {}, {}, [], set(), [], [0]

    def visit(n):  # Tarjan's algorithm
        index[n] = low[n] = counter[0]
        counter[0] += 1
        stack.append(n)
        on_stack.add(n)
        for d in succ[n]:
            if d not in index:
                visit(d)
                low[n] = min(low[n], low[d])
            elif d in on_stack:
                low[n] = min(low[n], index[d])
        if low[n] == index[n]:
            part = []
            while True:
                d = stack.pop()
                on_stack.discard(d)
                part.append(d)
                if d == n:
                    break
            if len(part) > 1:
                parts.append(sorted(part))

    for n in sorted(nodes):
        if n not in index:
            visit(n)
    found = []
    for part in parts:  # the shortest way from the part's first file back to it
        start, inside = part[0], set(part)
        paths, seen = [[start]], {start}
        while paths:
            path = paths.pop(0)
            nexts = [d for d in succ[path[-1]] if d in inside]
            if start in nexts:
                found.append(path + [start])
                break
            for d in nexts:
                if d not in seen:
                    seen.add(d)
                    paths.append(path + [d])
    return found


def describe(kinds):
    return "includes" if kinds == ["includes"] else "calls " + ", ".join(kinds)


def print_graph(placed, level, arrows, bad):
    """The arrows as a matrix: a row for each file, top layer first, and a
    column for each, in the same order.  Row r has a mark in column c when
    r includes or calls c.  Allowed arrows lie right of the diagonal or in
    their own layer's block; one that climbs lies left of the block."""
    order = [f for _, members in reversed(placed) for f in members]
    order += sorted(f for (s, d) in arrows for f in (s, d) if f not in level and f not in order)
    number = {f: i for i, f in enumerate(order)}
    name_width = max(len(n) for n, _ in placed) if placed else 5
    file_width = max(len(f) for f in order) if order else 4
    col = 3
    pad = " " * (name_width + 1 + 3 + 1 + file_width + 1)
    print(pad + "".join(f"{i:>{col}}" for i in range(len(order))))
    previous = None
    for f in order:
        layer = level.get(f)
        label = placed[layer][0] if layer is not None else "?"
        if layer != previous and previous is not None:
            print(" " * name_width + " " + "-" * (len(pad) - name_width - 1 + col * len(order)))
        shown = label if layer != previous else ""
        previous = layer
        cells = []
        for g in order:
            kinds = arrows.get((f, g))
            if g == f:
                cells.append("\\")
            elif kinds is None:
                cells.append(".")
            elif (f, g) in bad:
                cells.append("!" if bad[(f, g)] == "climbs" else "@")
            else:
                cells.append("i" if kinds == ["includes"] else "c")
        print(f"{shown:<{name_width}} {number[f]:>3} {f:<{file_width}} "
              + "".join(f"{c:>{col}}" for c in cells))
    print()
    print("c calls, i includes, ! climbs to a higher layer, @ part of a cycle; "
          "rows use columns")
    print()

def print_dot(placed, arrows, bad):
    print("digraph fipc_lib {")
    print("  rankdir=BT; node [shape=box, fontname=monospace];")
    for index, (name, members) in enumerate(placed):
        print(f'  subgraph cluster_{index} {{ label="{index}: {name}"; rank=same;')
        for f in members:
            print(f'    "{f}";')
        print("  }")
    for (src, dst), kinds in sorted(arrows.items()):
        style = "dashed" if kinds == ["includes"] else "solid"
        color = ', color=red' if (src, dst) in bad else ""
        print(f'  "{src}" -> "{dst}" [style={style}{color}];')
    print("}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build", help="meson build folder (default: build)")
    ap.add_argument("--archive", help="the static library (default: BUILD/libfipc.a)")
    ap.add_argument("--lib", default="lib", help="the sources' folder (default: lib)")
    ap.add_argument("--layers", help="the rule list (default: LIB/LAYERS)")
    ap.add_argument("--nm", default=os.environ.get("NM", "nm"))
    ap.add_argument("--graph", action="store_true", help="also draw the arrows as a matrix")
    ap.add_argument("--dot", action="store_true", help="print a Graphviz graph instead")
    args = ap.parse_args()
    os.chdir(ROOT)
    archive = args.archive or os.path.join(args.build, "libfipc.a")
    layers_file = args.layers or os.path.join(args.lib, "LAYERS")
    for path in (archive, layers_file):
        if not os.path.exists(path):
            sys.exit(f"layers: {path} not found (build first: ninja -C {args.build})")

    files = lib_files(args.lib)
    includes = include_arrows(files)
    calls, notes = call_arrows(archive, files, shlex.split(args.nm))
    arrows = {**includes, **calls}  # a file includes headers and calls .c files
    placed, level, problems = read_layers(layers_file, files)

    bad = {}
    for (src, dst) in sorted(arrows):
        if src in level and dst in level and level[dst] > level[src]:
            bad[(src, dst)] = "climbs"
            problems.append(f"climbs: {src} (layer '{placed[level[src]][0]}') -> {dst} "
                            f"(layer '{placed[level[dst]][0]}'): "
                            f"{describe(arrows[(src, dst)])}")
    for cycle in cycles(files, arrows):
        for src, dst in zip(cycle, cycle[1:]):
            bad.setdefault((src, dst), "cycle")
        problems.append("cycle: " + " -> ".join(cycle))

    if args.dot:
        print_dot(placed, arrows, bad)
    else:
        print(f"includes (#include \"...\" in {args.lib}/):")
        for (src, dst) in sorted(includes):
            print(f"  {src} -> {dst}")
        print(f"calls (symbols that the objects of {archive} take from each other):")
        for (src, dst), symbols in sorted(calls.items()):
            print(f"  {src} -> {dst}: {', '.join(symbols)}")
        print()
        if args.graph:
            print_graph(placed, level, arrows, bad)
    out = sys.stderr if args.dot else sys.stdout  # keep the graph alone on stdout
    for note in notes:
        print(f"layers: note: {note}", file=out)
    for problem in problems:
        print(f"layers: {problem}", file=out)
    n_files = len(files)
    if problems:
        print(f"layers: {len(problems)} problem(s) in {n_files} files of {args.lib}/", file=out)
        return 1
    print(f"layers: {n_files} files on {len(placed)} layers of {layers_file}, "
          f"{len(arrows)} arrows, none climbs, no cycle: ok", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
