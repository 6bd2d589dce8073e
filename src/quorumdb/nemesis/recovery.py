"""How long the cluster took to serve again after a fault took its leader away.

A run's fault log names the leader when each fault began. A fault that took that leader
away (killed, paused, cut off by a partition, its disk stalled or failed) forces a
failover; the time it took is measured from the fault's start to the completion of the
first operation invoked after the start that succeeded: the moment a client, seeing the
fault, got served again. Faults the leader never felt (a follower killed, a clock skewed)
are not failovers and are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["failover_times", "percentile", "takes_leader_away"]

_CUTS_OFF = {"isolate", "isolate-leader", "majority-minority"}
_DISK_STOPS = {"stall", "fail"}


def takes_leader_away(fault: Mapping[str, Any]) -> bool:
    leader = fault.get("leader")
    if leader is None or leader not in fault.get("nodes", []):
        return False
    kind, variant = fault.get("kind"), fault.get("variant")
    return (
        kind in ("kill", "pause")
        or (kind == "partition" and variant in _CUTS_OFF)
        or (kind == "disk" and variant in _DISK_STOPS)
    )


def _successes(events: Iterable[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """(invoke, completion) times in seconds of every operation that ended ok."""
    open_at: dict[Any, float] = {}
    out = []
    for e in events:
        t = e.get("time")
        if not isinstance(t, int | float):
            continue
        if e.get("type") == "invoke":
            open_at[e.get("process")] = t / 1e9
        elif e.get("type") in ("ok", "info", "fail"):
            started = open_at.pop(e.get("process"), None)
            if started is not None and e["type"] == "ok":
                out.append((started, t / 1e9))
    return out


def failover_times(
    events: Iterable[Mapping[str, Any]], faults: Iterable[Mapping[str, Any]]
) -> list[float]:
    """Seconds to the first success after each fault that took the leader away (faults with
    no success after them before the run ended are left out: the run could not tell)."""
    successes = sorted(_successes(events))
    times = []
    for fault in faults:
        if not takes_leader_away(fault):
            continue
        start = float(fault["start_s"])
        after = [done for invoked, done in successes if invoked >= start]
        if after:
            times.append(round(min(after) - start, 3))
    return times


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]
