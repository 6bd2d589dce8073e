"""Who leads every partition, known on every node: leadership reports between brokers.

Why. A topic's partitions are hosted only on their replicas, but a Kafka client may ask any
broker for metadata, and expects the leader, leader epoch and ISR of every partition. Each
node therefore reports to every other node the partitions it leads (with the leader epoch,
i.e. the Raft term, and the ISR) and the partitions it hosts but is still catching up
(`kafka.catch_up`): at once when something changes, and every `interval_s` anyway.

A report replaces everything the same node said before. For a partition, the freshest
claim with the highest epoch wins (two nodes claiming the same epoch cannot both be leaders
in Raft, so this only orders a stale claim behind a new one); a node silent for
`expire_s` is taken to be down and its claims are ignored, so a dead leader disappears
from metadata (LEADER_NOT_AVAILABLE, as Kafka answers) until its successor reports.
This is soft state, like the metadata cache of a Kafka broker: it trails the truth by a
network delay, and the Raft groups stay the only authority (a produce to a node that is not
the leader is refused there).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

__all__ = ["LeaderBoard", "LeaderClaim", "LeaderReport", "decode_report", "encode_report"]


class LeaderClaim(msgspec.Struct, frozen=True, array_like=True):
    group: int
    epoch: int
    isr: list[int]


class LeaderReport(msgspec.Struct, frozen=True, array_like=True):
    node: int
    leads: list[LeaderClaim]
    catching_up: list[int]  # groups hosted on `node` that still miss data


encode_report = msgspec.msgpack.Encoder().encode
decode_report = msgspec.msgpack.Decoder(LeaderReport).decode


@dataclass(slots=True)
class _NodeState:
    at: float
    leads: dict[int, LeaderClaim] = field(default_factory=dict)
    catching_up: frozenset[int] = frozenset()


class LeaderBoard:
    """The latest report of every node; answers who leads a partition right now."""

    def __init__(self, *, expire_s: float) -> None:
        self.expire_s = expire_s
        self._nodes: dict[int, _NodeState] = {}

    def note(self, report: LeaderReport, now: float) -> bool:
        """Take a node's report; True if it changed what that node claims."""
        before = self._nodes.get(report.node)
        leads = {c.group: c for c in report.leads}
        state = _NodeState(at=now, leads=leads, catching_up=frozenset(report.catching_up))
        self._nodes[report.node] = state
        return before is None or before.leads != leads or before.catching_up != state.catching_up

    def forget(self, node: int) -> None:
        self._nodes.pop(node, None)

    def leader(self, group: int, now: float) -> tuple[int, LeaderClaim] | None:
        """(node, claim) of the current leader of `group`, or None if no live node claims it."""
        best: tuple[int, LeaderClaim] | None = None
        for node, st in self._nodes.items():
            if now - st.at > self.expire_s:
                continue
            claim = st.leads.get(group)
            if claim is not None and (best is None or claim.epoch > best[1].epoch):
                best = (node, claim)
        return best

    def catching_up(self, node: int, group: int) -> bool:
        """Does `node` still miss data of `group` (as of its last report)?"""
        st = self._nodes.get(node)
        return st is not None and group in st.catching_up
