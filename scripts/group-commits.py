#!/usr/bin/env python3
"""How the SQLite writer batched: sizes, cost per unit by size, and the gaps between commits
(docs/PERFORMANCE.md).

    CARDPLANE_LOG=info,cardplane_store::sqlite=trace cardplane serve ... 2>server.log   # then load it
    scripts/group-commits.py server.log [FROM_SECONDS TO_SECONDS]

Reads the writer's `group commit` trace lines (JSON, one per committed batch, with its `size` in
units and `micros`, the time from BEGIN to COMMIT) and prints, for the batches between FROM and TO
seconds after the first one (all by default): how many there were and their mean size, the
distribution of sizes, the median time per unit by size class (a unit alone pays a whole commit; the
units of one batch share the pages their appends and the trees' inner pages touch), and the gaps
between the ends of consecutive commits.
"""
import collections
import json
import statistics
import sys
from datetime import datetime


def commits(path):
    for line in open(path, encoding="utf-8", errors="replace"):
        if '"group commit"' not in line:
            continue
        entry = json.loads(line)
        at = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
        yield at, entry["fields"]["size"], entry["fields"].get("micros")


rows = list(commits(sys.argv[1]))
if not rows:
    sys.exit("no `group commit` lines: run the server with CARDPLANE_LOG=info,cardplane_store::sqlite=trace")
start = rows[0][0]
low, high = (float(sys.argv[2]), float(sys.argv[3])) if len(sys.argv) > 3 else (0.0, float("inf"))
rows = [row for row in rows if low <= row[0] - start <= high]
if not rows:
    sys.exit(f"no commits between {low} and {high} s after the first one")
sizes = [size for _, size, _ in rows]
print(f"{len(rows)} commits of {sum(sizes)} units, {sum(sizes) / len(rows):.1f} units a commit")
counts = collections.Counter(sizes)
print("sizes:", ", ".join(f"{size}: {counts[size]}" for size in sorted(counts)))
for low_size, high_size in ((1, 1), (2, 5), (6, 20), (21, 50), (51, 100), (101, 10_000)):
    per_unit = [micros / size for _, size, micros in rows if low_size <= size <= high_size and micros is not None]
    if per_unit:
        print(f"  {low_size:>4}-{high_size:<5} units: {len(per_unit):6d} commits, median {statistics.median(per_unit):6.1f} µs a unit")
gaps = sorted(b[0] - a[0] for a, b in zip(rows, rows[1:]))
if gaps:
    quantile = lambda q: gaps[min(len(gaps) - 1, int(len(gaps) * q))] * 1e6
    print("gaps between commits, µs: " + ", ".join(f"p{int(q * 100)} {quantile(q):.0f}" for q in (0.1, 0.5, 0.9, 0.99)))
