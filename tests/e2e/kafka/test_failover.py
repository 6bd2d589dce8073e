"""Failures under the stock clients: a partition leader and a group coordinator killed with -9,
and a group member leaving.

- Leader kill: kafka-python, aiokafka and confluent-kafka produce concurrently (acks=all,
  idempotent) while the node leading most partitions is killed. Every send must still be
  acknowledged, and a full read afterwards must hold every acknowledged record exactly once
  at its acknowledged offset (a retried batch written twice would show as a duplicate).
- Coordinator kill: offsets committed by a consumer survive the coordinator's death; a new
  member of the group starts from them, not from the beginning.
- Coordinator failover with a group of two (kafka-python, every assignment recorded with its
  generation): after a kill -9 of the coordinator, and after the coordinator loses the
  shard's leadership and wins it back, no partition is ever assigned to both members in one
  generation, and within a session timeout the new coordinator calls the group Stable with
  the two members splitting the topic (and they go on consuming).
- Member leave: when one of two consumers closes, the other is given every partition well
  before any session timeout could explain it, and keeps consuming new records.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import crc32c
import pytest

import kafka
from tests.e2e.harness import Cluster, run_cli, wait_for
from tests.e2e.kafka.conftest import bootstrap, kafka_addrs
from tests.e2e.kafka.delivery import assert_delivery
from tests.e2e.kafka.history import KafkaHistory, Polled
from tests.e2e.kafka.wire import (
    NotReadyError,
    create_topic,
    describe_group,
    find_coordinator,
    partition_leaders,
    preferred_leaders,
)
from tests.e2e.kafka.workload import (
    ConsumeGoal,
    RebalanceFlag,
    end_offsets,
    key_of,
    partition_of,
    value_of,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PER_PRODUCER = 3_000
FAILOVER_DEADLINE_S = 90.0
LEAVE_SESSION_TIMEOUT_MS = 60_000


def _live_addr(cluster: Cluster, dead: set[int]) -> tuple[str, int]:
    return next(a for n, a in kafka_addrs(cluster).items() if n not in dead)


def _wait_new_coordinator(cluster: Cluster, group: str, dead: int) -> None:
    """Every surviving node names the same live coordinator for `group`."""
    answers: dict[int, int] = {}

    def moved() -> bool:
        answers.clear()
        for node_id, addr in kafka_addrs(cluster).items():
            if node_id != dead:
                answers[node_id] = find_coordinator(addr, group)
        return len(set(answers.values())) == 1 and dead not in answers.values()

    try:
        wait_for(
            moved,
            f"a new coordinator for group {group!r} after node {dead} died",
            timeout_s=FAILOVER_DEADLINE_S,
        )
    except AssertionError as exc:
        alive = sorted(cluster.alive_nodes())
        raise AssertionError(f"{exc}; nodes alive: {alive}; last answers: {answers}") from None


# -- producers that pause halfway until the kill has happened -----------------------------------


def _kafka_python_producer(
    servers: list[str], topic: str, history: KafkaHistory, killed: threading.Event
) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        request_timeout_ms=5_000,
        delivery_timeout_ms=int(FAILOVER_DEADLINE_S * 1000),
    )
    try:
        for i in range(PER_PRODUCER):
            if i == PER_PRODUCER // 2:
                assert killed.wait(30), "the leader was never killed"
            key, value = key_of(i), value_of("kp", i)
            op = history.send_invoke("kafka-python", topic, partition_of(i), key, value)
            fut = producer.send(topic, key=key, value=value, partition=partition_of(i))
            fut.add_callback(lambda md, op=op: history.send_ok(op, md.partition, md.offset))
            fut.add_errback(lambda exc, op=op: history.send_failed(op, repr(exc)))
        producer.flush(timeout=FAILOVER_DEADLINE_S)
    finally:
        producer.close(timeout=5)


def _aiokafka_producer(
    servers: list[str], topic: str, history: KafkaHistory, killed: threading.Event
) -> None:
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=",".join(servers),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            # aiokafka fails a batch whose partition has had no leader for this long (its
            # only delivery timeout): a failover on a loaded machine must fit in it.
            request_timeout_ms=int(FAILOVER_DEADLINE_S * 1000) // 3,
        )
        await producer.start()

        def completed(op: int, fut: asyncio.Future[Any]) -> None:
            if fut.exception() is not None:
                history.send_failed(op, repr(fut.exception()))
            else:
                history.send_ok(op, fut.result().partition, fut.result().offset)

        pending = []
        try:
            for i in range(PER_PRODUCER):
                if i == PER_PRODUCER // 2:
                    loop = asyncio.get_running_loop()
                    assert await loop.run_in_executor(None, killed.wait, 30), "no kill"
                key, value = key_of(i), value_of("ak", i)
                op = history.send_invoke("aiokafka", topic, partition_of(i), key, value)
                fut = await producer.send(topic, key=key, value=value, partition=partition_of(i))
                fut.add_done_callback(lambda f, op=op: completed(op, f))
                pending.append(fut)
            await asyncio.wait_for(
                asyncio.gather(*pending, return_exceptions=True), FAILOVER_DEADLINE_S
            )
        finally:
            await producer.stop()

    asyncio.run(run())


def _confluent_producer(
    servers: list[str], topic: str, history: KafkaHistory, killed: threading.Event
) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": ",".join(servers),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": int(FAILOVER_DEADLINE_S * 1000),
            "log_level": 3,
        }
    )

    def delivered(op: int, err: Any, msg: Any) -> None:
        if err is not None:
            history.send_failed(op, str(err))
        else:
            history.send_ok(op, msg.partition(), msg.offset())

    for i in range(PER_PRODUCER):
        if i == PER_PRODUCER // 2:
            assert killed.wait(30), "the leader was never killed"
        key, value = key_of(i), value_of("ck", i)
        op = history.send_invoke("confluent-kafka", topic, partition_of(i), key, value)
        while True:
            try:
                producer.produce(
                    topic,
                    key=key,
                    value=value,
                    partition=partition_of(i),
                    on_delivery=lambda e, m, op=op: delivered(op, e, m),
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(FAILOVER_DEADLINE_S) == 0, "confluent-kafka: records still queued"


def _read_all(
    servers: list[str], topic: str, history: KafkaHistory, partitions: int
) -> dict[tuple[int, int], bytes | None]:
    """Read every partition from offset 0 to its high watermark with one consumer.

    Returns (partition, offset) -> value of everything read.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": ",".join(servers),
            "group.id": "reader",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    me = history.new_consumer()
    seen: dict[tuple[int, int], bytes | None] = {}
    try:
        ends: dict[int, int] = {}

        def high_watermarks() -> bool:
            # A new client knows no partition of the topic until its metadata arrives: it
            # fails at once with "Unknown partition" rather than waiting for it.
            try:
                for p in range(partitions):
                    ends[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[
                        1
                    ]
            except KafkaException as exc:
                raise NotReadyError(str(exc)) from None
            return True

        wait_for(high_watermarks, f"the high watermarks of {topic!r}", timeout_s=60)
        goal = ConsumeGoal(ends)
        history.assign(me, topic, range(partitions))
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        while not goal.reached and not goal.expired:
            polled = [
                Polled(m.topic(), m.partition(), m.offset(), m.key(), m.value())
                for m in consumer.consume(num_messages=1000, timeout=0.2)
                if m.error() is None
            ]
            history.poll(me, polled)
            for r in polled:
                goal.note(r.partition, r.offset)
                seen[(r.partition, r.offset)] = r.value
        assert goal.reached, goal.describe()
    finally:
        consumer.close()
    return seen


def test_leader_kill9_during_idempotent_production_loses_and_duplicates_nothing(
    kafka_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = kafka_cluster
    addrs = kafka_addrs(cluster)
    servers = bootstrap(cluster)
    topic = "failover"
    create_topic(addrs[1], topic, partitions=3)
    # Wait for the preferred leaders (first replicas): the broker hands each partition to
    # its preferred replica soon after creation, and that is the layout it returns to after
    # the victim restarts.
    leaders = preferred_leaders(addrs[1], topic)
    wait_for(
        lambda: partition_leaders(addrs[1], topic) == leaders,
        f"every partition of the new topic to be led by its preferred replica {leaders}",
        timeout_s=60,
    )
    victim, led = Counter(leaders.values()).most_common(1)[0]

    history = KafkaHistory()
    killed = threading.Event()
    errors: list[BaseException] = []
    runners: list[Callable[..., None]] = [
        _kafka_python_producer,
        _aiokafka_producer,
        _confluent_producer,
    ]

    def guarded(run: Callable[..., None]) -> None:
        try:
            run(servers, topic, history, killed)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(r,)) for r in runners]
    for t in threads:
        t.start()
    try:
        # Kill while each producer's first half is partly acknowledged, partly in flight.
        wait_for(
            lambda: history.acked_count >= len(runners) * PER_PRODUCER // 6 or bool(errors),
            "producers to get a sixth of their records acknowledged",
        )
        killed_at_ns = time.monotonic_ns()
        cluster.kill9(victim)
        killed_at = time.monotonic()
    finally:
        killed.set()
        for t in threads:
            t.join(FAILOVER_DEADLINE_S + 30)
    recovered_s = time.monotonic() - killed_at
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a producer is still running"
    total = len(runners) * PER_PRODUCER
    assert history.acked_count == total, f"{history.acked_count} of {total} sends acknowledged"

    # The kill must have caught sends to the victim's partitions in flight: invoked before
    # it, acknowledged (by the new leader) after it.
    victim_parts = {p for p, n in leaders.items() if n == victim}
    invoked_before = {
        e["process"]
        for e in history.events
        if e["type"] == "invoke" and e["f"] == "send" and e["time"] < killed_at_ns
    }
    in_flight = [
        e
        for e in history.events
        if e["type"] == "ok"
        and e["f"] == "send"
        and e["time"] > killed_at_ns
        and e["process"] in invoked_before
        and e["value"]["partition"] in victim_parts
    ]
    assert in_flight, "no send to the victim's partitions was in flight when it was killed"

    live = _live_addr(cluster, {victim})
    new_leaders = partition_leaders(live, topic)
    assert victim not in new_leaders.values(), new_leaders
    first_read = _read_all(servers, topic, history, partitions=3)
    assert_delivery(history, tmp_path / "history.jsonl")

    # The killed node restarts from its own WAL and partition logs, catches up, and takes
    # its preferred partitions back; read through the cluster again: the same log.
    cluster.restart(victim)
    wait_for(
        lambda: partition_leaders(addrs[victim], topic) == leaders,
        f"node {victim} to lead its preferred partitions again",
        timeout_s=60,
    )
    second_read = _read_all(servers, topic, KafkaHistory(), partitions=3)
    assert second_read == first_read, "the log read after the restart differs"
    print(
        f"killed node {victim} (led {led}/3 partitions, {len(in_flight)} sends in flight); "
        f"all sends done {recovered_s:.1f} s later"
    )


# -- committed offsets and the coordinator ----------------------------------------------------


def test_committed_offsets_survive_coordinator_kill9(kafka_cluster: Cluster) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    cluster = kafka_cluster
    addrs = kafka_addrs(cluster)
    servers = ",".join(bootstrap(cluster))
    topic, group = "offsets", "survivor"
    create_topic(addrs[1], topic, partitions=3)
    producer = Producer({"bootstrap.servers": servers, "acks": "all", "linger.ms": 5})
    for i in range(300):
        producer.produce(topic, key=key_of(i), value=value_of("o", i), partition=i % 3)
    assert producer.flush(FAILOVER_DEADLINE_S) == 0, "records still queued after flush"

    def consumer() -> Any:
        c = Consumer(
            {
                "bootstrap.servers": servers,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "log_level": 3,
            }
        )
        c.subscribe([topic])
        return c

    first = consumer()
    read: Counter[int] = Counter()
    deadline = time.monotonic() + FAILOVER_DEADLINE_S
    while min(read[p] for p in range(3)) < 40 and time.monotonic() < deadline:
        for m in first.consume(num_messages=50, timeout=0.2):
            if m.error() is None:
                read[m.partition()] += 1
    assert min(read[p] for p in range(3)) >= 40, f"first consumer read only {dict(read)}"
    committed = {0: 17, 1: 29, 2: 40}  # not the consumer's positions: explicit offsets
    first.commit(
        offsets=[TopicPartition(topic, p, o) for p, o in committed.items()], asynchronous=False
    )
    stored = first.committed([TopicPartition(topic, p) for p in range(3)], timeout=30)
    assert {tp.partition: tp.offset for tp in stored} == committed
    first.close()

    coordinator = find_coordinator(addrs[1], group)
    cluster.kill9(coordinator)
    _wait_new_coordinator(cluster, group, coordinator)

    second = consumer()
    firsts: dict[int, int] = {}
    deadline = time.monotonic() + FAILOVER_DEADLINE_S
    try:
        while len(firsts) < 3 and time.monotonic() < deadline:
            for m in second.consume(num_messages=50, timeout=0.2):
                if m.error() is None:
                    firsts.setdefault(m.partition(), m.offset())
    finally:
        second.close()
    assert firsts == committed, f"resumed at {firsts}, committed {committed}"


# -- the group across a coordinator failover -------------------------------------------------

CHURN_GROUP = "churners"
CHURN_SESSION_TIMEOUT_MS = 10_000
SHARDS = 2  # the harness's default: group/<id> lives in KV shard crc32c(key) % SHARDS + 1


class _Assignment(NamedTuple):
    member: str  # which consumer of the test: "a" or "b"
    member_id: str  # the id the coordinator gave it
    generation: int
    partitions: frozenset[int]


class _AssignmentLog(kafka.ConsumerRebalanceListener):
    """Records every assignment one kafka-python consumer is given, with its generation.

    kafka-python has no public accessor for the generation: its coordinator sets
    `_generation` from the JoinGroup response before the SyncGroup whose assignment this
    callback reports (a heartbeat failing in between would reset it, to generation -1).
    """

    def __init__(self, member: str, consumer: Any, out: list[_Assignment]) -> None:
        self.member = member
        self.consumer = consumer
        self.out = out

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        gen = self.consumer._coordinator._generation
        parts = frozenset(tp.partition for tp in self.consumer.assignment())
        self.out.append(_Assignment(self.member, gen.member_id, gen.generation_id, parts))


class _ChurnMember(threading.Thread):
    """A kafka-python consumer of the group, polling in its own thread until told to stop.

    Both members use kafka-python's default client id, as two consumers of one application
    would, and its default auto-commit interval; they heartbeat at different rates, so that
    they reach a new coordinator one after the other, as they do when their timers are not
    in step.
    """

    def __init__(
        self, member: str, servers: list[str], topic: str, out: list[_Assignment], *, hb_ms: int
    ) -> None:
        super().__init__()
        from kafka.coordinator.assignors.range import RangePartitionAssignor

        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(
            bootstrap_servers=servers,
            group_id=CHURN_GROUP,
            auto_offset_reset="earliest",
            enable_auto_commit=True,
            auto_commit_interval_ms=5_000,
            session_timeout_ms=CHURN_SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=hb_ms,
            partition_assignment_strategy=[RangePartitionAssignor],
        )
        self.consumer.subscribe([topic], listener=_AssignmentLog(member, self.consumer, out))
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.goal: ConsumeGoal | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                batch = self.consumer.poll(timeout_ms=100)
                goal = self.goal
                for tp, records in batch.items():
                    for r in records:
                        if goal is not None:
                            goal.note(tp.partition, r.offset)
        except BaseException as exc:
            self.error = exc
        finally:
            self.consumer.close()


def _settled(log: list[_Assignment]) -> dict[str, _Assignment] | None:
    """Each member's latest assignment, if both are of one generation and split the topic."""
    latest = {a.member: a for a in log}
    if set(latest) != {"a", "b"}:
        return None
    a, b = latest["a"], latest["b"]
    if a.generation != b.generation or a.member_id == b.member_id:
        return None
    if a.partitions & b.partitions or a.partitions | b.partitions != {0, 1, 2}:
        return None
    return latest


def _owned_twice(log: list[_Assignment]) -> list[str]:
    """Every generation in which a partition was assigned to both members, described."""
    owners: dict[int, dict[str, set[int]]] = {}
    for a in log:
        owners.setdefault(a.generation, {}).setdefault(a.member, set()).update(a.partitions)
    return [
        f"generation {gen}: partitions {sorted(by['a'] & by['b'])} to both"
        for gen, by in sorted(owners.items())
        if by.get("a", set()) & by.get("b", set())
    ]


class _ChurnGroup:
    """Two members of CHURN_GROUP on a 3-partition topic with 300 records: a joins first
    (generation 1 gives it every partition), then b (generation 2 splits the topic)."""

    def __init__(self, cluster: Cluster, topic: str) -> None:
        self.cluster = cluster
        self.servers = bootstrap(cluster)
        self.topic = topic
        create_topic(kafka_addrs(cluster)[1], topic, partitions=3)
        self.history = KafkaHistory()
        _produce_with_kafka_python(self.servers, topic, self.history, 0, 300)
        self.log: list[_Assignment] = []
        self.a = _ChurnMember("a", self.servers, topic, self.log, hb_ms=3_000)
        self.b = _ChurnMember("b", self.servers, topic, self.log, hb_ms=1_000)

    def __enter__(self) -> _ChurnGroup:
        goal = self.a.goal = self.b.goal = ConsumeGoal(end_offsets(self.history.acked()))
        self.a.start()
        wait_for(lambda: any(x.member == "a" for x in self.log), "member a to be assigned")
        self.b.start()
        wait_for(lambda: _settled(self.log) is not None, "both members to share the 3 partitions")
        wait_for(lambda: goal.reached, "the group to consume the first 300 records")
        return self

    def __exit__(self, *exc: object) -> None:
        self.a.stop.set()
        self.b.stop.set()
        self.a.join(30)
        self.b.join(30)

    def wait_stable(self, coordinator: int, what: str) -> None:
        """Within a session timeout: `coordinator` calls the group Stable, with the two
        members that split the topic in their latest generation."""
        addr = kafka_addrs(self.cluster)[coordinator]

        def stable() -> bool:
            settled = _settled(self.log)
            described = describe_group(addr, CHURN_GROUP)
            members = {m["member_id"] for m in described["members"]}
            return (
                settled is not None
                and described["group_state"] == "Stable"
                and members == {s.member_id for s in settled.values()}
            )

        wait_for(stable, what, timeout_s=CHURN_SESSION_TIMEOUT_MS / 1000)

    def consume_more(self) -> None:
        """Both members go on consuming: 300 new records are all read."""
        ends = end_offsets(self.history.acked())
        goal = self.a.goal = self.b.goal = ConsumeGoal({p: e + 100 for p, e in ends.items()})
        _produce_with_kafka_python(self.servers, self.topic, self.history, 300, 300)
        wait_for(lambda: goal.reached, "the group to consume what was produced afterwards")

    def check(self) -> None:
        assert self.a.error is None and self.b.error is None, (self.a.error, self.b.error)
        twice = _owned_twice(self.log)
        assert not twice, f"{twice}; assignments: {self.log}"


def test_group_stays_split_across_a_coordinator_kill9(kafka_cluster: Cluster) -> None:
    cluster = kafka_cluster
    with _ChurnGroup(cluster, "churn") as group:
        before = len(group.log)
        coordinator = find_coordinator(kafka_addrs(cluster)[1], CHURN_GROUP)
        cluster.kill9(coordinator)
        _wait_new_coordinator(cluster, CHURN_GROUP, coordinator)
        new = find_coordinator(_live_addr(cluster, {coordinator}), CHURN_GROUP)
        group.wait_stable(
            new, f"the group to be stable at node {new} after node {coordinator} died"
        )
        group.consume_more()
    group.check()
    print(f"assignments after the kill: {group.log[before:]}")


def test_group_stays_split_when_its_coordinator_loses_and_regains_leadership(
    kafka_cluster: Cluster,
) -> None:
    # The elections around a kill can take a shard's leadership from a node and give it
    # back; a node may also restart and win it again. Here: moved away and back at once,
    # before the members hear of the interim coordinator.
    cluster = kafka_cluster
    shard = crc32c.crc32c(f"group/{CHURN_GROUP}".encode()) % SHARDS + 1
    with _ChurnGroup(cluster, "bounce") as group:
        before = len(group.log)
        coordinator = find_coordinator(kafka_addrs(cluster)[1], CHURN_GROUP)
        interim = next(n for n in sorted(cluster.state.nodes) if n != coordinator)
        for to in (interim, coordinator):
            moved = run_cli(
                "cluster", "transfer-leader", "--dir", str(cluster.dir),
                "--to", str(to), "--group", str(shard),
            )  # fmt: skip
            assert moved.returncode == 0, moved.stdout + moved.stderr
        group.wait_stable(coordinator, f"the group to be stable at node {coordinator} again")
        group.consume_more()
    group.check()
    print(f"assignments after the moves: {group.log[before:]}")


# -- a member leaves ----------------------------------------------------------------------------


class _GroupMember(threading.Thread):
    """A kafka-python consumer polling in its own thread until told to stop (then closes)."""

    def __init__(self, servers: list[str], topic: str, history: KafkaHistory) -> None:
        super().__init__()
        from kafka import KafkaConsumer

        self.me = history.new_consumer()
        self.history = history
        self.consumer = KafkaConsumer(
            bootstrap_servers=servers,
            group_id="leavers",
            auto_offset_reset="earliest",
            enable_auto_commit=True,
            auto_commit_interval_ms=500,
            session_timeout_ms=LEAVE_SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=500,
        )
        self.rebalanced = RebalanceFlag()
        self.consumer.subscribe([topic], listener=self.rebalanced)
        self.assigned: frozenset[int] = frozenset()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.goal: ConsumeGoal | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                batch = self.consumer.poll(timeout_ms=100)
                polled = [
                    Polled(tp.topic, tp.partition, r.offset, r.key, r.value)
                    for tp, records in batch.items()
                    for r in records
                ]
                self.history.poll(self.me, polled, rebalance=self.rebalanced.take())
                goal = self.goal
                for r in polled:
                    if goal is not None:
                        goal.note(r.partition, r.offset)
                self.assigned = frozenset(tp.partition for tp in self.consumer.assignment())
        except BaseException as exc:
            self.error = exc
        finally:
            self.consumer.close()  # commits what it consumed, then LeaveGroup


def _produce_with_kafka_python(
    servers: list[str], topic: str, history: KafkaHistory, start: int, count: int
) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
    try:
        for i in range(start, start + count):
            key, value = key_of(i), value_of("leave", i)
            op = history.send_invoke("kafka-python", topic, partition_of(i), key, value)
            fut = producer.send(topic, key=key, value=value, partition=partition_of(i))
            fut.add_callback(lambda md, op=op: history.send_ok(op, md.partition, md.offset))
            fut.add_errback(lambda exc, op=op: history.send_failed(op, repr(exc)))
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def test_group_rebalances_when_a_member_leaves(
    shared_kafka_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = shared_kafka_cluster
    servers = bootstrap(cluster)
    topic = "leavers"
    create_topic(kafka_addrs(cluster)[3], topic, partitions=3)
    history = KafkaHistory()
    _produce_with_kafka_python(servers, topic, history, 0, 600)

    a, b = _GroupMember(servers, topic, history), _GroupMember(servers, topic, history)
    goal = a.goal = b.goal = ConsumeGoal(end_offsets(history.acked()))
    a.start()
    b.start()
    try:
        wait_for(
            lambda: bool(a.assigned) and bool(b.assigned) and a.assigned | b.assigned == {0, 1, 2},
            "both members to share the 3 partitions",
        )
        wait_for(lambda: goal.reached, "the group to consume the first 600 records")
        left_at = time.monotonic()
        a.stop.set()
        a.join(30)
        assert not a.is_alive() and a.error is None, a.error
        wait_for(
            lambda: b.assigned == {0, 1, 2},
            "the remaining member to be given every partition",
            # Well below the session timeout: only the LeaveGroup can explain the rebalance.
            timeout_s=LEAVE_SESSION_TIMEOUT_MS / 1000 / 2,
        )
        rebalance_s = time.monotonic() - left_at

        # Set the next goal first: b reads the new records as soon as they are acknowledged.
        ends = end_offsets(history.acked())
        goal = b.goal = ConsumeGoal({p: end + 200 for p, end in ends.items()})
        _produce_with_kafka_python(servers, topic, history, 600, 600)
        assert end_offsets(history.acked()) == {p: end + 200 for p, end in ends.items()}
        wait_for(lambda: goal.reached, "the remaining member to consume the next 600 records")
    finally:
        a.stop.set()
        b.stop.set()
        a.join(30)
        b.join(30)
    assert b.error is None, b.error
    late = {
        r["partition"]
        for e in history.events
        if e["f"] == "poll" and e["type"] == "ok" and e["process"] == b.me
        for r in e["value"]
        if int(r["value"].split("-")[1]) >= 600
    }
    assert late == {0, 1, 2}, f"after the leave, member b read partitions {late}"
    assert_delivery(history, tmp_path / "history.jsonl")
    print(f"rebalance after the leave took {rebalance_s:.2f} s")
