"""Simulated clients doing read / write / compare-and-set on a few keys, recording a history.

The history is in the Jepsen convention (`check.history`): each operation is an `invoke`
event and one completion: `ok` (took effect), `fail` (definitely did not) or `info` (unknown:
it timed out after it may have been proposed). After an `info` the client continues as a new
process, as Jepsen does, because its old operation may still take effect at any later time.

Retries: a NOT_LEADER answer means nothing was proposed, so the client retries at the hinted
leader. A timeout means the write may have been proposed; the client retries with the same
(client, seq), which the state machine's session table applies at most once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from quorumdb.sim.client_messages import ClientReply, ClientRequest, Func, ReplyStatus
from quorumdb.sim.loop import EventLoop
from quorumdb.sim.options import SimOptions

__all__ = ["ClientHost", "HistoryRecorder", "SimClient"]

_ATTEMPTS_MAX = 6
_BACKOFF_US = 5_000


class HistoryRecorder:
    """Collects history events; `on_ok` lets the simulation watch for liveness."""

    __slots__ = ("_next_process", "events", "loop", "on_ok")

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self.events: list[dict[str, Any]] = []
        self._next_process = 0
        self.on_ok: Callable[[Func, int], None] | None = None

    def new_process(self) -> int:
        p = self._next_process
        self._next_process += 1
        return p

    def record(self, process: int, kind: str, f: Func, key: str, value: object) -> None:
        self.events.append(
            {
                "process": process,
                "type": kind,
                "f": f.value,
                "key": key,
                "value": value,
                "time": self.loop.now,
            }
        )
        self.loop.trace(f"h p{process} {kind} {f.value} {key} {value}")


class ClientHost(Protocol):
    loop: EventLoop
    node_ids: tuple[int, ...]
    clients_running: bool

    def send_request(self, node: int, req: ClientRequest) -> None: ...


class SimClient:
    __slots__ = (
        "attempt",
        "done",
        "expected",
        "f",
        "host",
        "id",
        "invoked_at",
        "key",
        "known",
        "maybe_applied",
        "opts",
        "process",
        "recorder",
        "rng",
        "seq",
        "target",
        "value",
    )

    def __init__(
        self,
        host: ClientHost,
        client_id: int,
        opts: SimOptions,
        rng: random.Random,
        recorder: HistoryRecorder,
    ) -> None:
        self.host = host
        self.id = client_id
        self.opts = opts
        self.rng = rng
        self.recorder = recorder
        self.process = recorder.new_process()
        self.seq = 0
        self.attempt = 0
        self.target = rng.choice(host.node_ids)
        self.done = True
        self.f = Func.READ
        self.key = ""
        self.value: int | None = None
        self.expected: int | None = None
        self.maybe_applied = False
        self.invoked_at = 0
        self.known: dict[str, int | None] = {}

    def start(self) -> None:
        self.host.loop.after(self.rng.randint(0, self.opts.think_us), self._next_op)

    def _next_op(self) -> None:
        if not self.host.clients_running:
            return
        rng = self.rng
        self.seq += 1
        self.attempt = 0
        self.done = False
        self.maybe_applied = False
        self.key = f"k{rng.randrange(self.opts.keys)}"
        roll = rng.random()
        self.expected = None
        invoke_value: object
        if roll < 0.4:
            self.f, self.value, invoke_value = Func.READ, None, None
        elif roll < 0.8:
            self.f, self.value = Func.WRITE, self.id * 1_000_000 + self.seq
            invoke_value = self.value
        else:
            self.f, self.value = Func.CAS, self.id * 1_000_000 + self.seq
            self.expected = self.known.get(self.key) if rng.random() < 0.8 else None
            invoke_value = [self.expected, self.value]
        self.invoked_at = self.host.loop.now
        self.recorder.record(self.process, "invoke", self.f, self.key, invoke_value)
        self._send()

    def _send(self) -> None:
        self.attempt += 1
        node = self.target
        if self.f == Func.READ and self.rng.random() < self.opts.follower_read_ratio:
            node = self.rng.choice(self.host.node_ids)
        req = ClientRequest(
            client=self.id,
            seq=self.seq,
            attempt=self.attempt,
            f=self.f,
            key=self.key,
            value=self.value,
            expected=self.expected,
        )
        self.host.send_request(node, req)
        self.host.loop.after(self.opts.client_timeout_us, self._timeout, self.seq, self.attempt)

    def on_reply(self, reply: ClientReply) -> None:
        if self.done or reply.seq != self.seq or reply.attempt != self.attempt:
            return
        if reply.status == ReplyStatus.OK:
            self._finish("ok", reply.value)
        elif reply.status == ReplyStatus.FAIL:
            self._finish("fail", None)
        else:
            if reply.leader_hint:
                self.target = reply.leader_hint
            else:
                self.target = self.rng.choice(self.host.node_ids)
            self._retry_or_give_up()

    def _timeout(self, seq: int, attempt: int) -> None:
        if self.done or seq != self.seq or attempt != self.attempt:
            return
        if self.f != Func.READ:
            self.maybe_applied = True
        self.target = self.rng.choice(self.host.node_ids)
        self._retry_or_give_up()

    def _retry_or_give_up(self) -> None:
        if self.attempt < _ATTEMPTS_MAX:
            self.host.loop.after(self.rng.randint(1, _BACKOFF_US), self._resend, self.seq)
            return
        self._finish("info" if self.maybe_applied or self.f == Func.READ else "fail", None)

    def _resend(self, seq: int) -> None:
        if not self.done and seq == self.seq:
            self._send()

    def _finish(self, kind: str, read_value: int | None) -> None:
        self.done = True
        if kind == "ok":
            if self.f == Func.READ:
                self.known[self.key] = read_value
                value: object = read_value
            elif self.f == Func.WRITE:
                self.known[self.key] = self.value
                value = self.value
            else:
                self.known[self.key] = self.value
                value = [self.expected, self.value]
            self.recorder.record(self.process, "ok", self.f, self.key, value)
            if self.recorder.on_ok is not None:
                self.recorder.on_ok(self.f, self.invoked_at)
        elif kind == "fail":
            value = [self.expected, self.value] if self.f == Func.CAS else self.value
            self.recorder.record(self.process, "fail", self.f, self.key, value)
        else:
            value = [self.expected, self.value] if self.f == Func.CAS else self.value
            self.recorder.record(self.process, "info", self.f, self.key, value)
            self.process = self.recorder.new_process()
        self.host.loop.after(self.rng.randint(0, self.opts.think_us), self._next_op)
