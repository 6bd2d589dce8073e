"""The `Storage` protocol the core reads its stable log from, and an in-memory implementation.

The core only reads storage; the driver writes it (after a `Ready`, before `advance`). Index 0
is a dummy position: `first_index() - 1` is the index of the last compacted entry (or of the
snapshot), whose term `term()` still answers. `storage/` implements this protocol over a WAL
without importing the core's logic.
"""

from __future__ import annotations

from typing import Protocol

from quorumdb.raft.errors import CompactedError, UnavailableError
from quorumdb.raft.messages import ConfState, Entry, HardState, Snapshot, SnapshotMetadata

__all__ = ["MemoryStorage", "Storage", "limit_size"]


class Storage(Protocol):
    """Read-only view of the persisted log, hard state and snapshot."""

    def initial_state(self) -> tuple[HardState, ConfState]: ...

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries in [lo, hi), at least one if any, at most `max_bytes` of data beyond that.

        Raises CompactedError if lo <= the compacted index, UnavailableError if hi > last+1.
        """
        ...

    def term(self, index: int) -> int:
        """Term of entry `index`, valid for first_index()-1 .. last_index()."""
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot: ...


def limit_size(entries: list[Entry], max_bytes: int) -> list[Entry]:
    """Longest prefix whose data fits in `max_bytes`, always keeping the first entry."""
    if len(entries) <= 1:
        return entries
    total = len(entries[0].data)
    for i in range(1, len(entries)):
        total += len(entries[i].data)
        if total > max_bytes:
            return entries[:i]
    return entries


class MemoryStorage:
    """A `Storage` held in memory; the simulator and tests use it, and the WAL caches into it.

    `_ents[0]` is a dummy entry holding the index and term of the snapshot (or compaction point).
    """

    __slots__ = ("_ents", "_hard_state", "_snapshot")

    def __init__(self, conf_state: ConfState | None = None) -> None:
        """Start empty; `conf_state` bootstraps a new cluster's membership at index 0."""
        self._hard_state = HardState()
        self._snapshot = Snapshot(metadata=SnapshotMetadata(conf_state=conf_state or ConfState()))
        self._ents: list[Entry] = [Entry(term=0, index=0)]

    # -- Storage protocol -------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.metadata.conf_state

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise CompactedError(f"entries from {lo}: compacted up to {offset}")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"entries up to {hi - 1}: last index is {self.last_index()}")
        return limit_size(self._ents[lo - offset : hi - offset], max_bytes)

    def term(self, index: int) -> int:
        offset = self._ents[0].index
        if index < offset:
            raise CompactedError(f"term of {index}: compacted up to {offset}")
        if index - offset >= len(self._ents):
            raise UnavailableError(f"term of {index}: last index is {self.last_index()}")
        return self._ents[index - offset].term

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- writes, by the driver ----------------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    def set_hard_state(self, hs: HardState) -> None:
        self._hard_state = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log with `snap` (a follower installing a leader's snapshot)."""
        if snap.metadata.index <= self._snapshot.metadata.index:
            return
        self._snapshot = snap
        self._ents = [Entry(term=snap.metadata.term, index=snap.metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState | None, data: bytes) -> Snapshot:
        """Record a snapshot of the state machine at applied index `index`."""
        if index <= self._snapshot.metadata.index:
            return self._snapshot
        assert index <= self.last_index(), f"snapshot {index} beyond last {self.last_index()}"
        cs = conf_state if conf_state is not None else self._snapshot.metadata.conf_state
        meta = SnapshotMetadata(conf_state=cs, index=index, term=self.term(index))
        self._snapshot = Snapshot(metadata=meta, data=data)
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Drop entries before `compact_index` (it becomes the dummy entry)."""
        offset = self._ents[0].index
        if compact_index <= offset:
            return
        assert compact_index <= self.last_index(), (
            f"compact {compact_index} beyond last {self.last_index()}"
        )
        i = compact_index - offset
        head = Entry(term=self._ents[i].term, index=compact_index)
        self._ents = [head, *self._ents[i + 1 :]]

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append entries, truncating any conflicting suffix first."""
        if not entries:
            return
        first = self.first_index()
        last = entries[-1].index
        if last < first:
            return
        if first > entries[0].index:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._ents[0].index
        n = len(self._ents)
        if n > offset:
            del self._ents[offset:]
            self._ents.extend(entries)
        elif n == offset:
            self._ents.extend(entries)
        else:
            raise AssertionError(
                f"missing log entry: last {self.last_index()}, appending at {entries[0].index}"
            )
