#!/usr/bin/env python3
"""The house's structure rules, checked from the sources (run by scripts/check.sh):

- no import cycle between modules (files) of each crate: an edge goes from a module to every
  module it names by `crate::a::b` or `super::x` (its own ancestors and descendants excepted);
- no import cycle between folders either (a module's folder: its file's folder, `a/mod.rs` being
  `a`'s), ancestors and descendants excepted, so that each folder only uses those below it;
- no file over 500 lines of product code (its `#[cfg(test)]` part and the tests folder aside);
- functions over 80 lines are listed as warnings.

Exit status 1 when a rule is broken. usage: structure.py [PROJECT_DIR]
"""

import os
import re
import sys

MAX_FILE_LINES = 500
MAX_FN_LINES = 80
CRATES = ["src", "operators/src"]


def module_files(src):
    """Module path (`a::b`, `` for the crate root) -> file."""
    mods = {}
    for folder, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                parts = os.path.relpath(os.path.join(folder, name), src)[:-3].split(os.sep)
                if parts[-1] in ("mod", "lib", "main"):
                    parts = parts[:-1]
                mods["::".join(parts)] = os.path.join(folder, name)
    return mods


def product_code(text):
    """The text before the first `#[cfg(test)]` (where this project keeps its unit tests)."""
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def longest_known(mods, path):
    parts = path.split("::")
    while parts:
        if "::".join(parts) in mods:
            return "::".join(parts)
        parts.pop()
    return None


def related(a, b):
    return a == b or a == "" or b == "" or a.startswith(b + "::") or b.startswith(a + "::")


def edges_of(mods):
    edges = {m: set() for m in mods}
    for m, path in mods.items():
        code = product_code(open(path, encoding="utf-8").read())
        named = re.findall(r"\bcrate::((?:[a-z_][a-z0-9_]*)(?:::[a-z_][a-z0-9_]*)*)", code)
        parent = m.split("::")[:-1] if m else []
        named += ["::".join(parent + [s]) for s in re.findall(r"\bsuper::([a-z_][a-z0-9_]*)", code)]
        for n in named:
            target = longest_known(mods, n)
            if target is not None and not related(m, target):
                edges[m].add(target)
    return edges


def cycles(edges):
    """Strongly connected components of more than one node (iterative Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on.add(child)
                work.append((child, iter(sorted(edges.get(child, ())))))
            elif child in on:
                low[v] = min(low[v], index[child])
    return out


def folder_edges(mods, edges):
    """The same graph between folders (a module's folder: its path without its last part)."""
    folder = {m: (m if os.path.basename(p) in ("mod.rs", "lib.rs", "main.rs") else "::".join(m.split("::")[:-1]))
              for m, p in mods.items()}
    out = {f: set() for f in folder.values()}
    for m, targets in edges.items():
        for t in targets:
            a, b = folder[m], folder[t]
            if not related(a, b):
                out[a].add(b)
    return out


def long_functions(path):
    """(line, name, lines) of each `fn` whose body spans more than MAX_FN_LINES lines."""
    lines = open(path, encoding="utf-8").read().split("\n")
    found = []
    for i, line in enumerate(lines):
        m = re.match(r"\s*(?:pub(?:\([a-z]+\))?\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+([a-z_][a-z0-9_]*)", line)
        if not m:
            continue
        depth, opened, end = 0, False, None
        for j in range(i, len(lines)):
            code = re.sub(r'"(?:\\.|[^"\\])*"|//.*', "", lines[j])
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            if opened and depth <= 0:
                end = j
                break
            if not opened and code.rstrip().endswith(";"):
                break
        if end is not None and end - i + 1 > MAX_FN_LINES:
            found.append((i + 1, m.group(1), end - i + 1))
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    errors, warnings = [], []
    for crate in CRATES:
        src = os.path.join(root, crate)
        mods = module_files(src)
        edges = edges_of(mods)
        for comp in cycles(edges):
            errors.append(f"{crate}: modules import each other: {' <-> '.join(comp)}")
        for comp in cycles(folder_edges(mods, edges)):
            errors.append(f"{crate}: folders import each other: {' <-> '.join(c or '(root)' for c in comp)}")
        for m, path in sorted(mods.items()):
            n = product_code(open(path, encoding="utf-8").read()).count("\n")
            rel = os.path.relpath(path, root)
            if n > MAX_FILE_LINES:
                errors.append(f"{rel}: {n} lines of product code (at most {MAX_FILE_LINES})")
            warnings += [f"{rel}:{line}: fn {name} is {k} lines" for line, name, k in long_functions(path)]
    for w in warnings:
        print(f"warning: {w}")
    for e in errors:
        print(f"error: {e}")
    print(f"structure: {len(errors)} errors, {len(warnings)} warnings")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
