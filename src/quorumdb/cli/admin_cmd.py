"""`quorumdb cluster add-node | remove-node | transfer-leader`: membership and leadership."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from quorumdb.cli.cluster_cmd import endpoints_for
from quorumdb.cli.local_cluster import add_local_node, forget_local_node, load_cluster
from quorumdb.errors import UserError

__all__ = ["cluster"]

_ADMIN_TIMEOUT_S = 60.0


def _call(urls: list[str], method: str, path: str, body: dict[str, Any] | None) -> Any:
    """Send an admin request, following 421 answers to the controller leader."""
    tried: list[str] = []
    queue = list(urls)
    while queue and len(tried) < 10:
        url = queue.pop(0)
        tried.append(url)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=_ADMIN_TIMEOUT_S) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            answer = json.loads(exc.read() or b"{}")
            if exc.code == 421 and answer.get("leader"):
                queue.insert(0, answer["leader"])
                continue
            raise UserError(f"HTTP {exc.code}: {answer.get('error', exc.reason)}") from None
        except (OSError, ValueError) as exc:
            if not queue:
                raise UserError(f"{url}: {exc}") from None
    raise UserError("no node could serve the request", hint=", ".join(tried))


@click.group()
def cluster() -> None:
    """Change membership and move leadership."""


_ENDPOINTS = click.option("--endpoints", default=None, help="Comma-separated host:port of nodes.")
_DIR = click.option(
    "--dir",
    "cluster_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".quorumdb"),
    show_default=True,
)


@cluster.command("add-node")
@click.option("--id", "node_id", type=click.IntRange(1, 1 << 31), default=None)
@click.option("--raft", default=None, help="host:port of the new node's Raft listener.")
@click.option("--http", default=None, help="host:port of the new node's HTTP API.")
@_ENDPOINTS
@_DIR
def add_node(
    node_id: int | None,
    raft: str | None,
    http: str | None,
    endpoints: str | None,
    cluster_dir: Path,
) -> None:
    """Add a voter. Without --id/--raft/--http: start the next node of the local cluster."""
    console = Console()
    if node_id is None:
        if raft or http:
            raise UserError("--raft/--http need --id")
        grown, member = add_local_node(cluster_dir)
        node_id = member.node_id
        raft = f"{member.raft[0]}:{member.raft[1]}"
        http = member.http_url.removeprefix("http://")
        urls = [m.http_url for i, m in sorted(grown.nodes.items()) if i != node_id]
        console.print(f"started node {node_id} (pid {grown.pids[node_id]}), joining...")
    else:
        if not raft or not http:
            raise UserError("--id needs --raft and --http")
        urls = endpoints_for(cluster_dir, endpoints)
    result = _call(urls, "POST", "/v1/admin/members", {"id": node_id, "raft": raft, "http": http})
    console.print(f"node {node_id} is a voter of groups {result['groups']}")


@cluster.command("remove-node")
@click.option("--id", "node_id", type=click.IntRange(1, 1 << 31), required=True)
@_ENDPOINTS
@_DIR
def remove_node(node_id: int, endpoints: str | None, cluster_dir: Path) -> None:
    """Remove a voter from every group (leadership moves away first)."""
    urls = [u for u in endpoints_for(cluster_dir, endpoints)]
    local = endpoints is None
    if local:
        me = load_cluster(cluster_dir).nodes.get(node_id)
        urls = [u for u in urls if me is None or u != me.http_url]
    _call(urls, "DELETE", f"/v1/admin/members/{node_id}", None)
    if local:
        forget_local_node(cluster_dir, node_id)
    Console().print(f"node {node_id} removed")


@cluster.command("transfer-leader")
@click.option("--to", "to", type=click.IntRange(1, 1 << 31), required=True)
@click.option("--group", type=click.IntRange(0, 1 << 16), default=None, help="Default: all.")
@_ENDPOINTS
@_DIR
def transfer_leader(to: int, group: int | None, endpoints: str | None, cluster_dir: Path) -> None:
    """Move leadership of a group (or of every group) to node --to."""
    body: dict[str, Any] = {"to": to}
    if group is not None:
        body["group"] = group
    result = _call(endpoints_for(cluster_dir, endpoints), "POST", "/v1/admin/transfer-leader", body)
    Console().print(f"node {to} leads groups {result['groups']}")
