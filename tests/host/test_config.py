"""The Kafka broker defaults in the node config: what `quorumdb up` writes is what a node
reads back, environment overrides apply, bad values stop the node with one line."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from quorumdb.errors import UserError
from quorumdb.host.config import Member, NodeConfig, node_config_from, render_config

_MEMBERS = {1: Member(node_id=1, raft=("127.0.0.1", 7101), http=("127.0.0.1", 7001))}


def _read_back(config: NodeConfig, env: dict[str, str] | None = None) -> NodeConfig:
    return node_config_from(tomllib.loads(render_config(config)), env or {})


def test_broker_defaults_survive_render_and_load(tmp_path: Path) -> None:
    config = NodeConfig(
        node_id=1,
        data_dir=tmp_path,
        members=_MEMBERS,
        num_partitions=3,
        default_replication_factor=2,
        auto_create_topics_enable=False,
    )
    back = _read_back(config)
    assert back.num_partitions == 3
    assert back.default_replication_factor == 2
    assert back.auto_create_topics_enable is False


def test_unset_broker_defaults_are_kafkas_and_min_3_replicas(tmp_path: Path) -> None:
    back = _read_back(NodeConfig(node_id=1, data_dir=tmp_path, members=_MEMBERS))
    assert back.num_partitions == 1
    assert back.default_replication_factor is None  # min(3, brokers), decided by the broker
    assert back.auto_create_topics_enable is True


def test_environment_overrides_broker_defaults(tmp_path: Path) -> None:
    env = {
        "QUORUMDB_NUM_PARTITIONS": "6",
        "QUORUMDB_DEFAULT_REPLICATION_FACTOR": "1",
        "QUORUMDB_AUTO_CREATE_TOPICS_ENABLE": "false",
    }
    back = _read_back(NodeConfig(node_id=1, data_dir=tmp_path, members=_MEMBERS), env)
    assert back.num_partitions == 6
    assert back.default_replication_factor == 1
    assert back.auto_create_topics_enable is False


@pytest.mark.parametrize(
    ("key", "value"),
    [("num_partitions", 0), ("num_partitions", 4097), ("default_replication_factor", 0)],
)
def test_an_out_of_range_broker_default_is_a_user_error(
    tmp_path: Path, key: str, value: int
) -> None:
    with pytest.raises(UserError, match=key):
        NodeConfig(node_id=1, data_dir=tmp_path, members=_MEMBERS, **{key: value})
