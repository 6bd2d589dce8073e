"""The history format: both encodings, operations per key, and one test per validation rule."""

from __future__ import annotations

import json

import pytest

from quorumdb.check import (
    Function,
    HistoryError,
    Outcome,
    history_from_events,
    parse_history,
)
from tests.check.rows import events

WRITE_THEN_READ = events(
    "1 invoke write x 1",
    "2 invoke read y",
    "1 ok write x 1",
    "2 ok read y null",
)


def _jsonl(objects: list[dict[str, object]]) -> str:
    return "\n".join(json.dumps(o) for o in objects) + "\n"


def test_json_lines_and_json_array_parse_to_the_same_history() -> None:
    from_lines = parse_history(_jsonl(WRITE_THEN_READ))
    from_array = parse_history("  \n" + json.dumps(WRITE_THEN_READ, indent=2))
    assert from_lines == from_array
    assert len(from_lines.events) == 4


def test_blank_lines_are_skipped_in_json_lines() -> None:
    text = "\n" + _jsonl(WRITE_THEN_READ[:2]) + "\n\n" + _jsonl(WRITE_THEN_READ[2:])
    assert len(parse_history(text).operations) == 2


def test_operations_pair_invokes_with_completions_in_invoke_order() -> None:
    history = parse_history(_jsonl(WRITE_THEN_READ))
    write, read = history.operations
    assert (write.f, write.key, write.input, write.outcome) == (Function.WRITE, "x", 1, Outcome.OK)
    assert (write.invoke_index, write.complete_index, write.return_index) == (0, 2, 2)
    assert (read.f, read.key, read.output, read.invoke_index, read.complete_index) == (
        Function.READ,
        "y",
        None,
        1,
        3,
    )
    assert history.by_key() == {"x": (write,), "y": (read,)}


def test_cas_input_is_a_pair_and_times_are_kept() -> None:
    history = history_from_events(
        [
            {"process": 0, "type": "invoke", "f": "cas", "key": "k", "value": [None, 2], "time": 5},
            {"process": 0, "type": "ok", "f": "cas", "key": "k", "value": [None, 2], "time": 9},
        ]
    )
    (cas,) = history.operations
    assert cas.input == (None, 2)
    assert (cas.invoke_time, cas.complete_time) == (5, 9)


def test_an_invoke_without_completion_is_info_and_has_no_return() -> None:
    history = history_from_events(events("3 invoke write x 7"))
    (op,) = history.operations
    assert op.outcome is Outcome.INFO
    assert op.complete_index is None
    assert op.return_index is None


def test_info_and_fail_completions_have_no_return_index() -> None:
    history = history_from_events(
        events("1 invoke write x 1", "1 info write x 1", "2 invoke cas x [1, 2]", "2 fail cas x")
    )
    info, fail = history.operations
    assert (info.outcome, info.complete_index, info.return_index) == (Outcome.INFO, 1, None)
    assert (fail.outcome, fail.return_index) == (Outcome.FAIL, None)


def test_a_process_may_invoke_again_after_an_info() -> None:
    history = history_from_events(
        events("1 invoke write x 1", "1 info write x", "1 invoke read x", "1 ok read x 1")
    )
    assert [op.outcome for op in history.operations] == [Outcome.INFO, Outcome.OK]


def test_extra_fields_are_ignored() -> None:
    event = {**WRITE_THEN_READ[0], "error": "timeout", "node": "n1"}
    assert len(history_from_events([event]).operations) == 1


def test_an_empty_history_has_no_operations() -> None:
    assert parse_history("").operations == ()
    assert parse_history("[]").operations == ()


def _event(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"process": 1, "type": "invoke", "f": "write", "key": "x", "value": 1}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()

INVALID_TEXT = [
    ('{"process": 1, "type": "invoke",', "event 1 (line 1): bad JSON"),
    ('[{"process": 1}', "history: bad JSON"),
    ('{"process": 1, "type": "invoke", "f": "write", "key": "x", "value": NaN}', "NaN"),
    ('"just a string"', "event 1: expected a JSON object, got a string"),
    ("[1, 2]", "event 1: expected a JSON object, got a number"),
    (json.dumps(WRITE_THEN_READ[0]) + "\n\n[]", "event 2: expected a JSON object, got an array"),
    ("[" * 100_000, "history: bad JSON"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID_TEXT)
def test_unparseable_text_is_a_history_error(text: str, fragment: str) -> None:
    with pytest.raises(HistoryError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse_history(text)


INVALID_EVENTS = [
    ([_event(process=_DROP)], "event 1: missing field 'process'"),
    ([_event(process="p1")], "event 1: 'process' must be an integer, got \"p1\""),
    ([_event(process=True)], "'process' must be an integer, got true"),
    ([_event(type="done")], 'event 1: unknown type "done" (expected one of: invoke, ok, fail'),
    ([_event(f="incr")], 'event 1: unknown f "incr" (expected one of: read, write, cas, delete)'),
    ([_event(key=_DROP)], "event 1: missing field 'key'"),
    ([_event(key=3)], "event 1: 'key' must be a string, got 3"),
    ([_event(value=_DROP)], "event 1: missing field 'value' (invoke write needs one)"),
    ([_event(value=[1])], "event 1: a register value must be a string, number, boolean or null"),
    ([_event(value={"a": 1})], "a register value must be"),
    ([_event(f="cas", value=1)], "event 1: a cas value must be a 2-element list"),
    ([_event(f="cas", value=[1, 2, 3])], "a cas value must be a 2-element list"),
    ([_event(f="cas", value=[[1], 2])], "a register value must be"),
    ([_event(f="delete", value=4)], "event 1: a delete's value must be null"),
    ([_event(f="read", value=4)], "event 1: a read's invoke must have value null"),
    ([_event(time="noon")], "event 1: 'time' must be an integer"),
    ([_event(type="ok")], "event 1: ok completion for process 1, which has no outstanding invoke"),
    (
        [_event(), _event(f="read", value=None)],
        "event 2: process 1 invoked read while its write from event 1 is still outstanding",
    ),
    (
        [_event(), _event(type="ok", f="cas", value=[1, 1])],
        "event 2: completion f 'cas' does not match f 'write' of its invoke (event 1)",
    ),
    (
        [_event(), _event(type="ok", key="y")],
        "event 2: completion key 'y' does not match key 'x' of its invoke (event 1)",
    ),
    (
        [_event(), _event(type="ok", value=2)],
        "event 2: completion value 2 differs from value 1 of its invoke (event 1)",
    ),
    (
        [_event(), _event(type="ok", value=True)],
        "event 2: completion value true differs from value 1",
    ),
    (
        [_event(f="read", value=None), _event(type="ok", f="read", value=_DROP)],
        "event 2: missing field 'value' (ok read needs one)",
    ),
    (
        [_event(time=10), _event(process=2, time=9)],
        "event 2: time 9 is earlier than time 10 of event 1 (times must be non-decreasing)",
    ),
]


@pytest.mark.parametrize(("objects", "fragment"), INVALID_EVENTS)
def test_each_rule_breach_is_a_history_error_naming_the_event(
    objects: list[dict[str, object]], fragment: str
) -> None:
    with pytest.raises(HistoryError) as info:
        history_from_events(objects)
    assert fragment in str(info.value)
    # The same events as a file give the same message.
    with pytest.raises(HistoryError) as from_text:
        parse_history(json.dumps(objects))
    assert fragment in str(from_text.value)


def test_history_error_is_a_value_error() -> None:
    assert issubclass(HistoryError, ValueError)


def test_a_completion_may_repeat_or_omit_a_writes_value() -> None:
    history = history_from_events(
        [_event(), _event(type="ok"), _event(process=2), _event(process=2, type="info", value=None)]
    )
    assert [op.outcome for op in history.operations] == [Outcome.OK, Outcome.INFO]


def test_times_may_be_absent_on_some_events_and_equal_on_others() -> None:
    history = history_from_events(
        [_event(time=5), _event(process=2), _event(process=3, time=5), _event(process=4, time=6)]
    )
    assert [e.time for e in history.events] == [5, None, 5, 6]
