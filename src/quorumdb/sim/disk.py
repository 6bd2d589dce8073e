"""A simulated disk: writes are durable only after sync; a crash loses (or tears) the rest.

Fault model (TigerBeetle's storage.zig, kept to faults a correct node must survive):
- a crash keeps every synced byte, and of the unsynced writes of each file possibly a prefix
  (in write order, the last one torn);
- a corruption flips one bit inside a synced record of the node's WAL (the files of
  `WAL_DIR` in name order: segments, each a segment header record, batch records and a
  preallocated zero tail) that is not the log's last record, so a correct recovery detects
  it and refuses to start instead of trusting it. Never the last record (damage to its
  payload is indistinguishable from a torn write: see `storage.records`), never the zeros
  after it (a zeroed tail is how a log ends), never a snapshot file (whether its damage is
  survivable depends on an older snapshot and the log behind it: not a fault every node
  must survive detectably).

Names have their own durability (what `quorumdb.sim.disk_fs.SimFileSystem` needs to be
honest about directories): `create`, `rename` and `remove` change the current namespace at
once but the durable one only at `sync_dir` of their directory; a crash keeps the durable
namespace plus, with a tear, a prefix of the pending name operations (a journaling file
system commits them in order). A file first reached by `append`, `write` or `read` (the
tests' shortcut) is created durably.

Each file keeps two images: `data` (what reads see) and `durable` (what survives a crash),
plus the writes made since the last sync. Writes may overwrite (`write` at an offset), which
preallocated files need; appends are writes at the end.

NB: directories are implicit (a path's prefix up to its last `/`); creating one costs nothing
and is always durable.
"""

from __future__ import annotations

import itertools
import random

from quorumdb.storage.records import CorruptRecordError, scan_records

__all__ = ["WAL_DIR", "SimDisk"]

WAL_DIR = "wal"
"""Where a node keeps its WAL on its disk (`sim.host_node`, and the storage tests, put it there)."""


class _File:
    __slots__ = ("data", "durable", "pending")

    def __init__(self) -> None:
        self.data = bytearray()
        self.durable = bytearray()
        self.pending: list[tuple[int, bytes]] = []  # (offset, bytes) written since the sync

    def unsynced(self) -> int:
        return sum(len(d) for _, d in self.pending)


# A name operation: its directory and the (name, file or None for "removed") it sets; a
# rename sets two names in one atomic operation.
_NameOp = tuple[str, tuple[tuple[str, _File | None], ...]]


def _dir_of(file: str) -> str:
    return file.rpartition("/")[0]


class SimDisk:
    __slots__ = ("_durable_names", "_files", "_name_ops", "name", "rng", "stats")

    def __init__(self, name: str, rng: random.Random) -> None:
        self.name = name
        self.rng = rng
        self._files: dict[str, _File] = {}  # the current namespace
        self._durable_names: dict[str, _File] = {}  # what a crash keeps
        self._name_ops: list[_NameOp] = []  # not yet made durable by `sync_dir`
        self.stats = {"writes": 0, "syncs": 0, "torn": 0, "lost_bytes": 0, "corrupted": 0}

    def path(self, file: str) -> str:
        return f"{self.name}/{file}"

    def _file(self, file: str) -> _File:
        f = self._files.get(file)
        if f is None:
            f = self._files[file] = self._durable_names[file] = _File()
        return f

    def append(self, file: str, data: bytes) -> None:
        f = self._file(file)
        self.write(file, len(f.data), data)

    def write(self, file: str, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write at `offset` (at most the current length: files have no holes)."""
        f = self._file(file)
        assert 0 <= offset <= len(f.data), f"write at {offset} beyond the end {len(f.data)}"
        self.stats["writes"] += 1
        chunk = bytes(data)
        f.data[offset : offset + len(chunk)] = chunk
        f.pending.append((offset, chunk))

    def sync(self, file: str) -> None:
        self.stats["syncs"] += 1
        f = self._file(file)
        for off, chunk in f.pending:
            f.durable[off : off + len(chunk)] = chunk
        f.pending.clear()
        assert len(f.durable) == len(f.data), f"{file}: durable image differs after sync"

    def read(self, file: str) -> bytes:
        return bytes(self._file(file).data)

    def size(self, file: str) -> int:
        return len(self._file(file).data)

    def truncate(self, file: str, length: int) -> None:
        """Cut the file; durable at once (as if followed by an fsync)."""
        f = self._file(file)
        del f.data[length:]
        del f.durable[length:]
        f.pending = [(off, chunk[: length - off]) for off, chunk in f.pending if off < length]

    def unsynced_bytes(self) -> int:
        return sum(f.unsynced() for f in self._files.values())

    # -- names ---------------------------------------------------------------------------------

    def exists(self, file: str) -> bool:
        return file in self._files

    def list_dir(self, directory: str) -> list[str]:
        """Names (without the directory) of the files and sub-directories in `directory`."""
        prefix = f"{directory}/" if directory else ""
        return sorted(
            {
                name[len(prefix) :].split("/", 1)[0]
                for name in self._files
                if name.startswith(prefix)
            }
        )

    def create(self, file: str) -> None:
        """A new empty file (replacing any file of that name); the name is not yet durable."""
        f = self._files[file] = _File()
        self._name_ops.append((_dir_of(file), ((file, f),)))

    def rename(self, src: str, dst: str) -> None:
        """Atomically move `src` to `dst` in the same directory; durable after `sync_dir`."""
        assert _dir_of(src) == _dir_of(dst), f"rename across directories: {src} -> {dst}"
        f = self._files.pop(src)
        self._files[dst] = f
        self._name_ops.append((_dir_of(src), ((dst, f), (src, None))))

    def remove(self, file: str) -> None:
        del self._files[file]
        self._name_ops.append((_dir_of(file), ((file, None),)))

    def sync_dir(self, directory: str) -> None:
        """Make every pending name operation in `directory` durable."""
        self.stats["syncs"] += 1
        rest: list[_NameOp] = []
        for op in self._name_ops:
            if op[0] == directory:
                self._apply_name_op(op)
            else:
                rest.append(op)
        self._name_ops = rest

    def _apply_name_op(self, op: _NameOp) -> None:
        for name, f in op[1]:
            if f is None:
                self._durable_names.pop(name, None)
            else:
                self._durable_names[name] = f

    # -- faults --------------------------------------------------------------------------------

    def crash(self, *, tear: bool) -> None:
        """Lose unsynced data and names; with `tear`, a random prefix of each survives."""
        seen: set[int] = set()
        order = [self._files[n] for n in sorted(self._files)]
        order += [self._durable_names[n] for n in sorted(self._durable_names)]
        for f in order:
            if id(f) in seen:
                continue
            seen.add(id(f))
            extra = f.unsynced()
            keep = self.rng.randrange(extra) if tear and extra > 0 else 0
            if extra:
                self.stats["lost_bytes"] += extra - keep
                if keep:
                    self.stats["torn"] += 1
            _lose_unsynced(f, keep)
        if self._name_ops:
            kept = self.rng.randrange(len(self._name_ops) + 1) if tear else 0
            for op in self._name_ops[:kept]:
                self._apply_name_op(op)
            self._name_ops = []
        self._files = dict(self._durable_names)

    def corrupt(self, log_dir: str = WAL_DIR) -> tuple[str, int] | None:
        """Flip one bit in a synced record of the log in `log_dir`, never in its last record.

        The log is the files of `log_dir` in name order (a WAL's segments). Returns the
        damaged record's path and offset (what recovery must report), or None if the log
        has fewer than two synced records.
        """
        spans: list[tuple[str, int, int]] = []  # (file, start, end) of each record, in order
        for name in self.list_dir(log_dir):
            file = f"{log_dir}/{name}"
            f = self._files.get(file)
            if f is not None:
                starts = _record_starts(f.durable, self.path(file))
                spans += [(file, lo, hi) for lo, hi in itertools.pairwise(starts)]
        if len(spans) < 2:
            return None
        file, lo, hi = spans[self.rng.randrange(len(spans) - 1)]  # never the last record
        off = self.rng.randrange(lo, hi)
        bit = 1 << self.rng.randrange(8)
        f = self._files[file]
        assert len(f.data) >= hi, f"{file}: the synced record at {lo} is not in the page cache"
        f.durable[off] ^= bit
        f.data[off] ^= bit
        self.stats["corrupted"] += 1
        return self.path(file), lo


def _lose_unsynced(f: _File, keep: int) -> None:
    """Roll `f` back to its durable image plus the first `keep` bytes of its pending writes."""
    image = f.durable
    for off, chunk in f.pending:
        if keep <= 0:
            break
        part = chunk[:keep]
        image[off : off + len(part)] = part
        keep -= len(part)
    f.pending.clear()
    f.data = bytearray(image)


def _record_starts(data: bytearray, path: str) -> list[int]:
    """Starts of the valid records at the head of `data`, then the end of the last one.

    What `scan_records` accepts, up to the first zero header (a preallocated tail) or the
    first damage (a torn record): corrupting a record *after* damage proves nothing.
    """
    try:
        records, end = scan_records(data, path, final=True)
    except CorruptRecordError as exc:
        records, end = scan_records(data[: exc.offset], path, final=True)
    return [off for off, _, _ in records] + [end]
