"""The broker's topic defaults (num.partitions, default.replication.factor,
auto.create.topics.enable) and its OffsetCommit/OffsetFetch answers for unknown partitions,
against an in-memory backend.

Each request and its response go through the codec at the API version named, so the bodies
are those a client sends and gets.
"""

from __future__ import annotations

import asyncio
from typing import Any

from quorumdb.kafka.broker import Broker, BrokerSettings, PartitionView
from quorumdb.kafka.metadata import (
    TopicInfo,
    decode_topic,
    encode_topic,
    place_replicas,
    topic_configs,
    validate_topic_name,
)
from quorumdb.kafka.protocol import ApiKey, ErrorCode, MessageKind, Request, decode, encode

_OffsetKey = tuple[str, int]


class _MemoryBackend:
    """A cluster of `brokers` nodes seen from node 1, which coordinates every group.

    `late` topics were created through another node: this one learns them when it catches
    up with the controller (`sync_topics`).
    """

    node_id = 1
    cluster_id = "test"

    def __init__(self, brokers: int = 3) -> None:
        self.members = list(range(1, brokers + 1))
        self._topics: dict[str, TopicInfo] = {}
        self.late: dict[str, TopicInfo] = {}
        self.offsets: dict[_OffsetKey, tuple[int, str | None]] = {}

    def topics(self) -> dict[str, TopicInfo]:
        return self._topics

    async def sync_topics(self) -> None:
        self._topics.update(self.late)

    def brokers(self) -> list[tuple[int, str, int]]:
        return [(i, "127.0.0.1", 9091 + i) for i in self.members]

    def controller_id(self) -> int:
        return 1

    def now_ms(self) -> int:
        return 0

    async def wait_for_leaders(self, timeout_ms: int) -> None:
        pass

    def partition(self, topic: TopicInfo, index: int) -> PartitionView:
        info = topic.partitions[index]
        return PartitionView(
            group=info.group,
            leader=info.replicas[0],
            leader_epoch=1,
            is_leader=info.replicas[0] == self.node_id,
            replicas=info.replicas,
            isr=info.replicas,
            high_watermark=0,
            log_start_offset=0,
        )

    def topic(self, name: str, partitions: int) -> TopicInfo:
        replicas = place_replicas(self.members, partitions, 1)
        return decode_topic(name, encode_topic(replicas, {}), len(self._topics) + 1)

    async def create_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> None:
        # What KafkaBackend.create_topic checks, in the same order.
        validate_topic_name(name)
        checked = topic_configs(configs)
        replicas = place_replicas(self.members, partitions, replication_factor)
        if name in self._topics:
            raise FileExistsError(name)
        revision = len(self._topics) + 1
        self._topics[name] = decode_topic(name, encode_topic(replicas, checked), revision)

    def is_coordinator(self, group_id: str) -> bool:
        return True

    def group_generation(self, group_id: str, member_id: str) -> int | None:
        return None

    async def commit_offsets(
        self, group_id: str, offsets: dict[_OffsetKey, tuple[int, str | None]]
    ) -> None:
        self.offsets.update(offsets)

    async def fetch_offsets(self, group_id: str) -> dict[_OffsetKey, tuple[int, str | None]]:
        return dict(self.offsets)


def _call(
    backend: _MemoryBackend,
    api_key: ApiKey,
    version: int,
    body: dict[str, Any],
    settings: BrokerSettings | None = None,
) -> dict[str, Any]:
    """`body` encoded and decoded as a v`version` request, handled, and the response encoded
    and decoded likewise."""
    wire_body = decode(
        api_key, version, MessageKind.REQUEST, encode(api_key, version, "request", body)
    )
    req = Request(
        api_key=api_key,
        api_version=version,
        correlation_id=1,
        client_id="test",
        header_version=1,
        size_bytes=0,
        body=wire_body,
    )
    broker = Broker(backend, settings)  # type: ignore[arg-type]
    response = asyncio.run(broker.handle(req, "127.0.0.1"))
    return decode(
        api_key, version, MessageKind.RESPONSE, encode(api_key, version, "response", response)
    )


# -- topic defaults ------------------------------------------------------------------------------


def _metadata(backend: _MemoryBackend, topic: str, settings: BrokerSettings) -> dict[str, Any]:
    body = {"topics": [{"name": topic}], "allow_auto_topic_creation": True}
    (row,) = _call(backend, ApiKey.METADATA, 8, body, settings)["topics"]
    return row


def _replicas(backend: _MemoryBackend, topic: str) -> list[tuple[int, ...]]:
    return [p.replicas for p in backend.topics()[topic].partitions]


def test_auto_created_topics_get_num_partitions_and_min_3_replicas_by_default() -> None:
    backend = _MemoryBackend(brokers=5)
    row = _metadata(backend, "orders", BrokerSettings(num_partitions=3))
    assert row["error_code"] == ErrorCode.NONE, row
    assert [p["partition_index"] for p in row["partitions"]] == [0, 1, 2]
    assert [len(r) for r in _replicas(backend, "orders")] == [3, 3, 3]


def test_a_small_cluster_auto_creates_with_as_many_replicas_as_it_has_brokers() -> None:
    backend = _MemoryBackend(brokers=2)
    _metadata(backend, "orders", BrokerSettings())
    assert _replicas(backend, "orders") == [(1, 2)]


def test_auto_created_topics_get_the_configured_replication_factor() -> None:
    backend = _MemoryBackend(brokers=5)
    _metadata(backend, "orders", BrokerSettings(num_partitions=2, default_replication_factor=4))
    assert [len(r) for r in _replicas(backend, "orders")] == [4, 4]


def test_without_auto_create_an_unknown_topic_stays_unknown() -> None:
    backend = _MemoryBackend()
    row = _metadata(backend, "orders", BrokerSettings(auto_create_topics_enable=False))
    assert row["error_code"] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, row
    assert backend.topics() == {}


def test_auto_create_above_the_cluster_size_answers_invalid_replication_factor() -> None:
    backend = _MemoryBackend(brokers=2)
    row = _metadata(backend, "orders", BrokerSettings(default_replication_factor=3))
    assert row["error_code"] == ErrorCode.INVALID_REPLICATION_FACTOR, row
    assert backend.topics() == {}


def test_auto_create_of_an_invalid_name_answers_invalid_topic() -> None:
    backend = _MemoryBackend()
    row = _metadata(backend, "no/slashes", BrokerSettings())
    assert row["error_code"] == ErrorCode.INVALID_TOPIC_EXCEPTION, row


def _create_topics(
    backend: _MemoryBackend,
    partitions: int,
    replication_factor: int,
    settings: BrokerSettings,
    *,
    validate_only: bool = False,
) -> dict[str, Any]:
    body = {
        "topics": [
            {
                "name": "orders",
                "num_partitions": partitions,
                "replication_factor": replication_factor,
                "assignments": [],
                "configs": [],
            }
        ],
        "timeout_ms": 1_000,
        "validate_only": validate_only,
    }
    (row,) = _call(backend, ApiKey.CREATE_TOPICS, 4, body, settings)["topics"]
    return row


def test_create_topics_with_minus_one_takes_the_broker_defaults() -> None:
    # KIP-464: CreateTopics v4 may leave both to the broker.
    backend = _MemoryBackend(brokers=5)
    settings = BrokerSettings(num_partitions=6, default_replication_factor=2)
    row = _create_topics(backend, -1, -1, settings)
    assert row["error_code"] == ErrorCode.NONE, row
    assert [len(r) for r in _replicas(backend, "orders")] == [2] * 6


def test_create_topics_minus_one_replication_defaults_to_min_3_and_the_cluster_size() -> None:
    backend = _MemoryBackend(brokers=5)
    _create_topics(backend, 2, -1, BrokerSettings())
    assert [len(r) for r in _replicas(backend, "orders")] == [3, 3]


def test_create_topics_above_the_cluster_size_is_invalid_replication_factor() -> None:
    backend = _MemoryBackend(brokers=3)
    row = _create_topics(backend, 1, 4, BrokerSettings())
    assert row["error_code"] == ErrorCode.INVALID_REPLICATION_FACTOR, row
    assert backend.topics() == {}


def test_a_default_replication_factor_above_the_cluster_size_is_refused_too() -> None:
    backend = _MemoryBackend(brokers=3)
    row = _create_topics(backend, 1, -1, BrokerSettings(default_replication_factor=5))
    assert row["error_code"] == ErrorCode.INVALID_REPLICATION_FACTOR, row


def test_create_topics_with_zero_partitions_is_refused_not_rounded_up() -> None:
    backend = _MemoryBackend()
    assert _create_topics(backend, 0, 1, BrokerSettings())["error_code"] == (
        ErrorCode.INVALID_PARTITIONS
    )
    assert _create_topics(backend, 1, 0, BrokerSettings())["error_code"] == (
        ErrorCode.INVALID_REPLICATION_FACTOR
    )
    assert backend.topics() == {}


def test_validate_only_checks_the_replication_factor_and_creates_nothing() -> None:
    backend = _MemoryBackend(brokers=3)
    bad = _create_topics(backend, 1, 4, BrokerSettings(), validate_only=True)
    assert bad["error_code"] == ErrorCode.INVALID_REPLICATION_FACTOR, bad
    good = _create_topics(backend, -1, -1, BrokerSettings(), validate_only=True)
    assert good["error_code"] == ErrorCode.NONE, good
    assert backend.topics() == {}


def _describe_broker(
    backend: _MemoryBackend, name: str, settings: BrokerSettings, version: int = 2
) -> dict[str, Any]:
    body = {
        "resources": [{"resource_type": 4, "resource_name": name, "configuration_keys": None}],
        "include_synonyms": False,
    }
    (row,) = _call(backend, ApiKey.DESCRIBE_CONFIGS, version, body, settings)["results"]
    return row


def test_describe_configs_of_this_broker_reports_the_topic_defaults() -> None:
    backend = _MemoryBackend(brokers=5)
    row = _describe_broker(backend, "1", BrokerSettings(num_partitions=3))
    assert row["error_code"] == ErrorCode.NONE, row
    configs = {c["name"]: (c["value"], c["config_source"]) for c in row["configs"]}
    assert configs == {
        "auto.create.topics.enable": ("true", 5),  # DEFAULT_CONFIG
        "default.replication.factor": ("3", 5),
        "num.partitions": ("3", 4),  # STATIC_BROKER_CONFIG
    }


def test_describe_configs_v0_reports_a_set_replication_factor() -> None:
    backend = _MemoryBackend()
    settings = BrokerSettings(default_replication_factor=2, auto_create_topics_enable=False)
    row = _describe_broker(backend, "1", settings, version=0)
    values = {c["name"]: c["value"] for c in row["configs"]}
    assert values["default.replication.factor"] == "2"
    assert values["auto.create.topics.enable"] == "false"


def test_describe_configs_of_another_broker_is_an_invalid_request() -> None:
    row = _describe_broker(_MemoryBackend(), "2", BrokerSettings())
    assert row["error_code"] == ErrorCode.INVALID_REQUEST, row
    assert row["configs"] == []


# -- committed offsets ---------------------------------------------------------------------------


def _commit(backend: _MemoryBackend, partitions: list[_OffsetKey]) -> dict[_OffsetKey, int]:
    topics: dict[str, list[dict[str, Any]]] = {}
    for name, index in partitions:
        topics.setdefault(name, []).append(
            {"partition_index": index, "committed_offset": 42, "committed_metadata": "m"}
        )
    body = {
        "group_id": "g",
        "generation_id_or_member_epoch": -1,
        "member_id": "",
        "topics": [{"name": n, "partitions": ps} for n, ps in topics.items()],
    }
    response = _call(backend, ApiKey.OFFSET_COMMIT, 5, body)
    return {
        (t["name"], p["partition_index"]): p["error_code"]
        for t in response["topics"]
        for p in t["partitions"]
    }


def test_offset_commit_for_an_unknown_topic_or_partition_is_refused_and_not_stored() -> None:
    backend = _MemoryBackend()
    backend.topics()["orders"] = backend.topic("orders", 2)
    codes = _commit(backend, [("orders", 0), ("orders", 2), ("nope", 0)])
    assert codes == {
        ("orders", 0): ErrorCode.NONE,
        ("orders", 2): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    assert backend.offsets == {("orders", 0): (42, "m")}


def test_offset_commit_for_a_topic_not_applied_here_yet_catches_up_first() -> None:
    backend = _MemoryBackend()
    backend.late["orders"] = backend.topic("orders", 1)
    assert _commit(backend, [("orders", 0)]) == {("orders", 0): ErrorCode.NONE}
    assert backend.offsets == {("orders", 0): (42, "m")}


def _fetch(
    backend: _MemoryBackend, version: int, partitions: list[_OffsetKey]
) -> dict[_OffsetKey, tuple[int, int]]:
    topics: dict[str, list[int]] = {}
    for name, index in partitions:
        topics.setdefault(name, []).append(index)
    body = {
        "group_id": "g",
        "topics": [{"name": n, "partition_indexes": ps} for n, ps in topics.items()],
    }
    response = _call(backend, ApiKey.OFFSET_FETCH, version, body)
    assert response.get("error_code", ErrorCode.NONE) == ErrorCode.NONE, response
    return {
        (t["name"], p["partition_index"]): (p["committed_offset"], p["error_code"])
        for t in response["topics"]
        for p in t["partitions"]
    }


def _committed_backend() -> _MemoryBackend:
    """`orders` has 2 partitions; the group committed offset 7 for partition 0 only."""
    backend = _MemoryBackend()
    backend.topics()["orders"] = backend.topic("orders", 2)
    backend.offsets[("orders", 0)] = (7, None)
    return backend


def test_offset_fetch_v1_and_later_answer_minus_one_and_none_without_a_commit() -> None:
    backend = _committed_backend()
    for version in (1, 5):
        got = _fetch(backend, version, [("orders", 0), ("orders", 1), ("orders", 9), ("nope", 0)])
        assert got == {
            ("orders", 0): (7, ErrorCode.NONE),
            ("orders", 1): (-1, ErrorCode.NONE),
            ("orders", 9): (-1, ErrorCode.NONE),
            ("nope", 0): (-1, ErrorCode.NONE),
        }, version


def test_offset_fetch_v0_answers_unknown_topic_or_partition_without_a_commit() -> None:
    backend = _committed_backend()
    got = _fetch(backend, 0, [("orders", 0), ("orders", 1), ("orders", 9), ("nope", 0)])
    assert got == {
        ("orders", 0): (7, ErrorCode.NONE),
        ("orders", 1): (-1, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ("orders", 9): (-1, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ("nope", 0): (-1, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    }


def test_offset_fetch_v0_hides_an_offset_stored_for_a_partition_the_topic_lacks() -> None:
    # A deleted topic's offsets stay in the group's KV entries; v0 says the topic is unknown.
    backend = _committed_backend()
    backend.offsets[("gone", 0)] = (3, None)
    assert _fetch(backend, 0, [("gone", 0)]) == {
        ("gone", 0): (-1, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    }
