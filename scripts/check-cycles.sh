#!/usr/bin/env bash
# Checks that the modules inside each crate import one another without a
# cycle. A node is a top-level module of the crate (`src/x.rs`, or the
# directory `src/x/`, whose files count as one room); an edge x -> y is any
# `crate::y...` path in x's code (comments and string literals are skipped;
# `use crate::{y, z::...}` counts for y and z). The crate root is a facade:
# its `mod` lines and `pub use` re-exports are not edges, but the root's own
# items are a node (`crate::now_ms` is an edge to it) and so are the
# modules they use. `super::` paths are not followed: in a file they name
# its own directory module or, inside an inline `mod tests`, the file itself.
#
# Usage: scripts/check-cycles.sh [-v] [CRATE...]   (default: every crate)
#   -v  also print every edge with the first place it is seen
# Exit status 1 when some crate has a cycle; each cycle is printed with the
# lines that make its edges. Needs only bash and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import os, re, sys

args = sys.argv[1:]
verbose = "-v" in args
crates = [a for a in args if a != "-v"] or sorted(
    d for d in os.listdir("crates") if os.path.isdir(os.path.join("crates", d, "src")))

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"

def strip(text):
    """Blanks comments and string/char literals, keeping line breaks."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    out.append("\n" if text[i] == "\n" else "")
                    i += 1
        elif (m := re.match(r'b?r(#*)"', text[i:])) and (i == 0 or not re.match(r"\w", text[i - 1])):
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append("\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and (m := re.match(r"'(\\.[^']*|[^\\'])'", text[i:])):
            i += len(m.group(0))  # a char literal; a lifetime has no closing quote
        else:
            out.append(c)
            i += 1
    return "".join(out)

def targets(code, modules):
    """(module, offset) for each `crate::` path; `None` is the crate root."""
    for m in re.finditer(r"(?<![A-Za-z0-9_:])crate\s*::\s*(\{|" + IDENT + ")", code):
        if m.group(1) != "{":
            name = m.group(1)
            yield (name if name in modules else None), m.start()
            continue
        depth, j = 1, m.end()
        start = j
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        group = code[start:j - 1]
        depth, seg = 0, []
        for part in re.split(r"([{},])", group):
            if part == "{":
                depth += 1
            elif part == "}":
                depth -= 1
            elif part != "," and depth == 0 and (f := re.match(r"\s*(" + IDENT + ")", part)):
                name = f.group(1)
                if name != "self":
                    yield (name if name in modules else None), m.start()

def check(crate):
    src = os.path.join("crates", crate, "src")
    root = next((f for f in ("lib.rs", "main.rs") if os.path.exists(os.path.join(src, f))), None)
    if root is None:
        return True
    modules = {}
    for entry in os.listdir(src):
        path = os.path.join(src, entry)
        if entry.endswith(".rs") and entry != root:
            modules.setdefault(entry[:-3], []).append(path)
        elif os.path.isdir(path):
            for dirpath, _, files in os.walk(path):
                modules.setdefault(entry, []).extend(
                    os.path.join(dirpath, f) for f in sorted(files) if f.endswith(".rs"))
    ROOT = "(root)"
    edges = {}  # (from, to) -> "file:line"

    def add(a, b, path, code, off):
        b = b or ROOT
        if a != b:
            edges.setdefault((a, b), f"{path}:{code.count(chr(10), 0, off) + 1}")

    for mod, paths in modules.items():
        for path in paths:
            code = strip(open(path, encoding="utf-8").read())
            for target, off in targets(code, modules):
                add(mod, target, path, code, off)
    path = os.path.join(src, root)
    code = strip(open(path, encoding="utf-8").read())
    # The root's own items: drop its `mod` lines and `pub use` re-exports.
    own = re.sub(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*;", "", code)
    own = re.sub(r"(?s)\bpub(?:\([^)]*\))?\s+use\b[^;]*;", lambda m: "\n" * m.group(0).count("\n"), own)
    for target, off in targets(own, modules):
        add(ROOT, target, path, own, off)
    for m in re.finditer(r"(?<![A-Za-z0-9_:])(" + IDENT + r")\s*::", own):
        if m.group(1) in modules:
            add(ROOT, m.group(1), path, own, m.start())

    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    nodes = sorted(set(modules) | {ROOT})
    if verbose:
        for (a, b), at in sorted(edges.items()):
            print(f"  {crate}: {a} -> {b}   ({at})")
    # Tarjan's strongly connected components; any with two or more nodes is a cycle.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(sorted(scc))
    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            visit(v)
    if not sccs:
        print(f"{crate}: no cycle ({len(nodes)} modules, {len(edges)} edges)")
        return True
    for scc in sccs:
        print(f"{crate}: CYCLE among {', '.join(scc)}")
        for (a, b), at in sorted(edges.items()):
            if a in scc and b in scc:
                print(f"    {a} -> {b}   ({at})")
    return False

ok = all([check(c) for c in crates])
sys.exit(0 if ok else 1)
PY
