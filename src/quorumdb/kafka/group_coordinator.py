"""Consumer-group membership: the classic rebalance protocol, as a pure state machine.

Theory of operation (Kafka's GroupCoordinator, KIP-62/KIP-394). A group moves through
EMPTY → PREPARING_REBALANCE (members (re)join) → COMPLETING_REBALANCE (the leader computes
the assignment) → STABLE (members heartbeat) and back to PREPARING_REBALANCE whenever a
member joins, leaves or misses its session timeout. Join and sync requests are answered
later, when the phase completes: each request passes a `reply` callback that the state
machine calls exactly once with the response body. Time is an input (`now_ms`), never read;
`tick(now_ms)` expires sessions and ends join phases that waited long enough.

Durability (Kafka's GroupMetadata records in __consumer_offsets). The coordinator is the
leader of the Raft group that stores the group's offsets, and any node may become it. What
it knows lives in memory, but every rebalance ends with a `GroupRecord` (generation,
protocol, leader, members with their subscriptions and assignments) handed to `store`, and
the SyncGroup answers wait until the store says it is durable: an assignment is handed out
only once it is committed, so no two assignments are ever given under one generation. An
emptied group stores its bumped generation too. A new coordinator `load`s the records first,
so that after a failover the group goes on in the same generation with the same members
(their sessions restarting), and generations never go backwards.

Invariants a host must keep: a coordinator serves one leadership term of one node, and its
`id_tag` names that term, so the member ids of two coordinators never collide (a fresh
counter per coordinator handed out, for example, the ids its predecessor on the same node
had given to other members still in the group). Its `load` completes before it serves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import msgspec

from quorumdb.kafka.protocol.errors import ErrorCode

__all__ = [
    "GroupCoordinator",
    "GroupRecord",
    "GroupState",
    "MemberRecord",
    "Reply",
    "Store",
    "decode_group_record",
    "encode_group_record",
]

Reply = Callable[[dict[str, Any]], None]


class MemberRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One member of a stored group (Kafka's MemberMetadata value)."""

    member_id: str
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    metadata: bytes  # its subscription, for the group's protocol
    assignment: bytes


class GroupRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A group as a new coordinator needs it (Kafka's GroupMetadataValue): stored when a
    rebalance completes, and when the group empties."""

    group_id: str
    generation: int
    protocol_type: str
    protocol: str
    leader: str
    members: tuple[MemberRecord, ...]


# Store(record, done): make `record` durable, then call done(True); done(False) if it could
# not be (this node is no longer the leader, or the write timed out). Later records of a
# group must become durable after earlier ones (the host proposes them in call order).
Store = Callable[[GroupRecord, Callable[[bool], None]], None]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(GroupRecord)


def encode_group_record(record: GroupRecord) -> bytes:
    return _encoder.encode(record)


def decode_group_record(data: bytes) -> GroupRecord:
    """Raises:
    ValueError: `data` is not a group record.
    """
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a group record: {exc}") from None


_INITIAL_JOIN_DELAY_MS = 100  # group.initial.rebalance.delay.ms (Kafka: 3000)
_SESSION_MIN_MS = 1_000
_SESSION_MAX_MS = 300_000


class GroupState(Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(slots=True)
class _Member:
    member_id: str
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    last_seen_ms: int
    assignment: bytes = b""
    join_reply: Reply | None = None
    sync_reply: Reply | None = None


@dataclass(slots=True)
class _Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    generation: int = 0
    protocol_type: str = ""
    protocol: str = ""
    leader: str = ""
    members: dict[str, _Member] = field(default_factory=dict)
    join_deadline_ms: int = 0
    initial_delay: bool = False
    pending_ids: set[str] = field(default_factory=set)  # ids handed out, not yet joined
    storing: bool = False  # the leader's assignment of this generation is being stored


def _join_error(code: ErrorCode, member_id: str = "") -> dict[str, Any]:
    return {
        "error_code": code,
        "generation_id": -1,
        "protocol_name": "",
        "leader": "",
        "member_id": member_id,
        "members": [],
    }


class GroupCoordinator:
    """The groups of one Raft group that this node coordinates during one leadership term.

    Not thread-safe; the host's loop drives it.

    Args:
        id_tag: part of every member id it hands out; unique to this coordinator (e.g. the
            node, the Raft group and the term), so that no other coordinator, before or
            after it, hands out the same ids.
        store: makes group records durable (see `Store`).
    """

    def __init__(self, id_tag: str, store: Store) -> None:
        self.groups: dict[str, _Group] = {}
        self._id_tag = id_tag
        self._store = store
        self._next_member = 0

    def _group(self, group_id: str) -> _Group:
        g = self.groups.get(group_id)
        if g is None:
            g = self.groups[group_id] = _Group(group_id=group_id)
        return g

    def _new_member_id(self, client_id: str) -> str:
        self._next_member += 1
        return f"{client_id or 'member'}-{self._id_tag}-{self._next_member}"

    # -- JoinGroup -----------------------------------------------------------------------------

    def join(self, req: dict[str, Any], client_host: str, now_ms: int, reply: Reply) -> None:
        group_id = req["group_id"]
        if not group_id:
            reply(_join_error(ErrorCode.INVALID_GROUP_ID))
            return
        session = req["session_timeout_ms"]
        if not _SESSION_MIN_MS <= session <= _SESSION_MAX_MS:
            reply(_join_error(ErrorCode.INVALID_SESSION_TIMEOUT))
            return
        g = self._group(group_id)
        protocols = [(p["name"], bytes(p["metadata"])) for p in req["protocols"]]
        if g.members and req["protocol_type"] != g.protocol_type:
            reply(_join_error(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
            return
        if g.members and not self._common_protocol(g, protocols):
            reply(_join_error(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
            return
        member_id = req["member_id"]
        client_id = req.get("client_id", "")
        if not member_id:
            # KIP-394: hand out an id and let the member come back with it.
            new_id = self._new_member_id(client_id)
            g.pending_ids.add(new_id)
            reply(_join_error(ErrorCode.MEMBER_ID_REQUIRED, new_id))
            return
        if member_id not in g.members and member_id not in g.pending_ids:
            reply(_join_error(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
            return
        g.pending_ids.discard(member_id)
        m = g.members.get(member_id)
        if m is None:
            m = _Member(
                member_id=member_id,
                client_id=client_id,
                client_host=client_host,
                session_timeout_ms=session,
                rebalance_timeout_ms=max(req.get("rebalance_timeout_ms", -1), session),
                protocol_type=req["protocol_type"],
                protocols=protocols,
                last_seen_ms=now_ms,
            )
            g.members[member_id] = m
            g.protocol_type = m.protocol_type
        else:
            m.protocols = protocols
            m.last_seen_ms = now_ms
        if m.join_reply is not None:
            m.join_reply(_join_error(ErrorCode.REBALANCE_IN_PROGRESS, member_id))
        m.join_reply = reply
        if g.state != GroupState.PREPARING_REBALANCE:
            self._prepare_rebalance(g, now_ms, initial=g.state == GroupState.EMPTY)
        self._maybe_complete_join(g, now_ms)

    def _common_protocol(self, g: _Group, protocols: list[tuple[str, bytes]]) -> str:
        names = [n for n, _ in protocols]
        for name in names:
            if all(any(p == name for p, _ in m.protocols) for m in g.members.values()):
                return name
        return ""

    def _prepare_rebalance(self, g: _Group, now_ms: int, *, initial: bool) -> None:
        for m in g.members.values():
            if m.sync_reply is not None:
                m.sync_reply({"error_code": ErrorCode.REBALANCE_IN_PROGRESS, "assignment": b""})
                m.sync_reply = None
        g.state = GroupState.PREPARING_REBALANCE
        g.storing = False  # an assignment still being stored is answered by no one now
        g.initial_delay = initial
        wait = max((m.rebalance_timeout_ms for m in g.members.values()), default=0)
        g.join_deadline_ms = now_ms + (_INITIAL_JOIN_DELAY_MS if initial else wait)

    def _maybe_complete_join(self, g: _Group, now_ms: int) -> None:
        if g.state != GroupState.PREPARING_REBALANCE:
            return
        everyone = all(m.join_reply is not None for m in g.members.values())
        expired = now_ms >= g.join_deadline_ms
        # A first rebalance waits out its short delay so that members starting together land
        # in one generation; later ones finish as soon as every known member has rejoined.
        if not expired and not (everyone and not g.initial_delay):
            return
        # Members that did not rejoin in time are out.
        for member_id in [i for i, m in g.members.items() if m.join_reply is None]:
            del g.members[member_id]
        if not g.members:
            self._empty(g)
            return
        g.generation += 1
        first = next(iter(g.members.values()))
        g.protocol = self._common_protocol(g, first.protocols)
        if g.leader not in g.members:
            g.leader = first.member_id
        g.state = GroupState.COMPLETING_REBALANCE
        members = [
            {
                "member_id": m.member_id,
                "group_instance_id": None,
                "metadata": dict(m.protocols).get(g.protocol, b""),
            }
            for m in g.members.values()
        ]
        for m in g.members.values():
            reply, m.join_reply = m.join_reply, None
            assert reply is not None
            reply(
                {
                    "error_code": ErrorCode.NONE,
                    "generation_id": g.generation,
                    "protocol_name": g.protocol,
                    "leader": g.leader,
                    "member_id": m.member_id,
                    "members": members if m.member_id == g.leader else [],
                }
            )

    # -- SyncGroup, Heartbeat, LeaveGroup ------------------------------------------------------

    def _check(self, group_id: str, member_id: str, generation: int) -> ErrorCode:
        g = self.groups.get(group_id)
        if g is None or member_id not in g.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if generation != g.generation:
            return ErrorCode.ILLEGAL_GENERATION
        return ErrorCode.NONE

    def sync(self, req: dict[str, Any], now_ms: int, reply: Reply) -> None:
        group_id, member_id = req["group_id"], req["member_id"]
        err = self._check(group_id, member_id, req["generation_id"])
        if err != ErrorCode.NONE:
            reply({"error_code": err, "assignment": b""})
            return
        g = self.groups[group_id]
        m = g.members[member_id]
        m.last_seen_ms = now_ms
        if g.state == GroupState.PREPARING_REBALANCE:
            reply({"error_code": ErrorCode.REBALANCE_IN_PROGRESS, "assignment": b""})
            return
        if g.state == GroupState.STABLE:
            reply({"error_code": ErrorCode.NONE, "assignment": m.assignment})
            return
        m.sync_reply = reply
        if member_id != g.leader or g.storing:
            return
        # The leader's assignment is handed out once it is durable (Kafka answers SyncGroup
        # after its GroupMetadata record is written), so that a coordinator that takes over
        # knows it and goes on from this generation.
        given = {a["member_id"]: bytes(a["assignment"]) for a in req["assignments"]}
        assignment = {i: given.get(i, b"") for i in g.members}
        g.storing = True
        done = functools.partial(self._assignment_stored, g, g.generation, assignment)
        self._store(self._record(g, assignment), done)

    def _assignment_stored(
        self, g: _Group, generation: int, assignment: dict[str, bytes], ok: bool
    ) -> None:
        if self.groups.get(g.group_id) is not g:
            return  # dropped: this node stopped coordinating
        if g.generation != generation or g.state != GroupState.COMPLETING_REBALANCE:
            return  # a rebalance began meanwhile, and told the waiting members so
        assert g.storing, f"group {g.group_id}: a store completed that was not started"
        assert set(assignment) == set(g.members), f"{sorted(assignment)} != {sorted(g.members)}"
        g.storing = False
        if ok:
            for m in g.members.values():
                m.assignment = assignment[m.member_id]
            g.state = GroupState.STABLE
        for m in g.members.values():
            if m.sync_reply is not None:
                waiting, m.sync_reply = m.sync_reply, None
                if ok:
                    waiting({"error_code": ErrorCode.NONE, "assignment": m.assignment})
                else:
                    # Most likely no longer the leader: the members look the coordinator up
                    # again and rejoin, which starts a new rebalance.
                    waiting({"error_code": ErrorCode.NOT_COORDINATOR, "assignment": b""})

    def heartbeat(self, req: dict[str, Any], now_ms: int) -> ErrorCode:
        err = self._check(req["group_id"], req["member_id"], req["generation_id"])
        if err != ErrorCode.NONE:
            return err
        g = self.groups[req["group_id"]]
        g.members[req["member_id"]].last_seen_ms = now_ms
        if g.state == GroupState.PREPARING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def leave(self, group_id: str, member_ids: list[str], now_ms: int) -> list[ErrorCode]:
        g = self.groups.get(group_id)
        out: list[ErrorCode] = []
        for member_id in member_ids:
            if g is None or member_id not in g.members:
                out.append(ErrorCode.UNKNOWN_MEMBER_ID)
                continue
            self._remove(g, member_id, now_ms)
            out.append(ErrorCode.NONE)
        return out

    def _remove(self, g: _Group, member_id: str, now_ms: int) -> None:
        m = g.members.pop(member_id)
        if m.join_reply is not None:
            m.join_reply(_join_error(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
        if m.sync_reply is not None:
            m.sync_reply({"error_code": ErrorCode.UNKNOWN_MEMBER_ID, "assignment": b""})
        if not g.members and g.state != GroupState.PREPARING_REBALANCE:
            self._empty(g)
            return
        if g.state != GroupState.PREPARING_REBALANCE:
            self._prepare_rebalance(g, now_ms, initial=False)
        self._maybe_complete_join(g, now_ms)

    def _empty(self, g: _Group) -> None:
        """The last member is gone: a new generation with no one in it, stored so that a
        coordinator taking over does not wait for the old members' sessions to expire."""
        assert not g.members, f"group {g.group_id} still has {sorted(g.members)}"
        g.state = GroupState.EMPTY
        g.generation += 1
        g.storing = False
        g.protocol = g.leader = ""
        self._store(self._record(g, {}), _nothing_to_answer)

    def _record(self, g: _Group, assignment: dict[str, bytes]) -> GroupRecord:
        return GroupRecord(
            group_id=g.group_id,
            generation=g.generation,
            protocol_type=g.protocol_type,
            protocol=g.protocol,
            leader=g.leader,
            members=tuple(
                MemberRecord(
                    member_id=m.member_id,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    session_timeout_ms=m.session_timeout_ms,
                    rebalance_timeout_ms=m.rebalance_timeout_ms,
                    metadata=dict(m.protocols).get(g.protocol, b""),
                    assignment=assignment[m.member_id],
                )
                for m in g.members.values()
            ),
        )

    def load(self, record: GroupRecord, now_ms: int) -> None:
        """Take a group over from its last stored record, before serving any request for it.

        The group is STABLE in the stored generation with the stored members and
        assignments (EMPTY if it had none), as Kafka loads groups from __consumer_offsets;
        every member's session starts now, so members that died meanwhile expire as usual.
        """
        assert record.group_id not in self.groups, f"group {record.group_id} loaded twice"
        g = _Group(
            group_id=record.group_id,
            state=GroupState.STABLE if record.members else GroupState.EMPTY,
            generation=record.generation,
            protocol_type=record.protocol_type,
            protocol=record.protocol,
            leader=record.leader,
        )
        for mr in record.members:
            g.members[mr.member_id] = _Member(
                member_id=mr.member_id,
                client_id=mr.client_id,
                client_host=mr.client_host,
                session_timeout_ms=mr.session_timeout_ms,
                rebalance_timeout_ms=mr.rebalance_timeout_ms,
                protocol_type=record.protocol_type,
                protocols=[(record.protocol, mr.metadata)],
                last_seen_ms=now_ms,
                assignment=mr.assignment,
            )
        self.groups[record.group_id] = g

    # -- time ----------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Expire members whose session ran out; finish join phases that waited enough."""
        for g in list(self.groups.values()):
            for member_id, m in list(g.members.items()):
                waiting = m.join_reply is not None or m.sync_reply is not None
                if not waiting and now_ms - m.last_seen_ms > m.session_timeout_ms:
                    self._remove(g, member_id, now_ms)
            self._maybe_complete_join(g, now_ms)

    def generation_of(self, group_id: str, member_id: str) -> int | None:
        g = self.groups.get(group_id)
        if g is None or member_id not in g.members:
            return None
        return g.generation

    def describe(self, group_id: str) -> dict[str, Any]:
        g = self.groups.get(group_id)
        if g is None:
            return {
                "error_code": ErrorCode.NONE,
                "group_id": group_id,
                "group_state": GroupState.DEAD.value,
                "protocol_type": "",
                "protocol_data": "",
                "members": [],
            }
        return {
            "error_code": ErrorCode.NONE,
            "group_id": group_id,
            "group_state": g.state.value,
            "protocol_type": g.protocol_type,
            "protocol_data": g.protocol,
            "members": [
                {
                    "member_id": m.member_id,
                    "group_instance_id": None,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "member_metadata": dict(m.protocols).get(g.protocol, b""),
                    "member_assignment": m.assignment,
                }
                for m in g.members.values()
            ],
        }

    def drop_all(self) -> None:
        """This node stopped coordinating (leadership moved): members must find the new one."""
        for g in self.groups.values():
            for m in g.members.values():
                if m.join_reply is not None:
                    m.join_reply(_join_error(ErrorCode.NOT_COORDINATOR, m.member_id))
                if m.sync_reply is not None:
                    m.sync_reply({"error_code": ErrorCode.NOT_COORDINATOR, "assignment": b""})
        self.groups.clear()


def _nothing_to_answer(ok: bool) -> None:
    """An emptied group's record: nobody waits for it. If it is lost, a new coordinator
    loads the previous one and expires its members."""
