"""Properties over generated histories.

1. A serial execution (transactions applied one after another to a model, recorded as a
   history, with timings that may look concurrent but respect the serial order) is strict
   serializable, so the checker must find no anomaly at all, at any level.
2. Reordering a serial history plants a known anomaly, which must be flagged:
   - moving a transaction before the writer whose element it read (it now completed before
     that writer was invoked, yet saw its write): invalid at strict-serializable, while the
     data dependencies alone still have a serial order (valid at serializable);
   - making a read stale (dropping the last element it saw, appended by a transaction that
     completed before the read began): invalid at strict-serializable;
   - letting a read-modify-write see the version the previous read-modify-write of the key
     saw, as if they ran side by side: a lost update, invalid even at snapshot isolation.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from quorumdb.check import check_elle, render_elle
from quorumdb.check.elle import Isolation
from tests.check.elle_generate import SerialRun, serial_history

LEVELS = [level.value for level in Isolation]


@st.composite
def serial_runs(
    draw: st.DrawFn, *, model: str | None = None, overlap: bool = True
) -> tuple[str, SerialRun]:
    chosen = model or draw(st.sampled_from(["list-append", "rw-register"]))
    run = serial_history(
        random.Random(draw(st.integers(0, 2**32))),
        model=chosen,
        txns=draw(st.integers(1, 60)),
        processes=draw(st.integers(1, 5)),
        keys=draw(st.integers(1, 4)),
        mops_per_txn=draw(st.integers(1, 4)),
        read_percent=draw(st.sampled_from([0, 30, 50, 80, 100])),
        max_writes_per_key=draw(st.integers(1, 8)),
        overlap=draw(st.integers(0, 40)) if overlap else 0,
        fail_percent=draw(st.sampled_from([0, 10])),
        info_percent=draw(st.sampled_from([0, 10, 30])),
        timed=draw(st.booleans()),
    )
    return chosen, run


@settings(max_examples=300, derandomize=True, deadline=None)
@given(serial_runs())
def test_a_serial_execution_is_never_flagged(drawn: tuple[str, SerialRun]) -> None:
    model, run = drawn
    for level in LEVELS:
        result = check_elle(run.events, model=model, isolation=level)
        assert result.anomalies == (), render_elle(result)


def _pairs(events: list[dict[str, Any]]) -> list[tuple[int, int | None]]:
    """(invoke index, completion index) of each transaction, in invoke order."""
    open_: dict[int, int] = {}
    spans: dict[int, int | None] = {}
    for n, event in enumerate(events):
        if event["type"] == "invoke":
            open_[event["process"]] = n
            spans[n] = None
        else:
            spans[open_.pop(event["process"])] = n
    return sorted(spans.items())


def _retimed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**event, "time": n} for n, event in enumerate(events)]


@settings(max_examples=200, derandomize=True, deadline=None)
@given(serial_runs(model="list-append", overlap=False), st.integers(0, 10**6))
def test_a_reader_moved_before_its_writer_is_flagged(
    drawn: tuple[str, SerialRun], pick: int
) -> None:
    _, run = drawn
    events = run.events
    spans = _pairs(events)
    writer_of: dict[tuple[object, int], int] = {}
    candidates = []
    for invoke, done in spans:
        if done is None:
            continue
        value = events[done]["value"]
        if events[done]["type"] == "ok":
            for f, key, v in value:
                if f == "r" and v and (key, v[-1]) in writer_of:
                    w_invoke = writer_of[(key, v[-1])]
                    if w_invoke != invoke:
                        candidates.append((invoke, done, w_invoke))
            for f, key, v in value:
                if f == "append":
                    writer_of[(key, v)] = invoke
    assume(candidates)
    invoke, done, w_invoke = candidates[pick % len(candidates)]
    # The reader now runs, start to finish, just before its writer is invoked.
    moved = [events[invoke], events[done]]
    rest = [e for n, e in enumerate(events) if n not in (invoke, done)]
    at = rest.index(events[w_invoke])
    reordered = _retimed([*rest[:at], *moved, *rest[at:]])
    assert check_elle(reordered, model="list-append", isolation="serializable").valid
    result = check_elle(reordered, model="list-append", isolation="strict-serializable")
    assert not result.valid, render_elle(result)
    assert any(a.kind.is_cycle for a in result.forbidden)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(serial_runs(model="list-append", overlap=False), st.integers(0, 10**6))
def test_a_stale_read_is_flagged(drawn: tuple[str, SerialRun], pick: int) -> None:
    _, run = drawn
    events = [dict(e) for e in run.events]
    spans = _pairs(events)
    ok_writer: dict[tuple[object, int], int] = {}
    candidates = []
    for invoke, done in spans:
        if done is None or events[done]["type"] != "ok":
            continue
        value = events[done]["value"]
        own = {(k, v) for f, k, v in value if f == "append"}
        for m, (f, key, v) in enumerate(value):
            if f == "r" and v and (key, v[-1]) in ok_writer and (key, v[-1]) not in own:
                candidates.append((done, m))
        for f, key, v in value:
            if f == "append":
                ok_writer[(key, v)] = invoke
    assume(candidates)
    done, m = candidates[pick % len(candidates)]
    value = [list(mop) for mop in events[done]["value"]]
    value[m][2] = value[m][2][:-1] or None
    events[done]["value"] = value
    result = check_elle(events, model="list-append", isolation="strict-serializable")
    assert not result.valid, render_elle(result)


def _first_reads_then_appends(value: list[list[Any]]) -> dict[object, tuple[int, list[int]]]:
    """key -> (micro-op index, list read) for each key the transaction read before it first
    appended to it, and then appended to."""
    first: dict[object, tuple[int, list[int]]] = {}
    wrote: set[object] = set()
    out: dict[object, tuple[int, list[int]]] = {}
    for m, (f, key, v) in enumerate(value):
        if f == "r" and key not in first and key not in wrote:
            first[key] = (m, list(v or []))
        elif f == "append":
            if key not in wrote and key in first:
                out[key] = first[key]
            wrote.add(key)
    return out


@st.composite
def busy_serial_runs(draw: st.DrawFn) -> tuple[str, SerialRun]:
    """Serial list-append runs on one or two keys, where read-modify-writes abound."""
    run = serial_history(
        random.Random(draw(st.integers(0, 2**32))),
        model="list-append",
        txns=draw(st.integers(2, 40)),
        processes=draw(st.integers(1, 4)),
        keys=draw(st.integers(1, 2)),
        mops_per_txn=draw(st.integers(2, 4)),
        max_writes_per_key=1000,
    )
    return "list-append", run


@settings(max_examples=200, derandomize=True, deadline=None)
@given(busy_serial_runs(), st.integers(0, 10**6))
def test_two_read_modify_writes_made_concurrent_are_a_lost_update(
    drawn: tuple[str, SerialRun], pick: int
) -> None:
    """T1 read k = R and appended e; T2 read k = R + [..., e] and appended too. Rewriting
    T2's read to R makes both update the same version: a lost update."""
    _, run = drawn
    events = [dict(e) for e in run.events]
    rmw: dict[tuple[object, int], tuple[int, list[int]]] = {}  # (key, element) -> T1's read
    candidates = []
    for _, done in _pairs(events):
        if done is None or events[done]["type"] != "ok":
            continue
        value = events[done]["value"]
        updates = _first_reads_then_appends(value)
        for key, (m, seen) in updates.items():
            if seen and (key, seen[-1]) in rmw:
                candidates.append((done, m, rmw[(key, seen[-1])][1]))
        for key, (m, seen) in updates.items():
            for f, k, v in value:
                if f == "append" and k == key:
                    rmw[(key, v)] = (m, seen)
    assume(candidates)
    done, m, earlier = candidates[pick % len(candidates)]
    value = [list(mop) for mop in events[done]["value"]]
    value[m][2] = earlier or None
    events[done]["value"] = value
    result = check_elle(events, model="list-append", isolation="snapshot-isolation")
    assert "lost-update" in {a.kind.value for a in result.forbidden}, render_elle(result)
