"""The transaction history format: what is accepted, and how bad input is reported.

Every error names the event (numbered from 1, as in the file) so a person can find it.
"""

from __future__ import annotations

import json

import pytest

from quorumdb.check.elle import (
    ElleHistoryError,
    Model,
    elle_history_from_events,
    parse_elle_history,
)
from quorumdb.check.history import Outcome
from tests.check.elle_ops import pair, txn


def _jsonl(events: list[dict[str, object]]) -> str:
    return "\n".join(json.dumps(e) for e in events) + "\n"


def test_invokes_pair_with_completions_and_txns_are_in_invoke_order() -> None:
    events = [
        {"process": 1, "type": "invoke", "f": "txn", "value": [["append", "x", 1]], "time": 10},
        {"process": 2, "type": "invoke", "value": [["r", "x", None]], "time": 11},
        {"process": 2, "type": "ok", "value": [["r", "x", [1]]], "time": 12},
        {"process": 1, "type": "ok", "value": [["append", "x", 1]], "time": 13},
        {"process": 3, "type": "invoke", "value": [["append", 7, 2]], "time": 14},
    ]
    history = parse_elle_history(_jsonl(events), "list-append")
    assert history.model is Model.LIST_APPEND
    assert history.timed
    assert history.event_count == 5
    first, second, third = history.txns
    assert (first.id, first.process, first.invoke_index, first.complete_index) == (0, 1, 0, 3)
    assert second.mops == (("r", "x", (1,)),)
    assert (second.invoke_time, second.complete_time) == (11, 12)
    assert third.outcome is Outcome.INFO  # never completed
    assert third.complete_index is None
    assert third.mops == (("append", 7, 2),)  # integer keys stay integers


def test_a_json_array_is_accepted_and_time_is_optional() -> None:
    events = pair(0, txn("ax1ry"))
    history = parse_elle_history(json.dumps(events), "list-append")
    assert not history.timed
    assert history.txns[0].mops == (("append", "x", 1), ("r", "y", None))


def test_failed_and_indeterminate_transactions_keep_their_invoke_micro_ops() -> None:
    """What a failed or info transaction read is unknown: its reads stay None."""
    events = [
        {"process": 0, "type": "invoke", "value": [["r", "x", None], ["w", "x", 3]]},
        {"process": 0, "type": "info", "value": [["r", "x", 9], ["w", "x", 3]]},
        {"process": 0, "type": "invoke", "value": [["w", "y", 4]]},
        {"process": 0, "type": "fail"},
    ]
    info, fail = elle_history_from_events(events, "rw-register").txns
    assert info.outcome is Outcome.INFO
    assert info.mops == (("r", "x", None), ("w", "x", 3))
    assert fail.outcome is Outcome.FAIL


BAD = {
    "not an object": ("[[1, 2]]", "event 1: expected a JSON object, got an array"),
    "bad JSON": ('{"process": 1,\n', "event 1 (line 1): bad JSON"),
    "missing process": ('{"type": "invoke", "value": []}', "event 1: missing field 'process'"),
    "bool process": (
        '{"process": true, "type": "invoke", "value": []}',
        "event 1: 'process' must be an integer",
    ),
    "unknown type": ('{"process": 1, "type": "done"}', 'event 1: unknown type "done"'),
    "wrong f": (
        '{"process": 1, "type": "invoke", "f": "read", "value": []}',
        "event 1: 'f' must be \"txn\"",
    ),
    "value not a list": (
        '{"process": 1, "type": "invoke", "value": {"x": 1}}',
        "event 1: 'value' must be a list of micro-operations",
    ),
    "invoke without value": (
        '{"process": 1, "type": "invoke"}',
        "event 1: missing field 'value'",
    ),
    "short micro-op": (
        '{"process": 1, "type": "invoke", "value": [["append", "x"]]}',
        "event 1: micro-op 1 must be a list [f, key, value]",
    ),
    "register op in a list history": (
        '{"process": 1, "type": "invoke", "value": [["w", "x", 1]]}',
        'event 1: micro-op 1: unknown micro-op "w" for model list-append',
    ),
    "float key": (
        '{"process": 1, "type": "invoke", "value": [["r", 1.5, null]]}',
        "event 1: micro-op 1: a key must be an integer or a string",
    ),
    "string element": (
        '{"process": 1, "type": "invoke", "value": [["append", "x", "a"]]}',
        "event 1: micro-op 1: append needs an integer value",
    ),
    "read filled in an invoke": (
        '{"process": 1, "type": "invoke", "value": [["r", "x", [1]]]}',
        "event 1: micro-op 1: a read's value must be null in the invoke",
    ),
    "completion without invoke": (
        '{"process": 4, "type": "ok", "value": []}',
        "event 1: ok completion for process 4, which has no outstanding invoke",
    ),
    "two invokes outstanding": (
        _jsonl([pair(1, txn("ax1"))[0], pair(1, txn("ax2"))[0]]),
        "event 2: process 1 invoked a transaction while its transaction from event 1 is "
        "still outstanding",
    ),
    "ok without value": (
        _jsonl([pair(1, txn("ax1"))[0], {"process": 1, "type": "ok"}]),
        "event 2: an ok completion needs a 'value'",
    ),
    "completion disagrees": (
        _jsonl(
            [pair(1, txn("ax1"))[0], {"process": 1, "type": "ok", "value": [["append", "x", 2]]}]
        ),
        'event 2: micro-op 1 ["append", "x", 2] does not match ["append", "x", 1] of its '
        "invoke (event 1)",
    ),
    "completion has fewer micro-ops": (
        _jsonl(
            [pair(1, txn("ax1ry"))[0], {"process": 1, "type": "ok", "value": [["append", "x", 1]]}]
        ),
        "event 2: the completion has 1 micro-ops, its invoke (event 1) has 2",
    ),
    "list read of a non-list": (
        _jsonl([pair(1, txn("ry"))[0], {"process": 1, "type": "ok", "value": [["r", "y", 3]]}]),
        "event 2: micro-op 1: a list read returns a list of integers or null",
    ),
    "duplicate append": (
        _jsonl([*pair(1, txn("ax1")), *pair(2, txn("ay2ax1"))]),
        'event 3: micro-op 2 appends 1 to key "x", which event 1 already appends',
    ),
    "decreasing time": (
        _jsonl(
            [
                {**pair(1, txn("ax1"))[0], "time": 5},
                {**pair(1, txn("ax1"))[1], "time": 4},
            ]
        ),
        "event 2: time 4 is earlier than time 5 of event 1",
    ),
}


@pytest.mark.parametrize(("text", "message"), BAD.values(), ids=BAD.keys())
def test_bad_input_names_the_event(text: str, message: str) -> None:
    with pytest.raises(ElleHistoryError) as raised:
        parse_elle_history(text, "list-append")
    assert message in str(raised.value)


def test_register_histories_have_their_own_micro_ops() -> None:
    with pytest.raises(ElleHistoryError, match='unknown micro-op "append" for model rw-register'):
        parse_elle_history(_jsonl(pair(1, txn("ax1"))), "rw-register")
    bad_read = [
        pair(1, [["r", "x", None]])[0],
        {"process": 1, "type": "ok", "value": [["r", "x", [1]]]},
    ]
    with pytest.raises(ElleHistoryError, match="a register read returns an integer or null"):
        elle_history_from_events(bad_read, "rw-register")
    with pytest.raises(ElleHistoryError, match="which event 1 already writes"):
        elle_history_from_events(
            [*pair(1, txn("wx1", model="rw-register")), *pair(1, txn("wx1", model="rw-register"))],
            "rw-register",
        )
    # The same value in two registers is fine: uniqueness is per key.
    elle_history_from_events(
        [*pair(1, txn("wx1", model="rw-register")), *pair(1, txn("wy1", model="rw-register"))],
        "rw-register",
    )


def test_an_unknown_model_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown model 'set-add'"):
        parse_elle_history("", "set-add")
