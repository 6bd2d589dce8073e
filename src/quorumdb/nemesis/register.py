"""The register workload: clients read and write a few keys and record a Jepsen history.

Each client is a Jepsen process doing one operation at a time at a bounded rate: a write of
a unique value or a linearizable read, on one of a few keys, through `quorumdb.AsyncClient`
(leader discovery, retries with at-most-once sessions). An operation whose outcome is
unknown (the client gave up) is recorded as `info`, and the client goes on as a new
process, as Jepsen requires. `check.linearizable` judges the history per key. After the
heal every key must be read once more within `_FINAL_BUDGET_S`; a key that was not is a
``liveness`` anomaly (the cluster did not recover), as in the other workloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

from quorumdb.check.history import history_from_events
from quorumdb.check.linearizable import Verdict as LinVerdict
from quorumdb.check.linearizable import check_linearizable
from quorumdb.check.report import render_counterexample, summary_line
from quorumdb.errors import QuorumError
from quorumdb.kv.client import AsyncClient, RetryPolicy
from quorumdb.nemesis.workload import History, Verdict

__all__ = ["RegisterWorkload"]

_RETRY = RetryPolicy(attempts_max=8, backoff_min_s=0.01, backoff_max_s=0.25)
_FINAL_BUDGET_S = 30.0  # after the heal: time for the final reads of every key, together
_FINAL_BACKOFF_S = 0.1  # between a final read that gave up and the next try


class RegisterWorkload:
    name = "register"

    def __init__(self, urls: list[str], *, clients: int, keys: int, rate: float, seed: int) -> None:
        """`rate`: operations per second over all clients."""
        self.urls = urls
        self.clients = clients
        self.keys = [f"r{i}" for i in range(keys)]
        self.interval_s = clients / rate
        self.seed = seed
        self.history = History()
        self._values = 0
        self._final_read: set[str] = set()  # keys whose final read succeeded

    def _process(self) -> int:
        return self.history.new_process()

    def _event(self, process: int, kind: str, f: str, key: str, value: Any) -> None:
        self.history.add(process, kind, f, key=key, value=value)

    async def run(self, stop_at: float) -> None:
        await asyncio.gather(*(self._client(i, stop_at) for i in range(self.clients)))

    async def _client(self, n: int, stop_at: float) -> None:
        rng = random.Random(f"register-{self.seed}-{n}")
        process = self._process()
        # Each read starts at a random node (a linearizable read is served anywhere, through
        # ReadIndex; a node just back from a fault gets reads too), writes find the leader.
        seed = rng.getrandbits(32)
        async with contextlib.AsyncExitStack() as stack:
            writer = await stack.enter_async_context(
                AsyncClient(self.urls, retry=_RETRY, timeout_s=1.0, seed=seed)
            )
            readers = [
                await stack.enter_async_context(
                    AsyncClient(
                        self.urls[i:] + self.urls[:i], retry=_RETRY, timeout_s=1.0, seed=seed + i
                    )
                )
                for i in range(len(self.urls))
            ]
            while time.monotonic() < stop_at:
                started = time.monotonic()
                key = rng.choice(self.keys)
                if rng.random() < 0.5:
                    self._values += 1
                    ok = await self._op(writer, process, "write", key, f"v{self._values}")
                else:
                    ok = await self._op(rng.choice(readers), process, "read", key, None)
                if not ok:
                    process = self._process()
                await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def _op(
        self,
        c: AsyncClient,
        process: int,
        f: str,
        key: str,
        value: str | None,
        *,
        timeout_s: float | None = None,
    ) -> bool:
        """One operation, recorded; False if its outcome is unknown (`info`), which includes
        not being done within `timeout_s` (None: the client's retries bound it)."""
        self._event(process, "invoke", f, key, value)
        try:
            if f == "write":
                assert value is not None
                await asyncio.wait_for(c.put(key, value), timeout_s)
                result: Any = value
            else:
                got = await asyncio.wait_for(c.get(key), timeout_s)
                result = None if got is None else got[0]
        except (QuorumError, OSError, TimeoutError):
            self._event(process, "info", f, key, value)
            return False
        self._event(process, "ok", f, key, result)
        return True

    async def final_reads(self) -> None:
        """After the heal: read every key once more, so the history ends whole; retried until
        one overall deadline (a key not read by then is a liveness anomaly in `check`)."""
        deadline = time.monotonic() + _FINAL_BUDGET_S
        process = self._process()
        async with AsyncClient(self.urls, retry=_RETRY, timeout_s=2.0) as c:
            for key in self.keys:
                while key not in self._final_read and time.monotonic() < deadline:
                    left_s = deadline - time.monotonic()
                    if await self._op(c, process, "read", key, None, timeout_s=left_s):
                        self._final_read.add(key)
                    else:
                        process = self._process()
                        await asyncio.sleep(min(_FINAL_BACKOFF_S, left_s))

    def check(self) -> Verdict:
        """Linearizability per key; each failing key's counterexample names its operations. A
        key whose final read did not succeed is a liveness anomaly."""
        result = check_linearizable(history_from_events(self.history.events))
        anomalies: list[dict[str, Any]] = []
        for key in result.keys:
            cx = key.counterexample
            if cx is None:
                continue
            ops = [self.history.events[op.invoke_index] for op in cx.window]
            anomalies.append(
                {"kind": "not-linearizable", "key": key.key,
                 "message": render_counterexample(cx), "ops": ops,
                 "operation": self.history.events[cx.operation.invoke_index],
                 "linearizable_through": cx.linearizable_through}
            )  # fmt: skip
        summary = summary_line(result)
        unread = [k for k in self.keys if k not in self._final_read]
        if unread:
            why = f"no final read of {', '.join(unread)} within {_FINAL_BUDGET_S:g} s of the heal"
            anomalies.append({"kind": "liveness", "message": why, "keys": unread, "ops": []})
            summary += f"; liveness: {why}"
        return Verdict(
            valid=result.ok and not unread, checker="linearizable", summary=summary,
            anomalies=anomalies,
            # A lost write is a linearizability violation here (a read that misses it), and
            # the checker does not say which write: none is counted as lost.
            details={"lost_acked": 0},
            unknown=result.verdict is LinVerdict.UNKNOWN and not unread,
        )  # fmt: skip
