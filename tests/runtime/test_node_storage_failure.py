"""A storage failure stops the node wherever it happens, never retried behind its back.

A round's WAL write failing stops the node (the driver fails); so must a write made by a
service handler (a Kafka catch-up fill arriving from a peer), which used to escape into the
transport's connection handler: the connection was dropped, the node carried on, and the
next fill would have been fsynced over the failed one (PostgreSQL's "fsyncgate")."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from quorumdb.host.config import Member, NodeConfig
from quorumdb.runtime.node import Node
from quorumdb.runtime.wire import ServiceMessage
from quorumdb.storage.errors import DurableStateError
from tests.host.memory_log import MemoryNodeLog


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(tmp: Path) -> NodeConfig:
    me = Member(node_id=1, raft=("127.0.0.1", _free_port()), http=("127.0.0.1", _free_port()))
    return NodeConfig(node_id=1, data_dir=tmp / "n1", members={1: me}, shards=1, tick_ms=5)


def test_a_storage_failure_in_a_service_handler_stops_the_node(tmp_path: Path) -> None:
    failure = DurableStateError("/data/kafka/t-0-3/00000000000000000000.log", "fdatasync failed")

    def fill(sender: int, body: bytes) -> None:
        raise failure

    async def main() -> None:
        node = Node(_config(tmp_path), MemoryNodeLog())
        node.host.service_handlers["test.fill"] = fill
        await node.start()
        try:
            # What the transport calls for a service message from a peer.
            node._deliver_service(2, ServiceMessage(channel="test.fill", body=b""))
            assert await asyncio.wait_for(node.wait_failed(), 10.0) is failure
            assert node.host.health()["status"] == "stopped"
        finally:
            await node.stop()

    asyncio.run(main())
