"""Durable state: record framing, the node's segmented WAL, snapshots, and per-group storage.

- `records`: framing (length | type | CRC-32C | header CRC | payload), torn tail vs corruption.
- `fs`: the `FileSystem` protocol (real files: `OsFileSystem`; the simulator's disk:
  `quorumdb.sim.disk_fs.SimFileSystem`).
- `wal`: one segmented log per node, shared by all its Raft groups (group commit).
- `snapshots`: atomic, CRC'd snapshot files, bounded in count and size.
- `durable`: `DurableStorage`, one group's `raft.Storage` over the two.
- `errors`: `DurableStateError` (and `CorruptRecordError` in `records`).
"""

from quorumdb.storage.durable import DurableStorage
from quorumdb.storage.errors import DurableStateError, SnapshotTooLargeError, StorageError
from quorumdb.storage.fs import FileSystem, OsFileSystem, WritableFile
from quorumdb.storage.records import (
    HEADER_BYTES,
    CorruptRecordError,
    RecordType,
    decode_records,
    encode_record,
)
from quorumdb.storage.snapshots import SnapshotStore
from quorumdb.storage.wal import WAL, GroupWrite, RecoveredGroup, SnapshotMark

__all__ = [
    "HEADER_BYTES",
    "WAL",
    "CorruptRecordError",
    "DurableStateError",
    "DurableStorage",
    "FileSystem",
    "GroupWrite",
    "OsFileSystem",
    "RecordType",
    "RecoveredGroup",
    "SnapshotMark",
    "SnapshotStore",
    "SnapshotTooLargeError",
    "StorageError",
    "WritableFile",
    "decode_records",
    "encode_record",
]
