"""Transaction records: the replicated truth about whether a transaction committed.

A cross-shard transaction's record lives on its anchor shard (the shard of its first
written key), so the coordinator's decision is itself replicated: the commit point is the
`TXN_END` entry that turns the record from PENDING to COMMITTED. Whoever meets one of the
transaction's intents asks the record; a record that is still PENDING after its deadline
may be aborted by anyone (`if_expired`), so a dead coordinator blocks nobody for longer
than its deadline plus an election. A record is dropped once its intents are all resolved.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

__all__ = ["RecordStatus", "TxnRecord"]


class RecordStatus(IntEnum):
    PENDING = 0
    COMMITTED = 1
    ABORTED = 2


class TxnRecord(msgspec.Struct, array_like=True, gc=False):
    status: RecordStatus
    participants: list[int]
    deadline: int  # HLC timestamp after which a PENDING record may be aborted by anyone
    commit_ts: int = 0
