"""Three NodeHosts in one event loop over real loopback TCP and HTTP (storage in memory)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from quorumdb.host.config import Member, NodeConfig
from quorumdb.host.node_host import NodeHost
from quorumdb.kv.client import AsyncClient, RetryPolicy
from tests.host.memory_log import MemoryNodeLog


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _configs(tmp: Path, n: int = 3) -> list[NodeConfig]:
    ports = _free_ports(2 * n)
    members = {
        i: Member(
            node_id=i, raft=("127.0.0.1", ports[2 * (i - 1)]), http=("127.0.0.1", ports[2 * i - 1])
        )
        for i in range(1, n + 1)
    }
    return [
        NodeConfig(node_id=i, data_dir=tmp / f"n{i}", members=members, shards=2, tick_ms=5)
        for i in members
    ]


async def _wait_for(cond, what: str, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_three_hosts_elect_replicate_and_serve(tmp_path: Path) -> None:
    async def main() -> None:
        cfgs = _configs(tmp_path)
        hosts = [NodeHost(c, MemoryNodeLog()) for c in cfgs]
        for h in hosts:
            await h.start()
        try:
            await _wait_for(
                lambda: all(any(h.groups[g].raw.is_leader for h in hosts) for g in hosts[0].groups),
                "a leader in every group",
            )
            urls = [c.me.http_url for c in cfgs]
            async with AsyncClient(urls, retry=RetryPolicy(attempts_max=20), seed=1) as c:
                revs = {}
                for i in range(50):
                    revs[f"k{i}"] = await c.put(f"k{i}", f"v{i}")
                for i in range(50):
                    assert await c.get(f"k{i}") == (f"v{i}", revs[f"k{i}"])
                items = await c.scan(limit=100)
                assert [k for k, _, _ in items] == sorted(f"k{i}" for i in range(50))
                status = await c.cluster()
                assert len(status["groups"]) == 3
            # Every replica applied every write (stale reads on each node see them).
            await _wait_for(
                lambda: all(
                    sum(len(g.sm) for gid, g in h.groups.items() if gid) == 50 for h in hosts
                ),
                "all replicas to apply",
            )
            text = hosts[0].metrics_text()
            assert "quorumdb_raft_commit_index" in text
            assert "quorumdb_wal_fsync_seconds_count" in text
        finally:
            for h in hosts:
                await h.stop()

    asyncio.run(main())


def test_a_restarted_host_applies_its_committed_log_before_serving(tmp_path: Path) -> None:
    """Regression: `start()` opened the HTTP (and so the Kafka) listener before the first
    driver round replayed the local log, so a restarted node answered from its snapshot's
    state; a Kafka client was told a long-existing topic was unknown. The node restarts
    alone, so no leader can tell it anything: only its own hard state's commit index."""

    async def main() -> None:
        cfgs = _configs(tmp_path)
        logs = [MemoryNodeLog() for _ in cfgs]
        hosts = [NodeHost(c, node_log) for c, node_log in zip(cfgs, logs, strict=True)]
        for h in hosts:
            await h.start()
        try:
            await _wait_for(
                lambda: all(any(h.groups[g].raw.is_leader for h in hosts) for g in hosts[0].groups),
                "a leader in every group",
            )
            urls = [c.me.http_url for c in cfgs]
            async with AsyncClient(urls, retry=RetryPolicy(attempts_max=20), seed=1) as c:
                for i in range(30):
                    await c.put(f"k{i}", f"v{i}")
            await _wait_for(
                lambda: sum(len(g.sm) for gid, g in hosts[0].groups.items() if gid) == 30,
                "node 1 to apply every write",
            )
        finally:
            for h in hosts:
                await h.stop()
        commits = {gid: g.mem.hard_state.commit for gid, g in logs[0].groups.items()}
        assert all(commits.values()), commits

        restarted = NodeHost(cfgs[0], logs[0])
        await restarted.start()
        try:
            applied = {gid: g.sm.applied for gid, g in restarted.groups.items()}
            assert all(applied[gid] >= commit for gid, commit in commits.items()), (
                applied,
                commits,
            )
            assert sum(len(g.sm) for gid, g in restarted.groups.items() if gid) == 30
        finally:
            await restarted.stop()

    asyncio.run(main())
