"""Catching a replica up from peers' segments: the fetch protocol, retries, bad chunks,
retention on the source, and the leadership board that tells nodes who leads what."""

from __future__ import annotations

from pathlib import Path

from quorumdb.kafka.catch_up import (
    CatchUp,
    ChunkStatus,
    FetchSegments,
    SegmentChunk,
    decode_chunk,
    decode_fetch,
    encode,
    serve,
)
from quorumdb.kafka.leadership import LeaderBoard, LeaderClaim, LeaderReport
from quorumdb.kafka.partition import PartitionStateMachine
from tests.kafka.test_partition import Applier, _batch, _sm, _values


class _Net:
    """Requests sent by a `CatchUp`, answered by hand from the peers' state machines."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, FetchSegments]] = []

    def send(self, peer: int, body: bytes) -> bool:
        self.sent.append((peer, decode_fetch(body)))
        return True


def _leader(tmp: Path, name: str = "leader", batches: int = 40) -> PartitionStateMachine:
    sm = _sm(tmp, name)
    a = Applier(sm)
    for i in range(batches):
        a.produce(_batch(3, tag=f"m{i}-"))
    return sm


def _answer(net: _Net, peers: dict[int, PartitionStateMachine]) -> tuple[int, SegmentChunk]:
    peer, req = net.sent.pop(0)
    return peer, decode_chunk(encode(serve(req, peers.get(peer))))


def test_a_replica_fetches_everything_it_misses_in_bounded_chunks(tmp_path: Path) -> None:
    leader = _leader(tmp_path)
    follower = _sm(tmp_path, "f")
    follower.restore(leader.snapshot())
    net = _Net()
    cu = CatchUp(net.send, chunk_bytes=700)
    rounds = 0
    while follower.missing:
        cu.poll(float(rounds), [(7, follower, [1, 2])])
        assert len(net.sent) == 1, "one request in flight per partition"
        peer, chunk = _answer(net, {1: leader})
        assert len(chunk.data) <= 700 + 200  # whole batches, about chunk_bytes
        cu.on_chunk(peer, chunk, follower, float(rounds))
        rounds += 1
    assert rounds > 5
    assert _values(follower) == _values(leader)
    cu.poll(100.0, [(7, follower, [1, 2])])
    assert cu.stats.completed == 1
    assert cu.stats.fetched_bytes == leader.log.size_bytes


def test_a_silent_or_empty_peer_is_replaced_by_the_next(tmp_path: Path) -> None:
    leader = _leader(tmp_path)
    follower = _sm(tmp_path, "f")
    follower.restore(leader.snapshot())
    net = _Net()
    cu = CatchUp(net.send, chunk_bytes=1 << 20, timeout_s=5.0)
    cu.poll(0.0, [(7, follower, [1, 2])])
    assert net.sent[0][0] == 1
    net.sent.clear()  # peer 1 never answers
    cu.poll(1.0, [(7, follower, [1, 2])])
    assert net.sent == [], "no second request before the timeout"
    cu.poll(6.0, [(7, follower, [1, 2])])
    assert net.sent[0][0] == 2
    # Peer 2 does not host the partition: it says so, and peer 1 is asked again.
    peer, chunk = _answer(net, {})
    assert chunk.status == ChunkStatus.UNAVAILABLE
    cu.on_chunk(peer, chunk, follower, 6.0)
    cu.poll(6.1, [(7, follower, [1, 2])])
    peer, chunk = _answer(net, {1: leader})
    assert peer == 1
    cu.on_chunk(peer, chunk, follower, 6.2)
    assert follower.missing == []


def test_a_corrupt_chunk_is_refused_before_it_is_written(tmp_path: Path) -> None:
    leader = _leader(tmp_path)
    follower = _sm(tmp_path, "f")
    follower.restore(leader.snapshot())
    net = _Net()
    cu = CatchUp(net.send, chunk_bytes=1 << 20)
    cu.poll(0.0, [(7, follower, [1, 2])])
    peer, chunk = _answer(net, {1: leader})
    data = bytearray(chunk.data)
    data[100] ^= 0xFF  # a flipped bit in a record (the batch CRC no longer matches)
    bad = SegmentChunk(
        group=chunk.group,
        request=chunk.request,
        offset=chunk.offset,
        status=chunk.status,
        log_start=chunk.log_start,
        data=bytes(data),
    )
    cu.on_chunk(peer, bad, follower, 0.0)
    assert cu.stats.rejected == 1
    assert follower.missing == [(0, leader.high_watermark)]
    assert follower.log.size_bytes == 0
    cu.poll(0.1, [(7, follower, [1, 2])])
    peer, chunk = _answer(net, {2: leader})
    assert peer == 2, "the next peer is asked after a bad chunk"
    cu.on_chunk(peer, chunk, follower, 0.2)
    assert follower.missing == []


def test_a_late_answer_to_an_abandoned_request_is_ignored(tmp_path: Path) -> None:
    leader = _leader(tmp_path)
    follower = _sm(tmp_path, "f")
    follower.restore(leader.snapshot())
    net = _Net()
    cu = CatchUp(net.send, chunk_bytes=1 << 20, timeout_s=1.0)
    cu.poll(0.0, [(7, follower, [1, 2])])
    stale_peer, stale = _answer(net, {1: leader})
    cu.poll(2.0, [(7, follower, [1, 2])])  # timed out: peer 2 is asked
    cu.on_chunk(stale_peer, stale, follower, 2.1)
    assert follower.missing, "the answer to the abandoned request was written"
    peer, chunk = _answer(net, {2: leader})
    cu.on_chunk(peer, chunk, follower, 2.2)
    assert follower.missing == []


def test_retention_on_the_source_ends_the_search_below_its_log_start(tmp_path: Path) -> None:
    leader = _leader(tmp_path, batches=60)
    follower = _sm(tmp_path, "f")
    follower.restore(leader.snapshot())
    leader.give_up_below(leader.high_watermark - 10)  # as retention would
    assert leader.log_start_offset > 0
    net = _Net()
    cu = CatchUp(net.send, chunk_bytes=1 << 20)
    cu.poll(0.0, [(7, follower, [1])])
    peer, chunk = _answer(net, {1: leader})
    assert chunk.status == ChunkStatus.OUT_OF_RANGE
    cu.on_chunk(peer, chunk, follower, 0.0)
    assert follower.log_start_offset == leader.log_start_offset
    while follower.missing:
        cu.poll(1.0, [(7, follower, [1])])
        cu.on_chunk(*_answer(net, {1: leader}), follower, 1.0)
    assert _values(follower, leader.log_start_offset) == _values(leader, leader.log_start_offset)


def test_at_most_partitions_max_fetch_at_once(tmp_path: Path) -> None:
    leader = _leader(tmp_path)
    followers = []
    for i in range(5):
        f = _sm(tmp_path, f"f{i}")
        f.restore(leader.snapshot())
        followers.append((i, f, [1]))
    net = _Net()
    cu = CatchUp(net.send, partitions_max=2)
    cu.poll(0.0, followers)
    assert sorted(req.group for _, req in net.sent) == [0, 1]


def test_the_board_names_the_highest_epoch_claim_of_a_live_node() -> None:
    board = LeaderBoard(expire_s=3.0)
    board.note(LeaderReport(node=1, leads=[LeaderClaim(5, 2, [1, 2])], catching_up=[]), 0.0)
    board.note(LeaderReport(node=2, leads=[LeaderClaim(5, 3, [2, 3])], catching_up=[9]), 1.0)
    found = board.leader(5, 1.5)
    assert found is not None and found[0] == 2 and found[1].epoch == 3
    assert board.catching_up(2, 9) and not board.catching_up(1, 9)
    # Node 2 falls silent: its claim expires, node 1's (older epoch) is all that is left.
    board.note(LeaderReport(node=1, leads=[LeaderClaim(5, 2, [1])], catching_up=[]), 4.5)
    found = board.leader(5, 4.5)
    assert found is not None and found[0] == 1
    # A report replaces everything the node said before.
    assert board.note(LeaderReport(node=1, leads=[], catching_up=[]), 5.0)
    assert board.leader(5, 5.0) is None
