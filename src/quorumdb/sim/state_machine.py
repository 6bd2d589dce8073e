"""The simulator's replicated state machine: registers with compare-and-set and client sessions.

Every command carries (client, seq). The session table remembers each client's last applied
seq and its result, so a command retried after a timeout is applied at most once and answered
with the original result (Raft thesis §6.3). Commands older than the session's seq are stale
retries and do nothing. Pure: no clock, no randomness, no I/O.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

__all__ = ["Command", "KVStateMachine", "Op", "decode_command", "encode_command"]


class Op(IntEnum):
    PUT = 0
    CAS = 1
    DELETE = 2


class Command(msgspec.Struct, frozen=True, array_like=True, gc=False):
    client: int
    seq: int
    op: Op
    key: str
    value: int | None = None
    expected: int | None = None


class _Image(msgspec.Struct, array_like=True):
    data: dict[str, int]
    sessions: dict[int, tuple[int, bool]]


encode_command = msgspec.msgpack.Encoder().encode
decode_command = msgspec.msgpack.Decoder(Command).decode
_encode_image = msgspec.msgpack.Encoder().encode
_decode_image = msgspec.msgpack.Decoder(_Image).decode


class KVStateMachine:
    __slots__ = ("data", "sessions")

    def __init__(self) -> None:
        self.data: dict[str, int] = {}
        self.sessions: dict[int, tuple[int, bool]] = {}

    def apply(self, cmd: Command) -> bool | None:
        """Apply once; return whether it took effect (a failed CAS is False), None if stale."""
        last = self.sessions.get(cmd.client)
        if last is not None:
            if cmd.seq == last[0]:
                return last[1]
            if cmd.seq < last[0]:
                return None
        ok = True
        if cmd.op == Op.PUT:
            assert cmd.value is not None, "put without a value"
            self.data[cmd.key] = cmd.value
        elif cmd.op == Op.DELETE:
            self.data.pop(cmd.key, None)
        elif self.data.get(cmd.key) == cmd.expected:
            assert cmd.value is not None, "cas without a value"
            self.data[cmd.key] = cmd.value
        else:
            ok = False
        self.sessions[cmd.client] = (cmd.seq, ok)
        return ok

    def read(self, key: str) -> int | None:
        return self.data.get(key)

    def snapshot(self) -> bytes:
        return _encode_image(_Image(data=self.data, sessions=self.sessions))

    def restore(self, image: bytes) -> None:
        if not image:
            self.data, self.sessions = {}, {}
            return
        img = _decode_image(image)
        self.data = dict(img.data)
        self.sessions = {int(k): (v[0], v[1]) for k, v in img.sessions.items()}
