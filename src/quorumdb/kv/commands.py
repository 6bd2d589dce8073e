"""KV commands as they travel through the Raft log, and their results.

A command is encoded once by the node that proposes it and decoded by every replica that
applies it, so its encoding (msgpack via msgspec, array-like) is part of the durable format.
`client`/`seq` identify a request for at-most-once application across retries.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

__all__ = [
    "Command",
    "CommandKind",
    "Outcome",
    "Result",
    "decode_command",
    "encode_command",
]


class CommandKind(IntEnum):
    PUT = 0
    DELETE = 1
    CAS = 2  # compare-and-set on the key's revision (0: the key must be absent)


class Command(msgspec.Struct, frozen=True, array_like=True, gc=False):
    kind: CommandKind
    key: bytes
    value: bytes = b""
    expected_revision: int = -1  # for CAS; -1 for other kinds
    client: int = 0  # 0: no session (no deduplication)
    seq: int = 0


class Outcome(IntEnum):
    OK = 0
    NOT_FOUND = 1  # delete of an absent key
    CAS_FAILED = 2  # the key's revision was not the expected one


class Result(msgspec.Struct, frozen=True, array_like=True, gc=False):
    outcome: Outcome
    revision: int  # the key's revision after the command (0: absent)
    previous_revision: int = 0


encode_command = msgspec.msgpack.Encoder().encode
decode_command = msgspec.msgpack.Decoder(Command).decode
