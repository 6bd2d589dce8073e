"""`quorumdb check ...`: run a checker from check/ over a recorded history file.

Reading files happens here and only here: the checkers in `quorumdb.check` take text or
decoded events and return values, so they stay pure. Their `HistoryError` becomes a
`UserError`, which `main()` prints as one line.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import TypeVar

import click

from quorumdb.check import (
    DEFAULT_MAX_STATES,
    ElleHistoryError,
    HistoryError,
    Isolation,
    KafkaHistoryError,
    LinearizabilityResult,
    Model,
    Verdict,
    check_delivery,
    check_elle,
    check_linearizable,
    delivery_to_json,
    elle_to_json,
    parse_elle_history,
    parse_history,
    parse_kafka_history,
    render_counterexample,
    render_delivery,
    render_elle,
    result_to_json,
    summary_line,
)
from quorumdb.check.timeline_html import marks_from_result, timeline_page
from quorumdb.errors import UserError

_T = TypeVar("_T")

__all__ = ["DeliveryExitStatus", "ElleExitStatus", "ExitStatus", "OutputFormat", "check"]

_STDIN = "-"
_COUNTEREXAMPLES_SHOWN = 5


class OutputFormat(StrEnum):
    """How `quorumdb check linearizable` and `quorumdb check kafka` print their result."""

    TEXT = "text"
    JSON = "json"


class ExitStatus(IntEnum):
    """Exit statuses of `quorumdb check linearizable` (also in its --help)."""

    LINEARIZABLE = 0
    NOT_LINEARIZABLE = 1
    BAD_INPUT = 2
    UNKNOWN = 3


class DeliveryExitStatus(IntEnum):
    """Exit statuses of `quorumdb check kafka` (also in its --help)."""

    OK = 0
    ANOMALIES = 1
    BAD_INPUT = 2


class ElleExitStatus(IntEnum):
    """Exit statuses of `quorumdb check elle` (also in its --help)."""

    VALID = 0
    ANOMALIES = 1
    BAD_INPUT = 2


_EXIT_STATUS = {
    Verdict.LINEARIZABLE: ExitStatus.LINEARIZABLE,
    Verdict.NOT_LINEARIZABLE: ExitStatus.NOT_LINEARIZABLE,
    Verdict.UNKNOWN: ExitStatus.UNKNOWN,
}


@click.group()
def check() -> None:
    """Check recorded histories (linearizability, Kafka delivery, transaction isolation)."""


@check.command("linearizable")
@click.argument("history", metavar="HISTORY")
@click.option(
    "--format",
    "output_format",
    type=click.Choice([f.value for f in OutputFormat]),
    default=OutputFormat.TEXT.value,
    show_default=True,
    help="text: a summary line, and a counterexample per failing key; json: one JSON object.",
)
@click.option(
    "--max-states",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_STATES,
    show_default=True,
    help="Search budget per key; when it runs out the verdict is 'unknown' (exit 3).",
)
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a timeline page: per key, one lane per process, the counterexample marked.",
)
def linearizable(history: str, output_format: str, max_states: int, html_out: Path | None) -> None:
    """Check that the register history in HISTORY is linearizable ("-": read stdin).

    HISTORY is a JSON array or JSON lines of events in real-time order, Jepsen style:
    {"process": 1, "type": "invoke"|"ok"|"fail"|"info", "f": "read"|"write"|"cas"|"delete",
    "key": "x", "value": ..., "time": 123}. A read's value is what it returned, a write's what
    it wrote, a cas's [expected, new]; "time" is optional. Each key is an independent register
    that starts absent (null). "info" means the outcome is unknown.

    \b
    Exit status:
      0  linearizable
      1  not linearizable (the counterexample is printed)
      2  bad input: missing or unreadable file, malformed history
      3  unknown: the search budget (--max-states) ran out before an answer
    (--html writes its page whatever the verdict; failing to write it is exit 2.)
    """
    parsed = _load(history, parse_history, HistoryError, "linearizable", ExitStatus.BAD_INPUT)
    result = check_linearizable(parsed, max_states=max_states)
    if html_out is not None:
        page = timeline_page(
            parsed,
            marks_from_result(result),
            title=f"Linearizability of {_name(history)}",
            summary=summary_line(result),
        )
        _write(html_out, page)
    if OutputFormat(output_format) is OutputFormat.JSON:
        click.echo(json.dumps(result_to_json(result), indent=2))
    else:
        click.echo(_text(result))
    status = _EXIT_STATUS[result.verdict]
    if status is not ExitStatus.LINEARIZABLE:
        # click's own Exit is swallowed by main()'s non-standalone mode; SystemExit is not.
        raise SystemExit(status)


@check.command("kafka")
@click.argument("history", metavar="HISTORY")
@click.option(
    "--format",
    "output_format",
    type=click.Choice([f.value for f in OutputFormat]),
    default=OutputFormat.TEXT.value,
    show_default=True,
    help="text: a summary line, and a table per partition with findings; json: one JSON object.",
)
def kafka(history: str, output_format: str) -> None:
    """Check the Kafka sends and polls in HISTORY for delivery anomalies ("-": read stdin).

    HISTORY is a JSON array or JSON lines of events in real-time order, Jepsen style:
    {"process": 1, "type": "invoke"|"ok"|"fail"|"info", "f": "send", "value": ..., "time": 123}
    where f is send, poll, assign, seek or commit and "time" is optional. A send's value is
    {"topic", "partition", "value"}, plus "offset" (the acknowledged one) on its ok; an ok
    poll's value is the list of records
    it returned, each {"topic", "partition", "offset", "value"}; assign and seek name the
    partitions whose positions may jump. Send values must be unique per partition; "aborted":
    true marks a send of an aborted transaction. The full format is in the docstring of
    quorumdb.check.kafka_history.

    Reported per partition: lost, duplicate, inconsistent-offset, poll-skip,
    nonmonotonic-poll, nonmonotonic-send and aborted-read records (failures), and unread and
    unsent-read records (information only).

    \b
    Exit status:
      0  no failure (information may be listed)
      1  delivery anomalies found (each with its evidence)
      2  bad input: missing or unreadable file, malformed history
    """
    parsed = _load(
        history, parse_kafka_history, KafkaHistoryError, "kafka", DeliveryExitStatus.BAD_INPUT
    )
    result = check_delivery(parsed)
    if OutputFormat(output_format) is OutputFormat.JSON:
        click.echo(json.dumps(delivery_to_json(result), indent=2))
    else:
        click.echo(render_delivery(result))
    if not result.ok:
        raise SystemExit(DeliveryExitStatus.ANOMALIES)


@check.command("elle")
@click.argument("history", metavar="HISTORY")
@click.option(
    "--model",
    type=click.Choice([m.value for m in Model]),
    help='(required) list-append: keys are lists, ["append", k, int] and ["r", k, [ints]]; '
    'rw-register: keys are registers, ["w", k, int] and ["r", k, int].',
)
@click.option(
    "--isolation",
    type=click.Choice([*(level.value for level in Isolation), "snapshot"]),
    default=Isolation.SERIALIZABLE.value,
    show_default=True,
    help="The level to judge by; strict-serializable adds process and real-time order.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice([f.value for f in OutputFormat]),
    default=OutputFormat.TEXT.value,
    show_default=True,
    help="text: a summary line and each anomaly with its cycle; json: one JSON object.",
)
def elle(history: str, model: str | None, isolation: str, output_format: str) -> None:
    """Check the transactions in HISTORY for isolation anomalies, Elle style ("-": stdin).

    HISTORY is a JSON array or JSON lines of events in real-time order, Jepsen style:
    {"process": 1, "type": "invoke"|"ok"|"fail"|"info", "f": "txn", "value": [...],
    "time": 123}, where the value is the transaction's micro-operations [f, key, value]
    (reads null in the invoke, filled in the ok completion) and "time" is optional. Written
    values must be unique per key. The full format is in the docstring of
    quorumdb.check.elle.history.

    Dependencies (ww, wr, rw) are inferred from what reads returned, cycles found and
    classified: G0, G1c, G-single, G-nonadjacent, G2-item (with -process and -realtime
    variants at strict-serializable); also G1a, G1b, lost-update, incompatible-order,
    duplicate-elements, internal, garbage-read and cyclic-versions. Each level forbids some
    of them (read-uncommitted: G0; read-committed: G1 too; snapshot-isolation: G-single,
    G-nonadjacent and lost-update too; serializable: G2-item too; strict-serializable: any
    cycle through real-time or process order too).

    \b
    Exit status:
      0  no anomaly the level forbids (allowed ones may be listed)
      1  anomalies the level forbids (each with its transactions and cycle)
      2  bad input: missing or unreadable file, malformed history
    """
    if model is None:
        # click's own message for a missing choice spans three lines; errors are one line.
        choices = " or ".join(m.value for m in Model)
        raise click.UsageError(f"Missing option '--model' ({choices})")
    parsed = _load(
        history,
        functools.partial(parse_elle_history, model=model),
        ElleHistoryError,
        "elle",
        ElleExitStatus.BAD_INPUT,
    )
    result = check_elle(parsed, isolation=isolation)
    if OutputFormat(output_format) is OutputFormat.JSON:
        click.echo(json.dumps(elle_to_json(result), indent=2))
    else:
        click.echo(render_elle(result))
    if not result.valid:
        raise SystemExit(ElleExitStatus.ANOMALIES)


def _load(
    history: str,
    parse: Callable[[str], _T],
    error: type[Exception],
    command: str,
    bad_input: int,
) -> _T:
    """Read HISTORY and parse it; a parse error is one line naming the file (`bad_input`)."""
    text = _read(history)
    try:
        return parse(text)
    except error as exc:
        raise UserError(
            f"{_name(history)}: {exc}",
            hint=f"see 'quorumdb check {command} --help' for the format",
            exit_status=bad_input,
        ) from None


def _read(history: str) -> str:
    try:
        if history == _STDIN:
            return sys.stdin.read()
        return Path(history).read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UserError(
            f"cannot read {_name(history)}: {reason}", exit_status=ExitStatus.BAD_INPUT
        ) from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{_name(history)}: not UTF-8 text (byte {exc.start}: {exc.reason})",
            exit_status=ExitStatus.BAD_INPUT,
        ) from None


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(
            f"cannot write {path}: {exc.strerror or exc}", exit_status=ExitStatus.BAD_INPUT
        ) from None


def _name(history: str) -> str:
    return "<stdin>" if history == _STDIN else history


def _text(result: LinearizabilityResult) -> str:
    counterexamples = [key.counterexample for key in result.keys if key.counterexample]
    parts = [summary_line(result)]
    parts += [render_counterexample(cx) for cx in counterexamples[:_COUNTEREXAMPLES_SHOWN]]
    if len(counterexamples) > _COUNTEREXAMPLES_SHOWN:
        hidden = len(counterexamples) - _COUNTEREXAMPLES_SHOWN
        parts.append(f"... and {hidden} more failing keys (--format json lists them all)")
    return "\n\n".join(parts)
