"""The bank workload: transfers between accounts whose total is fixed, over KV transactions.

Theory of operation (the real-process twin of `sim.bank_workload`). Accounts ``acct/<i>``
start at 100 each, written once by a serializable transaction that reads them all and
writes only if none exists (an attempt whose outcome was unknown and that applies late
cannot reset them). Each client is a Jepsen process doing one operation at a time at a
bounded rate through `quorumdb.AsyncClient`:

- a transfer (four in five operations): begin a transaction, half at snapshot isolation and
  half serializable, reading two distinct accounts in the begin request; write
  ``src - amount`` and ``dst + amount`` (amount capped by ``src``, so no write is ever
  negative) and commit in one request. What the commit's answer means is
  `nemesis.txn_client`'s to say (ok, fail, info); a transfer whose reads failed never sent a
  commit and is a ``fail``;
- a read (an audit): every account at snapshot isolation, committed.

After an ``info`` the client goes on as a new process, as Jepsen requires. After the heal,
a final read must succeed within a budget. The history (``history.json``) is all
`check.bank.check_bank` needs, and `bank_history_from_events` turns it back into the
checker's input:

    {"process": 0, "type": "invoke", "f": "transfer", "value": {"from": "acct/0",
     "to": "acct/2", "amount": 7}}
    {"process": 0, "type": "ok", "f": "transfer", "value": {"from": ..., "to": ...,
     "amount": 7, "reads": {"acct/0": 100, "acct/2": 100}, "writes": {"acct/0": 93,
     "acct/2": 107}}}
    {"process": 1, "type": "invoke", "f": "read", "value": null}
    {"process": 1, "type": "ok", "f": "read", "value": {"acct/0": 93, ...}}

A final read carries ``"final": true``. Negative balances cannot appear without another
anomaly showing first (writes are computed from reads and never negative), so the checker's
conserved total, missing accounts and final balances are the whole of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from quorumdb.check.bank import Audit, Transfer, TransferOutcome, check_bank
from quorumdb.errors import QuorumError
from quorumdb.kv.client import AsyncClient
from quorumdb.nemesis.txn_client import (
    OP_TIMEOUT_S,
    TxnOutcome,
    abort_quietly,
    commit,
    retry_until_committed,
    txn_client,
)
from quorumdb.nemesis.workload import History, Verdict

__all__ = [
    "INITIAL_BALANCE",
    "BankHistory",
    "BankWorkload",
    "bank_history_from_events",
    "lost_update_suspects",
]

INITIAL_BALANCE = 100
_AMOUNT_MAX = 30
_READ_SHARE = 0.2
_TXN_TIMEOUT_S = 5.0  # an abandoned transaction expires on its node after this
_FINAL_BUDGET_S = 60.0  # after the heal: time for the accounts' creation and the final read
_BACKOFF_S = (0.01, 0.1)
_SUSPECTS_MAX = 10
_OPS_SHOWN_MAX = 40  # events listed per anomaly (a final-balances one may name many)


@dataclass(frozen=True, slots=True, kw_only=True)
class BankHistory:
    """A bank history as `check.bank.check_bank` takes it, with the events behind each item."""

    accounts: tuple[str, ...]
    transfers: tuple[Transfer, ...]
    audits: tuple[Audit, ...]
    final: Audit | None
    events: Mapping[str, tuple[int, int]]  # transfer or audit name -> (invoke, completion)


def bank_history_from_events(events: Iterable[Mapping[str, Any]]) -> BankHistory:
    """Pair invokes with completions by process; a transfer is named ``t<invoke index>``
    and an audit ``a<invoke index>`` (events counted from 0). Raises ValueError on a
    completion with no invoke."""
    open_: dict[int, int] = {}
    transfers: list[Transfer] = []
    audits: list[Audit] = []
    final: Audit | None = None
    accounts: set[str] = set()
    where: dict[str, tuple[int, int]] = {}
    for i, e in enumerate(events):
        process = int(e["process"])
        if e["type"] == "invoke":
            open_[process] = i
            continue
        if process not in open_:
            raise ValueError(f"event {i + 1}: a {e['type']} with no invoke of process {process}")
        invoke = open_.pop(process)
        value = e.get("value") or {}
        if e["f"] == "transfer" and "reads" in value:
            name = f"t{invoke}"
            reads = {str(k): _balance(v) for k, v in value["reads"].items()}
            writes = {str(k): int(v) for k, v in value.get("writes", {}).items()}
            transfers.append(Transfer(name, reads, writes, TransferOutcome(e["type"])))
            where[name] = (invoke, i)
        elif e["f"] == "read" and e["type"] == "ok":
            name = f"a{invoke}"
            audit = Audit(name, {str(k): _balance(v) for k, v in value.items()}, f"(#{i + 1})")
            accounts.update(audit.reads)
            where[name] = (invoke, i)
            if e.get("final"):
                final = audit
            else:
                audits.append(audit)
    return BankHistory(
        accounts=tuple(sorted(accounts, key=_account_order)),
        transfers=tuple(transfers),
        audits=tuple(audits),
        final=final,
        events=where,
    )


def _balance(v: object) -> int | None:
    return None if v is None else int(str(v))


def _account_order(name: str) -> tuple[int, str]:
    _, _, n = name.rpartition("/")
    return (int(n), name) if n.isdigit() else (1 << 30, name)


class BankWorkload:
    name = "bank"

    def __init__(
        self, urls: list[str], *, clients: int, accounts: int, rate: float, seed: int
    ) -> None:
        """`rate`: operations (transactions) per second over all clients; `accounts` >= 2."""
        self.urls = urls
        self.clients = clients
        self.accounts = [f"acct/{i}" for i in range(max(2, accounts))]
        self.interval_s = clients / rate
        self.seed = seed
        self.history = History()
        self._created = False
        self._final_ok = False

    # -- the run -------------------------------------------------------------------------------

    async def run(self, stop_at: float) -> None:
        async with txn_client(self.urls, 0, self.seed) as c:
            creator = asyncio.create_task(self._create(c, stop_at))
            try:
                await asyncio.gather(*(self._client(n, stop_at) for n in range(self.clients)))
            finally:
                # Awaited before the client closes: it may be in a request on that client.
                creator.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await creator

    async def _create(self, c: AsyncClient, stop_at: float) -> bool:
        """Create the accounts (or find them created); False if the deadline passed first."""
        rng = random.Random(f"bank-create-{self.seed}")
        while not self._created and time.monotonic() < stop_at:
            try:
                tx = await asyncio.wait_for(
                    c.begin("serializable", *(["get", k] for k in self.accounts),
                            timeout_s=_TXN_TIMEOUT_S),
                    OP_TIMEOUT_S,
                )  # fmt: skip
            except (QuorumError, OSError, TimeoutError):
                await asyncio.sleep(rng.uniform(*_BACKOFF_S))
                continue
            found = [v for v in tx.results if v is not None]
            if found:
                await abort_quietly(tx)
                self._created = True
                break
            puts = [["put", k, str(INITIAL_BALANCE)] for k in self.accounts]
            if await commit(tx, *puts) is TxnOutcome.OK:
                self._created = True
            else:
                await asyncio.sleep(rng.uniform(*_BACKOFF_S))
        return self._created

    async def _client(self, n: int, stop_at: float) -> None:
        rng = random.Random(f"bank-{self.seed}-{n}")
        process = self.history.new_process()
        async with txn_client(self.urls, n, self.seed) as c:
            while time.monotonic() < stop_at and not self._created:
                await asyncio.sleep(0.02)
            while time.monotonic() < stop_at:
                started = time.monotonic()
                if rng.random() < _READ_SHARE:
                    outcome = await self._read(c, process)
                else:
                    outcome = await self._transfer(c, process, rng)
                if outcome is TxnOutcome.INFO:
                    process = self.history.new_process()
                pause = self.interval_s - (time.monotonic() - started)
                if outcome is not TxnOutcome.OK:
                    pause = max(pause, rng.uniform(*_BACKOFF_S))
                await asyncio.sleep(max(0.0, pause))

    async def _transfer(self, c: AsyncClient, process: int, rng: random.Random) -> TxnOutcome:
        src, dst = rng.sample(self.accounts, 2)
        op: dict[str, Any] = {"from": src, "to": dst, "amount": rng.randint(1, _AMOUNT_MAX)}
        self.history.add(process, "invoke", "transfer", value=op)
        level = "snapshot" if rng.random() < 0.5 else "serializable"
        try:
            tx = await asyncio.wait_for(
                c.begin(level, ["get", src], ["get", dst], timeout_s=_TXN_TIMEOUT_S), OP_TIMEOUT_S
            )
        except (QuorumError, OSError, TimeoutError):
            self.history.add(process, "fail", "transfer", value=op)  # nothing was committed
            return TxnOutcome.FAIL
        a, b = (None if v is None else int(v) for v in tx.results)
        reads = {src: a, dst: b}
        if a is None or b is None:  # the checker reports a missing account
            await abort_quietly(tx)
            self.history.add(process, "fail", "transfer", value={**op, "reads": reads})
            return TxnOutcome.FAIL
        amount = min(op["amount"], a)
        writes = {src: a - amount, dst: b + amount}
        outcome = await commit(tx, *(["put", k, str(v)] for k, v in writes.items()))
        done = {**op, "amount": amount, "reads": reads, "writes": writes, "isolation": level}
        self.history.add(process, outcome.value, "transfer", value=done)
        return outcome

    async def _read(self, c: AsyncClient, process: int, *, final: bool = False) -> TxnOutcome:
        extra = {"final": True} if final else {}
        self.history.add(process, "invoke", "read", value=None, **extra)
        try:
            tx = await asyncio.wait_for(
                c.begin("snapshot", *(["get", k] for k in self.accounts),
                        timeout_s=_TXN_TIMEOUT_S),
                OP_TIMEOUT_S,
            )  # fmt: skip
        except (QuorumError, OSError, TimeoutError):
            self.history.add(process, "fail", "read", value=None, **extra)
            return TxnOutcome.FAIL
        balances = dict(zip(self.accounts, tx.results, strict=True))
        outcome = await commit(tx)
        if outcome is TxnOutcome.OK:
            value = {k: None if v is None else int(v) for k, v in balances.items()}
            self.history.add(process, "ok", "read", value=value, **extra)
        else:
            self.history.add(process, outcome.value, "read", value=None, **extra)
        return outcome

    async def final_reads(self) -> None:
        """After the heal: make sure the accounts exist, then one committed read of them all
        (retried within a budget); its absence is a liveness anomaly."""
        deadline = time.monotonic() + _FINAL_BUDGET_S
        rng = random.Random(f"bank-final-{self.seed}")
        async with txn_client(self.urls, 0, self.seed) as c:
            if not await self._create(c, deadline):
                return
            self._final_ok = await retry_until_committed(
                lambda process: self._read(c, process, final=True),
                self.history.new_process,
                deadline=deadline,
                rng=rng,
            )

    # -- the verdict ---------------------------------------------------------------------------

    def check(self) -> Verdict:
        """`check.bank.check_bank` over the history; each violation names its operations."""
        h = bank_history_from_events(self.history.events)
        result = check_bank(self.accounts, INITIAL_BALANCE, h.audits, h.transfers, h.final)
        anomalies = [self._anomaly(v, h) for v in result.violations]
        if h.final is None:
            why = "the accounts were never created" if not self._created else (
                f"no final read committed within {_FINAL_BUDGET_S:g} s of the heal"
            )  # fmt: skip
            anomalies.append({"kind": "liveness", "message": why, "ops": []})
        outcomes = {o: sum(1 for t in h.transfers if t.outcome is o) for o in TransferOutcome}
        size = (
            f"{len(h.transfers)} transfers ({outcomes[TransferOutcome.OK]} ok, "
            f"{outcomes[TransferOutcome.FAIL]} failed, {outcomes[TransferOutcome.INFO]} unknown)"
            f", {len(h.audits)} reads over {len(self.accounts)} accounts"
        )
        kinds = sorted({a["kind"] for a in anomalies})
        summary = f"bank: {size}; " + (f"anomalies: {', '.join(kinds)}" if kinds else "ok")
        if result.inconclusive:
            summary += f" (final balances inconclusive: {result.inconclusive})"
        return Verdict(
            valid=not anomalies, checker="bank", summary=summary, anomalies=anomalies,
            details={"accounts": self.accounts, "initial": INITIAL_BALANCE,
                     "total": INITIAL_BALANCE * len(self.accounts),
                     "inconclusive": result.inconclusive,
                     # A lost transfer breaks the total (an anomaly); which one was lost, the
                     # checker cannot tell, so none is counted as a lost acknowledged write.
                     "lost_acked": 0},
        )  # fmt: skip

    def _anomaly(self, violation: str, h: BankHistory) -> dict[str, Any]:
        """A checker violation (``kind: text naming transfer t<i> or audit a<i>``) with the
        history events it names. An audit-total one also names the likely culprits (see
        `lost_update_suspects`), a final-balances one every transfer whose outcome was not
        ok (the ones it could not fit)."""
        kind, _, _ = violation.partition(":")
        names = [w.strip(",.:()[]'") for w in violation.split()]
        named = [n for n in names if n in h.events]
        extra: dict[str, Any] = {}
        if kind == "audit-total":
            suspects = lost_update_suspects(h)
            extra["lost_update_suspects"] = [list(s) for s in suspects]
            named += [name for s in suspects for name in s[:2]]
        elif kind == "final-balances":
            named += [t.name for t in h.transfers if t.outcome is not TransferOutcome.OK]
        ops = [self.history.events[i] for n in dict.fromkeys(named) for i in h.events[n]]
        return {"kind": kind, "message": violation, "ops": ops[:_OPS_SHOWN_MAX], **extra}


def lost_update_suspects(h: BankHistory) -> list[tuple[str, str, str, int]]:
    """Pairs of committed transfers, concurrent in real time, that read one balance of an
    account and both changed it: (first, second, account, balance read). First
    committer wins forbids this at snapshot isolation and above; a balance can repeat, so
    these are evidence for a person, not a verdict (the conserved total is the verdict)."""
    seen: dict[tuple[str, int], list[Transfer]] = {}
    for t in h.transfers:
        if t.outcome is not TransferOutcome.OK:
            continue
        for k, w in t.writes.items():
            v = t.reads.get(k)
            if v is not None and w != v:  # an unchanged balance may rightly be read again
                seen.setdefault((k, v), []).append(t)
    out = []
    for (k, v), ts in seen.items():
        for i, a in enumerate(ts):
            for b in ts[i + 1 :]:
                (a0, a1), (b0, b1) = h.events[a.name], h.events[b.name]
                if a0 < b1 and b0 < a1:
                    out.append((a.name, b.name, k, v))
    return sorted(out, key=lambda s: h.events[s[0]])[:_SUSPECTS_MAX]
