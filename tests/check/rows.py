"""Hand-written histories as rows of text: ``"<process> <type> <f> <key> <value JSON>"``.

    history("1 invoke write x 1", "1 ok write x 1", "2 invoke read x null", "2 ok read x 1")

A missing value means null. Short enough that each test shows its whole history.
"""

from __future__ import annotations

import json

from quorumdb.check import History, history_from_events

__all__ = ["events", "history"]


def events(*rows: str) -> list[dict[str, object]]:
    """The rows as event objects, in order."""
    out: list[dict[str, object]] = []
    for row in rows:
        process, type_, f, key, *value = row.split(maxsplit=4)
        out.append(
            {
                "process": int(process),
                "type": type_,
                "f": f,
                "key": key,
                "value": json.loads(value[0]) if value else None,
            }
        )
    return out


def history(*rows: str) -> History:
    """The rows as a validated history."""
    return history_from_events(events(*rows))
