"""A simulated disk: writes are durable only after sync; a crash loses (or tears) the rest.

Fault model (TigerBeetle's storage.zig, kept to faults a correct node must survive):
- a crash keeps every synced byte, and of the unsynced tail possibly a prefix (a torn write);
- a corruption flips one bit inside a synced record that is not the file's last record, so a
  correct recovery detects it (see `storage.records`) and refuses to start instead of
  trusting it.
`replace` models the write-temp, fsync, rename, fsync-directory pattern: atomic and durable.
"""

from __future__ import annotations

import random
import struct

from quorumdb.storage.records import HEADER_BYTES

__all__ = ["SimDisk"]

_LEN = struct.Struct("<I")


class _File:
    __slots__ = ("data", "synced")

    def __init__(self) -> None:
        self.data = bytearray()
        self.synced = 0


class SimDisk:
    __slots__ = ("_files", "name", "rng", "stats")

    def __init__(self, name: str, rng: random.Random) -> None:
        self.name = name
        self.rng = rng
        self._files: dict[str, _File] = {}
        self.stats = {"writes": 0, "syncs": 0, "torn": 0, "lost_bytes": 0, "corrupted": 0}

    def path(self, file: str) -> str:
        return f"{self.name}/{file}"

    def _file(self, file: str) -> _File:
        f = self._files.get(file)
        if f is None:
            f = self._files[file] = _File()
        return f

    def append(self, file: str, data: bytes) -> None:
        self.stats["writes"] += 1
        self._file(file).data += data

    def sync(self, file: str) -> None:
        self.stats["syncs"] += 1
        f = self._file(file)
        f.synced = len(f.data)

    def replace(self, file: str, data: bytes) -> None:
        f = self._file(file)
        f.data = bytearray(data)
        f.synced = len(data)

    def read(self, file: str) -> bytes:
        return bytes(self._file(file).data)

    def truncate(self, file: str, length: int) -> None:
        f = self._file(file)
        del f.data[length:]
        f.synced = min(f.synced, length)

    def unsynced_bytes(self) -> int:
        return sum(len(f.data) - f.synced for f in self._files.values())

    def crash(self, *, tear: bool) -> None:
        """Lose unsynced data; with `tear`, a random prefix of it survives."""
        for name in sorted(self._files):
            f = self._files[name]
            extra = len(f.data) - f.synced
            keep = self.rng.randrange(extra) if tear and extra > 0 else 0
            if extra:
                self.stats["lost_bytes"] += extra - keep
                if keep:
                    self.stats["torn"] += 1
            del f.data[f.synced + keep :]
            f.synced = len(f.data)

    def corrupt(self) -> tuple[str, int] | None:
        """Flip one bit in a synced record that is not the last one; return (file, offset)."""
        for name in sorted(self._files):
            f = self._files[name]
            starts = _record_starts(f.data, f.synced)  # record starts, then the end
            if len(starts) < 3:
                continue
            i = self.rng.randrange(len(starts) - 2)  # never the last record
            lo, hi = starts[i], starts[i + 1]
            off = self.rng.randrange(lo, hi)
            f.data[off] ^= 1 << self.rng.randrange(8)
            self.stats["corrupted"] += 1
            return self.path(name), lo
        return None


def _record_starts(data: bytearray, limit: int) -> list[int]:
    out: list[int] = []
    off = 0
    while off + HEADER_BYTES <= limit:
        (length,) = _LEN.unpack_from(data, off)
        end = off + HEADER_BYTES + length
        if end > limit:
            break
        out.append(off)
        off = end
    out.append(off)
    return out
