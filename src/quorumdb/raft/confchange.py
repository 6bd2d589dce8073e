"""Membership changes: validate a new configuration on a copy, return it, never mutate in place.

Two ways to change membership (Raft thesis §4): a *simple* change alters at most one voter and
goes straight from old to new; any larger change passes through a *joint* configuration in which
decisions need majorities of both the old and the new voters, and is left by a second change
(explicit, or appended by the leader automatically). Learners receive the log but never vote.
A voter demoted to learner while it is still in the outgoing half waits in `learners_next`.
"""

from __future__ import annotations

from quorumdb.raft.errors import ConfigError
from quorumdb.raft.messages import ConfChangeSingle, ConfChangeType, ConfState
from quorumdb.raft.quorum import JointConfig, MajorityConfig
from quorumdb.raft.tracker import Progress, ProgressTracker, TrackerConfig

__all__ = ["Changer", "ProgressMap", "restore"]

ProgressMap = dict[int, Progress]


class _Draft:
    """A mutable copy of a configuration being edited."""

    __slots__ = ("auto_leave", "incoming", "learners", "learners_next", "outgoing", "prs")

    def __init__(self, cfg: TrackerConfig, prs: ProgressMap) -> None:
        self.incoming = set(cfg.voters.incoming.ids)
        self.outgoing = set(cfg.voters.outgoing.ids)
        self.learners = set(cfg.learners)
        self.learners_next = set(cfg.learners_next)
        self.auto_leave = cfg.auto_leave
        self.prs = prs

    def freeze(self) -> TrackerConfig:
        return TrackerConfig(
            JointConfig(MajorityConfig(self.incoming), MajorityConfig(self.outgoing)),
            frozenset(self.learners),
            frozenset(self.learners_next),
            auto_leave=self.auto_leave,
        )


class Changer:
    """Computes the configuration that results from a change, checking every invariant."""

    __slots__ = ("last_index", "tracker")

    def __init__(self, tracker: ProgressTracker, last_index: int) -> None:
        self.tracker = tracker
        self.last_index = last_index

    def enter_joint(
        self, auto_leave: bool, ccs: tuple[ConfChangeSingle, ...]
    ) -> tuple[TrackerConfig, ProgressMap]:
        d = self._check_and_copy()
        if d.outgoing:
            raise ConfigError("config is already joint")
        if not d.incoming:
            raise ConfigError("can't make a zero-voter config joint")
        d.outgoing = set(d.incoming)
        self._apply(d, ccs)
        d.auto_leave = auto_leave
        return self._check_and_return(d)

    def leave_joint(self) -> tuple[TrackerConfig, ProgressMap]:
        d = self._check_and_copy()
        if not d.outgoing:
            raise ConfigError("can't leave a non-joint config")
        for node_id in d.learners_next:
            d.learners.add(node_id)
            d.prs[node_id].is_learner = True
        d.learners_next = set()
        for node_id in d.outgoing:
            if node_id not in d.incoming and node_id not in d.learners:
                del d.prs[node_id]
        d.outgoing = set()
        d.auto_leave = False
        return self._check_and_return(d)

    def simple(self, ccs: tuple[ConfChangeSingle, ...]) -> tuple[TrackerConfig, ProgressMap]:
        d = self._check_and_copy()
        if d.outgoing:
            raise ConfigError("can't apply simple config change in joint config")
        before = set(self.tracker.config.voters.incoming.ids)
        self._apply(d, ccs)
        if len(before ^ d.incoming) > 1:
            raise ConfigError("more than one voter changed without entering joint config")
        return self._check_and_return(d)

    # -- internals ------------------------------------------------------------------------

    def _apply(self, d: _Draft, ccs: tuple[ConfChangeSingle, ...]) -> None:
        # Changes apply strictly in order (etcd's Changer.apply). `restore` depends on it: it
        # rebuilds a joint configuration as "remove every outgoing voter, then add the incoming
        # ones"; deferring the removals to the end would drop voters kept in both halves (a node
        # restarting in, or snapshotted into, (1 2 4)&&(1 2 3) came back as (4)&&(1 2 3)).
        for cc in ccs:
            if cc.node_id <= 0:
                continue
            if cc.type == ConfChangeType.ADD_NODE:
                self._make_voter(d, cc.node_id)
            elif cc.type == ConfChangeType.ADD_LEARNER_NODE:
                self._make_learner(d, cc.node_id)
            elif cc.type == ConfChangeType.REMOVE_NODE:
                self._remove(d, cc.node_id)
            else:
                raise ConfigError(f"unexpected conf change type {cc.type}")
        if not d.incoming:
            raise ConfigError("removed all voters")

    def _make_voter(self, d: _Draft, node_id: int) -> None:
        pr = d.prs.get(node_id)
        if pr is None:
            self._init_progress(d, node_id, is_learner=False)
            return
        pr.is_learner = False
        d.learners.discard(node_id)
        d.learners_next.discard(node_id)
        d.incoming.add(node_id)

    def _make_learner(self, d: _Draft, node_id: int) -> None:
        pr = d.prs.get(node_id)
        if pr is None:
            self._init_progress(d, node_id, is_learner=True)
            return
        if pr.is_learner:
            return
        self._remove(d, node_id)
        d.prs[node_id] = pr
        if node_id in d.outgoing:
            d.learners_next.add(node_id)
        else:
            pr.is_learner = True
            d.learners.add(node_id)

    def _remove(self, d: _Draft, node_id: int) -> None:
        if node_id not in d.prs:
            return
        d.incoming.discard(node_id)
        d.learners.discard(node_id)
        d.learners_next.discard(node_id)
        if node_id not in d.outgoing:
            del d.prs[node_id]

    def _init_progress(self, d: _Draft, node_id: int, *, is_learner: bool) -> None:
        if is_learner:
            d.learners.add(node_id)
        else:
            d.incoming.add(node_id)
        pr = Progress(max(self.last_index, 1), self.tracker.new_inflights(), is_learner=is_learner)
        # A new member counts as active so that adding it cannot make check-quorum step down.
        pr.recent_active = True
        d.prs[node_id] = pr

    def _check_and_copy(self) -> _Draft:
        prs: ProgressMap = {}
        for node_id, pr in self.tracker.progress.items():
            c = Progress(pr.next, pr.inflights, is_learner=pr.is_learner)
            c.match = pr.match
            c.state = pr.state
            c.pending_snapshot = pr.pending_snapshot
            c.snapshot_in_flight = pr.snapshot_in_flight
            c.snapshot_acked = pr.snapshot_acked
            c.recent_active = pr.recent_active
            c.msg_app_flow_paused = pr.msg_app_flow_paused
            c.lease_tick = pr.lease_tick
            prs[node_id] = c
        d = _Draft(self.tracker.config, prs)
        _check_invariants(d)
        return d

    def _check_and_return(self, d: _Draft) -> tuple[TrackerConfig, ProgressMap]:
        _check_invariants(d)
        return d.freeze(), d.prs


def _check_invariants(d: _Draft) -> None:
    for ids in (d.incoming, d.outgoing, d.learners, d.learners_next):
        for node_id in ids:
            if node_id not in d.prs:
                raise ConfigError(f"no progress for {node_id}")
    for node_id in d.learners_next:
        if node_id not in d.outgoing:
            raise ConfigError(f"{node_id} is in learners_next but not outgoing voters")
        if d.prs[node_id].is_learner:
            raise ConfigError(f"{node_id} is in learners_next but already marked learner")
    for node_id in d.learners:
        if node_id in d.outgoing or node_id in d.incoming:
            raise ConfigError(f"{node_id} is both learner and voter")
        if not d.prs[node_id].is_learner:
            raise ConfigError(f"{node_id} is a learner but its progress is not marked learner")
    if not d.outgoing:
        if d.learners_next:
            raise ConfigError("learners_next must be empty outside a joint config")
        if d.auto_leave:
            raise ConfigError("auto_leave must be false outside a joint config")


def restore(tracker: ProgressTracker, last_index: int, cs: ConfState) -> None:
    """Install the configuration described by `cs` into an empty `tracker`."""
    outgoing = tuple(ConfChangeSingle(ConfChangeType.ADD_NODE, i) for i in cs.voters_outgoing)
    incoming = (
        *(ConfChangeSingle(ConfChangeType.REMOVE_NODE, i) for i in cs.voters_outgoing),
        *(ConfChangeSingle(ConfChangeType.ADD_NODE, i) for i in cs.voters),
        *(ConfChangeSingle(ConfChangeType.ADD_LEARNER_NODE, i) for i in cs.learners),
        *(ConfChangeSingle(ConfChangeType.ADD_LEARNER_NODE, i) for i in cs.learners_next),
    )

    def step(result: tuple[TrackerConfig, ProgressMap]) -> None:
        tracker.config, tracker.progress = result

    if not outgoing:
        for cc in incoming:
            step(Changer(tracker, last_index).simple((cc,)))
    else:
        for cc in outgoing:
            step(Changer(tracker, last_index).simple((cc,)))
        step(Changer(tracker, last_index).enter_joint(cs.auto_leave, incoming))
