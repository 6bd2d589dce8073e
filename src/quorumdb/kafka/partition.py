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
from quorumdb.storage.partition_log import PartitionLog

__all__ = [
    "PRODUCER_WINDOW",
    "PartitionStateMachine",
    "ProduceEntry",
    "ProduceResult",
    "decode_produce_entry",
    "encode_produce_entry",
]

PRODUCER_WINDOW = 5  # batches in flight per producer that Kafka deduplicates
_INT32_MAX = (1 << 31) - 1


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


class _Image(msgspec.Struct, array_like=True):
    applied: int
    log_start_offset: int
    next_offset: int
    producers: dict[int, _Producer]
    epochs: list[tuple[int, int]]
    data: bytes


encode_produce_entry = msgspec.msgpack.Encoder().encode
decode_produce_entry = msgspec.msgpack.Decoder(ProduceEntry).decode
_encode_image = msgspec.msgpack.Encoder().encode
_decode_image = msgspec.msgpack.Decoder(_Image).decode


class PartitionStateMachine:
    """`ReplicatedStateMachine` for a partition; `log` is its on-disk batch log."""

    __slots__ = ("applied", "epochs", "log", "producers")

    def __init__(self, log: PartitionLog) -> None:
        self.log = log
        self.applied = 0
        self.producers: dict[int, _Producer] = {}
        self.epochs: list[tuple[int, int]] = []  # (leader epoch, its first offset), ascending

    @property
    def high_watermark(self) -> int:
        return self.log.next_offset

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

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

    def read(self, offset: int, max_bytes: int) -> bytes:
        """Committed batches from `offset` (the batch containing it), at most ~`max_bytes`."""
        return self.log.read(offset, max_bytes, self.high_watermark)

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
        log = self.log
        log.flush()
        data = log.read(log.log_start_offset, 1 << 62, log.next_offset)
        return _encode_image(
            _Image(
                applied=self.applied,
                log_start_offset=log.log_start_offset,
                next_offset=log.next_offset,
                producers=self.producers,
                epochs=self.epochs,
                data=data,
            )
        )

    def restore(self, image: bytes) -> None:
        if not image:
            self.log.reset(0)
            self.applied = 0
            self.producers = {}
            self.epochs = []
            return
        img = _decode_image(image)
        log = self.log
        if log.log_start_offset <= img.log_start_offset and log.next_offset >= img.next_offset:
            # Our own log already holds everything the image does (a restart): keep the files,
            # only drop what was appended after the snapshot (the Raft log replays it).
            log.truncate_to(img.next_offset)
        else:
            log.reset(img.log_start_offset)
            for h in iter_batches(img.data, verify_crc=False):
                log.append(memoryview(img.data)[h.position : h.end], h.base_offset)
        assert log.next_offset == img.next_offset, (
            f"restored log ends at {log.next_offset}, image says {img.next_offset}"
        )
        self.applied = img.applied
        self.producers = dict(img.producers)
        self.epochs = list(img.epochs)
