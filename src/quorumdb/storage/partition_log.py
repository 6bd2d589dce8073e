"""One partition's log of record batches on disk: segments, a sparse offset index, a time index.

Theory of operation. Batches are stored exactly as the producer sent them (v2 record batches,
compressed or not) with only the base offset patched in, so a fetch serves a byte slice of a
segment file without decoding or re-encoding anything (Kafka's zero-copy design). A segment
`<base>.log` holds consecutive batches; beside it, in memory, a sparse index maps offsets to
file positions (one entry per `index_interval_bytes` of data) and a time index maps the
largest timestamp seen to an offset, for ListOffsets by time. Indexes are rebuilt on open by
scanning batch headers (cheap: 61 bytes per batch), so they need no durability of their own.

This log is the partition's data; the Raft log of the partition's group carries the entries
applied since the group's last snapshot, and a snapshot (`kafka.partition`) records only
where the log ends, after fsyncing it. After a crash, `truncate_to(next_offset)` drops what
was appended after that snapshot, and the Raft log replays it.

Holes. A replica that installs a leader's snapshot learns where the log ends without having
the data: `skip_to` lets appends continue at the snapshot's end while the range below stays
missing, and `fill` writes fetched batches into that hole (each fill is fsynced, so catching
up resumes where it stopped after a crash). A hole is the space between two segments, or
before the first one; `holes` lists them and reads never cross one.

Offsets are dense: every batch occupies [base_offset, base_offset + last_offset_delta].
"""

from __future__ import annotations

import bisect
import itertools
import struct
from dataclasses import dataclass, field

from quorumdb.storage.fs import FileSystem, WritableFile

__all__ = ["BATCH_HEADER_BYTES", "FillError", "PartitionLog", "SegmentInfo", "iter_batch_spans"]

# baseOffset int64, batchLength int32, partitionLeaderEpoch int32, magic int8, crc uint32,
# attributes int16, lastOffsetDelta int32, baseTimestamp int64, maxTimestamp int64, ...
_HEAD = struct.Struct(">qiibIhiqq")
BATCH_HEADER_BYTES = 61
_LOG_OVERHEAD = 12  # baseOffset + batchLength precede the part batchLength counts


class FillError(ValueError):
    """Fetched batches that do not fit the hole they were meant for (checked before writing)."""


def iter_batch_spans(data: bytes | memoryview) -> list[tuple[int, int, int, int]]:
    """(position, end, base offset, last offset) of each whole v2 batch in `data`.

    Raises FillError on a truncated or non-v2 batch."""
    out = []
    pos = 0
    n = len(data)
    while pos < n:
        if n - pos < BATCH_HEADER_BYTES:
            raise FillError(f"truncated batch header at byte {pos}")
        base, length, _e, magic, _c, _a, delta, _bt, _mt = _HEAD.unpack_from(data, pos)
        end = pos + _LOG_OVERHEAD + length
        if magic != 2 or length < BATCH_HEADER_BYTES - _LOG_OVERHEAD or end > n or delta < 0:
            raise FillError(f"malformed batch at byte {pos}")
        out.append((pos, end, base, base + delta))
        pos = end
    return out


@dataclass(slots=True)
class SegmentInfo:
    base_offset: int
    path: str
    size: int = 0
    next_offset: int = 0
    max_timestamp: int = -1
    index_offsets: list[int] = field(default_factory=list)
    index_positions: list[int] = field(default_factory=list)
    time_max: list[int] = field(default_factory=list)  # running max timestamp per index entry
    last_indexed_position: int = -(1 << 62)


class PartitionLog:
    """Append-only batches with dense offsets; not thread-safe (the host's loop owns it)."""

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        *,
        segment_bytes_max: int = 64 << 20,
        index_interval_bytes: int = 4096,
    ) -> None:
        self.fs = fs
        self.dir = directory
        self.segment_bytes_max = segment_bytes_max
        self.index_interval_bytes = index_interval_bytes
        self.segments: list[SegmentInfo] = []
        self._file: WritableFile | None = None
        self._empty_start = 0
        fs.make_dirs(directory)
        self._open_existing()

    # -- opening -----------------------------------------------------------------------------

    def _open_existing(self) -> None:
        names = [n for n in self.fs.list_dir(self.dir) if n.endswith(".log")]
        for name in sorted(names, key=lambda n: int(n[: -len(".log")])):
            base = int(name[: -len(".log")])
            seg = SegmentInfo(base_offset=base, path=f"{self.dir}/{name}", next_offset=base)
            self._scan(seg)
            self.segments.append(seg)

    def _scan(self, seg: SegmentInfo) -> None:
        """Rebuild a segment's indexes; drop a partial batch at its end (a torn append)."""
        data = self.fs.read(seg.path)
        pos = 0
        n = len(data)
        while n - pos >= BATCH_HEADER_BYTES:
            base, length, _epoch, magic, _crc, _attrs, delta, _bt, max_ts = _HEAD.unpack_from(
                data, pos
            )
            end = pos + _LOG_OVERHEAD + length
            if magic != 2 or length < BATCH_HEADER_BYTES - _LOG_OVERHEAD or end > n:
                break
            self._index(seg, base, pos, max_ts)
            seg.next_offset = base + delta + 1
            pos = end
        if pos < n:
            self.fs.truncate(seg.path, pos)
        seg.size = pos

    def _index(self, seg: SegmentInfo, base: int, pos: int, max_ts: int) -> None:
        seg.max_timestamp = max(seg.max_timestamp, max_ts)
        if pos - seg.last_indexed_position >= self.index_interval_bytes or not seg.index_offsets:
            seg.index_offsets.append(base)
            seg.index_positions.append(pos)
            seg.time_max.append(seg.max_timestamp)
            seg.last_indexed_position = pos
        elif seg.time_max:
            seg.time_max[-1] = seg.max_timestamp

    # -- properties --------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self.segments[0].base_offset if self.segments else self._empty_start

    @property
    def next_offset(self) -> int:
        return self.segments[-1].next_offset if self.segments else self._empty_start

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    # -- writing -----------------------------------------------------------------------------

    def append(self, batch: bytes | bytearray | memoryview, base_offset: int) -> None:
        """Append one batch whose baseOffset is already `base_offset` (== next_offset)."""
        assert base_offset == self.next_offset, (
            f"append at {base_offset}, log ends at {self.next_offset}"
        )
        _, length, _e, magic, _c, _a, delta, _bt, max_ts = _HEAD.unpack_from(batch, 0)
        assert magic == 2 and _LOG_OVERHEAD + length == len(batch), (
            "malformed batch reached the log"
        )
        seg = self.segments[-1] if self.segments else None
        if seg is None or (seg.size + len(batch) > self.segment_bytes_max and seg.size > 0):
            seg = self._roll(base_offset)
        self._writer(seg).write(batch)
        self._index(seg, base_offset, seg.size, max_ts)
        seg.size += len(batch)
        seg.next_offset = base_offset + delta + 1

    def _roll(self, base_offset: int) -> SegmentInfo:
        if self._file is not None:
            self._file.sync()  # a closed segment is never written again: make it durable now
        self._close_writer()
        path = f"{self.dir}/{base_offset:020d}.log"
        self._file = self.fs.create(path)
        self.fs.fsync_dir(self.dir)
        seg = SegmentInfo(base_offset=base_offset, path=path, next_offset=base_offset)
        self.segments.append(seg)
        return seg

    def _writer(self, seg: SegmentInfo) -> WritableFile:
        if self._file is None:
            self._file = self.fs.open_append(seg.path, position=seg.size)
        return self._file

    def _close_writer(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def flush(self) -> None:
        """fsync the active segment (older ones were synced when they rolled)."""
        if self._file is not None:
            self._file.sync()

    def close(self) -> None:
        self._close_writer()

    def reset(self, start_offset: int) -> None:
        """Drop everything; the next append goes at `start_offset` (snapshot install)."""
        self._close_writer()
        for seg in self.segments:
            self.fs.remove(seg.path)
        self.fs.fsync_dir(self.dir)
        self.segments = []
        self._empty_start = start_offset

    def truncate_to(self, offset: int) -> None:
        """Drop every batch at or after `offset` (which must be a batch boundary, or in a
        hole or past the end: then nothing at or after it is left, and `next_offset` may be
        below `offset`; `skip_to` moves it)."""
        self._close_writer()
        removed = False
        while len(self.segments) > 1 and self.segments[-1].base_offset > offset:
            self.fs.remove(self.segments.pop().path)
            removed = True
        if self.segments and self.segments[-1].base_offset > offset:
            self.fs.remove(self.segments.pop().path)
            removed = True
        if removed:
            self.fs.fsync_dir(self.dir)
        if not self.segments:
            self._empty_start = offset
            return
        seg = self.segments[-1]
        if seg.next_offset <= offset:
            return
        # An emptied segment whose base is `offset` stays: it marks where appends continue.
        pos = self._position(seg, offset, exact=True)
        self.fs.truncate(seg.path, pos)
        fresh = SegmentInfo(base_offset=seg.base_offset, path=seg.path, next_offset=seg.base_offset)
        self._scan(fresh)
        self.segments[-1] = fresh

    # -- holes -------------------------------------------------------------------------------

    def skip_to(self, offset: int) -> None:
        """Let the next append go at `offset`, leaving [next_offset, offset) a hole to fill.

        Durable at once: an empty segment `<offset>.log` marks the new end."""
        assert offset >= self.next_offset, f"skip back from {self.next_offset} to {offset}"
        if offset == self.next_offset and self.segments:
            return
        self._roll(offset)

    def holes(self) -> list[tuple[int, int]]:
        """The missing ranges [start, end) between segments, lowest first."""
        segs = self.segments
        return [
            (a.next_offset, b.base_offset)
            for a, b in itertools.pairwise(segs)
            if a.next_offset < b.base_offset
        ]

    def drop_below(self, offset: int) -> int:
        """Delete the segments that end at or before `offset` (never the last one, which
        marks the end); return how many went."""
        n = 0
        while len(self.segments) > 1 and self.segments[0].next_offset <= offset:
            self.fs.remove(self.segments.pop(0).path)
            n += 1
        if n:
            self.fs.fsync_dir(self.dir)
        return n

    def fill(self, data: bytes | memoryview, base_offset: int) -> int:
        """Write fetched whole batches, the first at `base_offset`, into the hole there;
        fsync them; return the offset after the last one.

        Raises FillError, before writing anything, if `data` is not consecutive batches
        starting at `base_offset` that end below the segment after the hole.
        """
        spans = iter_batch_spans(data)
        if not spans:
            raise FillError("no batches to fill with")
        expect = base_offset
        for _pos, _end, base, last in spans:
            if base != expect:
                raise FillError(f"batch at offset {base}, expected {expect}")
            expect = last + 1
        segs = self.segments
        i = bisect.bisect_right([s.base_offset for s in segs], base_offset)
        prev = segs[i - 1] if i > 0 else None
        if i >= len(segs) or (prev is not None and prev.next_offset > base_offset):
            raise FillError(f"offset {base_offset} is not in a hole")
        if expect > segs[i].base_offset:
            raise FillError(f"batches run to {expect}, past the hole's end {segs[i].base_offset}")
        if (
            prev is not None
            and prev.next_offset == base_offset
            # An empty segment takes the batches whatever their size, as in `append`: a new
            # segment at its base would be a second one on the same file.
            and (prev.size == 0 or prev.size + len(data) <= self.segment_bytes_max)
        ):
            seg = prev
            f = self.fs.open_append(seg.path, position=seg.size)
        else:
            seg = SegmentInfo(
                base_offset=base_offset,
                path=f"{self.dir}/{base_offset:020d}.log",
                next_offset=base_offset,
            )
            f = self.fs.create(seg.path)
            segs.insert(i, seg)
        try:
            f.write(bytes(data))
            f.sync()
        finally:
            f.close()
        if seg is not prev:
            self.fs.fsync_dir(self.dir)
        for pos, _end, base, _last in spans:
            _, _, _, _, _, _, _, _, max_ts = _HEAD.unpack_from(data, pos)
            self._index(seg, base, seg.size + pos, max_ts)
        seg.size += len(data)
        seg.next_offset = expect
        return expect

    def enforce_retention(self, now_ms: int, retention_ms: int, retention_bytes: int) -> int:
        """Delete whole closed segments older than `retention_ms` (by their newest record)
        or beyond `retention_bytes` in total (-1: no limit); return how many went.

        Each replica applies retention to its own copy, as Kafka does; the active segment
        is never deleted, so the log end (the high watermark) is untouched."""
        n = 0
        while len(self.segments) > 1:
            oldest = self.segments[0]
            too_old = retention_ms >= 0 and oldest.max_timestamp < now_ms - retention_ms
            too_big = retention_bytes >= 0 and self.size_bytes - oldest.size >= retention_bytes
            if not (too_old or too_big):
                break
            self.fs.remove(self.segments.pop(0).path)
            n += 1
        if n:
            self.fs.fsync_dir(self.dir)
        return n

    # -- reading -----------------------------------------------------------------------------

    def _segment_for(self, offset: int) -> SegmentInfo | None:
        i = bisect.bisect_right([s.base_offset for s in self.segments], offset) - 1
        return self.segments[i] if i >= 0 else None

    def _position(self, seg: SegmentInfo, offset: int, *, exact: bool = False) -> int:
        """File position of the batch containing `offset` (scan forward from the index)."""
        i = bisect.bisect_right(seg.index_offsets, offset) - 1
        pos = seg.index_positions[i] if i >= 0 else 0
        while pos < seg.size:
            head = self.fs.read_range(seg.path, pos, BATCH_HEADER_BYTES)
            base, length, _e, _m, _c, _a, delta, _bt, _mt = _HEAD.unpack_from(head, 0)
            if base + delta >= offset:
                assert not exact or base == offset, f"{offset} is inside batch {base}"
                return pos
            pos += _LOG_OVERHEAD + length
        return pos

    def read(self, offset: int, max_bytes: int, upto: int) -> bytes:
        """Whole batches from the one containing `offset`, ending before `upto`; at least one
        batch if any is below `upto` (even beyond `max_bytes`, as Kafka does), then as many as
        fit in `max_bytes`. One read per segment touched: the slice is found with the index
        and batch headers, then read in one call. Never reads across a hole (nothing for an
        offset in one)."""
        out: list[bytes] = []
        total = 0
        segs = self.segments
        if not segs or offset < segs[0].base_offset:
            return b""
        i = bisect.bisect_right([s.base_offset for s in segs], offset) - 1
        while i < len(segs) and offset < upto:
            seg = segs[i]
            start = self._position(seg, offset)
            pos = start
            stopped = False
            while pos < seg.size:
                head = self.fs.read_range(seg.path, pos, _LOG_OVERHEAD)
                base, length = struct.unpack(">qi", head)
                size = _LOG_OVERHEAD + length
                if base >= upto or (total and total + size > max_bytes):
                    stopped = True
                    break
                total += size
                pos += size
            if pos > start:
                out.append(self.fs.read_range(seg.path, start, pos - start))
            i += 1
            if stopped or i >= len(segs) or segs[i].base_offset != seg.next_offset:
                break
            offset = segs[i].base_offset
        return b"".join(out)

    def offset_for_time(self, timestamp: int) -> tuple[int, int] | None:
        """(base offset, max timestamp) of the first batch with a timestamp >= `timestamp`.

        Batch-granular, like the index: batches stay opaque (compressed ones are never
        decompressed here), so a batch whose records straddle `timestamp` answers its base
        offset. None when no batch is that late.
        """
        for seg in self.segments:
            if seg.max_timestamp < timestamp:
                continue
            k = bisect.bisect_left(seg.time_max, timestamp)
            start = seg.index_offsets[max(0, k - 1)] if seg.index_offsets else seg.base_offset
            pos = self._position(seg, start)
            while pos < seg.size:
                head = self.fs.read_range(seg.path, pos, BATCH_HEADER_BYTES)
                base, length, _e, _m, _c, _a, _d, _bt, max_ts = _HEAD.unpack_from(head, 0)
                if max_ts >= timestamp:
                    return int(base), int(max_ts)
                pos += _LOG_OVERHEAD + length
        return None
