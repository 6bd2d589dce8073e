"""`quorumdb txn OP...`: a scripted transaction from the shell, through `quorumdb.Client`.

Each OP is one word-separated string: `get KEY`, `put KEY VALUE`, `del KEY`,
`scan START [END] [LIMIT]`. They run in order in one transaction, which commits at the end;
each result is printed as a JSON line, then the commit timestamp. With `--retry`, a
serialization failure runs the whole script again (`Client.run_transaction`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from quorumdb.cli.cluster_cmd import endpoints_for
from quorumdb.cli.kv_cmd import client_options
from quorumdb.errors import UserError
from quorumdb.kv.client import (
    Client,
    ClientError,
    SerializationFailureError,
    Transaction,
    UnavailableError,
)

__all__ = ["txn"]

_SERIALIZATION_EXIT = 3
_ISOLATIONS = ["serializable", "snapshot", "read_committed", "read_uncommitted"]


def _parse(op: str) -> Callable[[Transaction], Any]:
    words = op.split()
    name, args = (words[0].lower(), words[1:]) if words else ("", [])
    if name == "get" and len(args) == 1:
        return lambda tx: tx.get(args[0])
    if name == "put" and len(args) >= 2:
        return lambda tx: tx.put(args[0], " ".join(args[1:]))
    if name in ("del", "delete") and len(args) == 1:
        return lambda tx: tx.delete(args[0])
    if name == "scan" and 1 <= len(args) <= 3:
        end = args[1] if len(args) > 1 and args[1] != "-" else None
        try:
            limit = int(args[2]) if len(args) > 2 else 100
        except ValueError:
            raise UserError(f"scan limit must be an integer: {op!r}") from None
        return lambda tx: [list(row) for row in tx.scan(args[0], end, limit)]
    raise UserError(
        f"bad operation {op!r}",
        hint="operations: 'get KEY', 'put KEY VALUE', 'del KEY', 'scan START [END|-] [LIMIT]'",
    )


@click.command()
@click.argument("ops", nargs=-1, required=True)
@click.option(
    "--isolation", type=click.Choice(_ISOLATIONS), default="serializable", show_default=True
)
@click.option("--retry", is_flag=True, help="Run the script again on a serialization failure.")
@client_options
def txn(  # noqa: PLR0917  (click passes options positionally)
    ops: tuple[str, ...],
    isolation: str,
    retry: bool,
    endpoints: str | None,
    cluster_dir: Path,
    timeout: float,
) -> None:
    """Run OPS in one transaction and commit.

    \b
    Exit status: 0 committed; 1 unavailable; 2 bad input or refused;
    3 serialization failure (SQLSTATE 40001: run it again, or use --retry).
    """
    steps = [_parse(op) for op in ops]
    client = Client(endpoints_for(cluster_dir, endpoints), timeout_s=timeout)

    def script(tx: Transaction) -> list[Any]:
        return [step(tx) for step in steps]

    try:
        if retry:
            results = client.run_transaction(script, isolation=isolation)
        else:
            with client.transaction(isolation) as tx:
                results = script(tx)
    except SerializationFailureError as exc:
        raise UserError(
            f"serialization failure (40001): {exc}", exit_status=_SERIALIZATION_EXIT
        ) from None
    except UnavailableError as exc:
        raise UserError(str(exc), exit_status=1) from None
    except ClientError as exc:
        raise UserError(str(exc), exit_status=2) from None
    for op, result in zip(ops, results, strict=True):
        click.echo(json.dumps({"op": op, "result": result}))
    click.echo(json.dumps({"committed": True}))
