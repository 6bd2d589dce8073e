"""Kafka in the host simulation: a topic, idempotent producers and consumers on real nodes.

Theory of operation. Every node of the simulated cluster runs the Kafka backend users run
(`kafka.backend.KafkaBackend`, built on each start of a node, as a restarted process builds
its own, over the node's simulated disk). The workload talks to it through the backend's
sans-IO calls, the ones the broker's handlers wrap:

- at start, one topic (`partitions` partitions, a replication factor drawn from 2..nodes) is
  created through the controller (`submit_create_topic`), retried on another node until a
  node answers;
- idempotent producers (one producer id each, epoch 0, a sequence per partition) send
  batches of 1..3 records, built with the project's record-batch encoder, through
  `submit_produce` (acks=all) to the partition's leader as the node they asked last named it
  (else to a node drawn at random); an attempt refused or unanswered is retried, with the
  SAME producer id and sequence, elsewhere, as a real idempotent client does, until the
  send's deadline; a batch given up bumps the producer's epoch (its sequences restart);
- consumers poll every partition in turn through the Fetch handler's steps: the partition's
  view on a node (leader? offset in range?), then `backend.read` from their position, and
  decode the batches.

Each record of a batch is one `send` of the Kafka history (`check.kafka_history`), issued by
its own process (a producer has one per batch slot); each fetch is one `poll`. After the run
and the heal, a fresh consumer per partition reads it from offset 0 to its end behind a
ReadIndex barrier on the leader (so every acknowledged record is applied there), and the
history goes to `check.kafka_delivery.check_delivery`: its failures are the run's violations.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quorumdb.check.kafka_delivery import AnomalyKind, check_delivery
from quorumdb.check.kafka_history import KafkaHistoryError, kafka_history_from_events
from quorumdb.host.group import Group
from quorumdb.host.node_host import CONTROLLER_GROUP
from quorumdb.host.pending import Pending
from quorumdb.kafka.backend import KafkaBackend
from quorumdb.kafka.metadata import TopicConfigError, TopicInfo
from quorumdb.kafka.partition import ProduceResult
from quorumdb.kafka.protocol.errors import ErrorCode, RemoteProtocolError
from quorumdb.kafka.protocol.records import Record, build_batch, decode_records, iter_batches
from quorumdb.kv.commands import Outcome, Result
from quorumdb.kv.node_service import NodeService
from quorumdb.raft import Ready
from quorumdb.sim.disk_fs import SimFileSystem
from quorumdb.sim.host_node import HostNode
from quorumdb.sim.loop import EventLoop

__all__ = ["KafkaWorkload", "KafkaWorkloadOptions"]

TOPIC = "sim"
_TOPIC_RETRY_US = 50_000
_ATTEMPT_US = 300_000  # an attempt unanswered for this long is retried elsewhere
_PRODUCE_TIMEOUT_MS = 250  # the produce request's own timeout (the backend's)
_SEND_DEADLINE_US = 2_000_000  # a send not acknowledged by then is given up (info)
_RETRY_US = 10_000
_OUT_OF_RANGE_MAX = 20  # consecutive out-of-range fetches before the consumer resets
_FETCH_MAX_BYTES = 4096
_FINAL_US = 5_000_000  # after the heal: time for every partition to serve its final read
_FINDINGS_SHOWN = 5
_STRICT = (AnomalyKind.UNREAD, AnomalyKind.UNSENT_READ)  # failures here (see `_check`)


@dataclass(frozen=True, slots=True)
class KafkaWorkloadOptions:
    partitions: int = 2
    producers: int = 3
    consumers: int = 2
    batch_records: tuple[int, int] = (1, 3)  # records per produce batch, inclusive
    think_us: tuple[int, int] = (2_000, 30_000)
    segment_bytes: int = 8 << 10  # small segments: partition logs rotate within a run


@dataclass(slots=True)
class _Producer:
    pid: int
    lanes: list[int]  # one process per batch slot (a process has one send outstanding)
    epoch: int = 0
    sequences: dict[int, int] = field(default_factory=dict)  # partition -> next sequence
    sent: int = 0


@dataclass(slots=True)
class _Consumer:
    process: int
    positions: dict[int, int]  # partition -> next offset to read
    out_of_range: dict[int, int] = field(default_factory=dict)
    turn: int = 0


@dataclass(slots=True)
class _Send:
    """One batch on its way: the records' processes and values, the attempts made."""

    producer: _Producer
    partition: int
    batch: bytes
    lanes: list[tuple[int, str]]  # (process, value) per record
    deadline: int
    maybe_written: bool = False
    finished: bool = False
    attempt: int = 0


class KafkaWorkload:
    """The Kafka side of a `sim.simulator.Simulation` (see the module docstring)."""

    def __init__(
        self,
        *,
        loop: EventLoop,
        nodes: dict[int, HostNode],
        rng: random.Random,
        new_process: Callable[[], int],
        violate: Callable[[str], None],
        running: Callable[[], bool],
        opts: KafkaWorkloadOptions | None = None,
    ) -> None:
        """What it needs of the simulation: its event loop, its nodes, a seeded `rng` of
        its own, fresh history process ids, where violations go, and whether clients still
        run (False once the heal began)."""
        self.loop = loop
        self.nodes = nodes
        self.rng = rng
        self.new_process = new_process
        self.violate = violate
        self.running = running
        self.opts = opts or KafkaWorkloadOptions()
        self.replication = self.rng.randint(min(2, len(nodes)), len(nodes))
        self.events: list[dict[str, Any]] = []
        self.backends: dict[int, tuple[int, KafkaBackend]] = {}  # node -> (incarnation, it)
        self.leader_hint: dict[int, int] = {}  # partition -> the node last named its leader
        self.topic_created = False
        self.producers = [_Producer(pid=1_000 + i, lanes=[]) for i in range(self.opts.producers)]
        self.consumers: list[_Consumer] = []
        self.acked = 0
        self.records_read = 0
        self.sends_open = 0  # batches neither acknowledged nor given up yet

    # -- nodes -------------------------------------------------------------------------------

    def attach(self, node: HostNode, watch: Callable[[int, Group], None]) -> None:
        """A node started: give it the Kafka backend a node process builds, and have the
        simulation watch every partition group it hosts (now, and as topics appear)."""
        host = node.host
        assert host is not None
        backend = KafkaBackend(host, NodeService(host), fs=SimFileSystem(node.disk))
        self.backends[node.id] = (node.incarnation, backend)
        watched: set[int] = set()

        def watch_new() -> None:
            for gid, g in host.groups.items():
                if gid not in watched:
                    watched.add(gid)
                    watch(node.id, g)

        def after_apply(g: Group, rd: Ready, lead_before: int) -> None:
            if g.group_id == CONTROLLER_GROUP:
                watch_new()  # the backend added (or recovered) partition groups

        watch_new()
        host.after_apply.append(after_apply)

    def _backend(self, node_id: int) -> KafkaBackend | None:
        node = self.nodes[node_id]
        got = self.backends.get(node_id)
        if got is None or node.host is None or got[0] != node.incarnation:
            return None
        return got[1]

    def _up(self) -> list[int]:
        return [i for i in sorted(self.nodes) if self._backend(i) is not None]

    def _pick(self, partition: int | None = None) -> tuple[int, KafkaBackend] | None:
        """The node last named the partition's leader if it is up, else one at random."""
        if partition is not None:
            hint = self.leader_hint.get(partition)
            if hint is not None and (b := self._backend(hint)) is not None:
                return hint, b
        up = self._up()
        if not up:
            return None
        node_id = self.rng.choice(up)
        b = self._backend(node_id)
        assert b is not None
        return node_id, b

    def _topic(self, b: KafkaBackend) -> TopicInfo | None:
        return b.topics().get(TOPIC)

    def _record(self, process: int, kind: str, f: str, value: object) -> None:
        self.events.append(
            {"process": process, "type": kind, "f": f, "value": value, "time": self.loop.now}
        )
        self.loop.trace(f"k p{process} {kind} {f} {value}")

    # -- the run -----------------------------------------------------------------------------

    def start(self) -> None:
        self.loop.after(30_000, self._create_topic)
        for p in self.producers:
            p.lanes = [self.new_process() for _ in range(self.opts.batch_records[1])]
            self.loop.after(self._think() + 200_000, self._produce, p)
        for _ in range(self.opts.consumers):
            c = _Consumer(
                process=self.new_process(),
                positions=dict.fromkeys(range(self.opts.partitions), 0),
            )
            self.consumers.append(c)
            self.loop.after(self._think() + 200_000, self._poll, c)

    def _think(self) -> int:
        lo, hi = self.opts.think_us
        return self.rng.randrange(lo, hi) if hi > lo else lo

    def _create_topic(self) -> None:
        if self.topic_created:
            return
        picked = self._pick()
        if picked is None:
            self.loop.after(_TOPIC_RETRY_US, self._create_topic)
            return
        node_id, b = picked
        if self._topic(b) is not None:
            self.topic_created = True
            return
        configs = {"segment.bytes": str(self.opts.segment_bytes)}
        try:
            p = b.submit_create_topic(TOPIC, self.opts.partitions, self.replication, configs)
        except TopicConfigError as exc:
            raise AssertionError(f"the simulation's topic is invalid: {exc}") from exc
        self.loop.trace(f"k create topic at n{node_id} rf={self.replication}")

        def answered(p: Pending[Result]) -> None:
            err = p.exception()
            if err is None and p.result().outcome in (Outcome.OK, Outcome.CAS_FAILED):
                self.topic_created = True
                self.loop.trace(f"k topic created ({p.result().outcome.name})")
            else:
                self.loop.after(_TOPIC_RETRY_US, self._create_topic)

        p.add_done_callback(answered)
        # A node that crashes never answers: ask again (a CAS of an existing topic fails).
        self.loop.after(1_000_000, lambda: None if p.done() else self._create_topic())

    # -- producers -----------------------------------------------------------------------------

    def _produce(self, prod: _Producer) -> None:
        if not self.running():
            return
        partition = self.rng.randrange(self.opts.partitions)
        lo, hi = self.opts.batch_records
        count = self.rng.randint(lo, hi)
        seq = prod.sequences.get(partition, 0)
        values = []
        for _ in range(count):
            prod.sent += 1
            values.append(f"{prod.pid}-{prod.sent}")
        batch = build_batch(
            [Record(value=v.encode(), timestamp_ms=self.loop.now // 1000) for v in values],
            producer_id=prod.pid,
            producer_epoch=prod.epoch,
            base_sequence=seq,
        )
        prod.sequences[partition] = seq + count
        send = _Send(
            producer=prod,
            partition=partition,
            batch=batch,
            lanes=list(zip(prod.lanes, values, strict=False)),
            deadline=self.loop.now + _SEND_DEADLINE_US,
        )
        for process, value in send.lanes:
            tp = {"topic": TOPIC, "partition": partition, "value": value}
            self._record(process, "invoke", "send", tp)
        self.sends_open += 1
        self._attempt(send)

    def _attempt(self, send: _Send) -> None:
        if send.finished:
            return
        if self.loop.now >= send.deadline:
            self._give_up(send)
            return
        send.attempt += 1
        attempt = send.attempt
        picked = self._pick(send.partition)
        if picked is None:
            self.loop.after(_RETRY_US, self._attempt, send)
            return
        node_id, b = picked
        topic = self._topic(b)
        view = b.partition(topic, send.partition) if topic is not None else None
        if view is None or not view.is_leader:
            self._redirect(send.partition, node_id, view.leader if view else -1)
            self.loop.after(_RETRY_US, self._attempt, send)
            return
        try:
            p = b.submit_produce(
                view.group,
                send.batch,
                acks=-1,
                timeout_ms=_PRODUCE_TIMEOUT_MS,
                log_append_time=False,
            )
        except LookupError:
            self.leader_hint.pop(send.partition, None)
            self.loop.after(_RETRY_US, self._attempt, send)
            return
        send.maybe_written = True

        def answered(p: Pending[ProduceResult]) -> None:
            if send.finished or send.attempt != attempt:
                return
            err = p.exception()
            if err is None and p.result().error == ErrorCode.NONE:
                self._acked(send, p.result().base_offset)
                return
            if err is None:
                code = ErrorCode(p.result().error)
                self.loop.trace(f"k produce n{node_id} p{send.partition} error {code.name}")
            self.leader_hint.pop(send.partition, None)
            self.loop.after(_RETRY_US, self._attempt, send)

        def silent() -> None:  # e.g. the node crashed: it will never answer
            if not send.finished and send.attempt == attempt:
                self.leader_hint.pop(send.partition, None)
                self._attempt(send)

        p.add_done_callback(answered)
        self.loop.after(_ATTEMPT_US, silent)

    def _redirect(self, partition: int, asked: int, leader: int) -> None:
        if leader > 0 and leader != asked:
            self.leader_hint[partition] = leader
        else:
            self.leader_hint.pop(partition, None)

    def _acked(self, send: _Send, base_offset: int) -> None:
        send.finished = True
        self.sends_open -= 1
        self.acked += len(send.lanes)
        for i, (process, value) in enumerate(send.lanes):
            tp = {"topic": TOPIC, "partition": send.partition, "value": value}
            self._record(process, "ok", "send", {**tp, "offset": base_offset + i})
        self.loop.after(self._think(), self._produce, send.producer)

    def _give_up(self, send: _Send) -> None:
        """The send's deadline passed: it may have landed (info) unless no attempt was ever
        proposed (fail). The producer starts a new epoch: its sequences restart at 0."""
        send.finished = True
        self.sends_open -= 1
        prod = send.producer
        kind = "info" if send.maybe_written else "fail"
        for i, (process, value) in enumerate(send.lanes):
            tp = {"topic": TOPIC, "partition": send.partition, "value": value}
            self._record(process, kind, "send", tp)
            if kind == "info":
                prod.lanes[i] = self.new_process()
        prod.epoch += 1
        prod.sequences.clear()
        self.loop.after(self._think(), self._produce, prod)

    # -- consumers -----------------------------------------------------------------------------

    def _poll(self, c: _Consumer) -> None:
        if not self.running():
            return
        partition = c.turn % self.opts.partitions
        c.turn += 1
        self._record(c.process, "invoke", "poll", None)
        got = self._fetch(partition, c.positions[partition])
        if isinstance(got, ErrorCode):
            self._record(c.process, "fail", "poll", None)
            if got == ErrorCode.OFFSET_OUT_OF_RANGE:
                n = c.out_of_range.get(partition, 0) + 1
                c.out_of_range[partition] = n
                if n >= _OUT_OF_RANGE_MAX:  # auto.offset.reset=earliest
                    c.out_of_range[partition] = 0
                    c.positions[partition] = 0
                    self._record(
                        c.process, "invoke", "seek", {"topic": TOPIC, "partition": partition}
                    )
                    self._record(c.process, "ok", "seek", None)
        else:
            c.out_of_range[partition] = 0
            if got:
                c.positions[partition] = got[-1]["offset"] + 1
            self._record(c.process, "ok", "poll", got)
        self.loop.after(self._think(), self._poll, c)

    def _fetch(self, partition: int, offset: int) -> list[dict[str, Any]] | ErrorCode:
        """One partition of a Fetch, by the broker handler's steps: the records from
        `offset`, or the error the handler would answer."""
        picked = self._pick(partition)
        if picked is None:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        node_id, b = picked
        topic = self._topic(b)
        if topic is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        view = b.partition(topic, partition)
        if view is None or not view.is_leader:
            self._redirect(partition, node_id, view.leader if view else -1)
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        if offset < view.log_start_offset or offset > view.high_watermark:
            return ErrorCode.OFFSET_OUT_OF_RANGE
        try:
            data = b.read(view.group, offset, _FETCH_MAX_BYTES)
        except LookupError:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        return self._decode(partition, data, offset)

    def _decode(self, partition: int, data: bytes, offset: int) -> list[dict[str, Any]]:
        out = []
        try:
            for h in iter_batches(data):
                for r in decode_records(data, h):
                    if r.offset < offset:
                        continue  # the batch holding `offset` starts before it
                    value = "" if r.value is None else r.value.decode()
                    out.append(
                        {"topic": TOPIC, "partition": partition, "offset": r.offset, "value": value}
                    )
        except (RemoteProtocolError, UnicodeDecodeError) as exc:
            self.violate(f"kafka: partition {partition} served a corrupt batch: {exc}")
        self.records_read += len(out)
        return out

    # -- the end -------------------------------------------------------------------------------

    def finish(self) -> None:
        """After the heal: let the topic's creation and every batch still on its way settle
        (acknowledged or given up: a final read must not race a late acknowledgement), read
        every partition to its end, then check the history."""
        settled = self.loop.now + _FINAL_US
        self.loop.run_until(settled, stop=lambda: self.topic_created and not self.sends_open)
        read_to_end = False
        if not self.topic_created:
            self.violate("kafka liveness: the topic was never created")
        else:
            read_to_end = all([self._final_read(p) for p in range(self.opts.partitions)])
        self._check(read_to_end=read_to_end)

    def _final_read(self, partition: int) -> bool:
        """Read `partition` from 0 to its end on its leader; False if it could not be (a
        liveness violation, unless most of its replicas are gone for good: a replica whose
        disk the nemesis corrupted stays down, and a partition cannot outlive a majority)."""
        replicas = self._replicas(partition)
        alive = [r for r in replicas if self.nodes[r].host is not None]
        if replicas and 2 * len(alive) <= len(replicas):
            self.loop.trace(f"k partition {partition}: replicas {replicas}, up {alive}: no quorum")
            return False
        deadline = self.loop.now + _FINAL_US
        while self.loop.now < deadline:
            leader = self._leader_of(partition)
            if leader is None:
                self.loop.run_until(min(deadline, self.loop.now + 20_000))
                continue
            _, b, g = leader
            barrier = b.host.submit_read(g, timeout_s=1.0)
            self.loop.run_until(deadline, stop=barrier.done)
            if not barrier.done() or barrier.exception() is not None:
                continue  # lost the lead meanwhile: look again
            now = self._leader_of(partition)
            if now is None or now[2] is not g:
                continue
            offset = 0
            process = self.new_process()  # each pass reads from 0: a consumer of its own
            while True:
                self._record(process, "invoke", "poll", None)
                got = self._fetch_from(b, partition, offset)
                if isinstance(got, ErrorCode):
                    self._record(process, "fail", "poll", None)
                    break
                self._record(process, "ok", "poll", got)
                if not got:
                    return True
                offset = got[-1]["offset"] + 1
            self.loop.run_until(min(deadline, self.loop.now + 20_000))  # then start over
        self.violate(f"kafka liveness: partition {partition} was not read to its end")
        return False

    def _replicas(self, partition: int) -> tuple[int, ...]:
        for node_id in self._up():
            b = self._backend(node_id)
            topic = self._topic(b) if b is not None else None
            if topic is not None:
                return topic.partitions[partition].replicas
        return ()

    def _leader_of(self, partition: int) -> tuple[int, KafkaBackend, Group] | None:
        for node_id in self._up():
            b = self._backend(node_id)
            assert b is not None
            topic = self._topic(b)
            if topic is None:
                continue
            g = b.host.groups.get(topic.partitions[partition].group)
            if g is not None and g.raw.is_leader:
                return node_id, b, g
        return None

    def _fetch_from(
        self, b: KafkaBackend, partition: int, offset: int
    ) -> list[dict[str, Any]] | ErrorCode:
        self.leader_hint[partition] = b.node_id
        return self._fetch(partition, offset)

    def _check(self, *, read_to_end: bool) -> None:
        """The delivery check's failures are violations; so are its two kinds of information
        once every partition was read to its end: an acknowledged record nobody read
        (`unread`: the final read passed its offset, or the log ends before it) and a value
        no producer sent (`unsent-read`: every producer's sends are in the history)."""
        try:
            history = kafka_history_from_events(self.events)
        except KafkaHistoryError as exc:
            self.violate(f"kafka: the workload recorded a malformed history: {exc}")
            return
        result = check_delivery(history)
        failures = [
            f for f in result.findings if f.kind.is_failure or (read_to_end and f.kind in _STRICT)
        ]
        for f in failures[:_FINDINGS_SHOWN]:
            seen = ", ".join(
                f"{s.source.value} p{s.process} {s.value!r}@{s.offset}" for s in f.sightings[:4]
            )
            self.violate(
                f"kafka delivery: {f.kind.value} on {f.topic_partition} "
                f"value={f.value!r} offsets={list(f.offsets)[:6]} ({seen})"
            )
        if len(failures) > _FINDINGS_SHOWN:
            self.violate(f"kafka delivery: {len(failures) - _FINDINGS_SHOWN} more findings")
