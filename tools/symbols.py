#!/usr/bin/env python3
"""Check that libfipc exports exactly its public functions.

Three lists must agree:
  - the functions declared in include/fipc/*.h (read from the preprocessed
    headers, so a macro or a comment cannot fake or hide one),
  - the global list of the version script (lib/fipc.map), which must name
    each function (no wildcards) under one version node,
  - the functions the shared library exports (nm -D), each at that version.

Exit 0 with a one-line summary if they do; otherwise print every
difference and exit 1.

usage: symbols.py --lib build/libfipc.so [--map lib/fipc.map]
                  [--include include] [--cc CC...] [--nm NM]
"""
import argparse
import glob
import os
import re
import shlex
import subprocess
import sys


def declared_functions(include_dir, cc):
    """{name: header} for every function a public header declares."""
    found = {}
    headers = sorted(glob.glob(os.path.join(include_dir, "fipc", "*.h")))
    if not headers:
        sys.exit(f"symbols: no headers under {include_dir}/fipc")
    for path in headers:
        text = subprocess.run(cc + ["-E", "-x", "c", "-I", include_dir, path],
                              check=True, capture_output=True, text=True).stdout
        # Keep this header's own lines (the line markers name the file each
        # comes from; what it includes is read with its own header), and of
        # them what lies outside braces (struct members, inline function
        # bodies): a declaration at file scope is never inside one.
        flat, depth, mine = [], 0, False
        for line in text.splitlines():
            marker = re.match(r'# \d+ "(.*)"', line)
            if marker:
                mine = os.path.abspath(marker.group(1)) == os.path.abspath(path)
                continue
            for ch in line + "\n":
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                elif depth == 0 and mine:
                    flat.append(ch)
        # A name directly followed by "(" is a function being declared: a
        # function-pointer parameter reads "(*name)", and no fipc type is
        # followed by a parenthesis.
        for name in re.findall(r"\b(fipc_\w+)\s*\(", "".join(flat)):
            found.setdefault(name, os.path.relpath(path, include_dir))
    return found


def map_functions(map_path):
    """(version node, [names]) of the version script's global list."""
    text = re.sub(r"/\*.*?\*/", " ", open(map_path).read(), flags=re.S)
    nodes = re.findall(r"(\w[\w.]*)\s*\{(.*?)\}\s*[\w.]*\s*;", text, flags=re.S)
    if len(nodes) != 1:
        sys.exit(f"symbols: {map_path}: expected one version node, found {len(nodes)}")
    node, body = nodes[0]
    m = re.search(r"global\s*:(.*?)(?:local\s*:|$)", body, flags=re.S)
    if not m:
        sys.exit(f"symbols: {map_path}: no global: list")
    names = [n.strip() for n in m.group(1).split(";") if n.strip()]
    return node, names


def exported_functions(lib, nm):
    """{name: version} for every symbol the library defines and exports."""
    out = subprocess.run(nm + ["-D", "--defined-only", lib],
                         check=True, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[1] == "A":  # "A": the version node itself
            continue
        name, _, version = fields[2].partition("@")
        found[name] = version.lstrip("@")
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", required=True, help="the shared library (libfipc.so)")
    ap.add_argument("--map", default="lib/fipc.map")
    ap.add_argument("--include", default="include")
    ap.add_argument("--cc", nargs="+", default=shlex.split(os.environ.get("CC", "cc")))
    ap.add_argument("--nm", nargs="+", default=shlex.split(os.environ.get("NM", "nm")))
    args = ap.parse_args()

    declared = declared_functions(args.include, args.cc)
    node, listed = map_functions(args.map)
    exported = exported_functions(args.lib, args.nm)
    errors = []

    for name in listed:
        if re.search(r"[*?\[]", name):
            errors.append(f"{args.map}: '{name}' is a pattern; list each function by name")
    dupes = sorted({n for n in listed if listed.count(n) > 1})
    errors += [f"{args.map}: {n} is listed twice" for n in dupes]
    listed_set = set(listed)

    for name in sorted(set(declared) - listed_set):
        errors.append(f"{name} ({declared[name]}) is declared but missing from {args.map}")
    for name in sorted(listed_set - set(declared)):
        errors.append(f"{name} is in {args.map} but no public header declares it")
    for name in sorted(listed_set - set(exported)):
        if name in declared:
            errors.append(f"{name} is in {args.map} but {args.lib} does not export it "
                          f"(not defined, or its declaration lacks FIPC_EXPORT)")
    for name in sorted(set(exported) - listed_set):
        kind = "an internal function" if name.startswith("fipc__") else "not in the map"
        errors.append(f"{args.lib} exports {name}: {kind}")
    for name in sorted(listed_set & set(exported)):
        if exported[name] != node:
            errors.append(f"{name} is exported at version '{exported[name]}', not {node}")

    if errors:
        for e in errors:
            print(f"symbols: {e}")
        print(f"symbols: {len(errors)} problem(s)")
        return 1
    print(f"symbols: {len(declared)} functions declared in {args.include}/fipc/*.h, "
          f"listed in {args.map} and exported by {os.path.basename(args.lib)} at {node}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
