"""The partition state machine: dense offsets, idempotent producers, epochs, snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorumdb.kafka.partition import (
    FillError,
    MissingDataError,
    PartitionStateMachine,
    ProduceEntry,
    ProduceResult,
    encode_produce_entry,
)
from quorumdb.kafka.protocol.errors import ErrorCode
from quorumdb.kafka.protocol.records import (
    Record,
    TimestampType,
    build_batch,
    decode_records,
    iter_batches,
)
from quorumdb.storage.fs import OsFileSystem
from quorumdb.storage.partition_log import PartitionLog


def _sm(tmp: Path, name: str = "p0") -> PartitionStateMachine:
    return PartitionStateMachine(
        PartitionLog(OsFileSystem(), str(tmp / name), segment_bytes_max=2000)
    )


def _batch(n: int, *, pid: int = -1, epoch: int = -1, seq: int = -1, tag: str = "v") -> bytes:
    return build_batch(
        [Record(value=f"{tag}{i}".encode(), timestamp_ms=1000 + i) for i in range(n)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )


class Applier:
    def __init__(self, sm: PartitionStateMachine) -> None:
        self.sm = sm
        self.index = 0

    def produce(self, records: bytes, *, epoch: int = 1, lat: bool = False) -> ProduceResult:
        self.index += 1
        entry = ProduceEntry(
            client=1,
            seq=self.index,
            leader_epoch=epoch,
            append_time_ms=99_000,
            log_append_time=lat,
            records=records,
        )
        out = self.sm.apply_entry(self.index, encode_produce_entry(entry))
        assert out is not None
        assert out[0] == (1, self.index)
        result: ProduceResult = out[1]
        return result


def _values(sm: PartitionStateMachine, offset: int = 0) -> list[tuple[int, bytes | None]]:
    data = sm.read(offset, 1 << 20)
    out = []
    for h in iter_batches(data):
        for r in decode_records(data, h):
            out.append((r.offset, r.value))
    return out


def test_offsets_are_dense_and_noops_take_none(tmp_path: Path) -> None:
    sm = _sm(tmp_path)
    a = Applier(sm)
    assert a.produce(_batch(3)).base_offset == 0
    a.index += 1
    sm.skip(a.index)  # a Raft no-op / conf change: no offset
    assert a.produce(_batch(2)).base_offset == 3
    assert sm.high_watermark == 5
    assert [o for o, _ in _values(sm)] == [0, 1, 2, 3, 4]


def test_idempotent_retry_is_answered_with_the_original_offset(tmp_path: Path) -> None:
    sm = _sm(tmp_path)
    a = Applier(sm)
    first = a.produce(_batch(2, pid=7, epoch=0, seq=0, tag="a"))
    second = a.produce(_batch(3, pid=7, epoch=0, seq=2, tag="b"))
    again = a.produce(_batch(2, pid=7, epoch=0, seq=0, tag="a"))  # retried after a timeout
    assert (first.base_offset, second.base_offset, again.base_offset) == (0, 2, 0)
    assert again.error == ErrorCode.NONE
    assert sm.high_watermark == 5  # written once


def test_sequence_gaps_and_fenced_epochs_are_refused(tmp_path: Path) -> None:
    sm = _sm(tmp_path)
    a = Applier(sm)
    a.produce(_batch(1, pid=7, epoch=1, seq=0))
    assert (
        a.produce(_batch(1, pid=7, epoch=1, seq=5)).error == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    )
    assert a.produce(_batch(1, pid=7, epoch=0, seq=1)).error == ErrorCode.INVALID_PRODUCER_EPOCH
    assert (
        a.produce(_batch(1, pid=8, epoch=0, seq=3)).error == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    )
    assert a.produce(_batch(1, pid=7, epoch=2, seq=0)).error == ErrorCode.NONE  # new epoch
    assert sm.high_watermark == 2


def test_log_append_time_and_leader_epochs(tmp_path: Path) -> None:
    sm = _sm(tmp_path)
    a = Applier(sm)
    r = a.produce(_batch(2), epoch=3, lat=True)
    assert r.log_append_time_ms == 99_000
    a.produce(_batch(2), epoch=5)
    data = sm.read(0, 1 << 20)
    headers = list(iter_batches(data))  # CRCs still valid after patching
    assert headers[0].timestamp_type == TimestampType.LOG_APPEND_TIME
    assert headers[0].max_timestamp == 99_000
    assert [h.partition_leader_epoch for h in headers] == [3, 5]
    assert sm.end_offset_for_epoch(3) == (3, 2)
    assert sm.end_offset_for_epoch(4) == (3, 2)
    assert sm.end_offset_for_epoch(5) == (5, 4)
    assert sm.end_offset_for_epoch(1) == (-1, -1)


def _catch_up(replica: PartitionStateMachine, source: PartitionStateMachine, chunk: int) -> int:
    """Fill every missing range of `replica` from `source`, `chunk` bytes a fetch, as the
    host does; return how many fetches it took."""
    fetches = 0
    while replica.missing:
        lo, hi = replica.missing[0]
        data = source.log.read(lo, chunk, hi)
        assert data, f"source has nothing at {lo}"
        replica.fill(data, lo)
        fetches += 1
    return fetches


def test_snapshot_is_a_manifest_of_constant_size(tmp_path: Path) -> None:
    sm = _sm(tmp_path)
    a = Applier(sm)
    for i in range(2000):
        a.produce(_batch(2, pid=9, epoch=0, seq=2 * i, tag="y" * 100))
    assert sm.log.size_bytes > 400_000
    assert len(sm.snapshot()) < 200  # the data stays in the segments


def test_snapshot_restores_on_another_replica_and_after_a_restart(tmp_path: Path) -> None:
    sm = _sm(tmp_path)
    a = Applier(sm)
    for i in range(30):
        a.produce(_batch(2, pid=9, epoch=0, seq=2 * i, tag=f"x{i}-"))
    image = sm.snapshot()
    # Another replica installs it from scratch: it knows where the log ends, not the data,
    # which it fetches from the source's segments; appends continue meanwhile.
    other = _sm(tmp_path, "p0-replica")
    other.restore(image)
    assert other.missing == [(0, 60)]
    assert other.high_watermark == 60
    with pytest.raises(MissingDataError):
        other.read(10, 1 << 20)
    b = Applier(other)
    b.index = other.applied
    assert b.produce(_batch(1, tag="late")).base_offset == 60
    assert _catch_up(other, sm, 500) > 1
    assert other.missing == []
    assert _values(other)[:60] == _values(sm)
    assert _values(other)[60:] == [(60, b"late0")]
    assert other.applied == sm.applied + 1
    # The same node restarts with appends after the snapshot: they are dropped (Raft replays).
    a.produce(_batch(1, pid=9, epoch=0, seq=60))
    restarted = _sm(tmp_path)
    restarted.restore(image)
    assert restarted.high_watermark == 60
    assert restarted.missing == []
    # ...and the producer table came back too: the replayed retry is recognised.
    b = Applier(restarted)
    b.index = restarted.applied
    assert b.produce(_batch(2, pid=9, epoch=0, seq=58, tag="x29-")).base_offset == 58


def test_catching_up_resumes_after_a_restart_and_keeps_what_it_had(tmp_path: Path) -> None:
    leader = _sm(tmp_path)
    a = Applier(leader)
    for i in range(10):
        a.produce(_batch(2, tag=f"a{i}-"))
    follower = _sm(tmp_path, "f")
    follower.restore(leader.snapshot())
    _catch_up(follower, leader, 10_000)  # the follower has offsets 0..19
    for i in range(40):
        a.produce(_batch(2, tag=f"b{i}-"))
    image = leader.snapshot()  # the follower was down meanwhile: it gets this manifest
    follower.restore(image)
    assert follower.missing == [(20, 100)]
    lo, hi = follower.missing[0]
    follower.fill(leader.log.read(lo, 300, hi), lo)  # part of it, then a crash
    restarted = _sm(tmp_path, "f")
    restarted.restore(image)
    assert restarted.missing and restarted.missing[0][0] > 20
    _catch_up(restarted, leader, 700)
    assert _values(restarted) == _values(leader)


def test_fill_refuses_batches_that_do_not_fit_the_hole(tmp_path: Path) -> None:
    leader = _sm(tmp_path)
    a = Applier(leader)
    for _ in range(10):
        a.produce(_batch(2))
    follower = _sm(tmp_path, "f")
    follower.restore(leader.snapshot())
    with pytest.raises(FillError):
        follower.fill(leader.log.read(2, 1 << 20, 20), 0)  # starts at 2, not 0
    with pytest.raises(FillError):
        follower.fill(leader.log.read(0, 1 << 20, 20)[:-5], 0)  # a truncated batch
    assert follower.missing == [(0, 20)]


def test_peers_that_deleted_the_start_end_the_search(tmp_path: Path) -> None:
    leader = _sm(tmp_path)
    a = Applier(leader)
    for _ in range(10):
        a.produce(_batch(2))
    follower = _sm(tmp_path, "f")
    follower.restore(leader.snapshot())
    follower.give_up_below(8)
    assert follower.missing == [(8, 20)]
    assert follower.log_start_offset == 8
    _catch_up(follower, leader, 1 << 20)
    assert [o for o, _ in _values(follower, 8)] == list(range(8, 20))
