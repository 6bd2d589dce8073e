"""Bank transfers in the host simulation: serializable transactions on the real coordinators.

Theory of operation. Every node's `kv.transactions.TxnCoordinator` (`node_kv(host)`) runs
unchanged here: its steps are coroutines over the host's `Pending` answers and timers, and the
workload's own steps are coroutines too (`host.pending.spawn`), waiting on the coordinator's
answers or on the loop's timers, never on wall time: the run stays a function of the seed.

- `accounts` keys `acct/<i>` (they hash to every shard) start at `_INITIAL` each, written by
  one serializable transaction that first reads them all and writes only if none exists (so
  an attempt whose outcome was unknown and that applies late cannot reset them);
- each transfer client loops: begin a serializable transaction on a random live node, read
  two distinct accounts, write `src - amount` and `dst + amount`, commit. A serialization
  failure is a `fail` (it did not commit); an unknown outcome, or no answer in time (the node
  crashed, paused, or lost its quorum), is `info`; either way the client backs off and goes on;
- an auditor reads every account at snapshot isolation now and then;
- after the heal, once every transfer has ended, a final audit must succeed in the budget.

Every transaction begins with `seen_ts`, the newest commit timestamp any answer carried (a
client's causality token): the nodes' clocks may disagree by more than the commit wait
covers (`max_clock_offset_ms` is 0 here), and without it a snapshot taken after the accounts
were created could predate them (stale, not torn: the checker would blame the wrong thing).

The history goes to `check.bank.check_bank`: its violations are the run's (checker `bank`);
a final audit that never succeeds is a liveness violation.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from quorumdb.check.bank import Audit, Transfer, TransferOutcome, check_bank
from quorumdb.errors import QuorumError, ServiceUnavailableError
from quorumdb.kv.commands import Isolation
from quorumdb.kv.transactions import Transaction, TxnCoordinator
from quorumdb.kv.txn_errors import CommitOutcomeUnknownError, SerializationFailureError
from quorumdb.sim.host_node import HostNode
from quorumdb.sim.loop import EventLoop
from quorumdb.sim.txn_clients import TimedOutError, TxnClients

__all__ = ["BankWorkload", "BankWorkloadOptions"]

_INITIAL = 100
_STEP_US = 1_000_000  # a read or commit unanswered for this long is given up
_COMMIT_US = 3_000_000  # above the commit deadline: a commit may wait out a blocker
_BACKOFF_US = (5_000, 50_000)
_FINAL_US = 10_000_000  # after the heal: time for the final audit to succeed


@dataclass(frozen=True, slots=True)
class BankWorkloadOptions:
    accounts: int = 8
    clients: int = 3
    max_amount: int = 30
    think_us: tuple[int, int] = (2_000, 30_000)
    audit_think_us: tuple[int, int] = (50_000, 200_000)


class BankWorkload(TxnClients):
    """The bank side of a `sim.simulator.Simulation` (see the module docstring)."""

    checker = "bank"

    def __init__(
        self,
        *,
        loop: EventLoop,
        nodes: dict[int, HostNode],
        rng: random.Random,
        violate: Callable[[str, str], None],
        running: Callable[[], bool],
        opts: BankWorkloadOptions | None = None,
    ) -> None:
        """See `TxnClients`; `opts`: the workload's own settings."""
        super().__init__(loop=loop, nodes=nodes, rng=rng, violate=violate, running=running)
        self.opts = opts or BankWorkloadOptions()
        self.accounts = [f"acct/{i}" for i in range(self.opts.accounts)]
        self.initialised = False
        self.transfers: list[Transfer] = []
        self.audits: list[Audit] = []
        self.final: Audit | None = None
        self._names = 0
        self.stats = {"committed": 0, "failed": 0, "unknown": 0, "aborted_early": 0}

    # -- helpers -----------------------------------------------------------------------------

    def _name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    async def _read_all(
        self, coord: TxnCoordinator, txn: Transaction, keys: list[str]
    ) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for k in keys:
            coord.lookup(txn.id)  # as the service does: an expired transaction is refused
            got = await self._within(coord.get(txn, k.encode()), _STEP_US)
            out[k] = None if got is None else int(got)
        return out

    async def _commit(self, coord: TxnCoordinator, txn: Transaction) -> int:
        coord.lookup(txn.id)
        ts = await self._within(coord.commit(txn), _COMMIT_US)
        self.seen_ts = max(self.seen_ts, ts)
        return ts

    # -- the run -----------------------------------------------------------------------------

    def start(self) -> None:
        self._go(self._init())
        for _ in range(self.opts.clients):
            self._go(self._client())
        self._go(self._auditor())

    async def _init(self) -> None:
        """Create the accounts once: read them all, write them only if none exists."""
        await self._sleep(100_000)
        while not self.initialised:
            picked = self._pick()
            if picked is None:
                await self._sleep(50_000)
                continue
            where, coord = picked
            txn = coord.begin(Isolation.SERIALIZABLE, seen_ts=self.seen_ts)
            try:
                reads = await self._read_all(coord, txn, self.accounts)
                present = [k for k, v in reads.items() if v is not None]
                if present and len(present) < len(reads):
                    self.violate("bank", f"bank: init at {where} found a partial set: {reads}")
                    return
                if not present:
                    for k in self.accounts:
                        await coord.write(txn, k.encode(), str(_INITIAL).encode())
                await self._commit(coord, txn)
                self.initialised = True
                self.loop.trace(f"bank init at {where} ({'found' if present else 'wrote'})")
            except (QuorumError, TimedOutError) as exc:
                self.loop.trace(f"bank init at {where}: {type(exc).__name__}")
                coord.abort(txn)
                await self._sleep(self._draw(_BACKOFF_US))

    async def _client(self) -> None:
        await self._sleep(self._draw((150_000, 250_000)))
        while self.running():
            if not self.initialised:
                await self._sleep(20_000)
                continue
            failed = await self._transfer()
            await self._sleep(self._draw(_BACKOFF_US if failed else self.opts.think_us))

    async def _transfer(self) -> bool:
        """One transfer attempt; True if it did not commit (so the client backs off)."""
        picked = self._pick()
        if picked is None:
            return True
        where, coord = picked
        src, dst = self.rng.sample(self.accounts, 2)
        amount = self.rng.randint(1, self.opts.max_amount)
        name = self._name("t")
        # Half at snapshot isolation: a transfer writes what it read, so first committer wins
        # must keep the total there too.
        level = Isolation.SNAPSHOT if self.rng.random() < 0.5 else Isolation.SERIALIZABLE
        txn = coord.begin(level, seen_ts=self.seen_ts)
        self.loop.trace(f"bank {name} at {where}: {src} -> {dst}")
        self.open += 1
        try:
            try:
                reads = await self._read_all(coord, txn, [src, dst])
            except (QuorumError, TimedOutError):
                coord.abort(txn)  # nothing was sent: it simply did not happen
                self.stats["aborted_early"] += 1
                return True
            a, b = reads[src], reads[dst]
            if a is None or b is None:  # a violation: the checker reports it
                coord.abort(txn)
                self._ended(Transfer(name, reads, {}, TransferOutcome.FAIL), where)
                return True
            amount = min(amount, a)
            writes = {src: a - amount, dst: b + amount}
            for k, v in writes.items():
                await coord.write(txn, k.encode(), str(v).encode())
            outcome = await self._outcome(coord, txn)
            self._ended(Transfer(name, reads, writes, outcome), where)
            return outcome != TransferOutcome.OK
        finally:
            self.open -= 1

    async def _outcome(self, coord: TxnCoordinator, txn: Transaction) -> TransferOutcome:
        try:
            await self._commit(coord, txn)
        except SerializationFailureError:
            return TransferOutcome.FAIL
        except (CommitOutcomeUnknownError, TimedOutError):
            return TransferOutcome.INFO
        except ServiceUnavailableError:
            # A one-shard commit whose proposal timed out may still apply: unknown, not failed.
            return TransferOutcome.INFO
        except QuorumError:
            return TransferOutcome.FAIL
        return TransferOutcome.OK

    def _ended(self, t: Transfer, where: str) -> None:
        self.transfers.append(t)
        key = {
            TransferOutcome.OK: "committed",
            TransferOutcome.FAIL: "failed",
            TransferOutcome.INFO: "unknown",
        }[t.outcome]
        self.stats[key] += 1
        self.loop.trace(f"bank {t.name} at {where} {t.outcome.value} {dict(t.writes)}")

    async def _auditor(self) -> None:
        await self._sleep(self._draw((200_000, 300_000)))
        while self.running():
            if self.initialised:
                await self._audit(final=False)
            await self._sleep(self._draw(self.opts.audit_think_us))

    async def _audit(self, *, final: bool) -> bool:
        picked = self._pick()
        if picked is None:
            return False
        where, coord = picked
        name = self._name("final-a" if final else "a")
        txn = coord.begin(Isolation.SNAPSHOT, seen_ts=self.seen_ts)
        try:
            reads = await self._read_all(coord, txn, self.accounts)
            await self._commit(coord, txn)
        except (QuorumError, TimedOutError) as exc:
            coord.abort(txn)
            self.loop.trace(f"bank audit {name} at {where}: {type(exc).__name__}")
            return False
        audit = Audit(name, reads, f"at {where} ts {txn.read_ts}")
        if final:
            self.final = audit
        else:
            self.audits.append(audit)
        self.loop.trace(f"bank audit {name} at {where}: {sum(v or 0 for v in reads.values())}")
        return True

    # -- the end -----------------------------------------------------------------------------

    async def _final(self) -> None:
        while not self.initialised or self.open:
            await self._sleep(20_000)
        while not await self._audit(final=True):
            await self._sleep(self._draw(_BACKOFF_US))

    def finish(self) -> None:
        """After the heal: let every transfer end, take the final audit, check the history."""
        self._go(self._final())
        self.loop.run_until(self.loop.now + _FINAL_US, stop=lambda: self.final is not None)
        if self.final is None:
            why = "accounts never created" if not self.initialised else f"{self.open} open"
            self.violate("liveness", f"bank liveness: no final audit succeeded ({why})")
        result = check_bank(self.accounts, _INITIAL, self.audits, self.transfers, self.final)
        for v in result.violations[:5]:
            self.violate("bank", f"bank: {v}")
        if result.inconclusive:
            self.loop.trace(f"bank final balances inconclusive: {result.inconclusive}")
