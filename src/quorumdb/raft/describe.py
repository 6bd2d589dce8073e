"""Canonical one-line renderings of Raft values, in etcd's spelling, for tests and traces.

Datadriven test expectations are nothing but this text, so it must stay stable: change it only
together with the expectations it produces.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from quorumdb.raft.messages import (
    ConfChange,
    ConfChangeTransition,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SoftState,
)
from quorumdb.raft.ready import Ready, StorageAppend, StorageApply

__all__ = [
    "describe_conf_change",
    "describe_entries",
    "describe_entry",
    "describe_hard_state",
    "describe_message",
    "describe_ready",
    "describe_snapshot",
    "describe_soft_state",
    "describe_storage_append",
    "describe_storage_apply",
    "message_type_name",
]

_NAMES = {
    MessageType.HUP: "MsgHup",
    MessageType.BEAT: "MsgBeat",
    MessageType.PROP: "MsgProp",
    MessageType.APP: "MsgApp",
    MessageType.APP_RESP: "MsgAppResp",
    MessageType.VOTE: "MsgVote",
    MessageType.VOTE_RESP: "MsgVoteResp",
    MessageType.SNAP: "MsgSnap",
    MessageType.SNAP_RESP: "MsgSnapResp",
    MessageType.HEARTBEAT: "MsgHeartbeat",
    MessageType.HEARTBEAT_RESP: "MsgHeartbeatResp",
    MessageType.UNREACHABLE: "MsgUnreachable",
    MessageType.CHECK_QUORUM: "MsgCheckQuorum",
    MessageType.TRANSFER_LEADER: "MsgTransferLeader",
    MessageType.TIMEOUT_NOW: "MsgTimeoutNow",
    MessageType.READ_INDEX: "MsgReadIndex",
    MessageType.READ_INDEX_RESP: "MsgReadIndexResp",
    MessageType.PRE_VOTE: "MsgPreVote",
    MessageType.PRE_VOTE_RESP: "MsgPreVoteResp",
    MessageType.STORAGE_APPEND_RESP: "MsgStorageAppendResp",
    MessageType.STORAGE_APPLY_RESP: "MsgStorageApplyResp",
}


def message_type_name(t: MessageType) -> str:
    return _NAMES[t]


_CC_PREFIX = {
    ConfChangeType.ADD_NODE: "v",
    ConfChangeType.ADD_LEARNER_NODE: "l",
    ConfChangeType.REMOVE_NODE: "r",
}
_decode_conf_change = msgspec.msgpack.Decoder(ConfChange).decode


def describe_conf_change(cc: ConfChange) -> str:
    """`v4 l5 r3` (etcd's spelling), `transition=explicit v4 v5`, or `leave-joint`."""
    parts = [f"{_CC_PREFIX[c.type]}{c.node_id}" for c in cc.changes]
    if cc.transition != ConfChangeTransition.AUTO:
        parts.insert(0, f"transition={cc.transition.name.lower().removeprefix('joint_')}")
    return " ".join(parts) if cc.changes else "leave-joint"


def describe_entry(e: Entry) -> str:
    """`1/3 EntryNormal "data"` (term/index, type, data); `1/4 EntryConfChange v4 r3`."""
    if e.type == EntryType.CONF_CHANGE:
        try:
            cc = describe_conf_change(_decode_conf_change(e.data))
            return f"{e.term}/{e.index} EntryConfChange {cc}"
        except msgspec.DecodeError:
            pass  # not an encoded ConfChange: show the raw bytes like any other entry
    kind = "EntryNormal" if e.type == EntryType.NORMAL else "EntryConfChange"
    data = e.data.decode("utf-8", "backslashreplace")
    return f'{e.term}/{e.index} {kind} "{data}"' if e.data else f"{e.term}/{e.index} {kind}"


def describe_entries(es: Iterable[Entry]) -> str:
    return "[" + ", ".join(describe_entry(e) for e in es) + "]"


def describe_hard_state(hs: HardState) -> str:
    return f"Term:{hs.term} Vote:{hs.vote} Commit:{hs.commit}"


def describe_soft_state(ss: SoftState) -> str:
    return f"Lead:{ss.lead} State:{ss.raft_state.name}"


def describe_snapshot(s: Snapshot) -> str:
    m = s.metadata
    cs = m.conf_state
    return (
        f"Index:{m.index} Term:{m.term} ConfState:Voters:{list(cs.voters)} "
        f"VotersOutgoing:{list(cs.voters_outgoing)} Learners:{list(cs.learners)} "
        f"LearnersNext:{list(cs.learners_next)} AutoLeave:{cs.auto_leave}"
    )


def describe_message(m: Message) -> str:
    """`1->2 MsgApp Term:1 Log:1/3 Commit:2 Entries:[...]`, etcd's DescribeMessage shape."""
    s = f"{m.from_}->{m.to} {_NAMES[m.type]} Term:{m.term} Log:{m.log_term}/{m.index}"
    if m.reject:
        s += f" Rejected (Hint: {m.reject_hint})"
    if m.commit:
        s += f" Commit:{m.commit}"
    if m.entries:
        s += " Entries:" + describe_entries(m.entries)
    if m.snapshot is not None:
        c = m.snapshot
        s += f" Snapshot:Index:{c.metadata.index} Term:{c.metadata.term} Offset:{c.offset}"
        s += f" Len:{len(c.data)} Done:{c.done}"
    if m.context:
        s += f" Context:{m.context.decode('utf-8', 'backslashreplace')}"
    if m.lease_tick:
        s += f" Lease:{m.lease_tick}"
    return s


def describe_ready(rd: Ready) -> str:
    """Multi-line rendering of a Ready, one section per non-empty field."""
    lines: list[str] = []
    if rd.soft_state is not None:
        lines.append(describe_soft_state(rd.soft_state))
    if rd.hard_state is not None:
        lines.append("HardState " + describe_hard_state(rd.hard_state))
    if rd.read_states:
        lines.append("ReadStates:")
        lines.extend(
            f"  Index:{r.index} Ctx:{r.request_ctx.decode('utf-8', 'backslashreplace')}"
            for r in rd.read_states
        )
    if rd.entries:
        lines.append("Entries:")
        lines.extend("  " + describe_entry(e) for e in rd.entries)
    if rd.snapshot is not None:
        lines.append("Snapshot " + describe_snapshot(rd.snapshot))
    if rd.committed_entries:
        lines.append("CommittedEntries:")
        lines.extend("  " + describe_entry(e) for e in rd.committed_entries)
    if rd.messages:
        lines.append("Messages:")
        lines.extend("  " + describe_message(m) for m in rd.messages)
    if rd.persisted_messages:
        lines.append("OnSync:")
        lines.extend("  " + describe_message(m) for m in rd.persisted_messages)
    if rd.storage_append is not None:
        lines.extend(describe_storage_append(rd.storage_append))
    if rd.storage_apply is not None:
        lines.extend(describe_storage_apply(rd.storage_apply))
    return "\n".join(lines)


def describe_storage_append(sa: StorageAppend) -> list[str]:
    """The append thread's work: what to write, and the responses released once durable."""
    head = "StorageAppend"
    if sa.must_sync:
        head += " MustSync"
    if sa.hard_state is not None:
        head += " HardState " + describe_hard_state(sa.hard_state)
    return _describe_storage_work(head, sa)


def describe_storage_apply(sa: StorageApply) -> list[str]:
    """The apply thread's work: what to apply, and the response stepped back after."""
    return _describe_storage_work("StorageApply", sa)


def _describe_storage_work(head: str, sa: StorageAppend | StorageApply) -> list[str]:
    lines = [head + ":"]
    if sa.snapshot is not None:
        lines.append("  Snapshot " + describe_snapshot(sa.snapshot))
    if sa.entries:
        lines.append("  Entries:")
        lines.extend("    " + describe_entry(e) for e in sa.entries)
    lines.append("  Responses:")
    lines.extend("    " + describe_message(m) for m in sa.responses)
    return lines
