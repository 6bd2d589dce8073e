"""`kv.txn_engine` on one shard's state machine: validation, intents, records, snapshots.

Deterministic unit tests of the rules the commit protocol relies on; the protocol end to end
is tested on real processes (tests/e2e/test_transactions.py).
"""

from __future__ import annotations

from quorumdb.kv.commands import Command, CommandKind, Isolation, Outcome, Result, TxnOp
from quorumdb.kv.state_machine import KVStateMachine


class _Shard:
    def __init__(self, gc_window: int = 1 << 40) -> None:
        self.sm = KVStateMachine(gc_window=gc_window)
        self.index = 0

    def apply(self, cmd: Command) -> Result:
        self.index += 1
        result = self.sm.apply(self.index, cmd)
        assert result is not None
        return result

    def put(self, key: bytes, value: bytes, ts: int = 0, client: int = 0, seq: int = 0) -> Result:
        return self.apply(
            Command(kind=CommandKind.PUT, key=key, value=value, ts=ts, client=client, seq=seq)
        )

    def txn(self, kind: CommandKind, op: TxnOp, ts: int = 0) -> Result:
        return self.apply(Command(kind=kind, key=b"", ts=ts, txn=op))


def test_versions_are_read_at_a_snapshot() -> None:
    s = _Shard()
    first = s.put(b"k", b"1", ts=100)
    second = s.put(b"k", b"2", ts=50)  # stamped above the shard's newest, not at 50
    assert (first.ts, second.ts) == (100, 101)
    store = s.sm.store
    assert store.read_at(b"k", 99) is None
    assert store.read_at(b"k", 100) == (b"1", 1, 100)
    assert store.read_at(b"k", 500) == (b"2", 2, 101)
    s.apply(Command(kind=CommandKind.DELETE, key=b"k", ts=200))
    assert s.sm.get(b"k") is None
    assert store.read_at(b"k", 150) == (b"2", 2, 101), "a snapshot before the delete"


def test_close_makes_later_writes_stamp_above_it() -> None:
    s = _Shard()
    s.apply(Command(kind=CommandKind.CLOSE, key=b"", ts=1_000))
    assert s.put(b"k", b"v", ts=10).ts == 1_001


def test_first_committer_wins_at_snapshot_not_at_read_committed() -> None:
    s = _Shard()
    s.put(b"k", b"0", ts=10)
    s.put(b"k", b"1", ts=20)  # committed after a reader's snapshot at 15
    for level, outcome in (
        (Isolation.SNAPSHOT, Outcome.SERIALIZATION_FAILURE),
        (Isolation.SERIALIZABLE, Outcome.SERIALIZATION_FAILURE),
        (Isolation.READ_COMMITTED, Outcome.OK),
    ):
        op = TxnOp(id=7, isolation=level, read_ts=15, writes=[(b"k", b"2")])
        assert s.txn(CommandKind.TXN_ONE_PHASE, op, ts=30).outcome == outcome, level


def test_serializable_validates_reads_and_ranges() -> None:
    s = _Shard()
    s.put(b"a", b"on", ts=10)
    s.put(b"range/2", b"x", ts=30)
    read_changed = TxnOp(id=1, read_ts=20, reads=[b"a"], writes=[(b"b", b"off")])
    assert s.txn(CommandKind.TXN_ONE_PHASE, read_changed, ts=40).outcome == Outcome.OK
    s.put(b"a", b"off", ts=50)
    stale = TxnOp(id=2, read_ts=45, reads=[b"a"], writes=[(b"b", b"on")])
    assert s.txn(CommandKind.TXN_ONE_PHASE, stale, ts=60).outcome == Outcome.SERIALIZATION_FAILURE
    phantom = TxnOp(id=3, read_ts=25, ranges=[(b"range/", b"range0")], writes=[(b"c", b"1")])
    assert s.txn(CommandKind.TXN_ONE_PHASE, phantom, ts=60).outcome == (
        Outcome.SERIALIZATION_FAILURE
    )
    snapshot = TxnOp(
        id=4, isolation=Isolation.SNAPSHOT, read_ts=25, reads=[b"a"], writes=[(b"c", b"1")]
    )
    assert s.txn(CommandKind.TXN_ONE_PHASE, snapshot, ts=60).outcome == Outcome.OK


def test_intents_block_writers_and_a_conflict_is_answered_again_to_copies() -> None:
    s = _Shard()
    prepared = s.txn(
        CommandKind.TXN_PREPARE,
        TxnOp(id=9, record_group=1, read_ts=5, writes=[(b"k", b"txn")], reads=[b"r"]),
    )
    assert prepared.outcome == Outcome.OK and prepared.ts == s.sm.store.max_ts + 1
    blocked = s.put(b"k", b"plain", client=42, seq=1)
    assert (blocked.outcome, blocked.blocker, blocked.blocker_group) == (Outcome.CONFLICT, 9, 1)
    assert s.put(b"r", b"w").outcome == Outcome.CONFLICT, "a read lock blocks writers"
    s.txn(CommandKind.TXN_RESOLVE, TxnOp(id=9, commit=True), ts=prepared.ts + 5)
    assert s.sm.get(b"k") == (b"txn", s.index)
    assert s.sm.store.read_at(b"k", prepared.ts + 5) is not None
    # A copy of the conflicted request (a duplicate, a re-proposal) gets its CONFLICT again
    # and changes nothing; the retry (same client and seq, the next attempt) applies.
    copy = s.put(b"k", b"plain", client=42, seq=1)
    assert copy.outcome == Outcome.CONFLICT and s.sm.get(b"k") == (b"txn", s.index - 1)
    retried = s.apply(
        Command(kind=CommandKind.PUT, key=b"k", value=b"plain", client=42, seq=1, attempt=1)
    )
    assert retried.outcome == Outcome.OK and s.sm.get(b"k") == (b"plain", s.index)
    late_copy = s.put(b"k", b"other", client=42, seq=1)
    assert late_copy == retried and s.sm.get(b"k") == (b"plain", s.index - 1)


def test_records_decide_once_and_expire_for_pushers() -> None:
    s = _Shard()
    s.txn(CommandKind.TXN_BEGIN, TxnOp(id=5, participants=[1, 2], deadline=100))
    early_push = TxnOp(id=5, if_expired=True)
    assert s.txn(CommandKind.TXN_END, early_push, ts=50).outcome == Outcome.PENDING
    assert s.txn(CommandKind.TXN_END, early_push, ts=150).outcome == Outcome.ABORTED
    late_commit = s.txn(CommandKind.TXN_END, TxnOp(id=5, commit=True), ts=160)
    assert late_commit.outcome == Outcome.ABORTED, "a decided record never changes"
    s.txn(CommandKind.TXN_BEGIN, TxnOp(id=6, participants=[1], deadline=100))
    committed = s.txn(CommandKind.TXN_END, TxnOp(id=6, commit=True), ts=70)
    assert (committed.outcome, committed.ts) == (Outcome.OK, 70)
    push = s.txn(CommandKind.TXN_END, TxnOp(id=6, if_expired=True), ts=500)
    assert (push.outcome, push.ts) == (Outcome.OK, 70), "a pusher learns the commit"
    # A forgotten record: a pusher learns so; it cannot commit any more.
    assert s.txn(CommandKind.TXN_FORGET, TxnOp(id=6)).outcome == Outcome.OK
    forgotten = s.txn(CommandKind.TXN_END, TxnOp(id=6, if_expired=True), ts=600)
    assert forgotten.outcome == Outcome.NOT_FOUND
    assert s.txn(CommandKind.TXN_END, TxnOp(id=6, commit=True), ts=601).outcome == Outcome.ABORTED
    assert 6 not in s.sm.records, "a push leaves no record behind"
    # A pending record's answer carries no timestamp (clocks must not jump to its deadline).
    s.txn(CommandKind.TXN_BEGIN, TxnOp(id=8, participants=[1], deadline=10**15))
    assert s.txn(CommandKind.TXN_END, TxnOp(id=8, if_expired=True)).ts == 0


def test_snapshot_keeps_versions_intents_and_records() -> None:
    s = _Shard()
    s.put(b"k", b"1", ts=10)
    s.put(b"k", b"2", ts=20)
    s.txn(CommandKind.TXN_BEGIN, TxnOp(id=5, participants=[1], deadline=100))
    s.txn(
        CommandKind.TXN_PREPARE,
        TxnOp(
            id=5,
            record_group=1,
            read_ts=25,
            writes=[(b"j", b"x")],
            reads=[b"k"],
            ranges=[(b"a", b"b")],
        ),
    )
    copy = KVStateMachine(gc_window=1 << 40)
    copy.restore(s.sm.snapshot())
    assert copy.store.read_at(b"k", 15) == (b"1", 1, 10)
    assert copy.store.intents[b"j"].txn == 5
    assert copy.store.read_locks[b"k"] == {5}
    assert copy.store.range_locks[5] == [(b"a", b"b")]
    assert copy.records[5].participants == [1]
    assert copy.snapshot() == s.sm.snapshot()


def test_old_versions_are_collected_below_the_watermark() -> None:
    s = _Shard(gc_window=100)
    for i, ts in enumerate((10, 20, 500, 1_000)):
        s.put(b"k", str(i).encode(), ts=ts)
    store = s.sm.store
    # The watermark is 900: the version at 500 is needed (readers at 900..999), older ones not.
    assert [v[2] for v in store.older[b"k"]] == [500]
    s.txn(
        CommandKind.TXN_ONE_PHASE,
        TxnOp(id=1, isolation=Isolation.SNAPSHOT, read_ts=800, writes=[(b"k", b"z")]),
        ts=1_100,
    )
    too_old = TxnOp(id=2, isolation=Isolation.SNAPSHOT, read_ts=10, writes=[(b"x", b"1")])
    result = s.txn(CommandKind.TXN_ONE_PHASE, too_old, ts=1_200)
    assert result.outcome == Outcome.SERIALIZATION_FAILURE and "garbage" in result.detail


def test_a_restored_state_answers_the_requests_its_sessions_remember() -> None:
    """A write whose entry a snapshot covered is answered from the restored sessions (the
    host asks `restored_answer` after installing one) instead of timing out."""
    s = _Shard()
    done = s.put(b"k", b"v", client=7, seq=3)
    s.txn(CommandKind.TXN_PREPARE, TxnOp(id=9, record_group=1, writes=[(b"x", b"1")]))
    conflicted = s.put(b"x", b"2", client=8, seq=1)
    copy = KVStateMachine()
    copy.restore(s.sm.snapshot())
    assert copy.restored_answer((7, 3)) == done
    assert copy.restored_answer((7, 2)) is None, "an older request: not this answer"
    assert copy.restored_answer((5, 1)) is None, "a client the sessions never saw"
    assert conflicted.outcome == Outcome.CONFLICT
    assert copy.restored_answer((8, 1)) is None, "a CONFLICT: a later attempt may be waiting"
