#!/bin/sh
# headers.sh LANG INCLUDEDIR COMPILER... - compile every public header on its
# own, then test/headers/layout.c, as LANG (c: C11, c++: C++17) with
# -Wall -Wextra -Wpedantic -Werror.
#
# Each header is included twice in its translation unit: it must compile
# with no other fipc header before it, and its include guard must work.
# INCLUDEDIR is a source tree's include/ or an installed one.
set -eu

[ $# -ge 3 ] || { echo "usage: $0 c|c++ INCLUDEDIR COMPILER..." >&2; exit 2; }
lang=$1 inc=$2
shift 2
case $lang in
c)   std=-std=c11 ;;
c++) std=-std=c++17 ;;
*)   echo "headers: unknown language '$lang'" >&2; exit 2 ;;
esac
layout=$(cd "$(dirname "$0")/.." && pwd)/test/headers/layout.c

compile() { # compile FILE COMPILER... (FILE - reads stdin)
    f=$1
    shift
    "$@" "$std" -Wall -Wextra -Wpedantic -Werror -I"$inc" -x "$lang" -fsyntax-only "$f"
}

n=0 failed=0
for h in "$inc"/fipc.h "$inc"/fipc/*.h; do
    [ -f "$h" ] || { echo "headers: no headers under $inc" >&2; exit 1; }
    name=${h#"$inc"/}
    if ! printf '#include <%s>\n#include <%s>\n' "$name" "$name" | compile - "$@"; then
        echo "headers: <$name> does not compile on its own as $lang" >&2
        failed=$((failed + 1))
    fi
    n=$((n + 1))
done
if ! compile "$layout" "$@"; then
    echo "headers: the object layout differs in $lang (test/headers/layout.c)" >&2
    failed=$((failed + 1))
fi
if [ "$failed" -ne 0 ]; then
    echo "headers: $failed of $((n + 1)) files failed as $lang" >&2
    exit 1
fi
echo "headers: $n headers alone and the layout asserts compile as $lang ($*): ok"
