"""Checkers: pure functions over recorded histories.

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
    "Counterexample",
    "Function",
    "History",
    "HistoryError",
    "KeyResult",
    "LinearizabilityResult",
    "Operation",
    "Outcome",
    "Verdict",
    "check_linearizable",
    "history_from_events",
    "parse_history",
    "render_counterexample",
    "result_to_json",
    "summary_line",
]
