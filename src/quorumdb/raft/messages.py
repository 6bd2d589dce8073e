"""The values the Raft core exchanges with its driver and its peers.

Everything here crosses a process boundary (the wire, the WAL, snapshots), so each type is a
frozen `msgspec.Struct`; `raft/codec.py` is the one place that encodes them. The vocabulary is
etcd-raft's: a `Message` has a `MessageType`, `HardState` is what must be durable before a vote
or an append is acknowledged, `ConfState` is the membership a snapshot carries.

Local messages (`HUP`, `BEAT`, `CHECK_QUORUM`, `UNREACHABLE`) never leave the node and carry
term 0; every other message carries the sender's term. Storage responses
(`STORAGE_APPEND_RESP`, `STORAGE_APPLY_RESP`) never leave the node either: the core hands them
out inside a Ready's storage work (`raft.ready.StorageAppend`, `StorageApply`) and the driver
steps them back once that work is done (asynchronous storage writes, etcd's MsgStorage*Resp).
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

__all__ = [
    "NONE",
    "ConfChange",
    "ConfChangeSingle",
    "ConfChangeTransition",
    "ConfChangeType",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "Message",
    "MessageType",
    "ReadState",
    "Snapshot",
    "SnapshotChunk",
    "SnapshotMetadata",
    "SoftState",
    "StateType",
    "is_local_message",
    "is_response_message",
    "is_storage_response",
]

NONE = 0
"""The node id meaning "nobody" (no leader, no vote). Real node ids are positive."""


class MessageType(IntEnum):
    """Kinds of Raft messages, with etcd's meaning (rendered `MsgApp` etc. by `describe`)."""

    HUP = 0  # local: start an election
    BEAT = 1  # local: leader sends heartbeats
    PROP = 2  # proposal of entries (local, or forwarded from a follower)
    APP = 3  # AppendEntries
    APP_RESP = 4
    VOTE = 5  # RequestVote
    VOTE_RESP = 6
    SNAP = 7  # one chunk of an InstallSnapshot
    SNAP_RESP = 8  # acknowledges (or asks again for) a snapshot chunk
    HEARTBEAT = 9
    HEARTBEAT_RESP = 10
    UNREACHABLE = 11  # local: the driver could not deliver to `from_`
    CHECK_QUORUM = 12  # local: leader checks it heard from a quorum
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14  # transferee: campaign now, skipping pre-vote and leases
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18
    # Asynchronous storage writes: local, from the driver back to its own node.
    STORAGE_APPEND_RESP = 19  # the entries/snapshot up to `index`/`snapshot` are durable here
    STORAGE_APPLY_RESP = 20  # the state machine applied `entries` (up to `index`)


_LOCAL = frozenset(
    {MessageType.HUP, MessageType.BEAT, MessageType.UNREACHABLE, MessageType.CHECK_QUORUM}
)
_RESPONSES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.SNAP_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.UNREACHABLE,
        MessageType.READ_INDEX_RESP,
        MessageType.PRE_VOTE_RESP,
    }
)


_STORAGE_RESPONSES = frozenset({MessageType.STORAGE_APPEND_RESP, MessageType.STORAGE_APPLY_RESP})


def is_storage_response(t: MessageType) -> bool:
    """True for the acknowledgements of storage work the driver steps back into its node."""
    return t in _STORAGE_RESPONSES


def is_local_message(t: MessageType) -> bool:
    """True for messages a node sends to itself (they carry term 0)."""
    return t in _LOCAL


def is_response_message(t: MessageType) -> bool:
    """True for messages that answer a request (a peer that is not in the config may send them)."""
    return t in _RESPONSES


class EntryType(IntEnum):
    """What an entry's `data` holds."""

    NORMAL = 0  # opaque state machine command (empty data: the leader's no-op)
    CONF_CHANGE = 1  # an encoded `ConfChange`


class Entry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One log entry. `data` is opaque to the core."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


class HardState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """State that must be durable before the node answers a vote or an append (Figure 2)."""

    term: int = 0
    vote: int = NONE
    commit: int = 0

    def is_empty(self) -> bool:
        return self.term == 0 and self.vote == NONE and self.commit == 0


class ConfState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A membership: voters (incoming), outgoing voters while joint, learners."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    voters_outgoing: tuple[int, ...] = ()
    learners_next: tuple[int, ...] = ()
    auto_leave: bool = False


class SnapshotMetadata(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Which log prefix a snapshot replaces, and the membership at its last index."""

    conf_state: ConfState = ConfState()
    index: int = 0
    term: int = 0


class Snapshot(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A state machine image covering the log up to `metadata.index`."""

    metadata: SnapshotMetadata = SnapshotMetadata()
    data: bytes = b""

    def is_empty(self) -> bool:
        return self.metadata.index == 0


class SnapshotChunk(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A piece of a snapshot in flight (Raft paper Figure 13: offset, data, done)."""

    metadata: SnapshotMetadata
    offset: int
    data: bytes
    done: bool


class Message(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One Raft message. Fields a type does not use keep their defaults.

    `index`/`log_term` are the previous entry for `APP`, the last entry for votes, the acked
    index for `APP_RESP`; `reject_hint`/`log_term` on a rejected `APP_RESP` carry the fast
    back-off hint (thesis §5.3 optimisation). `context` carries ReadIndex request ids and the
    campaign kind of a leadership transfer. `lease_tick` is the leader's tick when it sent a
    heartbeat, echoed by the response, and dates the leader's lease.
    """

    type: MessageType
    to: int
    from_: int
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: list[Entry] = []
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: SnapshotChunk | None = None
    context: bytes = b""
    lease_tick: int = 0


class StateType(IntEnum):
    """The role a node plays."""

    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


class SoftState(msgspec.Struct, frozen=True, gc=False):
    """Volatile state worth telling the driver about when it changes (no persistence needed)."""

    lead: int = NONE
    raft_state: StateType = StateType.FOLLOWER


class ReadState(msgspec.Struct, frozen=True, gc=False):
    """A read request made linearizable: serve it once `applied >= index`."""

    index: int
    request_ctx: bytes


class ConfChangeType(IntEnum):
    """One membership operation."""

    ADD_NODE = 0
    REMOVE_NODE = 1
    ADD_LEARNER_NODE = 2


class ConfChangeTransition(IntEnum):
    """How a multi-change `ConfChange` leaves the joint configuration (etcd's ConfChangeV2)."""

    AUTO = 0  # simple when possible, else joint with an automatic leave
    JOINT_IMPLICIT = 1  # joint, left automatically by the leader
    JOINT_EXPLICIT = 2  # joint, left by an explicit empty ConfChange


class ConfChangeSingle(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Add or remove one node as voter or learner."""

    type: ConfChangeType
    node_id: int


class ConfChange(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A membership change; an empty `changes` leaves a joint configuration."""

    changes: tuple[ConfChangeSingle, ...] = ()
    transition: ConfChangeTransition = ConfChangeTransition.AUTO
    context: bytes = b""

    def leave_joint(self) -> bool:
        return not self.changes

    def enter_joint(self) -> tuple[bool, bool]:
        """Return (use_joint, auto_leave) following etcd's ConfChangeV2.EnterJoint."""
        if self.transition != ConfChangeTransition.AUTO or len(self.changes) > 1:
            auto_leave = self.transition in (
                ConfChangeTransition.AUTO,
                ConfChangeTransition.JOINT_IMPLICIT,
            )
            return True, auto_leave
        return False, False
