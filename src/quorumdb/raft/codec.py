"""The one codec for Raft values that cross a process boundary: msgpack via msgspec.

Structs are array-like, so a message costs its field values and no field names. Decoding
validates types; a malformed payload raises `msgspec.DecodeError` (callers turn that into a
protocol or storage error).
"""

from __future__ import annotations

import msgspec

from quorumdb.raft.messages import ConfChange, Entry, HardState, Message, Snapshot

__all__ = [
    "decode_conf_change",
    "decode_entry",
    "decode_hard_state",
    "decode_message",
    "decode_snapshot",
    "encode",
]

_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode

decode_message = msgspec.msgpack.Decoder(Message).decode
decode_entry = msgspec.msgpack.Decoder(Entry).decode
decode_hard_state = msgspec.msgpack.Decoder(HardState).decode
decode_snapshot = msgspec.msgpack.Decoder(Snapshot).decode
decode_conf_change = msgspec.msgpack.Decoder(ConfChange).decode
