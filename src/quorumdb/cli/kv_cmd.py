"""`quorumdb kv get|put|del|cas|scan`: the KV service from the shell, through `quorumdb.Client`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from quorumdb.cli.cluster_cmd import endpoints_for
from quorumdb.errors import UserError
from quorumdb.kv.client import Client, ClientError, UnavailableError

__all__ = ["client_options", "kv"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _client(ctx: click.Context) -> Client:
    obj = ctx.obj
    return Client(endpoints_for(obj["dir"], obj["endpoints"]), timeout_s=obj["timeout"])


def _run(fn: object) -> None:
    try:
        fn()  # type: ignore[operator]
    except UnavailableError as exc:
        raise UserError(str(exc), exit_status=1) from None
    except ClientError as exc:
        raise UserError(str(exc), exit_status=2) from None


def client_options(fn: _F) -> _F:
    """`--endpoints`, `--dir` and `--timeout`: where a client command finds the nodes."""
    timeout = click.FloatRange(0.1, 600)
    fn = click.option("--timeout", type=timeout, default=5.0, show_default=True)(fn)
    fn = click.option(
        "--dir",
        "cluster_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path(".quorumdb"),
        show_default=True,
        help="Local cluster directory (used when --endpoints is not given).",
    )(fn)
    return click.option(
        "--endpoints", default=None, help="Comma-separated host:port of nodes' HTTP APIs."
    )(fn)


@click.group()
@client_options
@click.pass_context
def kv(ctx: click.Context, endpoints: str | None, cluster_dir: Path, timeout: float) -> None:
    """Read and write keys (linearizable by default)."""
    ctx.ensure_object(dict)
    ctx.obj.update(endpoints=endpoints, dir=cluster_dir, timeout=timeout)


@kv.command()
@click.argument("key")
@click.option(
    "--consistency",
    type=click.Choice(["linearizable", "lease", "stale"]),
    default="linearizable",
    show_default=True,
)
@click.pass_context
def get(ctx: click.Context, key: str, consistency: str) -> None:
    """Print the value of KEY (exit 1 if absent)."""

    def op() -> None:
        got = _client(ctx).get(key, consistency=consistency)
        if got is None:
            raise UserError(f"no such key {key!r}", exit_status=1)
        click.echo(json.dumps({"key": key, "value": got[0], "revision": got[1]}))

    _run(op)


@kv.command()
@click.argument("key")
@click.argument("value")
@click.pass_context
def put(ctx: click.Context, key: str, value: str) -> None:
    """Set KEY to VALUE; print the new revision."""
    _run(lambda: click.echo(json.dumps({"revision": _client(ctx).put(key, value)})))


@kv.command(name="del")
@click.argument("key")
@click.pass_context
def delete(ctx: click.Context, key: str) -> None:
    """Delete KEY (exit 1 if it was absent)."""

    def op() -> None:
        if not _client(ctx).delete(key):
            raise UserError(f"no such key {key!r}", exit_status=1)
        click.echo(json.dumps({"deleted": key}))

    _run(op)


@kv.command()
@click.argument("key")
@click.argument("expected_revision", type=click.IntRange(min=0))
@click.argument("value")
@click.pass_context
def cas(ctx: click.Context, key: str, expected_revision: int, value: str) -> None:
    """Set KEY to VALUE only if its revision is EXPECTED_REVISION (0: absent). Exit 1 if not."""

    def op() -> None:
        rev = _client(ctx).put(key, value, expected_revision=expected_revision)
        if rev is None:
            raise UserError(f"revision of {key!r} is not {expected_revision}", exit_status=1)
        click.echo(json.dumps({"revision": rev}))

    _run(op)


@kv.command()
@click.option("--start", default="", help="First key (inclusive).")
@click.option("--end", default=None, help="Last key (exclusive).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.pass_context
def scan(ctx: click.Context, start: str, end: str | None, limit: int) -> None:
    """Print keys in order, one JSON object per line."""

    def op() -> None:
        for k, v, r in _client(ctx).scan(start, end, limit):
            click.echo(json.dumps({"key": k, "value": v, "revision": r}))

    _run(op)
