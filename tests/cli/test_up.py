"""`quorumdb up` when a node cannot start: an error line, a non-zero exit, no processes left."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import free_base_port


def _processes_using(path: str) -> list[int]:
    """Live (non-zombie) processes whose command line mentions `path`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if path in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


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
    assert _processes_using(cluster_dir) == []
