"""Fixtures for the Kafka acceptance tests: clusters with Kafka listeners, kcat."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Cluster, wait_for
from tests.e2e.kafka.wire import Addr, metadata, partition_leaders


def kafka_addrs(cluster: Cluster) -> dict[int, Addr]:
    out: dict[int, Addr] = {}
    for node_id, node in sorted(cluster.state.nodes.items()):
        assert node.kafka is not None, f"node {node_id} has no Kafka listener"
        out[node_id] = (node.kafka[0], int(node.kafka[1]))
    return out


def bootstrap(cluster: Cluster) -> list[str]:
    return [f"{h}:{p}" for h, p in kafka_addrs(cluster).values()]


def wait_kafka_ready(cluster: Cluster, timeout_s: float = 60.0) -> None:
    """Every node answers Metadata listing every broker, with a controller."""
    addrs = kafka_addrs(cluster)

    def ready() -> bool:
        for addr in addrs.values():
            md = metadata(addr)
            if len(md["brokers"]) != len(addrs) or md["controller_id"] < 0:
                return False
        return True

    wait_for(ready, "every node's Kafka listener to answer Metadata", timeout_s)


def wait_topic_everywhere(cluster: Cluster, topic: str, timeout_s: float = 60.0) -> None:
    """Every node knows the topic and a live leader for each of its partitions.

    CreateTopics answers once the node that served it applied the topic; the other nodes
    apply it a moment later (as with Kafka's metadata propagation).
    """
    addrs = kafka_addrs(cluster)
    wait_for(
        lambda: all(
            all(leader in addrs for leader in partition_leaders(addr, topic).values())
            for addr in addrs.values()
        ),
        f"every node to know topic {topic!r} and its partitions' leaders",
        timeout_s,
    )


# An election timeout of 0.6-1.2 s instead of the default 0.15-0.3 s (etcd's default is 1 s):
# on a loaded 2-CPU machine a node process can be starved longer than 0.3 s, and a spurious
# election moves partition leaders and group coordinators. Clients ride that out (the new
# coordinator carries each group over from its stored record), but with retries and pauses
# that these tests, which check exactly-once on a healthy cluster, need not sit through.
# Killed leaders are replaced about half a second later instead.
NODE_ENV = {"QUORUMDB_ELECTION_TICKS": "60"}


def _start(root: Path) -> Cluster:
    c = Cluster(root, env=NODE_ENV)
    try:
        wait_kafka_ready(c)
    except BaseException:
        c.stop()
        raise
    return c


@pytest.fixture
def kafka_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh 3-node cluster for one test (for tests that kill nodes)."""
    c = _start(tmp_path)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def shared_kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One 3-node cluster shared by a module's tests that leave every node running."""
    c = _start(tmp_path_factory.mktemp("kafka"))
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def kcat() -> str:
    """Path to kcat; the test skips, saying so in the summary (-ra), when it is missing.

    Tests do not install system packages: CI images get it with `apt-get install -y kcat`.
    """
    found = shutil.which("kcat")
    if found is None:
        pytest.skip("kcat is not installed (apt-get install -y kcat); kcat tests not run")
    return found
