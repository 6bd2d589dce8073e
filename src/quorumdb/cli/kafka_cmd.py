"""`quorumdb topic create|list|describe|delete` and `quorumdb group list|describe`.

They speak the Kafka protocol to the cluster (our own codec as the client), so they work
against any node and show exactly what a Kafka client would see.
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from quorumdb.cli.local_cluster import load_cluster
from quorumdb.errors import UserError
from quorumdb.kafka.protocol import ApiKey, ErrorCode, decode_response, encode_request

__all__ = ["group", "topic"]

_TIMEOUT_S = 15.0


def _bootstrap(bootstrap: str | None, cluster_dir: Path) -> list[tuple[str, int]]:
    if bootstrap:
        out = []
        for item in bootstrap.split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit():
                raise UserError(f"bad --bootstrap entry {item!r} (expected host:port)")
            out.append((host, int(port)))
        return out
    nodes = load_cluster(cluster_dir).nodes
    return [m.kafka for _, m in sorted(nodes.items()) if m.kafka is not None]


def _call(
    addrs: list[tuple[str, int]], api: ApiKey, version: int, body: dict[str, Any]
) -> dict[str, Any]:
    last = "no broker given"
    for host, port in addrs:
        try:
            with socket.create_connection((host, port), timeout=_TIMEOUT_S) as s:
                s.sendall(
                    encode_request(api, version, body, correlation_id=1, client_id="quorumdb-cli")
                )
                head = _recv(s, 4)
                frame = head + _recv(s, struct.unpack(">i", head)[0])
        except OSError as exc:
            last = f"{host}:{port}: {exc}"
            continue
        return decode_response(api, version, frame)[1]
    raise UserError(f"no Kafka broker answered ({last})", hint="is the cluster up? 'quorumdb up'")


def _recv(s: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise OSError("connection closed by the broker")
        out += chunk
    return bytes(out)


_BOOTSTRAP = click.option("--bootstrap", default=None, help="host:port[,...] of Kafka listeners.")
_DIR = click.option(
    "--dir",
    "cluster_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".quorumdb"),
    show_default=True,
    help="Local cluster directory (used when --bootstrap is not given).",
)


@click.group()
def topic() -> None:
    """Create, list, describe and delete Kafka topics."""


@topic.command("create")
@click.argument("name")
@click.option("--partitions", type=click.IntRange(1, 4096), default=3, show_default=True)
@click.option("--replication-factor", type=click.IntRange(1, 9), default=3, show_default=True)
@click.option("--config", "configs", multiple=True, help="key=value topic config (repeatable).")
@_BOOTSTRAP
@_DIR
def create(  # noqa: PLR0917  (click passes options positionally)
    name: str,
    partitions: int,
    replication_factor: int,
    configs: tuple[str, ...],
    bootstrap: str | None,
    cluster_dir: Path,
) -> None:
    """Create topic NAME."""
    pairs = []
    for c in configs:
        key, sep, value = c.partition("=")
        if not sep or not key:
            raise UserError(f"bad --config {c!r} (expected key=value)")
        pairs.append({"name": key, "value": value})
    body = {
        "topics": [
            {
                "name": name,
                "num_partitions": partitions,
                "replication_factor": replication_factor,
                "assignments": [],
                "configs": pairs,
            }
        ],
        "timeout_ms": int(_TIMEOUT_S * 1000),
        "validate_only": False,
    }
    result = _call(_bootstrap(bootstrap, cluster_dir), ApiKey.CREATE_TOPICS, 4, body)["topics"][0]
    if result["error_code"] != ErrorCode.NONE:
        raise UserError(
            f"cannot create {name!r}: {ErrorCode(result['error_code']).name}"
            + (f": {result['error_message']}" if result.get("error_message") else ""),
            exit_status=1,
        )
    Console().print(
        f"created topic {name} ({partitions} partitions, replication factor {replication_factor})"
    )


def _metadata(addrs: list[tuple[str, int]], names: list[str] | None) -> dict[str, Any]:
    body = {
        "topics": None if names is None else [{"name": n} for n in names],
        "allow_auto_topic_creation": False,
        "include_cluster_authorized_operations": False,
        "include_topic_authorized_operations": False,
    }
    return _call(addrs, ApiKey.METADATA, 8, body)


@topic.command("list")
@_BOOTSTRAP
@_DIR
def list_topics(bootstrap: str | None, cluster_dir: Path) -> None:
    """List topics with their partition counts."""
    md = _metadata(_bootstrap(bootstrap, cluster_dir), None)
    table = Table(title="topics")
    table.add_column("topic")
    table.add_column("partitions", justify="right")
    for t in sorted(md["topics"], key=lambda t: t["name"]):
        table.add_row(t["name"], str(len(t["partitions"])))
    Console().print(table)


@topic.command("describe")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the Metadata answer as JSON.")
@_BOOTSTRAP
@_DIR
def describe(name: str, as_json: bool, bootstrap: str | None, cluster_dir: Path) -> None:
    """Partitions of topic NAME: leader, leader epoch, replicas, in-sync replicas."""
    md = _metadata(_bootstrap(bootstrap, cluster_dir), [name])
    t = md["topics"][0]
    if t["error_code"] != ErrorCode.NONE:
        raise UserError(f"topic {name!r}: {ErrorCode(t['error_code']).name}", exit_status=1)
    if as_json:
        click.echo(json.dumps(t, default=str))
        return
    table = Table(title=f"topic {name}")
    for col in ("partition", "leader", "leader epoch", "replicas", "isr"):
        table.add_column(col, justify="right")
    for p in sorted(t["partitions"], key=lambda p: p["partition_index"]):
        table.add_row(
            str(p["partition_index"]),
            str(p["leader_id"]),
            str(p["leader_epoch"]),
            ",".join(map(str, p["replica_nodes"])),
            ",".join(map(str, p["isr_nodes"])),
        )
    Console().print(table)


@topic.command("delete")
@click.argument("name")
@_BOOTSTRAP
@_DIR
def delete(name: str, bootstrap: str | None, cluster_dir: Path) -> None:
    """Delete topic NAME (its partitions' data is dropped)."""
    body = {"topic_names": [name], "timeout_ms": int(_TIMEOUT_S * 1000)}
    result = _call(_bootstrap(bootstrap, cluster_dir), ApiKey.DELETE_TOPICS, 3, body)["responses"][
        0
    ]
    if result["error_code"] != ErrorCode.NONE:
        raise UserError(
            f"cannot delete {name!r}: {ErrorCode(result['error_code']).name}", exit_status=1
        )
    Console().print(f"deleted topic {name}")


@click.group()
def group() -> None:
    """List and describe consumer groups."""


@group.command("list")
@_BOOTSTRAP
@_DIR
def list_groups(bootstrap: str | None, cluster_dir: Path) -> None:
    """Consumer groups known to each coordinator."""
    addrs = _bootstrap(bootstrap, cluster_dir)
    seen: dict[str, str] = {}
    for addr in addrs:
        answer = _call([addr], ApiKey.LIST_GROUPS, 2, {})
        for g in answer["groups"]:
            seen[g["group_id"]] = g["protocol_type"]
    table = Table(title="consumer groups")
    table.add_column("group")
    table.add_column("protocol type")
    for gid, ptype in sorted(seen.items()):
        table.add_row(gid, ptype)
    Console().print(table)


@group.command("describe")
@click.argument("group_id")
@_BOOTSTRAP
@_DIR
def describe_group(group_id: str, bootstrap: str | None, cluster_dir: Path) -> None:
    """State, protocol and members of GROUP_ID (asked of its coordinator)."""
    addrs = _bootstrap(bootstrap, cluster_dir)
    found = _call(addrs, ApiKey.FIND_COORDINATOR, 2, {"key": group_id, "key_type": 0})
    if found["error_code"] != ErrorCode.NONE:
        raise UserError(
            f"no coordinator for {group_id!r}: {ErrorCode(found['error_code']).name}", exit_status=1
        )
    coord = [(found["host"], found["port"])]
    d = _call(
        coord,
        ApiKey.DESCRIBE_GROUPS,
        4,
        {"groups": [group_id], "include_authorized_operations": False},
    )["groups"][0]
    console = Console()
    console.print(
        f"group {group_id}: state {d['group_state']}, protocol {d['protocol_data'] or '-'}, "
        f"coordinator node {found['node_id']}"
    )
    table = Table()
    for col in ("member", "client", "host"):
        table.add_column(col)
    for m in d["members"]:
        table.add_row(m["member_id"], m["client_id"], m["client_host"])
    console.print(table)
