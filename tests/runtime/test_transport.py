"""The TCP transport on loopback: delivery, batching, reconnection, bounded queues, bad peers."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from typing import Any

from quorumdb.raft import Message, MessageType
from quorumdb.runtime.transport import Transport
from quorumdb.runtime.wire import GroupMessage, encode_hello


def _msg(to: int, from_: int, index: int) -> Message:
    return Message(type=MessageType.HEARTBEAT, to=to, from_=from_, term=1, index=index)


def _transport(
    node_id: int, into: list[GroupMessage] | None, *, seed: int, port: int = 0, **kw: Any
) -> Transport:
    """An unstarted transport on loopback that appends what it receives to `into`."""

    def deliver(sender: int, msgs: list[GroupMessage]) -> None:
        if into is not None:
            into.extend(msgs)

    return Transport(
        node_id=node_id,
        cluster="c",
        listen=("127.0.0.1", port),
        peers={},
        deliver=deliver,
        rng=random.Random(seed),
        **kw,
    )


async def _pair(got: dict[int, list[GroupMessage]], **kw: int) -> tuple[Transport, Transport]:
    t1 = _transport(1, got[1], seed=1, **kw)
    t2 = _transport(2, got[2], seed=2, **kw)
    await t1.start()
    await t2.start()
    t1.add_peer(2, ("127.0.0.1", t2.port))
    t2.add_peer(1, ("127.0.0.1", t1.port))
    return t1, t2


async def _until(cond, what: str, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def test_messages_arrive_in_order_and_batched() -> None:
    async def main() -> None:
        got: dict[int, list[GroupMessage]] = {1: [], 2: []}
        t1, t2 = await _pair(got)
        try:
            for i in range(1000):
                t1.send(i % 3, _msg(2, 1, i))
            await _until(lambda: len(got[2]) == 1000, "1000 messages")
            assert [gm.message.index for gm in got[2]] == list(range(1000))
            assert [gm.group for gm in got[2][:3]] == [0, 1, 2]
            assert t1.stats.sent_frames < 1000  # batched
        finally:
            await t1.stop()
            await t2.stop()

    asyncio.run(main())


def test_reconnects_after_the_peer_restarts() -> None:
    async def main() -> None:
        got: dict[int, list[GroupMessage]] = {1: [], 2: []}
        t1, t2 = await _pair(got, backoff_max_s=0.05)  # type: ignore[arg-type]
        port = t2.port
        t1.send(0, _msg(2, 1, 1))
        await _until(lambda: len(got[2]) == 1, "first message")
        await t2.stop()
        t2b = _transport(2, got[2], seed=3, port=port)
        await t2b.start()
        try:

            async def keep_sending() -> None:
                i = 2
                while len(got[2]) < 2:
                    t1.send(0, _msg(2, 1, i))
                    i += 1
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(keep_sending(), 10)
        finally:
            await t1.stop()
            await t2b.stop()

    asyncio.run(main())


def test_full_queue_drops_and_counts_instead_of_growing() -> None:
    async def main() -> None:
        got: dict[int, list[GroupMessage]] = {1: [], 2: []}
        t1 = _transport(1, None, seed=1, queue_max=10)
        await t1.start()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead_port = s.getsockname()[1]
        t1.add_peer(2, ("127.0.0.1", dead_port))  # nobody listens there
        try:
            for i in range(100):
                t1.send(0, _msg(2, 1, i))
            assert t1.queue_depths()[2] == 10
            assert t1.stats.dropped_full == 90
        finally:
            await t1.stop()
        assert got == {1: [], 2: []}

    asyncio.run(main())


def test_bad_peers_are_disconnected_and_the_transport_keeps_working() -> None:
    async def main() -> None:
        got: dict[int, list[GroupMessage]] = {1: [], 2: []}
        t1, t2 = await _pair(got)
        try:
            bad = [
                b"\xff" * 16,
                encode_hello("other-cluster", 1),
                encode_hello("c", 1) + encode_hello("c", 1),
                struct.pack("<I", 2) + b"\x01\x00",
            ]
            for payload in bad:
                reader, writer = await asyncio.open_connection("127.0.0.1", t2.port)
                writer.write(payload)
                await writer.drain()
                assert await asyncio.wait_for(reader.read(), 5) == b""
                writer.close()
            # A message claiming another sender is refused as well.
            reader, writer = await asyncio.open_connection("127.0.0.1", t2.port)
            from quorumdb.runtime.wire import encode_batch

            writer.write(encode_hello("c", 1) + encode_batch([GroupMessage(0, _msg(2, 3, 0))]))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert t2.stats.rejected_connections == len(bad) + 1
            t1.send(0, _msg(2, 1, 42))
            await _until(lambda: any(gm.message.index == 42 for gm in got[2]), "a good message")
            assert not any(gm.message.from_ == 3 for gm in got[2])
        finally:
            await t1.stop()
            await t2.stop()

    asyncio.run(main())


def test_reconnects_under_uvloop_after_an_idle_reset() -> None:
    # Found by the KV benchmark: under uvloop, writing to a connection the peer reset (RST)
    # while the sender was idle raises RuntimeError, which killed the sender task for good,
    # so a restarted node was never dialled again.
    import uvloop

    async def main() -> None:
        async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()  # an RST, as from a killed process with unread data

        fake = await asyncio.start_server(reset, "127.0.0.1", 0)
        port = fake.sockets[0].getsockname()[1]
        got: list[GroupMessage] = []
        t1 = _transport(1, None, seed=1, backoff_max_s=0.05)
        await t1.start()
        t1.add_peer(2, ("127.0.0.1", port))
        await asyncio.sleep(0.3)  # connected, reset, idle
        fake.close()
        await fake.wait_closed()
        t2 = _transport(2, got, seed=3, port=port)
        await t2.start()
        try:

            async def keep_sending() -> None:
                i = 0
                while not got:
                    t1.send(0, _msg(2, 1, i))
                    i += 1
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(keep_sending(), 10)
        finally:
            await t1.stop()
            await t2.stop()

    uvloop.run(main())


def test_a_peer_at_a_new_address_is_redialled_there() -> None:
    """A member record can move a node (a replaced host): messages follow the new address."""

    async def main() -> None:
        got: dict[int, list[GroupMessage]] = {1: [], 2: []}
        moved: list[GroupMessage] = []
        t1, t2 = await _pair(got)
        t3 = _transport(2, moved, seed=3)
        await t3.start()
        try:
            await t2.stop()  # node 2's old incarnation is gone; it lives at t3's port now
            t1.add_peer(2, ("127.0.0.1", t3.port))
            for i in range(1, 4):
                t1.send(0, _msg(2, 1, i))
            await _until(lambda: len(moved) == 3, "delivery at the new address")
            assert [gm.message.index for gm in moved] == [1, 2, 3]
        finally:
            await t1.stop()
            await t3.stop()

    asyncio.run(main())


def test_service_messages_share_the_connection_with_raft_batches() -> None:
    """Service messages (leadership reports, segment chunks) go in frames of their own
    between Raft batches, whatever their size up to a frame's limit, and reach the service
    handler with the sender's id; unknown peers and full queues say no."""

    async def main() -> None:
        services: list[tuple[int, str, bytes]] = []
        raft: list[GroupMessage] = []
        t1 = _transport(1, None, seed=1)
        t2 = _transport(
            2,
            raft,
            seed=2,
            deliver_service=lambda sender, m: services.append((sender, m.channel, m.body)),
        )
        await t1.start()
        await t2.start()
        t1.add_peer(2, ("127.0.0.1", t2.port))
        try:
            big = bytes(range(256)) * 16_384  # 4 MiB, a catch-up chunk
            t1.send(0, _msg(2, 1, 1))
            assert t1.send_service(2, "kafka.chunk", big)
            t1.send(0, _msg(2, 1, 2))
            assert t1.send_service(2, "kafka.leaders", b"r")
            await _until(lambda: len(services) == 2 and len(raft) == 2, "both kinds")
            assert services == [(1, "kafka.chunk", big), (1, "kafka.leaders", b"r")]
            assert [gm.message.index for gm in raft] == [1, 2]
            assert not t1.send_service(9, "kafka.leaders", b"r")  # no such peer
        finally:
            await t1.stop()
            await t2.stop()

    asyncio.run(main())
