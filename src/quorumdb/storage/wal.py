"""The node's write-ahead log: one segmented log shared by every Raft group the node hosts.

Why one log for all groups (TiKV's raft-engine): a node hosts many groups, and the cost of a
durable write is the fdatasync, not the bytes. With one log, a group commit puts the entries
and hard states of every group's Ready into one write and one fdatasync, however many groups
there are. `save` is that group commit; the driver sends the messages that promise
durability (vote grants, append acks: `Ready.persisted_messages`) only after it returns.

On-disk format. `<dir>/<segment:012d>.seg`, each a sequence of records in the framing of
`storage.records` (length u32 | type u8 | CRC-32C u32 | header CRC u32 | payload):

- the first record is a `SEGMENT_HEADER` (`SegmentHeader`: format version, the segment's
  number, the sequence number of its first batch, and the latest hard state of every group
  when the segment was opened, so an older segment never holds the only copy of one);
- then one `BATCH` record per `save` (`Batch`: a sequence number, one more than the previous
  batch's across segments, and the `GroupWrite`s), so a save is atomic: after a crash it is
  recovered whole or not at all, whatever the number of groups in it;
- then, up to `segment_bytes_max`, zeros: segments are preallocated, and an all-zero record
  header marks the end of the data (no real header is all zeros).

Payloads are msgpack (msgspec, array-like structs, no field names): `Entry` lists are encoded
as they come from the Ready, with no intermediate objects.

A `GroupWrite` applies, in this order: `snapshot` (the group installed a snapshot: its log is
reset to start after it), `entries` (a write whose first index is i replaces everything from
i on, as a Raft append does), `hard_state`.

Theory of operation.

- Writing: `save` encodes one batch record; if it does not fit in the current segment and
  the segment already holds a batch, the log rotates first: the current segment is
  fdatasynced (so a closed segment is always wholly durable: damage found in one later is
  corruption, never a torn write), a new one is created, preallocated, and its directory
  entry fsynced before any acknowledged data lands in it. The new segment's header goes out
  in the same write as the batch. A batch larger than a segment gets a segment of its own.
- Recovery (`WAL.open`): segments are read in order. In closed segments any damage raises
  `CorruptRecordError` (file and offset). In the last one, a damaged record followed only by
  zeros (or the end of the file) is a torn write: it was never acknowledged, the file is
  truncated there (durably) and re-preallocated; a damaged record with data after it is
  corruption. Batch sequence numbers must be consecutive across segments, which catches a
  closed segment that lost its tail. The surviving tail is fdatasynced at once (after a
  process crash it may sit only in the page cache, yet the node will act on it).
- Snapshots live in a `SnapshotStore`; recovery reconciles each group's log with the newest
  valid snapshot (index i, term t) as Raft §7 does on InstallSnapshot: if the log holds
  entry i with term t the entries after it are kept, otherwise the log is discarded (the
  snapshot was durable but the WAL write recording its installation was not) and recovery
  writes that `SnapshotMark` itself, synced, before anything else: otherwise the next
  appends would be replayed onto the discarded log. The hard state's commit is raised to
  at least i (the core requires commit >= its first index - 1).
- Compaction: `compact(group, index)` says entries <= index of that group are covered by a
  snapshot. Segments are deleted oldest first, while every group's entries in the oldest
  closed segment are covered. Only the oldest: a later record may truncate or reset what an
  earlier one wrote, and deleting the later one while the earlier survives would resurrect
  entries Raft had removed. So a lagging group (one that does not snapshot, or keeps many
  entries) pins its oldest segment and every segment after it; disk use is bounded by the
  slowest group's compaction, as in raft-engine. Deletion is tried on `compact`, after a
  rotation and at open. Each deletion is made durable (directory fsync) before the next,
  so a crash leaves a contiguous run of segments. Segments are never recycled.
- Memory: recovery replays every live segment, holding their entries until it drops those
  a snapshot covers; after that the WAL keeps only per-segment, per-group maximum indexes.

NB: recovery assumes a crash keeps a prefix of the unsynced writes of a file (what the
simulator's disk does, and what appending to a preallocated file gives in practice). A disk
that persisted a later unsynced sector but not an earlier one leaves a zeroed or damaged
record followed by data: recovery then refuses to start (a false alarm, never silent loss).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from quorumdb.raft.messages import Entry, HardState, Snapshot, SnapshotMetadata
from quorumdb.storage.errors import DurableStateError
from quorumdb.storage.fs import FileSystem, WritableFile
from quorumdb.storage.records import (
    HEADER_BYTES,
    RECORD_BYTES_MAX,
    CorruptRecordError,
    RecordType,
    encode_record,
    scan_records,
    seal_record,
)
from quorumdb.storage.snapshots import SnapshotStore

__all__ = [
    "SEGMENT_BYTES_MAX_DEFAULT",
    "WAL",
    "Batch",
    "GroupWrite",
    "RecoveredGroup",
    "SegmentHeader",
    "SnapshotMark",
]

SEGMENT_BYTES_MAX_DEFAULT = 64 << 20
_FORMAT_VERSION = 1
_SEGMENT_NAME = re.compile(r"^(\d{12})\.seg$")

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


class SnapshotMark(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The group installed the snapshot ending at (index, term): its log restarts after it."""

    index: int
    term: int


class GroupWrite(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What one group's Ready asks to persist; `WAL.save` commits many of these together."""

    group: int
    entries: list[Entry] = []
    hard_state: HardState | None = None
    snapshot: SnapshotMark | None = None


class Batch(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The payload of a `BATCH` record: one group commit."""

    seq: int
    writes: list[GroupWrite]


class SegmentHeader(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The payload of a `SEGMENT_HEADER` record, the first record of every segment."""

    version: int
    segment: int
    first_batch: int
    hard_states: list[GroupWrite]  # each group's latest hard state at rotation


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveredGroup:
    """One group's durable state after recovery: what its `DurableStorage` starts from."""

    hard_state: HardState
    snapshot: Snapshot | None
    entries: list[Entry]  # after the snapshot (or from index 1), contiguous


_encoder = msgspec.msgpack.Encoder()
_decode_batch = msgspec.msgpack.Decoder(Batch).decode
_decode_header = msgspec.msgpack.Decoder(SegmentHeader).decode


def _segment_name(number: int) -> str:
    return f"{number:012d}.seg"


class _Segment:
    __slots__ = ("max_index", "number", "path")

    def __init__(self, number: int, path: str) -> None:
        self.number = number
        self.path = path
        self.max_index: dict[int, int] = {}  # group -> highest entry index written here

    def note(self, w: GroupWrite) -> None:
        if w.entries:
            last = w.entries[-1].index
            if last > self.max_index.get(w.group, 0):
                self.max_index[w.group] = last


class _GroupLog:
    """A group's log as replayed from the WAL: entries after `base`, and the hard state."""

    __slots__ = ("base_index", "base_term", "entries", "hard_state")

    def __init__(self) -> None:
        self.base_index: int | None = None  # index before entries[0]; None: nothing seen yet
        self.base_term: int | None = None  # known only after a snapshot mark
        self.entries: list[Entry] = []
        self.hard_state = HardState()

    def apply(self, w: GroupWrite, path: str, offset: int) -> None:
        if w.snapshot is not None:
            self.base_index, self.base_term = w.snapshot.index, w.snapshot.term
            self.entries = []
        if w.entries:
            self._append(w.entries, path, offset)
        if w.hard_state is not None:
            self.hard_state = w.hard_state

    def _append(self, entries: list[Entry], path: str, offset: int) -> None:
        first = entries[0].index
        if self.base_index is None:
            self.base_index, self.base_term = first - 1, None
            self.entries = list(entries)
            return
        if first <= self.base_index:
            entries = entries[self.base_index + 1 - first :]
            if not entries:
                return
            first = entries[0].index
        last = self.base_index + len(self.entries)
        if first > last + 1:
            raise DurableStateError(
                path, f"record at offset {offset}: entries jump from {last} to {first}"
            )
        del self.entries[first - self.base_index - 1 :]
        self.entries.extend(entries)


class WAL:
    """The node-wide write-ahead log. Create it with `WAL.open`.

    Not thread-safe: one caller at a time (the host's driver round; its blocking `save`
    may run in a worker thread as long as nothing else touches the WAL meanwhile).
    """

    __slots__ = (
        "_compacted",
        "_dir",
        "_drop_wanted",
        "_failed",
        "_file",
        "_fs",
        "_hard_states",
        "_header_synced",
        "_next_batch",
        "_pending_header",
        "_segment_batches",
        "_segments",
        "_unsynced",
        "segment_bytes_max",
        "stats",
    )

    def __init__(self, fs: FileSystem, dir: str, *, segment_bytes_max: int) -> None:
        """Internal: use `WAL.open`, which recovers and positions the writer."""
        assert segment_bytes_max > HEADER_BYTES, f"segment_bytes_max={segment_bytes_max}"
        self._fs = fs
        self._dir = dir
        self.segment_bytes_max = segment_bytes_max
        self._segments: list[_Segment] = []  # live, oldest first; the last is being written
        self._file: WritableFile | None = None
        self._pending_header: bytes | None = None  # goes out with the next write
        self._segment_batches = 0  # batches in the current segment
        self._next_batch = 1
        self._hard_states: dict[int, HardState] = {}
        self._compacted: dict[int, int] = {}
        self._unsynced = False
        # Whether the current segment's header (every group's latest hard state) is durable:
        # until it is, the segment before it holds the only durable copy of some of them.
        self._header_synced = True
        self._drop_wanted = False  # a compaction or rotation may have made segments deletable
        self._failed: DurableStateError | None = None
        self.stats = {"batches": 0, "bytes": 0, "syncs": 0, "rotations": 0, "removed": 0}

    # -- opening and recovery -----------------------------------------------------------------

    @classmethod
    def open(
        cls,
        fs: FileSystem,
        dir: str,
        *,
        snapshots: SnapshotStore,
        segment_bytes_max: int = SEGMENT_BYTES_MAX_DEFAULT,
    ) -> tuple[WAL, dict[int, RecoveredGroup]]:
        """Recover the log in `dir` (creating it if needed) and open it for writing.

        Args:
            fs: the file system.
            dir: the WAL's directory.
            snapshots: the node's snapshot store (recovery reconciles with its snapshots).
            segment_bytes_max: size of a segment; larger only for a batch that needs it.

        Returns:
            The WAL and, per group found in the WAL or the snapshot store, its recovered state.

        Raises:
            CorruptRecordError: a record that may have been acknowledged is damaged (or a
                corrupt snapshot cannot be replaced by an older one).
            DurableStateError: the log is inconsistent (missing segment, gap in the batch
                sequence or in a group's entries) or the file system failed.
        """
        wal = cls(fs, dir, segment_bytes_max=segment_bytes_max)
        fs.make_dirs(dir)
        snapshots.remove_leftovers()
        logs = wal._replay()
        recovered, marks = wal._reconcile(logs, snapshots)
        wal._open_writer()
        if marks:
            # Make the reconciliation itself durable: appends after the snapshot must not be
            # replayed onto the log it replaced (they would look like a gap, or be discarded
            # with it at the next recovery).
            wal.save(marks, sync=True)
        wal._drop_covered()
        return wal, recovered

    def _segment_numbers(self) -> list[int]:
        numbers: list[int] = []
        for name in self._fs.list_dir(self._dir):
            m = _SEGMENT_NAME.match(name)
            if m is None:
                _log.warning("wal ignores file dir=%s name=%s", self._dir, name)
                continue
            numbers.append(int(m.group(1)))
        numbers.sort()
        for a, b in itertools.pairwise(numbers):
            if b != a + 1:
                raise DurableStateError(
                    self._dir, f"segment {_segment_name(a + 1)} is missing (next is {b})"
                )
        return numbers

    def _replay(self) -> dict[int, _GroupLog]:
        logs: dict[int, _GroupLog] = {}
        numbers = self._segment_numbers()
        expected_batch: int | None = None
        for i, number in enumerate(numbers):
            final = i == len(numbers) - 1
            path = f"{self._dir}/{_segment_name(number)}"
            data = self._fs.read(path)
            records, end = scan_records(data, path, final=final)
            if not records:
                if not final:
                    raise DurableStateError(path, "closed segment has no records")
                # A rotation whose first write never became durable: nothing was acknowledged.
                _log.info("wal removes empty last segment path=%s", path)
                self._fs.remove(path)
                self._fs.fsync_dir(self._dir)
                continue
            seg = _Segment(number, path)
            off, rtype, payload = records[0]
            if rtype != RecordType.SEGMENT_HEADER:
                raise CorruptRecordError(path, off, f"segment starts with a {rtype.name} record")
            header = _decode(_decode_header, payload, path, off)
            if header.version != _FORMAT_VERSION or header.segment != number:
                raise CorruptRecordError(
                    path, off, f"header of version {header.version} for segment {header.segment}"
                )
            if expected_batch is not None and header.first_batch != expected_batch:
                raise DurableStateError(
                    path,
                    f"starts at batch {header.first_batch}, the previous segment ended before "
                    f"batch {expected_batch}",
                )
            expected_batch = header.first_batch
            for w in header.hard_states:
                logs.setdefault(w.group, _GroupLog()).apply(w, path, off)
            for off, rtype, payload in records[1:]:
                if rtype != RecordType.BATCH:
                    raise CorruptRecordError(path, off, f"unexpected {rtype.name} record")
                batch = _decode(_decode_batch, payload, path, off)
                if batch.seq != expected_batch:
                    raise CorruptRecordError(
                        path, off, f"batch {batch.seq} where batch {expected_batch} belongs"
                    )
                expected_batch += 1
                for w in batch.writes:
                    logs.setdefault(w.group, _GroupLog()).apply(w, path, off)
                    seg.note(w)
            self._segments.append(seg)
            self._segment_batches = len(records) - 1
            if final:
                self._resume_last(path, data, end)
        if expected_batch is not None:
            self._next_batch = expected_batch
        return logs

    def _resume_last(self, path: str, data: bytes, end: int) -> None:
        """Cut a torn tail off the last segment and make what survived durable."""
        if data.count(0, end) != len(data) - end:
            _log.warning("wal truncates torn tail path=%s offset=%d", path, end)
            self._fs.truncate(path, end)
        f = self._fs.open_append(path, position=end)
        f.preallocate(self.segment_bytes_max)
        f.sync()
        self._file = f

    def _reconcile(
        self, logs: dict[int, _GroupLog], snapshots: SnapshotStore
    ) -> tuple[dict[int, RecoveredGroup], list[GroupWrite]]:
        out: dict[int, RecoveredGroup] = {}
        marks: list[GroupWrite] = []
        for group in sorted(set(logs) | set(snapshots.groups())):
            log = logs.get(group) or _GroupLog()
            base = log.base_index

            def usable(meta: SnapshotMetadata, base: int | None = base) -> bool:
                return base is None or meta.index >= base

            snap = snapshots.load_latest(group, usable=usable)
            index = snap.metadata.index if snap is not None else 0
            term = snap.metadata.term if snap is not None else 0
            if not usable(SnapshotMetadata(index=index, term=term)):
                assert base is not None
                raise DurableStateError(
                    self._dir,
                    f"group {group}: its log starts at index {base + 1} but "
                    + (
                        f"the newest snapshot ends at {index}"
                        if snap is not None
                        else "there is no snapshot"
                    ),
                )
            entries, replaced = _entries_after(log, index, term)
            hs = log.hard_state
            if hs.commit < index:
                hs = msgspec.structs.replace(hs, commit=index)
            last = index + len(entries)
            if hs.commit > last:
                raise DurableStateError(
                    self._dir, f"group {group}: hard state commits {hs.commit}, log ends at {last}"
                )
            out[group] = RecoveredGroup(hard_state=hs, snapshot=snap, entries=entries)
            if not hs.is_empty():
                self._hard_states[group] = hs
            self._compacted[group] = index
            if replaced:
                mark = SnapshotMark(index=index, term=term)
                marks.append(GroupWrite(group=group, hard_state=hs, snapshot=mark))
        return out, marks

    def _open_writer(self) -> None:
        if self._file is None:
            self._rotate()

    # -- writing ------------------------------------------------------------------------------

    def save(self, writes: Sequence[GroupWrite], *, sync: bool) -> None:
        """Group commit: write every group's entries and hard state in one write.

        With `sync`, one fdatasync makes them (and every earlier unsynced save) durable
        before this returns; only then may the driver send messages that depend on them.

        Raises:
            DurableStateError: the write or the sync failed. The WAL then refuses all
                further work: after a failed fsync nothing about the file can be trusted,
                and the node must restart and recover.
        """
        self._check_usable()
        if not writes:
            if sync:
                self.sync()
            return
        for w in writes:
            self._check_write(w)
        records = self._encode_batches(writes)
        need = sum(len(r) for r in records)
        f = self._file
        assert f is not None
        rotated = bool(self._segment_batches) and f.position + need > self.segment_bytes_max
        if rotated:
            self._rotate()
            f = self._file
            assert f is not None
        parts: list[bytes | bytearray] = list(records)
        if self._pending_header is not None:
            parts.insert(0, self._pending_header)
        buf = parts[0] if len(parts) == 1 else b"".join(parts)
        try:
            f.write(buf)
        except DurableStateError as exc:
            self._failed = exc
            raise
        self._pending_header = None
        self._unsynced = True
        seg = self._segments[-1]
        for w in writes:
            seg.note(w)
            if w.hard_state is not None:
                self._hard_states[w.group] = w.hard_state
        self._segment_batches += len(records)
        self._next_batch += len(records)
        self.stats["batches"] += len(records)
        self.stats["bytes"] += len(buf)
        if sync:
            self._sync()
        if rotated:
            self._drop_wanted = True
        self._maybe_drop()

    def _check_write(self, w: GroupWrite) -> None:
        ents = w.entries
        if ents:
            assert ents[-1].index - ents[0].index == len(ents) - 1, (
                f"group {w.group}: entries {ents[0].index}..{ents[-1].index} are not contiguous"
            )
        hs = w.hard_state
        prev = self._hard_states.get(w.group)
        if hs is not None and prev is not None:
            assert hs.term >= prev.term, f"group {w.group}: term {prev.term} -> {hs.term}"
            assert hs.commit >= prev.commit, f"group {w.group}: commit {prev.commit} -> {hs.commit}"

    def _encode_batches(self, writes: Sequence[GroupWrite]) -> list[bytearray]:
        """One BATCH record, or several consecutive ones if it exceeds the record size limit."""
        buf = bytearray(HEADER_BYTES)
        _encoder.encode_into(Batch(seq=self._next_batch, writes=list(writes)), buf, HEADER_BYTES)
        if len(buf) - HEADER_BYTES <= _batch_bytes_max():
            seal_record(buf, 0, RecordType.BATCH)
            return [buf]
        # Rare: a batch too large for one record. Split it into consecutive batches; each is
        # atomic and a crash keeps a prefix of them, which is all Raft needs (entries before
        # the hard state that commits them: the split keeps that order).
        out: list[bytearray] = []
        for i, chunk in enumerate(_split(list(writes), _batch_bytes_max())):
            payload = _encoder.encode(Batch(seq=self._next_batch + i, writes=chunk))
            out.append(bytearray(encode_record(RecordType.BATCH, payload)))
        return out

    def _sync(self) -> None:
        f = self._file
        assert f is not None
        try:
            f.sync()
        except DurableStateError as exc:
            self._failed = exc
            raise
        self._unsynced = False
        if self._pending_header is None:
            self._header_synced = True
        self.stats["syncs"] += 1

    def sync(self) -> None:
        """Make every saved batch durable (a no-op if they already are)."""
        self._check_usable()
        if self._unsynced:
            self._sync()
            self._maybe_drop()

    def _maybe_drop(self) -> None:
        if self._drop_wanted:
            self._drop_covered()

    def _rotate(self) -> None:
        """Close the current segment (durably) and start the next one."""
        if self._file is not None:
            if self._unsynced:
                self._sync()
            self._file.close()
            self._file = None
        number = self._segments[-1].number + 1 if self._segments else 1
        path = f"{self._dir}/{_segment_name(number)}"
        try:
            f = self._fs.create(path)
            f.preallocate(self.segment_bytes_max)
            # The name must be durable before any acknowledged data depends on the file.
            self._fs.fsync_dir(self._dir)
        except DurableStateError as exc:
            self._failed = exc
            raise
        header = SegmentHeader(
            version=_FORMAT_VERSION,
            segment=number,
            first_batch=self._next_batch,
            hard_states=[
                GroupWrite(group=g, hard_state=hs) for g, hs in sorted(self._hard_states.items())
            ],
        )
        self._pending_header = encode_record(RecordType.SEGMENT_HEADER, _encoder.encode(header))
        self._header_synced = False
        self._file = f
        self._segments.append(_Segment(number, path))
        self._segment_batches = 0
        self.stats["rotations"] += 1

    # -- compaction ---------------------------------------------------------------------------

    def compact(self, group: int, index: int) -> list[str]:
        """Entries <= `index` of `group` are covered by a durable snapshot; drop what we can.

        Deletes closed segments, oldest first, while all their entries are covered for every
        group (see the module docstring: a lagging group pins its oldest segment and all
        later ones). Returns the removed paths.
        """
        self._check_usable()
        if index > self._compacted.get(group, 0):
            self._compacted[group] = index
        return self._drop_covered()

    def _drop_covered(self) -> list[str]:
        """Delete the oldest closed segments while every group's entries in them are covered.

        Hard states need no coverage: each segment's header repeats them all. But the current
        segment's header may not be durable yet, so the segment before it stays until it is
        (the next sync); older ones are followed by a closed, synced segment's header.
        """
        removed: list[str] = []
        self._drop_wanted = False
        while len(self._segments) > 1:
            seg = self._segments[0]
            if any(mx > self._compacted.get(g, 0) for g, mx in seg.max_index.items()):
                break
            if len(self._segments) == 2 and not self._header_synced:
                self._drop_wanted = True  # retried after the next sync
                break
            self._fs.remove(seg.path)
            self._fs.fsync_dir(self._dir)
            self._segments.pop(0)
            removed.append(seg.path)
            self.stats["removed"] += 1
        return removed

    # -- inspection ---------------------------------------------------------------------------

    @property
    def dir(self) -> str:
        return self._dir

    def segment_paths(self) -> list[str]:
        """Live segments, oldest first (the last one is being written)."""
        return [s.path for s in self._segments]

    def pinned_by(self) -> dict[int, int]:
        """Per group, the highest entry index still held in the oldest live segment."""
        return dict(self._segments[0].max_index) if self._segments else {}

    def pinning(self) -> dict[int, int]:
        """The groups whose entries not yet covered by a snapshot keep the oldest closed
        segment alive, with the highest index each has there."""
        if len(self._segments) < 2:
            return {}
        compacted = self._compacted
        return {g: mx for g, mx in self.pinned_by().items() if mx > compacted.get(g, 0)}

    def close(self) -> None:
        """Sync and close; the WAL cannot be used afterwards."""
        if self._file is not None and self._failed is None:
            if self._unsynced:
                self._sync()
            self._file.close()
        self._file = None
        self._failed = self._failed or DurableStateError(self._dir, "the WAL is closed")

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise DurableStateError(self._dir, f"unusable after an earlier failure: {self._failed}")


def _batch_bytes_max() -> int:
    return _BATCH_BYTES_MAX


_BATCH_BYTES_MAX = RECORD_BYTES_MAX  # tests lower it to exercise splitting


def _split(writes: list[GroupWrite], limit: int) -> list[list[GroupWrite]]:
    """Cut writes into chunks that each encode to at most `limit` bytes.

    A group's write too large on its own becomes several: its snapshot mark first, then runs
    of entries, the hard state with the last run (the order `GroupWrite` applies them in).
    An entry larger than a record is a caller error (Raft's `max_size_per_msg` bounds them).
    """
    budget = limit // 2  # leaves room for msgpack framing around the pieces
    pieces: list[GroupWrite] = []
    for w in writes:
        if len(w.entries) <= 1 or len(_encoder.encode(w)) <= budget:
            pieces.append(w)
            continue
        if w.snapshot is not None:
            pieces.append(GroupWrite(group=w.group, snapshot=w.snapshot))
        run: list[Entry] = []
        run_bytes = 0
        for e in w.entries:
            size = len(_encoder.encode(e))
            if run and run_bytes + size > budget:
                pieces.append(GroupWrite(group=w.group, entries=run))
                run, run_bytes = [], 0
            run.append(e)
            run_bytes += size
        pieces.append(GroupWrite(group=w.group, entries=run, hard_state=w.hard_state))
    chunks: list[list[GroupWrite]] = []
    current: list[GroupWrite] = []
    current_bytes = 0
    for p in pieces:
        size = len(_encoder.encode(p))
        if current and current_bytes + size > budget:
            chunks.append(current)
            current, current_bytes = [], 0
        current.append(p)
        current_bytes += size
    chunks.append(current)
    return chunks


def _decode(decode: Callable[[memoryview], _T], payload: memoryview, path: str, offset: int) -> _T:
    """Decode a payload that passed its CRC; a failure is still corruption (or a bug)."""
    try:
        return decode(payload)
    except msgspec.DecodeError as exc:
        raise CorruptRecordError(path, offset, f"undecodable payload: {exc}") from exc


def _entries_after(log: _GroupLog, index: int, term: int) -> tuple[list[Entry], bool]:
    """The log's entries after a snapshot at (index, term), reconciled as Raft §7 says.

    Also returns whether the snapshot replaced the log (it conflicts with it or lies beyond
    it), in which case the WAL must record that before anything is appended after it.
    """
    base = log.base_index
    if base is None:
        return [], False  # no entries were ever written: the first append sets the base
    assert index >= base, f"snapshot {index} before the log's base {base} (checked by caller)"
    if index == base:
        if log.base_term is not None and log.base_term != term:
            return [], True
        return log.entries, False
    pos = index - base - 1  # position of entry `index`
    if pos >= len(log.entries):
        return [], True  # the snapshot is ahead of the whole log
    if log.entries[pos].term != term:
        return [], True  # the log conflicts with the snapshot: the snapshot wins
    return log.entries[pos + 1 :], False
