"""What callers outside `raft/` read from a `RawNode` (the host, the Kafka backend, the
simulator's checkers), instead of reaching into the core: term, log bounds, entry terms,
followers' progress, and whether messages wait."""

from __future__ import annotations

from quorumdb.raft.testing import Cluster


def test_a_leader_reports_its_term_log_and_followers() -> None:
    c = Cluster([1, 2, 3], seed=1)
    c.campaign(1)
    lead = c.nodes[1]
    for data in (b"a", b"b"):
        lead.propose(data)
    c.stabilize()
    core = lead.raft
    assert lead.term == core.term >= 1
    assert lead.first_index() == core.raft_log.first_index() == 1
    assert lead.last_index() == core.raft_log.last_index() == 3  # empty entry, a, b
    assert [lead.term_of(i) for i in (0, 1, 3, 4)] == [0, lead.term, lead.term, 0]
    progresses = lead.progresses()
    assert [i for i, _ in progresses] == [1, 2, 3]
    assert all(pr.match == 3 for _, pr in progresses)
    assert c.nodes[2].term == lead.term
