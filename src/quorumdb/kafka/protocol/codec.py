"""One generic encoder/decoder for every Kafka message, driven only by the schema table.

Theory of operation. For each (message, version) the first use compiles the spec into a
decoder and an encoder: closures over `struct.Struct` objects, one per run of consecutive
fixed-width fields (so most of a struct is one `unpack_from`/`pack` call), plus one small reader
or writer per variable-width field. Compiled pairs are cached; the schema is never re-read.

Values are plain Python: a struct is a `dict` keyed by snake_case field names, an array a
`list`, strings `str`, bytes `bytes`, uuids `uuid.UUID`, and `records` (a record-batch
payload) a zero-copy `memoryview` of the input on decode and any buffer - or a list of
buffers, written back to back - on encode. Records are never parsed here (see `records.py`).

Decoding yields exactly the fields of that version (tagged fields included, with their default
when absent on the wire); unknown tags are skipped. Every length is checked against the bytes
left before it is used, and every failure - truncation, a bad length, invalid UTF-8, trailing
bytes - becomes `RemoteProtocolError(INVALID_REQUEST)` naming the field path
(`topics[2].partitions[0].records`). Nothing else escapes.

Encoding fills missing fields with their defaults, refuses keys the message never had (typos),
and, like Kafka's generated code, refuses a non-default value for a field the target version
cannot carry unless the spec marks it ignorable: `LocalProtocolError`. Output is a list of
chunks joined once; records buffers are appended as they are, so `encode_chunks` can go to a
vectored write without copying them.

Flexible versions (KIP-482) use compact lengths (unsigned varint of n + 1, 0 meaning null)
for strings, bytes, records and arrays, and end every struct with a tagged-field section.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from quorumdb.kafka.protocol._schema import (
    FIXED_TYPES,
    FieldSpec,
    MessageKind,
    MessageSpec,
    header_spec,
    message_spec,
)
from quorumdb.kafka.protocol._varint import VarintError, read_uvarint, uvarint_bytes
from quorumdb.kafka.protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

__all__ = [
    "Buffer",
    "FieldSpec",
    "MessageKind",
    "MessageSpec",
    "decode",
    "decode_header",
    "encode",
    "encode_chunks",
    "encode_header",
    "message_spec",
    "request_header_version",
    "response_header_version",
]

Buffer = bytes | bytearray | memoryview
_Reader = Callable[[memoryview, int], tuple[Any, int]]
_Step = Callable[[memoryview, int, dict[str, Any]], int]
_Writer = Callable[[Any, list[Buffer]], None]
_FieldWriter = Callable[[Mapping[str, Any], list[Buffer]], None]

_I8: Final = struct.Struct(">b")
_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")
_INT16_MAX: Final = 0x7FFF
_INT32_MAX: Final = 0x7FFFFFFF
_MISSING: Final = object()
_TAGGED_STEP: Final = "_tagged_fields"
_ENCODE_ERRORS = (struct.error, TypeError, ValueError, AttributeError, OverflowError)


class _WireError(Exception):
    """Internal: what went wrong, and the field path (innermost first) where."""

    def __init__(
        self, reason: str, path: list[str] | None = None, *, code: ErrorCode | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = [] if path is None else path
        self.code = code

    def where(self) -> str:
        out = ""
        for seg in reversed(self.path):
            out += seg if (seg.startswith("[") or not out) else f".{seg}"
        return out or "<message>"


def _nbytes(chunk: Buffer) -> int:
    return chunk.nbytes if isinstance(chunk, memoryview) else len(chunk)


# --- decoding: value readers ------------------------------------------------------------------


def _left(buf: memoryview, pos: int) -> int:
    return len(buf) - pos


def _truncated(e: Exception, buf: memoryview, pos: int) -> str:
    if isinstance(e, VarintError):
        return str(e)
    return f"truncated ({_left(buf, pos)} bytes left)"


def _length_reader(flexible: bool, width: struct.Struct) -> _Reader:
    """Reads a length prefix: compact (uvarint of n+1) or a fixed int16/int32. -1 means null."""
    if flexible:

        def read_compact(buf: memoryview, pos: int) -> tuple[int, int]:
            raw, pos = read_uvarint(buf, pos)
            return raw - 1, pos

        return read_compact

    def read_fixed(buf: memoryview, pos: int) -> tuple[int, int]:
        return width.unpack_from(buf, pos)[0], pos + width.size

    return read_fixed


def _checked_length(n: int, nullable: bool, buf: memoryview, pos: int, what: str) -> bool:
    """True for null; raises for a length that is negative or longer than what is left."""
    if n < 0:
        if n == -1 and nullable:
            return True
        raise _WireError(f"invalid {what} length {n}" + ("" if nullable else " (not nullable)"))
    if n > len(buf) - pos:
        raise _WireError(f"{what} length {n} exceeds the {_left(buf, pos)} bytes left")
    return False


def _string_reader(nullable: bool, flexible: bool) -> _Reader:
    read_len = _length_reader(flexible, _I16)

    def read(buf: memoryview, pos: int) -> tuple[str | None, int]:
        n, pos = read_len(buf, pos)
        if _checked_length(n, nullable, buf, pos, "string"):
            return None, pos
        end = pos + n
        try:
            return str(buf[pos:end], "utf-8"), end
        except UnicodeDecodeError:
            raise _WireError("string is not valid UTF-8") from None

    return read


def _bytes_reader(nullable: bool, flexible: bool, zero_copy: bool) -> _Reader:
    read_len = _length_reader(flexible, _I32)
    what = "records" if zero_copy else "bytes"

    def read(buf: memoryview, pos: int) -> tuple[Buffer | None, int]:
        n, pos = read_len(buf, pos)
        if _checked_length(n, nullable, buf, pos, what):
            return None, pos
        end = pos + n
        return (buf[pos:end] if zero_copy else bytes(buf[pos:end])), end

    return read


def _read_uuid(buf: memoryview, pos: int) -> tuple[uuid.UUID, int]:
    end = pos + 16
    if end > len(buf):
        raise _WireError(f"uuid needs 16 bytes, {_left(buf, pos)} left")
    return uuid.UUID(bytes=bytes(buf[pos:end])), end


def _fixed_reader(code: str) -> _Reader:
    s = struct.Struct(">" + code)

    def read(buf: memoryview, pos: int) -> tuple[Any, int]:
        return s.unpack_from(buf, pos)[0], pos + s.size

    return read


def _array_reader(elem: FieldSpec, version: int, flexible: bool) -> _Reader:
    nullable = elem.is_nullable(version)
    read_len = _length_reader(flexible, _I32)
    code = None if elem.is_struct else FIXED_TYPES.get(elem.type)
    if code is not None:
        size = struct.calcsize(">" + code)

        def read_fixed_items(buf: memoryview, pos: int) -> tuple[list[Any] | None, int]:
            n, pos = read_len(buf, pos)
            if _checked_length(n * size if n > 0 else n, nullable, buf, pos, "array"):
                return None, pos
            return list(struct.unpack_from(f">{n}{code}", buf, pos)), pos + n * size

        return read_fixed_items
    read_item = _element_reader(elem, version, flexible)

    def read_items(buf: memoryview, pos: int) -> tuple[list[Any] | None, int]:
        n, pos = read_len(buf, pos)
        # Every element takes at least one byte (Kafka makes the same check), so a count
        # above the bytes left is corrupt - and must not drive a huge allocation or loop.
        if _checked_length(n, nullable, buf, pos, "array"):
            return None, pos
        items = []
        i = 0
        try:
            for i in range(n):  # noqa: B007 - i names the element in errors
                item, pos = read_item(buf, pos)
                items.append(item)
        except _WireError as e:
            e.path.append(f"[{i}]")
            raise
        except (struct.error, IndexError, VarintError) as e:
            raise _WireError(_truncated(e, buf, pos), [f"[{i}]"]) from None
        return items, pos

    return read_items


def _element_reader(f: FieldSpec, version: int, flexible: bool) -> _Reader:
    """Reads one value of f's element type (the struct, or the primitive)."""
    if f.is_struct:
        assert f.fields is not None
        return _struct_decoder(f.fields, version, flexible)
    code = FIXED_TYPES.get(f.type)
    if code is not None:
        return _fixed_reader(code)
    # Array elements are never null in Kafka's specs; nullability belongs to the array.
    if f.type == "string":
        return _string_reader(False, flexible)
    if f.type in ("bytes", "records"):
        return _bytes_reader(False, flexible, f.type == "records")
    assert f.type == "uuid", f.type
    return _read_uuid


def _value_reader(f: FieldSpec, version: int, message_flexible: bool) -> _Reader:
    flexible = f.is_flexible(version, message_flexible)
    nullable = f.is_nullable(version)
    if f.is_array:
        return _array_reader(f, version, flexible)
    if f.is_struct:
        read_struct = _element_reader(f, version, flexible)
        if not nullable:
            return read_struct

        def read_nullable_struct(buf: memoryview, pos: int) -> tuple[Any, int]:
            marker = _I8.unpack_from(buf, pos)[0]
            if marker < 0:
                return None, pos + 1
            return read_struct(buf, pos + 1)

        return read_nullable_struct
    if f.type == "string":
        return _string_reader(nullable, flexible)
    if f.type in ("bytes", "records"):
        return _bytes_reader(nullable, flexible, f.type == "records")
    return _element_reader(f, version, flexible)


# --- decoding: structs ------------------------------------------------------------------------


def _store(name: str, read: _Reader) -> _Step:
    def step(buf: memoryview, pos: int, out: dict[str, Any]) -> int:
        out[name], pos = read(buf, pos)
        return pos

    return step


def _fixed_group_step(group: list[FieldSpec]) -> _Step:
    codes = "".join(FIXED_TYPES[f.type] for f in group)
    s = struct.Struct(">" + codes)
    names = tuple(f.name for f in group)
    ends = []
    at = 0
    for f in group:
        at += struct.calcsize(">" + FIXED_TYPES[f.type])
        ends.append(at)

    def step(buf: memoryview, pos: int, out: dict[str, Any]) -> int:
        try:
            values = s.unpack_from(buf, pos)
        except struct.error:
            left = _left(buf, pos)
            culprit = next(n for n, end in zip(names, ends, strict=True) if end > left)
            raise _WireError("truncated", [culprit]) from None
        out.update(zip(names, values, strict=True))
        return pos + s.size

    return step


def _default_factory(f: FieldSpec, version: int) -> Callable[[], Any]:
    if f.is_struct and not f.is_array:
        if f.default_text == "null":
            return lambda: None
        assert f.fields is not None
        fields = f.fields
        return lambda: _struct_defaults(fields, version)
    return f.scalar_default


def _struct_defaults(fields: Sequence[FieldSpec], version: int) -> dict[str, Any]:
    return {f.name: _default_factory(f, version)() for f in fields if f.in_version(version)}


def _tagged_step(tagged: list[FieldSpec], version: int) -> _Step:
    readers = {f.tag: (f.name, _value_reader(f, version, True)) for f in tagged}
    defaults = [(f.name, _default_factory(f, version)) for f in tagged]

    def step(buf: memoryview, pos: int, out: dict[str, Any]) -> int:
        for name, factory in defaults:
            out[name] = factory()
        count, pos = read_uvarint(buf, pos)
        if count > len(buf) - pos:
            raise _WireError(f"{count} tagged fields in {_left(buf, pos)} bytes")
        for _ in range(count):
            tag, pos = read_uvarint(buf, pos)
            size, pos = read_uvarint(buf, pos)
            end = pos + size
            if end > len(buf):
                raise _WireError(f"tagged field {tag} of {size} bytes, {_left(buf, pos)} left")
            entry = readers.get(tag)
            if entry is not None:
                name, read = entry
                try:
                    out[name], used = read(buf[:end], pos)
                except _WireError as e:
                    e.path.append(name)
                    raise
                except (struct.error, IndexError, VarintError) as e:
                    raise _WireError(_truncated(e, buf[:end], pos), [name]) from None
                if used != end:
                    raise _WireError(f"tagged field of {size} bytes used {used - pos}", [name])
            pos = end
        return pos

    return step


def _struct_decoder(
    fields: Sequence[FieldSpec], version: int, flexible: bool
) -> Callable[[memoryview, int], tuple[dict[str, Any], int]]:
    steps: list[tuple[str, _Step]] = []
    group: list[FieldSpec] = []
    tagged: list[FieldSpec] = []
    for f in fields:
        if not f.in_version(version):
            continue
        if flexible and f.is_tagged(version):
            tagged.append(f)
            continue
        if not f.is_array and not f.is_struct and f.type in FIXED_TYPES:
            group.append(f)
            continue
        if group:
            steps.append(("", _fixed_group_step(group)))
            group = []
        steps.append((f.name, _store(f.name, _value_reader(f, version, flexible))))
    if group:
        steps.append(("", _fixed_group_step(group)))
    if flexible:
        steps.append((_TAGGED_STEP, _tagged_step(tagged, version)))
    frozen_steps = tuple(steps)

    def decode_struct(buf: memoryview, pos: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        name = ""
        try:
            for name, step in frozen_steps:  # noqa: B007 - name locates errors
                pos = step(buf, pos, out)
        except _WireError as e:
            if name:
                e.path.append(name)
            raise
        except (struct.error, IndexError, VarintError) as e:
            raise _WireError(_truncated(e, buf, pos), [name] if name else []) from None
        return out, pos

    return decode_struct


# --- encoding ---------------------------------------------------------------------------------


def _length_writer(flexible: bool, width: struct.Struct, limit: int) -> Callable[[int], bytes]:
    if flexible:
        return lambda n: uvarint_bytes(n + 1)

    def write_fixed(n: int) -> bytes:
        if n > limit:
            raise _WireError(f"length {n} exceeds the limit of {limit}")
        return width.pack(n)

    return write_fixed


def _string_writer(nullable: bool, flexible: bool) -> _Writer:
    write_len = _length_writer(flexible, _I16, _INT16_MAX)

    def write(v: Any, out: list[Buffer]) -> None:
        if v is None:
            if not nullable:
                raise _WireError("null is not allowed in this version")
            out.append(write_len(-1))
            return
        if not isinstance(v, str):
            raise _WireError(f"expected str, got {type(v).__name__}")
        b = v.encode("utf-8")
        out.append(write_len(len(b)) + b)

    return write


def _bytes_writer(nullable: bool, flexible: bool, chunked: bool) -> _Writer:
    write_len = _length_writer(flexible, _I32, _INT32_MAX)

    def write(v: Any, out: list[Buffer]) -> None:
        if v is None:
            if not nullable:
                raise _WireError("null is not allowed in this version")
            out.append(write_len(-1))
            return
        if isinstance(v, bytes | bytearray | memoryview):
            out.append(write_len(_nbytes(v)))
            if len(v):
                out.append(v)
            return
        # Records may come as several buffers (e.g. batches read from two segments).
        if chunked and isinstance(v, list | tuple):
            for chunk in v:
                if not isinstance(chunk, bytes | bytearray | memoryview):
                    raise _WireError(f"records chunk is {type(chunk).__name__}, not a buffer")
            out.append(write_len(sum(_nbytes(c) for c in v)))
            out.extend(v)
            return
        raise _WireError(f"expected a bytes-like value, got {type(v).__name__}")

    return write


def _write_uuid(v: Any, out: list[Buffer]) -> None:
    if isinstance(v, uuid.UUID):
        out.append(v.bytes)
    elif isinstance(v, bytes) and len(v) == 16:
        out.append(v)
    else:
        raise _WireError(f"expected a uuid.UUID, got {type(v).__name__}")


def _fixed_writer(code: str) -> _Writer:
    s = struct.Struct(">" + code)

    def write(v: Any, out: list[Buffer]) -> None:
        out.append(s.pack(v))

    return write


def _element_writer(f: FieldSpec, version: int, flexible: bool) -> _Writer:
    if f.is_struct:
        assert f.fields is not None
        return _struct_encoder(f.fields, version, flexible)
    code = FIXED_TYPES.get(f.type)
    if code is not None:
        return _fixed_writer(code)
    if f.type == "string":
        return _string_writer(False, flexible)
    if f.type in ("bytes", "records"):
        return _bytes_writer(False, flexible, f.type == "records")
    assert f.type == "uuid", f.type
    return _write_uuid


def _array_writer(elem: FieldSpec, version: int, flexible: bool) -> _Writer:
    nullable = elem.is_nullable(version)
    write_len = _length_writer(flexible, _I32, _INT32_MAX)
    code = None if elem.is_struct else FIXED_TYPES.get(elem.type)
    write_item = _element_writer(elem, version, flexible)

    def write(v: Any, out: list[Buffer]) -> None:
        if v is None:
            if not nullable:
                raise _WireError("null is not allowed in this version")
            out.append(write_len(-1))
            return
        if not isinstance(v, list | tuple):
            raise _WireError(f"expected a list, got {type(v).__name__}")
        out.append(write_len(len(v)))
        if code is not None:
            out.append(struct.pack(f">{len(v)}{code}", *v))
            return
        i = 0
        try:
            for i, item in enumerate(v):  # noqa: B007 - i names the element in errors
                write_item(item, out)
        except _WireError as e:
            e.path.append(f"[{i}]")
            raise
        except _ENCODE_ERRORS as e:
            raise _WireError(f"cannot encode: {e}", [f"[{i}]"]) from None

    return write


def _value_writer(f: FieldSpec, version: int, message_flexible: bool) -> _Writer:
    flexible = f.is_flexible(version, message_flexible)
    nullable = f.is_nullable(version)
    if f.is_array:
        return _array_writer(f, version, flexible)
    if f.is_struct:
        write_struct = _element_writer(f, version, flexible)
        if not nullable:
            return write_struct

        def write_nullable_struct(v: Any, out: list[Buffer]) -> None:
            if v is None:
                out.append(_I8.pack(-1))
            else:
                out.append(_I8.pack(1))
                write_struct(v, out)

        return write_nullable_struct
    if f.type == "string":
        return _string_writer(nullable, flexible)
    if f.type in ("bytes", "records"):
        return _bytes_writer(nullable, flexible, f.type == "records")
    return _element_writer(f, version, flexible)


def _field_writer(f: FieldSpec, version: int, flexible: bool) -> _FieldWriter:
    name = f.name
    factory = _default_factory(f, version)
    write = _value_writer(f, version, flexible)

    def step(value: Mapping[str, Any], out: list[Buffer]) -> None:
        v = value.get(name, _MISSING)
        write(factory() if v is _MISSING else v, out)

    return step


def _fixed_group_writer(group: list[FieldSpec]) -> _FieldWriter:
    s = struct.Struct(">" + "".join(FIXED_TYPES[f.type] for f in group))
    pairs = tuple((f.name, f.scalar_default()) for f in group)

    def step(value: Mapping[str, Any], out: list[Buffer]) -> None:
        get = value.get
        try:
            out.append(s.pack(*[get(n, d) for n, d in pairs]))
        except struct.error:
            for f in group:
                v = get(f.name, f.scalar_default())
                try:
                    struct.pack(">" + FIXED_TYPES[f.type], v)
                except struct.error:
                    raise _WireError(f"cannot encode {v!r} as {f.type}", [f.name]) from None
            raise

    return step


def _tagged_writer(tagged: list[FieldSpec], version: int) -> _FieldWriter:
    entries = [
        (f.tag, f.name, _default_factory(f, version), _value_writer(f, version, True))
        for f in sorted(tagged, key=lambda f: f.tag or 0)
    ]

    def step(value: Mapping[str, Any], out: list[Buffer]) -> None:
        parts: list[Buffer] = []
        count = 0
        for tag, name, factory, write in entries:
            v = value.get(name, _MISSING)
            if v is _MISSING or v == factory():
                continue  # Kafka writes a tagged field only when it differs from its default
            sub: list[Buffer] = []
            try:
                write(v, sub)
            except _WireError as e:
                e.path.append(name)
                raise
            except _ENCODE_ERRORS as e:
                raise _WireError(f"cannot encode: {e}", [name]) from None
            assert tag is not None
            parts.append(uvarint_bytes(tag))
            parts.append(uvarint_bytes(sum(_nbytes(c) for c in sub)))
            parts.extend(sub)
            count += 1
        out.append(uvarint_bytes(count))
        out.extend(parts)

    return step


def _struct_encoder(
    fields: Sequence[FieldSpec], version: int, flexible: bool
) -> Callable[[Any, list[Buffer]], None]:
    steps: list[tuple[str, _FieldWriter]] = []
    group: list[FieldSpec] = []
    tagged: list[FieldSpec] = []
    absent: list[tuple[str, Callable[[], Any], bool]] = []
    for f in fields:
        if not f.in_version(version):
            absent.append((f.name, _default_factory(f, version), f.ignorable))
            continue
        if flexible and f.is_tagged(version):
            tagged.append(f)
            continue
        if not f.is_array and not f.is_struct and f.type in FIXED_TYPES:
            group.append(f)
            continue
        if group:
            steps.append(("", _fixed_group_writer(group)))
            group = []
        steps.append((f.name, _field_writer(f, version, flexible)))
    if group:
        steps.append(("", _fixed_group_writer(group)))
    if flexible:
        steps.append((_TAGGED_STEP, _tagged_writer(tagged, version)))
    known = frozenset(f.name for f in fields)
    frozen_steps = tuple(steps)
    frozen_absent = tuple(absent)

    def encode_struct(value: Any, out: list[Buffer]) -> None:
        if not isinstance(value, Mapping):
            raise _WireError(f"expected a dict, got {type(value).__name__}")
        extra = value.keys() - known
        if extra:
            raise _WireError(f"unknown field(s) {sorted(extra)}; known: {sorted(known)}")
        for absent_name, factory, ignorable in frozen_absent:
            v = value.get(absent_name, _MISSING)
            if v is not _MISSING and not ignorable and v != factory():
                raise _WireError(
                    f"{absent_name}={v!r} cannot be sent in version {version}",
                    code=ErrorCode.UNSUPPORTED_VERSION,
                )
        name = ""
        try:
            for name, step in frozen_steps:  # noqa: B007 - name locates errors
                step(value, out)
        except _WireError as e:
            if name:
                e.path.append(name)
            raise
        except _ENCODE_ERRORS as e:
            raise _WireError(f"cannot encode: {e}", [name] if name else []) from None

    return encode_struct


# --- compiled messages and the public API -----------------------------------------------------


_Decoder = Callable[[memoryview, int], tuple[dict[str, Any], int]]
_Encoder = Callable[[Any, list[Buffer]], None]
_compiled: dict[tuple[str, int], tuple[_Decoder, _Encoder]] = {}


def _compile(spec: MessageSpec, version: int) -> tuple[_Decoder, _Encoder]:
    key = (spec.name, version)
    pair = _compiled.get(key)
    if pair is None:
        flexible = spec.is_flexible(version)
        pair = (
            _struct_decoder(spec.fields, version, flexible),
            _struct_encoder(spec.fields, version, flexible),
        )
        _compiled[key] = pair
    return pair


def _spec(api_key: int, version: int, kind: MessageKind | str, local: bool) -> MessageSpec:
    kind = MessageKind(kind)
    spec = message_spec(api_key, kind) if kind is not MessageKind.HEADER else None
    error = LocalProtocolError if local else RemoteProtocolError
    if spec is None:
        raise error(f"unknown API key {api_key} ({kind})", code=ErrorCode.INVALID_REQUEST)
    if not spec.has_version(version):
        lo, hi = spec.versions
        raise error(
            f"{spec.name} v{version} is not supported (v{lo}-v{hi})",
            code=ErrorCode.UNSUPPORTED_VERSION,
        )
    return spec


def _remote(spec_name: str, version: int, e: _WireError) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"malformed {spec_name} v{version}: {e.where()}: {e.reason}",
        code=e.code or ErrorCode.INVALID_REQUEST,
    )


def _local(spec_name: str, version: int, e: _WireError) -> LocalProtocolError:
    return LocalProtocolError(
        f"cannot encode {spec_name} v{version}: {e.where()}: {e.reason}",
        code=e.code or ErrorCode.INVALID_REQUEST,
    )


def _decode_at(
    spec: MessageSpec, version: int, buf: memoryview, pos: int
) -> tuple[dict[str, Any], int]:
    decode_struct, _ = _compile(spec, version)
    try:
        return decode_struct(buf, pos)
    except _WireError as e:
        raise _remote(spec.name, version, e) from None


def decode(api_key: int, version: int, kind: MessageKind | str, data: Buffer) -> dict[str, Any]:
    """Decode one request or response body (no size prefix, no header).

    Args:
        api_key: the Kafka API key (e.g. 0 for Produce).
        version: the API version the peer used.
        kind: `MessageKind.REQUEST` or `MessageKind.RESPONSE` (or "request"/"response").
        data: the body bytes; `records` fields come back as memoryviews of it (no copy).

    Returns:
        A dict of the version's fields (snake_case names); nested structs are dicts.

    Raises:
        RemoteProtocolError: unknown API (INVALID_REQUEST), version outside the schema table
            (UNSUPPORTED_VERSION), or malformed bytes (INVALID_REQUEST, naming the field).
    """
    spec = _spec(api_key, version, kind, local=False)
    buf = data if isinstance(data, memoryview) else memoryview(data)
    value, pos = _decode_at(spec, version, buf, 0)
    if pos != len(buf):
        raise RemoteProtocolError(
            f"malformed {spec.name} v{version}: {len(buf) - pos} unexpected bytes after the body",
            code=ErrorCode.INVALID_REQUEST,
        )
    return value


def encode_chunks(
    api_key: int, version: int, kind: MessageKind | str, value: Mapping[str, Any]
) -> list[Buffer]:
    """Encode a body as a list of chunks (records buffers are included as they are).

    Suits vectored writes (`transport.writelines`); `encode` joins the same chunks once.

    Raises:
        LocalProtocolError: unknown API or version, a value of the wrong type or range, an
            unknown field, or a non-ignorable field set to a non-default value in a version
            that lacks it (code UNSUPPORTED_VERSION).
    """
    spec = _spec(api_key, version, kind, local=True)
    _, encode_struct = _compile(spec, version)
    out: list[Buffer] = []
    try:
        encode_struct(value, out)
    except _WireError as e:
        raise _local(spec.name, version, e) from None
    return out


def encode(api_key: int, version: int, kind: MessageKind | str, value: Mapping[str, Any]) -> bytes:
    """Encode a request or response body (no size prefix, no header); see `encode_chunks`."""
    return b"".join(encode_chunks(api_key, version, kind, value))


def request_header_version(api_key: int, api_version: int) -> int:
    """Request header version: 2 (flexible, KIP-482) when the API version is flexible, else 1.

    Decided from the spec's open-ended flexible range, so it is right even for versions above
    the ones we serve (an ApiVersions v4 request still has a v2 header); an unknown API gets 1.
    """
    spec = message_spec(api_key, MessageKind.REQUEST)
    return 2 if spec is not None and spec.is_flexible(api_version) else 1


def response_header_version(api_key: int, api_version: int) -> int:
    """Response header version: 1 when flexible, else 0; ApiVersions ALWAYS uses 0.

    A client that does not yet know our versions must be able to read the ApiVersions
    response, so its header stays v0 even for the flexible v3 body (KIP-511).
    """
    if api_key == _API_VERSIONS_KEY:
        return 0
    spec = message_spec(api_key, MessageKind.RESPONSE)
    return 1 if spec is not None and spec.is_flexible(api_version) else 0


_API_VERSIONS_KEY: Final = 18


def decode_header(
    kind: MessageKind | str, header_version: int, buf: memoryview, pos: int = 0
) -> tuple[dict[str, Any], int]:
    """Decode a request (kind REQUEST) or response (kind RESPONSE) header at `pos`.

    Returns the header fields and the position where the body starts.

    Raises:
        RemoteProtocolError: truncated or malformed header (INVALID_REQUEST).
    """
    spec = header_spec(MessageKind(kind))
    assert spec.has_version(header_version), f"{spec.name} v{header_version}"
    return _decode_at(spec, header_version, buf, pos)


def encode_header(
    kind: MessageKind | str, header_version: int, value: Mapping[str, Any]
) -> list[Buffer]:
    """Encode a request or response header as chunks."""
    spec = header_spec(MessageKind(kind))
    assert spec.has_version(header_version), f"{spec.name} v{header_version}"
    _, encode_struct = _compile(spec, header_version)
    out: list[Buffer] = []
    try:
        encode_struct(value, out)
    except _WireError as e:
        raise _local(spec.name, header_version, e) from None
    return out
