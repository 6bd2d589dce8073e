"""Typed, validated view of the generated schema table (`schemas.py`).

`schemas.MESSAGES` is plain data; this module turns each entry into frozen `MessageSpec` /
`FieldSpec` values once, at import, checking that every field has a known type, sane version
ranges and a default that parses. The codec compiles encoders and decoders from these specs.

Kafka's rules reproduced here (from the message generator's `FieldSpec`):
- a field exists in version v when v is in `versions`; nullable, tagged and flexible ranges
  are subsets of it;
- defaults: numbers 0, bool false, string "", bytes b"", arrays [], records null, uuid zero,
  structs all-defaults; the spec's `default` text overrides ("null" only where nullable).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from quorumdb.kafka.protocol import schemas

__all__ = [
    "FIXED_TYPES",
    "FieldSpec",
    "MessageKind",
    "MessageSpec",
    "all_message_specs",
    "header_spec",
    "message_spec",
]

# Kafka type name -> struct format character (big-endian); the fixed-width primitives.
FIXED_TYPES: dict[str, str] = {
    "bool": "?",
    "int8": "b",
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "int64": "q",
    "float64": "d",
}
_VARIABLE_TYPES = frozenset({"string", "bytes", "records", "uuid"})
_ZERO_UUID = uuid.UUID(int=0)

VersionRange = tuple[int, int]


class MessageKind(StrEnum):
    REQUEST = "request"
    RESPONSE = "response"
    HEADER = "header"


def _in(rng: VersionRange | None, version: int) -> bool:
    return rng is not None and rng[0] <= version <= rng[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldSpec:
    """One field of a struct. `type` is the element type for arrays (`is_array`)."""

    name: str
    kafka_name: str
    type: str
    is_array: bool
    versions: VersionRange
    nullable_versions: VersionRange | None
    tagged_versions: VersionRange | None
    tag: int | None
    ignorable: bool
    default_text: str | None
    # None: follow the message; otherwise the versions in which this field is flexible
    # (an empty range for "none", as for the request header's ClientId).
    flexible_override: VersionRange | None
    has_flexible_override: bool
    fields: tuple[FieldSpec, ...] | None

    @property
    def is_struct(self) -> bool:
        return self.fields is not None

    def in_version(self, version: int) -> bool:
        return _in(self.versions, version)

    def is_nullable(self, version: int) -> bool:
        return _in(self.nullable_versions, version)

    def is_tagged(self, version: int) -> bool:
        return _in(self.tagged_versions, version)

    def is_flexible(self, version: int, message_flexible: bool) -> bool:
        if self.has_flexible_override:
            return _in(self.flexible_override, version)
        return message_flexible

    def scalar_default(self) -> Any:
        """The default of a non-struct field (a fresh object for mutable ones)."""
        text = self.default_text
        if self.is_array:
            return None if text == "null" else []
        t = self.type
        if t in ("int8", "int16", "uint16", "int32", "int64"):
            return int(text, 0) if text else 0
        if t == "float64":
            return float(text) if text else 0.0
        if t == "bool":
            return (text or "false").lower() == "true"
        if t == "string":
            return None if text == "null" else (text or "")
        if t == "bytes":
            return None if text == "null" else b""
        if t == "records":
            return None
        if t == "uuid":
            return uuid.UUID(text) if text else _ZERO_UUID
        raise AssertionError(f"no scalar default for {self.name}: {t}")


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSpec:
    """A request, response or header: its versions and top-level fields."""

    name: str
    kind: MessageKind
    api_key: int | None
    versions: VersionRange
    spec_versions: str
    flexible_min: int | None
    fields: tuple[FieldSpec, ...]

    def is_flexible(self, version: int) -> bool:
        return self.flexible_min is not None and version >= self.flexible_min

    def has_version(self, version: int) -> bool:
        return _in(self.versions, version)


def _range(raw: Any, where: str) -> VersionRange:
    assert isinstance(raw, tuple), f"{where}: version range {raw!r} is not a tuple"
    assert len(raw) == 2, f"{where}: version range {raw!r} is not (lo, hi)"
    lo, hi = raw
    assert 0 <= lo <= hi, f"{where}: bad version range {raw!r}"
    return (lo, hi)


def _subrange(raw: Any, outer: VersionRange, where: str) -> VersionRange | None:
    if raw is None:
        return None
    rng = _range(raw, where)
    assert outer[0] <= rng[0], f"{where}: {rng} starts before {outer}"
    assert rng[1] <= outer[1], f"{where}: {rng} ends after {outer}"
    return rng


def _field(raw: dict[str, Any], where: str) -> FieldSpec:
    where = f"{where}.{raw['name']}"
    ftype: str = raw["type"]
    is_array = ftype.startswith("[]")
    elem = ftype.removeprefix("[]")
    raw_fields = raw.get("fields")
    if raw_fields is None:
        known = elem in FIXED_TYPES or elem in _VARIABLE_TYPES
        assert known, f"{where}: unknown type {ftype!r}"
    versions = _range(raw["versions"], where)
    tagged = _subrange(raw.get("tagged_versions"), versions, where)
    assert (tagged is None) == ("tag" not in raw), f"{where}: tag without tagged versions"
    fields = None
    if raw_fields is not None:
        fields = tuple(_field(f, where) for f in raw_fields)
        names = [f.name for f in fields]
        assert len(set(names)) == len(names), f"{where}: duplicate field names {names}"
    spec = FieldSpec(
        name=raw["name"],
        kafka_name=raw["kafka_name"],
        type=elem,
        is_array=is_array,
        versions=versions,
        nullable_versions=_subrange(raw.get("nullable_versions"), versions, where),
        tagged_versions=tagged,
        tag=raw.get("tag"),
        ignorable=bool(raw.get("ignorable", False)),
        default_text=raw.get("default"),
        flexible_override=raw.get("flexible_versions"),
        has_flexible_override="flexible_versions" in raw,
        fields=fields,
    )
    if spec.default_text == "null":
        assert spec.nullable_versions is not None, f"{where}: null default but never nullable"
    if not spec.is_struct or spec.is_array:
        spec.scalar_default()  # the default text must parse
    return spec


def _message(raw: dict[str, Any]) -> MessageSpec:
    name = raw["name"]
    fields = tuple(_field(f, name) for f in raw["fields"])
    spec = MessageSpec(
        name=name,
        kind=MessageKind(raw["kind"]),
        api_key=raw.get("api_key"),
        versions=_range(raw["versions"], name),
        spec_versions=raw["spec_versions"],
        flexible_min=raw["flexible_min"],
        fields=fields,
    )
    if spec.kind is not MessageKind.HEADER:
        assert spec.api_key is not None, f"{name}: no api key"
    return spec


_SPECS: dict[str, MessageSpec] = {name: _message(raw) for name, raw in schemas.MESSAGES.items()}
_BY_KEY: dict[tuple[int, MessageKind], MessageSpec] = {
    (s.api_key, s.kind): s for s in _SPECS.values() if s.api_key is not None
}


def message_spec(api_key: int, kind: MessageKind) -> MessageSpec | None:
    """The spec of one API's request or response, or None for an API we do not know."""
    return _BY_KEY.get((api_key, kind))


def header_spec(kind: MessageKind) -> MessageSpec:
    """The request header (kind REQUEST) or response header (kind RESPONSE) spec."""
    name = "RequestHeader" if kind is MessageKind.REQUEST else "ResponseHeader"
    return _SPECS[name]


def all_message_specs() -> tuple[MessageSpec, ...]:
    """Every request and response spec (headers excluded), in schema order."""
    return tuple(s for s in _SPECS.values() if s.kind is not MessageKind.HEADER)
