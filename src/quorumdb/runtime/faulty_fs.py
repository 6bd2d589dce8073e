"""TEST ONLY: a `FileSystem` whose fsyncs and writes fail on demand (`runtime.fault_control`).

It wraps the node's real file system, and the node gives it to everything that writes
(the WAL, the snapshot store, the Kafka partition logs), so a fault reaches every fsync
and write the node makes. What the faults do, read at each call:

- `fsync_delay_ms`: each fsync (a file's `sync`, `fsync_dir`, `truncate`, `make_dirs` of a
  new directory) first sleeps that long, in whatever thread makes it (a slow disk blocks
  its caller too).
- `fsync_stall`: each fsync blocks until a new control file clears the stall.
- `fsync_fail`: each fsync raises `DurableStateError` (from `OSError(EIO)`) naming the
  file, as `OsFileSystem` does for a real failure. The callers must stop the node: after a
  failed fsync nothing about the file can be trusted (PostgreSQL's "fsyncgate").
- `full`: each write and preallocation raises `DurableStateError` from `OSError(ENOSPC)`.

Errors look like the real file system's (`storage.fs`), with "(injected)" appended so that
a log makes clear the disk itself was fine.
"""

from __future__ import annotations

import errno
import os
import time

from quorumdb.runtime.fault_control import FaultControl
from quorumdb.storage.errors import DurableStateError
from quorumdb.storage.fs import FileSystem, WritableFile

__all__ = ["FaultyFileSystem"]


def _injected(path: str, what: str, code: int) -> DurableStateError:
    cause = OSError(code, os.strerror(code), path)
    error = DurableStateError(path, f"{what} failed: {os.strerror(code)} (injected)")
    error.__cause__ = cause
    return error


def _before_sync(control: FaultControl, path: str, what: str) -> None:
    faults = control.faults
    if faults.fsync_delay_ms > 0:
        time.sleep(faults.fsync_delay_ms / 1000)
    if faults.fsync_stall:
        control.wait_unstalled()
    if control.faults.fsync_fail:
        raise _injected(path, what, errno.EIO)


def _before_write(control: FaultControl, path: str, what: str) -> None:
    if control.faults.full:
        raise _injected(path, what, errno.ENOSPC)


class _FaultyFile:
    __slots__ = ("_control", "_inner")

    def __init__(self, inner: WritableFile, control: FaultControl) -> None:
        self._inner = inner
        self._control = control

    @property
    def path(self) -> str:
        return self._inner.path

    @property
    def position(self) -> int:
        return self._inner.position

    def write(self, data: bytes | bytearray | memoryview) -> None:
        _before_write(self._control, self.path, "write")
        self._inner.write(data)

    def sync(self) -> None:
        _before_sync(self._control, self.path, "fdatasync")
        self._inner.sync()

    def preallocate(self, length_bytes: int) -> None:
        _before_write(self._control, self.path, "posix_fallocate")
        self._inner.preallocate(length_bytes)

    def close(self) -> None:
        self._inner.close()


class FaultyFileSystem:
    """`FileSystem` over `inner` with the faults `control` holds at each call."""

    __slots__ = ("_control", "_inner")

    def __init__(self, inner: FileSystem, control: FaultControl) -> None:
        self._inner = inner
        self._control = control

    def make_dirs(self, path: str) -> None:
        if not self._inner.exists(path):  # creating it fsyncs the parent directories
            _before_sync(self._control, path, "fsync of directory")
        self._inner.make_dirs(path)

    def create(self, path: str) -> WritableFile:
        return _FaultyFile(self._inner.create(path), self._control)

    def open_append(self, path: str, *, position: int) -> WritableFile:
        return _FaultyFile(self._inner.open_append(path, position=position), self._control)

    def read(self, path: str) -> bytes:
        return self._inner.read(path)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        return self._inner.read_range(path, offset, length)

    def truncate(self, path: str, length_bytes: int) -> None:
        _before_sync(self._control, path, "truncate")
        self._inner.truncate(path, length_bytes)

    def rename(self, src: str, dst: str) -> None:
        self._inner.rename(src, dst)

    def fsync_dir(self, path: str) -> None:
        _before_sync(self._control, path, "fsync of directory")
        self._inner.fsync_dir(path)

    def list_dir(self, path: str) -> list[str]:
        return self._inner.list_dir(path)

    def remove(self, path: str) -> None:
        self._inner.remove(path)

    def exists(self, path: str) -> bool:
        return self._inner.exists(path)
