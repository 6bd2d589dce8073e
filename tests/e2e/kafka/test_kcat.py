"""kcat (librdkafka's command-line client) against a live cluster: metadata and a round trip;
and Metadata on every node right after CreateTopics."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict

from tests.e2e.harness import Cluster
from tests.e2e.kafka.conftest import bootstrap, kafka_addrs, wait_topic_everywhere
from tests.e2e.kafka.wire import create_topic, metadata

RECORDS = 300


def _kcat(kcat: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        [kcat, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


def test_kcat_metadata_lists_every_broker_and_partition(
    shared_kafka_cluster: Cluster, kcat: str
) -> None:
    addrs = kafka_addrs(shared_kafka_cluster)
    create_topic(addrs[1], "kcat-meta", partitions=3)
    wait_topic_everywhere(shared_kafka_cluster, "kcat-meta")
    for node_id, (host, port) in addrs.items():
        md = json.loads(_kcat(kcat, "-b", f"{host}:{port}", "-L", "-J", "-t", "kcat-meta"))
        assert md["originating_broker"]["id"] == node_id, md["originating_broker"]
        brokers = {b["id"]: b["name"] for b in md["brokers"]}
        assert brokers == {n: f"{h}:{p}" for n, (h, p) in addrs.items()}, brokers
        assert md["controllerid"] in addrs, md["controllerid"]
        (topic,) = md["topics"]
        assert topic["topic"] == "kcat-meta" and "error" not in topic, topic
        parts = sorted(topic["partitions"], key=lambda p: p["partition"])
        assert [p["partition"] for p in parts] == [0, 1, 2], parts
        for p in parts:
            assert p["leader"] in addrs, p
            assert sorted(r["id"] for r in p["replicas"]) == [1, 2, 3], p
            assert {r["id"] for r in p["isrs"]} >= {p["leader"]}, p


def test_kcat_produces_and_consumes_every_record_in_order(
    shared_kafka_cluster: Cluster, kcat: str
) -> None:
    servers = ",".join(bootstrap(shared_kafka_cluster))
    create_topic(kafka_addrs(shared_kafka_cluster)[2], "kcat-roundtrip", partitions=3)
    wait_topic_everywhere(shared_kafka_cluster, "kcat-roundtrip")
    lines = "".join(f"key-{i}:value-{i:04d}\n" for i in range(RECORDS))
    _kcat(
        kcat,
        "-b",
        servers,
        "-P",
        "-t",
        "kcat-roundtrip",
        "-K:",
        "-X",
        "acks=all",
        "-X",
        "enable.idempotence=true",
        stdin=lines,
    )
    out = _kcat(
        kcat, "-b", servers, "-C", "-t", "kcat-roundtrip", "-o", "beginning", "-e", "-J", "-q"
    )
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    by_partition: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
    for r in records:
        by_partition[r["partition"]].append((r["offset"], r["key"], r["payload"]))
    assert len(by_partition) > 1, f"every record went to partitions {sorted(by_partition)}"
    values = []
    for p, rows in by_partition.items():
        assert [o for o, _, _ in rows] == list(range(len(rows))), f"partition {p}: offsets"
        sent_order = [int(v.split("-")[1]) for _, _, v in rows]
        assert sent_order == sorted(sent_order), f"partition {p}: records out of send order"
        for _, k, v in rows:
            assert k.split("-")[1] == str(int(v.split("-")[1])), (k, v)
        values += [v for _, _, v in rows]
    assert sorted(values) == [f"value-{i:04d}" for i in range(RECORDS)]


def test_metadata_right_after_create_topics_knows_the_topic_on_every_node(
    shared_kafka_cluster: Cluster,
) -> None:
    # CreateTopics is answered once the node serving it applied the topic; another node may
    # not have yet, and must catch up with the controller rather than answer UNKNOWN_TOPIC.
    # (Partition leaders may still be LEADER_NOT_AVAILABLE for a moment: retriable.)
    addrs = kafka_addrs(shared_kafka_cluster)
    for i, creator in enumerate(sorted(addrs)):
        topic = f"fresh-{i}"
        create_topic(addrs[creator], topic, partitions=3)
        for node_id, addr in addrs.items():
            (row,) = metadata(addr, [topic])["topics"]
            assert row["error_code"] == 0, f"node {node_id} right after CreateTopics: {row}"
            assert len(row["partitions"]) == 3, row
