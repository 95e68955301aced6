#!/usr/bin/env python3
"""Which tables and indexes the frames of a SQLite WAL belong to (docs/PERFORMANCE.md).

    scripts/wal-pages.py DATABASE_FILE

Reads DATABASE_FILE-wal (copy both files of a server killed with -9 under load: the WAL survives,
and with the checkpointer it is not restarted for a while), takes its valid frames (those carrying
the header's salts), and names each frame's page by the B-tree that owns it in the database file
(SQLite's dbstat). Pages the file does not yet hold (the table grew in the WAL) show as "new".
"""
import collections
import sqlite3
import struct
import sys

db = sys.argv[1]
wal = open(db + "-wal", "rb").read()
_, _, page_size, _, salt1, salt2, _, _ = struct.unpack(">8I", wal[:32])
frames, commits, offset = [], 0, 32
while offset + 24 + page_size <= len(wal):
    page, commit_size, s1, s2 = struct.unpack(">4I", wal[offset : offset + 16])
    if (s1, s2) != (salt1, salt2):
        break
    frames.append(page)
    commits += commit_size != 0
    offset += 24 + page_size
# Read the database file alone: immutable=1 keeps SQLite from replaying (or deleting) the WAL.
owner = dict(
    (page, name)
    for name, page in sqlite3.connect(f"file:{db}?immutable=1", uri=True).execute("SELECT name, pageno FROM dbstat")
)
print(f"{len(frames)} frames of {page_size} bytes in {commits} commits, {len(frames) / max(commits, 1):.1f} a commit")
for name, count in collections.Counter(owner.get(p, "new") for p in frames).most_common():
    print(f"{count:8d} {count / len(frames) * 100:5.1f}%  {name}")
