"""Fit one response body to the version a client asked for.

Handlers build a body with every field any supported version has; `fit_response` drops, at
every level, the fields the requested version does not carry. Keys that are no field of any
version are kept, so the codec still refuses them: a misspelled field stays an error.
Pure; reads the schema table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quorumdb.kafka.protocol._schema import FieldSpec, MessageKind, message_spec

__all__ = ["fit_response"]


def fit_response(api_key: int, version: int, body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` without the fields (and nested fields) that `version` of the response lacks."""
    spec = message_spec(api_key, MessageKind.RESPONSE)
    if spec is None:
        return dict(body)
    return _fit(spec.fields, version, body)


def _fit(fields: tuple[FieldSpec, ...], version: int, value: Mapping[str, Any]) -> dict[str, Any]:
    by_name = {f.name: f for f in fields}
    out: dict[str, Any] = {}
    for name, v in value.items():
        f = by_name.get(name)
        if f is None:
            out[name] = v  # not a field of any version: a typo the codec must still refuse
            continue
        if not f.in_version(version):
            continue
        if f.fields is not None and v is not None:
            if f.is_array:
                v = [_fit(f.fields, version, item) for item in v]
            else:
                v = _fit(f.fields, version, v)
        out[name] = v
    return out
