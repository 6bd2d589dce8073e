"""Entries (and possibly a snapshot) the core holds that the driver has not yet persisted.

Theory of operation (after etcd's log_unstable.go): `entries[i]` has index `offset + i`. A
snapshot, if present, precedes all of them. The driver takes them from `Ready`, writes them,
and `advance()` (or, with asynchronous storage writes, the `STORAGE_APPEND_RESP` the driver
steps back once the write is durable) calls `stable_to` / `stable_snap_to` so they move to
`Storage`. A conflicting append truncates here; if it reaches below `offset`, the stable log
is shadowed: storage's suffix will be overwritten when the driver persists the new entries.

Entries from `offset_in_progress` on (and the snapshot unless `snapshot_in_progress`) have not
been handed to the driver yet; those before it were, and their write may still be running.
A truncation below `offset_in_progress` hands the replacing entries out again.
"""

from __future__ import annotations

from quorumdb.raft.messages import Entry, Snapshot

__all__ = ["Unstable"]


class Unstable:
    __slots__ = ("entries", "offset", "offset_in_progress", "snapshot", "snapshot_in_progress")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset
        self.offset_in_progress = offset
        self.snapshot_in_progress = False

    def next_entries(self) -> list[Entry]:
        """Entries not yet handed to the driver for writing."""
        return self.entries[self.offset_in_progress - self.offset :]

    def has_next_entries(self) -> bool:
        return self.offset_in_progress < self.offset + len(self.entries)

    def next_snapshot(self) -> Snapshot | None:
        """The snapshot, if not yet handed to the driver for writing."""
        return None if self.snapshot_in_progress else self.snapshot

    def accept_in_progress(self) -> None:
        """Everything here has been handed to the driver (a Ready took it)."""
        self.offset_in_progress = self.offset + len(self.entries)
        self.snapshot_in_progress = self.snapshot is not None

    def maybe_first_index(self) -> int | None:
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.metadata.index == i:
                return self.snapshot.metadata.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        return self.entries[i - self.offset].term

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to (index, term) are now in storage; drop them if still the same."""
        t = self.maybe_term(index)
        if t is None or t != term or index < self.offset:
            # The entry was overwritten by a newer append, or already stable.
            return
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1
        self.offset_in_progress = max(self.offset_in_progress, self.offset)

    def stable_snap_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == index:
            self.snapshot = None
            self.snapshot_in_progress = False

    def restore(self, snap: Snapshot) -> None:
        self.offset = snap.metadata.index + 1
        self.offset_in_progress = self.offset
        self.entries = []
        self.snapshot = snap
        self.snapshot_in_progress = False

    def truncate_and_append(self, ents: list[Entry] | tuple[Entry, ...]) -> None:
        first = ents[0].index
        end = self.offset + len(self.entries)
        if first == end:
            self.entries.extend(ents)
        elif first <= self.offset:
            # Replaces everything unstable (and shadows storage from `first` on).
            self.offset = first
            self.entries = list(ents)
        else:
            del self.entries[first - self.offset :]
            self.entries.extend(ents)
        # Replaced entries handed out earlier are written again (after the earlier write).
        self.offset_in_progress = min(self.offset_in_progress, first)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        assert self.offset <= lo <= hi <= self.offset + len(self.entries), (
            f"unstable slice [{lo},{hi}) out of [{self.offset},{self.offset + len(self.entries)}]"
        )
        return self.entries[lo - self.offset : hi - self.offset]
