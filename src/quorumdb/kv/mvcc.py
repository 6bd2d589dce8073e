"""One shard's multi-version store: every key's versions by timestamp, and write intents.

Versions. A key's newest version is in `latest` (value, revision, ts); the versions it
replaced are in `older`, oldest first, for as long as a reader may still need them. A
delete writes a tombstone (value None). Timestamps are HLC readings (`kv.hlc`) and every
version's is above the shard's `max_ts` when it is written, except a transaction's commit,
whose timestamp was reserved above `max_ts` when it laid its intents (see `kv.txn_engine`).
So once `max_ts >= T` here, what a read at `T` sees is final: a consistent snapshot, on any
replica, without asking the leader.

Garbage collection: a version is dropped once the version after it is older than the low
watermark (`max_ts` minus `gc_window`); a read below the watermark is refused (the
transaction is too old, its timeout being shorter than the window, so none open needs one).

Intents and locks. A transaction being committed holds a write intent on each key it
writes (one per key), a read lock on each key it read and a range lock on each range it
scanned (serializable only); others' writes to those keys wait or abort until it resolves.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["Intent", "TxnLocks", "VersionStore"]

Version = tuple[bytes | None, int, int]  # (value or None: tombstone, revision, ts)


@dataclass(slots=True)
class Intent:
    txn: int
    record_group: int
    value: bytes | None  # None: a delete
    min_ts: int  # the transaction commits at or above this


@dataclass(slots=True)
class TxnLocks:
    """What one transaction holds on this shard, to release when it resolves."""

    record_group: int
    writes: list[bytes] = field(default_factory=list)
    reads: list[bytes] = field(default_factory=list)
    ranges: list[tuple[bytes, bytes | None]] = field(default_factory=list)


class VersionStore:
    __slots__ = (
        "gc_window",
        "held",
        "intents",
        "keys",
        "latest",
        "max_ts",
        "older",
        "range_locks",
        "read_locks",
    )

    def __init__(self, gc_window: int) -> None:
        self.gc_window = gc_window
        self.latest: dict[bytes, Version] = {}
        self.older: dict[bytes, list[Version]] = {}
        self.keys: list[bytes] = []  # sorted keys of `latest` (tombstones included)
        self.max_ts = 0
        self.intents: dict[bytes, Intent] = {}
        self.read_locks: dict[bytes, set[int]] = {}
        self.range_locks: dict[int, list[tuple[bytes, bytes | None]]] = {}
        self.held: dict[int, TxnLocks] = {}

    # -- versions ------------------------------------------------------------------------------

    def write(
        self,
        key: bytes,
        value: bytes | None,
        revision: int,
        ts: int,
        current: Version | None,
    ) -> None:
        """Install a version (ts above the key's newest) over `current`, the key's newest
        version (the caller has looked it up); keep `current` while a reader above the
        watermark may still need it."""
        self.latest[key] = (value, revision, ts)
        if ts > self.max_ts:  # noqa: PLR1730  (cheaper than max() on the put's hot path)
            self.max_ts = ts
        if current is None:
            bisect.insort(self.keys, key)
            return
        low = self.max_ts - self.gc_window
        if ts <= low:
            self.older.pop(key, None)
            return
        versions = self.older.get(key)
        if versions is None:
            self.older[key] = [current]
            return
        versions.append(current)
        # versions[i] is needed while the version after it is above the watermark.
        if versions[1][2] > low:  # (ascending: the common case, nothing to drop)
            return
        drop = 1
        n = len(versions)
        while drop < n - 1 and versions[drop + 1][2] <= low:
            drop += 1
        del versions[:drop]

    def newest_ts(self, key: bytes) -> int:
        v = self.latest.get(key)
        return 0 if v is None else v[2]

    def read_at(self, key: bytes, ts: int) -> Version | None:
        """The version of `key` a snapshot at `ts` sees (a tombstone is returned as one)."""
        v = self.latest.get(key)
        if v is None or v[2] <= ts:
            return v
        for old in reversed(self.older.get(key, ())):
            if old[2] <= ts:
                return old
        return None

    def low_watermark(self) -> int:
        return self.max_ts - self.gc_window

    def keys_in(self, start: bytes, end: bytes | None) -> list[bytes]:
        keys = self.keys
        lo = bisect.bisect_left(keys, start)
        hi = len(keys) if end is None else bisect.bisect_left(keys, end, lo)
        return keys[lo:hi]

    def changed_after(self, key: bytes, ts: int) -> bool:
        return self.newest_ts(key) > ts

    def range_changed_after(self, start: bytes, end: bytes | None, ts: int) -> bool:
        """Whether a key in [start, end) was written (or deleted) above `ts`."""
        latest = self.latest
        return any(latest[k][2] > ts for k in self.keys_in(start, end))

    def collect(self) -> None:
        """Drop every version below the watermark (a full pass, e.g. before a snapshot)."""
        low = self.low_watermark()
        for key in list(self.older):
            versions = self.older[key]
            successors = [*versions[1:], self.latest[key]]
            keep = [v for v, nxt in zip(versions, successors, strict=True) if nxt[2] > low]
            if keep:
                self.older[key] = keep
            else:
                del self.older[key]
        dead = [
            k
            for k, v in self.latest.items()
            if v[0] is None and v[2] <= low and k not in self.older and k not in self.intents
        ]
        for k in dead:
            del self.latest[k]
        if dead:
            gone = set(dead)
            self.keys = [k for k in self.keys if k not in gone]

    # -- intents and locks -----------------------------------------------------------------------

    def blocker(self, key: bytes, txn: int, *, writing: bool) -> Intent | int | None:
        """Who stops `txn` from writing (`writing`) or read-locking `key`: another's intent,
        or (writing) the id of another's read or range lock; None if nobody."""
        intent = self.intents.get(key)
        if intent is not None and intent.txn != txn:
            return intent
        if not writing:
            return None
        readers = self.read_locks.get(key)
        if readers:
            for other in readers:
                if other != txn:
                    return other
        if self.range_locks:
            for other, ranges in self.range_locks.items():
                if other != txn and any(_in(key, s, e) for s, e in ranges):
                    return other
        return None

    def range_blocker(self, start: bytes, end: bytes | None, txn: int) -> Intent | None:
        for key, intent in self.intents.items():
            if intent.txn != txn and _in(key, start, end):
                return intent
        return None

    def lock(
        self, txn: int, locks: TxnLocks, writes: list[tuple[bytes, bytes | None]], min_ts: int
    ) -> None:
        for key, value in writes:
            self.intents[key] = Intent(txn, locks.record_group, value, min_ts)
        for key in locks.reads:
            self.read_locks.setdefault(key, set()).add(txn)
        if locks.ranges:
            self.range_locks[txn] = locks.ranges
        self.held[txn] = locks

    def release(self, txn: int) -> TxnLocks | None:
        """Drop `txn`'s intents and locks; return what it held (None: nothing here)."""
        locks = self.held.pop(txn, None)
        if locks is None:
            return None
        for key in locks.writes:
            intent = self.intents.get(key)
            if intent is not None and intent.txn == txn:
                del self.intents[key]
        for key in locks.reads:
            readers = self.read_locks.get(key)
            if readers is not None:
                readers.discard(txn)
                if not readers:
                    del self.read_locks[key]
        self.range_locks.pop(txn, None)
        return locks


def _in(key: bytes, start: bytes, end: bytes | None) -> bool:
    return key >= start and (end is None or key < end)
