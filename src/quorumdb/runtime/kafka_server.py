"""The Kafka listener: one asyncio connection loop per client over `KafkaConnection`.

Requests on one connection are handled concurrently (a produce waiting for commit does not
hold up a metadata request behind it) but answered strictly in request order, as Kafka
clients require: each request's handler runs as a task, and a writer awaits those tasks in
arrival order. Produce with acks=0 is handled but answered with nothing. A framing error or
an unknown API closes the connection (Kafka does the same); an unexpected handler error is
logged with its traceback and closes the connection; the node keeps running either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from quorumdb.kafka.broker import Broker
from quorumdb.kafka.protocol.connection import CLOSED, NEED_DATA, KafkaConnection, Request
from quorumdb.kafka.protocol.errors import ProtocolError
from quorumdb.kafka.protocol.fit import fit_response

__all__ = ["KafkaServer"]

log = logging.getLogger("quorumdb.kafka")

_READ_BYTES = 1 << 16
_IN_FLIGHT_MAX = 256  # requests read ahead of their responses, per connection


class KafkaServer:
    def __init__(
        self, broker: Broker, listen: tuple[str, int], *, max_request_bytes: int = 100 << 20
    ) -> None:
        self.broker = broker
        self.listen = listen
        self.max_request_bytes = max_request_bytes
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.stats = {"connections": 0, "requests": 0, "closed_on_error": 0}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, *self.listen)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._conns):
            t.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self.stats["connections"] += 1
        peer = writer.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else "unknown"
        pending: asyncio.Queue[tuple[Request, asyncio.Task[dict[str, Any]]] | None] = asyncio.Queue(
            _IN_FLIGHT_MAX
        )
        conn = KafkaConnection(max_request_bytes=self.max_request_bytes)
        responder = asyncio.get_running_loop().create_task(self._respond(conn, pending, writer))
        stopping = False
        try:
            await self._read(conn, reader, host, pending)
        except ProtocolError as exc:
            self.stats["closed_on_error"] += 1
            log.info("closing Kafka connection from %s: %s", peer, exc)
        except (OSError, ConnectionError):
            pass
        except asyncio.CancelledError:
            stopping = True
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                pending.put_nowait(None)
            # When the server stops (this task cancelled), do not wait for in-flight handlers:
            # a Fetch long poll or a JoinGroup can take seconds to minutes, and waiting here
            # held `stop()` until the node was SIGKILLed. A cancellation arriving during the
            # wait or the close must not escape either: it skipped the cleanup, and asyncio's
            # stream callback logged the cancelled task as an error with a traceback.
            if not stopping:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(responder, 30)
            responder.cancel()  # also cancels the handler task it is awaiting, if any
            while not pending.empty():
                item = pending.get_nowait()
                if item is not None:
                    item[1].cancel()
            self._conns.discard(task)
            writer.close()
            closing = (OSError, ConnectionError, RuntimeError, asyncio.CancelledError)
            with contextlib.suppress(*closing):
                await writer.wait_closed()

    async def _read(
        self,
        conn: KafkaConnection,
        reader: asyncio.StreamReader,
        host: str,
        pending: asyncio.Queue[tuple[Request, asyncio.Task[dict[str, Any]]] | None],
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await reader.read(_READ_BYTES)
            conn.feed(data)
            while True:
                req = conn.next_request()
                if req is NEED_DATA:
                    break
                if req is CLOSED:
                    return
                assert isinstance(req, Request)
                self.stats["requests"] += 1
                task = loop.create_task(self.broker.handle(req, host))
                await pending.put((req, task))
            if not data:
                return

    async def _respond(
        self,
        conn: KafkaConnection,
        pending: asyncio.Queue[tuple[Request, asyncio.Task[dict[str, Any]]] | None],
        writer: asyncio.StreamWriter,
    ) -> None:
        while True:
            item = await pending.get()
            if item is None:
                return
            req, task = item
            try:
                body = await task
            except ProtocolError as exc:
                log.info("closing Kafka connection: %s", exc)
                writer.close()
                return
            except Exception:
                log.exception(
                    "Kafka %s v%d failed; closing the connection", req.api_key.name, req.api_version
                )
                self.stats["closed_on_error"] += 1
                writer.close()
                return
            if not req.expects_response:
                continue
            try:
                fitted = fit_response(req.api_key, req.response_version, body)
                chunks = conn.encode_response_chunks(req, fitted)
            except Exception:
                log.exception(
                    "Kafka %s v%d: response not encodable; closing the connection",
                    req.api_key.name,
                    req.api_version,
                )
                self.stats["closed_on_error"] += 1
                writer.close()
                return
            try:
                writer.writelines(chunks)
                await writer.drain()
            except (OSError, ConnectionError, RuntimeError):
                return
