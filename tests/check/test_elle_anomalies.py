"""Planted anomalies, one class at a time, and what each isolation level makes of them.

Each history is the smallest we could write that shows its class and nothing else. Three
classes cannot be had alone under Elle's inference rules, and the tests say so: a list-append
G1b read of ``[1]`` before the writer's ``2`` also misses that ``2`` (G-single, as Elle's own
G1b test shows), so G1b alone is planted in a register; a lost update (two transactions read
the same version and both write) always leaves each one missing the other's write, a G2-item
cycle; and a cyclic version order of registers is made of reads, so it brings a wr cycle.
"""

from __future__ import annotations

import itertools
import json
import random

import pytest

from quorumdb.check import ElleResult, check_elle, elle_to_json, render_elle
from quorumdb.check.elle import (
    ElleHistoryError,
    Isolation,
    Kind,
    forbidden_kinds,
    parse_elle_history,
)
from tests.check.elle_generate import serial_history
from tests.check.elle_ops import history, pair, txn

LEVELS = [level.value for level in Isolation]

# (name, model, events, the kinds found, the weakest level that forbids them)
PLANTED = [
    ("G0", "list-append", history("ax1ay1", "ax2ay2", "rx12ry21"), {"G0"}, "read-uncommitted"),
    ("G1a", "list-append", history(("fail", "ax1"), "rx1"), {"G1a"}, "read-committed"),
    ("G1b", "rw-register", history("wx1wx2", "rx1", model="rw-register"), {"G1b"},
     "read-committed"),
    ("G1b+G-single", "list-append", history("ax1ax2", "rx1"), {"G1b", "G-single"},
     "read-committed"),
    ("G1c", "list-append", history("ax1ry1", "ax2ay1", "rx12ry1"), {"G1c"}, "read-committed"),
    ("G1c-register", "rw-register", history("wx1ry1", "wy1rx1", model="rw-register"), {"G1c"},
     "read-committed"),
    ("G-single", "list-append", history("ax1ay1", "ax2ry", "rx12"), {"G-single"},
     "snapshot-isolation"),
    ("G-nonadjacent", "list-append", history("ax1", "rx1ry", "ay1", "ry1rx"),
     {"G-nonadjacent"}, "snapshot-isolation"),
    ("G2-item", "list-append", history("ax1ry", "ay1rx"), {"G2-item"}, "serializable"),
    ("G2-item-register", "rw-register",
     history("wx0wy0", "rx0ry0wx1", "rx0ry0wy1", model="rw-register"), {"G2-item"},
     "serializable"),
    ("lost-update", "list-append", history("ax0", "rx0ax1", "rx0ax2"),
     {"lost-update", "G2-item"}, "snapshot-isolation"),
    ("lost-update-register", "rw-register",
     history("wx0", "rx0wx1", "rx0wx2", model="rw-register"), {"lost-update", "G2-item"},
     "snapshot-isolation"),
    ("incompatible-order", "list-append", history("ax1", "ax2", "ax3", "rx12", "rx13"),
     {"incompatible-order"}, "read-committed"),
    ("duplicate-elements", "list-append", history("ax1", "rx11"), {"duplicate-elements"},
     "read-uncommitted"),
    ("internal", "list-append", history("ax1rx"), {"internal"}, "snapshot-isolation"),
    ("internal-register", "rw-register", history("wx1rx_", model="rw-register"), {"internal"},
     "snapshot-isolation"),
    ("garbage-read", "list-append", history("ax1", "rx19"), {"garbage-read"},
     "read-uncommitted"),
    ("garbage-read-register", "rw-register", history("rx7", model="rw-register"),
     {"garbage-read"}, "read-uncommitted"),
    ("cyclic-versions", "rw-register",
     history("rx2wx1", "rx1wx2", model="rw-register"), {"cyclic-versions", "G1c"},
     "read-uncommitted"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "events", "kinds", "_"), [p[1:] for p in PLANTED], ids=[p[0] for p in PLANTED]
)
def test_a_planted_anomaly_is_found_and_nothing_else(
    model: str, events: list[dict[str, object]], kinds: set[str], _: str
) -> None:
    """At serializable: data edges only (one transaction after another, every history here
    also breaks real-time order, which strict serializability would add)."""
    result = check_elle(events, model=model, isolation="serializable")
    assert {a.kind.value for a in result.anomalies} == kinds
    for anomaly in result.anomalies:
        assert anomaly.ops, anomaly
        assert anomaly.explanation
        assert anomaly.kind.is_cycle == bool(anomaly.cycle)
        if anomaly.cycle:
            # A cycle: consecutive steps chain, and the last returns to the first.
            steps = anomaly.cycle
            assert steps[-1].target == steps[0].source
            assert all(a.target == b.source for a, b in itertools.pairwise(steps))


@pytest.mark.parametrize(
    ("model", "events", "weakest"),
    [(p[1], p[2], p[4]) for p in PLANTED],
    ids=[p[0] for p in PLANTED],
)
def test_each_level_forbids_what_it_should(
    model: str, events: list[dict[str, object]], weakest: str
) -> None:
    """Valid below the weakest level that forbids the class, invalid from it up."""
    verdicts = {level: check_elle(events, model=model, isolation=level).valid for level in LEVELS}
    cut = LEVELS.index(weakest)
    assert verdicts == {level: n < cut for n, level in enumerate(LEVELS)}


def test_the_levels_nest() -> None:
    """Every level forbids at least what the weaker ones do (Adya's hierarchy)."""
    levels = list(Isolation)
    for weaker, stronger in itertools.pairwise(levels):
        assert forbidden_kinds(weaker) < forbidden_kinds(stronger)
    assert Kind.G2_ITEM not in forbidden_kinds(Isolation.SNAPSHOT_ISOLATION)
    assert Kind.LOST_UPDATE in forbidden_kinds(Isolation.SNAPSHOT_ISOLATION)
    assert Kind.G_SINGLE_REALTIME not in forbidden_kinds(Isolation.SERIALIZABLE)


@pytest.mark.parametrize("model", ["list-append", "rw-register"])
@pytest.mark.parametrize("overlap", [0, 25])
@pytest.mark.parametrize("seed", range(4))
def test_serial_executions_have_no_anomaly(model: str, overlap: int, seed: int) -> None:
    run = serial_history(
        random.Random(seed),
        model=model,
        txns=400,
        processes=5,
        keys=6,
        max_writes_per_key=12,
        overlap=overlap,
        fail_percent=5,
        info_percent=5,
    )
    for level in LEVELS:
        result = check_elle(run.events, model=model, isolation=level)
        assert result.anomalies == (), render_elle(result)
        assert result.valid
    assert result.txn_count == 400
    assert result.edge_count > 400  # the graph is not trivially empty


def test_an_info_transaction_counts_only_when_a_read_saw_it() -> None:
    seen = [*pair(0, txn("ax1"), "info"), *pair(1, txn("rx1"))]
    unseen = [*pair(0, txn("ax1"), "info"), *pair(1, txn("ry"))]
    assert check_elle(seen, model="list-append").graph_txns == 2
    assert check_elle(unseen, model="list-append").graph_txns == 1


def test_an_info_transaction_has_no_real_time_successors() -> None:
    """It may have committed any time after its invoke: a read that misses its append, though
    invoked after its (info) completion, is no anomaly. An ok writer would be one."""
    for outcome, valid in (("info", True), ("ok", False)):
        events = [*pair(0, txn("ax1"), outcome), *pair(1, txn("rx")), *pair(2, txn("rx1"))]
        result = check_elle(events, model="list-append", isolation="strict-serializable")
        assert result.valid is valid


def test_timestamps_decide_real_time_when_every_event_has_one() -> None:
    """A write completing at time 5 and a read invoked at time 5 are concurrent: the read may
    miss the write. Invoked at time 6 it may not."""
    for invoke_time, valid in ((5, True), (6, False)):
        events = [*pair(0, txn("ax1")), *pair(1, txn("rx")), *pair(2, txn("rx1"))]
        for event, time in zip(events, [1, 5, invoke_time, 7, 8, 9], strict=True):
            event["time"] = time
        result = check_elle(events, model="list-append", isolation="strict-serializable")
        assert result.valid is valid, render_elle(result)


def test_the_api_takes_text_events_or_a_parsed_history() -> None:
    events = history("ax1ry", "ay1rx")
    text = "\n".join(json.dumps(e) for e in events)
    parsed = parse_elle_history(text, "list-append")
    for given in (events, text, parsed, "[" + ",".join(json.dumps(e) for e in events) + "]"):
        result = check_elle(given, model="list-append")
        assert [a.kind for a in result.anomalies] == [Kind.G2_ITEM]
    assert check_elle(parsed, isolation="snapshot").isolation is Isolation.SNAPSHOT_ISOLATION
    with pytest.raises(ValueError, match="model is required"):
        check_elle(events)
    with pytest.raises(ValueError, match="rw-register asked for a list-append"):
        check_elle(parsed, model="rw-register")
    with pytest.raises(ValueError, match="unknown isolation level 'linearizable'"):
        check_elle(events, model="list-append", isolation="linearizable")
    with pytest.raises(ElleHistoryError):
        check_elle("[1]", model="list-append")


def test_json_names_the_transactions_and_the_edges() -> None:
    result: ElleResult = check_elle(
        history("ax1ay1", "ax2ry", "rx12"), model="list-append", isolation="serializable"
    )
    data = json.loads(json.dumps(elle_to_json(result)))
    assert data["valid"] is False
    assert data["forbidden_kinds"] == ["G-single"]
    assert data["anomaly_counts"] == {"G-single": 1}
    (anomaly,) = data["anomalies"]
    assert [op["name"] for op in anomaly["ops"]] == ["T1", "T2"]
    assert anomaly["ops"][1]["value"] == [["append", "x", 2], ["r", "y", None]]
    assert anomaly["ops"][1]["invoke_event"] == 3
    assert [(s["from"], s["kind"], s["key"], s["to"]) for s in anomaly["cycle"]] == [
        ("T1", "ww", "x", "T2"),
        ("T2", "rw", "y", "T1"),
    ]


def test_text_lists_forbidden_anomalies_then_allowed_ones() -> None:
    events = history("ax1ry", "ay1rx", "az5", "rz55")
    text = render_elle(check_elle(events, model="list-append", isolation="snapshot-isolation"))
    lines = text.splitlines()
    assert lines[0].startswith("invalid: list-append history at snapshot-isolation")
    assert "forbidden: duplicate-elements; also found (allowed): G2-item" in lines[0]
    assert text.index("duplicate-elements:") < text.index("G2-item (allowed at this level):")
    assert "T1 -rw(y)-> T2 -rw(x)-> T1" in text
    assert '  - T1 read the initial (empty) state of "y", which T2 changed by appending 1' in text


def test_many_readers_of_one_version_cost_linear_edges_and_still_close_cycles() -> None:
    """A store answering every read with the initial state while blind writes go on: 2,000
    readers of nil and 2,000 writers would be 4 million rw edges; through a hub they are a
    few thousand, and the cycles through them are found and told as plain rw edges."""
    events: list[dict[str, object]] = []
    for n in range(2000):
        events += pair(0, [["w", "x", n + 1]])
    for _ in range(2000):
        events += pair(1, [["r", "x", None]])
    assert check_elle(events, model="rw-register", isolation="serializable").valid
    result = check_elle(events, model="rw-register", isolation="strict-serializable")
    assert result.edge_count < 20_000
    (anomaly,) = result.anomalies
    assert anomaly.kind is Kind.G_SINGLE_REALTIME
    assert anomaly.explanation == "T1 -realtime-> T2 -rw(x)-> T1"
    assert anomaly.cycle[1].explanation == (
        'T2 read the initial (nil) state of "x", which T1 overwrote with 2000'
    )


def test_readers_that_also_write_do_not_reach_themselves_through_a_hub() -> None:
    """Six transactions each read x = nil and then write x: a lost update, and each misses
    the others' writes (G2-item), but no transaction depends on itself."""
    events: list[dict[str, object]] = []
    for n in range(6):
        events += pair(n, [["r", "x", None], ["w", "x", n + 1]])
    result = check_elle(events, model="rw-register", isolation="serializable")
    assert {a.kind.value for a in result.anomalies} == {"lost-update", "G2-item"}
    (cycle,) = [a for a in result.anomalies if a.cycle]
    assert len(cycle.ops) == 2
    assert all(step.source != step.target for step in cycle.cycle)


def test_an_aborted_element_is_reported_once_with_its_first_reader_and_count() -> None:
    """One G1a per element a failed transaction appended, naming the first read that held it
    and how many did; the same whether the key's reads agree (one pass) or not (a scan)."""
    agreeing = history(("fail", "ax1"), "ax2", "ry", "rx1", "rx12", "rx12")
    disagreeing = history(("fail", "ax1"), "ax2", "ax3", "ry", "rx1", "rx12", "rx13")
    for events, reads in ((agreeing, 3), (disagreeing, 3)):
        result = check_elle(events, model="list-append", isolation="read-committed")
        (g1a,) = [a for a in result.anomalies if a.kind is Kind.G1A]
        assert g1a.ops[0].mops == (("r", "x", (1,)),)
        assert g1a.ops[1].outcome.value == "fail"
        assert g1a.explanation == (
            f'T1 read "x" = [1], which holds 1, appended by T2, which failed ({reads} reads saw it)'
        )
    garbage = check_elle(history("ax2", "rx92", "rx929"), model="list-append")
    assert [a.explanation for a in garbage.anomalies if a.kind is Kind.GARBAGE_READ] == [
        'T1 read "x" = [9, 2], which holds 9, an element no transaction appended (2 reads saw it)'
    ]
