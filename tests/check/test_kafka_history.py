"""The Kafka history format: what parses into which operations, and every way to get it wrong."""

from __future__ import annotations

import json

import pytest

from quorumdb.check import KafkaHistoryError, kafka_history_from_events, parse_kafka_history
from quorumdb.check.history import Outcome
from quorumdb.check.kafka_history import (
    Assign,
    Commit,
    Poll,
    Position,
    Record,
    Seek,
    Send,
    TopicPartition,
)

T0 = TopicPartition("t", 0)


def _send(process: int, type_: str, value: object = None, **extra: object) -> dict[str, object]:
    event: dict[str, object] = {"process": process, "type": type_, "f": "send", **extra}
    if value is not None:
        event["value"] = value
    return event


def _poll(process: int, type_: str, value: object = None, **extra: object) -> dict[str, object]:
    event: dict[str, object] = {"process": process, "type": type_, "f": "poll", **extra}
    if value is not None:
        event["value"] = value
    return event


def _op(process: int, type_: str, f: str, value: object = None) -> dict[str, object]:
    event: dict[str, object] = {"process": process, "type": type_, "f": f}
    if value is not None:
        event["value"] = value
    return event


def _record(
    offset: object, value: object, topic: str = "t", partition: object = 0
) -> dict[str, object]:
    return {"topic": topic, "partition": partition, "offset": offset, "value": value}


SEND_A = {"topic": "t", "partition": 0, "value": "a"}

DOCSTRING_EXAMPLE = [
    _send(1, "invoke", SEND_A, time=10),
    _send(1, "ok", {**SEND_A, "offset": 42}, time=20),
    _poll(9, "invoke", time=30),
    _poll(9, "ok", [_record(42, "a")], time=40),
]


def test_the_docstring_example_parses_into_a_send_and_a_poll() -> None:
    history = kafka_history_from_events(DOCSTRING_EXAMPLE)
    assert history.event_count == 4
    send, poll = history.operations
    assert send == Send(
        process=1,
        topic_partition=T0,
        value="a",
        outcome=Outcome.OK,
        offset=42,
        aborted=False,
        invoke_index=0,
        complete_index=1,
        invoke_time=10,
        complete_time=20,
    )
    assert poll == Poll(
        process=9,
        outcome=Outcome.OK,
        records=(Record(T0, 42, "a"),),
        rebalance=False,
        invoke_index=2,
        complete_index=3,
        invoke_time=30,
        complete_time=40,
    )
    assert history.sends == (send,)
    assert history.polls == (poll,)


def test_json_lines_and_a_json_array_give_the_same_history() -> None:
    lines = "\n\n".join(json.dumps(e) for e in DOCSTRING_EXAMPLE) + "\n"
    array = "  \n[" + ",\n".join(json.dumps(e) for e in DOCSTRING_EXAMPLE) + "]"
    assert parse_kafka_history(lines) == parse_kafka_history(array)
    assert parse_kafka_history(lines) == kafka_history_from_events(DOCSTRING_EXAMPLE)


def test_an_empty_history_has_no_operations() -> None:
    assert parse_kafka_history("").operations == ()
    assert parse_kafka_history("[]").operations == ()


def test_operations_come_in_invoke_order_and_unfinished_ones_count_as_info() -> None:
    history = kafka_history_from_events(
        [
            _send(1, "invoke", SEND_A),
            _poll(2, "invoke"),
            _poll(2, "ok", []),
            _send(3, "invoke", {**SEND_A, "value": "b"}),
            _send(1, "info", error="timeout"),
        ]
    )
    first, poll, unfinished = history.operations
    assert isinstance(first, Send)
    assert (first.value, first.outcome, first.offset, first.complete_index) == (
        "a",
        Outcome.INFO,
        None,
        4,
    )
    assert isinstance(poll, Poll)
    assert poll.records == ()
    assert isinstance(unfinished, Send)
    assert (unfinished.outcome, unfinished.complete_index, unfinished.last_index) == (
        Outcome.INFO,
        None,
        3,
    )


def test_a_send_completion_may_repeat_the_record_or_give_only_the_offset() -> None:
    history = kafka_history_from_events(
        [
            _send(1, "invoke", SEND_A),
            _send(1, "ok", {"offset": 0}),
            _send(1, "invoke", {**SEND_A, "value": "b"}),
            _send(1, "fail", {**SEND_A, "value": "b"}),
            _send(1, "invoke", {**SEND_A, "value": "c"}),
            _send(1, "info"),
        ]
    )
    outcomes = [(op.value, op.outcome, op.offset) for op in history.sends]
    assert outcomes == [("a", Outcome.OK, 0), ("b", Outcome.FAIL, None), ("c", Outcome.INFO, None)]


@pytest.mark.parametrize("where", ["invoke", "completion"])
def test_aborted_on_the_invoke_or_the_completion_marks_the_send(where: str) -> None:
    invoke = _send(1, "invoke", SEND_A, **({"aborted": True} if where == "invoke" else {}))
    ok = _send(1, "ok", {"offset": 3}, **({"aborted": True} if where == "completion" else {}))
    (send,) = kafka_history_from_events([invoke, ok]).sends
    assert send.aborted
    assert not send.may_be_visible


def test_a_failed_send_may_never_be_visible_and_an_info_one_may() -> None:
    history = kafka_history_from_events(
        [
            _send(1, "invoke", SEND_A),
            _send(1, "fail"),
            _send(1, "invoke", {**SEND_A, "value": "b"}),
            _send(1, "info"),
        ]
    )
    assert [s.may_be_visible for s in history.sends] == [False, True]


def test_a_string_and_an_integer_that_look_alike_are_different_values() -> None:
    history = kafka_history_from_events(
        [
            _send(1, "invoke", {**SEND_A, "value": "1"}),
            _send(1, "ok", {"offset": 0}),
            _send(1, "invoke", {**SEND_A, "value": 1}),
            _send(1, "ok", {"offset": 1}),
        ]
    )
    assert [s.value for s in history.sends] == ["1", 1]


def test_one_value_may_be_sent_to_two_partitions() -> None:
    history = kafka_history_from_events(
        [
            _send(1, "invoke", SEND_A),
            _send(1, "ok", {"offset": 0}),
            _send(1, "invoke", {**SEND_A, "partition": 1}),
            _send(1, "ok", {"offset": 0}),
        ]
    )
    assert [s.topic_partition for s in history.sends] == [T0, TopicPartition("t", 1)]


def test_poll_records_keep_their_order_and_a_rebalance_is_recorded() -> None:
    records = [_record(5, "x", partition=1), _record(3, "y"), _record(4, 7)]
    (poll,) = kafka_history_from_events(
        [_poll(1, "invoke"), _poll(1, "ok", records, rebalance=True)]
    ).polls
    assert poll.records == (
        Record(TopicPartition("t", 1), 5, "x"),
        Record(T0, 3, "y"),
        Record(T0, 4, 7),
    )
    assert poll.rebalance


def test_assign_seek_and_commit_take_one_partition_object_or_an_array() -> None:
    history = kafka_history_from_events(
        [
            _op(
                1,
                "invoke",
                "assign",
                [{"topic": "t", "partition": 0}, {"topic": "u", "partition": 2}],
            ),
            _op(1, "ok", "assign"),
            _op(1, "invoke", "seek", {"topic": "t", "partition": 0, "offset": 7}),
            _op(1, "ok", "seek", {"topic": "t", "partition": 0, "offset": 7}),
            _op(1, "invoke", "seek", [{"topic": "t", "partition": 0}]),
            _op(1, "info", "seek"),
            _op(1, "invoke", "commit", {"topic": "t", "partition": 0, "offset": 9}),
            _op(1, "ok", "commit"),
            _op(1, "invoke", "commit"),
            _op(1, "fail", "commit"),
        ]
    )
    assign, seek, seek_start, commit, empty_commit = history.operations
    assert assign == Assign(
        process=1,
        outcome=Outcome.OK,
        positions=(Position(T0, None), Position(TopicPartition("u", 2), None)),
        invoke_index=0,
        complete_index=1,
    )
    assert isinstance(seek, Seek)
    assert seek.positions == (Position(T0, 7),)
    assert isinstance(seek_start, Seek)
    assert (seek_start.positions, seek_start.outcome) == ((Position(T0, None),), Outcome.INFO)
    assert isinstance(commit, Commit)
    assert commit.positions == (Position(T0, 9),)
    assert isinstance(empty_commit, Commit)
    assert empty_commit.positions == ()


def test_unknown_fields_are_ignored() -> None:
    events = [{**e, "node": "n1", "error": None} for e in DOCSTRING_EXAMPLE]
    assert kafka_history_from_events(events) == kafka_history_from_events(DOCSTRING_EXAMPLE)


def test_a_record_of_a_new_partition_after_known_ones_is_accepted() -> None:
    (poll,) = kafka_history_from_events(
        [_poll(1, "invoke"), _poll(1, "ok", [_record(0, "a"), _record(0, "b", topic="new")])]
    ).polls
    assert [r.topic_partition for r in poll.records] == [T0, TopicPartition("new", 0)]


# (events, message fragment, event number named in the message)
BAD_EVENTS: dict[str, tuple[list[object], str]] = {
    "not an object": ([[1, 2]], "event 1: expected a JSON object, got an array"),
    "missing process": ([{"type": "invoke", "f": "poll"}], "event 1: missing field 'process'"),
    "boolean process": (
        [{"process": True, "type": "invoke", "f": "poll"}],
        "'process' must be an integer, got true",
    ),
    "unknown type": (
        [{"process": 1, "type": "start", "f": "poll"}],
        'unknown type "start" (expected one of: invoke, ok, fail, info)',
    ),
    "unhashable type": ([{"process": 1, "type": ["ok"], "f": "poll"}], "unknown type ["),
    "unknown f": (
        [{"process": 1, "type": "invoke", "f": "read"}],
        'unknown f "read" (expected one of: send, poll, assign, seek, commit)',
    ),
    "string time": ([_poll(1, "invoke", time="5")], "'time' must be an integer"),
    "decreasing time": (
        [_poll(1, "invoke", time=5), _poll(1, "ok", [], time=4)],
        "event 2: time 4 is earlier than time 5 of event 1",
    ),
    "send without value": ([_send(1, "invoke")], "event 1: missing field 'value'"),
    "send value not an object": ([_send(1, "invoke", "a")], "a send's value must be an object"),
    "send without topic": (
        [_send(1, "invoke", {"partition": 0, "value": "a"})],
        "missing field 'topic'",
    ),
    "empty topic": (
        [_send(1, "invoke", {**SEND_A, "topic": ""})],
        "'topic' must be a non-empty string",
    ),
    "negative partition": (
        [_send(1, "invoke", {**SEND_A, "partition": -1})],
        "'partition' must be >= 0, got -1",
    ),
    "float record value": (
        [_send(1, "invoke", {**SEND_A, "value": 1.5})],
        "a record value must be a string or an integer, got 1.5",
    ),
    "boolean record value": (
        [_send(1, "invoke", {**SEND_A, "value": False})],
        "a record value must be a string or an integer, got false",
    ),
    "null record value": (
        [_send(1, "invoke", {**SEND_A, "value": None})],
        "a record value must be a string or an integer, got null",
    ),
    "offset on an invoke": (
        [_send(1, "invoke", {**SEND_A, "offset": 3})],
        "only an ok send has an offset (this is a send invoke)",
    ),
    "ok send without offset": (
        [_send(1, "invoke", SEND_A), _send(1, "ok", SEND_A)],
        "event 2: an ok send must carry the acknowledged 'offset'",
    ),
    "ok send without value": (
        [_send(1, "invoke", SEND_A), _send(1, "ok")],
        "event 2: a send's value must be an object, got null",
    ),
    "info send with offset": (
        [_send(1, "invoke", SEND_A), _send(1, "info", {"offset": 3})],
        "event 2: only an ok send has an offset (this is a send info)",
    ),
    "negative offset": (
        [_send(1, "invoke", SEND_A), _send(1, "ok", {"offset": -1})],
        "'offset' must be >= 0, got -1",
    ),
    "completion sends another value": (
        [_send(1, "invoke", SEND_A), _send(1, "ok", {**SEND_A, "value": "b", "offset": 0})],
        'event 2: completion sends "b" to t/0, its invoke (event 1) "a" to t/0',
    ),
    "completion sends 1 for '1'": (
        [
            _send(1, "invoke", {**SEND_A, "value": "1"}),
            _send(1, "ok", {**SEND_A, "value": 1, "offset": 0}),
        ],
        "completion sends 1 to t/0",
    ),
    "completion without topic": (
        [_send(1, "invoke", SEND_A), _send(1, "ok", {"value": "a", "offset": 0})],
        "event 2: missing field 'topic'",
    ),
    "repeated send value": (
        [_send(1, "invoke", SEND_A), _send(1, "fail"), _send(2, "invoke", SEND_A)],
        'event 3: value "a" was already sent to t/0 at event 1',
    ),
    "poll invoke with a value": ([_poll(1, "invoke", [])], "a poll's invoke must have value null"),
    "ok poll without records": (
        [_poll(1, "invoke"), _poll(1, "ok")],
        "event 2: an ok poll's value must be an array of records, got null",
    ),
    "ok poll with an object": (
        [_poll(1, "invoke"), _poll(1, "ok", _record(0, "a"))],
        "an ok poll's value must be an array of records",
    ),
    "failed poll with records": (
        [_poll(1, "invoke"), _poll(1, "fail", [_record(0, "a")])],
        "event 2: a poll's fail must have value null",
    ),
    "record not an object": (
        [_poll(1, "invoke"), _poll(1, "ok", [_record(0, "a"), 7])],
        "event 2, record 2: expected an object, got 7",
    ),
    "record without offset": (
        [_poll(1, "invoke"), _poll(1, "ok", [{"topic": "t", "partition": 0, "value": "a"}])],
        "event 2, record 1: missing field 'offset'",
    ),
    "record with a boolean partition of a known partition": (
        [
            _poll(1, "invoke"),
            _poll(1, "ok", [_record(0, "a", partition=1), _record(1, "b", partition=True)]),
        ],
        "event 2, record 2: 'partition' must be an integer, got true",
    ),
    "record with a float offset": (
        [_poll(1, "invoke"), _poll(1, "ok", [_record(0, "a"), _record(1.0, "b")])],
        "event 2, record 2: 'offset' must be an integer, got 1.0",
    ),
    "record with a boolean value": (
        [_poll(1, "invoke"), _poll(1, "ok", [_record(0, True)])],
        "event 2, record 1: a record value must be a string or an integer, got true",
    ),
    "assign without value": ([_op(1, "invoke", "assign")], "missing field 'value' (assign needs"),
    "seek naming a string": (
        [_op(1, "invoke", "seek", ["t"])],
        'event 1, partition 1: a seek names partition objects, got "t"',
    ),
    "commit without offset": (
        [_op(1, "invoke", "commit", {"topic": "t", "partition": 0})],
        "a commit needs an 'offset' per partition",
    ),
    "completion repeats another assignment": (
        [
            _op(1, "invoke", "assign", {"topic": "t", "partition": 0}),
            _op(1, "ok", "assign", {"topic": "t", "partition": 1}),
        ],
        "event 2: completion value differs from the value of its invoke (event 1)",
    ),
    "completion without invoke": (
        [_poll(1, "ok", [])],
        "event 1: ok completion for process 1, which has no outstanding invoke",
    ),
    "invoke while outstanding": (
        [_poll(1, "invoke"), _send(1, "invoke", SEND_A)],
        "event 2: process 1 invoked send while its poll from event 1 is still outstanding",
    ),
    "completion of another f": (
        [_poll(1, "invoke"), _send(1, "ok", {"offset": 1})],
        "event 2: completion f 'send' does not match f 'poll' of its invoke (event 1)",
    ),
    "aborted not a boolean": (
        [_send(1, "invoke", SEND_A, aborted="yes")],
        "'aborted' must be true or false",
    ),
    "aborted on a poll": ([_poll(1, "invoke", aborted=True)], "'aborted' only applies to sends"),
    "rebalance on a poll invoke": (
        [_poll(1, "invoke", rebalance=True)],
        "'rebalance' only applies to poll completions",
    ),
    "rebalance on a send": (
        [_send(1, "invoke", SEND_A, rebalance=False)],
        "'rebalance' only applies to poll completions",
    ),
}


@pytest.mark.parametrize(("events", "fragment"), BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_a_malformed_event_is_named_with_the_problem(events: list[object], fragment: str) -> None:
    with pytest.raises(KafkaHistoryError) as caught:
        kafka_history_from_events(events)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("event ")


BAD_TEXTS = {
    "bad JSON on line 2": (
        '{"process": 1, "type": "invoke", "f": "poll"}\n{"process":\n',
        "event 2 (line 2): bad JSON",
    ),
    "NaN": (
        '{"process": 1, "type": "invoke", "f": "poll", "time": NaN}',
        "bad JSON: NaN is not a JSON value",
    ),
    "truncated array": ('[{"process": 1, "type": "invoke", "f": "poll"}', "history: bad JSON"),
    "deeply nested": ("[" * 100_000 + "]" * 100_000, "history: bad JSON"),
    "line numbers count blank lines": ('\n\n{"process": \n', "event 1 (line 3): bad JSON"),
}


@pytest.mark.parametrize(("text", "fragment"), BAD_TEXTS.values(), ids=BAD_TEXTS.keys())
def test_bad_json_is_a_history_error(text: str, fragment: str) -> None:
    with pytest.raises(KafkaHistoryError) as caught:
        parse_kafka_history(text)
    assert fragment in str(caught.value)


def test_a_history_error_is_a_value_error() -> None:
    assert issubclass(KafkaHistoryError, ValueError)
