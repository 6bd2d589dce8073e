"""The classic rebalance protocol: join (with member-id handshake), sync, heartbeat, leave,
session expiry — time is an input, replies are callbacks; group records are stored before
assignments are handed out, and a coordinator taking over loads them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quorumdb.kafka.group_coordinator import (
    GroupCoordinator,
    GroupRecord,
    GroupState,
    decode_group_record,
    encode_group_record,
)
from quorumdb.kafka.protocol.errors import ErrorCode


def _join_req(member_id: str = "", session: int = 10_000) -> dict[str, Any]:
    return {
        "group_id": "g",
        "session_timeout_ms": session,
        "rebalance_timeout_ms": 5_000,
        "member_id": member_id,
        "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": b"m"}],
        "client_id": "c",
    }


class Records:
    """A Store keeping each group's last record (through the codec), durable at once, or
    held until `release` while `hold` is set."""

    def __init__(self) -> None:
        self.last: dict[str, GroupRecord] = {}
        self.hold = False
        self.held: list[tuple[GroupRecord, Callable[[bool], None]]] = []

    def __call__(self, record: GroupRecord, done: Callable[[bool], None]) -> None:
        if self.hold:
            self.held.append((record, done))
            return
        self.last[record.group_id] = decode_group_record(encode_group_record(record))
        done(True)

    def release(self, *, ok: bool) -> None:
        held, self.held = self.held, []
        for record, done in held:
            if ok:
                self.last[record.group_id] = decode_group_record(encode_group_record(record))
            done(ok)

    def successor(self, id_tag: str, now: int) -> GroupCoordinator:
        """The coordinator that takes over (another node, or the same one in a later term)."""
        gc = GroupCoordinator(id_tag, self)
        for record in self.last.values():
            gc.load(record, now)
        return gc


class Box:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> None:
        self.got.append(body)


def _member_id(gc: GroupCoordinator, now: int) -> str:
    box = Box()
    gc.join(_join_req(), "h", now, box)
    assert box.got[0]["error_code"] == ErrorCode.MEMBER_ID_REQUIRED
    return str(box.got[0]["member_id"])


def test_two_members_join_sync_and_heartbeat() -> None:
    gc = GroupCoordinator("n1t1", Records())
    a, b = _member_id(gc, 0), _member_id(gc, 0)
    ja, jb = Box(), Box()
    gc.join(_join_req(a), "h", 0, ja)
    gc.join(_join_req(b), "h", 10, jb)
    assert ja.got == [] and jb.got == []  # the initial delay has not passed
    gc.tick(200)
    (ra,), (rb,) = ja.got, jb.got
    assert ra["generation_id"] == rb["generation_id"] == 1
    assert ra["leader"] == a and len(ra["members"]) == 2 and rb["members"] == []
    sb = Box()
    gc.sync({"group_id": "g", "generation_id": 1, "member_id": b, "assignments": []}, 210, sb)
    assert sb.got == []  # waits for the leader's assignment
    sa = Box()
    gc.sync(
        {
            "group_id": "g",
            "generation_id": 1,
            "member_id": a,
            "assignments": [
                {"member_id": a, "assignment": b"A"},
                {"member_id": b, "assignment": b"B"},
            ],
        },
        220,
        sa,
    )
    assert sa.got[0]["assignment"] == b"A" and sb.got[0]["assignment"] == b"B"
    assert gc.groups["g"].state == GroupState.STABLE
    hb = {"group_id": "g", "generation_id": 1, "member_id": b}
    assert gc.heartbeat(hb, 300) == ErrorCode.NONE
    assert gc.heartbeat({**hb, "generation_id": 0}, 300) == ErrorCode.ILLEGAL_GENERATION


def test_leave_and_session_expiry_trigger_rebalances() -> None:
    gc = GroupCoordinator("n1t1", Records())
    a, b = _member_id(gc, 0), _member_id(gc, 0)
    ja, jb = Box(), Box()
    gc.join(_join_req(a), "h", 0, ja)
    gc.join(_join_req(b, session=2_000), "h", 0, jb)
    gc.tick(200)
    gc.sync(
        {
            "group_id": "g",
            "generation_id": 1,
            "member_id": a,
            "assignments": [{"member_id": a, "assignment": b"A"}],
        },
        200,
        Box(),
    )
    # b stops heartbeating: after its session timeout it is removed and a must rejoin.
    gc.tick(2_500)
    assert "g" in gc.groups and b not in gc.groups["g"].members
    hb = {"group_id": "g", "generation_id": 1, "member_id": a}
    assert gc.heartbeat(hb, 2_600) == ErrorCode.REBALANCE_IN_PROGRESS
    rejoin = Box()
    gc.join(_join_req(a), "h", 2_700, rejoin)
    assert rejoin.got[0]["generation_id"] == 2 and rejoin.got[0]["leader"] == a
    assert gc.leave("g", [a, "nobody"], 2_800) == [ErrorCode.NONE, ErrorCode.UNKNOWN_MEMBER_ID]
    assert gc.groups["g"].state == GroupState.EMPTY


def test_bad_joins_are_refused() -> None:
    gc = GroupCoordinator("n1t1", Records())
    box = Box()
    gc.join({**_join_req("x"), "group_id": ""}, "h", 0, box)
    gc.join(_join_req("never-issued"), "h", 0, box)
    gc.join(_join_req(session=10), "h", 0, box)
    assert [r["error_code"] for r in box.got] == [
        ErrorCode.INVALID_GROUP_ID,
        ErrorCode.UNKNOWN_MEMBER_ID,
        ErrorCode.INVALID_SESSION_TIMEOUT,
    ]


# -- coordinator failover ----------------------------------------------------------------------


class _Client:
    """A consumer as kafka-python 3 drives the classic protocol (kafka/coordinator/base.py):
    UNKNOWN_MEMBER_ID drops the member id, ILLEGAL_GENERATION and REBALANCE_IN_PROGRESS keep
    it, and either way the client joins again at once; the leader assigns partitions with
    the range assignor over the members the coordinator lists."""

    def __init__(self, name: str, log: list[tuple[str, str, int, frozenset[int]]]) -> None:
        self.name = name
        self.member_id = ""
        self.generation = -1
        self.log = log
        self.gc: GroupCoordinator | None = None

    def join(self, gc: GroupCoordinator, now: int) -> None:
        self.gc = gc
        gc.join(_join_req(self.member_id), "h", now, lambda r: self._joined(r, now))

    def _joined(self, r: dict[str, Any], now: int) -> None:
        assert self.gc is not None
        code = r["error_code"]
        if code == ErrorCode.MEMBER_ID_REQUIRED:
            self.member_id = r["member_id"]
        if code == ErrorCode.UNKNOWN_MEMBER_ID:
            self.member_id = ""
        if code != ErrorCode.NONE:
            self.join(self.gc, now)
            return
        self.generation = r["generation_id"]
        members = sorted(m["member_id"] for m in r["members"])
        assignments = [
            {"member_id": m, "assignment": ",".join(map(str, parts)).encode()}
            for m, parts in zip(members, _range(len(members)), strict=True)
        ]
        req = {
            "group_id": "g",
            "generation_id": self.generation,
            "member_id": self.member_id,
            "assignments": assignments,
        }
        self.gc.sync(req, now, lambda s: self._synced(s, now))

    def _synced(self, r: dict[str, Any], now: int) -> None:
        assert self.gc is not None
        if r["error_code"] != ErrorCode.NONE:
            if r["error_code"] == ErrorCode.UNKNOWN_MEMBER_ID:
                self.member_id = ""
            self.join(self.gc, now)
            return
        parts = frozenset(int(p) for p in bytes(r["assignment"]).decode().split(",") if p)
        self.log.append((self.name, self.member_id, self.generation, parts))

    def heartbeat(self, gc: GroupCoordinator, now: int) -> None:
        code = gc.heartbeat(
            {"group_id": "g", "generation_id": self.generation, "member_id": self.member_id}, now
        )
        if code == ErrorCode.UNKNOWN_MEMBER_ID:
            self.member_id = ""
        if code != ErrorCode.NONE:
            self.join(gc, now)


def _range(members: int) -> list[list[int]]:
    """The range assignor's split of partitions 0..2 over `members` sorted member ids."""
    return [[p for p in range(3) if p * members // 3 == i] for i in range(members)]


def _owned_twice(log: list[tuple[str, str, int, frozenset[int]]]) -> list[str]:
    owners: dict[tuple[int, int], set[str]] = {}
    for name, _, generation, parts in log:
        for p in parts:
            owners.setdefault((generation, p), set()).add(name)
    return [
        f"generation {g} partition {p}: {sorted(o)}" for (g, p), o in owners.items() if len(o) > 1
    ]


def _churn_history(
    successor: Callable[[GroupCoordinator, Records], GroupCoordinator],
) -> tuple[list[tuple[str, str, int, frozenset[int]]], _Client, _Client, GroupCoordinator]:
    """Two consumers share a 3-partition topic: a joins first (generation 1, every
    partition), then b (generation 2 splits the topic). Then the coordinator is replaced by
    `successor(old, its records)`, and for 30 s b heartbeats every second, a every 3 s (b first)."""
    log: list[tuple[str, str, int, frozenset[int]]] = []
    a, b = _Client("a", log), _Client("b", log)
    records = Records()
    old = GroupCoordinator("n2t5", records)
    a.join(old, 0)
    old.tick(200)
    b.join(old, 300)
    a.heartbeat(old, 400)  # REBALANCE_IN_PROGRESS: a joins again, generation 2 completes
    assert [(n, g, sorted(p)) for n, _, g, p in log] == [
        ("a", 1, [0, 1, 2]),
        ("a", 2, [0, 1]),
        ("b", 2, [2]),
    ]
    new = successor(old, records)
    for now in range(1_000, 30_000, 100):
        if now % 1_000 == 0:
            b.heartbeat(new, now)
        if now % 3_000 == 0:
            a.heartbeat(new, now)
        new.tick(now)
    return log, a, b, new


def test_a_coordinator_with_no_record_of_the_group_makes_its_members_churn() -> None:
    # The reported churn, replayed: the coordinator node loses the shard's leadership and
    # wins it back (as in the elections around a kill -9) and its new coordinator knows
    # nothing of the group. b rejoins first and is handed the member id a still holds
    # (ids were a per-coordinator counter), in a generation numbered from 1 again; a's
    # heartbeat then fails with ILLEGAL_GENERATION and a rejoins with that same id. From
    # then on the two take turns as the group's only member, each given every partition.
    def amnesiac(old: GroupCoordinator, records: Records) -> GroupCoordinator:
        old.drop_all()
        return GroupCoordinator("n2t5", Records())  # the old id tag: ids restart

    log, a, b, _ = _churn_history(amnesiac)
    assert a.member_id == b.member_id
    assert len(log) > 20
    assert all(parts == {0, 1, 2} for _, _, _, parts in log[3:])
    assert _owned_twice(log)[:3] == [f"generation 1 partition {p}: ['a', 'b']" for p in range(3)]


def test_members_keep_their_ids_and_generation_across_a_coordinator_failover() -> None:
    def successor(old: GroupCoordinator, records: Records) -> GroupCoordinator:
        old.drop_all()
        return records.successor("n2t7", 1_000)  # the same node, a later term

    log, a, b, new = _churn_history(successor)
    assert not _owned_twice(log), f"{_owned_twice(log)}; assignments: {log}"
    assert len(log) == 3, f"rebalanced after the failover: {log[3:]}"
    assert a.member_id != b.member_id
    g = new.groups["g"]
    assert g.state == GroupState.STABLE and g.generation == 2
    assert sorted(g.members) == sorted([a.member_id, b.member_id])
    assert new.generation_of("g", a.member_id) == 2  # what OffsetCommit checks


def test_a_new_member_id_is_unlike_any_the_group_still_holds() -> None:
    records = Records()
    old = GroupCoordinator("n2t5", records)
    a = _member_id(old, 0)
    old.join(_join_req(a), "h", 0, Box())
    old.tick(200)
    old.sync(_leader_sync(a, {a: b"A"}), 210, Box())
    new = records.successor("n2t7", 1_000)
    b = _member_id(new, 1_000)
    assert b != a and "n2t7" in b


def _leader_sync(
    member_id: str, assignment: dict[str, bytes], generation: int = 1
) -> dict[str, Any]:
    return {
        "group_id": "g",
        "generation_id": generation,
        "member_id": member_id,
        "assignments": [{"member_id": m, "assignment": x} for m, x in assignment.items()],
    }


def test_an_assignment_is_handed_out_only_once_stored() -> None:
    records = Records()
    gc = GroupCoordinator("n1t1", records)
    a, b = _member_id(gc, 0), _member_id(gc, 0)
    gc.join(_join_req(a), "h", 0, Box())
    gc.join(_join_req(b), "h", 0, Box())
    gc.tick(200)
    records.hold = True
    sa, sb = Box(), Box()
    gc.sync(_leader_sync(b, {}), 210, sb)
    gc.sync(_leader_sync(a, {a: b"A", b: b"B"}), 220, sa)
    gc.sync(_leader_sync(a, {a: b"X", b: b"Y"}), 230, sa)  # a retry: stored once
    assert sa.got == [] and sb.got == [] and len(records.held) == 1
    assert records.last == {}
    records.release(ok=True)
    assert [r["assignment"] for r in sa.got + sb.got] == [b"A", b"B"]
    (stored,) = records.last.values()
    assert stored.generation == 1 and stored.leader == a
    assert {m.member_id: m.assignment for m in stored.members} == {a: b"A", b: b"B"}


def test_an_assignment_that_could_not_be_stored_is_not_handed_out() -> None:
    records = Records()
    gc = GroupCoordinator("n1t1", records)
    a = _member_id(gc, 0)
    gc.join(_join_req(a), "h", 0, Box())
    gc.tick(200)
    records.hold = True
    sa = Box()
    gc.sync(_leader_sync(a, {a: b"A"}), 210, sa)
    records.release(ok=False)
    assert sa.got == [{"error_code": ErrorCode.NOT_COORDINATOR, "assignment": b""}]
    assert gc.groups["g"].members[a].assignment == b""
    # The member rejoins: a new generation, whose assignment is stored this time.
    records.hold = False
    rejoin = Box()
    gc.join(_join_req(a), "h", 300, rejoin)
    assert rejoin.got[0]["generation_id"] == 2
    gc.sync(_leader_sync(a, {a: b"A2"}, generation=2), 310, sa)
    assert sa.got[-1]["assignment"] == b"A2" and records.last["g"].generation == 2


def test_a_rebalance_that_begins_while_storing_wins() -> None:
    records = Records()
    gc = GroupCoordinator("n1t1", records)
    a = _member_id(gc, 0)
    gc.join(_join_req(a), "h", 0, Box())
    gc.tick(200)
    records.hold = True
    sa = Box()
    gc.sync(_leader_sync(a, {a: b"A"}), 210, sa)
    b = _member_id(gc, 220)
    jb = Box()
    gc.join(_join_req(b), "h", 220, jb)
    assert sa.got == [{"error_code": ErrorCode.REBALANCE_IN_PROGRESS, "assignment": b""}]
    records.release(ok=True)  # generation 1's record lands after the rebalance began
    assert len(sa.got) == 1 and gc.groups["g"].state == GroupState.PREPARING_REBALANCE


def test_generations_never_go_backwards_across_coordinators() -> None:
    records = Records()
    gc = GroupCoordinator("n1t1", records)
    a = _member_id(gc, 0)
    gc.join(_join_req(a), "h", 0, Box())
    gc.tick(200)
    gc.sync(_leader_sync(a, {a: b"A"}), 210, Box())
    assert gc.leave("g", [a], 300) == [ErrorCode.NONE]
    assert records.last["g"].generation == 2 and records.last["g"].members == ()
    gc.drop_all()
    new = records.successor("n3t2", 1_000)
    assert new.groups["g"].state == GroupState.EMPTY
    b = _member_id(new, 1_000)
    jb = Box()
    new.join(_join_req(b), "h", 1_000, jb)
    new.tick(1_200)
    assert jb.got[0]["generation_id"] == 3


def test_a_loaded_members_session_starts_at_the_load() -> None:
    records = Records()
    gc = GroupCoordinator("n1t1", records)
    a, b = _member_id(gc, 0), _member_id(gc, 0)
    gc.join(_join_req(a), "h", 0, Box())
    gc.join(_join_req(b, session=2_000), "h", 0, Box())
    gc.tick(200)
    gc.sync(_leader_sync(a, {a: b"A", b: b"B"}), 210, Box())
    gc.drop_all()
    new = records.successor("n3t2", 50_000)
    hb = {"group_id": "g", "generation_id": 1, "member_id": a}
    assert new.heartbeat(hb, 51_000) == ErrorCode.NONE
    new.tick(51_500)
    assert sorted(new.groups["g"].members) == sorted([a, b])
    new.tick(52_100)  # b (session 2 s) never came back to the new coordinator
    assert sorted(new.groups["g"].members) == [a]
    assert new.heartbeat(hb, 52_200) == ErrorCode.REBALANCE_IN_PROGRESS
