"""Entry point of the `quorumdb` command: wires the command families and turns errors into one line.

Every command reports failure as `quorumdb: error: <what> (<hint>)` on stderr and a non-zero
exit; tracebacks only with `--debug`. click's own usage errors already print one line and
exit 2, which is the same contract.
"""

from __future__ import annotations

import sys

import click

from quorumdb import __version__
from quorumdb.errors import QuorumError, UserError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="quorumdb")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """quorumdb: Raft, a Kafka-compatible log, transactions, and a laboratory of failure."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register() -> None:
    from quorumdb.cli import (
        admin_cmd,
        check_cmd,
        cluster_cmd,
        demo_cmd,
        kafka_cmd,
        kv_cmd,
        sim_cmd,
        test_cmd,
        txn_cmd,
    )

    cli.add_command(check_cmd.check)
    cli.add_command(sim_cmd.sim)
    cli.add_command(demo_cmd.demo)
    for command in (cluster_cmd.node, cluster_cmd.up, cluster_cmd.down, cluster_cmd.status):
        cli.add_command(command)
    cli.add_command(kv_cmd.kv)
    cli.add_command(txn_cmd.txn)
    cli.add_command(test_cmd.test)
    cli.add_command(admin_cmd.cluster)
    cli.add_command(kafka_cmd.topic)
    cli.add_command(kafka_cmd.group)


_register()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit with the command's status."""
    if not __debug__:
        # Invariant assertions are part of the safety net (STYLE.md §5.4).
        sys.stderr.write("quorumdb: error: refusing to run under python -O (assertions off)\n")
        sys.exit(2)
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="quorumdb", standalone_mode=False)
    except click.exceptions.Abort:
        sys.stderr.write("quorumdb: error: aborted\n")
        sys.exit(130)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "quorumdb"
        sys.stderr.write(f"quorumdb: error: {exc.format_message()} (see '{where} --help')\n")
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        sys.stderr.write(f"quorumdb: error: {exc.format_message()}\n")
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except UserError as exc:
        if debug:
            raise
        sys.stderr.write(f"quorumdb: error: {exc}\n")
        sys.exit(exc.exit_status)
    except QuorumError as exc:
        if debug:
            raise
        sys.stderr.write(f"quorumdb: error: {exc}\n")
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
