"""Anomaly kinds, isolation levels, and which anomalies each level forbids.

The kinds are Adya's (Adya, Liskov & O'Neil, "Generalized Isolation Level Definitions") as
Elle names and detects them (Kingsbury & Alvaro, "Elle: Inferring Isolation Anomalies from
Experimental Observations", VLDB 2020), plus Elle's non-cycle anomalies. Which level forbids
which kind follows Elle's ``elle.consistency-model``, reduced to five levels:

- read-uncommitted forbids G0 (and garbage that no history of any database could explain:
  duplicate elements, cyclic version orders, reads of values nobody wrote);
- read-committed adds G1a, G1b, G1c and incompatible orders (which imply a dirty read);
- snapshot-isolation adds G-single, G-nonadjacent, lost update and internal inconsistency.
  G-nonadjacent (2+ anti-dependency edges, no two adjacent) is forbidden too: generalized SI
  allows a cycle only if two of its anti-dependency edges are adjacent (Cerone & Gotsman,
  "Analysing Snapshot Isolation"; Elle forbids it at SI for that reason);
- serializable adds G2-item. As in Elle, the dependency graph has data edges only (ww, wr,
  rw): a process's transactions need not be ordered the way the process ran them;
- strict-serializable adds process and real-time order edges to the graph, and forbids every
  cycle, the ``-process`` and ``-realtime`` variants included.
"""

from __future__ import annotations

from enum import IntFlag, StrEnum

__all__ = [
    "CYCLE_KINDS",
    "EdgeKind",
    "Isolation",
    "Kind",
    "forbidden_kinds",
]


class EdgeKind(IntFlag):
    """Why one transaction must precede another in any serial order (a bit set per pair)."""

    WW = 1
    """Write-write: the second overwrote (or appended after) the first's write."""
    WR = 2
    """Write-read: the second read what the first wrote."""
    RW = 4
    """Read-write (anti-dependency): the first read a version the second overwrote."""
    PROCESS = 8
    """The same process ran the first, completed, then invoked the second."""
    REALTIME = 16
    """The first completed before the second was invoked."""

    @property
    def label(self) -> str:
        """The short name used in cycles: ``ww``, ``wr``, ``rw``, ``process``, ``realtime``."""
        return _LABELS[self]


_LABELS = {
    EdgeKind.WW: "ww",
    EdgeKind.WR: "wr",
    EdgeKind.RW: "rw",
    EdgeKind.PROCESS: "process",
    EdgeKind.REALTIME: "realtime",
}


class Kind(StrEnum):
    """An anomaly class, named as Elle names it."""

    G0 = "G0"
    """Write cycle: a cycle of ww edges."""
    G1A = "G1a"
    """Aborted read: a committed read saw a write of a failed transaction."""
    G1B = "G1b"
    """Intermediate read: a read saw a state another transaction wrote and then overwrote."""
    G1C = "G1c"
    """Circular information flow: a cycle of ww and wr edges, at least one wr."""
    G_SINGLE = "G-single"
    """Read skew: a cycle with exactly one rw edge."""
    G_NONADJACENT = "G-nonadjacent"
    """A cycle with two or more rw edges, no two adjacent."""
    G2_ITEM = "G2-item"
    """Anti-dependency cycle: two or more rw edges, some adjacent."""
    G0_PROCESS = "G0-process"
    G1C_PROCESS = "G1c-process"
    G_SINGLE_PROCESS = "G-single-process"
    G_NONADJACENT_PROCESS = "G-nonadjacent-process"
    G2_ITEM_PROCESS = "G2-item-process"
    G0_REALTIME = "G0-realtime"
    G1C_REALTIME = "G1c-realtime"
    G_SINGLE_REALTIME = "G-single-realtime"
    G_NONADJACENT_REALTIME = "G-nonadjacent-realtime"
    G2_ITEM_REALTIME = "G2-item-realtime"
    LOST_UPDATE = "lost-update"
    """Two committed transactions read the same version of a key and both wrote the key."""
    INCOMPATIBLE_ORDER = "incompatible-order"
    """Two reads of one list are not prefixes of one another: no single order of appends."""
    DUPLICATE_ELEMENTS = "duplicate-elements"
    """A read of a list holds an element more than once (each is appended once)."""
    INTERNAL = "internal"
    """A transaction's read disagrees with its own earlier reads and writes of the key."""
    GARBAGE_READ = "garbage-read"
    """A read returned a value no transaction in the history ever wrote."""
    CYCLIC_VERSIONS = "cyclic-versions"
    """The inferred version order of a register is cyclic."""

    @property
    def is_cycle(self) -> bool:
        """Whether this kind is a cycle in the dependency graph."""
        return self in CYCLE_KINDS


_BASE_CYCLES = (Kind.G0, Kind.G1C, Kind.G_SINGLE, Kind.G_NONADJACENT, Kind.G2_ITEM)
_PROCESS = (
    Kind.G0_PROCESS,
    Kind.G1C_PROCESS,
    Kind.G_SINGLE_PROCESS,
    Kind.G_NONADJACENT_PROCESS,
    Kind.G2_ITEM_PROCESS,
)
_REALTIME = (
    Kind.G0_REALTIME,
    Kind.G1C_REALTIME,
    Kind.G_SINGLE_REALTIME,
    Kind.G_NONADJACENT_REALTIME,
    Kind.G2_ITEM_REALTIME,
)
CYCLE_KINDS = frozenset(_BASE_CYCLES + _PROCESS + _REALTIME)
"""Every kind that is a cycle."""

VARIANTS: dict[tuple[Kind, str], Kind] = {
    **{(base, ""): base for base in _BASE_CYCLES},
    **{(base, "-process"): k for base, k in zip(_BASE_CYCLES, _PROCESS, strict=True)},
    **{(base, "-realtime"): k for base, k in zip(_BASE_CYCLES, _REALTIME, strict=True)},
}
"""(base kind, suffix) -> the kind; the suffix says which order edges a cycle needs."""


class Isolation(StrEnum):
    """An isolation level a history may be checked against."""

    READ_UNCOMMITTED = "read-uncommitted"
    READ_COMMITTED = "read-committed"
    SNAPSHOT_ISOLATION = "snapshot-isolation"
    SERIALIZABLE = "serializable"
    STRICT_SERIALIZABLE = "strict-serializable"

    @classmethod
    def parse(cls, name: Isolation | str) -> Isolation:
        """The level called ``name`` (``snapshot`` is snapshot-isolation); ValueError otherwise."""
        if isinstance(name, Isolation):
            return name
        if name == "snapshot":
            return cls.SNAPSHOT_ISOLATION
        try:
            return cls(name)
        except ValueError:
            choices = ", ".join([*(level.value for level in cls), "snapshot"])
            raise ValueError(
                f"unknown isolation level {name!r} (expected one of: {choices})"
            ) from None

    @property
    def order_edges(self) -> EdgeKind:
        """The order edges this level adds to the dependency graph (none below strict)."""
        if self is Isolation.STRICT_SERIALIZABLE:
            return EdgeKind.PROCESS | EdgeKind.REALTIME
        return EdgeKind(0)


_READ_UNCOMMITTED = frozenset(
    {Kind.G0, Kind.DUPLICATE_ELEMENTS, Kind.CYCLIC_VERSIONS, Kind.GARBAGE_READ}
)
_READ_COMMITTED = _READ_UNCOMMITTED | {Kind.G1A, Kind.G1B, Kind.G1C, Kind.INCOMPATIBLE_ORDER}
_SNAPSHOT = _READ_COMMITTED | {
    Kind.G_SINGLE,
    Kind.G_NONADJACENT,
    Kind.LOST_UPDATE,
    Kind.INTERNAL,
}
_SERIALIZABLE = _SNAPSHOT | {Kind.G2_ITEM}
_FORBIDDEN = {
    Isolation.READ_UNCOMMITTED: _READ_UNCOMMITTED,
    Isolation.READ_COMMITTED: _READ_COMMITTED,
    Isolation.SNAPSHOT_ISOLATION: _SNAPSHOT,
    Isolation.SERIALIZABLE: _SERIALIZABLE,
    Isolation.STRICT_SERIALIZABLE: frozenset(Kind),
}


def forbidden_kinds(level: Isolation) -> frozenset[Kind]:
    """The anomaly kinds a history must not exhibit to satisfy ``level``."""
    return _FORBIDDEN[level]
