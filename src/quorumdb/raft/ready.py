"""`Ready`: everything the core asks its driver to do, and the one function that orders it.

The driver's contract, written once (etcd's node.go Ready docs; raft-rs numbers each Ready):

1. Send `messages` whenever convenient, even before persisting: they promise nothing durable
   (the leader's appends may go out in parallel with its own write, thesis §10.2.1).
2. Persist `snapshot`, `entries` and `hard_state` (in that order, atomically if possible);
   fsync when `must_sync` is set.
3. Only then send `persisted_messages`: vote grants and append acks promise that what they
   acknowledge is on disk.
4. Apply the snapshot, then `committed_entries`, to the state machine; serve `read_states` once
   the applied index reaches theirs.
5. Call `RawNode.advance(ready)` with this very Ready.

`effects(rd)` spells that sequence out for one Ready (tests check it). The node's driver
(`host.node_host`, run by the asyncio runtime and by the simulator alike) follows it across
all of a node's groups, splitting it at Persist so that every group's Persist shares one WAL
write and one fdatasync.
"""

from __future__ import annotations

from dataclasses import dataclass

from quorumdb.raft.messages import Entry, HardState, Message, ReadState, Snapshot, SoftState

__all__ = ["Advance", "Apply", "Effect", "Persist", "Ready", "Send", "effects"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    number: int
    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    read_states: list[ReadState]
    entries: list[Entry]
    snapshot: Snapshot | None = None
    committed_entries: list[Entry]
    messages: list[Message]
    persisted_messages: list[Message]
    must_sync: bool = False

    def needs_persist(self) -> bool:
        return self.snapshot is not None or bool(self.entries) or self.hard_state is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """Put these messages on the wire."""

    messages: list[Message]


@dataclass(frozen=True, slots=True, kw_only=True)
class Persist:
    """Write (and, if `sync`, fsync) the snapshot, entries and hard state."""

    snapshot: Snapshot | None
    entries: list[Entry]
    hard_state: HardState | None
    sync: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Apply:
    """Apply a snapshot and committed entries to the state machine; then serve read states."""

    snapshot: Snapshot | None
    entries: list[Entry]
    read_states: list[ReadState]


@dataclass(frozen=True, slots=True, kw_only=True)
class Advance:
    """Tell the core this Ready is handled."""

    ready: Ready


Effect = Send | Persist | Apply | Advance


def effects(rd: Ready) -> list[Effect]:
    """The driver's contract as data: what to do for `rd`, in order."""
    out: list[Effect] = []
    if rd.messages:
        out.append(Send(messages=rd.messages))
    if rd.needs_persist():
        out.append(
            Persist(
                snapshot=rd.snapshot,
                entries=rd.entries,
                hard_state=rd.hard_state,
                sync=rd.must_sync,
            )
        )
    if rd.persisted_messages:
        out.append(Send(messages=rd.persisted_messages))
    if rd.snapshot is not None or rd.committed_entries or rd.read_states:
        out.append(
            Apply(snapshot=rd.snapshot, entries=rd.committed_entries, read_states=rd.read_states)
        )
    out.append(Advance(ready=rd))
    return out
