"""Raft's safety properties (paper Figure 3), checked incrementally from plain observations.

A driver (the simulator, or a harness around real nodes) reports what it sees: who became
leader in which term and what its log holds, which entry each node applied at each index, and
now and then every node's log. The checker knows nothing of the Raft code; it only compares
those observations against:

- Election safety: at most one leader per term.
- Leader completeness: a leader's log holds every entry committed before it was elected.
- State machine safety: no two nodes apply different entries at one index (which also shows
  that committed entries survive crashes: a lost one would be replaced by a different one).
- Log matching: if two logs hold an entry with the same index and term, they are identical up
  to that index.

Entries are identified by (term, data); data is compared exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

__all__ = ["LogEntry", "RaftSafetyChecker", "SafetyViolation", "ViolationKind"]

LogEntry = tuple[int, int, bytes]
"""(index, term, data) of one log entry."""


class ViolationKind(Enum):
    ELECTION_SAFETY = "election-safety"
    LEADER_COMPLETENESS = "leader-completeness"
    STATE_MACHINE_SAFETY = "state-machine-safety"
    LOG_MATCHING = "log-matching"


@dataclass(frozen=True, slots=True, kw_only=True)
class SafetyViolation:
    kind: ViolationKind
    message: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}"


class RaftSafetyChecker:
    """Accumulates observations; `violations` lists every broken property, first first."""

    __slots__ = ("_applied", "_first_applier", "_leaders", "violations")

    def __init__(self) -> None:
        self._leaders: dict[int, int] = {}
        self._applied: dict[int, tuple[int, bytes]] = {}
        self._first_applier: dict[int, int] = {}
        self.violations: list[SafetyViolation] = []

    def _fail(self, kind: ViolationKind, message: str) -> None:
        self.violations.append(SafetyViolation(kind=kind, message=message))

    def on_leader(
        self,
        node: int,
        term: int,
        first_index: int,
        last_index: int,
        term_at: Callable[[int], int],
    ) -> None:
        """`node` became leader of `term`; its log covers [first_index, last_index]."""
        other = self._leaders.setdefault(term, node)
        if other != node:
            self._fail(
                ViolationKind.ELECTION_SAFETY, f"nodes {other} and {node} both led term {term}"
            )
        for index in sorted(self._applied):
            committed_term, _ = self._applied[index]
            if committed_term >= term or index < first_index:
                continue
            if index > last_index:
                self._fail(
                    ViolationKind.LEADER_COMPLETENESS,
                    f"leader {node} of term {term} lacks committed entry {index} "
                    f"(term {committed_term}); its log ends at {last_index}",
                )
                return
            have = term_at(index)
            if have != committed_term:
                self._fail(
                    ViolationKind.LEADER_COMPLETENESS,
                    f"leader {node} of term {term} has term {have} at index {index}, "
                    f"where term {committed_term} was committed",
                )
                return

    def on_apply(self, node: int, index: int, term: int, data: bytes) -> None:
        """`node` applied the entry (term, data) at `index`."""
        seen = self._applied.get(index)
        if seen is None:
            self._applied[index] = (term, data)
            self._first_applier[index] = node
            return
        if seen != (term, data):
            self._fail(
                ViolationKind.STATE_MACHINE_SAFETY,
                f"index {index}: node {self._first_applier[index]} applied term {seen[0]} "
                f"{_short(seen[1])}, node {node} applied term {term} {_short(data)}",
            )

    def check_logs(self, logs: Mapping[int, Sequence[LogEntry]]) -> None:
        """Log matching across every pair of the given logs (each in index order)."""
        nodes = sorted(logs)
        maps = {n: {i: (t, d) for i, t, d in logs[n]} for n in nodes}
        for a_pos, a in enumerate(nodes):
            for b in nodes[a_pos + 1 :]:
                self._check_pair(a, maps[a], b, maps[b])

    def _check_pair(
        self,
        a: int,
        la: dict[int, tuple[int, bytes]],
        b: int,
        lb: dict[int, tuple[int, bytes]],
    ) -> None:
        common = sorted(set(la) & set(lb), reverse=True)
        matched = False
        for i in common:
            ea, eb = la[i], lb[i]
            if not matched:
                matched = ea[0] == eb[0]
            if matched and ea != eb:
                self._fail(
                    ViolationKind.LOG_MATCHING,
                    f"nodes {a} and {b} agree on a later (index, term) but differ at index {i}: "
                    f"term {ea[0]} {_short(ea[1])} vs term {eb[0]} {_short(eb[1])}",
                )
                return

    @property
    def committed_count(self) -> int:
        return len(self._applied)


def _short(data: bytes) -> str:
    return repr(data[:24]) + ("..." if len(data) > 24 else "")
