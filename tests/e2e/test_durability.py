"""Restarts from disk: a full cluster restart keeps every acknowledged write; a node that was
down catches up by log or by snapshot; a torn WAL tail recovers; mid-file corruption refuses
to start, naming the file and the offset."""

from __future__ import annotations

from pathlib import Path

from quorumdb.kv.client import Client, RetryPolicy
from quorumdb.storage.records import RecordType, encode_record, scan_records
from tests.e2e.harness import Cluster, get_json, run_cli, wait_for

RETRY = RetryPolicy(attempts_max=40, backoff_min_s=0.01, backoff_max_s=0.25)


def _client(cluster: Cluster, nodes: list[int] | None = None) -> Client:
    ids = nodes or sorted(cluster.state.nodes)
    return Client([cluster.url(i) for i in ids], retry=RETRY, timeout_s=3.0, seed=7)


def test_full_cluster_restart_keeps_every_acknowledged_write(cluster: Cluster) -> None:
    c = _client(cluster)
    acked = {f"key-{i}": f"value-{i}" for i in range(150)}
    for k, v in acked.items():
        assert c.put(k, v) is not None
    for node_id in sorted(cluster.state.nodes):
        cluster.kill9(node_id)
    for node_id in sorted(cluster.state.nodes):
        cluster.restart(node_id)
    cluster.wait_all_leaders(1)
    c = _client(cluster)
    for k, v in acked.items():
        got = c.get(k)
        assert got is not None and got[0] == v, (k, got)


def _last_segment(data_dir: Path) -> Path:
    segments = sorted((data_dir / "wal").glob("*.seg"))
    assert segments, f"no WAL segment in {data_dir}"
    return segments[-1]


def test_lagging_node_catches_up_by_snapshot_and_by_log(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, extra=("--snapshot-entries", "50"))
    try:
        c = _client(cluster, [1, 2])
        c.put("before", "1")
        cluster.kill9(3)
        for i in range(300):  # several snapshots' worth: node 3 needs one
            c.put(f"while-down-{i}", str(i))
        # Restart the others too, so that no appends queued for node 3 survive in their
        # transports: what node 3 lacks is now only in their (compacted) logs.
        for node_id in (1, 2):
            cluster.kill9(node_id)
        for node_id in (1, 2, 3):
            cluster.restart(node_id)

        def caught_up() -> bool:
            got = Client([cluster.url(3)], retry=RETRY, seed=1).get(
                "while-down-299", consistency="stale"
            )
            return got is not None and got[0] == "299"

        wait_for(caught_up, "node 3 to apply everything (stale read on node 3)")
        status = cluster.status(3)
        assert all(g["applied"] >= g["commit"] - 1 for g in status["groups"])
        metrics = Client([cluster.url(3)], retry=RETRY).cluster()
        assert metrics["node_id"] == 3
        # Some group reached node 3 by snapshot (its log was compacted on the others).
        text = _metrics(cluster, 3)
        installed = sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("quorumdb_raft_snapshots_installed_total")
        )
        assert installed >= 1, "node 3 caught up without any snapshot"
        # ...and later writes reach it by log.
        c.put("after", "2")
        wait_for(
            lambda: (
                Client([cluster.url(3)], retry=RETRY).get("after", consistency="stale") is not None
            ),
            "node 3 to receive a write by log",
        )
    finally:
        cluster.stop()


def _metrics(cluster: Cluster, node_id: int) -> str:
    import urllib.request

    with urllib.request.urlopen(cluster.url(node_id) + "/metrics", timeout=2) as resp:
        return resp.read().decode()


def test_torn_wal_tail_is_truncated_and_the_node_recovers(cluster: Cluster) -> None:
    c = _client(cluster)
    for i in range(20):
        c.put(f"t{i}", str(i))
    cluster.kill9(2)
    seg = _last_segment(cluster.data_dir(2))
    data = seg.read_bytes()
    _, end = scan_records(data, str(seg), final=True)
    torn = encode_record(RecordType.ENTRIES, b"x" * 200)[:90]  # a write cut short by the crash
    with seg.open("r+b") as f:
        f.seek(end)
        f.write(torn)
    cluster.restart(2)
    wait_for(
        lambda: Client([cluster.url(2)], retry=RETRY).get("t19", consistency="stale") is not None,
        "node 2 to serve after recovering from a torn tail",
    )


def test_mid_file_corruption_refuses_to_start_naming_file_and_offset(cluster: Cluster) -> None:
    c = _client(cluster)
    for i in range(20):
        c.put(f"c{i}", str(i))
    cluster.kill9(3)
    seg = _last_segment(cluster.data_dir(3))
    data = bytearray(seg.read_bytes())
    records, _ = scan_records(data, str(seg), final=True)
    assert len(records) >= 3
    victim_offset = records[1][0]
    data[victim_offset + 20] ^= 0x40  # inside an early record; valid records follow it
    seg.write_bytes(bytes(data))
    proc = run_cli("node", "--config", str(cluster.dir / "n3" / "node.toml"), timeout_s=30)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("quorumdb: error:")]
    assert len(lines) == 1, proc.stderr
    assert str(seg.name) in lines[0] and f"offset {victim_offset}" in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    # The other two still serve everything.
    for i in range(20):
        got = _client(cluster, [1, 2]).get(f"c{i}")
        assert got is not None and got[0] == str(i)


def test_health_endpoint(cluster: Cluster) -> None:
    health = get_json(cluster.url(1) + "/v1/health")
    assert health["status"] == "ok" and health["driver_running"] is True, health
    assert health["rounds"] > 0 and health["groups"] == 3, health
    assert {"last_round_age_s", "groups_without_leader"} <= health.keys(), health
