"""Hybrid logical clocks (Kulkarni et al., 2014): timestamps that order MVCC versions.

A timestamp is one int: the wall-clock milliseconds in the high bits and a logical counter
in the low `LOGICAL_BITS`, so comparing timestamps is comparing ints and they pack into the
log as they are. `now()` never goes back and never repeats; `update(ts)` moves the clock past
a timestamp seen in a log entry, a version or a client's request, so whatever happens after
seeing an event is ordered after it whatever the wall clocks say (causality), while staying
within the clock skew of physical time. The wall clock is injected (`Env.clock.wall_ms`).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["HLC", "LOGICAL_BITS", "physical_ms"]

LOGICAL_BITS = 16


def physical_ms(ts: int) -> int:
    """The wall-clock part of a timestamp (milliseconds since the epoch)."""
    return ts >> LOGICAL_BITS


class HLC:
    """One node's hybrid logical clock. Not thread-safe: the host's thread owns it."""

    __slots__ = ("_last", "_wall_ms")

    def __init__(self, wall_ms: Callable[[], int]) -> None:
        self._wall_ms = wall_ms
        self._last = 0

    def now(self) -> int:
        """A timestamp above every one this clock has issued or seen."""
        pt = self._wall_ms() << LOGICAL_BITS
        last = self._last
        self._last = pt if pt > last else last + 1
        return self._last

    def update(self, ts: int) -> None:
        """Seen `ts`: every later `now()` is above it."""
        self._last = max(self._last, ts)

    def peek(self) -> int:
        """The last timestamp issued or seen, without issuing one."""
        return self._last
