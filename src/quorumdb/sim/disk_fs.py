"""`SimFileSystem`: the storage layer's `FileSystem` protocol over a `SimDisk`.

The WAL and the snapshot store run unchanged on it, so the simulator crashes the very code
that runs on real disks. Paths are the disk's paths: `<disk name>/<file>` (what
`SimDisk.path` and `SimDisk.corrupt` report), so an error names the node it happened on.

What the model keeps honest (see `SimDisk`): data is durable only after `sync`; new names,
renames and removals only after `fsync_dir`; a crash keeps a prefix of what was pending,
maybe torn. `preallocate` writes zeros (durable at the next sync, like a real fallocate's
size change), so recovery meets the same zero tails it meets on a real preallocated file.
"""

from __future__ import annotations

from quorumdb.sim.disk import SimDisk
from quorumdb.storage.errors import DurableStateError
from quorumdb.storage.fs import WritableFile

__all__ = ["SimFileSystem"]


class _SimFile:
    __slots__ = ("_disk", "_file", "_path", "_position")

    def __init__(self, disk: SimDisk, file: str, path: str, position: int) -> None:
        self._disk = disk
        self._file = file
        self._path = path
        self._position = position

    @property
    def path(self) -> str:
        return self._path

    @property
    def position(self) -> int:
        return self._position

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        self._disk.write(self._file, self._position, data)
        self._position += len(data)

    def sync(self) -> None:
        self._check_open()
        self._disk.sync(self._file)

    def preallocate(self, length_bytes: int) -> None:
        self._check_open()
        size = self._disk.size(self._file)
        if length_bytes > size:
            self._disk.write(self._file, size, bytes(length_bytes - size))

    def close(self) -> None:
        self._position = -1

    def _check_open(self) -> None:
        assert self._position >= 0, f"{self._path} used after close"
        if not self._disk.exists(self._file):
            # The file was removed under the writer (or lost in a crash): a real fd would
            # keep writing to an unlinked inode; here it is a bug in the caller.
            raise DurableStateError(self._path, "file no longer exists")


class SimFileSystem:
    """`FileSystem` over one node's `SimDisk`."""

    __slots__ = ("disk",)

    def __init__(self, disk: SimDisk) -> None:
        self.disk = disk

    def _file(self, path: str) -> str:
        prefix = f"{self.disk.name}/"
        assert path.startswith(prefix), f"{path} is not on disk {self.disk.name}"
        return path[len(prefix) :]

    def _existing(self, path: str) -> str:
        file = self._file(path)
        if not self.disk.exists(file):
            raise DurableStateError(path, "no such file")
        return file

    def make_dirs(self, path: str) -> None:
        self._file(f"{path}/")  # directories are implicit on a SimDisk

    def create(self, path: str) -> WritableFile:
        file = self._file(path)
        self.disk.create(file)
        return _SimFile(self.disk, file, path, 0)

    def open_append(self, path: str, *, position: int) -> WritableFile:
        file = self._existing(path)
        assert position <= self.disk.size(file), f"{path}: position {position} past the end"
        return _SimFile(self.disk, file, path, position)

    def read(self, path: str) -> bytes:
        return self.disk.read(self._existing(path))

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        return self.disk.read(self._existing(path))[offset : offset + length]

    def truncate(self, path: str, length_bytes: int) -> None:
        self.disk.truncate(self._existing(path), length_bytes)

    def rename(self, src: str, dst: str) -> None:
        self.disk.rename(self._existing(src), self._file(dst))

    def fsync_dir(self, path: str) -> None:
        self.disk.sync_dir(self._file(f"{path}/")[:-1])

    def list_dir(self, path: str) -> list[str]:
        return self.disk.list_dir(self._file(f"{path}/")[:-1])

    def remove(self, path: str) -> None:
        self.disk.remove(self._existing(path))

    def exists(self, path: str) -> bool:
        return self.disk.exists(self._file(path))
