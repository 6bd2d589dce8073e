"""The stock Kafka clients against a live 3-node cluster: admin, idempotent produce, groups.

For each of kafka-python, aiokafka and confluent-kafka (librdkafka): create a topic with 3
partitions and replication factor 3 through the client's admin API, start two consumers of
one group and wait until each holds a share of the partitions, then produce 10,000 records
with acks=all and idempotence while they consume. (Consumers started after the producing
could let one member read everything before the other had joined, on a slow machine.)
The recorded history (every send with its acknowledged offset, every poll) is judged by the
delivery checker and by `delivery.assert_delivery`: every record exactly once, in order per
partition, at the offset it was acknowledged with.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Cluster, wait_for
from tests.e2e.kafka.conftest import bootstrap, wait_topic_everywhere
from tests.e2e.kafka.delivery import assert_delivery
from tests.e2e.kafka.history import KafkaHistory, Polled
from tests.e2e.kafka.workload import (
    DEADLINE_S,
    PARTITIONS,
    RECORDS,
    REPLICATION_FACTOR,
    AioRebalanceFlag,
    ConsumeGoal,
    RebalanceFlag,
    assert_dense,
    end_offsets,
    key_of,
    partition_of,
    value_of,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _is_split(assignments: dict[int, set[int]]) -> bool:
    """The group's two members hold disjoint, non-empty shares covering every partition."""
    shares = list(assignments.values())
    return (
        len(shares) == 2
        and all(shares)
        and not shares[0] & shares[1]
        and shares[0] | shares[1] == set(range(PARTITIONS))
    )


def _wait_split(assignments: dict[int, set[int]], errors: list[Any]) -> None:
    wait_for(
        lambda: bool(errors) or _is_split(assignments),
        "both consumers of the group to hold a share of the partitions",
        timeout_s=DEADLINE_S,
    )
    assert not errors, errors


def _assert_split(assignments: dict[int, set[int]]) -> None:
    """The group's two members hold disjoint, non-empty shares of the 3 partitions."""
    assert len(assignments) == 2, f"expected 2 consumers, got {assignments}"
    a, b = assignments.values()
    assert a and b, f"a consumer had no partitions at the end: {assignments}"
    assert not a & b, f"a partition was assigned twice: {assignments}"
    assert a | b == set(range(PARTITIONS)), f"not every partition assigned: {assignments}"


def _leave_together(finished: threading.Barrier) -> None:
    """Wait for the other consumer to be done too before leaving the group: a member that
    left first would have its partitions handed to the other one, which would then end
    with all of them (the recorded final assignments would overlap)."""
    with contextlib.suppress(threading.BrokenBarrierError):
        finished.wait(DEADLINE_S)


def _assert_both_consumed(history: KafkaHistory) -> None:
    pollers = {
        e["process"]
        for e in history.events
        if e["f"] == "poll" and e["type"] == "ok" and e["value"]
    }
    assert len(pollers) == 2, f"only consumers {pollers} received records"


def _all_acked(history: KafkaHistory, goal: ConsumeGoal) -> None:
    """Every send was acknowledged at dense offsets; the consumers' goal is their end."""
    acked = history.acked()
    assert len(acked) == RECORDS, f"{len(acked)} of {RECORDS} sends acknowledged"
    assert_dense(acked, PARTITIONS)
    goal.set_end_offsets(end_offsets(acked))


def _assert_group_delivered(
    history: KafkaHistory, goal: ConsumeGoal, assignments: dict[int, set[int]], tmp_path: Path
) -> None:
    """The group of two read up to the end, split the partitions, and the history of sends
    and polls passes the delivery checker (kept next to the test's other files)."""
    assert goal.reached, goal.describe()
    _assert_split(assignments)
    _assert_both_consumed(history)
    assert_delivery(history, tmp_path / "history.jsonl")


def _assert_described(desc: dict[str, Any]) -> None:
    """An admin client's description of the new topic: 3 partitions, each on all 3 nodes."""
    assert desc["error_code"] == 0, desc
    parts = desc["partitions"]
    index = "partition_index" if "partition_index" in parts[0] else "partition"
    replicas = "replica_nodes" if "replica_nodes" in parts[0] else "replicas"
    assert sorted(p[index] for p in parts) == list(range(PARTITIONS)), desc
    for p in parts:
        assert sorted(p[replicas]) == [1, 2, 3], p
        assert p["leader" if "leader" in p else "leader_id"] in (1, 2, 3), p


# -- kafka-python -------------------------------------------------------------------------------


def test_kafka_python_group_reads_each_idempotent_record_once_in_order(
    shared_kafka_cluster: Cluster, tmp_path: Path
) -> None:
    from kafka.admin import NewTopic

    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    servers = bootstrap(shared_kafka_cluster)
    topic = "kafka-python-orders"
    admin = KafkaAdminClient(bootstrap_servers=servers, client_id="kp-admin")
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, REPLICATION_FACTOR)])
        wait_topic_everywhere(shared_kafka_cluster, topic)
        (desc,) = admin.describe_topics([topic])
    finally:
        admin.close()
    _assert_described(desc)

    history = KafkaHistory()
    goal = ConsumeGoal()
    assignments: dict[int, set[int]] = {}
    errors: list[BaseException] = []
    finished = threading.Barrier(2)

    def consume() -> None:
        me = history.new_consumer()
        consumer = KafkaConsumer(
            bootstrap_servers=servers,
            group_id="kafka-python-group",
            auto_offset_reset="earliest",
            enable_auto_commit=True,  # also commits, synchronously, before every rebalance
            auto_commit_interval_ms=500,
        )
        rebalanced = RebalanceFlag()
        consumer.subscribe([topic], listener=rebalanced)
        try:
            while not goal.reached and not goal.expired:
                batch = consumer.poll(timeout_ms=200)
                polled = [
                    Polled(tp.topic, tp.partition, r.offset, r.key, r.value)
                    for tp, records in batch.items()
                    for r in records
                ]
                history.poll(me, polled, rebalance=rebalanced.take())
                for r in polled:
                    goal.note(r.partition, r.offset)
                assignments[me] = {tp.partition for tp in consumer.assignment()}
        except BaseException as exc:
            errors.append(exc)
        finally:
            _leave_together(finished)
            consumer.close()

    threads = [threading.Thread(target=consume) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        _wait_split(assignments, errors)
        producer = KafkaProducer(
            bootstrap_servers=servers, acks="all", enable_idempotence=True, linger_ms=5
        )
        try:
            for i in range(RECORDS):
                key, value = key_of(i), value_of("kp", i)
                op = history.send_invoke("kafka-python", topic, partition_of(i), key, value)
                fut = producer.send(topic, key=key, value=value, partition=partition_of(i))
                fut.add_callback(lambda md, op=op: history.send_ok(op, md.partition, md.offset))
                fut.add_errback(lambda exc, op=op: history.send_failed(op, repr(exc)))
            producer.flush(timeout=DEADLINE_S)
        finally:
            producer.close(timeout=10)
        _all_acked(history, goal)
    except BaseException:
        goal.give_up()
        raise
    finally:
        for t in threads:
            t.join(DEADLINE_S + 30)
    assert not errors, errors
    _assert_group_delivered(history, goal, assignments, tmp_path)


# -- aiokafka -----------------------------------------------------------------------------------


def test_aiokafka_group_reads_each_idempotent_record_once_in_order(
    shared_kafka_cluster: Cluster, tmp_path: Path
) -> None:
    asyncio.run(_aiokafka_workload(shared_kafka_cluster, tmp_path))


async def _aiokafka_workload(cluster: Cluster, tmp_path: Path) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    servers = ",".join(bootstrap(cluster))
    topic = "aiokafka-orders"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, client_id="ak-admin")
    await admin.start()
    try:
        created = await admin.create_topics([NewTopic(topic, PARTITIONS, REPLICATION_FACTOR)])
        await asyncio.to_thread(wait_topic_everywhere, cluster, topic)
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    assert [e[1] for e in created.topic_errors] == [0], created
    (desc,) = described
    _assert_described(desc)

    history = KafkaHistory()
    goal = ConsumeGoal()
    assignments: dict[int, set[int]] = {}
    consumers = [
        AIOKafkaConsumer(
            bootstrap_servers=servers,
            group_id="aiokafka-group",
            auto_offset_reset="earliest",
            enable_auto_commit=True,  # also commits before every rebalance
            auto_commit_interval_ms=500,
        )
        for _ in range(2)
    ]
    flags = [AioRebalanceFlag() for _ in consumers]

    async def consume(consumer: AIOKafkaConsumer, rebalanced: AioRebalanceFlag) -> None:
        me = history.new_consumer()
        while not goal.reached and not goal.expired:
            batch = await consumer.getmany(timeout_ms=200)
            polled = [
                Polled(tp.topic, tp.partition, r.offset, r.key, r.value)
                for tp, records in batch.items()
                for r in records
            ]
            history.poll(me, polled, rebalance=rebalanced.take())
            for r in polled:
                goal.note(r.partition, r.offset)
            assignments[me] = {tp.partition for tp in consumer.assignment()}

    def completed(op: int, fut: asyncio.Future[Any]) -> None:
        if fut.exception() is not None:
            history.send_failed(op, repr(fut.exception()))
        else:
            md = fut.result()
            history.send_ok(op, md.partition, md.offset)

    async def produce() -> None:
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while not _is_split(assignments):
            assert asyncio.get_running_loop().time() < deadline, (
                f"the consumers never shared the partitions: {assignments}"
            )
            await asyncio.sleep(0.05)
        producer = AIOKafkaProducer(
            bootstrap_servers=servers, acks="all", enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        try:
            pending = []
            for i in range(RECORDS):
                key, value = key_of(i), value_of("ak", i)
                op = history.send_invoke("aiokafka", topic, partition_of(i), key, value)
                fut = await producer.send(topic, key=key, value=value, partition=partition_of(i))
                fut.add_done_callback(lambda f, op=op: completed(op, f))
                pending.append(fut)
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), DEADLINE_S)
        finally:
            await producer.stop()
        _all_acked(history, goal)

    async def produce_or_give_up() -> None:
        try:
            await produce()
        except BaseException:
            goal.give_up()
            raise

    await asyncio.gather(*(c.start() for c in consumers))
    for c, flag in zip(consumers, flags, strict=True):
        c.subscribe([topic], listener=flag)
    try:
        await asyncio.gather(
            produce_or_give_up(),
            *(consume(c, f) for c, f in zip(consumers, flags, strict=True)),
        )
    finally:
        await asyncio.gather(*(c.stop() for c in consumers))
    _assert_group_delivered(history, goal, assignments, tmp_path)


# -- confluent-kafka (librdkafka) ---------------------------------------------------------------


def test_confluent_kafka_group_reads_each_idempotent_record_once_in_order(
    shared_kafka_cluster: Cluster, tmp_path: Path
) -> None:
    from confluent_kafka import Consumer, KafkaError
    from confluent_kafka.admin import AdminClient, NewTopic

    servers = ",".join(bootstrap(shared_kafka_cluster))
    topic = "confluent-orders"
    admin = AdminClient({"bootstrap.servers": servers})
    futures = admin.create_topics([NewTopic(topic, PARTITIONS, REPLICATION_FACTOR)])
    futures[topic].result(timeout=30)
    wait_topic_everywhere(shared_kafka_cluster, topic)
    md = admin.list_topics(topic, timeout=10)
    assert md.topics[topic].error is None, md.topics[topic].error
    parts = md.topics[topic].partitions
    assert sorted(parts) == list(range(PARTITIONS))
    for p in parts.values():
        assert sorted(p.replicas) == [1, 2, 3], p
    assert sorted(md.brokers) == [1, 2, 3]

    history = KafkaHistory()
    goal = ConsumeGoal()
    assignments: dict[int, set[int]] = {}
    errors: list[BaseException | str] = []
    finished = threading.Barrier(2)

    def consume() -> None:
        me = history.new_consumer()
        consumer = Consumer(
            {
                "bootstrap.servers": servers,
                "group.id": "confluent-group",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "auto.commit.interval.ms": 500,
            }
        )
        rebalanced = threading.Event()
        try:
            consumer.subscribe(
                [topic],
                on_assign=lambda c, parts: rebalanced.set(),
                on_revoke=lambda c, parts: rebalanced.set(),
            )
            while not goal.reached and not goal.expired:
                polled = []
                for m in consumer.consume(num_messages=500, timeout=0.2):
                    if m.error() is not None:
                        if m.error().code() != KafkaError._PARTITION_EOF:
                            errors.append(str(m.error()))
                        continue
                    polled.append(Polled(m.topic(), m.partition(), m.offset(), m.key(), m.value()))
                history.poll(me, polled, rebalance=rebalanced.is_set())
                rebalanced.clear()
                for r in polled:
                    goal.note(r.partition, r.offset)
                assignments[me] = {tp.partition for tp in consumer.assignment()}
        except BaseException as exc:
            errors.append(exc)
        finally:
            _leave_together(finished)
            consumer.close()

    threads = [threading.Thread(target=consume) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        _wait_split(assignments, errors)
        _produce_with_confluent(servers, topic, history)
        _all_acked(history, goal)
    except BaseException:
        goal.give_up()
        raise
    finally:
        for t in threads:
            t.join(DEADLINE_S + 30)
    assert not errors, errors
    _assert_group_delivered(history, goal, assignments, tmp_path)


def _produce_with_confluent(servers: str, topic: str, history: KafkaHistory) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": int(DEADLINE_S * 1000),
        }
    )

    def delivered(op: int, err: Any, msg: Any) -> None:
        if err is not None:
            history.send_failed(op, str(err))
        else:
            history.send_ok(op, msg.partition(), msg.offset())

    for i in range(RECORDS):
        key, value = key_of(i), value_of("ck", i)
        op = history.send_invoke("confluent-kafka", topic, partition_of(i), key, value)
        while True:
            try:
                producer.produce(
                    topic,
                    key=key,
                    value=value,
                    partition=partition_of(i),
                    on_delivery=lambda err, msg, op=op: delivered(op, err, msg),
                )
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(DEADLINE_S) == 0, "records still queued after flush"
