"""Hypothesis strategies for histories."""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["tiny_histories"]

_VALUES = st.sampled_from([None, 1, 2])


@st.composite
def tiny_histories(draw: st.DrawFn) -> list[dict[str, object]]:
    """Arbitrary small histories on one key, linearizable or not: every f, every outcome,
    operations that never complete, and processes that invoke again after an info."""
    events: list[dict[str, object]] = []
    open_ops: dict[int, tuple[str, object]] = {}
    for _ in range(draw(st.integers(0, 16))):
        process = draw(st.integers(0, 3))
        if process in open_ops:
            f, value = open_ops.pop(process)
            kind = draw(st.sampled_from(["ok", "ok", "ok", "info", "fail"]))
            if f == "read":
                value = draw(_VALUES) if kind == "ok" else None
            events.append({"process": process, "type": kind, "f": f, "key": "x", "value": value})
        else:
            f = draw(st.sampled_from(["read", "write", "write", "cas", "delete"]))
            value = {
                "read": None,
                "write": draw(_VALUES.filter(lambda v: v is not None)),
                "cas": [draw(_VALUES), draw(_VALUES)],
                "delete": None,
            }[f]
            events.append(
                {"process": process, "type": "invoke", "f": f, "key": "x", "value": value}
            )
            open_ops[process] = (f, value)
    return events
