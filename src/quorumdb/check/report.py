"""Renderings of a linearizability result for people and programs.

Text and JSON number events from 1, as the history's error messages do (the Python API's
``*_index`` fields count from 0). Values appear as JSON (``null``, ``"a"``, ``1``, ``true``)
so a string ``"1"`` and a number ``1`` never look alike.
"""

from __future__ import annotations

import json

from quorumdb.check._result import Counterexample, LinearizabilityResult, Verdict
from quorumdb.check.history import CasInput, Function, Operation, Outcome, Value

__all__ = ["render_counterexample", "result_to_json", "summary_line"]

_CULPRIT_MARK = "<- cannot be placed"
_START_VALUES_SHOWN = 8


def summary_line(result: LinearizabilityResult) -> str:
    """One line: the verdict, how much was checked, and which keys failed."""
    size = f"{_count(result.operation_count, 'operation')} on {_count(len(result.keys), 'key')}"
    if result.verdict is Verdict.LINEARIZABLE:
        return f"linearizable: {size}, {_count(result.explored_states, 'state')} explored"
    if result.verdict is Verdict.NOT_LINEARIZABLE:
        failed = [k.key for k in result.keys if k.verdict is Verdict.NOT_LINEARIZABLE]
        return f"not linearizable: {size}; failing keys: {_keys(failed)}"
    unknown = [k.key for k in result.keys if k.verdict is Verdict.UNKNOWN]
    return (
        f"unknown: {size}; the search budget of {result.max_states} states per key ran out "
        f"on keys: {_keys(unknown)}"
    )


def render_counterexample(counterexample: Counterexample) -> str:
    """A few lines and a table: the operation that cannot be placed, and its window."""
    cx = counterexample
    lines = [
        f"key {json.dumps(cx.key)} is not linearizable: "
        f"no order explains {_describe(cx.operation)}.",
        *(
            [
                f"No operation on this key invoked before event "
                f"#{_complete_number(cx.operation)} writes {_show(_needed(cx.operation))}."
            ]
            if cx.unwritten
            else []
        ),
        *_start_lines(cx),
        *_table(cx),
        *_value_source_lines(cx),
        _first_failure_line(cx),
    ]
    if cx.start_values and not cx.minimised:
        lines.append("(The search budget ran out while shrinking: the window may not be minimal.)")
    return "\n".join(lines)


def result_to_json(result: LinearizabilityResult) -> dict[str, object]:
    """The result as JSON-ready data (what ``quorumdb check linearizable --format json`` prints)."""
    cx = result.counterexample
    return {
        "verdict": result.verdict.value,
        "ok": result.ok,
        "operations": result.operation_count,
        "explored_states": result.explored_states,
        "max_states": result.max_states,
        "keys": [
            {
                "key": k.key,
                "verdict": k.verdict.value,
                "operations": k.operation_count,
                "explored_states": k.explored_states,
                "counterexample": (
                    None if k.counterexample is None else _counterexample_json(k.counterexample)
                ),
            }
            for k in result.keys
        ],
        # The first failing key's, repeated here for the common case of one.
        "counterexample": None if cx is None else _counterexample_json(cx),
    }


def _counterexample_json(cx: Counterexample) -> dict[str, object]:
    return {
        "key": cx.key,
        "operation": _operation_json(cx.operation),
        "window": [_operation_json(op) for op in cx.window],
        "window_start_event": cx.window_start + 1,
        "start_values": list(cx.start_values) if cx.start_values else None,
        "start_value_sources": [
            None if source is None else _operation_json(source) for source in cx.sources
        ],
        "unwritten": cx.unwritten,
        "value_source": None if cx.value_source is None else _operation_json(cx.value_source),
        "linearizable_through_event": (
            None if cx.linearizable_through is None else cx.linearizable_through + 1
        ),
        "minimised": cx.minimised,
    }


def _operation_json(op: Operation) -> dict[str, object]:
    return {
        "process": op.process,
        "f": op.f.value,
        "input": list(op.input) if isinstance(op.input, tuple) else op.input,
        "output": op.output,
        "outcome": op.outcome.value,
        "invoke_event": op.invoke_index + 1,
        "complete_event": None if op.complete_index is None else op.complete_index + 1,
        "invoke_time": op.invoke_time,
        "complete_time": op.complete_time,
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _keys(keys: list[str]) -> str:
    shown = ", ".join(json.dumps(k) for k in keys[:5])
    return shown if len(keys) <= 5 else f"{shown} and {len(keys) - 5} more"


def _describe(op: Operation) -> str:
    verb = {
        Function.READ: "read returning",
        Function.WRITE: "write of",
        Function.CAS: "cas",
        Function.DELETE: "delete",
    }[op.f]
    return f"process {op.process}'s {verb} {_value_text(op)}".rstrip()


def _value_source_lines(cx: Counterexample) -> list[str]:
    source = cx.value_source
    if source is None or source in cx.window:
        return []
    value = _show(_needed(cx.operation))
    return [f"({value} was last written by {_reference(source)}.)"]


def _first_failure_line(cx: Counterexample) -> str:
    if cx.linearizable_through is None:
        return (
            "(Whether the key's history before it is linearizable was not established: "
            "the search budget ran out.)"
        )
    return (
        f"The key's history through event #{cx.linearizable_through + 1} is linearizable; "
        f"event #{cx.linearizable_through + 2} is the first completion no order explains."
    )


def _start_lines(cx: Counterexample) -> list[str]:
    where = f"event #{cx.window_start + 1}"
    if cx.unwritten:
        return ["Whatever the key held, nothing explains it:"]
    if not cx.start_values:
        return [
            f"The key's possible values before {where} were not computed (the search budget "
            "ran out); these are the operations concurrent with it:"
        ]
    if len(cx.start_values) == 1:
        value = f"{_show(cx.start_values[0])} ({_origin(cx.sources[0])})"
        return [
            f"Just before {where} the key held {value}.",
            "From there, no order of these operations explains what they returned:",
        ]
    shown = list(zip(cx.start_values, cx.sources, strict=True))[:_START_VALUES_SHOWN]
    width = max(len(_show(value)) for value, _ in shown)
    lines = [f"Just before {where} the key held one of:"]
    lines += [f"  {_show(value).ljust(width)}  {_origin(source)}" for value, source in shown]
    if len(cx.start_values) > len(shown):
        lines.append(f"  ... and {len(cx.start_values) - len(shown)} more")
    lines.append("From each, no order of these operations explains what they returned:")
    return lines


def _origin(source: Operation | None) -> str:
    return "initial" if source is None else f"from {_reference(source)}"


def _reference(op: Operation) -> str:
    where = f"process {op.process}'s {op.f} at {_events(op)}"
    return where if op.outcome is Outcome.OK else f"{where}, {_result(op)}"


def _complete_number(op: Operation) -> int:
    assert op.complete_index is not None, op
    return op.complete_index + 1


def _needed(op: Operation) -> Value:
    if isinstance(op.input, tuple):
        return op.input[0]
    return op.output


def _table(cx: Counterexample) -> list[str]:
    timed = any(op.invoke_time is not None for op in cx.window)
    header = ["process", "f", "value", "events", "result"] + (["time"] if timed else [])
    rows = [header]
    for op in cx.window:
        row = [str(op.process), op.f.value, _value_text(op), _events(op), _result(op)]
        if timed:
            row.append(_span(op.invoke_time, op.complete_time))
        rows.append(row)
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        text = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        if n > 0 and cx.window[n - 1] is cx.operation:
            text += "  " + _CULPRIT_MARK
        lines.append("  " + text.rstrip())
    return lines


def _value_text(op: Operation) -> str:
    if op.f is Function.READ:
        return _show(op.output) if op.outcome is Outcome.OK else ""
    if op.f is Function.CAS:
        assert isinstance(op.input, tuple), op
        return _cas(op.input)
    if op.f is Function.WRITE:
        assert not isinstance(op.input, tuple), op
        return _show(op.input)
    return ""


def _cas(value: CasInput) -> str:
    expected, new = value
    return f"{_show(expected)} -> {_show(new)}"


def _events(op: Operation) -> str:
    end = "" if op.complete_index is None else f"#{op.complete_index + 1}"
    return f"#{op.invoke_index + 1}..{end}"


def _result(op: Operation) -> str:
    return "no reply" if op.complete_index is None else op.outcome.value


def _span(start: int | None, end: int | None) -> str:
    return f"{'' if start is None else start}..{'' if end is None else end}"


def _show(value: Value) -> str:
    return json.dumps(value)
