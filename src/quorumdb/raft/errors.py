"""Expected outcomes of the Raft core, as exceptions (STYLE.md §5.5).

Broken invariants are `assert`s; these are the conditions a caller must handle: a proposal
that cannot be accepted here, a log position that storage no longer (or not yet) has.
"""

from __future__ import annotations

from quorumdb.errors import QuorumError

__all__ = [
    "CompactedError",
    "ConfigError",
    "NotLeaderError",
    "ProposalDroppedError",
    "RaftError",
    "SnapshotTemporarilyUnavailableError",
    "StepLocalMessageError",
    "StepPeerNotFoundError",
    "StorageError",
    "UnavailableError",
]


class RaftError(QuorumError):
    """An expected failure of a Raft operation."""


class ProposalDroppedError(RaftError):
    """The proposal was not accepted (no leader, transfer in progress, conf change pending)."""


class NotLeaderError(ProposalDroppedError):
    """This node is not the leader and does not forward; `leader_hint` is the leader it knows."""

    def __init__(self, leader_hint: int) -> None:
        hint = f"leader is {leader_hint}" if leader_hint else "leader unknown"
        super().__init__(f"not leader; {hint}")
        self.leader_hint = leader_hint


class StepLocalMessageError(RaftError):
    """A local-only message type was given to `RawNode.step`."""


class StepPeerNotFoundError(RaftError):
    """A response came from a node that is not in the configuration."""


class ConfigError(RaftError):
    """An invalid `Config` or membership change."""


class StorageError(QuorumError):
    """A storage read that cannot be served."""


class CompactedError(StorageError):
    """The requested index is older than the first available entry (it was compacted)."""


class UnavailableError(StorageError):
    """The requested index is newer than the last available entry."""


class SnapshotTemporarilyUnavailableError(StorageError):
    """The snapshot is being produced; retry later."""
