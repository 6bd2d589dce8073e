"""The Kafka backend's sans-IO calls answer through `Pending`s with no event loop running:
what the simulator drives (`sim.kafka_workload`) and the async methods wrap."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorumdb.host.config import Member, NodeConfig
from quorumdb.host.node_host import CONTROLLER_GROUP, NodeHost
from quorumdb.kafka.backend import KafkaBackend
from quorumdb.kafka.protocol.errors import ErrorCode
from quorumdb.kafka.protocol.records import Record, build_batch, decode_records, iter_batches
from quorumdb.kv.commands import Outcome
from quorumdb.kv.node_kv import NodeKV
from quorumdb.kv.node_service import NodeService
from quorumdb.raft import PlantedBug
from tests.host.fake_env import FakeEnv, fake_env
from tests.host.memory_log import MemoryNodeLog


def _node(
    tmp_path: Path, bugs: frozenset[PlantedBug] = frozenset()
) -> tuple[FakeEnv, NodeHost, KafkaBackend]:
    member = Member(node_id=1, raft=("127.0.0.1", 1), http=("127.0.0.1", 2))
    config = NodeConfig(node_id=1, data_dir=tmp_path, members={1: member})
    fe = fake_env()
    host = NodeKV(config, MemoryNodeLog(), fe.env(), planted_bugs=bugs).host
    backend = KafkaBackend(host, NodeService(host))
    _run(fe, host, until=lambda: host.groups[CONTROLLER_GROUP].raw.is_leader, ticks=True)
    return fe, host, backend


def _run(fe: FakeEnv, host: NodeHost, *, until: object, ticks: bool = False) -> None:
    """Drive the host (rounds, WAL writes, ticks if asked) until `until()` holds."""
    assert callable(until)
    for _ in range(500):
        if until():
            return
        if ticks:
            fe.clock.advance(host.config.tick_ms / 1000)
            host.tick()
        host.pump()
        fe.syncer.run_all()
        fe.timers.fire_due()
    pytest.fail("the host did not get there")


def _topic(fe: FakeEnv, host: NodeHost, b: KafkaBackend) -> int:
    created = b.submit_create_topic("t", 1, 1, {})
    _run(fe, host, until=created.done)
    assert created.result().outcome == Outcome.OK
    group = b.topics()["t"].partitions[0].group
    _run(fe, host, until=lambda: host.groups[group].raw.is_leader, ticks=True)
    return group


def _batch(*values: str, seq: int = 0) -> bytes:
    records = [Record(value=v.encode()) for v in values]
    return build_batch(records, producer_id=7, producer_epoch=0, base_sequence=seq)


def _values(data: bytes) -> list[tuple[int, str]]:
    out = []
    for h in iter_batches(data):
        out += [(r.offset, (r.value or b"").decode()) for r in decode_records(data, h)]
    return out


def test_produce_and_read_without_an_event_loop(tmp_path: Path) -> None:
    fe, host, b = _node(tmp_path)
    group = _topic(fe, host, b)
    p = b.submit_produce(group, _batch("a", "b"), acks=-1, timeout_ms=1000, log_append_time=False)
    _run(fe, host, until=p.done)
    assert p.result().error == ErrorCode.NONE and p.result().base_offset == 0
    # A retry of the same batch (same producer id and sequence) is answered with its offset.
    again = b.submit_produce(
        group, _batch("a", "b"), acks=-1, timeout_ms=1000, log_append_time=False
    )
    _run(fe, host, until=again.done)
    assert again.result().base_offset == 0
    assert _values(b.read(group, 0, 1 << 20)) == [(0, "a"), (1, "b")]


def test_a_produce_not_committed_in_time_times_out(tmp_path: Path) -> None:
    fe, host, b = _node(tmp_path)
    group = _topic(fe, host, b)
    p = b.submit_produce(group, _batch("a"), acks=-1, timeout_ms=50, log_append_time=False)
    host.pump()  # proposed; its WAL write never completes
    fe.clock.advance(0.06)
    fe.timers.fire_due()
    assert p.done() and isinstance(p.exception(), TimeoutError)
    with pytest.raises(LookupError):
        b.submit_produce(group + 1, _batch("b"), acks=-1, timeout_ms=50, log_append_time=False)


@pytest.mark.parametrize("planted", [False, True])
def test_records_above_the_commit_index_are_served_only_with_the_planted_bug(
    tmp_path: Path, planted: bool
) -> None:
    bugs = frozenset({PlantedBug.KAFKA_ABOVE_COMMIT}) if planted else frozenset()
    fe, host, b = _node(tmp_path, bugs)
    group = _topic(fe, host, b)
    b.submit_produce(group, _batch("a"), acks=-1, timeout_ms=1000, log_append_time=False)
    host.pump()  # in the leader's log, not yet durable, let alone committed
    g = host.groups[group]
    assert g.sm.applied < g.raw.raft.raft_log.last_index()
    view = b.partition(b.topics()["t"], 0)
    assert view is not None and view.high_watermark == (1 if planted else 0)
    assert _values(b.read(group, 0, 1 << 20)) == ([(0, "a")] if planted else [])
