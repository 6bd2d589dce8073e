"""Fit one response body to the version a client asked for.

Handlers build a body with every field any supported version has; `fit_response` drops, at
every level, the fields the requested version does not carry, so the codec's strictness
(it refuses a non-default value for a field absent from a version, to catch handler bugs)
applies to real mistakes only. Pure; reads the schema table.
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
    out: dict[str, Any] = {}
    for f in fields:
        if f.name not in value or not f.in_version(version):
            continue
        v = value[f.name]
        if f.fields is not None and v is not None:
            if f.is_array:
                v = [_fit(f.fields, version, item) for item in v]
            else:
                v = _fit(f.fields, version, v)
        out[f.name] = v
    return out
