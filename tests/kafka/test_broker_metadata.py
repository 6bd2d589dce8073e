"""Broker Metadata handler against a fake backend: what a node answers for topics it has not
applied yet."""

from __future__ import annotations

import asyncio
from typing import Any

from quorumdb.kafka.broker import Broker, PartitionView
from quorumdb.kafka.metadata import TopicInfo, decode_topic, encode_topic
from quorumdb.kafka.protocol import ApiKey
from quorumdb.kafka.protocol.connection import Request
from quorumdb.kafka.protocol.errors import ErrorCode


class _LaggingBackend:
    """A node that has not yet applied the controller entry creating `late`: it learns it
    only when asked to catch up with the controller (`sync_topics`)."""

    node_id = 2
    cluster_id = "test"

    def __init__(self) -> None:
        self._topics: dict[str, TopicInfo] = {}
        self.syncs = 0

    def topics(self) -> dict[str, TopicInfo]:
        return self._topics

    async def sync_topics(self) -> None:
        self.syncs += 1
        self._topics["late"] = decode_topic("late", encode_topic([(1, 2, 3)], {}), 7)

    async def wait_for_leaders(self, timeout_ms: int) -> None:
        pass

    def now_ms(self) -> int:
        return 0

    def brokers(self) -> list[tuple[int, str, int]]:
        return [(i, "127.0.0.1", 9091 + i) for i in (1, 2, 3)]

    def controller_id(self) -> int:
        return 1

    def partition(self, topic: TopicInfo, index: int) -> PartitionView:
        info = topic.partitions[index]
        return PartitionView(
            group=info.group,
            leader=1,
            leader_epoch=3,
            is_leader=False,
            replicas=info.replicas,
            isr=info.replicas,
            high_watermark=0,
            log_start_offset=0,
        )


def _metadata(backend: _LaggingBackend, topics: list[str] | None) -> dict[str, Any]:
    body = {
        "topics": None if topics is None else [{"name": t} for t in topics],
        "allow_auto_topic_creation": False,
        "include_cluster_authorized_operations": False,
        "include_topic_authorized_operations": False,
    }
    req = Request(
        api_key=ApiKey.METADATA,
        api_version=8,
        correlation_id=1,
        client_id="test",
        header_version=1,
        size_bytes=0,
        body=body,
    )
    return asyncio.run(Broker(backend).handle(req, "127.0.0.1"))  # type: ignore[arg-type]


def test_metadata_catches_up_with_the_controller_before_calling_a_topic_unknown() -> None:
    # Regression: a node that had not applied a topic's controller entry yet answered
    # UNKNOWN_TOPIC_OR_PARTITION although the CreateTopics through another node had been
    # answered; clients that do not retry that error (admin describe) failed.
    backend = _LaggingBackend()
    md = _metadata(backend, ["late"])
    (row,) = md["topics"]
    assert row["error_code"] == ErrorCode.NONE, row
    assert [p["leader_id"] for p in row["partitions"]] == [1]
    assert backend.syncs == 1


def test_metadata_for_known_topics_does_not_wait_for_the_controller() -> None:
    backend = _LaggingBackend()
    md = _metadata(backend, None)
    assert md["topics"] == []
    assert backend.syncs == 0


def test_a_topic_still_unknown_after_catching_up_is_unknown() -> None:
    backend = _LaggingBackend()
    (row,) = _metadata(backend, ["never-created"])["topics"]
    assert row["error_code"] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, row
    assert backend.syncs == 1
