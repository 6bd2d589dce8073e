"""KafkaBackend's topics follow the controller's state, including across a snapshot install."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from quorumdb.host.config import Member, NodeConfig
from quorumdb.host.kafka_backend import KafkaBackend
from quorumdb.host.node_host import CONTROLLER_GROUP, NodeHost
from quorumdb.kafka.metadata import TOPIC_PREFIX, encode_topic
from quorumdb.kv.commands import Command, CommandKind
from quorumdb.kv.state_machine import KVStateMachine
from tests.host.memory_log import MemoryNodeLog


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
        host = NodeHost(
            NodeConfig(node_id=1, data_dir=tmp_path, members={1: member}), MemoryNodeLog()
        )
        controller = host.groups[CONTROLLER_GROUP]
        controller.sm.restore(_controller_image({"kept": (3, 2), "old": (5, 1)}))
        backend = KafkaBackend(host)
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
