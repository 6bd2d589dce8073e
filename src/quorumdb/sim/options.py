"""What a simulation run does: cluster shape, fault mix and workload, all drawn from one seed.

Swarm testing (TigerBeetle's VOPR, Groce et al. 2012): instead of every run enabling every fault
at a fixed rate, each seed enables a random subset of fault kinds with random intensities, so
some runs are a gentle storm of one fault and others a mix, and rare interleavings surface.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from enum import Enum

from quorumdb.raft import PlantedBug, ReadOnlyOption

__all__ = ["FaultKind", "SimOptions", "swarm_options"]

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
    CLOCK = "clock"  # per-node clock drift (tick rates differ)
    TRANSFER = "transfer"  # ask the leader to hand leadership to another node
    SNAPSHOT = "snapshot"  # compact aggressively so followers need snapshots


ALL_FAULTS: frozenset[FaultKind] = frozenset(FaultKind)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimOptions:
    """Every knob of one run. `swarm_options(seed)` fills it from the seed."""

    seed: int
    nodes: int = 3
    faults: frozenset[FaultKind] = ALL_FAULTS
    fault_phase_us: int = 8 * US_PER_S
    liveness_budget_us: int = 10 * US_PER_S
    tick_us: int = 10 * US_PER_MS
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    pre_vote: bool = True
    check_quorum: bool = True
    read_only: ReadOnlyOption = ReadOnlyOption.SAFE
    max_size_per_msg: int = 1 << 16
    max_inflight_msgs: int = 64
    snapshot_every: int = 400  # applied entries between local snapshots
    snapshot_keep: int = 50  # entries kept behind a snapshot for slow followers
    snapshot_chunk_bytes: int = 1 << 16
    wal_segment_bytes_max: int = 64 << 10  # small, so that segments rotate and get deleted
    latency_min_us: int = 200
    latency_mean_us: int = 1_000
    fifo_links: bool = True
    loss: float = 0.0
    duplicate: float = 0.0
    fsync_us_min: int = 100
    fsync_us_max: int = 2_000
    drift_max: float = 0.0  # largest |rate - 1| of a node clock
    clock_offset_max_us: int = 0  # largest |wall clock offset| of a node
    nemesis_interval_us: int = 400 * US_PER_MS  # mean time between nemesis actions
    hunt_leader: bool = False  # every partition, crash and pause targets the current leader
    crash_in_sync: float = 0.0  # P(crash during the fsync of a vote/term change or entries)
    crash_after_commit: float = 0.0  # P(leader crashes right after its commit index advances)
    clients: int = 4
    keys: int = 3
    client_timeout_us: int = 300 * US_PER_MS
    think_us: int = 5 * US_PER_MS
    follower_read_ratio: float = 0.3
    planted_bugs: frozenset[PlantedBug] = field(default_factory=frozenset)

    def describe(self) -> str:
        faults = ",".join(sorted(f.value for f in self.faults)) or "none"
        s = (
            f"nodes={self.nodes} faults={faults} loss={self.loss:.2f} dup={self.duplicate:.2f} "
            f"fifo={self.fifo_links} read={self.read_only.name.lower()} pre_vote={self.pre_vote} "
            f"snapshot_every={self.snapshot_every} segment={self.wal_segment_bytes_max} "
            f"drift={self.drift_max:.3f}"
        )
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
) -> SimOptions:
    """Draw a fault mix and intensities from `seed` (restricted to `allowed`)."""
    rng = random.Random(f"swarm-{seed}")
    kinds = sorted(allowed, key=lambda f: f.value)
    enabled = frozenset(f for f in kinds if rng.random() < 0.6)
    opts = SimOptions(
        seed=seed,
        nodes=rng.choice((3, 3, 5)),
        faults=enabled,
        pre_vote=rng.random() < 0.8,
        read_only=ReadOnlyOption.LEASE_BASED if rng.random() < 0.3 else ReadOnlyOption.SAFE,
        max_size_per_msg=rng.choice((64, 512, 1 << 16)),
        max_inflight_msgs=rng.choice((1, 4, 64)),
        latency_min_us=rng.choice((50, 200, 1_000)),
        latency_mean_us=rng.choice((200, 1_000, 5_000, 20_000)),
        fsync_us_max=rng.choice((500, 2_000, 10_000)),
        clients=rng.choice((2, 4, 6)),
        keys=rng.choice((1, 3, 5)),
        follower_read_ratio=rng.choice((0.0, 0.3, 0.6)),
        nemesis_interval_us=rng.choice((150, 400, 1_000)) * US_PER_MS,
        hunt_leader=rng.random() < 0.3,
        planted_bugs=planted_bugs,
    )
    if PlantedBug.LEASE_WITHOUT_QUORUM in planted_bugs:
        # The bug lives in lease reads: a run without them could not show it.
        opts = replace(opts, read_only=ReadOnlyOption.LEASE_BASED)
    if FaultKind.LOSS in enabled:
        opts = replace(opts, loss=rng.choice((0.01, 0.05, 0.2)))
    if FaultKind.DUPLICATE in enabled:
        opts = replace(opts, duplicate=rng.choice((0.01, 0.05, 0.2)))
    if FaultKind.REORDER in enabled:
        opts = replace(opts, fifo_links=False, latency_mean_us=rng.choice((2_000, 20_000)))
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
            crash_in_sync=rng.choice((0.0, 0.02, 0.1)),
            crash_after_commit=rng.choice((0.0, 0.01, 0.05, 0.2)),
        )
    if FaultKind.SNAPSHOT in enabled:
        opts = replace(
            opts,
            snapshot_every=rng.choice((10, 30, 100)),
            snapshot_keep=rng.choice((0, 5)),
            snapshot_chunk_bytes=rng.choice((16, 128, 1024)),
        )
    # Drawn last, so that adding it left every other option of a seed as it was.
    return replace(opts, wal_segment_bytes_max=rng.choice((4 << 10, 32 << 10, 256 << 10)))
