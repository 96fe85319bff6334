#!/usr/bin/env python3
"""Prints the library's module graph (who uses whom through `crate::`) and any cycle.

Run by .ci/run (and by hand: `python3 .ci/modules.py`); exits 1 on a cycle. Doc comments and tests are left out."""
import collections, os, re, sys

src = os.path.join(os.path.dirname(__file__), "..", "src")
mods = sorted(f[:-3] for f in os.listdir(src) if f.endswith(".rs") and f not in ("lib.rs", "main.rs"))
# A directory module (src/NAME/mod.rs and its files) counts as the one module NAME.
mods += sorted(d for d in os.listdir(src) if os.path.isfile(os.path.join(src, d, "mod.rs")))
graph = collections.defaultdict(set)
for m in mods:
    files = [os.path.join(src, m + ".rs")]
    if not os.path.isfile(files[0]):
        files = sorted(os.path.join(src, m, f) for f in os.listdir(os.path.join(src, m)) if f.endswith(".rs"))
    text = "\n".join(open(f).read().split("#[cfg(test)]")[0] for f in files)
    code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
    for used in set(re.findall(r"crate::(\w+)", code)) | set(
        u for group in re.findall(r"use crate::\{([^}]*)\}", code) for u in re.findall(r"(\w+)", group)
    ):
        if used in mods and used != m:
            graph[m].add(used)

index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)

def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(graph[v]):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        component = []
        while True:
            w = stack.pop()
            on.discard(w)
            component.append(w)
            if w == v:
                break
        if len(component) > 1:
            cycles.append(sorted(component))

for m in mods:
    if m not in index:
        visit(m)
for m in mods:
    print(f"{m:10} -> {', '.join(sorted(graph[m]))}")
for c in cycles:
    print("cycle:", " ".join(c))
sys.exit(1 if cycles else 0)
