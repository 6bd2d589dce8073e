"""The configs `quorumdb up` and `cluster add-node` write for local nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorumdb.cli import local_cluster
from quorumdb.host.config import load_config, node_config_from


def test_an_added_node_gets_the_clusters_kafka_broker_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Processes are not started: only the written configs are looked at.
    monkeypatch.setattr(local_cluster, "start_node", lambda cluster_dir, node_id: 10_000 + node_id)
    local_cluster.start_cluster(
        tmp_path,
        nodes=2,
        base_port=7000,
        shards=3,
        fsync=True,
        num_partitions=6,
        default_replication_factor=2,
        auto_create_topics_enable=False,
    )
    _, member = local_cluster.add_local_node(tmp_path)
    assert member.node_id == 3
    added = node_config_from(load_config(tmp_path / "n3" / "node.toml"), {})
    assert added.shards == 3
    assert added.num_partitions == 6
    assert added.default_replication_factor == 2
    assert added.auto_create_topics_enable is False
    assert sorted(added.members) == [1, 2, 3]
