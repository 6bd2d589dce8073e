"""Failover times from a history and its fault log: only faults that took the leader away
count, measured per key to the first success invoked after the fault began, and the slowest
key is the failover; soak's table sums them."""

from __future__ import annotations

from typing import Any

from quorumdb.nemesis.recovery import failover_times, takes_leader_away
from quorumdb.nemesis.series import percentile
from quorumdb.nemesis.soak import SoakRow, summary_table


def _op(
    process: int,
    invoke_s: float,
    done_s: float,
    kind: str = "ok",
    *,
    key: str | None = "r0",
    f: str = "write",
) -> list[dict[str, Any]]:
    keyed = {} if key is None else {"key": key}
    return [
        {"process": process, "type": "invoke", "f": f, **keyed, "time": int(invoke_s * 1e9)},
        {"process": process, "type": kind, "f": f, **keyed, "time": int(done_s * 1e9)},
    ]


def _send(process: int, invoke_s: float, done_s: float, partition: int) -> list[dict[str, Any]]:
    sent = {"topic": "nemesis", "partition": partition, "value": f"{process}-1"}
    return [
        {"process": process, "type": "invoke", "f": "send", "value": sent,
         "time": int(invoke_s * 1e9)},
        {"process": process, "type": "ok", "f": "send", "value": {**sent, "offset": 0},
         "time": int(done_s * 1e9)},
    ]  # fmt: skip


_KILL = {"kind": "kill", "variant": "leader", "nodes": [1], "leader": 1, "start_s": 1.0}


def test_only_faults_that_take_the_leader_away_are_failovers() -> None:
    base = {"leader": 2, "start_s": 1.0, "end_s": 2.0}
    assert takes_leader_away({**base, "kind": "kill", "variant": "node", "nodes": [2]})
    assert takes_leader_away({**base, "kind": "partition", "variant": "isolate", "nodes": [2]})
    assert takes_leader_away({**base, "kind": "disk", "variant": "stall", "nodes": [2]})
    assert takes_leader_away({**base, "kind": "disk", "variant": "full", "nodes": [2]})
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
    follower = {**_KILL, "nodes": [3]}
    assert failover_times(events, [_KILL, follower]) == [0.9]
    assert failover_times(events, [{**_KILL, "start_s": 5.0}]) == [], "no success after it"


def test_failover_waits_for_every_key_to_be_served_again() -> None:
    # r0's group had another leader and is served at once; r1's waited for the election.
    events = [
        *_op(0, 1.1, 1.2, key="r0"),
        *_op(1, 1.1, 2.5, key="r1"),
        *_op(2, 1.3, 3.0, key="r1"),  # later than r1's first success: not the one
        *_op(3, 1.4, 1.5, key="r0"),
    ]
    assert failover_times(events, [_KILL]) == [1.5]


def test_kafka_sends_count_per_partition_and_local_consumer_ops_not_at_all() -> None:
    events = [
        *_op(9, 1.0, 1.0, f="assign", key=None),  # local: instant, needs no leader
        *_op(9, 1.0, 1.1, f="poll", key=None),  # an empty poll needs no leader either
        *_op(8, 1.2, 1.2, f="seek", key=None),
        *_send(0, 1.1, 1.3, partition=0),
        *_send(1, 1.1, 2.2, partition=1),
    ]
    assert failover_times(events, [_KILL]) == [1.2]
    only_local = [e for e in events if e["f"] != "send"]
    assert failover_times(only_local, [_KILL]) == [], "no op that needs a leader succeeded"


def test_operations_without_one_key_count_as_one_key() -> None:
    transfer = {"from": "acct/0", "to": "acct/1", "amount": 3}
    events = [
        {"process": 0, "type": "invoke", "f": "transfer", "value": transfer, "time": 1_100_000_000},
        {"process": 0, "type": "ok", "f": "transfer", "value": transfer, "time": 1_700_000_000},
        {"process": 1, "type": "invoke", "f": "read", "value": None, "time": 1_200_000_000},
        {"process": 1, "type": "ok", "f": "read", "value": {}, "time": 1_400_000_000},
    ]  # fmt: skip
    assert failover_times(events, [_KILL]) == [0.4]


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
