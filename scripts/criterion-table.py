#!/usr/bin/env python3
"""Reads `cargo bench -p verack --bench framing` output on stdin; prints a markdown table of
verack vs bitcoin::consensus (criterion's median estimate of each) and their ratio."""
import re
import sys

UNITS = {"ps": 1e-3, "ns": 1, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
rows, name = {}, None
for line in sys.stdin.read().splitlines():
    m = re.match(r"^(\S+/(?:encode|decode)/\S+)\s*(?:time:\s*\[(.*?)\])?", line)
    if m:
        name = m.group(1)
        if m.group(2):
            rows[name] = m.group(2).split()[2:4]
        continue
    m = re.match(r"^\s+time:\s*\[(.*?)\]", line)
    if m and name and name not in rows:
        rows[name] = m.group(1).split()[2:4]

cases = {}
for key, value in rows.items():
    case, op, who = key.split("/")
    cases.setdefault((case, op), {})[who] = value

print("| case | op | verack | bitcoin::consensus | verack / consensus |")
print("| --- | --- | --- | --- | --- |")
for (case, op), d in cases.items():
    if "verack" in d and "bitcoin_consensus" in d:
        a, b = d["verack"], d["bitcoin_consensus"]
        ratio = float(a[0]) * UNITS[a[1]] / (float(b[0]) * UNITS[b[1]])
        print(f"| {case} | {op} | {a[0]} {a[1]} | {b[0]} {b[1]} | {ratio:.2f} |")
