"""What a `NodeHost` is given: time, timers, the network, a place to run WAL writes, randomness.

The host does no I/O of its own and never reads a clock or a random source directly: the
asyncio runtime (`runtime.node`) gives it real time, a TCP transport and a worker thread for
the WAL's write + fdatasync; the simulator gives it virtual time, a simulated network and a
simulated disk latency. The same host code runs under both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from quorumdb.raft import Message

__all__ = ["Clock", "Env", "GroupMessageLike", "Network", "RandomSource", "Syncer", "Timers"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for timeouts and ages)."""
        ...

    def wall_ms(self) -> int:
        """Milliseconds since the epoch (Kafka timestamps, retention); may drift or jump."""
        ...


class GroupMessageLike(Protocol):
    """A Raft message and the group it belongs to (e.g. `runtime.wire.GroupMessage`)."""

    @property
    def group(self) -> int: ...

    @property
    def message(self) -> Message: ...


class Timers(Protocol):
    def call_later(self, delay_s: float, fn: Callable[[], None]) -> Callable[[], None]:
        """Call `fn` (on the host's thread) after `delay_s`; returns a cancel function."""
        ...


class Network(Protocol):
    def send(self, group: int, m: Message) -> None:
        """Queue a Raft message for `m.to`; never blocks, may drop (Raft retransmits)."""
        ...

    def send_service(self, peer: int, channel: str, body: bytes) -> bool:
        """Queue a service's message for `peer`; False if it was not queued."""
        ...

    def add_peer(self, peer: int, addr: tuple[str, int]) -> None: ...

    def remove_peer(self, peer: int) -> None: ...


class Syncer(Protocol):
    def submit(
        self, work: Callable[[], float], done: Callable[[float | BaseException], None]
    ) -> None:
        """Run `work` (a WAL write + fdatasync; returns its duration) somewhere, then call
        `done` on the host's thread with its result or the error it raised."""
        ...


class RandomSource(Protocol):
    def getrandbits(self, k: int, /) -> int: ...

    def randrange(self, stop: int, /) -> int: ...

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Env:
    clock: Clock
    timers: Timers
    network: Network
    syncer: Syncer
    rng: RandomSource
    # Ask the driver to call `NodeHost.pump()` soon (something arrived or became due).
    wake: Callable[[], None]
