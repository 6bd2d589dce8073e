"""How the history parsers name a bad JSON value in their error messages (one place)."""

from __future__ import annotations

import json

__all__ = ["json_type", "show"]


def json_type(value: object) -> str:
    """The JSON kind of a decoded value, as an error message says it ("an array", ...)."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def show(value: object, limit: int = 40) -> str:
    """`value` as JSON (repr if it is not JSON), cut to `limit` characters."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
