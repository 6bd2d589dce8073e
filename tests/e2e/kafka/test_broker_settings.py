"""Broker settings given to `quorumdb up` reach every node's broker, and committed offsets
only exist for partitions that do, on a live 3-node cluster started with
`--num-partitions 3 --default-replication-factor 2`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from quorumdb.kafka.protocol import ApiKey, ErrorCode
from tests.e2e.harness import Cluster, wait_for
from tests.e2e.kafka.conftest import NODE_ENV, bootstrap, kafka_addrs, wait_kafka_ready
from tests.e2e.kafka.wire import Addr, KafkaWire, create_topic, find_coordinator, metadata

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(
        tmp_path_factory.mktemp("settings"),
        extra=("--num-partitions", "3", "--default-replication-factor", "2"),
        env=NODE_ENV,
    )
    try:
        wait_kafka_ready(c)
        yield c
    finally:
        c.stop()


def test_kafka_python_producing_to_a_new_topic_creates_it_with_num_partitions(
    cluster: Cluster,
) -> None:
    from kafka import KafkaProducer

    topic = "auto-created"
    producer = KafkaProducer(bootstrap_servers=bootstrap(cluster), acks="all")
    try:
        sent = producer.send(topic, value=b"first").get(timeout=30)
        assert producer.partitions_for(topic) == {0, 1, 2}
    finally:
        producer.close(timeout=10)
    assert sent.topic == topic and sent.offset == 0
    (row,) = metadata(kafka_addrs(cluster)[1], [topic])["topics"]
    assert row["error_code"] == ErrorCode.NONE, row
    assert [len(p["replica_nodes"]) for p in row["partitions"]] == [2, 2, 2], row


def test_describe_configs_of_a_broker_reports_the_settings_it_was_started_with(
    cluster: Cluster,
) -> None:
    body = {
        "resources": [{"resource_type": 4, "resource_name": "2", "configuration_keys": None}],
        "include_synonyms": False,
    }
    with KafkaWire(kafka_addrs(cluster)[2]) as w:
        (row,) = w.request(ApiKey.DESCRIBE_CONFIGS, 2, body)["results"]
    assert row["error_code"] == ErrorCode.NONE, row
    assert {c["name"]: c["value"] for c in row["configs"]} == {
        "auto.create.topics.enable": "true",
        "default.replication.factor": "2",
        "num.partitions": "3",
    }


def test_offsets_are_committed_only_for_partitions_that_exist(cluster: Cluster) -> None:
    topic = "committed"
    addrs = kafka_addrs(cluster)
    create_topic(addrs[1], topic, partitions=1, replication_factor=-1)
    group = "settings-group"
    commit = {
        "group_id": group,
        "generation_id_or_member_epoch": -1,
        "member_id": "",
        "topics": [
            {"name": topic, "partitions": [_committed(0), _committed(1)]},
            {"name": "never-created", "partitions": [_committed(0)]},
        ],
    }
    fetch = {
        "group_id": group,
        "topics": [
            {"name": topic, "partition_indexes": [0, 1]},
            {"name": "never-created", "partition_indexes": [0]},
        ],
    }
    with KafkaWire(_coordinator(cluster, group), timeout_s=15.0) as w:
        committed = w.request(ApiKey.OFFSET_COMMIT, 5, commit)
        fetched = w.request(ApiKey.OFFSET_FETCH, 5, fetch)
    codes = {
        (t["name"], p["partition_index"]): p["error_code"]
        for t in committed["topics"]
        for p in t["partitions"]
    }
    assert codes == {
        (topic, 0): ErrorCode.NONE,
        (topic, 1): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,  # the topic has 1 partition
        ("never-created", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }, committed
    assert fetched["error_code"] == ErrorCode.NONE, fetched
    offsets = {
        (t["name"], p["partition_index"]): (p["committed_offset"], p["error_code"])
        for t in fetched["topics"]
        for p in t["partitions"]
    }
    assert offsets == {
        (topic, 0): (5, ErrorCode.NONE),
        (topic, 1): (-1, ErrorCode.NONE),  # nothing committed: -1, no error (OffsetFetch v1+)
        ("never-created", 0): (-1, ErrorCode.NONE),
    }, fetched


def _coordinator(cluster: Cluster, group: str) -> Addr:
    addrs = kafka_addrs(cluster)
    found: list[int] = []

    def known() -> bool:
        found.append(find_coordinator(addrs[1], group))  # NotReadyError while there is none
        return True

    wait_for(known, f"a coordinator for group {group!r}")
    return addrs[found[-1]]


def _committed(index: int) -> dict[str, object]:
    return {"partition_index": index, "committed_offset": 5, "committed_metadata": ""}
