"""Settings of one Raft node, validated at construction (etcd's Config.validate)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from quorumdb.raft.errors import ConfigError
from quorumdb.raft.log import NO_LIMIT
from quorumdb.raft.read_only import ReadOnlyOption

__all__ = ["Config", "PlantedBug"]


class PlantedBug(Enum):
    """Test-only switches that reintroduce known Raft mistakes, so checkers can prove they bite.

    Never set outside tests and the simulator's planted-bug sweeps.
    """

    # Raft §5.4.2 / Figure 8: commit entries of earlier terms by counting replicas, and (as in
    # the figure) start a term without the no-op entry that would otherwise hide the mistake.
    COMMIT_PREVIOUS_TERM_BY_COUNT = "commit-previous-term"
    VOTE_BEFORE_PERSIST = "vote-before-persist"  # vote answered before HardState is durable
    STALE_LOCAL_READS = "stale-local-reads"  # reads served locally, no ReadIndex
    LEASE_WITHOUT_QUORUM = "lease-without-quorum"  # lease reads, leader never steps down
    APPEND_WITHOUT_PREV_TERM_CHECK = "append-no-prev-term"  # AppendEntries consistency check off
    ACK_BEFORE_SYNC = "ack-before-sync"  # driver acknowledges before fsync (a driver bug)
    # Bugs of the host and the state machines above Raft (kept here: one list of switches).
    MIDFLIGHT_BEFORE_DURABLE = "midflight-before-durable"  # apply mid-flight before local fsync
    KAFKA_ABOVE_COMMIT = "kafka-above-commit"  # a fetch sees records above the commit index
    # acks=all answered once the leader alone has the records durably (as acks=1 is): a
    # failover before the commit loses acknowledged records.
    KAFKA_ACK_BEFORE_COMMIT = "kafka-ack-before-commit"
    SESSION_CHECK_DROPPED = "session-check-dropped"  # a retried KV write applies twice
    # Transactions: a commit skips the check that its written keys did not change since its
    # snapshot (lost updates at snapshot isolation), or ...
    TXN_WRITE_CHECK_SKIPPED = "txn-skip-write-check"
    # ... serializable commits neither validate nor lock what they read (write skew), or ...
    TXN_READ_CHECK_SKIPPED = "txn-no-rw-tracking"
    # ... a coordinator resolves intents as committed before the record says so (atomicity).
    TXN_COMMIT_BEFORE_RECORD = "txn-commit-before-record"


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Raft settings. Times are in ticks; sizes in bytes of entry data.

    `lease_drift_ticks` bounds how much faster a follower's clock may run than the leader's over
    one election timeout; a lease read is served only within `election_ticks - lease_drift_ticks`
    of the moment a quorum last confirmed the leader.
    """

    id: int
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    applied: int = 0
    max_size_per_msg: int = 1 << 20
    max_committed_size_per_ready: int = NO_LIMIT
    max_uncommitted_entries_size: int = 0  # 0: unlimited
    max_inflight_msgs: int = 256
    max_inflight_bytes: int = 0  # 0: unlimited
    check_quorum: bool = True
    pre_vote: bool = True
    read_only_option: ReadOnlyOption = ReadOnlyOption.SAFE
    lease_drift_ticks: int = 2
    disable_proposal_forwarding: bool = False
    snapshot_chunk_bytes: int = 1 << 20
    step_down_on_removal: bool = True
    # Local storage work as records in the Ready, acknowledged by stepping their responses
    # back (see `raft.ready`): no `advance`, and Readies while earlier writes still run.
    async_storage_writes: bool = False
    planted_bugs: frozenset[PlantedBug] = field(default_factory=frozenset)

    def validate(self) -> None:
        if self.id <= 0:
            raise ConfigError("node id must be positive")
        if self.heartbeat_ticks <= 0:
            raise ConfigError("heartbeat_ticks must be greater than 0")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError("election_ticks must be greater than heartbeat_ticks")
        if self.max_inflight_msgs <= 0:
            raise ConfigError("max_inflight_msgs must be greater than 0")
        if self.max_size_per_msg <= 0 or self.snapshot_chunk_bytes <= 0:
            raise ConfigError("message and chunk sizes must be positive")
        if self.max_inflight_bytes and self.max_inflight_bytes < self.max_size_per_msg:
            raise ConfigError("max_inflight_bytes must be >= max_size_per_msg")
        lease_bug = PlantedBug.LEASE_WITHOUT_QUORUM in self.planted_bugs
        if self.read_only_option == ReadOnlyOption.LEASE_BASED and not lease_bug:
            if not self.check_quorum:
                raise ConfigError("lease-based reads need check_quorum")
            if not 0 < self.lease_drift_ticks < self.election_ticks:
                raise ConfigError("lease_drift_ticks must be in (0, election_ticks)")
