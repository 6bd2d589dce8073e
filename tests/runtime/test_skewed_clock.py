"""The skewable clock of clock faults: an offset moves the wall clock only, a drift changes
both clocks' speed from the moment it is set, and monotonic time never goes back."""

from __future__ import annotations

import pytest

from quorumdb.runtime.skewed_clock import SkewedClock


class _Real:
    """Hand-moved real clocks: monotonic from 100 s, the wall at 1,000,000 s."""

    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = 1_000_000.0

    def advance(self, s: float) -> None:
        self.mono += s
        self.wall += s


def _clock() -> tuple[_Real, SkewedClock]:
    real = _Real()
    return real, SkewedClock(lambda: real.mono, lambda: real.wall)


def test_without_faults_it_is_the_real_clock() -> None:
    real, clock = _clock()
    real.advance(2.5)
    assert clock.monotonic() == real.mono
    assert clock.wall_ms() == int(real.wall * 1000)


def test_an_offset_moves_the_wall_clock_but_not_monotonic_time() -> None:
    real, clock = _clock()
    real.advance(1.0)
    before = clock.monotonic()
    clock.set(offset_ms=-4_000, drift_ppm=0)
    assert clock.wall_ms() == int(real.wall * 1000) - 4_000
    assert clock.monotonic() == before
    clock.set(offset_ms=250, drift_ppm=0)
    assert clock.wall_ms() == int(real.wall * 1000) + 250
    clock.set(offset_ms=0, drift_ppm=0)
    assert clock.wall_ms() == int(real.wall * 1000)


def test_a_drift_accumulates_from_when_it_was_set() -> None:
    real, clock = _clock()
    real.advance(10.0)
    clock.set(offset_ms=0, drift_ppm=100_000)  # 10 % fast
    start_mono = clock.monotonic()
    real.advance(20.0)
    assert clock.monotonic() == pytest.approx(start_mono + 22.0)
    assert clock.wall_ms() == pytest.approx(real.wall * 1000 + 2_000, abs=1)
    # Setting the same drift again (another field of the file changed) keeps it running.
    clock.set(offset_ms=500, drift_ppm=100_000)
    assert clock.wall_ms() == pytest.approx(real.wall * 1000 + 2_500, abs=1)


def test_clearing_a_drift_steps_the_wall_clock_back_but_not_monotonic_time() -> None:
    real, clock = _clock()
    clock.set(offset_ms=0, drift_ppm=50_000)
    real.advance(10.0)
    drifted = clock.monotonic()
    assert drifted == pytest.approx(real.mono + 0.5)
    clock.set(offset_ms=0, drift_ppm=0)
    assert clock.wall_ms() == int(real.wall * 1000)
    assert clock.monotonic() == pytest.approx(drifted)
    real.advance(1.0)
    assert clock.monotonic() == pytest.approx(drifted + 1.0)


def test_a_slow_drift_slows_monotonic_time_which_never_goes_back() -> None:
    real, clock = _clock()
    clock.set(offset_ms=0, drift_ppm=300_000)
    real.advance(5.0)
    clock.set(offset_ms=-5_000, drift_ppm=-500_000)  # now half speed, wall far behind
    seen = [clock.monotonic()]
    for _ in range(10):
        real.advance(1.0)
        seen.append(clock.monotonic())
    assert seen == sorted(seen)
    assert seen[-1] - seen[0] == pytest.approx(5.0)
    # Real time itself stepping back (it never should) does not move ours back either.
    real.mono -= 3.0
    assert clock.monotonic() >= seen[-1]


def test_a_drift_that_stops_time_is_refused() -> None:
    _, clock = _clock()
    with pytest.raises(ValueError, match="drift_ppm"):
        clock.set(offset_ms=0, drift_ppm=-1_000_000)
