"""How long the cluster took to serve again after a fault took its leader away.

A run's fault log names the leader when each fault began. A fault that took that leader
away (killed, paused, cut off by a partition, its disk stalled, failed or full) forces a
failover. Faults the leader never felt (a follower killed, a clock skewed) are not
failovers and are left out.

What is measured, per fault: for each key, the time from the fault's start to the
completion of the first successful operation on that key invoked after the start; the
failover time is the largest of these over the keys that got such a success, so the time
until every key was served again (as the KV bench's "first write acked in every shard the
node led"). Per key because with several Raft groups (KV shards, Kafka partitions) a key
whose group the victim did not lead is served at once, and "the first success of any op"
would come out near zero. A key is an event's ``key`` (registers) or the topic partition a
Kafka send names; an operation with neither (a transaction over several keys) counts as one
key of its own ("any such operation"). Only operations that need a leader count: a Kafka
consumer's ``assign``, ``seek`` and ``subscribe`` are local to the client and instant, and a
``poll`` succeeds empty whether or not a leader serves it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from quorumdb.nemesis.series import operations

__all__ = ["failover_times", "takes_leader_away"]

_CUTS_OFF = {"isolate", "isolate-leader", "majority-minority"}
_DISK_STOPS = {"stall", "fail", "full"}  # a full disk stops the node (`nemesis.node_faults`)
# Operations a client completes without a leader (see the module docstring).
_LEADERLESS_FS = frozenset({"assign", "seek", "poll", "subscribe"})
_NS_PER_S = 1e9


def takes_leader_away(fault: Mapping[str, Any]) -> bool:
    leader = fault.get("leader")
    if leader is None or leader not in fault.get("nodes", []):
        return False
    kind, variant = fault.get("kind"), fault.get("variant")
    return (
        kind in ("kill", "pause")
        or (kind == "partition" and variant in _CUTS_OFF)
        or (kind == "disk" and variant in _DISK_STOPS)
    )


def _key(invoke: Mapping[str, Any]) -> Hashable:
    """The key an operation is on, from its invoke event; ("op",) for none."""
    key = invoke.get("key")
    if isinstance(key, str | int) and not isinstance(key, bool):
        return ("key", key)
    value = invoke.get("value")
    if isinstance(value, dict):
        partition = value.get("partition")
        if isinstance(partition, int) and not isinstance(partition, bool):
            return ("partition", str(value.get("topic")), partition)
    return ("op",)


def _successes(events: Sequence[dict[str, Any]]) -> list[tuple[Hashable, float, float]]:
    """(key, invoke s, completion s) of every ok operation that needed a leader."""
    out = []
    for op in operations(events):
        if op.outcome != "ok" or op.f in _LEADERLESS_FS:
            continue
        if op.invoke_ns is None or op.complete_ns is None:
            continue
        key = _key(events[op.invoke_index])
        out.append((key, op.invoke_ns / _NS_PER_S, op.complete_ns / _NS_PER_S))
    return out


def failover_times(
    events: Sequence[dict[str, Any]], faults: Iterable[Mapping[str, Any]]
) -> list[float]:
    """Seconds until every key was served again after each fault that took the leader away
    (see the module docstring); a fault with no success after it before the run ended is
    left out: the run could not tell."""
    successes = _successes(events)
    times = []
    for fault in faults:
        if not takes_leader_away(fault):
            continue
        start = float(fault["start_s"])
        first: dict[Hashable, float] = {}
        for key, invoked, done in successes:
            if invoked >= start and done < first.get(key, float("inf")):
                first[key] = done
        if first:
            times.append(round(max(first.values()) - start, 3))
    return times
