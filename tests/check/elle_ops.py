"""Elle's compact transaction notation, for writing its published examples as they appear.

Jepsen's elle test suite writes ``(op "ax1ry12")`` for "append 1 to x, read y = [1 2]"; the
rw-register suite writes ``"wx1rx_"`` for "write x = 1, read x = nil". `txn` parses the same
strings; `history` turns transactions into invoke/completion event pairs.
"""

from __future__ import annotations

__all__ = ["history", "pair", "txn"]

_KEYS = set("xyztu")


def txn(spec: str, *, model: str = "list-append") -> list[list[object]]:
    """``"ax1ry12"`` -> ``[["append", "x", 1], ["r", "y", [1, 2]]]``; for ``rw-register``,
    ``"wx1ry_"`` -> ``[["w", "x", 1], ["r", "y", None]]``. A list read with no digits reads the
    empty (initial) list, null; digits are single elements."""
    mops: list[list[object]] = []
    for c in spec:
        if c in "arw":
            f = {"a": "append", "r": "r", "w": "w"}[c]
            mops.append([f, None, None])
        elif c in _KEYS:
            mops[-1][1] = c
        elif c == "_":
            mops[-1][2] = None
        else:
            digit = int(c)
            mop = mops[-1]
            if mop[0] == "r" and model == "list-append":
                mop[2] = [*(mop[2] or []), digit]  # type: ignore[misc]
            else:
                mop[2] = digit
    return mops


def pair(process: int, value: list[list[object]], outcome: str = "ok") -> list[dict[str, object]]:
    """An invoke (reads null) and its completion (``value`` for ok, the invoke's otherwise)."""
    invoke = [[f, k, None if f == "r" else v] for f, k, v in value]
    done = value if outcome == "ok" else invoke
    return [
        {"process": process, "type": "invoke", "f": "txn", "value": invoke},
        {"process": process, "type": outcome, "f": "txn", "value": done},
    ]


def history(*specs: str | tuple[str, str], model: str = "list-append") -> list[dict[str, object]]:
    """One transaction after another, each on its own process, invoke then completion.

    A spec is a string (an ``ok`` transaction) or ``(outcome, string)``.
    """
    events: list[dict[str, object]] = []
    for n, spec in enumerate(specs):
        outcome, text = ("ok", spec) if isinstance(spec, str) else spec
        events += pair(n, txn(text, model=model), outcome)
    return events
