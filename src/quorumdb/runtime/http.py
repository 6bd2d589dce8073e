"""A lean HTTP/1.1 server on asyncio's Protocol API: the node's client port.

Theory of operation. A general web framework costs more CPU per request than the rest of a
replicated write together (routing tables, request and response objects, header multidicts,
middleware chains, a writer per response). The KV API needs little of it: requests are small,
bodies are JSON with a length, answers are one JSON document. So each connection is one
`asyncio.Protocol` that parses request heads itself (one `find` for the blank line, a split
per header line, four headers looked at), hands `(method, target, body)` to one async
handler, and writes the answer as ONE buffer (status line, three headers, body).

What HTTP/1.1 asks of a server is kept: keep-alive (HTTP/1.1 default, HTTP/1.0 on request),
`Connection: close`, pipelined requests answered in order (one at a time per connection),
`Content-Length` and `Transfer-Encoding: chunked` bodies, `Expect: 100-continue`, HEAD
answers without a body. Bad input gets a JSON error and, when the stream can no longer be
trusted, a closed connection: 400 for a malformed head or body framing, 413 for a body above
the limit (its bytes are read and dropped, so that the client sees the answer rather than a
reset), 431 for an oversized head, 501 for an unknown transfer coding, 505 for a version
other than 1.0 and 1.1. A handler that raises gets a 500 and a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

__all__ = ["HEAD_BYTES_MAX", "Handler", "HttpServer", "Reply"]

log = logging.getLogger("quorumdb.http")

HEAD_BYTES_MAX = 64 << 10
# (status, body, content type, extra headers)
Reply = tuple[int, bytes, str, Sequence[tuple[str, str]]]
Handler = Callable[[str, str, bytes], Coroutine[Any, Any, Reply]]

_JSON = "application/json; charset=utf-8"
_PAUSE_BYTES = 4 << 20
_STATUS_LINES = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("latin-1") for s in http.HTTPStatus
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _BadRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def _head(status: int, content_type: str, length: int, extra: str) -> bytes:
    line = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()
    return line + (
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode("latin-1")


class _Connection(asyncio.Protocol):
    __slots__ = (
        "_buf",
        "_busy",
        "_closing",
        "_continued",
        "_discard",
        "_paused",
        "_server",
        "_task",
        "_transport",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._busy = False  # a request is being handled: later ones wait in _buf
        self._closing = False  # close once the answer in hand is written
        self._continued = False  # "100 Continue" sent for the request at the head of _buf
        self._discard = 0  # bytes of a refused body still to drop before closing
        self._paused = False
        self._task: asyncio.Task[Reply] | None = None

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast("asyncio.Transport", transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None
        self._buf.clear()

    def data_received(self, data: bytes) -> None:
        if self._discard:
            n = min(self._discard, len(data))
            self._discard -= n
            if not self._discard:
                self._close()
            return
        if self._closing:
            return
        buf = self._buf
        buf += data
        if self._busy:
            if len(buf) > _PAUSE_BYTES and not self._paused and self._transport is not None:
                self._paused = True
                self._transport.pause_reading()
            return
        self._next()

    def eof_received(self) -> bool | None:
        # The client is done sending: answer what is in hand, then close.
        self._closing = True
        if not self._busy:
            self._close()
        return True

    # -- requests -----------------------------------------------------------------------------

    def _next(self) -> None:
        """Start handling the request at the head of the buffer, if it is complete."""
        try:
            parsed = self._parse()
        except _BadRequestError as exc:
            self._refuse(exc.status, str(exc))
            return
        if parsed is None:
            return
        method, target, body, keep_alive = parsed
        if not keep_alive:
            self._closing = True
        self._busy = True
        self._continued = False
        task = asyncio.get_running_loop().create_task(self._server.handler(method, target, body))
        self._task = task
        head_only = method == "HEAD"
        task.add_done_callback(lambda t: self._answer(t, head_only))

    def _answer(self, task: asyncio.Task[Reply], head_only: bool) -> None:
        self._task = None
        try:
            status, body, content_type, headers = task.result()
        except asyncio.CancelledError:
            self._close()
            return
        except Exception:
            log.exception("request handler failed")
            status, body, content_type, headers = 500, _error_body("internal error"), _JSON, ()
        self._busy = False
        transport = self._transport
        if transport is None:
            return
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers) if headers else ""
        if self._closing:
            extra += "Connection: close\r\n"
        head = _head(status, content_type, len(body), extra)
        transport.write(head if head_only else head + body)
        if self._closing:
            self._close()
            return
        if self._paused:
            self._paused = False
            transport.resume_reading()
        if self._buf:
            self._next()

    def _parse(self) -> tuple[str, str, bytes, bool] | None:
        """(method, target, body, keep-alive) of the first request in the buffer, removed
        from it; None while incomplete. Raises _BadRequestError."""
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > HEAD_BYTES_MAX:
                raise _BadRequestError(431, f"request head larger than {HEAD_BYTES_MAX} bytes")
            return None
        if end > HEAD_BYTES_MAX:
            raise _BadRequestError(431, f"request head larger than {HEAD_BYTES_MAX} bytes")
        lines = bytes(buf[:end]).split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise _BadRequestError(400, "malformed request line")
        method_b, target_b, version = parts
        if version == b"HTTP/1.1":
            keep_alive = True
        elif version == b"HTTP/1.0":
            keep_alive = False
        elif version.startswith(b"HTTP/"):
            raise _BadRequestError(505, f"HTTP version {version.decode('latin-1')} not supported")
        else:
            raise _BadRequestError(400, "malformed request line")
        length = -1
        chunked = False
        expect = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name[-1:] in (b" ", b"\t"):
                raise _BadRequestError(400, "malformed header line")
            n = len(name)
            if n == 14 and name.lower() == b"content-length":
                v = value.strip()
                if not v.isdigit() or (length >= 0 and int(v) != length):
                    raise _BadRequestError(400, "invalid Content-Length")
                length = int(v)
            elif n == 10 and name.lower() == b"connection":
                tokens = value.lower()
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
            elif n == 17 and name.lower() == b"transfer-encoding":
                codings = [c.strip() for c in value.lower().split(b",") if c.strip()]
                if codings != [b"chunked"]:
                    raise _BadRequestError(501, "only the chunked transfer coding is supported")
                chunked = True
            elif n == 6 and name.lower() == b"expect":
                expect = value.strip().lower() == b"100-continue"
        if chunked and length >= 0:
            raise _BadRequestError(400, "both Content-Length and Transfer-Encoding")
        limit = self._server.body_bytes_max
        start = end + 4
        if chunked:
            got = self._chunked(start, limit)
            if got is None:
                self._maybe_continue(expect)
                return None
            body, stop = got
        else:
            length = max(length, 0)
            if length > limit:
                self._discard = length - min(length, len(buf) - start)
                raise _BadRequestError(413, f"request body larger than {limit} bytes")
            stop = start + length
            if len(buf) < stop:
                self._maybe_continue(expect)
                return None
            body = bytes(buf[start:stop])
        del buf[:stop]
        try:
            method = method_b.decode("ascii")
            target = target_b.decode("ascii")
        except UnicodeDecodeError:
            raise _BadRequestError(400, "non-ASCII request line") from None
        if not target.startswith("/"):
            raise _BadRequestError(400, "request target must be an absolute path")
        return method, target, body, keep_alive

    def _chunked(self, pos: int, limit: int) -> tuple[bytes, int] | None:
        """A complete chunked body starting at `pos`: (body, end offset); None if incomplete."""
        buf = self._buf
        parts: list[bytes] = []
        size = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size_field = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
            try:
                n = int(size_field, 16)
            except ValueError:
                raise _BadRequestError(400, "malformed chunk size") from None
            if n < 0:
                raise _BadRequestError(400, "malformed chunk size")
            size += n
            if size > limit:
                raise _BadRequestError(413, f"request body larger than {limit} bytes")
            pos = eol + 2
            if n == 0:
                break
            if len(buf) < pos + n + 2:
                return None
            if buf[pos + n : pos + n + 2] != b"\r\n":
                raise _BadRequestError(400, "malformed chunk")
            parts.append(bytes(buf[pos : pos + n]))
            pos += n + 2
        # Trailer fields, then the blank line.
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            blank = eol == pos
            pos = eol + 2
            if blank:
                return b"".join(parts), pos

    def _maybe_continue(self, expect: bool) -> None:
        if expect and not self._continued and self._transport is not None:
            self._continued = True
            self._transport.write(_CONTINUE)

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request we cannot read further, then close (after dropping the rest of
        a refused body, if it is announced)."""
        self._closing = True
        self._buf.clear()
        transport = self._transport
        if transport is None:
            return
        body = _error_body(message)
        transport.write(_head(status, _JSON, len(body), "Connection: close\r\n") + body)
        if not self._discard:
            self._close()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._close()


class HttpServer:
    """Serves `handler(method, target, body) -> (status, body, content_type, headers)`."""

    def __init__(self, handler: Handler, *, body_bytes_max: int) -> None:
        self.handler = handler
        self.body_bytes_max = body_bytes_max
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
