"""A hand-driven `host.env.Env` for unit tests of the sans-IO host: nothing happens by itself.

Time moves only with `clock.advance`, timers fire only in `timers.fire_due`, sent messages
are recorded, and WAL writes wait in `syncer.queued` until `syncer.run_all`.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from quorumdb.host.env import Env
from quorumdb.raft import Message


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def wall_ms(self) -> int:
        return 1_700_000_000_000 + int(self.now * 1000)

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ManualTimers:
    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, list[Callable[[], None] | None]]] = []
        self._seq = itertools.count()

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> Callable[[], None]:
        cell: list[Callable[[], None] | None] = [fn]
        heapq.heappush(self._heap, (self.clock.now + delay_s, next(self._seq), cell))

        def cancel() -> None:
            cell[0] = None

        return cancel

    def fire_due(self) -> int:
        fired = 0
        while self._heap and self._heap[0][0] <= self.clock.now:
            _, _, cell = heapq.heappop(self._heap)
            if cell[0] is not None:
                cell[0]()
                fired += 1
        return fired


@dataclass
class RecordingNetwork:
    peers: dict[int, tuple[str, int]] = field(default_factory=dict)
    sent: list[tuple[int, Message]] = field(default_factory=list)
    services: list[tuple[int, str, bytes]] = field(default_factory=list)

    def send(self, group: int, m: Message) -> None:
        self.sent.append((group, m))

    def send_service(self, peer: int, channel: str, body: bytes) -> bool:
        self.services.append((peer, channel, body))
        return True

    def add_peer(self, peer: int, addr: tuple[str, int]) -> None:
        self.peers[peer] = addr

    def remove_peer(self, peer: int) -> None:
        self.peers.pop(peer, None)


@dataclass
class QueuedSyncer:
    queued: list[tuple[Callable[[], float], Callable[[float | BaseException], None]]] = field(
        default_factory=list
    )

    def submit(
        self, work: Callable[[], float], done: Callable[[float | BaseException], None]
    ) -> None:
        self.queued.append((work, done))

    def run_all(self) -> int:
        n = 0
        while self.queued:
            work, done = self.queued.pop(0)
            done(work())
            n += 1
        return n


@dataclass
class FakeEnv:
    clock: ManualClock
    timers: ManualTimers
    network: RecordingNetwork
    syncer: QueuedSyncer
    wakes: int = 0

    def wake(self) -> None:
        self.wakes += 1

    def env(self, seed: int = 1) -> Env:
        return Env(
            clock=self.clock,
            timers=self.timers,
            network=self.network,
            syncer=self.syncer,
            rng=random.Random(seed),
            wake=self.wake,
        )


def fake_env(peers: dict[int, tuple[str, int]] | None = None) -> FakeEnv:
    clock = ManualClock()
    return FakeEnv(
        clock=clock,
        timers=ManualTimers(clock),
        network=RecordingNetwork(peers=dict(peers or {})),
        syncer=QueuedSyncer(),
    )
