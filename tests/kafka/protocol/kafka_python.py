"""Adapters between our message dicts and kafka-python's two protocol implementations.

kafka-python ships (a) hand-written structs in `kafka.protocol.old` (the 2.x code, positional
tuples, written from Kafka's protocol guide - independent of the JSON specs) and (b) classes
generated at import from Kafka's JSON specs (`kafka.protocol.{metadata,consumer,producer,
admin}`). The tests encode with one side and decode with the other, both ways.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import kafka.protocol.old as old_pkg
from kafka.protocol.api_message import ApiMessage
from kafka.protocol.old.struct import Struct
from kafka.protocol.old.types import BitField, Schema, TaggedFields

from quorumdb.kafka.protocol.codec import FieldSpec

__all__ = ["NEW", "OLD", "from_old", "new_from_dict", "normalize", "to_old", "untagged"]

_INT32_MIN = -(2**31)


def _old_classes() -> dict[tuple[int, int, str], type[Struct]]:
    found: dict[tuple[int, int, str], type[Struct]] = {}
    for info in pkgutil.iter_modules(old_pkg.__path__):
        module = importlib.import_module(f"kafka.protocol.old.{info.name}")
        for name, cls in vars(module).items():
            if not (isinstance(cls, type) and issubclass(cls, Struct) and "_v" in name):
                continue
            if not hasattr(cls, "API_KEY") or not hasattr(cls, "API_VERSION"):
                continue
            kind = "request" if "Request" in name else "response"
            found[(cls.API_KEY, cls.API_VERSION, kind)] = cls
    return found


def _new_classes() -> dict[tuple[int, str], Any]:
    for package in ("metadata", "consumer", "producer", "admin"):
        pkg = importlib.import_module(f"kafka.protocol.{package}")
        for info in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"kafka.protocol.{package}.{info.name}")

    def walk(cls: type) -> Any:
        for sub in cls.__subclasses__():
            yield sub
            yield from walk(sub)

    return {
        (c.API_KEY, c.type): c for c in walk(ApiMessage) if getattr(c, "_class_version", 1) is None
    }


OLD = _old_classes()
NEW = _new_classes()


def _is_tags(t: Any) -> bool:
    return t is TaggedFields or isinstance(t, TaggedFields)


def _is_bitfield(t: Any) -> bool:
    return t is BitField or isinstance(t, BitField)


def _pairs(fields: tuple[FieldSpec, ...], version: int, schema: Schema) -> list[Any]:
    """Our wire-order fields zipped with theirs (names may differ; positions do not)."""
    ours = [f for f in fields if f.in_version(version) and not f.is_tagged(version)]
    theirs = [(n, t) for n, t in zip(schema.names, schema.fields, strict=True) if not _is_tags(t)]
    assert len(ours) == len(theirs), ([f.name for f in ours], [n for n, _ in theirs])
    return list(zip(ours, theirs, strict=True))


def to_old(
    value: dict[str, Any], fields: tuple[FieldSpec, ...], version: int, schema: Schema
) -> list[Any]:
    """Our dict -> the positional values of an old-style struct."""
    pairs = iter(_pairs(fields, version, schema))
    out: list[Any] = []
    for t in schema.fields:
        if _is_tags(t):
            out.append({})
            continue
        f, (_, t) = next(pairs)
        v = value[f.name]
        if f.is_array and f.fields is not None and v is not None:
            if isinstance(t.array_of, Schema):
                v = [tuple(to_old(x, f.fields, version, t.array_of)) for x in v]
            else:  # theirs: array of a primitive; ours: array of a one-field struct
                v = [next(iter(x.values())) for x in v]
        elif _is_bitfield(t):
            v = None if v == _INT32_MIN else {b for b in range(32) if (v & 0xFFFFFFFF) >> b & 1}
        elif isinstance(v, memoryview):
            v = bytes(v)
        out.append(v)
    return out


def from_old(
    values: list[Any], fields: tuple[FieldSpec, ...], version: int, schema: Schema
) -> dict[str, Any]:
    """The positional values of an old-style struct -> our dict (tagged fields left out)."""
    # (decoded element tuples may lack their trailing tag dict)
    plain = [v for v, t in zip(values, schema.fields, strict=False) if not _is_tags(t)]
    out: dict[str, Any] = {}
    for (f, (_, t)), v in zip(_pairs(fields, version, schema), plain, strict=True):
        if f.is_array and f.fields is not None and v is not None:
            if isinstance(t.array_of, Schema):
                v = [from_old(list(x), f.fields, version, t.array_of) for x in v]
            else:
                v = [{f.fields[0].name: x} for x in v]
        elif _is_bitfield(t):
            v = _INT32_MIN if v is None else sum(1 << b for b in v) - (2**32 if 31 in v else 0)
        out[f.name] = v
    return out


def untagged(value: dict[str, Any], fields: tuple[FieldSpec, ...], version: int) -> dict[str, Any]:
    """Our dict without tagged fields, records as bytes (what old structs can express)."""
    out: dict[str, Any] = {}
    for f in fields:
        if not f.in_version(version) or f.is_tagged(version):
            continue
        v = value[f.name]
        if f.is_array and f.fields is not None and v is not None:
            v = [untagged(x, f.fields, version) for x in v]
        elif isinstance(v, memoryview):
            v = bytes(v)
        out[f.name] = v
    return out


def new_from_dict(container: Any, value: dict[str, Any], version: int | None = None) -> Any:
    """Our dict -> an instance of a kafka-python JSON-spec class (or nested data class)."""
    kwargs: dict[str, Any] = {}
    for name, field in container.fields.items():
        if name not in value or name.endswith("authorized_operations"):
            continue  # kafka-python turns those int32 bitfields into sets: left at default
        v = value[name]
        if v is not None and field.is_struct_array():
            v = [new_from_dict(field.data_class, x) for x in v]
        elif v is not None and field.is_struct():
            v = new_from_dict(field.data_class, v)
        elif isinstance(v, memoryview):
            v = bytes(v)
        kwargs[name] = v
    return container[version](**kwargs) if version is not None else container(**kwargs)


def normalize(v: Any) -> Any:
    """Memoryviews to bytes, and kafka-python's renamed bitfields dropped, recursively."""
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in v.items() if not k.endswith("authorized_operations")}
    if isinstance(v, list):
        return [normalize(x) for x in v]
    if isinstance(v, memoryview):
        return bytes(v)
    return v
