"""Elle-style transactional anomaly checking: infer dependencies, find cycles, name them.

After Kingsbury & Alvaro, "Elle: Inferring Isolation Anomalies from Experimental
Observations" (VLDB 2020) and Jepsen's ``elle`` library. Histories of transactions over
list-append or read-write-register keys are turned into a dependency graph (ww, wr and rw
edges inferred from what reads returned; process and real-time order edges for strict
serializability), whose cycles are Adya's anomalies. Pure like the rest of `quorumdb.check`:
no I/O, no clock, no randomness.

Usage::

    from quorumdb.check import check_elle

    result = check_elle(events, model="list-append", isolation="snapshot-isolation")
    if not result.valid:
        for anomaly in result.forbidden:
            print(anomaly.kind, anomaly.explanation)   # G-single T1 -rw(x)-> T2 -wr(y)-> T1

``events`` is a list of event mappings, Jepsen style (the format is in `history`)::

    {"process": 0, "type": "invoke", "f": "txn", "value": [["append", "x", 1], ["r", "y", None]]}
    {"process": 0, "type": "ok",     "f": "txn", "value": [["append", "x", 1], ["r", "y", [1]]]}

or the text of a history file, or an `ElleHistory` from `parse_elle_history`. The result
(`ElleResult`) has ``anomalies`` (every one found, allowed or not), ``forbidden`` (those the
level forbids), ``valid`` and counts; each `Anomaly` has a ``kind`` (`Kind`: G0, G1a, G1b,
G1c, G-single, G-nonadjacent, G2-item and their ``-process``/``-realtime`` variants,
lost-update, incompatible-order, duplicate-elements, internal, garbage-read,
cyclic-versions), the transactions ``ops`` (called T1, T2, ... in explanations), for cycles
the ``cycle`` steps (`Step`: source, target, edge kind, key, sentence) and an
``explanation``. `elle_to_json` and `render_elle` render a result.

Modules: `history` (format and validation), `levels` (kinds, isolation levels, what each
forbids), `list_append` and `rw_register` (what each model lets one infer), `order` (process
and real-time edges), `scc` (Tarjan, BFS), `cycles` (search and classification), `checker`
(`check_elle`), `report` (text and JSON).
"""

from quorumdb.check.elle.checker import check_elle
from quorumdb.check.elle.cycles import DEFAULT_MAX_SEARCH_STEPS, classify
from quorumdb.check.elle.history import (
    ElleHistory,
    ElleHistoryError,
    Key,
    Model,
    Mop,
    Txn,
    elle_history_from_events,
    parse_elle_history,
)
from quorumdb.check.elle.levels import EdgeKind, Isolation, Kind, forbidden_kinds
from quorumdb.check.elle.report import (
    elle_summary_line,
    elle_to_json,
    render_anomaly,
    render_elle,
)
from quorumdb.check.elle.result import Anomaly, ElleResult, Step

__all__ = [
    "DEFAULT_MAX_SEARCH_STEPS",
    "Anomaly",
    "EdgeKind",
    "ElleHistory",
    "ElleHistoryError",
    "ElleResult",
    "Isolation",
    "Key",
    "Kind",
    "Model",
    "Mop",
    "Step",
    "Txn",
    "check_elle",
    "classify",
    "elle_history_from_events",
    "elle_summary_line",
    "elle_to_json",
    "forbidden_kinds",
    "parse_elle_history",
    "render_anomaly",
    "render_elle",
]
