"""The classic rebalance protocol: join (with member-id handshake), sync, heartbeat, leave,
session expiry — time is an input, replies are callbacks."""

from __future__ import annotations

from typing import Any

from quorumdb.kafka.group_coordinator import GroupCoordinator, GroupState
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
    gc = GroupCoordinator("n1")
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
    gc = GroupCoordinator("n1")
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
    gc = GroupCoordinator("n1")
    box = Box()
    gc.join({**_join_req("x"), "group_id": ""}, "h", 0, box)
    gc.join(_join_req("never-issued"), "h", 0, box)
    gc.join(_join_req(session=10), "h", 0, box)
    assert [r["error_code"] for r in box.got] == [
        ErrorCode.INVALID_GROUP_ID,
        ErrorCode.UNKNOWN_MEMBER_ID,
        ErrorCode.INVALID_SESSION_TIMEOUT,
    ]
