"""The list-append workload: Elle transactions over the KV, checked for dependency cycles.

Theory of operation (the real-process twin of `sim.list_append_workload`). Keys ``la/<i>``
hold lists of ints, stored comma-separated (a missing key is the empty list). Each client is
an Elle process running one serializable transaction at a time, at a bounded rate, through
`quorumdb.AsyncClient`:

- a transaction is 1-4 micro-ops: ``["r", k, None]`` reads a list, ``["append", k, v]``
  appends an element unique across the run, always after a read of the same key (an append
  is a read-modify-write); half the transactions are shaped "read x, append y", the shape
  write skew (G2-item) needs;
- it runs in two requests: the begin reads every key the transaction touches (one snapshot,
  so reading them up front or one by one gives the same values), the micro-ops are played
  on those lists locally (a read after the transaction's own append sees it, as the store's
  read-your-writes does), and the commit request carries the final list of every key
  appended to;
- the history is Jepsen's: the invoke (reads null), then ``ok`` (reads filled in), ``fail``
  or ``info`` (`nemesis.txn_client` says which); after an ``info`` the client is a new
  process.

After the heal, a final read of every key (retried within a budget) shows Elle each list's
final order. `check.elle.check_elle` judges the history at serializable (not strict: a clock
nemesis may skew the nodes beyond what the commit wait covers).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from quorumdb.check.elle import Anomaly, check_elle, elle_summary_line, elle_to_json, render_anomaly
from quorumdb.errors import QuorumError
from quorumdb.kv.client import AsyncClient
from quorumdb.nemesis.txn_client import (
    OP_TIMEOUT_S,
    TxnOutcome,
    commit,
    retry_until_committed,
    txn_client,
)
from quorumdb.nemesis.workload import History, Verdict

__all__ = ["ISOLATION", "ListAppendWorkload"]

ISOLATION = "serializable"
_MOPS = (1, 4)
_SKEW_SHAPED = 0.5
_TXN_TIMEOUT_S = 5.0
_FINAL_BUDGET_S = 60.0
_BACKOFF_S = (0.01, 0.1)

Mop = list[Any]  # ["r", key, None | list[int]] or ["append", key, int]


class ListAppendWorkload:
    name = "list-append"

    def __init__(self, urls: list[str], *, clients: int, keys: int, rate: float, seed: int) -> None:
        """`rate`: transactions per second over all clients; `keys` >= 2."""
        self.urls = urls
        self.clients = clients
        self.keys = [f"la/{i}" for i in range(max(2, keys))]
        self.interval_s = clients / rate
        self.seed = seed
        self.history = History()
        self._element = 0
        self._final_ok = False

    # -- transactions --------------------------------------------------------------------------

    def _plan(self, rng: random.Random) -> list[Mop]:
        """The micro-ops of one transaction, reads null (its invoke's value)."""
        if rng.random() < _SKEW_SHAPED:
            x, y = rng.sample(self.keys, 2)
            return [["r", x, None], *self._append(y)]
        mops: list[Mop] = []
        for _ in range(rng.randint(*_MOPS)):
            key = rng.choice(self.keys)
            mops += self._append(key) if rng.random() < 0.5 else [["r", key, None]]
        return mops

    def _append(self, key: str) -> list[Mop]:
        self._element += 1
        return [["r", key, None], ["append", key, self._element]]

    async def _txn(self, c: AsyncClient, process: int, plan: list[Mop]) -> TxnOutcome:
        """One transaction, recorded; its outcome."""
        self.history.add(process, "invoke", "txn", value=plan)
        keys = list(dict.fromkeys(k for _, k, _ in plan))
        try:
            tx = await asyncio.wait_for(
                c.begin(ISOLATION, *(["get", k] for k in keys), timeout_s=_TXN_TIMEOUT_S),
                OP_TIMEOUT_S,
            )
        except (QuorumError, OSError, TimeoutError):
            self.history.add(process, "fail", "txn", value=plan)  # no commit was sent
            return TxnOutcome.FAIL
        lists = {k: _parse(v) for k, v in zip(keys, tx.results, strict=True)}
        done: list[Mop] = []
        written: set[str] = set()
        for f, key, value in plan:
            if f == "r":
                done.append(["r", key, list(lists[key])])
            else:
                lists[key].append(value)
                written.add(key)
                done.append(["append", key, value])
        puts = [["put", k, ",".join(map(str, lists[k]))] for k in keys if k in written]
        outcome = await commit(tx, *puts)
        self.history.add(process, outcome.value, "txn", value=done if outcome is TxnOutcome.OK
                         else plan)  # fmt: skip
        return outcome

    # -- the run -------------------------------------------------------------------------------

    async def run(self, stop_at: float) -> None:
        await asyncio.gather(*(self._client(n, stop_at) for n in range(self.clients)))

    async def _client(self, n: int, stop_at: float) -> None:
        rng = random.Random(f"list-append-{self.seed}-{n}")
        process = self.history.new_process()
        async with txn_client(self.urls, n, self.seed) as c:
            while time.monotonic() < stop_at:
                started = time.monotonic()
                outcome = await self._txn(c, process, self._plan(rng))
                if outcome is TxnOutcome.INFO:
                    process = self.history.new_process()
                pause = self.interval_s - (time.monotonic() - started)
                if outcome is not TxnOutcome.OK:
                    pause = max(pause, rng.uniform(*_BACKOFF_S))
                await asyncio.sleep(max(0.0, pause))

    async def final_reads(self) -> None:
        """After the heal: one committed read of every key (retried within a budget)."""
        deadline = time.monotonic() + _FINAL_BUDGET_S
        rng = random.Random(f"list-append-final-{self.seed}")
        plan: list[Mop] = [["r", k, None] for k in self.keys]
        async with txn_client(self.urls, 0, self.seed) as c:
            self._final_ok = await retry_until_committed(
                lambda process: self._txn(c, process, plan),
                self.history.new_process,
                deadline=deadline,
                rng=rng,
            )

    # -- the verdict ---------------------------------------------------------------------------

    def check(self) -> Verdict:
        """Elle at serializable; each forbidden anomaly names its transactions' events and,
        for a cycle, its edges."""
        result = check_elle(self.history.events, model="list-append", isolation=ISOLATION)
        anomalies = [self._anomaly(a) for a in result.forbidden]
        summary = elle_summary_line(result)
        if not self._final_ok:
            why = f"no final read committed within {_FINAL_BUDGET_S:g} s of the heal"
            anomalies.append({"kind": "liveness", "message": why, "ops": []})
            summary += f"; liveness: {why}"
        details = {k: v for k, v in elle_to_json(result).items() if k != "anomalies"}
        # Elle judges serializability, which lets the final read be ordered before the last
        # appends: an append it lacks is not provably lost. A lost append that matters shows
        # up as an Elle anomaly instead.
        details["lost_acked"] = 0
        return Verdict(
            valid=not anomalies, checker="elle", summary=summary, anomalies=anomalies,
            details=details,
        )  # fmt: skip

    def _anomaly(self, anomaly: Anomaly) -> dict[str, Any]:
        """An Elle anomaly as the verdict lists it: T1, T2, ... are `anomaly.ops` in order."""
        names = {txn.id: f"T{n + 1}" for n, txn in enumerate(anomaly.ops)}
        ops = []
        for txn in anomaly.ops:
            ops.append(self.history.events[txn.invoke_index])
            if txn.complete_index is not None:
                ops.append(self.history.events[txn.complete_index])
        return {
            "kind": anomaly.kind.value,
            "message": render_anomaly(anomaly),
            "ops": ops,
            "transactions": [
                {"name": names[t.id], "process": t.process, "type": t.outcome.value,
                 "value": t.value_json(), "invoke_event": t.invoke_index + 1,
                 "complete_event": None if t.complete_index is None else t.complete_index + 1}
                for t in anomaly.ops
            ],
            "cycle": [
                {"from": names[s.source.id], "to": names[s.target.id], "kind": s.kind.label,
                 "key": s.key, "explanation": s.explanation}
                for s in anomaly.cycle
            ],
        }  # fmt: skip


def _parse(raw: object) -> list[int]:
    return [int(x) for x in str(raw).split(",")] if raw else []
