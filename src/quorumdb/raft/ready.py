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

`effects(rd)` spells that sequence out for one Ready (tests check it; `raft.testing`'s
in-process clusters follow it as it is). The node's driver
(`host.node_host`, run by the asyncio runtime and by the simulator alike) follows it across
all of a node's groups, splitting it at Persist so that every group's Persist shares one WAL
write and one fdatasync.

Asynchronous storage writes (`Config.async_storage_writes`, etcd's AsyncStorageWrites). The
lock-step contract above idles the core while its driver persists: no Ready until `advance`.
With the option on, a Ready never waits for an earlier one and there is no `advance`. Its local
work comes as two records instead of `entries`/`hard_state`/`snapshot`/`committed_entries`/
`persisted_messages` (which stay empty):

- `storage_append` (`StorageAppend`): write its snapshot, entries and hard state (fsync if
  `must_sync`), after every earlier `StorageAppend`; once durable, deliver its `responses`:
  those addressed to peers go on the wire (append acks, vote grants: they promise durability),
  those addressed to this node are stepped back into it (`RawNode.step`), the last being a
  `STORAGE_APPEND_RESP` that tells the core what is now durable here.
- `storage_apply` (`StorageApply`): apply its snapshot, then its entries, after every earlier
  `StorageApply`; then step its `responses` (a `STORAGE_APPLY_RESP`) back. The core puts only
  committed entries that the driver has already reported durable here in it (and a snapshot
  only once its `StorageAppend` was acknowledged), so it may be applied while later
  `StorageAppend`s are still being written: that is how work overlaps an fsync.

`messages` may still be sent at once, as in lock-step. So the core always knows which entries
are durable here and which are applied, and the driver needs no other door into it.
"""

from __future__ import annotations

from dataclasses import dataclass

from quorumdb.raft.messages import Entry, HardState, Message, ReadState, Snapshot, SoftState

__all__ = [
    "Advance",
    "Apply",
    "Effect",
    "Persist",
    "Ready",
    "Send",
    "StorageAppend",
    "StorageApply",
    "effects",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageAppend:
    """Local work for the append thread (etcd's MsgStorageAppend): persist, then respond."""

    hard_state: HardState | None = None
    entries: list[Entry]
    snapshot: Snapshot | None = None
    must_sync: bool
    # Released only once the write is durable: to peers on the wire, to this node stepped.
    responses: list[Message]

    def needs_write(self) -> bool:
        return self.snapshot is not None or bool(self.entries) or self.hard_state is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageApply:
    """Local work for the apply thread (etcd's MsgStorageApply): apply, then respond."""

    snapshot: Snapshot | None = None
    entries: list[Entry]  # committed and durable here
    responses: list[Message]  # stepped back into this node once applied


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
    # With asynchronous storage writes only (see the module docstring).
    storage_append: StorageAppend | None = None
    storage_apply: StorageApply | None = None

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
