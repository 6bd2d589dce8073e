"""`SnapshotStore`: every group's snapshots as files, written atomically, bounded in size and count.

Layout: `<dir>/<group>/<term>-<index>.snap` (both numbers zero-padded to 20 digits so names
sort like the snapshots they hold). A file is one `SNAPSHOT_FILE` record (framing of
`storage.records`: length, type, CRC-32C, header CRC) whose payload is a `SnapshotHeader`,
followed by the state machine image; the header carries the image's length and CRC-32C, so
the image is not limited by the record size and is checked on every load.

Theory of operation. `save` writes `<name>.tmp`, fdatasyncs it, renames it over `<name>` and
fsyncs the directory: after a crash the snapshot either exists whole under its final name or
not at all (a leftover `.tmp` is deleted by `remove_leftovers`). A snapshot file is never
torn, so any damage found in one is corruption (no torn-tail rule here).

`load_latest` returns the newest valid snapshot. A corrupt newest one is skipped (logged and
listed in `skipped`) only if an older valid one exists *and* the caller says that one is
usable (the WAL still holds the entries after it); otherwise recovery must not pretend the
log is whole, and the `CorruptRecordError` of the newest file is raised. `save` keeps the
`keep` newest snapshots of a group (older ones are the fall-back above, so keep >= 2 unless
space matters more) and refuses images larger than `snapshot_bytes_max`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import crc32c
import msgspec

from quorumdb.raft.messages import Snapshot, SnapshotMetadata
from quorumdb.storage.errors import SnapshotTooLargeError
from quorumdb.storage.fs import FileSystem
from quorumdb.storage.records import (
    CorruptRecordError,
    RecordType,
    encode_record,
    read_record,
)

__all__ = [
    "SNAPSHOT_BYTES_MAX_DEFAULT",
    "SnapshotFile",
    "SnapshotHeader",
    "SnapshotStore",
]

SNAPSHOT_BYTES_MAX_DEFAULT = 256 << 20
_FORMAT_VERSION = 1
_NAME = re.compile(r"^(\d{20})-(\d{20})\.snap$")
_TMP_SUFFIX = ".tmp"

_log = logging.getLogger(__name__)


class SnapshotHeader(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The CRC'd head of a snapshot file: whose snapshot, of what, and the image's checksum."""

    version: int
    group: int
    metadata: SnapshotMetadata
    data_bytes: int
    data_crc: int


_encode = msgspec.msgpack.Encoder().encode
_decode_header = msgspec.msgpack.Decoder(SnapshotHeader).decode


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotFile:
    """A snapshot file found in the store (not yet read or validated)."""

    group: int
    term: int
    index: int
    path: str


class SnapshotStore:
    """Snapshots of many groups under one directory of a `FileSystem`."""

    __slots__ = ("_dir", "_fs", "_groups_made", "keep", "skipped", "snapshot_bytes_max")

    def __init__(
        self,
        fs: FileSystem,
        dir: str,
        *,
        keep: int = 2,
        snapshot_bytes_max: int = SNAPSHOT_BYTES_MAX_DEFAULT,
    ) -> None:
        """No I/O happens here; `save` creates directories as needed.

        Args:
            fs: where the files live.
            dir: the store's directory (one sub-directory per group).
            keep: how many snapshots to keep per group (at least 1).
            snapshot_bytes_max: the largest image `save` accepts.
        """
        assert keep >= 1, f"keep={keep}: a group needs its latest snapshot"
        assert snapshot_bytes_max > 0, f"snapshot_bytes_max={snapshot_bytes_max}"
        self._fs = fs
        self._dir = dir
        self.keep = keep
        self.snapshot_bytes_max = snapshot_bytes_max
        self.skipped: list[CorruptRecordError] = []
        self._groups_made: set[int] = set()

    @property
    def dir(self) -> str:
        return self._dir

    def path(self, group: int, term: int, index: int) -> str:
        return f"{self._dir}/{group}/{term:020d}-{index:020d}.snap"

    # -- writing ----------------------------------------------------------------------------

    def save(self, group: int, snap: Snapshot) -> str:
        """Write `snap` atomically and durably; prune the group's old snapshots; return the path.

        Raises:
            SnapshotTooLargeError: the image exceeds `snapshot_bytes_max` (nothing is written).
            DurableStateError: the file system failed.
        """
        meta = snap.metadata
        path = self.path(group, meta.term, meta.index)
        if len(snap.data) > self.snapshot_bytes_max:
            raise SnapshotTooLargeError(path, len(snap.data), self.snapshot_bytes_max)
        assert meta.index > 0, "an empty snapshot is never saved"
        group_dir = f"{self._dir}/{group}"
        if group not in self._groups_made:
            self._fs.make_dirs(group_dir)
            self._groups_made.add(group)
        header = SnapshotHeader(
            version=_FORMAT_VERSION,
            group=group,
            metadata=meta,
            data_bytes=len(snap.data),
            data_crc=crc32c.crc32c(snap.data),
        )
        tmp = path + _TMP_SUFFIX
        f = self._fs.create(tmp)
        try:
            f.write(encode_record(RecordType.SNAPSHOT_FILE, _encode(header)))
            f.write(snap.data)
            f.sync()
        finally:
            f.close()
        self._fs.rename(tmp, path)
        self._fs.fsync_dir(group_dir)
        self._prune(group)
        return path

    def _prune(self, group: int) -> None:
        old = self.list_files(group)[self.keep :]
        for sf in old:
            self._fs.remove(sf.path)
        if old:
            # Not needed for safety (a resurrected old snapshot is just older), but it keeps
            # the count bounded across crashes.
            self._fs.fsync_dir(f"{self._dir}/{group}")

    def remove_leftovers(self) -> list[str]:
        """Delete `.tmp` files a crash left behind (never renamed: never a snapshot)."""
        removed: list[str] = []
        for group in self.groups():
            group_dir = f"{self._dir}/{group}"
            leftovers = [n for n in self._fs.list_dir(group_dir) if n.endswith(_TMP_SUFFIX)]
            for name in leftovers:
                self._fs.remove(f"{group_dir}/{name}")
                removed.append(f"{group_dir}/{name}")
            if leftovers:
                self._fs.fsync_dir(group_dir)
        return removed

    # -- reading ----------------------------------------------------------------------------

    def groups(self) -> list[int]:
        """Groups that have a directory in the store, ascending."""
        return sorted(int(name) for name in self._fs.list_dir(self._dir) if name.isdigit())

    def list_files(self, group: int) -> list[SnapshotFile]:
        """The group's snapshot files, newest (highest index, then term) first."""
        group_dir = f"{self._dir}/{group}"
        out: list[SnapshotFile] = []
        for name in self._fs.list_dir(group_dir):
            m = _NAME.match(name)
            if m is not None:
                term, index = int(m.group(1)), int(m.group(2))
                out.append(
                    SnapshotFile(group=group, term=term, index=index, path=f"{group_dir}/{name}")
                )
        out.sort(key=lambda sf: (sf.index, sf.term), reverse=True)
        return out

    def load(self, sf: SnapshotFile) -> Snapshot:
        """Read and validate one snapshot file.

        Raises:
            CorruptRecordError: any damage, or a header that contradicts the file's name.
        """
        data = self._fs.read(sf.path)
        rtype, payload, end = read_record(data, sf.path)
        if rtype != RecordType.SNAPSHOT_FILE:
            raise CorruptRecordError(sf.path, 0, f"not a snapshot file (record type {rtype})")
        try:
            header = _decode_header(payload)
        except msgspec.DecodeError as exc:
            raise CorruptRecordError(sf.path, 0, f"undecodable snapshot header: {exc}") from exc
        if header.version != _FORMAT_VERSION:
            raise CorruptRecordError(sf.path, 0, f"unknown snapshot version {header.version}")
        meta = header.metadata
        if (header.group, meta.term, meta.index) != (sf.group, sf.term, sf.index):
            raise CorruptRecordError(
                sf.path,
                0,
                f"header says group {header.group} term {meta.term} index {meta.index}",
            )
        image = memoryview(data)[end:]
        if len(image) != header.data_bytes:
            raise CorruptRecordError(
                sf.path, end, f"image of {len(image)} bytes, header says {header.data_bytes}"
            )
        if crc32c.crc32c(image) != header.data_crc:
            raise CorruptRecordError(sf.path, end, "snapshot image CRC mismatch")
        return Snapshot(metadata=meta, data=bytes(image))

    def load_latest(
        self,
        group: int,
        *,
        usable: Callable[[SnapshotMetadata], bool] | None = None,
    ) -> Snapshot | None:
        """The newest valid snapshot of `group`, or None if it has none.

        Args:
            group: the Raft group.
            usable: asked about an *older* snapshot before it replaces a corrupt newer one:
                True if the log still holds every entry after it. (The newest valid snapshot
                is returned without asking; the caller checks it against its log.)

        Raises:
            CorruptRecordError: the newest snapshot is corrupt and no older one can stand in.
        """
        first_error: CorruptRecordError | None = None
        for sf in self.list_files(group):
            try:
                snap = self.load(sf)
            except CorruptRecordError as exc:
                first_error = first_error or exc
                _log.warning("snapshot corrupt group=%d path=%s error=%r", group, sf.path, str(exc))
                continue
            if first_error is None:
                return snap
            if usable is not None and not usable(snap.metadata):
                raise first_error
            _log.warning(
                "snapshot fallback group=%d skipped=%s using=%s", group, first_error.path, sf.path
            )
            self.skipped.append(first_error)
            return snap
        if first_error is not None:
            raise first_error
        return None
