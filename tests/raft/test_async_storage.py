"""Asynchronous storage writes at the RawNode boundary: what the driver may step back, and
how entries handed to the append thread are handed out again when a new leader replaces
them (the scripted walk-through is `testdata/async_storage_writes.txt`)."""

from __future__ import annotations

import pytest

from quorumdb.raft import (
    Config,
    ConfState,
    Entry,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    Rng,
    StepLocalMessageError,
    StorageAppend,
)

MT = MessageType


def _node(*, async_writes: bool = True, st: MemoryStorage | None = None) -> RawNode:
    st = st or MemoryStorage(ConfState(voters=(1, 2, 3)))
    cfg = Config(id=2, pre_vote=False, async_storage_writes=async_writes)
    return RawNode(cfg, st, Rng(lambda _n: 0))


def _write(st: MemoryStorage, sa: StorageAppend) -> None:
    """The append thread's work (durable at once here)."""
    if sa.entries:
        st.append(sa.entries)
    if sa.hard_state is not None:
        st.set_hard_state(sa.hard_state)


def test_storage_responses_only_come_from_the_nodes_own_driver() -> None:
    raw = _node()
    forged = Message(type=MT.STORAGE_APPEND_RESP, to=2, from_=1, index=1, log_term=1)
    with pytest.raises(StepLocalMessageError):
        raw.step(forged)
    lock_step = _node(async_writes=False)
    own = Message(type=MT.STORAGE_APPLY_RESP, to=2, from_=2)
    with pytest.raises(StepLocalMessageError):
        lock_step.step(own)


def test_there_is_no_advance_with_async_storage_writes() -> None:
    raw = _node()
    raw.campaign()
    rd = raw.ready()
    assert rd.storage_append is not None
    with pytest.raises(AssertionError, match="storage responses"):
        raw.advance(rd)


def _app(term: int, prev: tuple[int, int], entries: list[tuple[int, int]]) -> Message:
    return Message(
        type=MT.APP,
        to=2,
        from_=1,
        term=term,
        log_term=prev[0],
        index=prev[1],
        entries=[Entry(term=t, index=i, data=b"x") for t, i in entries],
    )


def test_entries_replaced_while_being_written_are_written_again_and_applied_once_durable() -> None:
    st = MemoryStorage(ConfState(voters=(1, 2, 3)))
    raw = _node(st=st)
    raw.step(_app(1, (0, 0), [(1, 1), (1, 2)]))
    first = raw.ready().storage_append
    assert first is not None
    assert [(e.term, e.index) for e in first.entries] == [(1, 1), (1, 2)]
    # A new leader replaces index 2 while the first write still runs, and commits it.
    new_leader_app = _app(2, (1, 1), [(2, 2)])
    raw.step(Message(**{**_fields(new_leader_app), "commit": 2}))
    second = raw.ready().storage_append
    assert second is not None
    assert [(e.term, e.index) for e in second.entries] == [(2, 2)]
    _write(st, first)
    _write(st, second)
    # Both writes ran; the first reports, but its last entry (1/2) was replaced: it says nothing the
    # core can use (as etcd's stableTo), so nothing is applied yet, committed or not.
    for m in first.responses:
        if m.to == 2:
            raw.step(m)
    assert raw.ready().storage_apply is None
    for m in second.responses:
        if m.to == 2:
            raw.step(m)
    rd = raw.ready()
    assert rd.storage_apply is not None
    assert [(e.term, e.index) for e in rd.storage_apply.entries] == [(1, 1), (2, 2)]


def _fields(m: Message) -> dict[str, object]:
    return {f: getattr(m, f) for f in m.__struct_fields__}
