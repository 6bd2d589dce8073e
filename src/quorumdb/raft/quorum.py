"""Quorum arithmetic, pure and shared by commit, election, ReadIndex and lease checks.

A `MajorityConfig` is a set of voter ids; a `JointConfig` pairs the incoming and outgoing
majorities of a membership change (Raft thesis §4.3): a decision needs both. The functions take
a lookup from voter id to an acknowledged value (a match index, a lease tick), so the same
code answers "what is committed" and "since when has a quorum heard from me".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from enum import IntEnum

__all__ = ["INFINITE", "JointConfig", "MajorityConfig", "VoteResult"]

INFINITE = 1 << 63
"""The value an empty majority reports, so it never limits a joint decision."""


class VoteResult(IntEnum):
    PENDING = 1
    LOST = 2
    WON = 3


class MajorityConfig:
    """An immutable set of voters deciding by simple majority."""

    __slots__ = ("ids",)

    def __init__(self, ids: Iterable[int] = ()) -> None:
        self.ids: tuple[int, ...] = tuple(sorted(set(ids)))

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MajorityConfig) and self.ids == other.ids

    def __hash__(self) -> int:
        return hash(self.ids)

    def __repr__(self) -> str:
        return "(" + " ".join(str(i) for i in self.ids) + ")"

    def committed_index(self, acked: Callable[[int], int | None]) -> int:
        """Largest value that a majority has acknowledged (missing acks count as 0)."""
        n = len(self.ids)
        if n == 0:
            return INFINITE
        vals = sorted((acked(i) or 0 for i in self.ids), reverse=True)
        return vals[n // 2]

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """WON once a majority granted, LOST once a majority is out of reach, else PENDING."""
        n = len(self.ids)
        if n == 0:
            return VoteResult.WON
        granted = rejected = 0
        for i in self.ids:
            v = votes.get(i)
            if v is None:
                continue
            if v:
                granted += 1
            else:
                rejected += 1
        q = n // 2 + 1
        if granted >= q:
            return VoteResult.WON
        if granted + (n - granted - rejected) >= q:
            return VoteResult.PENDING
        return VoteResult.LOST


class JointConfig:
    """Incoming and outgoing majorities; outgoing is empty outside a joint configuration."""

    __slots__ = ("incoming", "outgoing")

    def __init__(
        self, incoming: MajorityConfig | None = None, outgoing: MajorityConfig | None = None
    ) -> None:
        self.incoming = incoming if incoming is not None else MajorityConfig()
        self.outgoing = outgoing if outgoing is not None else MajorityConfig()

    def __repr__(self) -> str:
        if len(self.outgoing):
            return f"{self.incoming}&&{self.outgoing}"
        return repr(self.incoming)

    def is_joint(self) -> bool:
        return len(self.outgoing) > 0

    def ids(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.incoming.ids) | set(self.outgoing.ids)))

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.incoming or node_id in self.outgoing

    def committed_index(self, acked: Callable[[int], int | None]) -> int:
        return min(self.incoming.committed_index(acked), self.outgoing.committed_index(acked))

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        r1 = self.incoming.vote_result(votes)
        r2 = self.outgoing.vote_result(votes)
        if r1 == r2:
            return r1
        if VoteResult.LOST in (r1, r2):
            return VoteResult.LOST
        return VoteResult.PENDING
