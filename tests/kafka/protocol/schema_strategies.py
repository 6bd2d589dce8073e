"""Hypothesis strategies that build message values straight from the schema table.

`message_values(spec, version)` draws a dict holding exactly the fields of that version
(tagged ones included), with values anywhere in each type's range: the shape `decode`
returns, so `decode(encode(v)) == v` is the round-trip property.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from quorumdb.kafka.protocol.codec import FieldSpec, MessageSpec

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
LIST_SIZE_MAX = 3


def _element(f: FieldSpec, version: int) -> st.SearchStrategy[Any]:
    if f.fields is not None:
        return struct_values(f.fields, version)
    if f.type in _INT_RANGES:
        lo, hi = _INT_RANGES[f.type]
        return st.integers(lo, hi)
    if f.type == "bool":
        return st.booleans()
    if f.type == "float64":
        return st.floats(allow_nan=False)
    if f.type == "string":
        return st.text(max_size=8)
    if f.type in ("bytes", "records"):
        return st.binary(max_size=24)
    assert f.type == "uuid", f.type
    return st.uuids()


def field_values(f: FieldSpec, version: int) -> st.SearchStrategy[Any]:
    value = _element(f, version)
    if f.is_array:
        value = st.lists(value, max_size=LIST_SIZE_MAX)
    if f.is_nullable(version):
        value = st.none() | value
    return value


def struct_values(fields: tuple[FieldSpec, ...], version: int) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {f.name: field_values(f, version) for f in fields if f.in_version(version)}
    )


def message_values(spec: MessageSpec, version: int) -> st.SearchStrategy[dict[str, Any]]:
    return struct_values(spec.fields, version)
