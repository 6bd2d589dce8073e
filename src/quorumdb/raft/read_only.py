"""ReadIndex bookkeeping (Raft thesis §6.4): pending linearizable reads and their heartbeat acks.

A read request records the leader's commit index, then the leader sends a heartbeat round whose
context is the request's id. When a quorum echoes that context, the leader knows it was still
leader when the read arrived, so the recorded index is safe to read at — for that request and
every one queued before it.
"""

from __future__ import annotations

from enum import IntEnum

from quorumdb.raft.messages import Message

__all__ = ["ReadIndexStatus", "ReadOnly", "ReadOnlyOption"]


class ReadOnlyOption(IntEnum):
    SAFE = 0  # ReadIndex: confirm leadership with a heartbeat round
    LEASE_BASED = 1  # trust a leader lease; needs check-quorum and a clock-drift bound


class ReadIndexStatus:
    __slots__ = ("acks", "index", "req")

    def __init__(self, req: Message, index: int) -> None:
        self.req = req
        self.index = index
        self.acks: dict[int, bool] = {}


class ReadOnly:
    __slots__ = ("option", "pending", "queue")

    def __init__(self, option: ReadOnlyOption) -> None:
        self.option = option
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, m: Message) -> None:
        ctx = m.context
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(m, index)
        self.queue.append(ctx)

    def recv_ack(self, node_id: int, ctx: bytes) -> dict[int, bool] | None:
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks[node_id] = True
        return rs.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Pop every request up to and including `ctx` (all are confirmed by its quorum)."""
        if ctx not in self.pending:
            return []
        out: list[ReadIndexStatus] = []
        n = 0
        for n, c in enumerate(self.queue, start=1):  # noqa: B007
            out.append(self.pending.pop(c))
            if c == ctx:
                break
        del self.queue[:n]
        return out

    def last_pending_request_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""

    def reset(self) -> None:
        self.pending.clear()
        self.queue.clear()
