"""Clock and disk faults on real node processes (`QUORUMDB_FAULT_CONTROL`, TEST ONLY).

A node whose fsyncs start failing stops (fail-stop, never retrying the fsync) with a line
naming the file, and, restarted without the fault, serves every write acknowledged before;
a short `quorumdb test` run under clock and disk faults is linearizable, its faults are in
`faults.jsonl`, and no node is left running after it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from quorumdb.kv.client import Client, RetryPolicy
from quorumdb.nemesis.node_faults import NodeFaults
from quorumdb.nemesis.run import RunOptions, run_test
from quorumdb.nemesis.schedule import Fault, Nemesis, plan
from quorumdb.runtime.node_main import EXIT_FAILED
from tests.e2e.harness import Cluster, get_json, wait_for
from tests.nemesis.sockets import processes_using

_SEED = 156  # stall, offset, full and fail, on nodes 2 and 3 (see the first assertion)


def test_a_node_whose_fsyncs_fail_stops_naming_the_file(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = NodeFaults(cluster.dir)
    for name, value in faults.node_env().items():
        monkeypatch.setenv(name, value)  # node 3 from now on, restarted by `faults` too
    cluster.kill9(3)
    cluster.start(3)
    wait_for(lambda: get_json(cluster.url(3) + "/v1/health")["status"] == "ok", "node 3 up")
    assert "TEST ONLY" in cluster.log(3)

    client = Client([cluster.url(1), cluster.url(2)], retry=RetryPolicy(attempts_max=20), seed=5)
    acked = {f"before-{i}": client.put(f"before-{i}", f"v{i}") for i in range(10)}
    faults.start(Fault(0.0, Nemesis.DISK, "fail", (3,), 1.0), (3,))
    pid = cluster.state.pids[3]
    status: list[int] = []

    def stopped() -> bool:
        key = f"during-{len(acked)}"
        acked[key] = client.put(key, "v")  # node 3 follows: each write reaches its WAL
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            status.append(os.waitstatus_to_exitcode(raw))
        return bool(status)

    wait_for(stopped, "node 3 to stop on a failed fsync")
    assert status == [EXIT_FAILED]
    log = cluster.log(3)
    data_dir = str(cluster.data_dir(3).resolve())
    line = re.search(r"quorumdb: error: node 3 stopped: DurableStateError: (\S+): (.*)", log)
    assert line is not None, log[-3000:]
    assert line[1].startswith(data_dir), line[0]
    assert "failed: Input/output error (injected)" in line[2], line[0]
    assert f"durable storage failed path={line[1]}" in log

    faults.stop(Fault(0.0, Nemesis.DISK, "fail", (3,), 1.0), (3,))  # clears it, restarts 3
    assert faults.restarted == [3]
    wait_for(lambda: get_json(cluster.url(3) + "/v1/health")["status"] == "ok", "node 3 back")
    acked["after"] = client.put("after", "v")
    local = Client([cluster.url(3)], retry=RetryPolicy(attempts_max=20), seed=6)

    def caught_up() -> bool:
        return all(
            (got := local.get(k, consistency="stale")) is not None and got[1] == rev
            for k, rev in acked.items()
        )

    wait_for(caught_up, "node 3 to hold every acknowledged write")
    for key, rev in acked.items():
        got = local.get(key)
        assert got is not None and got[1] == rev, (key, got, rev)


def test_a_register_run_under_clock_and_disk_faults_is_linearizable(tmp_path: Path) -> None:
    kinds = (Nemesis.CLOCK, Nemesis.DISK)
    planned = plan(_SEED, list(kinds), [1, 2, 3], 12.0)
    assert {f.variant for f in planned} == {"stall", "offset", "full", "fail"}, planned
    out = tmp_path / "run"
    result = run_test(RunOptions(out=out, nemesis=kinds, time_s=12.0, rate=60, seed=_SEED))
    assert result.valid, result.summary
    assert result.ops["ok"] > 50, result.ops
    faults = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines()]
    assert [(f["kind"], f["variant"]) for f in faults] == [
        (f.kind.value, f.variant) for f in planned
    ]
    logs = "".join(p.read_text(errors="replace") for p in (out / "cluster").glob("n*/node.log"))
    assert "TEST ONLY: faults now fsync_fail=True" in logs
    assert "failed: Input/output error (injected)" in logs
    assert not processes_using(out / "cluster"), "nodes left running after the run"
