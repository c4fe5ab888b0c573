#!/usr/bin/env python3
"""Fails when two source files of a workspace crate import each other.

A file imports another when it names one of its items by a `crate::`, `super::` or
`use child::` path (re-exports included). Comments and test modules are left out: a
test may read anything. Run by `make lint`."""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module_file(root, parts):
    """The file defining the module at `parts` (or its nearest ancestor) under `root`."""
    for k in range(len(parts), 0, -1):
        cand = os.path.join(root, *parts[:k])
        for f in (cand + ".rs", os.path.join(cand, "mod.rs")):
            if os.path.exists(f):
                return f
    return None


def module_path(root, f):
    rel = os.path.relpath(f, root)[:-3].split("/")
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        rel = []
    return rel


def imports(root, f):
    src = open(f, encoding="utf-8").read().split("#[cfg(test)]")[0]
    src = "\n".join(line for line in src.split("\n") if not line.strip().startswith("//"))
    me = module_path(root, f)
    deps = set()
    for m in re.finditer(r"crate::((?:\w+::)*\w+)", src):
        t = module_file(root, m.group(1).split("::"))
        if t and t != f:
            deps.add(t)
    for m in re.finditer(r"\bsuper::((?:\w+::)*\w+|\*)", src):
        parts = me[:-1] + [p for p in m.group(1).split("::") if p != "*"]
        t = module_file(root, parts) if parts else None
        if t and t != f:
            deps.add(t)
    for m in re.finditer(r"^\s*(?:pub(?:\(\w+\))? )?use (\w+)::", src, re.M):
        name = m.group(1)
        own = os.path.basename(f) in ("mod.rs", "lib.rs", "main.rs")
        base = os.path.dirname(f) if own else f[:-3]
        for c in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
            if os.path.exists(c):
                deps.add(c)
    return deps


def main():
    circles = []
    for root in sorted(glob.glob(ROOT + "/shared/*/src") + glob.glob(ROOT + "/functions/*/src")):
        files = glob.glob(root + "/**/*.rs", recursive=True)
        edges = {f: imports(root, f) for f in files}
        for a in sorted(edges):
            for b in sorted(edges[a]):
                if a < b and a in edges.get(b, ()):
                    circles.append((os.path.relpath(a, ROOT), os.path.relpath(b, ROOT)))
    for a, b in circles:
        print(f"import-circles: {a} and {b} import each other")
    if circles:
        sys.exit(1)
    print("import-circles: no two source files import each other")


if __name__ == "__main__":
    main()
