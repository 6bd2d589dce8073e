"""What the Elle checker returns: anomalies with their evidence, and the verdict for a level."""

from __future__ import annotations

from dataclasses import dataclass

from quorumdb.check.elle.history import Key, Model, Txn
from quorumdb.check.elle.levels import EdgeKind, Isolation, Kind, forbidden_kinds

__all__ = ["Anomaly", "ElleResult", "Step"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One edge of a cycle: why ``source`` must precede ``target``."""

    source: Txn
    target: Txn
    kind: EdgeKind
    key: Key | None
    """The key the dependency is about (None for process and real-time edges)."""
    explanation: str
    """A sentence naming the transactions by their ids (``T<id>``); renderers rename them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Anomaly:
    """One anomaly and the transactions that witness it.

    For a cycle, ``ops`` are the transactions in cycle order and ``cycle`` the edges between
    them (the last edge returns to the first transaction). For the other kinds ``cycle`` is
    empty and ``ops`` are the transactions involved: the reader first, then the writers or
    the other transactions it collides with.
    """

    kind: Kind
    ops: tuple[Txn, ...]
    cycle: tuple[Step, ...]
    key: Key | None
    """The key concerned, for the kinds about one key (None for cycles)."""
    explanation: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ElleResult:
    """The anomalies of a history, and whether it satisfies the isolation level asked for."""

    model: Model
    isolation: Isolation
    anomalies: tuple[Anomaly, ...]
    """Every anomaly found, forbidden at ``isolation`` or not, ordered by kind."""
    txn_count: int
    ok_count: int
    failed_count: int
    indeterminate_count: int
    """Transactions that ended ``info`` or never completed."""
    graph_txns: int
    """Transactions known to have committed: the ``ok`` ones, and ``info`` ones some read saw."""
    edge_count: int
    """Ordered pairs of transactions with at least one dependency (or order) edge."""
    cyclic_components: int
    """Strongly connected components of the dependency graph with more than one transaction."""

    @property
    def forbidden(self) -> tuple[Anomaly, ...]:
        """The anomalies ``isolation`` forbids."""
        banned = forbidden_kinds(self.isolation)
        return tuple(a for a in self.anomalies if a.kind in banned)

    @property
    def valid(self) -> bool:
        """Whether the history shows no anomaly ``isolation`` forbids."""
        return not self.forbidden

    def counts(self) -> dict[Kind, int]:
        """How many anomalies of each kind, in kind order."""
        out: dict[Kind, int] = {}
        for anomaly in self.anomalies:
            out[anomaly.kind] = out.get(anomaly.kind, 0) + 1
        return out
