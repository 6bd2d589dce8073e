"""What a `quorumdb test` workload is: clients that record a Jepsen history, and a checker.

A workload runs its clients against a live cluster until a deadline, then (after the heal)
does its final reads, and judges its own history with the matching `check/` module. Event
times are nanoseconds since the workload started, the same clock the fault log uses, so
plots and reports can lay operations and faults on one timeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["History", "Verdict", "Workload"]


@dataclass(slots=True)
class Verdict:
    valid: bool
    checker: str  # linearizable, kafka-delivery, bank, elle
    summary: str  # one line
    # Each anomaly: {"kind": ..., "message": ..., "ops": [the history events involved]}.
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # checker-specific, for the report
    # Not valid because the checker could not decide (a search budget ran out), not because
    # it found an anomaly: `quorumdb test` exits 3 then, as `quorumdb check` does.
    unknown: bool = False


class History:
    """A Jepsen history being recorded: events with a process, a type, an f and a time."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.t0_ns = time.monotonic_ns()  # time 0 of the run: the fault log uses it too
        self._next_process = 0

    def new_process(self) -> int:
        self._next_process += 1
        return self._next_process - 1

    def add(self, process: int, kind: str, f: str, **fields: Any) -> dict[str, Any]:
        event = {"process": process, "type": kind, "f": f, **fields,
                 "time": time.monotonic_ns() - self.t0_ns}  # fmt: skip
        self.events.append(event)
        return event

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "info": 0, "fail": 0}
        for e in self.events:
            if e["type"] in out:
                out[e["type"]] += 1
        return out


class Workload(Protocol):
    name: str
    history: History

    async def run(self, stop_at: float) -> None:
        """Run the clients until `time.monotonic()` passes `stop_at`."""
        ...

    async def final_reads(self) -> None:
        """After the heal: read what the checker needs to see the end state whole."""
        ...

    def check(self) -> Verdict: ...
