"""The fault schedule of a run, drawn from its seed: what happens to which nodes, and when.

One fault at a time, each healed before the next begins, on at most `faulty` nodes (by
default a minority): the run shows that the faults a majority survives lose nothing. With
`faulty` at a majority or more a fault can stop progress; safety must hold all the same.
The same seed gives the same schedule. A fault whose variant names the leader ("leader",
"isolate-leader") has no nodes in the plan: the run picks the leader when the fault starts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

__all__ = ["NEMESES", "VARIANTS", "Fault", "Nemesis", "plan"]


class Nemesis(Enum):
    KILL = "kill"  # kill -9, restart after the fault's duration
    PAUSE = "pause"  # SIGSTOP, SIGCONT after the duration (longer than an election timeout)
    PARTITION = "partition"  # network faults between node processes (proxy or namespaces)
    CLOCK = "clock"  # a node's clock offset or drift (the node's injected clock)
    DISK = "disk"  # slow, stalled or failing fsyncs, or a full disk (the node's file system)


NEMESES = tuple(n.value for n in Nemesis)

# What each kind can do; the schedule draws one variant per fault. `Fault.nodes` per variant:
#   kill/pause node: (n,)            kill/pause leader: ()  (chosen when the fault starts)
#   partition isolate: (n,) cut off both ways      isolate-leader: ()
#   partition majority-minority: the minority, cut off from the rest
#   partition bridge: (b,): the others split in two halves that only b connects
#   partition one-way: (a, b): a's messages to b are dropped, b's to a still arrive
#   partition loss / delay / reorder: (n,): netem on n's traffic (amount: fraction / ms)
#   clock offset: (n,), amount ms (+/-)     clock drift: (n,), amount ppm (+/-)
#   disk slow: (n,), amount ms per fsync    disk stall: fsyncs block until healed
#   disk fail: fsyncs fail with EIO (the node stops; the heal restarts it)
#   disk full: writes fail with ENOSPC until healed
VARIANTS: dict[Nemesis, tuple[str, ...]] = {
    Nemesis.KILL: ("node", "leader"),
    Nemesis.PAUSE: ("node", "leader"),
    Nemesis.PARTITION: (
        "isolate",
        "isolate-leader",
        "majority-minority",
        "bridge",
        "one-way",
        "loss",
        "delay",
        "reorder",
    ),
    Nemesis.CLOCK: ("offset", "drift"),
    Nemesis.DISK: ("slow", "stall", "fail", "full"),
}


@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float  # seconds after the workload started
    kind: Nemesis
    variant: str
    nodes: tuple[int, ...]  # see VARIANTS; () for the leader variants
    duration_s: float
    amount: float = 0.0  # the variant's magnitude (see VARIANTS), 0 where it has none


def _amount(rng: random.Random, kind: Nemesis, variant: str) -> float:
    sign = rng.choice((-1, 1))
    match (kind, variant):
        case (Nemesis.PARTITION, "loss"):
            return round(rng.uniform(0.1, 0.5), 2)
        case (Nemesis.PARTITION, "delay" | "reorder"):
            return round(rng.uniform(20.0, 200.0))
        case (Nemesis.CLOCK, "offset"):
            return sign * round(rng.uniform(50.0, 5_000.0))
        case (Nemesis.CLOCK, "drift"):
            return sign * round(rng.uniform(1_000.0, 100_000.0))
        case (Nemesis.DISK, "slow"):
            return round(rng.uniform(20.0, 300.0))
    return 0.0


def _targets(rng: random.Random, variant: str, nodes: list[int], faulty: int) -> tuple[int, ...]:
    if variant in ("leader", "isolate-leader"):
        return ()
    if variant == "majority-minority":  # at least one node stays on the other side
        return tuple(sorted(rng.sample(nodes, rng.randint(1, min(faulty, len(nodes) - 1)))))
    if variant == "one-way":
        return tuple(rng.sample(nodes, 2))
    return (rng.choice(nodes),)


def plan(
    seed: int, kinds: list[Nemesis], nodes: list[int], time_s: float, faulty: int | None = None
) -> list[Fault]:
    """Faults every 1-3 s, each lasting 0.5-2.5 s, ending before `time_s` minus one second
    (the cluster is whole again for the end of the run). `faulty`: the most nodes one fault
    may take away (default: a minority)."""
    rng = random.Random(f"nemesis-{seed}")
    faulty = max(1, faulty if faulty is not None else (len(nodes) - 1) // 2)
    faults: list[Fault] = []
    t = rng.uniform(1.0, 2.0)
    while kinds:
        duration = rng.uniform(0.5, 2.5)
        if t + duration > time_s - 1.0:
            break
        kind = rng.choice(kinds)
        variant = rng.choice(VARIANTS[kind])
        targets = _targets(rng, variant, nodes, faulty)
        amount = _amount(rng, kind, variant)
        faults.append(Fault(round(t, 3), kind, variant, targets, round(duration, 3), amount))
        t += duration + rng.uniform(1.0, 3.0)
    return faults
