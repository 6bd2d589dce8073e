"""`check_elle`: a transaction history in, its anomalies and the verdict for a level out."""

from __future__ import annotations

from collections.abc import Iterable

from quorumdb.check._gc import paused_gc
from quorumdb.check.elle.cycles import DEFAULT_MAX_SEARCH_STEPS, find_cycles
from quorumdb.check.elle.history import (
    ElleHistory,
    Model,
    elle_history_from_events,
    parse_elle_history,
)
from quorumdb.check.elle.levels import Isolation, Kind
from quorumdb.check.elle.list_append import infer_list_append
from quorumdb.check.elle.order import add_order_edges
from quorumdb.check.elle.result import Anomaly, ElleResult
from quorumdb.check.elle.rw_register import infer_rw_register
from quorumdb.check.history import Outcome

__all__ = ["check_elle"]

_KIND_ORDER = {kind: n for n, kind in enumerate(Kind)}


def check_elle(
    history: ElleHistory | str | Iterable[object],
    *,
    model: Model | str | None = None,
    isolation: Isolation | str = Isolation.SERIALIZABLE,
    max_search_steps: int = DEFAULT_MAX_SEARCH_STEPS,
) -> ElleResult:
    """Check a transaction history for the anomalies ``isolation`` forbids.

    Args:
        history: a parsed `ElleHistory`, the text of a history file (JSON array or JSON
            lines), or its events already decoded (mappings, in real-time order).
        model: ``"list-append"`` or ``"rw-register"``; required unless ``history`` is an
            `ElleHistory` (then, if given, it must be that history's model).
        isolation: the level to judge by (``"snapshot"`` is accepted for
            snapshot-isolation). Strict serializability adds process and real-time order
            edges to the dependency graph; the other levels use data edges only.
        max_search_steps: edge visits allowed for finding a G-single behind a G-nonadjacent
            (see `quorumdb.check.elle.cycles`); it never changes a verdict.

    Returns:
        Every anomaly found (also those ``isolation`` allows) and whether it is ``valid``.

    Raises:
        ElleHistoryError: the history breaks its format.
        ValueError: an unknown model or isolation level, or a model that contradicts the
            history's.
    """
    level = Isolation.parse(isolation)
    with paused_gc():  # the indexes and the graph: many small objects, no cycles among them
        return _check(_history(history, model), level, max_search_steps)


def _check(parsed: ElleHistory, level: Isolation, max_search_steps: int) -> ElleResult:
    if parsed.model is Model.LIST_APPEND:
        inference = infer_list_append(parsed)
    else:
        inference = infer_rw_register(parsed)
    graph = inference.graph
    if level.order_edges:
        add_order_edges(graph, parsed.txns, parsed.event_count, parsed.timed)
    cycles, cyclic_components = find_cycles(
        graph, parsed.txns, inference.explainer, level.order_edges, max_search_steps
    )
    anomalies: list[Anomaly] = sorted(
        [*inference.anomalies, *cycles], key=lambda a: _KIND_ORDER[a.kind]
    )
    outcomes = [txn.outcome for txn in parsed.txns]
    return ElleResult(
        model=parsed.model,
        isolation=level,
        anomalies=tuple(anomalies),
        txn_count=len(outcomes),
        ok_count=outcomes.count(Outcome.OK),
        failed_count=outcomes.count(Outcome.FAIL),
        indeterminate_count=outcomes.count(Outcome.INFO),
        graph_txns=sum(graph.committed),
        edge_count=graph.edge_count(),
        cyclic_components=cyclic_components,
    )


def _history(
    history: ElleHistory | str | Iterable[object], model: Model | str | None
) -> ElleHistory:
    if isinstance(history, ElleHistory):
        if model is not None and Model.parse(model) is not history.model:
            raise ValueError(
                f"model {Model.parse(model).value} asked for a {history.model.value} history"
            )
        return history
    if model is None:
        raise ValueError("model is required (list-append or rw-register) to read a history")
    if isinstance(history, str):
        return parse_elle_history(history, model)
    return elle_history_from_events(history, model)
