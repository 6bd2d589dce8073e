"""Reading a history file into event objects: a JSON array, or JSON lines.

Both history formats (registers in `history`, Kafka in `kafka_history`) are written either
way; this is the one reader, so they agree on what a bad file is and how it is reported.
"""

from __future__ import annotations

import json
from collections.abc import Callable

__all__ = ["read_json_events"]


class _NotJsonError(ValueError):
    """NaN, Infinity and -Infinity: Python's json accepts them, JSON does not."""


def _reject_constant(name: str) -> object:
    raise _NotJsonError(f"{name} is not a JSON value")


# One decoder for every line: json.loads with an argument would build a new one each time.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def read_json_events(text: str, error: Callable[[str], Exception]) -> list[object]:
    """The decoded events of `text`, in file order.

    A first non-blank character ``[`` means one JSON array; otherwise every non-blank line is
    one JSON value. Nothing about the events themselves is checked here.

    Raises:
        what `error` makes of a message naming the event (and line) that is not JSON.
    """
    stripped = text.lstrip()
    if stripped.startswith("["):
        items = _loads(stripped, "history", error)
        if not isinstance(items, list):
            raise error("history: expected a JSON array of events")
        return items
    objects: list[object] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            where = f"event {len(objects) + 1} (line {line_number})"
            objects.append(_loads(line, where, error))
    return objects


def _loads(text: str, where: str, error: Callable[[str], Exception]) -> object:
    try:
        return _DECODER.decode(text)
    except (json.JSONDecodeError, _NotJsonError) as exc:
        raise error(f"{where}: bad JSON: {exc}") from None
    except RecursionError:
        raise error(f"{where}: bad JSON: nested too deeply") from None
