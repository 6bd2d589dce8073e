"""KV commands as they travel through the Raft log, and their results.

A command is encoded once by the node that proposes it and decoded by every replica that
applies it, so its encoding (msgpack via msgspec, array-like) is part of the durable format;
fields added later come last, with defaults, so older entries still decode.
`client`/`seq` identify a request for at-most-once application across retries. `ts` is the
proposer's hybrid-logical-clock reading (`kv.hlc`): a write's version is stamped at least
that, and every replica's clock moves past it as the entry applies.

Transactions (`kv.txn_engine`) travel as `TxnOp`s in the `txn` field of the `TXN_*` kinds.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

__all__ = [
    "Command",
    "CommandKind",
    "Isolation",
    "Outcome",
    "Result",
    "TxnOp",
    "decode_command",
    "encode_command",
]


class CommandKind(IntEnum):
    PUT = 0
    DELETE = 1
    CAS = 2  # compare-and-set on the key's revision (0: the key must be absent)
    CLOSE = 3  # no write below `ts` from now on: reads at `ts` may be served once it applies
    TXN_ONE_PHASE = 4  # a transaction on this shard only: validate and write at once
    TXN_BEGIN = 5  # create the transaction record (PENDING) on its anchor shard
    TXN_PREPARE = 6  # validate and lay intents and read locks on a participant shard
    TXN_END = 7  # decide the record: COMMITTED at `ts`, or ABORTED (a pusher: if expired)
    TXN_RESOLVE = 8  # a participant: turn intents into versions at `ts`, or drop them
    TXN_FORGET = 9  # the record's intents are all resolved: drop the record


class Isolation(IntEnum):
    """Transaction isolation levels, weakest first (Adya's / ANSI's names)."""

    READ_UNCOMMITTED = 0  # unsafe engine switch for the labs: writes apply at once
    READ_COMMITTED = 1
    SNAPSHOT = 2
    SERIALIZABLE = 3


class TxnOp(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What a `TXN_*` command carries (only the fields its kind uses are set)."""

    id: int
    record_group: int = 0  # the shard holding the transaction record (0: none, one-phase)
    isolation: Isolation = Isolation.SERIALIZABLE
    read_ts: int = 0  # the snapshot the transaction read at
    writes: list[tuple[bytes, bytes | None]] = []  # (key, value or None: delete)
    reads: list[bytes] = []  # keys read (serializable: validated and locked)
    ranges: list[tuple[bytes, bytes | None]] = []  # [start, end) scanned (serializable)
    participants: list[int] = []  # BEGIN: the shards holding intents
    deadline: int = 0  # BEGIN: the record may be aborted by anyone once `ts` passes this
    commit: bool = False  # END / RESOLVE: commit (at the command's `ts`) or abort
    if_expired: bool = False  # END by a pusher: abort only if the record expired (or is absent)


class Command(msgspec.Struct, frozen=True, array_like=True, gc=False):
    kind: CommandKind
    key: bytes
    value: bytes = b""
    expected_revision: int = -1  # for CAS; -1 for other kinds
    client: int = 0  # 0: no session (no deduplication)
    seq: int = 0
    ts: int = 0  # the proposer's HLC (0: none; the shard's own order stamps the version)
    txn: TxnOp | None = None
    # A write retried after a CONFLICT keeps its (client, seq) and counts up `attempt`: the
    # session answers a copy of an earlier attempt with its CONFLICT, runs a later one.
    attempt: int = 0


class Outcome(IntEnum):
    OK = 0
    NOT_FOUND = 1  # delete of an absent key; a push of a forgotten transaction record
    CAS_FAILED = 2  # the key's revision was not the expected one
    CONFLICT = 3  # another transaction's intent or read lock is in the way (`blocker`)
    SERIALIZATION_FAILURE = 4  # validation failed: abort and retry (SQLSTATE 40001)
    ABORTED = 5  # the transaction record is aborted
    PENDING = 6  # the transaction record is still undecided and not expired


class Result(msgspec.Struct, frozen=True, array_like=True, gc=False):
    outcome: Outcome
    revision: int  # the key's revision after the command (0: absent)
    previous_revision: int = 0
    ts: int = 0  # the version's timestamp; a prepare's lowest commit ts; a record's commit ts
    blocker: int = 0  # CONFLICT: the transaction in the way
    blocker_group: int = 0  # CONFLICT: the shard holding that transaction's record
    detail: str = ""  # SERIALIZATION_FAILURE: why
    attempt: int = 0  # CONFLICT: the command's attempt (see `Command.attempt`)


encode_command = msgspec.msgpack.Encoder().encode
decode_command = msgspec.msgpack.Decoder(Command).decode
