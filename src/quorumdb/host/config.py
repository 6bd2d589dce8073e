"""A node's settings: identity, addresses of every member, Raft timing, durability, and the
Kafka broker defaults (Kafka's `num.partitions`, `default.replication.factor` and
`auto.create.topics.enable`, spelt with underscores).

Loaded from TOML (`load_config`), then overridden by environment variables `QUORUMDB_<KEY>`
and command-line flags; every value is validated here so a bad setting stops the node with
one clear line instead of a traceback deep inside the runtime.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorumdb.errors import UserError

__all__ = [
    "PARTITIONS_MAX",
    "Address",
    "Member",
    "NodeConfig",
    "load_config",
    "node_config_from",
    "parse_address",
    "render_config",
]

# Partitions per topic: partition group ids are `revision * PARTITIONS_MAX + partition`
# (`kafka.metadata`), and `num_partitions` is checked against it here.
PARTITIONS_MAX = 4096

Address = tuple[str, int]


def parse_address(text: str, what: str) -> Address:
    """`host:port` → (host, port); raises UserError naming `what`."""
    host, sep, port_s = text.rpartition(":")
    if not sep or not host:
        raise UserError(f"{what}: expected host:port, got {text!r}")
    try:
        port = int(port_s)
    except ValueError:
        raise UserError(f"{what}: port must be a number, got {port_s!r}") from None
    if not 0 <= port <= 65535:
        raise UserError(f"{what}: port {port} out of range")
    return host, port


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    node_id: int
    raft: Address
    http: Address
    kafka: Address | None = None  # the Kafka protocol listener, if this node serves one

    @property
    def http_url(self) -> str:
        return f"http://{self.http[0]}:{self.http[1]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    node_id: int
    data_dir: Path
    members: dict[int, Member]
    cluster: str = "quorumdb"
    shards: int = 4
    tick_ms: int = 10
    election_ticks: int = 15
    heartbeat_ticks: int = 3
    lease_reads: bool = False
    # Raft's pre-vote (thesis §9.6): a partitioned node does not disrupt the cluster when it
    # returns. On by default, as in etcd; the simulator turns it off in some seeds.
    pre_vote: bool = True
    fsync: bool = True  # False only with --unsafe-no-fsync (labs); shown in status
    # True only with --unsafe-read-uncommitted (labs): transactions may ask for read
    # uncommitted, whose writes apply at once (dirty writes and reads).
    unsafe_read_uncommitted: bool = False
    # The most the nodes' wall clocks may disagree by: a transaction's commit is answered
    # only after every clock has passed its timestamp (commit wait), which makes
    # transactions strictly serializable. 0: all nodes on one host (one clock).
    max_clock_offset_ms: int = 0
    snapshot_entries: int = 10_000
    # Or this many bytes of entry data applied since the last snapshot, whichever comes
    # first: a Kafka partition's entries are whole record batches, up to megabytes each.
    snapshot_bytes: int = 64 << 20
    request_timeout_s: float = 5.0
    # Kafka broker defaults, for auto-created topics and CreateTopics asking for -1 (KIP-464).
    num_partitions: int = 1  # Kafka's default
    # None: min(3, number of brokers). Kafka's default, 1, keeps a single copy of each
    # partition; ours replicates like the rest of the cluster, as far as its size allows.
    default_replication_factor: int | None = None
    auto_create_topics_enable: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.node_id not in self.members:
            raise UserError(
                f"node id {self.node_id} is not among the members {sorted(self.members)}"
            )
        if self.snapshot_entries < 1 or self.snapshot_bytes < 1:
            raise UserError("snapshot_entries and snapshot_bytes must be >= 1")
        if not 0 <= self.max_clock_offset_ms <= 60_000:
            raise UserError(
                f"max_clock_offset_ms must be in 0..60000, got {self.max_clock_offset_ms}"
            )
        if not 1 <= self.shards <= 256:
            raise UserError(f"shards must be in 1..256, got {self.shards}")
        if (
            self.tick_ms < 1
            or self.heartbeat_ticks < 1
            or self.election_ticks <= self.heartbeat_ticks
        ):
            raise UserError("need tick_ms >= 1 and election_ticks > heartbeat_ticks >= 1")
        if not 1 <= self.num_partitions <= PARTITIONS_MAX:
            raise UserError(
                f"num_partitions must be in 1..{PARTITIONS_MAX}, got {self.num_partitions}"
            )
        if self.default_replication_factor is not None and self.default_replication_factor < 1:
            raise UserError(
                f"default_replication_factor must be >= 1, got {self.default_replication_factor}"
            )

    @property
    def me(self) -> Member:
        return self.members[self.node_id]


def load_config(path: Path) -> dict[str, Any]:
    """Read a TOML config file into a plain dict (validated when the NodeConfig is built)."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path}: {exc}") from None


_INT_KEYS = (
    "node_id",
    "shards",
    "tick_ms",
    "election_ticks",
    "heartbeat_ticks",
    "snapshot_entries",
    "snapshot_bytes",
    "num_partitions",
    "default_replication_factor",
    "max_clock_offset_ms",
)
_BOOL_KEYS = (
    "lease_reads",
    "pre_vote",
    "fsync",
    "auto_create_topics_enable",
    "unsafe_read_uncommitted",
)


def node_config_from(raw: dict[str, Any], env: dict[str, str]) -> NodeConfig:
    """Build a NodeConfig from a TOML dict, then `QUORUMDB_<KEY>` environment overrides.

    Raises UserError naming the key for anything missing, mistyped or out of range.
    """
    merged = dict(raw)
    for key in (*_INT_KEYS, *_BOOL_KEYS, "data_dir", "cluster"):
        value = env.get(f"QUORUMDB_{key.upper()}")
        if value is not None:
            merged[key] = value
    try:
        kwargs: dict[str, Any] = {}
        for key in _INT_KEYS:
            if key in merged:
                kwargs[key] = int(merged[key])
        for key in _BOOL_KEYS:
            if key in merged:
                v = merged[key]
                kwargs[key] = v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
        if "request_timeout_s" in merged:
            kwargs["request_timeout_s"] = float(merged["request_timeout_s"])
    except (TypeError, ValueError) as exc:
        raise UserError(f"config: {exc}") from None
    if "node_id" not in kwargs:
        raise UserError("config: node_id is required")
    if "data_dir" not in merged:
        raise UserError("config: data_dir is required")
    raw_members = merged.get("members")
    if not isinstance(raw_members, dict) or not raw_members:
        raise UserError("config: [members.<id>] tables with raft and http addresses are required")
    members: dict[int, Member] = {}
    for key, m in raw_members.items():
        try:
            node_id = int(key)
        except ValueError:
            raise UserError(f"config: member id {key!r} is not a number") from None
        if not isinstance(m, dict) or "raft" not in m or "http" not in m:
            raise UserError(f"config: member {key} needs raft = 'host:port' and http = 'host:port'")
        kafka = m.get("kafka")
        members[node_id] = Member(
            node_id=node_id,
            raft=parse_address(str(m["raft"]), f"member {key} raft"),
            http=parse_address(str(m["http"]), f"member {key} http"),
            kafka=parse_address(str(kafka), f"member {key} kafka") if kafka else None,
        )
    return NodeConfig(
        data_dir=Path(str(merged["data_dir"])),
        members=members,
        cluster=str(merged.get("cluster", "quorumdb")),
        **kwargs,
    )


def render_config(config: NodeConfig) -> str:
    """The TOML text of `config` (what `quorumdb up` writes for each local node)."""
    lines = [
        f"node_id = {config.node_id}",
        f'cluster = "{config.cluster}"',
        f'data_dir = "{config.data_dir}"',
        f"shards = {config.shards}",
        f"tick_ms = {config.tick_ms}",
        f"election_ticks = {config.election_ticks}",
        f"heartbeat_ticks = {config.heartbeat_ticks}",
        f"lease_reads = {str(config.lease_reads).lower()}",
        f"pre_vote = {str(config.pre_vote).lower()}",
        f"fsync = {str(config.fsync).lower()}",
        f"unsafe_read_uncommitted = {str(config.unsafe_read_uncommitted).lower()}",
        f"snapshot_entries = {config.snapshot_entries}",
        f"max_clock_offset_ms = {config.max_clock_offset_ms}",
        f"snapshot_bytes = {config.snapshot_bytes}",
        f"num_partitions = {config.num_partitions}",
        f"auto_create_topics_enable = {str(config.auto_create_topics_enable).lower()}",
    ]
    if config.default_replication_factor is not None:
        lines.append(f"default_replication_factor = {config.default_replication_factor}")
    for node_id, m in sorted(config.members.items()):
        lines += [
            "",
            f"[members.{node_id}]",
            f'raft = "{m.raft[0]}:{m.raft[1]}"',
            f'http = "{m.http[0]}:{m.http[1]}"',
        ]
        if m.kafka is not None:
            lines.append(f'kafka = "{m.kafka[0]}:{m.kafka[1]}"')
    return "\n".join(lines) + "\n"
