"""Real node processes on loopback for end-to-end tests: start, kill -9, restart, poll.

Each cluster gets its own directory and a random free port range, so tests can run in
parallel. A range is reserved (a lock file) for the cluster's life: a node killed with -9
leaves its ports free, and a cluster of another test process must not take them (its
nodes would answer our clients, or keep ours from restarting). Waiting is always a bounded
poll of a condition that names what it waits for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from quorumdb.cli.local_cluster import (
    LocalCluster,
    load_cluster,
    node_environment,
    start_node,
    stop_cluster,
    write_state,
)
from quorumdb.cli.port_range import reserve_base_port
from quorumdb.errors import QuorumError

QUORUMDB = str(Path(sys.executable).parent / "quorumdb")
_UP_ATTEMPTS = 5


def free_base_port(nodes: int = 5) -> tuple[int, IO[bytes]]:
    """A base port whose ranges are free now, and its reservation (close it to release)."""
    return reserve_base_port(nodes)


def run_cli(
    *args: str, timeout_s: float = 120.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `quorumdb` with `env` added to this process's environment."""
    return subprocess.run(
        [QUORUMDB, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


def wait_for(cond: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if cond():
                return
        except (OSError, urllib.error.URLError, ValueError, KeyError, QuorumError) as exc:
            last = repr(exc)
        else:
            last = "condition false"
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} ({last})")
        time.sleep(0.05)


def get_json(url: str, timeout_s: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read())


class Cluster:
    """A local cluster started through the real CLI (`quorumdb up`)."""

    def __init__(
        self,
        root: Path,
        *,
        nodes: int = 3,
        shards: int = 2,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        """`env`: `QUORUMDB_<KEY>` node settings (`host.config.node_config_from`) given to
        every node process, also on restart."""
        self.dir = root / "cluster"
        self.env = dict(env or {})
        self._port_lock: IO[bytes] | None = None
        for _ in range(_UP_ATTEMPTS):
            self.base_port, self._port_lock = free_base_port()
            proc = run_cli(
                "up",
                "--dir",
                str(self.dir),
                "--nodes",
                str(nodes),
                "--shards",
                str(shards),
                "--base-port",
                str(self.base_port),
                *extra,
                env=self.env,
            )
            if proc.returncode == 0:
                return
            self.stop()  # the nodes that did start
            # Another cluster (a parallel test, another checkout's tests) may bind a port
            # between free_base_port's check and our node's bind: start over elsewhere.
            if "address already in use" not in proc.stdout + proc.stderr:
                break
            shutil.rmtree(self.dir, ignore_errors=True)
        raise AssertionError(f"quorumdb up failed: {proc.stdout}\n{proc.stderr}")

    @property
    def state(self) -> LocalCluster:
        return load_cluster(self.dir)

    def url(self, node_id: int) -> str:
        return self.state.nodes[node_id].http_url

    @property
    def urls(self) -> list[str]:
        return self.state.http_urls

    def status(self, node_id: int) -> dict[str, Any]:
        st: dict[str, Any] = get_json(self.url(node_id) + "/v1/cluster")
        return st

    def leaders(self, via: int) -> dict[int, int]:
        return {g["group"]: g["leader"] for g in self.status(via)["groups"]}

    def busiest_leader(self) -> int:
        for node_id in sorted(self.state.nodes):
            try:
                counts: dict[int, int] = {}
                for lead in self.leaders(node_id).values():
                    counts[lead] = counts.get(lead, 0) + 1
                return max(counts, key=lambda n: (counts[n], -n))
            except (OSError, urllib.error.URLError):
                continue
        raise AssertionError("no node answered /v1/cluster")

    def kill9(self, node_id: int) -> None:
        pid = self.state.pids[node_id]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), f"node {node_id} (pid {pid}) to die")

    def start(self, node_id: int, env: dict[str, str] | None = None) -> int:
        """Start a stopped node's process (with `env` added to the cluster's); its pid."""
        with node_environment({**self.env, **(env or {})}):
            pid = start_node(self.dir, node_id)
        state = self.state
        pids = {**state.pids, node_id: pid}
        write_state(dataclasses.replace(state, pids=pids))
        return pid

    def restart(self, node_id: int) -> None:
        self.start(node_id)
        wait_for(
            lambda: get_json(self.url(node_id) + "/v1/health")["status"] == "ok",
            f"node {node_id} up",
        )

    def wait_exit(self, node_id: int, timeout_s: float = 60.0) -> int:
        """Wait for a node process started by this test process to exit; its exit status.
        Call it before spawning any other subprocess: `subprocess` reaps abandoned children
        then, and their status is lost."""
        pid = self.state.pids[node_id]
        status: list[int] = []

        def exited() -> bool:
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                status.append(os.waitstatus_to_exitcode(raw))
            return bool(status)

        wait_for(exited, f"node {node_id} (pid {pid}) to exit", timeout_s)
        return status[0]

    def alive_nodes(self) -> set[int]:
        """Ids of the nodes whose process is running."""
        return {i for i, p in self.state.pids.items() if _alive(p)}

    def wait_all_leaders(self, via: int, timeout_s: float = 30.0) -> None:
        alive = self.alive_nodes()
        wait_for(
            lambda: all(lead in alive for lead in self.leaders(via).values()),
            f"every group to have a live leader (seen from node {via})",
            timeout_s,
        )

    def data_dir(self, node_id: int) -> Path:
        return self.dir / f"n{node_id}" / "data"

    def log(self, node_id: int) -> str:
        return (self.dir / f"n{node_id}" / "node.log").read_text(errors="replace")

    def stop(self) -> None:
        try:
            stop_cluster(self.dir, grace_s=5.0)
        except Exception:
            # Best effort in teardown: whatever went wrong, leave no process behind.
            with contextlib.suppress(Exception):
                for pid in self.state.pids.values():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        if self._port_lock is not None:
            self._port_lock.close()
            self._port_lock = None


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
