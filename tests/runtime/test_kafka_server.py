"""KafkaServer: stopping with requests still in flight."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from quorumdb.kafka.protocol import ApiKey, encode_request
from quorumdb.kafka.protocol.connection import Request
from quorumdb.runtime.kafka_server import KafkaServer

_METADATA = {
    "topics": None,
    "allow_auto_topic_creation": False,
    "include_cluster_authorized_operations": False,
    "include_topic_authorized_operations": False,
}


class _StuckBroker:
    """A broker whose handler never returns (a long poll, a JoinGroup waiting for a rebalance)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def handle(self, request: Request, client_host: str) -> dict[str, Any]:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")


def test_stop_does_not_wait_for_in_flight_handlers(caplog: pytest.LogCaptureFixture) -> None:
    # Regression: stop() waited (up to 30 s) for each connection's pending handlers, so a node
    # with a consumer in a Fetch long poll or a JoinGroup hung on SIGTERM until SIGKILLed, and
    # a cancellation during that wait was logged as an asyncio error with a traceback.
    async def main() -> None:
        broker = _StuckBroker()
        server = KafkaServer(broker, ("127.0.0.1", 0))  # type: ignore[arg-type]
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(encode_request(ApiKey.METADATA, 8, _METADATA, correlation_id=1))
        await asyncio.wait_for(broker.started.wait(), 5)
        await asyncio.wait_for(server.stop(), 2)
        await asyncio.wait_for(broker.cancelled.wait(), 2)
        assert await asyncio.wait_for(reader.read(), 2) == b"", "expected a hangup, no answer"
        writer.close()

    with caplog.at_level(logging.ERROR):
        asyncio.run(main())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
