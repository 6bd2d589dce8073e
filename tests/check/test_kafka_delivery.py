"""The Kafka delivery checker: each anomaly on a small hand-made history with its exact
evidence, the edge cases that must not be anomalies, generated correct histories that must pass,
and anomalies planted into them that must be found alone, where they were planted."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from quorumdb.check import (
    AnomalyKind,
    DeliveryResult,
    Finding,
    Sighting,
    SightingSource,
    check_delivery,
    kafka_history_from_events,
)
from quorumdb.check.history import Outcome
from quorumdb.check.kafka_delivery import SKIPPED_SIGHTINGS_MAX
from quorumdb.check.kafka_history import TopicPartition
from tests.check import kafka_generate as gen

T0 = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)


class _History:
    """Events written by hand; each method returns the index of the event that shows it."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []

    def _emit(self, process: int, type_: str, f: str, value: object = None, **extra: object) -> int:
        event: dict[str, object] = {"process": process, "type": type_, "f": f, **extra}
        if value is not None:
            event["value"] = value
        self.events.append(event)
        return len(self.events) - 1

    def send(
        self,
        process: int,
        value: str | int,
        offset: int | None = None,
        *,
        outcome: str = "ok",
        tp: TopicPartition = T0,
        aborted: bool = False,
    ) -> int:
        """A send and its completion (none when ``outcome`` is "open")."""
        record = {"topic": tp.topic, "partition": tp.partition, "value": value}
        invoke = self._emit(process, "invoke", "send", record)
        if outcome == "open":
            return invoke
        done = {"offset": offset} if outcome == "ok" else None
        extra = {"aborted": True} if aborted else {}
        return self._emit(process, outcome, "send", done, **extra)

    def poll(
        self,
        process: int,
        *records: tuple[int, str | int],
        tp: TopicPartition = T0,
        outcome: str = "ok",
        rebalance: bool = False,
    ) -> int:
        self._emit(process, "invoke", "poll")
        value = None
        if outcome == "ok":
            value = [
                {"topic": tp.topic, "partition": tp.partition, "offset": o, "value": v}
                for o, v in records
            ]
        extra = {"rebalance": True} if rebalance else {}
        return self._emit(process, outcome, "poll", value if outcome == "ok" else None, **extra)

    def seek(self, process: int, offset: int | None, *, tp: TopicPartition = T0) -> int:
        value = {"topic": tp.topic, "partition": tp.partition, "offset": offset}
        self._emit(process, "invoke", "seek", value)
        return self._emit(process, "ok", "seek")

    def assign(self, process: int, *tps: TopicPartition) -> int:
        value = [{"topic": tp.topic, "partition": tp.partition} for tp in tps]
        self._emit(process, "invoke", "assign", value)
        return self._emit(process, "ok", "assign")

    def sends(self, process: int, values: str, *, tp: TopicPartition = T0) -> list[int]:
        """One ok send per character, at offsets 0, 1, 2, ..."""
        return [self.send(process, v, o, tp=tp) for o, v in enumerate(values)]

    def check(self) -> DeliveryResult:
        return check_delivery(kafka_history_from_events(self.events))


def _ack(process: int, value: str | int, offset: int | None, event: int) -> Sighting:
    return Sighting(
        source=SightingSource.SEND,
        value=value,
        offset=offset,
        process=process,
        event_index=event,
        outcome=Outcome.OK,
    )


def _read(process: int, offset: int, value: str | int, event: int) -> Sighting:
    return Sighting(
        source=SightingSource.POLL, value=value, offset=offset, process=process, event_index=event
    )


def _only(result: DeliveryResult, kind: AnomalyKind) -> Finding:
    """The one finding of the history, which must be of ``kind``."""
    assert [f.kind for f in result.findings] == [kind], result.findings
    return result.findings[0]


# -- lost and unread -----------------------------------------------------------------------------


def test_lost_an_acked_record_a_consumer_read_straight_across() -> None:
    h = _History()
    acks = h.sends(1, "abc")
    poll = h.poll(9, (0, "a"), (2, "c"))
    result = h.check()
    lost = _only(result, AnomalyKind.LOST)
    assert (lost.topic_partition, lost.value, lost.offsets) == (T0, "b", (1,))
    assert lost.sightings == (
        _ack(1, "b", 1, acks[1]),
        _read(9, 0, "a", poll),
        _read(9, 2, "c", poll),
    )
    assert lost.processes == (1, 9)
    assert lost.event_indexes == (acks[1], poll)
    assert not result.ok


def test_lost_an_acked_record_whose_offset_was_read_with_another_value() -> None:
    h = _History()
    acks = h.sends(1, "ab")
    poll = h.poll(9, (0, "a"), (1, "x"))
    result = h.check()
    kinds = [f.kind for f in result.findings]
    assert kinds == [AnomalyKind.LOST, AnomalyKind.INCONSISTENT_OFFSET, AnomalyKind.UNSENT_READ]
    lost, inconsistent, _ = result.findings
    assert lost.sightings == (_ack(1, "b", 1, acks[1]), _read(9, 1, "x", poll))
    assert inconsistent.offsets == (1,)
    assert {s.value for s in inconsistent.sightings} == {"b", "x"}


def test_an_acked_record_no_consumer_got_to_is_unread_information() -> None:
    h = _History()
    acks = h.sends(1, "ab")
    h.poll(9, (0, "a"))
    result = h.check()
    unread = _only(result, AnomalyKind.UNREAD)
    assert (unread.value, unread.offsets, unread.sightings) == (
        "b",
        (1,),
        (_ack(1, "b", 1, acks[1]),),
    )
    assert result.ok
    assert result.failures == ()


def _reset(h: _History, how: str, process: int) -> None:
    """Move a consumer in a way that lets its next record be anywhere."""
    if how == "seek":
        h.seek(process, 3)
    elif how == "seek to the beginning or end":
        h.seek(process, None)
    elif how == "assign":
        h.assign(process, T0)
    elif how == "info poll":
        h.poll(process, outcome="info")
    else:
        assert how == "rebalance"


RESETS = ["seek", "seek to the beginning or end", "assign", "info poll", "rebalance"]


@pytest.mark.parametrize("how", RESETS)
def test_records_jumped_over_after_a_reset_are_unread_not_lost(how: str) -> None:
    h = _History()
    h.sends(1, "abcd")
    h.poll(9, (0, "a"))
    _reset(h, how, 9)
    h.poll(9, (3, "d"), rebalance=how == "rebalance")
    result = h.check()
    assert [(f.kind, f.value) for f in result.findings] == [
        (AnomalyKind.UNREAD, "b"),
        (AnomalyKind.UNREAD, "c"),
    ]
    assert result.ok


def test_sends_that_failed_ended_info_or_never_ended_are_not_lost() -> None:
    h = _History()
    h.send(1, "a", 0)
    h.send(1, "b", outcome="info")
    h.send(1, "c", outcome="fail")
    h.send(2, "e", 3)
    h.send(3, "d", outcome="open")
    h.poll(9, (0, "a"), (3, "e"))
    result = h.check()
    assert result.findings == ()
    (partition,) = result.partitions
    assert (partition.sent, partition.acked, partition.failed, partition.indeterminate) == (
        5,
        2,
        1,
        2,
    )


def test_an_info_send_that_landed_is_a_normal_record() -> None:
    h = _History()
    h.send(1, "a", 0)
    h.send(1, "b", outcome="info")
    h.send(1, "c", 2)
    h.poll(9, (0, "a"), (1, "b"), (2, "c"))
    h.poll(8, (0, "a"), (2, "c"))
    skip = _only(h.check(), AnomalyKind.POLL_SKIP)
    assert (skip.offsets, skip.processes) == ((1,), (8, 9))


def test_an_aborted_record_nobody_read_is_neither_lost_nor_skipped() -> None:
    h = _History()
    h.send(1, "a", 0)
    h.send(1, "b", 1, aborted=True)
    h.send(1, "c", 3)  # offset 2: the abort marker
    h.poll(9, (0, "a"), (3, "c"))
    result = h.check()
    assert result.findings == ()
    assert result.partitions[0].aborted == 1


# -- duplicates and inconsistent offsets ---------------------------------------------------------


def test_duplicate_one_value_read_at_two_offsets() -> None:
    h = _History()
    ack = h.send(1, "a", 0)
    first = h.poll(9, (0, "a"), (1, "a"))
    h.poll(8, (1, "a"))
    dup = _only(h.check(), AnomalyKind.DUPLICATE)
    assert (dup.value, dup.offsets) == ("a", (0, 1))
    assert dup.sightings == (_ack(1, "a", 0, ack), _read(9, 0, "a", first), _read(9, 1, "a", first))


def test_inconsistent_offset_two_consumers_see_different_values_at_one_offset() -> None:
    h = _History()
    ack = h.send(1, "a", 0)
    h.send(2, "b", outcome="info")
    h.poll(9, (0, "a"))
    other = h.poll(8, (0, "b"))
    finding = _only(h.check(), AnomalyKind.INCONSISTENT_OFFSET)
    assert (finding.value, finding.offsets) == (None, (0,))
    # The first sighting of each value, the acknowledgement first.
    assert finding.sightings == (_ack(1, "a", 0, ack), _read(8, 0, "b", other))


def test_inconsistent_offset_two_sends_acked_at_one_offset() -> None:
    h = _History()
    a = h.send(1, "a", 0)
    b = h.send(2, "b", 0)
    result = h.check()
    (finding,) = result.failures
    assert finding.kind is AnomalyKind.INCONSISTENT_OFFSET
    assert finding.sightings == (_ack(1, "a", 0, a), _ack(2, "b", 0, b))


def test_inconsistent_offset_a_value_acked_at_one_offset_and_read_at_another() -> None:
    h = _History()
    ack = h.send(1, "a", 5)
    poll = h.poll(9, (3, "a"))
    finding = _only(h.check(), AnomalyKind.INCONSISTENT_OFFSET)
    assert (finding.value, finding.offsets) == ("a", (5, 3))
    assert finding.sightings == (_ack(1, "a", 5, ack), _read(9, 3, "a", poll))


def test_a_value_read_where_it_was_acked_and_elsewhere_is_only_a_duplicate() -> None:
    h = _History()
    h.send(1, "a", 0)
    h.poll(9, (0, "a"), (1, "a"))
    assert [f.kind for f in h.check().findings] == [AnomalyKind.DUPLICATE]


def test_partitions_are_independent() -> None:
    h = _History()
    h.send(1, "a", 0, tp=T0)
    h.send(1, "a", 0, tp=T1)
    h.poll(9, (0, "a"), tp=T0)
    h.poll(9, (0, "a"), tp=T1)
    result = h.check()
    assert result.findings == ()
    assert [p.topic_partition for p in result.partitions] == [T0, T1]


def test_a_string_and_an_integer_that_look_alike_are_two_records() -> None:
    h = _History()
    h.send(1, "1", 0)
    h.send(1, 1, 1)
    h.poll(9, (0, "1"), (1, 1))
    result = h.check()
    assert result.findings == ()
    assert result.partitions[0].values_read == 2


# -- poll skips ----------------------------------------------------------------------------------


def test_poll_skip_over_records_another_consumer_read() -> None:
    h = _History()
    h.sends(1, "abcde")
    full = h.poll(8, *enumerate("abcde"))
    before = h.poll(9, (0, "a"))
    after = h.poll(9, (3, "d"), (4, "e"))
    skip = _only(h.check(), AnomalyKind.POLL_SKIP)
    assert (skip.topic_partition, skip.value, skip.offsets) == (T0, None, (1, 2))
    assert skip.sightings == (
        _read(9, 0, "a", before),
        _read(9, 3, "d", after),
        _read(8, 1, "b", full),
        _read(8, 2, "c", full),
    )


def test_a_long_skip_lists_every_offset_but_shows_a_few_records() -> None:
    h = _History()
    values = [f"v{n}" for n in range(40)]
    for offset, value in enumerate(values):
        h.send(1, value, offset)
    h.poll(8, *enumerate(values))
    h.poll(9, (0, "v0"), (39, "v39"))
    skip = _only(h.check(), AnomalyKind.POLL_SKIP)
    assert skip.offsets == tuple(range(1, 39))
    assert len(skip.sightings) == 2 + SKIPPED_SIGHTINGS_MAX


def test_a_gap_over_offsets_nobody_ever_read_is_not_a_skip() -> None:
    h = _History()
    h.send(1, "a", 0)
    h.send(1, "b", 7)  # offsets 1-6: transaction markers, aborted or compacted records
    h.poll(9, (0, "a"), (7, "b"))
    h.poll(8, (0, "a"))
    h.poll(8, (7, "b"))
    assert h.check().findings == ()


def test_jumping_over_an_aborted_record_is_right_even_if_another_consumer_read_it() -> None:
    h = _History()
    h.send(1, "a", 0)
    h.send(1, "b", 1, aborted=True)
    h.send(1, "c", 3)
    h.poll(8, (0, "a"), (1, "b"), (3, "c"))
    h.poll(9, (0, "a"), (3, "c"))
    finding = _only(h.check(), AnomalyKind.ABORTED_READ)
    assert finding.processes == (1, 8)


@pytest.mark.parametrize("how", RESETS)
def test_a_jump_after_a_reset_is_not_a_skip(how: str) -> None:
    h = _History()
    h.sends(1, "abcd")
    h.poll(8, *enumerate("abcd"))
    h.poll(9, (0, "a"))
    _reset(h, how, 9)
    h.poll(9, (3, "d"), rebalance=how == "rebalance")
    assert h.check().findings == ()


# -- non-monotonic polls and sends ---------------------------------------------------------------


def test_nonmonotonic_poll_offsets_going_backwards_without_a_seek() -> None:
    h = _History()
    h.sends(1, "abc")
    first = h.poll(9, (0, "a"), (1, "b"), (2, "c"))
    again = h.poll(9, (1, "b"), (2, "c"))
    finding = _only(h.check(), AnomalyKind.NONMONOTONIC_POLL)
    assert (finding.value, finding.offsets) == (None, (2, 1))
    assert finding.sightings == (_read(9, 2, "c", first), _read(9, 1, "b", again))


def test_reading_one_offset_twice_in_a_row_is_nonmonotonic() -> None:
    h = _History()
    h.sends(1, "a")
    h.poll(9, (0, "a"), (0, "a"))
    assert _only(h.check(), AnomalyKind.NONMONOTONIC_POLL).offsets == (0, 0)


@pytest.mark.parametrize("how", RESETS)
def test_going_back_after_a_reset_is_not_nonmonotonic(how: str) -> None:
    h = _History()
    h.sends(1, "abcd")
    h.poll(9, *enumerate("abcd"))
    _reset(h, how, 9)
    h.poll(9, (0, "a"), (1, "b"), rebalance=how == "rebalance")
    assert h.check().findings == ()


def test_a_failed_poll_does_not_move_the_consumer() -> None:
    h = _History()
    h.sends(1, "abc")
    h.poll(9, *enumerate("abc"))
    h.poll(9, outcome="fail")
    h.poll(9, (1, "b"))
    assert _only(h.check(), AnomalyKind.NONMONOTONIC_POLL).offsets == (2, 1)


def test_a_seek_on_another_partition_leaves_this_one_alone() -> None:
    h = _History()
    h.sends(1, "abc")
    h.poll(9, *enumerate("abc"))
    h.seek(9, 0, tp=T1)
    h.poll(9, (1, "b"))
    assert _only(h.check(), AnomalyKind.NONMONOTONIC_POLL).offsets == (2, 1)


def test_each_consumer_has_its_own_position() -> None:
    h = _History()
    h.sends(1, "abc")
    h.poll(9, (0, "a"), (1, "b"))
    h.poll(8, (0, "a"))
    h.poll(9, (2, "c"))
    h.poll(8, (1, "b"), (2, "c"))
    assert h.check().findings == ()


def test_nonmonotonic_send_a_producers_later_send_acked_at_a_lower_offset() -> None:
    h = _History()
    first = h.send(1, "a", 3)
    h.send(2, "x", 0)
    second = h.send(1, "b", 1)
    h.send(1, "c", 4)
    h.poll(9, (0, "x"), (1, "b"), (3, "a"), (4, "c"))
    finding = _only(h.check(), AnomalyKind.NONMONOTONIC_SEND)
    assert (finding.value, finding.offsets) == (None, (3, 1))
    assert finding.sightings == (_ack(1, "a", 3, first), _ack(1, "b", 1, second))


def test_different_producers_may_be_acked_in_any_order() -> None:
    h = _History()
    h.send(1, "a", 1)
    h.send(2, "b", 0)
    h.poll(9, (0, "b"), (1, "a"))
    assert h.check().findings == ()


# -- aborted reads and unsent values -------------------------------------------------------------


def test_aborted_read_a_value_of_an_aborted_transaction() -> None:
    h = _History()
    ack = h.send(1, "a", 0, aborted=True)
    first = h.poll(9, (0, "a"))
    h.poll(9, (0, "a"), rebalance=True)
    other = h.poll(8, (0, "a"))
    finding = _only(h.check(), AnomalyKind.ABORTED_READ)
    assert (finding.value, finding.offsets) == ("a", (0,))
    send = Sighting(
        source=SightingSource.SEND,
        value="a",
        offset=0,
        process=1,
        event_index=ack,
        outcome=Outcome.OK,
        aborted=True,
    )
    # The send, then each consumer's first read of the value.
    assert finding.sightings == (send, _read(9, 0, "a", first), _read(8, 0, "a", other))


def test_aborted_read_a_value_whose_send_failed() -> None:
    h = _History()
    fail = h.send(1, "a", outcome="fail")
    h.poll(9, (0, "a"))
    finding = _only(h.check(), AnomalyKind.ABORTED_READ)
    send = finding.sightings[0]
    assert (send.outcome, send.offset, send.event_index, send.aborted) == (
        Outcome.FAIL,
        None,
        fail,
        False,
    )


def test_reading_a_value_nobody_sent_is_information() -> None:
    h = _History()
    poll = h.poll(9, (0, "mystery"))
    result = h.check()
    finding = _only(result, AnomalyKind.UNSENT_READ)
    assert finding.sightings == (_read(9, 0, "mystery", poll),)
    assert result.ok


# -- the result ----------------------------------------------------------------------------------


def test_the_result_counts_per_partition_and_in_total() -> None:
    h = _History()
    h.sends(1, "abc")
    h.send(1, "d", outcome="fail")
    h.send(1, "e", 3, aborted=True)
    h.send(1, "f", 5)
    h.send(2, "z", 0, tp=T1)
    h.poll(9, (0, "a"), (1, "b"), (2, "c"))
    h.poll(8, (0, "a"), (2, "c"))
    h.poll(8, (0, "z"), tp=T1)
    result = h.check()
    t0, t1 = result.partitions
    assert (t0.sent, t0.acked, t0.failed, t0.indeterminate, t0.aborted) == (6, 5, 1, 0, 1)
    assert (t0.records_read, t0.values_read, t0.max_offset_read) == (5, 3, 2)
    assert (t1.sent, t1.records_read, t1.max_offset_read) == (1, 1, 0)
    assert (result.sent, result.acked, result.records_read) == (7, 6, 6)
    assert result.event_count == len(h.events)
    assert result.operation_count == 10
    assert result.counts() == {AnomalyKind.POLL_SKIP: 1, AnomalyKind.UNREAD: 1}
    assert [f.kind for f in result.failures] == [AnomalyKind.POLL_SKIP]
    assert (t0.ok, t1.ok, result.ok) == (False, True, False)
    assert t0.count(AnomalyKind.POLL_SKIP) == 1


def test_findings_are_ordered_by_kind_then_offsets() -> None:
    h = _History()
    h.sends(1, "abcdef")
    # 0 -> 2 skips b (read later, so known), 2 -> 4 passes over d (never read: lost),
    # 4 -> 1 goes back, and nobody gets to f.
    h.poll(9, (0, "a"), (2, "c"), (4, "e"), (1, "b"))
    kinds = [(f.kind, f.offsets) for f in h.check().findings]
    assert kinds == [
        (AnomalyKind.LOST, (3,)),
        (AnomalyKind.POLL_SKIP, (1,)),
        (AnomalyKind.NONMONOTONIC_POLL, (4, 1)),
        (AnomalyKind.UNREAD, (5,)),
    ]


def test_an_empty_history_is_ok() -> None:
    result = check_delivery(kafka_history_from_events([]))
    assert (result.ok, result.partitions, result.findings) == (True, (), ())


# -- generated histories -------------------------------------------------------------------------

SHAPES = [
    # (operations, producers, consumers, partitions per topic, info_percent, txn_percent)
    (400, 3, 3, 2, 4, 10),
    (600, 5, 2, 1, 8, 0),
    (600, 2, 5, 3, 2, 30),
    (300, 1, 1, 1, 10, 20),
]
SEEDS = range(6)


def _generate(seed: int, shape: tuple[int, int, int, int, int, int]) -> gen.KafkaRun:
    operations, producers, consumers, partitions, info_percent, txn_percent = shape
    return gen.kafka_history(
        random.Random(seed),
        operations=operations,
        producers=producers,
        consumers=consumers,
        partitions=partitions,
        info_percent=info_percent,
        txn_percent=txn_percent,
    )


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_generated_correct_histories_have_no_failures(shape: tuple[int, ...]) -> None:
    stats: Counter[str] = Counter()
    for seed in SEEDS:
        run = _generate(seed, shape)  # type: ignore[arg-type]
        result = check_delivery(kafka_history_from_events(run.events))
        assert result.failures == (), (seed, result.failures[:3])
        assert AnomalyKind.UNSENT_READ not in result.counts()
        stats += run.stats
    # The generator went through the cases the checker must tolerate.
    covered = {"assign", "backward seek", "forward seek", "rebalance", "info poll"}
    covered |= {"failed send", "info send landed", "info send lost"}
    if shape[5]:
        covered |= {"aborted send", "committed send", "gap passed"}
    assert {case for case in covered if stats[case] == 0} == set()


Plant = Callable[
    [random.Random, list[dict[str, object]]], tuple[list[dict[str, object]], gen.Planted]
]

PLANTS: dict[str, tuple[Plant, AnomalyKind]] = {
    "lost": (gen.plant_lost, AnomalyKind.LOST),
    "inconsistent offset": (gen.plant_inconsistent_offset, AnomalyKind.INCONSISTENT_OFFSET),
    "acked at one offset, read at another": (
        gen.plant_ack_mismatch,
        AnomalyKind.INCONSISTENT_OFFSET,
    ),
    "poll skip": (gen.plant_poll_skip, AnomalyKind.POLL_SKIP),
    "nonmonotonic poll": (gen.plant_nonmonotonic_poll, AnomalyKind.NONMONOTONIC_POLL),
    "nonmonotonic send": (gen.plant_nonmonotonic_send, AnomalyKind.NONMONOTONIC_SEND),
    "aborted read": (gen.plant_aborted_read, AnomalyKind.ABORTED_READ),
    "read of a failed send": (gen.plant_failed_send_read, AnomalyKind.ABORTED_READ),
}


def _assert_planted(result: DeliveryResult, kind: AnomalyKind, planted: gen.Planted) -> None:
    (finding,) = result.failures
    assert finding.kind is kind
    assert finding.topic_partition == (planted.topic, planted.partition)
    assert finding.value == planted.value
    assert finding.offsets == planted.offsets
    assert set(planted.processes) <= set(finding.processes)
    assert [p.topic_partition for p in result.partitions if not p.ok] == [finding.topic_partition]


@pytest.mark.parametrize(("plant", "kind"), PLANTS.values(), ids=PLANTS.keys())
@pytest.mark.parametrize("seed", range(12))
def test_a_planted_anomaly_is_found_alone_where_it_was_planted(
    plant: Plant, kind: AnomalyKind, seed: int
) -> None:
    # Shapes with two consumers or more: some plants need a record two consumers read.
    run = _generate(seed, SHAPES[seed % 3])
    events, planted = plant(random.Random(seed), run.events)
    result = check_delivery(kafka_history_from_events(events))
    _assert_planted(result, kind, planted)


@pytest.mark.parametrize("seed", range(12))
def test_a_record_the_broker_appended_twice_is_a_duplicate(seed: int) -> None:
    run = gen.kafka_history(random.Random(seed), operations=400, duplicate_once=True)
    assert run.duplicated is not None
    result = check_delivery(kafka_history_from_events(run.events))
    _assert_planted(result, AnomalyKind.DUPLICATE, run.duplicated)
