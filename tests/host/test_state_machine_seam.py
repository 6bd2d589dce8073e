"""The host runs any service's state machines: `host.state_machine` is the whole seam.

A node whose groups replicate a toy append-only list (no KV store anywhere) elects itself,
answers writes with the toy's results, learns members from the toy controller's records,
and recovers the toy's state from a snapshot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from quorumdb.host.config import Member, NodeConfig
from quorumdb.host.node_host import CONTROLLER_GROUP, NodeHost
from quorumdb.host.state_machine import MemberRecordObserver
from tests.host.fake_env import FakeEnv, fake_env
from tests.host.memory_log import MemoryNodeLog


class _Items:
    """Appends each entry's payload; answers request (1, index) with the list's length."""

    applies_midflight = True

    def __init__(self) -> None:
        self.applied = 0
        self.items: list[bytes] = []

    def apply_entry(self, index: int, data: bytes) -> tuple[tuple[int, int], Any] | None:
        self.applied = index
        self.items.append(data)
        return (1, int(data.split(b":")[0])), len(self.items)

    def skip(self, index: int) -> None:
        self.applied = index

    def snapshot(self) -> bytes:
        return json.dumps([self.applied, [i.decode() for i in self.items]]).encode()

    def restored_answer(self, key: tuple[int, int]) -> Any | None:
        return None

    def restore(self, image: bytes) -> None:
        if image:
            self.applied, items = json.loads(image)
            self.items = [i.encode() for i in items]


class _Controller(_Items):
    """Entries `seq:member:<id>:<record>` are member records."""

    def __init__(self, on_member_record: MemberRecordObserver) -> None:
        super().__init__()
        self.on_member_record = on_member_record

    def apply_entry(self, index: int, data: bytes) -> tuple[tuple[int, int], Any] | None:
        answer = super().apply_entry(index, data)
        _, kind, node_id, record = data.split(b":", 3)
        if kind == b"member":
            self.on_member_record(int(node_id), record)
        return answer

    def member_records(self) -> dict[int, bytes]:
        out = {}
        for item in self.items:
            _, kind, node_id, record = item.split(b":", 3)
            if kind == b"member":
                out[int(node_id)] = record
        return out


class _Toy:
    def __init__(self) -> None:
        self.opened: list[int] = []

    def open_controller(self, on_member_record: MemberRecordObserver) -> _Controller:
        self.opened.append(CONTROLLER_GROUP)
        return _Controller(on_member_record)

    def open_shard(self, group_id: int) -> _Items:
        self.opened.append(group_id)
        return _Items()


def _run(host: NodeHost, fake: FakeEnv) -> None:
    for _ in range(100):
        host.pump()
        if not fake.syncer.run_all() and not host.groups[1].proposals:
            return


def _lead(host: NodeHost, fake: FakeEnv) -> None:
    for _ in range(200):
        fake.clock.advance(host.config.tick_ms / 1000)  # the host counts ticks by its clock
        host.tick()
        _run(host, fake)
        if all(g.raw.is_leader for g in host.groups.values()):
            return
    raise AssertionError("the single node did not elect itself")


def test_a_host_runs_a_service_that_is_not_the_kv_store(tmp_path: Path) -> None:
    me = Member(node_id=1, raft=("127.0.0.1", 1), http=("127.0.0.1", 2))
    config = NodeConfig(node_id=1, data_dir=tmp_path, members={1: me}, shards=2)
    fake = fake_env()
    toy = _Toy()
    node_log = MemoryNodeLog()
    host = NodeHost(config, node_log, fake.env(), toy)
    assert toy.opened == [0, 1, 2]
    _lead(host, fake)

    g = host.groups[1]
    answers = [host.submit_write(g, (1, seq), b"%d:item:0:x" % seq) for seq in (1, 2)]
    _run(host, fake)
    assert [a.result() for a in answers] == [1, 2]

    record = json.dumps({"raft": "127.0.0.1:9104", "http": "127.0.0.1:9204"}).encode()
    ctl = host.groups[CONTROLLER_GROUP]
    added = host.submit_write(ctl, (1, 1), b"1:member:4:" + record)
    _run(host, fake)
    assert added.result() == 1
    assert host.members[4].raft == ("127.0.0.1", 9104)
    assert fake.network.peers == {4: ("127.0.0.1", 9104)}

    # A restarted host learns the members from the controller's recovered state.
    for gid, sm_group in host.groups.items():
        host.logs[gid].create_snapshot(
            sm_group.sm.applied, sm_group.conf_state, sm_group.sm.snapshot(), 0
        )
    again = fake_env()
    restarted = NodeHost(config, node_log, again.env(), _Toy())
    assert restarted.members[4].raft == ("127.0.0.1", 9104)
    shard = restarted.groups[1].sm
    assert isinstance(shard, _Items)
    assert shard.items == [b"1:item:0:x", b"2:item:0:x"]
