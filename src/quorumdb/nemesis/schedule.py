"""The fault schedule of a run, drawn from its seed: what happens to which node, and when.

One fault at a time, each healed before the next begins, and never on more nodes than a
minority: the run shows that the faults a majority survives lose nothing, not that a
cluster without a quorum stops (it does). The same seed gives the same schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

__all__ = ["NEMESES", "Fault", "Nemesis", "plan"]


class Nemesis(Enum):
    KILL = "kill"  # kill -9, restart after the fault's duration
    PAUSE = "pause"  # SIGSTOP, SIGCONT after the duration (longer than an election timeout)


NEMESES = tuple(n.value for n in Nemesis)


@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float  # seconds after the workload started
    kind: Nemesis
    node: int
    duration_s: float


def plan(seed: int, kinds: list[Nemesis], nodes: list[int], time_s: float) -> list[Fault]:
    """Faults every 1-3 s, each lasting 0.5-2.5 s, ending before `time_s` minus one second
    (the cluster is whole again for the end of the run)."""
    rng = random.Random(f"nemesis-{seed}")
    faults: list[Fault] = []
    t = rng.uniform(1.0, 2.0)
    while kinds:
        duration = rng.uniform(0.5, 2.5)
        if t + duration > time_s - 1.0:
            break
        faults.append(Fault(round(t, 3), rng.choice(kinds), rng.choice(nodes), round(duration, 3)))
        t += duration + rng.uniform(1.0, 3.0)
    return faults
