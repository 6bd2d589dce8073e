"""`quorumdb node | up | down | status`: run one node, or a local cluster of node processes."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from quorumdb.cli.local_cluster import (
    alive,
    load_cluster,
    start_cluster,
    stop_cluster,
    wait_ready_or_stop,
)
from quorumdb.errors import UserError
from quorumdb.host.config import load_config, node_config_from
from quorumdb.kafka.metadata import PARTITIONS_MAX

__all__ = ["NodeReport", "down", "node", "node_reports", "status", "up"]

_DIR_OPTION = click.option(
    "--dir",
    "cluster_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".quorumdb"),
    show_default=True,
    help="Directory of the local cluster (configs, data, logs).",
)


_UNSAFE_RU_OPTION = click.option(
    "--unsafe-read-uncommitted",
    is_flag=True,
    help="UNSAFE (labs only): allow read_uncommitted transactions (dirty writes).",
)


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The node's TOML config (see the README for a 3-host example).",
)
@click.option("--unsafe-no-fsync", is_flag=True, help="UNSAFE (labs only): never fdatasync.")
@_UNSAFE_RU_OPTION
def node(config_path: Path, unsafe_no_fsync: bool, unsafe_read_uncommitted: bool) -> None:
    """Run one node in the foreground (config file, then QUORUMDB_* environment, then flags)."""
    from quorumdb.runtime.node_main import run_node

    raw = load_config(config_path)
    if unsafe_no_fsync:
        raw["fsync"] = False
    if unsafe_read_uncommitted:
        raw["unsafe_read_uncommitted"] = True
    config = node_config_from(raw, dict(os.environ))
    raise SystemExit(run_node(config))


@click.command()
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True)
@click.option("--base-port", type=click.IntRange(1024, 60000), default=7000, show_default=True)
@click.option("--shards", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--snapshot-entries",
    type=click.IntRange(10, 10_000_000),
    default=10_000,
    show_default=True,
    help="Applied entries between snapshots of a group.",
)
@click.option(
    "--num-partitions",
    type=click.IntRange(1, PARTITIONS_MAX),
    default=1,
    show_default=True,
    help="Kafka num.partitions: partitions of auto-created topics (and CreateTopics with -1).",
)
@click.option(
    "--default-replication-factor",
    type=click.IntRange(1, 9),
    default=None,
    help="Kafka default.replication.factor, likewise (default: min(3, nodes)).",
)
@click.option(
    "--auto-create-topics/--no-auto-create-topics",
    default=True,
    show_default=True,
    help="Kafka auto.create.topics.enable: Metadata for an unknown topic creates it.",
)
@click.option("--unsafe-no-fsync", is_flag=True, help="UNSAFE (labs only): never fdatasync.")
@_UNSAFE_RU_OPTION
@_DIR_OPTION
def up(  # noqa: PLR0917  (click passes options positionally)
    nodes: int,
    base_port: int,
    shards: int,
    snapshot_entries: int,
    num_partitions: int,
    default_replication_factor: int | None,
    auto_create_topics: bool,
    unsafe_no_fsync: bool,
    unsafe_read_uncommitted: bool,
    cluster_dir: Path,
) -> None:
    """Start a local cluster of separate node processes and print its endpoints."""
    console = Console()
    cluster = start_cluster(
        cluster_dir,
        nodes=nodes,
        base_port=base_port,
        shards=shards,
        fsync=not unsafe_no_fsync,
        unsafe_read_uncommitted=unsafe_read_uncommitted,
        snapshot_entries=snapshot_entries,
        num_partitions=num_partitions,
        default_replication_factor=default_replication_factor,
        auto_create_topics_enable=auto_create_topics,
    )
    console.print(f"started {nodes} nodes in {cluster_dir}/ (logs: {cluster_dir}/n*/node.log)")
    wait_ready_or_stop(cluster)
    table = Table(title="quorumdb local cluster")
    for col in ("node", "pid", "HTTP API", "Kafka", "raft"):
        table.add_column(col)
    for i, m in sorted(cluster.nodes.items()):
        kafka = f"{m.kafka[0]}:{m.kafka[1]}" if m.kafka else "-"
        table.add_row(str(i), str(cluster.pids[i]), m.http_url, kafka, f"{m.raft[0]}:{m.raft[1]}")
    console.print(table)
    if unsafe_no_fsync:
        console.print("[red]fsync is OFF: acknowledged writes can be lost on a crash[/red]")
    console.print("try: quorumdb kv put hello world && quorumdb kv get hello && quorumdb status")
    console.print("     quorumdb topic create orders && kcat -b 127.0.0.1:9092 -L")


@click.command()
@_DIR_OPTION
def down(cluster_dir: Path) -> None:
    """Stop the local cluster (SIGTERM, then SIGKILL after 10 s)."""
    stopped = stop_cluster(cluster_dir)
    Console().print(f"stopped nodes {stopped}" if stopped else "no node was running")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2.0) as resp:
        return json.loads(resp.read())


def endpoints_for(cluster_dir: Path, endpoints: str | None) -> list[str]:
    if endpoints:
        return [e if e.startswith("http") else f"http://{e}" for e in endpoints.split(",")]
    return load_cluster(cluster_dir).http_urls


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeReport:
    """One node as `quorumdb status` sees it: its `/v1/cluster` answer, or why it is down."""

    node: str  # its id, or its URL when only --endpoints are known
    status: dict[str, Any] | None
    down: str | None  # why there is no status


def node_reports(cluster_dir: Path, endpoints: str | None) -> list[NodeReport]:
    """Ask every node for its status. In a local cluster, a node whose process is gone is
    down without asking (its port may already belong to someone else)."""
    targets: list[tuple[str, str, int | None]]  # name, URL, pid (when known)
    if endpoints:
        targets = [(url, url, None) for url in endpoints_for(cluster_dir, endpoints)]
    else:
        c = load_cluster(cluster_dir)
        targets = [(str(i), m.http_url, c.pids.get(i)) for i, m in sorted(c.nodes.items())]
    reports = []
    for node_name, url, pid in targets:
        st: dict[str, Any] | None = None
        down: str | None = None
        if pid is not None and not alive(pid):
            down = f"process {pid} exited"
        else:
            try:
                st = _get_json(url + "/v1/cluster")
            except urllib.error.URLError as exc:
                down = f"no answer: {exc.reason}"
            except (OSError, ValueError) as exc:
                down = f"no answer: {exc}"
        reports.append(NodeReport(node=node_name, status=st, down=down))
    return reports


@click.command()
@click.option("--endpoints", default=None, help="Comma-separated host:port of nodes' HTTP APIs.")
@_DIR_OPTION
def status(endpoints: str | None, cluster_dir: Path) -> None:
    """A table of nodes and groups: roles, terms, leaders, commit/applied indexes, lag."""
    console = Console()
    table = Table(title="quorumdb status")
    for col in ("node", "group", "role", "term", "leader", "commit", "applied", "follower lag"):
        table.add_column(col, justify="right" if col not in ("role",) else "left")
    reachable = 0
    fsync_off = False
    for report in node_reports(cluster_dir, endpoints):
        st = report.status
        if st is None:
            down = f"[red]down[/red] ({escape(report.down or '')})"
            table.add_row(report.node, "-", down, "", "", "", "", "")
            continue
        reachable += 1
        fsync_off = fsync_off or not st.get("fsync", True)
        for g in st["groups"]:
            lag = ", ".join(f"{k}:{v}" for k, v in g["follower_lag"].items()) or "-"
            table.add_row(
                str(st["node_id"]),
                str(g["group"]),
                g["role"],
                str(g["term"]),
                str(g["leader"]),
                str(g["commit"]),
                str(g["applied"]),
                lag,
            )
    console.print(table)
    if fsync_off:
        console.print("[red]fsync is OFF on some node (--unsafe-no-fsync)[/red]")
    if reachable == 0:
        raise UserError("no node answered", hint="is the cluster up? 'quorumdb up'")
