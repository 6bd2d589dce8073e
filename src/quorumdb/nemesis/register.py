"""The register workload: clients read and write a few keys and record a Jepsen history.

Each client is a Jepsen process doing one operation at a time at a bounded rate: a write of
a unique value or a linearizable read, on one of a few keys, through `quorumdb.AsyncClient`
(leader discovery, retries with at-most-once sessions). An operation whose outcome is
unknown (the client gave up) is recorded as `info`, and the client goes on as a new
process, as Jepsen requires. `check.linearizable` judges the history per key.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

from quorumdb.check.history import history_from_events
from quorumdb.check.linearizable import check_linearizable
from quorumdb.check.report import render_counterexample, summary_line
from quorumdb.errors import QuorumError
from quorumdb.kv.client import AsyncClient, RetryPolicy
from quorumdb.nemesis.workload import History, Verdict

__all__ = ["RegisterWorkload"]

_RETRY = RetryPolicy(attempts_max=8, backoff_min_s=0.01, backoff_max_s=0.25)


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

    async def _op(self, c: AsyncClient, process: int, f: str, key: str, value: str | None) -> bool:
        """One operation, recorded; False if its outcome is unknown (`info`)."""
        self._event(process, "invoke", f, key, value)
        try:
            if f == "write":
                assert value is not None
                await c.put(key, value)
                result: Any = value
            else:
                got = await c.get(key)
                result = None if got is None else got[0]
        except (QuorumError, OSError, TimeoutError):
            self._event(process, "info", f, key, value)
            return False
        self._event(process, "ok", f, key, result)
        return True

    async def final_reads(self) -> None:
        """After the heal: read every key once more (retrying), so the history ends whole."""
        process = self._process()
        retry = RetryPolicy(attempts_max=40, backoff_min_s=0.05, backoff_max_s=0.5)
        async with AsyncClient(self.urls, retry=retry, timeout_s=2.0) as c:
            for key in self.keys:
                if not await self._op(c, process, "read", key, None):
                    process = self._process()

    def check(self) -> Verdict:
        """Linearizability per key; each failing key's counterexample names its operations."""
        result = check_linearizable(history_from_events(self.history.events))
        anomalies = []
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
        return Verdict(
            valid=result.ok, checker="linearizable", summary=summary_line(result),
            anomalies=anomalies,
        )  # fmt: skip
