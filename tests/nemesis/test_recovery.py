"""Failover times from a history and its fault log: only faults that took the leader away
count, measured to the first success invoked after the fault began; soak's table sums them."""

from __future__ import annotations

from typing import Any

from quorumdb.nemesis.recovery import failover_times, percentile, takes_leader_away
from quorumdb.nemesis.soak import SoakRow, summary_table


def _op(process: int, invoke_s: float, done_s: float, kind: str = "ok") -> list[dict[str, Any]]:
    return [
        {"process": process, "type": "invoke", "f": "write", "time": int(invoke_s * 1e9)},
        {"process": process, "type": kind, "f": "write", "time": int(done_s * 1e9)},
    ]


def test_only_faults_that_take_the_leader_away_are_failovers() -> None:
    base = {"leader": 2, "start_s": 1.0, "end_s": 2.0}
    assert takes_leader_away({**base, "kind": "kill", "variant": "node", "nodes": [2]})
    assert takes_leader_away({**base, "kind": "partition", "variant": "isolate", "nodes": [2]})
    assert takes_leader_away({**base, "kind": "disk", "variant": "stall", "nodes": [2]})
    assert not takes_leader_away({**base, "kind": "kill", "variant": "node", "nodes": [1]})
    assert not takes_leader_away({**base, "kind": "clock", "variant": "offset", "nodes": [2]})
    assert not takes_leader_away({**base, "kind": "partition", "variant": "delay", "nodes": [2]})
    assert not takes_leader_away({"kind": "kill", "variant": "node", "nodes": [2]})


def test_failover_is_measured_to_the_first_success_invoked_after_the_fault() -> None:
    events = [
        *_op(0, 0.5, 1.8),  # invoked before the fault: does not count
        *_op(1, 1.1, 1.5, "info"),  # not a success
        *_op(2, 1.2, 1.9),  # the first success invoked after the kill at 1.0
        *_op(3, 1.3, 2.4),
    ]
    kill = {"kind": "kill", "variant": "leader", "nodes": [1], "leader": 1, "start_s": 1.0}
    follower = {**kill, "nodes": [3]}
    assert failover_times(events, [kill, follower]) == [0.9]
    assert failover_times(events, [{**kill, "start_s": 5.0}]) == [], "no success after it"


def test_percentiles_and_the_soak_table() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
    rows = [
        SoakRow(run=0, workload="register", nemesis=["kill"], seed=1, valid=True,
                checker="linearizable", summary="", ops_ok=100, ops_info=2, faults=3, lost=0,
                failovers=[0.5, 1.5]),
        SoakRow(run=1, workload="kafka", nemesis=["partition"], seed=2, valid=False,
                checker="kafka-delivery", summary="", ops_ok=50, ops_info=0, faults=2, lost=1),
    ]  # fmt: skip
    table = summary_table(rows).splitlines()
    assert table[2].startswith("| register | 1 | 102 | 3 | 0 | 0 (linearizable) | 500 ms")
    assert table[3].startswith("| kafka | 1 | 50 | 2 | 1 | 1 (kafka-delivery) | - / - / - |")
    assert table[4].startswith("| **all** | 2 | 152 | 5 | 1 | 1 ")
