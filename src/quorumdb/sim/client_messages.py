"""What simulated clients and nodes say to each other."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["ClientReply", "ClientRequest", "Func", "ReplyStatus"]


class Func(Enum):
    READ = "read"
    WRITE = "write"
    CAS = "cas"


class ReplyStatus(Enum):
    OK = "ok"  # took effect (for a read: here is the value)
    FAIL = "fail"  # definitely did not take effect (a CAS whose expectation failed)
    NOT_LEADER = "not-leader"  # not proposed here; try `leader_hint`


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientRequest:
    client: int
    seq: int
    attempt: int
    f: Func
    key: str
    value: int | None = None
    expected: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientReply:
    client: int
    seq: int
    attempt: int
    status: ReplyStatus
    value: int | None = None
    leader_hint: int = 0
