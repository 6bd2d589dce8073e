"""A node whose driver fails exits (fail-stop) instead of listening on while nothing is
replicated: a non-zero status, one line naming the cause, its listeners gone; the other two
nodes keep serving, and `quorumdb status` shows it down."""

from __future__ import annotations

import socket

from quorumdb.cli.cluster_cmd import node_reports
from quorumdb.kv.client import Client, RetryPolicy
from quorumdb.runtime.node_main import EXIT_FAILED
from tests.e2e.harness import Cluster, run_cli


def _refuses(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=2.0).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_node_whose_driver_fails_exits_and_the_others_keep_serving(cluster: Cluster) -> None:
    cluster.kill9(3)
    cluster.start(3, env={"QUORUMDB_INJECT_DRIVER_FAILURE": "1"})
    assert cluster.wait_exit(3) == EXIT_FAILED

    log = cluster.log(3)
    reason = "quorumdb: error: node 3 stopped: InjectedFailureError: injected driver failure"
    assert reason in log, log[-3000:]
    assert log.count("Traceback") == 1, log[-3000:]
    member = cluster.state.nodes[3]
    assert member.kafka is not None
    assert _refuses(member.http) and _refuses(member.kafka), "a listener outlived the node"

    cluster.wait_all_leaders(via=1)
    client = Client([cluster.url(1), cluster.url(2)], retry=RetryPolicy(attempts_max=20), seed=3)
    revisions = {f"after-{i}": client.put(f"after-{i}", f"v{i}") for i in range(20)}
    for key, rev in revisions.items():
        assert client.get(key) == (f"v{key.removeprefix('after-')}", rev)

    reports = {r.node: r for r in node_reports(cluster.dir, None)}
    assert reports["3"].status is None and "exited" in (reports["3"].down or ""), reports["3"]
    assert all(reports[n].status is not None for n in ("1", "2")), reports
    shown = run_cli("status", "--dir", str(cluster.dir))
    assert shown.returncode == 0, shown.stderr
    assert "down" in shown.stdout, shown.stdout
