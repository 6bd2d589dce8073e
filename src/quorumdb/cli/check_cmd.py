"""`quorumdb check ...`: run a checker from check/ over a recorded history file.

Reading files happens here and only here: the checkers in `quorumdb.check` take text or
decoded events and return values, so they stay pure. Their `HistoryError` becomes a
`UserError`, which `main()` prints as one line.
"""

from __future__ import annotations

import json
import sys
from enum import IntEnum, StrEnum
from pathlib import Path

import click

from quorumdb.check import (
    DEFAULT_MAX_STATES,
    HistoryError,
    KafkaHistoryError,
    LinearizabilityResult,
    Verdict,
    check_delivery,
    check_linearizable,
    delivery_to_json,
    parse_history,
    parse_kafka_history,
    render_counterexample,
    render_delivery,
    result_to_json,
    summary_line,
)
from quorumdb.errors import UserError

__all__ = ["DeliveryExitStatus", "ExitStatus", "OutputFormat", "check"]

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


_EXIT_STATUS = {
    Verdict.LINEARIZABLE: ExitStatus.LINEARIZABLE,
    Verdict.NOT_LINEARIZABLE: ExitStatus.NOT_LINEARIZABLE,
    Verdict.UNKNOWN: ExitStatus.UNKNOWN,
}


@click.group()
def check() -> None:
    """Check recorded histories (linearizability, Kafka delivery)."""


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
def linearizable(history: str, output_format: str, max_states: int) -> None:
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
    """
    text = _read(history)
    try:
        parsed = parse_history(text)
    except HistoryError as exc:
        raise UserError(
            f"{_name(history)}: {exc}",
            hint="see 'quorumdb check linearizable --help' for the format",
            exit_status=ExitStatus.BAD_INPUT,
        ) from None
    result = check_linearizable(parsed, max_states=max_states)
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
    text = _read(history)
    try:
        parsed = parse_kafka_history(text)
    except KafkaHistoryError as exc:
        raise UserError(
            f"{_name(history)}: {exc}",
            hint="see 'quorumdb check kafka --help' for the format",
            exit_status=DeliveryExitStatus.BAD_INPUT,
        ) from None
    result = check_delivery(parsed)
    if OutputFormat(output_format) is OutputFormat.JSON:
        click.echo(json.dumps(delivery_to_json(result), indent=2))
    else:
        click.echo(render_delivery(result))
    if not result.ok:
        raise SystemExit(DeliveryExitStatus.ANOMALIES)


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
