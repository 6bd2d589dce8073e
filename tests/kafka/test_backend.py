"""KafkaBackend's topics follow the controller's state, including across a snapshot install;
its group coordinators serve one leadership term each, from the groups' stored records."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from quorumdb.host.config import Member, NodeConfig
from quorumdb.host.node_host import CONTROLLER_GROUP
from quorumdb.kafka.backend import KafkaBackend
from quorumdb.kafka.metadata import TOPIC_PREFIX, encode_topic
from quorumdb.kafka.protocol.errors import ErrorCode
from quorumdb.kv.commands import Command, CommandKind
from quorumdb.kv.node_kv import NodeKV
from quorumdb.kv.node_service import NodeService
from quorumdb.kv.state_machine import KVStateMachine
from quorumdb.runtime.node import Node
from tests.host.fake_env import fake_env
from tests.host.memory_log import MemoryNodeLog
from tests.host.test_node_host_inprocess import _configs, _serving, _wait_for


def _controller_image(topics: dict[str, tuple[int, int]]) -> bytes:
    """A controller snapshot image holding `topics`: name -> (log index that created it,
    partitions). The index is the topic's revision, from which its partition groups' ids
    derive, so it is unique in a real log."""
    sm = KVStateMachine()
    for name, (index, partitions) in sorted(topics.items(), key=lambda t: t[1]):
        replicas = [(1,)] * partitions
        cmd = Command(
            kind=CommandKind.PUT, key=TOPIC_PREFIX + name.encode(), value=encode_topic(replicas, {})
        )
        sm.apply(index, cmd)
    return sm.snapshot()


def test_topics_follow_an_installed_controller_snapshot(tmp_path: Path) -> None:
    # Regression: topics were learnt only from applied controller commands (and once at
    # start), so a node brought up to date by a controller snapshot (it was down while the
    # leader compacted its log) never hosted the topics created meanwhile, and kept hosting
    # deleted ones.
    async def main() -> None:
        member = Member(node_id=1, raft=("127.0.0.1", 1), http=("127.0.0.1", 2))
        config = NodeConfig(node_id=1, data_dir=tmp_path, members={1: member})
        host = NodeKV(config, MemoryNodeLog(), fake_env().env()).host
        controller = host.groups[CONTROLLER_GROUP]
        controller.sm.restore(_controller_image({"kept": (3, 2), "old": (5, 1)}))
        backend = KafkaBackend(host, NodeService(host))
        assert sorted(backend.topics()) == ["kept", "old"]
        old_group = backend.topics()["old"].partitions[0].group
        assert old_group in host.groups

        # What Group.apply does with a snapshot: restore the image, then the hooks run.
        controller.sm.restore(_controller_image({"kept": (3, 2), "new": (9, 3)}))
        ready = SimpleNamespace(snapshot=object(), committed_entries=[], read_states=[])
        for hook in host.after_apply:
            hook(controller, ready, 0)  # type: ignore[arg-type]

        assert sorted(backend.topics()) == ["kept", "new"]
        assert old_group not in host.groups
        for p in backend.topics()["new"].partitions:
            assert p.group in host.groups, p

    asyncio.run(main())


async def _answer(call: Callable[[Callable[[dict[str, Any]], None]], None]) -> dict[str, Any]:
    """Make a join or sync request (answered through a callback) and wait for its answer."""
    fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    call(lambda body: None if fut.done() else fut.set_result(body))
    return await asyncio.wait_for(fut, 10)


async def _join_alone(b: KafkaBackend) -> tuple[str, int]:
    """One member joins group g and syncs its assignment; returns (member id, generation)."""
    req: dict[str, Any] = {
        "group_id": "g",
        "session_timeout_ms": 30_000,
        "rebalance_timeout_ms": 30_000,
        "member_id": "",
        "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": b"m"}],
        "client_id": "c",
    }
    first = await _answer(lambda reply: b.group_join(req, "h", reply))
    assert first["error_code"] == ErrorCode.MEMBER_ID_REQUIRED
    joined = await _answer(
        lambda reply: b.group_join({**req, "member_id": first["member_id"]}, "h", reply)
    )
    assert joined["error_code"] == ErrorCode.NONE and joined["leader"] == first["member_id"]
    sync = {
        "group_id": "g",
        "generation_id": joined["generation_id"],
        "member_id": joined["member_id"],
        "assignments": [{"member_id": joined["member_id"], "assignment": b"A"}],
    }
    synced = await _answer(lambda reply: b.group_sync(sync, reply))
    assert synced == {"error_code": ErrorCode.NONE, "assignment": b"A"}
    return joined["member_id"], joined["generation_id"]


def test_a_group_outlives_its_coordinator_losing_and_regaining_leadership(tmp_path: Path) -> None:
    # Regression: a group's membership was soft state, rebuilt from nothing by the next
    # coordinator, which numbered generations from 1 again and handed out member ids from a
    # counter restarting at 1; a node winning the shard back gave a member the id another
    # member still held, and the two took turns as the group's only member.
    async def main() -> None:
        # Election timeouts of 0.3-0.6 s: the default 75 ms ones of these in-process tests
        # move leaderships on a loaded machine, and with them the coordinator.
        cfgs = [dataclasses.replace(c, election_ticks=60) for c in _configs(tmp_path)]
        hosts = [Node(c, MemoryNodeLog()) for c in cfgs]
        backends = {h.config.node_id: KafkaBackend(h.host, h.service) for h in hosts}

        def coordinators() -> list[int]:
            return [i for i, b in sorted(backends.items()) if b.is_coordinator("g")]

        async with _serving(hosts):
            await _wait_for(lambda: len(coordinators()) == 1, "a coordinator of group g")
            (first,) = coordinators()
            member, generation = await _join_alone(backends[first])
            host = backends[first].host
            shard = host.shard_of(b"group/g").group_id
            term = host.groups[shard].raw.term
            other = next(i for i in backends if i != first)
            await backends[first].service.transfer_leader(other, shard)
            await _wait_for(lambda: coordinators() == [other], f"node {other} to coordinate")
            await backends[other].service.transfer_leader(first, shard)
            await _wait_for(lambda: coordinators() == [first], f"node {first} to coordinate again")
            assert host.groups[shard].raw.term > term

            # Both successors took the group over from its record: the member stays.
            b = backends[first]
            hb = {"group_id": "g", "generation_id": generation, "member_id": member}
            assert b.group_heartbeat(hb) == ErrorCode.NONE
            assert b.group_generation("g", member) == generation
            assert b.describe_group("g")["group_state"] == "Stable"
            newcomer = await _answer(
                lambda reply: b.group_join(
                    {
                        "group_id": "g",
                        "session_timeout_ms": 30_000,
                        "member_id": "",
                        "protocol_type": "consumer",
                        "protocols": [{"name": "range", "metadata": b"m"}],
                        "client_id": "c",
                    },
                    "h",
                    reply,
                )
            )
            assert newcomer["error_code"] == ErrorCode.MEMBER_ID_REQUIRED
            assert newcomer["member_id"] != member

    asyncio.run(main())
