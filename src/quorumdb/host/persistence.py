"""What the host needs from durable storage, as two small protocols.

`NodeLog` is the node-wide write-ahead log (one per process, shared by every group, so one
fdatasync commits a batch for all of them); `GroupLog` is one group's view: the raft
`Storage` the core reads, plus the write path the driver uses between `ready()` and
`advance()`. `storage.wal` implements them for real; the contract is written here so that
the host does not depend on the WAL's internals.
"""

from __future__ import annotations

from typing import Protocol

from quorumdb.raft import ConfState, Ready, Snapshot, Storage, StorageAppend

__all__ = ["GroupLog", "NodeLog"]


class GroupLog(Protocol):
    @property
    def storage(self) -> Storage: ...

    def stage(self, rd: Ready | StorageAppend) -> object | None:
        """Make the snapshot, entries and hard state of a Ready (or of a StorageAppend, with
        asynchronous storage writes) visible to `storage` and return the item to put in the
        node's next WAL batch (None if there is nothing to write)."""
        ...

    def snapshot(self) -> Snapshot:
        """The latest snapshot this group has (empty at first start)."""
        ...

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes, keep: int) -> None:
        """Record a state machine snapshot at applied `index`; drop log entries before
        `index - keep` (they are covered)."""
        ...


class NodeLog(Protocol):
    def group(self, group_id: int, bootstrap: ConfState) -> GroupLog:
        """This group's log: recovered from disk, or new with membership `bootstrap`."""
        ...

    def commit(self, items: list[object], *, sync: bool) -> None:
        """Write every staged item in one write and (if `sync`) one fdatasync. Blocking."""
        ...

    def pinning(self) -> dict[int, int]:
        """Once the log has grown past a few segments: the groups whose uncompacted entries
        keep its oldest segment, with the highest index each has there (else empty)."""
        ...

    def forget(self, group_id: int) -> None:
        """The group is gone from this node: none of its entries are needed any more."""
        ...

    def close(self) -> None: ...
