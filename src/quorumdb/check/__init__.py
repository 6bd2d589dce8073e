"""Checkers: pure functions over recorded histories (register linearizability, Kafka delivery,
transactional isolation anomalies, Elle style: `quorumdb.check.elle`).

They import nothing else from quorumdb and no I/O, clock or randomness, so the simulator, the
real-process nemesis runs and histories recorded by other tools are checked alike; reading
files is the caller's job (see ``quorumdb check``).
"""

from quorumdb.check.elle import Anomaly as ElleAnomaly
from quorumdb.check.elle import (
    ElleHistory,
    ElleHistoryError,
    ElleResult,
    Isolation,
    Model,
    check_elle,
    elle_history_from_events,
    elle_summary_line,
    elle_to_json,
    parse_elle_history,
    render_elle,
)
from quorumdb.check.elle import Kind as ElleAnomalyKind
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
    "ElleAnomaly",
    "ElleAnomalyKind",
    "ElleHistory",
    "ElleHistoryError",
    "ElleResult",
    "Finding",
    "Function",
    "History",
    "HistoryError",
    "Isolation",
    "KafkaHistory",
    "KafkaHistoryError",
    "KeyResult",
    "LinearizabilityResult",
    "Model",
    "Operation",
    "Outcome",
    "PartitionResult",
    "Sighting",
    "SightingSource",
    "Verdict",
    "check_delivery",
    "check_elle",
    "check_linearizable",
    "delivery_summary_line",
    "delivery_to_json",
    "elle_history_from_events",
    "elle_summary_line",
    "elle_to_json",
    "history_from_events",
    "kafka_history_from_events",
    "parse_elle_history",
    "parse_history",
    "parse_kafka_history",
    "render_counterexample",
    "render_delivery",
    "render_elle",
    "result_to_json",
    "summary_line",
]
