"""One Kafka partition as a replicated state machine: offsets, idempotent producers, leader epochs.

Each Raft entry of a partition's group is a `ProduceEntry`: the record batches of one
produce request for this partition, already validated by the leader, plus what every replica
must agree on (the leader's term, which becomes the batches' partitionLeaderEpoch, and the
append time, for LogAppendTime topics). Applying it assigns dense offsets from the log's end,
patches them into the batches, and appends the bytes to the `PartitionLog`. Raft bookkeeping
(no-ops, membership) never reaches the log, so Kafka offsets stay dense; only entries that
are committed are applied, so the log's end *is* the high watermark.

Idempotent producers (KIP-98): per producer id, the epoch and the sequence ranges of its last
five batches with their offsets. A batch that repeats one of those is a retry of a batch
already written: it is answered with the original offset and not written again. A gap in
sequence numbers is OUT_OF_ORDER_SEQUENCE_NUMBER; an older epoch is INVALID_PRODUCER_EPOCH.
This table is part of the replicated state, so it survives leader failover.

Snapshots do not copy the log. The partition's data is its segment files; a snapshot is a
manifest of what is needed to resume (applied index, log start and end, producers, leader
epochs), taken after fsyncing the segments, so it costs the same at 1 MiB or 1 TiB and the
node's WAL is compacted without copying partition data. A replica that installs a leader's
manifest without the data (it was down while the leader compacted its Raft log) keeps its
own log up to where it ends, continues appending at the manifest's end, and lists what is
in between as `missing`: the host fetches those ranges from a peer's segments (`fill`),
and until then this replica answers no read of them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from quorumdb.kafka.protocol.errors import ErrorCode
from quorumdb.kafka.protocol.records import (
    iter_batches,
    patch_base_offset,
    patch_partition_leader_epoch,
    set_log_append_time,
)
from quorumdb.storage.partition_log import FillError, PartitionLog

__all__ = [
    "PRODUCER_WINDOW",
    "FillError",
    "MissingDataError",
    "PartitionStateMachine",
    "ProduceEntry",
    "ProduceResult",
    "decode_produce_entry",
    "encode_produce_entry",
]

PRODUCER_WINDOW = 5  # batches in flight per producer that Kafka deduplicates
_INT32_MAX = (1 << 31) - 1


class MissingDataError(LookupError):
    """A read of offsets this replica has not fetched yet (after installing a snapshot)."""


class ProduceEntry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    client: int
    seq: int
    leader_epoch: int
    append_time_ms: int
    log_append_time: bool
    records: bytes


class ProduceResult(msgspec.Struct, frozen=True, array_like=True, gc=False):
    error: int
    base_offset: int = -1
    log_append_time_ms: int = -1
    log_start_offset: int = 0
    message: str = ""


class _Producer(msgspec.Struct, array_like=True):
    epoch: int
    batches: list[tuple[int, int, int]]  # (first sequence, last sequence, base offset)


class _Manifest(msgspec.Struct, array_like=True, tag="partition-manifest-1"):
    applied: int
    log_start_offset: int
    next_offset: int
    producers: dict[int, _Producer]
    epochs: list[tuple[int, int]]


encode_produce_entry = msgspec.msgpack.Encoder().encode
decode_produce_entry = msgspec.msgpack.Decoder(ProduceEntry).decode
_encode_manifest = msgspec.msgpack.Encoder().encode
_decode_manifest = msgspec.msgpack.Decoder(_Manifest).decode


class PartitionStateMachine:
    """`ReplicatedStateMachine` for a partition; `log` is its on-disk batch log."""

    __slots__ = ("applied", "epochs", "log", "producers", "start")

    # Applied at the end of a round only: the Kafka backend follows every applied Ready
    # (`NodeHost.after_apply`), which mid-flight applies would bypass.
    applies_midflight = False

    def __init__(self, log: PartitionLog) -> None:
        self.log = log
        self.applied = 0
        self.producers: dict[int, _Producer] = {}
        self.epochs: list[tuple[int, int]] = []  # (leader epoch, its first offset), ascending
        # Where the log should start: below the first segment only while that is missing.
        self.start = log.log_start_offset

    @property
    def high_watermark(self) -> int:
        return self.log.next_offset

    @property
    def log_start_offset(self) -> int:
        return min(self.start, self.log.log_start_offset)

    @property
    def missing(self) -> list[tuple[int, int]]:
        """Ranges [start, end) of committed offsets this replica does not have yet."""
        holes = self.log.holes()
        first = self.log.log_start_offset
        if self.start < first:
            holes.insert(0, (self.start, first))
        return holes

    def fill(self, data: bytes | memoryview, base_offset: int) -> int:
        """Write batches fetched from a peer into the missing range at `base_offset`;
        return the offset after them. Raises `FillError` if they do not fit there."""
        return self.log.fill(data, base_offset)

    def give_up_below(self, offset: int) -> None:
        """The peers' logs start at `offset` (retention deleted the rest): stop looking
        for anything below it."""
        self.log.drop_below(offset)
        self.start = max(self.start, offset)

    def enforce_retention(self, now_ms: int, retention_ms: int, retention_bytes: int) -> int:
        """Delete old segments (`PartitionLog.enforce_retention`); the log now starts at its
        oldest segment, so anything missing before it is given up as well."""
        n = self.log.enforce_retention(now_ms, retention_ms, retention_bytes)
        if n:
            self.start = self.log.log_start_offset
        return n

    # -- ReplicatedStateMachine ---------------------------------------------------------------

    def apply_entry(self, index: int, data: bytes) -> tuple[tuple[int, int], Any] | None:
        assert index > self.applied, f"apply {index} after {self.applied}"
        self.applied = index
        entry = decode_produce_entry(data)
        return (entry.client, entry.seq), self._append(entry)

    def skip(self, index: int) -> None:
        self.applied = max(self.applied, index)

    def _append(self, entry: ProduceEntry) -> ProduceResult:
        buf = bytearray(entry.records)
        first_offset = -1
        for h in iter_batches(buf, verify_crc=False):
            error, duplicate_of = self._check_sequence(
                h.producer_id, h.producer_epoch, h.base_sequence, h.last_sequence
            )
            if error != ErrorCode.NONE:
                return ProduceResult(error=error, log_start_offset=self.log_start_offset)
            if duplicate_of is not None:
                first_offset = duplicate_of if first_offset < 0 else first_offset
                continue
            base = self.log.next_offset
            patch_base_offset(buf, h.position, base)
            patch_partition_leader_epoch(buf, h.position, entry.leader_epoch)
            if entry.log_append_time:
                set_log_append_time(buf, h.position, entry.append_time_ms)
            self.log.append(memoryview(buf)[h.position : h.end], base)
            self._note_epoch(entry.leader_epoch, base)
            self._remember(h.producer_id, h.producer_epoch, h.base_sequence, h.last_sequence, base)
            first_offset = base if first_offset < 0 else first_offset
        return ProduceResult(
            error=ErrorCode.NONE,
            base_offset=first_offset,
            log_append_time_ms=entry.append_time_ms if entry.log_append_time else -1,
            log_start_offset=self.log_start_offset,
        )

    def _check_sequence(
        self, pid: int, epoch: int, first: int, last: int
    ) -> tuple[ErrorCode, int | None]:
        if pid < 0:
            return ErrorCode.NONE, None
        st = self.producers.get(pid)
        if st is None or epoch > st.epoch:
            # A new producer (or a new epoch of one) starts its sequence at 0.
            if first != 0:
                return ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, None
            return ErrorCode.NONE, None
        if epoch < st.epoch:
            return ErrorCode.INVALID_PRODUCER_EPOCH, None
        for b_first, b_last, b_offset in st.batches:
            if b_first == first and b_last == last:
                return ErrorCode.NONE, b_offset  # a retry of a batch already written
        expected = (st.batches[-1][1] + 1) & _INT32_MAX if st.batches else 0
        if first != expected:
            return ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, None
        return ErrorCode.NONE, None

    def _remember(self, pid: int, epoch: int, first: int, last: int, offset: int) -> None:
        if pid < 0:
            return
        st = self.producers.get(pid)
        if st is None or epoch != st.epoch:
            st = self.producers[pid] = _Producer(epoch=epoch, batches=[])
        st.batches.append((first, last, offset))
        if len(st.batches) > PRODUCER_WINDOW:
            del st.batches[0]

    def _note_epoch(self, epoch: int, offset: int) -> None:
        if not self.epochs or self.epochs[-1][0] < epoch:
            self.epochs.append((epoch, offset))

    # -- reads ---------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, *, upto: int | None = None) -> bytes:
        """Committed batches from `offset` (the batch containing it), at most ~`max_bytes`,
        ending below `upto` (default: the high watermark).

        Raises `MissingDataError` for an offset in a range this replica is still fetching."""
        for lo, hi in self.missing:
            if lo <= offset < hi:
                raise MissingDataError(f"offsets {lo}..{hi - 1} are still being fetched")
        end = self.high_watermark if upto is None else min(upto, self.high_watermark)
        return self.log.read(offset, max_bytes, end)

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: (largest epoch <= `epoch`, the first offset after it)."""
        best = -1
        end = self.high_watermark
        for i, (e, start) in enumerate(self.epochs):
            if e > epoch:
                end = start
                break
            best = e
            end = self.epochs[i + 1][1] if i + 1 < len(self.epochs) else self.high_watermark
        if best < 0:
            return -1, -1
        return best, end

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The manifest (see the module docstring), once the segments are durable."""
        self.log.flush()
        return _encode_manifest(
            _Manifest(
                applied=self.applied,
                log_start_offset=self.log_start_offset,
                next_offset=self.log.next_offset,
                producers=self.producers,
                epochs=self.epochs,
            )
        )

    def restored_answer(self, key: tuple[int, int]) -> None:
        """Produce requests are not remembered by the snapshot (a manifest): a covered one
        times out and the producer retries (its sequence numbers make that safe)."""
        return None

    def restore(self, image: bytes) -> None:
        """Resume from a manifest: ours after a restart (the log holds it all, minus what
        came after it, which the Raft log replays) or a leader's (the log may end short of
        it: the rest becomes `missing`)."""
        log = self.log
        if not image:
            log.reset(0)
            self.start = 0
            self.applied = 0
            self.producers = {}
            self.epochs = []
            return
        try:
            m = _decode_manifest(image)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not a partition manifest: {exc}") from None
        log.truncate_to(m.next_offset)
        log.skip_to(m.next_offset)
        log.drop_below(m.log_start_offset)
        self.start = m.log_start_offset
        self.applied = m.applied
        self.producers = dict(m.producers)
        self.epochs = list(m.epochs)
