"""What the leader knows about each follower: `Progress`, its `Inflights` window, the tracker.

Theory of operation (etcd's tracker/progress.go): a follower's progress is in one of three
states. PROBE: the leader does not know where the follower's log matches, sends one append per
heartbeat interval and waits. REPLICATE: the match is known, appends are pipelined optimistically
(`next` advances on send) within a window bounded in messages and bytes. SNAPSHOT: the follower
needs entries the leader has compacted, so the leader streams a snapshot and sends no appends.
Invariant: `match < next`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from enum import IntEnum

from quorumdb.raft.messages import ConfState, Snapshot
from quorumdb.raft.quorum import JointConfig, MajorityConfig, VoteResult

__all__ = ["Inflights", "Progress", "ProgressState", "ProgressTracker", "TrackerConfig"]


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Inflights:
    """A bounded window of in-flight appends: (last index, bytes) of each unacknowledged message."""

    __slots__ = ("_buf", "bytes", "max_bytes", "size")

    def __init__(self, size: int, max_bytes: int) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        self._buf: deque[tuple[int, int]] = deque()

    def __len__(self) -> int:
        return len(self._buf)

    def add(self, index: int, nbytes: int) -> None:
        assert not self.full(), "cannot add into a full inflights window"
        self._buf.append((index, nbytes))
        self.bytes += nbytes

    def free_le(self, to: int) -> None:
        """Release every in-flight message whose last index is <= `to`."""
        buf = self._buf
        while buf and buf[0][0] <= to:
            self.bytes -= buf.popleft()[1]

    def full(self) -> bool:
        return len(self._buf) >= self.size or (self.max_bytes > 0 and self.bytes >= self.max_bytes)

    def reset(self) -> None:
        self._buf.clear()
        self.bytes = 0


class Progress:
    """The leader's view of one follower (or learner)."""

    __slots__ = (
        "inflights",
        "is_learner",
        "lease_tick",
        "match",
        "msg_app_flow_paused",
        "next",
        "pending_snapshot",
        "recent_active",
        "snapshot_acked",
        "snapshot_in_flight",
        "state",
    )

    def __init__(self, next_: int, inflights: Inflights, *, is_learner: bool = False) -> None:
        self.match = 0
        self.next = next_
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        self.snapshot_in_flight: Snapshot | None = None
        self.snapshot_acked = 0
        self.recent_active = False
        self.msg_app_flow_paused = False
        self.inflights = inflights
        self.is_learner = is_learner
        self.lease_tick = -1

    def __repr__(self) -> str:
        s = f"{self.state.name} match={self.match} next={self.next}"
        if self.is_learner:
            s += " learner"
        if self.state == ProgressState.SNAPSHOT:
            s += f" pending_snap={self.pending_snapshot}"
        if not self.recent_active:
            s += " inactive"
        if len(self.inflights):
            s += f" inflight={len(self.inflights)}"
            if self.inflights.full():
                s += "[full]"
        return s

    def _reset_state(self, state: ProgressState) -> None:
        self.msg_app_flow_paused = False
        self.pending_snapshot = 0
        self.snapshot_in_flight = None
        self.snapshot_acked = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snap: Snapshot) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snap.metadata.index
        self.snapshot_in_flight = snap

    def sent_entries(self, entries: int, nbytes: int) -> None:
        """Account for an append of `entries` entries just sent (pipelining in REPLICATE)."""
        if self.state == ProgressState.REPLICATE:
            if entries > 0:
                self.next += entries
                self.inflights.add(self.next - 1, nbytes)
            self.msg_app_flow_paused = self.inflights.full()
        elif self.state == ProgressState.PROBE:
            if entries > 0:
                self.msg_app_flow_paused = True
        else:
            raise AssertionError(f"sending append in unhandled state {self.state.name}")

    def maybe_update(self, n: int) -> bool:
        """An append up to `n` was acknowledged; True if it told us something new."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.msg_app_flow_paused = False
        self.next = max(self.next, n + 1)
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append at `rejected`; back off. False if the reply is stale."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.msg_app_flow_paused = False
        return True

    def is_paused(self) -> bool:
        """Whether the leader should hold back appends to this follower for now."""
        if self.state == ProgressState.PROBE:
            return self.msg_app_flow_paused
        if self.state == ProgressState.REPLICATE:
            return self.msg_app_flow_paused
        return True


class TrackerConfig:
    """Voters (possibly joint), learners, and the learners to add when leaving the joint state."""

    __slots__ = ("auto_leave", "learners", "learners_next", "voters")

    def __init__(
        self,
        voters: JointConfig | None = None,
        learners: frozenset[int] = frozenset(),
        learners_next: frozenset[int] = frozenset(),
        *,
        auto_leave: bool = False,
    ) -> None:
        self.voters = voters if voters is not None else JointConfig()
        self.learners = learners
        self.learners_next = learners_next
        self.auto_leave = auto_leave

    def clone(self) -> TrackerConfig:
        return TrackerConfig(
            JointConfig(self.voters.incoming, self.voters.outgoing),
            self.learners,
            self.learners_next,
            auto_leave=self.auto_leave,
        )

    def __repr__(self) -> str:
        s = f"voters={self.voters!r}"
        if self.learners:
            s += " learners=(" + " ".join(str(i) for i in sorted(self.learners)) + ")"
        if self.learners_next:
            s += " learners_next=(" + " ".join(str(i) for i in sorted(self.learners_next)) + ")"
        if self.auto_leave:
            s += " autoleave"
        return s

    def conf_state(self) -> ConfState:
        return ConfState(
            voters=self.voters.incoming.ids,
            learners=tuple(sorted(self.learners)),
            voters_outgoing=self.voters.outgoing.ids,
            learners_next=tuple(sorted(self.learners_next)),
            auto_leave=self.auto_leave,
        )


class ProgressTracker:
    """The configuration plus a `Progress` per member, and the votes of the current election."""

    __slots__ = ("config", "max_inflight", "max_inflight_bytes", "progress", "votes")

    def __init__(self, max_inflight: int, max_inflight_bytes: int) -> None:
        self.config = TrackerConfig()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes

    def new_inflights(self) -> Inflights:
        return Inflights(self.max_inflight, self.max_inflight_bytes)

    def conf_state(self) -> ConfState:
        return self.config.conf_state()

    def is_singleton(self) -> bool:
        v = self.config.voters
        return len(v.incoming) == 1 and not v.is_joint()

    def committed(self) -> int:
        """Largest index a quorum has durably acknowledged."""
        prs = self.progress

        def acked(i: int) -> int | None:
            pr = prs.get(i)
            return pr.match if pr is not None else None

        return self.config.voters.committed_index(acked)

    def quorum_value(self, value: Callable[[Progress], int]) -> int:
        """The value a quorum has reached (e.g. the lease tick a quorum acknowledged)."""
        prs = self.progress

        def acked(i: int) -> int | None:
            pr = prs.get(i)
            return value(pr) if pr is not None else None

        return self.config.voters.committed_index(acked)

    def visit(self) -> Iterator[tuple[int, Progress]]:
        """Members in id order, so nothing depends on dict or hash order."""
        prs = self.progress
        for i in sorted(prs):
            yield i, prs[i]

    def quorum_active(self) -> bool:
        """Whether the voters that were recently active form a quorum (for check-quorum)."""
        votes = {i: pr.recent_active for i, pr in self.visit() if not pr.is_learner}
        return self.config.voters.vote_result(votes) == VoteResult.WON

    def voter_nodes(self) -> tuple[int, ...]:
        return self.config.voters.ids()

    def learner_nodes(self) -> tuple[int, ...]:
        return tuple(sorted(self.config.learners))

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node_id: int, granted: bool) -> None:
        self.votes.setdefault(node_id, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        granted = rejected = 0
        for node_id, pr in self.visit():
            if pr.is_learner:
                continue
            v = self.votes.get(node_id)
            if v is None:
                continue
            if v:
                granted += 1
            else:
                rejected += 1
        return granted, rejected, self.config.voters.vote_result(self.votes)

    def member_ids(self) -> MajorityConfig:
        return MajorityConfig(self.progress)
