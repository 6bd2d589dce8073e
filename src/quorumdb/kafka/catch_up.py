"""Catching a partition replica up from a peer's segments after it installed a snapshot.

Theory of operation. A partition's snapshot is a manifest (`kafka.partition`): a replica that
installs one from its leader knows where the log ends but may lack the data before that (it
was down while the leader compacted its Raft log). `CatchUp` fetches each missing range from
a peer's segment files, in chunks of `chunk_bytes`, over the node-to-node transport:

- flow control: one request in flight per partition and at most `partitions_max` partitions
  fetching at once per node, so memory and disk bandwidth stay bounded however much is
  missing; the answer is written and fsynced before the next request goes out;
- the source is the partition's leader when it is another node, else another replica; a
  request unanswered for `timeout_s`, or answered "unavailable", moves on to the next one;
- resumable: what was fetched is in the segment files, and the missing ranges are computed
  from them (after a crash, on restore) rather than remembered; a server that restarts just
  answers the next request;
- a peer whose log starts above the range (its retention deleted the rest) answers
  `OUT_OF_RANGE` with its log start, and the replica gives up what lies below it.

The serving side is `serve`: a read of the peer's own segments, never across a hole of its
own. Both sides check the batches (CRC-32C included) before anything is written.

Pure logic: the host supplies `now`, the partitions, and a `send(peer, body)` function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum

import msgspec

from quorumdb.kafka.partition import FillError, MissingDataError, PartitionStateMachine
from quorumdb.kafka.protocol.errors import RemoteProtocolError
from quorumdb.kafka.protocol.records import iter_batches

__all__ = [
    "CatchUp",
    "CatchUpStats",
    "ChunkStatus",
    "FetchSegments",
    "SegmentChunk",
    "decode_chunk",
    "decode_fetch",
    "encode",
    "serve",
]

log = logging.getLogger("quorumdb.kafka.catch_up")


class ChunkStatus(IntEnum):
    OK = 0
    OUT_OF_RANGE = 1  # the server's log starts above the requested offset
    UNAVAILABLE = 2  # the server does not host the partition or lacks that range


class FetchSegments(msgspec.Struct, frozen=True, array_like=True):
    group: int
    request: int
    offset: int
    upto: int
    max_bytes: int


class SegmentChunk(msgspec.Struct, frozen=True, array_like=True):
    group: int
    request: int
    offset: int
    status: int
    log_start: int
    data: bytes


encode = msgspec.msgpack.Encoder().encode
decode_fetch = msgspec.msgpack.Decoder(FetchSegments).decode
decode_chunk = msgspec.msgpack.Decoder(SegmentChunk).decode


def serve(req: FetchSegments, sm: PartitionStateMachine | None) -> SegmentChunk:
    """Answer a peer's request from this replica's segments."""

    def answer(status: ChunkStatus, log_start: int = -1, data: bytes = b"") -> SegmentChunk:
        return SegmentChunk(
            group=req.group,
            request=req.request,
            offset=req.offset,
            status=status,
            log_start=log_start,
            data=data,
        )

    if sm is None:
        return answer(ChunkStatus.UNAVAILABLE)
    if req.offset < sm.log_start_offset:
        return answer(ChunkStatus.OUT_OF_RANGE, sm.log_start_offset)
    try:
        data = sm.read(req.offset, req.max_bytes, upto=req.upto)
    except MissingDataError:
        data = b""
    if not data:
        return answer(ChunkStatus.UNAVAILABLE, sm.log_start_offset)
    return answer(ChunkStatus.OK, sm.log_start_offset, data)


@dataclass(slots=True)
class CatchUpStats:
    fetched_bytes: int = 0
    chunks: int = 0
    retries: int = 0
    rejected: int = 0
    completed: int = 0  # partitions that had something missing and now have nothing


@dataclass(slots=True)
class _InFlight:
    request: int
    peer: int
    offset: int
    sent_at: float
    tries: int = 0


@dataclass(slots=True)
class _Progress:
    started_at: float
    bytes: int = 0
    peers_tried: list[int] = field(default_factory=list)


class CatchUp:
    """The fetching side: call `poll` often (e.g. every tick) and `on_chunk` on answers."""

    def __init__(
        self,
        send: Callable[[int, bytes], bool],
        *,
        chunk_bytes: int = 4 << 20,
        partitions_max: int = 4,
        timeout_s: float = 10.0,
    ) -> None:
        self.send = send
        self.chunk_bytes = chunk_bytes
        self.partitions_max = partitions_max
        self.timeout_s = timeout_s
        self.stats = CatchUpStats()
        self._inflight: dict[int, _InFlight] = {}
        self._progress: dict[int, _Progress] = {}
        self._next_request = 0

    def busy(self, group: int) -> bool:
        return group in self._inflight

    def poll(
        self, now: float, partitions: Iterable[tuple[int, PartitionStateMachine, list[int]]]
    ) -> None:
        """Start or retry fetches for `partitions`: (group, state machine, source peers in
        order of preference), only those with something missing."""
        for group, sm, peers in partitions:
            missing = sm.missing
            if not missing:
                self.finished(group, now)
                continue
            flight = self._inflight.get(group)
            if flight is not None:
                if now - flight.sent_at < self.timeout_s:
                    continue
                self.stats.retries += 1
                del self._inflight[group]
                self._request(group, missing[0], peers, now, flight.tries + 1)
            elif len(self._inflight) < self.partitions_max:
                self._progress.setdefault(group, _Progress(started_at=now))
                self._request(group, missing[0], peers, now, 0)

    def _request(
        self, group: int, rng: tuple[int, int], peers: list[int], now: float, tries: int
    ) -> None:
        if not peers:
            return
        peer = peers[tries % len(peers)]
        self._next_request += 1
        req = FetchSegments(
            group=group,
            request=self._next_request,
            offset=rng[0],
            upto=rng[1],
            max_bytes=self.chunk_bytes,
        )
        self._inflight[group] = _InFlight(
            request=req.request, peer=peer, offset=rng[0], sent_at=now, tries=tries
        )
        self.send(peer, encode(req))

    def on_chunk(
        self, sender: int, chunk: SegmentChunk, sm: PartitionStateMachine | None, now: float
    ) -> None:
        """Write an answer into the hole it was fetched for, or move on."""
        flight = self._inflight.get(chunk.group)
        if flight is None or flight.request != chunk.request or flight.peer != sender:
            return  # an answer to a request given up on
        del self._inflight[chunk.group]
        if sm is None:
            return
        if chunk.status == ChunkStatus.OUT_OF_RANGE:
            log.info(
                "group=%d peer=%d log starts at %d: giving up offsets below it",
                chunk.group,
                sender,
                chunk.log_start,
            )
            sm.give_up_below(chunk.log_start)
            return
        if chunk.status != ChunkStatus.OK:
            self._retry_later(chunk.group, flight, now)
            return
        try:
            for _ in iter_batches(chunk.data, verify_crc=True):
                pass
            sm.fill(chunk.data, chunk.offset)
        except (FillError, RemoteProtocolError) as exc:
            self.stats.rejected += 1
            log.warning("group=%d peer=%d sent an unusable chunk: %s", chunk.group, sender, exc)
            self._retry_later(chunk.group, flight, now)
            return
        self.stats.fetched_bytes += len(chunk.data)
        self.stats.chunks += 1
        progress = self._progress.get(chunk.group)
        if progress is not None:
            progress.bytes += len(chunk.data)

    def _retry_later(self, group: int, flight: _InFlight, now: float) -> None:
        """Ask the next peer at the next poll (the failed one goes to the back)."""
        self.stats.retries += 1
        self._inflight[group] = _InFlight(
            request=-1,
            peer=-1,
            offset=flight.offset,
            sent_at=now - self.timeout_s,
            tries=flight.tries,
        )

    def finished(self, group: int, now: float) -> None:
        """Nothing of `group` is missing any more (or it is gone): log how it went."""
        self._inflight.pop(group, None)
        progress = self._progress.pop(group, None)
        if progress is None:
            return
        self.stats.completed += 1
        took = max(now - progress.started_at, 1e-9)
        log.info(
            "group=%d caught up from segments bytes=%d seconds=%.2f mb_per_s=%.1f",
            group,
            progress.bytes,
            took,
            progress.bytes / took / 1e6,
        )

    def forget(self, group: int) -> None:
        """The partition is no longer hosted here."""
        self._inflight.pop(group, None)
        self._progress.pop(group, None)
