"""The node's HTTP/1.1 server (`runtime.http`) at the byte level: framing, keep-alive,
pipelining, chunked bodies, 100-continue, and bad input answered and closed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from quorumdb.runtime.http import HttpServer, Reply


async def _echo(method: str, target: str, body: bytes) -> Reply:
    if target == "/boom":
        raise RuntimeError("handler bug")
    if target == "/slow":
        await asyncio.sleep(0.05)
    doc = {"method": method, "target": target, "body": body.decode()}
    return 200, json.dumps(doc).encode(), "application/json", (("X-Test", "1"),)


def _serve(fn: Callable[[int], Awaitable[None]], body_bytes_max: int = 1000) -> None:
    async def main() -> None:
        server = HttpServer(_echo, body_bytes_max=body_bytes_max)
        await server.start("127.0.0.1", 0)
        try:
            await asyncio.wait_for(fn(server.port), 10)
        finally:
            await server.stop()

    asyncio.run(main())
    try:
        import uvloop
    except ImportError:
        return
    uvloop.run(main())  # the node's loop: its transports are not asyncio.Transport subclasses


async def _exchange(port: int, data: bytes, *, half_close: bool = True) -> bytes:
    """Send `data`, then read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    if half_close:
        writer.write_eof()
    out = await reader.read()
    writer.close()
    return out


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def test_keep_alive_and_pipelined_requests_answered_in_order() -> None:
    async def body(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"PUT /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        )
        s1, h1, b1 = await _read_response(reader)
        s2, _, b2 = await _read_response(reader)
        assert s2 == 200
        assert (s1, json.loads(b1)["target"]) == (200, "/slow")
        assert h1["x-test"] == "1" and h1["content-type"] == "application/json"
        assert json.loads(b2) == {"method": "PUT", "target": "/a?b=c", "body": "hello"}
        # Still open: a third request on the same connection.
        writer.write(b"GET /third HTTP/1.1\r\n\r\n")
        s3, _, _ = await _read_response(reader)
        assert s3 == 200
        writer.close()

    _serve(body)


def test_chunked_body_and_expect_continue() -> None:
    async def body(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        )
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n")
        status, _, b = await _read_response(reader)
        assert status == 200 and json.loads(b)["body"] == "abcde"
        writer.close()

    _serve(body)


def test_http_1_0_and_connection_close_close_after_the_answer() -> None:
    async def body(port: int) -> None:
        for req in (b"GET /x HTTP/1.0\r\n\r\n", b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n"):
            out = await _exchange(port, req, half_close=False)
            assert out.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"Connection: close\r\n" in out

    _serve(body)


def test_head_gets_no_body() -> None:
    async def body(port: int) -> None:
        out = await _exchange(port, b"HEAD /x HTTP/1.1\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\n")

    _serve(body)


def test_bad_input_is_answered_then_closed() -> None:
    async def body(port: int) -> None:
        cases = [
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET /x HTTP/2.0\r\n\r\n", 505),
            (b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n", 400),
            (b"PUT /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
            (b"PUT /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
            (b"GET /x HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
            (b"PUT /x HTTP/1.1\r\nContent-Length: 2000\r\n\r\n" + b"a" * 2000, 413),
            (b"GET /boom HTTP/1.1\r\n\r\n", 500),
        ]
        for req, status in cases:
            out = await _exchange(port, req)
            assert out.startswith(f"HTTP/1.1 {status} ".encode()), (req[:40], out[:80])
            assert b'"error"' in out
        # The server still serves.
        assert (await _exchange(port, b"GET /ok HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")

    _serve(body)
