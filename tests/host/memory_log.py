"""A NodeLog kept in memory, for exercising the host's driver without a disk (tests only)."""

from __future__ import annotations

from quorumdb.raft import ConfState, MemoryStorage, Ready, Snapshot, Storage, StorageAppend


class MemoryGroupLog:
    def __init__(self, bootstrap: ConfState) -> None:
        self.mem = MemoryStorage(bootstrap)
        self.commits = 0

    @property
    def storage(self) -> Storage:
        return self.mem

    def stage(self, rd: Ready | StorageAppend) -> object | None:
        if rd.snapshot is not None:
            self.mem.apply_snapshot(rd.snapshot)
        if rd.entries:
            self.mem.append(rd.entries)
        if rd.hard_state is not None:
            self.mem.set_hard_state(rd.hard_state)
        return (rd.entries, rd.hard_state)

    def snapshot(self) -> Snapshot:
        return self.mem.snapshot()

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes, keep: int) -> None:
        self.mem.create_snapshot(index, conf_state, data)
        self.mem.compact(max(self.mem.first_index(), index - keep))


class MemoryNodeLog:
    def __init__(self) -> None:
        self.groups: dict[int, MemoryGroupLog] = {}
        self.batches = 0

    def group(self, group_id: int, bootstrap: ConfState) -> MemoryGroupLog:
        g = self.groups.get(group_id)
        if g is None:
            g = self.groups[group_id] = MemoryGroupLog(bootstrap)
        return g

    def commit(self, items: list[object], *, sync: bool) -> None:
        self.batches += 1

    def pinning(self) -> dict[int, int]:
        return {}  # nothing on disk to relieve

    def forget(self, group_id: int) -> None:
        pass

    def close(self) -> None:
        pass
