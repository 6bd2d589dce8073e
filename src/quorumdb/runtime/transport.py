"""Raft messages between nodes over TCP, with batching, bounded queues and reconnection.

Theory of operation. Each node listens on one port and dials one outbound connection per
peer; a connection carries frames in one direction only (dialler to listener), so there is no
request/response pairing to get wrong. Per peer, a sender task drains a bounded queue into as
few frames as fit, writes them, and awaits the socket's drain: messages that arrive meanwhile
pile up and go out together (batching under load, low latency when idle). A full queue drops
the newest message and counts it: Raft retransmits, so dropping under pressure is safe, while
an unbounded queue is not. A failed connection is retried with exponential back-off and
jitter; messages queued while the peer is away are kept (bounded), those in a failed write
are lost. Service messages (`runtime.wire.ServiceMessage`) share the queue and the
connection, each in a frame of its own; their senders do their own flow control.

The listener validates every frame (`runtime.wire`): garbage, a wrong version, an oversized
frame or a foreign cluster closes that one connection with a log line; the node keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from quorumdb.raft.messages import Message, MessageType
from quorumdb.runtime.wire import (
    FRAME_BYTES_MAX,
    Batch,
    FrameError,
    FrameReader,
    GroupMessage,
    Hello,
    ServiceMessage,
    encode_batch,
    encode_hello,
    encode_service,
)

__all__ = ["Transport", "TransportStats"]

log = logging.getLogger("quorumdb.transport")

Deliver = Callable[[int, list[GroupMessage]], None]
DeliverService = Callable[[int, ServiceMessage], None]
_BATCH_MESSAGES_MAX = 1024
_READ_BYTES = 1 << 18


@dataclass(slots=True)
class TransportStats:
    sent_messages: int = 0
    sent_frames: int = 0
    dropped_full: int = 0
    dropped_failed: int = 0
    received_messages: int = 0
    rejected_connections: int = 0
    queue_depth: dict[int, int] = field(default_factory=dict)


class _PeerSender:
    __slots__ = (
        "addr",
        "backoff_max_s",
        "backoff_min_s",
        "cluster",
        "connected",
        "node_id",
        "peer_id",
        "queue",
        "queue_max",
        "rng",
        "stats",
        "task",
        "wake",
    )

    def __init__(
        self,
        *,
        node_id: int,
        peer_id: int,
        addr: tuple[str, int],
        cluster: str,
        queue_max: int,
        rng: random.Random,
        stats: TransportStats,
        backoff_min_s: float,
        backoff_max_s: float,
    ) -> None:
        self.node_id = node_id
        self.peer_id = peer_id
        self.addr = addr
        self.cluster = cluster
        self.queue: deque[GroupMessage | ServiceMessage] = deque()
        self.queue_max = queue_max
        self.rng = rng
        self.stats = stats
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.wake = asyncio.Event()
        self.connected = False
        self.task: asyncio.Task[None] | None = None

    def put(self, gm: GroupMessage | ServiceMessage) -> None:
        if len(self.queue) >= self.queue_max:
            self.stats.dropped_full += 1
            return
        self.queue.append(gm)
        self.wake.set()

    async def run(self) -> None:
        backoff = self.backoff_min_s
        while True:
            try:
                reader, writer = await asyncio.open_connection(*self.addr)
            except OSError as exc:
                log.debug("dial failed peer=%d addr=%s err=%s", self.peer_id, self.addr, exc)
                await asyncio.sleep(backoff * (0.5 + self.rng.random()))
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            backoff = self.backoff_min_s
            self.connected = True
            log.info("connected peer=%d addr=%s:%d", self.peer_id, *self.addr)
            try:
                writer.write(encode_hello(self.cluster, self.node_id))
                await self._pump(writer)
            except (OSError, ConnectionError, RuntimeError) as exc:
                # uvloop raises RuntimeError ("the handler is closed") when writing to a
                # connection the peer reset while we were idle: it is a lost connection too.
                log.info("connection lost peer=%d err=%s", self.peer_id, exc)
            except Exception:
                # Never let the sender die: a dead sender silently cuts this peer off for good.
                log.exception("sender failed peer=%d; reconnecting", self.peer_id)
            finally:
                self.connected = False
                writer.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.wait_closed()
                del reader

    async def _pump(self, writer: asyncio.StreamWriter) -> None:
        queue = self.queue
        while True:
            if not queue:
                self.wake.clear()
                await self.wake.wait()
            batch: list[GroupMessage] = []
            while queue and len(batch) < _BATCH_MESSAGES_MAX:
                gm = queue.popleft()
                if isinstance(gm, ServiceMessage):
                    self._write_service(writer, gm)
                else:
                    batch.append(gm)
            if not batch:
                await writer.drain()
                continue
            try:
                frame = encode_batch(batch)
            except FrameError:
                # One batch too large for a frame: send its messages one at a time instead.
                for gm in batch:
                    self._write_one(writer, gm)
            else:
                writer.write(frame)
                self.stats.sent_frames += 1
                self.stats.sent_messages += len(batch)
            try:
                if writer.is_closing():
                    raise ConnectionResetError("connection closed by the peer")
                await writer.drain()
            except (OSError, ConnectionError, RuntimeError):
                self.stats.dropped_failed += len(batch)
                raise

    def _write_service(self, writer: asyncio.StreamWriter, sm: ServiceMessage) -> None:
        self._write_single(writer, lambda: encode_service(sm))

    def _write_one(self, writer: asyncio.StreamWriter, gm: GroupMessage) -> None:
        self._write_single(writer, lambda: encode_batch([gm]))

    def _write_single(self, writer: asyncio.StreamWriter, encode: Callable[[], bytes]) -> None:
        """One message in a frame of its own; one too large for any frame is dropped."""
        try:
            writer.write(encode())
        except FrameError as exc:
            log.warning("dropping oversized message peer=%d err=%s", self.peer_id, exc)
            self.stats.dropped_full += 1
            return
        self.stats.sent_frames += 1
        self.stats.sent_messages += 1


class Transport:
    """Sends Raft messages to peers and hands received ones to `deliver(from_node, messages)`."""

    def __init__(
        self,
        *,
        node_id: int,
        cluster: str,
        listen: tuple[str, int],
        peers: dict[int, tuple[str, int]],
        deliver: Deliver,
        rng: random.Random,
        deliver_service: DeliverService | None = None,
        queue_max: int = 8192,
        frame_bytes_max: int = FRAME_BYTES_MAX,
        backoff_min_s: float = 0.02,
        backoff_max_s: float = 1.0,
    ) -> None:
        self.node_id = node_id
        self.cluster = cluster
        self.listen = listen
        self.deliver = deliver
        self.deliver_service = deliver_service
        self.rng = rng
        self.queue_max = queue_max
        self.frame_bytes_max = frame_bytes_max
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.stats = TransportStats()
        self._senders: dict[int, _PeerSender] = {}
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._peers = dict(peers)

    @property
    def port(self) -> int:
        assert self._server is not None, "transport not started"
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, *self.listen)
        for peer_id, addr in sorted(self._peers.items()):
            self.add_peer(peer_id, addr)

    async def stop(self) -> None:
        for s in self._senders.values():
            if s.task is not None:
                s.task.cancel()
        for t in list(self._conns):
            t.cancel()
        tasks = [s.task for s in self._senders.values() if s.task is not None]
        await asyncio.gather(*tasks, *self._conns, return_exceptions=True)
        self._senders.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def add_peer(self, peer_id: int, addr: tuple[str, int]) -> None:
        """Dial `peer_id` at `addr` from now on (a known peer at a new address is redialled)."""
        if peer_id == self.node_id:
            return
        if peer_id in self._senders:
            if self._senders[peer_id].addr == addr:
                return
            self.remove_peer(peer_id)
        self._peers[peer_id] = addr
        sender = _PeerSender(
            node_id=self.node_id,
            peer_id=peer_id,
            addr=addr,
            cluster=self.cluster,
            queue_max=self.queue_max,
            rng=self.rng,
            stats=self.stats,
            backoff_min_s=self.backoff_min_s,
            backoff_max_s=self.backoff_max_s,
        )
        sender.task = asyncio.get_running_loop().create_task(sender.run())
        self._senders[peer_id] = sender

    def remove_peer(self, peer_id: int) -> None:
        sender = self._senders.pop(peer_id, None)
        self._peers.pop(peer_id, None)
        if sender is not None and sender.task is not None:
            sender.task.cancel()

    def send(self, group: int, m: Message) -> None:
        """Queue `m` for its recipient; never blocks (drops, counted, if the queue is full)."""
        sender = self._senders.get(m.to)
        if sender is None:
            self.stats.dropped_failed += 1
            return
        sender.put(GroupMessage(group=group, message=m))

    def send_service(self, peer_id: int, channel: str, body: bytes) -> bool:
        """Queue a service message for `peer_id`; False if that peer is unknown or its queue
        is full."""
        sender = self._senders.get(peer_id)
        if sender is None or len(sender.queue) >= sender.queue_max:
            self.stats.dropped_failed += 1
            return False
        sender.put(ServiceMessage(channel=channel, body=body))
        return True

    def is_connected(self, peer_id: int) -> bool:
        s = self._senders.get(peer_id)
        return s is not None and s.connected

    def queue_depths(self) -> dict[int, int]:
        return {i: len(s.queue) for i, s in sorted(self._senders.items())}

    # -- inbound -----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        peer = writer.get_extra_info("peername")
        try:
            await self._read_loop(reader, peer)
        except FrameError as exc:
            self.stats.rejected_connections += 1
            log.warning("closing connection from %s: %s", peer, exc)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            # Cancelled only by `stop()`: end quietly (asyncio logs handlers that re-raise).
            pass
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    async def _read_loop(self, reader: asyncio.StreamReader, peer: object) -> None:
        frames = FrameReader(self.frame_bytes_max)
        sender_id: int | None = None
        while True:
            data = await reader.read(_READ_BYTES)
            if not data:
                return
            frames.feed(data)
            while (frame := frames.next_frame()) is not None:
                if isinstance(frame, Hello):
                    if sender_id is not None:
                        raise FrameError("second hello on one connection")
                    if frame.cluster != self.cluster:
                        raise FrameError(f"peer belongs to cluster {frame.cluster!r}")
                    sender_id = frame.node_id
                    continue
                if sender_id is None:
                    raise FrameError("batch before hello")
                if isinstance(frame, ServiceMessage):
                    if self.deliver_service is not None:
                        self.deliver_service(sender_id, frame)
                    continue
                self._deliver(sender_id, frame)

    def _deliver(self, sender_id: int, batch: Batch) -> None:
        msgs = batch.messages
        for gm in msgs:
            m = gm.message
            # A forwarded transfer request keeps the transferee as its sender (see raft.core).
            if m.from_ != sender_id and m.type != MessageType.TRANSFER_LEADER:
                raise FrameError(f"node {sender_id} sent a message claiming sender {m.from_}")
        self.stats.received_messages += len(msgs)
        self.deliver(sender_id, msgs)
