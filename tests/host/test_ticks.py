"""The host counts Raft ticks by its monotonic clock, not by the driver's calls.

Found by the simulator with pauses (seeds 569, 574, 605 of the first host swarm): a leader
paused for seconds (SIGSTOP, a GC stall) handled the read requests that waited in its sockets
before its tick timer fired, still counting its lease from before the pause, and served a
stale lease read while another node had been elected meanwhile. Now every round first
counts the ticks the clock says have passed, so the core sees the pause before anything else.
"""

from __future__ import annotations

from pathlib import Path

from quorumdb.host.config import Member, NodeConfig
from quorumdb.host.node_host import NodeHost
from quorumdb.kv.node_kv import NodeKV
from quorumdb.raft import MessageType
from tests.host.fake_env import FakeEnv, fake_env
from tests.host.memory_log import MemoryNodeLog


def _host(tmp_path: Path) -> tuple[NodeHost, FakeEnv]:
    members = {
        i: Member(node_id=i, raft=("127.0.0.1", 9100 + i), http=("127.0.0.1", 9200 + i))
        for i in (1, 2, 3)
    }
    fake = fake_env({i: m.raft for i, m in members.items() if i != 1})
    config = NodeConfig(node_id=1, data_dir=tmp_path, members=members, shards=1, tick_ms=10)
    return NodeKV(config, MemoryNodeLog(), fake.env()).host, fake


def _campaigned(fake: FakeEnv) -> bool:
    kinds = (MessageType.PRE_VOTE, MessageType.VOTE)
    return any(m.type in kinds for _, m in fake.network.sent)


def _pump(host: NodeHost, fake: FakeEnv) -> None:
    for _ in range(5):
        host.pump()
        fake.syncer.run_all()


def test_calls_without_time_passing_deliver_no_ticks(tmp_path: Path) -> None:
    host, fake = _host(tmp_path)
    for _ in range(1_000):  # a driver calling far too often: the clock has not moved
        host.tick()
        _pump(host, fake)
    assert not _campaigned(fake)


def test_time_that_passed_without_calls_is_counted_by_the_next_round(tmp_path: Path) -> None:
    host, fake = _host(tmp_path)
    _pump(host, fake)
    assert not _campaigned(fake)
    fake.clock.advance(5.0)  # a pause: no tick call at all, then a message or request arrives
    _pump(host, fake)
    assert _campaigned(fake), "500 ticks passed: election timeouts elapsed, the node campaigned"
