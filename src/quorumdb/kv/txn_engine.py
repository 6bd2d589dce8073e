"""How a shard applies transaction commands: validation, intents, records, resolution.

The commit protocol (driven by `kv.transactions`, the coordinator):

1. One shard only: `TXN_ONE_PHASE` validates and writes in one entry (no record).
2. Otherwise `TXN_BEGIN` creates the record (PENDING) on the anchor shard, then each
   participant applies `TXN_PREPARE`, which validates and lays intents and locks and
   answers the lowest timestamp the transaction may commit at there (above every version
   the shard has, so above every snapshot it served); `TXN_END` commits the record at the
   highest of those, the commit point; `TXN_RESOLVE` turns intents into versions (or drops
   them) and `TXN_FORGET` drops the record.

Validation (the same in one or two phases), for a transaction that read at `read_ts`:
a written key changed after `read_ts` fails it at snapshot and serializable (first committer
wins: lost updates abort); at serializable a read key or a scanned range that changed after
`read_ts` fails it too (so write skew and phantoms abort: the reads are still true at the
commit timestamp, and the read locks keep them true until then). Another transaction's
intent or lock in the way is a CONFLICT naming it: the caller aborts (no waiting while
holding locks, so no deadlock) or, for a single write, resolves it and tries again.

Everything here is deterministic: each replica computes the same results from the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from quorumdb.kv.commands import Command, CommandKind, Isolation, Outcome, Result, TxnOp
from quorumdb.kv.mvcc import Intent, TxnLocks, VersionStore
from quorumdb.kv.txn_records import RecordStatus, TxnRecord

__all__ = ["ALL_CHECKS", "Checks", "apply_txn_command", "conflict_result"]


@dataclass(frozen=True, slots=True)
class Checks:
    """Which validations run (all, except under the planted bugs of the simulator's tests)."""

    writes: bool = True  # first committer wins (snapshot and serializable)
    reads: bool = True  # serializable: reads and scans validated and locked


ALL_CHECKS = Checks()


def apply_txn_command(
    store: VersionStore,
    records: dict[int, TxnRecord],
    index: int,
    cmd: Command,
    checks: Checks = ALL_CHECKS,
) -> Result:
    """Apply a `TXN_*` command at log `index`; the result answers its proposer."""
    op = cmd.txn
    assert op is not None, f"{cmd.kind.name} without a transaction"
    kind = cmd.kind
    if kind == CommandKind.TXN_ONE_PHASE:
        return _one_phase(store, index, cmd.ts, op, checks)
    if kind == CommandKind.TXN_PREPARE:
        return _prepare(store, op, checks)
    if kind == CommandKind.TXN_RESOLVE:
        return _resolve(store, index, cmd.ts, op)
    if kind == CommandKind.TXN_BEGIN:
        return _begin(records, op)
    if kind == CommandKind.TXN_END:
        return _end(records, cmd.ts, op)
    assert kind == CommandKind.TXN_FORGET, kind
    rec = records.get(op.id)
    if rec is not None and rec.status != RecordStatus.PENDING:
        del records[op.id]
    return Result(outcome=Outcome.OK, revision=0)


def _validate(store: VersionStore, op: TxnOp, checks: Checks) -> Result | None:
    """Why `op` may not commit here (None: it may)."""
    if op.read_ts < store.low_watermark() and op.isolation >= Isolation.SNAPSHOT:
        return _failure("the transaction is older than the garbage-collection window")
    check_writes = op.isolation >= Isolation.SNAPSHOT and checks.writes
    for key, _ in op.writes:
        who = store.blocker(key, op.id, writing=True)
        if who is not None:
            return conflict_result(who, store)
        if check_writes and store.changed_after(key, op.read_ts):
            return _failure(f"write-write conflict on {key!r} (first committer wins)")
    if op.isolation == Isolation.SERIALIZABLE and checks.reads:
        for key in op.reads:
            who = store.blocker(key, op.id, writing=False)
            if who is not None:
                return conflict_result(who, store)
            if store.changed_after(key, op.read_ts):
                return _failure(f"{key!r} was written after this transaction read it")
        for start, end in op.ranges:
            intent = store.range_blocker(start, end, op.id)
            if intent is not None:
                return conflict_result(intent, store)
            if store.range_changed_after(start, end, op.read_ts):
                return _failure(f"a key in the scanned range from {start!r} changed")
    return None


def _one_phase(store: VersionStore, index: int, ts: int, op: TxnOp, checks: Checks) -> Result:
    failed = _validate(store, op, checks)
    if failed is not None:
        return failed
    ts = max(ts, store.max_ts + 1)
    for key, value in op.writes:
        store.write(key, value, index, ts, store.latest.get(key))
    return Result(outcome=Outcome.OK, revision=index, ts=ts)


def _prepare(store: VersionStore, op: TxnOp, checks: Checks) -> Result:
    held = store.held.get(op.id)
    if held is not None:  # already prepared here (a retry): the same answer
        intent = store.intents.get(held.writes[0]) if held.writes else None
        return Result(
            outcome=Outcome.OK, revision=0, ts=intent.min_ts if intent else store.max_ts + 1
        )
    failed = _validate(store, op, checks)
    if failed is not None:
        return failed
    min_ts = store.max_ts + 1
    serializable = op.isolation == Isolation.SERIALIZABLE and checks.reads
    locks = TxnLocks(
        record_group=op.record_group,
        writes=[k for k, _ in op.writes],
        reads=list(op.reads) if serializable else [],
        ranges=list(op.ranges) if serializable else [],
    )
    store.lock(op.id, locks, op.writes, min_ts)
    return Result(outcome=Outcome.OK, revision=0, ts=min_ts)


def _resolve(store: VersionStore, index: int, ts: int, op: TxnOp) -> Result:
    intents = {k: store.intents[k] for k in _held_writes(store, op.id)}
    locks = store.release(op.id)
    if locks is None:
        return Result(outcome=Outcome.OK, revision=0)
    if op.commit:
        for key, intent in intents.items():
            current = store.latest.get(key)
            stamp = ts if current is None or current[2] < ts else current[2] + 1
            store.write(key, intent.value, index, stamp, current)
        store.max_ts = max(store.max_ts, ts)
    return Result(outcome=Outcome.OK, revision=index, ts=ts)


def _held_writes(store: VersionStore, txn: int) -> list[bytes]:
    locks = store.held.get(txn)
    if locks is None:
        return []
    return [k for k in locks.writes if (i := store.intents.get(k)) is not None and i.txn == txn]


def _begin(records: dict[int, TxnRecord], op: TxnOp) -> Result:
    rec = records.get(op.id)
    if rec is None:
        records[op.id] = TxnRecord(RecordStatus.PENDING, list(op.participants), op.deadline)
        return Result(outcome=Outcome.OK, revision=0)
    return _record_result(rec)


def _end(records: dict[int, TxnRecord], ts: int, op: TxnOp) -> Result:
    rec = records.get(op.id)
    if rec is None:
        # An intent is laid only after its record began, so no record here means it was
        # forgotten: decided and resolved everywhere. It cannot commit any more; a pusher
        # learns NOT_FOUND (what it met is stale in its replica, or an orphan: a prepare
        # that applied after the abort it never heard of).
        return Result(outcome=Outcome.ABORTED if op.commit else Outcome.NOT_FOUND, revision=0)
    if rec.status == RecordStatus.PENDING:
        if op.commit:
            rec.status = RecordStatus.COMMITTED
            rec.commit_ts = ts
        elif not op.if_expired or ts > rec.deadline:
            rec.status = RecordStatus.ABORTED
    return _record_result(rec)


def _record_result(rec: TxnRecord) -> Result:
    if rec.status == RecordStatus.COMMITTED:
        return Result(outcome=Outcome.OK, revision=0, ts=rec.commit_ts)
    if rec.status == RecordStatus.ABORTED:
        return Result(outcome=Outcome.ABORTED, revision=0)
    return Result(outcome=Outcome.PENDING, revision=0)


def conflict_result(who: Intent | int, store: VersionStore, attempt: int = 0) -> Result:
    """A CONFLICT naming `who` (an intent's transaction, or a lock holder's id)."""
    if isinstance(who, Intent):
        txn, group = who.txn, who.record_group
    else:
        held = store.held.get(who)
        txn, group = who, held.record_group if held is not None else 0
    return Result(
        outcome=Outcome.CONFLICT, revision=0, blocker=txn, blocker_group=group, attempt=attempt
    )


def _failure(detail: str) -> Result:
    return Result(outcome=Outcome.SERIALIZATION_FAILURE, revision=0, detail=detail)
