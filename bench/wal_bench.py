"""WAL group commit throughput on this disk, against raw fdatasync measured in the same run.

The baseline row writes 100 bytes and fdatasyncs, in a loop, on a plain file: the most
durable appends per second this disk can give one writer. The WAL rows save batches of 1,
16 and 256 entries of 100 bytes (one group, `sync=True`: one write and one fdatasync per
save), then the same 256 entries spread over 16 groups (one group commit for all of them).
Each save is a durable group commit, so saves/s should track the baseline and entries/s
should grow with the batch until encoding or bandwidth dominates.

    python bench/wal_bench.py [--seconds 1] [--rounds 5] [--dir PATH]

`--dir` defaults to a temporary directory under the current one (not /tmp, which may be a
RAM file system where fdatasync costs nothing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from quorumdb.raft import Entry, HardState
from quorumdb.storage.fs import OsFileSystem
from quorumdb.storage.snapshots import SnapshotStore
from quorumdb.storage.wal import WAL, GroupWrite

ENTRY_BYTES = 100


def raw_fdatasync(root: Path, seconds: float, *, preallocated: bool) -> tuple[float, float, float]:
    """(writes/s, entries/s, MB/s) for 100-byte writes, each followed by fdatasync.

    Appending grows the file, so each fdatasync also commits the new size (a journal
    write); with `preallocated` the writes land in space reserved up front, as the WAL's do.
    """
    path = root / ("raw-prealloc" if preallocated else "raw-append")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    payload = b"r" * ENTRY_BYTES
    n = 0
    try:
        if preallocated:
            os.posix_fallocate(fd, 0, 64 << 20)
            os.fsync(fd)
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            os.pwrite(fd, payload, n * ENTRY_BYTES)
            os.fdatasync(fd)
            n += 1
        elapsed = time.perf_counter() - started
    finally:
        os.close(fd)
    rate = n / elapsed
    return rate, rate, rate * ENTRY_BYTES / 1e6


def wal_saves(root: Path, batch: int, groups: int, seconds: float) -> tuple[float, float, float]:
    """(saves/s, entries/s, MB/s written) for saves of `batch` entries over `groups` groups."""
    fs = OsFileSystem()
    shutil.rmtree(root / "node", ignore_errors=True)
    snaps = SnapshotStore(fs, str(root / "node" / "snap"))
    wal, _ = WAL.open(fs, str(root / "node" / "wal"), snapshots=snaps)
    data = b"e" * ENTRY_BYTES
    per_group = batch // groups
    next_index = dict.fromkeys(range(1, groups + 1), 1)
    saves = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        writes = []
        for g in range(1, groups + 1):
            i = next_index[g]
            entries = [Entry(term=1, index=j, data=data) for j in range(i, i + per_group)]
            next_index[g] = i + per_group
            writes.append(
                GroupWrite(group=g, entries=entries, hard_state=HardState(term=1, commit=i - 1))
            )
        wal.save(writes, sync=True)
        saves += 1
    elapsed = time.perf_counter() - started
    written = wal.stats["bytes"]
    wal.close()
    return saves / elapsed, saves * batch / elapsed, written / elapsed / 1e6


Row = tuple[str, Callable[[Path, float], tuple[float, float, float]]]

ROWS: list[Row] = [
    ("raw append + fdatasync", lambda r, t: raw_fdatasync(r, t, preallocated=False)),
    ("raw preallocated + fdatasync", lambda r, t: raw_fdatasync(r, t, preallocated=True)),
    ("WAL batch 1", lambda r, t: wal_saves(r, 1, 1, t)),
    ("WAL batch 16", lambda r, t: wal_saves(r, 16, 1, t)),
    ("WAL batch 256", lambda r, t: wal_saves(r, 256, 1, t)),
    ("WAL batch 256 / 16 groups", lambda r, t: wal_saves(r, 256, 16, t)),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians shown")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wal-bench-", dir=args.dir or Path.cwd()))
    # Virtual disks vary a lot from second to second (burst credits, neighbours): every row
    # is measured once per round, rounds interleaved, and the median reported.
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in ROWS}
    try:
        for _ in range(args.rounds):
            for name, run in ROWS:
                results[name].append(run(root, args.seconds))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table = Table(
        title=f"WAL group commit, {ENTRY_BYTES}-byte entries, sync=True "
        f"(median of {args.rounds} x {args.seconds:g}s, {root.parent})"
    )
    for col in ("what", "fdatasyncs/s", "entries/s", "MB/s written", "syncs vs raw append"):
        table.add_column(col, justify="right")
    base = statistics.median(r[0] for r in results[ROWS[0][0]])
    for name, _ in ROWS:
        rate, entries, mbs = (statistics.median(r[i] for r in results[name]) for i in range(3))
        table.add_row(name, f"{rate:,.0f}", f"{entries:,.0f}", f"{mbs:.2f}", f"{rate / base:.2f}x")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
