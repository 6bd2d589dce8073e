"""The server side of one Kafka connection, sans-IO (h11's shape): bytes in, requests out.

The caller owns the socket. It passes what it reads to `feed()`, then calls `next_request()`
until it returns `NEED_DATA`; each `Request` is handled and answered with the bytes of
`encode_response()`, written in request order (Kafka clients match responses by order as well
as by correlation id). Produce with acks=0 expects no response (`Request.expects_response`).

Framing: every request is `size:int32 | header | body`. The header is v1 (api_key,
api_version, correlation_id, client_id) or, for flexible API versions, v2 (the same plus a
tagged-field section; client_id keeps its int16 length). Responses carry `size | header |
body` with header v0 (correlation_id) or v1 (plus tagged fields) - but ApiVersions responses
always use header v0 so that clients can read them before they know our versions.

Limits and errors. A size prefix above `max_request_bytes` (or below the smallest header) is
refused as soon as its four bytes arrive, so an incomplete request never holds more than
`max_request_bytes + 4` bytes; `feed()` refuses more input while a full request is waiting
to be taken. A malformed request raises `RemoteProtocolError`; an API we do not serve or an
unsupported version raises `UnsupportedRequestError`: the broker closes the connection, as
Kafka does. The exception is ApiVersions: a version above ours is returned as a `Request`
with `is_version_supported=False` and an empty body, and `encode_response` then writes a v0
body, so `encode_unsupported_version_response()` answers UNSUPPORTED_VERSION (35) with our
ranges (KIP-511). After any error the connection is dead: later calls raise again.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from quorumdb.kafka.protocol._schema import MessageKind
from quorumdb.kafka.protocol.apis import SUPPORTED_VERSIONS, ApiKey, api_versions_body
from quorumdb.kafka.protocol.codec import (
    Buffer,
    decode,
    decode_header,
    encode_chunks,
    encode_header,
    request_header_version,
    response_header_version,
)
from quorumdb.kafka.protocol.errors import (
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    UnsupportedRequestError,
)

__all__ = [
    "CLOSED",
    "DEFAULT_MAX_REQUEST_BYTES",
    "NEED_DATA",
    "KafkaConnection",
    "Request",
    "Sentinel",
    "decode_response",
    "encode_request",
]

# Kafka's socket.request.max.bytes default (100 MiB).
DEFAULT_MAX_REQUEST_BYTES: Final = 100 * 1024 * 1024
_SIZE: Final = struct.Struct(">i")
_PEEK: Final = struct.Struct(">hhi")  # api_key, api_version, correlation_id: v1/v2 alike
_HEADER_BYTES_MIN: Final = _PEEK.size + 2  # ... plus client_id's int16 length
_INT32_MAX: Final = 0x7FFFFFFF
# Small chunks are merged before a vectored write; records buffers stay as they are.
_COALESCE_BYTES_MAX: Final = 16 * 1024


class Sentinel(Enum):
    """What `next_request()` returns when it has no request to give."""

    NEED_DATA = "NEED_DATA"  # feed more bytes
    CLOSED = "CLOSED"  # the peer closed the stream cleanly between requests


NEED_DATA: Final = Sentinel.NEED_DATA
CLOSED: Final = Sentinel.CLOSED


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One decoded request: header fields plus the body dict (see `codec.decode`).

    `records` fields in the body are writable memoryviews of this request's own frame
    buffer: valid for as long as the body is referenced, and patchable in place
    (`records.patch_base_offset`).
    """

    api_key: ApiKey
    api_version: int
    correlation_id: int
    client_id: str | None
    header_version: int
    size_bytes: int
    body: dict[str, Any] = field(default_factory=dict)
    # False only for an ApiVersions request of a version above ours; its body is not read.
    is_version_supported: bool = True

    @property
    def response_version(self) -> int:
        """The version to encode the response body with (0 for unsupported ApiVersions)."""
        return self.api_version if self.is_version_supported else 0

    @property
    def expects_response(self) -> bool:
        """False for Produce with acks=0: Kafka sends nothing back for those."""
        return not (self.api_key is ApiKey.PRODUCE and self.body.get("acks") == 0)


class KafkaConnection:
    """Parses requests from a byte stream and encodes responses; does no I/O itself.

    Args:
        max_request_bytes: largest request accepted (size prefix excluded); a larger size
            prefix raises `RemoteProtocolError(MESSAGE_TOO_LARGE)` before its body arrives.
        supported: the (api_key, min, max) rows served; defaults to `SUPPORTED_VERSIONS`.
            Every max must be within the schema table.
    """

    __slots__ = (
        "_buf",
        "_eof",
        "_error",
        "_start",
        "_supported",
        "max_request_bytes",
        "supported",
    )

    def __init__(
        self,
        *,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        supported: Iterable[tuple[int, int, int]] | None = None,
    ) -> None:
        if not _HEADER_BYTES_MIN <= max_request_bytes <= _INT32_MAX:
            raise ValueError(f"max_request_bytes={max_request_bytes} out of range")
        self.max_request_bytes = max_request_bytes
        self.supported: tuple[tuple[int, int, int], ...] = tuple(
            SUPPORTED_VERSIONS if supported is None else supported
        )
        self._supported = {key: (lo, hi) for key, lo, hi in self.supported}
        # Received bytes; those before _start were already returned as requests (dropped
        # in one go when the buffer runs dry, not once per pipelined request).
        self._buf = bytearray()
        self._start = 0
        self._eof = False
        self._error: ProtocolError | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and not yet returned as requests."""
        return len(self._buf) - self._start

    def feed(self, data: Buffer) -> None:
        """Buffer bytes read from the socket; `b""` means the peer closed its side.

        Raises:
            LocalProtocolError: data after EOF, or a full request is still waiting to be
                taken with `next_request()` (the caller must drain before feeding more).
        """
        if self._eof and len(data):
            raise LocalProtocolError("data fed after end of stream")
        if not len(data):
            self._eof = True
            return
        if self.buffered_bytes >= self.max_request_bytes + _SIZE.size:
            raise LocalProtocolError("call next_request() until NEED_DATA before feeding more")
        self._buf += data

    def next_request(self) -> Request | Sentinel:
        """Return the next complete request, `NEED_DATA`, or `CLOSED` after a clean EOF.

        Raises:
            RemoteProtocolError: bad size prefix, malformed header or body, EOF inside a
                request. `UnsupportedRequestError` (a subclass) for an API or version we do
                not serve. Once raised, every later call raises again.
        """
        if self._error is not None:
            raise RemoteProtocolError(
                f"connection already failed: {self._error.message}", code=self._error.code
            )
        try:
            return self._next_request()
        except ProtocolError as e:
            self._error = e
            raise

    def _next_request(self) -> Request | Sentinel:
        buf = self._buf
        start = self._start
        if len(buf) - start < _SIZE.size:
            return self._need_data()
        size = _SIZE.unpack_from(buf, start)[0]
        if size > self.max_request_bytes:
            raise RemoteProtocolError(
                f"request of {size} bytes exceeds max_request_bytes={self.max_request_bytes}",
                code=ErrorCode.MESSAGE_TOO_LARGE,
            )
        if size < _HEADER_BYTES_MIN:
            raise RemoteProtocolError(f"request size {size} is smaller than a request header")
        end = start + _SIZE.size + size
        if len(buf) < end:
            return self._need_data()
        # One copy per request, into a buffer of its own: the body's records memoryviews
        # keep it alive, are writable (the broker patches base offsets in place), and the
        # receive buffer stays free to shrink.
        frame = buf[start + _SIZE.size : end]
        self._start = end
        return self._parse(frame)

    def _need_data(self) -> Sentinel:
        if self._start:
            del self._buf[: self._start]
            self._start = 0
        if not self._eof:
            return NEED_DATA
        if self._buf:
            raise RemoteProtocolError(
                f"stream closed inside a request ({len(self._buf)} bytes pending)"
            )
        return CLOSED

    def _parse(self, frame: bytearray) -> Request:
        view = memoryview(frame)
        api_key, api_version, correlation_id = _PEEK.unpack_from(view, 0)
        known = self._supported.get(api_key)
        if known is None:
            raise UnsupportedRequestError(
                f"API key {api_key} is not served (correlation id {correlation_id})",
                api_key=api_key,
                api_version=api_version,
                correlation_id=correlation_id,
                code=ErrorCode.INVALID_REQUEST,
            )
        lo, hi = known
        supported = lo <= api_version <= hi
        if not supported and not (api_key == ApiKey.API_VERSIONS and api_version > hi):
            raise UnsupportedRequestError(
                f"{ApiKey(api_key).name} v{api_version} is not served (v{lo}-v{hi})",
                api_key=api_key,
                api_version=api_version,
                correlation_id=correlation_id,
                code=ErrorCode.UNSUPPORTED_VERSION,
            )
        header_version = request_header_version(api_key, api_version)
        header, pos = decode_header(MessageKind.REQUEST, header_version, view)
        body = decode(api_key, api_version, MessageKind.REQUEST, view[pos:]) if supported else {}
        return Request(
            api_key=ApiKey(api_key),
            api_version=api_version,
            correlation_id=correlation_id,
            client_id=header["client_id"],
            header_version=header_version,
            size_bytes=len(frame),
            body=body,
            is_version_supported=supported,
        )

    def encode_response_chunks(self, request: Request, body: Mapping[str, Any]) -> list[Buffer]:
        """The response as chunks for a vectored write; records buffers are not copied."""
        return _frame_response(request, body)

    def encode_response(self, request: Request, body: Mapping[str, Any]) -> bytes:
        """The bytes to write for `request`'s response: size, header, body.

        Raises:
            LocalProtocolError: the body does not fit the response schema (see
                `codec.encode_chunks`), or the response would exceed 2 GiB.
        """
        return b"".join(_frame_response(request, body))

    def encode_unsupported_version_response(self, request: Request) -> bytes:
        """Answer an ApiVersions request of an unknown version: v0 body, error 35, our ranges."""
        if request.api_key is not ApiKey.API_VERSIONS:
            raise LocalProtocolError(f"{request.api_key.name} has no unsupported-version answer")
        body = api_versions_body(ErrorCode.UNSUPPORTED_VERSION, supported=self.supported)
        return self.encode_response(request, body)


def _frame_response(request: Request, body: Mapping[str, Any]) -> list[Buffer]:
    version = request.response_version
    header_version = response_header_version(request.api_key, version)
    chunks = encode_header(
        MessageKind.RESPONSE, header_version, {"correlation_id": request.correlation_id}
    )
    chunks += encode_chunks(request.api_key, version, MessageKind.RESPONSE, body)
    return _with_size(chunks)


def _with_size(chunks: list[Buffer]) -> list[Buffer]:
    size = sum(c.nbytes if isinstance(c, memoryview) else len(c) for c in chunks)
    if size > _INT32_MAX:
        raise LocalProtocolError(f"frame of {size} bytes exceeds the int32 size prefix")
    out: list[Buffer] = [_SIZE.pack(size)]
    small: list[Buffer] = []
    for c in chunks:
        if len(c) < _COALESCE_BYTES_MAX:
            small.append(c)
            continue
        if small:
            out.append(b"".join(small))
            small = []
        out.append(c)
    if small:
        out.append(b"".join(small))
    # Merge the size prefix into the first chunk when that is small.
    if len(out) > 1 and len(out[1]) < _COALESCE_BYTES_MAX:
        out[0:2] = [bytes(out[0]) + bytes(out[1])]
    return out


# --- the client side, for tests and tools -------------------------------------------------------


def encode_request(
    api_key: int,
    api_version: int,
    body: Mapping[str, Any],
    *,
    correlation_id: int,
    client_id: str | None = "quorumdb",
) -> bytes:
    """A framed request (size, header v1/v2, body), as a Kafka client would send it."""
    header_version = request_header_version(api_key, api_version)
    header = {
        "request_api_key": api_key,
        "request_api_version": api_version,
        "correlation_id": correlation_id,
        "client_id": client_id,
    }
    chunks = encode_header(MessageKind.REQUEST, header_version, header)
    chunks += encode_chunks(api_key, api_version, MessageKind.REQUEST, body)
    return b"".join(_with_size(chunks))


def decode_response(api_key: int, api_version: int, frame: Buffer) -> tuple[int, dict[str, Any]]:
    """Decode a framed response (size prefix included): (correlation_id, body).

    An ApiVersions response with error UNSUPPORTED_VERSION is read as v0, whatever version
    was asked for (KIP-511), as clients do.

    Raises:
        RemoteProtocolError: size prefix disagrees with the frame, or malformed content.
    """
    view = frame if isinstance(frame, memoryview) else memoryview(frame)
    if len(view) < _SIZE.size or _SIZE.unpack_from(view, 0)[0] != len(view) - _SIZE.size:
        raise RemoteProtocolError(f"response frame of {len(view)} bytes has a bad size prefix")
    header_version = response_header_version(api_key, api_version)
    header, pos = decode_header(MessageKind.RESPONSE, header_version, view, _SIZE.size)
    body_view = view[pos:]
    version = api_version
    if (
        api_key == ApiKey.API_VERSIONS
        and len(body_view) >= 2
        and struct.unpack_from(">h", body_view, 0)[0] == ErrorCode.UNSUPPORTED_VERSION
    ):
        version = 0
    return header["correlation_id"], decode(api_key, version, MessageKind.RESPONSE, body_view)
