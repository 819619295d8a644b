#!/usr/bin/env python3
"""Length of every non-test function in src/ (issue 16's check).

A function runs from its `fn` line to its matching closing brace (strings, chars and
comments skipped). `#[cfg(test)]` modules and `#[test]` functions are left out.
Usage: scripts/fn-length.py [--max N] [--list MIN]
  --max N    exit 1 when any function is longer than N lines (default 100), listing them
  --list MIN print every function of at least MIN lines, longest first
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"
FN = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?(?:extern\s+\"[^\"]*\"\s+)?fn\s+(\w+)")


def blank_literals(text: str) -> str:
    """Replace the contents of comments, strings and chars with spaces (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = '"' + hashes
            j = text.find(end, i + len(hashes) + 2)
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path: Path):
    """Yield (name, first line, length in lines) of each non-test function."""
    text = blank_literals(path.read_text())
    lines = text.split("\n")
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    skip_until = -1
    for ln, line in enumerate(lines):
        if ln < skip_until:
            continue
        attr_above = "\n".join(lines[max(0, ln - 3):ln])
        if re.search(r"#\[cfg\(test\)\]\s*$", attr_above) and re.match(r"\s*(pub\s+)?mod\s+\w+\s*\{", line):
            skip_until = close_line(text, offsets[ln], lines, offsets) + 1
            continue
        m = FN.match(line)
        if not m:
            continue
        start = offsets[ln]
        brace = text.find("{", start)
        semi = text.find(";", start)
        if brace < 0 or (0 <= semi < brace):
            continue  # a declaration without a body
        end = close_line(text, brace, lines, offsets)
        if re.search(r"#\[(tokio::)?test\b", attr_above):
            skip_until = end + 1
            continue
        yield m.group(1), ln + 1, end - ln + 1


def close_line(text, start, lines, offsets):
    i = text.find("{", start)
    depth = 0
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                break
        i += 1
    lo, hi = 0, len(offsets) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if offsets[mid] <= i:
            lo = mid
        else:
            hi = mid - 1
    return lo


def main() -> int:
    args = sys.argv[1:]
    limit = int(args[args.index("--max") + 1]) if "--max" in args else 100
    listing = int(args[args.index("--list") + 1]) if "--list" in args else None
    found = []
    for p in sorted(ROOT.rglob("*.rs")):
        for name, line, length in functions(p):
            found.append((length, f"{p.relative_to(ROOT.parent)}:{line}", name))
    found.sort(key=lambda f: (-f[0], f[1]))
    if listing is not None:
        for length, where, name in found:
            if length >= listing:
                print(f"{length:5} {where} {name}")
        return 0
    over = [f for f in found if f[0] > limit]
    for length, where, name in over:
        print(f"too long: {name} at {where}: {length} lines (limit {limit})")
    print(f"{len(found)} functions, {len(over)} over {limit} lines")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
