"""Broker settings given to `quorumdb up` reach every node's broker, and committed offsets
only exist for partitions that do, on a live 3-node cluster started with
`--num-partitions 3 --default-replication-factor 2`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from quorumdb.kafka.protocol import ApiKey, ErrorCode
from tests.e2e.harness import Cluster
from tests.e2e.kafka.conftest import NODE_ENV, bootstrap, kafka_addrs, wait_kafka_ready
from tests.e2e.kafka.wire import KafkaWire, metadata

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
