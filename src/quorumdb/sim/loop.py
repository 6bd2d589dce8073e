"""Virtual time: a priority queue of callbacks and a hash of everything that happened.

Ties in time break by insertion order, so a run is a pure function of its seed. Every event
that changes the outcome is fed to `trace()`, whose running BLAKE2b digest is the run's
fingerprint: the same seed must give the same digest (the determinism test compares them).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable
from typing import Any

__all__ = ["EventLoop"]


class EventLoop:
    __slots__ = ("_hash", "_heap", "_seq", "events", "events_max", "exhausted", "lines", "now")

    def __init__(self, *, keep_lines: bool = False, events_max: int | None = None) -> None:
        """`events_max`: a budget; once spent, `run_until` returns at once (`exhausted`)."""
        self.now = 0
        self.events_max = events_max
        self.exhausted = False
        self._seq = 0
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._hash = hashlib.blake2b(digest_size=16)
        self.events = 0
        self.lines: list[str] | None = [] if keep_lines else None

    def at(self, when: int, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` at virtual time `when` (never in the past)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(when, self.now), self._seq, fn, args))

    def after(self, delay: int, fn: Callable[..., None], *args: Any) -> None:
        self.at(self.now + delay, fn, *args)

    def run_until(self, deadline: int, stop: Callable[[], bool] | None = None) -> None:
        """Run events up to `deadline` (or until `stop()` holds after an event)."""
        heap = self._heap
        budget = self.events_max
        while heap and heap[0][0] <= deadline:
            if budget is not None and self.events >= budget:
                self.exhausted = True
                return
            when, _, fn, args = heapq.heappop(heap)
            self.now = when
            self.events += 1
            fn(*args)
            if stop is not None and stop():
                return
        self.now = max(self.now, deadline)

    def trace(self, line: str) -> None:
        """Record one event of the run in the fingerprint (and in `lines` if kept)."""
        self._hash.update(f"{self.now} {line}\n".encode())
        if self.lines is not None:
            self.lines.append(f"{self.now:>12} {line}")

    def digest(self) -> str:
        return self._hash.hexdigest()
