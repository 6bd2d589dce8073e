"""Transaction benchmark: interactive 4-operation transactions on a 3-node cluster (fsync on).

Each transaction reads two accounts and writes both back (get a, get b, put a, put b: a
transfer), as two HTTP requests (begin with the two reads; the two writes with the commit:
the client sends the transaction's steps with its begin and its commit) from one of
32 concurrent asyncio clients, for a fixed time per cell. Cells: isolation level (read
committed, snapshot, serializable) x keys on one shard (one-phase commit) or on two shards
(two-phase commit, with a replicated transaction record) x uniform or zipfian (s = 1.1)
choice over 1,000 keys. A serialization failure is counted as an abort and not retried
(so the abort rate is the conflict rate the level causes). Columns: committed transactions
per second, abort rate, and p50 / p99 latency of the committed ones.

    python bench/txn_bench.py            # ~1.5 minutes
    python bench/txn_bench.py --quick    # ~40 s

Numbers on a shared 2-core machine move with whatever else runs there: compare cells of
the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import random
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import crc32c

from quorumdb.cli.local_cluster import LocalCluster, start_cluster, stop_cluster, wait_ready
from quorumdb.kv.client import AsyncClient, RetryPolicy, SerializationFailureError

SHARDS = 4
KEYS = 1_000
CLIENTS = 32
LEVELS = ("read_committed", "snapshot", "serializable")


def _free_base() -> int:
    for base in range(21000, 60000, 100):
        ok = True
        for port in (base + 1, base + 2, base + 3, base + 101, base + 102, base + 103):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise SystemExit("no free ports")


def _pools() -> dict[int, list[str]]:
    """KEYS keys per shard (a key's shard is the node's `crc32c % shards + 1`)."""
    pools: dict[int, list[str]] = {g: [] for g in range(1, SHARDS + 1)}
    for i in itertools.count():
        key = f"acct/{i}"
        pool = pools[crc32c.crc32c(key.encode()) % SHARDS + 1]
        if len(pool) < KEYS:
            pool.append(key)
        if all(len(p) == KEYS for p in pools.values()):
            return pools


class _Chooser:
    def __init__(self, zipf: bool, rng: random.Random) -> None:
        weights = [1 / (i + 1) ** 1.1 if zipf else 1.0 for i in range(KEYS)]
        self.cum = list(itertools.accumulate(weights))
        self.rng = rng

    def index(self) -> int:
        return bisect.bisect_left(self.cum, self.rng.random() * self.cum[-1])


async def _worker(  # noqa: PLR0917
    url: str,
    level: str,
    pools: dict[int, list[str]],
    cross: bool,
    zipf: bool,
    stop_at: float,
    seed: int,
    out: dict[str, list[float]],
) -> None:
    rng = random.Random(seed)
    chooser = _Chooser(zipf, rng)
    retry = RetryPolicy(attempts_max=20, backoff_min_s=0.01, backoff_max_s=0.2)
    async with AsyncClient([url], retry=retry, timeout_s=10.0, seed=seed) as client:
        while time.monotonic() < stop_at:
            g1 = rng.randrange(1, SHARDS + 1)
            g2 = (g1 % SHARDS) + 1 if cross else g1
            a = pools[g1][chooser.index()]
            b = pools[g2][chooser.index()]
            if a == b:
                continue
            started = time.perf_counter()
            try:
                tx = await client.begin(level, ["get", a], ["get", b])
                va, vb = tx.results
                await tx.commit(
                    ["put", a, str(int(va or 0) - 1)], ["put", b, str(int(vb or 0) + 1)]
                )
            except SerializationFailureError:
                out["aborts"].append(1)
                continue
            out["latency"].append(time.perf_counter() - started)


async def _cell(  # noqa: PLR0917
    cluster: LocalCluster, level: str, cross: bool, zipf: bool, duration: float, warmup: float
) -> tuple[float, float, float, float]:
    pools = _pools()
    urls = [m.http_url for _, m in sorted(cluster.nodes.items())]
    warm: dict[str, list[float]] = {"latency": [], "aborts": []}
    out: dict[str, list[float]] = {"latency": [], "aborts": []}
    t0 = time.monotonic()
    await asyncio.gather(
        *(
            _worker(urls[i % len(urls)], level, pools, cross, zipf, t0 + warmup, i, warm)
            for i in range(CLIENTS)
        )
    )
    t1 = time.monotonic()
    await asyncio.gather(
        *(
            _worker(urls[i % len(urls)], level, pools, cross, zipf, t1 + duration, 100 + i, out)
            for i in range(CLIENTS)
        )
    )
    elapsed = time.monotonic() - t1
    lat = sorted(out["latency"])
    committed = len(lat)
    aborted = len(out["aborts"])
    rate = committed / elapsed
    abort_rate = aborted / max(1, committed + aborted)
    p50 = lat[len(lat) // 2] * 1000 if lat else float("nan")
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
    return rate, abort_rate, p50, p99


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="shorter cells (~40 s)")
    ap.add_argument("--levels", default=",".join(LEVELS), help="comma-separated levels")
    a = ap.parse_args()
    duration, warmup = (1.5, 0.5) if a.quick else (4.0, 1.0)
    root = Path(tempfile.mkdtemp(prefix="txn-bench-"))
    cluster = start_cluster(root, nodes=3, base_port=_free_base(), shards=SHARDS, fsync=True)
    try:
        wait_ready(cluster)
        print(f"{CLIENTS} clients, 4-operation transactions, {SHARDS} shards, fsync on")
        print(
            f"{'isolation':<15} {'shards':<7} {'keys':<8} {'commits/s':>10} {'aborts':>7} "
            f"{'p50 ms':>8} {'p99 ms':>8}"
        )
        for level in a.levels.split(","):
            for cross in (False, True):
                for zipf in (False, True):
                    rate, aborts, p50, p99 = asyncio.run(
                        _cell(cluster, level, cross, zipf, duration, warmup)
                    )
                    print(
                        f"{level:<15} {'2 (2PC)' if cross else '1 (1PC)':<7} "
                        f"{'zipfian' if zipf else 'uniform':<8} {rate:>10.0f} {aborts:>7.1%} "
                        f"{p50:>8.1f} {p99:>8.1f}",
                        flush=True,
                    )
    finally:
        stop_cluster(root)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
