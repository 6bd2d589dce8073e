"""Renderings of an Elle result for people (text) and programs (JSON).

Events are numbered from 1, as the history's error messages number them (the Python API's
``*_index`` fields count from 0). Within one anomaly its transactions are called T1, T2, ...
in the order of `Anomaly.ops`, the names its explanations use.
"""

from __future__ import annotations

import json

from quorumdb.check.elle.history import Txn
from quorumdb.check.elle.levels import Kind, forbidden_kinds
from quorumdb.check.elle.result import Anomaly, ElleResult

__all__ = ["SHOWN_PER_KIND", "elle_summary_line", "elle_to_json", "render_anomaly", "render_elle"]

SHOWN_PER_KIND = 5
"""Text output shows at most this many anomalies of each kind."""


def elle_summary_line(result: ElleResult) -> str:
    """One line: the verdict at the level, the history's size, and the anomaly counts."""
    size = (
        f"{_count(result.txn_count, 'transaction')} ({result.ok_count} ok, "
        f"{result.failed_count} failed, {result.indeterminate_count} indeterminate)"
    )
    where = f"{result.model} history at {result.isolation}"
    banned = forbidden_kinds(result.isolation)
    counts = result.counts()
    bad = {k: n for k, n in counts.items() if k in banned}
    allowed = {k: n for k, n in counts.items() if k not in banned}
    also = f"; also found (allowed): {_kinds(allowed)}" if allowed else ""
    if not bad:
        return f"valid: {where}, {size}, no forbidden anomaly{also}"
    return f"invalid: {where}, {size}; forbidden: {_kinds(bad)}{also}"


def render_elle(result: ElleResult, *, shown_per_kind: int = SHOWN_PER_KIND) -> str:
    """The summary line, then each anomaly (forbidden ones first), ``shown_per_kind`` per kind."""
    banned = forbidden_kinds(result.isolation)
    parts = [elle_summary_line(result)]
    ordered = [a for a in result.anomalies if a.kind in banned]
    ordered += [a for a in result.anomalies if a.kind not in banned]
    shown: dict[Kind, int] = {}
    for anomaly in ordered:
        n = shown.get(anomaly.kind, 0)
        shown[anomaly.kind] = n + 1
        if n < shown_per_kind:
            parts.append(render_anomaly(anomaly, forbidden=anomaly.kind in banned))
    hidden = [(kind, n - shown_per_kind) for kind, n in shown.items() if n > shown_per_kind]
    if hidden:
        more = ", ".join(f"{n} {kind}" for kind, n in hidden)
        parts.append(f"... and {more} more (--format json lists them all)")
    return "\n\n".join(parts)


def render_anomaly(anomaly: Anomaly, *, forbidden: bool = True) -> str:
    """A heading, the transactions (T1 = ...), and for a cycle one line per edge."""
    verdict = "" if forbidden else " (allowed at this level)"
    lines = [f"{anomaly.kind}{verdict}: {anomaly.explanation}"]
    for n, txn in enumerate(anomaly.ops):
        lines.append(f"  T{n + 1} = {_describe(txn)}")
    for step in anomaly.cycle:
        lines.append(f"  - {step.explanation}")
    return "\n".join(lines)


def elle_to_json(result: ElleResult) -> dict[str, object]:
    """The result as JSON-ready data (what ``quorumdb check elle --format json`` prints)."""
    banned = forbidden_kinds(result.isolation)
    return {
        "model": result.model.value,
        "isolation": result.isolation.value,
        "valid": result.valid,
        "transactions": result.txn_count,
        "ok": result.ok_count,
        "failed": result.failed_count,
        "indeterminate": result.indeterminate_count,
        "graph_transactions": result.graph_txns,
        "edges": result.edge_count,
        "cyclic_components": result.cyclic_components,
        "anomaly_counts": {kind.value: n for kind, n in result.counts().items()},
        "forbidden_kinds": sorted({a.kind.value for a in result.anomalies if a.kind in banned}),
        "anomalies": [_anomaly_json(a, a.kind in banned) for a in result.anomalies],
    }


def _anomaly_json(anomaly: Anomaly, forbidden: bool) -> dict[str, object]:
    names = {txn.id: f"T{n + 1}" for n, txn in enumerate(anomaly.ops)}
    return {
        "kind": anomaly.kind.value,
        "forbidden": forbidden,
        "key": anomaly.key,
        "explanation": anomaly.explanation,
        "ops": [_txn_json(txn, names[txn.id]) for txn in anomaly.ops],
        "cycle": [
            {
                "from": names[step.source.id],
                "to": names[step.target.id],
                "kind": step.kind.label,
                "key": step.key,
                "explanation": step.explanation,
            }
            for step in anomaly.cycle
        ],
    }


def _txn_json(txn: Txn, name: str) -> dict[str, object]:
    return {
        "name": name,
        "process": txn.process,
        "type": txn.outcome.value,
        "value": txn.value_json(),
        "invoke_event": txn.invoke_index + 1,
        "complete_event": None if txn.complete_index is None else txn.complete_index + 1,
        "invoke_time": txn.invoke_time,
        "complete_time": txn.complete_time,
    }


def _describe(txn: Txn) -> str:
    events = (
        f"#{txn.invoke_index + 1}..{'' if txn.complete_index is None else txn.complete_index + 1}"
    )
    value = json.dumps(txn.value_json())
    if len(value) > 200:
        value = value[:197] + "..."
    return f"process {txn.process}, {txn.outcome.value}, events {events}: {value}"


def _kinds(counts: dict[Kind, int]) -> str:
    return ", ".join(f"{kind} x{n}" if n > 1 else str(kind) for kind, n in counts.items())


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
