"""`DurableStorage`: one Raft group's `Storage`, backed by the node's WAL and snapshot store.

Reads (the `raft.storage.Storage` protocol the core uses) are served from an in-memory
`MemoryStorage` that the write path keeps in step with what goes to disk; it holds the
entries since the last compaction only, so memory is bounded by the snapshot policy, not by
the age of the group. Writes are the driver's, and follow the Ready contract
(`raft.ready`):

    writes = [st.persist(rd.entries, rd.hard_state, rd.snapshot) for each group's Ready]
    wal.save([w for w in writes if w is not None], sync=any(rd.must_sync ...))
    # only now: send persisted_messages, apply, advance

`persist` updates the cache at once (the core reads the new entries only after `advance`,
which comes after the save) and returns the group's `GroupWrite` for the node-wide batch.
Installing a snapshot writes the snapshot file durably *before* the batch that records the
installation, so the WAL never names a snapshot that is not on disk.

`create_snapshot` + `compact` are the snapshot policy's tools: the first writes a snapshot
of the applied state (durably), the second drops entries it covers from memory and tells
the WAL, which deletes segments once no group needs them.
"""

from __future__ import annotations

from collections.abc import Sequence

from quorumdb.raft.messages import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from quorumdb.raft.storage import MemoryStorage
from quorumdb.storage.snapshots import SnapshotStore
from quorumdb.storage.wal import WAL, GroupWrite, RecoveredGroup, SnapshotMark

__all__ = ["DurableStorage"]


class DurableStorage:
    """The `Storage` of one Raft group, plus the driver-facing write path."""

    __slots__ = ("_mem", "_snapshots", "_wal", "group")

    def __init__(
        self,
        group: int,
        wal: WAL,
        snapshots: SnapshotStore,
        recovered: RecoveredGroup | None = None,
        *,
        conf_state: ConfState | None = None,
    ) -> None:
        """Start from what `WAL.open` recovered for `group` (None: a new group).

        Args:
            group: the Raft group id (the key of its records in the WAL).
            wal: the node's WAL (shared by all groups).
            snapshots: the node's snapshot store.
            recovered: the group's recovered state, if any.
            conf_state: the membership of a new group with no snapshot (bootstrap).
        """
        self.group = group
        self._wal = wal
        self._snapshots = snapshots
        mem = MemoryStorage(conf_state)
        if recovered is not None:
            if recovered.snapshot is not None:
                mem.apply_snapshot(recovered.snapshot)
            mem.append(recovered.entries)
            mem.set_hard_state(recovered.hard_state)
        self._mem = mem

    # -- the Storage protocol (what the Raft core reads) ---------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._mem.initial_state()

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        return self._mem.entries(lo, hi, max_bytes)

    def term(self, index: int) -> int:
        return self._mem.term(index)

    def first_index(self) -> int:
        return self._mem.first_index()

    def last_index(self) -> int:
        return self._mem.last_index()

    def snapshot(self) -> Snapshot:
        return self._mem.snapshot()

    @property
    def hard_state(self) -> HardState:
        return self._mem.hard_state

    # -- the write path (the driver's) -------------------------------------------------------

    def persist(
        self,
        entries: Sequence[Entry],
        hard_state: HardState | None,
        snapshot: Snapshot | None,
    ) -> GroupWrite | None:
        """Take in a Ready's snapshot, entries and hard state; return the group's WAL write.

        The snapshot (if newer than ours) is written to the snapshot store durably here; the
        entries and hard state are durable only once the returned write has been saved with
        `sync`. Returns None when there is nothing to write.

        Raises:
            SnapshotTooLargeError, DurableStateError: from the snapshot store.
        """
        mark = self._install(snapshot) if snapshot is not None else None
        if entries:
            self._mem.append(list(entries))
        if hard_state is not None:
            self._mem.set_hard_state(hard_state)
        if mark is None and not entries and hard_state is None:
            return None
        return GroupWrite(
            group=self.group, entries=list(entries), hard_state=hard_state, snapshot=mark
        )

    def apply_snapshot(self, snap: Snapshot) -> GroupWrite | None:
        """Install a leader's snapshot outside a Ready; save the returned write in the WAL."""
        mark = self._install(snap)
        return None if mark is None else GroupWrite(group=self.group, snapshot=mark)

    def _install(self, snap: Snapshot) -> SnapshotMark | None:
        meta = snap.metadata
        if meta.index <= self._mem.snapshot().metadata.index:
            return None  # as MemoryStorage: an older snapshot changes nothing
        self._snapshots.save(self.group, snap)
        self._mem.apply_snapshot(snap)
        self._wal.compact(self.group, meta.index)
        return SnapshotMark(index=meta.index, term=meta.term)

    def create_snapshot(self, index: int, conf_state: ConfState | None, data: bytes) -> Snapshot:
        """Snapshot the state machine at applied index `index` and write it durably.

        Returns the new snapshot (or the current one if it is not older than `index`).

        Raises:
            SnapshotTooLargeError: `data` is over the store's limit; nothing changes.
        """
        current = self._mem.snapshot()
        if index <= current.metadata.index:
            return current
        assert index <= self._mem.hard_state.commit, (
            f"snapshot at {index} beyond commit {self._mem.hard_state.commit}"
        )
        cs = conf_state if conf_state is not None else current.metadata.conf_state
        snap = Snapshot(
            metadata=SnapshotMetadata(conf_state=cs, index=index, term=self._mem.term(index)),
            data=data,
        )
        self._snapshots.save(self.group, snap)  # validates the size before writing anything
        made = self._mem.create_snapshot(index, conf_state, data)
        assert made.metadata == snap.metadata, (
            f"cache made {made.metadata}, disk has {snap.metadata}"
        )
        return made

    def compact(self, keep_entries: int = 0) -> None:
        """Drop entries up to `keep_entries` before the latest snapshot, from memory and WAL.

        Keeping some entries lets a slightly lagging follower catch up without a snapshot,
        and lets recovery fall back to the previous snapshot if the newest one is damaged
        (only if they reach back to it).
        """
        assert keep_entries >= 0, f"keep_entries={keep_entries}"
        index = self._mem.snapshot().metadata.index - keep_entries
        if index < self._mem.first_index():
            return
        self._mem.compact(index)
        self._wal.compact(self.group, index)
