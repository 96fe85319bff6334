#!/usr/bin/env python3
"""Lists library functions over 80 lines and source files over 600 lines without their
tests (issue 11's limits). Run by hand: `python3 .ci/lengths.py`."""
import os, re

src = os.path.join(os.path.dirname(__file__), "..", "src")
for root, _, files in sorted(os.walk(src)):
    for f in sorted(files):
        if not f.endswith(".rs"):
            continue
        path = os.path.join(root, f)
        lines = open(path).read().split("\n")
        end = next((i for i, l in enumerate(lines) if l.startswith("#[cfg(test)]")), len(lines))
        rel = os.path.relpath(path, src)
        if end > 600:
            print(f"{rel}: {end} lines without tests")
        i = 0
        while i < end:
            m = re.match(r"^(\s*)(pub(\([^)]*\))? )?fn (\w+)", lines[i])
            if m and not lines[i].rstrip().endswith(";"):
                indent = len(m.group(1))
                j = i + 1
                while j < end and not (lines[j].startswith(" " * indent + "}") and len(lines[j].rstrip()) == indent + 1):
                    j += 1
                if j - i + 1 > 80:
                    print(f"{rel}:{i + 1}: fn {m.group(4)} is {j - i + 1} lines")
                i = j
            i += 1
