"""A node's member list follows the controller's state, including across a snapshot install."""

from __future__ import annotations

import json
from pathlib import Path

from quorumdb.host.config import Member, NodeConfig
from quorumdb.host.node_host import CONTROLLER_GROUP, NodeHost
from quorumdb.kv.commands import Command, CommandKind
from quorumdb.kv.node_kv import NodeKV, member_key
from quorumdb.kv.state_machine import KVStateMachine
from quorumdb.raft import ConfState
from tests.host.fake_env import FakeEnv, fake_env
from tests.host.memory_log import MemoryNodeLog


def _member(node_id: int) -> Member:
    return Member(node_id=node_id, raft=("127.0.0.1", 9100 + node_id), http=("127.0.0.1", 9200))


def _image(recorded: list[int]) -> bytes:
    """A controller snapshot image with member records for `recorded` (added nodes)."""
    sm = KVStateMachine()
    for index, node_id in enumerate(recorded, start=1):
        value = json.dumps({"raft": f"127.0.0.1:{9100 + node_id}", "http": "127.0.0.1:9200"})
        key = member_key(node_id)
        sm.apply(index, Command(kind=CommandKind.PUT, key=key, value=value.encode()))
    return sm.snapshot()


def _host(tmp_path: Path, founders: dict[int, Member]) -> tuple[NodeHost, FakeEnv]:
    fake = fake_env({i: m.raft for i, m in founders.items() if i != 1})
    config = NodeConfig(node_id=1, data_dir=tmp_path, members=founders)
    return NodeKV(config, MemoryNodeLog(), fake.env()).host, fake


def test_members_follow_an_installed_controller_snapshot(tmp_path: Path) -> None:
    # Regression: members were learnt only from applied controller commands, so a node
    # caught up by a controller snapshot never dialled a node added meanwhile and kept
    # dialling a removed one.
    founders = {i: _member(i) for i in (1, 2, 3)}
    host, fake = _host(tmp_path, founders)
    assert sorted(host.members) == [1, 2, 3]
    controller = host.groups[CONTROLLER_GROUP]

    # Meanwhile node 4 was added (a record, a voter) and founder 2 removed (no record ever).
    # What Group.apply does with a snapshot: restore the image and take its membership.
    controller.sm.restore(_image([4]))
    controller.conf_state = ConfState(voters=(1, 3, 4))
    host._sync_members(controller)

    assert sorted(host.members) == [1, 3, 4]
    assert host.members[4].raft == ("127.0.0.1", 9104)
    assert sorted(fake.network.peers) == [3, 4]


def test_a_recorded_member_not_yet_a_voter_is_kept(tmp_path: Path) -> None:
    founders = {i: _member(i) for i in (1, 2, 3)}
    host, _ = _host(tmp_path, founders)
    controller = host.groups[CONTROLLER_GROUP]
    controller.sm.restore(_image([5]))  # recorded first; its conf change comes after
    controller.conf_state = ConfState(voters=(1, 2, 3))
    host._sync_members(controller)
    assert sorted(host.members) == [1, 2, 3, 5]
