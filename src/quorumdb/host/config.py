"""A node's settings: identity, addresses of every member, Raft timing, durability.

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

__all__ = ["Address", "Member", "NodeConfig", "load_config", "parse_address"]

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
    fsync: bool = True  # False only with --unsafe-no-fsync (labs); shown in status
    snapshot_entries: int = 10_000
    request_timeout_s: float = 5.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.node_id not in self.members:
            raise UserError(
                f"node id {self.node_id} is not among the members {sorted(self.members)}"
            )
        if not 1 <= self.shards <= 256:
            raise UserError(f"shards must be in 1..256, got {self.shards}")
        if (
            self.tick_ms < 1
            or self.heartbeat_ticks < 1
            or self.election_ticks <= self.heartbeat_ticks
        ):
            raise UserError("need tick_ms >= 1 and election_ticks > heartbeat_ticks >= 1")

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
