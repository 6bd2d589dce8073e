"""The work a node does while its WAL write runs (the host's mid-flight path), scripted.

Node 1 hosts one KV shard with peers 2 and 3 played by hand: every message node 1 sends them
is recorded, and they answer only when a test says so. The syncer runs a write only when
told (`QueuedSyncer.run_all`), so a test can hold a write open and look at what happens
meanwhile. This is what makes the mid-flight path run in a real cluster (see the note in
`NodeHost`'s docstring): acknowledgements for entries of an earlier write arrive while a
later write is outstanding.
"""

from __future__ import annotations

from pathlib import Path

from quorumdb.host.config import Member, NodeConfig
from quorumdb.host.group import Group
from quorumdb.host.pending import Pending
from quorumdb.kv.commands import Command, CommandKind, Result
from quorumdb.kv.node_kv import NodeKV, node_kv
from quorumdb.raft import Message, MessageType, PlantedBug
from tests.host.fake_env import FakeEnv, fake_env
from tests.host.memory_log import MemoryNodeLog

MT = MessageType
_SHARD = 1


def _member(node_id: int) -> Member:
    return Member(node_id=node_id, raft=("127.0.0.1", 9100 + node_id), http=("127.0.0.1", 9200))


def _answer(m: Message) -> Message | None:
    """What peer `m.to` answers: grants every (pre-)vote, acks every append and heartbeat."""
    if m.type == MT.PRE_VOTE:
        return Message(type=MT.PRE_VOTE_RESP, to=m.from_, from_=m.to, term=m.term)
    if m.type == MT.VOTE:
        return Message(type=MT.VOTE_RESP, to=m.from_, from_=m.to, term=m.term)
    if m.type == MT.APP:
        last = m.index + len(m.entries)
        return Message(type=MT.APP_RESP, to=m.from_, from_=m.to, term=m.term, index=last)
    if m.type == MT.HEARTBEAT:
        return Message(
            type=MT.HEARTBEAT_RESP,
            to=m.from_,
            from_=m.to,
            term=m.term,
            context=m.context,
            lease_tick=m.lease_tick,
        )
    return None


class _Cluster:
    """Node 1's host and its hand-played peers."""

    def __init__(self, tmp_path: Path, bugs: frozenset[PlantedBug] = frozenset()) -> None:
        members = {i: _member(i) for i in (1, 2, 3)}
        self.fake: FakeEnv = fake_env({i: m.raft for i, m in members.items() if i != 1})
        config = NodeConfig(node_id=1, data_dir=tmp_path, members=members, shards=1)
        self.host = NodeKV(config, MemoryNodeLog(), self.fake.env(), planted_bugs=bugs).host
        self.shard: Group = self.host.groups[_SHARD]

    def sent(self) -> list[tuple[int, Message]]:
        out, self.fake.network.sent = self.fake.network.sent, []
        return out

    def answer(self, msgs: list[tuple[int, Message]], *, by: tuple[int, ...] = (2, 3)) -> None:
        """Peers in `by` answer `msgs` (recorded sends); the rest are lost."""
        for group, m in msgs:
            if m.to in by:
                resp = _answer(m)
                if resp is not None:
                    self.host.deliver(m.to, [_Msg(group, resp)])

    def settle(self) -> None:
        """Run every write and answer everything until nothing moves."""
        for _ in range(100):
            self.host.pump()
            wrote = self.fake.syncer.run_all()
            msgs = self.sent()
            self.answer(msgs)
            if not wrote and not msgs:
                return
        raise AssertionError("the host did not settle")

    def elect(self) -> None:
        """Make node 1 lead every group: tick until it campaigns; the peers vote for it."""
        for _ in range(200):
            self.fake.clock.advance(self.host.config.tick_ms / 1000)  # ticks follow the clock
            self.host.tick()
            self.settle()
            if all(g.raw.is_leader for g in self.host.groups.values()):
                return
        raise AssertionError("node 1 did not become leader")

    def put(self, key: bytes) -> Pending[Result]:
        cmd = Command(kind=CommandKind.PUT, key=key, value=b"v")
        return node_kv(self.host).submit_write(self.shard, cmd)


class _Msg:
    __slots__ = ("group", "message")

    def __init__(self, group: int, message: Message) -> None:
        self.group = group
        self.message = message


def test_acks_for_an_earlier_write_apply_entries_while_the_next_write_runs(
    tmp_path: Path,
) -> None:
    c = _Cluster(tmp_path)
    c.elect()
    a = c.put(b"a")
    c.host.pump()  # round: "a" goes to the WAL write and, at once, to the peers
    appends_a = c.sent()
    assert c.fake.syncer.run_all() == 1  # "a" is durable here; the peers have not answered
    assert not a.done()
    b = c.put(b"b")
    c.host.pump()  # round: "b" goes to the next write, which stays outstanding
    appends_b = c.sent()
    assert len(c.fake.syncer.queued) == 1
    before = c.shard.stats.midflight_applied
    c.answer(appends_a)  # the peers' acks for "a" arrive during the write of "b"
    c.host.pump()
    assert c.shard.stats.midflight_applied == before + 1
    assert a.done()
    assert a.result().revision > 0
    assert not b.done(), "b is answered only once its own write is durable here"
    assert len(c.fake.syncer.queued) == 1  # still the same write
    # The new commit index went to the peers at once, not after the write.
    assert any(m.type == MT.APP and m.commit >= c.shard.sm.applied for _, m in c.sent())
    c.answer(appends_b)
    c.settle()
    assert b.done()


def _put_committed_by_one_peer_during_its_own_write(
    tmp_path: Path, bugs: frozenset[PlantedBug]
) -> tuple[_Cluster, Pending[Result]]:
    c = _Cluster(tmp_path, bugs)
    c.elect()
    x = c.put(b"x")
    c.host.pump()  # "x": its write is outstanding
    appends = c.sent()
    assert len(c.fake.syncer.queued) == 1
    c.answer(appends, by=(2,))  # one peer acks: a quorum only with node 1's own copy
    c.host.pump()
    return c, x


def test_an_entry_is_not_answered_before_its_write_is_durable_here(tmp_path: Path) -> None:
    c, x = _put_committed_by_one_peer_during_its_own_write(tmp_path, frozenset())
    assert not x.done()
    c.fake.syncer.run_all()
    c.host.pump()
    assert x.done()


def test_the_planted_midflight_bug_answers_before_the_write_is_durable(tmp_path: Path) -> None:
    bugs = frozenset({PlantedBug.MIDFLIGHT_BEFORE_DURABLE})
    c, x = _put_committed_by_one_peer_during_its_own_write(tmp_path, bugs)
    # Committed with node 1's copy counted and applied while that copy's write is still
    # outstanding: a crash now would lose it from node 1, and only node 2 has it.
    assert len(c.fake.syncer.queued) == 1
    assert x.done()
