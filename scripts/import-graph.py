#!/usr/bin/env python3
"""Module import graph of src/ and its cycles (issue 16's check).

Reads every `use crate::...`, `crate::a::b` path and `super::...` reference in src/**/*.rs
(test modules included only when --with-tests), maps each to the file-level module it names,
and prints the strongly connected components with more than one module. Exit 1 when a cycle
exists. Usage: scripts/import-graph.py [--with-tests] [--dot]
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"


def module_of(path: Path) -> tuple:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_tests(text: str) -> str:
    # Drop `#[cfg(test)] mod tests { ... }` blocks (brace-matched).
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def main() -> int:
    with_tests = "--with-tests" in sys.argv
    files = {module_of(p): p for p in ROOT.rglob("*.rs")}
    mods = set(files)
    edges = {m: set() for m in mods}
    for m, p in files.items():
        text = p.read_text()
        if not with_tests:
            text = strip_tests(text)
        text = re.sub(r"//[^\n]*", "", text)
        # Expand `use crate::a::{b, c::d}` one level so each name is resolved.
        refs = []
        for base, inner in re.findall(r"(crate(?:::\w+)*|super(?:::\w+)*|self(?:::\w+)*)::\{([^}]*)\}", text):
            refs += [base + "::" + x.strip() for x in inner.split(",") if x.strip()]
        refs += re.findall(r"\b(?:crate|super)(?:::\w+)+", text)
        for r in refs:
            parts = r.split("::")
            here = list(m) if p.stem in ("mod", "lib", "main") else list(m[:-1]) + [m[-1]]
            if parts[0] == "crate":
                target = parts[1:]
            else:
                cur = list(m) if p.stem in ("mod", "lib") else list(m)
                k = 0
                while k < len(parts) and parts[k] == "super":
                    cur = cur[:-1]
                    k += 1
                if parts[0] == "self":
                    k = 1
                target = cur + parts[k:]
            del here
            # Longest prefix that is a module file.
            for n in range(len(target), 0, -1):
                t = tuple(target[:n])
                if t in mods:
                    if t != m and t != ():
                        edges[m].add(t)
                    break
    if "--dot" in sys.argv:
        print("digraph src {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f'  "{"::".join(a)}" -> "{"::".join(b)}";')
        print("}")
    # Tarjan's SCC.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(mods):
        if v not in index:
            visit(v)
    for c in sccs:
        print("cycle:", ", ".join("::".join(x) for x in c))
    print(f"{len(mods)} modules, {sum(len(e) for e in edges.values())} edges, {len(sccs)} cycles")
    return 1 if sccs else 0


if __name__ == "__main__":
    sys.exit(main())
