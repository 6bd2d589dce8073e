"""Stepping between a Ready and its advance (while the driver persists it): what the core hands
out early (`take_messages`, `take_committed`) and what it must keep back."""

from __future__ import annotations

from quorumdb.raft import MessageType, RawNode, Ready
from quorumdb.raft.testing import Cluster

MT = MessageType


def _persist(c: Cluster, i: int, rd: Ready) -> None:
    st = c.storages[i]
    if rd.entries:
        st.append(rd.entries)
    if rd.hard_state is not None:
        st.set_hard_state(rd.hard_state)


def _three() -> tuple[Cluster, RawNode]:
    c = Cluster([1, 2, 3], seed=1)
    c.campaign(1)
    assert c.leader() == 1
    return c, c.nodes[1]


def _replicate_to_followers(c: Cluster) -> None:
    """Deliver the queue to nodes 2 and 3 and let them persist and acknowledge."""
    c.deliver(2)
    c.deliver(3)
    for i in (2, 3):
        while c.process_ready(i) is not None:
            pass


def test_entries_in_the_ready_being_persisted_are_not_handed_out() -> None:
    c, lead = _three()
    lead.propose(b"a")
    rd = lead.ready()
    c.queue.extend(rd.messages)
    _replicate_to_followers(c)
    # Both followers acknowledged: "a" is committed, but not yet durable on the leader.
    c.deliver(1)
    assert lead.raft.raft_log.committed == rd.entries[-1].index
    assert lead.take_committed() == []
    _persist(c, 1, rd)
    c.queue.extend(rd.persisted_messages)
    lead.advance(rd)
    nxt = lead.ready()
    assert [e.data for e in nxt.committed_entries] == [b"a"]


def test_committed_stable_entries_are_handed_out_once_and_in_order() -> None:
    c, lead = _three()
    lead.propose(b"b")
    assert c.process_ready(1) is not None  # "b" persisted and advanced on the leader
    _replicate_to_followers(c)
    lead.propose(b"c")
    in_flight = lead.ready()  # "c" being persisted
    assert [e.data for e in in_flight.entries] == [b"c"]
    c.queue.extend(in_flight.messages)
    acks = [m for m in c.queue if m.to == 1]
    assert acks and all(m.type == MT.APP_RESP for m in acks)
    c.deliver(1)  # the acks for "b" arrive mid-flight
    got = lead.take_committed()
    assert [e.data for e in got] == [b"b"]
    assert lead.take_committed() == []
    # The new commit index goes out at once, not with the next Ready.
    out = lead.take_messages()
    assert {m.to for m in out if m.type == MT.APP} == {2, 3}
    assert all(m.commit >= got[-1].index for m in out if m.type == MT.APP)
    lead.applied(got)
    assert lead.raft.raft_log.applied == got[-1].index
    _persist(c, 1, in_flight)
    lead.advance(in_flight)
    # Later Readies never hand "b" out again, and "c" follows once committed.
    c.stabilize()
    assert [e.data for e in c.applied[1] if e.data] == [b"c"]
    assert [e.data for e in c.applied[2] if e.data] == [b"b", b"c"]
