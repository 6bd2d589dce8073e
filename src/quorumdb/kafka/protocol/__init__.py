"""The Kafka wire protocol as data plus one generic codec: sans-IO and pure.

Nothing here touches sockets, clocks, randomness or threads; the broker's runtime owns the
socket and passes bytes in and out (h11's shape):

    conn = KafkaConnection(max_request_bytes=...)
    conn.feed(data)                          # b"" at EOF
    while (req := conn.next_request()) is not NEED_DATA: ...
        if req is CLOSED: ...
        transport.write(conn.encode_response(req, body))

Modules: `schemas` (generated from Kafka's JSON message specs), `codec` (encode/decode any
message from that table), `connection` (framing, headers, limits), `apis` (API keys and the
version ranges we advertise), `records` (record batches v2), `errors` (`ErrorCode` and the
`ProtocolError` family).
"""

from quorumdb.kafka.protocol.apis import (
    SUPPORTED_VERSIONS,
    ApiKey,
    api_versions_body,
    supported_versions,
)
from quorumdb.kafka.protocol.codec import MessageKind, decode, encode, encode_chunks
from quorumdb.kafka.protocol.connection import (
    CLOSED,
    DEFAULT_MAX_REQUEST_BYTES,
    NEED_DATA,
    KafkaConnection,
    Request,
    Sentinel,
    decode_response,
    encode_request,
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
    "SUPPORTED_VERSIONS",
    "ApiKey",
    "ErrorCode",
    "KafkaConnection",
    "LocalProtocolError",
    "MessageKind",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "Sentinel",
    "UnsupportedRequestError",
    "api_versions_body",
    "decode",
    "decode_response",
    "encode",
    "encode_chunks",
    "encode_request",
    "supported_versions",
]
