"""`quorumdb up` when a node cannot start: an error line, a non-zero exit, no processes left."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import free_base_port
from tests.nemesis.sockets import processes_using


def test_a_node_that_cannot_bind_fails_up_and_the_started_nodes_are_stopped(
    tmp_path: Path,
) -> None:
    base, reservation = free_base_port()
    cluster_dir = str(tmp_path / "c")
    argv = [sys.executable, "-m", "quorumdb.cli.main", "up", "--nodes", "3"]
    with reservation, socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + 2))  # node 2's HTTP port
        squatter.listen()
        done = subprocess.run(
            [*argv, "--base-port", str(base), "--dir", cluster_dir],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "node 2" in done.stderr and "stopped the nodes that had started" in done.stderr
    assert (tmp_path / "c" / "n1").is_dir(), "node 1 was started"
    assert processes_using(cluster_dir) == []
