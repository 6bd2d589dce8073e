"""What the HTTP API needs from a node: the KV operations, cluster status and metrics.

The API layer (`kv.api`) is written against this protocol, so it is tested alone and the
node host implements it for real. Errors a client can act on are exceptions here and become
HTTP statuses in one place (`kv.api`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from quorumdb.errors import QuorumError, ServiceUnavailableError
from quorumdb.kv.commands import Isolation, Result

__all__ = [
    "Consistency",
    "KVService",
    "NotLeaderHereError",
    "ServiceUnavailableError",
    "TxnStep",
    "ValueRecord",
]


class Consistency(Enum):
    LINEARIZABLE = "linearizable"  # ReadIndex: confirmed with a quorum before reading
    LEASE = "lease"  # leader lease (needs check-quorum and a clock-drift bound)
    STALE = "stale"  # whatever this replica has applied; may be behind


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueRecord:
    key: bytes
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnStep:
    """One operation of a transaction request: get, put, delete (`key`, `value`) or scan
    (`key` is the start, `end` exclusive or None, at most `limit` rows)."""

    op: str
    key: bytes
    value: bytes | None = None
    end: bytes | None = None
    limit: int = 100


class NotLeaderHereError(QuorumError):
    """This node cannot serve the request; `leader_url` is where to go (None: unknown)."""

    def __init__(self, leader_url: str | None) -> None:
        super().__init__(f"not leader; leader is {leader_url or 'unknown'}")
        self.leader_url = leader_url


class KVService(Protocol):
    async def put(
        self, key: bytes, value: bytes, *, expected_revision: int, client: int, seq: int
    ) -> Result: ...

    async def delete(self, key: bytes, *, client: int, seq: int) -> Result: ...

    async def get(self, key: bytes, consistency: Consistency) -> ValueRecord | None: ...

    async def scan(
        self, start: bytes, end: bytes | None, limit: int, consistency: Consistency
    ) -> list[ValueRecord]: ...

    async def txn_begin(
        self, isolation: Isolation, timeout_s: float, seen_ts: int
    ) -> dict[str, Any]:
        """Begin an interactive transaction here: {"txn": id, "isolation", "read_ts"}."""
        ...

    async def txn_steps(self, txn: str, steps: list[TxnStep]) -> list[Any]:
        """Run `steps` in transaction `txn` (begun on this node; NotLeaderHereError names
        the node that began it): a get answers the value (None: absent), a scan its
        [key, value] rows, a put or delete None."""
        ...

    async def txn_commit(self, txn: str) -> dict[str, Any]: ...

    async def txn_abort(self, txn: str) -> dict[str, Any]: ...

    def cluster_status(self) -> dict[str, Any]: ...

    async def add_member(self, node_id: int, raft: str, http: str) -> dict[str, Any]:
        """Raises LookupError for unknown ids, NotLeaderHereError off the controller leader."""
        ...

    async def remove_member(self, node_id: int) -> dict[str, Any]: ...

    async def transfer_leader(self, to: int, group: int | None) -> dict[str, Any]: ...

    def health(self) -> dict[str, Any]:
        """`status` is "ok" while the node serves; otherwise `error` says why (a 503)."""
        ...

    def metrics_text(self) -> str: ...
