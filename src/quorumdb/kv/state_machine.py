"""One shard's replicated key-value state: versioned values, transactions, client sessions.

Values are multi-versioned by HLC timestamp (`kv.mvcc`), so transactions read consistent
snapshots; a single-key write is a one-key transaction stamped above the shard's newest
timestamp, and it waits (CONFLICT) while a transaction holds the key. Transaction commands
are applied by `kv.txn_engine`. `get` and `scan` read the newest committed values.

Revisions: a key's revision is the Raft index of the command that last wrote it, so it is the
same on every replica and increases with every write (etcd's mod_revision). Compare-and-set
compares against that revision. Sessions: the last `seq` applied per client and its result;
a retried command with that `seq` gets the stored result and is not applied again (Raft
thesis §6.3), and an older `seq` is a stale duplicate and is ignored. Sessions are bounded
(least recently used evicted) and travel in snapshots. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import msgspec

from quorumdb.kv.commands import Command, CommandKind, Outcome, Result, decode_command
from quorumdb.kv.hlc import LOGICAL_BITS
from quorumdb.kv.mvcc import TxnLocks, VersionStore
from quorumdb.kv.txn_engine import ALL_CHECKS, Checks, apply_txn_command, conflict_result
from quorumdb.kv.txn_records import TxnRecord

__all__ = ["GC_WINDOW", "SESSIONS_MAX", "KVStateMachine"]

SESSIONS_MAX = 100_000
# Versions are kept this long (in HLC units: 30 s) after being replaced; longer than any
# transaction may stay open (`kv.transactions.TXN_TIMEOUT_MAX_S`).
GC_WINDOW = 30_000 << LOGICAL_BITS

# Enum members read once (a class attribute lookup per use costs on the put's hot path).
_OK, _CONFLICT = Outcome.OK, Outcome.CONFLICT
_DELETE, _CAS = CommandKind.DELETE, CommandKind.CAS


class _Image(msgspec.Struct, array_like=True):
    applied: int
    keys: list[bytes]
    values: list[bytes]
    revisions: list[int]
    sessions: list[tuple[int, int, Result]]
    # Since MVCC (older images end here and decode with these defaults).
    timestamps: list[int] = []
    tombstones: list[bytes] = []  # keys whose newest version is a delete
    older: list[tuple[bytes, list[tuple[bytes | None, int, int]]]] = []
    max_ts: int = 0
    intents: list[
        tuple[
            int,
            int,
            list[tuple[bytes, bytes | None]],
            list[bytes],
            list[tuple[bytes, bytes | None]],
            int,
        ]
    ] = []
    records: list[tuple[int, TxnRecord]] = []


_encode_image = msgspec.msgpack.Encoder().encode
_decode_image = msgspec.msgpack.Decoder(_Image).decode


class KVStateMachine:
    __slots__ = (
        "applied",
        "checks",
        "dedupe",
        "observer",
        "on_ts",
        "records",
        "sessions",
        "store",
    )

    # In memory, and applying only answers clients: the host may apply it mid-flight.
    applies_midflight = True

    def __init__(
        self,
        observer: Callable[[Command, Result], None] | None = None,
        *,
        dedupe: bool = True,
        gc_window: int = GC_WINDOW,
        on_ts: Callable[[int], None] | None = None,
        checks: Checks = ALL_CHECKS,
    ) -> None:
        """`dedupe=False` is the planted bug `SESSION_CHECK_DROPPED` (tests only): a command
        retried with the same (client, seq) applies again instead of being answered from
        its session. `gc_window`: how far below the newest timestamp versions are kept.
        `on_ts` sees every timestamp an entry applies at (the node's HLC follows the log).
        `checks`: transaction validations (fewer only for planted bugs)."""
        self.observer = observer
        self.dedupe = dedupe
        self.on_ts = on_ts
        self.checks = checks
        self.store = VersionStore(gc_window)
        self.records: dict[int, TxnRecord] = {}
        self.sessions: OrderedDict[int, tuple[int, Result]] = OrderedDict()
        self.applied = 0

    def apply_entry(self, index: int, data: bytes) -> tuple[tuple[int, int], Result] | None:
        """`ReplicatedStateMachine`: decode and apply; answer the (client, seq) request."""
        cmd = decode_command(data)
        result = self.apply(index, cmd)
        if result is None:
            return None
        if self.observer is not None:
            self.observer(cmd, result)
        if self.on_ts is not None:
            self.on_ts(result.ts)
        return (cmd.client, cmd.seq), result

    def apply(self, index: int, cmd: Command) -> Result | None:
        """Apply the command at log `index`; None if it is a stale duplicate (ignored)."""
        assert index > self.applied, f"apply index {index} after {self.applied}"
        self.applied = index
        if cmd.client and self.dedupe:
            seen = self.sessions.get(cmd.client)
            if seen is not None:
                if cmd.seq == seen[0]:
                    stored = seen[1]
                    # A copy of the request (a duplicate, a re-proposal) gets the answer it
                    # had; a retry after a CONFLICT (a later attempt) runs again.
                    if stored.outcome != _CONFLICT or cmd.attempt <= stored.attempt:
                        self.sessions.move_to_end(cmd.client)
                        return stored
                elif cmd.seq < seen[0]:
                    return None
        result = self._execute(index, cmd)
        if cmd.client:
            self.sessions[cmd.client] = (cmd.seq, result)
            self.sessions.move_to_end(cmd.client)
            if len(self.sessions) > SESSIONS_MAX:
                self.sessions.popitem(last=False)
        return result

    def skip(self, index: int) -> None:
        """Record that `index` held no KV command (a no-op or a membership change)."""
        self.applied = max(self.applied, index)

    def _execute(self, index: int, cmd: Command) -> Result:
        kind = cmd.kind
        store = self.store
        if kind > _CAS:
            if kind == CommandKind.CLOSE:
                store.max_ts = max(store.max_ts, cmd.ts)
                return Result(outcome=Outcome.OK, revision=0, ts=store.max_ts)
            return apply_txn_command(store, self.records, index, cmd, self.checks)
        key = cmd.key
        if store.held:
            who = store.blocker(key, 0, writing=True)
            if who is not None:
                return conflict_result(who, store, cmd.attempt)
        current = store.latest.get(key)
        rev = 0 if current is None or current[0] is None else current[1]
        # Stamped above everything the shard has (plain comparisons: the put's hot path).
        ts = cmd.ts
        if ts <= store.max_ts:
            ts = store.max_ts + 1
        if kind == _DELETE:
            if rev == 0:
                return Result(outcome=Outcome.NOT_FOUND, revision=0)
            store.write(key, None, index, ts, current)
            return Result(outcome=Outcome.OK, revision=0, previous_revision=rev, ts=ts)
        if kind == _CAS and rev != cmd.expected_revision:
            return Result(outcome=Outcome.CAS_FAILED, revision=rev)
        store.write(key, cmd.value, index, ts, current)
        return Result(outcome=_OK, revision=index, previous_revision=rev, ts=ts)

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: bytes) -> tuple[bytes, int] | None:
        """The newest committed value of `key` and its revision (None: absent)."""
        v = self.store.latest.get(key)
        if v is None or v[0] is None:
            return None
        return v[0], v[1]

    def scan(self, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes, int]]:
        """Newest committed values of keys in [start, end) in order, at most `limit`:
        (key, value, revision)."""
        latest = self.store.latest
        out: list[tuple[bytes, bytes, int]] = []
        if limit <= 0:
            return out
        for k in self.store.keys_in(start, end):
            v = latest[k]
            if v[0] is not None:
                out.append((k, v[0], v[1]))
                if len(out) >= limit:
                    break
        return out

    def __len__(self) -> int:
        return sum(1 for v in self.store.latest.values() if v[0] is not None)

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        store = self.store
        store.collect()
        keys = store.keys
        latest = store.latest
        return _encode_image(
            _Image(
                applied=self.applied,
                keys=keys,
                values=[latest[k][0] or b"" for k in keys],
                revisions=[latest[k][1] for k in keys],
                sessions=[(c, s, r) for c, (s, r) in self.sessions.items()],
                timestamps=[latest[k][2] for k in keys],
                tombstones=[k for k in keys if latest[k][0] is None],
                older=list(store.older.items()),
                max_ts=store.max_ts,
                intents=[
                    (
                        txn,
                        locks.record_group,
                        [(k, store.intents[k].value) for k in locks.writes],
                        locks.reads,
                        locks.ranges,
                        store.intents[locks.writes[0]].min_ts if locks.writes else 0,
                    )
                    for txn, locks in store.held.items()
                ],
                records=list(self.records.items()),
            )
        )

    def restored_answer(self, key: tuple[int, int]) -> Result | None:
        """The stored answer of request (client, seq) if its session remembers it (not a
        CONFLICT: a later attempt of the same request may be the one waiting)."""
        seen = self.sessions.get(key[0]) if key[0] else None
        if seen is None or seen[0] != key[1] or seen[1].outcome == _CONFLICT:
            return None
        return seen[1]

    def restore(self, image: bytes) -> None:
        img = _decode_image(image) if image else _Image(0, [], [], [], [])
        self.applied = img.applied
        store = VersionStore(self.store.gc_window)
        stamps = img.timestamps or [0] * len(img.keys)
        dead = set(img.tombstones)
        store.keys = list(img.keys)
        store.latest = {
            k: (None if k in dead else v, r, t)
            for k, v, r, t in zip(img.keys, img.values, img.revisions, stamps, strict=True)
        }
        store.older = dict(img.older)
        store.max_ts = img.max_ts
        for txn, record_group, writes, reads, ranges, min_ts in img.intents:
            locks = TxnLocks(record_group, [k for k, _ in writes], list(reads), list(ranges))
            store.lock(txn, locks, writes, min_ts)
        self.store = store
        self.records = dict(img.records)
        self.sessions = OrderedDict((c, (s, r)) for c, s, r in img.sessions)
