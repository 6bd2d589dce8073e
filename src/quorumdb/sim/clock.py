"""A node's clocks in the simulation: a monotonic clock that drifts, a wall clock that is off.

Real time is the event loop's virtual time. A node's monotonic clock runs at `rate` (1.0 plus
or minus its drift), which sets how fast it ticks; its wall clock adds a fixed `offset_us`, the
skew that wall-clock-ordered designs (last-write-wins) trip over and that hybrid logical clocks
must tolerate. Clocks survive crashes: they belong to the machine, not the process.
"""

from __future__ import annotations

import math

__all__ = ["NodeClock"]


class NodeClock:
    __slots__ = ("offset_us", "rate")

    def __init__(self, *, rate: float = 1.0, offset_us: int = 0) -> None:
        assert rate > 0, f"clock rate must be positive, got {rate}"
        self.rate = rate
        self.offset_us = offset_us

    def monotonic_us(self, now_us: int) -> int:
        """The node's monotonic reading at virtual time `now_us`."""
        return int(now_us * self.rate)

    def wall_us(self, now_us: int) -> int:
        """The node's wall-clock reading at virtual time `now_us` (skewed by `offset_us`)."""
        return self.monotonic_us(now_us) + self.offset_us

    def when_monotonic(self, reading_us: int) -> int:
        """The first virtual time at which the monotonic clock reads at least `reading_us`."""
        return math.ceil(reading_us / self.rate)
