"""Variable-length integers of the Kafka protocol (protobuf style, little-endian groups of 7).

Unsigned varints carry compact lengths and tagged-field headers (KIP-482); zigzag varints and
varlongs carry record fields inside a v2 record batch (KIP-98). Readers take a buffer and a
position and return (value, new position); they raise `VarintError` on a truncated or overlong
encoding, never IndexError.
"""

from __future__ import annotations

__all__ = [
    "VarintError",
    "read_uvarint",
    "read_varint",
    "read_varlong",
    "uvarint_bytes",
    "varint_bytes",
]


class VarintError(ValueError):
    """A varint ran past the end of the buffer or past its maximum length."""


def read_uvarint(buf: memoryview | bytes, pos: int, max_bytes: int = 5) -> tuple[int, int]:
    """Read an unsigned varint of at most `max_bytes` bytes (5 for 32 bits, 10 for 64)."""
    end = len(buf)
    if pos < end:
        b = buf[pos]
        if b < 0x80:
            return b, pos + 1
    value = 0
    shift = 0
    for i in range(max_bytes):
        if pos + i >= end:
            raise VarintError("truncated varint")
        b = buf[pos + i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos + i + 1
        shift += 7
    raise VarintError(f"varint longer than {max_bytes} bytes")


def read_varint(buf: memoryview | bytes, pos: int) -> tuple[int, int]:
    """Read a zigzag-encoded signed 32-bit varint."""
    raw, pos = read_uvarint(buf, pos, 5)
    if raw > 0xFFFFFFFF:
        raise VarintError("varint out of 32-bit range")
    return (raw >> 1) ^ -(raw & 1), pos


def read_varlong(buf: memoryview | bytes, pos: int) -> tuple[int, int]:
    """Read a zigzag-encoded signed 64-bit varint."""
    raw, pos = read_uvarint(buf, pos, 10)
    if raw > 0xFFFFFFFFFFFFFFFF:
        raise VarintError("varlong out of 64-bit range")
    return (raw >> 1) ^ -(raw & 1), pos


def uvarint_bytes(value: int) -> bytes:
    """Encode a non-negative integer as an unsigned varint."""
    if value < 0:
        raise ValueError(f"unsigned varint of negative value {value}")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_bytes(value: int) -> bytes:
    """Encode a signed integer (32 or 64 bits) with zigzag, as Kafka's records do."""
    return uvarint_bytes((value << 1) ^ (value >> 63))
