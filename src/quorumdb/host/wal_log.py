"""The host's `NodeLog`/`GroupLog` over the real storage: node-wide WAL + snapshot store.

Layout under the node's data directory: `wal/` (segments shared by every group) and `snap/`
(one sub-directory of snapshot files per group).
"""

from __future__ import annotations

from pathlib import Path

from quorumdb.raft import ConfState, Ready, Snapshot, Storage, StorageAppend
from quorumdb.storage.durable import DurableStorage
from quorumdb.storage.fs import FileSystem, OsFileSystem
from quorumdb.storage.snapshots import SnapshotStore
from quorumdb.storage.wal import SEGMENT_BYTES_MAX_DEFAULT, WAL, GroupWrite, RecoveredGroup

__all__ = ["WalGroupLog", "WalNodeLog"]

_SEGMENTS_BEFORE_PRESSURE = 4  # live WAL segments before groups pinning the oldest snapshot
_INDEX_MAX = 1 << 62


class WalGroupLog:
    __slots__ = ("_st",)

    def __init__(self, st: DurableStorage) -> None:
        self._st = st

    @property
    def storage(self) -> Storage:
        return self._st

    def stage(self, rd: Ready | StorageAppend) -> object | None:
        return self._st.persist(rd.entries, rd.hard_state, rd.snapshot)

    def snapshot(self) -> Snapshot:
        return self._st.snapshot()

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes, keep: int) -> None:
        self._st.create_snapshot(index, conf_state, data)
        self._st.compact(keep)


class WalNodeLog:
    """Opened once per node process; `open` recovers (and may refuse: corruption)."""

    def __init__(
        self, wal: WAL, snapshots: SnapshotStore, recovered: dict[int, RecoveredGroup]
    ) -> None:
        self.wal = wal
        self.snapshots = snapshots
        self.recovered = recovered

    @classmethod
    def open(
        cls,
        data_dir: Path,
        fs: FileSystem | None = None,
        *,
        segment_bytes: int = SEGMENT_BYTES_MAX_DEFAULT,
    ) -> WalNodeLog:
        """Recover the node's log. Raises CorruptRecordError / DurableStateError.

        `segment_bytes`: the WAL's preallocated segment size (the simulator uses small ones,
        which keeps its in-memory disk cheap and makes rotation and WAL pressure happen)."""
        fs = fs or OsFileSystem()
        snapshots = SnapshotStore(fs, str(data_dir / "snap"))
        wal, recovered = WAL.open(
            fs, str(data_dir / "wal"), snapshots=snapshots, segment_bytes_max=segment_bytes
        )
        return cls(wal, snapshots, recovered)

    def group(self, group_id: int, bootstrap: ConfState) -> WalGroupLog:
        st = DurableStorage(
            group_id,
            self.wal,
            self.snapshots,
            self.recovered.get(group_id),
            conf_state=bootstrap,
        )
        return WalGroupLog(st)

    def commit(self, items: list[object], *, sync: bool) -> None:
        writes = [w for w in items if isinstance(w, GroupWrite)]
        assert len(writes) == len(items), "only GroupWrite items go to the WAL"
        self.wal.save(writes, sync=sync)

    def pinning(self) -> dict[int, int]:
        if len(self.wal.segment_paths()) <= _SEGMENTS_BEFORE_PRESSURE:
            return {}
        return self.wal.pinning()

    def forget(self, group_id: int) -> None:
        self.wal.compact(group_id, _INDEX_MAX)

    def close(self) -> None:
        self.wal.close()
