"""The file operations durable storage needs, as a Protocol: real files or the simulator's disk.

`WAL` and `SnapshotStore` only talk to a `FileSystem`, so the same code runs on
`OsFileSystem` (this module; the only module of `storage/` that imports `os`) and on
`quorumdb.sim.disk_fs.SimFileSystem`, whose crashes lose exactly what a power cut may lose.
The contract is the POSIX one, spelled out because durability bugs hide in its corners:

- `write` goes to the page cache; only `WritableFile.sync` (fdatasync) makes it durable.
  A crash may keep any prefix of the unsynced writes of a file, the last one possibly torn.
- A name (a created, renamed or removed file) is durable only after `fsync_dir` of its
  directory: a synced file whose new name was not fsynced may vanish in a crash.
- `rename` within one directory is atomic: after a crash the name refers to the old file or
  the new one, never to a mix.
- `truncate` is durable when it returns (it syncs the file itself).
- `preallocate` reserves space so that later writes in it need no block allocation (and no
  metadata in the fdatasync); the file reads as zeros beyond what was written. It may be a
  no-op where the OS cannot do it; readers must accept both shapes.

Every failure of the operating system becomes `DurableStateError` naming the path.
"""

from __future__ import annotations

import os
from typing import Protocol

from quorumdb.storage.errors import DurableStateError

__all__ = ["FileSystem", "OsFileSystem", "WritableFile"]


class WritableFile(Protocol):
    """An open file written sequentially from a position (the writer tracks the logical end)."""

    @property
    def path(self) -> str: ...

    @property
    def position(self) -> int:
        """Where the next `write` goes."""
        ...

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of `data` at `position` (one system call where possible) and advance."""
        ...

    def sync(self) -> None:
        """fdatasync: every byte written so far is durable when this returns."""
        ...

    def preallocate(self, length_bytes: int) -> None:
        """Reserve the file up to `length_bytes` (zeros); may do nothing."""
        ...

    def close(self) -> None: ...


class FileSystem(Protocol):
    """Path-based operations; paths use `/` and are interpreted by the implementation."""

    def make_dirs(self, path: str) -> None:
        """Create `path` and missing parents, each made durable in its parent directory."""
        ...

    def create(self, path: str) -> WritableFile:
        """A new empty file at `path` (replacing any); its name is durable after `fsync_dir`."""
        ...

    def open_append(self, path: str, *, position: int) -> WritableFile:
        """Open an existing file for writing at `position` (its logical end)."""
        ...

    def read(self, path: str) -> bytes:
        """The whole file."""
        ...

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer at the end of the file)."""
        ...

    def truncate(self, path: str, length_bytes: int) -> None:
        """Cut the file to `length_bytes`, durably."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Atomically rename within one directory (replacing `dst`); durable after `fsync_dir`."""
        ...

    def fsync_dir(self, path: str) -> None:
        """Make the directory's entries (creations, renames, removals) durable."""
        ...

    def list_dir(self, path: str) -> list[str]:
        """Names in the directory, sorted; empty if it does not exist."""
        ...

    def remove(self, path: str) -> None:
        """Delete the file; durable after `fsync_dir`."""
        ...

    def exists(self, path: str) -> bool: ...


def _error(path: str, what: str, exc: OSError) -> DurableStateError:
    return DurableStateError(path, f"{what} failed: {exc.strerror or exc}")


# fdatasync is Linux's; elsewhere fsync is the durable equivalent (NB: macOS needs
# F_FULLFSYNC for a true barrier, which quorumdb does not claim to support).
_fdatasync = getattr(os, "fdatasync", os.fsync)
_fallocate = getattr(os, "posix_fallocate", None)


class _OsFile:
    __slots__ = ("_fd", "_path", "_position")

    def __init__(self, path: str, fd: int, position: int) -> None:
        self._path = path
        self._fd = fd
        self._position = position

    @property
    def path(self) -> str:
        return self._path

    @property
    def position(self) -> int:
        return self._position

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(self._fd, view, self._position)
                self._position += n
                view = view[n:]
        except OSError as exc:
            raise _error(self._path, "write", exc) from exc

    def sync(self) -> None:
        try:
            _fdatasync(self._fd)
        except OSError as exc:
            # After a failed fsync the page cache state is unknown (the "fsyncgate" lesson):
            # never retry and carry on; the caller must treat the log as lost past its last
            # successful sync and stop.
            raise _error(self._path, "fdatasync", exc) from exc

    def preallocate(self, length_bytes: int) -> None:
        if _fallocate is None or length_bytes <= self._position:
            return
        try:
            _fallocate(self._fd, self._position, length_bytes - self._position)
        except OSError as exc:
            if exc.errno in (getattr(os, "EOPNOTSUPP", -1), getattr(os, "EINVAL", -1)):
                return  # the file system cannot preallocate: a plain appending file
            raise _error(self._path, "posix_fallocate", exc) from exc

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class OsFileSystem:
    """`FileSystem` over the operating system's files (POSIX)."""

    __slots__ = ()

    def make_dirs(self, path: str) -> None:
        missing: list[str] = []
        p = os.path.abspath(path)
        while not os.path.isdir(p):
            missing.append(p)
            p = os.path.dirname(p)
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except FileExistsError:
                pass
            except OSError as exc:
                raise _error(d, "mkdir", exc) from exc
            self.fsync_dir(os.path.dirname(d))

    def create(self, path: str) -> WritableFile:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _error(path, "create", exc) from exc
        return _OsFile(path, fd, 0)

    def open_append(self, path: str, *, position: int) -> WritableFile:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _error(path, "open", exc) from exc
        return _OsFile(path, fd, position)

    def read(self, path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise _error(path, "read", exc) from exc

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                return os.pread(fd, length, offset)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _error(path, "read", exc) from exc

    def truncate(self, path: str, length_bytes: int) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.ftruncate(fd, length_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _error(path, "truncate", exc) from exc

    def rename(self, src: str, dst: str) -> None:
        assert os.path.dirname(src) == os.path.dirname(dst), f"rename across dirs: {src} {dst}"
        try:
            os.replace(src, dst)
        except OSError as exc:
            raise _error(src, f"rename to {dst}", exc) from exc

    def fsync_dir(self, path: str) -> None:
        try:
            fd = os.open(path or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _error(path, "fsync of directory", exc) from exc

    def list_dir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _error(path, "list", exc) from exc

    def remove(self, path: str) -> None:
        try:
            os.remove(path)
        except OSError as exc:
            raise _error(path, "remove", exc) from exc

    def exists(self, path: str) -> bool:
        return os.path.exists(path)
