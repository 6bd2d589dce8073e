"""A node over asyncio: the sans-IO `NodeHost` given real time, TCP, threads and an HTTP port.

Theory of operation. `Node` composes the parts: the host with the KV store plugged in
(`kv.node_kv.NodeKV`, as the simulator builds it too), the `Transport` (the host's network:
Raft and service messages to peers), a tick loop (calls `host.tick()` every tick; the host
counts the ticks due by its monotonic clock, all of them after a stall), a driver task (calls
`host.pump()` whenever the host asked to be woken), a syncer that runs each round's WAL write +
fdatasync in a worker thread and hands the result back on the loop, the HTTP server for
`kv.api.dispatch` over the node's `NodeService`, and the node's life: replay the committed log
before serving, stop cleanly, and fail-stop: an exception from the host (in a round, or when a
write comes back), or a storage failure in a service handler (a Kafka catch-up fill), stops
both loops, marks the host failed (health answers 503) and wakes `wait_failed`. A failed write
or fsync is never retried: the node stops and recovers from its files when restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import time
from collections.abc import Callable

from quorumdb.errors import UserError
from quorumdb.host.config import NodeConfig
from quorumdb.host.env import Clock, Env
from quorumdb.host.persistence import NodeLog
from quorumdb.kv.api import BODY_BYTES_MAX, dispatch
from quorumdb.kv.node_kv import NodeKV
from quorumdb.kv.node_service import NodeService
from quorumdb.raft import PlantedBug
from quorumdb.runtime.http import HttpServer
from quorumdb.runtime.transport import Transport
from quorumdb.runtime.wire import GroupMessage, ServiceMessage
from quorumdb.storage.errors import DurableStateError

__all__ = ["PLANTED_BUGS_ENV", "Node", "planted_bugs_from_env"]

log = logging.getLogger("quorumdb.host")

_REPLAY_WAIT_S_MAX = 30.0


class _SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return int(time.time() * 1000)


# TEST ONLY (`quorumdb test --bug`): comma-separated `PlantedBug` values the node runs with,
# so that a run on real processes can show its checker catching a known mistake.
PLANTED_BUGS_ENV = "QUORUMDB_PLANTED_BUGS"


def planted_bugs_from_env(raw: str) -> frozenset[PlantedBug]:
    names = [n.strip() for n in raw.split(",") if n.strip()]
    try:
        return frozenset(PlantedBug(n) for n in names)
    except ValueError:
        known = ", ".join(sorted(b.value for b in PlantedBug))
        raise UserError(
            f"{PLANTED_BUGS_ENV}={raw!r}: unknown planted bug (known: {known})"
        ) from None


class _LoopTimers:
    def call_later(self, delay_s: float, fn: Callable[[], None]) -> Callable[[], None]:
        return asyncio.get_running_loop().call_later(delay_s, fn).cancel


class Node:
    """One node process's worth of quorumdb, minus the Kafka listener (`runtime.node_main`)."""

    def __init__(self, config: NodeConfig, node_log: NodeLog, clock: Clock | None = None) -> None:
        """`clock`: the system clock unless given (TEST ONLY: a skewed one, `fault_control`)."""
        self.config = config
        self.node_log = node_log
        self._kick = asyncio.Event()
        self.transport = Transport(
            node_id=config.node_id,
            cluster=config.cluster,
            listen=config.me.raft,
            peers={i: m.raft for i, m in config.members.items() if i != config.node_id},
            deliver=self._deliver,
            rng=random.Random(),
            deliver_service=self._deliver_service,
        )
        env = Env(
            clock=clock if clock is not None else _SystemClock(),
            timers=_LoopTimers(),
            network=self.transport,
            syncer=self,
            rng=random.Random(),
            wake=self._kick.set,
        )
        bugs = planted_bugs_from_env(os.environ.get(PLANTED_BUGS_ENV, ""))
        if bugs:
            log.warning("TEST ONLY: planted bugs %s", ", ".join(sorted(b.value for b in bugs)))
        self.kv = NodeKV(config, node_log, env, planted_bugs=bugs)
        self.host = self.kv.host
        self.service = NodeService(self.host)
        self.host.metrics_hooks.append(self._transport_gauges)
        self._tasks: list[asyncio.Task[None]] = []
        self._http: HttpServer | None = None
        self._round_done = asyncio.Event()
        self._failed = asyncio.Event()
        # The WAL write of the latest round: `stop` lets it finish before closing the WAL.
        self._wal_write: asyncio.Future[float] | None = None

    # -- what the host is given ------------------------------------------------------------

    def _deliver(self, sender: int, msgs: list[GroupMessage]) -> None:
        self.host.deliver(sender, msgs)

    def _deliver_service(self, sender: int, msg: ServiceMessage) -> None:
        try:
            self.host.deliver_service(sender, msg.channel, msg.body)
        except DurableStateError as exc:
            # A service handler wrote (a Kafka catch-up fill): its failure stops the node as
            # a round's would, rather than dropping the peer's connection and carrying on.
            self._fail("service handler", exc)

    def submit(
        self, work: Callable[[], float], done: Callable[[float | BaseException], None]
    ) -> None:
        """`Syncer`: the WAL write + fdatasync in a worker thread; `done` back on the loop."""
        fut = asyncio.get_running_loop().run_in_executor(None, work)
        self._wal_write = fut
        fut.add_done_callback(functools.partial(self._written, done))

    def _written(
        self, done: Callable[[float | BaseException], None], fut: asyncio.Future[float]
    ) -> None:
        if fut.cancelled() or not self.host.running or self.host.failure is not None:
            return  # stopped or failed meanwhile: nothing more happens on this host
        error = fut.exception()
        try:
            done(error if error is not None else fut.result())
        except Exception as exc:
            self._fail("driver", exc)
        self._round_done.set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.host.running = True
        self.kv.transactions.start_recovery()
        await self.transport.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._tick_loop(), name="tick loop"),
            loop.create_task(self._driver_loop(), name="driver"),
        ]
        for t in self._tasks:
            t.add_done_callback(self._on_loop_done)
        await self._replay_committed()
        self._http = HttpServer(
            functools.partial(dispatch, self.service), body_bytes_max=BODY_BYTES_MAX
        )
        host, port = self.config.me.http
        await self._http.start(host, port)
        log.info(
            "node started id=%d raft=%s:%d http=%s:%d groups=%d fsync=%s",
            self.config.node_id,
            *self.config.me.raft,
            host,
            port,
            len(self.host.groups),
            self.config.fsync,
        )

    async def _replay_committed(self) -> None:
        """Apply what this node's own log already holds as committed before serving
        (`NodeHost.replay_behind`). Bounded: a log that cannot reach its commit index (it
        never should) only delays the start."""
        deadline = time.monotonic() + _REPLAY_WAIT_S_MAX
        while behind := self.host.replay_behind():
            if self.host.failure is not None:
                break  # the owner shuts the node down
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                log.warning("serving before replaying the committed log of groups=%s", behind)
                break
            self._round_done.clear()
            self._kick.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._round_done.wait(), left_s)
        self.host.end_replay()

    async def stop(self) -> None:
        self.host.running = False
        self.kv.transactions.stop_recovery()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.stop()
        await self.transport.stop()
        if self._wal_write is not None:
            # Its thread outlives a stopped driver: close the WAL after it.
            await asyncio.wait([self._wal_write])
        self.node_log.close()

    def _on_loop_done(self, task: asyncio.Task[None]) -> None:
        """The driver or tick loop ended: unless cancelled by `stop`, the node has failed."""
        if task.cancelled():
            return
        exc = task.exception()
        assert exc is not None, f"the {task.get_name()} returned"
        self._fail(task.get_name(), exc)

    def _fail(self, what: str, exc: BaseException) -> None:
        if isinstance(exc, DurableStateError):
            # Never retried: after a failed write or fsync the file's state is unknown (the
            # page cache may have dropped the data), so the node stops and recovers from
            # what is on disk when restarted.
            log.error(
                "durable storage failed path=%s reason=%r; stopping the node",
                exc.path,
                exc.reason,
            )
        log.error("%s failed; stopping the node", what, exc_info=exc)
        if self.host.failure is None:
            self.host.failed(exc)
            self._failed.set()
            self._round_done.set()  # wakes `_replay_committed`, which then sees the failure
        for t in self._tasks:
            t.cancel()

    async def wait_failed(self) -> BaseException:
        """Wait until the driver or tick loop fails; return what stopped it. The node is then
        fail-stop: it neither replicates nor applies, and its owner should shut it down."""
        await self._failed.wait()
        assert self.host.failure is not None
        return self.host.failure

    # -- the loops -----------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        interval = self.config.tick_ms / 1000
        while True:
            await asyncio.sleep(interval)
            # The host counts the ticks due by its clock (all of them, after a stall).
            self.host.tick()

    async def _driver_loop(self) -> None:
        """Pump the host whenever it asked; an error ends it (and `_on_loop_done` fails the
        node)."""
        host = self.host
        kick = self._kick
        while True:
            await kick.wait()
            kick.clear()
            host.pump()
            self._round_done.set()

    def _transport_gauges(self) -> list[tuple[str, str, str, float]]:
        ts = self.transport.stats
        gauges: list[tuple[str, str, str, float]] = [
            ("quorumdb_transport_queue_depth", "Messages queued per peer", f'peer="{p}"', d)
            for p, d in self.transport.queue_depths().items()
        ]
        gauges += [
            ("quorumdb_transport_sent_messages_total", "Messages sent", "", ts.sent_messages),
            (
                "quorumdb_transport_dropped_total",
                "Messages dropped (full queue)",
                'reason="full"',
                ts.dropped_full,
            ),
            (
                "quorumdb_transport_dropped_total",
                "Messages dropped",
                'reason="failed"',
                ts.dropped_failed,
            ),
            (
                "quorumdb_transport_rejected_connections_total",
                "Bad peer connections",
                "",
                ts.rejected_connections,
            ),
        ]
        return gauges
