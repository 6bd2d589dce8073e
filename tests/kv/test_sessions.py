"""Sessions lent one write at a time: concurrent writes never share a client id."""

from __future__ import annotations

import random
from contextlib import ExitStack

from quorumdb.kv.commands import Command, CommandKind
from quorumdb.kv.sessions import SessionPool
from quorumdb.kv.state_machine import KVStateMachine


def test_writes_in_flight_together_get_different_ids_and_ids_are_reused() -> None:
    pool = SessionPool(random.Random(1))
    with ExitStack() as stack:
        held = [stack.enter_context(pool.lease()) for _ in range(5)]
    assert len({c for c, _ in held}) == 5
    with pool.lease() as (client, seq):
        assert client in {c for c, _ in held}
        assert seq == 2  # that id's next write
    ids = set()
    for _ in range(10):  # one at a time: one id is enough
        with pool.lease() as (client, _seq):
            ids.add(client)
    assert len(ids) == 1


def test_interleaved_writes_of_one_id_lose_the_overtaken_one() -> None:
    """Why the pool exists: under one id, a later seq applied first makes the state
    machine ignore the earlier one (a stale duplicate), which no one then answers."""
    sm = KVStateMachine()
    late = Command(kind=CommandKind.PUT, key=b"a", value=b"2", client=7, seq=2)
    early = Command(kind=CommandKind.PUT, key=b"b", value=b"1", client=7, seq=1)
    assert sm.apply(1, late) is not None
    assert sm.apply(2, early) is None
    assert sm.get(b"b") is None
    # With the pool, the two writes would carry different ids and both apply.
    pool = SessionPool(random.Random(2))
    with pool.lease() as s1, pool.lease() as s2:
        a = Command(kind=CommandKind.PUT, key=b"a", value=b"2", client=s2[0], seq=s2[1])
        b = Command(kind=CommandKind.PUT, key=b"b", value=b"1", client=s1[0], seq=s1[1])
    fresh = KVStateMachine()
    assert fresh.apply(1, a) is not None and fresh.apply(2, b) is not None
    assert fresh.get(b"b") is not None
