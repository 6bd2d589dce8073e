"""Judging a recorded Kafka history: the delivery checker plus the tests' own direct checks."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from quorumdb.check.kafka_delivery import DeliveryResult, check_delivery
from quorumdb.check.kafka_history import kafka_history_from_events
from tests.e2e.kafka.history import KafkaHistory


def run_delivery_checker(history: KafkaHistory, out: Path) -> DeliveryResult:
    """Judge the history with `quorumdb.check.kafka_delivery.check_delivery`.

    The history is also written to `out` (JSON lines), so that a failure can be re-checked
    with `quorumdb check kafka`.
    """
    history.dump(out)
    result = check_delivery(kafka_history_from_events(history.events))
    assert result.ok, (
        f"delivery checker: {result.counts()}; first failures: {result.failures[:3]} "
        f"(history: {out})"
    )
    return result


def assert_delivery(
    history: KafkaHistory,
    out: Path,
    *,
    every_send_acked: bool = True,
    exactly_once: bool = True,
    consumed_everything: bool = True,
) -> None:
    """No acknowledged record lost, none written twice, order kept per partition.

    - every send was acknowledged (if `every_send_acked`);
    - no two acknowledged sends share a (partition, offset);
    - one producer's sends to one partition got increasing offsets, in send order;
    - every record polled sits at the offset its send was acknowledged with;
    - each consumer saw each partition's offsets strictly increasing;
    - every acknowledged record was polled (if `consumed_everything`), and no offset or
      value was polled twice (if `exactly_once`).
    """
    run_delivery_checker(history, out)
    events = history.events
    if every_send_acked:
        missing = history.unacked()
        assert not missing, f"{len(missing)} sends not acknowledged, first: {missing[:3]}"

    acked: dict[str, tuple[int, int]] = {}
    at: dict[tuple[int, int], str] = {}
    last_by_producer: dict[tuple[str, int], tuple[int, str]] = {}
    for e in events:
        if e["f"] != "send" or e["type"] != "ok":
            continue
        v = e["value"]
        where = (v["partition"], v["offset"])
        assert v["value"] not in acked, f"value {v['value']!r} acknowledged twice"
        assert where not in at, f"{v['value']!r} and {at[where]!r} both acked at {where}"
        acked[v["value"]] = where
        at[where] = v["value"]
    # Send order (invoke order) per producer and partition must match offset order.
    invoked: list[tuple[str, str]] = [
        (e["producer"], e["value"]["value"])
        for e in events
        if e["f"] == "send" and e["type"] == "invoke"
    ]
    for producer, value in invoked:
        if value not in acked:
            continue
        partition, offset = acked[value]
        prev = last_by_producer.get((producer, partition))
        assert prev is None or prev[0] < offset, (
            f"{producer}: {value!r} sent after {prev[1]!r} but acked at offset {offset} "
            f"<= {prev[0]} in partition {partition}"
        )
        last_by_producer[(producer, partition)] = (offset, value)

    polled_at: Counter[tuple[int, int]] = Counter()
    polled_values: Counter[str] = Counter()
    last_seen: dict[tuple[int, int], int] = defaultdict(lambda: -1)
    for e in events:
        if e["f"] != "poll" or e["type"] != "ok":
            continue
        for r in e["value"]:
            where = (r["partition"], r["offset"])
            expected = at.get(where)
            assert expected is None or expected == r["value"], (
                f"polled {r['value']!r} at {where}, but {expected!r} was acked there"
            )
            key = (e["process"], r["partition"])
            assert r["offset"] > last_seen[key], (
                f"consumer {e['process']} polled offset {r['offset']} of partition "
                f"{r['partition']} after offset {last_seen[key]}"
            )
            last_seen[key] = r["offset"]
            polled_at[where] += 1
            polled_values[r["value"]] += 1
    if consumed_everything:
        lost = sorted(set(acked) - set(polled_values))
        assert not lost, f"{len(lost)} acknowledged records never polled, e.g. {lost[:5]}"
    if exactly_once:
        twice = [w for w, n in polled_at.items() if n > 1]
        assert not twice, f"{len(twice)} offsets polled more than once, e.g. {twice[:5]}"
        dup = [v for v, n in polled_values.items() if n > 1]
        assert not dup, f"{len(dup)} values polled more than once, e.g. {dup[:5]}"
