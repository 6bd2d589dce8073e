"""Checkers: pure functions over recorded histories (register linearizability, Kafka delivery).

They import nothing else from quorumdb and no I/O, clock or randomness, so the simulator, the
real-process nemesis runs and histories recorded by other tools are checked alike; reading
files is the caller's job (see ``quorumdb check``).
"""

from quorumdb.check.history import (
    Function,
    History,
    HistoryError,
    Operation,
    Outcome,
    history_from_events,
    parse_history,
)
from quorumdb.check.kafka_delivery import (
    AnomalyKind,
    DeliveryResult,
    Finding,
    PartitionResult,
    Sighting,
    SightingSource,
    check_delivery,
)
from quorumdb.check.kafka_history import (
    KafkaHistory,
    KafkaHistoryError,
    kafka_history_from_events,
    parse_kafka_history,
)
from quorumdb.check.kafka_report import (
    delivery_summary_line,
    delivery_to_json,
    render_delivery,
)
from quorumdb.check.linearizable import (
    DEFAULT_MAX_STATES,
    Counterexample,
    KeyResult,
    LinearizabilityResult,
    Verdict,
    check_linearizable,
)
from quorumdb.check.report import render_counterexample, result_to_json, summary_line

__all__ = [
    "DEFAULT_MAX_STATES",
    "AnomalyKind",
    "Counterexample",
    "DeliveryResult",
    "Finding",
    "Function",
    "History",
    "HistoryError",
    "KafkaHistory",
    "KafkaHistoryError",
    "KeyResult",
    "LinearizabilityResult",
    "Operation",
    "Outcome",
    "PartitionResult",
    "Sighting",
    "SightingSource",
    "Verdict",
    "check_delivery",
    "check_linearizable",
    "delivery_summary_line",
    "delivery_to_json",
    "history_from_events",
    "kafka_history_from_events",
    "parse_history",
    "parse_kafka_history",
    "render_counterexample",
    "render_delivery",
    "result_to_json",
    "summary_line",
]
