"""List-append transactions in the host simulation, recorded for the Elle checker.

Theory of operation. Like `sim.bank_workload`, clients run serializable transactions on every
node's real `kv.transactions.TxnCoordinator` as coroutines over the host's `Pending` answers
and the loop's timers (never wall time: the run stays a function of the seed). What differs
is the judge: the bank sees only money appearing or vanishing, while Elle
(`check.elle`, Kingsbury & Alvaro 2020) infers the dependency graph between transactions from
what their reads returned and names any cycle, so write skew shows too.

- keys `la/<i>` (they hash to every shard) hold lists of ints, stored comma-separated; a
  missing key is the empty list;
- each client (an Elle process) loops: begin a SERIALIZABLE transaction on a random live
  node, run 2-4 micro-ops, commit. An append is a read-modify-write (read the list, write it
  back with a new element; elements are unique across the run), recorded as the read then
  the append, so Elle sees what it read too; a read gets and parses the list. Half the
  transactions are shaped "read x, append y": write skew (G2-item) needs transactions that
  read keys they do not write, and read validation is what forbids it;
- the history is Jepsen's: an invoke (reads null), then `ok` (reads filled in), `fail` (a
  serialization failure, or given up before the commit was sent) or `info` (the commit's
  outcome is unknown: `CommitOutcomeUnknownError`, `ServiceUnavailableError`, no answer);
- after the heal, once every transaction ended, a final read of every key must succeed in
  the budget (a liveness violation otherwise): it shows Elle the final order of each list.

Every transaction begins with `seen_ts` (see `sim.bank_workload`: clocks differ by more than
the commit wait covers). The history is checked at serializable, not strict serializable:
the simulated clocks are skewed, so real-time order is not the database's promise here.
Forbidden anomalies are the run's violations (checker `elle`); the history is kept for the
failure artifacts (`elle-history.json`, for `quorumdb check elle`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quorumdb.check.elle import ElleHistoryError, check_elle, render_elle
from quorumdb.errors import QuorumError, ServiceUnavailableError
from quorumdb.kv.commands import Isolation
from quorumdb.kv.transactions import Transaction, TxnCoordinator
from quorumdb.kv.txn_errors import CommitOutcomeUnknownError, SerializationFailureError
from quorumdb.sim.host_node import HostNode
from quorumdb.sim.loop import EventLoop
from quorumdb.sim.txn_clients import TimedOutError, TxnClients

__all__ = ["ListAppendOptions", "ListAppendWorkload"]

_STEP_US = 1_000_000  # a read unanswered for this long is given up
_COMMIT_US = 3_000_000  # above the commit deadline: a commit may wait out a blocker
_BACKOFF_US = (5_000, 50_000)
_FINAL_US = 10_000_000  # after the heal: time for the final read to succeed
_SHOWN_PER_KIND = 1  # anomalies rendered per kind in a violation (the artifacts have all)

Mop = list[Any]  # ["r", key, None | list[int]] or ["append", key, int]


@dataclass(frozen=True, slots=True)
class ListAppendOptions:
    keys: int = 5
    clients: int = 4
    mops: tuple[int, int] = (2, 4)  # micro-ops per transaction, inclusive
    skew_shaped: float = 0.5  # P(a transaction is "read x, append y")
    think_us: tuple[int, int] = (1_000, 10_000)


class ListAppendWorkload(TxnClients):
    """The list-append side of a `sim.simulator.Simulation` (see the module docstring)."""

    checker = "elle"

    def __init__(
        self,
        *,
        loop: EventLoop,
        nodes: dict[int, HostNode],
        rng: random.Random,
        violate: Callable[[str, str], None],
        running: Callable[[], bool],
        opts: ListAppendOptions | None = None,
    ) -> None:
        """See `TxnClients`; `opts`: the workload's own settings."""
        super().__init__(loop=loop, nodes=nodes, rng=rng, violate=violate, running=running)
        self.opts = opts or ListAppendOptions()
        self.keys = [f"la/{i}" for i in range(self.opts.keys)]
        self.history: list[dict[str, Any]] = []
        self.final_done = False
        self._element = 0
        self._processes = 0
        self.stats = {"committed": 0, "failed": 0, "unknown": 0, "aborted_early": 0}

    # -- helpers -----------------------------------------------------------------------------

    def _new_process(self) -> int:
        self._processes += 1
        return self._processes

    def _record(self, process: int, kind: str, value: list[Mop]) -> None:
        event = {"process": process, "type": kind, "f": "txn", "value": value}
        self.history.append({**event, "time": self.loop.now})

    # -- transactions ------------------------------------------------------------------------

    def _plan(self) -> list[Mop]:
        """The micro-ops of one transaction, reads null (its invoke's value)."""
        if self.rng.random() < self.opts.skew_shaped:
            x, y = self.rng.sample(self.keys, 2)
            return [["r", x, None], *self._append(y)]
        lo, hi = self.opts.mops
        mops: list[Mop] = []
        for _ in range(self.rng.randint(lo, hi)):
            key = self.rng.choice(self.keys)
            mops += self._append(key) if self.rng.random() < 0.5 else [["r", key, None]]
        return mops

    def _append(self, key: str) -> list[Mop]:
        self._element += 1
        return [["r", key, None], ["append", key, self._element]]

    async def _get(self, coord: TxnCoordinator, txn: Transaction, key: str) -> list[int]:
        coord.lookup(txn.id)  # as the service does: an expired transaction is refused
        raw = await self._within(coord.get(txn, key.encode()), _STEP_US)
        return [int(x) for x in raw.decode().split(",")] if raw else []

    async def _run(self, coord: TxnCoordinator, txn: Transaction, plan: list[Mop]) -> list[Mop]:
        """Run `plan`; the micro-ops with reads filled in. An append writes back the list
        its read (the micro-op before it) returned, plus its element."""
        done: list[Mop] = []
        last: list[int] = []
        for f, key, value in plan:
            if f == "r":
                last = await self._get(coord, txn, key)
                done.append(["r", key, last])
            else:
                new = ",".join(str(x) for x in [*last, value])
                await coord.write(txn, key.encode(), new.encode())
                done.append(["append", key, value])
        return done

    async def _commit(self, coord: TxnCoordinator, txn: Transaction) -> str:
        """Commit: the Elle completion type (ok, fail or info)."""
        try:
            coord.lookup(txn.id)
            ts = await self._within(coord.commit(txn), _COMMIT_US)
        except SerializationFailureError:
            return "fail"
        except (CommitOutcomeUnknownError, TimedOutError):
            return "info"
        except ServiceUnavailableError:
            # A one-shard commit whose proposal timed out may still apply: unknown, not failed.
            return "info"
        except QuorumError:
            return "fail"
        self.seen_ts = max(self.seen_ts, ts)
        return "ok"

    async def _txn(self, process: int, plan: list[Mop], *, final: bool = False) -> str:
        """One transaction attempt, recorded; its completion type."""
        picked = self._pick()
        if picked is None:
            return "none"
        where, coord = picked
        txn = coord.begin(Isolation.SERIALIZABLE, seen_ts=self.seen_ts)
        self._record(process, "invoke", plan)
        self.open += 1
        try:
            try:
                done = await self._run(coord, txn, plan)
            except (QuorumError, TimedOutError) as exc:
                coord.abort(txn)  # nothing was sent: it simply did not happen
                self.loop.trace(f"list-append p{process} at {where}: {type(exc).__name__}")
                self.stats["aborted_early"] += 1
                self._record(process, "fail", plan)
                return "fail"
            kind = await self._commit(coord, txn)
            self._record(process, kind, done if kind == "ok" else plan)
            if not final:
                self.stats[{"ok": "committed", "fail": "failed", "info": "unknown"}[kind]] += 1
            self.loop.trace(f"list-append p{process} at {where} {kind} {done}")
            return kind
        finally:
            self.open -= 1

    async def _client(self) -> None:
        process = self._new_process()
        await self._sleep(self._draw((150_000, 250_000)))
        while self.running():
            kind = await self._txn(process, self._plan())
            await self._sleep(self._draw(self.opts.think_us if kind == "ok" else _BACKOFF_US))

    # -- the run -----------------------------------------------------------------------------

    def start(self) -> None:
        for _ in range(self.opts.clients):
            self._go(self._client())

    async def _final(self) -> None:
        process = self._new_process()
        while self.open:
            await self._sleep(20_000)
        plan: list[Mop] = [["r", k, None] for k in self.keys]
        while await self._txn(process, plan, final=True) != "ok":
            await self._sleep(self._draw(_BACKOFF_US))
        self.final_done = True

    def finish(self) -> None:
        """After the heal: let every transaction end, read every key, check the history."""
        self._go(self._final())
        self.loop.run_until(self.loop.now + _FINAL_US, stop=lambda: self.final_done)
        if not self.final_done:
            self.violate(
                "liveness", f"list-append liveness: no final read succeeded ({self.open} open)"
            )
        try:
            result = check_elle(self.history, model="list-append", isolation="serializable")
        except ElleHistoryError as exc:
            self.violate("elle", f"elle: the workload recorded a malformed history: {exc}")
            return
        if not result.valid:
            kinds = sorted({str(a.kind) for a in result.forbidden})
            report = render_elle(result, shown_per_kind=_SHOWN_PER_KIND)
            self.violate("elle", f"elle: {', '.join(kinds)} at serializable:\n{report}")
