#!/usr/bin/env python3
"""Issue 16's "one outcome vocabulary" check: every reason code is spelled in src/reason.rs only.

Reads the codes from the `reasons!` table in src/reason.rs, then lists every string literal in
src/ (outside src/reason.rs and test code: `#[cfg(test)]` modules, `tests.rs` files) whose
text equals one of them, and every code the README does not mention in backticks.
Usage: scripts/reason-codes.py        exit 1 and list the copies and the missing README codes
       scripts/reason-codes.py --list print the codes
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
ROW = re.compile(r'^\s*(\w+)\s*=\s*"([a-z0-9_]+)",\s*\w+,\s*\w+;', re.M)

# Literals that are spelled like a reason code but mean something else. Each needs a why.
ALLOWED = {
    ("src/console/export.rs", "blocked_by_secretariat"):
        "the CSV export's value of a stored ConsentDecision, not a refusal code",
    ("src/store/sled_store.rs", "replay"): "the name of the sled tree of replay records",
    ("src/store/transfer.rs", "replay"): "the export's item kind (replay records)",
}


def codes():
    text = (SRC / "reason.rs").read_text()
    start = text.index("reasons! {")
    return {code: variant for variant, code in ROW.findall(text[start:])}


def literals(text):
    """Yield (offset, contents) of each string literal; comments are skipped."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = '"' + hashes
            body = i + len(hashes) + 2
            j = text.find(end, body)
            j = n if j < 0 else j
            yield i, text[body:j]
            i = j + len(end)
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            yield i, text[i + 1:j]
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            i += len(m.group(0)) if m else 1
        else:
            i += 1


def test_spans(text):
    """(start, end) offsets of `#[cfg(test)] mod x { ... }` blocks (braces counted on the
    text with literals and comments blanked, so a brace in a string does not count)."""
    blank = list(text)
    for off, body in literals(text):
        for k in range(off + 1, off + 1 + len(body)):
            if blank[k] != "\n":
                blank[k] = " "
    blank = "".join(blank)
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{", blank):
        depth, j = 0, m.end() - 1
        while j < len(blank):
            if blank[j] == "{":
                depth += 1
            elif blank[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        yield m.start(), j


def copies(known):
    for path in sorted(SRC.rglob("*.rs")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "src/reason.rs" or path.name == "tests.rs":
            continue
        text = path.read_text()
        spans = list(test_spans(text))
        for off, body in literals(text):
            if body not in known or any(a <= off <= b for a, b in spans):
                continue
            if (rel, body) in ALLOWED:
                continue
            line = text.count("\n", 0, off) + 1
            yield f'{rel}:{line}: "{body}" is Reason::{known[body]}: write Reason::{known[body]}.code()'


def main():
    known = codes()
    if "--list" in sys.argv:
        print("\n".join(sorted(known)))
        return 0
    bad = list(copies(known))
    readme = (ROOT / "README.md").read_text()
    bad += [f"README.md does not list `{c}` (Reason::{v})" for c, v in sorted(known.items()) if f"`{c}`" not in readme]
    for b in bad:
        print(b)
    print(f"{len(known)} reason codes; {len(bad)} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
