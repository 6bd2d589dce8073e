"""What a hosted Raft group replicates into: the protocols the services implement.

The host knows nothing of KV commands or Kafka batches: it hands each committed normal entry
to `apply_entry`, and if the state machine names the request the entry answers (a
(client, seq) key) the host resolves the futures waiting on it with the result.

The node's own groups (the controller, group 0, and the shards, 1..S) replicate what a
service gives the host as `NodeStateMachines` (the KV store: `kv.node_kv.NodeKV`); groups
added at run time (Kafka partitions) bring their own state machine. Cluster membership is
kept in the controller's state (`ControllerStateMachine`): the host learns member records
from it, as they apply and after a snapshot replaces it, and dials the members' addresses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "ControllerStateMachine",
    "MemberRecordObserver",
    "NodeStateMachines",
    "ReplicatedStateMachine",
]


class ReplicatedStateMachine(Protocol):
    applied: int

    @property
    def applies_midflight(self) -> bool:
        """Whether committed entries that are durable here may be applied while the round's
        WAL write runs (the state is in memory and applying only answers clients). False
        when the service hangs work off the end of the round (Kafka partitions)."""
        ...

    def apply_entry(self, index: int, data: bytes) -> tuple[tuple[int, int], Any] | None:
        """Apply the entry at `index`; return (request key, result), or None (no answer)."""
        ...

    def skip(self, index: int) -> None:
        """`index` held no command (a no-op or a membership change)."""
        ...

    def snapshot(self) -> bytes: ...

    def restore(self, image: bytes) -> None: ...

    def restored_answer(self, key: tuple[int, int]) -> Any | None:
        """After `restore`: the answer to request `key` if the restored state shows that it
        applied (a session table remembers it), else None. A write whose entry a snapshot
        covered is answered from it instead of waiting out its timeout."""
        ...


MemberRecordObserver = Callable[[int, bytes | None], None]
"""Called with (node id, its member record) when one applies; None when it was deleted."""


class ControllerStateMachine(ReplicatedStateMachine, Protocol):
    """The controller group's state machine: it also records the cluster's members.

    A member record is JSON `{"raft": "host:port", "http": "host:port"}`. Founding members
    have none: they come from the configuration files.
    """

    def member_records(self) -> dict[int, bytes]:
        """Every member record in the current state, by node id."""
        ...


class NodeStateMachines(Protocol):
    """Builds the state machines of a node's own groups (given to `NodeHost`)."""

    def open_controller(self, on_member_record: MemberRecordObserver) -> ControllerStateMachine:
        """An empty state machine for the controller group; it calls `on_member_record`
        for every member record a command writes or deletes as it applies."""
        ...

    def open_shard(self, group_id: int) -> ReplicatedStateMachine:
        """An empty state machine for shard group `group_id` (1..S)."""
        ...
