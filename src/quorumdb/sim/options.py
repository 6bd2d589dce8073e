"""What a simulation run does: cluster shape, fault mix and workload, all drawn from one seed.

Swarm testing (TigerBeetle's VOPR, Groce et al. 2012): instead of every run enabling every fault
at a fixed rate, each seed enables a random subset of fault kinds with random intensities, so
some runs are a gentle storm of one fault and others a mix, and rare interleavings surface.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from enum import Enum

from quorumdb.raft import PlantedBug

__all__ = [
    "ALL_FAULTS",
    "US_PER_MS",
    "US_PER_S",
    "WORKLOADS",
    "FaultKind",
    "SimOptions",
    "parse_workloads",
    "swarm_options",
]

US_PER_MS = 1_000
US_PER_S = 1_000_000


class FaultKind(Enum):
    """Fault families the nemesis can inject; `--faults` selects among them."""

    PARTITION = "partition"  # symmetric splits, one-way cuts, isolate, majority/minority, bridge
    LOSS = "loss"  # drop messages
    DUPLICATE = "duplicate"  # deliver some messages twice
    REORDER = "reorder"  # no per-link FIFO; wide latency spread
    CLOG = "clog"  # all traffic of one node delayed
    CRASH = "crash"  # kill a node (unsynced writes lost, last record maybe torn), restart later
    PAUSE = "pause"  # stop a node's process for a while (a long GC pause), then resume
    CORRUPT = "corrupt"  # flip a bit in a synced record; recovery must detect it
    CLOCK = "clock"  # per-node clock drift and wall-clock offsets
    TRANSFER = "transfer"  # ask a group's leader to hand leadership to another node
    SNAPSHOT = "snapshot"  # snapshot often, so followers and restarts need snapshots
    MEMBERSHIP = "membership"  # add a node to every group, later remove it again
    DISK = "disk"  # slow fsyncs and stalls (the mid-flight path runs while they last)


ALL_FAULTS: frozenset[FaultKind] = frozenset(FaultKind)


@dataclass(frozen=True, slots=True)
class DiskLatency:
    """WAL write + fdatasync latency: `base_us` plus an exponential tail, and with
    probability `slow` a stall of `slow_us` (a disk that hiccups)."""

    base_us: int = 300
    mean_extra_us: int = 700
    slow: float = 0.02
    slow_us: int = 40_000

    def draw(self, rng: random.Random) -> int:
        us = self.base_us + int(rng.expovariate(1.0 / max(self.mean_extra_us, 1)))
        if self.slow and rng.random() < self.slow:
            us += self.slow_us
        return us


@dataclass(frozen=True, slots=True, kw_only=True)
class SimOptions:
    """Every knob of one run. `swarm_options(seed)` fills it from the seed."""

    seed: int
    nodes: int = 3
    shards: int = 2
    faults: frozenset[FaultKind] = ALL_FAULTS
    fault_phase_us: int = 4 * US_PER_S
    liveness_budget_us: int = 10 * US_PER_S
    tick_ms: int = 10
    election_ticks: int = 15
    heartbeat_ticks: int = 3
    lease_reads: bool = False
    pre_vote: bool = True
    snapshot_entries: int = 40
    wal_segment_bytes: int = 256 << 10  # small, so that segments rotate and get deleted
    latency_min_us: int = 100
    latency_mean_us: int = 400  # of the exponential part above the minimum
    fifo_links: bool = False
    loss: float = 0.0
    duplicate: float = 0.02
    disk: DiskLatency = field(default_factory=DiskLatency)
    drift_max: float = 0.01  # largest |rate - 1| of a node's monotonic clock
    clock_offset_max_us: int = 50 * US_PER_MS  # largest |wall clock offset| of a node
    nemesis_interval_us: int = 400 * US_PER_MS  # mean time between nemesis actions
    hunt_leader: bool = False  # crashes, pauses and cuts target leaders; new leaders get cut off
    crash_in_sync: float = 0.0  # P(a node crashes while a WAL write + fsync is in flight)
    crash_after_commit: float = 0.0  # P(a leader crashes right after it applied new entries)
    clients: int = 4
    keys: int = 3
    think_us: tuple[int, int] = (1_000, 20_000)  # between a client's operations (uniform)
    kafka: bool = False  # a Kafka topic with producers and consumers (`sim.kafka_workload`)
    bank: bool = False  # bank transfers in serializable transactions (`sim.bank_workload`)
    list_append: bool = (
        False  # list-append transactions, checked by Elle (`sim.list_append_workload`)
    )
    planted_bugs: frozenset[PlantedBug] = field(default_factory=frozenset)

    def describe(self) -> str:
        faults = ",".join(sorted(f.value for f in self.faults)) or "none"
        s = (
            f"nodes={self.nodes} shards={self.shards} faults={faults} loss={self.loss:.2f} "
            f"dup={self.duplicate:.2f} fifo={self.fifo_links} lease={self.lease_reads} "
            f"pre_vote={self.pre_vote} "
            f"snapshot_entries={self.snapshot_entries} segment={self.wal_segment_bytes} "
            f"drift={self.drift_max:.3f} "
            f"disk={self.disk.base_us}+{self.disk.mean_extra_us}us"
        )
        if self.kafka:
            s += " kafka"
        if self.bank:
            s += " bank"
        if self.list_append:
            s += " list_append"
        if self.hunt_leader:
            s += " hunt_leader"
        if self.planted_bugs:
            s += " bugs=" + ",".join(sorted(b.value for b in self.planted_bugs))
        return s


def swarm_options(
    seed: int,
    *,
    allowed: frozenset[FaultKind] = ALL_FAULTS,
    planted_bugs: frozenset[PlantedBug] = frozenset(),
    workloads: frozenset[str] = frozenset(),
) -> SimOptions:
    """Draw a fault mix and intensities from `seed` (restricted to `allowed`); the
    `workloads` named (of `WORKLOADS`) run whatever the draw says (soaks of one workload)."""
    rng = random.Random(f"swarm-{seed}")
    kinds = sorted(allowed, key=lambda f: f.value)
    enabled = frozenset(f for f in kinds if rng.random() < 0.6)
    opts = SimOptions(
        seed=seed,
        nodes=rng.choice((3, 3, 5)),
        shards=rng.choice((1, 2, 3)),
        faults=enabled,
        lease_reads=rng.random() < 0.3,
        latency_min_us=rng.choice((50, 200, 1_000)),
        latency_mean_us=rng.choice((200, 1_000, 5_000)),
        clients=rng.choice((2, 4, 6)),
        keys=rng.choice((1, 3, 5)),
        nemesis_interval_us=rng.choice((150, 400, 1_000)) * US_PER_MS,
        hunt_leader=rng.random() < 0.3,
        duplicate=0.0,
        drift_max=0.0,
        clock_offset_max_us=0,
        disk=DiskLatency(slow=0.0),
        planted_bugs=planted_bugs,
    )
    if PlantedBug.LEASE_WITHOUT_QUORUM in planted_bugs:
        # The bug lives in lease reads: a run without them could not show it.
        opts = replace(opts, lease_reads=True)
    if FaultKind.LOSS in enabled:
        opts = replace(opts, loss=rng.choice((0.01, 0.05, 0.2)))
    if FaultKind.DUPLICATE in enabled:
        opts = replace(opts, duplicate=rng.choice((0.01, 0.05, 0.2)))
    if FaultKind.REORDER in enabled:
        opts = replace(opts, fifo_links=False, latency_mean_us=rng.choice((2_000, 20_000)))
    else:
        opts = replace(opts, fifo_links=True)  # TCP: one connection per peer keeps order
    if FaultKind.CLOCK in enabled:
        # Bounded drift: leases assume at most lease_drift_ticks over an election timeout.
        opts = replace(
            opts,
            drift_max=rng.choice((0.001, 0.01, 0.05)),
            clock_offset_max_us=rng.choice((0, 50 * US_PER_MS, 2 * US_PER_S)),
        )
    if FaultKind.CRASH in enabled:
        opts = replace(
            opts,
            crash_in_sync=rng.choice((0.0, 0.01, 0.05)),
            crash_after_commit=rng.choice((0.0, 0.005, 0.02, 0.1)),
        )
    if FaultKind.SNAPSHOT in enabled:
        opts = replace(opts, snapshot_entries=rng.choice((5, 20, 100)))
    else:
        opts = replace(opts, snapshot_entries=rng.choice((200, 1_000)))
    if FaultKind.DISK in enabled:
        opts = replace(
            opts,
            disk=DiskLatency(
                base_us=rng.choice((100, 1_000, 5_000)),
                mean_extra_us=rng.choice((300, 3_000, 20_000)),
                slow=rng.choice((0.01, 0.05)),
                slow_us=rng.choice((40_000, 300_000)),
            ),
        )
    # Drawn last, so that adding them left every other option of a seed as it was.
    opts = replace(opts, wal_segment_bytes=rng.choice((16 << 10, 64 << 10, 256 << 10)))
    opts = replace(opts, kafka=rng.random() < 0.4)
    # Without pre-vote, a node being added (a voter of every group from its first start)
    # campaigns in groups that have not taken it in yet and can keep them from electing
    # anyone: membership changes need pre-vote (the default; see the README's limits).
    pre_vote = rng.random() < 0.8 or FaultKind.MEMBERSHIP in enabled
    opts = replace(opts, pre_vote=pre_vote)
    opts = replace(opts, bank=rng.random() < 0.3)
    opts = replace(opts, list_append=rng.random() < 0.3)
    return replace(
        opts,
        kafka=opts.kafka or "kafka" in workloads,
        bank=opts.bank or "bank" in workloads,
        list_append=opts.list_append or "list-append" in workloads,
    )


# `--workload` names (each forces its option on).
WORKLOADS = ("kafka", "bank", "list-append")


def parse_workloads(names: tuple[str, ...]) -> frozenset[str]:
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workload {unknown[0]!r} (known: {', '.join(WORKLOADS)})")
    return frozenset(names)
