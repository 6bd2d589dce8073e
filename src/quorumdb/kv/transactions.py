"""Interactive transactions: the coordinator that runs on the node a client talks to.

A transaction's reads are served from this node's own replicas (every node holds every
shard) at the transaction's snapshot timestamp, once the shard has closed that timestamp
(`CLOSE`: no later write may be stamped at or below it), so no read needs the leader; its
writes are buffered here and reach the shards only at commit, so an abandoned transaction
leaves nothing behind but memory, which expires. The commit is `kv.txn_engine`'s protocol:
one phase on a single shard; otherwise a replicated record, prepares with intents, the
record's decision (the commit point), resolution. Whoever meets an intent asks the record
and, once the record's deadline has passed, aborts it (`_outcome`), and each shard's leader
finishes or aborts the transactions its records hold whose coordinator went quiet
(`recover`): a dead coordinator blocks nobody for longer than the commit deadline plus an
election.

Isolation: read committed reads the newest committed values at each read; snapshot and
serializable read one snapshot and validate at commit (see `kv.txn_engine`); read
uncommitted (an unsafe engine switch for the labs) writes through at once, so dirty writes
and dirty reads happen. A failed validation or a conflict at commit is a
`SerializationFailureError` (SQLSTATE 40001), safe to retry as a new transaction.

Every step is a coroutine over the host's `Pending` answers and timers (`host.pending.spawn`),
so the same code runs under asyncio and in the simulator.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from quorumdb.errors import QuorumError, ServiceUnavailableError
from quorumdb.host.group import Group
from quorumdb.host.node_host import CONTROLLER_GROUP
from quorumdb.host.pending import Pending, spawn
from quorumdb.kv.commands import Command, CommandKind, Isolation, Outcome, Result, TxnOp
from quorumdb.kv.hlc import HLC, LOGICAL_BITS, physical_ms
from quorumdb.kv.mvcc import Version
from quorumdb.kv.txn_errors import (
    CommitOutcomeUnknownError,
    SerializationFailureError,
    TxnBusyError,
    TxnClosedError,
    TxnError,
    TxnNotFoundError,
    TxnTooLargeError,
)
from quorumdb.kv.txn_records import RecordStatus
from quorumdb.raft import ProposalDroppedError

if TYPE_CHECKING:
    from quorumdb.kv.node_kv import NodeKV

__all__ = [
    "MAX_TXN_BYTES",
    "MAX_TXN_KEYS",
    "TXN_TIMEOUT_MAX_S",
    "CommitOutcomeUnknownError",
    "SerializationFailureError",
    "Transaction",
    "TxnBusyError",
    "TxnClosedError",
    "TxnCoordinator",
    "TxnError",
    "TxnNotFoundError",
    "TxnTooLargeError",
    "TxnWrite",
]

TXN_TIMEOUT_S = 10.0  # default: an open transaction expires after this
TXN_TIMEOUT_MAX_S = 20.0  # below the shards' GC window, so a snapshot is never collected
COMMIT_DEADLINE_S = 2.0  # a PENDING record may be aborted by others after this
MAX_TXN_KEYS = 10_000
MAX_TXN_BYTES = 8 << 20
_RECOVERY_PERIOD_S = 1.0
_CLOSE_RECHECK_S = 0.05
_POLL_S = 0.002
_POLLS_BEFORE_PUSH = 5
_ONE_PHASE_TRIES = 5
# A client's `seen_ts` may be ahead of this node's clock by the clock offset and a margin
# (commit timestamps run a little ahead of the wall clock); further is refused: it would
# drag every node's clock, and each commit's wait, along with it.
_SEEN_AHEAD_MS = 5_000

TxnWrite = tuple[bytes, bytes | None]


class TxnState(Enum):
    OPEN = "open"
    COMMITTED = "committed"
    ABORTED = "aborted"
    UNKNOWN = "of unknown outcome"  # the commit was sent; whether it applied is not known


@dataclass(slots=True)
class Transaction:
    id: int
    isolation: Isolation
    read_ts: int  # the snapshot (snapshot, serializable); the newest read (read committed)
    expires: float  # monotonic seconds
    writes: dict[bytes, bytes | None] = field(default_factory=dict)
    reads: set[bytes] = field(default_factory=set)
    ranges: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    state: TxnState = TxnState.OPEN
    commit_ts: int = 0
    size: int = 0
    ended_why: str = ""
    busy: bool = False


@dataclass(frozen=True, slots=True)
class _Outcome:
    committed: bool
    ts: int


class TxnCoordinator:
    """The transactions begun on one node, and the node's share of recovering others'."""

    def __init__(
        self,
        kv: NodeKV,
        hlc: HLC,
        *,
        allow_read_uncommitted: bool = False,
        max_clock_offset_ms: int = 0,
        commit_before_record: bool = False,
    ) -> None:
        """`commit_before_record` is the planted bug `TXN_COMMIT_BEFORE_RECORD` (tests only):
        participants are told to commit before the record decides."""
        self.kv = kv
        self.commit_before_record = commit_before_record
        self.max_clock_offset_ms = max_clock_offset_ms
        self.host = kv.host
        self.hlc = hlc
        self.allow_read_uncommitted = allow_read_uncommitted
        self.txns: dict[int, Transaction] = {}
        self._closing: dict[int, tuple[int, Pending[Result]]] = {}
        self._recovering = False
        self._cancel_recovery: Callable[[], None] = _nothing
        self.stats = {"committed": 0, "aborted": 0, "serialization_failures": 0, "pushes": 0}

    # -- the client's operations -------------------------------------------------------------

    def begin(
        self, isolation: Isolation, *, timeout_s: float = TXN_TIMEOUT_S, seen_ts: int = 0
    ) -> Transaction:
        """A new transaction; `seen_ts` is the newest timestamp the client has seen (its
        snapshot is at least that: read-your-writes across transactions)."""
        if isolation == Isolation.READ_UNCOMMITTED and not self.allow_read_uncommitted:
            raise TxnError(
                "read_uncommitted needs the node's unsafe engine switch "
                "(--unsafe-read-uncommitted; labs only)"
            )
        if not 0 < timeout_s <= TXN_TIMEOUT_MAX_S:
            raise TxnError(f"timeout must be in (0, {TXN_TIMEOUT_MAX_S:g}] seconds")
        ahead_ms = physical_ms(seen_ts) - self.host.env.clock.wall_ms()
        if ahead_ms > self.max_clock_offset_ms + _SEEN_AHEAD_MS:
            raise TxnError(
                f"seen_ts is {ahead_ms} ms ahead of this node's clock "
                f"(at most max_clock_offset_ms + {_SEEN_AHEAD_MS} ms)"
            )
        self.hlc.update(seen_ts)
        self._expire()
        txn_id = self.host.env.rng.getrandbits(62) + 1
        txn = Transaction(
            id=txn_id,
            isolation=isolation,
            read_ts=self.hlc.now(),
            expires=self.host.env.clock.monotonic() + timeout_s,
        )
        self.txns[txn_id] = txn
        return txn

    def lookup(self, txn_id: int) -> Transaction:
        txn = self.txns.get(txn_id)
        if txn is None:
            raise TxnNotFoundError(f"no transaction {txn_id:x} on this node")
        if (
            txn.state == TxnState.OPEN
            and self.host.env.clock.monotonic() > txn.expires
            and not txn.busy
        ):
            self._end(txn, TxnState.ABORTED, "expired")
        if txn.state != TxnState.OPEN:
            raise TxnClosedError(f"transaction {txn_id:x} is {txn.state.value} ({txn.ended_why})")
        return txn

    def get(self, txn: Transaction, key: bytes) -> Pending[bytes | None]:
        return spawn(self._get(txn, key))

    def scan(
        self, txn: Transaction, start: bytes, end: bytes | None, limit: int
    ) -> Pending[list[tuple[bytes, bytes]]]:
        return spawn(self._scan(txn, start, end, limit))

    def write(self, txn: Transaction, key: bytes, value: bytes | None) -> Pending[None]:
        """Buffer a write (a put, or a delete with None) until commit (read uncommitted:
        write it through now)."""
        return spawn(self._write(txn, key, value))

    def commit(self, txn: Transaction) -> Pending[int]:
        """Commit; the answer is the commit timestamp, once every write is visible."""
        return spawn(self._commit(txn))

    def abort(self, txn: Transaction) -> None:
        self._end(txn, TxnState.ABORTED, "aborted by the client")

    @contextlib.contextmanager
    def busy(self, txn: Transaction) -> Iterator[None]:
        """One request of a transaction at a time (a client's steps are sequential)."""
        if txn.busy:
            raise TxnBusyError(f"another request of transaction {txn.id:x} is in progress")
        txn.busy = True
        try:
            yield
        finally:
            txn.busy = False

    def settle(self, g: Group, start: bytes, end: bytes | None) -> Pending[None]:
        """Resolve every intent on keys in [start, end) of shard `g` (a single key: `end`
        is `start + b"\0"`) that this node's replica holds, waiting for their records'
        decisions: a plain read then sees every commit answered before it began."""
        return spawn(self._settle(g, start, end))

    async def _settle(self, g: Group, start: bytes, end: bytes | None) -> None:
        while True:
            store = self.kv.store_of(g)
            intent = next(
                (i for k, i in store.intents.items() if k >= start and (end is None or k < end)),
                None,
            )
            if intent is None:
                return
            outcome = await self._outcome(intent.txn, intent.record_group, g)
            if outcome is None:
                await self._clear_forgotten(g, intent.txn)
            elif intent.txn in self.kv.store_of(g).held:
                op = TxnOp(id=intent.txn, commit=outcome.committed)
                await self._propose(g, _txn_cmd(CommandKind.TXN_RESOLVE, op, outcome.ts))

    def resolve_conflict(self, result: Result, g: Group) -> Pending[None]:
        """Wait out (or abort, once expired) the transaction a CONFLICT result names."""
        return spawn(self._resolve_blocker(result, g))

    # -- reads -------------------------------------------------------------------------------

    async def _get(self, txn: Transaction, key: bytes) -> bytes | None:
        if key in txn.writes:
            return txn.writes[key]
        ts = self._read_ts(txn)
        v = await self._read(txn, self.host.shard_of(key), key, ts)
        txn.reads.add(key)
        return None if v is None else v[0]

    async def _scan(
        self, txn: Transaction, start: bytes, end: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        ts = self._read_ts(txn)
        rows: dict[bytes, bytes | None] = {}
        for gid, g in sorted(self.host.groups.items()):
            if gid == CONTROLLER_GROUP or gid > self.host.config.shards:
                continue
            await self._closed(g, ts)
            store = self.kv.store_of(g)
            # A key being inserted by a transaction still committing has only an intent.
            pending = [k for k in store.intents if k >= start and (end is None or k < end)]
            for key in sorted({*store.keys_in(start, end), *pending}):
                v = await self._read(txn, g, key, ts)
                if v is not None and v[0] is not None:
                    rows[key] = v[0]
        for key, value in txn.writes.items():
            if key >= start and (end is None or key < end):
                rows[key] = value
        txn.ranges.append((start, end))
        return [(k, v) for k, v in sorted(rows.items()) if v is not None][:limit]

    def _read_ts(self, txn: Transaction) -> int:
        if txn.isolation <= Isolation.READ_COMMITTED:
            txn.read_ts = self.hlc.now()  # each read sees the newest committed values
        return txn.read_ts

    async def _read(self, txn: Transaction, g: Group, key: bytes, ts: int) -> Version | None:
        """What `txn` sees of `key` at `ts`: wait for the shard to close `ts` here, then
        look past intents whose transactions commit above `ts` or abort."""
        await self._closed(g, ts)
        store = self.kv.store_of(g)
        while True:
            # Again after every wait: the versions below the watermark may be gone meanwhile.
            if ts < store.low_watermark() and txn.isolation >= Isolation.SNAPSHOT:
                raise SerializationFailureError("the snapshot is older than the GC window: retry")
            intent = store.intents.get(key)
            if intent is None or intent.txn == txn.id or intent.min_ts > ts:
                return store.read_at(key, ts)
            outcome = await self._outcome(intent.txn, intent.record_group, g)
            if outcome is None:  # forgotten: catch up, and clear the intent if an orphan
                await self._clear_forgotten(g, intent.txn)
            elif store.intents.get(key) is intent:  # not resolved here yet: decide from it
                if outcome.committed and outcome.ts <= ts:
                    return (intent.value, 0, outcome.ts)
                return store.read_at(key, ts)
            store = self.kv.store_of(g)

    async def _closed(self, g: Group, ts: int) -> None:
        """Wait until this node's replica of `g` has closed `ts` (one `CLOSE` in flight per
        shard serves every read waiting for a timestamp up to its own)."""
        store = self.kv.store_of(g)
        while store.max_ts < ts:
            closing = self._closing.get(g.group_id)
            if closing is None or closing[0] < ts:
                close_ts = max(ts, self.hlc.now())
                fut = self._propose(g, Command(kind=CommandKind.CLOSE, key=b"", ts=close_ts))
                closing = (close_ts, fut)
                self._closing[g.group_id] = closing
                fut.add_done_callback(functools.partial(self._closed_done, g.group_id, closing))
            # A snapshot installed here may cover the CLOSE, which then is never answered:
            # look at the store again now and then rather than only when it answers.
            await self._first(closing[1], _CLOSE_RECHECK_S)
            store = self.kv.store_of(g)  # a snapshot may have replaced it

    def _closed_done(
        self, gid: int, closing: tuple[int, Pending[Result]], _: Pending[Result]
    ) -> None:
        if self._closing.get(gid) is closing:
            del self._closing[gid]

    # -- writes ------------------------------------------------------------------------------

    async def _write(self, txn: Transaction, key: bytes, value: bytes | None) -> None:
        if txn.isolation == Isolation.READ_UNCOMMITTED:
            await self._write_through(key, value)
            return
        if key not in txn.writes:
            if len(txn.writes) >= MAX_TXN_KEYS:
                raise TxnTooLargeError(f"a transaction writes at most {MAX_TXN_KEYS} keys")
            txn.size += len(key)
        txn.size += len(value or b"")
        if txn.size > MAX_TXN_BYTES:
            raise TxnTooLargeError(f"a transaction writes at most {MAX_TXN_BYTES} bytes")
        txn.writes[key] = value

    async def _write_through(self, key: bytes, value: bytes | None) -> None:
        kind = CommandKind.PUT if value is not None else CommandKind.DELETE
        cmd = Command(kind=kind, key=key, value=value or b"", ts=self.hlc.now())
        await self.write_single(cmd)

    async def write_single(self, cmd: Command) -> Result:
        """A single-key write (a one-key transaction): proposed through any replica; a
        transaction holding the key is resolved (waited for, or aborted once expired) and
        the write tried again."""
        g = self.host.shard_of(cmd.key)
        while True:
            result = await self._propose(g, cmd)
            self.hlc.update(result.ts)
            if result.outcome != Outcome.CONFLICT:
                return result
            await self._resolve_blocker(result, g)

    # -- commit ------------------------------------------------------------------------------

    async def _commit(self, txn: Transaction) -> int:
        if not txn.writes or txn.isolation == Isolation.READ_UNCOMMITTED:
            self._end(txn, TxnState.COMMITTED, "committed", txn.read_ts)
            return txn.read_ts
        by_shard: dict[int, tuple[list[TxnWrite], list[bytes]]] = {}
        for key, value in txn.writes.items():
            by_shard.setdefault(self.host.shard_of(key).group_id, ([], []))[0].append((key, value))
        serializable = txn.isolation == Isolation.SERIALIZABLE
        if serializable:
            for key in txn.reads:
                by_shard.setdefault(self.host.shard_of(key).group_id, ([], []))[1].append(key)
            if txn.ranges:
                for gid in self._shard_ids():
                    by_shard.setdefault(gid, ([], []))
        ranges = txn.ranges if serializable else []
        try:
            if len(by_shard) == 1:
                ((gid, (writes, reads)),) = by_shard.items()
                ts = await self._one_phase(txn, gid, writes, reads, ranges)
            else:
                ts = await self._two_phase(txn, by_shard, ranges)
        except SerializationFailureError as exc:
            self.stats["serialization_failures"] += 1
            self._end(txn, TxnState.ABORTED, str(exc))
            raise
        except CommitOutcomeUnknownError as exc:
            self._end(txn, TxnState.UNKNOWN, str(exc))
            raise
        except BaseException as exc:
            self._end(txn, TxnState.ABORTED, f"failed: {exc}")
            raise
        await self._commit_wait(ts)
        self._end(txn, TxnState.COMMITTED, "committed", ts)
        return ts

    async def _commit_wait(self, ts: int) -> None:
        """Answer a commit only once every node's clock has passed its timestamp (Spanner's
        commit wait): a transaction that begins anywhere after the answer then reads at a
        timestamp above it (strict serializability), if the nodes' clocks disagree by at
        most `max_clock_offset_ms` (0 on one host: the wait is under a millisecond)."""
        target_ms = physical_ms(ts) + self.max_clock_offset_ms
        clock = self.host.env.clock
        # Bounded: a timestamp far ahead of this clock (a node's clock jumped back) must not
        # hold the answer for that long; real-time order is then only as good as the clocks.
        target_ms = min(target_ms, clock.wall_ms() + self.max_clock_offset_ms + _SEEN_AHEAD_MS)
        while (behind_ms := target_ms - clock.wall_ms()) >= 0:
            await self._sleep((behind_ms + 1) / 1000)

    def _op(self, txn: Transaction, **fields: Any) -> TxnOp:
        return TxnOp(id=txn.id, isolation=txn.isolation, read_ts=txn.read_ts, **fields)

    async def _one_phase(
        self,
        txn: Transaction,
        gid: int,
        writes: list[TxnWrite],
        reads: list[bytes],
        ranges: list[tuple[bytes, bytes | None]],
    ) -> int:
        g = self.host.groups[gid]
        op = self._op(txn, writes=writes, reads=reads, ranges=ranges)
        for _ in range(_ONE_PHASE_TRIES):
            cmd = Command(kind=CommandKind.TXN_ONE_PHASE, key=b"", ts=self.hlc.now(), txn=op)
            try:
                result = await self._propose(g, cmd)
            except ServiceUnavailableError as exc:
                # The entry may be in the log and apply later: not the same as not applied.
                raise CommitOutcomeUnknownError(f"the commit's outcome is unknown: {exc}") from None
            if result.outcome == Outcome.OK:
                self.hlc.update(result.ts)
                return result.ts
            if result.outcome == Outcome.SERIALIZATION_FAILURE:
                raise SerializationFailureError(result.detail)
            assert result.outcome == Outcome.CONFLICT, result
            # Nothing is held yet: waiting for the blocker cannot deadlock.
            await self._resolve_blocker(result, g)
        raise SerializationFailureError("contended: other transactions kept holding its keys")

    async def _two_phase(
        self,
        txn: Transaction,
        by_shard: dict[int, tuple[list[TxnWrite], list[bytes]]],
        ranges: list[tuple[bytes, bytes | None]],
    ) -> int:
        first_key = next(iter(txn.writes))
        anchor = self.host.shard_of(first_key)
        participants = sorted(by_shard)
        deadline = self.hlc.now() + (int(COMMIT_DEADLINE_S * 1000) << LOGICAL_BITS)
        begin = self._op(txn, participants=participants, deadline=deadline)
        result = await self._propose(anchor, _txn_cmd(CommandKind.TXN_BEGIN, begin, 0))
        if result.outcome != Outcome.OK:
            raise SerializationFailureError(f"the transaction record is {result.outcome.name}")
        prepares = [
            self._propose(
                self.host.groups[gid],
                _txn_cmd(
                    CommandKind.TXN_PREPARE,
                    self._op(
                        txn,
                        record_group=anchor.group_id,
                        writes=writes,
                        reads=reads,
                        ranges=ranges,
                    ),
                    0,
                ),
            )
            for gid, (writes, reads) in sorted(by_shard.items())
        ]
        commit_ts = self.hlc.now()
        failure = ""
        unavailable: BaseException | None = None
        for fut in prepares:
            try:
                prepared = await fut
            except ServiceUnavailableError as exc:
                unavailable = exc
                continue
            if prepared.outcome == Outcome.OK:
                commit_ts = max(commit_ts, prepared.ts)
            elif prepared.outcome == Outcome.CONFLICT:
                failure = f"conflict with transaction {prepared.blocker:x}"
            else:
                failure = prepared.detail or prepared.outcome.name
        if failure or unavailable is not None:
            await self._finish(txn.id, anchor.group_id, participants, if_expired=False)
            if unavailable is not None:
                raise unavailable
            raise SerializationFailureError(failure)
        end = self._op(txn, commit=True)
        if self.commit_before_record:  # the planted bug: resolve first, decide after
            await self._resolve_all(txn.id, participants, commit=True, ts=commit_ts)
        try:
            decided = await self._propose(anchor, _txn_cmd(CommandKind.TXN_END, end, commit_ts))
        except ServiceUnavailableError as exc:
            raise CommitOutcomeUnknownError(f"the commit's outcome is unknown: {exc}") from None
        if decided.outcome != Outcome.OK:
            await self._finish(txn.id, anchor.group_id, participants, if_expired=False)
            raise SerializationFailureError("aborted by a transaction that found it expired")
        self.hlc.update(decided.ts)
        if await self._resolve_all(txn.id, participants, commit=True, ts=decided.ts):
            self._forget(txn.id, anchor.group_id)
        return decided.ts

    async def _finish(
        self, txn_id: int, record_group: int, participants: list[int], *, if_expired: bool
    ) -> None:
        """Decide an undecided transaction as aborted (if it still can be: `if_expired`, for
        others' transactions) and resolve its intents everywhere by the record's actual
        decision, then drop the record (best effort: recovery tries again)."""
        try:
            end = TxnOp(id=txn_id, commit=False, if_expired=if_expired)
            decided = await self._propose(
                self.host.groups[record_group], _txn_cmd(CommandKind.TXN_END, end, self.hlc.now())
            )
            if decided.outcome in (Outcome.PENDING, Outcome.NOT_FOUND):
                return  # not expired yet; or already resolved and forgotten
            committed = decided.outcome == Outcome.OK
            if await self._resolve_all(txn_id, participants, commit=committed, ts=decided.ts):
                self._forget(txn_id, record_group)
        except ServiceUnavailableError:
            pass  # the record's leader will finish it (`recover`)

    async def _resolve_all(
        self, txn_id: int, participants: list[int], *, commit: bool, ts: int
    ) -> bool:
        """Resolve the intents on every participant; whether all of them were. Only then
        may the record be forgotten (a reader that finds no record relies on it)."""
        op = TxnOp(id=txn_id, commit=commit)
        futs = [
            self._propose(self.host.groups[gid], _txn_cmd(CommandKind.TXN_RESOLVE, op, ts))
            for gid in participants
        ]
        resolved = True
        for fut in futs:
            # On failure, readers resolve through the record and recovery resolves it later.
            try:
                await fut
            except ServiceUnavailableError:
                resolved = False
        return resolved

    def _forget(self, txn_id: int, record_group: int) -> None:
        op = TxnOp(id=txn_id)
        fut = self._propose(self.host.groups[record_group], _txn_cmd(CommandKind.TXN_FORGET, op, 0))
        fut.add_done_callback(lambda _: None)  # best effort

    # -- meeting others' transactions --------------------------------------------------------------

    async def _outcome(self, txn_id: int, record_group: int, where: Group) -> _Outcome | None:
        """Whether `txn_id` committed (and at what timestamp): from this node's replica of its
        record while it is decided, else by a push, which aborts it once expired. None: the
        record was forgotten (resolved everywhere; see `_clear_forgotten`)."""
        polls = 0
        while True:
            record = self.kv.records_of(self.host.groups[record_group]).get(txn_id)
            if record is not None and record.status != RecordStatus.PENDING:
                outcome = _Outcome(record.status == RecordStatus.COMMITTED, record.commit_ts)
                break
            if polls < _POLLS_BEFORE_PUSH:
                polls += 1
                await self._sleep(_POLL_S * polls)
                continue
            self.stats["pushes"] += 1
            push = TxnOp(id=txn_id, if_expired=True)
            g = self.host.groups[record_group]
            decided = await self._propose(g, _txn_cmd(CommandKind.TXN_END, push, self.hlc.now()))
            if decided.outcome == Outcome.PENDING:
                await self._sleep(0.05)
                continue
            if decided.outcome == Outcome.NOT_FOUND:
                return None
            outcome = _Outcome(decided.outcome == Outcome.OK, decided.ts)
            break
        # Help: resolve the intent here so that the next reader need not ask.
        op = TxnOp(id=txn_id, commit=outcome.committed)
        help_ = self._propose(where, _txn_cmd(CommandKind.TXN_RESOLVE, op, outcome.ts))
        help_.add_done_callback(lambda _: None)
        return outcome

    async def _clear_forgotten(self, g: Group, txn_id: int) -> None:
        """`txn_id`'s record is gone, so its resolutions were all applied before: catch this
        replica of `g` up past them; what `txn_id` still holds here then is an orphan (a
        prepare applied after its transaction aborted without it), dropped here."""
        await self._closed(g, self.hlc.now())
        if txn_id in self.kv.store_of(g).held:
            op = TxnOp(id=txn_id, commit=False)
            await self._propose(g, _txn_cmd(CommandKind.TXN_RESOLVE, op, 0))

    async def _resolve_blocker(self, result: Result, g: Group) -> None:
        if result.blocker_group == 0:  # a one-phase transaction never blocks; be safe
            await self._sleep(_POLL_S)
            return
        if await self._outcome(result.blocker, result.blocker_group, g) is None:
            await self._clear_forgotten(g, result.blocker)

    # -- recovery ------------------------------------------------------------------------------

    def start_recovery(self) -> None:
        """Every second: finish or abort the transactions whose records this node's shard
        leaders hold and whose coordinators went quiet; expire abandoned open transactions."""
        if self._recovering:
            return
        self._recovering = True
        self._schedule_recovery(None)

    def stop_recovery(self) -> None:
        self._recovering = False
        self._cancel_recovery()

    def _recovery_tick(self) -> None:
        if not self._recovering:
            return
        self._expire()
        spawn(self._recover()).add_done_callback(self._schedule_recovery)

    def _schedule_recovery(self, _: object) -> None:
        if self._recovering:
            self._cancel_recovery = self.host.env.timers.call_later(
                _RECOVERY_PERIOD_S, self._recovery_tick
            )

    async def _recover(self) -> None:
        now = self.hlc.now()
        for gid in self._shard_ids():
            g = self.host.groups[gid]
            if not g.raw.is_leader:
                continue
            for txn_id, record in list(self.kv.records_of(g).items()):
                if record.deadline >= now:
                    continue
                with contextlib.suppress(QuorumError):
                    await self._finish(txn_id, gid, list(record.participants), if_expired=True)

    def _expire(self) -> None:
        now = self.host.env.clock.monotonic()
        for txn in list(self.txns.values()):
            if txn.state == TxnState.OPEN and now > txn.expires and not txn.busy:
                self._end(txn, TxnState.ABORTED, "expired")
            elif txn.state != TxnState.OPEN and now > txn.expires + TXN_TIMEOUT_MAX_S:
                del self.txns[txn.id]

    # -- plumbing ------------------------------------------------------------------------------

    def _end(self, txn: Transaction, state: TxnState, why: str, ts: int = 0) -> None:
        if txn.state != TxnState.OPEN:
            return
        txn.state = state
        txn.ended_why = why
        txn.commit_ts = ts
        txn.writes = {}
        txn.reads = set()
        self.stats["committed" if state == TxnState.COMMITTED else "aborted"] += 1

    def _shard_ids(self) -> list[int]:
        return [
            gid
            for gid in sorted(self.host.groups)
            if gid != CONTROLLER_GROUP and gid <= self.host.config.shards
        ]

    def _propose(self, g: Group, cmd: Command) -> Pending[Result]:
        """Propose through this node (a follower forwards it); the answer once it applies
        here. A dropped proposal is an unavailable cluster, as a timeout is."""
        out: Pending[Result] = Pending()

        def settle(p: Pending[Result]) -> None:
            error = p.exception()
            if isinstance(error, ProposalDroppedError):
                out.set_exception(ServiceUnavailableError(f"group {g.group_id}: {error}"))
            elif error is not None:
                out.set_exception(error)
            else:
                out.set_result(p.result())

        self.kv.submit_write(g, cmd).add_done_callback(settle)
        return out

    def _first(self, p: Pending[Any], delay_s: float) -> Pending[None]:
        """Done when `p` is (its error raised) or after `delay_s`, whichever comes first."""
        out: Pending[None] = Pending()

        def answered(done: Pending[Any]) -> None:
            error = done.exception()
            if error is not None:
                out.set_exception(error)
            else:
                out.set_result(None)

        p.add_done_callback(answered)
        self.host.env.timers.call_later(delay_s, lambda: out.set_result(None))
        return out

    def _sleep(self, delay_s: float) -> Pending[None]:
        p: Pending[None] = Pending()
        self.host.env.timers.call_later(delay_s, lambda: p.set_result(None))
        return p


def _txn_cmd(kind: CommandKind, op: TxnOp, ts: int) -> Command:
    return Command(kind=kind, key=b"", ts=ts, txn=op)


def _nothing() -> None:
    pass
