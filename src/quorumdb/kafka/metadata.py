"""Topic metadata as the controller group stores it, and replica placement.

A topic is one immutable record in the controller's KV state under `topic/<name>`: its
partitions' replica lists and its configs. The Raft group of partition p is derived from the
record's revision (the controller log index that created it): `revision * 4096 + p`, so
every node computes the same group ids without another round of consensus, and re-creating
a deleted topic gives fresh groups. Placement spreads partitions and their first replicas
(the preferred leaders) round-robin over the members.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from quorumdb.host import config
from quorumdb.kafka.protocol.errors import ErrorCode

__all__ = [
    "PARTITIONS_MAX",
    "TOPIC_PREFIX",
    "PartitionInfo",
    "TopicConfigError",
    "TopicInfo",
    "decode_topic",
    "encode_topic",
    "group_id",
    "place_replicas",
    "topic_configs",
    "validate_topic_name",
]

TOPIC_PREFIX = b"topic/"
PARTITIONS_MAX = config.PARTITIONS_MAX
_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")

DEFAULT_CONFIGS: dict[str, str] = {
    "cleanup.policy": "delete",
    "retention.ms": str(7 * 24 * 3600 * 1000),
    "retention.bytes": "-1",
    "segment.bytes": str(64 << 20),
    "min.insync.replicas": "1",
    "message.timestamp.type": "CreateTime",
    "max.message.bytes": str(1 << 20),
}


class TopicConfigError(ValueError):
    """A topic name, partition count, replication factor or config is invalid; `code` is the
    Kafka error the broker answers with."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionInfo:
    partition: int
    group: int
    replicas: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicInfo:
    name: str
    topic_id: bytes  # 16 bytes, derived from the creating revision
    partitions: tuple[PartitionInfo, ...]
    configs: dict[str, str] = field(default_factory=dict)

    def config(self, key: str) -> str:
        return self.configs.get(key, DEFAULT_CONFIGS.get(key, ""))


def group_id(revision: int, partition: int) -> int:
    return revision * PARTITIONS_MAX + partition


def validate_topic_name(name: str) -> None:
    if name in (".", "..") or not _NAME.match(name):
        raise TopicConfigError(
            f"invalid topic name {name!r} (1-249 of [a-zA-Z0-9._-], not '.' or '..')",
            ErrorCode.INVALID_TOPIC_EXCEPTION,
        )


def topic_configs(raw: Mapping[str, str | None]) -> dict[str, str]:
    """Validate the configs a CreateTopics request sets (known keys, sane values)."""
    out: dict[str, str] = {}
    for key, value in raw.items():
        if key not in DEFAULT_CONFIGS:
            raise TopicConfigError(
                f"unknown or unsupported topic config {key!r}", ErrorCode.INVALID_CONFIG
            )
        if value is None:
            continue
        if key == "cleanup.policy" and value != "delete":
            raise TopicConfigError(
                "only cleanup.policy=delete is supported", ErrorCode.INVALID_CONFIG
            )
        if key == "message.timestamp.type" and value not in ("CreateTime", "LogAppendTime"):
            raise TopicConfigError(
                "message.timestamp.type must be CreateTime or LogAppendTime",
                ErrorCode.INVALID_CONFIG,
            )
        if key not in ("cleanup.policy", "message.timestamp.type"):
            try:
                int(value)
            except ValueError:
                raise TopicConfigError(
                    f"{key} must be an integer, got {value!r}", ErrorCode.INVALID_CONFIG
                ) from None
        out[key] = value
    return out


def place_replicas(
    members: list[int], partitions: int, replication_factor: int, *, offset: int = 0
) -> list[tuple[int, ...]]:
    """Round-robin placement: partition p's replicas start at member (p + offset) mod n."""
    nodes = sorted(members)
    if not 1 <= partitions <= PARTITIONS_MAX:
        raise TopicConfigError(
            f"partitions must be in 1..{PARTITIONS_MAX}, got {partitions}",
            ErrorCode.INVALID_PARTITIONS,
        )
    if not 1 <= replication_factor <= len(nodes):
        raise TopicConfigError(
            f"replication factor {replication_factor} is not in 1..{len(nodes)} "
            f"(the cluster has {len(nodes)} nodes)",
            ErrorCode.INVALID_REPLICATION_FACTOR,
        )
    n = len(nodes)
    return [
        tuple(nodes[(p + offset + i) % n] for i in range(replication_factor))
        for p in range(partitions)
    ]


def encode_topic(replicas: list[tuple[int, ...]], configs: dict[str, str]) -> bytes:
    return json.dumps({"replicas": [list(r) for r in replicas], "configs": configs}).encode()


def decode_topic(name: str, value: bytes, revision: int) -> TopicInfo:
    raw: dict[str, Any] = json.loads(value)
    partitions = tuple(
        PartitionInfo(partition=p, group=group_id(revision, p), replicas=tuple(r))
        for p, r in enumerate(raw["replicas"])
    )
    return TopicInfo(
        name=name,
        topic_id=revision.to_bytes(16, "big"),
        partitions=partitions,
        configs=dict(raw.get("configs", {})),
    )
