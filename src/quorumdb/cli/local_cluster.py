"""A local cluster of node processes: layout on disk, start, health wait, stop.

`quorumdb up` writes one config per node under the cluster directory (default `.quorumdb/`),
starts each node as its own OS process (its own session, logs to `n<id>/node.log`), waits
until every node answers `/v1/health` and every group has a leader, and records the pids in
`cluster.json`. `quorumdb down` stops them (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorumdb.errors import UserError
from quorumdb.host.config import Member, NodeConfig, load_config, node_config_from, render_config

__all__ = [
    "Layout",
    "LocalCluster",
    "add_local_node",
    "alive",
    "forget_local_node",
    "fresh_dir",
    "load_cluster",
    "node_environment",
    "restart_node",
    "start_cluster",
    "start_node",
    "stop_cluster",
    "stop_if_stale",
    "wait_ready",
    "write_state",
]

_STATE = "cluster.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalCluster:
    dir: Path
    nodes: dict[int, Member]
    pids: dict[int, int]
    launch: dict[int, list[str]] = field(default_factory=dict)  # see `Layout.launch`

    @property
    def http_urls(self) -> list[str]:
        return [m.http_url for _, m in sorted(self.nodes.items())]


KAFKA_PORT_OFFSET = 2091  # base 7000 -> Kafka on 9092, 9093, ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """Where each node listens, how it sees its peers, and how its process is started.

    The default (`members` only) is every node on one host, dialling the others directly.
    `quorumdb test`'s network modes change it: a fault-injecting proxy per ordered pair gives
    node i a view in which peer j's Raft address is the proxy's port; a network namespace per
    node gives each its own address and a `launch` prefix (`ip netns exec NAME`). The prefix
    is kept in `cluster.json`, so a node restarted after kill -9 comes back the same way.
    """

    members: dict[int, Member]  # where each node really listens (clients use these)
    views: dict[int, dict[int, Member]] = field(default_factory=dict)  # node -> its members
    launch: dict[int, list[str]] = field(default_factory=dict)  # node -> command prefix

    def view(self, node_id: int) -> dict[int, Member]:
        return self.views.get(node_id, self.members)


def default_layout(nodes: int, base_port: int, host: str = "127.0.0.1") -> Layout:
    return Layout(members=_members(nodes, host, base_port))


def _members(n: int, host: str, base_port: int) -> dict[int, Member]:
    return {i: _member(i, host, base_port) for i in range(1, n + 1)}


def _member(i: int, host: str, base_port: int) -> Member:
    return Member(
        node_id=i,
        raft=(host, base_port + 100 + i),
        http=(host, base_port + i),
        kafka=(host, base_port + KAFKA_PORT_OFFSET + i),
    )


def node_command(config_path: Path, extra: list[str] | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "quorumdb.cli.main",
        "node",
        "--config",
        str(config_path),
        *(extra or []),
    ]


def start_node(cluster_dir: Path, node_id: int, extra: list[str] | None = None) -> int:
    """Start one node process from its config in `cluster_dir` (with the launch prefix the
    cluster state records for it, if any); return its pid."""
    node_dir = cluster_dir / f"n{node_id}"
    state = _read_state(cluster_dir) or {}
    prefix = [str(a) for a in state.get("launch", {}).get(str(node_id), [])]
    log = (node_dir / "node.log").open("ab")
    proc = subprocess.Popen(
        [*prefix, *node_command(node_dir / "node.toml", extra)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    return proc.pid


def restart_node(cluster_dir: Path, node_id: int) -> int:
    """Start a stopped node of the local cluster again and record its new pid; the pid."""
    pid = start_node(cluster_dir, node_id)
    state = load_cluster(cluster_dir)
    write_state(dataclasses.replace(state, pids={**state.pids, node_id: pid}))
    return pid


def start_cluster(
    cluster_dir: Path,
    *,
    nodes: int,
    base_port: int,
    shards: int,
    fsync: bool,
    unsafe_read_uncommitted: bool = False,
    snapshot_entries: int = 10_000,
    num_partitions: int = 1,
    default_replication_factor: int | None = None,
    auto_create_topics_enable: bool = True,
    host: str = "127.0.0.1",
    layout: Layout | None = None,
) -> LocalCluster:
    """Write each node's config and start the nodes; `layout` (default: all on `host`,
    ports from `base_port`) says where they listen and how they see each other."""
    if nodes < 1 or nodes > 9:
        raise UserError(f"--nodes must be in 1..9, got {nodes}")
    existing = _read_state(cluster_dir)
    if existing and any(_alive(pid) for pid in existing.get("pids", {}).values()):
        raise UserError(f"a cluster is already running in {cluster_dir}", hint="quorumdb down")
    layout = layout or default_layout(nodes, base_port, host)
    members = layout.members
    pids: dict[int, int] = {}
    for node_id in members:
        node_dir = cluster_dir / f"n{node_id}"
        node_dir.mkdir(parents=True, exist_ok=True)
        cfg = NodeConfig(
            node_id=node_id,
            data_dir=(node_dir / "data").resolve(),
            members=layout.view(node_id),
            shards=shards,
            fsync=fsync,
            unsafe_read_uncommitted=unsafe_read_uncommitted,
            snapshot_entries=snapshot_entries,
            num_partitions=num_partitions,
            default_replication_factor=default_replication_factor,
            auto_create_topics_enable=auto_create_topics_enable,
        )
        (node_dir / "node.toml").write_text(render_config(cfg))
    # The state (with the launch prefixes) is written before the nodes start: start_node reads it.
    write_state(LocalCluster(dir=cluster_dir, nodes=members, pids={}, launch=layout.launch))
    for node_id in members:
        pids[node_id] = start_node(cluster_dir, node_id)
        # After each start: if a later one fails, `stop_cluster` still finds this one.
        write_state(LocalCluster(dir=cluster_dir, nodes=members, pids=pids, launch=layout.launch))
    return LocalCluster(dir=cluster_dir, nodes=members, pids=pids, launch=layout.launch)


def add_local_node(cluster_dir: Path, *, shards: int | None = None) -> tuple[LocalCluster, Member]:
    """Write the config of the next node (id = max + 1) and start it, empty; return it.

    It takes the shard count and the Kafka broker defaults of the first node's config."""
    cluster = load_cluster(cluster_dir)
    node_id = max(cluster.nodes) + 1
    first = cluster.nodes[min(cluster.nodes)]
    base_port = first.http[1] - first.node_id
    member = _member(node_id, first.http[0], base_port)
    members = {**cluster.nodes, node_id: member}
    node_dir = cluster_dir / f"n{node_id}"
    node_dir.mkdir(parents=True, exist_ok=True)
    existing = node_config_from(load_config(cluster_dir / f"n{first.node_id}" / "node.toml"), {})
    cfg = NodeConfig(
        node_id=node_id,
        data_dir=(node_dir / "data").resolve(),
        members=members,
        shards=shards if shards is not None else existing.shards,
        num_partitions=existing.num_partitions,
        default_replication_factor=existing.default_replication_factor,
        auto_create_topics_enable=existing.auto_create_topics_enable,
    )
    (node_dir / "node.toml").write_text(render_config(cfg))
    pids = {**cluster.pids, node_id: start_node(cluster_dir, node_id)}
    grown = dataclasses.replace(cluster, nodes=members, pids=pids)
    write_state(grown)
    return grown, member


def forget_local_node(cluster_dir: Path, node_id: int) -> None:
    """Stop a removed node's process and drop it from the cluster state."""
    cluster = load_cluster(cluster_dir)
    pid = cluster.pids.get(node_id)
    if pid is not None and _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    nodes = {i: m for i, m in cluster.nodes.items() if i != node_id}
    pids = {i: p for i, p in cluster.pids.items() if i != node_id}
    write_state(dataclasses.replace(cluster, nodes=nodes, pids=pids))


def write_state(c: LocalCluster) -> None:
    state = {
        "nodes": {
            str(i): {
                "raft": f"{m.raft[0]}:{m.raft[1]}",
                "http": m.http_url,
                "kafka": f"{m.kafka[0]}:{m.kafka[1]}" if m.kafka else None,
            }
            for i, m in sorted(c.nodes.items())
        },
        "pids": {str(i): pid for i, pid in sorted(c.pids.items())},
        "launch": {str(i): prefix for i, prefix in sorted(c.launch.items())},
    }
    # Atomic replace: other processes (tests, a second CLI) may be reading it right now.
    tmp = c.dir / (_STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(c.dir / _STATE)


def _read_state(cluster_dir: Path) -> dict[str, Any] | None:
    path = cluster_dir / _STATE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} is not a cluster state file")
    return state


def load_cluster(cluster_dir: Path) -> LocalCluster:
    state = _read_state(cluster_dir)
    if state is None:
        raise UserError(f"no local cluster in {cluster_dir}", hint="start one with 'quorumdb up'")
    nodes: dict[int, Member] = {}
    for key, info in state.get("nodes", {}).items():
        raft_host, _, raft_port = info["raft"].rpartition(":")
        http = info["http"].removeprefix("http://")
        http_host, _, http_port = http.rpartition(":")
        kafka = info.get("kafka")
        kafka_host, _, kafka_port = (kafka or "").rpartition(":")
        nodes[int(key)] = Member(
            node_id=int(key),
            raft=(raft_host, int(raft_port)),
            http=(http_host, int(http_port)),
            kafka=(kafka_host, int(kafka_port)) if kafka else None,
        )
    pids = {int(k): int(v) for k, v in state.get("pids", {}).items()}
    launch = {int(k): [str(a) for a in v] for k, v in state.get("launch", {}).items()}
    return LocalCluster(dir=cluster_dir, nodes=nodes, pids=pids, launch=launch)


def stop_if_stale(cluster_dir: Path) -> None:
    """Clear the state of a cluster whose processes are gone (or partly gone)."""
    if _read_state(cluster_dir) is not None:
        stop_cluster(cluster_dir, grace_s=5.0)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether `port` can be bound on `host` now (it may be taken a moment later)."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def fresh_dir(path: Path, what: str) -> None:
    """Create `path` for a run (or a soak) that must start from nothing: an old run's cluster
    data would mix into the new history. Refused (one line) if it holds anything."""
    try:
        if path.exists() and any(path.iterdir()):
            raise UserError(f"{what} {path} is not empty: give each one a fresh --dir")
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot use {path} as the {what}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def node_environment(env: dict[str, str]) -> Iterator[None]:
    """`env` added to os.environ while node processes are spawned from this process (they
    inherit it, restarts included); the old values come back afterwards."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def alive(pid: int) -> bool:
    """Whether process `pid` is running (and not a zombie child of ours)."""
    return _alive(pid)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        # Our own child that exited is a zombie until reaped; kill(pid, 0) would still succeed.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _get_json(url: str, timeout_s: float = 1.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def wait_ready(cluster: LocalCluster, timeout_s: float = 30.0) -> dict[str, Any]:
    """Wait until every node answers and every group has a leader; return one status."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        for node_id, pid in cluster.pids.items():
            if not _alive(pid):
                log = cluster.dir / f"n{node_id}" / "node.log"
                tail = (
                    log.read_text(errors="replace").strip().splitlines()[-1:]
                    if log.exists()
                    else []
                )
                raise UserError(
                    f"node {node_id} exited during start-up", hint=(tail[0] if tail else str(log))
                )
        try:
            statuses = [_get_json(u + "/v1/cluster") for u in cluster.http_urls]
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = str(exc)
            time.sleep(0.1)
            continue
        if all(all(g["leader"] for g in s["groups"]) for s in statuses):
            first: dict[str, Any] = statuses[0]
            return first
        last = "waiting for leaders"
        time.sleep(0.1)
    raise UserError(f"cluster not ready after {timeout_s:.0f} s: {last}")


def wait_ready_or_stop(cluster: LocalCluster, timeout_s: float = 30.0) -> dict[str, Any]:
    """`wait_ready` for a cluster just started: if it never gets ready, stop the nodes that
    did start, so a failed `up` leaves no processes behind."""
    try:
        return wait_ready(cluster, timeout_s)
    except UserError as exc:
        stop_cluster(cluster.dir)
        raise UserError(
            f"{exc.message}; stopped the nodes that had started",
            hint=exc.hint,
            exit_status=exc.exit_status,
        ) from None


def stop_cluster(cluster_dir: Path, grace_s: float = 10.0) -> list[int]:
    """Stop every node of the local cluster; return the ids that were running."""
    cluster = load_cluster(cluster_dir)
    running = [i for i, pid in sorted(cluster.pids.items()) if _alive(pid)]
    for i in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(cluster.pids[i], signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(cluster.pids[i]) for i in running):
        _reap()
        time.sleep(0.05)
    for i in running:
        if _alive(cluster.pids[i]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(cluster.pids[i], signal.SIGKILL)
    _reap()
    (cluster_dir / _STATE).unlink(missing_ok=True)
    return running


def _reap() -> None:
    """Collect exited children (when the cluster was started by this very process)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
