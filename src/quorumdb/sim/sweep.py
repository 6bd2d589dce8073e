"""Running many seeds: seed-range parsing, a picklable per-seed job, failure artifacts.

A failing seed is re-run with its trace kept (the run is deterministic, so the replay is the
same run) and written to `<out>/seed-<N>/`: `trace.txt`, `history.json` (Jepsen format, for
`quorumdb check linearizable`), in list-append seeds `elle-history.json` (for `quorumdb check
elle --model list-append --isolation serializable`), and `violations.txt`, which also names
the replay command.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from quorumdb.raft import PlantedBug
from quorumdb.sim.options import ALL_FAULTS, FaultKind, swarm_options
from quorumdb.sim.simulator import SimResult, run

__all__ = [
    "SeedOutcome",
    "parse_bugs",
    "parse_faults",
    "parse_seeds",
    "replay_command",
    "run_seed",
    "write_failure",
]

SEEDS_MAX = 10_000_000


def parse_seeds(spec: str) -> list[int]:
    """`"1-1000"`, `"7"`, `"1-5,9,20-22"` → sorted unique seeds. Raises ValueError."""
    seeds: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty item in seed list {spec!r}")
        lo_s, sep, hi_s = part.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if sep else lo
        except ValueError:
            raise ValueError(f"bad seed range {part!r} (expected N or N-M)") from None
        if lo < 0 or hi < lo:
            raise ValueError(f"bad seed range {part!r} (need 0 <= N <= M)")
        if hi - lo + len(seeds) >= SEEDS_MAX:
            raise ValueError(f"too many seeds in {spec!r} (at most {SEEDS_MAX})")
        seeds.update(range(lo, hi + 1))
    return sorted(seeds)


def parse_faults(spec: str | None) -> frozenset[FaultKind]:
    """Comma-separated fault kinds (`all` or omitted: every kind; `none`: no faults)."""
    if spec is None or spec.strip() == "all":
        return ALL_FAULTS
    if spec.strip() == "none":
        return frozenset()
    out: set[FaultKind] = set()
    known = ", ".join(sorted(f.value for f in FaultKind))
    for name in spec.split(","):
        try:
            out.add(FaultKind(name.strip()))
        except ValueError:
            raise ValueError(f"unknown fault {name.strip()!r} (known: {known})") from None
    return frozenset(out)


def parse_bugs(names: tuple[str, ...]) -> frozenset[PlantedBug]:
    out: set[PlantedBug] = set()
    known = ", ".join(sorted(b.value for b in PlantedBug))
    for name in names:
        try:
            out.add(PlantedBug(name))
        except ValueError:
            raise ValueError(f"unknown planted bug {name!r} (known: {known})") from None
    return frozenset(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedOutcome:
    """What a sweep keeps of one run (small, picklable)."""

    seed: int
    ok: bool
    caught_by: tuple[str, ...]
    first_violation: str
    digest: str
    stats: dict[str, int]
    options: str


def run_seed(
    seed: int,
    faults: frozenset[FaultKind],
    bugs: frozenset[PlantedBug],
    workloads: frozenset[str] = frozenset(),
) -> SeedOutcome:
    """Run one swarm seed (a top-level function, so process pools can call it)."""
    r = run(swarm_options(seed, allowed=faults, planted_bugs=bugs, workloads=workloads))
    return SeedOutcome(
        seed=seed,
        ok=r.ok,
        caught_by=tuple(r.caught_by),
        first_violation=r.violations[0] if r.violations else "",
        digest=r.trace_digest,
        stats=r.stats,
        options=r.options.describe(),
    )


def replay_command(
    seed: int,
    faults: frozenset[FaultKind],
    bugs: frozenset[PlantedBug],
    workloads: frozenset[str] = frozenset(),
) -> str:
    cmd = f"quorumdb sim run --seed {seed}"
    if faults != ALL_FAULTS:
        cmd += " --faults " + (",".join(sorted(f.value for f in faults)) or "none")
    for b in sorted(bugs, key=lambda b: b.value):
        cmd += f" --bug {b.value}"
    for w in sorted(workloads):
        cmd += f" --workload {w}"
    return cmd


def write_failure(result: SimResult, out_dir: Path, replay: str) -> Path:
    """Write the artifacts of a failed run (re-run with `keep_trace=True`); return the folder."""
    folder = out_dir / f"seed-{result.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "history.json").write_text(json.dumps(result.history, indent=0) + "\n")
    if result.elle_history:
        elle = "".join(json.dumps(e) + "\n" for e in result.elle_history)  # JSON lines
        (folder / "elle-history.json").write_text(elle)
    lines = result.trace_lines or []
    (folder / "trace.txt").write_text("\n".join(lines) + "\n")
    summary = [
        f"seed: {result.seed}",
        f"options: {result.options.describe()}",
        f"trace digest: {result.trace_digest}",
        f"caught by: {', '.join(result.caught_by)}",
        f"replay: {replay}",
        "",
        *result.violations,
    ]
    (folder / "violations.txt").write_text("\n".join(summary) + "\n")
    return folder
