"""TEST ONLY: a node clock that can be set off and made to drift (`runtime.fault_control`).

It wraps the system clock the node would use otherwise, so that everything the host times
sees the fault: election timeouts and heartbeats (ticks are counted by `monotonic`), lease
and transaction deadlines, the HLC and Kafka timestamps (`wall_ms`).

- `wall_ms` = the real wall clock + `offset_ms` + the drift accumulated since the drift was
  last set (`drift_ppm` millionths of the real time since then). Clearing the drift steps
  the wall clock back to real time, as NTP would.
- `monotonic` runs at rate 1 + drift_ppm/1e6 from the moment the drift was set, continuing
  from the value it had then: it never jumps, and never goes back (neither an offset nor a
  new drift moves it; a drift only changes its speed).

Thread-safe: the host reads it on the loop, the WAL's worker thread reads it around the
fsync, and the fault control's poller sets it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["SkewedClock"]


class SkewedClock:
    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        wall_s: Callable[[], float] = time.time,
    ) -> None:
        """`monotonic` and `wall_s`: the real clocks (seconds), injectable for tests."""
        self._real_monotonic = monotonic
        self._real_wall_s = wall_s
        self._lock = threading.Lock()
        self._offset_ms = 0.0
        self._drift_ppm = 0.0
        now = monotonic()
        self._anchor_real = now  # real monotonic time when the drift was last set
        self._anchor_skewed = now  # our monotonic time then
        self._last = now

    @property
    def offset_ms(self) -> float:
        return self._offset_ms

    @property
    def drift_ppm(self) -> float:
        return self._drift_ppm

    def set(self, offset_ms: float, drift_ppm: float) -> None:
        """Offset the wall clock by `offset_ms`; drift both clocks by `drift_ppm` from now
        (a drift equal to the one in effect keeps running from when it was set)."""
        if drift_ppm <= -1e6:
            raise ValueError(f"drift_ppm must be > -1000000, got {drift_ppm}")
        with self._lock:
            self._offset_ms = offset_ms
            if drift_ppm != self._drift_ppm:
                now = self._real_monotonic()
                self._anchor_skewed = self._skewed(now)
                self._anchor_real = now
                self._drift_ppm = drift_ppm

    def _skewed(self, real: float) -> float:
        rate = 1.0 + self._drift_ppm / 1e6
        return self._anchor_skewed + (real - self._anchor_real) * rate

    def monotonic(self) -> float:
        with self._lock:
            value = max(self._last, self._skewed(self._real_monotonic()))
            self._last = value
            return value

    def wall_ms(self) -> int:
        with self._lock:
            drift_s = (self._real_monotonic() - self._anchor_real) * self._drift_ppm / 1e6
            return int(self._real_wall_s() * 1000 + self._offset_ms + drift_s * 1000)
