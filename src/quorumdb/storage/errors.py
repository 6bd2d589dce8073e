"""Errors of the durable storage layer (STYLE.md §5.5).

They extend the Raft family's `StorageError` (the core already knows `CompactedError` and
`UnavailableError` from it), so one `except StorageError` covers every storage failure, and
the CLI prints any of them as one `quorumdb: error: ...` line. Each names the file or
directory it is about: an operator must be able to find what to inspect or move away.
"""

from __future__ import annotations

from quorumdb.raft.errors import StorageError

__all__ = ["DurableStateError", "SnapshotTooLargeError", "StorageError"]


class DurableStateError(StorageError):
    """Durable state cannot be read or written: an I/O failure, a missing segment, a gap.

    Corruption (a record that fails its CRC) is the subclass `CorruptRecordError`.
    """

    def __init__(self, path: str, reason: str, *, message: str | None = None) -> None:
        super().__init__(message if message is not None else f"{path}: {reason}")
        self.path = path
        self.reason = reason


class SnapshotTooLargeError(DurableStateError):
    """A snapshot exceeds the store's `snapshot_bytes_max`; it is refused, nothing is written."""

    def __init__(self, path: str, size_bytes: int, limit_bytes: int) -> None:
        super().__init__(
            path,
            f"snapshot of {size_bytes} bytes exceeds snapshot_bytes_max={limit_bytes}",
        )
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes
